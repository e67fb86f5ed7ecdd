//! Submission benchmarks, each against a baseline measured in the same run:
//! - `latency`: submit -> fence signalled -> waiter woken, for an empty job
//!   (no chunks: the scheduler signals it without an engine round trip when
//!   the queue is idle) and for a one-command job (BARRIER: a real round trip
//!   through the mock engine thread), against a condvar ping-pong between two
//!   threads. Goal: empty job <= 1.0x.
//! - `throughput`: 1024 single-command jobs submitted back to back, then one
//!   wait for the last; reported as jobs/s.
//!
//! Run: `cargo bench -p accel-core --bench submit`; ratios print at the end.

mod common;
use accel_core::Registry;
use accel_core::inproc::Client;
use accel_uapi::sys;
use common::{io, mean_ns};
use criterion::Criterion;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;
use test_driver::{MockConfig, MockDriver, REGION_HOST};
use zerocopy::IntoBytes;

struct Rig {
    _reg: Arc<Registry>,
    c: Client,
    q: u32,
    chunk: sys::accel_chunk,
}

fn rig() -> Rig {
    let reg = Arc::new(Registry::new());
    reg.register(MockDriver::new(MockConfig::default())).unwrap();
    let c = Client::open_in(&reg, "accel0").unwrap();
    let mut ctx = sys::accel_context_create::default();
    io(&c, sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut ctx);
    let mut q = sys::accel_queue_create {
        ctx_id: ctx.ctx_id,
        engine_class: sys::ACCEL_ENGINE_CLASS_COMPUTE,
        priority: sys::ACCEL_PRIORITY_NORMAL,
        depth: 1024,
        ..Default::default()
    };
    io(&c, sys::ACCEL_IOCTL_QUEUE_CREATE, &mut q);
    let mut bo = sys::accel_bo_create {
        size: 4096,
        region: REGION_HOST,
        flags: sys::ACCEL_BO_CPU_VISIBLE,
        ..Default::default()
    };
    io(&c, sys::ACCEL_IOCTL_BO_CREATE, &mut bo);
    let mut off = sys::accel_bo_mmap_offset { handle: bo.handle, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_BO_MMAP_OFFSET, &mut off);
    let m = c.mmap(off.offset, 4096, true).unwrap();
    let barrier = sys::accel_cmd_barrier {
        hdr: sys::accel_cmd_header { opcode: sys::ACCEL_CMD_BARRIER as u16, flags: 0, length: 8 },
    };
    m.write(0, barrier.as_bytes()).unwrap();
    let chunk = sys::accel_chunk {
        kind: sys::ACCEL_CHUNK_PORTABLE,
        handle: bo.handle,
        offset: 0,
        size: 8,
        ..Default::default()
    };
    Rig { _reg: reg, c, q: q.queue_id, chunk }
}

fn submit(r: &Rig, chunks: &[sys::accel_chunk], signal: &[sys::accel_sync]) {
    let mut a = sys::accel_submit {
        queue_id: r.q,
        flags: sys::ACCEL_SUBMIT_BLOCK,
        num_chunks: chunks.len() as u32,
        chunks_ptr: chunks.as_ptr() as u64,
        num_signals: signal.len() as u32,
        signals_ptr: signal.as_ptr() as u64,
        ..Default::default()
    };
    io(&r.c, sys::ACCEL_IOCTL_SUBMIT, &mut a);
}

fn wait(r: &Rig, h: u32, point: u64) {
    let (hs, ps) = ([h], [point]);
    let mut w = sys::accel_syncobj_wait {
        handles_ptr: hs.as_ptr() as u64,
        points_ptr: if point == 0 { 0 } else { ps.as_ptr() as u64 },
        timeout_ns: i64::MAX,
        count: 1,
        flags: sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT,
        ..Default::default()
    };
    io(&r.c, sys::ACCEL_IOCTL_SYNCOBJ_WAIT, &mut w);
}

fn syncobj(r: &Rig, flags: u32) -> u32 {
    let mut s = sys::accel_syncobj_create { flags, handle: 0 };
    io(&r.c, sys::ACCEL_IOCTL_SYNCOBJ_CREATE, &mut s);
    s.handle
}

/// Two threads handing a token back and forth through a mutex + condvar.
struct PingPong {
    state: Mutex<u64>,
    cond: Condvar,
}

fn latency(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("latency");
    let r = rig();
    let s = syncobj(&r, 0);
    g.bench_function("empty_job", |b| {
        b.iter(|| {
            submit(&r, &[], &[sys::accel_sync { handle: s, flags: 0, point: 0 }]);
            wait(&r, s, 0);
        })
    });
    g.bench_function("barrier_job", |b| {
        b.iter(|| {
            submit(&r, &[r.chunk], &[sys::accel_sync { handle: s, flags: 0, point: 0 }]);
            wait(&r, s, 0);
        })
    });
    let pp = Arc::new(PingPong { state: Mutex::new(0), cond: Condvar::new() });
    let peer = {
        let pp = pp.clone();
        std::thread::spawn(move || {
            let mut g = pp.state.lock();
            loop {
                while g.is_multiple_of(2) {
                    if *g == u64::MAX - 1 {
                        return;
                    }
                    pp.cond.wait(&mut g);
                }
                *g += 1; // odd -> even: answer
                pp.cond.notify_all();
            }
        })
    };
    g.bench_function("condvar_ping_pong", |b| {
        b.iter(|| {
            let mut g = pp.state.lock();
            *g += 1; // even -> odd: ping
            pp.cond.notify_all();
            while *g % 2 == 1 {
                pp.cond.wait(&mut g);
            }
        })
    });
    *pp.state.lock() = u64::MAX - 1;
    pp.cond.notify_all();
    let _ = peer.join();
    g.finish();
}

const BATCH: u64 = 1024;

fn throughput(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("throughput");
    g.measurement_time(Duration::from_secs(5));
    let r = rig();
    let t = syncobj(&r, sys::ACCEL_SYNCOBJ_CREATE_TIMELINE);
    let mut point = 0u64;
    g.bench_function("batch_1024_barrier_jobs", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                point += 1;
                submit(&r, &[r.chunk], &[sys::accel_sync { handle: t, flags: 0, point }]);
            }
            wait(&r, t, point);
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    latency(&mut c);
    throughput(&mut c);
    c.final_summary();
    println!("\n== ratios (same run)");
    if let (Some(e), Some(j), Some(p)) =
        (mean_ns("latency", "empty_job"), mean_ns("latency", "barrier_job"), mean_ns("latency", "condvar_ping_pong"))
    {
        println!("submit -> signalled: empty job {e:.0} ns, BARRIER job {j:.0} ns, condvar ping-pong {p:.0} ns");
        println!("  empty job = {:.2}x ping-pong (goal <= 1.0x); BARRIER job = {:.2}x", e / p, j / p);
    }
    if let Some(t) = mean_ns("throughput", "batch_1024_barrier_jobs") {
        println!("batched submission: {:.0} jobs/s ({:.2} us/job)", BATCH as f64 * 1e9 / t, t / BATCH as f64 / 1e3);
    }
}
