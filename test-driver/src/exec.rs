//! The mock engine's command processor: page-table walks and the portable
//! command set, executed on host memory.
//!
//! Every command first resolves all of its operands against the context's
//! page tables (under the page-table lock, which is released before any byte
//! moves); a missing mapping or permission is reported as a page fault before
//! the command writes anything. Commands before it keep their effects, as on
//! hardware.

use crate::Pte;
use accel_core::cmd::PortableCmd;
use accel_core::driver::JobFault;
use accel_core::{HostMemory, IntervalMap};
use accel_uapi::flags::{FaultAccess, VmBindFlags};
use accel_uapi::types::{DType, ReduceOp};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes moved per step of a large command (between reset checks). A multiple of every element size.
const CHUNK: u64 = 1 << 20;

/// How often WAIT_VALUE re-reads its address.
pub(crate) const POLL: Duration = Duration::from_micros(30);

/// All page tables of the device, by VM id.
pub(crate) type PageTables = Mutex<HashMap<u64, IntervalMap<Pte>>>;

/// How the executing engine learns that it must stop (reset or queue destroyed).
pub(crate) trait Control {
    /// The current job must stop now.
    fn stopped(&self) -> bool;
    /// Sleep up to `d` (waking early on a reset); returns [`Control::stopped`].
    fn pause(&self, d: Duration) -> bool;
}

/// Why a job did not run to completion.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The job failed on its own.
    Fault(JobFault),
    /// A reset or queue destruction stopped it.
    Stopped,
}

impl From<JobFault> for Abort {
    fn from(f: JobFault) -> Abort {
        Abort::Fault(f)
    }
}

fn device(msg: impl Into<String>) -> Abort {
    Abort::Fault(JobFault::Device(msg.into()))
}

/// A contiguous piece of an operand: `len` bytes at `off` in `host`.
#[derive(Clone, Debug)]
struct Seg {
    host: Arc<HostMemory>,
    off: u64,
    len: u64,
}

/// Where a walk stopped: bytes from the operand start, and the permissions found there (`None` = unmapped).
struct Stop {
    at: u64,
    found: Option<VmBindFlags>,
}

/// How a command accesses an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    Read,
    Write,
    /// Read-modify-write (REDUCE's destination): the read comes first.
    ReadWrite,
}

impl Use {
    fn need(self) -> VmBindFlags {
        match self {
            Use::Read => VmBindFlags::READ,
            Use::Write => VmBindFlags::WRITE,
            Use::ReadWrite => VmBindFlags::READ | VmBindFlags::WRITE,
        }
    }

    /// The access that faults when the walk stopped on `found`.
    fn fault(self, found: Option<VmBindFlags>) -> FaultAccess {
        match self {
            Use::Read => FaultAccess::READ,
            Use::Write => FaultAccess::WRITE,
            Use::ReadWrite if found.is_some_and(|p| p.contains(VmBindFlags::READ)) => FaultAccess::WRITE,
            Use::ReadWrite => FaultAccess::READ,
        }
    }
}

/// The pieces backing `[va, va + len)`, each mapped with at least `need`.
fn walk(pt: Option<&IntervalMap<Pte>>, va: u64, len: u64, need: VmBindFlags) -> Result<Vec<Seg>, Stop> {
    let (end, wraps) = match va.checked_add(len) {
        Some(e) => (e, false),
        None => (u64::MAX, true),
    };
    let mut segs = Vec::new();
    let mut cur = va;
    while cur < end {
        let Some((r, pte)) = pt.and_then(|pt| pt.lookup(cur)) else {
            return Err(Stop { at: cur - va, found: None });
        };
        if !pte.perms.contains(need) {
            return Err(Stop { at: cur - va, found: Some(pte.perms) });
        }
        let stop = r.end.min(end);
        segs.push(Seg { host: pte.host.clone(), off: pte.offset.saturating_add(cur - r.start), len: stop - cur });
        cur = stop;
    }
    if wraps {
        // The byte at u64::MAX can never be mapped (ranges are half-open).
        return Err(Stop { at: end - va, found: None });
    }
    Ok(segs)
}

/// A sequential position in an operand's pieces.
#[derive(Clone)]
struct Cursor<'a> {
    segs: &'a [Seg],
    idx: usize,
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn new(segs: &'a [Seg]) -> Self {
        Cursor { segs, idx: 0, pos: 0 }
    }

    /// Call `f(host, host_offset, done, take)` for the next `n` bytes, piece by piece.
    fn each(
        &mut self,
        n: u64,
        mut f: impl FnMut(&HostMemory, u64, usize, usize) -> accel_core::Result<()>,
    ) -> Result<(), Abort> {
        let mut done = 0u64;
        while done < n {
            let Some(seg) = self.segs.get(self.idx) else {
                return Err(device("access past the resolved range"));
            };
            let take = seg.len.saturating_sub(self.pos).min(n - done);
            if take > 0 {
                f(&seg.host, seg.off.saturating_add(self.pos), done as usize, take as usize)
                    .map_err(|e| device(format!("memory access: {e}")))?;
            }
            done += take;
            self.pos += take;
            if self.pos >= seg.len {
                self.idx += 1;
                self.pos = 0;
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), Abort> {
        self.each(buf.len() as u64, |h, off, at, n| h.read(off, &mut buf[at..at + n]))
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), Abort> {
        self.each(buf.len() as u64, |h, off, at, n| h.write(off, &buf[at..at + n]))
    }

    fn fill(&mut self, n: u64, byte: u8) -> Result<(), Abort> {
        self.each(n, |h, off, _, n| h.fill(off, n as u64, byte))
    }
}

/// One job's view of the device: its page tables and how it is stopped.
pub(crate) struct Exec<'a> {
    /// Page tables of every VM.
    pub(crate) vms: &'a PageTables,
    /// The job's VM.
    pub(crate) vm: u64,
    /// Reset / destroy notification.
    pub(crate) ctl: &'a dyn Control,
}

impl Exec<'_> {
    /// Resolve every operand of one command, or report the fault that comes
    /// first in element order (ties: the earlier operand, i.e. the source).
    fn resolve<const N: usize>(&self, ops: [(u64, u64, Use); N]) -> Result<[Vec<Seg>; N], Abort> {
        let walked = {
            let vms = self.vms.lock();
            let pt = vms.get(&self.vm);
            ops.map(|(va, len, u)| walk(pt, va, len, u.need()))
        };
        let mut first: Option<(u64, u64, FaultAccess)> = None;
        for (r, (va, _, u)) in walked.iter().zip(ops) {
            if let Err(s) = r
                && first.is_none_or(|(at, _, _)| s.at < at)
            {
                first = Some((s.at, va.saturating_add(s.at), u.fault(s.found)));
            }
        }
        if let Some((_, addr, access)) = first {
            return Err(JobFault::PageFault { addr, access }.into());
        }
        Ok(walked.map(|r| r.unwrap_or_default()))
    }

    /// Run a portable command stream.
    pub(crate) fn run(&self, cmds: &[PortableCmd]) -> Result<(), Abort> {
        for cmd in cmds {
            if self.ctl.stopped() {
                return Err(Abort::Stopped);
            }
            self.run_one(cmd)?;
        }
        Ok(())
    }

    fn run_one(&self, cmd: &PortableCmd) -> Result<(), Abort> {
        match *cmd {
            PortableCmd::Copy { src, dst, size } => self.copy(src, dst, size),
            PortableCmd::Fill { dst, size, pattern } => self.fill(dst, size, pattern),
            PortableCmd::WriteValue { addr, value, width } => {
                let w = width_bytes(width)?;
                let [d] = self.resolve([(addr, w as u64, Use::Write)])?;
                Cursor::new(&d).write(&value.to_le_bytes()[..w])
            }
            PortableCmd::WaitValue { addr, value, mask, timeout_ns, op, width } => {
                let w = width_bytes(width)?;
                let [s] = self.resolve([(addr, w as u64, Use::Read)])?;
                let start = Instant::now();
                let timeout = Duration::from_nanos(timeout_ns);
                loop {
                    let mut b = [0u8; 8];
                    Cursor::new(&s).read(&mut b[..w])?;
                    if op.holds(u64::from_le_bytes(b) & mask, value) {
                        return Ok(());
                    }
                    if timeout_ns > 0 && start.elapsed() >= timeout {
                        return Err(JobFault::Timeout.into());
                    }
                    if self.ctl.pause(POLL) {
                        return Err(Abort::Stopped);
                    }
                }
            }
            PortableCmd::Timestamp { dst } => {
                let [d] = self.resolve([(dst, 8, Use::Write)])?;
                Cursor::new(&d).write(&monotonic_ns()?.to_le_bytes())
            }
            PortableCmd::Barrier => Ok(()),
            PortableCmd::Reduce { src, dst, count, op, dtype } => self.reduce(src, dst, count, op, dtype),
        }
    }

    fn copy(&self, src: u64, dst: u64, size: u64) -> Result<(), Abort> {
        let [s, d] = self.resolve([(src, size, Use::Read), (dst, size, Use::Write)])?;
        let mut buf = vec![0u8; size.min(CHUNK) as usize];
        let (mut rc, mut wc) = (Cursor::new(&s), Cursor::new(&d));
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            rc.read(&mut buf[..n])?;
            wc.write(&buf[..n])?;
            left -= n as u64;
            if left > 0 && self.ctl.stopped() {
                return Err(Abort::Stopped);
            }
        }
        Ok(())
    }

    fn fill(&self, dst: u64, size: u64, pattern: u32) -> Result<(), Abort> {
        let [d] = self.resolve([(dst, size, Use::Write)])?;
        let p = pattern.to_le_bytes();
        let mut wc = Cursor::new(&d);
        let uniform = p.iter().all(|&b| b == p[0]);
        // CHUNK is a multiple of 4, so every chunk starts on a pattern boundary.
        let buf: Vec<u8> = if uniform { Vec::new() } else { (0..size.min(CHUNK)).map(|i| p[i as usize % 4]).collect() };
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK);
            if uniform {
                wc.fill(n, p[0])?;
            } else {
                wc.write(&buf[..n as usize])?;
            }
            left -= n;
            if left > 0 && self.ctl.stopped() {
                return Err(Abort::Stopped);
            }
        }
        Ok(())
    }

    fn reduce(&self, src: u64, dst: u64, count: u64, op: ReduceOp, dtype: DType) -> Result<(), Abort> {
        let bytes = count.checked_mul(dtype.size() as u64).ok_or_else(|| device("REDUCE size overflows"))?;
        let [s, d] = self.resolve([(src, bytes, Use::Read), (dst, bytes, Use::ReadWrite)])?;
        let len = bytes.min(CHUNK) as usize;
        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
        let (mut rc, mut dc) = (Cursor::new(&s), Cursor::new(&d));
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            let mut wc = dc.clone();
            rc.read(&mut a[..n])?;
            dc.read(&mut b[..n])?;
            combine(op, dtype, &a[..n], &mut b[..n]);
            wc.write(&b[..n])?;
            left -= n as u64;
            if left > 0 && self.ctl.stopped() {
                return Err(Abort::Stopped);
            }
        }
        Ok(())
    }
}

fn width_bytes(width: u32) -> Result<usize, Abort> {
    match width {
        4 => Ok(4),
        8 => Ok(8),
        w => Err(device(format!("width {w} is not 4 or 8"))),
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) fn monotonic_ns() -> Result<u64, Abort> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| device(format!("clock_gettime: {e}")))?;
    let ns = i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
    u64::try_from(ns).map_err(|_| device("clock out of range"))
}

/// `d[i] = f(d[i], s[i])` over little-endian elements of `W` bytes.
fn zip_elems<const W: usize>(s: &[u8], d: &mut [u8], f: impl Fn([u8; W], [u8; W]) -> [u8; W]) {
    for (x, y) in s.chunks_exact(W).zip(d.chunks_exact_mut(W)) {
        if let (Ok(xs), Ok(ys)) = (<[u8; W]>::try_from(x), <[u8; W]>::try_from(&*y)) {
            y.copy_from_slice(&f(ys, xs));
        }
    }
}

/// `dst[i] = op(dst[i], src[i])`: integers wrap on SUM, f32 follows IEEE-754 (`f32::min`/`max`).
fn combine(op: ReduceOp, dtype: DType, src: &[u8], dst: &mut [u8]) {
    macro_rules! int {
        ($t:ty) => {
            zip_elems(src, dst, |d, s| {
                let (d, s) = (<$t>::from_le_bytes(d), <$t>::from_le_bytes(s));
                match op {
                    ReduceOp::Sum => d.wrapping_add(s),
                    ReduceOp::Min => d.min(s),
                    ReduceOp::Max => d.max(s),
                }
                .to_le_bytes()
            })
        };
    }
    match dtype {
        DType::F32 => zip_elems(src, dst, |d, s| {
            let (d, s) = (f32::from_le_bytes(d), f32::from_le_bytes(s));
            match op {
                ReduceOp::Sum => d + s,
                ReduceOp::Min => d.min(s),
                ReduceOp::Max => d.max(s),
            }
            .to_le_bytes()
        }),
        DType::I32 => int!(i32),
        DType::U32 => int!(u32),
        DType::U64 => int!(u64),
    }
}
