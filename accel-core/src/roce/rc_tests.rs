//! End-to-end tests of the RC engine over a [`VirtualSwitch`].

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accel_uapi::types::{WcOpcode, WcStatus};

use super::engine::{RcConfig, RcDriver, RcQp, RecvWr, SendOp, SendWr, Wc};
use super::mr::{Access, MemRegions};
use crate::fabric::link::{Faults, VirtualSwitch, gid_from_ipv4};

const BUF: u64 = 0x10_0000;
const BUF_LEN: usize = (1 << 20) + 8192;
const SRC_KEY: u32 = 0x11;
const DST_KEY: u32 = 0x22;
const RO_KEY: u32 = 0x33;

struct Side {
    qp: Arc<RcQp>,
    mem: Arc<MemRegions>,
}

struct Pair {
    a: Side,
    b: Side,
    _drivers: Vec<RcDriver>,
    _switch: Arc<VirtualSwitch>,
}

fn mem() -> Arc<MemRegions> {
    let m = Arc::new(MemRegions::new());
    m.register(SRC_KEY, BUF, BUF_LEN, Access::LOCAL_WRITE | Access::REMOTE_READ);
    m.register(DST_KEY, BUF, BUF_LEN, Access::LOCAL_WRITE | Access::REMOTE_WRITE);
    m.register(RO_KEY, BUF, 4096, Access::REMOTE_READ);
    m
}

fn pair_with(faults: Faults, tweak: impl Fn(&mut RcConfig)) -> Pair {
    let sw = VirtualSwitch::new(faults);
    let (ga, gb) = (gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 1)), gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 2)));
    let (la, lb) = (sw.attach(ga).unwrap(), sw.attach(gb).unwrap());
    let mut ca = RcConfig::new(0x100, gb, 0x200);
    let mut cb = RcConfig::new(0x200, ga, 0x100);
    tweak(&mut ca);
    tweak(&mut cb);
    cb.sq_psn = ca.rq_psn;
    cb.rq_psn = ca.sq_psn;
    let (ma, mb) = (mem(), mem());
    let qa = RcQp::new(ca, Arc::clone(&la), ma.clone()).unwrap();
    let qb = RcQp::new(cb, Arc::clone(&lb), mb.clone()).unwrap();
    let drivers = vec![RcDriver::spawn(la, vec![Arc::clone(&qa)]), RcDriver::spawn(lb, vec![Arc::clone(&qb)])];
    Pair { a: Side { qp: qa, mem: ma }, b: Side { qp: qb, mem: mb }, _drivers: drivers, _switch: sw }
}

fn pair(mtu: u32) -> Pair {
    pair_with(Faults::none(), |c| c.mtu = mtu)
}

fn wait(qp: &RcQp, n: usize, timeout: Duration) -> Vec<Wc> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        out.extend(qp.poll_wait(n - out.len(), left));
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 8) as u8)).collect()
}

fn wr(wr_id: u64, opcode: SendOp, key: u32, len: usize) -> SendWr {
    SendWr {
        wr_id,
        opcode,
        sges: vec![(key, BUF, len as u32)],
        remote_addr: BUF,
        rkey: DST_KEY,
        imm: 0xDEAD_BEEF,
        signaled: true,
    }
}

fn sizes(mtu: usize) -> Vec<usize> {
    vec![0, 1, mtu - 1, mtu, mtu + 1, 3 * mtu + 7]
}

const MTUS: [u32; 5] = [256, 512, 1024, 2048, 4096];
const T: Duration = Duration::from_secs(10);

fn ok(wc: &Wc, wr_id: u64, opcode: WcOpcode, len: usize) {
    assert_eq!((wc.wr_id, wc.status, wc.opcode, wc.byte_len), (wr_id, WcStatus::Success, opcode, len as u32));
}

fn check_send(p: &Pair, len: usize, op: SendOp, id: u64) {
    let data = pattern(len, id as u8);
    p.a.mem.poke(SRC_KEY, BUF, &data).unwrap();
    p.b.qp.post_recv(RecvWr { wr_id: id + 1000, sges: vec![(DST_KEY, BUF, BUF_LEN as u32)] });
    p.a.qp.post_send(wr(id, op, SRC_KEY, len)).unwrap();
    let s = wait(&p.a.qp, 1, T);
    ok(&s[0], id, WcOpcode::Send, len);
    let r = wait(&p.b.qp, 1, T);
    ok(&r[0], id + 1000, WcOpcode::Recv, len);
    assert_eq!(r[0].imm, (op == SendOp::SendWithImm).then_some(0xDEAD_BEEF));
    assert_eq!(p.b.mem.peek(DST_KEY, BUF, len).unwrap(), data, "len {len}");
}

#[test]
fn roce_rc_send_recv_all_mtus_and_sizes() {
    for mtu in MTUS {
        let p = pair(mtu);
        for (i, len) in sizes(mtu as usize).into_iter().enumerate() {
            check_send(&p, len, SendOp::Send, i as u64 * 2);
            check_send(&p, len, SendOp::SendWithImm, i as u64 * 2 + 1);
        }
    }
}

fn check_write(p: &Pair, len: usize, imm: bool, id: u64) {
    let data = pattern(len, id as u8 ^ 0x5A);
    p.a.mem.poke(SRC_KEY, BUF, &data).unwrap();
    if imm {
        p.b.qp.post_recv(RecvWr { wr_id: id + 1000, sges: vec![] });
    }
    let op = if imm { SendOp::RdmaWriteWithImm } else { SendOp::RdmaWrite };
    p.a.qp.post_send(wr(id, op, SRC_KEY, len)).unwrap();
    let s = wait(&p.a.qp, 1, T);
    ok(&s[0], id, WcOpcode::RdmaWrite, len);
    if imm {
        let r = wait(&p.b.qp, 1, T);
        ok(&r[0], id + 1000, WcOpcode::RecvRdmaWithImm, len);
        assert_eq!(r[0].imm, Some(0xDEAD_BEEF));
    }
    assert_eq!(p.b.mem.peek(DST_KEY, BUF, len).unwrap(), data, "len {len}");
}

#[test]
fn roce_rc_write_and_write_imm_all_mtus_and_sizes() {
    for mtu in MTUS {
        let p = pair(mtu);
        for (i, len) in sizes(mtu as usize).into_iter().enumerate() {
            check_write(&p, len, false, i as u64 * 2);
            check_write(&p, len, true, i as u64 * 2 + 1);
        }
    }
}

fn check_read(p: &Pair, len: usize, id: u64) {
    let data = pattern(len, id as u8 ^ 0xA5);
    p.b.mem.poke(SRC_KEY, BUF, &data).unwrap();
    p.a.mem.poke(DST_KEY, BUF, &vec![0; len]).unwrap();
    let mut w = wr(id, SendOp::RdmaRead, DST_KEY, len);
    w.rkey = SRC_KEY;
    p.a.qp.post_send(w).unwrap();
    let s = wait(&p.a.qp, 1, T);
    ok(&s[0], id, WcOpcode::RdmaRead, len);
    assert_eq!(p.a.mem.peek(DST_KEY, BUF, len).unwrap(), data, "len {len}");
}

#[test]
fn roce_rc_read_all_mtus_and_sizes() {
    for mtu in MTUS {
        let p = pair(mtu);
        for (i, len) in sizes(mtu as usize).into_iter().enumerate() {
            check_read(&p, len, i as u64);
        }
    }
}

#[test]
fn roce_rc_one_mib_send_write_read() {
    for mtu in MTUS {
        let p = pair(mtu);
        check_send(&p, 1 << 20, SendOp::Send, 1);
        check_write(&p, 1 << 20, true, 2);
        check_read(&p, 1 << 20, 3);
    }
}

#[test]
fn roce_rc_psn_wrap() {
    let p = pair_with(Faults::none(), |c| {
        c.mtu = 256;
        c.sq_psn = 0xFF_FFF0;
        c.rq_psn = 0xFF_FFF0;
    });
    // 40 packets per message crosses 2^24 on both sides.
    check_send(&p, 40 * 256, SendOp::Send, 1);
    check_write(&p, 40 * 256 - 3, false, 2);
    check_read(&p, 40 * 256 + 3, 3);
    for i in 0..20 {
        check_send(&p, 1, SendOp::Send, 10 + i);
    }
}

#[test]
fn roce_rc_rnr_then_recv_posted() {
    let p = pair_with(Faults::none(), |c| {
        c.min_rnr_timer = 12; // 0.64 ms
        c.rnr_retry = 7;
    });
    p.a.mem.poke(SRC_KEY, BUF, b"hello").unwrap();
    p.a.qp.post_send(wr(7, SendOp::Send, SRC_KEY, 5)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(p.a.qp.poll(1).is_empty());
    p.b.qp.post_recv(RecvWr { wr_id: 8, sges: vec![(DST_KEY, BUF, 64)] });
    ok(&wait(&p.a.qp, 1, T)[0], 7, WcOpcode::Send, 5);
    ok(&wait(&p.b.qp, 1, T)[0], 8, WcOpcode::Recv, 5);
    assert_eq!(p.b.mem.peek(DST_KEY, BUF, 5).unwrap(), b"hello");
}

#[test]
fn roce_rc_rnr_retry_exceeded() {
    let p = pair_with(Faults::none(), |c| {
        c.min_rnr_timer = 10; // 0.32 ms
        c.rnr_retry = 3;
    });
    p.a.qp.post_send(wr(1, SendOp::Send, SRC_KEY, 5)).unwrap();
    p.a.qp.post_send(wr(2, SendOp::Send, SRC_KEY, 5)).unwrap();
    let wcs = wait(&p.a.qp, 2, T);
    assert_eq!(wcs.len(), 2);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, WcStatus::RnrRetryExcErr));
    assert_eq!((wcs[1].wr_id, wcs[1].status), (2, WcStatus::WrFlushErr));
    assert!(p.a.qp.is_error());
    p.a.qp.post_send(wr(3, SendOp::Send, SRC_KEY, 5)).unwrap();
    assert_eq!(p.a.qp.poll(4)[0].status, WcStatus::WrFlushErr);
}

#[test]
fn roce_rc_remote_access_errors() {
    // WRITE to a key without REMOTE_WRITE.
    let p = pair(1024);
    let mut w = wr(1, SendOp::RdmaWrite, SRC_KEY, 100);
    w.rkey = SRC_KEY;
    p.a.qp.post_send(w).unwrap();
    let wcs = wait(&p.a.qp, 1, T);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, WcStatus::RemAccessErr));
    // READ beyond the region and from an unknown key.
    for (id, rkey, len) in [(2, RO_KEY, 8192), (3, 0x999, 16)] {
        let p = pair(1024);
        let mut w = wr(id, SendOp::RdmaRead, DST_KEY, len);
        w.rkey = rkey;
        p.a.qp.post_send(w).unwrap();
        let wcs = wait(&p.a.qp, 1, T);
        assert_eq!((wcs[0].wr_id, wcs[0].status), (id, WcStatus::RemAccessErr));
    }
    // A READ of a read-only region works.
    let p = pair(1024);
    let mut w = wr(4, SendOp::RdmaRead, DST_KEY, 4096);
    w.rkey = RO_KEY;
    p.a.qp.post_send(w).unwrap();
    ok(&wait(&p.a.qp, 1, T)[0], 4, WcOpcode::RdmaRead, 4096);
}

#[test]
fn roce_rc_retry_exceeded_when_peer_gone() {
    let sw = VirtualSwitch::new(Faults::none());
    let ga = gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 1));
    let gone = gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 9));
    let la = sw.attach(ga).unwrap();
    let mut c = RcConfig::new(1, gone, 2);
    c.timeout = 8; // ~1 ms
    c.retry_cnt = 3;
    let m = mem();
    let qp = RcQp::new(c, Arc::clone(&la), m).unwrap();
    let _d = RcDriver::spawn(la, vec![Arc::clone(&qp)]);
    let start = Instant::now();
    qp.post_send(wr(1, SendOp::Send, SRC_KEY, 10)).unwrap();
    qp.post_send(wr(2, SendOp::RdmaWrite, SRC_KEY, 10)).unwrap();
    let wcs = wait(&qp, 2, T);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, WcStatus::RetryExcErr));
    assert_eq!((wcs[1].wr_id, wcs[1].status), (2, WcStatus::WrFlushErr));
    assert!(start.elapsed() >= Duration::from_millis(4));
}

#[test]
fn roce_rc_sends_exactly_once_in_order_under_faults() {
    const N: usize = 10_000;
    let faults = Faults { seed: 0x5EED, loss: 0.1, reorder: 0.1, duplicate: 0.1, corrupt: 0.1, ..Faults::none() };
    let p = pair_with(faults, |c| {
        c.mtu = 256;
        // ~17 ms: well above the switch's 1 ms reorder hold, and robust when CI
        // runs other tests on the same 2 cores.
        c.timeout = 12;
        c.retry_cnt = 7;
        c.max_outstanding = 16;
    });
    for i in 0..N {
        p.b.qp.post_recv(RecvWr { wr_id: i as u64, sges: vec![(DST_KEY, BUF + i as u64 * 8, 8)] });
    }
    let start = Instant::now();
    for i in 0..N {
        p.a.mem.poke(SRC_KEY, BUF + i as u64 * 8, &(i as u64).to_le_bytes()).unwrap();
        let mut w = wr(i as u64, SendOp::Send, SRC_KEY, 8);
        w.sges = vec![(SRC_KEY, BUF + i as u64 * 8, 8)];
        p.a.qp.post_send(w).unwrap();
    }
    let sent = wait(&p.a.qp, N, Duration::from_secs(20));
    let recvd = wait(&p.b.qp, N, Duration::from_secs(5));
    let stats = p._switch.stats();
    eprintln!("{N} SENDs under faults in {:?}: {stats:?}", start.elapsed());
    assert!(stats.dropped > 0 && stats.duplicated > 0 && stats.corrupted > 0 && stats.reordered > 0);
    assert_eq!(sent.len(), N);
    assert_eq!(recvd.len(), N);
    for (i, (s, r)) in sent.iter().zip(&recvd).enumerate() {
        ok(s, i as u64, WcOpcode::Send, 8);
        ok(r, i as u64, WcOpcode::Recv, 8);
    }
    // Each receive got exactly its own message.
    for i in 0..N as u64 {
        assert_eq!(p.b.mem.peek(DST_KEY, BUF + i * 8, 8).unwrap(), i.to_le_bytes());
    }
    assert!(p.a.qp.poll(1).is_empty() && p.b.qp.poll(1).is_empty());
}

#[test]
fn roce_rc_mixed_ops_under_faults_byte_exact() {
    let faults = Faults { seed: 42, loss: 0.1, reorder: 0.1, duplicate: 0.1, corrupt: 0.1, ..Faults::none() };
    let p = pair_with(faults, |c| {
        c.mtu = 512;
        c.timeout = 12; // ~17 ms: CI runs other tests on the same 2 cores
        c.retry_cnt = 7;
        // Both directions wrap their PSNs early on.
        c.sq_psn = 0xFF_FF00;
        c.rq_psn = 0xFF_FF00;
        c.max_outstanding = 16;
    });
    let start = Instant::now();
    let mut rng = 0x1234_5678_u64;
    for id in 0..150u64 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = (rng >> 33) as usize % 5000;
        match id % 4 {
            0 => check_send(&p, len, SendOp::Send, id),
            1 => check_write(&p, len, false, id),
            2 => check_write(&p, len, true, id),
            _ => check_read(&p, len, id),
        }
    }
    eprintln!("150 mixed ops under faults in {:?}: {:?}", start.elapsed(), p._switch.stats());
}

#[test]
fn roce_rc_gather_scatter_and_unsignaled() {
    let p = pair(256);
    let data = pattern(1000, 9);
    p.a.mem.poke(SRC_KEY, BUF, &data).unwrap();
    // Three receive pieces, out of address order.
    let sges = vec![(DST_KEY, BUF + 5000, 300), (DST_KEY, BUF, 200), (DST_KEY, BUF + 9000, 600)];
    p.b.qp.post_recv(RecvWr { wr_id: 50, sges });
    let mut w = wr(1, SendOp::Send, SRC_KEY, 0);
    w.sges = vec![(SRC_KEY, BUF, 100), (SRC_KEY, BUF + 100, 900)];
    w.signaled = false;
    p.a.qp.post_send(w).unwrap();
    let mut w = wr(2, SendOp::RdmaWrite, SRC_KEY, 10);
    w.remote_addr = BUF + 20_000;
    p.a.qp.post_send(w).unwrap();
    // Only the signaled WR completes; it completes after the unsignaled one.
    let wcs = wait(&p.a.qp, 2, Duration::from_millis(300));
    assert_eq!(wcs.len(), 1);
    ok(&wcs[0], 2, WcOpcode::RdmaWrite, 10);
    ok(&wait(&p.b.qp, 1, T)[0], 50, WcOpcode::Recv, 1000);
    let got = [
        p.b.mem.peek(DST_KEY, BUF + 5000, 300).unwrap(),
        p.b.mem.peek(DST_KEY, BUF, 200).unwrap(),
        p.b.mem.peek(DST_KEY, BUF + 9000, 500).unwrap(),
    ]
    .concat();
    assert_eq!(got, data);
}

#[test]
fn roce_rc_receive_too_small() {
    let p = pair(256);
    p.b.qp.post_recv(RecvWr { wr_id: 9, sges: vec![(DST_KEY, BUF, 100)] });
    p.b.qp.post_recv(RecvWr { wr_id: 10, sges: vec![(DST_KEY, BUF, 100)] });
    p.a.qp.post_send(wr(1, SendOp::Send, SRC_KEY, 600)).unwrap();
    let wcs = wait(&p.a.qp, 1, T);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, WcStatus::RemInvReqErr));
    let r = wait(&p.b.qp, 2, T);
    assert_eq!((r[0].wr_id, r[0].status), (9, WcStatus::LocLenErr));
    assert_eq!((r[1].wr_id, r[1].status), (10, WcStatus::WrFlushErr));
}

#[test]
fn roce_rc_multi_packet_write_imm_waits_for_receive() {
    let p = pair_with(Faults::none(), |c| {
        c.mtu = 256;
        c.min_rnr_timer = 12;
    });
    let data = pattern(2000, 3);
    p.a.mem.poke(SRC_KEY, BUF, &data).unwrap();
    p.a.qp.post_send(wr(1, SendOp::RdmaWriteWithImm, SRC_KEY, 2000)).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert!(p.a.qp.poll(1).is_empty());
    p.b.qp.post_recv(RecvWr { wr_id: 2, sges: vec![] });
    ok(&wait(&p.a.qp, 1, T)[0], 1, WcOpcode::RdmaWrite, 2000);
    ok(&wait(&p.b.qp, 1, T)[0], 2, WcOpcode::RecvRdmaWithImm, 2000);
    assert_eq!(p.b.mem.peek(DST_KEY, BUF, 2000).unwrap(), data);
}

#[test]
fn roce_rc_pipelined_ops_complete_in_order() {
    for faults in [Faults::none(), Faults { seed: 7, loss: 0.05, reorder: 0.05, ..Faults::none() }] {
        let p = pair_with(faults, |c| {
            c.mtu = 1024;
            c.timeout = 12; // ~17 ms: CI runs other tests on the same 2 cores
            c.retry_cnt = 7;
            c.max_outstanding = 64;
        });
        // Remote: 8 READ sources of 3000 bytes; local: 8 WRITE/SEND sources.
        let n = 24u64;
        for i in 0..8u64 {
            p.b.mem.poke(SRC_KEY, BUF + i * 4096, &pattern(3000, i as u8)).unwrap();
            p.a.mem.poke(SRC_KEY, BUF + i * 4096, &pattern(3000, 100 + i as u8)).unwrap();
            p.b.qp.post_recv(RecvWr { wr_id: 500 + i, sges: vec![(DST_KEY, BUF + 0x8_0000 + i * 4096, 4096)] });
        }
        for id in 0..n {
            let i = id / 3;
            let mut w = match id % 3 {
                0 => {
                    let mut w = wr(id, SendOp::RdmaRead, DST_KEY, 3000);
                    w.rkey = SRC_KEY;
                    w.remote_addr = BUF + i * 4096;
                    w.sges = vec![(DST_KEY, BUF + i * 4096, 3000)];
                    w
                }
                1 => {
                    let mut w = wr(id, SendOp::RdmaWrite, SRC_KEY, 3000);
                    w.remote_addr = BUF + 0x4_0000 + i * 4096;
                    w
                }
                _ => wr(id, SendOp::Send, SRC_KEY, 3000),
            };
            if id % 3 != 0 {
                w.sges = vec![(SRC_KEY, BUF + i * 4096, 3000)];
            }
            p.a.qp.post_send(w).unwrap();
        }
        let wcs = wait(&p.a.qp, n as usize, T);
        assert_eq!(wcs.len(), n as usize);
        for (id, wc) in wcs.iter().enumerate() {
            let op = [WcOpcode::RdmaRead, WcOpcode::RdmaWrite, WcOpcode::Send][id % 3];
            ok(wc, id as u64, op, 3000);
        }
        let r = wait(&p.b.qp, 8, T);
        for i in 0..8u64 {
            ok(&r[i as usize], 500 + i, WcOpcode::Recv, 3000);
            let sent = pattern(3000, 100 + i as u8);
            assert_eq!(p.a.mem.peek(DST_KEY, BUF + i * 4096, 3000).unwrap(), pattern(3000, i as u8));
            assert_eq!(p.b.mem.peek(DST_KEY, BUF + 0x4_0000 + i * 4096, 3000).unwrap(), sent);
            assert_eq!(p.b.mem.peek(DST_KEY, BUF + 0x8_0000 + i * 4096, 3000).unwrap(), sent);
        }
    }
}

#[test]
fn roce_rc_local_errors() {
    // A READ into memory without LOCAL_WRITE fails locally; the QP flushes.
    let p = pair(1024);
    let mut w = wr(1, SendOp::RdmaRead, RO_KEY, 100);
    w.rkey = SRC_KEY;
    p.a.qp.post_send(w).unwrap();
    p.a.qp.post_send(wr(2, SendOp::RdmaWrite, SRC_KEY, 10)).unwrap();
    let wcs = wait(&p.a.qp, 2, T);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, WcStatus::LocProtErr));
    assert_eq!((wcs[1].wr_id, wcs[1].status), (2, WcStatus::WrFlushErr));
    // A SEND gathering from an unknown lkey.
    let p = pair(1024);
    p.a.qp.post_send(wr(3, SendOp::Send, 0x777, 10)).unwrap();
    assert_eq!(wait(&p.a.qp, 1, T)[0].status, WcStatus::LocProtErr);
    // Bad config and oversized messages are refused up front.
    let sw = VirtualSwitch::new(Faults::none());
    let l = sw.attach(gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 5))).unwrap();
    let mut c = RcConfig::new(1, [0; 16], 2);
    c.mtu = 1500;
    assert!(RcQp::new(c, Arc::clone(&l), mem()).is_err());
    c.mtu = 256;
    let qp = RcQp::new(c, l, mem()).unwrap();
    let mut w = wr(4, SendOp::RdmaWrite, SRC_KEY, 0);
    w.sges = vec![(SRC_KEY, BUF, u32::MAX); 2];
    assert!(qp.post_send(w).is_err());
}

/// A pair on two UDP links on 127.0.0.1 (GSO on the sender; `gro` on the
/// receiver or not), driven by port threads.
fn udp_pair(mtu: u32, gro: bool) -> Pair {
    use crate::fabric::link::{Link, UdpLink};
    use std::net::SocketAddrV4;
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let (ua, ub) = (UdpLink::bind(any).unwrap(), UdpLink::bind(any).unwrap().with_gso(gro));
    // Both are 127.0.0.1, one GID: the peer maps tell them apart.
    ua.add_peer(ub.gid(), ub.local_addr());
    ub.add_peer(ua.gid(), ua.local_addr());
    let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(ua), Arc::new(ub));
    let mut ca = RcConfig::new(0x100, lb.gid(), 0x200);
    let mut cb = RcConfig::new(0x200, la.gid(), 0x100);
    (ca.mtu, cb.mtu) = (mtu, mtu);
    cb.sq_psn = ca.rq_psn;
    cb.rq_psn = ca.sq_psn;
    let (ma, mb) = (mem(), mem());
    let qa = RcQp::new(ca, Arc::clone(&la), ma.clone()).unwrap();
    let qb = RcQp::new(cb, Arc::clone(&lb), mb.clone()).unwrap();
    let drivers = vec![RcDriver::spawn(la, vec![Arc::clone(&qa)]), RcDriver::spawn(lb, vec![Arc::clone(&qb)])];
    Pair {
        a: Side { qp: qa, mem: ma },
        b: Side { qp: qb, mem: mb },
        _drivers: drivers,
        _switch: VirtualSwitch::new(Faults::none()),
    }
}

#[test]
fn roce_rc_over_udp_with_gso_with_and_without_gro() {
    // Multi-packet messages leave in GSO batches (every packet's ICRC for its
    // IPv4 identification); the receiver either gets GRO datagrams and cuts
    // them, or gets the kernel's segments one by one and finds their
    // identifications.
    for gro in [true, false] {
        for mtu in [1024, 4096] {
            let p = udp_pair(mtu, gro);
            for (i, len) in [64 << 10, (1 << 20) + 3].into_iter().enumerate() {
                let id = i as u64 * 4;
                check_send(&p, len, SendOp::SendWithImm, id);
                check_write(&p, len, true, id + 1);
                check_write(&p, len, false, id + 2);
                check_read(&p, len, id + 3);
            }
        }
    }
}

// ----- ACK coalescing, driven by hand (no driver threads) -----

use crate::fabric::link::{Link, Received};

/// Two QPs on a perfect switch whose frames the test moves itself.
struct Manual {
    a: Side,
    b: Side,
    la: Arc<dyn Link>,
    lb: Arc<dyn Link>,
    _switch: Arc<VirtualSwitch>,
}

fn manual(max_outstanding: u32) -> Manual {
    let sw = VirtualSwitch::new(Faults::none());
    let (ga, gb) = (gid_from_ipv4(Ipv4Addr::new(10, 0, 1, 1)), gid_from_ipv4(Ipv4Addr::new(10, 0, 1, 2)));
    let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (sw.attach(ga).unwrap(), sw.attach(gb).unwrap());
    let mut ca = RcConfig::new(0x100, gb, 0x200);
    let mut cb = RcConfig::new(0x200, ga, 0x100);
    (ca.mtu, cb.mtu, ca.max_outstanding) = (256, 256, max_outstanding);
    cb.sq_psn = ca.rq_psn;
    cb.rq_psn = ca.sq_psn;
    let (ma, mb) = (mem(), mem());
    let qa = RcQp::new(ca, Arc::clone(&la), ma.clone()).unwrap();
    let qb = RcQp::new(cb, Arc::clone(&lb), mb.clone()).unwrap();
    Manual { a: Side { qp: qa, mem: ma }, b: Side { qp: qb, mem: mb }, la, lb, _switch: sw }
}

/// Every frame waiting on `link`.
fn frames(link: &Arc<dyn Link>) -> Vec<Received> {
    let mut out = Vec::new();
    while link.recv_many(16, &mut out).unwrap() == 16 {}
    out
}

/// Hands `link`'s frames to `qp`; returns whether an ACK is left due.
fn deliver(link: &Arc<dyn Link>, qp: &RcQp) -> (usize, bool) {
    let fs = frames(link);
    let mut due = false;
    for f in &fs {
        due = qp.handle_frame(f.as_frame());
    }
    (fs.len(), due)
}

#[test]
fn roce_rc_ack_waits_for_flush_and_covers_every_message() {
    let m = manual(64);
    for i in 0..3 {
        m.b.qp.post_recv(RecvWr { wr_id: 100 + i, sges: vec![(DST_KEY, BUF, 64)] });
        m.a.qp.post_send(wr(i, SendOp::Send, SRC_KEY, 64)).unwrap();
    }
    assert_eq!(deliver(&m.lb, &m.b.qp), (3, true));
    // The receives completed, but no ACK went out yet.
    assert_eq!(m.b.qp.poll(8).len(), 3);
    assert_eq!(m.lb.stats().sent, 0);
    assert!(m.b.qp.ack_due());
    assert_eq!(frames(&m.la).len(), 0);
    // One ACK covers the three messages.
    m.b.qp.flush_ack();
    assert!(!m.b.qp.ack_due());
    assert_eq!(m.lb.stats().sent, 1);
    assert_eq!(deliver(&m.la, &m.a.qp), (1, false));
    let wcs = m.a.qp.poll(8);
    assert_eq!(
        wcs.iter().map(|w| (w.wr_id, w.status)).collect::<Vec<_>>(),
        (0..3).map(|i| (i, WcStatus::Success)).collect::<Vec<_>>()
    );
    // Nothing more is due: a second flush sends nothing.
    m.b.qp.flush_ack();
    assert_eq!(m.lb.stats().sent, 1);
}

#[test]
fn roce_rc_ack_goes_at_once_after_the_coalescing_limit() {
    let m = manual(64);
    for i in 0..8 {
        m.b.qp.post_recv(RecvWr { wr_id: 100 + i, sges: vec![(DST_KEY, BUF, 64)] });
        m.a.qp.post_send(wr(i, SendOp::Send, SRC_KEY, 64)).unwrap();
    }
    // The 8th request sends the ACK for all eight at once.
    assert_eq!(deliver(&m.lb, &m.b.qp), (8, false));
    assert_eq!(m.lb.stats().sent, 1);
    deliver(&m.la, &m.a.qp);
    assert_eq!(m.a.qp.poll(16).len(), 8);
}

#[test]
fn roce_rc_mid_message_ack_request_is_answered_at_once() {
    // A window of 4 packets asks for an ACK every 2 packets of a long message.
    let m = manual(4);
    m.b.qp.post_recv(RecvWr { wr_id: 7, sges: vec![(DST_KEY, BUF, 4096)] });
    let data = pattern(10 * 256, 3);
    m.a.mem.poke(SRC_KEY, BUF, &data).unwrap();
    m.a.qp.post_send(wr(1, SendOp::Send, SRC_KEY, data.len())).unwrap();
    // 4 packets in flight; the 2nd and 4th ask for ACKs, which go at once.
    assert_eq!(deliver(&m.lb, &m.b.qp), (4, false));
    assert_eq!(m.lb.stats().sent, 2);
    // The rest of the message flows as the ACKs arrive.
    let mut rounds = 0;
    while m.b.qp.poll(1).is_empty() {
        deliver(&m.la, &m.a.qp);
        deliver(&m.lb, &m.b.qp);
        rounds += 1;
        assert!(rounds < 20, "message stuck");
    }
    assert_eq!(m.b.mem.peek(DST_KEY, BUF, data.len()).unwrap(), data);
    // The last packet's ACK is the only one left due.
    assert!(m.b.qp.ack_due());
    m.b.qp.flush_ack();
    deliver(&m.la, &m.a.qp);
    let wcs = m.a.qp.poll(4);
    assert_eq!((wcs.len(), wcs[0].status), (1, WcStatus::Success));
}

#[test]
fn roce_rc_due_ack_leaves_before_a_nak() {
    let m = manual(64);
    m.b.qp.post_recv(RecvWr { wr_id: 100, sges: vec![(DST_KEY, BUF, 64)] });
    m.a.qp.post_send(wr(1, SendOp::Send, SRC_KEY, 64)).unwrap();
    // A WRITE through a key without remote write rights: NAK.
    let mut bad = wr(2, SendOp::RdmaWrite, SRC_KEY, 64);
    bad.rkey = RO_KEY;
    m.a.qp.post_send(bad).unwrap();
    let (n, due) = deliver(&m.lb, &m.b.qp);
    assert_eq!((n, due), (2, false));
    // The ACK of the SEND, then the NAK of the WRITE.
    assert_eq!(m.lb.stats().sent, 2);
    deliver(&m.la, &m.a.qp);
    let wcs = m.a.qp.poll(4);
    assert_eq!(
        wcs.iter().map(|w| (w.wr_id, w.status)).collect::<Vec<_>>(),
        vec![(1, WcStatus::Success), (2, WcStatus::RemAccessErr)]
    );
}

#[test]
fn roce_rc_error_state_sends_the_due_ack_first() {
    let m = manual(64);
    m.b.qp.post_recv(RecvWr { wr_id: 100, sges: vec![(DST_KEY, BUF, 64)] });
    m.a.qp.post_send(wr(1, SendOp::Send, SRC_KEY, 64)).unwrap();
    assert_eq!(deliver(&m.lb, &m.b.qp), (1, true));
    m.b.qp.set_error();
    assert_eq!(m.lb.stats().sent, 1);
    deliver(&m.la, &m.a.qp);
    let wcs = m.a.qp.poll(4);
    assert_eq!((wcs.len(), wcs[0].status), (1, WcStatus::Success));
}

/// A link with segmentation offload that records what it is asked to
/// send: (the bytes of each gather send, its segment size).
struct Recorder {
    gid: crate::fabric::link::Gid,
    sends: parking_lot::Mutex<Vec<(Vec<u8>, usize)>>,
}

impl Link for Recorder {
    fn gid(&self) -> crate::fabric::link::Gid {
        self.gid
    }
    fn send(&self, _dst: &crate::fabric::link::Gid, frame: Vec<u8>) -> Result<(), crate::fabric::link::LinkError> {
        self.sends.lock().push((frame, 0));
        Ok(())
    }
    fn recv(&self, _timeout: Duration) -> Result<Option<Received>, crate::fabric::link::LinkError> {
        Ok(None)
    }
    fn gso_max_segments(&self) -> usize {
        64
    }
    fn send_gather(
        &self,
        _dst: &crate::fabric::link::Gid,
        iov: &[std::io::IoSlice<'_>],
        seg: usize,
    ) -> Result<(), crate::fabric::link::LinkError> {
        self.sends.lock().push((iov.iter().flat_map(|s| s.iter().copied()).collect(), seg));
        Ok(())
    }
    fn stats(&self) -> crate::fabric::link::LinkStats {
        crate::fabric::link::LinkStats::default()
    }
}

#[test]
fn roce_rc_a_64k_write_leaves_as_three_gso_batches_with_exact_icrcs() {
    use super::packet::{Opcode, Packet};
    let (ia, ib) = (Ipv4Addr::new(10, 0, 3, 1), Ipv4Addr::new(10, 0, 3, 2));
    let link = Arc::new(Recorder { gid: gid_from_ipv4(ia), sends: parking_lot::Mutex::new(Vec::new()) });
    let mut cfg = RcConfig::new(0x100, gid_from_ipv4(ib), 0x200);
    cfg.mtu = 4096;
    let m = mem();
    let data = pattern(65536, 9);
    m.poke(SRC_KEY, BUF, &data).unwrap();
    let qp = RcQp::new(cfg, link.clone(), m).unwrap();
    qp.post_send(wr(1, SendOp::RdmaWriteWithImm, SRC_KEY, data.len())).unwrap();
    let sends = std::mem::take(&mut *link.sends.lock());
    // FIRST (RETH) with one MIDDLE as the shorter last segment, 13 MIDDLE,
    // then LAST with its ImmDt alone.
    let shape: Vec<(usize, usize)> = sends.iter().map(|(b, seg)| (b.len(), *seg)).collect();
    assert_eq!(shape, vec![(4128 + 4112, 4128), (13 * 4112, 4112), (4116, 0)]);
    let mut ops = Vec::new();
    let mut payload = Vec::new();
    for (bytes, seg) in &sends {
        let seg = if *seg == 0 { bytes.len() } else { *seg };
        for (frame, id) in bytes.chunks(seg).zip(0u16..) {
            // Decoded with the search, re-encoded for identification `id`:
            // the same bytes only if the ICRC was computed for exactly `id`.
            let p = Packet::decode_from_id(ia, ib, 4791, id, frame).unwrap();
            assert_eq!(p.encode_for_id(ia, ib, 4791, id), frame, "{:?} at id {id}", p.bth().opcode);
            ops.push(p.bth().opcode);
            payload.extend_from_slice(p.payload());
        }
    }
    let mut want = vec![Opcode::RdmaWriteFirst];
    want.extend([Opcode::RdmaWriteMiddle; 14]);
    want.push(Opcode::RdmaWriteLastWithImmediate);
    assert_eq!(ops, want);
    assert_eq!(payload, data);
}
