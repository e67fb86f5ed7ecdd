//! # accel: the userspace library
//!
//! A safe Rust API over the accel UAPI: every call is an ioctl on the bytes
//! of the `accel-uapi` structs, through a transport (today the in-process
//! one, the embedded default), never a call into core internals. The same
//! crate builds `libaccel.so`, the C ABI (`capi`).
#![deny(missing_docs)]

pub mod capi;
mod embedded;
mod lib_api;

pub use embedded::ensure_embedded_devices;
pub use lib_api::*;
