//! User memory: how the dispatcher reads and writes the arrays that ioctl
//! structs point to. A transport supplies an implementation; the core never
//! dereferences a user pointer (UAPI-RULES.md rule 8).

use accel_uapi::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;
use std::cell::RefCell;
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

/// User memory made of buffers a Rust caller lends for one ioctl (the safe
/// library): each nested pointer is the address of a lent slice, and the
/// dispatcher's accesses are bounds-checked copies from and to those slices.
/// An address range that is not inside one lent slice is EFAULT, as an
/// unmapped page is for [`ProcessMemory`]; unlike it, no system call is made.
///
/// ```
/// use accel_core::{SliceMemory, UserMemory};
/// let input = [1u8, 2, 3, 4];
/// let mut output = [0u8; 2];
/// let mut mem = SliceMemory::new();
/// let at = mem.lend(&input);
/// let out_at = mem.lend_mut(&mut output);
/// let mut got = [0u8; 2];
/// mem.copy_in(at + 2, &mut got).unwrap();
/// assert_eq!(got, [3, 4]);
/// assert_eq!(mem.copy_in(at + 3, &mut got), Err(accel_uapi::Errno::EFAULT));
/// mem.copy_out(out_at, &[9, 9]).unwrap();
/// drop(mem);
/// assert_eq!(output, [9, 9]);
/// ```
#[derive(Debug, Default)]
pub struct SliceMemory<'a> {
    inputs: Lent<&'a [u8]>,
    outputs: Lent<RefCell<&'a mut [u8]>>,
}

/// Up to four lent slices inline (no ioctl has more than three arrays),
/// more on the heap: lending allocates nothing on the ioctl hot paths.
#[derive(Debug)]
struct Lent<T> {
    inline: [Option<T>; 4],
    more: Vec<T>,
}

impl<T> Default for Lent<T> {
    fn default() -> Self {
        Lent { inline: [None, None, None, None], more: Vec::new() }
    }
}

impl<T> Lent<T> {
    fn push(&mut self, v: T) {
        match self.inline.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(v),
            None => self.more.push(v),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline.iter().flatten().chain(&self.more)
    }
}

/// Where `[addr, addr + len)` starts inside a slice at `base` of `size`
/// bytes, if it lies entirely inside it.
fn offset_in(base: u64, size: usize, addr: u64, len: usize) -> Option<usize> {
    let off = usize::try_from(addr.checked_sub(base)?).ok()?;
    (off.checked_add(len)? <= size).then_some(off)
}

fn address(s: &[u8]) -> u64 {
    s.as_ptr().expose_provenance() as u64
}

impl<'a> SliceMemory<'a> {
    /// No memory lent yet: every access is EFAULT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lends `s` for reading; returns the user pointer to put in the ioctl struct.
    pub fn lend(&mut self, s: &'a [u8]) -> u64 {
        self.inputs.push(s);
        address(s)
    }

    /// Lends `s` for reading and writing; returns its user pointer.
    pub fn lend_mut(&mut self, s: &'a mut [u8]) -> u64 {
        let at = address(s);
        self.outputs.push(RefCell::new(s));
        at
    }
}

impl UserMemory for SliceMemory<'_> {
    fn copy_in(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        if dst.is_empty() {
            return Ok(());
        }
        let len = dst.len();
        for s in self.inputs.iter() {
            if let Some(off) = offset_in(address(s), s.len(), addr, len) {
                dst.copy_from_slice(&s[off..off + len]);
                return Ok(());
            }
        }
        for s in self.outputs.iter() {
            let s = s.borrow();
            if let Some(off) = offset_in(address(&s), s.len(), addr, len) {
                dst.copy_from_slice(&s[off..off + len]);
                return Ok(());
            }
        }
        Err(Errno::EFAULT)
    }

    fn copy_out(&self, addr: u64, src: &[u8]) -> Result<(), Errno> {
        if src.is_empty() {
            return Ok(());
        }
        for s in self.outputs.iter() {
            let mut s = s.borrow_mut();
            if let Some(off) = offset_in(address(&s), s.len(), addr, src.len()) {
                s[off..off + src.len()].copy_from_slice(src);
                return Ok(());
            }
        }
        Err(Errno::EFAULT)
    }

    fn check_writable(&self, addr: u64, len: usize) -> Result<(), Errno> {
        if len == 0
            || self.outputs.iter().any(|s| offset_in(address(&s.borrow()), s.borrow().len(), addr, len).is_some())
        {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
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

    #[test]
    fn slice_memory_bounds() {
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut b = [0u8; 4];
        let mut mem = SliceMemory::new();
        let pa = mem.lend(&a);
        let pb = mem.lend_mut(&mut b);
        let mut dst = [0u8; 4];
        mem.copy_in(pa + 4, &mut dst).unwrap();
        assert_eq!(dst, [5, 6, 7, 8]);
        // One byte past the end, before the start, the null page, wrapping.
        assert_eq!(mem.copy_in(pa + 5, &mut dst), Err(Errno::EFAULT));
        assert_eq!(mem.copy_in(pa - 1, &mut dst), Err(Errno::EFAULT));
        assert_eq!(mem.copy_in(0, &mut dst), Err(Errno::EFAULT));
        assert_eq!(mem.copy_in(u64::MAX, &mut dst), Err(Errno::EFAULT));
        // Lent for reading only: not writable.
        assert_eq!(mem.check_writable(pa, 4), Err(Errno::EFAULT));
        assert_eq!(mem.copy_out(pa, &[0; 4]), Err(Errno::EFAULT));
        assert_eq!(mem.check_writable(pb, 4), Ok(()));
        assert_eq!(mem.check_writable(pb + 1, 4), Err(Errno::EFAULT));
        mem.copy_out(pb + 1, &[7, 7, 7]).unwrap();
        mem.copy_in(pb, &mut dst).unwrap();
        assert_eq!(dst, [0, 7, 7, 7]);
        assert_eq!(mem.check_writable(pb, 0), Ok(()));
        drop(mem);
        assert_eq!(b, [0, 7, 7, 7]);
        assert_eq!(SliceMemory::new().copy_in(pa, &mut dst), Err(Errno::EFAULT));
        // More slices than fit inline are still found.
        let bufs: Vec<[u8; 4]> = (0..6u8).map(|i| [i; 4]).collect();
        let mut mem = SliceMemory::new();
        let at: Vec<u64> = bufs.iter().map(|b| mem.lend(b)).collect();
        for (i, a) in at.iter().enumerate() {
            mem.copy_in(*a, &mut dst).unwrap();
            assert_eq!(dst, [i as u8; 4]);
        }
    }
}
