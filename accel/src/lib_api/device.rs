//! [`Device`]: one open of an accel device, its queries and object constructors.

use super::{Bo, BoHandle, ContextId, Cq, Error, Pd, Result, Syncobj, SyncobjHandle, count, err, returned_handle};
use crate::lib_api::memory::ContextInner;
use crate::lib_api::{Context, fabric};
use accel_core::SliceMemory;
use accel_core::inproc::Client;
use accel_uapi::flags::{BoFlags, Caps, SyncobjCreateFlags, SyncobjWaitFlags};
use accel_uapi::{Errno, sys};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

/// What the clones of one open share.
pub(crate) struct Shared {
    client: Client,
    name: String,
    /// Live [`Bo`] values per BO handle: BO_IMPORT of a BO this file already
    /// holds returns the same handle, so the handle is closed with the last one.
    bo_refs: Mutex<HashMap<u32, usize>>,
}

/// One open of an accel device (one file): cheap to clone, clones share the open.
///
/// Handles are per open: an object of one `Device` (and its clones) used with
/// another open `Device` is rejected with ENOENT, as the core rejects a handle
/// of another file.
#[derive(Clone)]
pub struct Device {
    shared: Arc<Shared>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device").field("name", &self.shared.name).finish_non_exhaustive()
    }
}

/// The `Error::call` name of a DEVICE_QUERY id.
fn query_call(id: u32) -> &'static str {
    match id {
        sys::ACCEL_QUERY_DEVICE_INFO => "DEVICE_QUERY(DEVICE_INFO)",
        sys::ACCEL_QUERY_ENGINES => "DEVICE_QUERY(ENGINES)",
        sys::ACCEL_QUERY_MEMORY_REGIONS => "DEVICE_QUERY(MEMORY_REGIONS)",
        sys::ACCEL_QUERY_VA_RANGE => "DEVICE_QUERY(VA_RANGE)",
        sys::ACCEL_QUERY_PORTS => "DEVICE_QUERY(PORTS)",
        sys::ACCEL_QUERY_LIMITS => "DEVICE_QUERY(LIMITS)",
        _ => "DEVICE_QUERY",
    }
}

impl Device {
    /// Open `accelN` (or `/dev/accel/accelN`) of the process-wide registry,
    /// registering the embedded default devices first if there are none.
    pub fn open(name_or_path: &str) -> Result<Device> {
        crate::ensure_embedded_devices();
        Client::open(name_or_path).map(|c| Device::from_client(c, name_or_path)).map_err(err("OPEN"))
    }

    /// Open `accelN` of `registry`.
    pub fn open_in(registry: &accel_core::Registry, name: &str) -> Result<Device> {
        Client::open_in(registry, name).map(|c| Device::from_client(c, name)).map_err(err("OPEN"))
    }

    /// Wrap an already open client; `name` is the device name or path it was opened with.
    pub fn from_client(client: Client, name: &str) -> Device {
        let base = name.rsplit('/').next().unwrap_or(name);
        Device { shared: Arc::new(Shared { client, name: base.to_string(), bo_refs: Mutex::new(HashMap::new()) }) }
    }

    /// The names (`accelN`) of the process-wide registry's devices, by minor,
    /// after registering the embedded default devices if there are none.
    pub fn list() -> Vec<String> {
        crate::ensure_embedded_devices();
        let mut devs = accel_core::Registry::global().devices();
        devs.sort_by_key(|d| d.minor());
        devs.iter().map(|d| d.name().to_string()).collect()
    }

    /// The device name, `accelN`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The transport client of this open (for raw mmap in tests).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Whether `other` is this same open (a clone of it).
    pub fn same_open(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// ENOENT of `call` unless `other` is this open.
    pub(crate) fn check_same(&self, call: &'static str, other: &Device) -> Result<()> {
        if self.same_open(other) { Ok(()) } else { Err(Error::new(call, Errno::ENOENT)) }
    }

    /// A raw typed ioctl: `arg` is sent as bytes and updated with what the core copies back.
    pub fn ioctl<T: IntoBytes + FromBytes>(&self, call: &'static str, cmd: u32, arg: &mut T) -> Result<()> {
        self.ioctl_bytes(call, cmd, arg.as_mut_bytes())
    }

    /// A typed ioctl whose nested pointers all point into slices lent in
    /// `mem`: the core copies from and to them without a system call.
    pub(crate) fn ioctl_lent<T: IntoBytes + FromBytes>(
        &self,
        call: &'static str,
        cmd: u32,
        arg: &mut T,
        mem: &SliceMemory<'_>,
    ) -> Result<()> {
        self.shared.client.ioctl_with(cmd, arg.as_mut_bytes(), mem).map_err(err(call))
    }

    /// A raw ioctl on bytes (whose length should be the size `cmd` encodes).
    pub fn ioctl_bytes(&self, call: &'static str, cmd: u32, arg: &mut [u8]) -> Result<()> {
        self.shared.client.ioctl(cmd, arg).map_err(err(call))
    }

    // ------------------------------------------------------------ queries

    /// VERSION: the ABI version and capability bits.
    pub fn version(&self) -> Result<sys::accel_version> {
        let mut a = sys::accel_version::default();
        self.ioctl("VERSION", sys::ACCEL_IOCTL_VERSION, &mut a)?;
        Ok(a)
    }

    /// The capability bits of VERSION (unknown bits kept).
    pub fn caps(&self) -> Result<Caps> {
        self.version().map(|v| Caps::from_bits_retain(v.caps))
    }

    /// DEVICE_QUERY of `id` (`ACCEL_QUERY_*`), size-then-fill: the raw result bytes.
    pub fn query(&self, id: u32) -> Result<Vec<u8>> {
        let call = query_call(id);
        let mut a = sys::accel_device_query { query_id: id, ..Default::default() };
        self.ioctl(call, sys::ACCEL_IOCTL_DEVICE_QUERY, &mut a)?;
        if a.size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; a.size as usize];
        let mut mem = SliceMemory::new();
        let data_ptr = mem.lend_mut(&mut buf);
        let mut a = sys::accel_device_query { query_id: id, size: a.size, data_ptr, ..Default::default() };
        self.ioctl_lent(call, sys::ACCEL_IOCTL_DEVICE_QUERY, &mut a, &mem)?;
        drop(mem);
        buf.truncate(a.size as usize);
        Ok(buf)
    }

    /// A query whose result is one struct.
    fn query_struct<T: FromBytes>(&self, id: u32) -> Result<T> {
        let bytes = self.query(id)?;
        T::read_from_prefix(&bytes).map(|(v, _)| v).map_err(|_| Error::new(query_call(id), Errno::EIO))
    }

    /// A query whose result is a header (`num` first) followed by `num` entries.
    fn query_list<H: FromBytes, E: FromBytes>(&self, id: u32, num: impl Fn(&H) -> u32) -> Result<Vec<E>> {
        let call = query_call(id);
        let broken = Error::new(call, Errno::EIO);
        let bytes = self.query(id)?;
        let (header, mut rest) = H::read_from_prefix(&bytes).map_err(|_| broken)?;
        let n = num(&header) as usize;
        if n.checked_mul(size_of::<E>()).is_none_or(|total| total > rest.len()) {
            return Err(broken);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (e, tail) = E::read_from_prefix(rest).map_err(|_| broken)?;
            out.push(e);
            rest = tail;
        }
        Ok(out)
    }

    /// ACCEL_QUERY_DEVICE_INFO.
    pub fn info(&self) -> Result<sys::accel_device_info> {
        self.query_struct(sys::ACCEL_QUERY_DEVICE_INFO)
    }

    /// ACCEL_QUERY_ENGINES: one entry per engine class.
    pub fn engines(&self) -> Result<Vec<sys::accel_engine_info>> {
        self.query_list(sys::ACCEL_QUERY_ENGINES, |h: &sys::accel_query_engines| h.num_engines)
    }

    /// ACCEL_QUERY_MEMORY_REGIONS.
    pub fn memory_regions(&self) -> Result<Vec<sys::accel_memory_region>> {
        self.query_list(sys::ACCEL_QUERY_MEMORY_REGIONS, |h: &sys::accel_query_memory_regions| h.num_regions)
    }

    /// ACCEL_QUERY_VA_RANGE: the VA window usable by VM_BIND.
    pub fn va_range(&self) -> Result<sys::accel_va_range> {
        self.query_struct(sys::ACCEL_QUERY_VA_RANGE)
    }

    /// ACCEL_QUERY_PORTS (empty without `ACCEL_CAP_FABRIC`).
    pub fn ports(&self) -> Result<Vec<sys::accel_port_info>> {
        self.query_list(sys::ACCEL_QUERY_PORTS, |h: &sys::accel_query_ports| h.num_ports)
    }

    /// ACCEL_QUERY_LIMITS.
    pub fn limits(&self) -> Result<sys::accel_limits> {
        self.query_struct(sys::ACCEL_QUERY_LIMITS)
    }

    // ------------------------------------------------------------ objects

    /// CONTEXT_CREATE: a context with an empty address space.
    pub fn create_context(&self) -> Result<Context> {
        const CALL: &str = "CONTEXT_CREATE";
        let mut a = sys::accel_context_create::default();
        self.ioctl(CALL, sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a)?;
        let id = ContextId::from(returned_handle(CALL, a.ctx_id)?);
        Ok(Context::from_inner(ContextInner::new(self.clone(), id)))
    }

    /// BO_CREATE of `size` bytes in `region`; [`Bo::size`] is the rounded size (BO_INFO).
    pub fn create_bo(&self, size: u64, region: u32, flags: BoFlags) -> Result<Bo> {
        const CALL: &str = "BO_CREATE";
        let mut a = sys::accel_bo_create { size, region, flags: flags.bits(), ..Default::default() };
        self.ioctl(CALL, sys::ACCEL_IOCTL_BO_CREATE, &mut a)?;
        let handle = BoHandle::from(returned_handle(CALL, a.handle)?);
        self.acquire_bo(handle);
        // Owned from here: dropped (closed) if BO_INFO fails.
        let mut bo = Bo::from_parts(self.clone(), handle, size);
        let info = bo.info()?;
        bo.set_size(info.size);
        Ok(bo)
    }

    /// BO_IMPORT of a BO_EXPORT descriptor (possibly of another open or device file).
    pub fn import_bo(&self, fd: BorrowedFd<'_>) -> Result<Bo> {
        const CALL: &str = "BO_IMPORT";
        let mut a = sys::accel_bo_import { fd: fd.as_raw_fd(), ..Default::default() };
        // Under the lock, so a concurrent last drop of the same handle cannot close it in between.
        let mut refs = self.shared.bo_refs.lock();
        self.ioctl(CALL, sys::ACCEL_IOCTL_BO_IMPORT, &mut a)?;
        let handle = BoHandle::from(returned_handle(CALL, a.handle)?);
        *refs.entry(handle.get()).or_insert(0) += 1;
        drop(refs);
        Ok(Bo::from_parts(self.clone(), handle, a.size))
    }

    /// Count one more [`Bo`] value for `handle`.
    fn acquire_bo(&self, handle: BoHandle) {
        *self.shared.bo_refs.lock().entry(handle.get()).or_insert(0) += 1;
    }

    /// One [`Bo`] value of `handle` is gone: BO_CLOSE with the last one (errors ignored).
    pub(crate) fn release_bo(&self, handle: BoHandle) {
        let mut refs = self.shared.bo_refs.lock();
        let last = match refs.get_mut(&handle.get()) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                refs.remove(&handle.get());
                true
            }
        };
        if last {
            let mut a = sys::accel_bo_close { handle: handle.get(), pad: 0 };
            let _ = self.ioctl("BO_CLOSE", sys::ACCEL_IOCTL_BO_CLOSE, &mut a);
        }
    }

    /// SYNCOBJ_CREATE: binary or `timeline`, binary ones optionally `signaled`.
    pub fn create_syncobj(&self, timeline: bool, signaled: bool) -> Result<Syncobj> {
        const CALL: &str = "SYNCOBJ_CREATE";
        let mut flags = SyncobjCreateFlags::empty();
        flags.set(SyncobjCreateFlags::TIMELINE, timeline);
        flags.set(SyncobjCreateFlags::SIGNALED, signaled);
        let mut a = sys::accel_syncobj_create { flags: flags.bits(), handle: 0 };
        self.ioctl(CALL, sys::ACCEL_IOCTL_SYNCOBJ_CREATE, &mut a)?;
        Ok(Syncobj::from_parts(self.clone(), SyncobjHandle::from(returned_handle(CALL, a.handle)?)))
    }

    /// SYNCOBJ_IMPORT of a SYNCOBJ_EXPORT descriptor: a new handle to the same syncobj.
    pub fn import_syncobj(&self, fd: BorrowedFd<'_>) -> Result<Syncobj> {
        const CALL: &str = "SYNCOBJ_IMPORT";
        let mut a = sys::accel_syncobj_import { fd: fd.as_raw_fd(), ..Default::default() };
        self.ioctl(CALL, sys::ACCEL_IOCTL_SYNCOBJ_IMPORT, &mut a)?;
        Ok(Syncobj::from_parts(self.clone(), SyncobjHandle::from(returned_handle(CALL, a.handle)?)))
    }

    /// `accel_sync` entries for `(syncobj, point)` pairs of this open.
    pub(crate) fn syncs(&self, call: &'static str, syncs: &[(&Syncobj, u64)]) -> Result<Vec<sys::accel_sync>> {
        syncs
            .iter()
            .map(|(s, point)| {
                self.check_same(call, s.device())?;
                Ok(sys::accel_sync { handle: s.handle().get(), flags: 0, point: *point })
            })
            .collect()
    }

    /// SYNCOBJ_WAIT on `(syncobj, point)` pairs (point 0 for binary syncobjs) until all
    /// (or any) are signalled or the absolute `CLOCK_MONOTONIC` deadline passes (ETIMEDOUT;
    /// 0 = poll). Returns `first_signaled`. An EINTR is restarted with the same deadline.
    pub fn wait(&self, syncs: &[(&Syncobj, u64)], all: bool, wait_for_submit: bool, deadline_ns: i64) -> Result<u32> {
        const CALL: &str = "SYNCOBJ_WAIT";
        let mut handles = Vec::with_capacity(syncs.len());
        let mut points = Vec::with_capacity(syncs.len());
        for (s, point) in syncs {
            self.check_same(CALL, s.device())?;
            handles.push(s.handle().get());
            points.push(*point);
        }
        let mut flags = SyncobjWaitFlags::empty();
        flags.set(SyncobjWaitFlags::ALL, all);
        flags.set(SyncobjWaitFlags::WAIT_FOR_SUBMIT, wait_for_submit);
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_syncobj_wait {
            handles_ptr: mem.lend(handles.as_bytes()),
            points_ptr: mem.lend(points.as_bytes()),
            timeout_ns: deadline_ns,
            count: count(CALL, syncs.len())?,
            flags: flags.bits(),
            ..Default::default()
        };
        loop {
            match self.ioctl_lent(CALL, sys::ACCEL_IOCTL_SYNCOBJ_WAIT, &mut a, &mem) {
                Err(e) if e.errno == Errno::EINTR => continue,
                r => return r.map(|()| a.first_signaled),
            }
        }
    }

    // ------------------------------------------------------------ fabric

    /// PD_ALLOC: a protection domain.
    pub fn alloc_pd(&self) -> Result<Pd> {
        fabric::alloc_pd(self)
    }

    /// CQ_CREATE with at least `cqe` entries.
    pub fn create_cq(&self, cqe: u32) -> Result<Cq> {
        fabric::create_cq(self, cqe)
    }

    /// GET_ASYNC_EVENT: the oldest pending asynchronous event (EAGAIN if none).
    pub fn async_event(&self) -> Result<sys::accel_async_event> {
        let mut a = sys::accel_async_event::default();
        self.ioctl("GET_ASYNC_EVENT", sys::ACCEL_IOCTL_GET_ASYNC_EVENT, &mut a)?;
        Ok(a)
    }
}
