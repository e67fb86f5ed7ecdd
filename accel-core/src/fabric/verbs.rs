//! The verbs objects behind the fabric ioctls: PDs, MRs, CQs and RC QPs,
//! and the per-device port state that connects QPs to the RoCE v2 engine.
//!
//! - A [`Pd`] owns the key table of its MRs. An [`Mr`] is a BO range with
//!   an `lkey` (local SGEs) and an `rkey` (peers' RETHs) and access rights;
//!   a QP's engine reaches memory only through `QpMemory`, which checks the
//!   key, the role of the key, the bounds, the MR's rights and the QP's
//!   remote access flags on every access.
//! - A [`Cq`] is a bounded queue of `accel_wc`. A completion that does not
//!   fit puts the CQ in the error state, raises `ACCEL_EVENT_CQ_ERR` and moves
//!   the QP that produced it to ERR (`ACCEL_EVENT_QP_FATAL`): completions are
//!   never dropped silently. Once drained, an overrun CQ polls as EIO.
//! - A [`Qp`] follows the IB state machine ([`check_modify`]); INIT -> RTR
//!   creates its [`RcQp`] on the port's [`RcDriver`] thread (started with the
//!   port's first QP), RESET discards it.
//!
//! Lock order: `Qp::st` -> the engine's lock -> `Cq::st`; the port thread
//! takes the engine's lock then a CQ's. A CQ never calls back into a QP.

use crate::bo::Bo;
use crate::device::{Device, max};
use crate::driver::PortInfo;
use crate::error::{Error, Result};
use crate::fabric::link::Link;
use crate::roce::engine::{RcConfig, RcDriver, RcPort, RcQp, RcTimers, RecvWr, SendOp, SendWr, Wc, WcSink};
use crate::roce::mr::{Access, AccessError, RcMemory};
use crate::roce::qp_state::{QpAttrs, check_modify};
use accel_uapi::flags::{MrAccess, QpAttrMask, SendFlags, WcFlags};
use accel_uapi::sys;
use accel_uapi::types::{EventType, Mtu, PortState, QpState, WcOpcode, WrOpcode};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Pending async events kept per file; older ones are kept, newer ones
/// counted as lost past this.
pub const MAX_PENDING_EVENTS: usize = 4096;

/// Most RDMA READs outstanding per QP, as initiator or responder, a QP
/// may ask for (`max_rd_atomic`, `max_dest_rd_atomic`).
pub const MAX_RD_ATOMIC: u32 = 16;

/// Packets a QP's requester keeps unacknowledged.
const SEND_WINDOW: u32 = 1024;

/// One file's asynchronous events (GET_ASYNC_EVENT).
#[derive(Debug, Default)]
pub struct Events {
    q: Mutex<VecDeque<(EventType, u32)>>,
    lost: AtomicU64,
}

impl Events {
    /// Queues an event about `handle` (a CQ or QP handle, or a port number).
    pub fn raise(&self, ty: EventType, handle: u32) {
        let mut q = self.q.lock();
        if q.len() >= MAX_PENDING_EVENTS {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?ty, handle, "async event queue full; event lost");
            return;
        }
        q.push_back((ty, handle));
    }

    /// The oldest pending event.
    pub fn take(&self) -> Option<(EventType, u32)> {
        self.q.lock().pop_front()
    }

    /// Events lost to a full queue.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A port's link and the thread that drives its QPs.
pub struct PortRuntime {
    link: Arc<dyn Link>,
    driver: RcDriver,
}

impl std::fmt::Debug for PortRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortRuntime").field("gid", &self.link.gid()).finish_non_exhaustive()
    }
}

/// Device-wide verbs state: ports, QP numbers, keys and object counts.
#[derive(Debug)]
pub struct Fabric {
    ports: Vec<(PortInfo, Mutex<Option<Arc<PortRuntime>>>)>,
    qpns: Mutex<(u32, HashSet<u32>)>,
    next_key: AtomicU32,
    pds: AtomicU32,
    mrs: AtomicU32,
    cqs: AtomicU32,
    qps: AtomicU32,
}

/// A slot counted against a device-wide maximum; released on drop.
#[derive(Debug)]
struct Slot {
    device: Arc<Device>,
    kind: SlotKind,
}

#[derive(Debug, Clone, Copy)]
enum SlotKind {
    Pd,
    Mr,
    Cq,
    Qp,
}

impl SlotKind {
    /// The device-wide counter of this kind, its limit, and its name.
    fn counter(self, f: &Fabric) -> (&AtomicU32, u32, &'static str) {
        match self {
            SlotKind::Pd => (&f.pds, max::PDS, "PDs"),
            SlotKind::Mr => (&f.mrs, max::MRS, "MRs"),
            SlotKind::Cq => (&f.cqs, max::CQS, "CQs"),
            SlotKind::Qp => (&f.qps, max::QPS, "QPs"),
        }
    }
}

impl Slot {
    fn take(device: &Arc<Device>, kind: SlotKind) -> Result<Slot> {
        let (c, limit, what) = kind.counter(&device.fabric);
        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .map_err(|_| Error::Busy(format!("device limit of {limit} {what} reached")))?;
        Ok(Slot { device: device.clone(), kind })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.kind.counter(&self.device.fabric).0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Fabric {
    pub(crate) fn new(ports: Vec<PortInfo>) -> Fabric {
        Fabric {
            ports: ports.into_iter().map(|p| (p, Mutex::new(None))).collect(),
            qpns: Mutex::new((2, HashSet::new())),
            next_key: AtomicU32::new(0x100),
            pds: AtomicU32::new(0),
            mrs: AtomicU32::new(0),
            cqs: AtomicU32::new(0),
            qps: AtomicU32::new(0),
        }
    }

    /// Live (PDs, MRs, CQs, QPs) of the device.
    pub fn counts(&self) -> [u32; 4] {
        [&self.pds, &self.mrs, &self.cqs, &self.qps].map(|c| c.load(Ordering::Acquire))
    }

    fn port_info(&self, port: u32) -> Option<&PortInfo> {
        self.ports.get(usize::try_from(port).ok()?.checked_sub(1)?).map(|(p, _)| p)
    }

    /// The running port `port` (1-based), starting its thread on first use.
    fn port(&self, device: &Device, port: u32) -> Result<Arc<PortRuntime>> {
        let idx = usize::try_from(port).ok().and_then(|p| p.checked_sub(1));
        let (info, slot) =
            idx.and_then(|i| self.ports.get(i)).ok_or_else(|| Error::invalid(format!("no port {port}")))?;
        let mut slot = slot.lock();
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        if info.state != PortState::Active {
            return Err(Error::NetDown(format!("port {port} is {:?}", info.state)));
        }
        let link =
            device.driver.port_link(port).map_err(|e| Error::NetDown(format!("port {port} has no link: {e}")))?;
        let driver = RcDriver::start(link.clone(), format!("{}-port{port}", device.name()));
        if !driver.is_running() {
            return Err(Error::NoMemory(format!("cannot start the thread of port {port}")));
        }
        let rt = Arc::new(PortRuntime { link, driver });
        *slot = Some(rt.clone());
        Ok(rt)
    }

    fn alloc_qpn(&self) -> Result<u32> {
        let mut g = self.qpns.lock();
        let (next, live) = &mut *g;
        for _ in 0..(1u32 << 24) {
            let q = *next;
            *next = if q + 1 >= 1 << 24 { 2 } else { q + 1 };
            if live.insert(q) {
                return Ok(q);
            }
        }
        Err(Error::Busy("no free QP number".into()))
    }

    fn free_qpn(&self, qpn: u32) {
        self.qpns.lock().1.remove(&qpn);
    }

    fn alloc_keys(&self) -> (u32, u32) {
        // lkey and rkey differ, and no key is reused for 2^31 registrations.
        let k = self.next_key.fetch_add(1, Ordering::Relaxed).wrapping_mul(2) | 0x100;
        (k, k.wrapping_add(1))
    }
}

/// One registered memory region's data.
#[derive(Debug)]
struct MrData {
    bo: Arc<Bo>,
    bo_offset: u64,
    length: u64,
    iova: u64,
    access: MrAccess,
    lkey: u32,
    rkey: u32,
}

/// A protection domain.
#[derive(Debug)]
pub struct Pd {
    /// MRs by key (both their lkey and rkey).
    keys: RwLock<HashMap<u32, Arc<MrData>>>,
    /// MRs and QPs using the PD (PD_FREE is EBUSY while non-zero).
    users: AtomicU32,
    _slot: Slot,
}

impl Pd {
    /// A new PD on `device`.
    pub fn new(device: &Arc<Device>) -> Result<Arc<Pd>> {
        Ok(Arc::new(Pd { keys: RwLock::default(), users: AtomicU32::new(0), _slot: Slot::take(device, SlotKind::Pd)? }))
    }

    /// MRs and QPs still using the PD.
    pub fn users(&self) -> u32 {
        self.users.load(Ordering::Acquire)
    }

    /// The MR named by `key` in the role `access` needs: the rkey for
    /// remote access, the lkey otherwise.
    fn lookup(&self, key: u32, access: Access) -> Result<Arc<MrData>, AccessError> {
        let mr = self.keys.read().get(&key).cloned().ok_or(AccessError::BadKey(key))?;
        let remote = access.intersects(Access::REMOTE_READ | Access::REMOTE_WRITE);
        if (remote && mr.rkey != key) || (!remote && mr.lkey != key) {
            return Err(AccessError::BadKey(key));
        }
        Ok(mr)
    }
}

/// A registered memory region (the handle's object).
#[derive(Debug)]
pub struct Mr {
    pd: Arc<Pd>,
    data: Arc<MrData>,
    _slot: Slot,
}

impl Mr {
    /// Registers `[bo_offset, bo_offset + length)` of `bo` at `iova`.
    pub fn register(
        device: &Arc<Device>,
        pd: Arc<Pd>,
        bo: Arc<Bo>,
        bo_offset: u64,
        length: u64,
        iova: u64,
        access: MrAccess,
    ) -> Result<Arc<Mr>> {
        if length == 0 {
            return Err(Error::invalid("MR length 0"));
        }
        let end = bo_offset.checked_add(length).ok_or_else(|| Error::invalid("bo_offset + length wraps"))?;
        if end > bo.size {
            return Err(Error::invalid(format!("MR [{bo_offset:#x}, {end:#x}) outside a BO of {} bytes", bo.size)));
        }
        if iova.checked_add(length).is_none() {
            return Err(Error::invalid("iova + length wraps"));
        }
        if access.contains(MrAccess::REMOTE_WRITE) && !access.contains(MrAccess::LOCAL_WRITE) {
            return Err(Error::invalid("REMOTE_WRITE needs LOCAL_WRITE"));
        }
        if bo.host().is_none() {
            return Err(Error::NotSupported("MR on memory without a host view".into()));
        }
        let slot = Slot::take(device, SlotKind::Mr)?;
        let (lkey, rkey) = device.fabric.alloc_keys();
        let data = Arc::new(MrData { bo, bo_offset, length, iova, access, lkey, rkey });
        {
            let mut keys = pd.keys.write();
            keys.insert(lkey, data.clone());
            keys.insert(rkey, data.clone());
        }
        pd.users.fetch_add(1, Ordering::AcqRel);
        Ok(Arc::new(Mr { pd, data, _slot: slot }))
    }

    /// The local key.
    pub fn lkey(&self) -> u32 {
        self.data.lkey
    }

    /// The remote key.
    pub fn rkey(&self) -> u32 {
        self.data.rkey
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        {
            let mut keys = self.pd.keys.write();
            keys.remove(&self.data.lkey);
            keys.remove(&self.data.rkey);
        }
        self.pd.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A QP's view of memory: its PD's MRs, filtered by the QP's remote
/// access flags.
struct QpMemory {
    pd: Arc<Pd>,
    qp_access: Arc<AtomicU32>,
}

impl QpMemory {
    fn locate(&self, key: u32, addr: u64, len: usize, access: Access) -> Result<(Arc<MrData>, u64), AccessError> {
        let mr = self.pd.lookup(key, access)?;
        let have = Access::from_bits_truncate(mr.access.bits());
        let qp = Access::from_bits_truncate(self.qp_access.load(Ordering::Acquire));
        let remote = access & (Access::REMOTE_READ | Access::REMOTE_WRITE);
        if !have.contains(access) || !qp.contains(remote) {
            return Err(AccessError::Denied(access));
        }
        let off = addr.checked_sub(mr.iova).ok_or(AccessError::OutOfBounds)?;
        let end = off.checked_add(len as u64).ok_or(AccessError::OutOfBounds)?;
        if end > mr.length {
            return Err(AccessError::OutOfBounds);
        }
        let at = mr.bo_offset + off;
        Ok((mr, at))
    }
}

impl RcMemory for QpMemory {
    fn read(&self, key: u32, addr: u64, len: usize, access: Access) -> Result<Vec<u8>, AccessError> {
        let (mr, at) = self.locate(key, addr, len, access)?;
        let host = mr.bo.host().ok_or(AccessError::OutOfBounds)?;
        let mut v = vec![0; len];
        host.read(at, &mut v).map_err(|_| AccessError::OutOfBounds)?;
        Ok(v)
    }

    fn write(&self, key: u32, addr: u64, data: &[u8], access: Access) -> Result<(), AccessError> {
        let (mr, at) = self.locate(key, addr, data.len(), access)?;
        let host = mr.bo.host().ok_or(AccessError::OutOfBounds)?;
        host.write(at, data).map_err(|_| AccessError::OutOfBounds)
    }

    fn read_into(&self, key: u32, addr: u64, dst: &mut [u8], access: Access) -> Result<(), AccessError> {
        let (mr, at) = self.locate(key, addr, dst.len(), access)?;
        let host = mr.bo.host().ok_or(AccessError::OutOfBounds)?;
        host.read(at, dst).map_err(|_| AccessError::OutOfBounds)
    }
}

#[derive(Debug)]
struct CqState {
    wcs: VecDeque<sys::accel_wc>,
    overrun: bool,
}

/// A completion queue.
#[derive(Debug)]
pub struct Cq {
    depth: u32,
    st: Mutex<CqState>,
    events: Arc<Events>,
    handle: OnceLock<u32>,
    /// QPs using the CQ (CQ_DESTROY is EBUSY while non-zero).
    users: AtomicU32,
    /// The ports of the QPs that complete here: polling an empty CQ
    /// receives on them in the caller's thread.
    ports: Mutex<Arc<[Weak<RcPort>]>>,
    _slot: Slot,
}

impl Cq {
    /// A CQ of `depth` entries raising its events on `events`.
    pub fn new(device: &Arc<Device>, depth: u32, events: Arc<Events>) -> Result<Arc<Cq>> {
        let max = device.limits.max_cqe;
        if depth == 0 || depth > max {
            return Err(Error::invalid(format!("CQ depth {depth} not in 1..={max}")));
        }
        Ok(Arc::new(Cq {
            depth,
            st: Mutex::new(CqState { wcs: VecDeque::new(), overrun: false }),
            events,
            handle: OnceLock::new(),
            users: AtomicU32::new(0),
            ports: Mutex::new(Arc::new([])),
            _slot: Slot::take(device, SlotKind::Cq)?,
        }))
    }

    /// The depth.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Records the handle the CQ's events name.
    pub fn set_handle(&self, h: u32) {
        let _ = self.handle.set(h);
    }

    /// QPs still using the CQ.
    pub fn users(&self) -> u32 {
        self.users.load(Ordering::Acquire)
    }

    fn push(&self, wc: sys::accel_wc) -> bool {
        let mut st = self.st.lock();
        if st.overrun {
            return false;
        }
        if st.wcs.len() >= self.depth as usize {
            st.overrun = true;
            drop(st);
            tracing::warn!(depth = self.depth, "CQ overrun");
            self.events.raise(EventType::CqErr, self.handle.get().copied().unwrap_or(0));
            return false;
        }
        st.wcs.push_back(wc);
        true
    }

    fn watch_port(&self, port: &Arc<RcPort>) {
        let mut ports = self.ports.lock();
        if !ports.iter().any(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(port))) {
            let live = ports.iter().filter(|p| p.strong_count() > 0).cloned();
            *ports = live.chain(std::iter::once(Arc::downgrade(port))).collect();
        }
    }

    /// Takes up to `n` completions, oldest first. EIO once an overrun CQ
    /// has been drained. An empty CQ first receives on its QPs' ports in
    /// the caller's thread ([`RcPort::progress`]): a busy-polling caller
    /// gets its completions without waiting for a port thread to wake.
    pub fn poll(&self, n: usize) -> Result<Vec<sys::accel_wc>> {
        let mut out = Vec::new();
        self.poll_each(n, |wc| out.push(*wc))?;
        Ok(out)
    }

    /// [`Cq::poll`] handing each completion to `f` instead of collecting
    /// them; returns how many it took.
    pub fn poll_each(&self, n: usize, mut f: impl FnMut(&sys::accel_wc)) -> Result<usize> {
        if n > 0 && self.st.lock().wcs.is_empty() {
            // A snapshot, so no lock is held while receiving.
            let ports = Arc::clone(&self.ports.lock());
            for p in ports.iter().filter_map(Weak::upgrade) {
                p.progress();
            }
        }
        let mut st = self.st.lock();
        if st.wcs.is_empty() && st.overrun {
            return Err(Error::Device("CQ overrun: completions were lost".into()));
        }
        let n = n.min(st.wcs.len());
        st.wcs.drain(..n).for_each(|wc| f(&wc));
        Ok(n)
    }
}

/// Routes an engine's completions to the QP's CQs.
struct QpSink {
    send_cq: Arc<Cq>,
    recv_cq: Arc<Cq>,
    dest_qpn: u32,
    events: Arc<Events>,
    handle: Arc<OnceLock<u32>>,
    fatal: AtomicBool,
}

impl WcSink for QpSink {
    fn complete(&self, wc: Wc) -> bool {
        let recv = matches!(wc.opcode, WcOpcode::Recv | WcOpcode::RecvRdmaWithImm);
        let cq = if recv { &self.recv_cq } else { &self.send_cq };
        let ok = cq.push(to_sys_wc(&wc, self.dest_qpn));
        if !ok && !self.fatal.swap(true, Ordering::AcqRel) {
            self.events.raise(EventType::QpFatal, self.handle.get().copied().unwrap_or(0));
        }
        ok
    }
}

fn to_sys_wc(wc: &Wc, src_qp: u32) -> sys::accel_wc {
    sys::accel_wc {
        wr_id: wc.wr_id,
        status: wc.status as u32,
        opcode: wc.opcode as u32,
        vendor_err: 0,
        byte_len: wc.byte_len,
        // The wire carries the immediate big-endian; the UAPI field holds those bytes.
        imm_data: wc.imm.map_or(0, u32::to_be),
        qp_num: wc.qp_num,
        src_qp,
        wc_flags: if wc.imm.is_some() { WcFlags::WITH_IMM.bits() } else { 0 },
    }
}

/// QP_CREATE parameters.
#[derive(Debug, Clone, Copy)]
pub struct QpCaps {
    /// Send WRs outstanding at most.
    pub max_send_wr: u32,
    /// Receive WRs posted at most.
    pub max_recv_wr: u32,
    /// SGEs per send WR.
    pub max_send_sge: u32,
    /// SGEs per receive WR.
    pub max_recv_sge: u32,
    /// Every send WR completes (`ACCEL_QP_SIG_ALL`).
    pub sig_all: bool,
}

impl QpInner {
    /// Takes the engine off its port (RESET, destroy).
    fn detach(&mut self, qpn: u32) {
        if let (Some(rt), Some(engine)) = (self.port.take(), self.engine.take()) {
            rt.driver.remove(qpn);
            // What was executed stays acknowledged: the peer's sends complete.
            engine.flush_ack();
        }
    }
}

struct QpInner {
    state: QpState,
    attrs: QpAttrs,
    engine: Option<Arc<RcQp>>,
    port: Option<Arc<PortRuntime>>,
    /// Receives posted in INIT, before the engine exists.
    early_recv: VecDeque<RecvWr>,
}

/// A reliable-connected queue pair.
pub struct Qp {
    device: Arc<Device>,
    pd: Arc<Pd>,
    send_cq: Arc<Cq>,
    recv_cq: Arc<Cq>,
    qpn: u32,
    caps: QpCaps,
    access: Arc<AtomicU32>,
    events: Arc<Events>,
    handle: Arc<OnceLock<u32>>,
    st: Mutex<QpInner>,
    _slot: Slot,
}

impl std::fmt::Debug for Qp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qp").field("qpn", &self.qpn).finish_non_exhaustive()
    }
}

/// Gathers WR `i`'s SGEs from the call's SGE array.
fn sges_of(sges: &[sys::accel_sge], first: u32, num: u32, max_sge: u32, max_msg: u32) -> Result<Vec<(u32, u64, u32)>> {
    if num > max_sge {
        return Err(Error::invalid(format!("num_sge {num} > the QP's {max_sge}")));
    }
    let end = first.checked_add(num).ok_or_else(|| Error::invalid("first_sge + num_sge wraps"))?;
    let list = sges
        .get(first as usize..end as usize)
        .ok_or_else(|| Error::invalid(format!("SGEs [{first}, {end}) past the {} given", sges.len())))?;
    let total: u64 = list.iter().map(|s| u64::from(s.length)).sum();
    if total > u64::from(max_msg) {
        return Err(Error::invalid(format!("message of {total} bytes > max_msg_size {max_msg}")));
    }
    Ok(list.iter().map(|s| (s.lkey, s.addr, s.length)).collect())
}

impl Qp {
    /// A new QP in RESET.
    pub fn create(
        device: &Arc<Device>,
        pd: Arc<Pd>,
        send_cq: Arc<Cq>,
        recv_cq: Arc<Cq>,
        caps: QpCaps,
        port: u32,
        events: Arc<Events>,
    ) -> Result<Arc<Qp>> {
        let l = &device.limits;
        for (what, v, max) in
            [("max_send_wr", caps.max_send_wr, l.max_qp_wr), ("max_recv_wr", caps.max_recv_wr, l.max_qp_wr)]
        {
            if v == 0 || v > max {
                return Err(Error::invalid(format!("{what} {v} not in 1..={max}")));
            }
        }
        for (what, v) in [("max_send_sge", caps.max_send_sge), ("max_recv_sge", caps.max_recv_sge)] {
            if v > l.max_sge {
                return Err(Error::invalid(format!("{what} {v} > max_sge {}", l.max_sge)));
            }
        }
        if device.fabric.port_info(port).is_none() {
            return Err(Error::invalid(format!("no port {port}")));
        }
        let slot = Slot::take(device, SlotKind::Qp)?;
        let qpn = device.fabric.alloc_qpn()?;
        pd.users.fetch_add(1, Ordering::AcqRel);
        send_cq.users.fetch_add(1, Ordering::AcqRel);
        recv_cq.users.fetch_add(1, Ordering::AcqRel);
        let attrs = QpAttrs { port_num: port, ..QpAttrs::default() };
        Ok(Arc::new(Qp {
            device: device.clone(),
            pd,
            send_cq,
            recv_cq,
            qpn,
            caps,
            access: Arc::new(AtomicU32::new(0)),
            events,
            handle: Arc::new(OnceLock::new()),
            st: Mutex::new(QpInner {
                state: QpState::Reset,
                attrs,
                engine: None,
                port: None,
                early_recv: VecDeque::new(),
            }),
            _slot: slot,
        }))
    }

    /// The 24-bit QP number.
    pub fn qpn(&self) -> u32 {
        self.qpn
    }

    /// Records the handle the QP's events name.
    pub fn set_handle(&self, h: u32) {
        let _ = self.handle.set(h);
    }

    /// The state, ERR once the engine failed.
    fn state_of(st: &QpInner) -> QpState {
        match &st.engine {
            Some(e) if e.is_error() => QpState::Err,
            _ => st.state,
        }
    }

    /// QP_QUERY.
    pub fn query(&self) -> sys::accel_qp_attr {
        let st = self.st.lock();
        let mut attr = st.attrs.to_attr(Self::state_of(&st));
        if let Some(e) = &st.engine {
            let t = e.timers();
            (attr.timeout, attr.retry_cnt, attr.rnr_retry, attr.min_rnr_timer) =
                (t.timeout, t.retry_cnt, t.rnr_retry, t.min_rnr_timer);
        }
        attr
    }

    /// QP_MODIFY.
    pub fn modify(&self, mask: QpAttrMask, attr: &sys::accel_qp_attr) -> Result<()> {
        let fabric = &self.device.fabric;
        let mut st = self.st.lock();
        let cur = Self::state_of(&st);
        let next = check_modify(cur, mask, attr).map_err(|e| Error::invalid(e.to_string()))?;
        let port = if mask.contains(QpAttrMask::PORT) { attr.port_num } else { st.attrs.port_num };
        let info = fabric.port_info(port).ok_or_else(|| Error::invalid(format!("no port {port}")))?;
        if mask.contains(QpAttrMask::PKEY_INDEX) && attr.pkey_index != 0 {
            return Err(Error::invalid(format!("pkey_index {}: the port has one P_Key, index 0", attr.pkey_index)));
        }
        if mask.contains(QpAttrMask::AV) && attr.sgid_index != 0 {
            return Err(Error::invalid(format!("sgid_index {}: the port has one GID, index 0", attr.sgid_index)));
        }
        if mask.contains(QpAttrMask::PATH_MTU) && attr.path_mtu > info.active_mtu as u32 {
            return Err(Error::invalid(format!(
                "path_mtu {} above the port's active MTU {:?}",
                attr.path_mtu, info.active_mtu
            )));
        }
        for (m, v, what) in [
            (QpAttrMask::MAX_QP_RD_ATOMIC, attr.max_rd_atomic, "max_rd_atomic"),
            (QpAttrMask::MAX_DEST_RD_ATOMIC, attr.max_dest_rd_atomic, "max_dest_rd_atomic"),
        ] {
            if mask.contains(m) && v > MAX_RD_ATOMIC {
                return Err(Error::invalid(format!("{what} {v} > {MAX_RD_ATOMIC}")));
            }
        }
        let mut attrs = st.attrs;
        attrs.apply(mask, attr);
        let timers = RcTimers {
            timeout: attrs.timeout,
            retry_cnt: attrs.retry_cnt,
            rnr_retry: attrs.rnr_retry,
            min_rnr_timer: attrs.min_rnr_timer,
        };
        match (cur, next) {
            (_, QpState::Reset) => {
                st.detach(self.qpn);
                st.early_recv.clear();
                attrs = QpAttrs { port_num: st.attrs.port_num, ..QpAttrs::default() };
            }
            (_, QpState::Err) => match &st.engine {
                Some(e) => e.set_error(),
                None => {
                    let flushed: Vec<RecvWr> = st.early_recv.drain(..).collect();
                    for wr in flushed {
                        self.flush_recv(&wr);
                    }
                }
            },
            (QpState::Init, QpState::Rtr) => {
                let rt = fabric.port(&self.device, port)?;
                let mtu = Mtu::try_from(attrs.path_mtu).map_err(|e| Error::invalid(e.to_string()))?;
                let cfg = RcConfig {
                    qpn: self.qpn,
                    dest_gid: attrs.dest_gid,
                    dest_qpn: attrs.dest_qp_num,
                    mtu: mtu.bytes(),
                    sq_psn: attrs.sq_psn,
                    rq_psn: attrs.rq_psn,
                    timeout: timers.timeout,
                    retry_cnt: timers.retry_cnt,
                    rnr_retry: timers.rnr_retry,
                    min_rnr_timer: timers.min_rnr_timer,
                    max_outstanding: SEND_WINDOW,
                };
                let sink = Arc::new(QpSink {
                    send_cq: self.send_cq.clone(),
                    recv_cq: self.recv_cq.clone(),
                    dest_qpn: attrs.dest_qp_num,
                    events: self.events.clone(),
                    handle: self.handle.clone(),
                    fatal: AtomicBool::new(false),
                });
                let mem = Arc::new(QpMemory { pd: self.pd.clone(), qp_access: self.access.clone() });
                let engine = RcQp::with_sink(cfg, rt.link.clone(), mem, sink)
                    .map_err(|e| Error::invalid(format!("RTR: {e}")))?;
                for wr in st.early_recv.drain(..) {
                    engine.post_recv(wr);
                }
                rt.driver.add(engine.clone());
                self.send_cq.watch_port(rt.driver.port());
                self.recv_cq.watch_port(rt.driver.port());
                st.engine = Some(engine);
                st.port = Some(rt);
            }
            (QpState::Rtr, QpState::Rts) => {
                if let Some(e) = &st.engine {
                    e.set_sq_psn(attrs.sq_psn);
                    e.set_timers(timers);
                }
            }
            _ => {
                if let Some(e) = &st.engine {
                    e.set_timers(timers);
                }
            }
        }
        if mask.contains(QpAttrMask::ACCESS_FLAGS) {
            self.access.store(attrs.access_flags.bits(), Ordering::Release);
        }
        if next == QpState::Reset {
            self.access.store(0, Ordering::Release);
        }
        st.attrs = attrs;
        st.state = next;
        Ok(())
    }

    fn flush_recv(&self, wr: &RecvWr) {
        self.recv_cq.push(to_sys_wc(&Wc::flushed_recv(wr.wr_id, self.qpn), 0));
    }

    /// Validates send WRs against the QP; `Err((index, error))` names the
    /// first bad one.
    pub fn check_sends(
        &self,
        wrs: &[sys::accel_send_wr],
        sges: &[sys::accel_sge],
    ) -> Result<Vec<SendWr>, (usize, Error)> {
        let max_msg = self.device.limits.max_msg_size;
        let sig_all = self.caps.sig_all;
        wrs.iter()
            .enumerate()
            .map(|(i, w)| {
                let op = WrOpcode::try_from(w.opcode).map_err(|e| (i, Error::invalid(e.to_string())))?;
                let sges =
                    sges_of(sges, w.first_sge, w.num_sge, self.caps.max_send_sge, max_msg).map_err(|e| (i, e))?;
                let opcode = match op {
                    WrOpcode::Send => SendOp::Send,
                    WrOpcode::SendWithImm => SendOp::SendWithImm,
                    WrOpcode::RdmaWrite => SendOp::RdmaWrite,
                    WrOpcode::RdmaWriteWithImm => SendOp::RdmaWriteWithImm,
                    WrOpcode::RdmaRead => SendOp::RdmaRead,
                };
                let signaled = sig_all || SendFlags::from_bits_retain(w.send_flags).contains(SendFlags::SIGNALED);
                Ok(SendWr {
                    wr_id: w.wr_id,
                    opcode,
                    sges,
                    remote_addr: w.remote_addr,
                    rkey: w.rkey,
                    imm: u32::from_be(w.imm_data),
                    signaled,
                })
            })
            .collect()
    }

    /// POST_SEND of WRs validated by [`Qp::check_sends`]: all or none.
    pub fn post_send(&self, wrs: Vec<SendWr>) -> Result<()> {
        let st = self.st.lock();
        let state = Self::state_of(&st);
        let engine = match (state, &st.engine) {
            (QpState::Rts | QpState::Err, Some(e)) => e.clone(),
            (QpState::Err, None) => {
                drop(st);
                for wr in &wrs {
                    self.send_cq.push(to_sys_wc(&Wc::flushed_send(wr, self.qpn), 0));
                }
                return Ok(());
            }
            (s, _) => return Err(Error::invalid(format!("POST_SEND on a QP in {s:?}"))),
        };
        drop(st);
        let (outstanding, _) = engine.outstanding();
        if outstanding + wrs.len() > self.caps.max_send_wr as usize && state != QpState::Err {
            return Err(Error::Again(format!(
                "send queue: {outstanding} outstanding + {} > max_send_wr {}",
                wrs.len(),
                self.caps.max_send_wr
            )));
        }
        for wr in wrs {
            engine.post_send(wr).map_err(|e| Error::invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Validates receive WRs; `Err((index, error))` names the first bad one.
    pub fn check_recvs(
        &self,
        wrs: &[sys::accel_recv_wr],
        sges: &[sys::accel_sge],
    ) -> Result<Vec<RecvWr>, (usize, Error)> {
        let max_msg = self.device.limits.max_msg_size;
        wrs.iter()
            .enumerate()
            .map(|(i, w)| {
                let sges =
                    sges_of(sges, w.first_sge, w.num_sge, self.caps.max_recv_sge, max_msg).map_err(|e| (i, e))?;
                Ok(RecvWr { wr_id: w.wr_id, sges })
            })
            .collect()
    }

    /// POST_RECV of WRs validated by [`Qp::check_recvs`]: all or none.
    pub fn post_recv(&self, wrs: Vec<RecvWr>) -> Result<()> {
        let mut st = self.st.lock();
        let state = Self::state_of(&st);
        let posted = match (&st.engine, state) {
            (_, QpState::Reset) => return Err(Error::invalid("POST_RECV on a QP in RESET")),
            (Some(e), _) => e.outstanding().1,
            (None, _) => st.early_recv.len(),
        };
        if state != QpState::Err && posted + wrs.len() > self.caps.max_recv_wr as usize {
            return Err(Error::Again(format!(
                "receive queue: {posted} posted + {} > max_recv_wr {}",
                wrs.len(),
                self.caps.max_recv_wr
            )));
        }
        match st.engine.clone() {
            Some(e) => {
                drop(st);
                for wr in wrs {
                    e.post_recv(wr);
                }
            }
            None if state == QpState::Err => {
                drop(st);
                for wr in &wrs {
                    self.flush_recv(wr);
                }
            }
            None => st.early_recv.extend(wrs),
        }
        Ok(())
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        self.st.get_mut().detach(self.qpn);
        self.device.fabric.free_qpn(self.qpn);
        self.pd.users.fetch_sub(1, Ordering::AcqRel);
        self.send_cq.users.fetch_sub(1, Ordering::AcqRel);
        self.recv_cq.users.fetch_sub(1, Ordering::AcqRel);
    }
}
