//! Running tests: capability gating, one thread per test with a time bound,
//! panics captured (with their location) as failures.

use crate::{Area, Env, Target, TestCase};
use accel_uapi::flags::Caps;
use panics::PanicLog;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A test's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed, with the reason.
    Fail(String),
    /// The device lacks a capability the test needs.
    NotSupported(String),
    /// Did not finish within its bound.
    Timeout,
}

impl Outcome {
    /// Short upper-case label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::NotSupported(_) => "NOT SUPPORTED",
            Outcome::Timeout => "TIMEOUT",
        }
    }
}

/// One result.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// `area.name`.
    pub name: String,
    /// Area.
    pub area: Area,
    /// Outcome.
    pub outcome: Outcome,
    /// Wall time.
    pub duration: Duration,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Device name.
    pub device: String,
    /// Results in run order.
    pub results: Vec<TestResult>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
    /// Passed tests.
    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Pass)
    }
    /// Failed tests.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }
    /// Not supported.
    pub fn not_supported(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotSupported(_)))
    }
    /// Timed out.
    pub fn timed_out(&self) -> usize {
        self.count(|o| *o == Outcome::Timeout)
    }
}

/// Which tests to run.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these areas (empty = all).
    pub areas: Vec<Area>,
    /// Only tests whose full name contains this.
    pub name: Option<String>,
}

impl Filter {
    /// Whether `t` is selected.
    pub fn selects(&self, t: &TestCase) -> bool {
        (self.areas.is_empty() || self.areas.contains(&t.area))
            && self.name.as_ref().is_none_or(|n| t.full_name().contains(n.as_str()))
    }
}

/// Run the selected tests of `suite` against `target`, calling `progress`
/// after each one.
pub fn run(target: &Target, suite: &[TestCase], filter: &Filter, mut progress: impl FnMut(&TestResult)) -> Report {
    let log = PanicLog::install();
    let caps = target.open().and_then(|d| d.caps()).unwrap_or(Caps::empty());
    let mut report = Report { device: target.name.clone(), results: Vec::new() };
    for t in suite.iter().filter(|t| filter.selects(t)) {
        let start = Instant::now();
        let outcome = if !caps.contains(t.caps) {
            let missing: Vec<&str> = (t.caps - caps).iter_names().map(|(n, _)| n).collect();
            Outcome::NotSupported(format!("device lacks {}", missing.join(", ")))
        } else {
            run_one(target, t, &log)
        };
        let r = TestResult { name: t.full_name(), area: t.area, outcome, duration: start.elapsed() };
        progress(&r);
        report.results.push(r);
    }
    report
}

fn run_one(target: &Target, t: &TestCase, log: &PanicLog) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let (target, f, name) = (target.clone(), t.run, t.full_name());
    let spawned = std::thread::Builder::new().name(format!("conformance:{name}")).spawn(move || {
        let r = match target.open() {
            Ok(dev) => f(&Env { dev, target }),
            Err(e) => Err(format!("cannot open the device: {e}")),
        };
        let _ = tx.send(r);
    });
    let handle = match spawned {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(format!("cannot start the test thread: {e}")),
    };
    match rx.recv_timeout(t.timeout) {
        Ok(Ok(())) => {
            let _ = handle.join();
            Outcome::Pass
        }
        Ok(Err(reason)) => {
            let _ = handle.join();
            Outcome::Fail(reason)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = handle.join();
            Outcome::Fail(log.take(&format!("conformance:{name}")).unwrap_or_else(|| "the test panicked".into()))
        }
        // The thread is left behind: it holds only its own file's objects.
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::Timeout,
    }
}

mod panics {
    //! A panic hook that records each test thread's panic message and location.
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    type Log = Arc<Mutex<HashMap<String, String>>>;

    /// Where panics of `conformance:*` threads are recorded.
    pub struct PanicLog(Log);

    impl PanicLog {
        /// Install the hook (once per process) and return the log.
        pub fn install() -> PanicLog {
            static LOG: OnceLock<Log> = OnceLock::new();
            let log = LOG
                .get_or_init(|| {
                    let log: Log = Arc::default();
                    let l = log.clone();
                    let previous = std::panic::take_hook();
                    std::panic::set_hook(Box::new(move |info| {
                        let thread = std::thread::current();
                        let name = thread.name().unwrap_or("");
                        if !name.starts_with("conformance:") {
                            previous(info);
                            return;
                        }
                        let msg = info
                            .payload()
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| info.payload().downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                        if let Ok(mut m) = l.lock() {
                            m.insert(name.to_string(), format!("panicked: {msg}{at}"));
                        }
                    }));
                    log
                })
                .clone();
            PanicLog(log)
        }

        /// The recorded panic of thread `name`, if any.
        pub fn take(&self, name: &str) -> Option<String> {
            self.0.lock().ok()?.remove(name)
        }
    }
}
