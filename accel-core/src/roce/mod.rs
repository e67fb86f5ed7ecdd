//! RoCE v2: the wire format of the reliable-connection transport (the
//! protocol engine builds on it). This module owns packet layouts and the
//! ICRC; it never touches queues, memory or sockets.

pub mod packet;
