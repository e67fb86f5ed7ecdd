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
