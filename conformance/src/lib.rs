//! # accel conformance suite
//!
//! Certifies a backend through the UAPI only (the `accel` library over
//! ioctl bytes). Tests are organised by [`Area`]; each declares the
//! capabilities it needs, and a device lacking one reports
//! [`Outcome::NotSupported`], never a silent pass. Every test runs on its own
//! thread with a time bound ([`Outcome::Timeout`]); a panic or an `Err` is a
//! [`Outcome::Fail`] with its reason.
//!
//! ```no_run
//! let suite = accel_conformance::all_tests();
//! let target = accel_conformance::Target::named("accel0");
//! let report = accel_conformance::run(&target, &suite, &accel_conformance::Filter::default(), |_| {});
//! print!("{}", accel_conformance::report::ktap(&report));
//! ```
#![deny(missing_docs)]

pub mod report;
mod runner;
mod tests;

pub use runner::{Filter, Outcome, Report, TestResult, run};
pub use tests::all_tests;

use accel::Device;
use accel_uapi::flags::Caps;
use std::sync::Arc;
use std::time::Duration;

/// The areas of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// Version, queries, limits.
    Device,
    /// Buffer objects, mmap, export/import.
    Memory,
    /// Contexts and VM_BIND.
    Vm,
    /// Queues, SUBMIT, the portable command set, faults and hangs.
    Submit,
    /// Binary and timeline syncobjs.
    Syncobj,
    /// Fabric verbs.
    Fabric,
    /// What one file or context can and cannot see of another.
    Isolation,
    /// The dispatcher's generic validation (UAPI-RULES.md 5-9).
    Negative,
}

impl Area {
    /// Every area, in report order.
    pub const ALL: [Area; 8] = [
        Area::Device,
        Area::Memory,
        Area::Vm,
        Area::Submit,
        Area::Syncobj,
        Area::Fabric,
        Area::Isolation,
        Area::Negative,
    ];

    /// Lower-case name (`--area` value, KTAP/JUnit prefix).
    pub fn name(self) -> &'static str {
        match self {
            Area::Device => "device",
            Area::Memory => "memory",
            Area::Vm => "vm",
            Area::Submit => "submit",
            Area::Syncobj => "syncobj",
            Area::Fabric => "fabric",
            Area::Isolation => "isolation",
            Area::Negative => "negative",
        }
    }

    /// Parse a lower-case name.
    pub fn parse(s: &str) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// What a test returns: `Err(reason)` is a failure.
pub type TestFn = fn(&Env) -> Result<(), String>;

/// One conformance test.
#[derive(Clone, Copy)]
pub struct TestCase {
    /// Unique within its area.
    pub name: &'static str,
    /// Its area.
    pub area: Area,
    /// Capabilities it needs; a device lacking any reports NOT SUPPORTED.
    pub caps: Caps,
    /// Time bound.
    pub timeout: Duration,
    /// The test.
    pub run: TestFn,
}

impl std::fmt::Debug for TestCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.area.name(), self.name)
    }
}

impl TestCase {
    /// `area.name`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.area.name(), self.name)
    }
}

/// How tests open the device under test: every call is a new open (a new file).
#[derive(Clone)]
pub struct Target {
    /// Device name.
    pub name: String,
    opener: Arc<dyn Fn() -> accel::Result<Device> + Send + Sync>,
}

impl Target {
    /// A device of the process-wide registry (`accel0`, `/dev/accel/accel0`).
    pub fn named(name: &str) -> Target {
        let n = name.to_string();
        Target { name: name.to_string(), opener: Arc::new(move || Device::open(&n)) }
    }

    /// A device of a private registry (tests of the suite itself).
    pub fn in_registry(registry: Arc<accel_core::Registry>, name: &str) -> Target {
        let n = name.to_string();
        Target { name: name.to_string(), opener: Arc::new(move || Device::open_in(&registry, &n)) }
    }

    /// Open the device (a new file).
    pub fn open(&self) -> accel::Result<Device> {
        (self.opener)()
    }
}

/// What a running test sees.
pub struct Env {
    /// The device under test, opened for this test.
    pub dev: Device,
    target: Target,
}

impl Env {
    /// Open the device again: a second, independent file.
    pub fn open(&self) -> Result<Device, String> {
        self.target.open().map_err(|e| e.to_string())
    }
}
