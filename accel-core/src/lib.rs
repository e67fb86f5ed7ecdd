//! # accel-core: the core every accel backend plugs into
//!
//! The core owns every rule of the accel UAPI so that a vendor backend only
//! implements what is hardware specific ([`Driver`]):
//! - [`Registry`] turns driver instances into devices `accelN`;
//! - [`File`] is one open, with per-file handle tables and quotas;
//! - [`dispatch()`] is the one path userspace bytes take into the core
//!   (UAPI-RULES.md 5-9), table-driven from `accel_uapi::ioctl`;
//! - [`Context`] owns a private VA space, changed by VM_BIND all-or-nothing;
//! - [`Bo`] is device memory with memfd-backed CPU access, export and import;
//! - [`inproc::Client`] is the in-process transport (the embedded default).
//!
//! Helpers a driver may use: [`RangeAllocator`] for memory regions,
//! [`HostMemory`] for memfd-backed memory, [`IntervalMap`] for page tables.
//!
//! ```
//! use accel_core::{Registry, inproc::Client};
//! use accel_uapi::{sys, Errno};
//! # fn driver() -> std::sync::Arc<dyn accel_core::Driver> { test_driver::MockDriver::new(Default::default()) }
//! let registry = Registry::new();
//! registry.register(driver()).unwrap();
//! let client = Client::open_in(&registry, "accel0").unwrap();
//! let mut v = [0u8; 16];
//! client.ioctl(sys::ACCEL_IOCTL_VERSION, &mut v).unwrap();
//! assert_eq!(client.ioctl(0xdead_beef, &mut v), Err(Errno::ENOTTY));
//! ```
#![deny(missing_docs)]

pub mod bo;
pub mod cmd;
pub mod device;
pub mod dispatch;
mod dispatch_sync;
mod dispatch_verbs;
pub mod driver;
pub mod error;
pub mod fabric;
pub mod fence;
pub mod file;
pub mod handle;
pub mod inproc;
pub mod interval;
pub mod memory;
pub mod query;
pub mod queue;
pub mod range_alloc;
pub mod roce;
pub mod stats;
pub mod syncobj;
pub mod user;
pub mod vm;

pub use bo::Bo;
pub use device::{Device, Registry};
pub use dispatch::dispatch;
pub use driver::Driver;
pub use error::{DriverError, Error, Result};
pub use file::{File, Quota};
pub use interval::{IntervalMap, Splittable};
pub use memory::HostMemory;
pub use range_alloc::RangeAllocator;
pub use stats::Stats;
pub use user::{ProcessMemory, SliceMemory, UserMemory};
pub use vm::Context;
