//! Object lifetimes: closing a file releases everything in dependency order,
//! unregistering a device makes later calls ENODEV and frees nothing twice.
//! Every test ends with all core and mock counters back to zero.

mod common;
use accel_uapi::{Errno, sys};
use common::*;

/// A file with two contexts, BOs mapped in both, a CPU-visible BO with an mmap offset.
fn populate(c: &accel_core::inproc::Client) {
    let bos: Vec<u32> =
        (0..4).map(|i| bo_create(c, (i + 1) * PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap()).collect();
    for _ in 0..2 {
        let ctx = ctx_create(c).unwrap();
        let ops: Vec<_> =
            bos.iter().enumerate().map(|(i, &b)| map_op(b, 0, VA_START + (i as u64) * (1 << 20), PAGE, RW)).collect();
        vm_bind(c, ctx, &ops).unwrap();
    }
    let mut off = sys::accel_bo_mmap_offset { handle: bos[3], ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_MMAP_OFFSET, &mut off).unwrap();
}

#[test]
fn closing_a_file_releases_everything() {
    let rig = Rig::new();
    let c = rig.open();
    populate(&c);
    let s = rig.device.stats();
    assert_eq!((s.files, s.contexts, s.bos, s.mappings, s.handles), (1, 2, 4, 8, 6));
    assert_eq!(rig.mock.stats().live_vms, 2);
    c.close();
    rig.assert_idle();
}

#[test]
fn dropping_the_last_reference_closes_the_file() {
    let rig = Rig::new();
    let c = rig.open();
    populate(&c);
    drop(c);
    rig.assert_idle();
}

#[test]
fn close_is_idempotent() {
    let rig = Rig::new();
    let c = rig.open();
    populate(&c);
    c.file().close();
    c.file().close();
    drop(c);
    rig.assert_idle();
}

#[test]
fn unregister_with_open_files_fails_their_calls_and_frees_once() {
    let rig = Rig::new();
    let (a, b) = (rig.open(), rig.open());
    populate(&a);
    populate(&b);
    rig.registry.unregister("accel0").unwrap();
    assert_eq!(ctx_create(&a), Err(Errno::ENODEV));
    assert_eq!(bo_create(&b, PAGE, REGION_HOST, 0), Err(Errno::ENODEV));
    assert_eq!(rig.registry.unregister("accel0").unwrap_err().errno(), Errno::ENODEV);
    a.close();
    b.close();
    rig.assert_idle();
}

#[test]
fn unregistered_names_are_reused_by_new_devices() {
    let rig = Rig::new();
    rig.registry.unregister("accel0").unwrap();
    let d = rig.registry.register(test_driver::MockDriver::new(Default::default())).unwrap();
    assert_eq!(d.name(), "accel0");
    let d1 = rig.registry.register(test_driver::MockDriver::new(Default::default())).unwrap();
    assert_eq!(d1.name(), "accel1");
    assert!(accel_core::inproc::Client::open_in(&rig.registry, "/dev/accel/accel1").is_ok());
}
