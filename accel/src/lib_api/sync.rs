//! [`Syncobj`]: binary and timeline synchronisation objects.

use super::{Bo, Device, Result, SyncobjHandle, returned_fd};
use accel_core::SliceMemory;
use accel_uapi::sys;
use std::os::fd::OwnedFd;
use zerocopy::IntoBytes;

/// A syncobj handle of one open (binary or timeline). Dropped: SYNCOBJ_DESTROY
/// (jobs that signal it still complete).
#[derive(Debug)]
pub struct Syncobj {
    dev: Device,
    handle: SyncobjHandle,
    /// A BO that must live as long as the job that signals this syncobj ([`Queue::run`](super::Queue::run)).
    keepalive: Option<Bo>,
}

impl Syncobj {
    pub(crate) fn from_parts(dev: Device, handle: SyncobjHandle) -> Syncobj {
        Syncobj { dev, handle, keepalive: None }
    }

    pub(crate) fn keep_alive(&mut self, bo: Bo) {
        self.keepalive = Some(bo);
    }

    /// The handle.
    pub fn handle(&self) -> SyncobjHandle {
        self.handle
    }

    /// The open this handle belongs to.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// SYNCOBJ_WAIT with WAIT_FOR_SUBMIT for `point` (0 for a binary syncobj) until the
    /// absolute `CLOCK_MONOTONIC` deadline. A fence signalled with an error also
    /// completes the wait: see [`Syncobj::query`] for its status.
    pub fn wait(&self, point: u64, deadline_ns: i64) -> Result<()> {
        self.dev.wait(&[(self, point)], true, true, deadline_ns).map(|_| ())
    }

    fn array(&self, call: &'static str, cmd: u32) -> Result<()> {
        let handles = [self.handle.get()];
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_syncobj_array { handles_ptr: mem.lend(handles.as_bytes()), count: 1, flags: 0 };
        self.dev.ioctl_lent(call, cmd, &mut a, &mem)
    }

    /// SYNCOBJ_SIGNAL: set a binary syncobj signalled.
    pub fn signal(&self) -> Result<()> {
        self.array("SYNCOBJ_SIGNAL", sys::ACCEL_IOCTL_SYNCOBJ_SIGNAL)
    }

    /// SYNCOBJ_RESET: remove a binary syncobj's fence.
    pub fn reset(&self) -> Result<()> {
        self.array("SYNCOBJ_RESET", sys::ACCEL_IOCTL_SYNCOBJ_RESET)
    }

    /// SYNCOBJ_TIMELINE_SIGNAL: signal `point` of a timeline syncobj from the CPU.
    pub fn timeline_signal(&self, point: u64) -> Result<()> {
        let handles = [self.handle.get()];
        let points = [point];
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_syncobj_timeline_array {
            handles_ptr: mem.lend(handles.as_bytes()),
            points_ptr: mem.lend(points.as_bytes()),
            count: 1,
            flags: 0,
        };
        self.dev.ioctl_lent("SYNCOBJ_TIMELINE_SIGNAL", sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut a, &mem)
    }

    /// SYNCOBJ_QUERY: (last signalled point — binary: 1 if signalled, else 0 —,
    /// fence status: 0 or `-errno`).
    pub fn query(&self) -> Result<(u64, i32)> {
        let handles = [self.handle.get()];
        let mut points = [0u64];
        let mut status = [0i32];
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_syncobj_query {
            handles_ptr: mem.lend(handles.as_bytes()),
            points_ptr: mem.lend_mut(points.as_mut_bytes()),
            status_ptr: mem.lend_mut(status.as_mut_bytes()),
            count: 1,
            flags: 0,
        };
        self.dev.ioctl_lent("SYNCOBJ_QUERY", sys::ACCEL_IOCTL_SYNCOBJ_QUERY, &mut a, &mem)?;
        drop(mem);
        Ok((points[0], status[0]))
    }

    /// SYNCOBJ_TRANSFER: copy the fence at `src_point` of `self` into `dst` at `dst_point`
    /// (0 for binary syncobjs).
    pub fn transfer_to(&self, src_point: u64, dst: &Syncobj, dst_point: u64) -> Result<()> {
        const CALL: &str = "SYNCOBJ_TRANSFER";
        self.dev.check_same(CALL, &dst.dev)?;
        let mut a = sys::accel_syncobj_transfer {
            src_handle: self.handle.get(),
            dst_handle: dst.handle.get(),
            src_point,
            dst_point,
            flags: 0,
            pad: 0,
        };
        self.dev.ioctl(CALL, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut a)
    }

    /// SYNCOBJ_EXPORT: a descriptor naming the syncobj, for [`Device::import_syncobj`].
    pub fn export(&self) -> Result<OwnedFd> {
        const CALL: &str = "SYNCOBJ_EXPORT";
        let mut a = sys::accel_syncobj_export { handle: self.handle.get(), ..Default::default() };
        self.dev.ioctl(CALL, sys::ACCEL_IOCTL_SYNCOBJ_EXPORT, &mut a)?;
        returned_fd(CALL, a.fd)
    }
}

impl Drop for Syncobj {
    fn drop(&mut self) {
        let mut a = sys::accel_syncobj_destroy { handle: self.handle.get(), pad: 0 };
        let _ = self.dev.ioctl("SYNCOBJ_DESTROY", sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut a);
    }
}
