//! Area: isolation — one file cannot name another's objects, and one
//! context's faults, bans and mappings do not reach another.

use super::{Ctx, cpu_region, ensure, expect_errno, tests, va_base};
use crate::{Area, Env, TestCase};
use accel::Commands;
use accel_uapi::flags::{BoFlags, Caps, VmBindFlags};
use accel_uapi::types::EngineClass;
use accel_uapi::{Errno, sys};
use std::time::Duration;

pub(crate) fn tests() -> Vec<TestCase> {
    let mut v = tests!(
        Area::Isolation,
        Caps::MEMORY,
        [
            bo_handles_are_per_file,
            context_handles_are_per_file,
            mmap_of_another_files_bo_is_eperm,
            closing_one_file_leaves_anothers_objects,
            va_spaces_are_private,
            destroying_a_context_leaves_others_mapped,
        ]
    );
    v.extend(tests!(
        Area::Isolation,
        Caps::SUBMIT.union(Caps::SYNCOBJ).union(Caps::CONTEXT_QUERY),
        [
            syncobj_handles_are_per_file,
            queue_handles_are_per_file,
            a_fault_stays_in_its_context,
            a_job_cannot_reach_another_contexts_memory,
        ]
    ));
    v
}

fn bo_handles_are_per_file(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    let mut c = sys::accel_bo_close { handle: bo.handle().get(), pad: 0 };
    expect_errno(other.ioctl("BO_CLOSE", sys::ACCEL_IOCTL_BO_CLOSE, &mut c), Errno::ENOENT, "close from another file")?;
    bo.info().ctx("the BO is still there")?;
    Ok(())
}

fn context_handles_are_per_file(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let ctx = env.dev.create_context().ctx("context")?;
    let mut d = sys::accel_context_destroy { ctx_id: ctx.id().get(), pad: 0 };
    expect_errno(
        other.ioctl("CONTEXT_DESTROY", sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut d),
        Errno::ENOENT,
        "destroy from another file",
    )
}

fn mmap_of_another_files_bo_is_eperm(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO")?;
    let off = bo.mmap_offset().ctx("mmap offset")?;
    // The other file guesses the offset: refused, since it holds no handle to the BO.
    let r = other.mmap_raw(off, 4096);
    expect_errno(r, Errno::EPERM, "mmap through another file")
}

fn closing_one_file_leaves_anothers_objects(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let region = cpu_region(&env.dev)?;
    let _theirs = other.create_bo(4096, region, BoFlags::empty()).ctx("their BO")?;
    let mine = env.dev.create_bo(4096, region, BoFlags::CPU_VISIBLE).ctx("my BO")?;
    let m = mine.map().ctx("map")?;
    m.write_u64(0, 0x5a5a).ctx("write")?;
    drop(_theirs);
    drop(other); // closes the other file and everything in it
    ensure!(m.read_u64(0).ctx("read")? == 0x5a5a, "my BO changed when another file closed");
    mine.info().ctx("my BO is still there")?;
    Ok(())
}

fn va_spaces_are_private(env: &Env) -> Result<(), String> {
    let (va, page) = va_base(&env.dev)?;
    let region = cpu_region(&env.dev)?;
    let (a, b) = (env.dev.create_context().ctx("ctx a")?, env.dev.create_context().ctx("ctx b")?);
    let bo = env.dev.create_bo(page, region, BoFlags::empty()).ctx("BO")?;
    a.map(&bo, 0, va, page, VmBindFlags::READ).ctx("map in a")?;
    b.map(&bo, 0, va, page, VmBindFlags::READ | VmBindFlags::WRITE).ctx("the same VA is free in b")?;
    expect_errno(a.map(&bo, 0, va, page, VmBindFlags::READ), Errno::EEXIST, "a's VA is taken")
}

fn destroying_a_context_leaves_others_mapped(env: &Env) -> Result<(), String> {
    let (va, page) = va_base(&env.dev)?;
    let bo = env.dev.create_bo(page, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    let a = env.dev.create_context().ctx("ctx a")?;
    let b = env.dev.create_context().ctx("ctx b")?;
    a.map(&bo, 0, va, page, VmBindFlags::READ).ctx("map a")?;
    b.map(&bo, 0, va, page, VmBindFlags::READ).ctx("map b")?;
    drop(a);
    expect_errno(b.map(&bo, 0, va, page, VmBindFlags::READ), Errno::EEXIST, "b's mapping survives")
}

fn syncobj_handles_are_per_file(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let s = env.dev.create_syncobj(false, true).ctx("syncobj")?;
    let mut d = sys::accel_syncobj_destroy { handle: s.handle().get(), pad: 0 };
    expect_errno(
        other.ioctl("SYNCOBJ_DESTROY", sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut d),
        Errno::ENOENT,
        "destroy from another file",
    )
}

fn queue_handles_are_per_file(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let ctx = env.dev.create_context().ctx("context")?;
    let q = ctx.create_queue(EngineClass::Compute).ctx("queue")?;
    let mut d = sys::accel_queue_destroy { queue_id: q.id().get(), pad: 0 };
    expect_errno(
        other.ioctl("QUEUE_DESTROY", sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d),
        Errno::ENOENT,
        "destroy from another file",
    )
}

fn deadline() -> i64 {
    accel::deadline_in(Duration::from_secs(5))
}

fn a_fault_stays_in_its_context(env: &Env) -> Result<(), String> {
    let (va, page) = va_base(&env.dev)?;
    let bo = env.dev.create_bo(page, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO")?;
    let bad = env.dev.create_context().ctx("ctx")?;
    let good = env.dev.create_context().ctx("ctx")?;
    good.map(&bo, 0, va, page, VmBindFlags::READ | VmBindFlags::WRITE).ctx("map")?;
    let s =
        bad.create_queue(EngineClass::Compute).ctx("queue")?.run(Commands::new().write_value(va, 1, 8)).ctx("run")?;
    s.wait(0, deadline()).ctx("wait")?;
    ensure!(s.query().ctx("query")?.1 == -Errno::EFAULT.raw(), "the unmapped write did not fault");
    let s2 =
        good.create_queue(EngineClass::Compute).ctx("queue")?.run(Commands::new().write_value(va, 7, 8)).ctx("run")?;
    s2.wait(0, deadline()).ctx("wait")?;
    ensure!(s2.query().ctx("query")?.1 == 0, "the other context's job failed");
    ensure!(good.query().ctx("query")?.status == 0, "the other context is marked faulted");
    ensure!(bo.map().ctx("map")?.read_u64(0).ctx("read")? == 7, "the other context's write is missing");
    Ok(())
}

fn a_job_cannot_reach_another_contexts_memory(env: &Env) -> Result<(), String> {
    let (va, page) = va_base(&env.dev)?;
    let region = cpu_region(&env.dev)?;
    let secret = env.dev.create_bo(page, region, BoFlags::CPU_VISIBLE).ctx("BO")?;
    secret.map().ctx("map")?.write_u64(0, 0x5ec7e7).ctx("write")?;
    let owner = env.dev.create_context().ctx("ctx")?;
    owner.map(&secret, 0, va, page, VmBindFlags::READ).ctx("map")?;
    let mine = env.dev.create_bo(page, region, BoFlags::CPU_VISIBLE).ctx("BO")?;
    let spy = env.dev.create_context().ctx("ctx")?;
    spy.map(&mine, 0, va + page, page, VmBindFlags::READ | VmBindFlags::WRITE).ctx("map")?;
    // The spy copies from the owner's VA: in its own space that VA is unmapped.
    let s =
        spy.create_queue(EngineClass::Compute).ctx("queue")?.run(Commands::new().copy(va, va + page, 8)).ctx("run")?;
    s.wait(0, deadline()).ctx("wait")?;
    ensure!(s.query().ctx("query")?.1 == -Errno::EFAULT.raw(), "reading another context's VA did not fault");
    ensure!(mine.map().ctx("map")?.read_u64(0).ctx("read")? == 0, "data leaked across contexts");
    Ok(())
}
