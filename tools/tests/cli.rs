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
    assert_eq!(lines.len(), 6);
    for l in lines {
        let (value, base, ratio) =
            (l["value"].as_f64().unwrap(), l["baseline"].as_f64().unwrap(), l["ratio"].as_f64().unwrap());
        assert!(value > 0.0 && base > 0.0, "{l}");
        assert!((ratio - value / base).abs() < 1e-9 * ratio.abs().max(1.0), "ratio is value/baseline: {l}");
        assert!(!l["baseline_name"].as_str().unwrap().is_empty());
    }
    assert!(lines[1]["name"].as_str().unwrap().contains("empty CQ_POLL"), "{}", lines[1]);
    assert!(lines[2]["name"].as_str().unwrap().contains("4096 live mappings"));
    let (code, _, err) = accel(&["bench", "--live", "0"]);
    assert_eq!((code, err.trim()), (1, "accel: --live must be at least 1"));
}

/// rc_pingpong's four lines: two addresses, then bytes/Mbit and iters/usec.
fn check_pingpong_lines(out: &str, iters: u32, size: u64) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("  local address:  LID 0x0000, QPN 0x"), "{out}");
    assert!(lines[1].starts_with("  remote address: LID 0x0000, QPN 0x"), "{out}");
    assert!(lines[0].contains(", PSN 0x") && lines[0].contains(", GID ::ffff:"), "{out}");
    let bytes = size * u64::from(iters) * 2;
    assert!(lines[2].starts_with(&format!("{bytes} bytes in ")) && lines[2].ends_with(" Mbit/sec"), "{out}");
    assert!(lines[3].starts_with(&format!("{iters} iters in ")) && lines[3].ends_with(" usec/iter"), "{out}");
}

#[test]
fn pingpong_in_process_prints_rc_pingpong_lines() {
    let (code, out, err) = accel(&["pingpong", "-n", "200", "-s", "1000", "-m", "256"]);
    assert_eq!(code, 0, "{err}");
    check_pingpong_lines(&out, 200, 1000);
    let (code, out, err) = accel(&["pingpong", "-n", "50", "-s", "70000", "--op", "write", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bytes"], 70000u64 * 50 * 2);
    assert!(v["usec_per_iter"].as_f64().unwrap() > 0.0);
    assert!(v["local"].as_str().unwrap().contains("GID ::ffff:10."), "{out}");
}

#[test]
fn pingpong_between_two_processes_over_udp() {
    // Distinct loopback addresses, so both ends use RoCE v2's port 4791, as
    // two hosts would.
    let tcp = (20_000 + std::process::id() % 20_000).to_string();
    let server = Command::new(env!("CARGO_BIN_EXE_accel"))
        .args(["pingpong", "--server", "--udp", "127.77.0.1", "-p", &tcp, "-n", "500", "-s", "64"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, out, err) =
        accel(&["pingpong", "--connect", "127.0.0.1", "-p", &tcp, "--udp", "127.77.0.2", "-n", "500", "-s", "64"]);
    let s = server.wait_with_output().unwrap();
    let sout = String::from_utf8_lossy(&s.stdout);
    assert_eq!(code, 0, "client: {err}\nserver: {}", String::from_utf8_lossy(&s.stderr));
    assert_eq!(s.status.code(), Some(0), "{}", String::from_utf8_lossy(&s.stderr));
    check_pingpong_lines(&out, 500, 64);
    check_pingpong_lines(&sout, 500, 64);
    assert!(out.contains("GID ::ffff:127.77.0.2") && out.contains("GID ::ffff:127.77.0.1"), "{out}");
}

#[test]
fn pingpong_two_processes_need_udp() {
    let (code, _, err) = accel(&["pingpong", "--server"]);
    assert_eq!(code, 1);
    assert!(err.contains("--udp"), "{err}");
    let (code, _, err) = accel(&["pingpong", "--connect", "127.0.0.1", "--udp", "0.0.0.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("specific unicast"), "{err}");
    let (code, _, err) = accel(&["pingpong", "-s", "4"]);
    assert_eq!(code, 1);
    assert!(err.contains("--size must be at least 8"), "{err}");
}
