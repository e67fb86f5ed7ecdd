//! memfd-backed host memory: the backing of CPU-visible buffer objects. A
//! memfd can be mmapped by any transport (in-process directly, or passed over
//! a Unix socket with SCM_RIGHTS) and names exactly one object, so exporting
//! it never exposes anything else.
//!
//! This module owns the only raw memory access of the core; every access is
//! bounds-checked first.
//!
//! Known deviation: device accesses (jobs on engine threads) and CPU mappings
//! may touch the same bytes at the same time, as DMA and CPU do on real
//! hardware. Only bytes move (never a Rust reference or a value with
//! invariants), so no core invariant depends on them, but under the Rust
//! memory model such a race is still undefined behaviour. Making every copy
//! volatile or atomic (as rust-vmm's vm-memory does) is the planned fix.

use crate::error::{Error, Result};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// A memfd of fixed size, mapped read-write into this process.
#[derive(Debug)]
pub struct HostMemory {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and freed only in Drop, so the
// pointer stays valid on any thread; every access is a bounds-checked byte
// copy (see the module note on concurrent access to the same bytes).
unsafe impl Send for HostMemory {}
// SAFETY: as above; no method hands out a Rust reference into the mapping.
unsafe impl Sync for HostMemory {}

impl HostMemory {
    /// Create `len` bytes of zeroed memory named `name` (visible in /proc/self/fd).
    pub fn new(name: &str, len: u64) -> Result<HostMemory> {
        let len_usize = usize::try_from(len).map_err(|_| Error::TooBig(format!("{len} bytes")))?;
        let nz = NonZeroUsize::new(len_usize).ok_or_else(|| Error::invalid("zero-sized memory"))?;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::NoMemory(format!("memfd_create({name}): {e}")))?;
        nix::unistd::ftruncate(&fd, len as i64).map_err(|e| Error::NoMemory(format!("ftruncate({len}): {e}")))?;
        // SAFETY: a fresh shared mapping of a memfd we own, of exactly its size;
        // nothing else aliases it yet.
        let p = unsafe { mmap(None, nz, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, &fd, 0) }
            .map_err(|e| Error::NoMemory(format!("mmap({len}): {e}")))?;
        Ok(HostMemory { fd, ptr: p.cast(), len: len_usize })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Never true: zero-sized memory cannot be created.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64).ok_or_else(|| Error::Overflow("memory range".into()))?;
        if end > self.len as u64 {
            return Err(Error::Fault { addr: offset, len: len as u64 });
        }
        Ok(offset as usize)
    }

    /// Copy `dst.len()` bytes from `offset`.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        let off = self.check(offset, dst.len())?;
        // SAFETY: off + dst.len() <= self.len was checked and the mapping lives as
        // long as self; dst is a distinct Rust buffer. Concurrent writers to the
        // same shared bytes are the deviation described in the module note.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copy `src` to `offset`.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        let off = self.check(offset, src.len())?;
        // SAFETY: off + src.len() <= self.len was checked and the mapping is
        // writable; src is a distinct Rust buffer (module note: shared bytes).
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.as_ptr().add(off), src.len()) };
        Ok(())
    }

    /// Set `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: u64, len: u64, byte: u8) -> Result<()> {
        let n = usize::try_from(len).map_err(|_| Error::TooBig(format!("{len} bytes")))?;
        let off = self.check(offset, n)?;
        // SAFETY: off + n <= self.len was checked and the mapping is writable
        // (module note: shared bytes).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(off), byte, n) };
        Ok(())
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping created in new(), unmapped exactly once here.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::error!("munmap of host memory failed: {e}");
        }
    }
}

/// Raise this process's soft open-file limit to its hard limit: every BO
/// holds one memfd. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_writes_and_bounds_checks() {
        let m = HostMemory::new("accel-test", 8192).unwrap();
        let mut buf = [0xffu8; 4];
        m.read(8188, &mut buf).unwrap();
        assert_eq!(buf, [0; 4], "fresh memory is zero");
        m.write(100, b"abcd").unwrap();
        m.read(100, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert_eq!(m.read(8190, &mut buf), Err(Error::Fault { addr: 8190, len: 4 }));
        assert_eq!(m.write(u64::MAX, b"x"), Err(Error::Overflow("memory range".into())));
        m.fill(0, 8192, 7).unwrap();
        m.read(4096, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert!(HostMemory::new("zero", 0).is_err());
    }
}
