//! Dispatcher and VM_BIND benchmarks, each reported against a baseline
//! measured in the same run:
//! - `null_ioctl`: ACCEL_IOCTL_VERSION through the in-process dispatcher vs a
//!   real `ioctl(2)` (FIONREAD on a pipe). Goal: ratio <= 0.5.
//! - `vm_bind`: one map + one unmap VM_BIND with 1,048,576 live mappings in the
//!   context vs with 1,024. Goal: ratio (rate at 1M / rate at 1k) >= 0.5.
//!
//! Run: `cargo bench -p accel-core`; the ratios are printed at the end.

mod common;
use accel_core::Registry;
use accel_core::inproc::Client;
use accel_uapi::sys;
use common::{io, mean_ns};
use criterion::Criterion;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use test_driver::{MockConfig, MockDriver, REGION_HOST, VA_START};
use zerocopy::IntoBytes;

const PAGE: u64 = 4096;
const RW: u32 = sys::ACCEL_VM_BIND_READ | sys::ACCEL_VM_BIND_WRITE;

fn open() -> (Arc<Registry>, Client) {
    let reg = Arc::new(Registry::new());
    reg.register(MockDriver::new(MockConfig { max_mappings: 1 << 22, ..Default::default() })).unwrap();
    let c = Client::open_in(&reg, "accel0").unwrap();
    (reg, c)
}

fn bind(c: &Client, ctx: u32, ops: &[sys::accel_vm_bind_op]) {
    let mut a = sys::accel_vm_bind {
        ctx_id: ctx,
        num_ops: ops.len() as u32,
        ops_ptr: ops.as_ptr() as u64,
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_VM_BIND, &mut a);
}

fn null_ioctl(cr: &mut Criterion) {
    let (_reg, c) = open();
    let (r, _w) = nix::unistd::pipe().unwrap();
    let fd = r.as_raw_fd();
    let mut g = cr.benchmark_group("null_ioctl");
    g.bench_function("accel_version_inproc", |b| {
        let mut v = sys::accel_version::default();
        b.iter(|| {
            c.ioctl(sys::ACCEL_IOCTL_VERSION, black_box(v.as_mut_bytes())).unwrap();
        })
    });
    g.bench_function("ioctl2_fionread_pipe", |b| {
        let mut n: nix::libc::c_int = 0;
        b.iter(|| {
            // SAFETY: FIONREAD writes one int to &mut n; fd is a pipe we own.
            let rc = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, black_box(&mut n as *mut nix::libc::c_int)) };
            assert_eq!(rc, 0);
        })
    });
    g.finish();
}

/// A context with `live` one-page mappings, 2 pages apart, all of one BO.
fn populated(live: u64) -> (Arc<Registry>, Client, u32, u32) {
    let (reg, c) = open();
    let mut a = sys::accel_context_create::default();
    io(&c, sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a);
    let ctx = a.ctx_id;
    let mut b = sys::accel_bo_create { size: PAGE, region: REGION_HOST, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_BO_CREATE, &mut b);
    let mut ops = Vec::with_capacity(4096);
    for i in 0..live {
        ops.push(sys::accel_vm_bind_op {
            op: sys::ACCEL_VM_BIND_OP_MAP,
            flags: RW,
            handle: b.handle,
            va: VA_START + i * 2 * PAGE,
            range: PAGE,
            ..Default::default()
        });
        if ops.len() == 4096 {
            bind(&c, ctx, &ops);
            ops.clear();
        }
    }
    if !ops.is_empty() {
        bind(&c, ctx, &ops);
    }
    (reg, c, ctx, b.handle)
}

fn vm_bind(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("vm_bind");
    for (name, live) in [("map_unmap_1k_live", 1u64 << 10), ("map_unmap_1m_live", 1u64 << 20)] {
        let (_reg, c, ctx, bo) = populated(live);
        // Map and unmap pages in the holes between live mappings, spread over the whole range.
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let va = VA_START + (i % live) * 2 * PAGE + PAGE;
                i = i.wrapping_add(7919);
                let map = [sys::accel_vm_bind_op {
                    op: sys::ACCEL_VM_BIND_OP_MAP,
                    flags: RW,
                    handle: bo,
                    va,
                    range: PAGE,
                    ..Default::default()
                }];
                bind(&c, ctx, &map);
                let unmap =
                    [sys::accel_vm_bind_op { op: sys::ACCEL_VM_BIND_OP_UNMAP, va, range: PAGE, ..Default::default() }];
                bind(&c, ctx, &unmap);
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    null_ioctl(&mut c);
    vm_bind(&mut c);
    c.final_summary();
    println!("\n== ratios (same run)");
    if let (Some(a), Some(b)) =
        (mean_ns("null_ioctl", "accel_version_inproc"), mean_ns("null_ioctl", "ioctl2_fionread_pipe"))
    {
        println!(
            "null ioctl: accel dispatcher {a:.1} ns vs ioctl(2) on a pipe {b:.1} ns = {:.3}x (goal <= 0.5x)",
            a / b
        );
    }
    if let (Some(k), Some(m)) = (mean_ns("vm_bind", "map_unmap_1k_live"), mean_ns("vm_bind", "map_unmap_1m_live")) {
        println!(
            "VM_BIND map+unmap: {:.0}/s with 1k live, {:.0}/s with 1M live = {:.3}x (goal >= 0.5x)",
            1e9 / k,
            1e9 / m,
            k / m
        );
    }
}
