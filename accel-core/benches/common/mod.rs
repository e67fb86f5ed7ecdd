//! Shared by the benchmark binaries: a typed ioctl and the criterion
//! estimate reader the same-run ratios are computed from.

use accel_core::inproc::Client;
use zerocopy::IntoBytes;

/// A typed ioctl that must succeed.
pub fn io<T: IntoBytes + zerocopy::FromBytes>(c: &Client, cmd: u32, a: &mut T) {
    c.ioctl(cmd, a.as_mut_bytes()).expect("ioctl");
}

/// Criterion's mean estimate (ns) of `group/func` from this run.
pub fn mean_ns(group: &str, func: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{}/../target", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{dir}/criterion/{group}/{func}/new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}
