//! Fabric: how RoCE v2 packets travel between ports ([`link`]), and the
//! verbs objects (PD, MR, CQ, QP) that put the RC engine
//! ([`crate::roce::engine`]) on them ([`verbs`]).

pub mod link;
pub mod verbs;
