//! Area: submit — queues, SUBMIT, the portable command set byte for byte,
//! ordering, dependencies, faults, hangs, and the exact errno of every
//! QUEUE_CREATE and SUBMIT rejection.

use super::{Ctx, cpu_region, ensure, expect_errno, tests, va_base};
use crate::{Area, Env, TestCase};
use accel::{Bo, Commands, Context, Device, Mapping, Queue, Submit, Syncobj};
use accel_uapi::flags::{BoFlags, Caps, VmBindFlags};
use accel_uapi::types::{CmpOp, DType, EngineClass, Priority, ReduceOp};
use accel_uapi::{Errno, sys};
use std::time::Duration;

pub(crate) fn tests() -> Vec<TestCase> {
    let base = Caps::SUBMIT.union(Caps::PORTABLE_CS).union(Caps::SYNCOBJ);
    let mut v = tests!(
        Area::Submit,
        base,
        [
            copy,
            copy_across_two_mappings,
            fill_writes_the_pattern_little_endian,
            write_value_of_4_bytes_leaves_its_neighbours,
            write_value_of_8_bytes,
            timestamps_are_in_the_job_window_and_monotonic,
            barrier_orders_the_commands_of_a_job,
            reduce_sum_f32,
            reduce_min_max_f32,
            reduce_min_max_i32_is_signed,
            reduce_min_max_u32_is_unsigned,
            reduce_sum_of_integers_wraps,
            reduce_min_max_u64,
            wait_value_is_released_by_a_host_write,
            wait_value_timeout_fails_the_job_without_a_ban,
            sequence_numbers_start_at_1_and_increase,
            an_empty_job_signals,
            a_job_waits_for_another_queues_job,
            a_job_waits_for_another_contexts_job,
            a_failed_dependency_propagates_and_the_job_does_not_run,
            a_full_queue_is_eagain_and_block_waits_for_room,
            queue_create_unknown_class_is_einval,
            queue_create_unknown_priority_is_einval,
            queue_create_depth_over_max_is_e2big,
            queue_create_bad_timeout_is_einval,
            queue_create_unknown_context_is_enoent,
            context_destroy_with_a_queue_is_ebusy,
            queue_destroy_twice_is_enoent,
            submit_to_an_unknown_queue_is_enoent,
            submit_unknown_chunk_kind_is_einval,
            submit_unknown_chunk_bo_is_enoent,
            submit_bad_chunk_range_is_einval,
            submit_unknown_opcode_is_einval,
            submit_wrong_command_length_is_einval,
            submit_truncated_command_is_einval,
            submit_header_flags_are_einval,
            submit_overlapping_copy_is_einval,
            submit_native_chunk_needs_native_cs,
            submit_wait_on_a_fenceless_binary_is_einval,
            submit_signal_listed_twice_is_einval,
            submit_point_on_a_binary_syncobj_is_einval,
            a_failed_submit_installs_nothing,
        ]
    );
    v.extend(tests!(
        Area::Submit,
        base.union(Caps::SYNCOBJ_TIMELINE),
        [jobs_of_a_queue_run_in_fifo_order, submit_timeline_point_must_increase,]
    ));
    v.extend(tests!(
        Area::Submit,
        base.union(Caps::CONTEXT_QUERY),
        [
            an_unmapped_read_faults_and_is_reported,
            a_write_to_a_read_only_mapping_faults,
            a_hung_job_bans_its_context_and_the_device_keeps_working,
        ]
    ));
    v
}

const RW: VmBindFlags = VmBindFlags::READ.union(VmBindFlags::WRITE);

/// The absolute deadline of every wait that should succeed.
fn deadline() -> i64 {
    accel::deadline_in(Duration::from_secs(5))
}

/// `job status -5 (EIO)`.
fn status_text(status: i32) -> String {
    match Errno::new(-status) {
        Some(e) => format!("job status {status} ({e:?})"),
        None => format!("job status {status}"),
    }
}

/// Wait for a job's syncobj and return its fence status.
fn finish(s: &Syncobj) -> Result<i32, String> {
    s.wait(0, deadline()).ctx("SYNCOBJ_WAIT")?;
    Ok(s.query().ctx("SYNCOBJ_QUERY")?.1)
}

/// The job signalling `s` must complete with status 0.
fn succeeds(s: &Syncobj) -> Result<(), String> {
    let st = finish(s)?;
    ensure!(st == 0, "{}", status_text(st));
    Ok(())
}

/// The job signalling `s` must fail with `errno`.
fn fails_with(s: &Syncobj, errno: Errno) -> Result<(), String> {
    let st = finish(s)?;
    ensure!(st == -errno.raw(), "{}, expected -{} ({errno:?})", status_text(st), errno.raw());
    Ok(())
}

/// The engine class portable jobs run on: compute if the device has one, else copy.
fn engine(dev: &Device) -> Result<EngineClass, String> {
    let e = dev.engines().ctx("ENGINES")?;
    [EngineClass::Compute, EngineClass::Copy]
        .into_iter()
        .find(|c| e.iter().any(|x| x.engine_class == u32::from(*c) && x.count > 0))
        .ok_or_else(|| "no compute or copy engine".to_string())
}

/// A context with a zeroed CPU-visible BO mapped read-write at the first VA.
struct Space {
    ctx: Context,
    bo: Bo,
    map: Mapping,
    va: u64,
}

impl Space {
    fn new(dev: &Device, size: u64) -> Result<Space, String> {
        let (va, page) = va_base(dev)?;
        let ctx = dev.create_context().ctx("CONTEXT_CREATE")?;
        let bo = dev.create_bo(size.next_multiple_of(page), cpu_region(dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
        ctx.map(&bo, 0, va, bo.size(), RW).ctx("VM_BIND")?;
        let map = bo.map().ctx("mmap")?;
        Ok(Space { ctx, bo, map, va })
    }

    fn queue(&self) -> Result<Queue, String> {
        self.ctx.create_queue(engine(self.ctx.device())?).ctx("QUEUE_CREATE")
    }

    /// The first VA past the BO's mapping (unmapped).
    fn end(&self) -> u64 {
        self.va + self.bo.size()
    }

    /// Run `cmds` on a new queue and wait: the fence status.
    fn run(&self, cmds: &Commands) -> Result<i32, String> {
        finish(&self.queue()?.run(cmds).ctx("SUBMIT")?)
    }

    /// Run `cmds` on a new queue; it must succeed.
    fn run_ok(&self, cmds: &Commands) -> Result<(), String> {
        let st = self.run(cmds)?;
        ensure!(st == 0, "{}", status_text(st));
        Ok(())
    }

    fn read(&self, off: u64, n: usize) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; n];
        self.map.read(off as usize, &mut b).ctx("read through the mapping")?;
        Ok(b)
    }

    fn read_u64(&self, off: u64) -> Result<u64, String> {
        self.map.read_u64(off as usize).ctx("read through the mapping")
    }

    fn write(&self, off: u64, b: &[u8]) -> Result<(), String> {
        self.map.write(off as usize, b).ctx("write through the mapping")
    }
}

/// A zeroed CPU-visible BO of one VA page (mappable next to a [`Space`]).
fn page_bo(dev: &Device) -> Result<Bo, String> {
    let (_, page) = va_base(dev)?;
    dev.create_bo(page, cpu_region(dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")
}

/// A CPU-visible BO holding `streams` back to back, and each stream's (offset, size).
fn load(dev: &Device, streams: &[&Commands]) -> Result<(Bo, Vec<(u64, u64)>), String> {
    let total: usize = streams.iter().map(|s| s.len()).sum();
    let bo = dev.create_bo(total.max(8) as u64, cpu_region(dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    let map = bo.map().ctx("mmap")?;
    let (mut off, mut at) = (0usize, Vec::new());
    for s in streams {
        map.write(off, s.bytes()).ctx("write the commands")?;
        at.push((off as u64, s.len() as u64));
        off += s.len();
    }
    Ok((bo, at))
}

fn le32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le64(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn words32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn words64(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
}

// ------------------------------------------------------------ commands

fn copy(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 16384)?;
    let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    sp.write(100, &src)?;
    // The first job of this test is the COPY itself.
    sp.run_ok(Commands::new().copy(sp.va + 100, sp.va + 8192, 5000))?;
    let got = sp.read(8192, 5000)?;
    if let Some(i) = (0..5000).find(|i| got[*i] != src[*i]) {
        return Err(format!("byte {i} of the copy is {:#04x}, want {:#04x}", got[i], src[i]));
    }
    ensure!(sp.read(8192 + 5000, 8)? == [0; 8], "the COPY wrote past its end");
    Ok(())
}

fn copy_across_two_mappings(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let second = page_bo(&env.dev)?;
    sp.ctx.map(&second, 0, sp.end(), second.size(), RW).ctx("VM_BIND the second BO adjacent")?;
    let src: Vec<u8> = (0..256u32).map(|i| (255 - i) as u8).collect();
    let seam = sp.bo.size() - 128;
    sp.write(seam, &src[..128])?;
    second.map().ctx("mmap")?.write(0, &src[128..]).ctx("write")?;
    // 256 bytes straddling the seam of the two mappings, copied to the start of the first.
    sp.run_ok(Commands::new().copy(sp.va + seam, sp.va, 256))?;
    ensure!(sp.read(0, 256)? == src, "the copy across two mappings is wrong");
    Ok(())
}

fn fill_writes_the_pattern_little_endian(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    sp.run_ok(Commands::new().fill(sp.va + 64, 100, 0xdeadbeef))?;
    let got = sp.read(0, 256)?;
    ensure!(got[..64].iter().all(|b| *b == 0), "bytes before the FILL changed");
    for (i, b) in got[64..164].iter().enumerate() {
        ensure!(*b == [0xef, 0xbe, 0xad, 0xde][i % 4], "filled byte {i} is {b:#04x}");
    }
    ensure!(got[164..].iter().all(|b| *b == 0), "bytes past the FILL changed");
    Ok(())
}

fn write_value_of_4_bytes_leaves_its_neighbours(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    sp.write(0, &[0xaa; 16])?;
    sp.run_ok(Commands::new().write_value(sp.va + 4, 0xcafe_f00d, 4))?;
    let got = sp.read(0, 16)?;
    ensure!(got[4..8] == 0xcafe_f00du32.to_le_bytes(), "stored {:02x?}", &got[4..8]);
    ensure!(got[..4] == [0xaa; 4] && got[8..] == [0xaa; 8], "neighbours changed: {got:02x?}");
    Ok(())
}

fn write_value_of_8_bytes(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    sp.run_ok(Commands::new().write_value(sp.va + 8, 0x1122_3344_5566_7788, 8))?;
    ensure!(sp.read(8, 8)? == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], "not stored little-endian");
    ensure!(sp.read_u64(0)? == 0 && sp.read_u64(16)? == 0, "neighbours changed");
    Ok(())
}

fn timestamps_are_in_the_job_window_and_monotonic(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let q = sp.queue()?;
    let before = accel::monotonic_ns() as u64;
    succeeds(&q.run(Commands::new().timestamp(sp.va).barrier().timestamp(sp.va + 8)).ctx("SUBMIT")?)?;
    succeeds(&q.run(Commands::new().timestamp(sp.va + 16)).ctx("SUBMIT")?)?;
    let after = accel::monotonic_ns() as u64;
    let t = [sp.read_u64(0)?, sp.read_u64(8)?, sp.read_u64(16)?];
    ensure!(before <= t[0] && t[2] <= after, "timestamps {t:?} outside [{before}, {after}]");
    ensure!(t[0] <= t[1] && t[1] <= t[2], "timestamps {t:?} go backwards");
    Ok(())
}

fn barrier_orders_the_commands_of_a_job(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let mut c = Commands::new();
    c.write_value(sp.va, 0x77, 8).barrier().copy(sp.va, sp.va + 8, 8).barrier().write_value(sp.va, 0x88, 8);
    sp.run_ok(&c)?;
    ensure!(sp.read_u64(8)? == 0x77, "the COPY did not see the write before the barrier: {:#x}", sp.read_u64(8)?);
    ensure!(sp.read_u64(0)? == 0x88, "the last write is missing");
    Ok(())
}

/// `dst = op(dst, src)` over `n` elements: returns the bytes of `dst` afterwards.
fn reduce(env: &Env, op: ReduceOp, dtype: DType, dst: &[u8], src: &[u8], n: u64) -> Result<Vec<u8>, String> {
    let sp = Space::new(&env.dev, 4096)?;
    sp.write(0, dst)?;
    sp.write(1024, src)?;
    sp.run_ok(Commands::new().reduce(sp.va + 1024, sp.va, n, op, dtype))?;
    let out = sp.read(0, dst.len() + 8)?;
    ensure!(out[dst.len()..] == [0; 8], "REDUCE {op:?} {dtype:?} wrote past its {n} elements");
    ensure!(sp.read(1024, src.len())? == src, "REDUCE changed its source");
    Ok(out[..dst.len()].to_vec())
}

fn f32s(v: &[f32]) -> Vec<u8> {
    le32(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
}

fn reduce_sum_f32(env: &Env) -> Result<(), String> {
    let (a, b) = ([1.5f32, -2.0, 8.0, 0.1], [0.25f32, -3.0, 9.5, 0.2]);
    let got = reduce(env, ReduceOp::Sum, DType::F32, &f32s(&a), &f32s(&b), 4)?;
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    ensure!(got == f32s(&want), "sum {:?}, want {want:?}", words32(&got));
    Ok(())
}

fn reduce_min_max_f32(env: &Env) -> Result<(), String> {
    let (a, b) = ([1.5f32, -2.0, 8.0], [0.25f32, -3.0, 9.5]);
    let min = reduce(env, ReduceOp::Min, DType::F32, &f32s(&a), &f32s(&b), 3)?;
    ensure!(min == f32s(&[0.25, -3.0, 8.0]), "min {:?}", words32(&min));
    let max = reduce(env, ReduceOp::Max, DType::F32, &f32s(&a), &f32s(&b), 3)?;
    ensure!(max == f32s(&[1.5, -2.0, 9.5]), "max {:?}", words32(&max));
    Ok(())
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn reduce_min_max_i32_is_signed(env: &Env) -> Result<(), String> {
    let (a, b) = ([-5i32, 7, i32::MIN], [3i32, -9, 0]);
    let min = reduce(env, ReduceOp::Min, DType::I32, &i32s(&a), &i32s(&b), 3)?;
    ensure!(min == i32s(&[-5, -9, i32::MIN]), "min {:?}", words32(&min));
    let max = reduce(env, ReduceOp::Max, DType::I32, &i32s(&a), &i32s(&b), 3)?;
    ensure!(max == i32s(&[3, 7, 0]), "max {:?}", words32(&max));
    Ok(())
}

fn reduce_min_max_u32_is_unsigned(env: &Env) -> Result<(), String> {
    // The same bits as the i32 test: unsigned comparison gives the other answer.
    let (a, b) = ([-5i32 as u32, 7], [3u32, -9i32 as u32]);
    let min = reduce(env, ReduceOp::Min, DType::U32, &le32(&a), &le32(&b), 2)?;
    ensure!(min == le32(&[3, 7]), "min {:?}", words32(&min));
    let max = reduce(env, ReduceOp::Max, DType::U32, &le32(&a), &le32(&b), 2)?;
    ensure!(max == le32(&[-5i32 as u32, -9i32 as u32]), "max {:?}", words32(&max));
    Ok(())
}

fn reduce_sum_of_integers_wraps(env: &Env) -> Result<(), String> {
    let i = reduce(env, ReduceOp::Sum, DType::I32, &i32s(&[i32::MAX, -5]), &i32s(&[1, -7]), 2)?;
    ensure!(i == i32s(&[i32::MIN, -12]), "i32 sum {:?}", words32(&i));
    let u = reduce(env, ReduceOp::Sum, DType::U32, &le32(&[u32::MAX, 40]), &le32(&[2, 2]), 2)?;
    ensure!(u == le32(&[1, 42]), "u32 sum {:?}", words32(&u));
    let w = reduce(env, ReduceOp::Sum, DType::U64, &le64(&[u64::MAX, 1 << 40]), &le64(&[3, 5]), 2)?;
    ensure!(w == le64(&[2, (1 << 40) + 5]), "u64 sum {:?}", words64(&w));
    Ok(())
}

fn reduce_min_max_u64(env: &Env) -> Result<(), String> {
    let (a, b) = ([u64::MAX, 3, 1 << 33], [2u64, 10, 1 << 32]);
    let min = reduce(env, ReduceOp::Min, DType::U64, &le64(&a), &le64(&b), 3)?;
    ensure!(min == le64(&[2, 3, 1 << 32]), "min {:?}", words64(&min));
    let max = reduce(env, ReduceOp::Max, DType::U64, &le64(&a), &le64(&b), 3)?;
    ensure!(max == le64(&[u64::MAX, 10, 1 << 33]), "max {:?}", words64(&max));
    Ok(())
}

// ------------------------------------------------------------ waits, ordering, dependencies

fn gate(sp: &Space, off: u64) -> Commands {
    let mut c = Commands::new();
    c.wait_value(sp.va + off, CmpOp::Eq, 1, !0, 8, 5_000_000_000);
    c
}

fn wait_value_is_released_by_a_host_write(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let mut c = Commands::new();
    c.wait_value(sp.va, CmpOp::Ge, 7, !0, 8, 5_000_000_000).write_value(sp.va + 8, 1, 8);
    let s = sp.queue()?.run(&c).ctx("SUBMIT")?;
    expect_errno(s.wait(0, accel::deadline_in(Duration::from_millis(30))), Errno::ETIMEDOUT, "the job is stalled")?;
    sp.write(0, &6u64.to_le_bytes())?;
    expect_errno(s.wait(0, accel::deadline_in(Duration::from_millis(20))), Errno::ETIMEDOUT, "6 < 7: still stalled")?;
    ensure!(sp.read_u64(8)? == 0, "the command after the WAIT_VALUE ran early");
    sp.write(0, &7u64.to_le_bytes())?;
    succeeds(&s)?;
    ensure!(sp.read_u64(8)? == 1, "the command after the WAIT_VALUE did not run");
    Ok(())
}

fn wait_value_timeout_fails_the_job_without_a_ban(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let q = sp.queue()?;
    let mut c = Commands::new();
    c.wait_value(sp.va, CmpOp::Eq, 1, !0, 8, 10_000_000).write_value(sp.va + 8, 1, 8);
    fails_with(&q.run(&c).ctx("SUBMIT")?, Errno::ETIMEDOUT)?;
    ensure!(sp.read_u64(8)? == 0, "the job went on after its WAIT_VALUE timed out");
    succeeds(&q.run(Commands::new().write_value(sp.va + 16, 2, 8)).ctx("SUBMIT after the timeout")?)?;
    ensure!(sp.read_u64(16)? == 2, "the later job did not run");
    Ok(())
}

fn sequence_numbers_start_at_1_and_increase(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let q = sp.queue()?;
    let (bo, at) = load(&env.dev, &[Commands::new().barrier()])?;
    let a = q.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1)).ctx("SUBMIT")?;
    let b = q.submit(&Submit::new()).ctx("SUBMIT")?;
    let c = q.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1)).ctx("SUBMIT")?;
    ensure!(a >= 1 && a < b && b < c && c != u64::MAX, "seqnos {a} {b} {c}");
    Ok(())
}

fn an_empty_job_signals(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    let seq = sp.queue()?.submit(&Submit::new().signal(&s, 0)).ctx("SUBMIT with no chunks")?;
    ensure!(seq >= 1, "seqno {seq}");
    succeeds(&s)?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (1, 0), "not signalled");
    Ok(())
}

/// q1 of `x`: wait for the host to write 1 at +64, then write 5 at +0. Returns its syncobj.
fn gated_writer(x: &Space, q1: &Queue) -> Result<Syncobj, String> {
    let mut c = gate(x, 64);
    c.write_value(x.va, 5, 8);
    q1.run(&c).ctx("SUBMIT")
}

fn a_job_waits_for_another_queues_job(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let (q1, q2) = (sp.queue()?, sp.queue()?);
    let s1 = gated_writer(&sp, &q1)?;
    let (bo, at) = load(&env.dev, &[Commands::new().copy(sp.va, sp.va + 8, 8)])?;
    let s2 = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    q2.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1).wait(&s1, 0).signal(&s2, 0)).ctx("SUBMIT")?;
    std::thread::sleep(Duration::from_millis(20));
    ensure!(s2.query().ctx("SYNCOBJ_QUERY")?.0 == 0, "q2's job completed before its dependency");
    sp.write(64, &1u64.to_le_bytes())?;
    succeeds(&s2)?;
    ensure!(sp.read_u64(8)? == 5, "q2's job ran before q1's: copied {}", sp.read_u64(8)?);
    Ok(())
}

fn a_job_waits_for_another_contexts_job(env: &Env) -> Result<(), String> {
    let x = Space::new(&env.dev, 4096)?;
    let y = Space::new(&env.dev, 4096)?;
    let s1 = gated_writer(&x, &x.queue()?)?;
    let (bo, at) = load(&env.dev, &[Commands::new().write_value(y.va, 9, 8)])?;
    let s2 = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    y.queue()?.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1).wait(&s1, 0).signal(&s2, 0)).ctx("SUBMIT")?;
    std::thread::sleep(Duration::from_millis(20));
    ensure!(y.read_u64(0)? == 0, "the other context's job ran before its dependency");
    x.write(64, &1u64.to_le_bytes())?;
    succeeds(&s2)?;
    ensure!((x.read_u64(0)?, y.read_u64(0)?) == (5, 9), "writes {} {}", x.read_u64(0)?, y.read_u64(0)?);
    Ok(())
}

fn a_failed_dependency_propagates_and_the_job_does_not_run(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let s1 = sp.queue()?.run(Commands::new().write_value(sp.end(), 1, 8)).ctx("SUBMIT")?;
    let (bo, at) = load(&env.dev, &[Commands::new().write_value(sp.va, 1, 8)])?;
    let s2 = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    sp.queue()?.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1).wait(&s1, 0).signal(&s2, 0)).ctx("SUBMIT")?;
    fails_with(&s1, Errno::EFAULT)?;
    fails_with(&s2, Errno::EFAULT)?;
    ensure!(sp.read_u64(0)? == 0, "the dependent job ran");
    Ok(())
}

fn a_full_queue_is_eagain_and_block_waits_for_room(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let q = sp.ctx.create_queue_with(engine(&env.dev)?, Priority::Normal, 2, None).ctx("QUEUE_CREATE depth 2")?;
    let (bo, at) = load(&env.dev, &[&gate(&sp, 0)])?;
    let job = || Submit::new().chunk(&bo, at[0].0, at[0].1);
    let (a, b) = (q.submit(&job()).ctx("SUBMIT 1")?, q.submit(&job()).ctx("SUBMIT 2")?);
    expect_errno(q.submit(&job()), Errno::EAGAIN, "a third job on a full queue of depth 2")?;
    let done = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    let start = std::time::Instant::now();
    let (c, opened) = std::thread::scope(|s| {
        let opener = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            sp.write(0, &1u64.to_le_bytes())
        });
        (q.submit(&job().signal(&done, 0).block(true)), opener.join())
    });
    opened.map_err(|_| "the gate thread panicked".to_string())??;
    let c = c.ctx("SUBMIT with BLOCK")?;
    ensure!(start.elapsed() >= Duration::from_millis(40), "BLOCK returned before there was room");
    ensure!(a < b && b < c, "seqnos {a} {b} {c}");
    succeeds(&done)
}

fn jobs_of_a_queue_run_in_fifo_order(env: &Env) -> Result<(), String> {
    const N: u64 = 200;
    let sp = Space::new(&env.dev, 4096)?;
    let q = sp.queue()?;
    let t = env.dev.create_syncobj(true, false).ctx("SYNCOBJ_CREATE timeline")?;
    let streams: Vec<Commands> = (1..=N)
        .map(|n| {
            let mut c = Commands::new();
            c.write_value(sp.va + 8 * n, n, 8).write_value(sp.va, n, 8);
            c
        })
        .collect();
    let (bo, at) = load(&env.dev, &streams.iter().collect::<Vec<_>>())?;
    for (n, (off, len)) in (1..=N).zip(at) {
        q.submit(&Submit::new().chunk(&bo, off, len).signal(&t, n).block(true)).ctx("SUBMIT")?;
    }
    let (mut last, end) = (0, std::time::Instant::now() + Duration::from_secs(5));
    while last < N && std::time::Instant::now() < end {
        let (p, st) = t.query().ctx("SYNCOBJ_QUERY")?;
        let counter = sp.read_u64(0)?;
        ensure!(st == 0 && p >= last, "point went from {last} to {p} ({})", status_text(st));
        ensure!(counter >= p, "point {p} retired but the last job run wrote {counter}");
        last = p;
        std::thread::sleep(Duration::from_micros(200));
    }
    ensure!(last == N, "only point {last} of {N} retired");
    ensure!(sp.read_u64(0)? == N, "the last value is {}, not the last job's", sp.read_u64(0)?);
    let log = words64(&sp.read(8, 8 * N as usize)?);
    ensure!(log.iter().zip(1..).all(|(v, n)| *v == n), "a job did not run");
    Ok(())
}

// ------------------------------------------------------------ faults and hangs

fn an_unmapped_read_faults_and_is_reported(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let (bo, at) = load(&env.dev, &[Commands::new().copy(sp.end() + 8, sp.va, 8)])?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    let seq = sp.queue()?.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1).signal(&s, 0)).ctx("SUBMIT")?;
    fails_with(&s, Errno::EFAULT)?;
    let cq = sp.ctx.query().ctx("CONTEXT_QUERY")?;
    ensure!(cq.status == sys::ACCEL_CONTEXT_FAULTED, "status {:#x}, want FAULTED only", cq.status);
    ensure!(cq.fault_addr == sp.end() + 8, "fault_addr {:#x}, want {:#x}", cq.fault_addr, sp.end() + 8);
    ensure!(cq.fault_access == sys::ACCEL_FAULT_READ, "fault_access {}", cq.fault_access);
    ensure!(cq.fault_seqno == seq, "fault_seqno {}, the job was {seq}", cq.fault_seqno);
    ensure!(cq.ban_errno == 0, "a page fault banned the context ({})", cq.ban_errno);
    Ok(())
}

fn a_write_to_a_read_only_mapping_faults(env: &Env) -> Result<(), String> {
    let sp = Space::new(&env.dev, 4096)?;
    let ro = page_bo(&env.dev)?;
    ro.map().ctx("mmap")?.write_u64(0, 0x4242).ctx("write")?;
    let at = sp.end();
    sp.ctx.map(&ro, 0, at, ro.size(), VmBindFlags::READ).ctx("VM_BIND read-only")?;
    sp.run_ok(Commands::new().copy(at, sp.va, 8))?;
    ensure!(sp.read_u64(0)? == 0x4242, "reading the read-only mapping failed");
    ensure!(sp.run(Commands::new().write_value(at + 8, 1, 8))? == -Errno::EFAULT.raw(), "the write did not fault");
    let cq = sp.ctx.query().ctx("CONTEXT_QUERY")?;
    ensure!(cq.status & sys::ACCEL_CONTEXT_FAULTED != 0, "context not FAULTED");
    ensure!(
        (cq.fault_addr, cq.fault_access) == (at + 8, sys::ACCEL_FAULT_WRITE),
        "fault {:#x} access {}",
        cq.fault_addr,
        cq.fault_access
    );
    ensure!(ro.map().ctx("mmap")?.read_u64(8).ctx("read")? == 0, "the read-only BO was written");
    Ok(())
}

fn a_hung_job_bans_its_context_and_the_device_keeps_working(env: &Env) -> Result<(), String> {
    let (sp, other) = (Space::new(&env.dev, 4096)?, Space::new(&env.dev, 4096)?);
    let q = sp.ctx.create_queue_with(engine(&env.dev)?, Priority::Normal, 0, Some(50_000_000)).ctx("QUEUE_CREATE")?;
    let mut hang = Commands::new();
    hang.wait_value(sp.va, CmpOp::Eq, 1, !0, 8, 0); // never satisfied, no own timeout
    let (bo, at) = load(&env.dev, &[&hang, Commands::new().write_value(sp.va + 8, 2, 8)])?;
    let (s1, s2) =
        (env.dev.create_syncobj(false, false).ctx("SYNCOBJ")?, env.dev.create_syncobj(false, false).ctx("SYNCOBJ")?);
    q.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1).signal(&s1, 0)).ctx("SUBMIT the hang")?;
    q.submit(&Submit::new().chunk(&bo, at[1].0, at[1].1).signal(&s2, 0)).ctx("SUBMIT behind it")?;
    fails_with(&s1, Errno::ETIMEDOUT)?;
    succeeds(&s2)?;
    ensure!(sp.read_u64(8)? == 2, "the job behind the hung one did not run");
    let cq = sp.ctx.query().ctx("CONTEXT_QUERY")?;
    ensure!(cq.status & sys::ACCEL_CONTEXT_BANNED != 0, "context not BANNED (status {:#x})", cq.status);
    ensure!(cq.ban_errno == Errno::ETIMEDOUT.raw() as u32, "ban_errno {}", cq.ban_errno);
    expect_errno(q.submit(&Submit::new()), Errno::EIO, "SUBMIT on a banned context")?;
    other.run_ok(Commands::new().write_value(other.va, 3, 8))?;
    ensure!(other.read_u64(0)? == 3, "another context's job did not run");
    Ok(())
}

// ------------------------------------------------------------ QUEUE_CREATE validation

/// A raw QUEUE_CREATE; a queue it creates is destroyed again.
fn queue_create(ctx_id: u32, dev: &Device, class: u32, priority: u32) -> accel::Result<()> {
    let mut a = sys::accel_queue_create { ctx_id, engine_class: class, priority, ..Default::default() };
    dev.ioctl("QUEUE_CREATE", sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a)?;
    let mut d = sys::accel_queue_destroy { queue_id: a.queue_id, pad: 0 };
    dev.ioctl("QUEUE_DESTROY", sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d)
}

fn queue_create_unknown_class_is_einval(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let class = u32::from(engine(&env.dev)?);
    queue_create(ctx.id().get(), &env.dev, class, sys::ACCEL_PRIORITY_NORMAL).ctx("a known class")?;
    expect_errno(queue_create(ctx.id().get(), &env.dev, 7, sys::ACCEL_PRIORITY_NORMAL), Errno::EINVAL, "class 7")
}

fn queue_create_unknown_priority_is_einval(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let class = u32::from(engine(&env.dev)?);
    queue_create(ctx.id().get(), &env.dev, class, sys::ACCEL_PRIORITY_HIGH).ctx("priority HIGH")?;
    expect_errno(queue_create(ctx.id().get(), &env.dev, class, 9), Errno::EINVAL, "priority 9")
}

fn queue_create_depth_over_max_is_e2big(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let (class, max) = (engine(&env.dev)?, env.dev.limits().ctx("LIMITS")?.max_queue_depth);
    drop(ctx.create_queue_with(class, Priority::Normal, max, None).ctx("depth = max_queue_depth")?);
    let Some(over) = max.checked_add(1) else { return Ok(()) };
    expect_errno(ctx.create_queue_with(class, Priority::Normal, over, None), Errno::E2BIG, "depth max + 1")
}

fn queue_create_bad_timeout_is_einval(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let (class, default) = (engine(&env.dev)?, env.dev.limits().ctx("LIMITS")?.default_job_timeout_ns);
    drop(ctx.create_queue_with(class, Priority::Normal, 0, Some(default / 2)).ctx("half the default timeout")?);
    expect_errno(ctx.create_queue_with(class, Priority::Normal, 0, Some(0)), Errno::EINVAL, "timeout 0")?;
    let above = ctx.create_queue_with(class, Priority::Normal, 0, Some(default + 1));
    expect_errno(above, Errno::EINVAL, "timeout above default_job_timeout_ns")
}

fn queue_create_unknown_context_is_enoent(env: &Env) -> Result<(), String> {
    let class = u32::from(engine(&env.dev)?);
    let stale = env.dev.create_context().ctx("CONTEXT_CREATE")?.id().get(); // destroyed at once
    expect_errno(queue_create(stale, &env.dev, class, sys::ACCEL_PRIORITY_NORMAL), Errno::ENOENT, "a destroyed context")
}

fn context_destroy(dev: &Device, ctx_id: u32) -> accel::Result<()> {
    let mut d = sys::accel_context_destroy { ctx_id, pad: 0 };
    dev.ioctl("CONTEXT_DESTROY", sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut d)
}

fn context_destroy_with_a_queue_is_ebusy(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let q = ctx.create_queue(engine(&env.dev)?).ctx("QUEUE_CREATE")?;
    expect_errno(context_destroy(&env.dev, ctx.id().get()), Errno::EBUSY, "CONTEXT_DESTROY with a queue")?;
    drop(q);
    context_destroy(&env.dev, ctx.id().get()).ctx("CONTEXT_DESTROY once the queue is gone")
}

fn queue_destroy_twice_is_enoent(env: &Env) -> Result<(), String> {
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let class = u32::from(engine(&env.dev)?);
    let mut a =
        sys::accel_queue_create { ctx_id: ctx.id().get(), engine_class: class, priority: 1, ..Default::default() };
    env.dev.ioctl("QUEUE_CREATE", sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a).ctx("QUEUE_CREATE")?;
    let mut d = sys::accel_queue_destroy { queue_id: a.queue_id, pad: 0 };
    env.dev.ioctl("QUEUE_DESTROY", sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d).ctx("QUEUE_DESTROY")?;
    expect_errno(
        env.dev.ioctl("QUEUE_DESTROY", sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d),
        Errno::ENOENT,
        "second QUEUE_DESTROY",
    )
}

// ------------------------------------------------------------ SUBMIT validation

/// A space, a queue, and a valid chunk writing 1 at +0 (in `bo`).
struct Bench {
    sp: Space,
    q: Queue,
    bo: Bo,
    good: sys::accel_chunk,
}

impl Bench {
    fn new(env: &Env) -> Result<Bench, String> {
        let sp = Space::new(&env.dev, 4096)?;
        let q = sp.queue()?;
        let (bo, at) = load(&env.dev, &[Commands::new().write_value(sp.va, 1, 8)])?;
        let good = sys::accel_chunk { handle: bo.handle().get(), offset: at[0].0, size: at[0].1, ..Default::default() };
        Ok(Bench { sp, q, bo, good })
    }

    fn submit(&self, c: sys::accel_chunk) -> accel::Result<u64> {
        self.q.submit(&Submit::new().raw_chunk(c))
    }

    /// `stream` (raw bytes) must be rejected with EINVAL, and nothing of it may run.
    fn rejects(&self, env: &Env, stream: &Commands, what: &str) -> Result<(), String> {
        let mut c = Commands::new();
        c.write_value(self.sp.va + 8, 1, 8).raw(stream.bytes()); // a valid command first
        let (bo, at) = load(&env.dev, &[&c])?;
        expect_errno(self.q.submit(&Submit::new().chunk(&bo, at[0].0, at[0].1)), Errno::EINVAL, what)?;
        succeeds(&self.q.run(&Commands::new()).ctx("a later job")?)?;
        ensure!(self.sp.read_u64(8)? == 0, "{what}: part of the rejected stream ran");
        Ok(())
    }
}

fn submit_to_an_unknown_queue_is_enoent(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let stale = b.sp.queue()?.id().get(); // destroyed at once
    let chunks = [b.good];
    let mut a =
        sys::accel_submit { queue_id: stale, num_chunks: 1, chunks_ptr: chunks.as_ptr() as u64, ..Default::default() };
    expect_errno(env.dev.ioctl("SUBMIT", sys::ACCEL_IOCTL_SUBMIT, &mut a), Errno::ENOENT, "a destroyed queue")
}

fn submit_unknown_chunk_kind_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    expect_errno(b.submit(sys::accel_chunk { kind: 5, ..b.good }), Errno::EINVAL, "chunk kind 5")?;
    b.submit(b.good).ctx("the same chunk as PORTABLE")?;
    Ok(())
}

fn submit_unknown_chunk_bo_is_enoent(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let stale = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?.handle().get();
    expect_errno(b.submit(sys::accel_chunk { handle: stale, ..b.good }), Errno::ENOENT, "a closed chunk BO")
}

fn submit_bad_chunk_range_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let (g, size) = (b.good, b.bo.size());
    expect_errno(b.submit(sys::accel_chunk { offset: 4, ..g }), Errno::EINVAL, "offset 4")?;
    expect_errno(b.submit(sys::accel_chunk { size: 12, ..g }), Errno::EINVAL, "size 12")?;
    expect_errno(b.submit(sys::accel_chunk { size: 0, ..g }), Errno::EINVAL, "size 0")?;
    expect_errno(b.submit(sys::accel_chunk { offset: size - 16, ..g }), Errno::EINVAL, "past the end of the BO")?;
    expect_errno(b.submit(sys::accel_chunk { flags: 1, ..g }), Errno::EINVAL, "chunk flags 1")?;
    Ok(())
}

/// A command header.
fn header(opcode: u16, flags: u16, length: u32) -> Vec<u8> {
    let mut h = opcode.to_le_bytes().to_vec();
    h.extend(flags.to_le_bytes());
    h.extend(length.to_le_bytes());
    h
}

fn submit_unknown_opcode_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    b.rejects(env, Commands::new().raw(&header(0x7f, 0, 8)), "opcode 0x7f")?;
    b.rejects(env, Commands::new().raw(&header(0, 0, 8)), "opcode 0")
}

fn submit_wrong_command_length_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    b.rejects(
        env,
        Commands::new().raw(&header(sys::ACCEL_CMD_BARRIER as u16, 0, 16)).raw(&[0; 8]),
        "BARRIER length 16",
    )?;
    let mut wv = Commands::new();
    wv.write_value(b.sp.va, 1, 8);
    let mut short = header(sys::ACCEL_CMD_WRITE_VALUE as u16, 0, 24);
    short.extend(&wv.bytes()[8..24]);
    b.rejects(env, Commands::new().raw(&short), "WRITE_VALUE length 24")
}

fn submit_truncated_command_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let mut c = Commands::new();
    c.copy(b.sp.va, b.sp.va + 64, 8);
    b.rejects(env, Commands::new().raw(&c.bytes()[..24]), "a COPY cut to 24 bytes")
}

fn submit_header_flags_are_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    b.rejects(env, Commands::new().raw(&header(sys::ACCEL_CMD_BARRIER as u16, 1, 8)), "BARRIER with flags 1")
}

fn submit_overlapping_copy_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    b.rejects(env, Commands::new().copy(b.sp.va + 64, b.sp.va + 72, 16), "COPY onto itself")
}

fn submit_native_chunk_needs_native_cs(env: &Env) -> Result<(), String> {
    if env.dev.caps().ctx("caps")?.contains(Caps::NATIVE_CS) {
        return Ok(()); // what a valid native chunk is, is the driver's business
    }
    let b = Bench::new(env)?;
    let r = b.submit(sys::accel_chunk { kind: sys::ACCEL_CHUNK_NATIVE, ..b.good });
    expect_errno(r, Errno::EOPNOTSUPP, "a native chunk without ACCEL_CAP_NATIVE_CS")
}

fn submit_wait_on_a_fenceless_binary_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    expect_errno(b.q.submit(&Submit::new().raw_chunk(b.good).wait(&s, 0)), Errno::EINVAL, "wait on no fence")?;
    s.signal().ctx("SYNCOBJ_SIGNAL")?;
    b.q.submit(&Submit::new().raw_chunk(b.good).wait(&s, 0)).ctx("wait on a signalled binary")?;
    Ok(())
}

fn submit_signal_listed_twice_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    let r = b.q.submit(&Submit::new().raw_chunk(b.good).signal(&s, 0).signal(&s, 0));
    expect_errno(r, Errno::EINVAL, "a syncobj twice in signals")
}

fn submit_point_on_a_binary_syncobj_is_einval(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let s = env.dev.create_syncobj(false, true).ctx("SYNCOBJ_CREATE")?;
    expect_errno(b.q.submit(&Submit::new().raw_chunk(b.good).signal(&s, 1)), Errno::EINVAL, "signal point 1")?;
    expect_errno(b.q.submit(&Submit::new().raw_chunk(b.good).wait(&s, 3)), Errno::EINVAL, "wait point 3")
}

fn submit_timeline_point_must_increase(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let t = env.dev.create_syncobj(true, false).ctx("SYNCOBJ_CREATE timeline")?;
    let sig = |p| b.q.submit(&Submit::new().raw_chunk(b.good).signal(&t, p));
    expect_errno(sig(0), Errno::EINVAL, "timeline point 0")?;
    sig(4).ctx("point 4")?;
    expect_errno(sig(4), Errno::EINVAL, "point 4 again")?;
    expect_errno(sig(3), Errno::EINVAL, "point 3 after 4")?;
    sig(5).ctx("point 5")?;
    t.wait(5, deadline()).ctx("SYNCOBJ_WAIT point 5")?;
    ensure!(t.query().ctx("SYNCOBJ_QUERY")? == (5, 0), "timeline at {:?}", t.query());
    Ok(())
}

fn a_failed_submit_installs_nothing(env: &Env) -> Result<(), String> {
    let b = Bench::new(env)?;
    let (s1, s2) =
        (env.dev.create_syncobj(false, false).ctx("SYNCOBJ")?, env.dev.create_syncobj(false, false).ctx("SYNCOBJ")?);
    let bad = sys::accel_chunk { size: 0, ..b.good };
    expect_errno(b.q.submit(&Submit::new().raw_chunk(bad).signal(&s1, 0).signal(&s2, 0)), Errno::EINVAL, "bad chunk")?;
    for s in [&s1, &s2] {
        ensure!(s.query().ctx("SYNCOBJ_QUERY")? == (0, 0), "a fence was installed: {:?}", s.query());
        let r = env.dev.wait(&[(s, 0)], true, false, 0);
        expect_errno(r, Errno::EINVAL, "the syncobj still has no fence")?;
    }
    succeeds(&b.q.run(&Commands::new()).ctx("a later job")?)?;
    ensure!(b.sp.read_u64(0)? == 0, "the rejected job ran");
    Ok(())
}
