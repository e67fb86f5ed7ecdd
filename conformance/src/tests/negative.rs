//! Area: negative — the dispatcher's generic validation (UAPI-RULES.md 5-9),
//! each call otherwise valid, each asserting the exact errno.

use super::{Ctx, cpu_region, ensure, expect_errno, tests, va_base};
use crate::{Area, Env, TestCase};
use accel_uapi::flags::{Caps, VmBindFlags};
use accel_uapi::ioctl::{self, Dir};
use accel_uapi::{Errno, sys};
use zerocopy::IntoBytes;

pub(crate) fn tests() -> Vec<TestCase> {
    tests!(
        Area::Negative,
        Caps::MEMORY,
        [
            unknown_command_is_enotty,
            every_unused_command_number_is_enotty,
            foreign_type_byte_is_enotty,
            wrong_direction_is_enotty,
            no_direction_is_enotty,
            argument_size_mismatch_is_einval,
            shorter_than_version_1_is_einval,
            longer_with_non_zero_tail_is_e2big,
            longer_with_zero_tail_is_accepted,
            read_only_command_zeroes_an_unknown_tail,
            non_zero_pad_is_einval,
            unknown_flag_bit_is_einval,
            reserved_flags_word_is_einval,
            element_pad_is_einval,
            element_unknown_flag_is_einval,
            count_over_maximum_is_e2big,
            unreadable_array_is_efault,
            null_array_with_count_is_efault,
            unwritable_output_array_is_efault,
            failed_call_writes_nothing_back,
            handle_zero_is_enoent,
        ]
    )
}

fn bo_create_bytes(env: &Env) -> Result<Vec<u8>, String> {
    let region = cpu_region(&env.dev)?;
    Ok(sys::accel_bo_create { size: 4096, region, ..Default::default() }.as_bytes().to_vec())
}

fn raw(env: &Env, cmd: u32, bytes: &mut [u8]) -> accel::Result<()> {
    env.dev.ioctl_bytes("RAW", cmd, bytes)
}

fn unknown_command_is_enotty(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    expect_errno(raw(env, ioctl::ioc(Dir::ReadWrite, 0xEE, 24), &mut b), Errno::ENOTTY, "nr 0xEE")
}

fn every_unused_command_number_is_enotty(env: &Env) -> Result<(), String> {
    let mut b = vec![0u8; 64];
    for nr in 0..=255u8 {
        if ioctl::by_nr(nr).is_some() {
            continue;
        }
        let r = raw(env, ioctl::ioc(Dir::ReadWrite, nr, 64), &mut b);
        ensure!(matches!(r, Err(e) if e.errno == Errno::ENOTTY), "nr {nr:#04x}: {r:?}");
    }
    Ok(())
}

fn foreign_type_byte_is_enotty(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    let cmd = (sys::ACCEL_IOCTL_BO_CREATE & !0xff00) | (u32::from(b'd') << 8);
    expect_errno(raw(env, cmd, &mut b), Errno::ENOTTY, "DRM type byte")
}

fn wrong_direction_is_enotty(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    expect_errno(raw(env, ioctl::ioc(Dir::Read, 0x20, 24), &mut b), Errno::ENOTTY, "BO_CREATE as _IOR")
}

fn no_direction_is_enotty(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    let cmd = sys::ACCEL_IOCTL_BO_CREATE & !(3 << 30);
    expect_errno(raw(env, cmd, &mut b), Errno::ENOTTY, "BO_CREATE as _IO")
}

fn argument_size_mismatch_is_einval(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    b.extend_from_slice(&[0; 8]);
    expect_errno(raw(env, sys::ACCEL_IOCTL_BO_CREATE, &mut b), Errno::EINVAL, "32 bytes for a 24-byte command")
}

fn shorter_than_version_1_is_einval(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?[..16].to_vec();
    expect_errno(raw(env, ioctl::ioc(Dir::ReadWrite, 0x20, 16), &mut b), Errno::EINVAL, "16-byte BO_CREATE")
}

fn longer_with_non_zero_tail_is_e2big(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    expect_errno(raw(env, ioctl::ioc(Dir::ReadWrite, 0x20, 32), &mut b), Errno::E2BIG, "non-zero tail")
}

fn longer_with_zero_tail_is_accepted(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    b.extend_from_slice(&[0; 8]);
    raw(env, ioctl::ioc(Dir::ReadWrite, 0x20, 32), &mut b).ctx("BO_CREATE with a zero tail")?;
    let handle = u32::from_ne_bytes(b[16..20].try_into().map_err(|_| "short")?);
    ensure!(handle != 0, "no handle written back");
    ensure!(b[24..].iter().all(|x| *x == 0), "tail not zero after the call");
    Ok(())
}

fn read_only_command_zeroes_an_unknown_tail(env: &Env) -> Result<(), String> {
    let mut b = vec![0xFFu8; 24];
    raw(env, ioctl::ioc(Dir::Read, 0x00, 24), &mut b).ctx("VERSION with 24 bytes")?;
    ensure!(u16::from_ne_bytes([b[0], b[1]]) == 1, "major not written");
    ensure!(b[16..].iter().all(|x| *x == 0), "unknown tail not zeroed: {:?}", &b[16..]);
    Ok(())
}

fn non_zero_pad_is_einval(env: &Env) -> Result<(), String> {
    let mut b = bo_create_bytes(env)?;
    b[20] = 1; // accel_bo_create.pad
    expect_errno(raw(env, sys::ACCEL_IOCTL_BO_CREATE, &mut b), Errno::EINVAL, "pad")
}

fn unknown_flag_bit_is_einval(env: &Env) -> Result<(), String> {
    let region = cpu_region(&env.dev)?;
    let mut a = sys::accel_bo_create { size: 4096, region, flags: 1 << 20, ..Default::default() };
    expect_errno(env.dev.ioctl("BO_CREATE", sys::ACCEL_IOCTL_BO_CREATE, &mut a), Errno::EINVAL, "flag bit 20")
}

fn reserved_flags_word_is_einval(env: &Env) -> Result<(), String> {
    let mut a = sys::accel_context_create { flags: 1, ctx_id: 0 };
    expect_errno(env.dev.ioctl("CONTEXT_CREATE", sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a), Errno::EINVAL, "flags 1")
}

fn bind_args(env: &Env) -> Result<(accel::Context, accel::Bo, u64, u64), String> {
    let (va, page) = va_base(&env.dev)?;
    let ctx = env.dev.create_context().ctx("context")?;
    let bo = env.dev.create_bo(page, cpu_region(&env.dev)?, accel_uapi::flags::BoFlags::empty()).ctx("BO")?;
    Ok((ctx, bo, va, page))
}

fn element_pad_is_einval(env: &Env) -> Result<(), String> {
    let (ctx, bo, va, page) = bind_args(env)?;
    let mut op = accel::map_op(&bo, 0, va, page, VmBindFlags::READ);
    op.pad = 1;
    expect_errno(ctx.bind(&[op]), Errno::EINVAL, "ops[0].pad")
}

fn element_unknown_flag_is_einval(env: &Env) -> Result<(), String> {
    let (ctx, bo, va, page) = bind_args(env)?;
    let mut op = accel::map_op(&bo, 0, va, page, VmBindFlags::READ);
    op.flags |= 1 << 12;
    expect_errno(ctx.bind(&[op]), Errno::EINVAL, "ops[0].flags bit 12")
}

fn count_over_maximum_is_e2big(env: &Env) -> Result<(), String> {
    let (ctx, bo, va, page) = bind_args(env)?;
    let max = env.dev.limits().ctx("limits")?.max_vm_bind_ops as usize;
    let ops = vec![accel::map_op(&bo, 0, va, page, VmBindFlags::READ); max + 1];
    expect_errno(ctx.bind(&ops), Errno::E2BIG, "max_vm_bind_ops + 1 ops")
}

fn unreadable_array_is_efault(env: &Env) -> Result<(), String> {
    let (ctx, _bo, _, _) = bind_args(env)?;
    let mut a = sys::accel_vm_bind { ctx_id: ctx.id().get(), num_ops: 1, ops_ptr: 8, ..Default::default() };
    expect_errno(env.dev.ioctl("VM_BIND", sys::ACCEL_IOCTL_VM_BIND, &mut a), Errno::EFAULT, "ops_ptr 8")
}

fn null_array_with_count_is_efault(env: &Env) -> Result<(), String> {
    let (ctx, _bo, _, _) = bind_args(env)?;
    let mut a = sys::accel_vm_bind { ctx_id: ctx.id().get(), num_ops: 2, ops_ptr: 0, ..Default::default() };
    expect_errno(env.dev.ioctl("VM_BIND", sys::ACCEL_IOCTL_VM_BIND, &mut a), Errno::EFAULT, "NULL ops_ptr")
}

fn unwritable_output_array_is_efault(env: &Env) -> Result<(), String> {
    static RO: [u8; 256] = [0; 256];
    let mut q = sys::accel_device_query {
        query_id: sys::ACCEL_QUERY_LIMITS,
        size: 256,
        data_ptr: RO.as_ptr() as u64,
        ..Default::default()
    };
    expect_errno(
        env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q),
        Errno::EFAULT,
        "read-only data_ptr",
    )?;
    ensure!(q.size == 256, "the struct was written back on failure");
    Ok(())
}

fn failed_call_writes_nothing_back(env: &Env) -> Result<(), String> {
    let mut a = sys::accel_bo_create { size: 0, region: cpu_region(&env.dev)?, handle: 0xdead, ..Default::default() };
    expect_errno(env.dev.ioctl("BO_CREATE", sys::ACCEL_IOCTL_BO_CREATE, &mut a), Errno::EINVAL, "size 0")?;
    ensure!(a.handle == 0xdead, "handle overwritten on failure");
    Ok(())
}

fn handle_zero_is_enoent(env: &Env) -> Result<(), String> {
    let mut c = sys::accel_bo_close { handle: 0, pad: 0 };
    expect_errno(env.dev.ioctl("BO_CLOSE", sys::ACCEL_IOCTL_BO_CLOSE, &mut c), Errno::ENOENT, "BO_CLOSE 0")?;
    let mut d = sys::accel_context_destroy { ctx_id: 0, pad: 0 };
    expect_errno(
        env.dev.ioctl("CONTEXT_DESTROY", sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut d),
        Errno::ENOENT,
        "CONTEXT_DESTROY 0",
    )
}
