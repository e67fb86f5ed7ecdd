//! The tests, one module per area, and the helpers they share.

use crate::{Area, TestCase, TestFn};
use accel_uapi::Errno;
use accel_uapi::flags::Caps;
use std::time::Duration;

mod device;
mod fabric;
mod isolation;
mod memory;
mod negative;
mod submit;
mod syncobj;
mod vm;

/// Every test of the suite, by area.
pub fn all_tests() -> Vec<TestCase> {
    let mut v = Vec::new();
    v.extend(device::tests());
    v.extend(memory::tests());
    v.extend(vm::tests());
    v.extend(submit::tests());
    v.extend(syncobj::tests());
    v.extend(fabric::tests());
    v.extend(isolation::tests());
    v.extend(negative::tests());
    v
}

/// Default time bound of a test.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

/// A test case of `area` needing `caps`.
pub(crate) fn case(area: Area, caps: Caps, name: &'static str, run: TestFn) -> TestCase {
    TestCase { name, area, caps, timeout: BOUND, run }
}

/// Declare the tests of a module: `tests!(Area::X, Caps::MEMORY, [a, b, c])`.
macro_rules! tests {
    ($area:expr, $caps:expr, [$($name:ident),* $(,)?]) => {
        vec![$($crate::tests::case($area, $caps, stringify!($name), $name)),*]
    };
}
pub(crate) use tests;

/// `Err(msg)` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// Turn an `accel::Result` into the test's `Result<_, String>` with context.
pub(crate) trait Ctx<T> {
    /// Add what was being done.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Ctx<T> for accel::Result<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The call must fail with exactly `errno`.
pub(crate) fn expect_errno<T>(r: accel::Result<T>, errno: Errno, what: &str) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected {errno:?}")),
        Err(e) if e.errno == errno => Ok(()),
        Err(e) => Err(format!("{what}: got {:?} from {}, expected {errno:?}", e.errno, e.call)),
    }
}

/// The first usable VA and the smallest page size of the device.
pub(crate) fn va_base(dev: &accel::Device) -> Result<(u64, u64), String> {
    let va = dev.va_range().ctx("VA range")?;
    Ok((va.start, va.min_page_size.max(4096)))
}

/// The id of a CPU-visible region (host memory if the device has it).
pub(crate) fn cpu_region(dev: &accel::Device) -> Result<u32, String> {
    let regions = dev.memory_regions().ctx("memory regions")?;
    regions
        .iter()
        .find(|r| r.flags & accel_uapi::sys::ACCEL_MEM_REGION_CPU_VISIBLE != 0)
        .map(|r| r.region_id)
        .ok_or_else(|| "the device has no CPU-visible region".to_string())
}
