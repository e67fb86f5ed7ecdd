//! Fabric verbs: [`Pd`], [`Mr`], [`Cq`], [`Qp`] (RC queue pairs over RoCE v2).
//!
//! Thin typed wrappers over the ioctls; a device without `ACCEL_CAP_FABRIC`
//! returns EOPNOTSUPP. Each object is destroyed on drop, after the objects
//! that use it (a QP keeps its PD and CQs alive, an MR its PD).

use super::{Bo, Device, Error, Result, count, mut_ptr, ptr, returned_handle};
use accel_uapi::flags::{MrAccess, QpAttrMask};
use accel_uapi::{Errno, sys};
use std::num::NonZeroU32;
use std::sync::Arc;

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
        const CALL: &str = "QP_CREATE";
        let dev = &self.inner.dev;
        dev.check_same(CALL, &send_cq.inner.dev)?;
        dev.check_same(CALL, &recv_cq.inner.dev)?;
        let mut a = sys::accel_qp_create {
            pd_handle: self.handle(),
            send_cq: send_cq.handle(),
            recv_cq: recv_cq.handle(),
            qp_type: sys::ACCEL_QPT_RC,
            max_send_wr: max_wr,
            max_recv_wr: max_wr,
            max_send_sge: max_sge,
            max_recv_sge: max_sge,
            port_num: 1,
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
        const CALL: &str = "CQ_POLL";
        let num_entries = count(CALL, max)?;
        let mut wcs = Vec::new();
        wcs.try_reserve_exact(max).map_err(|_| Error::new(CALL, Errno::ENOMEM))?;
        wcs.resize(max, sys::accel_wc::default());
        let mut a =
            sys::accel_cq_poll { handle: self.handle(), num_entries, wc_ptr: mut_ptr(&mut wcs), ..Default::default() };
        self.inner.dev.ioctl(CALL, sys::ACCEL_IOCTL_CQ_POLL, &mut a)?;
        wcs.truncate(a.count as usize);
        Ok(wcs)
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

    /// QP_QUERY: every attribute.
    pub fn query(&self) -> Result<sys::accel_qp_attr> {
        let mut a = sys::accel_qp_query { handle: self.handle(), ..Default::default() };
        self.pd.dev.ioctl("QP_QUERY", sys::ACCEL_IOCTL_QP_QUERY, &mut a)?;
        Ok(a.attr)
    }

    /// POST_SEND: WR *i* uses `sges[first_sge .. first_sge + num_sge)`; all or nothing.
    pub fn post_send(&self, wrs: &[sys::accel_send_wr], sges: &[sys::accel_sge]) -> Result<()> {
        const CALL: &str = "POST_SEND";
        let mut a = sys::accel_post_send {
            handle: self.handle(),
            num_wrs: count(CALL, wrs.len())?,
            wrs_ptr: ptr(wrs),
            num_sges: count(CALL, sges.len())?,
            sges_ptr: ptr(sges),
            ..Default::default()
        };
        self.pd.dev.ioctl(CALL, sys::ACCEL_IOCTL_POST_SEND, &mut a)
    }

    /// POST_RECV: WR *i* uses `sges[first_sge .. first_sge + num_sge)`; all or nothing.
    pub fn post_recv(&self, wrs: &[sys::accel_recv_wr], sges: &[sys::accel_sge]) -> Result<()> {
        const CALL: &str = "POST_RECV";
        let mut a = sys::accel_post_recv {
            handle: self.handle(),
            num_wrs: count(CALL, wrs.len())?,
            wrs_ptr: ptr(wrs),
            num_sges: count(CALL, sges.len())?,
            sges_ptr: ptr(sges),
            ..Default::default()
        };
        self.pd.dev.ioctl(CALL, sys::ACCEL_IOCTL_POST_RECV, &mut a)
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        let mut a = sys::accel_qp_destroy { handle: self.handle.get(), pad: 0 };
        let _ = self.pd.dev.ioctl("QP_DESTROY", sys::ACCEL_IOCTL_QP_DESTROY, &mut a);
    }
}
