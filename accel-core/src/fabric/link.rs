//! Links between fabric ports.
//!
//! A [`Link`] is one port's attachment to a network. It carries *frames*:
//! the UDP payload of a RoCE v2 datagram, i.e. an IB transport packet (BTH ..
//! ICRC) exactly as [`Packet::encode_for`] builds it. A link never looks
//! inside a frame beyond what a switch or a UDP socket would.
//!
//! Two networks implement it:
//! - [`VirtualSwitch`] connects ports of any devices in this process, with
//!   deterministic, seeded fault injection ([`Faults`]): loss, corruption,
//!   duplication, reordering and delay.
//! - [`UdpLink`] is RoCE v2 over UDP/IPv4, so two processes (or hosts) can
//!   connect queue pairs. Its datagrams are real RoCE v2.
//!
//! # Addresses
//!
//! A port is named by its [`Gid`]. For RoCE v2 over IPv4 the GID is the
//! IPv4-mapped IPv6 address `::ffff:a.b.c.d` ([`gid_from_ipv4`],
//! [`gid_to_ipv4`]). A virtual switch accepts any 16 bytes, but a GID that
//! is not IPv4-mapped has no IPv4 address to put in the ICRC's pseudo
//! header, so engines should attach IPv4-mapped GIDs.
//!
//! # The ICRC on a link
//!
//! The ICRC of a RoCE v2 packet covers the IPv4 and UDP headers too. A link
//! only carries the UDP payload, so both ends rebuild those headers:
//!
//! - the sender encodes with
//!   `Packet::encode_for(gid_to_ipv4(link.gid()), gid_to_ipv4(dst), link.src_port())`;
//! - the receiver checks with
//!   `Packet::decode_from(gid_to_ipv4(rx.src), gid_to_ipv4(link.gid()), rx.src_port, &rx.frame)`.
//!
//! [`Link::src_port`] and [`Received::src_port`] exist for this: the UDP
//! source port is covered by the ICRC. On a [`VirtualSwitch`] both are
//! [`ROCE_V2_UDP_PORT`], a convention, since there is no UDP header.
//!
//! What `encode_for` assumes against what the Linux kernel writes for a
//! [`UdpLink`] datagram (an unconnected, bound IPv4 UDP socket):
//!
//! | Field | ICRC | `encode_for` assumes | kernel writes |
//! |---|---|---|---|
//! | IPv4 version, IHL | covered | `0x45` | `0x45` (no options) |
//! | TOS (DSCP, ECN) | masked | 0 | anything |
//! | total length | covered | 28 + frame | 28 + frame |
//! | identification | **covered** | 0 (*i* in a GSO batch) | the same, see below |
//! | flags, fragment offset | **covered** | DF, 0 | DF, 0, see below |
//! | TTL | masked | 64 | anything |
//! | protocol | covered | 17 | 17 |
//! | header checksum | masked | correct | correct |
//! | source, destination address | covered | the two GIDs | the bound address, the peer |
//! | UDP source port | covered | [`Link::src_port`] | the bound port |
//! | UDP destination port | **covered** | 4791 | the peer's port |
//! | UDP length | covered | 8 + frame | 8 + frame |
//! | UDP checksum | masked | 0 | computed |
//!
//! Caveats, all about the covered fields the kernel chooses:
//! - **IPv4 identification.** Linux writes 0 for a datagram with DF set sent
//!   on an *unconnected* socket in `IP_PMTUDISC_DO` mode, and numbers the
//!   segments of a UDP GSO batch 0, 1, 2... from there. In the default mode
//!   (`IP_PMTUDISC_WANT`) it uses a per-destination counter instead (seen on
//!   Linux 6.18), and a connected socket a per-socket counter. [`UdpLink`]
//!   therefore sets `IP_PMTUDISC_DO` and never calls `connect`; segment *i*
//!   of a batch is encoded for identification *i*
//!   ([`Packet::encode_for_id`](crate::roce::packet::Packet::encode_for_id)).
//! - **DF and fragmentation.** In `IP_PMTUDISC_DO` mode every datagram has
//!   DF and none is fragmented: one larger than the path MTU fails with
//!   EMSGSIZE. Keep frames within the path MTU (28 bytes of IPv4 and UDP
//!   headers plus the frame), as RoCE itself requires: 4096-byte IB MTU
//!   needs jumbo frames, 1024 fits a 1500-byte Ethernet MTU.
//! - **Source address.** The ICRC covers it, so [`UdpLink::bind`] refuses
//!   the unspecified address (the kernel would pick one per route).
//! - **Destination port.** `encode_for` and `decode_from` both assume 4791.
//!   A link sending to another port (two processes on one host, see
//!   [`UdpLink::with_peer_port`] and [`UdpLink::add_peer`]) still agrees
//!   with its peer, but the ICRC then does not match the header on the
//!   wire: a capture tool that verifies the ICRC reports a mismatch there,
//!   and tools only dissect port 4791 as RoCE v2 by default. Interoperable
//!   RoCE v2 uses destination port 4791.
//!
//! A UDP socket does not show the receiver the IP header. `decode_from`
//! rebuilds it from the datagram's source address and port and the local
//! address, under the assumptions above; any difference in a covered field
//! fails the ICRC check.

use rustc_hash::FxHashMap as HashMap;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::roce::packet::{BTH_LEN, ROCE_V2_UDP_PORT};
#[cfg(doc)]
use crate::roce::packet::{Packet, PacketError};

/// A port's global identifier: 16 bytes, an IPv6 address. RoCE v2 over IPv4
/// uses the IPv4-mapped form `::ffff:a.b.c.d`.
pub type Gid = [u8; 16];

/// The largest frame a link carries: the largest UDP payload over IPv4
/// (65535 - 20 - 8 bytes).
pub const MAX_FRAME_LEN: usize = 65_507;

/// Default capacity, in frames, of a [`VirtualSwitch`] port's receive queue.
pub const RX_QUEUE_FRAMES: usize = 65_536;

/// How long a [`VirtualSwitch`] holds a frame drawn for reordering when no
/// next frame to the same destination comes.
pub const REORDER_RELEASE: Duration = Duration::from_millis(1);

/// Receive buffer of a [`UdpLink`]: larger than any IPv4 UDP payload.
const UDP_RECV_BUF: usize = 65_536;

/// Stands in for "never" when a deadline overflows [`Instant`].
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The IPv4-mapped GID `::ffff:a.b.c.d` of an IPv4 address.
pub fn gid_from_ipv4(ip: Ipv4Addr) -> Gid {
    ip.to_ipv6_mapped().octets()
}

/// The IPv4 address of an IPv4-mapped GID, or `None` for any other GID.
pub fn gid_to_ipv4(gid: &Gid) -> Option<Ipv4Addr> {
    Ipv6Addr::from(*gid).to_ipv4_mapped()
}

/// Why a link operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No port with the destination GID is reachable: not attached to the
    /// switch, or (UDP) neither a known peer nor an IPv4-mapped GID.
    #[error("unknown destination GID")]
    UnknownDestination,
    /// The GID is already attached to this switch.
    #[error("GID already attached to this switch")]
    GidInUse,
    /// The network is gone. The links of this module do not return it
    /// today (a switch port keeps its switch alive); it is for links that
    /// can be torn down.
    #[error("link closed")]
    Closed,
    /// The operating system failed a socket operation.
    #[error("link I/O error: {0}")]
    Io(String),
    /// The frame is larger than [`MAX_FRAME_LEN`].
    #[error("frame larger than {MAX_FRAME_LEN} bytes")]
    TooLarge,
}

fn io_err(e: io::Error) -> LinkError {
    LinkError::Io(e.to_string())
}

/// A frame taken off a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// GID of the sending port.
    pub src: Gid,
    /// UDP source port the ICRC covers: the datagram's source port on a
    /// [`UdpLink`], [`ROCE_V2_UDP_PORT`] on a [`VirtualSwitch`].
    pub src_port: u16,
    /// The UDP payload: an IB transport packet with its ICRC, unless the
    /// network corrupted it.
    pub frame: Vec<u8>,
    /// The IPv4 identification the datagram most likely carried, which
    /// the ICRC covers but a UDP socket does not show: the frame's index in
    /// a GRO batch on a [`UdpLink`] (GSO numbers segments from 0), else 0.
    /// See [`Packet::decode_from_id`](crate::roce::packet::Packet::decode_from_id).
    pub ip_id: u16,
}

/// A frame a link lends for the duration of a call ([`Link::recv_each`]):
/// the fields of [`Received`], the bytes borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// GID of the sending port.
    pub src: Gid,
    /// UDP source port the ICRC covers (see [`Received::src_port`]).
    pub src_port: u16,
    /// The likely IPv4 identification (see [`Received::ip_id`]).
    pub ip_id: u16,
    /// The UDP payload.
    pub bytes: &'a [u8],
}

impl Received {
    /// This frame, lent.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame { src: self.src, src_port: self.src_port, ip_id: self.ip_id, bytes: &self.frame }
    }
}

/// Counters of a link (or, from [`VirtualSwitch::stats`], of a whole
/// switch). Fault counters count each affected frame once, at the sender:
/// they describe what the network did to the frames this port sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LinkStats {
    /// Frames accepted by [`Link::send`] (calls that returned `Ok`).
    pub sent: u64,
    /// Frames returned by [`Link::recv`].
    pub received: u64,
    /// Frames the network discarded: lost, rejected for an unknown
    /// destination, or arriving at a full receive queue or a detached port
    /// (switch), or refused by a full socket send buffer (UDP).
    pub dropped: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames with one bit flipped.
    pub corrupted: u64,
    /// Frames held back and delivered after the next frame.
    pub reordered: u64,
    /// Frames delayed by [`Faults::delay`].
    pub delayed: u64,
}

#[derive(Clone, Copy)]
enum Stat {
    Sent,
    Received,
    Dropped,
    Duplicated,
    Corrupted,
    Reordered,
    Delayed,
}

/// Atomic [`LinkStats`].
#[derive(Default)]
struct Counters([AtomicU64; 7]);

impl Counters {
    fn bump(&self, stat: Stat) {
        self.add(stat, 1);
    }

    fn add(&self, stat: Stat, n: u64) {
        if let Some(c) = self.0.get(stat as usize) {
            c.fetch_add(n, Atomic::Relaxed);
        }
    }

    fn snapshot(&self) -> LinkStats {
        let [sent, received, dropped, duplicated, corrupted, reordered, delayed] =
            self.0.each_ref().map(|c| c.load(Atomic::Relaxed));
        LinkStats { sent, received, dropped, duplicated, corrupted, reordered, delayed }
    }
}

/// One port's attachment to a network.
///
/// Frames are UDP payloads: IB transport packets with their ICRC, as
/// [`Packet::encode_for`] builds them with this link's [`Link::gid`] and
/// [`Link::src_port`]. See the module documentation for the ICRC.
pub trait Link: Send + Sync {
    /// This port's GID.
    fn gid(&self) -> Gid;

    /// The UDP source port of the frames this link sends, which their ICRC
    /// covers: the `src_port` to pass to [`Packet::encode_for`]. The default
    /// is [`ROCE_V2_UDP_PORT`].
    fn src_port(&self) -> u16 {
        ROCE_V2_UDP_PORT
    }

    /// Sends one frame to the port `dst`. `Ok` means the network accepted
    /// the frame, not that it arrives: networks lose frames.
    fn send(&self, dst: &Gid, frame: Vec<u8>) -> Result<(), LinkError>;

    /// Waits up to `timeout` for a frame. `Ok(None)` when none came in
    /// time; a zero timeout polls.
    fn recv(&self, timeout: Duration) -> Result<Option<Received>, LinkError>;

    /// Sends `frames`, in order, to the port `dst`, in one system call
    /// where the link can ([`UdpLink`] uses sendmmsg(2)). As with
    /// [`Link::send`], `Ok` promises nothing about arrival. A frame the
    /// link refuses is skipped, the others are still sent, and the first
    /// such error is returned.
    fn send_many(&self, dst: &Gid, frames: Vec<Vec<u8>>) -> Result<(), LinkError> {
        let mut result = Ok(());
        for frame in frames {
            if let Err(e) = self.send(dst, frame)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    /// How many frames [`Link::send_segments`] can hand the network as one
    /// batch: 1 when the link has no segmentation offload (the default).
    fn gso_max_segments(&self) -> usize {
        1
    }

    /// Sends `frames` as one batch the network segments (UDP GSO on a
    /// [`UdpLink`]): all of the same length except a shorter last one, at
    /// most [`Link::gso_max_segments`], together at most [`MAX_FRAME_LEN`]
    /// bytes. Frame *i* leaves as a datagram with IPv4 identification *i*,
    /// so its ICRC must be computed for that
    /// ([`Packet::encode_for_id`](crate::roce::packet::Packet::encode_for_id)).
    /// Anything else, and the default, is [`Link::send_many`].
    fn send_segments(&self, dst: &Gid, frames: Vec<Vec<u8>>) -> Result<(), LinkError> {
        self.send_many(dst, frames)
    }

    /// [`Link::send_segments`] of the frames laid end to end in `buf`, each
    /// `seg` bytes but the last (which may be shorter; `seg` 0 means one
    /// frame): a sender encodes a batch into one reused buffer. The default
    /// cuts it into frames.
    fn send_segmented(&self, dst: &Gid, buf: &[u8], seg: usize) -> Result<(), LinkError> {
        let seg = if seg == 0 { buf.len().max(1) } else { seg };
        self.send_segments(dst, buf.chunks(seg).map(<[u8]>::to_vec).collect())
    }

    /// [`Link::send_segmented`] of the bytes of `iov` laid end to end: a
    /// gather list, so that a sender hands headers and payload over from
    /// where they are, without copying them together. `seg` 0, or at least
    /// the total length, sends one frame. The default copies the pieces
    /// into one buffer.
    fn send_gather(&self, dst: &Gid, iov: &[IoSlice<'_>], seg: usize) -> Result<(), LinkError> {
        let buf = gather(iov);
        if seg == 0 || buf.len() <= seg { self.send(dst, buf) } else { self.send_segmented(dst, &buf, seg) }
    }

    /// Appends to `out` the frames of up to `max` datagrams that are
    /// already waiting, without waiting, and returns how many frames it
    /// appended (in one system call where the link can: [`UdpLink`] uses
    /// recvmmsg(2), and a GRO datagram holds several frames). Fewer than
    /// `max` means the link held no more at that moment.
    fn recv_many(&self, max: usize, out: &mut Vec<Received>) -> Result<usize, LinkError> {
        let mut n = 0;
        while n < max {
            match self.recv(Duration::ZERO)? {
                Some(rx) => out.push(rx),
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }

    /// Like [`Link::recv_many`], but hands each frame to `f` instead of
    /// returning it, lent rather than copied where the link can
    /// ([`UdpLink`] lends them straight from its receive buffers). `f` must
    /// not receive on this link.
    fn recv_each(&self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, LinkError> {
        let mut frames = Vec::new();
        let n = self.recv_many(max, &mut frames)?;
        for rx in &frames {
            f(rx.as_frame());
        }
        Ok(n)
    }

    /// Waits up to `timeout` until a frame can be received, without taking
    /// it, so that a thread can sleep on the link while another takes the
    /// frames (`recv` with a zero timeout) under a lock of its own. `true`
    /// means a frame is probably there. The default sleeps briefly and says
    /// `true`.
    fn wait_readable(&self, timeout: Duration) -> Result<bool, LinkError> {
        std::thread::sleep(timeout.min(Duration::from_micros(100)));
        Ok(true)
    }

    /// This port's counters.
    fn stats(&self) -> LinkStats;
}

/// Faults a [`VirtualSwitch`] injects. Probabilities are per sent frame;
/// values at or below 0 (or NaN) never happen, values at or above 1 always
/// do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Seed of the switch's PRNG.
    pub seed: u64,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is held back and delivered after the next frame
    /// to the same destination.
    pub reorder: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability one bit of a frame is flipped.
    pub corrupt: f64,
    /// How long a delayed frame is held.
    pub delay: Duration,
    /// Probability a frame is delayed by `delay`.
    pub delay_prob: f64,
}

impl Faults {
    /// A perfect network: no faults (seed 0).
    pub const fn none() -> Self {
        Faults {
            seed: 0,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
            delay_prob: 0.0,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

/// SplitMix64: small, fast, and good enough for fault injection.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for NaN).
    fn chance(&mut self, p: f64) -> bool {
        self.next_unit() < p
    }
}

/// What happens to one sent frame. Every frame takes the same number of
/// draws, so frame n's fate depends only on the seed and n.
struct Fate {
    lost: bool,
    corrupt: bool,
    corrupt_bit: u64,
    duplicate: bool,
    reorder: bool,
    delay: bool,
}

impl Fate {
    fn draw(rng: &mut SplitMix64, f: &Faults) -> Fate {
        Fate {
            lost: rng.chance(f.loss),
            corrupt: rng.chance(f.corrupt),
            corrupt_bit: rng.next_u64(),
            duplicate: rng.chance(f.duplicate),
            reorder: rng.chance(f.reorder),
            delay: rng.chance(f.delay_prob),
        }
    }
}

/// Flips one bit chosen by `draw`. The bit lies after the BTH when the
/// frame is longer than one, else anywhere. False for an empty frame.
fn flip_bit(frame: &mut [u8], draw: u64) -> bool {
    let start = if frame.len() > BTH_LEN { BTH_LEN } else { 0 };
    let bits = (frame.len() - start) as u64 * 8;
    if bits == 0 {
        return false;
    }
    let bit = draw % bits;
    let Some(byte) = frame.get_mut(start + (bit / 8) as usize) else {
        return false;
    };
    *byte ^= 1 << (bit % 8);
    true
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(FAR_FUTURE)).unwrap_or(now)
}

/// A frame inside the switch.
#[derive(Clone)]
struct InFlight {
    src: Gid,
    data: Vec<u8>,
    /// The sending port's counters, charged with what happens to the frame.
    sender: Arc<Counters>,
}

enum TimerEvent {
    /// A delayed frame is due.
    Deliver(InFlight),
    /// The frame held (for reordering) under this timer's `seq` is due.
    Release,
}

struct Timer {
    due: Instant,
    seq: u64,
    dst: Gid,
    event: TimerEvent,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// A port's bounded receive queue.
struct RxQueue {
    frames: Mutex<VecDeque<(Gid, Vec<u8>)>>,
    ready: Condvar,
    capacity: usize,
}

struct PortEntry {
    id: u64,
    rx: Arc<RxQueue>,
    /// The frame held back for reordering, with its release timer's seq.
    held: Option<(u64, InFlight)>,
}

struct SwitchState {
    faults: Faults,
    rng: SplitMix64,
    reorder_release: Duration,
    ports: HashMap<Gid, PortEntry>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_seq: u64,
    next_port_id: u64,
}

impl SwitchState {
    fn seq(&mut self) -> u64 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }
}

/// An in-process switch connecting ports of any devices in this process,
/// with deterministic fault injection.
///
/// # Faults
///
/// Each frame accepted by [`Link::send`] draws its fate from one PRNG seeded
/// with [`Faults::seed`], in send order, always taking the same number of
/// draws: the fate of the n-th frame sent through the switch depends only on
/// the seed and n. The fate, in this order:
///
/// 1. **loss** (`loss`): the frame is dropped, nothing else applies;
/// 2. **corruption** (`corrupt`): one bit is flipped. The bit lies after
///    the 12-byte BTH (extension headers, payload, pad or the ICRC itself)
///    whenever the frame is longer than a BTH, so the receiver's ICRC check
///    always catches it as [`PacketError::BadIcrc`]. The BTH is spared
///    because its byte 4 (F, B, resv6) is *variant* (outside the ICRC, a
///    switch may rewrite it) and because a flipped opcode or version would
///    surface as another decode error. Shorter frames get any bit flipped;
///    empty frames cannot be corrupted;
/// 3. **duplication** (`duplicate`): the frame is delivered twice in a row;
/// 4. **delay** (`delay_prob`, when `delay` is nonzero): the frame (both
///    copies) arrives `delay` after it was sent. Later frames may overtake
///    it. A delayed frame is not also reordered;
/// 5. **reordering** (`reorder`): the frame is held back and delivered right
///    after the next frame to the same destination, or after the reorder
///    release time ([`REORDER_RELEASE`] by default) if none comes first, so
///    reordering never loses a frame. A port holds at most one frame: a
///    frame drawn for reordering while another is held is delivered, then
///    the held one. Each reordering thus swaps one pair of frames.
///
/// Given the same seed and the same sends, the switch makes the same
/// decisions and the counters match. The delivered sequence matches too as
/// long as timers do not race the sends (a held frame released by its timer
/// instead of by the next frame, a delay shorter than the gap between
/// sends).
///
/// # Delivery
///
/// Each port has a bounded receive queue ([`RX_QUEUE_FRAMES`] frames by
/// default); a frame arriving at a full queue is dropped and counted as
/// such. Sending to a GID not attached returns
/// [`LinkError::UnknownDestination`] and counts the frame as dropped,
/// without drawing a fate.
///
/// The switch has no thread. Timers (delays and reorder releases) are
/// serviced by every send, receive and stats read on any of its ports; a
/// port waiting in [`Link::recv`] wakes up when the next timer is due. So a
/// frame is never late as seen through the [`Link`] API, and nothing keeps
/// running once the switch is dropped. A port stays
/// attached until dropped, and keeps the switch alive.
pub struct VirtualSwitch {
    state: Mutex<SwitchState>,
    totals: Counters,
}

impl fmt::Debug for VirtualSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("VirtualSwitch")
            .field("faults", &st.faults)
            .field("ports", &st.ports.len())
            .field("pending_timers", &st.timers.len())
            .finish()
    }
}

impl VirtualSwitch {
    /// A switch with no ports, injecting `faults`.
    pub fn new(faults: Faults) -> Arc<VirtualSwitch> {
        VirtualSwitch::with_reorder_release(faults, REORDER_RELEASE)
    }

    /// A switch whose reordered frames wait at most `release` for the next
    /// frame (instead of [`REORDER_RELEASE`]). A long release makes the
    /// delivered sequence independent of timing when sends come in bursts.
    pub fn with_reorder_release(faults: Faults, release: Duration) -> Arc<VirtualSwitch> {
        Arc::new(VirtualSwitch {
            state: Mutex::new(SwitchState {
                faults,
                rng: SplitMix64(faults.seed),
                reorder_release: release,
                ports: HashMap::default(),
                timers: BinaryHeap::new(),
                next_seq: 0,
                next_port_id: 0,
            }),
            totals: Counters::default(),
        })
    }

    /// Attaches a port with the GID `gid` and a receive queue of
    /// [`RX_QUEUE_FRAMES`] frames. The port detaches when dropped.
    pub fn attach(self: &Arc<Self>, gid: Gid) -> Result<Arc<dyn Link>, LinkError> {
        self.attach_with_capacity(gid, RX_QUEUE_FRAMES)
    }

    /// Attaches a port whose receive queue holds `capacity` frames.
    pub fn attach_with_capacity(self: &Arc<Self>, gid: Gid, capacity: usize) -> Result<Arc<dyn Link>, LinkError> {
        let mut st = self.state.lock();
        if st.ports.contains_key(&gid) {
            return Err(LinkError::GidInUse);
        }
        st.next_port_id = st.next_port_id.wrapping_add(1);
        let id = st.next_port_id;
        let rx = Arc::new(RxQueue { frames: Mutex::new(VecDeque::new()), ready: Condvar::new(), capacity });
        st.ports.insert(gid, PortEntry { id, rx: Arc::clone(&rx), held: None });
        drop(st);
        Ok(Arc::new(SwitchPort { switch: Arc::clone(self), gid, id, rx, counters: Arc::new(Counters::default()) }))
    }

    /// The faults the switch injects.
    pub fn faults(&self) -> Faults {
        self.state.lock().faults
    }

    /// Replaces the faults and reseeds the PRNG with `faults.seed`. Frames
    /// already delayed or held keep their fate.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.state.lock();
        st.faults = faults;
        st.rng = SplitMix64(faults.seed);
    }

    /// Counters summed over every port, attached now or before.
    pub fn stats(&self) -> LinkStats {
        self.service_now();
        self.totals.snapshot()
    }

    /// Fires every timer due now.
    fn service_now(&self) {
        let mut st = self.state.lock();
        self.service(&mut st, Instant::now());
    }

    fn count(&self, sender: &Counters, stat: Stat) {
        sender.bump(stat);
        self.totals.bump(stat);
    }

    /// Puts a frame in a receive queue, or drops it if the queue is full.
    fn push(&self, rx: &RxQueue, f: InFlight) {
        let mut q = rx.frames.lock();
        if q.len() >= rx.capacity {
            drop(q);
            self.count(&f.sender, Stat::Dropped);
            return;
        }
        q.push_back((f.src, f.data));
        rx.ready.notify_one();
    }

    /// Hands a frame to the destination port: held back if `hold` and the
    /// port holds nothing yet, else queued, followed by any held frame.
    fn forward(&self, st: &mut SwitchState, dst: Gid, f: InFlight, hold: bool, now: Instant) {
        if hold && st.ports.get(&dst).is_some_and(|p| p.held.is_none()) {
            let seq = st.seq();
            let due = later(now, st.reorder_release);
            st.timers.push(Reverse(Timer { due, seq, dst, event: TimerEvent::Release }));
            if let Some(port) = st.ports.get_mut(&dst) {
                self.count(&f.sender, Stat::Reordered);
                port.held = Some((seq, f));
                // A receiver waiting on this port must wake for the release.
                let _q = port.rx.frames.lock();
                port.rx.ready.notify_all();
            }
            return;
        }
        let Some(port) = st.ports.get_mut(&dst) else {
            self.count(&f.sender, Stat::Dropped);
            return;
        };
        self.push(&port.rx, f);
        if let Some((_, held)) = port.held.take() {
            self.push(&port.rx, held);
        }
    }

    /// Fires every timer due at `now`, in time order.
    fn service(&self, st: &mut SwitchState, now: Instant) {
        while st.timers.peek().is_some_and(|Reverse(t)| t.due <= now) {
            let Some(Reverse(timer)) = st.timers.pop() else { break };
            match timer.event {
                TimerEvent::Deliver(f) => self.forward(st, timer.dst, f, false, now),
                TimerEvent::Release => {
                    if let Some(port) = st.ports.get_mut(&timer.dst)
                        && port.held.as_ref().is_some_and(|(seq, _)| *seq == timer.seq)
                        && let Some((_, held)) = port.held.take()
                    {
                        self.push(&port.rx, held);
                    }
                }
            }
        }
    }
}

/// A port attached to a [`VirtualSwitch`].
struct SwitchPort {
    switch: Arc<VirtualSwitch>,
    gid: Gid,
    id: u64,
    rx: Arc<RxQueue>,
    counters: Arc<Counters>,
}

impl Link for SwitchPort {
    fn gid(&self) -> Gid {
        self.gid
    }

    fn send(&self, dst: &Gid, frame: Vec<u8>) -> Result<(), LinkError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(LinkError::TooLarge);
        }
        let sw = &*self.switch;
        let mut st = sw.state.lock();
        let now = Instant::now();
        sw.service(&mut st, now);
        if !st.ports.contains_key(dst) {
            sw.count(&self.counters, Stat::Dropped);
            return Err(LinkError::UnknownDestination);
        }
        let faults = st.faults;
        let fate = Fate::draw(&mut st.rng, &faults);
        sw.count(&self.counters, Stat::Sent);
        if fate.lost {
            sw.count(&self.counters, Stat::Dropped);
            return Ok(());
        }
        let mut frame = frame;
        if fate.corrupt && flip_bit(&mut frame, fate.corrupt_bit) {
            sw.count(&self.counters, Stat::Corrupted);
        }
        let first = InFlight { src: self.gid, data: frame, sender: Arc::clone(&self.counters) };
        let second = fate.duplicate.then(|| first.clone());
        if second.is_some() {
            sw.count(&self.counters, Stat::Duplicated);
        }
        if fate.delay && !faults.delay.is_zero() {
            sw.count(&self.counters, Stat::Delayed);
            let due = later(now, faults.delay);
            for f in std::iter::once(first).chain(second) {
                let seq = st.seq();
                st.timers.push(Reverse(Timer { due, seq, dst: *dst, event: TimerEvent::Deliver(f) }));
            }
            if let Some(port) = st.ports.get(dst) {
                let _q = port.rx.frames.lock();
                port.rx.ready.notify_all();
            }
        } else {
            sw.forward(&mut st, *dst, first, fate.reorder, now);
            if let Some(f) = second {
                sw.forward(&mut st, *dst, f, false, now);
            }
        }
        Ok(())
    }

    fn recv(&self, timeout: Duration) -> Result<Option<Received>, LinkError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some((src, frame)) = self.rx.frames.lock().pop_front() {
                self.switch.count(&self.counters, Stat::Received);
                return Ok(Some(Received { src, src_port: ROCE_V2_UDP_PORT, frame, ip_id: 0 }));
            }
            let left = deadline.map_or(FAR_FUTURE, |d| d.saturating_duration_since(Instant::now()));
            if !self.wait_readable(left)? {
                return Ok(None);
            }
        }
    }

    fn wait_readable(&self, timeout: Duration) -> Result<bool, LinkError> {
        let sw = &*self.switch;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let mut st = sw.state.lock();
            let now = Instant::now();
            sw.service(&mut st, now);
            let next_timer = st.timers.peek().map(|Reverse(t)| t.due);
            // Take the queue before letting go of the switch, so a sender
            // adding an earlier timer cannot notify in between.
            let mut q = self.rx.frames.lock();
            drop(st);
            if !q.is_empty() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            let wake = match (deadline, next_timer) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, None) => d,
                (None, t) => t,
            };
            match wake {
                Some(at) => {
                    self.rx.ready.wait_until(&mut q, at);
                }
                None => self.rx.ready.wait(&mut q),
            }
        }
    }

    /// Fires due timers first, so the fates of delayed and held frames
    /// are counted.
    fn stats(&self) -> LinkStats {
        self.switch.service_now();
        self.counters.snapshot()
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        let sw = &*self.switch;
        let mut st = sw.state.lock();
        if st.ports.get(&self.gid).is_some_and(|p| p.id == self.id)
            && let Some(port) = st.ports.remove(&self.gid)
            && let Some((_, held)) = port.held
        {
            sw.count(&held.sender, Stat::Dropped);
        }
    }
}

/// RoCE v2 over UDP/IPv4: frames are the payloads of UDP datagrams, sent
/// from the bound address to the destination GID's IPv4 address and port
/// 4791 (or another port, see [`UdpLink::with_peer_port`] and
/// [`UdpLink::add_peer`]). See the module documentation for how the ICRC
/// relates to the headers the kernel adds.
///
/// The GID is the IPv4-mapped bound address, so every link bound to one
/// address has the same GID; links on one host tell each other apart by
/// port, through the peer map.
///
/// The socket is non-blocking: `recv` drains it under a short lock and
/// waits in poll(2) without one, so concurrent receivers never wait for
/// each other's timeouts. Sends never wait for receivers; a full send
/// buffer drops the frame (counted), as a congested network would.
pub struct UdpLink {
    socket: UdpSocket,
    local: SocketAddrV4,
    gid: Gid,
    peer_port: u16,
    peers: RwLock<HashMap<Gid, SocketAddrV4>>,
    counters: Counters,
    /// The receive buffers, one per datagram of a recvmmsg(2) (receivers
    /// take turns for them, never while waiting).
    rx: Mutex<Vec<Vec<u8>>>,
    /// UDP GSO for sending and GRO for receiving are on.
    gso: std::sync::atomic::AtomicBool,
    /// Frames of a GRO datagram that [`Link::recv`] took but could not
    /// return yet (it returns one frame at a time).
    backlog: Mutex<VecDeque<Received>>,
}

/// The bytes of `iov` in one buffer.
fn gather(iov: &[IoSlice<'_>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(iov.iter().map(|s| s.len()).sum());
    for s in iov {
        buf.extend_from_slice(s);
    }
    buf
}

/// Segments of one UDP GSO send at most (the kernel's UDP_MAX_SEGMENTS).
const UDP_GSO_MAX_SEGMENTS: usize = 64;

/// Sets IP_MTU_DISCOVER (ip(7)) on `socket`; nix has no wrapper for it.
fn set_mtu_discover(socket: &UdpSocket, mode: nix::libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads size_of::<c_int>() bytes from &mode, a live
    // c_int; the fd is the socket's, open for the duration of the call.
    let r = unsafe {
        nix::libc::setsockopt(
            socket.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_MTU_DISCOVER,
            (&mode as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Datagrams a [`UdpLink`] takes in one recvmmsg(2).
const UDP_RECV_BATCH: usize = 16;

/// Room for the control messages of one datagram: a UDP_GRO segment size
/// (an int), with headroom.
const UDP_CMSG_WORDS: usize = 8;

/// The headers of one recvmmsg(2) into up to [`UDP_RECV_BATCH`] buffers,
/// built on the stack for each call: nothing is allocated, and every
/// header's control length starts full (the kernel shrinks it to what it
/// wrote, so headers cannot be reused as they are).
struct RecvBatch<'a> {
    bufs: &'a mut [Vec<u8>],
    hdrs: [nix::libc::mmsghdr; UDP_RECV_BATCH],
    iovs: [nix::libc::iovec; UDP_RECV_BATCH],
    names: [nix::libc::sockaddr_in; UDP_RECV_BATCH],
    cmsgs: [[u64; UDP_CMSG_WORDS]; UDP_RECV_BATCH],
}

impl<'a> RecvBatch<'a> {
    fn new(bufs: &'a mut [Vec<u8>]) -> Self {
        // SAFETY: mmsghdr, iovec and sockaddr_in are plain C structs of
        // integers and raw pointers, for which all-zero bytes are valid
        // values (null pointers, zero lengths).
        let (hdrs, iovs, names) = unsafe { (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed()) };
        RecvBatch { bufs, hdrs, iovs, names, cmsgs: [[0; UDP_CMSG_WORDS]; UDP_RECV_BATCH] }
    }

    /// Receives without waiting; the number of datagrams taken.
    fn recv(&mut self, socket: &UdpSocket) -> Result<usize, nix::errno::Errno> {
        use std::os::fd::AsRawFd;
        let k = self.bufs.len().min(UDP_RECV_BATCH);
        for i in 0..k {
            self.iovs[i] = nix::libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.bufs[i].len() };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut self.names[i]).cast();
            h.msg_namelen = std::mem::size_of::<nix::libc::sockaddr_in>() as nix::libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of_val(&self.cmsgs[i]) as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: the first k headers point at live, writable storage of
        // the lengths they give: self.names[i], self.iovs[i] (which points
        // into self.bufs[i], borrowed mutably for 'a), self.cmsgs[i]. All of
        // it outlives the call, which writes only there and returns.
        let r = unsafe {
            nix::libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                k as nix::libc::c_uint,
                nix::libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 { Err(nix::errno::Errno::last()) } else { Ok((r as usize).min(k)) }
    }

    /// Datagram `i` of those received: its source, its bytes, for a GRO
    /// batch the segment size, and whether the kernel cut it short
    /// (MSG_TRUNC). `None` without an IPv4 source address.
    fn datagram(&self, i: usize) -> Option<(SocketAddrV4, &[u8], Option<usize>, bool)> {
        let h = &self.hdrs[i];
        if (h.msg_hdr.msg_namelen as usize) < std::mem::size_of::<nix::libc::sockaddr_in>() {
            return None;
        }
        let name = &self.names[i];
        let src = SocketAddrV4::new(Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)), u16::from_be(name.sin_port));
        let len = (h.msg_len as usize).min(self.bufs[i].len());
        // size_t with glibc, socklen_t with musl.
        #[allow(clippy::unnecessary_cast)]
        let ctl_len = (h.msg_hdr.msg_controllen as usize).min(UDP_CMSG_WORDS * 8);
        let ctl = &zerocopy::IntoBytes::as_bytes(&self.cmsgs[i])[..ctl_len];
        let truncated = h.msg_hdr.msg_flags & nix::libc::MSG_TRUNC != 0;
        Some((src, &self.bufs[i][..len], gro_segment(ctl), truncated))
    }
}

/// The UDP_GRO segment size among the control messages `ctl` (struct
/// cmsghdr: length, level, type, then the data at the aligned header size).
fn gro_segment(mut ctl: &[u8]) -> Option<usize> {
    const HDR: usize = std::mem::size_of::<nix::libc::cmsghdr>();
    const LEN: usize = std::mem::size_of::<usize>();
    while ctl.len() >= HDR {
        let len = usize::from_ne_bytes(ctl[..LEN].try_into().ok()?);
        let level = i32::from_ne_bytes(ctl[LEN..LEN + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(ctl[LEN + 4..LEN + 8].try_into().ok()?);
        if len < HDR || len > ctl.len() {
            return None;
        }
        if level == nix::libc::SOL_UDP && kind == nix::libc::UDP_GRO && len >= HDR + 4 {
            return usize::try_from(i32::from_ne_bytes(ctl[HDR..HDR + 4].try_into().ok()?)).ok();
        }
        ctl = ctl.get(len.next_multiple_of(LEN)..)?;
    }
    None
}

impl fmt::Debug for UdpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpLink")
            .field("local", &self.local)
            .field("peer_port", &self.peer_port)
            .field("peers", &self.peers.read().len())
            .finish()
    }
}

impl UdpLink {
    /// Binds a UDP socket to `local`. Use port [`ROCE_V2_UDP_PORT`] to
    /// receive standard RoCE v2 traffic, or 0 for any free port. The address
    /// must be a specific unicast address: the ICRC covers the source
    /// address, which the kernel would otherwise choose per route.
    pub fn bind(local: SocketAddrV4) -> Result<UdpLink, LinkError> {
        let ip = local.ip();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(LinkError::Io(format!(
                "a RoCE v2 link needs a specific unicast IPv4 address (the ICRC covers it), not {ip}"
            )));
        }
        let socket = UdpSocket::bind(local).map_err(io_err)?;
        // DF on every datagram and no local fragmentation. With the default
        // (IP_PMTUDISC_WANT) Linux marks datagrams "ignore DF" and gives them
        // IPv4 identifications from a per-destination counter, which the
        // ICRC covers and a UDP socket cannot know; with IP_PMTUDISC_DO a DF
        // datagram of an unconnected socket has identification 0, and the
        // segments of a GSO batch 0, 1, 2...
        set_mtu_discover(&socket, nix::libc::IP_PMTUDISC_DO)
            .map_err(|e| LinkError::Io(format!("IP_MTU_DISCOVER: {e}")))?;
        // Receivers wait in poll(2) and take frames without blocking, so a
        // thread can sleep on the link while another drains it.
        socket.set_nonblocking(true).map_err(io_err)?;
        // Room for a window of 4 KiB frames; the kernel caps it at
        // net.core.[rw]mem_max, and a smaller buffer only costs retransmissions.
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
        let local = match socket.local_addr().map_err(io_err)? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => return Err(LinkError::Io(format!("socket bound to IPv6 address {a}"))),
        };
        Ok(UdpLink {
            socket,
            local,
            gid: gid_from_ipv4(*local.ip()),
            peer_port: ROCE_V2_UDP_PORT,
            peers: RwLock::new(HashMap::default()),
            counters: Counters::default(),
            rx: Mutex::new(vec![vec![0; UDP_RECV_BUF]; UDP_RECV_BATCH]),
            gso: std::sync::atomic::AtomicBool::new(false),
            backlog: Mutex::new(VecDeque::new()),
        }
        .with_gso(true))
    }

    /// Turns UDP segmentation offload on or off. On (the default where the
    /// kernel has UDP_GRO, Linux 5.0+), equal-sized packets of one message
    /// leave in one sendmsg(2) that the kernel or the NIC cuts into RoCE v2
    /// datagrams, and datagrams that arrive coalesced (GRO) are cut again
    /// here: a 64 KiB message costs 3 system calls each way instead of 16.
    /// A capture on loopback then shows the unsegmented batch; on a wire
    /// every datagram is plain RoCE v2 (docs/fabric.md).
    #[must_use]
    pub fn with_gso(self, on: bool) -> Self {
        let ok = nix::sys::socket::setsockopt(&self.socket, nix::sys::socket::sockopt::UdpGroSegment, &on).is_ok();
        self.gso.store(on && ok, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Whether UDP segmentation offload is on ([`UdpLink::with_gso`]).
    pub fn gso(&self) -> bool {
        self.gso.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends to destination port `port` instead of [`ROCE_V2_UDP_PORT`]
    /// for GIDs not in the peer map. See the module documentation for what
    /// a port other than 4791 means for the ICRC.
    #[must_use]
    pub fn with_peer_port(mut self, port: u16) -> Self {
        self.peer_port = port;
        self
    }

    /// Sends frames for `gid` to `addr`, overriding the GID's own address
    /// and the peer port. Replaces any earlier entry for `gid`.
    pub fn add_peer(&self, gid: Gid, addr: SocketAddrV4) {
        self.peers.write().insert(gid, addr);
    }

    /// Forgets the peer map entry for `gid`, returning it.
    pub fn remove_peer(&self, gid: &Gid) -> Option<SocketAddrV4> {
        self.peers.write().remove(gid)
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The destination port used for GIDs not in the peer map.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// Whether `n` frames of `seg` bytes (`total` in all) make a batch UDP
    /// GSO takes.
    fn gso_batch_fits(&self, seg: usize, n: usize, total: usize) -> bool {
        self.gso() && seg > 0 && u16::try_from(seg).is_ok() && n <= UDP_GSO_MAX_SEGMENTS && total <= MAX_FRAME_LEN
    }

    /// One sendmsg(2) of `iovs` cut by the kernel into datagrams of `seg`
    /// bytes (`n` of them). `None` when the kernel refuses GSO, which then
    /// stays off for this link: the caller sends datagram by datagram.
    fn send_gso(&self, dst: &Gid, iovs: &[IoSlice<'_>], seg: usize, n: usize) -> Option<Result<(), LinkError>> {
        let seg = u16::try_from(seg).ok()?;
        let Some(addr) = self.resolve(dst) else {
            self.counters.add(Stat::Dropped, n as u64);
            return Some(Err(LinkError::UnknownDestination));
        };
        match self.sendmsg_counted(addr, iovs, Some(seg), n as u64) {
            Ok(()) => Some(Ok(())),
            // Interrupted 4 times: datagram by datagram this once.
            Err(nix::errno::Errno::EINTR) => None,
            // The kernel or the device cannot segment UDP.
            Err(e @ (nix::errno::Errno::EINVAL | nix::errno::Errno::EIO | nix::errno::Errno::EOPNOTSUPP)) => {
                tracing::warn!("UDP GSO refused ({e}): sending datagram by datagram from now on");
                self.gso.store(false, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(nix::errno::Errno::EMSGSIZE) => Some(Err(LinkError::TooLarge)),
            Err(e) => Some(Err(LinkError::Io(format!("sendmsg: {e}")))),
        }
    }

    /// sendmsg(2) of the gather list `iov` to `addr`, with a UDP_SEGMENT
    /// control message of `gso` bytes if given, counting `n` datagrams
    /// sent. A full socket send buffer drops them (counted) and is not an
    /// error, as a congested network; a signal is retried 3 times.
    fn sendmsg_counted(
        &self,
        addr: SocketAddrV4,
        iov: &[IoSlice<'_>],
        gso: Option<u16>,
        n: u64,
    ) -> Result<(), nix::errno::Errno> {
        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, sendmsg};
        use std::os::fd::AsRawFd;
        let seg = gso.unwrap_or(0);
        let with_gso = [ControlMessage::UdpGsoSegments(&seg)];
        let cmsgs: &[ControlMessage<'_>] = if gso.is_some() { &with_gso } else { &[] };
        let to = SockaddrIn::from(addr);
        let mut interrupts = 0;
        loop {
            match sendmsg(self.socket.as_raw_fd(), iov, cmsgs, MsgFlags::empty(), Some(&to)) {
                Ok(_) => {
                    self.counters.add(Stat::Sent, n);
                    return Ok(());
                }
                Err(nix::errno::Errno::EINTR) if interrupts < 3 => interrupts += 1,
                Err(nix::errno::Errno::EAGAIN) => {
                    self.counters.add(Stat::Sent, n);
                    self.counters.add(Stat::Dropped, n);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Where frames for `dst` go: the peer map, else `dst`'s IPv4 address
    /// and the peer port.
    pub fn resolve(&self, dst: &Gid) -> Option<SocketAddrV4> {
        if let Some(addr) = self.peers.read().get(dst) {
            return Some(*addr);
        }
        gid_to_ipv4(dst).map(|ip| SocketAddrV4::new(ip, self.peer_port))
    }
}

impl Link for UdpLink {
    fn gid(&self) -> Gid {
        self.gid
    }

    /// The bound port: the kernel writes it as the UDP source port.
    fn src_port(&self) -> u16 {
        self.local.port()
    }

    /// Sends `frame` as one datagram. A full socket send buffer drops the
    /// frame (counted, `Ok`), as a congested network would.
    fn send(&self, dst: &Gid, frame: Vec<u8>) -> Result<(), LinkError> {
        self.send_gather(dst, &[IoSlice::new(&frame)], 0)
    }

    fn recv(&self, timeout: Duration) -> Result<Option<Received>, LinkError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut got = Vec::with_capacity(1);
        loop {
            // The socket is non-blocking: take what is there.
            if let Some(rx) = self.backlog.lock().pop_front() {
                return Ok(Some(rx));
            }
            if self.recv_many(1, &mut got)? > 0 {
                let mut it = got.drain(..);
                let first = it.next();
                self.backlog.lock().extend(it);
                return Ok(first);
            }
            let left = deadline.map_or(FAR_FUTURE, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() || !self.wait_readable(left)? {
                return Ok(None);
            }
        }
    }

    /// All frames to one address in one sendmmsg(2) (resumed after a
    /// partial send). A full socket send buffer drops the frames left,
    /// counted, as [`UdpLink::send`] does.
    fn send_many(&self, dst: &Gid, frames: Vec<Vec<u8>>) -> Result<(), LinkError> {
        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
        use std::os::fd::AsRawFd;
        if frames.len() < 2 {
            return frames.into_iter().next().map_or(Ok(()), |f| self.send(dst, f));
        }
        let Some(addr) = self.resolve(dst) else {
            self.counters.add(Stat::Dropped, frames.len() as u64);
            return Err(LinkError::UnknownDestination);
        };
        let mut result = Ok(());
        let mut frames: &[Vec<u8>] = &frames;
        let mut interrupts = 0;
        while !frames.is_empty() {
            if frames[0].len() > MAX_FRAME_LEN {
                result = result.and(Err(LinkError::TooLarge));
                frames = &frames[1..];
                continue;
            }
            // Up to the next frame too large to send.
            let n = frames.iter().position(|f| f.len() > MAX_FRAME_LEN).unwrap_or(frames.len());
            let iovs: Vec<[IoSlice<'_>; 1]> = frames[..n].iter().map(|f| [IoSlice::new(f)]).collect();
            let addrs = vec![Some(SockaddrIn::from(addr)); n];
            let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(n, None);
            let none: [ControlMessage<'_>; 0] = [];
            match sendmmsg(self.socket.as_raw_fd(), &mut hdrs, &iovs, addrs, none, MsgFlags::empty()) {
                Ok(sent) => {
                    let sent = sent.count().max(1);
                    self.counters.add(Stat::Sent, sent as u64);
                    frames = &frames[sent.min(frames.len())..];
                }
                Err(nix::errno::Errno::EINTR) if interrupts < 3 => interrupts += 1,
                Err(nix::errno::Errno::EAGAIN) => {
                    self.counters.add(Stat::Sent, frames.len() as u64);
                    self.counters.add(Stat::Dropped, frames.len() as u64);
                    break;
                }
                Err(nix::errno::Errno::EMSGSIZE) => {
                    result = result.and(Err(LinkError::TooLarge));
                    frames = &frames[1..];
                }
                Err(e) => {
                    result = result.and(Err(LinkError::Io(format!("sendmmsg: {e}"))));
                    frames = &frames[1..];
                }
            }
        }
        result
    }

    fn gso_max_segments(&self) -> usize {
        if self.gso() { UDP_GSO_MAX_SEGMENTS } else { 1 }
    }

    /// One sendmsg(2) with a UDP_SEGMENT control message. A batch of the
    /// wrong shape, or a kernel that refuses GSO (which then stays off for
    /// this link), falls back to [`UdpLink::send_many`].
    fn send_segments(&self, dst: &Gid, frames: Vec<Vec<u8>>) -> Result<(), LinkError> {
        let size = frames.first().map_or(0, Vec::len);
        let total: usize = frames.iter().map(Vec::len).sum();
        let shaped = frames.split_last().is_some_and(|(last, rest)| {
            !rest.is_empty() && rest.iter().all(|f| f.len() == size) && (1..=size).contains(&last.len())
        });
        if !shaped || !self.gso_batch_fits(size, frames.len(), total) {
            return self.send_many(dst, frames);
        }
        let iovs: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
        self.send_gather(dst, &iovs, size)
    }

    /// One sendmsg(2) of the whole buffer with a UDP_SEGMENT control message.
    fn send_segmented(&self, dst: &Gid, buf: &[u8], seg: usize) -> Result<(), LinkError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.send_gather(dst, &[IoSlice::new(buf)], seg)
    }

    /// One sendmsg(2) of the gather list: one datagram, or with a
    /// UDP_SEGMENT control message a GSO batch. A batch UDP GSO does not
    /// take (or GSO off) is copied together and sent datagram by datagram.
    fn send_gather(&self, dst: &Gid, iov: &[IoSlice<'_>], seg: usize) -> Result<(), LinkError> {
        let total: usize = iov.iter().map(|s| s.len()).sum();
        if seg == 0 || total <= seg {
            if total > MAX_FRAME_LEN {
                return Err(LinkError::TooLarge);
            }
            let Some(addr) = self.resolve(dst) else {
                self.counters.bump(Stat::Dropped);
                return Err(LinkError::UnknownDestination);
            };
            return match self.sendmsg_counted(addr, iov, None, 1) {
                Ok(()) => Ok(()),
                Err(nix::errno::Errno::EMSGSIZE) => Err(LinkError::TooLarge),
                Err(e) => Err(LinkError::Io(format!("sendmsg: {e}"))),
            };
        }
        let n = total.div_ceil(seg);
        if self.gso_batch_fits(seg, n, total)
            && let Some(r) = self.send_gso(dst, iov, seg, n)
        {
            return r;
        }
        self.send_many(dst, gather(iov).chunks(seg).map(<[u8]>::to_vec).collect())
    }

    /// [`UdpLink::recv_each`], copying each frame out.
    fn recv_many(&self, max: usize, out: &mut Vec<Received>) -> Result<usize, LinkError> {
        self.recv_each(max, &mut |f| {
            out.push(Received { src: f.src, src_port: f.src_port, frame: f.bytes.to_vec(), ip_id: f.ip_id })
        })
    }

    /// One recvmmsg(2) of up to 16 datagrams, without waiting; each frame
    /// is lent from the receive buffers.
    fn recv_each(&self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, LinkError> {
        let mut bufs = self.rx.lock();
        let k = max.min(bufs.len()).min(UDP_RECV_BATCH);
        if k == 0 {
            return Ok(0);
        }
        // Frames recv() took earlier come first, in order.
        let held = {
            let backlog = std::mem::take(&mut *self.backlog.lock());
            for rx in &backlog {
                f(rx.as_frame());
            }
            backlog.len()
        };
        // A pending ICMP error of an earlier send, or a signal, fails a call
        // without taking anything: try again (a few times).
        for _ in 0..4 {
            let mut batch = RecvBatch::new(&mut bufs[..k]);
            match batch.recv(&self.socket) {
                Ok(got) => {
                    let mut n = 0;
                    for (src, data, seg, truncated) in (0..got).filter_map(|i| batch.datagram(i)) {
                        // A GRO batch: cut it where the sender's GSO did.
                        let gro = seg.filter(|&n| n > 0 && n < data.len());
                        let seg = gro.unwrap_or(data.len().max(1));
                        // A datagram larger than the buffer lost its end: of a GRO
                        // batch the whole frames still count, the cut one is
                        // dropped; a single datagram is dropped whole.
                        let data = if truncated {
                            self.counters.bump(Stat::Dropped);
                            let whole = gro.map_or(0, |s| data.len() / s * s);
                            if whole == 0 {
                                continue;
                            }
                            &data[..whole]
                        } else {
                            data
                        };
                        let (gid, port) = (gid_from_ipv4(*src.ip()), src.port());
                        if data.is_empty() {
                            f(Frame { src: gid, src_port: port, ip_id: 0, bytes: &[] });
                            n += 1;
                        }
                        for (i, bytes) in data.chunks(seg).enumerate() {
                            let ip_id = u16::try_from(i).unwrap_or(u16::MAX);
                            f(Frame { src: gid, src_port: port, ip_id, bytes });
                            n += 1;
                        }
                    }
                    self.counters.add(Stat::Received, n as u64);
                    return Ok(held + n);
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(held),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ECONNRESET) => {}
                // Frames already taken are returned; the error comes again.
                Err(e) if held == 0 => return Err(LinkError::Io(format!("recvmmsg: {e}"))),
                Err(_) => return Ok(held),
            }
        }
        Ok(held)
    }

    /// poll(2) on the socket (millisecond granularity, rounded up).
    fn wait_readable(&self, timeout: Duration) -> Result<bool, LinkError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        if !self.backlog.lock().is_empty() {
            return Ok(true);
        }
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(LinkError::Io(format!("poll: {e}"))),
        }
    }

    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_ipv4_mapping() {
        let ip = Ipv4Addr::new(192, 168, 7, 9);
        let gid = gid_from_ipv4(ip);
        assert_eq!(gid, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 168, 7, 9]);
        assert_eq!(gid_to_ipv4(&gid), Some(ip));
        assert_eq!(gid_to_ipv4(&[0; 16]), None);
        let mut link_local = [0u8; 16];
        link_local[0] = 0xFE;
        link_local[1] = 0x80;
        assert_eq!(gid_to_ipv4(&link_local), None);
        // IPv4-compatible (::a.b.c.d, deprecated) is not IPv4-mapped.
        let mut compat = [0u8; 16];
        compat[12..].copy_from_slice(&ip.octets());
        assert_eq!(gid_to_ipv4(&compat), None);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn gro_segment_is_found_among_control_messages() {
        fn cmsg(level: i32, kind: i32, data: i32) -> Vec<u8> {
            let mut c = 20usize.to_ne_bytes().to_vec();
            c.extend_from_slice(&level.to_ne_bytes());
            c.extend_from_slice(&kind.to_ne_bytes());
            c.extend_from_slice(&data.to_ne_bytes());
            c.resize(24, 0);
            c
        }
        let gro = cmsg(nix::libc::SOL_UDP, nix::libc::UDP_GRO, 1400);
        assert_eq!(gro_segment(&gro), Some(1400));
        assert_eq!(gro_segment(&gro[..20]), Some(1400), "the last message needs no padding");
        let other = cmsg(nix::libc::SOL_SOCKET, 1, 7);
        assert_eq!(gro_segment(&[other.clone(), gro.clone()].concat()), Some(1400));
        assert_eq!(gro_segment(&other), None);
        assert_eq!(gro_segment(&[]), None);
        // Garbage never panics: lengths too short, too long, or cut off.
        let mut bad = gro.clone();
        bad[..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(gro_segment(&bad), None);
        bad[..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(gro_segment(&bad), None);
        for n in 0..gro.len() {
            let _ = gro_segment(&gro[..n]);
        }
        assert_eq!(gro_segment(&gro[..19]), None);
        // A negative size is no size.
        assert_eq!(gro_segment(&cmsg(nix::libc::SOL_UDP, nix::libc::UDP_GRO, -1)), None);
    }

    #[test]
    fn prng_is_seeded_and_uniform() {
        let mut a = SplitMix64(42);
        let mut b = SplitMix64(42);
        let mut c = SplitMix64(43);
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..64).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..64).map(|_| c.next_u64()).collect::<Vec<_>>());
        let mut r = SplitMix64(7);
        let n = 10_000;
        let hits = (0..n).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        for _ in 0..1000 {
            let u = r.next_unit();
            assert!((0.0..1.0).contains(&u));
            assert!(!r.chance(0.0) && !r.chance(-1.0) && !r.chance(f64::NAN));
            assert!(r.chance(1.0) && r.chance(2.0));
        }
    }

    #[test]
    fn flip_bit_spares_the_bth() {
        for len in [0usize, 1, 5, 12, 13, 16, 100] {
            for draw in [0u64, 1, 7, 8, 95, 96, 12345, u64::MAX] {
                let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut f = orig.clone();
                let flipped = flip_bit(&mut f, draw);
                assert_eq!(flipped, len > 0);
                let diff: u32 = orig.iter().zip(&f).map(|(a, b)| (a ^ b).count_ones()).sum();
                assert_eq!(diff, u32::from(flipped), "len {len} draw {draw}");
                if len > BTH_LEN {
                    assert_eq!(orig[..BTH_LEN], f[..BTH_LEN]);
                }
            }
        }
    }

    #[test]
    fn timers_order_by_due_then_seq() {
        let now = Instant::now();
        let t = |due, seq| Reverse(Timer { due, seq, dst: [0; 16], event: TimerEvent::Release });
        let mut heap = BinaryHeap::new();
        heap.push(t(now + Duration::from_millis(2), 1));
        heap.push(t(now, 3));
        heap.push(t(now, 2));
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(t)| t.seq)).collect();
        assert_eq!(order, [2, 3, 1]);
        assert_eq!(later(now, Duration::MAX), later(now, Duration::MAX));
        assert!(later(now, Duration::MAX) > now);
    }

    #[test]
    fn switch_has_no_cycles() {
        let sw = VirtualSwitch::new(Faults { reorder: 1.0, delay: Duration::from_secs(60), ..Faults::none() });
        let weak = Arc::downgrade(&sw);
        let a = sw.attach(gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 1))).unwrap();
        let b = sw.attach(gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 2))).unwrap();
        // A held frame and pending timers must not keep anything alive.
        a.send(&b.gid(), vec![1; 16]).unwrap();
        drop(sw);
        assert!(weak.upgrade().is_some());
        drop(b);
        assert_eq!(a.stats().dropped, 1, "the held frame died with its port");
        drop(a);
        assert!(weak.upgrade().is_none());
    }
}
