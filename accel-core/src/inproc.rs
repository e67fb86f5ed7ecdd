//! The in-process transport (the embedded default): the core linked into the
//! process, a device opened by name, ioctls by bytes, BOs mapped through
//! their memfd. User pointers inside ioctl structs are addresses in this
//! process, read and written only through [`ProcessMemory`].

use crate::bo::Bo;
use crate::device::Registry;
use crate::dispatch::dispatch;
use crate::file::File;
use crate::stats::Counters;
use crate::user::{ProcessMemory, UserMemory};
use accel_uapi::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;

/// One open of a device through the in-process transport.
#[derive(Debug, Clone)]
pub struct Client {
    file: Arc<File>,
}

impl Client {
    /// Open `accelN` (or `/dev/accel/accelN`) in `registry`.
    pub fn open_in(registry: &Registry, name: &str) -> Result<Client, Errno> {
        registry.open(name).map(|file| Client { file }).map_err(|e| e.errno())
    }

    /// Open a device of the process-wide registry.
    pub fn open(name: &str) -> Result<Client, Errno> {
        Self::open_in(Registry::global(), name)
    }

    /// Issue an ioctl: `arg` holds exactly the struct size `cmd` encodes.
    pub fn ioctl(&self, cmd: u32, arg: &mut [u8]) -> Result<(), Errno> {
        dispatch(&self.file, cmd, arg, &ProcessMemory)
    }

    /// Issue an ioctl whose nested pointers are resolved by `user` (tests, other transports).
    pub fn ioctl_with(&self, cmd: u32, arg: &mut [u8], user: &dyn UserMemory) -> Result<(), Errno> {
        dispatch(&self.file, cmd, arg, user)
    }

    /// Map `len` bytes of the BO at mmap `offset` (from BO_MMAP_OFFSET).
    pub fn mmap(&self, offset: u64, len: u64, writable: bool) -> Result<CpuMapping, Errno> {
        let bo = self.file.bo_by_mmap_offset(offset).map_err(|e| e.errno())?;
        if len == 0 || len > bo.size {
            return Err(Errno::EINVAL);
        }
        let host = bo.host().ok_or(Errno::EINVAL)?;
        if len > host.len() {
            return Err(Errno::EINVAL); // a backend's CPU view may be smaller than the BO
        }
        let n = NonZeroUsize::new(usize::try_from(len).map_err(|_| Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        let prot = if writable { ProtFlags::PROT_READ | ProtFlags::PROT_WRITE } else { ProtFlags::PROT_READ };
        // SAFETY: a new shared mapping of the BO's memfd, within its size; the
        // mapping is owned by the returned CpuMapping and unmapped in its Drop.
        let p = unsafe { mmap(None, n, prot, MapFlags::MAP_SHARED, host.fd(), 0) }.map_err(|_| Errno::ENOMEM)?;
        Counters::add(&bo.device.counters.cpu_mappings, 1);
        Ok(CpuMapping { ptr: p.cast(), len: n.get(), writable, bo })
    }

    /// The file behind this client (for tests and tools).
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Close: release everything this open owns.
    pub fn close(self) {
        self.file.close();
    }
}

/// A CPU mapping of a BO. It keeps the BO alive until dropped.
#[derive(Debug)]
pub struct CpuMapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    bo: Arc<Bo>,
}

// SAFETY: the mapping is owned by this value and unmapped only in Drop, so
// the pointer is valid on any thread; access is by bounds-checked copies.
// Concurrent access to the same bytes by jobs is the deviation described in
// accel_core::memory.
unsafe impl Send for CpuMapping {}
// SAFETY: as above.
unsafe impl Sync for CpuMapping {}

impl CpuMapping {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the mapping (what a C caller gets from accel_mmap).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copy out of the mapping.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Errno> {
        let end = offset.checked_add(dst.len()).ok_or(Errno::EINVAL)?;
        if end > self.len {
            return Err(Errno::EINVAL);
        }
        // SAFETY: offset..end lies inside the live mapping; dst is a distinct
        // buffer (see accel_core::memory on concurrent access).
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copy into the mapping (EPERM if mapped read-only).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EPERM);
        }
        let end = offset.checked_add(src.len()).ok_or(Errno::EINVAL)?;
        if end > self.len {
            return Err(Errno::EINVAL);
        }
        // SAFETY: offset..end lies inside the live, writable mapping; src is a
        // distinct buffer (see accel_core::memory on concurrent access).
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
        Ok(())
    }
}

impl Drop for CpuMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping created in Client::mmap, unmapped exactly once.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::error!("munmap of a BO mapping failed: {e}");
        }
        Counters::add(&self.bo.device.counters.cpu_mappings, -1);
    }
}
