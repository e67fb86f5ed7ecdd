//! The floor of `accel pingpong --op write -m 4096 -s 65536` on this
//! machine: the datagrams that ping-pong puts on the wire, sent back and
//! forth between two threads with no RoCE processing at all. A 64 KiB RDMA
//! WRITE with immediate at MTU 4096 is a 4128-byte first packet (RETH), 14
//! middle packets of 4112 bytes and a 4116-byte last packet (ImmDt); accel
//! sends them as a GSO batch of the first two, a GSO batch of the other 13
//! middle ones and one datagram, and receives with GRO. This does the same.
//!
//! `cargo run --release -p accel-tools --example udp_gso_floor -- [ITERS]`
//! prints the payload rate both ways in MB/s (10^6 bytes), as
//! `scripts/fabric-bench.sh` reads it.

use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt, sockopt};
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

const FIRST: usize = 4128;
const MIDDLE: usize = 4112;
const LAST: usize = 4116;
const MIDDLES: usize = 14;
const PAYLOAD: u64 = 65536;

fn socket(ip: Ipv4Addr) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind(SocketAddrV4::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    setsockopt(&s, sockopt::UdpGroSegment, &true).map_err(|e| format!("UDP_GRO: {e}"))?;
    let _ = setsockopt(&s, sockopt::RcvBuf, &(4 << 20));
    let _ = setsockopt(&s, sockopt::SndBuf, &(4 << 20));
    Ok(s)
}

/// One message: the three sends accel makes.
fn send(s: &UdpSocket, to: SocketAddrV4, first: &[u8], middle: &[u8], last: &[u8]) -> Result<(), String> {
    let to = SockaddrIn::from(to);
    let fd = s.as_raw_fd();
    let seg = FIRST as u16;
    sendmsg(
        fd,
        &[IoSlice::new(first), IoSlice::new(middle)],
        &[ControlMessage::UdpGsoSegments(&seg)],
        MsgFlags::empty(),
        Some(&to),
    )
    .map_err(|e| format!("sendmsg: {e}"))?;
    let seg = MIDDLE as u16;
    let rest: Vec<IoSlice<'_>> = (0..MIDDLES - 1).map(|_| IoSlice::new(middle)).collect();
    sendmsg(fd, &rest, &[ControlMessage::UdpGsoSegments(&seg)], MsgFlags::empty(), Some(&to))
        .map_err(|e| format!("sendmsg: {e}"))?;
    sendmsg(fd, &[IoSlice::new(last)], &[], MsgFlags::empty(), Some(&to)).map_err(|e| format!("sendmsg: {e}"))?;
    Ok(())
}

/// Busy-polls until one message's bytes arrived.
fn receive(s: &UdpSocket, buf: &mut [u8]) {
    let total = FIRST + MIDDLES * MIDDLE + LAST;
    let mut cmsg = nix::cmsg_space!(i32);
    let mut got = 0;
    while got < total {
        let mut iov = [IoSliceMut::new(buf)];
        if let Ok(r) = recvmsg::<SockaddrIn>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
            got += r.bytes;
        }
    }
}

fn run(iters: u64) -> Result<f64, String> {
    let (a, b) = (socket(Ipv4Addr::new(127, 0, 0, 1))?, socket(Ipv4Addr::new(127, 0, 0, 2))?);
    let addr = |s: &UdpSocket| match s.local_addr() {
        Ok(std::net::SocketAddr::V4(v)) => Ok(v),
        other => Err(format!("local address: {other:?}")),
    };
    let (to_a, to_b) = (addr(&a)?, addr(&b)?);
    let (first, middle, last) = (vec![1u8; FIRST], vec![2u8; MIDDLE], vec![3u8; LAST]);
    let server = std::thread::spawn({
        let (first, middle, last) = (first.clone(), middle.clone(), last.clone());
        move || -> Result<(), String> {
            let mut buf = vec![0u8; 65536];
            for _ in 0..iters {
                receive(&b, &mut buf);
                send(&b, to_a, &first, &middle, &last)?;
            }
            Ok(())
        }
    });
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    for _ in 0..iters {
        send(&a, to_b, &first, &middle, &last)?;
        receive(&a, &mut buf);
    }
    let secs = start.elapsed().as_secs_f64();
    server.join().map_err(|_| "the server thread panicked".to_string())??;
    Ok((2 * PAYLOAD * iters) as f64 / secs / 1e6)
}

fn main() {
    let iters = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    match run(iters) {
        Ok(mbps) => println!("{mbps:.0}"),
        Err(e) => {
            eprintln!("udp_gso_floor: {e}");
            std::process::exit(1);
        }
    }
}
