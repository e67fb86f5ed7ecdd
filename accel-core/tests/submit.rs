//! Submission through the UAPI: portable commands byte for byte, ordering,
//! dependencies, timelines, waits, faults, hangs, fault injection, and one
//! negative test per SUBMIT/QUEUE validation (exact errno).

mod common;
use accel_uapi::{Errno, sys};
use common::*;
use std::thread;
use std::time::Duration;
use test_driver::MockConfig;

const A: u64 = VA_START;
const BIN: u32 = 0;
const TL: u32 = sys::ACCEL_SYNCOBJ_CREATE_TIMELINE;

fn run(sp: &Space, q: u32, stream: &[u8]) -> i32 {
    let s = syncobj(&sp.c, BIN).unwrap();
    submit(&sp.c, q, &[sp.chunk(0, stream)], &[], &[sync(s, 0)], 0).unwrap();
    finish(&sp.c, s)
}

// ------------------------------------------------------------ commands

#[test]
fn copy_fill_and_write_value_byte_for_byte() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 4);
    let q = sp.queue();
    let src: Vec<u8> = (0..6000u32).map(|i| (i * 7 + 3) as u8).collect();
    sp.map.write(100, &src).unwrap();
    let mut s = cmd::copy(A + 100, A + 8192, 6000);
    s.extend(cmd::fill(A + 16384 - 64, 64, 0xdeadbeef));
    s.extend(cmd::write(A + 16376, 0x1122334455667788, 8));
    s.extend(cmd::write(A + 16372, 0xcafef00d, 4));
    assert_eq!(run(&sp, q, &s), 0);
    assert_eq!(sp.read(8192, 6000), src, "COPY crosses a page boundary");
    assert_eq!(sp.read(16320, 8), [0xef, 0xbe, 0xad, 0xde, 0xef, 0xbe, 0xad, 0xde]);
    assert_eq!(sp.read(16372, 4), 0xcafef00du32.to_le_bytes());
    assert_eq!(sp.read_u64(16376), 0x1122334455667788);
}

#[test]
fn timestamp_and_barrier() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let before = accel_core::fence::monotonic_ns() as u64;
    let mut s = cmd::timestamp(A);
    s.extend(cmd::barrier());
    s.extend(cmd::timestamp(A + 8));
    assert_eq!(run(&sp, q, &s), 0);
    let after = accel_core::fence::monotonic_ns() as u64;
    let (t0, t1) = (sp.read_u64(0), sp.read_u64(8));
    assert!(before <= t0 && t0 <= t1 && t1 <= after, "{before} {t0} {t1} {after}");
}

#[test]
fn reduce_every_op_and_type() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 2);
    let q = sp.queue();
    let f: [f32; 3] = [1.5, -2.0, 8.0];
    let g: [f32; 3] = [0.25, -3.0, 9.5];
    let i: [i32; 3] = [i32::MAX, -5, 7];
    let j: [i32; 3] = [1, -9, 7];
    let u: [u64; 2] = [u64::MAX, 3];
    let v: [u64; 2] = [2, 10];
    let ops = [(sys::ACCEL_REDUCE_SUM, 0u64), (sys::ACCEL_REDUCE_MIN, 1), (sys::ACCEL_REDUCE_MAX, 2)];
    for (op, k) in ops {
        let base = k * 1024;
        let put = |off: u64, b: &[u8]| sp.map.write((base + off) as usize, b).unwrap();
        put(0, &f.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(64, &g.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(128, &i.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(192, &j.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(256, &u.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(320, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(384, &i.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect::<Vec<_>>());
        put(448, &j.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect::<Vec<_>>());
        let a = A + base;
        let mut s = cmd::reduce(a + 64, a, 3, op, sys::ACCEL_DTYPE_F32);
        s.extend(cmd::reduce(a + 192, a + 128, 3, op, sys::ACCEL_DTYPE_I32));
        s.extend(cmd::reduce(a + 320, a + 256, 2, op, sys::ACCEL_DTYPE_U64));
        s.extend(cmd::reduce(a + 448, a + 384, 3, op, sys::ACCEL_DTYPE_U32));
        assert_eq!(run(&sp, q, &s), 0);
        let rd = |off: u64, n: usize| sp.read(base + off, n);
        let fo: Vec<f32> = rd(0, 12).chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let io: Vec<i32> = rd(128, 12).chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        let uo: Vec<u64> = rd(256, 16).chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let wo: Vec<u32> = rd(384, 12).chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        let ff = |x: f32, y: f32| match op {
            sys::ACCEL_REDUCE_SUM => x + y,
            sys::ACCEL_REDUCE_MIN => x.min(y),
            _ => x.max(y),
        };
        assert_eq!(fo, (0..3).map(|n| ff(f[n], g[n])).collect::<Vec<_>>(), "f32 op {op}");
        let want_i: Vec<i32> = (0..3)
            .map(|n| match op {
                sys::ACCEL_REDUCE_SUM => i[n].wrapping_add(j[n]),
                sys::ACCEL_REDUCE_MIN => i[n].min(j[n]),
                _ => i[n].max(j[n]),
            })
            .collect();
        assert_eq!(io, want_i, "i32 op {op} (signed, wrapping)");
        let want_u: Vec<u64> = (0..2)
            .map(|n| match op {
                sys::ACCEL_REDUCE_SUM => u[n].wrapping_add(v[n]),
                sys::ACCEL_REDUCE_MIN => u[n].min(v[n]),
                _ => u[n].max(v[n]),
            })
            .collect();
        assert_eq!(uo, want_u, "u64 op {op}");
        let want_w: Vec<u32> = (0..3)
            .map(|n| {
                let (x, y) = (i[n] as u32, j[n] as u32);
                match op {
                    sys::ACCEL_REDUCE_SUM => x.wrapping_add(y),
                    sys::ACCEL_REDUCE_MIN => x.min(y),
                    _ => x.max(y),
                }
            })
            .collect();
        assert_eq!(wo, want_w, "u32 op {op} (unsigned)");
    }
}

#[test]
fn wait_value_waits_for_the_host() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let s = syncobj(&sp.c, BIN).unwrap();
    let mut st = cmd::wait(A, 7, sys::ACCEL_CMP_GE, 2_000_000_000);
    st.extend(cmd::write(A + 8, 1, 8));
    submit(&sp.c, q, &[sp.chunk(0, &st)], &[], &[sync(s, 0)], 0).unwrap();
    assert_eq!(wait(&sp.c, &[s], None, 0, in_ms(30)), Err(Errno::ETIMEDOUT));
    sp.map.write(0, &7u64.to_le_bytes()).unwrap();
    assert_eq!(finish(&sp.c, s), 0);
    assert_eq!(sp.read_u64(8), 1);
}

#[test]
fn wait_value_timeout_fails_the_job_with_etimedout_without_a_ban() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    assert_eq!(run(&sp, q, &cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 10_000_000)), -(Errno::ETIMEDOUT.raw()));
    assert_eq!(run(&sp, q, &cmd::write(A, 1, 8)), 0, "the context is not banned");
}

// ------------------------------------------------------------ ordering and dependencies

#[test]
fn jobs_of_a_queue_run_in_fifo_order() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let s = syncobj(&sp.c, TL).unwrap();
    let mut last = 0;
    for n in 1..=500u64 {
        // Each job appends n to a log at slot n and stores n at offset 0.
        let mut st = cmd::write(A + 8 * (n % 500 + 1), n, 8);
        st.extend(cmd::write(A, n, 8));
        let off = (n % 128) * 128;
        last = submit(&sp.c, q, &[sp.chunk(off, &st)], &[], &[sync(s, n)], sys::ACCEL_SUBMIT_BLOCK).unwrap();
    }
    assert!(last > 0 && last != u64::MAX);
    wait(&sp.c, &[s], Some(&[500]), 0, in_ms(5000)).unwrap();
    assert_eq!(sp.read_u64(0), 500, "the last job ran last");
    assert_eq!(query(&sp.c, &[s])[0], (500, 0));
}

#[test]
fn sequence_numbers_increase_and_are_never_0() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let a = submit(&sp.c, q, &[sp.chunk(0, &cmd::barrier())], &[], &[], 0).unwrap();
    let b = submit(&sp.c, q, &[sp.chunk(0, &cmd::barrier())], &[], &[], 0).unwrap();
    let c = submit(&sp.c, q, &[], &[], &[], 0).unwrap();
    assert_eq!((a, b, c), (1, 2, 3));
}

#[test]
fn a_dag_across_queues_and_contexts() {
    let rig = Rig::new();
    let x = Space::new(rig.open(), 1);
    let y = Space::new(x.c.clone(), 1);
    let (q1, q2, q3) = (x.queue(), x.queue(), y.queue());
    let (s1, s2, s3) = (syncobj(&x.c, BIN).unwrap(), syncobj(&x.c, BIN).unwrap(), syncobj(&x.c, BIN).unwrap());
    // q1: wait for the host, write 5.  q2: after s1, copy it.  q3 (other context): after s1 and s2, write 9.
    let mut st = cmd::wait(A + 64, 1, sys::ACCEL_CMP_EQ, 2_000_000_000);
    st.extend(cmd::write(A, 5, 8));
    submit(&x.c, q1, &[x.chunk(0, &st)], &[], &[sync(s1, 0)], 0).unwrap();
    submit(&x.c, q2, &[x.chunk(128, &cmd::copy(A, A + 8, 8))], &[sync(s1, 0)], &[sync(s2, 0)], 0).unwrap();
    submit(&y.c, q3, &[y.chunk(0, &cmd::write(A, 9, 8))], &[sync(s1, 0), sync(s2, 0)], &[sync(s3, 0)], 0).unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(query(&x.c, &[s1, s2, s3]).iter().map(|p| p.0).collect::<Vec<_>>(), [0, 0, 0], "all wait on the host");
    x.map.write(64, &1u64.to_le_bytes()).unwrap();
    assert_eq!(finish(&x.c, s3), 0);
    assert_eq!((x.read_u64(0), x.read_u64(8), y.read_u64(0)), (5, 5, 9));
}

#[test]
fn a_failed_dependency_propagates_its_error() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let (q1, q2) = (sp.queue(), sp.queue());
    let (s1, s2) = (syncobj(&sp.c, BIN).unwrap(), syncobj(&sp.c, BIN).unwrap());
    submit(&sp.c, q1, &[sp.chunk(0, &cmd::write(0x10, 1, 8))], &[], &[sync(s1, 0)], 0).unwrap();
    submit(&sp.c, q2, &[sp.chunk(64, &cmd::write(A, 1, 8))], &[sync(s1, 0)], &[sync(s2, 0)], 0).unwrap();
    assert_eq!(finish(&sp.c, s2), -(Errno::EFAULT.raw()));
    assert_eq!(sp.read_u64(0), 0, "the dependent job did not run");
}

// ------------------------------------------------------------ timelines and waits

#[test]
fn timeline_points_signalled_out_of_order_retire_in_order() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let (q1, q2) = (sp.queue(), sp.queue());
    let t = syncobj(&sp.c, TL).unwrap();
    submit(&sp.c, q1, &[sp.chunk(0, &cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 2_000_000_000))], &[], &[sync(t, 1)], 0)
        .unwrap();
    submit(&sp.c, q2, &[sp.chunk(64, &cmd::barrier())], &[], &[sync(t, 2)], 0).unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(query(&sp.c, &[t])[0].0, 0, "point 2 finished first but point 1 has not");
    assert_eq!(wait(&sp.c, &[t], Some(&[2]), 0, in_ms(10)), Err(Errno::ETIMEDOUT));
    sp.map.write(0, &1u64.to_le_bytes()).unwrap();
    wait(&sp.c, &[t], Some(&[2]), 0, in_ms(5000)).unwrap();
    assert_eq!(query(&sp.c, &[t])[0], (2, 0));
}

#[test]
fn waiting_for_a_future_point_needs_wait_for_submit() {
    let rig = Rig::new();
    let c = rig.open();
    let t = syncobj(&c, TL).unwrap();
    assert_eq!(wait(&c, &[t], Some(&[5]), 0, in_ms(1000)), Err(Errno::EINVAL));
    let c2 = c.clone();
    let w = thread::spawn(move || wait(&c2, &[t], Some(&[5]), sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, in_ms(5000)));
    thread::sleep(Duration::from_millis(20));
    let (h, p) = ([t], [5u64]);
    let mut a = sys::accel_syncobj_timeline_array {
        handles_ptr: h.as_ptr() as u64,
        points_ptr: p.as_ptr() as u64,
        count: 1,
        flags: 0,
    };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut a).unwrap();
    assert_eq!(w.join().unwrap(), Ok(0));
    assert_eq!(query(&c, &[t])[0], (5, 0));
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut a), Err(Errno::EINVAL), "points only increase");
}

#[test]
fn binary_wait_for_submit_sees_a_later_submit() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let s = syncobj(&sp.c, BIN).unwrap();
    assert_eq!(wait(&sp.c, &[s], None, 0, in_ms(1000)), Err(Errno::EINVAL), "nothing submitted");
    let c2 = sp.c.clone();
    let w = thread::spawn(move || wait(&c2, &[s], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, in_ms(5000)));
    thread::sleep(Duration::from_millis(20));
    submit(&sp.c, q, &[sp.chunk(0, &cmd::write(A, 3, 8))], &[], &[sync(s, 0)], 0).unwrap();
    assert_eq!(w.join().unwrap(), Ok(0));
    assert_eq!(sp.read_u64(0), 3);
}

#[test]
fn any_and_all_waits_hit_and_miss_their_deadline() {
    let rig = Rig::new();
    let c = rig.open();
    let a = syncobj(&c, BIN).unwrap();
    let b = syncobj(&c, sys::ACCEL_SYNCOBJ_CREATE_SIGNALED).unwrap();
    let start = std::time::Instant::now();
    // a has no fence yet: give it one that never signals, through a reset+WFS wait.
    assert_eq!(wait(&c, &[a, b], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, in_ms(1000)), Ok(1), "ANY: b");
    assert_eq!(
        wait(&c, &[a, b], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT | sys::ACCEL_SYNCOBJ_WAIT_ALL, in_ms(30)),
        Err(Errno::ETIMEDOUT)
    );
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(25), "ALL waited until its deadline ({waited:?})");
    assert_eq!(wait(&c, &[a], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, 0), Err(Errno::ETIMEDOUT), "0 polls");
    let h = [a];
    let mut sig = sys::accel_syncobj_array { handles_ptr: h.as_ptr() as u64, count: 1, flags: 0 };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_SIGNAL, &mut sig).unwrap();
    assert_eq!(wait(&c, &[a, b], None, sys::ACCEL_SYNCOBJ_WAIT_ALL, in_ms(1000)), Ok(0));
    assert_eq!(wait(&c, &[a, b], None, 0, in_ms(-5)), Ok(0), "a past deadline still reports what is signalled");
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_RESET, &mut sig).unwrap();
    assert_eq!(query(&c, &[a, b]), vec![(0, 0), (1, 0)]);
}

#[test]
fn transfer_between_binary_and_timeline() {
    let rig = Rig::new();
    let c = rig.open();
    let b = syncobj(&c, sys::ACCEL_SYNCOBJ_CREATE_SIGNALED).unwrap();
    let t = syncobj(&c, TL).unwrap();
    let b2 = syncobj(&c, BIN).unwrap();
    let mut x = sys::accel_syncobj_transfer { src_handle: b, dst_handle: t, dst_point: 3, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut x).unwrap();
    assert_eq!(query(&c, &[t])[0], (3, 0));
    let mut y = sys::accel_syncobj_transfer { src_handle: t, src_point: 2, dst_handle: b2, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut y).unwrap();
    assert_eq!(query(&c, &[b2])[0], (1, 0));
    let mut z = sys::accel_syncobj_transfer { src_handle: b, dst_handle: t, dst_point: 2, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut z), Err(Errno::EINVAL), "point 2 is behind 3");
}

#[test]
fn syncobj_export_import_between_files() {
    let rig = Rig::new();
    let (a, b) = (rig.open(), rig.open());
    let s = syncobj(&a, BIN).unwrap();
    let mut ex = sys::accel_syncobj_export { handle: s, ..Default::default() };
    io(&a, sys::ACCEL_IOCTL_SYNCOBJ_EXPORT, &mut ex).unwrap();
    let mut im = sys::accel_syncobj_import { fd: ex.fd, ..Default::default() };
    io(&b, sys::ACCEL_IOCTL_SYNCOBJ_IMPORT, &mut im).unwrap();
    // SAFETY: SYNCOBJ_EXPORT returned a descriptor this test owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ex.fd) });
    let h = [s];
    let mut sig = sys::accel_syncobj_array { handles_ptr: h.as_ptr() as u64, count: 1, flags: 0 };
    io(&a, sys::ACCEL_IOCTL_SYNCOBJ_SIGNAL, &mut sig).unwrap();
    assert_eq!(query(&b, &[im.handle])[0], (1, 0), "the import names the same syncobj");
    let mut bad = sys::accel_syncobj_import { fd: 0, ..Default::default() };
    assert_eq!(io(&b, sys::ACCEL_IOCTL_SYNCOBJ_IMPORT, &mut bad), Err(Errno::EBADF));
}

// ------------------------------------------------------------ faults, hangs, injection

fn ctx_query(c: &accel_core::inproc::Client, ctx: u32) -> sys::accel_context_query {
    let mut a = sys::accel_context_query { ctx_id: ctx, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_CONTEXT_QUERY, &mut a).unwrap();
    a
}

#[test]
fn a_page_fault_fails_the_job_with_efault_and_is_reported() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let other = Space::new(rig.open(), 1);
    let (q, q2) = (sp.queue(), other.queue());
    assert_eq!(run(&sp, q, &cmd::copy(A + PAGE, A, 8)), -(Errno::EFAULT.raw()));
    let cq = ctx_query(&sp.c, sp.ctx);
    assert_eq!(cq.status, sys::ACCEL_CONTEXT_FAULTED);
    assert_eq!((cq.fault_addr, cq.fault_access, cq.fault_seqno), (A + PAGE, sys::ACCEL_FAULT_READ, 1));
    assert_eq!(run(&other, q2, &cmd::write(A, 4, 8)), 0, "other contexts are unaffected");
    assert_eq!(ctx_query(&other.c, other.ctx).status, 0);
}

#[test]
fn a_write_to_a_read_only_mapping_faults() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let ro = bo_create(&sp.c, PAGE, REGION_HOST, 0).unwrap();
    vm_bind(&sp.c, sp.ctx, &[map_op(ro, 0, A + (1 << 20), PAGE, sys::ACCEL_VM_BIND_READ)]).unwrap();
    let q = sp.queue();
    assert_eq!(run(&sp, q, &cmd::copy(A + (1 << 20), A, 64)), 0, "reading it is fine");
    assert_eq!(run(&sp, q, &cmd::write(A + (1 << 20) + 8, 1, 8)), -(Errno::EFAULT.raw()));
    let cq = ctx_query(&sp.c, sp.ctx);
    assert_eq!((cq.fault_addr, cq.fault_access), (A + (1 << 20) + 8, sys::ACCEL_FAULT_WRITE));
}

#[test]
fn a_hung_job_times_out_bans_its_context_and_the_device_keeps_working() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let other = Space::new(rig.open(), 1);
    let q = queue_create(&sp.c, sp.ctx, sys::ACCEL_ENGINE_CLASS_COMPUTE, 0, Some(50_000_000)).unwrap();
    let q2 = other.queue();
    let (s1, s2) = (syncobj(&sp.c, BIN).unwrap(), syncobj(&sp.c, BIN).unwrap());
    // Never satisfied, no own timeout: only the watchdog ends it.
    submit(&sp.c, q, &[sp.chunk(0, &cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 0))], &[], &[sync(s1, 0)], 0).unwrap();
    submit(&sp.c, q, &[sp.chunk(64, &cmd::write(A + 8, 2, 8))], &[], &[sync(s2, 0)], 0).unwrap();
    assert_eq!(finish(&sp.c, s1), -(Errno::ETIMEDOUT.raw()));
    assert_eq!(finish(&sp.c, s2), 0, "the job behind the hung one is re-run");
    assert_eq!(sp.read_u64(8), 2);
    let cq = ctx_query(&sp.c, sp.ctx);
    assert_eq!(
        (cq.status & sys::ACCEL_CONTEXT_BANNED, cq.ban_errno),
        (sys::ACCEL_CONTEXT_BANNED, Errno::ETIMEDOUT.raw() as u32)
    );
    assert_eq!(submit(&sp.c, q, &[sp.chunk(0, &cmd::barrier())], &[], &[], 0), Err(Errno::EIO), "banned");
    assert_eq!(run(&other, q2, &cmd::write(A, 1, 8)), 0, "the device keeps working");
    assert!(rig.mock.totals().resets >= 1);
}

#[test]
fn injected_hang_is_recovered() {
    let rig = Rig::with(MockConfig { hang_job_at: Some(2), ..Default::default() });
    let sp = Space::new(rig.open(), 1);
    let q = queue_create(&sp.c, sp.ctx, sys::ACCEL_ENGINE_CLASS_COPY, 0, Some(30_000_000)).unwrap();
    assert_eq!(run(&sp, q, &cmd::write(A, 1, 8)), 0);
    assert_eq!(run(&sp, q, &cmd::write(A, 2, 8)), -(Errno::ETIMEDOUT.raw()));
    let other = Space::new(rig.open(), 1);
    let q2 = other.queue();
    assert_eq!(run(&other, q2, &cmd::write(A, 3, 8)), 0);
}

#[test]
fn injected_device_error_is_eio() {
    let rig = Rig::with(MockConfig { fail_job_at: Some(1), ..Default::default() });
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    assert_eq!(run(&sp, q, &cmd::write(A, 1, 8)), -(Errno::EIO.raw()));
    assert_eq!(run(&sp, q, &cmd::write(A, 1, 8)), 0);
}

#[test]
fn delayed_completions_still_complete_in_order() {
    // Long enough that "nothing completed yet" holds on a loaded 2-core machine.
    let rig = Rig::with(MockConfig { completion_delay_us: 50_000, ..Default::default() });
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let t = syncobj(&sp.c, TL).unwrap();
    for n in 1..=5u64 {
        submit(&sp.c, q, &[sp.chunk(n * 64, &cmd::write(A, n, 8))], &[], &[sync(t, n)], 0).unwrap();
    }
    assert_eq!(query(&sp.c, &[t])[0].0, 0, "nothing completed yet");
    wait(&sp.c, &[t], Some(&[5]), 0, in_ms(5000)).unwrap();
    assert_eq!(sp.read_u64(0), 5);
}

#[test]
fn a_full_queue_is_eagain_or_blocks() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = queue_create(&sp.c, sp.ctx, sys::ACCEL_ENGINE_CLASS_COMPUTE, 2, None).unwrap();
    let gate = sp.chunk(0, &cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 5_000_000_000));
    submit(&sp.c, q, &[gate], &[], &[], 0).unwrap();
    submit(&sp.c, q, &[gate], &[], &[], 0).unwrap();
    assert_eq!(submit(&sp.c, q, &[gate], &[], &[], 0), Err(Errno::EAGAIN));
    let c2 = sp.c.clone();
    let blocked = thread::spawn(move || submit(&c2, q, &[gate], &[], &[], sys::ACCEL_SUBMIT_BLOCK));
    thread::sleep(Duration::from_millis(20));
    assert!(!blocked.is_finished(), "BLOCK waits for room");
    sp.map.write(0, &1u64.to_le_bytes()).unwrap();
    assert_eq!(blocked.join().unwrap(), Ok(3));
}

#[test]
fn closing_a_file_with_jobs_in_flight_releases_everything_once_they_finish() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    for n in 0..50u64 {
        submit(&sp.c, q, &[sp.chunk((n % 64) * 64, &cmd::write(A, n, 8))], &[], &[], 0).unwrap();
    }
    let Space { c, map, cmd_map, .. } = sp;
    drop((map, cmd_map));
    c.close();
    wait_idle(&rig);
}

// ------------------------------------------------------------ validation (exact errno)

fn qc(sp: &Space, class: u32, prio: u32, depth: u32, flags: u32, timeout: u64) -> Result<u32, Errno> {
    let mut a = sys::accel_queue_create {
        ctx_id: sp.ctx,
        engine_class: class,
        priority: prio,
        depth,
        flags,
        timeout_ns: timeout,
        ..Default::default()
    };
    io(&sp.c, sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a).map(|_| a.queue_id)
}

#[test]
fn queue_create_validation() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let (c, n) = (sys::ACCEL_ENGINE_CLASS_COMPUTE, sys::ACCEL_PRIORITY_NORMAL);
    assert_eq!(qc(&sp, 7, n, 0, 0, 0), Err(Errno::EINVAL), "unknown class");
    assert_eq!(qc(&sp, c, 9, 0, 0, 0), Err(Errno::EINVAL), "unknown priority");
    assert_eq!(qc(&sp, c, n, 1025, 0, 0), Err(Errno::E2BIG), "depth over max_queue_depth");
    assert_eq!(qc(&sp, c, n, 0, sys::ACCEL_QUEUE_TIMEOUT, 0), Err(Errno::EINVAL), "timeout 0");
    assert_eq!(qc(&sp, c, n, 0, sys::ACCEL_QUEUE_TIMEOUT, 6_000_000_000), Err(Errno::EINVAL), "raises the default");
    assert_eq!(qc(&sp, sys::ACCEL_ENGINE_CLASS_FABRIC, n, 0, 0, 0), Err(Errno::EOPNOTSUPP), "no fabric engines");
    assert_eq!(qc(&sp, c, n, 0, 0, 123), Ok(1), "timeout_ns is ignored without its flag");
    let mut a = sys::accel_queue_create { ctx_id: 99, engine_class: c, priority: n, ..Default::default() };
    assert_eq!(io(&sp.c, sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a), Err(Errno::ENOENT));
    assert_eq!(ctx_destroy(&sp.c, sp.ctx), Err(Errno::EBUSY), "the context has a queue");
    let mut d = sys::accel_queue_destroy { queue_id: 1, pad: 0 };
    io(&sp.c, sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d).unwrap();
    assert_eq!(io(&sp.c, sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d), Err(Errno::ENOENT));
}

#[test]
fn submit_validation() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let good = sp.chunk(0, &cmd::write(A, 1, 8));
    let b = syncobj(&sp.c, BIN).unwrap();
    let t = syncobj(&sp.c, TL).unwrap();
    let e =
        |chunks: &[sys::accel_chunk], w: &[sys::accel_sync], s: &[sys::accel_sync]| submit(&sp.c, q, chunks, w, s, 0);
    assert_eq!(submit(&sp.c, 77, &[good], &[], &[], 0), Err(Errno::ENOENT), "unknown queue");
    assert_eq!(e(&[sys::accel_chunk { kind: 5, ..good }], &[], &[]), Err(Errno::EINVAL), "unknown chunk kind");
    assert_eq!(e(&[sys::accel_chunk { handle: 999, ..good }], &[], &[]), Err(Errno::ENOENT), "unknown chunk BO");
    assert_eq!(e(&[sys::accel_chunk { offset: 4, ..good }], &[], &[]), Err(Errno::EINVAL), "misaligned chunk");
    assert_eq!(e(&[sys::accel_chunk { size: 0, ..good }], &[], &[]), Err(Errno::EINVAL), "empty chunk");
    assert_eq!(e(&[sys::accel_chunk { offset: CMD_BYTES - 16, ..good }], &[], &[]), Err(Errno::EINVAL), "past the BO");
    let bad = sp.chunk(256, &[9u8, 0, 0, 0, 8, 0, 0, 0]);
    assert_eq!(e(&[bad], &[], &[]), Err(Errno::EINVAL), "unknown opcode");
    let trunc = sys::accel_chunk { size: 24, ..sp.chunk(512, &cmd::copy(A, A + 64, 8)) };
    assert_eq!(e(&[trunc], &[], &[]), Err(Errno::EINVAL), "truncated command");
    let native = sys::accel_chunk { kind: sys::ACCEL_CHUNK_NATIVE, ..good };
    assert_eq!(e(&[native], &[], &[]), Err(Errno::EOPNOTSUPP), "the mock has no native command set");
    assert_eq!(e(&[good], &[sync(999, 0)], &[]), Err(Errno::ENOENT), "unknown wait syncobj");
    assert_eq!(e(&[good], &[sync(b, 0)], &[]), Err(Errno::EINVAL), "binary wait with no fence");
    assert_eq!(e(&[good], &[sync(b, 3)], &[]), Err(Errno::EINVAL), "point on a binary wait");
    assert_eq!(e(&[good], &[], &[sync(b, 0), sync(b, 0)]), Err(Errno::EINVAL), "signal listed twice");
    assert_eq!(e(&[good], &[], &[sync(t, 0)]), Err(Errno::EINVAL), "timeline point 0");
    assert_eq!(e(&[good], &[], &[sync(b, 1)]), Err(Errno::EINVAL), "point on a binary signal");
    assert_eq!(e(&[good], &[], &[sync(t, 4)]), Ok(1));
    assert_eq!(e(&[good], &[], &[sync(b, 0), sync(t, 4)]), Err(Errno::EINVAL), "timeline point not increasing");
    assert_eq!(query(&sp.c, &[b])[0], (0, 0), "the failed submit installed nothing");
    let mut a = sys::accel_submit {
        queue_id: q,
        num_chunks: 1,
        chunks_ptr: [good].as_ptr() as u64,
        pad: 1,
        ..Default::default()
    };
    assert_eq!(io(&sp.c, sys::ACCEL_IOCTL_SUBMIT, &mut a), Err(Errno::EINVAL), "pad");
}

#[test]
fn syncobj_validation() {
    let rig = Rig::new();
    let c = rig.open();
    let both = sys::ACCEL_SYNCOBJ_CREATE_TIMELINE | sys::ACCEL_SYNCOBJ_CREATE_SIGNALED;
    assert_eq!(syncobj(&c, both), Err(Errno::EINVAL));
    assert_eq!(syncobj(&c, 1 << 5), Err(Errno::EINVAL), "unknown flag");
    let (b, t) = (syncobj(&c, BIN).unwrap(), syncobj(&c, TL).unwrap());
    let mut d = sys::accel_syncobj_destroy { handle: 42, pad: 0 };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut d), Err(Errno::ENOENT));
    assert_eq!(wait(&c, &[], None, 0, 0), Err(Errno::EINVAL), "no handles");
    assert_eq!(wait(&c, &[b, 42], None, 0, 0), Err(Errno::ENOENT));
    assert_eq!(wait(&c, &[t], None, 0, 0), Err(Errno::EINVAL), "timeline without a point");
    assert_eq!(wait(&c, &[b], None, 1 << 4, 0), Err(Errno::EINVAL), "unknown wait flag");
    let h = [t];
    let mut sig = sys::accel_syncobj_array { handles_ptr: h.as_ptr() as u64, count: 1, flags: 0 };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_SIGNAL, &mut sig), Err(Errno::EINVAL), "SIGNAL of a timeline");
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_RESET, &mut sig), Err(Errno::EINVAL), "RESET of a timeline");
    let (hb, p) = ([b], [1u64]);
    let mut ts = sys::accel_syncobj_timeline_array {
        handles_ptr: hb.as_ptr() as u64,
        points_ptr: p.as_ptr() as u64,
        count: 1,
        flags: 0,
    };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut ts), Err(Errno::EINVAL), "on a binary");
    let mut x = sys::accel_syncobj_transfer { src_handle: b, dst_handle: t, dst_point: 1, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut x), Err(Errno::EINVAL), "source has no fence");
    x.src_handle = 99;
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TRANSFER, &mut x), Err(Errno::ENOENT));
    let mut ex = sys::accel_syncobj_export { handle: 99, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_EXPORT, &mut ex), Err(Errno::ENOENT));
    let mut cq = sys::accel_context_query { ctx_id: 5, ..Default::default() };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_CONTEXT_QUERY, &mut cq), Err(Errno::ENOENT));
}

// ------------------------------------------------------------ regressions

#[test]
fn a_job_waiting_on_a_destroyed_syncobjs_future_point_is_cancelled_not_stuck() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let (t, done) = (syncobj(&sp.c, TL).unwrap(), syncobj(&sp.c, BIN).unwrap());
    // Wait-before-signal on point 3, which nobody will ever submit.
    submit(&sp.c, q, &[sp.chunk(0, &cmd::write(A, 1, 8))], &[sync(t, 3)], &[sync(done, 0)], 0).unwrap();
    assert_eq!(query(&sp.c, &[done])[0], (0, 0));
    let mut d = sys::accel_syncobj_destroy { handle: t, pad: 0 };
    io(&sp.c, sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut d).unwrap();
    assert_eq!(finish(&sp.c, done), -(Errno::ECANCELED.raw()));
    assert_eq!(sp.read_u64(0), 0, "the job did not run");
    let Space { c, map, cmd_map, .. } = sp;
    drop((map, cmd_map));
    c.close();
    wait_idle(&rig);
}

#[test]
fn jobs_that_do_not_run_still_complete_in_fifo_order() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let (q, q2) = (sp.queue(), sp.queue());
    let (gate_done, bad, skipped, empty) = (
        syncobj(&sp.c, BIN).unwrap(),
        syncobj(&sp.c, BIN).unwrap(),
        syncobj(&sp.c, BIN).unwrap(),
        syncobj(&sp.c, BIN).unwrap(),
    );
    submit(&sp.c, q2, &[sp.chunk(0, &cmd::write(0x10, 1, 8))], &[], &[sync(bad, 0)], 0).unwrap();
    assert_eq!(finish(&sp.c, bad), -(Errno::EFAULT.raw()));
    // On q: a gated job, then one whose dependency failed, then an empty one.
    let gate = cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 5_000_000_000);
    submit(&sp.c, q, &[sp.chunk(64, &gate)], &[], &[sync(gate_done, 0)], 0).unwrap();
    submit(&sp.c, q, &[sp.chunk(256, &cmd::write(A + 8, 1, 8))], &[sync(bad, 0)], &[sync(skipped, 0)], 0).unwrap();
    submit(&sp.c, q, &[], &[], &[sync(empty, 0)], 0).unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(query(&sp.c, &[gate_done, skipped, empty]).iter().map(|p| p.0).collect::<Vec<_>>(), [0, 0, 0]);
    sp.map.write(0, &1u64.to_le_bytes()).unwrap();
    assert_eq!(finish(&sp.c, empty), 0);
    assert_eq!(query(&sp.c, &[gate_done, skipped]), vec![(1, 0), (1, -(Errno::EFAULT.raw()))]);
    assert_eq!(sp.read_u64(8), 0, "the job with the failed dependency did not run");
}

#[test]
fn repeated_timed_out_waits_do_not_grow_the_syncobj() {
    let rig = Rig::new();
    let c = rig.open();
    let (b, t) = (syncobj(&c, BIN).unwrap(), syncobj(&c, TL).unwrap());
    for _ in 0..1000 {
        assert_eq!(wait(&c, &[b], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, 0), Err(Errno::ETIMEDOUT));
        assert_eq!(wait(&c, &[t], Some(&[9]), sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, 0), Err(Errno::ETIMEDOUT));
    }
    // Observable through memory only; at least the syncobjs still work afterwards.
    let h = [b];
    let mut sig = sys::accel_syncobj_array { handles_ptr: h.as_ptr() as u64, count: 1, flags: 0 };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_SIGNAL, &mut sig).unwrap();
    assert_eq!(wait(&c, &[b], None, 0, in_ms(100)), Ok(0));
}
