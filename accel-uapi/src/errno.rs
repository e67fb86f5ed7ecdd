//! Errno values: the only error currency at the UAPI boundary (UAPI-RULES.md rule 15).
//!
//! The numbers are Linux's, so an in-process call, a socket to a daemon and a
//! future character device all report the same values.

use core::fmt;

/// A Linux errno value (always positive).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

macro_rules! errnos {
    ($($(#[$m:meta])* $name:ident = $val:expr, $text:expr;)*) => {
        impl Errno {
            $($(#[$m])* pub const $name: Errno = Errno($val);)*

            /// The symbolic name (`"EINVAL"`), or `None` for a value accel never returns.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 { $($val => Some(stringify!($name)),)* _ => None }
            }

            /// A short description, as strerror would give it.
            pub const fn description(self) -> &'static str {
                match self.0 { $($val => $text,)* _ => "unknown error" }
            }
        }
    };
}

errnos! {
    /// Not allowed (a privileged packet, an access the object does not grant).
    EPERM = 1, "Operation not permitted";
    /// No such handle (or a stale one).
    ENOENT = 2, "No such file or directory";
    /// Interrupted wait; restart it with the same absolute deadline.
    EINTR = 4, "Interrupted system call";
    /// Device error or reset.
    EIO = 5, "Input/output error";
    /// Too large: an array past its maximum, or non-zero bytes past the known struct.
    E2BIG = 7, "Argument list too long";
    /// Not a valid file descriptor (import of something that is not an export).
    EBADF = 9, "Bad file descriptor";
    /// Try again: a queue is full, or nothing is pending.
    EAGAIN = 11, "Resource temporarily unavailable";
    /// Out of memory.
    ENOMEM = 12, "Cannot allocate memory";
    /// A bad user address range.
    EFAULT = 14, "Bad address";
    /// In use, or no more of a limited resource (contexts).
    EBUSY = 16, "Device or resource busy";
    /// Already exists (an overlapping mapping).
    EEXIST = 17, "File exists";
    /// The device was unregistered.
    ENODEV = 19, "No such device";
    /// A bad argument.
    EINVAL = 22, "Invalid argument";
    /// Unknown ioctl command.
    ENOTTY = 25, "Inappropriate ioctl for device";
    /// Out of space (handles, quota).
    ENOSPC = 28, "No space left on device";
    /// A value does not fit its field.
    EOVERFLOW = 75, "Value too large for defined data type";
    /// The backend lacks the feature.
    EOPNOTSUPP = 95, "Operation not supported";
    /// The network is down (a fabric port without a link).
    ENETDOWN = 100, "Network is down";
    /// Timed out.
    ETIMEDOUT = 110, "Connection timed out";
    /// Cancelled (a job dropped because its file closed).
    ECANCELED = 125, "Operation canceled";
}

impl Errno {
    /// Wrap a raw positive errno value; `None` for zero or negative values.
    pub const fn new(raw: i32) -> Option<Errno> {
        if raw > 0 { Some(Errno(raw)) } else { None }
    }

    /// The raw positive value.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({}): {}", self.0, self.description()),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_linux_values() {
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::ENOTTY.raw(), 25);
        assert_eq!(Errno::ETIMEDOUT.raw(), 110);
        assert_eq!(Errno::EOPNOTSUPP.raw(), 95);
        assert_eq!(Errno::new(0), None);
        assert_eq!(format!("{}", Errno::EFAULT), "EFAULT (14): Bad address");
        assert_eq!(format!("{:?}", Errno::new(200).unwrap()), "Errno(200)");
    }
}
