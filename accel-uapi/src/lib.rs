//! # accel-uapi: the accel ABI, and nothing else
//!
//! The canonical ABI is the C header `include/accel.h`. This crate carries:
//! - [`sys`]: the `#[repr(C)]` structs and constants generated from the header
//!   by `cargo xtask uapi` (bindgen), each deriving zerocopy's `FromBytes`,
//!   `IntoBytes`, `KnownLayout` and `Immutable` (so a struct with padding does
//!   not compile), with the ioctl numbers appended;
//! - compile-time checks of every size, offset and constant against the
//!   committed ABI snapshot `abi/accel-abi-v1.txt` (module `abi`, generated);
//! - a typed layer: [`flags`] (bitflags for every flag word), [`types`]
//!   (`TryFrom<u32>` enums for every value word), [`errno`], and the
//!   [`ioctl`] table that lets any transport marshal any ioctl generically.
//!
//! It depends only on zerocopy, bitflags and static_assertions.
//!
//! ```
//! use accel_uapi::{ioctl, sys};
//! let bo_create = ioctl::by_nr(0x20).unwrap();
//! assert_eq!(bo_create.name, "ACCEL_IOCTL_BO_CREATE");
//! assert_eq!(bo_create.number(), sys::ACCEL_IOCTL_BO_CREATE);
//! assert_eq!(bo_create.arg.size, core::mem::size_of::<sys::accel_bo_create>());
//! ```
//!
//! Padding is a compile error, which is how rule 2 is enforced on the Rust side:
//!
//! ```compile_fail
//! #[derive(zerocopy::IntoBytes, zerocopy::Immutable)]
//! #[repr(C)]
//! struct Holey {
//!     handle: u32,
//!     size: u64, // 4 bytes of padding before this field
//! }
//! ```
#![deny(missing_docs)]


#[rustfmt::skip]
mod abi;
pub mod errno;
pub mod flags;
pub mod ioctl;
pub mod types;

/// Raw bindings generated from `include/accel.h`: see the header for the
/// meaning of every field. Regenerate with `cargo xtask uapi`.
#[rustfmt::skip]
#[allow(missing_docs, non_camel_case_types, non_upper_case_globals, clippy::all)]
pub mod sys;

pub use errno::Errno;

/// The ABI version this crate describes.
pub const ABI_VERSION: (u16, u16) = (sys::ACCEL_ABI_MAJOR as u16, sys::ACCEL_ABI_MINOR as u16);

/// The canonical C header, for tools that install or compile it.
pub const HEADER: &str = include_str!("../include/accel.h");
