//! The safe API: typed objects over the accel ioctl bytes.
//!
//! Every call is an ioctl on the bytes of an `accel-uapi` struct through
//! [`Client::ioctl`](accel_core::inproc::Client::ioctl), or a CPU mapping
//! through [`Client::mmap`](accel_core::inproc::Client::mmap); nested arrays
//! are Rust slices lent to the call ([`SliceMemory`](accel_core::SliceMemory)),
//! so the core copies them without a system call. Objects close their
//! handle when dropped (errors on that path are ignored).
//!
//! Every failure is an [`Error`]: the errno and the name of the call that
//! returned it (`"BO_CREATE"`, `"SUBMIT"`, `"DEVICE_QUERY(LIMITS)"`...).
//!
//! ```
//! use accel::{Commands, Device, deadline_in, flags::{BoFlags, VmBindFlags}, types::EngineClass};
//! let dev = Device::open("accel0").unwrap();
//! let ctx = dev.create_context().unwrap();
//! let bo = dev.create_bo(8192, 0, BoFlags::CPU_VISIBLE).unwrap();
//! let va = dev.va_range().unwrap().start;
//! ctx.map(&bo, 0, va, 8192, VmBindFlags::READ | VmBindFlags::WRITE).unwrap();
//! let map = bo.map().unwrap();
//! map.write(0, b"hello accel!").unwrap();
//! let queue = ctx.create_queue(EngineClass::Compute).unwrap();
//! let done = queue.run(Commands::new().copy(va, va + 4096, 16)).unwrap();
//! done.wait(0, deadline_in(std::time::Duration::from_secs(5))).unwrap();
//! assert_eq!(done.query().unwrap(), (1, 0));
//! let mut out = [0u8; 12];
//! map.read(4096, &mut out).unwrap();
//! assert_eq!(&out, b"hello accel!");
//! ```

mod commands;
mod device;
mod fabric;
mod memory;
mod queue;
mod sync;

pub use accel_uapi::{Errno, flags, sys, types};
pub use commands::Commands;
pub use device::Device;
pub use fabric::{ConnectOptions, Cq, Endpoint, Mr, Pd, Qp, QpInit};
pub use memory::{Bo, Context, Mapping, map_op, unmap_op};
pub use queue::{Queue, Submit};
pub use sync::Syncobj;

use std::num::NonZeroU32;
use std::os::fd::{FromRawFd, OwnedFd};

/// One error: the errno and the call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{call}: {errno}")]
pub struct Error {
    /// The ioctl (without its `ACCEL_IOCTL_` prefix) or library step that failed, e.g. `"BO_CREATE"`.
    pub call: &'static str,
    /// The errno it returned.
    pub errno: Errno,
}

impl Error {
    /// An error of `call` with `errno`.
    pub const fn new(call: &'static str, errno: Errno) -> Error {
        Error { call, errno }
    }
}

/// The result of every fallible call of this API.
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! handle_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(NonZeroU32);

        impl $name {
            /// Wrap a raw handle; `None` for 0 (handles are never 0).
            pub const fn new(raw: u32) -> Option<$name> {
                match NonZeroU32::new(raw) {
                    Some(v) => Some($name(v)),
                    None => None,
                }
            }

            /// The raw handle, as the ioctl structs carry it.
            pub const fn get(self) -> u32 {
                self.0.get()
            }
        }

        impl From<NonZeroU32> for $name {
            fn from(v: NonZeroU32) -> $name {
                $name(v)
            }
        }

        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                v.get()
            }
        }
    };
}

handle_type! {
    /// A context handle (`ctx_id`) of one open device.
    ContextId
}
handle_type! {
    /// A buffer object handle of one open device.
    BoHandle
}
handle_type! {
    /// A queue handle (`queue_id`) of one open device.
    QueueId
}
handle_type! {
    /// A syncobj handle of one open device.
    SyncobjHandle
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of every accel deadline.
pub fn monotonic_ns() -> i64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec().saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec()),
        Err(_) => 0,
    }
}

/// The absolute `CLOCK_MONOTONIC` deadline `d` from now, in nanoseconds (saturating).
pub fn deadline_in(d: std::time::Duration) -> i64 {
    monotonic_ns().saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

// ------------------------------------------------------------------ helpers

/// `map_err` adaptor: an errno of `call`.
pub(crate) fn err(call: &'static str) -> impl FnOnce(Errno) -> Error {
    move |errno| Error { call, errno }
}

/// A slice length as an ioctl count (E2BIG past `u32::MAX`).
pub(crate) fn count(call: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::new(call, Errno::E2BIG))
}

/// A handle the core returned: never 0 (EIO if it is, a broken reply).
pub(crate) fn returned_handle(call: &'static str, raw: u32) -> Result<NonZeroU32> {
    NonZeroU32::new(raw).ok_or(Error::new(call, Errno::EIO))
}

/// Take ownership of a descriptor the core returned (EIO if it is negative, a broken reply).
pub(crate) fn returned_fd(call: &'static str, raw: i32) -> Result<OwnedFd> {
    if raw < 0 {
        return Err(Error::new(call, Errno::EIO));
    }
    // SAFETY: the core created this descriptor for this call (a duplicate of the
    // object's memfd or syncobj file) and hands its ownership to the caller, who
    // closes it (docs/uapi.md, BO_EXPORT/SYNCOBJ_EXPORT); nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
