//! The floor of `accel pingpong -s 64` on this machine: the 80-byte
//! datagram of a 64-byte RoCE v2 SEND (BTH, payload, ICRC) ping-ponged
//! between two busy-polling threads, on non-blocking sockets with UDP_GRO
//! on as accel's `UdpLink` has them, with no RoCE processing at all. What
//! accel adds on top of this is its own cost; the rest is the kernel's.
//! (`UdpLink` also sets IP_PMTUDISC_DO and 4 MiB buffers; neither changed a
//! raw ping-pong's time here, and the first needs an unsafe setsockopt.)
//!
//! `cargo run --release -p accel-tools --example udp_pingpong_floor -- [ITERS]`
//! prints the mean and median round trip in microseconds, as
//! `scripts/fabric-bench.sh` reads them.

use nix::sys::socket::{MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt, sockopt};
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// BTH (12) + 64 bytes of payload + ICRC (4).
const DATAGRAM: usize = 80;

fn socket(ip: Ipv4Addr) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind(SocketAddrV4::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    setsockopt(&s, sockopt::UdpGroSegment, &true).map_err(|e| format!("UDP_GRO: {e}"))?;
    Ok(s)
}

fn send(s: &UdpSocket, to: SocketAddrV4, bytes: &[u8]) -> Result<(), String> {
    sendmsg(s.as_raw_fd(), &[IoSlice::new(bytes)], &[], MsgFlags::empty(), Some(&SockaddrIn::from(to)))
        .map(drop)
        .map_err(|e| format!("sendmsg: {e}"))
}

/// Busy-polls until a datagram arrived; an error after 5 seconds.
fn receive(s: &UdpSocket, buf: &mut [u8]) -> Result<(), String> {
    let mut cmsg = nix::cmsg_space!(i32);
    let start = Instant::now();
    for spins in 0u64.. {
        let mut iov = [IoSliceMut::new(buf)];
        if recvmsg::<SockaddrIn>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).is_ok() {
            return Ok(());
        }
        if spins % 1024 == 1023 && start.elapsed() > std::time::Duration::from_secs(5) {
            break;
        }
    }
    Err("no datagram within 5 s".into())
}

/// (mean, median) round trip in microseconds.
fn run(iters: usize) -> Result<(f64, f64), String> {
    let (a, b) = (socket(Ipv4Addr::new(127, 0, 0, 1))?, socket(Ipv4Addr::new(127, 0, 0, 2))?);
    let addr = |s: &UdpSocket| match s.local_addr() {
        Ok(std::net::SocketAddr::V4(v)) => Ok(v),
        other => Err(format!("local address: {other:?}")),
    };
    let (to_a, to_b) = (addr(&a)?, addr(&b)?);
    let server = std::thread::spawn(move || -> Result<(), String> {
        let mut buf = [0u8; 2048];
        for _ in 0..iters {
            receive(&b, &mut buf)?;
            send(&b, to_a, &buf[..DATAGRAM])?;
        }
        Ok(())
    });
    let mut buf = [7u8; 2048];
    let mut rtts = Vec::with_capacity(iters);
    let start = Instant::now();
    let mut last = start;
    for _ in 0..iters {
        send(&a, to_b, &buf[..DATAGRAM])?;
        receive(&a, &mut buf)?;
        let now = Instant::now();
        rtts.push(now.duration_since(last).as_secs_f64() * 1e6);
        last = now;
    }
    let mean = start.elapsed().as_secs_f64() * 1e6 / iters.max(1) as f64;
    server.join().map_err(|_| "the server thread panicked".to_string())??;
    rtts.sort_by(f64::total_cmp);
    // Nearest rank, as accel pingpong's rtt_usec.p50.
    Ok((mean, rtts.get(iters.div_ceil(2).saturating_sub(1)).copied().unwrap_or(0.0)))
}

fn main() {
    let iters = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    match run(iters) {
        Ok((mean, p50)) => println!("{mean:.2} {p50:.2}"),
        Err(e) => {
            eprintln!("udp_pingpong_floor: {e}");
            std::process::exit(1);
        }
    }
}
