//! RoCE v2: the reliable-connection transport.
//!
//! - [`packet`]: the wire format (headers, opcodes, ICRC, PSN arithmetic);
//! - [`mr`]: local memory as the engine sees it (keys and access checks);
//! - [`engine`]: one side of an RC connection — requester, responder and
//!   completer — over a [`crate::fabric::link::Link`].
//!
//! [`crate::fabric::verbs`] wires the engine to the verbs ioctls.

pub mod engine;
pub mod mr;
pub mod packet;
pub mod qp_state;
#[cfg(test)]
mod rc_tests;
