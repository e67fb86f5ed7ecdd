//! One test per dispatcher check (UAPI-RULES.md 5-9): each call is valid
//! except for the one thing under test, and asserts the exact errno.

mod common;
use accel_uapi::ioctl::{self, Dir};
use accel_uapi::{Errno, sys};
use common::*;
use test_driver::MockConfig;
use zerocopy::IntoBytes;

fn bo_args() -> sys::accel_bo_create {
    sys::accel_bo_create { size: 4096, region: REGION_HOST, flags: sys::ACCEL_BO_CPU_VISIBLE, ..Default::default() }
}

#[test]
fn the_valid_baseline_succeeds() {
    let rig = Rig::new();
    let c = rig.open();
    let mut a = bo_args();
    io(&c, sys::ACCEL_IOCTL_BO_CREATE, &mut a).unwrap();
    assert_ne!(a.handle, 0);
}

#[test]
fn unknown_command_number_is_enotty() {
    let rig = Rig::new();
    let mut a = bo_args();
    let cmd = ioctl::ioc(Dir::ReadWrite, 0xEE, 24);
    assert_eq!(rig.open().ioctl(cmd, a.as_mut_bytes()), Err(Errno::ENOTTY));
}

#[test]
fn foreign_type_byte_is_enotty() {
    let rig = Rig::new();
    let mut a = bo_args();
    let cmd = (sys::ACCEL_IOCTL_BO_CREATE & !0xff00) | (b'd' as u32) << 8;
    assert_eq!(rig.open().ioctl(cmd, a.as_mut_bytes()), Err(Errno::ENOTTY));
}

#[test]
fn wrong_direction_is_enotty() {
    let rig = Rig::new();
    let mut a = bo_args();
    let cmd = ioctl::ioc(Dir::Write, 0x20, 24);
    assert_eq!(rig.open().ioctl(cmd, a.as_mut_bytes()), Err(Errno::ENOTTY));
}

#[test]
fn buffer_not_matching_encoded_size_is_einval() {
    let rig = Rig::new();
    let mut buf = [0u8; 32];
    buf[..24].copy_from_slice(bo_args().as_bytes());
    assert_eq!(rig.open().ioctl(sys::ACCEL_IOCTL_BO_CREATE, &mut buf), Err(Errno::EINVAL));
}

#[test]
fn struct_shorter_than_version_1_is_einval() {
    let rig = Rig::new();
    let mut buf = bo_args().as_bytes()[..16].to_vec();
    let cmd = ioctl::ioc(Dir::ReadWrite, 0x20, 16);
    assert_eq!(rig.open().ioctl(cmd, &mut buf), Err(Errno::EINVAL));
}

#[test]
fn longer_struct_with_non_zero_tail_is_e2big() {
    let rig = Rig::new();
    let mut buf = [0u8; 32];
    buf[..24].copy_from_slice(bo_args().as_bytes());
    buf[28] = 1;
    let cmd = ioctl::ioc(Dir::ReadWrite, 0x20, 32);
    assert_eq!(rig.open().ioctl(cmd, &mut buf), Err(Errno::E2BIG));
}

#[test]
fn longer_struct_with_zero_tail_is_accepted_and_the_tail_stays_zero() {
    let rig = Rig::new();
    let mut buf = [0u8; 32];
    buf[..24].copy_from_slice(bo_args().as_bytes());
    let cmd = ioctl::ioc(Dir::ReadWrite, 0x20, 32);
    rig.open().ioctl(cmd, &mut buf).unwrap();
    assert_ne!(u32::from_ne_bytes(buf[16..20].try_into().unwrap()), 0, "handle written");
    assert_eq!(&buf[24..], &[0; 8]);
    // A read-only command with a longer caller struct gets zeros past what the core knows.
    let mut v = [0xffu8; 24];
    rig.open().ioctl(ioctl::ioc(Dir::Read, 0x00, 24), &mut v).unwrap();
    assert_eq!(u16::from_ne_bytes([v[0], v[1]]), 1);
    assert_eq!(&v[16..], &[0; 8]);
}

#[test]
fn non_zero_pad_is_einval() {
    let rig = Rig::new();
    let mut a = bo_args();
    a.pad = 1;
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_BO_CREATE, &mut a), Err(Errno::EINVAL));
}

#[test]
fn unknown_flag_bit_is_einval() {
    let rig = Rig::new();
    let mut a = bo_args();
    a.flags |= 1 << 7;
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_BO_CREATE, &mut a), Err(Errno::EINVAL));
}

#[test]
fn flags_of_a_struct_with_no_flags_defined_must_be_zero() {
    let rig = Rig::new();
    let mut a = sys::accel_context_create { flags: 1, ctx_id: 0 };
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a), Err(Errno::EINVAL));
}

fn bind_setup(rig: &Rig) -> (accel_core::inproc::Client, u32, u32) {
    let c = rig.open();
    let ctx = ctx_create(&c).unwrap();
    let bo = bo_create(&c, 2 * PAGE, REGION_HOST, 0).unwrap();
    (c, ctx, bo)
}

#[test]
fn non_zero_pad_in_an_array_element_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = bind_setup(&rig);
    let mut op = map_op(bo, 0, VA_START, PAGE, RW);
    op.pad = 5;
    assert_eq!(vm_bind(&c, ctx, &[op]), Err(Errno::EINVAL));
}

#[test]
fn unknown_flag_bit_in_an_array_element_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = bind_setup(&rig);
    let op = map_op(bo, 0, VA_START, PAGE, RW | 1 << 9);
    assert_eq!(vm_bind(&c, ctx, &[op]), Err(Errno::EINVAL));
}

#[test]
fn array_count_over_its_maximum_is_e2big() {
    let rig = Rig::new();
    let (c, ctx, bo) = bind_setup(&rig);
    let ops = vec![map_op(bo, 0, VA_START, PAGE, RW); 4097];
    assert_eq!(vm_bind(&c, ctx, &ops), Err(Errno::E2BIG));
}

#[test]
fn unreadable_array_pointer_is_efault() {
    let rig = Rig::new();
    let (c, ctx, _) = bind_setup(&rig);
    let mut a = sys::accel_vm_bind { ctx_id: ctx, num_ops: 1, ops_ptr: 16, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_VM_BIND, &mut a), Err(Errno::EFAULT));
}

#[test]
fn null_array_pointer_with_a_count_is_efault() {
    let rig = Rig::new();
    let (c, ctx, _) = bind_setup(&rig);
    let mut a = sys::accel_vm_bind { ctx_id: ctx, num_ops: 1, ops_ptr: 0, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_VM_BIND, &mut a), Err(Errno::EFAULT));
}

#[test]
fn array_running_off_the_end_of_readable_memory_is_efault() {
    let rig = Rig::new();
    let (c, ctx, bo) = bind_setup(&rig);
    let ops = [map_op(bo, 0, VA_START, PAGE, RW)];
    // Claims 2 elements where only 1 is readable past a guard: use a pointer near the top of the address space.
    let mut a = sys::accel_vm_bind { ctx_id: ctx, num_ops: 2, ops_ptr: u64::MAX - 40, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_VM_BIND, &mut a), Err(Errno::EFAULT));
    assert_eq!(vm_bind(&c, ctx, &ops), Ok(()), "the same call with a good pointer works");
}

#[test]
fn unwritable_output_array_is_efault_and_changes_nothing() {
    let rig = Rig::new();
    let c = rig.open();
    static RO: [u8; 64] = [0; 64];
    let mut q = sys::accel_device_query {
        query_id: sys::ACCEL_QUERY_DEVICE_INFO,
        size: 64,
        data_ptr: RO.as_ptr() as u64,
        ..Default::default()
    };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Err(Errno::EFAULT));
    assert_eq!(q.size, 64, "the struct is not written back on failure");
}

#[test]
fn command_whose_capability_is_not_announced_is_eopnotsupp() {
    // A mock without ports does not announce ACCEL_CAP_FABRIC.
    let rig = Rig::with(MockConfig { ports: 0, ..Default::default() });
    let c = rig.open();
    let mut pd = sys::accel_pd_alloc::default();
    assert_eq!(io(&c, sys::ACCEL_IOCTL_PD_ALLOC, &mut pd), Err(Errno::EOPNOTSUPP));
    let mut ev = sys::accel_async_event::default();
    assert_eq!(io(&c, sys::ACCEL_IOCTL_GET_ASYNC_EVENT, &mut ev), Err(Errno::EOPNOTSUPP));
}

#[test]
fn call_on_a_closed_file_is_ebadf() {
    let rig = Rig::new();
    let c = rig.open();
    let c2 = c.clone();
    c.close();
    let mut a = bo_args();
    assert_eq!(io(&c2, sys::ACCEL_IOCTL_BO_CREATE, &mut a), Err(Errno::EBADF));
}

#[test]
fn call_after_unregister_is_enodev() {
    let rig = Rig::new();
    let c = rig.open();
    rig.registry.unregister("accel0").unwrap();
    let mut a = bo_args();
    assert_eq!(io(&c, sys::ACCEL_IOCTL_BO_CREATE, &mut a), Err(Errno::ENODEV));
    assert_eq!(accel_core::inproc::Client::open_in(&rig.registry, "accel0").unwrap_err(), Errno::ENODEV);
}

#[test]
fn failed_call_writes_nothing_back() {
    let rig = Rig::new();
    let mut a = bo_args();
    a.size = 0;
    a.handle = 0xdead;
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_BO_CREATE, &mut a), Err(Errno::EINVAL));
    assert_eq!(a.handle, 0xdead);
}
