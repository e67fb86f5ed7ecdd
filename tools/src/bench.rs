//! `accel bench`: micro-benchmarks of the UAPI paths, each reported as a
//! ratio against a baseline measured in the same run (these machines are
//! noisy: only ratios are meaningful). Every number is a median of batches.

use accel::{Commands, Device, Submit, map_op, unmap_op};
use accel_uapi::flags::{BoFlags, VmBindFlags};

use accel_uapi::types::EngineClass;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One benchmark line.
#[derive(Serialize)]
pub struct Line {
    /// What was measured.
    pub name: String,
    /// Its cost or rate.
    pub value: f64,
    /// Unit of `value` and `baseline`.
    pub unit: &'static str,
    /// The baseline's name.
    pub baseline_name: String,
    /// The baseline, measured in the same run.
    pub baseline: f64,
    /// value / baseline.
    pub ratio: f64,
    /// The goal for the ratio, if the project set one.
    pub goal: Option<String>,
}

/// Median nanoseconds per operation of `f`, over `batches` batches of `n` calls.
fn ns_per_op(batches: usize, n: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..n.min(1000) {
        f();
    }
    let mut v: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn line(name: &str, value: f64, unit: &'static str, baseline_name: &str, baseline: f64, goal: Option<&str>) -> Line {
    Line {
        name: name.into(),
        value,
        unit,
        baseline_name: baseline_name.into(),
        baseline,
        ratio: value / baseline,
        goal: goal.map(str::to_string),
    }
}

fn e(what: &str) -> impl Fn(accel::Error) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// Null ioctl: VERSION through the dispatcher vs FIONREAD on a pipe.
fn null_ioctl(dev: &Device) -> Result<Line, String> {
    let (r, _w) = nix::unistd::pipe().map_err(|x| format!("pipe: {x}"))?;
    let fd = r.as_raw_fd();
    let ours = ns_per_op(9, 20_000, || {
        let _ = dev.version();
    });
    let theirs = ns_per_op(9, 20_000, || {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to &mut n; fd is a pipe we own.
        let _ = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut n as *mut nix::libc::c_int) };
    });
    Ok(line("null ioctl (VERSION)", ours, "ns", "ioctl(2) FIONREAD on a pipe", theirs, Some("<= 0.5")))
}

/// An empty CQ_POLL whose QP is on a RoCE v2/UDP port (the poll receives
/// on the port: one recvmmsg that finds nothing) vs recvfrom(2) on an empty
/// non-blocking UDP socket. A busy-polling application notices a message
/// at best this often.
fn empty_cq_poll() -> Result<Line, String> {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    let reg = accel_core::Registry::new();
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let network = test_driver::PortNetwork::Udp { local, peer_port: 4791 };
    let drv = test_driver::MockDriver::new(test_driver::MockConfig { network, ..Default::default() });
    if let Some(err) = drv.port_error() {
        return Err(err);
    }
    let d = reg.register(drv).map_err(|x| format!("registering a UDP device: {x}"))?;
    let dev = Device::open_in(&reg, d.name()).map_err(e("open"))?;
    let pd = dev.alloc_pd().map_err(e("PD"))?;
    let cq = dev.create_cq(16).map_err(e("CQ"))?;
    let qp = pd.create_qp_with(&cq, &cq, accel::QpInit::new(16, 1)).map_err(e("QP"))?;
    // Connected to itself: the QP's port is live, nothing ever arrives.
    let ep = qp.endpoint(0).map_err(e("endpoint"))?;
    qp.connect(&ep, 0, &accel::ConnectOptions::default()).map_err(e("connect"))?;
    let mut wcs = Vec::new();
    let ours = ns_per_op(9, 20_000, || {
        let _ = cq.poll_into(8, &mut wcs);
    });
    let sock = UdpSocket::bind(local).map_err(|x| format!("UDP socket: {x}"))?;
    sock.set_nonblocking(true).map_err(|x| format!("UDP socket: {x}"))?;
    let mut buf = [0u8; 64];
    let theirs = ns_per_op(9, 20_000, || {
        let _ = sock.recv_from(&mut buf);
    });
    Ok(line("empty CQ_POLL on a RoCE v2/UDP port", ours, "ns", "recvfrom(2) on an empty UDP socket", theirs, None))
}

/// VM_BIND map+unmap of one page with `live` mappings in the context.
fn bind_rate(dev: &Device, live: u64) -> Result<f64, String> {
    let ctx = dev.create_context().map_err(e("context"))?;
    let va = dev.va_range().map_err(e("va range"))?;
    let bo = dev.create_bo(4096, 0, BoFlags::empty()).map_err(e("BO"))?;
    let rw = VmBindFlags::READ | VmBindFlags::WRITE;
    let mut ops = Vec::with_capacity(4096);
    for i in 0..live {
        ops.push(map_op(&bo, 0, va.start + i * 8192, 4096, rw));
        if ops.len() == 4096 || i + 1 == live {
            ctx.bind(&ops).map_err(e("populate"))?;
            ops.clear();
        }
    }
    let mut i = 0u64;
    let ns = ns_per_op(5, 2_000, || {
        let at = va.start + (i % live) * 8192 + 4096;
        i = i.wrapping_add(7919);
        let _ = ctx.bind(&[map_op(&bo, 0, at, 4096, rw)]);
        let _ = ctx.bind(&[unmap_op(at, 4096)]);
    });
    Ok(1e9 / ns)
}

/// Two threads handing a token back and forth (the latency baseline).
fn condvar_ping_pong() -> f64 {
    struct Pp {
        turn: Mutex<u64>,
        cv: Condvar,
    }
    let pp = Arc::new(Pp { turn: Mutex::new(0), cv: Condvar::new() });
    let peer = {
        let pp = pp.clone();
        std::thread::spawn(move || {
            let mut g = pp.turn.lock();
            loop {
                while g.is_multiple_of(2) {
                    if *g == u64::MAX - 1 {
                        return;
                    }
                    pp.cv.wait(&mut g);
                }
                *g += 1;
                pp.cv.notify_all();
            }
        })
    };
    let ns = ns_per_op(7, 2_000, || {
        let mut g = pp.turn.lock();
        *g += 1;
        pp.cv.notify_all();
        while *g % 2 == 1 {
            pp.cv.wait(&mut g);
        }
    });
    *pp.turn.lock() = u64::MAX - 1;
    pp.cv.notify_all();
    let _ = peer.join();
    ns
}

fn deadline() -> i64 {
    accel::deadline_in(Duration::from_secs(10))
}

/// Submit -> fence signalled -> waiter woken, for an empty and a one-command job.
fn submit_latency(dev: &Device) -> Result<(f64, f64), String> {
    let ctx = dev.create_context().map_err(e("context"))?;
    let q = ctx.create_queue(EngineClass::Compute).map_err(e("queue"))?;
    let s = dev.create_syncobj(false, false).map_err(e("syncobj"))?;
    let cmd_bo = dev.create_bo(4096, 0, BoFlags::CPU_VISIBLE).map_err(e("BO"))?;
    let mut c = Commands::new();
    c.barrier();
    cmd_bo.map().map_err(e("map"))?.write(0, c.bytes()).map_err(e("write"))?;
    let empty = ns_per_op(7, 2_000, || {
        let _ = q.submit(&Submit::new().signal(&s, 0));
        let _ = s.wait(0, deadline());
    });
    let one = ns_per_op(7, 500, || {
        let _ = q.submit(&Submit::new().chunk(&cmd_bo, 0, c.len() as u64).signal(&s, 0));
        let _ = s.wait(0, deadline());
    });
    Ok((empty, one))
}

/// GiB/s of a COPY job of `size` bytes vs memcpy of the same size.
fn copy_bandwidth(dev: &Device, size: u64) -> Result<(f64, f64), String> {
    let ctx = dev.create_context().map_err(e("context"))?;
    let va = dev.va_range().map_err(e("va range"))?.start;
    let bo = dev.create_bo(2 * size, 0, BoFlags::CPU_VISIBLE).map_err(e("BO"))?;
    ctx.map(&bo, 0, va, 2 * size, VmBindFlags::READ | VmBindFlags::WRITE).map_err(e("map"))?;
    let q =
        ctx.create_queue(EngineClass::Copy).or_else(|_| ctx.create_queue(EngineClass::Compute)).map_err(e("queue"))?;
    let mut c = Commands::new();
    c.copy(va, va + size, size);
    let job = ns_per_op(5, 4, || {
        if let Ok(s) = q.run(&c) {
            let _ = s.wait(0, deadline());
        }
    });
    let src = vec![1u8; size as usize];
    let mut dst = vec![0u8; size as usize];
    let mem = ns_per_op(5, 4, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    });
    let gib = size as f64 / (1u64 << 30) as f64;
    Ok((gib / (job * 1e-9), gib / (mem * 1e-9)))
}

/// Run every benchmark on `dev`, printing progress to stderr.
pub fn run(dev: &Device, live: u64) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    eprintln!("bench: null ioctl");
    out.push(null_ioctl(dev)?);
    eprintln!("bench: empty CQ poll");
    out.push(empty_cq_poll()?);
    eprintln!("bench: VM_BIND with {live} and 1024 live mappings");
    let (big, small) = (bind_rate(dev, live)?, bind_rate(dev, 1024)?);
    out.push(line(
        &format!("VM_BIND map+unmap, {live} live mappings"),
        big,
        "ops/s",
        "the same with 1024 live mappings",
        small,
        Some(">= 0.5"),
    ));
    eprintln!("bench: submit latency");
    let pp = condvar_ping_pong();
    let (empty, one) = submit_latency(dev)?;
    out.push(line("submit -> signalled, empty job", empty, "ns", "condvar ping-pong", pp, Some("<= 1.0")));
    out.push(line("submit -> signalled, BARRIER job", one, "ns", "condvar ping-pong", pp, None));
    eprintln!("bench: COPY bandwidth");
    let (job, mem) = copy_bandwidth(dev, 64 << 20)?;
    out.push(line("COPY job, 64 MiB", job, "GiB/s", "memcpy, 64 MiB", mem, None));
    Ok(out)
}

/// The table form.
pub fn table(lines: &[Line]) -> String {
    let mut s = format!(
        "{:<42} {:>14} {:>8}  {:<36} {:>14} {:>8}  {}\n",
        "benchmark", "value", "unit", "baseline (same run)", "baseline", "ratio", "goal"
    );
    for l in lines {
        s.push_str(&format!(
            "{:<42} {:>14.1} {:>8}  {:<36} {:>14.1} {:>7.3}x  {}\n",
            l.name,
            l.value,
            l.unit,
            l.baseline_name,
            l.baseline,
            l.ratio,
            l.goal.as_deref().unwrap_or("")
        ));
    }
    s
}
