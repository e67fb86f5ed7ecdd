//! Fabric: how RoCE v2 packets travel between ports. The protocol engine
//! (planned) sits on top of [`link::Link`]; this module never interprets
//! packets beyond what a switch or a UDP socket would.

pub mod link;
