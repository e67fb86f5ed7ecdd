//! User memory: how the dispatcher reads and writes the arrays that ioctl
//! structs point to. A transport supplies an implementation; the core never
//! dereferences a user pointer (UAPI-RULES.md rule 8).

use accel_uapi::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;
use std::io::{IoSlice, IoSliceMut};

/// Access to the caller's memory. Every method fails with EFAULT on a range
/// that is not (entirely) readable or writable.
pub trait UserMemory {
    /// Copy `dst.len()` bytes from user address `addr`.
    fn copy_in(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno>;
    /// Copy `src` to user address `addr`.
    fn copy_out(&self, addr: u64, src: &[u8]) -> Result<(), Errno>;
    /// Check, before a handler runs, that `[addr, addr + len)` can be written,
    /// so a later copy-out cannot lose the handler's results.
    fn check_writable(&self, addr: u64, len: usize) -> Result<(), Errno>;
}

/// The memory of this very process, for the in-process transport. Reads and
/// writes go through `process_vm_readv`/`process_vm_writev` on ourselves, so a
/// bad pointer is EFAULT from the kernel, never undefined behaviour here.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessMemory;

fn remote(addr: u64, len: usize) -> Result<RemoteIoVec, Errno> {
    let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
    base.checked_add(len).ok_or(Errno::EFAULT)?;
    Ok(RemoteIoVec { base, len })
}

impl UserMemory for ProcessMemory {
    fn copy_in(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        if dst.is_empty() {
            return Ok(());
        }
        let r = [remote(addr, dst.len())?];
        let len = dst.len();
        let n = process_vm_readv(Pid::this(), &mut [IoSliceMut::new(dst)], &r).map_err(|_| Errno::EFAULT)?;
        if n == len { Ok(()) } else { Err(Errno::EFAULT) }
    }

    fn copy_out(&self, addr: u64, src: &[u8]) -> Result<(), Errno> {
        if src.is_empty() {
            return Ok(());
        }
        let r = [remote(addr, src.len())?];
        let n = process_vm_writev(Pid::this(), &[IoSlice::new(src)], &r).map_err(|_| Errno::EFAULT)?;
        if n == src.len() { Ok(()) } else { Err(Errno::EFAULT) }
    }

    fn check_writable(&self, addr: u64, len: usize) -> Result<(), Errno> {
        // Read the bytes and write the same bytes back: proves the range is
        // mapped and writable without changing it.
        let mut tmp = vec![0u8; len];
        self.copy_in(addr, &mut tmp)?;
        self.copy_out(addr, &tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_memory_copies_and_faults() {
        let src = [1u8, 2, 3, 4];
        let mut dst = [0u8; 4];
        ProcessMemory.copy_in(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        let mut out = [0u8; 4];
        ProcessMemory.copy_out(out.as_mut_ptr() as u64, &[9, 8, 7, 6]).unwrap();
        assert_eq!(out, [9, 8, 7, 6]);
        assert_eq!(ProcessMemory.copy_in(16, &mut dst), Err(Errno::EFAULT));
        assert_eq!(ProcessMemory.copy_in(u64::MAX - 1, &mut dst), Err(Errno::EFAULT));
        assert_eq!(ProcessMemory.check_writable(16, 8), Err(Errno::EFAULT));
        // Read-only memory (a string literal in .rodata) is not writable.
        let ro: &'static [u8] = b"read-only";
        assert_eq!(ProcessMemory.check_writable(ro.as_ptr() as u64, ro.len()), Err(Errno::EFAULT));
    }
}
