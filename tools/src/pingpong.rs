//! `accel pingpong`: an rc_pingpong-style exchange over RC QPs.
//!
//! Like rdma-core's `ibv_rc_pingpong`, the two sides swap their QP number,
//! first PSN and GID (plus, here, an rkey and address for RDMA WRITE) over a
//! TCP connection (port 18515 by default), connect their QPs, and bounce a
//! message back and forth `iters` times; both print
//!
//! ```text
//!   local address:  LID 0x0000, QPN 0x000002, PSN 0x1a2b3c, GID ::ffff:127.0.0.1
//!   remote address: LID 0x0000, QPN 0x000003, PSN 0x4d5e6f, GID ::ffff:127.0.0.2
//! 8192000 bytes in 0.09 seconds = 728.18 Mbit/sec
//! 1000 iters in 0.09 seconds = 90.00 usec/iter
//! ```
//!
//! with rc_pingpong's arithmetic: bytes = size x iters x 2, usec/iter is
//! the round trip. Without `--server`/`--connect` both sides run in this
//! process on two devices whose ports share the in-process switch. Every
//! message carries its iteration number, checked on arrival, so a lost,
//! duplicated or stale message fails the run.

use accel::flags::{BoFlags, MrAccess};
use accel::{ConnectOptions, Device, Endpoint, QpInit, sys};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// SEND into a posted receive (rc_pingpong).
    Send,
    /// RDMA WRITE with immediate into the peer's buffer (the immediate
    /// consumes a receive, which is how the peer learns of it).
    Write,
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Message bytes (at least 8: the iteration number).
    pub size: u32,
    /// Round trips.
    pub iters: u32,
    /// Path MTU in bytes.
    pub mtu: u32,
    /// Receives kept posted.
    pub rx_depth: u32,
    /// SEND or WRITE_WITH_IMM.
    pub op: Op,
    /// How long a side waits for any one completion.
    pub timeout: Duration,
}

/// What one side measured.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Bytes moved (size x iters x 2, as rc_pingpong counts).
    pub bytes: u64,
    /// Round trips.
    pub iters: u32,
    /// Wall time of the exchange.
    pub seconds: f64,
    /// Mbit/s, as rc_pingpong computes it.
    pub mbit_per_sec: f64,
    /// Microseconds per round trip.
    pub usec_per_iter: f64,
    /// The distribution of single round trips (the mean hides whether
    /// every round trip is slower or a few are very slow), over the first
    /// [`RTT_SAMPLES`].
    pub rtt_usec: Percentiles,
}

/// Round trips whose times [`Outcome::rtt_usec`] is computed from: the
/// first million (8 MB), whatever `--iters` asks for.
const RTT_SAMPLES: usize = 1 << 20;

/// Percentiles of round-trip times, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// The fastest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
}

impl Percentiles {
    /// Of `samples` (nanoseconds, in any order); all zero when empty.
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let Some(&last) = samples.last() else { return Percentiles::default() };
        // Nearest rank: the smallest sample with at least p% at or below it.
        let at = |p: usize| samples[(samples.len() * p).div_ceil(100).saturating_sub(1)] as f64 / 1e3;
        Percentiles {
            min: samples[0] as f64 / 1e3,
            p10: at(10),
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: last as f64 / 1e3,
        }
    }
}

impl Outcome {
    fn new(size: u32, iters: u32, elapsed: Duration, rtts: &mut [u64]) -> Outcome {
        let usec = elapsed.as_secs_f64() * 1e6;
        let bytes = u64::from(size) * u64::from(iters) * 2;
        Outcome {
            bytes,
            iters,
            seconds: usec / 1e6,
            mbit_per_sec: bytes as f64 * 8.0 / usec,
            usec_per_iter: usec / f64::from(iters.max(1)),
            rtt_usec: Percentiles::of(rtts),
        }
    }

    /// rc_pingpong's two result lines.
    pub fn lines(&self) -> String {
        format!(
            "{} bytes in {:.2} seconds = {:.2} Mbit/sec\n{} iters in {:.2} seconds = {:.2} usec/iter\n",
            self.bytes, self.seconds, self.mbit_per_sec, self.iters, self.seconds, self.usec_per_iter
        )
    }
}

/// What the sides exchange: rc_pingpong's LID:QPN:PSN:GID, plus the
/// buffer's rkey and address for `--op write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// The QP endpoint.
    pub ep: Endpoint,
    /// rkey of the message buffer.
    pub rkey: u32,
    /// Address (iova) of the message buffer.
    pub addr: u64,
}

impl Dest {
    /// `0000:QQQQQQ:PPPPPP:<32 hex GID>:RRRRRRRR:AAAAAAAAAAAAAAAA`.
    pub fn to_wire(self) -> String {
        let gid: String = self.ep.gid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{:04x}:{:06x}:{:06x}:{gid}:{:08x}:{:016x}", 0, self.ep.qp_num, self.ep.psn, self.rkey, self.addr)
    }

    /// Parses [`Dest::to_wire`].
    pub fn from_wire(s: &str) -> Result<Dest, String> {
        let f: Vec<&str> = s.trim().split(':').collect();
        let bad = || format!("malformed peer address {s:?}");
        if f.len() != 6 || f[3].len() != 32 {
            return Err(bad());
        }
        let hex = |x: &str| u64::from_str_radix(x, 16).map_err(|_| bad());
        let mut gid = [0u8; 16];
        for (i, b) in gid.iter_mut().enumerate() {
            *b = u8::from_str_radix(&f[3][2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let qp_num = u32::try_from(hex(f[1])?).map_err(|_| bad())?;
        let psn = u32::try_from(hex(f[2])?).map_err(|_| bad())?;
        let rkey = u32::try_from(hex(f[4])?).map_err(|_| bad())?;
        if qp_num >= 1 << 24 || psn >= 1 << 24 {
            return Err(bad());
        }
        Ok(Dest { ep: Endpoint { gid, qp_num, psn }, rkey, addr: hex(f[5])? })
    }

    /// rc_pingpong's address line.
    pub fn line(&self, which: &str) -> String {
        let pad = if which == "local" { "  " } else { " " };
        format!(
            "  {which} address:{pad}LID 0x{:04x}, QPN 0x{:06x}, PSN 0x{:06x}, GID {}",
            0,
            self.ep.qp_num,
            self.ep.psn,
            Ipv6Addr::from(self.ep.gid)
        )
    }
}

const IOVA: u64 = 0x1_0000_0000;
const RECV_WRID: u64 = 1;
const SEND_WRID: u64 = 2;

/// One side's verbs objects.
pub struct Side {
    _pd: accel::Pd,
    cq: accel::Cq,
    _bo: accel::Bo,
    map: accel::Mapping,
    mr: accel::Mr,
    qp: accel::Qp,
    psn: u32,
    size: u32,
    op: Op,
    rx_depth: u32,
    /// Receives posted and not yet completed (rc_pingpong's `routs`).
    routs: AtomicU32,
}

fn err(what: &str) -> impl Fn(accel::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Side {
    /// Creates the objects on `dev`'s port 1; `psn` is this side's first PSN.
    pub fn new(dev: &Device, o: &Options, psn: u32) -> Result<Side, String> {
        if o.size < 8 {
            return Err("--size must be at least 8 (the iteration number travels in the message)".into());
        }
        let pd = dev.alloc_pd().map_err(err("PD_ALLOC"))?;
        let cq = dev.create_cq(o.rx_depth + 16).map_err(err("CQ_CREATE"))?;
        // Two buffers: what this side sends, and what the peer writes or sends into.
        let bytes = u64::from(o.size) * 2;
        let region = cpu_region(dev)?;
        let bo = dev.create_bo(bytes, region, BoFlags::CPU_VISIBLE).map_err(err("BO_CREATE"))?;
        let map = bo.map().map_err(err("mmap"))?;
        let access = MrAccess::LOCAL_WRITE | MrAccess::REMOTE_WRITE;
        let mr = pd.reg_mr(&bo, 0, bytes, IOVA, access).map_err(err("MR_REG"))?;
        let init = QpInit {
            max_send_wr: 16,
            max_recv_wr: o.rx_depth,
            max_send_sge: 1,
            max_recv_sge: 1,
            port: 1,
            sig_all: false,
        };
        let qp = pd.create_qp_with(&cq, &cq, init).map_err(err("QP_CREATE"))?;
        Ok(Side {
            _pd: pd,
            cq,
            _bo: bo,
            map,
            mr,
            qp,
            psn: psn & 0xFF_FFFF,
            size: o.size,
            op: o.op,
            rx_depth: o.rx_depth,
            routs: AtomicU32::new(0),
        })
    }

    /// What the peer needs.
    pub fn dest(&self) -> Result<Dest, String> {
        let ep = self.qp.endpoint(self.psn).map_err(err("QUERY_PORTS"))?;
        Ok(Dest { ep, rkey: self.mr.rkey(), addr: IOVA + u64::from(self.size) })
    }

    /// Connects to `remote` and posts `rx_depth` receives.
    pub fn connect(&self, remote: &Dest, o: &Options) -> Result<(), String> {
        let mtu = match o.mtu {
            256 => sys::ACCEL_MTU_256,
            512 => sys::ACCEL_MTU_512,
            1024 => sys::ACCEL_MTU_1024,
            2048 => sys::ACCEL_MTU_2048,
            4096 => sys::ACCEL_MTU_4096,
            m => return Err(format!("--mtu {m}: one of 256, 512, 1024, 2048, 4096")),
        };
        let co = ConnectOptions { mtu, ..ConnectOptions::default() };
        self.qp.connect(&remote.ep, self.psn, &co).map_err(err("QP_MODIFY"))?;
        self.post_recvs(o.rx_depth)
    }

    /// Posts `n` receives, all into the receive buffer, up to 256 per
    /// POST_RECV.
    fn post_recvs(&self, n: u32) -> Result<(), String> {
        let num_sge = u32::from(self.op == Op::Send);
        let sge = sys::accel_sge { addr: IOVA + u64::from(self.size), length: self.size, lkey: self.mr.lkey() };
        let mut left = n;
        while left > 0 {
            let k = left.min(256);
            let wrs: Vec<_> =
                (0..k).map(|i| sys::accel_recv_wr { wr_id: RECV_WRID, first_sge: i * num_sge, num_sge }).collect();
            let sges = vec![sge; (k * num_sge) as usize];
            self.qp.post_recv(&wrs, &sges).map_err(err("POST_RECV"))?;
            self.routs.fetch_add(k, Ordering::Relaxed);
            left -= k;
        }
        Ok(())
    }

    /// A receive completed: as rc_pingpong, refill the receive queue only
    /// when at most one receive is left, so most messages are answered
    /// without a POST_RECV first.
    fn received(&self) -> Result<(), String> {
        let left = self.routs.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if left <= 1 {
            self.post_recvs(self.rx_depth - left)?;
        }
        Ok(())
    }

    fn send(&self, remote: &Dest, iter: u64) -> Result<(), String> {
        self.map.write_u64(0, iter).map_err(err("write"))?;
        let opcode = match self.op {
            Op::Send => sys::ACCEL_WR_SEND,
            Op::Write => sys::ACCEL_WR_RDMA_WRITE_WITH_IMM,
        };
        let wr = sys::accel_send_wr {
            wr_id: SEND_WRID,
            opcode,
            send_flags: sys::ACCEL_SEND_SIGNALED,
            first_sge: 0,
            num_sge: 1,
            imm_data: (iter as u32).to_be(),
            rkey: remote.rkey,
            remote_addr: remote.addr,
        };
        let sge = sys::accel_sge { addr: IOVA, length: self.size, lkey: self.mr.lkey() };
        self.qp.post_send(&[wr], &[sge]).map_err(err("POST_SEND"))
    }

    /// Waits for the message of iteration `iter` (and reaps send completions).
    fn receive(
        &self,
        iter: u64,
        timeout: Duration,
        sends: &mut u64,
        wcs: &mut Vec<sys::accel_wc>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            self.cq.poll_wait_into(8, left, wcs).map_err(err("CQ_POLL"))?;
            if wcs.is_empty() {
                return Err(format!("no message {iter} within {timeout:?}"));
            }
            let mut got = false;
            for wc in wcs.iter() {
                if wc.status != sys::ACCEL_WC_SUCCESS {
                    return Err(format!("completion for wr_id {} with status {}", wc.wr_id, wc.status));
                }
                match wc.wr_id {
                    SEND_WRID => *sends += 1,
                    RECV_WRID => {
                        if wc.byte_len != self.size {
                            return Err(format!("message {iter}: {} bytes, expected {}", wc.byte_len, self.size));
                        }
                        let seen = self.map.read_u64(self.size as usize).map_err(err("read"))?;
                        if seen != iter {
                            return Err(format!("message {iter} carried iteration {seen}"));
                        }
                        self.received()?;
                        got = true;
                    }
                    id => return Err(format!("completion for unknown wr_id {id}")),
                }
            }
            if got {
                return Ok(());
            }
        }
    }

    /// The exchange: the client sends first; each side answers what it receives.
    pub fn run(&self, remote: &Dest, o: &Options, client: bool) -> Result<Outcome, String> {
        let mut rtts = Vec::with_capacity((o.iters as usize).min(RTT_SAMPLES));
        let start = Instant::now();
        let mut sends = 0;
        let mut wcs = Vec::with_capacity(8);
        let mut last = start;
        for i in 0..u64::from(o.iters) {
            if client {
                self.send(remote, 2 * i)?;
                self.receive(2 * i + 1, o.timeout, &mut sends, &mut wcs)?;
            } else {
                self.receive(2 * i, o.timeout, &mut sends, &mut wcs)?;
                self.send(remote, 2 * i + 1)?;
            }
            // Receive to receive (client) or send to send (server): one
            // round trip (the server's first also waits for the client).
            let now = Instant::now();
            if rtts.len() < RTT_SAMPLES {
                rtts.push(now.duration_since(last).as_nanos() as u64);
            }
            last = now;
        }
        let elapsed = start.elapsed();
        // Every send completes (the last one's ACK may still be on its way).
        let deadline = Instant::now() + o.timeout;
        while sends < u64::from(o.iters) {
            for wc in self.cq.poll_wait(8, Duration::from_millis(10)).map_err(err("CQ_POLL"))? {
                if wc.status != sys::ACCEL_WC_SUCCESS || wc.wr_id != SEND_WRID {
                    return Err(format!("final completion {} with status {}", wc.wr_id, wc.status));
                }
                sends += 1;
            }
            if Instant::now() > deadline {
                return Err(format!("{} of {} sends never completed", u64::from(o.iters) - sends, o.iters));
            }
        }
        Ok(Outcome::new(o.size, o.iters, elapsed, &mut rtts))
    }
}

fn cpu_region(dev: &Device) -> Result<u32, String> {
    dev.memory_regions()
        .map_err(err("QUERY_MEMORY_REGIONS"))?
        .iter()
        .find(|r| r.flags & sys::ACCEL_MEM_REGION_CPU_VISIBLE != 0)
        .map(|r| r.region_id)
        .ok_or_else(|| "the device has no CPU-visible memory".into())
}

/// A PSN from the clock, as rc_pingpong draws one from lrand48.
pub fn random_psn() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let x = t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 & 0xFF_FFFF
}

/// Both sides in this process, on devices `a` (client) and `b` (server).
pub fn in_process(a: &Device, b: &Device, o: &Options) -> Result<(Dest, Dest, Outcome), String> {
    let ca = Side::new(a, o, random_psn())?;
    let cb = Side::new(b, o, random_psn() ^ 0x5A5A5A)?;
    let (da, db) = (ca.dest()?, cb.dest()?);
    ca.connect(&db, o)?;
    cb.connect(&da, o)?;
    let out = std::thread::scope(|s| {
        let server = s.spawn(|| cb.run(&da, o, false));
        let client = ca.run(&db, o, true);
        let server = server.join().map_err(|_| "the server side panicked".to_string())?;
        server?;
        client
    })?;
    Ok((da, db, out))
}

/// The server side of a two-process run: accepts one peer on `listen`.
pub fn server(dev: &Device, listen: &str, o: &Options) -> Result<(Dest, Dest, Outcome), String> {
    let l = TcpListener::bind(listen).map_err(|e| format!("listen on {listen}: {e}"))?;
    let (stream, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let mut conv = Conv::new(stream)?;
    let side = Side::new(dev, o, random_psn())?;
    let local = side.dest()?;
    let remote = conv.exchange(&local, false)?;
    side.connect(&remote, o)?;
    conv.sync()?;
    let out = side.run(&remote, o, false)?;
    Ok((local, remote, out))
}

/// The client side of a two-process run: connects to the server at `addr`.
pub fn client(dev: &Device, addr: &str, o: &Options) -> Result<(Dest, Dest, Outcome), String> {
    let stream = connect_retry(addr, o.timeout)?;
    let mut conv = Conv::new(stream)?;
    let side = Side::new(dev, o, random_psn())?;
    let local = side.dest()?;
    let remote = conv.exchange(&local, true)?;
    side.connect(&remote, o)?;
    conv.sync()?;
    let out = side.run(&remote, o, true)?;
    Ok((local, remote, out))
}

fn connect_retry(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(format!("connect to {addr}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The TCP conversation of rc_pingpong: one address line each way, then "done".
struct Conv {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conv {
    fn new(stream: TcpStream) -> Result<Conv, String> {
        // Each line is one small write that the peer waits for: with Nagle's
        // algorithm a write could wait for the peer's delayed ACK (40 ms).
        stream.set_nodelay(true).map_err(|e| format!("address exchange: {e}"))?;
        let r = stream.try_clone().map_err(|e| format!("address exchange: {e}"))?;
        Ok(Conv { w: stream, r: BufReader::new(r) })
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.r.read_line(&mut line).map_err(|e| format!("address exchange: {e}"))?;
        Ok(line)
    }

    /// One line in one write (`writeln!` would write the newline apart).
    fn say(&mut self, s: &str) -> Result<(), String> {
        self.w.write_all(format!("{s}\n").as_bytes()).map_err(|e| format!("address exchange: {e}"))
    }

    fn exchange(&mut self, local: &Dest, first: bool) -> Result<Dest, String> {
        let line = if first {
            self.say(&local.to_wire())?;
            self.line()?
        } else {
            let l = self.line()?;
            self.say(&local.to_wire())?;
            l
        };
        Dest::from_wire(&line)
    }

    /// Both QPs are in RTS with receives posted before either sends, as
    /// rc_pingpong's final "done" exchange.
    fn sync(&mut self) -> Result<(), String> {
        self.say("done")?;
        let line = self.line()?;
        if line.trim() != "done" {
            return Err(format!("sync: the peer said {line:?} (it failed or went away)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips_and_rejects_garbage() {
        let mut gid = [0u8; 16];
        gid[10] = 0xff;
        gid[11] = 0xff;
        gid[12..].copy_from_slice(&[127, 0, 0, 2]);
        let d = Dest { ep: Endpoint { gid, qp_num: 0xABCDE, psn: 0x123456 }, rkey: 0xdead_beef, addr: 0x1_0000_1000 };
        let w = d.to_wire();
        assert_eq!(w, "0000:0abcde:123456:00000000000000000000ffff7f000002:deadbeef:0000000100001000");
        assert_eq!(Dest::from_wire(&format!("{w}\n")).unwrap(), d);
        assert_eq!(d.line("local"), "  local address:  LID 0x0000, QPN 0x0abcde, PSN 0x123456, GID ::ffff:127.0.0.2");
        assert_eq!(d.line("remote"), "  remote address: LID 0x0000, QPN 0x0abcde, PSN 0x123456, GID ::ffff:127.0.0.2");
        for bad in ["", "0000:1:2:3:4:5", "0000:1000000:000000:00000000000000000000ffff7f000002:0:0", "x:y"] {
            assert!(Dest::from_wire(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut xs: Vec<u64> = (1..=1000).rev().map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut xs);
        assert_eq!(p, Percentiles { min: 1.0, p10: 100.0, p50: 500.0, p90: 900.0, p99: 990.0, max: 1000.0 });
        assert_eq!(
            Percentiles::of(&mut [7000]),
            Percentiles { min: 7.0, p10: 7.0, p50: 7.0, p90: 7.0, p99: 7.0, max: 7.0 }
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn outcome_lines_use_rc_pingpong_arithmetic() {
        let o = Outcome::new(4096, 1000, Duration::from_millis(90), &mut []);
        assert_eq!(
            o.lines(),
            "8192000 bytes in 0.09 seconds = 728.18 Mbit/sec\n1000 iters in 0.09 seconds = 90.00 usec/iter\n"
        );
    }
}
