//! Memory: [`Bo`], its CPU [`Mapping`], and [`Context`] address spaces (VM_BIND).

use super::{BoHandle, ContextId, Device, Queue, Result, Syncobj, count, err, returned_fd};
use accel_core::SliceMemory;
use accel_core::inproc::CpuMapping;
use accel_uapi::flags::{QueueFlags, VmBindFlags};
use accel_uapi::sys;
use accel_uapi::types::{EngineClass, Priority};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use zerocopy::IntoBytes;

// ------------------------------------------------------------------ Bo

/// A buffer object handle of one open. Dropping it closes the handle (BO_CLOSE);
/// the memory lives on while it is mapped in a context, CPU-mapped, imported
/// elsewhere or used by a pending job.
#[derive(Debug)]
pub struct Bo {
    dev: Device,
    handle: BoHandle,
    size: u64,
}

impl Bo {
    /// A `Bo` value the device has counted (see `Device::acquire_bo`).
    pub(crate) fn from_parts(dev: Device, handle: BoHandle, size: u64) -> Bo {
        Bo { dev, handle, size }
    }

    pub(crate) fn set_size(&mut self, size: u64) {
        self.size = size;
    }

    /// The handle.
    pub fn handle(&self) -> BoHandle {
        self.handle
    }

    /// The size in bytes (rounded up to the region's page size).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The open this handle belongs to.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// BO_INFO: flags, size and region.
    pub fn info(&self) -> Result<sys::accel_bo_info> {
        let mut a = sys::accel_bo_info { handle: self.handle.get(), ..Default::default() };
        self.dev.ioctl("BO_INFO", sys::ACCEL_IOCTL_BO_INFO, &mut a)?;
        Ok(a)
    }

    /// BO_MMAP_OFFSET: the offset to map this BO at (EINVAL unless CPU-visible).
    pub fn mmap_offset(&self) -> Result<u64> {
        let mut a = sys::accel_bo_mmap_offset { handle: self.handle.get(), ..Default::default() };
        self.dev.ioctl("BO_MMAP_OFFSET", sys::ACCEL_IOCTL_BO_MMAP_OFFSET, &mut a)?;
        Ok(a.offset)
    }

    /// Map the whole BO read-write into this process (BO_MMAP_OFFSET, then mmap).
    /// The mapping keeps the memory alive after the handle is closed.
    pub fn map(&self) -> Result<Mapping> {
        let offset = self.mmap_offset()?;
        let map = self.dev.client().mmap(offset, self.size, true).map_err(err("MMAP"))?;
        Ok(Mapping { map })
    }

    /// BO_EXPORT: a descriptor naming the BO, for [`Device::import_bo`] of any open.
    pub fn export(&self) -> Result<OwnedFd> {
        const CALL: &str = "BO_EXPORT";
        let mut a = sys::accel_bo_export { handle: self.handle.get(), ..Default::default() };
        self.dev.ioctl(CALL, sys::ACCEL_IOCTL_BO_EXPORT, &mut a)?;
        returned_fd(CALL, a.fd)
    }
}

impl Drop for Bo {
    fn drop(&mut self) {
        self.dev.release_bo(self.handle);
    }
}

// ------------------------------------------------------------------ Mapping

/// A CPU mapping of a BO: bounds-checked copies in and out. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    map: CpuMapping,
}

impl Device {
    /// Map `len` bytes at a raw mmap offset, as `mmap(fd, offset)` would: the
    /// offset must name a CPU-visible BO this open holds a handle to (EPERM
    /// otherwise, EINVAL for an offset that names nothing).
    pub fn mmap_raw(&self, offset: u64, len: u64) -> Result<Mapping> {
        let map = self.client().mmap(offset, len, true).map_err(err("MMAP"))?;
        Ok(Mapping { map })
    }
}

impl Mapping {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a BO).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Copy `dst.len()` bytes at `offset` out of the mapping (EINVAL out of bounds).
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.map.read(offset, dst).map_err(err("MAPPING_READ"))
    }

    /// Copy `src` into the mapping at `offset` (EINVAL out of bounds).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.map.write(offset, src).map_err(err("MAPPING_WRITE"))
    }

    /// Read a little-endian `u64` at `offset`.
    pub fn read_u64(&self, offset: usize) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write `v` little-endian at `offset`.
    pub fn write_u64(&self, offset: usize, v: u64) -> Result<()> {
        self.write(offset, &v.to_le_bytes())
    }

    /// The address of the mapping (valid while `self` lives).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
}

// ------------------------------------------------------------------ Context

/// A live context: destroyed (CONTEXT_DESTROY) when the [`Context`] and all its
/// [`Queue`]s are gone, since a context with queues cannot be destroyed.
#[derive(Debug)]
pub(crate) struct ContextInner {
    pub(crate) dev: Device,
    pub(crate) id: ContextId,
}

impl ContextInner {
    pub(crate) fn new(dev: Device, id: ContextId) -> Arc<ContextInner> {
        Arc::new(ContextInner { dev, id })
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        let mut a = sys::accel_context_destroy { ctx_id: self.id.get(), pad: 0 };
        let _ = self.dev.ioctl("CONTEXT_DESTROY", sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut a);
    }
}

/// A context: a GPU virtual address space and the queues that run in it.
/// Destroyed on drop, once its queues are gone too.
#[derive(Debug)]
pub struct Context {
    inner: Arc<ContextInner>,
}

/// A VM_BIND MAP op: `len` bytes of `bo` from `bo_offset` at `va`, with `perms`.
pub fn map_op(bo: &Bo, bo_offset: u64, va: u64, len: u64, perms: VmBindFlags) -> sys::accel_vm_bind_op {
    sys::accel_vm_bind_op {
        op: sys::ACCEL_VM_BIND_OP_MAP,
        flags: perms.bits(),
        handle: bo.handle().get(),
        pad: 0,
        bo_offset,
        va,
        range: len,
    }
}

/// A VM_BIND UNMAP op of `[va, va + len)`.
pub fn unmap_op(va: u64, len: u64) -> sys::accel_vm_bind_op {
    sys::accel_vm_bind_op { op: sys::ACCEL_VM_BIND_OP_UNMAP, va, range: len, ..Default::default() }
}

impl Context {
    pub(crate) fn from_inner(inner: Arc<ContextInner>) -> Context {
        Context { inner }
    }

    /// The context handle.
    pub fn id(&self) -> ContextId {
        self.inner.id
    }

    /// The open this context belongs to.
    pub fn device(&self) -> &Device {
        &self.inner.dev
    }

    /// Map `len` bytes of `bo` from `bo_offset` at `va` (one VM_BIND MAP op).
    pub fn map(&self, bo: &Bo, bo_offset: u64, va: u64, len: u64, perms: VmBindFlags) -> Result<()> {
        self.inner.dev.check_same("VM_BIND", bo.device())?;
        self.bind(&[map_op(bo, bo_offset, va, len, perms)])
    }

    /// Unmap `[va, va + len)` (one VM_BIND UNMAP op).
    pub fn unmap(&self, va: u64, len: u64) -> Result<()> {
        self.bind(&[unmap_op(va, len)])
    }

    /// VM_BIND: apply `ops` in order, all or nothing.
    pub fn bind(&self, ops: &[sys::accel_vm_bind_op]) -> Result<()> {
        self.bind_with_syncs(ops, &[], &[])
    }

    /// VM_BIND waiting on `wait` first and signalling `signal` once the ops are applied
    /// (`(syncobj, point)` pairs, point 0 for binary syncobjs).
    pub fn bind_with_syncs(
        &self,
        ops: &[sys::accel_vm_bind_op],
        wait: &[(&Syncobj, u64)],
        signal: &[(&Syncobj, u64)],
    ) -> Result<()> {
        const CALL: &str = "VM_BIND";
        let dev = &self.inner.dev;
        let ins = dev.syncs(CALL, wait)?;
        let outs = dev.syncs(CALL, signal)?;
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_vm_bind {
            ctx_id: self.inner.id.get(),
            num_ops: count(CALL, ops.len())?,
            ops_ptr: mem.lend(ops.as_bytes()),
            num_in_syncs: count(CALL, ins.len())?,
            num_out_syncs: count(CALL, outs.len())?,
            in_syncs_ptr: mem.lend(ins.as_bytes()),
            out_syncs_ptr: mem.lend(outs.as_bytes()),
            flags: 0,
            pad: 0,
        };
        dev.ioctl_lent(CALL, sys::ACCEL_IOCTL_VM_BIND, &mut a, &mem)
    }

    /// CONTEXT_QUERY: fault and ban state.
    pub fn query(&self) -> Result<sys::accel_context_query> {
        let mut a = sys::accel_context_query { ctx_id: self.inner.id.get(), ..Default::default() };
        self.inner.dev.ioctl("CONTEXT_QUERY", sys::ACCEL_IOCTL_CONTEXT_QUERY, &mut a)?;
        Ok(a)
    }

    /// QUEUE_CREATE on `class`: normal priority, the default depth and job timeout.
    pub fn create_queue(&self, class: EngineClass) -> Result<Queue> {
        self.create_queue_with(class, Priority::Normal, 0, None)
    }

    /// QUEUE_CREATE: `depth` 0 = the driver default; `timeout_ns` (a duration) may
    /// only lower the device's default job timeout.
    pub fn create_queue_with(
        &self,
        class: EngineClass,
        priority: Priority,
        depth: u32,
        timeout_ns: Option<u64>,
    ) -> Result<Queue> {
        const CALL: &str = "QUEUE_CREATE";
        let flags = if timeout_ns.is_some() { QueueFlags::TIMEOUT } else { QueueFlags::empty() };
        let mut a = sys::accel_queue_create {
            ctx_id: self.inner.id.get(),
            engine_class: class.into(),
            priority: priority.into(),
            flags: flags.bits(),
            depth,
            queue_id: 0,
            timeout_ns: timeout_ns.unwrap_or(0),
        };
        self.inner.dev.ioctl(CALL, sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a)?;
        let id = super::returned_handle(CALL, a.queue_id)?;
        Ok(Queue::from_parts(self.inner.clone(), id.into()))
    }
}
