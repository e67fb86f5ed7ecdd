//! The suite itself: every test passes on the mock, a broken device is
//! reported as FAIL with the reason, missing capabilities are NOT SUPPORTED,
//! bounds are enforced, and the KTAP and JUnit reports are valid.

use accel_conformance::{Area, Env, Filter, Outcome, Report, Target, TestCase, all_tests, report, run};
use accel_core::Registry;
use accel_uapi::flags::Caps;
use std::sync::Arc;
use std::time::Duration;
use test_driver::{MockConfig, MockDriver};

fn mock_target(cfg: MockConfig) -> Target {
    let reg = Arc::new(Registry::new());
    reg.register(MockDriver::new(cfg)).unwrap();
    Target::in_registry(reg, "accel0")
}

fn full_run() -> Report {
    run(&mock_target(MockConfig::default()), &all_tests(), &Filter::default(), |_| {})
}

#[test]
fn every_test_passes_on_the_mock() {
    let r = full_run();
    let bad: Vec<String> = r
        .results
        .iter()
        .filter(|t| !matches!(t.outcome, Outcome::Pass | Outcome::NotSupported(_)))
        .map(|t| format!("{} {:?}", t.name, t.outcome))
        .collect();
    assert!(bad.is_empty(), "failures on the mock:\n{}", bad.join("\n"));
    assert!(r.results.len() >= 220, "only {} tests", r.results.len());
    assert_eq!(r.passed(), r.results.len(), "every test passes on the mock");
    assert!(r.results.iter().filter(|t| t.area == Area::Fabric).count() >= 30);
    let mut names: Vec<&str> = r.results.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), r.results.len(), "test names are unique");
}

#[test]
fn a_device_without_ports_skips_the_fabric_area() {
    let r = run(&mock_target(MockConfig { ports: 0, ..Default::default() }), &all_tests(), &Filter::default(), |_| {});
    for t in &r.results {
        if t.area == Area::Fabric {
            assert!(
                matches!(&t.outcome, Outcome::NotSupported(m) if m.contains("FABRIC")),
                "{}: {:?}",
                t.name,
                t.outcome
            );
        } else {
            assert_eq!(t.outcome, Outcome::Pass, "{}", t.name);
        }
    }
    assert!(r.not_supported() >= 30);
}

#[test]
fn every_area_has_tests() {
    let suite = all_tests();
    for a in Area::ALL {
        assert!(suite.iter().any(|t| t.area == a), "no tests in {}", a.name());
    }
}

#[test]
fn an_injected_device_fault_is_reported_as_fail_with_the_reason() {
    // Every job fails with a device error from the 1st on.
    let t = mock_target(MockConfig { fail_job_at: Some(1), ..Default::default() });
    let filter = Filter { areas: vec![Area::Submit], name: Some("submit.copy".into()) };
    let r = run(&t, &all_tests(), &filter, |_| {});
    assert!(!r.results.is_empty());
    let first = &r.results[0];
    match &first.outcome {
        Outcome::Fail(reason) => assert!(reason.contains("EIO") || reason.contains("-5"), "reason: {reason}"),
        o => panic!("{}: expected FAIL, got {o:?}", first.name),
    }
    assert!(report::table(&r).contains("FAIL submit.copy"));
}

fn sleeper(_: &Env) -> Result<(), String> {
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

fn panicker(_: &Env) -> Result<(), String> {
    let v: Vec<u32> = Vec::new();
    assert_eq!(v.len(), 1, "the vector is empty");
    Ok(())
}

fn failer(_: &Env) -> Result<(), String> {
    Err("the device said <no> & \"no\"".into())
}

fn synthetic() -> Vec<TestCase> {
    vec![
        TestCase {
            name: "sleeps",
            area: Area::Device,
            caps: Caps::empty(),
            timeout: Duration::from_millis(50),
            run: sleeper,
        },
        TestCase {
            name: "panics",
            area: Area::Device,
            caps: Caps::empty(),
            timeout: Duration::from_secs(5),
            run: panicker,
        },
        TestCase {
            name: "fails",
            area: Area::Memory,
            caps: Caps::empty(),
            timeout: Duration::from_secs(5),
            run: failer,
        },
        TestCase {
            name: "needs_fabric",
            area: Area::Fabric,
            caps: Caps::FABRIC,
            timeout: Duration::from_secs(5),
            run: failer,
        },
    ]
}

#[test]
fn timeouts_panics_failures_and_missing_caps_are_classified() {
    let r = run(&mock_target(MockConfig { ports: 0, ..Default::default() }), &synthetic(), &Filter::default(), |_| {});
    assert_eq!(r.results[0].outcome, Outcome::Timeout);
    assert!(r.results[0].duration < Duration::from_secs(1), "the bound was enforced");
    match &r.results[1].outcome {
        Outcome::Fail(m) => assert!(m.contains("the vector is empty") && m.contains("suite.rs:"), "{m}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(r.results[2].outcome, Outcome::Fail("the device said <no> & \"no\"".into()));
    assert!(matches!(&r.results[3].outcome, Outcome::NotSupported(m) if m.contains("FABRIC")));
    assert_eq!((r.passed(), r.failed(), r.timed_out(), r.not_supported()), (0, 2, 1, 1));
}

/// A strict KTAP v1 checker (Documentation/dev-tools/ktap.rst): version line,
/// plan, sequential `ok`/`not ok` lines matching the plan, known directives,
/// nested subtests indented by 4 spaces with their own version and plan.
fn check_ktap(lines: &[&str], indent: usize) -> Result<usize, String> {
    let pad = " ".repeat(indent);
    let mut i = 0;
    let strip = |l: &str| l.strip_prefix(pad.as_str()).map(str::to_string);
    let first = lines.first().and_then(|l| strip(l)).ok_or("missing version line")?;
    if first != "KTAP version 1" {
        return Err(format!("bad version line {first:?}"));
    }
    i += 1;
    while lines.get(i).and_then(|l| strip(l)).is_some_and(|l| l.starts_with('#')) {
        i += 1;
    }
    let plan = lines.get(i).and_then(|l| strip(l)).ok_or("missing plan")?;
    let n: usize = plan.strip_prefix("1..").and_then(|x| x.parse().ok()).ok_or(format!("bad plan {plan:?}"))?;
    i += 1;
    let mut seen = 0;
    while seen < n {
        let line = lines.get(i).ok_or(format!("plan says {n} results, found {seen}"))?;
        if line.starts_with(&format!("{pad}    ")) {
            // A nested subtest: check it and skip its lines.
            let start = i;
            let mut end = i;
            while lines.get(end).is_some_and(|l| l.starts_with(&format!("{pad}    "))) {
                end += 1;
            }
            check_ktap(&lines[start..end], indent + 4)?;
            i = end;
            continue;
        }
        let l = strip(line).ok_or(format!("bad indentation: {line:?}"))?;
        if l.starts_with('#') {
            i += 1;
            continue;
        }
        let rest =
            l.strip_prefix("ok ").or_else(|| l.strip_prefix("not ok ")).ok_or(format!("not a result line: {l:?}"))?;
        let (num, desc) = rest.split_once(' ').ok_or(format!("no description: {l:?}"))?;
        seen += 1;
        if num.parse::<usize>() != Ok(seen) {
            return Err(format!("result {num} out of sequence (want {seen})"));
        }
        if let Some((_, directive)) = desc.split_once(" # ") {
            let word = directive.split_whitespace().next().unwrap_or("");
            if !["SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"].contains(&word) {
                return Err(format!("unknown directive {word:?}"));
            }
            if word == "SKIP" && l.starts_with("not ok") {
                return Err("SKIP on a not-ok line".into());
            }
        }
        i += 1;
    }
    Ok(i)
}

#[test]
fn ktap_is_valid_and_skips_not_supported() {
    let r = run(&mock_target(MockConfig { ports: 0, ..Default::default() }), &all_tests(), &Filter::default(), |_| {});
    let k = report::ktap(&r);
    let lines: Vec<&str> = k.lines().collect();
    let used = check_ktap(&lines, 0).unwrap_or_else(|e| panic!("invalid KTAP: {e}\n{k}"));
    assert!(lines[used..].iter().all(|l| l.starts_with('#')), "only comments after the last result");
    assert!(k.contains("# SKIP not supported"), "fabric tests are SKIP");
    let synth =
        run(&mock_target(MockConfig { ports: 0, ..Default::default() }), &synthetic(), &Filter::default(), |_| {});
    let k = report::ktap(&synth);
    check_ktap(&k.lines().collect::<Vec<_>>(), 0).unwrap_or_else(|e| panic!("invalid KTAP: {e}\n{k}"));
    assert!(k.contains("not ok 1 sleeps # TIMEOUT"));
    assert!(k.contains("not ok 2 panics"));
    // Negative control: the checker rejects a broken plan.
    assert!(check_ktap(&["KTAP version 1", "1..2", "ok 1 a"], 0).is_err());
}

#[test]
fn junit_is_well_formed_and_loads_in_a_junit_parser() {
    let synth =
        run(&mock_target(MockConfig { ports: 0, ..Default::default() }), &synthetic(), &Filter::default(), |_| {});
    for r in [full_run(), synth] {
        let x = report::junit(&r);
        roxmltree::Document::parse(&x).unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{x}"));
        let suites = junit_parser::from_reader(std::io::Cursor::new(x.as_bytes())).expect("JUnit parser");
        assert_eq!(suites.tests as usize, r.results.len());
        assert_eq!((suites.failures as usize, suites.skipped as usize), (r.failed(), r.not_supported()));
        let cases: usize = suites.suites.iter().map(|s| s.cases.len()).sum();
        assert_eq!(cases, r.results.len());
        let failed = suites.suites.iter().flat_map(|s| &s.cases).filter(|c| c.status.is_failure()).count();
        assert_eq!(failed, r.failed());
    }
}
