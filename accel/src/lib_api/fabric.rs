//! Fabric verbs: [`Pd`], [`Mr`], [`Cq`], [`Qp`] (RC queue pairs over RoCE v2).
//!
//! Thin typed wrappers over the ioctls; a device without `ACCEL_CAP_FABRIC`
//! returns EOPNOTSUPP. Each object is destroyed on drop, after the objects
//! that use it (a QP keeps its PD and CQs alive, an MR its PD).

use super::{Bo, Device, Error, Result, count, returned_handle};
use accel_core::SliceMemory;
use accel_uapi::flags::{MrAccess, QpAttrMask};
use accel_uapi::{Errno, sys};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// QP_CREATE parameters beyond the PD and CQs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpInit {
    /// Send WRs outstanding at most.
    pub max_send_wr: u32,
    /// Receive WRs posted at most.
    pub max_recv_wr: u32,
    /// SGEs per send WR.
    pub max_send_sge: u32,
    /// SGEs per receive WR.
    pub max_recv_sge: u32,
    /// The port (1-based).
    pub port: u32,
    /// Every send WR generates a completion (`ACCEL_QP_SIG_ALL`).
    pub sig_all: bool,
}

impl QpInit {
    /// `max_wr` WRs and `max_sge` SGEs each way, port 1, no SIG_ALL.
    pub fn new(max_wr: u32, max_sge: u32) -> Self {
        QpInit {
            max_send_wr: max_wr,
            max_recv_wr: max_wr,
            max_send_sge: max_sge,
            max_recv_sge: max_sge,
            port: 1,
            sig_all: false,
        }
    }
}

/// What a peer needs to connect to a QP (what rc_pingpong exchanges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The port's GID.
    pub gid: [u8; 16],
    /// The QP number.
    pub qp_num: u32,
    /// The first PSN the QP sends.
    pub psn: u32,
}

/// Connection parameters for [`Qp::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Path MTU, an `ACCEL_MTU_*` code.
    pub mtu: u32,
    /// Remote access the QP grants (`ACCEL_ACCESS_REMOTE_*`).
    pub access: MrAccess,
    /// Local ACK timeout code (4.096 us x 2^timeout; 0 = infinite).
    pub timeout: u8,
    /// Retries after a timeout (0..7).
    pub retry_cnt: u8,
    /// Retries after an RNR NAK (0..7, 7 = infinite).
    pub rnr_retry: u8,
    /// RNR timer code for the peer's retries.
    pub min_rnr_timer: u8,
}

impl Default for ConnectOptions {
    /// MTU 1024, remote read and write, timeout 14 (~67 ms), 7 retries,
    /// infinite RNR retries, RNR timer 12 (0.64 ms), as rc_pingpong.
    fn default() -> Self {
        ConnectOptions {
            mtu: sys::ACCEL_MTU_1024,
            access: MrAccess::REMOTE_READ | MrAccess::REMOTE_WRITE | MrAccess::LOCAL_WRITE,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
        }
    }
}

#[derive(Debug)]
struct PdInner {
    dev: Device,
    handle: NonZeroU32,
}

impl Drop for PdInner {
    fn drop(&mut self) {
        let mut a = sys::accel_pd_free { handle: self.handle.get(), pad: 0 };
        let _ = self.dev.ioctl("PD_FREE", sys::ACCEL_IOCTL_PD_FREE, &mut a);
    }
}

/// A protection domain. Freed (PD_FREE) once it and its MRs and QPs are dropped.
#[derive(Debug)]
pub struct Pd {
    inner: Arc<PdInner>,
}

/// A memory region: a registered BO range. Dropped: MR_DEREG.
#[derive(Debug)]
pub struct Mr {
    pd: Arc<PdInner>,
    handle: NonZeroU32,
    lkey: u32,
    rkey: u32,
}

#[derive(Debug)]
struct CqInner {
    dev: Device,
    handle: NonZeroU32,
    cqe: u32,
}

impl Drop for CqInner {
    fn drop(&mut self) {
        let mut a = sys::accel_cq_destroy { handle: self.handle.get(), pad: 0 };
        let _ = self.dev.ioctl("CQ_DESTROY", sys::ACCEL_IOCTL_CQ_DESTROY, &mut a);
    }
}

/// A completion queue. Destroyed (CQ_DESTROY) once it and the QPs using it are dropped.
#[derive(Debug)]
pub struct Cq {
    inner: Arc<CqInner>,
}

/// A reliable-connected queue pair. Dropped: QP_DESTROY.
#[derive(Debug)]
pub struct Qp {
    pd: Arc<PdInner>,
    _send_cq: Arc<CqInner>,
    _recv_cq: Arc<CqInner>,
    handle: NonZeroU32,
    qp_num: u32,
    port: u32,
}

pub(crate) fn alloc_pd(dev: &Device) -> Result<Pd> {
    const CALL: &str = "PD_ALLOC";
    let mut a = sys::accel_pd_alloc::default();
    dev.ioctl(CALL, sys::ACCEL_IOCTL_PD_ALLOC, &mut a)?;
    Ok(Pd { inner: Arc::new(PdInner { dev: dev.clone(), handle: returned_handle(CALL, a.handle)? }) })
}

pub(crate) fn create_cq(dev: &Device, cqe: u32) -> Result<Cq> {
    const CALL: &str = "CQ_CREATE";
    let mut a = sys::accel_cq_create { cqe, ..Default::default() };
    dev.ioctl(CALL, sys::ACCEL_IOCTL_CQ_CREATE, &mut a)?;
    let handle = returned_handle(CALL, a.handle)?;
    Ok(Cq { inner: Arc::new(CqInner { dev: dev.clone(), handle, cqe: a.cqe }) })
}

impl Pd {
    /// The PD handle.
    pub fn handle(&self) -> u32 {
        self.inner.handle.get()
    }

    /// MR_REG: register `len` bytes of `bo` from `offset`, addressed as `iova` in work requests.
    pub fn reg_mr(&self, bo: &Bo, offset: u64, len: u64, iova: u64, access: MrAccess) -> Result<Mr> {
        const CALL: &str = "MR_REG";
        self.inner.dev.check_same(CALL, bo.device())?;
        let mut a = sys::accel_mr_reg {
            pd_handle: self.handle(),
            bo_handle: bo.handle().get(),
            bo_offset: offset,
            length: len,
            iova,
            access: access.bits(),
            ..Default::default()
        };
        self.inner.dev.ioctl(CALL, sys::ACCEL_IOCTL_MR_REG, &mut a)?;
        let handle = returned_handle(CALL, a.handle)?;
        Ok(Mr { pd: self.inner.clone(), handle, lkey: a.lkey, rkey: a.rkey })
    }

    /// QP_CREATE: an RC QP on port 1 with `max_wr` send and receive WRs of up to `max_sge` SGEs.
    pub fn create_qp(&self, send_cq: &Cq, recv_cq: &Cq, max_wr: u32, max_sge: u32) -> Result<Qp> {
        self.create_qp_with(send_cq, recv_cq, QpInit::new(max_wr, max_sge))
    }

    /// QP_CREATE with every parameter.
    pub fn create_qp_with(&self, send_cq: &Cq, recv_cq: &Cq, init: QpInit) -> Result<Qp> {
        const CALL: &str = "QP_CREATE";
        let dev = &self.inner.dev;
        dev.check_same(CALL, &send_cq.inner.dev)?;
        dev.check_same(CALL, &recv_cq.inner.dev)?;
        let mut a = sys::accel_qp_create {
            pd_handle: self.handle(),
            send_cq: send_cq.handle(),
            recv_cq: recv_cq.handle(),
            qp_type: sys::ACCEL_QPT_RC,
            max_send_wr: init.max_send_wr,
            max_recv_wr: init.max_recv_wr,
            max_send_sge: init.max_send_sge,
            max_recv_sge: init.max_recv_sge,
            port_num: init.port,
            flags: if init.sig_all { sys::ACCEL_QP_SIG_ALL } else { 0 },
            ..Default::default()
        };
        dev.ioctl(CALL, sys::ACCEL_IOCTL_QP_CREATE, &mut a)?;
        let handle = returned_handle(CALL, a.handle)?;
        Ok(Qp {
            pd: self.inner.clone(),
            _send_cq: send_cq.inner.clone(),
            _recv_cq: recv_cq.inner.clone(),
            handle,
            qp_num: a.qp_num,
            port: init.port,
        })
    }
}

impl Mr {
    /// The MR handle.
    pub fn handle(&self) -> u32 {
        self.handle.get()
    }

    /// The local key (SGEs).
    pub fn lkey(&self) -> u32 {
        self.lkey
    }

    /// The remote key (RDMA READ/WRITE of peers).
    pub fn rkey(&self) -> u32 {
        self.rkey
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        let mut a = sys::accel_mr_dereg { handle: self.handle.get(), pad: 0 };
        let _ = self.pd.dev.ioctl("MR_DEREG", sys::ACCEL_IOCTL_MR_DEREG, &mut a);
    }
}

impl Cq {
    /// The CQ handle.
    pub fn handle(&self) -> u32 {
        self.inner.handle.get()
    }

    /// The actual depth (entries).
    pub fn cqe(&self) -> u32 {
        self.inner.cqe
    }

    /// CQ_POLL: reap up to `max` completions, oldest first, without blocking.
    pub fn poll(&self, max: usize) -> Result<Vec<sys::accel_wc>> {
        let mut wcs = Vec::new();
        self.poll_into(max, &mut wcs)?;
        Ok(wcs)
    }

    /// CQ_POLL into `wcs` (replacing its contents), reusing its allocation:
    /// a busy-polling loop then allocates nothing per poll.
    pub fn poll_into(&self, max: usize, wcs: &mut Vec<sys::accel_wc>) -> Result<()> {
        const CALL: &str = "CQ_POLL";
        let num_entries = count(CALL, max)?;
        wcs.clear();
        wcs.try_reserve_exact(max).map_err(|_| Error::new(CALL, Errno::ENOMEM))?;
        wcs.resize(max, sys::accel_wc::default());
        let mut mem = SliceMemory::new();
        let wc_ptr = mem.lend_mut(wcs.as_mut_bytes());
        let mut a = sys::accel_cq_poll { handle: self.handle(), num_entries, wc_ptr, ..Default::default() };
        let r = self.inner.dev.ioctl_lent(CALL, sys::ACCEL_IOCTL_CQ_POLL, &mut a, &mem);
        drop(mem);
        wcs.truncate(if r.is_ok() { a.count as usize } else { 0 });
        r
    }

    /// Polls until at least one completion arrives or `timeout` passes
    /// (then an empty vector): spins briefly, then yields the CPU between
    /// polls, as a busy-polling verbs application does.
    pub fn poll_wait(&self, max: usize, timeout: Duration) -> Result<Vec<sys::accel_wc>> {
        let mut wcs = Vec::new();
        self.poll_wait_into(max, timeout, &mut wcs)?;
        Ok(wcs)
    }

    /// [`Cq::poll_wait`] into `wcs` (replacing its contents), reusing its
    /// allocation.
    pub fn poll_wait_into(&self, max: usize, timeout: Duration, wcs: &mut Vec<sys::accel_wc>) -> Result<()> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            self.poll_into(max, wcs)?;
            // The clock is read every 16th empty poll only: a busy poll is short.
            if !wcs.is_empty() || (spins % 16 == 15 && start.elapsed() >= timeout) || timeout.is_zero() {
                return Ok(());
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 4096 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Polls until `n` completions arrived or `timeout` passed; returns
    /// what came (fewer than `n` on timeout).
    pub fn collect(&self, n: usize, timeout: Duration) -> Result<Vec<sys::accel_wc>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let wcs = self.poll_wait(n - out.len(), left)?;
            if wcs.is_empty() {
                break;
            }
            out.extend(wcs);
        }
        Ok(out)
    }
}

impl Qp {
    /// The QP handle.
    pub fn handle(&self) -> u32 {
        self.handle.get()
    }

    /// The 24-bit QP number on the wire.
    pub fn qp_num(&self) -> u32 {
        self.qp_num
    }

    /// QP_MODIFY: change the attributes of `attr` named in `mask`.
    pub fn modify(&self, mask: QpAttrMask, attr: &sys::accel_qp_attr) -> Result<()> {
        let mut a = sys::accel_qp_modify { handle: self.handle(), attr_mask: mask.bits(), attr: *attr };
        self.pd.dev.ioctl("QP_MODIFY", sys::ACCEL_IOCTL_QP_MODIFY, &mut a)
    }

    /// The port the QP was created on.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// This QP's endpoint for a peer: its port's GID, its number, and
    /// `psn` as its first send PSN.
    pub fn endpoint(&self, psn: u32) -> Result<Endpoint> {
        let ports = self.pd.dev.ports()?;
        let p =
            ports.iter().find(|p| p.port_num == self.port).ok_or_else(|| Error::new("QUERY_PORTS", Errno::EINVAL))?;
        Ok(Endpoint { gid: p.gid, qp_num: self.qp_num, psn: psn & 0xFF_FFFF })
    }

    /// RESET -> INIT -> RTR -> RTS towards `remote`, sending from PSN
    /// `local_psn`, as rc_pingpong's `pp_connect_ctx` does.
    pub fn connect(&self, remote: &Endpoint, local_psn: u32, o: &ConnectOptions) -> Result<()> {
        type M = QpAttrMask;
        let init = sys::accel_qp_attr {
            qp_state: sys::ACCEL_QPS_INIT,
            port_num: self.port,
            qp_access_flags: o.access.bits(),
            ..Default::default()
        };
        self.modify(M::STATE | M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS, &init)?;
        let rtr = sys::accel_qp_attr {
            qp_state: sys::ACCEL_QPS_RTR,
            path_mtu: o.mtu,
            dest_gid: remote.gid,
            dest_qp_num: remote.qp_num,
            rq_psn: remote.psn,
            max_dest_rd_atomic: 1,
            min_rnr_timer: o.min_rnr_timer,
            hop_limit: 64,
            ..Default::default()
        };
        let mask = M::STATE | M::AV | M::PATH_MTU | M::DEST_QPN | M::RQ_PSN | M::MAX_DEST_RD_ATOMIC | M::MIN_RNR_TIMER;
        self.modify(mask, &rtr)?;
        let rts = sys::accel_qp_attr {
            qp_state: sys::ACCEL_QPS_RTS,
            sq_psn: local_psn & 0xFF_FFFF,
            timeout: o.timeout,
            retry_cnt: o.retry_cnt,
            rnr_retry: o.rnr_retry,
            max_rd_atomic: 1,
            ..Default::default()
        };
        self.modify(M::STATE | M::SQ_PSN | M::TIMEOUT | M::RETRY_CNT | M::RNR_RETRY | M::MAX_QP_RD_ATOMIC, &rts)
    }

    /// POST_SEND that also reports `bad_wr` (the index of the first
    /// rejected WR) on failure; nothing was posted then.
    pub fn try_post_send(
        &self,
        wrs: &[sys::accel_send_wr],
        sges: &[sys::accel_sge],
    ) -> std::result::Result<(), (Error, u32)> {
        const CALL: &str = "POST_SEND";
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_post_send {
            handle: self.handle(),
            num_wrs: count(CALL, wrs.len()).map_err(|e| (e, 0))?,
            wrs_ptr: mem.lend(wrs.as_bytes()),
            num_sges: count(CALL, sges.len()).map_err(|e| (e, 0))?,
            sges_ptr: mem.lend(sges.as_bytes()),
            ..Default::default()
        };
        self.pd.dev.ioctl_lent(CALL, sys::ACCEL_IOCTL_POST_SEND, &mut a, &mem).map_err(|e| (e, a.bad_wr))
    }

    /// POST_RECV that also reports `bad_wr` on failure.
    pub fn try_post_recv(
        &self,
        wrs: &[sys::accel_recv_wr],
        sges: &[sys::accel_sge],
    ) -> std::result::Result<(), (Error, u32)> {
        const CALL: &str = "POST_RECV";
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_post_recv {
            handle: self.handle(),
            num_wrs: count(CALL, wrs.len()).map_err(|e| (e, 0))?,
            wrs_ptr: mem.lend(wrs.as_bytes()),
            num_sges: count(CALL, sges.len()).map_err(|e| (e, 0))?,
            sges_ptr: mem.lend(sges.as_bytes()),
            ..Default::default()
        };
        self.pd.dev.ioctl_lent(CALL, sys::ACCEL_IOCTL_POST_RECV, &mut a, &mem).map_err(|e| (e, a.bad_wr))
    }

    /// QP_QUERY: every attribute.
    pub fn query(&self) -> Result<sys::accel_qp_attr> {
        let mut a = sys::accel_qp_query { handle: self.handle(), ..Default::default() };
        self.pd.dev.ioctl("QP_QUERY", sys::ACCEL_IOCTL_QP_QUERY, &mut a)?;
        Ok(a.attr)
    }

    /// POST_SEND: WR *i* uses `sges[first_sge .. first_sge + num_sge)`; all or nothing.
    pub fn post_send(&self, wrs: &[sys::accel_send_wr], sges: &[sys::accel_sge]) -> Result<()> {
        self.try_post_send(wrs, sges).map_err(|(e, _)| e)
    }

    /// POST_RECV: WR *i* uses `sges[first_sge .. first_sge + num_sge)`; all or nothing.
    pub fn post_recv(&self, wrs: &[sys::accel_recv_wr], sges: &[sys::accel_sge]) -> Result<()> {
        self.try_post_recv(wrs, sges).map_err(|(e, _)| e)
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        let mut a = sys::accel_qp_destroy { handle: self.handle.get(), pad: 0 };
        let _ = self.pd.dev.ioctl("QP_DESTROY", sys::ACCEL_IOCTL_QP_DESTROY, &mut a);
    }
}
