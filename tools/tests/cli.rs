//! The `accel` binary as a user runs it.

use std::process::Command;

fn accel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_accel")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn devices_lists_every_embedded_device() {
    let (code, out, _) = accel(&["--mock", "3", "devices"]);
    assert_eq!(code, 0);
    for n in ["accel0", "accel1", "accel2"] {
        assert!(out.contains(n), "{out}");
    }
    assert!(!out.contains("accel3"));
}

#[test]
fn info_json_reports_what_the_device_announces() {
    let (code, out, _) = accel(&["--mock", "1", "info", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v[0];
    assert_eq!(d["name"], "accel0");
    assert_eq!(d["driver"], "mock");
    assert_eq!(d["abi"], "1.0");
    assert_eq!(d["regions"][1]["kind"], "Device");
    assert_eq!(d["regions"][0]["size"], 1u64 << 30);
    assert_eq!(d["ports"][0]["gid"], "0000:0000:0000:0000:0000:ffff:0a00:0101");
    assert_eq!(
        d["caps"],
        serde_json::json!([
            "MEMORY",
            "BO_SHARE",
            "SUBMIT",
            "PORTABLE_CS",
            "SYNCOBJ",
            "SYNCOBJ_TIMELINE",
            "SYNCOBJ_SHARE",
            "FABRIC",
            "CONTEXT_QUERY",
            "DEVICE_MEMORY"
        ])
    );
}

#[test]
fn unknown_device_fails_with_the_errno() {
    let (code, _, err) = accel(&["info", "--device", "accel9"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "accel: accel9: open: ENODEV (19): No such device");
}

#[test]
fn no_devices_is_an_error() {
    let (code, _, err) = accel(&["--mock", "0", "info"]);
    assert_eq!(code, 1);
    assert!(err.contains("no accel devices"), "{err}");
}

#[test]
fn conformance_passes_on_the_mock_and_exits_0() {
    let (code, out, err) = accel(&["--mock", "1", "conformance", "--area", "device", "--area", "negative"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("# accel0: passed: "), "{out}");
    assert!(out.contains(", failed: 0, "), "{out}");
    assert!(err.contains("device") && err.contains("negative"), "per-area progress on stderr: {err}");
}

#[test]
fn conformance_reports_an_injected_failure_and_exits_with_the_failure_count() {
    let (code, out, _) =
        accel(&["--mock", "1", "--fail-job-at", "1", "conformance", "--area", "submit", "--test", "submit.copy"]);
    let failed: i32 = out
        .lines()
        .find_map(|l| l.split("failed: ").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no totals in {out}"));
    assert!(failed >= 1, "{out}");
    assert_eq!(code, failed, "the exit status is the number of failures");
    assert!(out.contains("FAIL submit.copy"), "{out}");
    assert!(out.contains("EIO"), "the reason names the error: {out}");
}

#[test]
fn conformance_writes_ktap_and_junit_files() {
    let dir = std::env::temp_dir().join(format!("accel-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let k = dir.join("r.ktap");
    let (code, _, err) =
        accel(&["conformance", "--area", "fabric", "--format", "ktap", "--output", k.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let ktap = std::fs::read_to_string(&k).unwrap();
    assert!(ktap.starts_with("KTAP version 1\n"), "{ktap}");
    assert!(ktap.contains("ok 1 fabric") && !ktap.contains("not ok"), "fabric passes on the mock: {ktap}");
    assert!(!ktap.contains("# SKIP"), "the mock supports FABRIC: {ktap}");
    assert!(err.contains("passed: "), "the totals go to stderr with --output: {err}");
    let j = dir.join("r.xml");
    let (code, _, _) =
        accel(&["conformance", "--area", "device", "--format", "junit", "--output", j.to_str().unwrap()]);
    assert_eq!(code, 0);
    let xml = std::fs::read_to_string(&j).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuite name=\"device\""), "{xml}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn conformance_rejects_an_unknown_area() {
    let (code, _, err) = accel(&["conformance", "--area", "graphics"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown area \"graphics\""), "{err}");
}

#[test]
fn conformance_list_names_every_test() {
    let (code, out, _) = accel(&["conformance", "--list"]);
    assert_eq!(code, 0);
    assert!(out.lines().count() >= 150, "{} tests", out.lines().count());
    assert!(out.lines().all(|l| l.contains('.')), "area.name");
}

#[test]
fn bench_json_reports_every_benchmark_against_its_baseline() {
    let (code, out, err) = accel(&["--mock", "1", "bench", "--live", "4096", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lines = v.as_array().unwrap();
    assert_eq!(lines.len(), 5);
    for l in lines {
        let (value, base, ratio) =
            (l["value"].as_f64().unwrap(), l["baseline"].as_f64().unwrap(), l["ratio"].as_f64().unwrap());
        assert!(value > 0.0 && base > 0.0, "{l}");
        assert!((ratio - value / base).abs() < 1e-9 * ratio.abs().max(1.0), "ratio is value/baseline: {l}");
        assert!(!l["baseline_name"].as_str().unwrap().is_empty());
    }
    assert!(lines[1]["name"].as_str().unwrap().contains("4096 live mappings"));
    let (code, _, err) = accel(&["bench", "--live", "0"]);
    assert_eq!((code, err.trim()), (1, "accel: --live must be at least 1"));
}
