//! Job execution through the `Driver` trait: every portable command byte for
//! byte, page faults, waits, resets, fault injection and queue lifetimes.

use super::*;
use accel_core::cmd::PortableCmd;
use accel_core::driver::{JobChunk, JobFault};
use accel_uapi::flags::FaultAccess;
use accel_uapi::types::{CmpOp, DType, ReduceOp};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{OnceLock, Weak};
use std::time::Instant;

const PAGE: u64 = 4096;
const R: VmBindFlags = VmBindFlags::READ;
const W: VmBindFlags = VmBindFlags::WRITE;
const RW: VmBindFlags = VmBindFlags::READ.union(VmBindFlags::WRITE);
/// Generous bound for "eventually" (never reached when things work).
const LONG: Duration = Duration::from_secs(5);

type Done = (u64, Result<(), JobFault>);

/// Records every completion (and the reporting thread's name) through a channel.
struct ChanSink {
    tx: Mutex<Sender<Done>>,
    threads: Mutex<Vec<String>>,
}

impl JobSink for ChanSink {
    fn job_done(&self, seqno: u64, result: Result<(), JobFault>) {
        self.threads.lock().push(std::thread::current().name().unwrap_or("").to_string());
        let _ = self.tx.lock().send((seqno, result));
    }
}

struct Rig {
    drv: Arc<MockDriver>,
    vm: VmId,
    allocs: Vec<Allocation>,
    maps: Vec<(u64, u64)>,
}

struct Q {
    id: HwQueueId,
    rx: Receiver<Done>,
    sink: Arc<ChanSink>,
}

impl Q {
    fn done(&self) -> Done {
        self.rx.recv_timeout(LONG).expect("job reported")
    }

    /// Nothing is reported for `ms` milliseconds.
    fn quiet(&self, ms: u64) {
        assert_eq!(self.rx.recv_timeout(Duration::from_millis(ms)).err(), Some(RecvTimeoutError::Timeout));
    }
}

impl Rig {
    fn new() -> Rig {
        Rig::with(MockConfig::default())
    }

    fn with(cfg: MockConfig) -> Rig {
        let drv = MockDriver::new(cfg);
        let vm = drv.vm_create().unwrap();
        Rig { drv, vm, allocs: Vec::new(), maps: Vec::new() }
    }

    /// Back `[va, va + len)` with a fresh allocation mapped with `perms`.
    fn map(&mut self, va: u64, len: u64, perms: VmBindFlags) {
        let alloc = self.drv.alloc(REGION_HOST, len).unwrap();
        let up = VmUpdate::Map { va, len, alloc: &alloc, offset: 0, perms };
        self.drv.vm_bind(self.vm, &[up]).unwrap();
        self.allocs.push(alloc);
        self.maps.push((va, len));
    }

    fn queue(&self) -> Q {
        let (tx, rx) = channel();
        let sink = Arc::new(ChanSink { tx: Mutex::new(tx), threads: Mutex::new(Vec::new()) });
        let id = self.drv.queue_create(self.vm, EngineClass::Compute, Priority::Normal, sink.clone()).unwrap();
        Q { id, rx, sink }
    }

    fn run(&self, q: &Q, seqno: u64, cmds: Vec<PortableCmd>) {
        self.drv.run_job(q.id, Job { seqno, chunks: vec![JobChunk::Portable(cmds)] }).unwrap();
    }

    /// Run one job and wait for its result.
    fn exec(&self, q: &Q, cmds: Vec<PortableCmd>) -> Result<(), JobFault> {
        self.run(q, 1, cmds);
        let (s, r) = q.done();
        assert_eq!(s, 1);
        r
    }

    /// Host access to VA (page by page, through the page tables).
    fn access(&self, va: u64, len: usize, mut f: impl FnMut(&HostMemory, u64, std::ops::Range<usize>)) {
        let mut at = 0usize;
        while at < len {
            let a = va + at as u64;
            let n = ((PAGE - a % PAGE) as usize).min(len - at);
            let (host, off, _) = self.drv.translate(self.vm, a).expect("mapped");
            f(&host, off, at..at + n);
            at += n;
        }
    }

    fn read(&self, va: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.access(va, len, |h, off, r| h.read(off, &mut out[r]).unwrap());
        out
    }

    fn write(&self, va: u64, bytes: &[u8]) {
        self.access(va, bytes.len(), |h, off, r| h.write(off, &bytes[r]).unwrap());
    }

    fn u64_at(&self, va: u64) -> u64 {
        u64::from_le_bytes(self.read(va, 8).try_into().unwrap())
    }

    /// Destroy `queues`, unmap and free everything; every counter must be idle.
    fn finish(self, queues: &[&Q]) {
        for q in queues {
            self.drv.queue_destroy(q.id);
        }
        for &(va, len) in &self.maps {
            self.drv.vm_bind(self.vm, &[VmUpdate::Unmap { va, len }]).unwrap();
        }
        for a in self.allocs {
            self.drv.free(a);
        }
        self.drv.vm_destroy(self.vm);
        assert_eq!(self.drv.stats(), MockStats::default());
    }
}

fn wv(addr: u64, value: u64, width: u32) -> PortableCmd {
    PortableCmd::WriteValue { addr, value, width }
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < LONG, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn caps_and_queue_create_rules() {
    let rig = Rig::with(MockConfig { copy_engines: 0, ..Default::default() });
    let caps = rig.drv.caps();
    assert!(caps.contains(Caps::SUBMIT | Caps::PORTABLE_CS | Caps::SYNCOBJ | Caps::SYNCOBJ_TIMELINE));
    assert!(caps.contains(Caps::SYNCOBJ_SHARE | Caps::CONTEXT_QUERY | Caps::MEMORY | Caps::BO_SHARE));
    assert!(!caps.contains(Caps::NATIVE_CS));
    assert_eq!(rig.drv.validate_native(rig.vm, &[0; 8]), Err(DriverError::NotSupported));
    let (tx, _rx) = channel();
    let sink: Arc<dyn JobSink> = Arc::new(ChanSink { tx: Mutex::new(tx), threads: Mutex::new(Vec::new()) });
    for class in [EngineClass::Fabric, EngineClass::Copy] {
        let r = rig.drv.queue_create(rig.vm, class, Priority::Normal, sink.clone());
        assert_eq!(r, Err(DriverError::NotSupported), "{class:?}");
    }
    let r = rig.drv.queue_create(VmId(999), EngineClass::Compute, Priority::Normal, sink.clone());
    assert!(matches!(r, Err(DriverError::Invalid(_))));
    assert_eq!(rig.drv.stats().live_queues, 0);
    let q1 = rig.drv.queue_create(rig.vm, EngineClass::Compute, Priority::High, sink.clone()).unwrap();
    let q2 = rig.drv.queue_create(rig.vm, EngineClass::Compute, Priority::Low, sink).unwrap();
    assert_ne!(q1, q2);
    assert_eq!(rig.drv.stats().live_queues, 2);
    rig.drv.queue_destroy(q1);
    rig.drv.queue_destroy(q2);
    rig.finish(&[]);
}

#[test]
fn copy_spans_mappings_of_different_memory() {
    let mut rig = Rig::new();
    let (src, dst) = (0x10_0000, 0x20_0000);
    rig.map(src, PAGE, R);
    rig.map(src + PAGE, PAGE, R);
    rig.map(dst, PAGE, W);
    rig.map(dst + PAGE, 2 * PAGE, RW);
    let data: Vec<u8> = (0..2 * PAGE as usize).map(|i| (i * 7 % 251) as u8).collect();
    rig.write(src, &data);
    // The two source pages really are different memory.
    assert!(!Arc::ptr_eq(
        &rig.drv.translate(rig.vm, src).unwrap().0,
        &rig.drv.translate(rig.vm, src + PAGE).unwrap().0
    ));
    let q = rig.queue();
    let r = rig.exec(&q, vec![PortableCmd::Copy { src: src + 0x400, dst: dst + 0x100, size: 0x1800 }]);
    assert_eq!(r, Ok(()));
    let out = rig.read(dst, 3 * PAGE as usize);
    assert_eq!(&out[..0x100], &[0u8; 0x100][..]);
    assert_eq!(&out[0x100..0x1900], &data[0x400..0x1c00]);
    assert!(out[0x1900..].iter().all(|&b| b == 0));
    assert!(q.sink.threads.lock().iter().all(|n| n == &format!("accel-mock-q{}", q.id.0)));
    rig.finish(&[&q]);
}

#[test]
fn fill_repeats_the_pattern_little_endian() {
    let mut rig = Rig::new();
    let va = 0x10_0000;
    rig.map(va, PAGE, W);
    rig.map(va + PAGE, PAGE, RW);
    let q = rig.queue();
    let cmds = vec![
        PortableCmd::Fill { dst: va + 8, size: 0x1ff0, pattern: 0xdead_beef },
        PortableCmd::Fill { dst: va + 0x1ff8, size: 4, pattern: 0x4141_4141 },
    ];
    assert_eq!(rig.exec(&q, cmds), Ok(()));
    let out = rig.read(va, 2 * PAGE as usize);
    assert_eq!(&out[..8], &[0; 8]);
    for c in out[8..0x1ff8].chunks(4) {
        assert_eq!(c, [0xef, 0xbe, 0xad, 0xde]);
    }
    assert_eq!(&out[0x1ff8..], &[0x41, 0x41, 0x41, 0x41, 0, 0, 0, 0]);
    rig.finish(&[&q]);
}

#[test]
fn write_value_stores_4_or_8_bytes_le() {
    let mut rig = Rig::new();
    let va = 0x10_0000;
    rig.map(va, PAGE, RW);
    rig.write(va, &[0xff; 32]);
    let q = rig.queue();
    let r = rig.exec(&q, vec![wv(va + 4, 0x1122_3344, 4), wv(va + 16, 0x0102_0304_0506_0708, 8), PortableCmd::Barrier]);
    assert_eq!(r, Ok(()));
    let mut want = [0xffu8; 32];
    want[4..8].copy_from_slice(&[0x44, 0x33, 0x22, 0x11]);
    want[16..24].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(rig.read(va, 32), want);
    rig.finish(&[&q]);
}

#[test]
fn timestamps_are_monotonic_nanoseconds() {
    let mut rig = Rig::new();
    let va = 0x10_0000;
    rig.map(va, PAGE, W);
    let q = rig.queue();
    let before = exec::monotonic_ns().unwrap();
    let r = rig.exec(&q, vec![PortableCmd::Timestamp { dst: va }, PortableCmd::Timestamp { dst: va + 8 }]);
    let after = exec::monotonic_ns().unwrap();
    assert_eq!(r, Ok(()));
    let (t1, t2) = (rig.u64_at(va), rig.u64_at(va + 8));
    assert!(t1 > 0 && before <= t1 && t1 <= t2 && t2 <= after, "{before} {t1} {t2} {after}");
    rig.finish(&[&q]);
}

/// Run `dst = op(dst, src)` on little-endian element bytes; the destination straddles two mappings.
fn reduce(op: ReduceOp, dtype: DType, src: &[u8], dst: &[u8]) -> Vec<u8> {
    let mut rig = Rig::new();
    let (s, d) = (0x10_0000, 0x20_0000);
    rig.map(s, PAGE, R);
    rig.map(d, PAGE, RW);
    rig.map(d + PAGE, PAGE, RW);
    let dva = d + PAGE - 8; // the elements cross into the second mapping
    rig.write(s, src);
    rig.write(dva, dst);
    let q = rig.queue();
    let count = (src.len() / dtype.size()) as u64;
    assert_eq!(rig.exec(&q, vec![PortableCmd::Reduce { src: s, dst: dva, count, op, dtype }]), Ok(()));
    let out = rig.read(dva, dst.len());
    rig.finish(&[&q]);
    out
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

#[test]
fn reduce_integers_wrap_and_compare_by_type() {
    let (a, b) = ([i32::MAX, -5, 7, i32::MIN], [1, 3, -9, -1]);
    let i = |v: &[i32]| le(v, i32::to_le_bytes);
    assert_eq!(reduce(ReduceOp::Sum, DType::I32, &i(&b), &i(&a)), i(&[i32::MIN, -2, -2, i32::MAX]));
    assert_eq!(reduce(ReduceOp::Min, DType::I32, &i(&b), &i(&a)), i(&[1, -5, -9, i32::MIN]));
    assert_eq!(reduce(ReduceOp::Max, DType::I32, &i(&b), &i(&a)), i(&[i32::MAX, 3, 7, -1]));

    let (a, b) = ([u32::MAX, 5, 0x8000_0000, 0], [2, 3, 0x8000_0000, 9]);
    let u = |v: &[u32]| le(v, u32::to_le_bytes);
    assert_eq!(reduce(ReduceOp::Sum, DType::U32, &u(&b), &u(&a)), u(&[1, 8, 0, 9]));
    assert_eq!(reduce(ReduceOp::Min, DType::U32, &u(&b), &u(&a)), u(&[2, 3, 0x8000_0000, 0]));
    assert_eq!(reduce(ReduceOp::Max, DType::U32, &u(&b), &u(&a)), u(&[u32::MAX, 5, 0x8000_0000, 9]));

    let (a, b) = ([u64::MAX, 1 << 63, 10], [1, 1 << 63, 1 << 40]);
    let l = |v: &[u64]| le(v, u64::to_le_bytes);
    assert_eq!(reduce(ReduceOp::Sum, DType::U64, &l(&b), &l(&a)), l(&[0, 0, 10 + (1 << 40)]));
    assert_eq!(reduce(ReduceOp::Min, DType::U64, &l(&b), &l(&a)), l(&[1, 1 << 63, 10]));
    assert_eq!(reduce(ReduceOp::Max, DType::U64, &l(&b), &l(&a)), l(&[u64::MAX, 1 << 63, 1 << 40]));
}

#[test]
fn reduce_f32_is_ieee() {
    let a = [1.5f32, -0.25, 3e38, f32::NAN, 2.0, -7.0];
    let b = [2.25f32, 0.25, 3e38, 1.0, f32::INFINITY, -8.5];
    let f = |v: &[f32]| le(v, f32::to_le_bytes);
    let sum = reduce(ReduceOp::Sum, DType::F32, &f(&b), &f(&a));
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    // Byte-exact except the NaN lane, whose payload is not specified.
    let got: Vec<f32> = sum.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(got[3].is_nan());
    assert_eq!(got[2], f32::INFINITY, "overflow rounds to infinity");
    for i in [0, 1, 2, 4, 5] {
        assert_eq!(got[i].to_bits(), want[i].to_bits(), "lane {i}");
    }
    assert_eq!(reduce(ReduceOp::Min, DType::F32, &f(&b), &f(&a)), f(&[1.5, -0.25, 3e38, 1.0, 2.0, -8.5]));
    assert_eq!(reduce(ReduceOp::Max, DType::F32, &f(&b), &f(&a)), f(&[2.25, 0.25, 3e38, 1.0, f32::INFINITY, -7.0]));
}

#[test]
fn page_fault_on_unmapped_address_stops_the_job() {
    let mut rig = Rig::new();
    let (src, dst, flag) = (0x10_0000, 0x20_0000, 0x30_0000);
    rig.map(src, 2 * PAGE, R);
    rig.map(dst, PAGE, RW); // dst + PAGE is unmapped
    rig.map(flag, PAGE, RW);
    rig.write(src, &[0xaa; 2 * PAGE as usize]);
    let q = rig.queue();
    let cmds = vec![
        wv(flag, 1, 8),
        PortableCmd::Copy { src, dst, size: 2 * PAGE },
        wv(flag + 8, 2, 8), // never runs
    ];
    assert_eq!(rig.exec(&q, cmds), Err(JobFault::PageFault { addr: dst + PAGE, access: FaultAccess::WRITE }));
    assert_eq!(rig.u64_at(flag), 1, "commands before the fault keep their effects");
    assert_eq!(rig.u64_at(flag + 8), 0, "commands after it do not run");
    assert_eq!(rig.read(dst, PAGE as usize), vec![0; PAGE as usize], "the faulting command wrote nothing");
    // A read of an unmapped source.
    let r = rig.exec(&q, vec![PortableCmd::Copy { src: 0x50_0000, dst, size: 8 }]);
    assert_eq!(r, Err(JobFault::PageFault { addr: 0x50_0000, access: FaultAccess::READ }));
    // The first fault in element order wins: dst faults 0x800 bytes in, src only 0xc00 bytes in...
    let r = rig.exec(&q, vec![PortableCmd::Copy { src: src + 0x1400, dst: dst + 0x800, size: PAGE }]);
    assert_eq!(r, Err(JobFault::PageFault { addr: dst + PAGE, access: FaultAccess::WRITE }));
    // ...and here src faults 0x800 bytes in, dst only 0xf00 bytes in.
    let r = rig.exec(&q, vec![PortableCmd::Copy { src: src + 0x1800, dst: dst + 0x100, size: PAGE }]);
    assert_eq!(r, Err(JobFault::PageFault { addr: src + 2 * PAGE, access: FaultAccess::READ }));
    // The queue keeps going.
    assert_eq!(rig.exec(&q, vec![wv(flag + 8, 3, 8)]), Ok(()));
    assert_eq!(rig.u64_at(flag + 8), 3);
    rig.finish(&[&q]);
}

#[test]
fn page_fault_on_missing_permission() {
    let mut rig = Rig::new();
    let (ro, wo, rw) = (0x10_0000, 0x20_0000, 0x30_0000);
    rig.map(ro, PAGE, R);
    rig.map(wo, PAGE, W);
    rig.map(rw, PAGE, RW);
    let q = rig.queue();
    let fault = |addr, access| Err(JobFault::PageFault { addr, access });
    let (rd, wr) = (FaultAccess::READ, FaultAccess::WRITE);
    assert_eq!(rig.exec(&q, vec![PortableCmd::Fill { dst: ro + 16, size: 8, pattern: 1 }]), fault(ro + 16, wr));
    assert_eq!(rig.exec(&q, vec![wv(ro, 1, 4)]), fault(ro, wr));
    assert_eq!(rig.exec(&q, vec![PortableCmd::Timestamp { dst: ro + 8 }]), fault(ro + 8, wr));
    assert_eq!(rig.exec(&q, vec![PortableCmd::Copy { src: wo, dst: rw, size: 8 }]), fault(wo, rd));
    let wait = PortableCmd::WaitValue { addr: wo, value: 0, mask: !0, timeout_ns: 0, op: CmpOp::Eq, width: 8 };
    assert_eq!(rig.exec(&q, vec![wait]), fault(wo, rd));
    let red = |src, dst| PortableCmd::Reduce { src, dst, count: 2, op: ReduceOp::Sum, dtype: DType::U32 };
    assert_eq!(rig.exec(&q, vec![red(rw, ro)]), fault(ro, wr), "REDUCE writes its destination");
    assert_eq!(rig.exec(&q, vec![red(rw, wo)]), fault(wo, rd), "REDUCE reads its destination");
    assert_eq!(rig.exec(&q, vec![red(wo, rw)]), fault(wo, rd));
    assert_eq!(rig.exec(&q, vec![red(ro, rw)]), Ok(()));
    assert_eq!(rig.read(ro, 32), vec![0; 32]);
    rig.finish(&[&q]);
}

#[test]
fn wait_value_waits_for_a_later_write() {
    let mut rig = Rig::new();
    let (sem, flag) = (0x10_0000, 0x20_0000);
    rig.map(sem, PAGE, RW);
    rig.map(flag, PAGE, RW);
    let q = rig.queue();
    let wait = PortableCmd::WaitValue { addr: sem, value: 5, mask: 0xff, timeout_ns: 0, op: CmpOp::Ge, width: 4 };
    rig.run(&q, 7, vec![wait, wv(flag, 1, 4)]);
    q.quiet(20);
    rig.write(sem, &0x104u32.to_le_bytes()); // masked: 4 < 5
    q.quiet(10);
    assert_eq!(rig.u64_at(flag), 0);
    rig.write(sem, &0x205u32.to_le_bytes()); // masked: 5 >= 5
    assert_eq!(q.done(), (7, Ok(())));
    assert_eq!(rig.u64_at(flag), 1);
    // An 8-byte wait compares the whole word.
    rig.write(sem, &(3u64 << 32).to_le_bytes());
    let wait = PortableCmd::WaitValue { addr: sem, value: 3 << 32, mask: !0, timeout_ns: 0, op: CmpOp::Eq, width: 8 };
    assert_eq!(rig.exec(&q, vec![wait]), Ok(()));
    rig.finish(&[&q]);
}

#[test]
fn wait_value_times_out() {
    let mut rig = Rig::new();
    let sem = 0x10_0000;
    rig.map(sem, PAGE, RW);
    let q = rig.queue();
    let wait = PortableCmd::WaitValue { addr: sem, value: 1, mask: !0, timeout_ns: 3_000_000, op: CmpOp::Eq, width: 8 };
    let t = Instant::now();
    assert_eq!(rig.exec(&q, vec![wait, wv(sem + 8, 1, 8)]), Err(JobFault::Timeout));
    assert!(t.elapsed() >= Duration::from_millis(3));
    assert_eq!(rig.u64_at(sem + 8), 0);
    assert_eq!(rig.exec(&q, vec![wv(sem + 8, 2, 8)]), Ok(()));
    rig.finish(&[&q]);
}

#[test]
fn reset_aborts_a_wait_and_reruns_the_jobs_behind_it() {
    let mut rig = Rig::new();
    let sem = 0x10_0000;
    rig.map(sem, PAGE, RW);
    let q = rig.queue();
    let wait = PortableCmd::WaitValue { addr: sem, value: 1, mask: !0, timeout_ns: 0, op: CmpOp::Eq, width: 4 };
    rig.run(&q, 1, vec![wait, wv(sem + 8, 1, 8)]);
    rig.run(&q, 2, vec![wv(sem + 16, 2, 8)]);
    q.quiet(20);
    // A reset naming a job that is not the one executing leaves the engine alone.
    rig.drv.reset_queue(q.id, 2).unwrap();
    q.quiet(20);
    let t = Instant::now();
    rig.drv.reset_queue(q.id, 1).unwrap();
    assert_eq!(q.done(), (1, Err(JobFault::Cancelled)));
    assert!(t.elapsed() < Duration::from_millis(500), "reset is prompt");
    assert_eq!(q.done(), (2, Ok(())));
    assert_eq!((rig.u64_at(sem + 8), rig.u64_at(sem + 16)), (0, 2));
    // A reset of an idle queue changes nothing.
    rig.drv.reset_queue(q.id, 1).unwrap();
    assert_eq!(rig.exec(&q, vec![wv(sem + 24, 3, 8)]), Ok(()));
    assert_eq!(rig.drv.totals(), MockTotals { jobs_run: 3, resets: 3 });
    rig.finish(&[&q]);
}

#[test]
fn hung_job_is_cancelled_by_reset_and_the_queue_goes_on() {
    let mut rig = Rig::with(MockConfig { hang_job_at: Some(2), ..Default::default() });
    let va = 0x10_0000;
    rig.map(va, PAGE, RW);
    let q = rig.queue();
    for s in 1..=3 {
        rig.run(&q, s, vec![wv(va + 8 * s, s, 8)]);
    }
    assert_eq!(q.done(), (1, Ok(())));
    q.quiet(30);
    assert_eq!(rig.drv.totals(), MockTotals { jobs_run: 1, resets: 0 });
    rig.drv.reset_queue(q.id, 2).unwrap();
    assert_eq!(q.done(), (2, Err(JobFault::Cancelled)));
    assert_eq!(q.done(), (3, Ok(())));
    assert_eq!((rig.u64_at(va + 8), rig.u64_at(va + 16), rig.u64_at(va + 24)), (1, 0, 3));
    assert_eq!(rig.drv.totals(), MockTotals { jobs_run: 3, resets: 1 });
    rig.finish(&[&q]);
}

#[test]
fn injected_failure_and_completion_delay() {
    let mut rig = Rig::with(MockConfig { fail_job_at: Some(1), completion_delay_us: 3000, ..Default::default() });
    let va = 0x10_0000;
    rig.map(va, PAGE, RW);
    let q = rig.queue();
    let t = Instant::now();
    assert_eq!(rig.exec(&q, vec![wv(va, 1, 8)]), Err(JobFault::Device("injected failure".into())));
    assert_eq!(rig.u64_at(va), 0, "the failed job's commands did not run");
    assert_eq!(rig.exec(&q, vec![wv(va, 2, 8)]), Ok(()));
    assert_eq!(rig.u64_at(va), 2);
    assert!(t.elapsed() >= Duration::from_millis(6), "both completions were delayed");
    rig.finish(&[&q]);
}

#[test]
fn native_chunks_fail_the_job() {
    let rig = Rig::new();
    let q = rig.queue();
    rig.drv.run_job(q.id, Job { seqno: 9, chunks: vec![JobChunk::Native(vec![0; 8])] }).unwrap();
    assert!(matches!(q.done(), (9, Err(JobFault::Device(_)))));
    rig.finish(&[&q]);
}

#[test]
fn a_thousand_jobs_complete_in_fifo_order() {
    let mut rig = Rig::new();
    let va = 0x10_0000;
    rig.map(va, PAGE, RW);
    let q = rig.queue();
    for s in 1..=1000u64 {
        rig.run(&q, s, vec![wv(va, s, 8), wv(va + 8 * (s % 256), s, 8)]);
    }
    for s in 1..=1000u64 {
        assert_eq!(q.done(), (s, Ok(())));
    }
    assert_eq!(rig.u64_at(va), 1000);
    assert_eq!(rig.drv.totals().jobs_run, 1000);
    rig.finish(&[&q]);
}

#[test]
fn queue_destroy_drops_pending_jobs_and_releases_the_sink() {
    let mut rig = Rig::new();
    let sem = 0x10_0000;
    rig.map(sem, PAGE, RW);
    let q = rig.queue();
    let wait = PortableCmd::WaitValue { addr: sem, value: 1, mask: !0, timeout_ns: 0, op: CmpOp::Eq, width: 4 };
    rig.run(&q, 1, vec![wait]);
    rig.run(&q, 2, vec![wv(sem + 8, 2, 8)]);
    assert_eq!(rig.drv.stats().live_queues, 1);
    rig.drv.queue_destroy(q.id);
    assert_eq!(rig.drv.stats().live_queues, 0);
    eventually("the worker exits and drops its sink", || Arc::strong_count(&q.sink) == 1);
    assert_eq!(q.rx.try_recv().err(), Some(std::sync::mpsc::TryRecvError::Empty), "nothing reported");
    assert_eq!(rig.u64_at(sem + 8), 0);
    assert!(matches!(rig.drv.run_job(q.id, Job { seqno: 3, chunks: vec![] }), Err(DriverError::Invalid(_))));
    assert!(matches!(rig.drv.reset_queue(q.id, 2), Err(DriverError::Invalid(_))));
    assert_eq!(rig.drv.stats().bad_queue_ops, 2);
    assert_eq!(rig.drv.totals().jobs_run, 0);
}

/// Destroys its own queue from inside `job_done`, on the worker thread.
struct SelfDestruct {
    drv: Weak<MockDriver>,
    queue: OnceLock<HwQueueId>,
    tx: Mutex<Sender<Done>>,
}

impl JobSink for SelfDestruct {
    fn job_done(&self, seqno: u64, result: Result<(), JobFault>) {
        if let (Some(d), Some(q)) = (self.drv.upgrade(), self.queue.get()) {
            d.queue_destroy(*q);
        }
        let _ = self.tx.lock().send((seqno, result));
    }
}

#[test]
fn queue_destroy_from_the_workers_own_thread() {
    let rig = Rig::new();
    let (tx, rx) = channel();
    let sink = Arc::new(SelfDestruct { drv: Arc::downgrade(&rig.drv), queue: OnceLock::new(), tx: Mutex::new(tx) });
    let id = rig.drv.queue_create(rig.vm, EngineClass::Compute, Priority::Normal, sink.clone()).unwrap();
    sink.queue.set(id).unwrap();
    rig.drv.run_job(id, Job { seqno: 1, chunks: vec![] }).unwrap();
    rig.drv.run_job(id, Job { seqno: 2, chunks: vec![] }).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), (1, Ok(())));
    eventually("the worker exits", || Arc::strong_count(&sink) == 1);
    assert!(rx.try_recv().is_err(), "job 2 was dropped unreported");
    rig.finish(&[]);
}

#[test]
fn dropping_the_driver_stops_its_workers() {
    let rig = Rig::new();
    let q = rig.queue();
    let Rig { drv, .. } = rig;
    drop(drv);
    eventually("the worker exits", || Arc::strong_count(&q.sink) == 1);
}

#[test]
fn large_commands_cross_chunks_and_mappings() {
    const MB: u64 = 1 << 20;
    let mut rig = Rig::new();
    let (a, b) = (0x1000_0000, 0x2000_0000);
    // Each operand is three mappings of different memory: 1 MiB + 4 KiB, 1 MiB - 4 KiB, 1 MiB.
    for base in [a, b] {
        rig.map(base, MB + PAGE, RW);
        rig.map(base + MB + PAGE, MB - PAGE, RW);
        rig.map(base + 2 * MB, MB, RW);
    }
    let len = 3 * MB - 16;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    rig.write(a + 8, &data);
    let q = rig.queue();
    assert_eq!(rig.exec(&q, vec![PortableCmd::Copy { src: a + 8, dst: b + 8, size: len }]), Ok(()));
    assert!(rig.read(b + 8, len as usize) == data, "copy");
    let r = rig.exec(&q, vec![PortableCmd::Fill { dst: b + 4, size: 3 * MB - 8, pattern: 0x0403_0201 }]);
    assert_eq!(r, Ok(()));
    let out = rig.read(b, 3 * MB as usize);
    assert!(out[4..out.len() - 4].chunks(4).all(|c| c == [1, 2, 3, 4]), "fill");
    assert_eq!((&out[..4], &out[out.len() - 4..]), (&[0u8; 4][..], &[0u8; 4][..]));
    let count = (3 * MB - 8) / 4;
    let r =
        rig.exec(&q, vec![PortableCmd::Reduce { src: b + 4, dst: a + 4, count, op: ReduceOp::Sum, dtype: DType::U32 }]);
    assert_eq!(r, Ok(()));
    let sum = rig.read(a + 4, (count * 4) as usize);
    let before = rig.read(b + 4, (count * 4) as usize); // the source still holds the pattern
    let mut orig = vec![0u8; 4];
    orig.extend_from_slice(&data);
    orig.resize((count * 4) as usize, 0); // what a + 4 held: zeros around the copied data
    for (i, c) in sum.chunks(4).enumerate() {
        let o = u32::from_le_bytes(orig[4 * i..4 * i + 4].try_into().unwrap());
        let s = u32::from_le_bytes(before[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(u32::from_le_bytes(c.try_into().unwrap()), o.wrapping_add(s), "element {i}");
    }
    rig.finish(&[&q]);
}
