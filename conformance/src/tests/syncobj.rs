//! Area: syncobj — binary and timeline syncobjs: create, wait, signal, reset,
//! query, transfer, export/import, and the exact errno of every rejection.

use super::{Ctx, cpu_region, ensure, expect_errno, tests, va_base};
use crate::{Area, Env, TestCase};
use accel::{Commands, Device, Submit, Syncobj};
use accel_uapi::flags::{BoFlags, Caps, VmBindFlags};
use accel_uapi::types::{CmpOp, EngineClass};
use accel_uapi::{Errno, sys};
use std::os::fd::AsFd;
use std::time::Duration;

pub(crate) fn tests() -> Vec<TestCase> {
    let jobs = Caps::SYNCOBJ.union(Caps::SUBMIT).union(Caps::PORTABLE_CS);
    let mut v = tests!(
        Area::Syncobj,
        Caps::SYNCOBJ,
        [
            create_binary_starts_unsignalled,
            create_signalled_starts_signalled,
            unknown_create_flag_is_einval,
            destroy_removes_the_handle,
            destroy_twice_is_enoent,
            wait_on_a_signalled_syncobj_returns,
            wait_any_returns_the_index_of_the_signalled_one,
            wait_all_misses_its_deadline,
            poll_of_an_unsignalled_syncobj_is_etimedout,
            a_past_deadline_still_reports_what_is_signalled,
            wait_for_submit_sees_a_later_host_signal,
            wait_without_wait_for_submit_on_no_fence_is_einval,
            signal_sets_a_binary_syncobj,
            reset_makes_query_report_0,
            wait_with_count_0_is_einval,
            wait_with_an_unknown_handle_is_enoent,
            point_on_a_binary_syncobj_is_einval,
        ]
    );
    v.extend(tests!(Area::Syncobj, jobs, [a_failed_jobs_status_is_minus_errno, wait_for_submit_sees_a_later_submit,]));
    v.extend(tests!(
        Area::Syncobj,
        Caps::SYNCOBJ.union(Caps::SYNCOBJ_TIMELINE),
        [
            create_timeline_starts_at_0,
            timeline_and_signaled_is_einval,
            timeline_future_point_needs_wait_for_submit,
            timeline_signal_must_increase,
            a_later_point_satisfies_an_earlier_one,
            signal_or_reset_of_a_timeline_is_einval,
            timeline_signal_of_a_binary_is_einval,
            timeline_point_0_is_einval,
            transfer_binary_to_timeline,
            transfer_timeline_to_binary,
            transfer_from_a_fenceless_binary_is_einval,
        ]
    ));
    v.extend(tests!(Area::Syncobj, jobs.union(Caps::SYNCOBJ_TIMELINE), [timeline_points_retire_in_order]));
    v.extend(tests!(
        Area::Syncobj,
        Caps::SYNCOBJ.union(Caps::SYNCOBJ_SHARE),
        [export_and_import_name_the_same_syncobj, import_of_a_non_export_fd_is_ebadf,]
    ));
    v
}

/// The absolute deadline of every wait that should succeed.
fn deadline() -> i64 {
    accel::deadline_in(Duration::from_secs(5))
}

fn binary(env: &Env, signaled: bool) -> Result<Syncobj, String> {
    env.dev.create_syncobj(false, signaled).ctx("SYNCOBJ_CREATE")
}

fn timeline(env: &Env) -> Result<Syncobj, String> {
    env.dev.create_syncobj(true, false).ctx("SYNCOBJ_CREATE timeline")
}

/// A raw SYNCOBJ_CREATE: the handle.
fn create_raw(dev: &Device, flags: u32) -> accel::Result<u32> {
    let mut a = sys::accel_syncobj_create { flags, handle: 0 };
    dev.ioctl("SYNCOBJ_CREATE", sys::ACCEL_IOCTL_SYNCOBJ_CREATE, &mut a).map(|()| a.handle)
}

fn destroy_raw(dev: &Device, handle: u32) -> accel::Result<()> {
    let mut a = sys::accel_syncobj_destroy { handle, pad: 0 };
    dev.ioctl("SYNCOBJ_DESTROY", sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut a)
}

/// A raw SYNCOBJ_QUERY of one handle: (point, status).
fn query_raw(dev: &Device, handle: u32) -> accel::Result<(u64, i32)> {
    let (h, mut p, mut st) = ([handle], [0u64], [0i32]);
    let mut a = sys::accel_syncobj_query {
        handles_ptr: h.as_ptr() as u64,
        points_ptr: p.as_mut_ptr() as u64,
        status_ptr: st.as_mut_ptr() as u64,
        count: 1,
        flags: 0,
    };
    dev.ioctl("SYNCOBJ_QUERY", sys::ACCEL_IOCTL_SYNCOBJ_QUERY, &mut a).map(|()| (p[0], st[0]))
}

/// SYNCOBJ_WAIT on binary syncobjs (any, or all), optionally waiting for a fence to appear.
fn wait(env: &Env, s: &[&Syncobj], all: bool, wfs: bool, deadline_ns: i64) -> accel::Result<u32> {
    let syncs: Vec<(&Syncobj, u64)> = s.iter().map(|s| (*s, 0)).collect();
    env.dev.wait(&syncs, all, wfs, deadline_ns)
}

fn create_binary_starts_unsignalled(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "a new binary syncobj reports {:?}", s.query());
    expect_errno(wait(env, &[&s], true, true, 0), Errno::ETIMEDOUT, "poll of a new binary syncobj")
}

fn create_signalled_starts_signalled(env: &Env) -> Result<(), String> {
    let s = binary(env, true)?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (1, 0), "a SIGNALED syncobj reports {:?}", s.query());
    wait(env, &[&s], true, false, 0).ctx("poll of a SIGNALED syncobj")?;
    Ok(())
}

fn unknown_create_flag_is_einval(env: &Env) -> Result<(), String> {
    expect_errno(create_raw(&env.dev, 1 << 5), Errno::EINVAL, "flag bit 5")?;
    expect_errno(create_raw(&env.dev, 1 << 31), Errno::EINVAL, "flag bit 31")
}

fn destroy_removes_the_handle(env: &Env) -> Result<(), String> {
    let h = create_raw(&env.dev, sys::ACCEL_SYNCOBJ_CREATE_SIGNALED).ctx("SYNCOBJ_CREATE")?;
    ensure!(query_raw(&env.dev, h).ctx("SYNCOBJ_QUERY")? == (1, 0), "the new syncobj is not signalled");
    destroy_raw(&env.dev, h).ctx("SYNCOBJ_DESTROY")?;
    expect_errno(query_raw(&env.dev, h), Errno::ENOENT, "SYNCOBJ_QUERY of a destroyed handle")
}

fn destroy_twice_is_enoent(env: &Env) -> Result<(), String> {
    let h = create_raw(&env.dev, 0).ctx("SYNCOBJ_CREATE")?;
    destroy_raw(&env.dev, h).ctx("SYNCOBJ_DESTROY")?;
    expect_errno(destroy_raw(&env.dev, h), Errno::ENOENT, "second SYNCOBJ_DESTROY")
}

fn wait_on_a_signalled_syncobj_returns(env: &Env) -> Result<(), String> {
    let s = binary(env, true)?;
    let start = std::time::Instant::now();
    ensure!(wait(env, &[&s], true, false, deadline()).ctx("SYNCOBJ_WAIT")? == 0, "first_signaled not 0");
    ensure!(start.elapsed() < Duration::from_secs(1), "waiting on a signalled syncobj took {:?}", start.elapsed());
    Ok(())
}

fn wait_any_returns_the_index_of_the_signalled_one(env: &Env) -> Result<(), String> {
    let (a, b, c) = (binary(env, false)?, binary(env, true)?, binary(env, false)?);
    let i = wait(env, &[&a, &b, &c], false, true, deadline()).ctx("ANY wait")?;
    ensure!(i == 1, "first_signaled {i}, want 1");
    c.signal().ctx("SYNCOBJ_SIGNAL")?;
    b.reset().ctx("SYNCOBJ_RESET")?;
    let i = wait(env, &[&a, &b, &c], false, true, deadline()).ctx("ANY wait")?;
    ensure!(i == 2, "first_signaled {i} after the reset, want 2");
    Ok(())
}

fn wait_all_misses_its_deadline(env: &Env) -> Result<(), String> {
    let (a, b) = (binary(env, false)?, binary(env, true)?);
    let until = accel::deadline_in(Duration::from_millis(30));
    expect_errno(wait(env, &[&a, &b], true, true, until), Errno::ETIMEDOUT, "ALL with one unsignalled")?;
    let now = accel::monotonic_ns();
    ensure!(now >= until, "ETIMEDOUT {} ns before the deadline", until - now);
    Ok(())
}

fn poll_of_an_unsignalled_syncobj_is_etimedout(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    let start = std::time::Instant::now();
    expect_errno(wait(env, &[&s], true, true, 0), Errno::ETIMEDOUT, "poll (deadline 0)")?;
    ensure!(start.elapsed() < Duration::from_millis(500), "a poll blocked for {:?}", start.elapsed());
    Ok(())
}

fn a_past_deadline_still_reports_what_is_signalled(env: &Env) -> Result<(), String> {
    let (a, b) = (binary(env, false)?, binary(env, true)?);
    let past = accel::monotonic_ns() - 5_000_000;
    ensure!(wait(env, &[&a, &b], false, true, past).ctx("ANY with a past deadline")? == 1, "wrong index");
    wait(env, &[&b], true, false, past).ctx("ALL (signalled) with a past deadline")?;
    expect_errno(wait(env, &[&a, &b], true, true, past), Errno::ETIMEDOUT, "ALL (one unsignalled), past deadline")
}

fn wait_for_submit_sees_a_later_host_signal(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| wait(env, &[&s], true, true, deadline()));
        std::thread::sleep(Duration::from_millis(20));
        ensure!(!waiter.is_finished(), "WAIT_FOR_SUBMIT returned before any fence");
        s.signal().ctx("SYNCOBJ_SIGNAL")?;
        waiter.join().map_err(|_| "the waiter panicked".to_string())?.ctx("WAIT_FOR_SUBMIT wait")?;
        Ok::<(), String>(())
    })
}

fn wait_without_wait_for_submit_on_no_fence_is_einval(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    expect_errno(wait(env, &[&s], true, false, deadline()), Errno::EINVAL, "wait on no fence")
}

fn signal_sets_a_binary_syncobj(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    s.signal().ctx("SYNCOBJ_SIGNAL")?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (1, 0), "after SIGNAL: {:?}", s.query());
    wait(env, &[&s], true, false, 0).ctx("poll after SIGNAL")?;
    Ok(())
}

fn reset_makes_query_report_0(env: &Env) -> Result<(), String> {
    let s = binary(env, true)?;
    s.reset().ctx("SYNCOBJ_RESET")?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "after RESET: {:?}", s.query());
    expect_errno(wait(env, &[&s], true, false, 0), Errno::EINVAL, "a reset syncobj has no fence")
}

fn wait_with_count_0_is_einval(env: &Env) -> Result<(), String> {
    expect_errno(env.dev.wait(&[], true, true, deadline()), Errno::EINVAL, "count 0")
}

fn wait_with_an_unknown_handle_is_enoent(env: &Env) -> Result<(), String> {
    let s = binary(env, true)?;
    let stale = create_raw(&env.dev, 0).ctx("SYNCOBJ_CREATE")?;
    destroy_raw(&env.dev, stale).ctx("SYNCOBJ_DESTROY")?;
    let handles = [s.handle().get(), stale];
    let mut a = sys::accel_syncobj_wait { handles_ptr: handles.as_ptr() as u64, count: 2, ..Default::default() };
    expect_errno(
        env.dev.ioctl("SYNCOBJ_WAIT", sys::ACCEL_IOCTL_SYNCOBJ_WAIT, &mut a),
        Errno::ENOENT,
        "a destroyed handle",
    )
}

fn point_on_a_binary_syncobj_is_einval(env: &Env) -> Result<(), String> {
    let s = binary(env, true)?;
    expect_errno(env.dev.wait(&[(&s, 1)], true, false, deadline()), Errno::EINVAL, "point 1 on a binary")
}

// ------------------------------------------------------------ with jobs

/// A context with a CPU-visible BO mapped at the first VA, and a queue on it.
fn job_space(env: &Env) -> Result<(accel::Queue, accel::Mapping, u64), String> {
    let (va, page) = va_base(&env.dev)?;
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let bo = env.dev.create_bo(page, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    ctx.map(&bo, 0, va, bo.size(), VmBindFlags::READ | VmBindFlags::WRITE).ctx("VM_BIND")?;
    let engines = env.dev.engines().ctx("ENGINES")?;
    let class = if engines.iter().any(|e| e.engine_class == sys::ACCEL_ENGINE_CLASS_COMPUTE && e.count > 0) {
        EngineClass::Compute
    } else {
        EngineClass::Copy
    };
    let q = ctx.create_queue(class).ctx("QUEUE_CREATE")?;
    Ok((q, bo.map().ctx("mmap")?, va + bo.size()))
}

fn a_failed_jobs_status_is_minus_errno(env: &Env) -> Result<(), String> {
    let (q, _map, unmapped) = job_space(env)?;
    let s = q.run(Commands::new().write_value(unmapped, 1, 8)).ctx("SUBMIT")?;
    s.wait(0, deadline()).ctx("a failed fence completes the wait")?;
    let (point, status) = s.query().ctx("SYNCOBJ_QUERY")?;
    ensure!(point == 1, "the failed job's syncobj is not signalled");
    ensure!(status == -Errno::EFAULT.raw(), "status {status}, want -{} (EFAULT)", Errno::EFAULT.raw());
    Ok(())
}

fn wait_for_submit_sees_a_later_submit(env: &Env) -> Result<(), String> {
    let (q, map, _) = job_space(env)?;
    let (va, _) = va_base(&env.dev)?;
    let s = binary(env, false)?;
    let mut c = Commands::new();
    c.write_value(va + 8, 4, 8);
    let bo = env.dev.create_bo(64, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    bo.map().ctx("mmap")?.write(0, c.bytes()).ctx("write")?;
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| wait(env, &[&s], true, true, deadline()));
        std::thread::sleep(Duration::from_millis(20));
        ensure!(!waiter.is_finished(), "WAIT_FOR_SUBMIT returned before the submit");
        q.submit(&Submit::new().chunk(&bo, 0, c.len() as u64).signal(&s, 0)).ctx("SUBMIT")?;
        waiter.join().map_err(|_| "the waiter panicked".to_string())?.ctx("WAIT_FOR_SUBMIT wait")?;
        Ok::<(), String>(())
    })?;
    ensure!(map.read_u64(8).ctx("read")? == 4, "the wait returned before the job ran");
    Ok(())
}

fn timeline_points_retire_in_order(env: &Env) -> Result<(), String> {
    let (q, map, _) = job_space(env)?;
    let (va, _) = va_base(&env.dev)?;
    let t = timeline(env)?;
    let bo = env.dev.create_bo(64, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    let mut gate = Commands::new();
    gate.wait_value(va, CmpOp::Eq, 1, !0, 8, 5_000_000_000);
    bo.map().ctx("mmap")?.write(0, gate.bytes()).ctx("write")?;
    q.submit(&Submit::new().chunk(&bo, 0, gate.len() as u64).signal(&t, 1)).ctx("SUBMIT point 1")?;
    t.timeline_signal(2).ctx("TIMELINE_SIGNAL 2")?;
    std::thread::sleep(Duration::from_millis(20));
    ensure!(t.query().ctx("SYNCOBJ_QUERY")?.0 == 0, "the payload moved while point 1 is held");
    let soon = accel::deadline_in(Duration::from_millis(20));
    expect_errno(env.dev.wait(&[(&t, 2)], true, true, soon), Errno::ETIMEDOUT, "point 2 before point 1")?;
    map.write_u64(0, 1).ctx("open the gate")?;
    t.wait(2, deadline()).ctx("wait for point 2")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (2, 0), "after the gate: {:?}", t.query());
    Ok(())
}

// ------------------------------------------------------------ timelines

fn create_timeline_starts_at_0(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "a new timeline reports {:?}", t.query());
    expect_errno(env.dev.wait(&[(&t, 1)], true, true, 0), Errno::ETIMEDOUT, "poll of point 1")
}

fn timeline_and_signaled_is_einval(env: &Env) -> Result<(), String> {
    let both = sys::ACCEL_SYNCOBJ_CREATE_TIMELINE | sys::ACCEL_SYNCOBJ_CREATE_SIGNALED;
    expect_errno(create_raw(&env.dev, both), Errno::EINVAL, "TIMELINE | SIGNALED")
}

fn timeline_future_point_needs_wait_for_submit(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    expect_errno(env.dev.wait(&[(&t, 5)], true, false, deadline()), Errno::EINVAL, "point 5 without WAIT_FOR_SUBMIT")?;
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| env.dev.wait(&[(&t, 5)], true, true, deadline()));
        std::thread::sleep(Duration::from_millis(20));
        ensure!(!waiter.is_finished(), "the wait for point 5 returned early");
        t.timeline_signal(5).ctx("TIMELINE_SIGNAL 5")?;
        waiter.join().map_err(|_| "the waiter panicked".to_string())?.ctx("wait for point 5")?;
        Ok::<(), String>(())
    })?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (5, 0), "after TIMELINE_SIGNAL 5: {:?}", t.query());
    Ok(())
}

fn timeline_signal_must_increase(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    t.timeline_signal(3).ctx("TIMELINE_SIGNAL 3")?;
    expect_errno(t.timeline_signal(3), Errno::EINVAL, "point 3 again")?;
    expect_errno(t.timeline_signal(2), Errno::EINVAL, "point 2 after 3")?;
    t.timeline_signal(4).ctx("TIMELINE_SIGNAL 4")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (4, 0), "timeline at {:?}", t.query());
    Ok(())
}

fn a_later_point_satisfies_an_earlier_one(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    t.timeline_signal(7).ctx("TIMELINE_SIGNAL 7")?;
    env.dev.wait(&[(&t, 3)], true, false, 0).ctx("poll of point 3 at payload 7")?;
    expect_errno(env.dev.wait(&[(&t, 8)], true, true, 0), Errno::ETIMEDOUT, "poll of point 8 at payload 7")
}

fn signal_or_reset_of_a_timeline_is_einval(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    expect_errno(t.signal(), Errno::EINVAL, "SYNCOBJ_SIGNAL of a timeline")?;
    expect_errno(t.reset(), Errno::EINVAL, "SYNCOBJ_RESET of a timeline")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "the timeline changed: {:?}", t.query());
    Ok(())
}

fn timeline_signal_of_a_binary_is_einval(env: &Env) -> Result<(), String> {
    let s = binary(env, false)?;
    expect_errno(s.timeline_signal(1), Errno::EINVAL, "TIMELINE_SIGNAL of a binary")?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "the binary syncobj changed: {:?}", s.query());
    Ok(())
}

fn timeline_point_0_is_einval(env: &Env) -> Result<(), String> {
    let t = timeline(env)?;
    expect_errno(env.dev.wait(&[(&t, 0)], true, true, 0), Errno::EINVAL, "wait on point 0")?;
    expect_errno(t.timeline_signal(0), Errno::EINVAL, "TIMELINE_SIGNAL 0")
}

fn transfer_binary_to_timeline(env: &Env) -> Result<(), String> {
    let (b, t) = (binary(env, true)?, timeline(env)?);
    b.transfer_to(0, &t, 3).ctx("TRANSFER binary -> point 3")?;
    t.wait(3, deadline()).ctx("wait for point 3")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (3, 0), "timeline at {:?}", t.query());
    expect_errno(b.transfer_to(0, &t, 2), Errno::EINVAL, "TRANSFER to point 2 behind 3")
}

fn transfer_timeline_to_binary(env: &Env) -> Result<(), String> {
    let (t, b) = (timeline(env)?, binary(env, false)?);
    t.timeline_signal(2).ctx("TIMELINE_SIGNAL 2")?;
    t.transfer_to(2, &b, 0).ctx("TRANSFER point 2 -> binary")?;
    ensure!(b.query().ctx("SYNCOBJ_QUERY")? == (1, 0), "binary after the transfer: {:?}", b.query());
    wait(env, &[&b], true, false, 0).ctx("poll of the binary")?;
    Ok(())
}

fn transfer_from_a_fenceless_binary_is_einval(env: &Env) -> Result<(), String> {
    let (b, t) = (binary(env, false)?, timeline(env)?);
    expect_errno(b.transfer_to(0, &t, 1), Errno::EINVAL, "TRANSFER from no fence")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "the timeline changed: {:?}", t.query());
    Ok(())
}

// ------------------------------------------------------------ sharing

fn export_and_import_name_the_same_syncobj(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let s = binary(env, false)?;
    let fd = s.export().ctx("SYNCOBJ_EXPORT")?;
    let theirs = other.import_syncobj(fd.as_fd()).ctx("SYNCOBJ_IMPORT")?;
    drop(fd);
    s.signal().ctx("SYNCOBJ_SIGNAL")?;
    ensure!(theirs.query().ctx("SYNCOBJ_QUERY")? == (1, 0), "the import did not see the signal");
    theirs.reset().ctx("SYNCOBJ_RESET through the import")?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "the exporter did not see the reset");
    Ok(())
}

fn import_of_a_non_export_fd_is_ebadf(env: &Env) -> Result<(), String> {
    let f = std::fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    expect_errno(env.dev.import_syncobj(f.as_fd()), Errno::EBADF, "SYNCOBJ_IMPORT of /dev/null")
}
