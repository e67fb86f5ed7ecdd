//! The core's error type: every failure with its context, mapped to exactly
//! one errno at the UAPI boundary (UAPI-RULES.md rule 15).

use accel_uapi::Errno;

/// A core failure. `errno()` is what userspace sees; `Display` is the context
/// recorded in diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Unknown command, wrong type byte or direction.
    #[error("unknown ioctl {cmd:#010x}")]
    UnknownIoctl {
        /// The raw command.
        cmd: u32,
    },
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A handle that names nothing (or no longer does).
    #[error("no {kind} with handle {handle}")]
    NoHandle {
        /// Object kind.
        kind: &'static str,
        /// The handle.
        handle: u32,
    },
    /// A bad user address range.
    #[error("bad user range {addr:#x}+{len:#x}")]
    Fault {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// Out of memory in a region, a table or an allocator.
    #[error("out of memory: {0}")]
    NoMemory(String),
    /// Out of space: a per-file quota or a handle table.
    #[error("out of space: {0}")]
    NoSpace(String),
    /// In use, or a limited resource is exhausted.
    #[error("busy: {0}")]
    Busy(String),
    /// The device was unregistered.
    #[error("device {0} was removed")]
    NoDevice(String),
    /// The file was closed.
    #[error("file is closed")]
    Closed,
    /// Larger than a documented maximum.
    #[error("too big: {0}")]
    TooBig(String),
    /// Not supported by this backend or core.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The VA range is already mapped.
    #[error("already mapped: {va:#x}+{len:#x}")]
    Exists {
        /// Start.
        va: u64,
        /// Length.
        len: u64,
    },
    /// An arithmetic overflow of user-supplied values.
    #[error("overflow: {0}")]
    Overflow(String),
    /// Not a descriptor accel exported.
    #[error("bad file descriptor {0}")]
    BadFd(i32),
    /// Not permitted.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// Nothing pending.
    #[error("try again: {0}")]
    Again(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The device failed, or the context is banned after a hang.
    #[error("device error: {0}")]
    Device(String),
    /// A fabric port is down or has no link (ENETDOWN).
    #[error("network down: {0}")]
    NetDown(String),
    /// A driver failure.
    #[error("driver: {0}")]
    Driver(#[from] DriverError),
}

impl Error {
    /// The errno userspace sees.
    pub fn errno(&self) -> Errno {
        match self {
            Error::UnknownIoctl { .. } => Errno::ENOTTY,
            Error::Invalid(_) => Errno::EINVAL,
            Error::NoHandle { .. } => Errno::ENOENT,
            Error::Fault { .. } => Errno::EFAULT,
            Error::NoMemory(_) => Errno::ENOMEM,
            Error::NoSpace(_) => Errno::ENOSPC,
            Error::Busy(_) => Errno::EBUSY,
            Error::NoDevice(_) => Errno::ENODEV,
            Error::Closed | Error::BadFd(_) => Errno::EBADF,
            Error::TooBig(_) => Errno::E2BIG,
            Error::NotSupported(_) => Errno::EOPNOTSUPP,
            Error::Exists { .. } => Errno::EEXIST,
            Error::Overflow(_) => Errno::EOVERFLOW,
            Error::NotPermitted(_) => Errno::EPERM,
            Error::Again(_) => Errno::EAGAIN,
            Error::Device(_) => Errno::EIO,
            Error::TimedOut(_) => Errno::ETIMEDOUT,
            Error::NetDown(_) => Errno::ENETDOWN,
            Error::Driver(d) => d.errno(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }
}

/// The core's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// What a driver reports. The core maps it to an errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Device memory or page-table memory exhausted.
    #[error("out of device memory")]
    OutOfMemory,
    /// The backend does not implement this.
    #[error("not supported by the backend")]
    NotSupported,
    /// The backend rejected an argument (a native command buffer, say).
    #[error("rejected by the backend: {0}")]
    Invalid(String),
    /// The backend forbids it (a privileged packet in a native command buffer).
    #[error("forbidden by the backend: {0}")]
    Forbidden(String),
    /// The device failed.
    #[error("device error: {0}")]
    Device(String),
}

impl DriverError {
    /// The errno userspace sees.
    pub fn errno(&self) -> Errno {
        match self {
            DriverError::OutOfMemory => Errno::ENOMEM,
            DriverError::NotSupported => Errno::EOPNOTSUPP,
            DriverError::Invalid(_) => Errno::EINVAL,
            DriverError::Forbidden(_) => Errno::EPERM,
            DriverError::Device(_) => Errno::EIO,
        }
    }
}
