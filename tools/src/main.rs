//! `accel`: list accel devices and show what they announce, like
//! `ibv_devices`/`ibv_devinfo`. Every number comes from ioctls on an open
//! device (VERSION and DEVICE_QUERY), never from core internals.
//!
//! Devices are embedded in the process (the in-process transport): `--mock N`
//! registers N mock devices before the command runs.

mod bench;
mod pingpong;

use accel_core::Registry;
use accel_core::inproc::Client;
use accel_uapi::flags::{Caps, MemRegionFlags};
use accel_uapi::types::{EngineClass, MemRegionKind, Mtu, PortState};
use accel_uapi::{Errno, sys};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use zerocopy::{FromBytes, IntoBytes};

#[derive(Parser)]
#[command(name = "accel", version, about = "accel devices over the accel UAPI")]
struct Cli {
    /// Embedded mock devices to register before running the command.
    #[arg(long, default_value_t = 2, global = true)]
    mock: u32,
    /// Fault injection on the embedded mocks: fail the Nth job with EIO.
    #[arg(long, global = true, value_name = "N")]
    fail_job_at: Option<u64>,
    /// Fault injection on the embedded mocks: hang the Nth job until reset.
    #[arg(long, global = true, value_name = "N")]
    hang_job_at: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Report formats of `accel conformance`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    /// A table, failure reasons and totals.
    Table,
    /// KTAP version 1 (the kernel's test format).
    Ktap,
    /// JUnit XML.
    Junit,
}

#[derive(Subcommand)]
enum Cmd {
    /// List devices.
    Devices,
    /// Run the conformance suite against a device; the exit status is the number of failures.
    Conformance {
        /// Device name or path.
        #[arg(long, short, default_value = "accel0")]
        device: String,
        /// Only these areas (device, memory, vm, submit, syncobj, fabric, isolation, negative).
        #[arg(long = "area", value_name = "AREA")]
        areas: Vec<String>,
        /// Only tests whose name contains this.
        #[arg(long)]
        test: Option<String>,
        /// Report format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write the report here instead of standard output.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// List the tests instead of running them.
        #[arg(long)]
        list: bool,
    },
    /// Micro-benchmarks of the UAPI paths, each against a baseline measured in the same run.
    Bench {
        /// Device name or path.
        #[arg(long, short, default_value = "accel0")]
        device: String,
        /// Live mappings for the VM_BIND scaling benchmark.
        #[arg(long, default_value_t = 1 << 20)]
        live: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// rc_pingpong-style RC ping-pong: in this process between two devices, or
    /// between two processes over RoCE v2/UDP (--server / --connect with --udp).
    Pingpong {
        /// Wait for a peer (two processes); needs --udp.
        #[arg(long, conflicts_with = "connect")]
        server: bool,
        /// Connect to the server at this host (two processes); needs --udp.
        #[arg(long, value_name = "HOST")]
        connect: Option<String>,
        /// TCP port of the address exchange.
        #[arg(long, short = 'p', default_value_t = 18515)]
        port: u16,
        /// RoCE v2 over UDP from this local IPv4 address (UDP port 4791 unless IP:PORT).
        #[arg(long, value_name = "IP[:PORT]")]
        udp: Option<String>,
        /// UDP destination port of the RoCE v2 frames.
        #[arg(long, default_value_t = 4791)]
        udp_peer_port: u16,
        /// Message size in bytes.
        #[arg(long, short = 's', default_value_t = 4096)]
        size: u32,
        /// Round trips.
        #[arg(long, short = 'n', default_value_t = 1000)]
        iters: u32,
        /// Path MTU (256, 512, 1024, 2048, 4096).
        #[arg(long, short = 'm', default_value_t = 1024)]
        mtu: u32,
        /// Receives kept posted.
        #[arg(long, short = 'r', default_value_t = 500)]
        rx_depth: u32,
        /// SEND (rc_pingpong) or RDMA WRITE with immediate.
        #[arg(long, value_enum, default_value = "send")]
        op: pingpong::Op,
        /// The client's device (in-process run).
        #[arg(long, short, default_value = "accel0")]
        device: String,
        /// The server's device (in-process run).
        #[arg(long, default_value = "accel1")]
        peer_device: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show everything a device announces (ibv_devinfo-like).
    Info {
        /// Device name or path (default: every device).
        #[arg(long, short)]
        device: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A failed ioctl with the call that failed.
#[derive(Debug)]
struct CallError {
    call: &'static str,
    errno: Errno,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.errno)
    }
}

fn io<T: IntoBytes + FromBytes>(c: &Client, call: &'static str, cmd: u32, a: &mut T) -> Result<(), CallError> {
    c.ioctl(cmd, a.as_mut_bytes()).map_err(|errno| CallError { call, errno })
}

fn query(c: &Client, id: u32) -> Result<Vec<u8>, CallError> {
    let mut q = sys::accel_device_query { query_id: id, ..Default::default() };
    io(c, "DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q)?;
    let mut buf = vec![0u8; q.size as usize];
    q.data_ptr = buf.as_mut_ptr() as u64;
    io(c, "DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q)?;
    buf.truncate(q.size as usize);
    Ok(buf)
}

fn entries<H: FromBytes, E: FromBytes + Clone>(b: &[u8]) -> Vec<E> {
    let Ok((_, rest)) = H::read_from_prefix(b) else { return Vec::new() };
    rest.chunks_exact(size_of::<E>()).filter_map(|c| E::read_from_bytes(c).ok()).collect()
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
}

#[derive(Serialize)]
struct Info {
    name: String,
    driver: String,
    vendor_id: String,
    device_id: String,
    revision: u32,
    abi: String,
    caps: Vec<String>,
    engines: Vec<Engine>,
    regions: Vec<Region>,
    va_start: String,
    va_end: String,
    ports: Vec<Port>,
    limits: Limits,
}

#[derive(Serialize)]
struct Engine {
    class: String,
    count: u32,
}

#[derive(Serialize)]
struct Region {
    id: u32,
    kind: String,
    size: u64,
    available: u64,
    page_sizes: Vec<u64>,
    cpu_visible: bool,
}

#[derive(Serialize)]
struct Port {
    port: u32,
    state: String,
    active_mtu: u32,
    max_mtu: u32,
    gid: String,
    speed_mbps: u64,
}

#[derive(Serialize)]
struct Limits {
    max_contexts: u32,
    max_bo_size: u64,
    max_vm_bind_ops: u32,
    max_queue_depth: u32,
    default_job_timeout_ns: u64,
}

fn gid_string(g: &[u8; 16]) -> String {
    g.chunks(2).map(|p| format!("{:02x}{:02x}", p[0], p[1])).collect::<Vec<_>>().join(":")
}

fn info(c: &Client) -> Result<Info, CallError> {
    let mut v = sys::accel_version::default();
    io(c, "VERSION", sys::ACCEL_IOCTL_VERSION, &mut v)?;
    let d = sys::accel_device_info::read_from_bytes(&query(c, sys::ACCEL_QUERY_DEVICE_INFO)?)
        .map_err(|_| CallError { call: "DEVICE_QUERY(DEVICE_INFO)", errno: Errno::EINVAL })?;
    let engines = entries::<sys::accel_query_engines, sys::accel_engine_info>(&query(c, sys::ACCEL_QUERY_ENGINES)?)
        .iter()
        .map(|e| Engine {
            class: EngineClass::try_from(e.engine_class).map_or_else(|x| x.to_string(), |k| format!("{k:?}")),
            count: e.count,
        })
        .collect();
    let regions = entries::<sys::accel_query_memory_regions, sys::accel_memory_region>(&query(
        c,
        sys::ACCEL_QUERY_MEMORY_REGIONS,
    )?)
    .iter()
    .map(|r| Region {
        id: r.region_id,
        kind: MemRegionKind::try_from(r.kind).map_or_else(|x| x.to_string(), |k| format!("{k:?}")),
        size: r.size,
        available: r.available,
        page_sizes: (0..64).filter(|b| r.page_sizes & (1 << b) != 0).map(|b| 1u64 << b).collect(),
        cpu_visible: MemRegionFlags::from_bits_truncate(r.flags).contains(MemRegionFlags::CPU_VISIBLE),
    })
    .collect();
    let va = sys::accel_va_range::read_from_bytes(&query(c, sys::ACCEL_QUERY_VA_RANGE)?).unwrap_or_default();
    let ports = entries::<sys::accel_query_ports, sys::accel_port_info>(&query(c, sys::ACCEL_QUERY_PORTS)?)
        .iter()
        .map(|p| Port {
            port: p.port_num,
            state: PortState::try_from(p.state).map_or_else(|x| x.to_string(), |s| format!("{s:?}").to_uppercase()),
            active_mtu: Mtu::try_from(p.active_mtu).map_or(0, |m| m.bytes()),
            max_mtu: Mtu::try_from(p.max_mtu).map_or(0, |m| m.bytes()),
            gid: gid_string(&p.gid),
            speed_mbps: p.speed_mbps,
        })
        .collect();
    let l = sys::accel_limits::read_from_bytes(&query(c, sys::ACCEL_QUERY_LIMITS)?).unwrap_or_default();
    Ok(Info {
        name: cstr(&d.name),
        driver: cstr(&d.driver_name),
        vendor_id: format!("{:#06x}", d.vendor_id),
        device_id: format!("{:#06x}", d.device_id),
        revision: d.revision,
        abi: format!("{}.{}", v.major, v.minor),
        caps: Caps::from_bits_truncate(v.caps).iter_names().map(|(n, _)| n.to_string()).collect(),
        engines,
        regions,
        va_start: format!("{:#x}", va.start),
        va_end: format!("{:#x}", va.end),
        ports,
        limits: Limits {
            max_contexts: l.max_contexts,
            max_bo_size: l.max_bo_size,
            max_vm_bind_ops: l.max_vm_bind_ops,
            max_queue_depth: l.max_queue_depth,
            default_job_timeout_ns: l.default_job_timeout_ns,
        },
    })
}

fn print_info(i: &Info) {
    println!("hca_id:\t{}", i.name);
    println!("\tdriver:\t\t\t{}", i.driver);
    println!("\tvendor_id:\t\t{}", i.vendor_id);
    println!("\tdevice_id:\t\t{}", i.device_id);
    println!("\trevision:\t\t{}", i.revision);
    println!("\tabi_version:\t\t{}", i.abi);
    println!("\tcapabilities:\t\t{}", i.caps.join(" "));
    for e in &i.engines {
        println!("\tengines:\t\t{} x{}", e.class, e.count);
    }
    for r in &i.regions {
        let pages: Vec<String> = r.page_sizes.iter().map(|p| format!("{}K", p >> 10)).collect();
        println!(
            "\tregion {}:\t\t{} {} MiB ({} MiB free), pages {}{}",
            r.id,
            r.kind,
            r.size >> 20,
            r.available >> 20,
            pages.join("/"),
            if r.cpu_visible { ", cpu-visible" } else { "" }
        );
    }
    println!("\tva_range:\t\t{}..{}", i.va_start, i.va_end);
    println!("\tmax_contexts:\t\t{}", i.limits.max_contexts);
    println!("\tmax_bo_size:\t\t{}", i.limits.max_bo_size);
    for p in &i.ports {
        println!("\t\tport:\t{}", p.port);
        println!("\t\t\tstate:\t\tPORT_{} ({})", p.state, if p.state == "ACTIVE" { 4 } else { 1 });
        println!("\t\t\tmax_mtu:\t{}", p.max_mtu);
        println!("\t\t\tactive_mtu:\t{}", p.active_mtu);
        println!("\t\t\tGID[  0]:\t{}", p.gid);
        println!("\t\t\tspeed:\t\t{} Gb/s", p.speed_mbps / 1000);
    }
}

/// Run the suite; returns the number of failed and timed-out tests.
fn conformance(
    device: &str,
    areas: &[String],
    test: Option<String>,
    format: Format,
    output: Option<std::path::PathBuf>,
    list: bool,
) -> Result<usize, String> {
    use accel_conformance::{Area, Filter, Outcome, Target, all_tests, report};
    use std::io::IsTerminal;
    let mut filter = Filter { areas: Vec::new(), name: test };
    for a in areas {
        filter.areas.push(Area::parse(a).ok_or_else(|| {
            let all: Vec<&str> = Area::ALL.iter().map(|a| a.name()).collect();
            format!("unknown area {a:?} (areas: {})", all.join(", "))
        })?);
    }
    let suite = all_tests();
    if list {
        for t in suite.iter().filter(|t| filter.selects(t)) {
            println!("{}", t.full_name());
        }
        return Ok(0);
    }
    let target = Target::named(device);
    target.open().map_err(|e| format!("{device}: {e}"))?;
    let selected = suite.iter().filter(|t| filter.selects(t)).count();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = indicatif::ProgressBar::new(selected as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        eprintln!("accel conformance: {selected} tests on {device}");
        None
    };
    let (mut area_done, mut area_bad, mut area_skip, mut current) = (0usize, 0usize, 0usize, None);
    let r = accel_conformance::run(&target, &suite, &filter, |t| {
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(t.name.clone());
            if matches!(t.outcome, Outcome::Fail(_) | Outcome::Timeout) {
                b.println(format!("{} {}", t.outcome.label(), t.name));
            }
            return;
        }
        if current != Some(t.area) {
            if let Some(a) = current {
                eprintln!("  {:<10} {area_done} run, {area_bad} failed, {area_skip} not supported", a.name());
            }
            (current, area_done, area_bad, area_skip) = (Some(t.area), 0, 0, 0);
        }
        area_done += 1;
        if matches!(t.outcome, Outcome::NotSupported(_)) {
            area_skip += 1;
        }
        if matches!(t.outcome, Outcome::Fail(_) | Outcome::Timeout) {
            area_bad += 1;
            eprintln!("  {} {}", t.outcome.label(), t.name);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    } else if let Some(a) = current {
        eprintln!("  {:<10} {area_done} run, {area_bad} failed, {area_skip} not supported", a.name());
    }
    let text = match format {
        Format::Table => report::table(&r),
        Format::Ktap => report::ktap(&r),
        Format::Junit => report::junit(&r),
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("{}", report::summary(&r));
        }
        None => print!("{text}"),
    }
    Ok(r.failed() + r.timed_out())
}

fn run(cli: Cli) -> Result<u8, String> {
    let registry = Registry::global();
    for _ in 0..cli.mock {
        let cfg = test_driver::MockConfig {
            fail_job_at: cli.fail_job_at,
            hang_job_at: cli.hang_job_at,
            ..Default::default()
        };
        registry.register(test_driver::MockDriver::new(cfg)).map_err(|e| format!("registering a mock device: {e}"))?;
    }
    let names: Vec<String> = registry.devices().iter().map(|d| d.name().to_string()).collect();
    match cli.cmd {
        Cmd::Conformance { device, areas, test, format, output, list } => {
            let failures = conformance(&device, &areas, test, format, output, list)?;
            if failures > 0 {
                eprintln!("accel: {failures} tests failed");
            }
            // The exit status is the number of failures (capped to what a status can hold).
            Ok(u8::try_from(failures).unwrap_or(u8::MAX))
        }
        Cmd::Bench { device, live, json } => {
            if live == 0 {
                return Err("--live must be at least 1".into());
            }
            let dev = accel::Device::open(&device).map_err(|e| format!("{device}: {e}"))?;
            let lines = bench::run(&dev, live)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lines).map_err(|e| e.to_string())?);
            } else {
                print!("{}", bench::table(&lines));
            }
            Ok(0)
        }
        Cmd::Pingpong {
            server,
            connect,
            port,
            udp,
            udp_peer_port,
            size,
            iters,
            mtu,
            rx_depth,
            op,
            device,
            peer_device,
            json,
        } => {
            let o = pingpong::Options { size, iters, mtu, rx_depth, op, timeout: std::time::Duration::from_secs(10) };
            let (local, remote, out) = if server || connect.is_some() {
                let udp = udp.ok_or("two processes talk RoCE v2 over UDP: give --udp LOCAL_IP")?;
                let local: std::net::SocketAddrV4 = if udp.contains(':') {
                    udp.parse().map_err(|e| format!("--udp {udp}: {e}"))?
                } else {
                    let ip: std::net::Ipv4Addr = udp.parse().map_err(|e| format!("--udp {udp}: {e}"))?;
                    std::net::SocketAddrV4::new(ip, 4791)
                };
                let network = test_driver::PortNetwork::Udp { local, peer_port: udp_peer_port };
                let drv = test_driver::MockDriver::new(test_driver::MockConfig { network, ..Default::default() });
                if let Some(e) = drv.port_error() {
                    return Err(e);
                }
                let d = registry.register(drv).map_err(|e| format!("registering the UDP device: {e}"))?;
                let dev = accel::Device::open(d.name()).map_err(|e| format!("{}: {e}", d.name()))?;
                match connect {
                    Some(host) => pingpong::client(&dev, &format!("{host}:{port}"), &o)?,
                    None => pingpong::server(&dev, &format!("0.0.0.0:{port}"), &o)?,
                }
            } else {
                let a = accel::Device::open(&device).map_err(|e| format!("{device}: {e}"))?;
                let b = accel::Device::open(&peer_device).map_err(|e| format!("{peer_device}: {e}"))?;
                pingpong::in_process(&a, &b, &o)?
            };
            if json {
                #[derive(Serialize)]
                struct J<'a> {
                    local: String,
                    remote: String,
                    #[serde(flatten)]
                    outcome: &'a pingpong::Outcome,
                }
                let j = J { local: local.line("local"), remote: remote.line("remote"), outcome: &out };
                println!("{}", serde_json::to_string_pretty(&j).map_err(|e| e.to_string())?);
            } else {
                println!("{}", local.line("local"));
                println!("{}", remote.line("remote"));
                print!("{}", out.lines());
            }
            Ok(0)
        }
        Cmd::Devices => {
            println!("    device          \tdriver");
            println!("    ------          \t------");
            for n in &names {
                let c = Client::open(n).map_err(|e| format!("{n}: open: {e}"))?;
                let i = info(&c).map_err(|e| format!("{n}: {e}"))?;
                println!("    {:<16}\t{}", n, i.driver);
            }
            Ok(0)
        }
        Cmd::Info { device, json } => {
            let selected: Vec<String> = match device {
                Some(d) => vec![d],
                None => names,
            };
            if selected.is_empty() {
                return Err("no accel devices (use --mock N)".into());
            }
            let mut all = Vec::new();
            for n in &selected {
                let c = Client::open(n).map_err(|e| format!("{n}: open: {e}"))?;
                all.push(info(&c).map_err(|e| format!("{n}: {e}"))?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?);
            } else {
                for i in &all {
                    print_info(i);
                }
            }
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("accel: {e}");
            ExitCode::FAILURE
        }
    }
}
