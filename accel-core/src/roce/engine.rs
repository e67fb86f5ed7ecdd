//! The RC protocol engine: one [`RcQp`] is one side of a reliable
//! connection, with a requester (segmentation, PSNs, retransmission), a
//! responder (PSN checking, receives, RDMA WRITE/READ execution, ACK/NAK)
//! and a completer (ACK/NAK/READ response processing, in-order completions).
//!
//! The engine has no thread of its own. Frames come in through
//! [`RcQp::handle_frame`] and timers run in [`RcQp::tick`]; [`RcDriver`] is
//! a thread that does both for the QPs of one [`Link`]. Outgoing packets are
//! sent while the QP's lock is held, so they leave in PSN order.
//!
//! ICRC: when both ends have IPv4-mapped GIDs (every RoCE v2 over IPv4 port)
//! packets carry the full RoCE v2 ICRC over the rebuilt IPv4 and UDP headers
//! ([`Packet::encode_for`] / [`Packet::decode_from`]), exactly what a NIC puts
//! on the wire; otherwise the transport-only ICRC ([`Packet::encode`]).
//!
//! Completions go to the QP's own queue ([`RcQp::poll`]) or, for QPs made
//! with [`RcQp::with_sink`], to a [`WcSink`] (the verbs layer's CQs). A sink
//! that refuses a completion (a full CQ) moves the QP to the error state.
//!
//! Recovery: go-back-N from the oldest unacknowledged PSN on timer expiry
//! (retry_cnt, reset on progress), on a PSN sequence error NAK (not counted)
//! and, once per gap, on a missing READ response. The responder NAKs a gap
//! once, and again only when the requester has visibly gone back (an
//! out-of-sequence PSN well below the highest one seen), so a lost
//! retransmission does not always cost a timeout.
//!
//! Window: at most `max_outstanding` PSNs in flight, and fewer after loss:
//! go-back-N resends everything after a lost packet, so under loss a large
//! window multiplies traffic (at 10% loss and 512 packets in flight, about
//! 300 frames per delivered packet). The requester therefore keeps an AIMD
//! window: halved (to at least [`MIN_WINDOW`]) on a timeout or a sequence
//! error NAK, grown by one packet per acknowledged packet up to
//! `max_outstanding`, so a lossless link runs at the full window and a lossy
//! one backs off, like TCP's congestion window.
//!
//! ACK coalescing: the positive ACK a message's last packet asks for is not
//! sent at once but kept as the QP's due ACK, replaced by later ones (an ACK
//! covers every PSN before it). It is sent:
//! - at once after `ACK_COALESCE_MAX` (8) requests, or for a request in the
//!   middle of a message (its sender's window is filling);
//! - before any NAK or READ response of the QP, and when the QP goes to ERR
//!   or RESET, is destroyed, or its port thread stops;
//! - by a polling thread that found nothing to receive, once the ACK has been
//!   due for `ACK_DELAY` (50 µs);
//! - by the port thread right after it received, when nobody polls, and at
//!   every timer tick (200 µs).
//!
//! A request/response exchange thus puts one datagram on the critical path
//! each way, the reply, and a stream of requests costs one ACK per 8 of them
//! instead of one each. The price: a requester that waits for each send's
//! completion before its next request sees up to `ACK_DELAY` more latency
//! when the peer polls.
//!
//! Timers: while a thread polls a port ([`RcPort::progress`]), that thread
//! also runs the port's timers (every 200 µs, when it finds nothing to
//! receive), and the port thread sleeps: its wake-ups would take a core
//! from busy-polling threads.
//!
//! Simplifications: no end-to-end credits (ACKs advertise none); no atomics, fences, SRQs or
//! solicited-event notification; a SEND/WRITE payload is gathered when it is
//! posted.

use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use accel_uapi::types::{WcOpcode, WcStatus};
use parking_lot::{Condvar, Mutex};

use super::mr::{Access, RcMemory};
use super::packet::{
    AETH_CREDITS_INVALID, Aeth, AethKind, Bth, ImmDt, MSN_MASK, NakCode, Opcode, PSN_MASK, Packet, Reth,
    icrc_transport_only, psn_add, psn_diff,
};
use crate::fabric::link::{Frame, Gid, Link, MAX_FRAME_LEN, gid_to_ipv4};

/// Connection parameters of an [`RcQp`] (what RTR/RTS would set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcConfig {
    /// This QP's number (24 bits).
    pub qpn: u32,
    /// The peer's port.
    pub dest_gid: Gid,
    /// The peer QP's number.
    pub dest_qpn: u32,
    /// Path MTU in bytes: 256, 512, 1024, 2048 or 4096.
    pub mtu: u32,
    /// First PSN the requester sends.
    pub sq_psn: u32,
    /// First PSN the responder expects.
    pub rq_psn: u32,
    /// Local ACK timeout code: 4.096 us * 2^timeout; 0 means infinite.
    pub timeout: u8,
    /// Retries after a timeout or sequence error before RETRY_EXC_ERR.
    pub retry_cnt: u8,
    /// Retries after an RNR NAK before RNR_RETRY_EXC_ERR; 7 is infinite.
    pub rnr_retry: u8,
    /// RNR timer code the responder puts in its RNR NAKs.
    pub min_rnr_timer: u8,
    /// Most PSNs the requester has outstanding (unacknowledged).
    pub max_outstanding: u32,
}

impl RcConfig {
    /// A config with common defaults: MTU 1024, PSNs 0, timeout 14
    /// (~67 ms), retry_cnt 7, rnr_retry 7, min_rnr_timer 1, window 256.
    pub fn new(qpn: u32, dest_gid: Gid, dest_qpn: u32) -> Self {
        RcConfig {
            qpn,
            dest_gid,
            dest_qpn,
            mtu: 1024,
            sq_psn: 0,
            rq_psn: 0,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 1,
            max_outstanding: 256,
        }
    }
}

/// Why a config or work request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RcError {
    /// The path MTU is not one of 256..4096 (powers of two).
    #[error("invalid path MTU {0}")]
    BadMtu(u32),
    /// A message longer than 2^31 bytes or 2^22 packets.
    #[error("message too long")]
    TooLong,
}

/// Send work request opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOp {
    /// SEND.
    Send,
    /// SEND with immediate.
    SendWithImm,
    /// RDMA WRITE.
    RdmaWrite,
    /// RDMA WRITE with immediate (consumes a receive at the peer).
    RdmaWriteWithImm,
    /// RDMA READ.
    RdmaRead,
}

/// A send work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWr {
    /// Caller's id, returned in the completion.
    pub wr_id: u64,
    /// What to do.
    pub opcode: SendOp,
    /// Local buffers: (lkey, addr, len).
    pub sges: Vec<(u32, u64, u32)>,
    /// Remote address (RDMA ops).
    pub remote_addr: u64,
    /// Remote key (RDMA ops).
    pub rkey: u32,
    /// Immediate data (`*WithImm`).
    pub imm: u32,
    /// Generate a completion on success (errors always complete).
    pub signaled: bool,
}

/// A receive work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvWr {
    /// Caller's id, returned in the completion.
    pub wr_id: u64,
    /// Local buffers: (lkey, addr, len).
    pub sges: Vec<(u32, u64, u32)>,
}

/// A work completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wc {
    /// The work request's id.
    pub wr_id: u64,
    /// Status (`ACCEL_WC_*`).
    pub status: WcStatus,
    /// Opcode (`ACCEL_WC_*`).
    pub opcode: WcOpcode,
    /// Bytes transferred.
    pub byte_len: u32,
    /// Immediate data, if the message carried any.
    pub imm: Option<u32>,
    /// This QP's number.
    pub qp_num: u32,
}

/// The smallest send window, in packets, that loss shrinks the window to.
pub const MIN_WINDOW: u32 = 16;

/// Where an [`RcQp`] delivers its completions (a completion queue).
pub trait WcSink: Send + Sync {
    /// Takes one completion; `false` when it could not be kept (the queue
    /// overflowed), which puts the QP in the error state.
    fn complete(&self, wc: Wc) -> bool;
}

/// Requester and responder parameters that QP_MODIFY may change after the
/// connection is set up (RTR -> RTS, RTS -> RTS, SQD -> SQD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcTimers {
    /// Local ACK timeout code (see [`RcConfig::timeout`]).
    pub timeout: u8,
    /// See [`RcConfig::retry_cnt`].
    pub retry_cnt: u8,
    /// See [`RcConfig::rnr_retry`].
    pub rnr_retry: u8,
    /// See [`RcConfig::min_rnr_timer`].
    pub min_rnr_timer: u8,
}

/// Duration of an RNR timer code (IBA table 45).
pub fn rnr_timer(code: u8) -> Duration {
    const US: [u32; 32] = [
        655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 3840, 5120, 7680, 10_240,
        15_360, 20_480, 30_720, 40_960, 61_440, 81_920, 122_880, 163_840, 245_760, 327_680, 491_520,
    ];
    Duration::from_micros(u64::from(US[usize::from(code & 31)]))
}

/// Duration of a local ACK timeout code; `None` for 0 (infinite).
pub fn ack_timeout(code: u8) -> Option<Duration> {
    (code != 0).then(|| Duration::from_nanos(4096u64 << u32::from(code.min(31))))
}

fn wc_opcode(op: SendOp) -> WcOpcode {
    match op {
        SendOp::Send | SendOp::SendWithImm => WcOpcode::Send,
        SendOp::RdmaWrite | SendOp::RdmaWriteWithImm => WcOpcode::RdmaWrite,
        SendOp::RdmaRead => WcOpcode::RdmaRead,
    }
}

/// Visits the pieces of `sges` covering bytes `off .. off + len` of the
/// message: (lkey, addr, offset into the piece range, piece len).
fn scatter_pieces(sges: &[(u32, u64, u32)], off: usize, len: usize) -> Option<Vec<(u32, u64, usize, usize)>> {
    let mut out = Vec::new();
    let (mut base, mut at, end) = (0usize, off, off + len);
    for &(key, addr, l) in sges {
        let l = l as usize;
        if at < end && at < base + l {
            let take = (base + l).min(end) - at;
            out.push((key, addr + (at - base) as u64, at - off, take));
            at += take;
        }
        base += l;
    }
    (at == end).then_some(out)
}

/// One posted send WR with its PSN range.
#[derive(Debug)]
struct SendWqe {
    wr: SendWr,
    data: Vec<u8>,
    len: u32,
    first_psn: u32,
    npkts: u32,
    /// READ: response packets received in order.
    rx_pkts: u32,
}

impl SendWqe {
    fn is_read(&self) -> bool {
        self.wr.opcode == SendOp::RdmaRead
    }

    fn end_psn(&self) -> u32 {
        psn_add(self.first_psn, self.npkts)
    }

    fn contains(&self, psn: u32) -> bool {
        let d = psn_diff(psn, self.first_psn);
        d >= 0 && (d as u32) < self.npkts
    }
}

/// A receive being filled by a multi-packet SEND.
#[derive(Debug)]
struct InRecv {
    wr: RecvWr,
    off: usize,
}

#[derive(Debug)]
struct Requester {
    sq: VecDeque<SendWqe>,
    next_psn: u32,
    /// Oldest unacknowledged PSN.
    una: u32,
    /// One past the highest PSN ever sent.
    max_sent: u32,
    /// Transmission cursor: index into `sq` and packet within it.
    cur_idx: usize,
    cur_pkt: u32,
    retry_left: u8,
    rnr_left: u8,
    /// Packets allowed in flight (AIMD, see the module docs).
    window: u32,
    timer: Option<Instant>,
    rnr_until: Option<Instant>,
    /// READ response PSN last re-requested after a gap.
    read_gap: Option<u32>,
    /// Payload buffers of completed WRs, for the next posts: a 64 KiB
    /// buffer per message would otherwise go back to the allocator, which
    /// returns it to the kernel and faults it in again.
    spare: Vec<Vec<u8>>,
}

/// Payload buffers a QP keeps for reuse, and the largest it keeps.
const SPARE_BUFFERS: usize = 4;
const SPARE_MAX_BYTES: usize = 4 << 20;

impl Requester {
    /// Keeps `data` for a later post if there is room.
    fn recycle(&mut self, data: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && data.capacity() <= SPARE_MAX_BYTES && data.capacity() > 0 {
            self.spare.push(data);
        }
    }
}

#[derive(Debug)]
struct Responder {
    rq: VecDeque<RecvWr>,
    epsn: u32,
    msn: u32,
    nak_sent: bool,
    /// Highest out-of-sequence PSN seen since the last NAK.
    ahead_max: u32,
    recv: Option<InRecv>,
    /// The coalesced positive ACK not sent yet: (PSN, MSN).
    ack_due: Option<(u32, u32)>,
    /// When the oldest request the due ACK covers was executed.
    ack_due_since: Option<Instant>,
    /// Request packets asking for an ACK since the last one sent.
    acks_owed: u32,
    /// RDMA WRITE in progress: (rkey, next va, bytes left, total).
    write: Option<(u32, u64, u32, u32)>,
}

#[derive(Debug)]
struct State {
    error: bool,
    /// The sink refused a completion: enter the error state.
    overflow: bool,
    timers: RcTimers,
    req: Requester,
    resp: Responder,
    cq: VecDeque<Wc>,
}

/// One side of a reliable connection. See the module docs.
pub struct RcQp {
    cfg: RcConfig,
    link: Arc<dyn Link>,
    mem: Arc<dyn RcMemory>,
    sink: Option<Arc<dyn WcSink>>,
    /// (local address, peer address, UDP source port) for the full ICRC.
    ipv4: Option<(Ipv4Addr, Ipv4Addr, u16)>,
    state: Mutex<State>,
    cq_ready: Condvar,
}

impl std::fmt::Debug for RcQp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcQp").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Packets built under the lock, sent in order.
type Out = Vec<OutPkt>;

/// A packet to send: its headers, with its payload either inside it or, for
/// SEND and WRITE data, a range of a send WR's gathered data (encoded
/// straight from there, without a copy into the packet).
#[derive(Debug)]
struct OutPkt {
    pkt: Packet,
    /// (index in the send queue, byte range of its data).
    wqe: Option<(usize, std::ops::Range<usize>)>,
}

impl From<Packet> for OutPkt {
    fn from(pkt: Packet) -> Self {
        OutPkt { pkt, wqe: None }
    }
}

impl OutPkt {
    fn payload<'a>(&'a self, st: &'a State) -> &'a [u8] {
        match &self.wqe {
            Some((i, r)) => st.req.sq.get(*i).and_then(|w| w.data.get(r.clone())).unwrap_or_default(),
            None => self.pkt.payload(),
        }
    }

    fn wire_len(&self, st: &State) -> usize {
        self.pkt.wire_len_with(self.payload(st).len())
    }
}

impl RcQp {
    /// A QP in RTS state sending on `link`, using `mem` for local memory;
    /// completions are taken with [`RcQp::poll`].
    pub fn new(cfg: RcConfig, link: Arc<dyn Link>, mem: Arc<dyn RcMemory>) -> Result<Arc<RcQp>, RcError> {
        Self::build(cfg, link, mem, None)
    }

    /// Like [`RcQp::new`], but completions go to `sink`.
    pub fn with_sink(
        cfg: RcConfig,
        link: Arc<dyn Link>,
        mem: Arc<dyn RcMemory>,
        sink: Arc<dyn WcSink>,
    ) -> Result<Arc<RcQp>, RcError> {
        Self::build(cfg, link, mem, Some(sink))
    }

    fn build(
        cfg: RcConfig,
        link: Arc<dyn Link>,
        mem: Arc<dyn RcMemory>,
        sink: Option<Arc<dyn WcSink>>,
    ) -> Result<Arc<RcQp>, RcError> {
        if !(256..=4096).contains(&cfg.mtu) || !cfg.mtu.is_power_of_two() {
            return Err(RcError::BadMtu(cfg.mtu));
        }
        let mut cfg = cfg;
        cfg.max_outstanding = cfg.max_outstanding.clamp(1, 1 << 22);
        let sq_psn = cfg.sq_psn & PSN_MASK;
        let timers = RcTimers {
            timeout: cfg.timeout,
            retry_cnt: cfg.retry_cnt,
            rnr_retry: cfg.rnr_retry,
            min_rnr_timer: cfg.min_rnr_timer,
        };
        let state = State {
            error: false,
            overflow: false,
            timers,
            req: Requester {
                sq: VecDeque::new(),
                next_psn: sq_psn,
                una: sq_psn,
                max_sent: sq_psn,
                cur_idx: 0,
                cur_pkt: 0,
                retry_left: cfg.retry_cnt,
                window: cfg.max_outstanding,
                rnr_left: cfg.rnr_retry,
                timer: None,
                rnr_until: None,
                read_gap: None,
                spare: Vec::new(),
            },
            resp: Responder {
                rq: VecDeque::new(),
                epsn: cfg.rq_psn & PSN_MASK,
                msn: 0,
                nak_sent: false,
                ahead_max: 0,
                recv: None,
                ack_due: None,
                ack_due_since: None,
                acks_owed: 0,
                write: None,
            },
            cq: VecDeque::new(),
        };
        let ipv4 = match (gid_to_ipv4(&link.gid()), gid_to_ipv4(&cfg.dest_gid)) {
            (Some(src), Some(dst)) => Some((src, dst, link.src_port())),
            _ => None,
        };
        Ok(Arc::new(RcQp { cfg, link, mem, sink, ipv4, state: Mutex::new(state), cq_ready: Condvar::new() }))
    }

    /// The configuration.
    pub fn config(&self) -> &RcConfig {
        &self.cfg
    }

    /// The QP is in the error state (every WR is flushed).
    pub fn is_error(&self) -> bool {
        self.state.lock().error
    }

    /// Moves the QP to the error state (QP_MODIFY to ERR): every
    /// outstanding send and receive WR completes with WR_FLUSH_ERR.
    pub fn set_error(&self) {
        let mut st = self.state.lock();
        if !st.error {
            self.enter_error(&mut st);
        }
    }

    /// The current timer parameters.
    pub fn timers(&self) -> RcTimers {
        self.state.lock().timers
    }

    /// Changes the timer parameters; running timers keep their deadline,
    /// the retry budgets are refilled.
    pub fn set_timers(&self, t: RcTimers) {
        let mut st = self.state.lock();
        st.timers = t;
        st.req.retry_left = t.retry_cnt;
        st.req.rnr_left = t.rnr_retry;
    }

    /// Sets the first PSN the requester sends (RTR -> RTS). Refused
    /// (`false`) once anything was posted.
    pub fn set_sq_psn(&self, psn: u32) -> bool {
        let mut st = self.state.lock();
        if !st.req.sq.is_empty() || st.req.next_psn != st.req.una {
            return false;
        }
        let psn = psn & PSN_MASK;
        (st.req.next_psn, st.req.una, st.req.max_sent) = (psn, psn, psn);
        true
    }

    /// The next PSN the requester will assign and the next PSN the
    /// responder expects (for QP_QUERY).
    pub fn psns(&self) -> (u32, u32) {
        let st = self.state.lock();
        (st.req.next_psn, st.resp.epsn)
    }

    /// Send WRs not yet completed, and receive WRs posted and not yet
    /// consumed (including one being filled).
    pub fn outstanding(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.req.sq.len(), st.resp.rq.len() + usize::from(st.resp.recv.is_some()))
    }

    fn encode(&self, st: &State, p: &OutPkt, ip_id: u16) -> Vec<u8> {
        let payload = p.payload(st);
        match self.ipv4 {
            Some((src, dst, port)) => p.pkt.encode_for_id_with_payload(payload, src, dst, port, ip_id),
            None => p.pkt.encode_with_payload(payload),
        }
    }

    /// Sends `out` in order. A refused frame is a lost frame: the timer
    /// recovers. On a link with segmentation offload, each run of packets of
    /// one length (the last may be shorter) leaves as one batch, every
    /// packet's ICRC computed for its IPv4 identification in the batch.
    /// Payloads are not copied into frames: each packet is its headers and
    /// trailer (pad, ICRC) from a reused buffer with its payload between,
    /// handed to the link as a gather list ([`Link::send_gather`]).
    fn send_out(&self, st: &State, out: Out) {
        let dst = &self.cfg.dest_gid;
        let max = self.link.gso_max_segments();
        let Some(ipv4) = self.ipv4 else {
            if !out.is_empty() {
                let _ = self.link.send_many(dst, out.iter().map(|p| self.encode(st, p, 0)).collect());
            }
            return;
        };
        let mut i = 0;
        while i < out.len() {
            let j = self.run_end(st, &out, i, max);
            if j == i + 1 && out.get(j).is_some_and(|_| self.run_end(st, &out, j, max) == j + 1) {
                // Packets of different lengths: one sendmmsg(2) of copies.
                let mut k = j + 1;
                while k < out.len() && self.run_end(st, &out, k, max) == k + 1 {
                    k += 1;
                }
                let _ = self.link.send_many(dst, out[i..k].iter().map(|p| self.encode(st, p, 0)).collect());
                i = k;
                continue;
            }
            let seg = if j - i > 1 { out[i].wire_len(st) } else { 0 };
            if j - i == 1 {
                self.send_run::<1>(st, &out[i..j], seg, ipv4);
            } else {
                self.send_run::<UDP_GSO_RUN>(st, &out[i..j], seg, ipv4);
            }
            i = j;
        }
    }

    /// Sends up to `N` packets as one gather send: one frame, or with
    /// `seg` > 0 a batch of frames of `seg` bytes (the last may be shorter),
    /// packet *i* with its ICRC for IPv4 identification *i*.
    fn send_run<const N: usize>(&self, st: &State, pkts: &[OutPkt], seg: usize, ipv4: (Ipv4Addr, Ipv4Addr, u16)) {
        thread_local! {
            // Headers and trailers of a batch, reused.
            static ARENA: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // run_end never makes a run longer than UDP_GSO_RUN (the larger N);
        // were it to, the rest would leave as batches of their own.
        if pkts.len() > N {
            for chunk in pkts.chunks(N) {
                self.send_run::<N>(st, chunk, if chunk.len() > 1 { seg } else { 0 }, ipv4);
            }
            return;
        }
        let (src, dst, port) = ipv4;
        ARENA.with(|a| {
            let mut arena = a.borrow_mut();
            arena.clear();
            // Per packet: where its headers start, end (the trailer
            // starts) and its trailer ends in the arena.
            let mut spans = [(0, 0, 0); N];
            for ((p, id), span) in pkts.iter().zip(0u16..).zip(spans.iter_mut()) {
                let (head, trailer) = p.pkt.append_split_for_id(p.payload(st), src, dst, port, id, &mut arena);
                *span = (head.start, trailer.start, trailer.end);
            }
            let mut iov = [[IoSlice::new(&[]); 3]; N];
            for ((p, &(a, b, c)), piece) in pkts.iter().zip(&spans).zip(iov.iter_mut()) {
                *piece = [IoSlice::new(&arena[a..b]), IoSlice::new(p.payload(st)), IoSlice::new(&arena[b..c])];
            }
            let _ = self.link.send_gather(&self.cfg.dest_gid, iov[..pkts.len()].as_flattened(), seg);
        });
    }

    /// The end of the run of packets from `out[i]` that can leave as one
    /// batch: all of one length but a shorter last, at most `max` of them
    /// (and [`UDP_GSO_RUN`]) and [`MAX_FRAME_LEN`] bytes.
    fn run_end(&self, st: &State, out: &[OutPkt], i: usize, max: usize) -> usize {
        let size = out[i].wire_len(st);
        let (mut j, mut total) = (i + 1, size);
        while j < out.len() && j - i < max.min(UDP_GSO_RUN) {
            let len = out[j].wire_len(st);
            if len > size || total + len > MAX_FRAME_LEN {
                break;
            }
            total += len;
            j += 1;
            if len < size {
                break;
            }
        }
        j
    }

    /// The due ACK as a packet, which is then no longer due.
    fn take_ack(&self, st: &mut State) -> Option<Packet> {
        let (psn, msn) = st.resp.ack_due.take()?;
        st.resp.acks_owed = 0;
        st.resp.ack_due_since = None;
        Packet::builder(Opcode::Acknowledge, self.cfg.dest_qpn, psn)
            .aeth(Aeth::ack(AETH_CREDITS_INVALID, msn))
            .build()
            .ok()
    }

    /// Sends the due ACK, if any, on its own.
    fn send_due_ack(&self, st: &mut State) {
        if let Some(p) = self.take_ack(st) {
            self.send_out(st, vec![p.into()]);
        }
    }

    /// Sends the due ACK, if any (see the module docs).
    pub fn flush_ack(&self) {
        self.flush_ack_older(Instant::now(), Duration::ZERO);
    }

    /// Sends the due ACK if it has been due since `now - delay` or
    /// earlier. Returns whether an ACK is still due.
    fn flush_ack_older(&self, now: Instant, delay: Duration) -> bool {
        let mut st = self.state.lock();
        match st.resp.ack_due_since {
            Some(t) if now.saturating_duration_since(t) >= delay => {
                self.send_due_ack(&mut st);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Whether an ACK is due (for tests).
    pub fn ack_due(&self) -> bool {
        self.state.lock().resp.ack_due.is_some()
    }

    /// Enters the error state if the sink refused a completion.
    fn check_overflow(&self, st: &mut State) {
        if st.overflow && !st.error {
            self.enter_error(st);
        }
    }

    /// Posts a send WR. Local gather errors complete it with
    /// LOC_PROT_ERR and move the QP to the error state.
    pub fn post_send(&self, wr: SendWr) -> Result<(), RcError> {
        let total: u64 = wr.sges.iter().map(|s| u64::from(s.2)).sum();
        // At most 2^31 bytes, and few enough packets to stay well inside
        // the 2^23 PSN window.
        if total > 1 << 31 || total.div_ceil(u64::from(self.cfg.mtu)) > 1 << 22 {
            return Err(RcError::TooLong);
        }
        let len = total as u32;
        let mut st = self.state.lock();
        if st.error {
            self.push_wc(&mut st, Wc::flushed_send(&wr, self.cfg.qpn));
            return Ok(());
        }
        let mut data = Vec::new();
        if wr.opcode != SendOp::RdmaRead && len > 0 {
            data = st.req.spare.pop().unwrap_or_default();
            // A reused buffer is only zeroed where it grows.
            data.truncate(len as usize);
            data.resize(len as usize, 0);
            let mut at = 0;
            for &(key, addr, l) in &wr.sges {
                let piece = &mut data[at..at + l as usize];
                at += l as usize;
                match self.mem.read_into(key, addr, piece, Access::empty()) {
                    Ok(()) => {}
                    Err(_) => {
                        let wc = Wc {
                            wr_id: wr.wr_id,
                            status: WcStatus::LocProtErr,
                            opcode: wc_opcode(wr.opcode),
                            byte_len: 0,
                            imm: None,
                            qp_num: self.cfg.qpn,
                        };
                        self.push_wc(&mut st, wc);
                        self.enter_error(&mut st);
                        return Ok(());
                    }
                }
            }
        }
        let npkts = len.div_ceil(self.cfg.mtu).max(1);
        let first_psn = st.req.next_psn;
        st.req.next_psn = psn_add(first_psn, npkts);
        st.req.sq.push_back(SendWqe { wr, data, len, first_psn, npkts, rx_pkts: 0 });
        let mut out = Out::new();
        self.transmit(&mut st, Instant::now(), &mut out);
        self.send_out(&st, out);
        self.check_overflow(&mut st);
        Ok(())
    }

    /// Posts a receive WR.
    pub fn post_recv(&self, wr: RecvWr) {
        let mut st = self.state.lock();
        if st.error {
            self.push_wc(&mut st, Wc::flushed_recv(wr.wr_id, self.cfg.qpn));
        } else {
            st.resp.rq.push_back(wr);
        }
        self.check_overflow(&mut st);
    }

    /// Takes up to `max` completions.
    pub fn poll(&self, max: usize) -> Vec<Wc> {
        let mut st = self.state.lock();
        let n = max.min(st.cq.len());
        st.cq.drain(..n).collect()
    }

    /// Like [`RcQp::poll`], but waits up to `timeout` for a first completion.
    pub fn poll_wait(&self, max: usize, timeout: Duration) -> Vec<Wc> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.cq.is_empty() {
            if self.cq_ready.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let n = max.min(st.cq.len());
        st.cq.drain(..n).collect()
    }

    fn push_wc(&self, st: &mut State, wc: Wc) {
        match &self.sink {
            Some(sink) => {
                if !sink.complete(wc) {
                    st.overflow = true;
                }
            }
            None => {
                st.cq.push_back(wc);
                self.cq_ready.notify_all();
            }
        }
    }

    /// Moves to the error state, flushing every outstanding WR.
    fn enter_error(&self, st: &mut State) {
        // What was executed stays acknowledged.
        self.send_due_ack(st);
        st.error = true;
        st.req.timer = None;
        st.req.rnr_until = None;
        while let Some(w) = st.req.sq.pop_front() {
            let wc = Wc::flushed_send(&w.wr, self.cfg.qpn);
            self.push_wc(st, wc);
            st.req.recycle(w.data);
        }
        st.req.cur_idx = 0;
        st.req.cur_pkt = 0;
        if let Some(r) = st.resp.recv.take() {
            st.resp.rq.push_front(r.wr);
        }
        while let Some(r) = st.resp.rq.pop_front() {
            self.push_wc(st, Wc::flushed_recv(r.wr_id, self.cfg.qpn));
        }
    }

    /// Fails the oldest send WR with `status` and enters the error state.
    fn fail_front(&self, st: &mut State, status: WcStatus) {
        if let Some(w) = st.req.sq.pop_front() {
            let wc = Wc {
                wr_id: w.wr.wr_id,
                status,
                opcode: wc_opcode(w.wr.opcode),
                byte_len: 0,
                imm: None,
                qp_num: self.cfg.qpn,
            };
            self.push_wc(st, wc);
        }
        self.enter_error(st);
    }

    /// Handles one incoming frame. Frames not for this QP, from another
    /// port, or failing decode (bad ICRC) are dropped. Returns whether an
    /// ACK is left due, for the caller to flush later ([`RcQp::flush_ack`]).
    pub fn handle_frame(&self, rx: Frame<'_>) -> bool {
        if rx.src != self.cfg.dest_gid {
            return false;
        }
        let decoded = match self.ipv4 {
            // The peer's address is rx.src (checked above): rebuild its headers.
            Some((local, peer, _)) => Packet::decode_view_from_id(peer, local, rx.src_port, rx.ip_id, rx.bytes),
            None => Packet::decode_view_with(rx.bytes, icrc_transport_only),
        };
        let Ok((pkt, payload)) = decoded else { return false };
        if pkt.bth().dest_qp != self.cfg.qpn {
            return false;
        }
        let now = Instant::now();
        let mut st = self.state.lock();
        if st.error {
            return false;
        }
        let mut out = Out::new();
        if pkt.bth().opcode.is_response() {
            self.complete_on(&mut st, &pkt, payload, now);
            self.transmit(&mut st, now, &mut out);
            if !out.is_empty() {
                out.extend(self.take_ack(&mut st).map(OutPkt::from));
            }
        } else {
            // Responses leave in PSN order: the due ACK before a NAK or a READ
            // response (execute may also send a due ACK at once).
            let due = st.resp.ack_due.is_some();
            self.respond(&mut st, &pkt, payload, &mut out);
            if due
                && !out.is_empty()
                && let Some(ack) = self.take_ack(&mut st)
            {
                out.insert(0, ack.into());
            }
        }
        self.send_out(&st, out);
        self.check_overflow(&mut st);
        st.resp.ack_due.is_some()
    }

    /// Runs the retransmission and RNR timers.
    pub fn tick(&self, now: Instant) {
        let mut st = self.state.lock();
        if st.error {
            return;
        }
        let mut out = Out::new();
        if let Some(t) = st.req.rnr_until {
            if now >= t {
                st.req.rnr_until = None;
                self.go_back(&mut st);
                self.transmit(&mut st, now, &mut out);
            }
        } else if let Some(t) = st.req.timer
            && now >= t
        {
            st.req.timer = None;
            if psn_diff(st.req.max_sent, st.req.una) > 0 {
                if st.req.retry_left == 0 {
                    self.fail_front(&mut st, WcStatus::RetryExcErr);
                } else {
                    st.req.retry_left -= 1;
                    self.shrink_window(&mut st);
                    self.go_back(&mut st);
                    self.transmit(&mut st, now, &mut out);
                }
            }
        }
        if !out.is_empty() {
            out.extend(self.take_ack(&mut st).map(OutPkt::from));
        }
        self.send_out(&st, out);
        self.check_overflow(&mut st);
    }

    // ----- requester -----

    /// A packet was lost: halve the send window.
    fn shrink_window(&self, st: &mut State) {
        st.req.window = (st.req.window / 2).max(MIN_WINDOW.min(self.cfg.max_outstanding));
    }

    /// Points the transmission cursor at the oldest unacknowledged PSN.
    fn go_back(&self, st: &mut State) {
        let r = &mut st.req;
        let una = r.una;
        match r.sq.iter().position(|w| w.contains(una)) {
            Some(i) => {
                r.cur_idx = i;
                r.cur_pkt = psn_diff(una, r.sq[i].first_psn) as u32;
            }
            None => {
                r.cur_idx = r.sq.iter().position(|w| psn_diff(w.first_psn, una) >= 0).unwrap_or(r.sq.len());
                r.cur_pkt = 0;
            }
        }
    }

    /// Sends packets from the cursor while the window allows.
    fn transmit(&self, st: &mut State, now: Instant, out: &mut Out) {
        let mtu = self.cfg.mtu;
        let window = st.req.window.clamp(1, self.cfg.max_outstanding);
        let half = (window / 2).max(1);
        let timeout = st.timers.timeout;
        let r = &mut st.req;
        if st.error || r.rnr_until.is_some() {
            return;
        }
        while let Some(w) = r.sq.get(r.cur_idx) {
            let psn = psn_add(w.first_psn, r.cur_pkt);
            if psn_diff(psn, r.una) >= window as i32 {
                break;
            }
            let dqp = self.cfg.dest_qpn;
            let end;
            if w.is_read() {
                let off = r.cur_pkt * mtu;
                let reth = Reth { va: w.wr.remote_addr + u64::from(off), rkey: w.wr.rkey, dma_len: w.len - off };
                let p = Packet::builder(Opcode::RdmaReadRequest, dqp, psn).reth(reth).ack_req(true).build();
                out.extend(p.ok().map(OutPkt::from));
                end = w.end_psn();
                r.cur_idx += 1;
                r.cur_pkt = 0;
            } else {
                let i = r.cur_pkt;
                let last = i + 1 == w.npkts;
                let op = data_opcode(w.wr.opcode, i == 0, last);
                let start = (i * mtu) as usize;
                let stop = (start + mtu as usize).min(w.data.len());
                // A retransmitted packet always asks for an ACK: whatever part of a
                // go-back-N resend gets through is then acknowledged as progress
                // (which resets the retry count) even if a later packet is lost again.
                let resend = psn_diff(psn, r.max_sent) < 0;
                let mut b = Packet::builder(op, dqp, psn)
                    .ack_req(last || resend || (i + 1).is_multiple_of(half))
                    .solicited(last && matches!(w.wr.opcode, SendOp::SendWithImm | SendOp::RdmaWriteWithImm));
                if op.has_reth() {
                    b = b.reth(Reth { va: w.wr.remote_addr, rkey: w.wr.rkey, dma_len: w.len });
                }
                if op.has_immdt() {
                    b = b.immdt(ImmDt(w.wr.imm));
                }
                let wqe = Some((r.cur_idx, start..stop));
                out.extend(b.build().ok().map(|pkt| OutPkt { pkt, wqe }));
                end = psn_add(psn, 1);
                r.cur_pkt += 1;
                if r.cur_pkt == w.npkts {
                    r.cur_idx += 1;
                    r.cur_pkt = 0;
                }
            }
            if psn_diff(end, r.max_sent) > 0 {
                r.max_sent = end;
            }
            if r.timer.is_none() {
                r.timer = ack_timeout(timeout).map(|d| now + d);
            }
        }
    }

    /// Everything before `target` is acknowledged (bounded by incomplete
    /// READs). Returns whether a READ's responses went missing.
    fn ack_upto(&self, st: &mut State, target: u32, now: Instant) -> bool {
        let t = st.timers;
        let r = &mut st.req;
        if psn_diff(target, r.max_sent) > 0 {
            return false; // acknowledges PSNs never sent
        }
        let mut target = target;
        let mut lost_read = false;
        for w in &r.sq {
            if psn_diff(w.first_psn, target) >= 0 {
                break;
            }
            if w.is_read() && w.rx_pkts < w.npkts {
                let limit = psn_add(w.first_psn, w.rx_pkts);
                if psn_diff(limit, target) < 0 {
                    target = limit;
                    lost_read = true;
                }
                break;
            }
        }
        if psn_diff(target, r.una) > 0 {
            let advanced = psn_diff(target, r.una) as u32;
            r.window = r.window.saturating_add(advanced).min(self.cfg.max_outstanding);
            r.una = target;
            r.retry_left = t.retry_cnt;
            r.rnr_left = t.rnr_retry;
            r.timer = if psn_diff(r.max_sent, r.una) > 0 { ack_timeout(t.timeout).map(|d| now + d) } else { None };
        }
        self.complete_front(st);
        lost_read
    }

    /// Completes finished WRs at the head of the send queue, in order.
    fn complete_front(&self, st: &mut State) {
        self.complete_head(st);
        // Never resend what is already acknowledged.
        let r = &st.req;
        if let Some(w) = r.sq.get(r.cur_idx)
            && psn_diff(psn_add(w.first_psn, r.cur_pkt), r.una) < 0
        {
            self.go_back(st);
        }
    }

    fn complete_head(&self, st: &mut State) {
        while let Some(w) = st.req.sq.front() {
            let done = if w.is_read() { w.rx_pkts == w.npkts } else { psn_diff(st.req.una, w.end_psn()) >= 0 };
            if !done {
                break;
            }
            let Some(w) = st.req.sq.pop_front() else { break };
            if st.req.cur_idx == 0 {
                st.req.cur_pkt = 0;
            } else {
                st.req.cur_idx -= 1;
            }
            if w.wr.signaled {
                let wc = Wc {
                    wr_id: w.wr.wr_id,
                    status: WcStatus::Success,
                    opcode: wc_opcode(w.wr.opcode),
                    byte_len: w.len,
                    imm: None,
                    qp_num: self.cfg.qpn,
                };
                self.push_wc(st, wc);
            }
            st.req.recycle(w.data);
        }
    }

    /// Completer: an ACK, NAK or READ response arrived.
    fn complete_on(&self, st: &mut State, pkt: &Packet, payload: &[u8], now: Instant) {
        let psn = pkt.bth().psn;
        let op = pkt.bth().opcode;
        if op == Opcode::Acknowledge {
            let Some(aeth) = pkt.aeth() else { return };
            match aeth.kind() {
                AethKind::Ack { .. } => {
                    if self.ack_upto(st, psn_add(psn, 1), now) {
                        self.shrink_window(st);
                        self.go_back(st);
                    }
                }
                AethKind::RnrNak { timer } => {
                    if st.req.rnr_until.is_some()
                        || psn_diff(psn, st.req.una) < 0
                        || psn_diff(psn, st.req.max_sent) >= 0
                    {
                        return;
                    }
                    self.ack_upto(st, psn, now);
                    if st.req.rnr_left == 0 {
                        self.fail_front(st, WcStatus::RnrRetryExcErr);
                        return;
                    }
                    if st.req.rnr_left != 7 {
                        st.req.rnr_left -= 1;
                    }
                    st.req.timer = None;
                    st.req.rnr_until = Some(now + rnr_timer(timer));
                }
                AethKind::Nak(code) => {
                    if psn_diff(psn, st.req.una) < 0 || psn_diff(psn, st.req.max_sent) >= 0 {
                        return;
                    }
                    self.ack_upto(st, psn, now);
                    if st.req.rnr_until.is_some() {
                        return;
                    }
                    let status = match code {
                        NakCode::PsnSequenceError => {
                            self.shrink_window(st);
                            self.go_back(st);
                            return;
                        }
                        NakCode::RemoteAccessError => WcStatus::RemAccessErr,
                        NakCode::RemoteOperationalError => WcStatus::RemOpErr,
                        NakCode::InvalidRequest | NakCode::InvalidRdRequest => WcStatus::RemInvReqErr,
                    };
                    self.fail_front(st, status);
                }
                AethKind::Reserved(_) => {}
            }
            return;
        }
        // READ response.
        let mtu = self.cfg.mtu;
        let Some(idx) = st.req.sq.iter().position(|w| w.contains(psn)) else { return };
        let w = &st.req.sq[idx];
        if !w.is_read() {
            return;
        }
        let got = psn_diff(psn, w.first_psn) as u32;
        if got != w.rx_pkts {
            // A response went missing: re-request the rest once per gap (a
            // duplicate needs nothing; a lost re-request waits for the timer).
            let missing = psn_add(w.first_psn, w.rx_pkts);
            if got > w.rx_pkts && st.req.read_gap != Some(missing) {
                st.req.read_gap = Some(missing);
                self.ack_upto(st, missing, now);
                self.shrink_window(st);
                self.go_back(st);
            }
            return;
        }
        let i = w.rx_pkts;
        let last = i + 1 == w.npkts;
        // A re-request after lost responses starts a new First..Last run, so
        // only whether a response ends the READ is checked.
        let expect_len = if last { w.len - i * mtu } else { mtu };
        if (op.is_last() || op.is_only()) != last || payload.len() != expect_len as usize {
            return;
        }
        if self.ack_upto(st, psn, now) {
            return;
        }
        // Everything before the READ is complete now, so it is at the front.
        let Some(w) = st.req.sq.front() else { return };
        if !w.contains(psn) {
            return;
        }
        let off = (i * mtu) as usize;
        let ok = scatter_pieces(&w.wr.sges, off, expect_len as usize).is_some_and(|pieces| {
            pieces.iter().all(|&(k, a, o, l)| self.mem.write(k, a, &payload[o..o + l], Access::LOCAL_WRITE).is_ok())
        });
        if !ok {
            self.fail_front(st, WcStatus::LocProtErr);
            return;
        }
        if let Some(w) = st.req.sq.front_mut() {
            w.rx_pkts += 1;
        }
        self.ack_upto(st, psn_add(psn, 1), now);
    }

    // ----- responder -----

    fn ack(&self, psn: u32, aeth: Aeth, out: &mut Out) {
        out.extend(
            Packet::builder(Opcode::Acknowledge, self.cfg.dest_qpn, psn).aeth(aeth).build().ok().map(OutPkt::from),
        );
    }

    fn respond(&self, st: &mut State, pkt: &Packet, payload: &[u8], out: &mut Out) {
        let bth = *pkt.bth();
        let d = psn_diff(bth.psn, st.resp.epsn);
        if d > 0 {
            // NAK once per gap. An out-of-sequence PSN below one already
            // seen (by more than a swap) means the requester went back but the expected packet
            // was lost again: NAK again rather than wait for its timer.
            let again = st.resp.nak_sent && psn_diff(bth.psn, st.resp.ahead_max) < -2;
            if !st.resp.nak_sent || again {
                st.resp.nak_sent = true;
                st.resp.ahead_max = bth.psn;
                self.ack(st.resp.epsn, Aeth::nak(NakCode::PsnSequenceError, st.resp.msn), out);
            } else if psn_diff(bth.psn, st.resp.ahead_max) > 0 {
                st.resp.ahead_max = bth.psn;
            }
            return;
        }
        if d < 0 {
            // Duplicate: never re-execute, except READs, which are idempotent.
            if bth.opcode == Opcode::RdmaReadRequest {
                if let Some(reth) = pkt.reth() {
                    self.read_response(st, bth.psn, reth, out);
                }
            } else if bth.ack_req {
                let last = psn_add(st.resp.epsn, PSN_MASK);
                self.ack(last, Aeth::ack(AETH_CREDITS_INVALID, st.resp.msn), out);
            }
            return;
        }
        match self.execute(st, pkt, payload, out) {
            Ok(()) => {}
            Err(Nak::Rnr) => {
                st.resp.nak_sent = true;
                self.ack(bth.psn, Aeth::rnr_nak(st.timers.min_rnr_timer, st.resp.msn), out);
            }
            Err(Nak::Code(code, status)) => {
                self.ack(bth.psn, Aeth::nak(code, st.resp.msn), out);
                if let Some(r) = st.resp.recv.take() {
                    let wc = Wc {
                        wr_id: r.wr.wr_id,
                        status,
                        opcode: WcOpcode::Recv,
                        byte_len: 0,
                        imm: None,
                        qp_num: self.cfg.qpn,
                    };
                    self.push_wc(st, wc);
                }
                self.enter_error(st);
            }
        }
    }

    /// Executes the expected packet; on success advances the PSN and ACKs.
    fn execute(&self, st: &mut State, pkt: &Packet, payload: &[u8], out: &mut Out) -> Result<(), Nak> {
        let bth = *pkt.bth();
        let op = bth.opcode;
        let inv = Nak::Code(NakCode::InvalidRequest, WcStatus::RemInvReqErr);
        if op == Opcode::RdmaReadRequest {
            if st.resp.recv.is_some() || st.resp.write.is_some() {
                return Err(inv);
            }
            let reth = *pkt.reth().ok_or(inv)?;
            let npkts = reth.dma_len.div_ceil(self.cfg.mtu).max(1);
            st.resp.msn = (st.resp.msn + 1) & MSN_MASK;
            if !self.read_response(st, bth.psn, &reth, out) {
                st.resp.msn = st.resp.msn.wrapping_sub(1) & MSN_MASK;
                return Err(Nak::Code(NakCode::RemoteAccessError, WcStatus::RemAccessErr));
            }
            st.resp.epsn = psn_add(bth.psn, npkts);
            st.resp.nak_sent = false;
            return Ok(());
        }
        let is_send = matches!(
            op,
            Opcode::SendFirst
                | Opcode::SendMiddle
                | Opcode::SendLast
                | Opcode::SendLastWithImmediate
                | Opcode::SendOnly
                | Opcode::SendOnlyWithImmediate
        );
        let starts = op.is_first() || op.is_only();
        // Sequence of first/middle/last within a message.
        if starts != (st.resp.recv.is_none() && st.resp.write.is_none()) {
            return Err(inv);
        }
        if !starts && is_send != st.resp.recv.is_some() {
            return Err(inv);
        }
        let ends = op.is_last() || op.is_only();
        let mut imm_wc = None;
        if is_send {
            if starts {
                let wr = st.resp.rq.pop_front().ok_or(Nak::Rnr)?;
                st.resp.recv = Some(InRecv { wr, off: 0 });
            }
            let Some(r) = st.resp.recv.as_mut() else { return Err(inv) };
            let pieces = scatter_pieces(&r.wr.sges, r.off, payload.len())
                .ok_or(Nak::Code(NakCode::InvalidRequest, WcStatus::LocLenErr))?;
            for (k, a, o, l) in pieces {
                self.mem
                    .write(k, a, &payload[o..o + l], Access::LOCAL_WRITE)
                    .map_err(|_| Nak::Code(NakCode::RemoteOperationalError, WcStatus::LocProtErr))?;
            }
            r.off += payload.len();
            if ends {
                let r = st.resp.recv.take().ok_or(inv)?;
                imm_wc = Some(Wc {
                    wr_id: r.wr.wr_id,
                    status: WcStatus::Success,
                    opcode: WcOpcode::Recv,
                    byte_len: r.off as u32,
                    imm: pkt.immdt().map(|i| i.0),
                    qp_num: self.cfg.qpn,
                });
            }
        } else {
            // RDMA WRITE.
            if starts {
                let reth = *pkt.reth().ok_or(inv)?;
                if op.is_only() && reth.dma_len as usize != payload.len() {
                    return Err(inv);
                }
                // A WRITE with immediate needs a receive before any data lands.
                if op.has_immdt() && st.resp.rq.is_empty() {
                    return Err(Nak::Rnr);
                }
                st.resp.write = Some((reth.rkey, reth.va, reth.dma_len, reth.dma_len));
            }
            let Some((rkey, va, left, total)) = st.resp.write else { return Err(inv) };
            let n = payload.len() as u32;
            if n > left || (ends && n != left) || (!ends && n != self.cfg.mtu) {
                st.resp.write = None;
                return Err(inv);
            }
            if op.is_last() && op.has_immdt() && st.resp.rq.is_empty() {
                return Err(Nak::Rnr);
            }
            if !payload.is_empty() && self.mem.write(rkey, va, payload, Access::REMOTE_WRITE).is_err() {
                st.resp.write = None;
                return Err(Nak::Code(NakCode::RemoteAccessError, WcStatus::RemAccessErr));
            }
            st.resp.write = if ends { None } else { Some((rkey, va + u64::from(n), left - n, total)) };
            if ends && op.has_immdt() {
                let wr = st.resp.rq.pop_front().ok_or(Nak::Rnr)?;
                imm_wc = Some(Wc {
                    wr_id: wr.wr_id,
                    status: WcStatus::Success,
                    opcode: WcOpcode::RecvRdmaWithImm,
                    byte_len: total,
                    imm: pkt.immdt().map(|i| i.0),
                    qp_num: self.cfg.qpn,
                });
            }
        }
        st.resp.epsn = psn_add(bth.psn, 1);
        st.resp.nak_sent = false;
        if ends {
            st.resp.msn = (st.resp.msn + 1) & MSN_MASK;
        }
        if let Some(wc) = imm_wc {
            self.push_wc(st, wc);
        }
        if bth.ack_req {
            st.resp.ack_due = Some((bth.psn, st.resp.msn));
            if st.resp.ack_due_since.is_none() {
                st.resp.ack_due_since = Some(Instant::now());
            }
            st.resp.acks_owed += 1;
            // A request in the middle of a message comes from a sender whose
            // window is filling: it waits for this ACK, so it goes now.
            if !ends || st.resp.acks_owed >= ACK_COALESCE_MAX {
                out.extend(self.take_ack(st).map(OutPkt::from));
            }
        }
        Ok(())
    }

    /// Sends the READ responses for `reth` starting at `psn`. False when
    /// the memory may not be read.
    fn read_response(&self, st: &State, psn: u32, reth: &Reth, out: &mut Out) -> bool {
        let len = reth.dma_len as usize;
        let data = if len == 0 {
            Vec::new()
        } else {
            match self.mem.read(reth.rkey, reth.va, len, Access::REMOTE_READ) {
                Ok(d) => d,
                Err(_) => return false,
            }
        };
        let mtu = self.cfg.mtu as usize;
        let npkts = len.div_ceil(mtu).max(1);
        for i in 0..npkts {
            let op = match (i == 0, i + 1 == npkts) {
                (true, true) => Opcode::RdmaReadResponseOnly,
                (true, false) => Opcode::RdmaReadResponseFirst,
                (false, true) => Opcode::RdmaReadResponseLast,
                (false, false) => Opcode::RdmaReadResponseMiddle,
            };
            let chunk = &data[i * mtu..((i + 1) * mtu).min(len)];
            let mut b = Packet::builder(op, self.cfg.dest_qpn, psn_add(psn, i as u32)).payload(chunk);
            if op.has_aeth() {
                b = b.aeth(Aeth::ack(AETH_CREDITS_INVALID, st.resp.msn));
            }
            out.extend(b.build().ok().map(OutPkt::from));
        }
        true
    }
}

/// Why the responder refused a packet.
#[derive(Debug, Clone, Copy)]
enum Nak {
    /// No receive posted.
    Rnr,
    /// NAK code, and the status of a receive it fails.
    Code(NakCode, WcStatus),
}

fn data_opcode(op: SendOp, first: bool, last: bool) -> Opcode {
    use Opcode::*;
    let imm = matches!(op, SendOp::SendWithImm | SendOp::RdmaWriteWithImm);
    let send = matches!(op, SendOp::Send | SendOp::SendWithImm);
    match (send, first, last, imm) {
        (true, true, true, false) => SendOnly,
        (true, true, true, true) => SendOnlyWithImmediate,
        (true, true, false, _) => SendFirst,
        (true, false, false, _) => SendMiddle,
        (true, false, true, false) => SendLast,
        (true, false, true, true) => SendLastWithImmediate,
        (false, true, true, false) => RdmaWriteOnly,
        (false, true, true, true) => RdmaWriteOnlyWithImmediate,
        (false, true, false, _) => RdmaWriteFirst,
        (false, false, false, _) => RdmaWriteMiddle,
        (false, false, true, false) => RdmaWriteLast,
        (false, false, true, true) => RdmaWriteLastWithImmediate,
    }
}

impl Wc {
    /// The WR_FLUSH_ERR completion of send WR `wr` on QP `qpn`.
    pub fn flushed_send(wr: &SendWr, qpn: u32) -> Wc {
        Wc {
            wr_id: wr.wr_id,
            status: WcStatus::WrFlushErr,
            opcode: wc_opcode(wr.opcode),
            byte_len: 0,
            imm: None,
            qp_num: qpn,
        }
    }

    /// The WR_FLUSH_ERR completion of receive WR `wr_id` on QP `qpn`.
    pub fn flushed_recv(wr_id: u64, qpn: u32) -> Wc {
        Wc { wr_id, status: WcStatus::WrFlushErr, opcode: WcOpcode::Recv, byte_len: 0, imm: None, qp_num: qpn }
    }
}

/// One port's frame dispatch, shared by its [`RcDriver`] thread and by
/// threads that poll for completions ([`RcPort::progress`]).
///
/// Frames are taken from the link and handled only under `rx`, so they
/// reach their QPs in arrival order whoever takes them. While someone polls,
/// the driver thread leaves the link to the poller (it only runs the timers),
/// so an application that busy-polls its CQ receives in its own thread,
/// without a thread wake-up per packet, as with NAPI busy polling.
pub struct RcPort {
    link: Arc<dyn Link>,
    qps: parking_lot::RwLock<HashMap<u32, Arc<RcQp>>>,
    rx: Mutex<()>,
    /// QPs that may hold a due ACK ([`RcPort::flush_acks`]).
    acks: Mutex<Vec<Arc<RcQp>>>,
    acks_pending: AtomicBool,
    /// Calls of [`RcPort::progress`] so far: the driver thread notices a
    /// poller by this count changing (pollers never read the clock for it).
    polls: std::sync::atomic::AtomicU64,
    epoch: Instant,
    /// When the QPs' timers run next, in microseconds since `epoch`.
    next_tick_us: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RcPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcPort").field("qps", &self.qps.read().len()).finish_non_exhaustive()
    }
}

/// Packets of one gather send at most: a 64 KiB batch holds 16 full
/// 4 KiB packets, or 64 of 1 KiB (the kernel's UDP_MAX_SEGMENTS).
const UDP_GSO_RUN: usize = 64;

/// Request packets whose ACKs are coalesced into one at most.
const ACK_COALESCE_MAX: u32 = 8;

/// How long a polling port leaves an ACK due before it sends it while idle:
/// longer than a ping-pong round trip here (8-12 µs), so that a stream of
/// requests has its ACKs coalesced rather than one per request.
const ACK_DELAY: Duration = Duration::from_micros(50);

/// How often the QPs' retransmission and RNR timers run.
const TICK: Duration = Duration::from_micros(200);

/// How long after the last [`RcPort::progress`] the driver thread leaves
/// the link to pollers.
const POLLER_GRACE: Duration = Duration::from_millis(2);

impl RcPort {
    /// Takes every frame waiting on the link, a batch at a time, and hands
    /// each to its QP. The caller holds `rx`.
    fn drain(&self) -> usize {
        const BATCH: usize = 16;
        let mut n = 0;
        // The frames of a batch mostly go to one QP: look it up once.
        let mut last: Option<(u32, Arc<RcQp>)> = None;
        loop {
            let got = self
                .link
                .recv_each(BATCH, &mut |rx| {
                    let Ok(bth) = Bth::decode(rx.bytes) else { return };
                    let qp = match &last {
                        Some((qpn, qp)) if *qpn == bth.dest_qp => Some(Arc::clone(qp)),
                        _ => {
                            let qp = self.qps.read().get(&bth.dest_qp).cloned();
                            last = qp.clone().map(|q| (bth.dest_qp, q));
                            qp
                        }
                    };
                    if let Some(qp) = qp
                        && qp.handle_frame(rx)
                    {
                        self.defer_ack(qp);
                    }
                })
                .unwrap_or(0);
            n += got;
            if got < BATCH {
                return n;
            }
        }
    }

    fn defer_ack(&self, qp: Arc<RcQp>) {
        let mut acks = self.acks.lock();
        if !acks.iter().any(|q| Arc::ptr_eq(q, &qp)) {
            acks.push(qp);
        }
        self.acks_pending.store(true, AtomicOrdering::Release);
    }

    /// Sends the ACKs the port's QPs have owed for `delay` or more; the
    /// others stay due.
    fn flush_acks_older(&self, now: Instant, delay: Duration) {
        if !self.acks_pending.swap(false, AtomicOrdering::AcqRel) {
            return;
        }
        let qps = std::mem::take(&mut *self.acks.lock());
        for qp in qps {
            if qp.flush_ack_older(now, delay) {
                self.defer_ack(qp);
            }
        }
    }

    /// Sends the ACKs the port's QPs still owe (see the module docs on
    /// ACK coalescing).
    pub fn flush_acks(&self) {
        self.flush_acks_older(Instant::now(), Duration::ZERO);
    }

    /// Receives and handles what the link holds, in the caller's thread
    /// (unless another thread is doing so). When nothing came, sends the
    /// ACKs due for `ACK_DELAY` or more and runs the timers if a tick is
    /// due. Returns the frames handled.
    pub fn progress(&self) -> usize {
        self.polls.fetch_add(1, AtomicOrdering::Relaxed);
        let n = match self.rx.try_lock() {
            Some(_g) => self.drain(),
            None => 0,
        };
        if n == 0 {
            let now = Instant::now();
            self.flush_acks_older(now, ACK_DELAY);
            self.run_timers_if_due(now);
        }
        n
    }

    /// Runs every QP's timers and sends every due ACK, if [`TICK`] has
    /// passed since the last time (whoever ran them: the port thread or a
    /// poller).
    fn run_timers_if_due(&self, now: Instant) {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let due = self.next_tick_us.load(AtomicOrdering::Relaxed);
        if now_us < due
            || self
                .next_tick_us
                .compare_exchange(
                    due,
                    now_us + TICK.as_micros() as u64,
                    AtomicOrdering::AcqRel,
                    AtomicOrdering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let qps: Vec<Arc<RcQp>> = self.qps.read().values().cloned().collect();
        for qp in qps {
            qp.tick(now);
        }
        self.flush_acks();
    }

    /// Whether a poller ran within [`POLLER_GRACE`] of `now`, given what the
    /// caller saw last: the poll count and when it last changed.
    fn polled_recently(&self, seen: &mut (u64, Option<Instant>), now: Instant) -> bool {
        let polls = self.polls.load(AtomicOrdering::Relaxed);
        if polls != seen.0 {
            *seen = (polls, Some(now));
        }
        seen.1.is_some_and(|t| now.duration_since(t) < POLLER_GRACE)
    }
}

/// A thread that feeds the frames of one [`Link`] to its QPs (by the BTH
/// destination QP) and runs their timers every 200 microseconds or so,
/// leaving both to the pollers while they poll. QPs can be added and
/// removed while it runs. Stops and joins on drop.
#[derive(Debug)]
pub struct RcDriver {
    stop: Arc<AtomicBool>,
    port: Arc<RcPort>,
    thread: Option<JoinHandle<()>>,
}

impl RcDriver {
    /// Starts driving `qps` on `link`.
    pub fn spawn(link: Arc<dyn Link>, qps: Vec<Arc<RcQp>>) -> RcDriver {
        let d = Self::start(link, "accel-rc".into());
        for qp in qps {
            d.add(qp);
        }
        d
    }

    /// Starts a driver with no QPs yet, on a thread named `name`.
    pub fn start(link: Arc<dyn Link>, name: String) -> RcDriver {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let port = Arc::new(RcPort {
            link,
            qps: parking_lot::RwLock::default(),
            rx: Mutex::new(()),
            acks: Mutex::new(Vec::new()),
            acks_pending: AtomicBool::new(false),
            polls: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            next_tick_us: std::sync::atomic::AtomicU64::new(0),
        });
        let p = Arc::clone(&port);
        let run = move || {
            let mut seen = (0, None);
            while !flag.load(AtomicOrdering::Relaxed) {
                if p.polled_recently(&mut seen, Instant::now()) {
                    // The pollers run the timers: wake rarely, since every
                    // wake-up takes a core from a busy-polling thread.
                    std::thread::sleep(POLLER_GRACE);
                } else {
                    match p.link.wait_readable(Duration::from_micros(500)) {
                        Ok(true) => {
                            let rx = p.rx.lock();
                            p.drain();
                            drop(rx);
                            // Nobody polls: nothing else would carry the ACKs soon.
                            p.flush_acks();
                        }
                        Ok(false) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
                p.run_timers_if_due(Instant::now());
            }
        };
        // A thread that cannot be spawned leaves the driver without one: its
        // QPs then never hear from the link, and time out like a dead port.
        let thread = std::thread::Builder::new().name(name).spawn(run).ok();
        RcDriver { stop, port, thread }
    }

    /// Whether the thread is running.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// The port, for pollers ([`RcPort::progress`]).
    pub fn port(&self) -> &Arc<RcPort> {
        &self.port
    }

    /// Starts delivering frames for `qp`'s number to it (replacing any QP
    /// with the same number).
    pub fn add(&self, qp: Arc<RcQp>) {
        self.port.qps.write().insert(qp.cfg.qpn, qp);
    }

    /// Stops delivering frames to QP `qpn`; returns it.
    pub fn remove(&self, qpn: u32) -> Option<Arc<RcQp>> {
        self.port.qps.write().remove(&qpn)
    }
}

impl Drop for RcDriver {
    fn drop(&mut self) {
        self.stop.store(true, AtomicOrdering::Relaxed);
        self.port.flush_acks();
        // Frames and QPs must not outlive the driver through the port's map.
        self.port.qps.write().clear();
        self.port.acks.lock().clear();
        if let Some(t) = self.thread.take() {
            // The driver may be dropped by its own thread (it held the last
            // reference to a QP whose memory kept the owner alive): it then
            // sees the flag and ends by itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
