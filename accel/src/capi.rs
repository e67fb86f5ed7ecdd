//! The C ABI (libaccel.so): see `accel-uapi/include/libaccel.h`.
//!
//! Five functions give C the same shape as a character device would:
//! [`accel_open`], [`accel_ioctl`], [`accel_close`], [`accel_mmap`] and
//! [`accel_munmap`]. They speak the bytes of `accel.h` through the in-process
//! transport ([`accel_core::inproc::Client`]) and report failures as `-1` (or
//! `MAP_FAILED`) with `errno` set, exactly like the system calls they mirror.
//!
//! - **Descriptors are real file descriptors.** Each open owns a `memfd`
//!   (`memfd:accel:accelN` in `/proc/self/fd`) as its identity, so an accel
//!   descriptor never collides with any other descriptor of the process. The
//!   process-wide table maps that number to the open. Close it with
//!   [`accel_close`] only, never with `close(2)`.
//! - **The caller's memory is never dereferenced.** The ioctl struct, the
//!   device name and every nested array are read and written with
//!   `process_vm_readv`/`process_vm_writev` ([`ProcessMemory`]), so a bad
//!   pointer is `EFAULT`, never a crash.
//! - **No panic crosses into C.** Every entry point runs under
//!   `catch_unwind`; a panic (a bug) is reported as `EIO`.
//! - **Thread-safe.** Any function may be called from any thread; a blocking
//!   ioctl (SYNCOBJ_WAIT) does not hold any lock of this module.

use accel_core::inproc::{Client, CpuMapping};
use accel_core::{ProcessMemory, UserMemory};
use accel_uapi::ioctl::{self, decode};
use nix::errno::Errno;
use nix::libc;
use nix::sys::memfd::{MFdFlags, memfd_create};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The longest device name accepted, terminating NUL included (PATH_MAX).
const NAME_MAX: usize = 4096;

/// `_IOC` direction bit: userspace writes the struct (the core copies it in).
const DIR_WRITE: u32 = 1;
/// `_IOC` direction bit: userspace reads the struct (the core copies it out).
const DIR_READ: u32 = 2;

/// One open of a device.
struct Open {
    /// The descriptor number handed to C is this fd's number.
    identity: OwnedFd,
    client: Client,
}

/// Every open, by descriptor.
static FILES: Mutex<BTreeMap<RawFd, Open>> = Mutex::new(BTreeMap::new());
/// Every live CPU mapping, by address.
static MAPPINGS: Mutex<BTreeMap<usize, CpuMapping>> = Mutex::new(BTreeMap::new());

/// Convert a core errno to nix's.
fn errno(e: accel_uapi::Errno) -> Errno {
    Errno::from_raw(e.raw())
}

/// Run `f` as the body of an entry point: its error (or `EIO` for a panic)
/// goes to `errno` and `fail` is returned. Errno is left alone on success.
fn entry<T>(fail: T, f: impl FnOnce() -> Result<T, Errno>) -> T {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        Err(payload) => {
            // Do not let a panicking Drop of the payload unwind either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Errno::EIO
        }
    };
    Errno::set_raw(e as i32);
    fail
}

/// Read a NUL-terminated string at `addr` through [`ProcessMemory`]: EFAULT
/// for a NULL or unreadable pointer, ENAMETOOLONG past [`NAME_MAX`], EINVAL
/// for bytes that are not UTF-8.
fn read_name(addr: u64) -> Result<String, Errno> {
    if addr == 0 {
        return Err(Errno::EFAULT);
    }
    // Chunks never cross a 4 KiB boundary, hence never a page boundary: a
    // string ending just before an unmapped page is read without touching it.
    const CHUNK: u64 = 4096;
    let mut bytes = Vec::new();
    let mut at = addr;
    while bytes.len() < NAME_MAX {
        let room = (CHUNK - at % CHUNK).min((NAME_MAX - bytes.len()) as u64) as usize;
        let mut chunk = vec![0u8; room];
        ProcessMemory.copy_in(at, &mut chunk).map_err(|_| Errno::EFAULT)?;
        if let Some(nul) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            return String::from_utf8(bytes).map_err(|_| Errno::EINVAL);
        }
        bytes.extend_from_slice(&chunk);
        at = at.checked_add(room as u64).ok_or(Errno::EFAULT)?;
    }
    Err(Errno::ENAMETOOLONG)
}

/// The client behind descriptor `fd` (EBADF if it is not an accel descriptor).
fn client(fd: c_int) -> Result<Client, Errno> {
    FILES.lock().get(&fd).map(|o| o.client.clone()).ok_or(Errno::EBADF)
}

/// Open an accel device.
///
/// `name` is `"accelN"` or `"/dev/accel/accelN"`. Returns a new descriptor
/// (a real, close-on-exec file descriptor of this process, distinct from
/// every other) or -1 with errno: ENODEV for an unknown device, EFAULT for a
/// NULL or unreadable `name`, EINVAL for a name that is not UTF-8,
/// ENAMETOOLONG, EMFILE/ENFILE when no descriptor is left.
///
/// The embedded default devices are registered on first use.
///
/// `name` is read through `process_vm_readv`, never dereferenced.
#[unsafe(no_mangle)]
pub extern "C" fn accel_open(name: *const c_char) -> c_int {
    entry(-1, || {
        let name = read_name(name as u64)?;
        crate::ensure_embedded_devices();
        let client = Client::open(&name).map_err(errno)?;
        let tag = format!("accel:{}", client.file().device().name());
        let identity = match memfd_create(tag.as_str(), MFdFlags::MFD_CLOEXEC) {
            Ok(fd) => fd,
            Err(e) => {
                client.close();
                return Err(e);
            }
        };
        let fd = identity.as_raw_fd();
        // The kernel just allocated this number. A stale entry can only exist
        // if the caller closed an accel descriptor with close(2) instead of
        // accel_close: its descriptor is gone, so forget it (never close a
        // number that now belongs to this open) and close its file outside
        // the lock.
        let stale = FILES.lock().insert(fd, Open { identity, client });
        if let Some(old) = stale {
            std::mem::forget(old.identity);
            old.client.close();
        }
        Ok(fd)
    })
}

/// Issue an accel ioctl, exactly like `ioctl(2)` on a device node.
///
/// `request` is an `ACCEL_IOCTL_*` number (truncated to 32 bits, as the kernel
/// does); `arg` points to its struct, of the size the number encodes. For
/// commands the caller writes (`_IOW`, `_IOWR`) the struct is read before the
/// command runs; for commands the caller reads (`_IOR`, `_IOWR`) it is checked
/// writable before the command runs and written back only on success.
///
/// Returns 0, or -1 with errno: EBADF for a descriptor that is not an open
/// accel device, ENOTTY for an unknown command (before `arg` is touched),
/// EFAULT for an unreadable or unwritable `arg`, otherwise the command's own
/// errno (docs/uapi.md).
///
/// `arg` is accessed through `process_vm_readv`/`process_vm_writev` only.
#[unsafe(no_mangle)]
pub extern "C" fn accel_ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    entry(-1, || {
        let client = client(fd)?;
        // The kernel's ioctl command is an unsigned int: the upper bits of an
        // unsigned long (e.g. a sign-extended int) are dropped the same way.
        let cmd = request as u32;
        let d = decode(cmd);
        // An unknown command (type, nr or direction) touches no memory: its
        // size bits say nothing about what `arg` points to.
        match ioctl::by_nr(d.nr) {
            Some(desc) if d.ty == ioctl::IOCTL_TYPE && d.dir == desc.dir as u32 => {}
            _ => return Err(Errno::ENOTTY),
        }
        let addr = arg as u64;
        let mut buf = vec![0u8; d.size];
        if d.dir & DIR_WRITE != 0 {
            ProcessMemory.copy_in(addr, &mut buf).map_err(errno)?;
        }
        if d.dir & DIR_READ != 0 {
            // A failed copy-out after the command ran would lose its results
            // (a new handle, say): prove the struct writable first.
            ProcessMemory.check_writable(addr, buf.len()).map_err(errno)?;
        }
        let r = client.ioctl(cmd, &mut buf);
        // POST_SEND and POST_RECV return bad_wr with their failure: copy back
        // whatever the dispatcher left in the struct, as the kernel would.
        let copy_back = r.is_ok() || matches!(d.nr, 0x5B | 0x5C);
        if d.dir & DIR_READ != 0 && copy_back {
            ProcessMemory.copy_out(addr, &buf).map_err(errno)?;
        }
        r.map_err(errno)?;
        Ok(0)
    })
}

/// Close a descriptor from [`accel_open`].
///
/// Releases everything the open owns (queues after their in-flight jobs,
/// contexts, BOs, syncobjs) and its file descriptor. CPU mappings from
/// [`accel_mmap`] stay valid until [`accel_munmap`], as with `mmap(2)`.
/// Returns 0, or -1 with errno EBADF for a descriptor that is not an open
/// accel device (including one already closed).
#[unsafe(no_mangle)]
pub extern "C" fn accel_close(fd: c_int) -> c_int {
    entry(-1, || {
        let open = FILES.lock().remove(&fd).ok_or(Errno::EBADF)?;
        // Outside the lock: closing may wait for in-flight jobs. The entry is
        // gone before the number is freed, so a new open reusing the number
        // cannot be mistaken for this one.
        open.client.close();
        drop(open.identity);
        Ok(0)
    })
}

/// Map a BO into this process.
///
/// `offset` comes from `ACCEL_IOCTL_BO_MMAP_OFFSET`, `len` is at most the BO's
/// size, `prot` is `PROT_READ` or `PROT_READ | PROT_WRITE`. Returns the
/// address of a shared mapping of the BO's first `len` bytes, or `MAP_FAILED`
/// with errno: EBADF for a bad descriptor, EINVAL for another `prot`, a zero
/// or too large `len`, an unknown offset or a BO without a CPU view, ENOMEM.
/// The mapping keeps the BO alive until [`accel_munmap`].
#[unsafe(no_mangle)]
pub extern "C" fn accel_mmap(fd: c_int, offset: u64, len: usize, prot: c_int) -> *mut c_void {
    entry(libc::MAP_FAILED, || {
        let client = client(fd)?;
        let writable = match prot {
            libc::PROT_READ => false,
            p if p == libc::PROT_READ | libc::PROT_WRITE => true,
            _ => return Err(Errno::EINVAL),
        };
        let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
        let map = client.mmap(offset, len, writable).map_err(errno)?;
        let p = map.as_ptr();
        // A stale entry at this address means the caller unmapped an accel
        // mapping with munmap(2): the kernel reused the range, so the stale
        // mapping must not be unmapped again (it would unmap the new one).
        let stale = MAPPINGS.lock().insert(p as usize, map);
        if let Some(old) = stale {
            std::mem::forget(old);
        }
        Ok(p.cast())
    })
}

/// Unmap a mapping from [`accel_mmap`].
///
/// `p` must be the address [`accel_mmap`] returned and `len` the length it
/// was given. Returns 0, or -1 with errno EINVAL for an address that is not a
/// live accel mapping or a length that does not match (the mapping is then
/// left in place).
#[unsafe(no_mangle)]
pub extern "C" fn accel_munmap(p: *mut c_void, len: usize) -> c_int {
    entry(-1, || {
        let map = {
            let mut maps = MAPPINGS.lock();
            match maps.get(&(p as usize)) {
                Some(m) if m.len() == len => maps.remove(&(p as usize)),
                _ => None,
            }
        };
        // Unmapped outside the lock.
        drop(map.ok_or(Errno::EINVAL)?);
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use accel_uapi::sys;
    use std::ptr;
    use zerocopy::IntoBytes;

    /// Tests that use a descriptor number after closing it run one at a time,
    /// so a parallel test's open cannot reuse the number in between.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn last() -> Errno {
        Errno::last()
    }

    fn open0() -> c_int {
        let fd = accel_open(c"accel0".as_ptr());
        assert!(fd >= 0, "accel_open: {}", last());
        fd
    }

    #[test]
    fn open_unknown_or_bad_name() {
        let _serial = SERIAL.lock();
        assert_eq!(accel_open(c"accel999".as_ptr()), -1);
        assert_eq!(last(), Errno::ENODEV);
        assert_eq!(accel_open(ptr::null()), -1);
        assert_eq!(last(), Errno::EFAULT);
        assert_eq!(accel_open(16 as *const c_char), -1);
        assert_eq!(last(), Errno::EFAULT);
        let bad = [0xffu8, 0xfe, 0];
        assert_eq!(accel_open(bad.as_ptr().cast()), -1);
        assert_eq!(last(), Errno::EINVAL);
    }

    #[test]
    fn open_gives_distinct_real_descriptors() {
        let _serial = SERIAL.lock();
        let a = accel_open(c"/dev/accel/accel0".as_ptr());
        let b = open0();
        assert!(a >= 0 && b >= 0 && a != b);
        // Real descriptors: the kernel knows them.
        for fd in [a, b] {
            // SAFETY: fcntl(F_GETFD) on a number only reads its flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
        }
        assert_eq!(accel_close(a), 0);
        assert_eq!(accel_close(b), 0);
    }

    #[test]
    fn ioctl_bad_fd_and_bad_arg() {
        let _serial = SERIAL.lock();
        let mut v = sys::accel_version::default();
        let vp: *mut c_void = (&raw mut v).cast();
        assert_eq!(accel_ioctl(-1, sys::ACCEL_IOCTL_VERSION.into(), vp), -1);
        assert_eq!(last(), Errno::EBADF);
        // A real descriptor that is not an accel one.
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(accel_ioctl(null.as_raw_fd(), sys::ACCEL_IOCTL_VERSION.into(), vp), -1);
        assert_eq!(last(), Errno::EBADF);

        let fd = open0();
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_VERSION.into(), ptr::null_mut()), -1);
        assert_eq!(last(), Errno::EFAULT);
        let mut cc = sys::accel_context_create::default();
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_CONTEXT_CREATE.into(), ptr::null_mut()), -1);
        assert_eq!(last(), Errno::EFAULT);
        // Read-only memory for a command that writes back: EFAULT before it runs.
        static RO: sys::accel_context_create = sys::accel_context_create { flags: 0, ctx_id: 0 };
        let ro: *const sys::accel_context_create = &RO;
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_CONTEXT_CREATE.into(), ro.cast_mut().cast()), -1);
        assert_eq!(last(), Errno::EFAULT);

        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_VERSION.into(), vp), 0);
        assert_eq!(u32::from(v.major), sys::ACCEL_ABI_MAJOR);
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_CONTEXT_CREATE.into(), (&raw mut cc).cast()), 0);
        assert_ne!(cc.ctx_id, 0);
        assert_eq!(accel_ioctl(fd, 0xdead_beef, vp), -1);
        assert_eq!(last(), Errno::ENOTTY);
        // An unknown command is ENOTTY before its (bogus) size reaches memory.
        assert_eq!(accel_ioctl(fd, 0xdead_beef, ptr::null_mut()), -1);
        assert_eq!(last(), Errno::ENOTTY);
        assert_eq!(accel_close(fd), 0);
    }

    #[test]
    fn close_twice() {
        let _serial = SERIAL.lock();
        let fd = open0();
        assert_eq!(accel_close(fd), 0);
        assert_eq!(accel_close(fd), -1);
        assert_eq!(last(), Errno::EBADF);
        let mut v = sys::accel_version::default();
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_VERSION.into(), (&raw mut v).cast()), -1);
        assert_eq!(last(), Errno::EBADF);
    }

    #[test]
    fn munmap_unknown() {
        let _serial = SERIAL.lock();
        let mut x = 0u64;
        assert_eq!(accel_munmap((&raw mut x).cast(), 8), -1);
        assert_eq!(last(), Errno::EINVAL);
        assert_eq!(accel_munmap(ptr::null_mut(), 4096), -1);
        assert_eq!(last(), Errno::EINVAL);
    }

    #[test]
    fn mmap_round_trip() {
        let _serial = SERIAL.lock();
        let fd = open0();
        let mut bo =
            sys::accel_bo_create { size: 8192, region: 0, flags: sys::ACCEL_BO_CPU_VISIBLE, ..Default::default() };
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_BO_CREATE.into(), (&raw mut bo).cast()), 0, "{}", last());
        let mut off = sys::accel_bo_mmap_offset { handle: bo.handle, ..Default::default() };
        assert_eq!(accel_ioctl(fd, sys::ACCEL_IOCTL_BO_MMAP_OFFSET.into(), (&raw mut off).cast()), 0);

        assert_eq!(accel_mmap(fd, off.offset, 8192, libc::PROT_EXEC), libc::MAP_FAILED);
        assert_eq!(last(), Errno::EINVAL);
        assert_eq!(accel_mmap(fd, off.offset, 3 * 4096, libc::PROT_READ), libc::MAP_FAILED);
        assert_eq!(last(), Errno::EINVAL);
        assert_eq!(accel_mmap(-1, off.offset, 8192, libc::PROT_READ), libc::MAP_FAILED);
        assert_eq!(last(), Errno::EBADF);

        let p = accel_mmap(fd, off.offset, 8192, libc::PROT_READ | libc::PROT_WRITE);
        assert_ne!(p, libc::MAP_FAILED, "{}", last());
        // SAFETY: p is a live, writable 8192-byte mapping.
        let s = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), 8192) };
        assert!(s.iter().all(|b| *b == 0));
        s[..4].copy_from_slice(0xfeed_f00du32.as_bytes());
        // The mapping outlives the descriptor, as with mmap(2).
        assert_eq!(accel_close(fd), 0);
        assert_eq!(&s[..4], 0xfeed_f00du32.as_bytes());
        assert_eq!(accel_munmap(p, 4096), -1);
        assert_eq!(last(), Errno::EINVAL);
        assert_eq!(accel_munmap(p, 8192), 0);
        assert_eq!(accel_munmap(p, 8192), -1);
        assert_eq!(last(), Errno::EINVAL);
    }
}
