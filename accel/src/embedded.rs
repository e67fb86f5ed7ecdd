//! The embedded default: devices registered in this process when none are.

use accel_core::Registry;
use std::sync::Once;

/// Environment variable: how many embedded mock devices to create (default 2).
pub const ENV_MOCK_DEVICES: &str = "ACCEL_MOCK_DEVICES";

/// Register the embedded default devices in the process-wide registry, once,
/// if it has none: `ACCEL_MOCK_DEVICES` (default 2) mock devices.
pub fn ensure_embedded_devices() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let reg = Registry::global();
        if !reg.devices().is_empty() {
            return;
        }
        let n: u32 = std::env::var(ENV_MOCK_DEVICES).ok().and_then(|v| v.parse().ok()).unwrap_or(2);
        for i in 0..n {
            let cfg = test_driver::MockConfig::default();
            if let Err(e) = reg.register(test_driver::MockDriver::new(cfg)) {
                eprintln!("accel: cannot register embedded device {i}: {e}");
            }
        }
    });
}
