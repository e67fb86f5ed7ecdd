//! End-to-end tests of the fabric verbs: two mock devices whose ports share
//! a virtual switch, driven through the ioctls by the safe library.

use accel::flags::{BoFlags, Caps, MrAccess, QpAttrMask};
use accel::{ConnectOptions, Cq, Device, Endpoint, Errno, Mr, Pd, Qp, QpInit, sys};
use accel_core::Registry;
use accel_core::fabric::link::{Faults, VirtualSwitch};
use std::time::{Duration, Instant};
use test_driver::{MockConfig, MockDriver, PortNetwork};

const WAIT: Duration = Duration::from_secs(20);
const ALL: MrAccess = MrAccess::LOCAL_WRITE.union(MrAccess::REMOTE_WRITE).union(MrAccess::REMOTE_READ);
const IOVA: u64 = 0x10_0000;

/// Two devices on one switch, in a registry of their own.
struct Net {
    reg: Registry,
    names: [String; 2],
}

fn net(network: PortNetwork) -> Net {
    let reg = Registry::new();
    let mut names = Vec::new();
    for _ in 0..2 {
        let cfg = MockConfig { network: network.clone(), ..Default::default() };
        names.push(reg.register(MockDriver::new(cfg)).unwrap().name().to_string());
    }
    Net { reg, names: [names[0].clone(), names[1].clone()] }
}

/// One side: a device, a CPU-visible BO registered as one MR, a CQ and a QP.
struct Side {
    dev: Device,
    pd: Pd,
    cq: Cq,
    bo: accel::Bo,
    map: accel::Mapping,
    mr: Mr,
    qp: Qp,
}

impl Side {
    fn new(net: &Net, i: usize, bytes: u64, access: MrAccess, init: QpInit, cqe: u32) -> Side {
        let dev = Device::open_in(&net.reg, &net.names[i]).unwrap();
        assert!(dev.caps().unwrap().contains(Caps::FABRIC));
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(cqe).unwrap();
        let bo = dev.create_bo(bytes, 0, BoFlags::CPU_VISIBLE).unwrap();
        let map = bo.map().unwrap();
        let mr = pd.reg_mr(&bo, 0, bytes, IOVA, access).unwrap();
        let qp = pd.create_qp_with(&cq, &cq, init).unwrap();
        Side { dev, pd, cq, bo, map, mr, qp }
    }

    fn sge(&self, off: u64, len: u32) -> sys::accel_sge {
        sys::accel_sge { addr: IOVA + off, length: len, lkey: self.mr.lkey() }
    }

    fn post_recv(&self, wr_id: u64, off: u64, len: u32) {
        let wr = sys::accel_recv_wr { wr_id, first_sge: 0, num_sge: 1 };
        self.qp.post_recv(&[wr], &[self.sge(off, len)]).unwrap();
    }

    fn wait(&self, n: usize) -> Vec<sys::accel_wc> {
        let wcs = self.cq.collect(n, WAIT).unwrap();
        assert_eq!(wcs.len(), n, "completions: {wcs:?}");
        wcs
    }
}

fn connect(a: &Side, b: &Side, o: &ConnectOptions, psns: (u32, u32)) {
    let ea = a.qp.endpoint(psns.0).unwrap();
    let eb = b.qp.endpoint(psns.1).unwrap();
    a.qp.connect(&eb, psns.0, o).unwrap();
    b.qp.connect(&ea, psns.1, o).unwrap();
}

fn pair_with(net: &Net, bytes: u64, o: &ConnectOptions, access: [MrAccess; 2], psns: (u32, u32)) -> (Side, Side) {
    let a = Side::new(net, 0, bytes, access[0], QpInit::new(256, 4), 4096);
    let b = Side::new(net, 1, bytes, access[1], QpInit::new(256, 4), 4096);
    connect(&a, &b, o, psns);
    (a, b)
}

fn mtu_opts(mtu: u32) -> ConnectOptions {
    ConnectOptions { mtu, ..Default::default() }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn send_wr(wr_id: u64, opcode: u32, num_sge: u32, remote: u64, rkey: u32, imm: u32) -> sys::accel_send_wr {
    sys::accel_send_wr {
        wr_id,
        opcode,
        send_flags: sys::ACCEL_SEND_SIGNALED,
        first_sge: 0,
        num_sge,
        imm_data: imm.to_be(),
        rkey,
        remote_addr: remote,
    }
}

fn read(side: &Side, off: usize, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    side.map.read(off, &mut v).unwrap();
    v
}

/// One message of `len` bytes with `opcode` from a to b, checked byte for byte.
fn transfer(a: &Side, b: &Side, opcode: u32, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let half = (a.bo.size() / 2) as usize;
    // a sends from its first half; b receives into its second half.
    a.map.write(0, &data).unwrap();
    b.map.write(half, &vec![0xEE; len]).unwrap();
    let imm = seed as u32 ^ 0xA5A5_0000;
    let len32 = len as u32;
    let with_imm = matches!(opcode, sys::ACCEL_WR_SEND_WITH_IMM | sys::ACCEL_WR_RDMA_WRITE_WITH_IMM);
    let consumes_recv = matches!(opcode, sys::ACCEL_WR_SEND | sys::ACCEL_WR_SEND_WITH_IMM) || with_imm;
    if consumes_recv {
        b.post_recv(seed, half as u64, len32);
    }
    if opcode == sys::ACCEL_WR_RDMA_READ {
        // a reads b's second half into its own first half.
        b.map.write(half, &data).unwrap();
        a.map.write(0, &vec![0xEE; len]).unwrap();
        let wr = send_wr(seed, opcode, 1, IOVA + half as u64, b.mr.rkey(), 0);
        a.qp.post_send(&[wr], &[a.sge(0, len32)]).unwrap();
        let wc = a.wait(1)[0];
        assert_eq!(
            (wc.status, wc.opcode, wc.byte_len, wc.wr_id),
            (sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RDMA_READ, len32, seed)
        );
        assert!(read(a, 0, len) == data, "READ of {len} bytes differs");
        return;
    }
    let wr = send_wr(seed, opcode, 1, IOVA + half as u64, b.mr.rkey(), imm);
    a.qp.post_send(&[wr], &[a.sge(0, len32)]).unwrap();
    let wc = a.wait(1)[0];
    let expect_op = if opcode == sys::ACCEL_WR_SEND || opcode == sys::ACCEL_WR_SEND_WITH_IMM {
        sys::ACCEL_WC_SEND
    } else {
        sys::ACCEL_WC_RDMA_WRITE
    };
    assert_eq!((wc.status, wc.opcode, wc.byte_len), (sys::ACCEL_WC_SUCCESS, expect_op, len32), "{wc:?}");
    if consumes_recv {
        let rc = b.wait(1)[0];
        let rop = if opcode == sys::ACCEL_WR_RDMA_WRITE_WITH_IMM {
            sys::ACCEL_WC_RECV_RDMA_WITH_IMM
        } else {
            sys::ACCEL_WC_RECV
        };
        assert_eq!((rc.status, rc.opcode, rc.byte_len, rc.wr_id), (sys::ACCEL_WC_SUCCESS, rop, len32, seed), "{rc:?}");
        assert_eq!(rc.src_qp, a.qp.qp_num());
        assert_eq!(rc.qp_num, b.qp.qp_num());
        if with_imm {
            assert_eq!(rc.wc_flags, sys::ACCEL_WC_WITH_IMM);
            assert_eq!(u32::from_be(rc.imm_data), imm);
        } else {
            assert_eq!(rc.wc_flags, 0);
        }
    } else {
        // A plain WRITE lands before its ACK, so it is visible now.
        assert!(b.cq.poll(1).unwrap().is_empty());
    }
    assert!(read(b, half, len) == data, "{opcode} of {len} bytes differs");
}

const OPS: [u32; 5] = [
    sys::ACCEL_WR_SEND,
    sys::ACCEL_WR_SEND_WITH_IMM,
    sys::ACCEL_WR_RDMA_WRITE,
    sys::ACCEL_WR_RDMA_WRITE_WITH_IMM,
    sys::ACCEL_WR_RDMA_READ,
];

const MTUS: [u32; 5] =
    [sys::ACCEL_MTU_256, sys::ACCEL_MTU_512, sys::ACCEL_MTU_1024, sys::ACCEL_MTU_2048, sys::ACCEL_MTU_4096];

#[test]
fn every_opcode_at_every_mtu_and_boundary_size_is_byte_exact() {
    let net = net(PortNetwork::Process);
    for mtu in MTUS {
        let m = 128usize << mtu;
        let (a, b) = pair_with(&net, 4 << 20, &mtu_opts(mtu), [ALL, ALL], (mtu * 1000, mtu * 7777));
        let sizes = [0, 1, m - 1, m, m + 1, 2 * m, 3 * m + 7, 65_536, (1 << 20) + 3];
        for (k, &op) in OPS.iter().enumerate() {
            for (j, &len) in sizes.iter().enumerate() {
                transfer(&a, &b, op, len, (mtu as u64) << 32 | (k as u64) << 16 | j as u64);
            }
        }
    }
}

#[test]
fn eight_mib_messages_every_opcode_at_several_mtus() {
    let net = net(PortNetwork::Process);
    for mtu in [sys::ACCEL_MTU_256, sys::ACCEL_MTU_1024, sys::ACCEL_MTU_4096] {
        let (a, b) = pair_with(&net, 16 << 20, &mtu_opts(mtu), [ALL, ALL], (5, 9));
        for (k, &op) in OPS.iter().enumerate() {
            transfer(&a, &b, op, 8 << 20, 1000 + k as u64 + u64::from(mtu) * 10);
        }
    }
}

#[test]
fn sges_gather_and_scatter_across_several_pieces() {
    let net = net(PortNetwork::Process);
    let (a, b) = pair_with(&net, 1 << 16, &mtu_opts(sys::ACCEL_MTU_256), [ALL, ALL], (0, 0));
    let data = pattern(1000, 3);
    a.map.write(0, &data[..300]).unwrap();
    a.map.write(4096, &data[300..700]).unwrap();
    a.map.write(9000, &data[700..]).unwrap();
    let rsges = [b.sge(100, 10), b.sge(5000, 600), b.sge(20_000, 390)];
    let rwr = sys::accel_recv_wr { wr_id: 7, first_sge: 0, num_sge: 3 };
    b.qp.post_recv(&[rwr], &rsges).unwrap();
    let sges = [a.sge(0, 300), a.sge(4096, 400), a.sge(9000, 300)];
    a.qp.post_send(&[send_wr(1, sys::ACCEL_WR_SEND, 3, 0, 0, 0)], &sges).unwrap();
    assert_eq!(a.wait(1)[0].status, sys::ACCEL_WC_SUCCESS);
    let rc = b.wait(1)[0];
    assert_eq!((rc.status, rc.byte_len), (sys::ACCEL_WC_SUCCESS, 1000));
    let got = [read(&b, 100, 10), read(&b, 5000, 600), read(&b, 20_000, 390)].concat();
    assert!(got == data);
}

#[test]
fn psn_wraps_through_zero() {
    let net = net(PortNetwork::Process);
    let o = mtu_opts(sys::ACCEL_MTU_256);
    let (a, b) = pair_with(&net, 1 << 20, &o, [ALL, ALL], (0xFF_FFF0, 0xFF_FFFA));
    for i in 0..8 {
        transfer(&a, &b, OPS[i % 5], 2000 + i * 100, i as u64);
        transfer(&b, &a, OPS[(i + 2) % 5], 2500, 100 + i as u64);
    }
    let (sa, sb) = (a.qp.query().unwrap(), b.qp.query().unwrap());
    assert_eq!(sa.qp_state, sys::ACCEL_QPS_RTS);
    assert_eq!(sb.qp_state, sys::ACCEL_QPS_RTS);
}

#[test]
fn rnr_waits_for_a_receive_and_retries_run_out() {
    let net = net(PortNetwork::Process);
    // rnr_retry 7: infinite; the SEND lands once a receive is posted.
    let o = ConnectOptions { min_rnr_timer: 1, ..mtu_opts(sys::ACCEL_MTU_1024) };
    let (a, b) = pair_with(&net, 1 << 16, &o, [ALL, ALL], (1, 2));
    a.map.write(0, b"late receive").unwrap();
    a.qp.post_send(&[send_wr(1, sys::ACCEL_WR_SEND, 1, 0, 0, 0)], &[a.sge(0, 12)]).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(a.cq.poll(1).unwrap().is_empty(), "completed without a receive");
    b.post_recv(9, 0, 64);
    assert_eq!(a.wait(1)[0].status, sys::ACCEL_WC_SUCCESS);
    assert_eq!(b.wait(1)[0].byte_len, 12);
    assert_eq!(read(&b, 0, 12), b"late receive");

    // rnr_retry 1: the second RNR NAK fails the SEND, and the QP errs.
    let o = ConnectOptions { rnr_retry: 1, min_rnr_timer: 1, ..mtu_opts(sys::ACCEL_MTU_1024) };
    let (a, _b) = pair_with(&net, 1 << 16, &o, [ALL, ALL], (1, 2));
    let wrs = [send_wr(1, sys::ACCEL_WR_SEND, 1, 0, 0, 0), send_wr(2, sys::ACCEL_WR_SEND, 1, 0, 0, 0)];
    a.qp.post_send(&wrs, &[a.sge(0, 12)]).unwrap();
    let wcs = a.wait(2);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (1, sys::ACCEL_WC_RNR_RETRY_EXC_ERR));
    assert_eq!((wcs[1].wr_id, wcs[1].status), (2, sys::ACCEL_WC_WR_FLUSH_ERR));
    assert_eq!(a.qp.query().unwrap().qp_state, sys::ACCEL_QPS_ERR);
}

#[test]
fn a_vanished_peer_exhausts_retry_cnt() {
    let net = net(PortNetwork::Process);
    let o = ConnectOptions { timeout: 8, retry_cnt: 2, ..mtu_opts(sys::ACCEL_MTU_1024) };
    let (a, b) = pair_with(&net, 1 << 16, &o, [ALL, ALL], (1, 2));
    drop(b);
    let t = Instant::now();
    a.qp.post_send(&[send_wr(5, sys::ACCEL_WR_RDMA_WRITE, 1, IOVA, 1, 0)], &[a.sge(0, 100)]).unwrap();
    let wc = a.wait(1)[0];
    assert_eq!((wc.wr_id, wc.status), (5, sys::ACCEL_WC_RETRY_EXC_ERR));
    // 3 transmissions x ~1 ms timer.
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(a.qp.query().unwrap().qp_state, sys::ACCEL_QPS_ERR);
}

/// Sends one op from `a` expecting `(status on a, statuses on b)`.
fn violation(
    a: &Side,
    b: &Side,
    wr: sys::accel_send_wr,
    sge: sys::accel_sge,
    recv: Option<(u64, u32)>,
) -> (u32, Vec<u32>) {
    if let Some((off, len)) = recv {
        b.post_recv(77, off, len);
    }
    a.qp.post_send(&[wr], &[sge]).unwrap();
    let s = a.wait(1)[0].status;
    std::thread::sleep(Duration::from_millis(20));
    let r = b.cq.poll(16).unwrap().iter().map(|w| w.status).collect();
    (s, r)
}

#[test]
fn access_violations_complete_with_ib_statuses_on_both_sides() {
    use sys::*;
    let net = net(PortNetwork::Process);
    let o = mtu_opts(ACCEL_MTU_1024);
    let local_only = MrAccess::LOCAL_WRITE;
    let fresh = |acc: [MrAccess; 2]| pair_with(&net, 1 << 16, &o, acc, (0, 0));

    // WRITE to an MR without REMOTE_WRITE: REM_ACCESS_ERR; the responder errs (a posted receive flushes).
    let (a, b) = fresh([ALL, local_only]);
    let (s, r) =
        violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_WRITE, 1, IOVA, b.mr.rkey(), 0), a.sge(0, 64), Some((0, 64)));
    assert_eq!((s, r), (ACCEL_WC_REM_ACCESS_ERR, vec![ACCEL_WC_WR_FLUSH_ERR]));
    assert_eq!(b.qp.query().unwrap().qp_state, ACCEL_QPS_ERR);

    // READ of an MR without REMOTE_READ.
    let (a, b) = fresh([ALL, MrAccess::LOCAL_WRITE | MrAccess::REMOTE_WRITE]);
    let (s, _) = violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_READ, 1, IOVA, b.mr.rkey(), 0), a.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_REM_ACCESS_ERR);

    // WRITE past the end of the remote MR, and with an lkey used as rkey.
    let (a, b) = fresh([ALL, ALL]);
    let (s, _) =
        violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_WRITE, 1, IOVA + (1 << 16) - 8, b.mr.rkey(), 0), a.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_REM_ACCESS_ERR);
    let (a, b) = fresh([ALL, ALL]);
    let (s, _) = violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_WRITE, 1, IOVA, b.mr.lkey(), 0), a.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_REM_ACCESS_ERR);

    // A QP that grants no remote write refuses it even on an MR that allows it.
    let a = Side::new(&net, 0, 1 << 16, ALL, QpInit::new(16, 1), 64);
    let b = Side::new(&net, 1, 1 << 16, ALL, QpInit::new(16, 1), 64);
    connect(&a, &b, &o, (0, 0));
    let ro = ConnectOptions { access: MrAccess::REMOTE_READ, ..o };
    let (c, d) = (
        Side::new(&net, 0, 1 << 16, ALL, QpInit::new(16, 1), 64),
        Side::new(&net, 1, 1 << 16, ALL, QpInit::new(16, 1), 64),
    );
    connect(&c, &d, &ro, (0, 0));
    let (s, _) = violation(&c, &d, send_wr(1, ACCEL_WR_RDMA_WRITE, 1, IOVA, d.mr.rkey(), 0), c.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_REM_ACCESS_ERR);
    transfer(&a, &b, ACCEL_WR_RDMA_WRITE, 64, 1); // the same MR through a QP that grants it

    // A deregistered MR's rkey is dead.
    let (a, b) = fresh([ALL, ALL]);
    let mr2 = b.pd.reg_mr(&b.bo, 0, 4096, 0x9000_0000, ALL).unwrap();
    let rkey = mr2.rkey();
    drop(mr2);
    let (s, _) = violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_WRITE, 1, 0x9000_0000, rkey, 0), a.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_REM_ACCESS_ERR);

    // SEND into a receive that is too small: LOC_LEN_ERR at the responder, REM_INV_REQ_ERR at the requester.
    let (a, b) = fresh([ALL, ALL]);
    let (s, r) = violation(&a, &b, send_wr(1, ACCEL_WR_SEND, 1, 0, 0, 0), a.sge(0, 100), Some((0, 50)));
    assert_eq!((s, r), (ACCEL_WC_REM_INV_REQ_ERR, vec![ACCEL_WC_LOC_LEN_ERR]));

    // SEND into a receive buffer without LOCAL_WRITE: LOC_PROT_ERR there, REM_OP_ERR here.
    let (a, b) = fresh([ALL, MrAccess::empty()]);
    let (s, r) = violation(&a, &b, send_wr(1, ACCEL_WR_SEND, 1, 0, 0, 0), a.sge(0, 100), Some((0, 100)));
    assert_eq!((s, r), (ACCEL_WC_REM_OP_ERR, vec![ACCEL_WC_LOC_PROT_ERR]));

    // A bad lkey in a SEND's own SGE: LOC_PROT_ERR locally, nothing reaches the peer.
    let (a, b) = fresh([ALL, ALL]);
    let bad = sys::accel_sge { lkey: 0xdead, ..a.sge(0, 10) };
    let (s, r) = violation(&a, &b, send_wr(1, ACCEL_WR_SEND, 1, 0, 0, 0), bad, Some((0, 100)));
    assert_eq!((s, r), (ACCEL_WC_LOC_PROT_ERR, vec![]));
    assert_eq!(a.qp.query().unwrap().qp_state, ACCEL_QPS_ERR);

    // READ into a local MR without LOCAL_WRITE.
    let (a, b) = fresh([MrAccess::empty(), ALL]);
    let (s, _) = violation(&a, &b, send_wr(1, ACCEL_WR_RDMA_READ, 1, IOVA, b.mr.rkey(), 0), a.sge(0, 64), None);
    assert_eq!(s, ACCEL_WC_LOC_PROT_ERR);
}

#[test]
fn qp_in_err_flushes_and_reset_discards() {
    let net = net(PortNetwork::Process);
    let (a, b) = pair_with(&net, 1 << 16, &mtu_opts(sys::ACCEL_MTU_1024), [ALL, ALL], (0, 0));
    for i in 0..3 {
        b.post_recv(i, 0, 64);
    }
    let err = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_ERR, ..Default::default() };
    b.qp.modify(QpAttrMask::STATE, &err).unwrap();
    let wcs = b.wait(3);
    assert!(wcs.iter().enumerate().all(|(i, w)| w.wr_id == i as u64 && w.status == sys::ACCEL_WC_WR_FLUSH_ERR));
    assert_eq!(wcs[0].opcode, sys::ACCEL_WC_RECV);
    // Posting in ERR completes with WR_FLUSH_ERR.
    b.post_recv(9, 0, 64);
    b.qp.post_send(&[send_wr(10, sys::ACCEL_WR_SEND, 1, 0, 0, 0)], &[b.sge(0, 8)]).unwrap();
    let wcs = b.wait(2);
    assert_eq!((wcs[0].wr_id, wcs[0].status), (9, sys::ACCEL_WC_WR_FLUSH_ERR));
    assert_eq!((wcs[1].wr_id, wcs[1].status, wcs[1].opcode), (10, sys::ACCEL_WC_WR_FLUSH_ERR, sys::ACCEL_WC_SEND));
    // RESET clears the attributes and discards WRs without completions: a
    // receive posted in INIT and then reset never completes nor takes a message.
    let reset = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_RESET, ..Default::default() };
    b.qp.modify(QpAttrMask::STATE, &reset).unwrap();
    let q = b.qp.query().unwrap();
    assert_eq!((q.qp_state, q.dest_qp_num, q.qp_access_flags), (sys::ACCEL_QPS_RESET, 0, 0));
    let init = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_INIT, port_num: 1, ..Default::default() };
    b.qp.modify(QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS, &init)
        .unwrap();
    b.post_recv(11, 0, 64);
    b.qp.modify(QpAttrMask::STATE, &reset).unwrap();
    a.qp.modify(QpAttrMask::STATE, &reset).unwrap();
    connect(&a, &b, &mtu_opts(sys::ACCEL_MTU_2048), (50, 60));
    // transfer() checks that its own receive (wr_id 1) takes the message.
    transfer(&a, &b, sys::ACCEL_WR_SEND, 5000, 1);
    std::thread::sleep(Duration::from_millis(10));
    assert!(b.cq.poll(8).unwrap().is_empty() && a.cq.poll(8).unwrap().is_empty());
}

#[test]
fn post_validation_is_all_or_nothing_with_bad_wr() {
    let net = net(PortNetwork::Process);
    let a = Side::new(&net, 0, 1 << 16, ALL, QpInit::new(4, 2), 64);
    let b = Side::new(&net, 1, 1 << 16, ALL, QpInit::new(4, 2), 64);
    let wr = send_wr(1, sys::ACCEL_WR_SEND, 1, 0, 0, 0);
    let sge = [a.sge(0, 8)];
    // Not yet in RTS.
    assert_eq!(a.qp.post_send(&[wr], &sge).unwrap_err().errno, Errno::EINVAL);
    // RESET refuses receives; INIT keeps them for RTR.
    let rwr = sys::accel_recv_wr { wr_id: 1, first_sge: 0, num_sge: 1 };
    assert_eq!(a.qp.post_recv(&[rwr], &sge).unwrap_err().errno, Errno::EINVAL);
    connect(&a, &b, &ConnectOptions::default(), (0, 0));

    let bad_op = sys::accel_send_wr { opcode: 99, ..wr };
    let (e, i) = a.qp.try_post_send(&[wr, wr, bad_op], &sge).unwrap_err();
    assert_eq!((e.errno, i), (Errno::EINVAL, 2));
    let too_many = sys::accel_send_wr { num_sge: 3, ..wr };
    let (e, i) = a.qp.try_post_send(&[wr, too_many], &[sge[0]; 3]).unwrap_err();
    assert_eq!((e.errno, i), (Errno::EINVAL, 1));
    let past = sys::accel_send_wr { first_sge: 1, num_sge: 1, ..wr };
    let (e, i) = a.qp.try_post_send(&[past], &sge).unwrap_err();
    assert_eq!((e.errno, i), (Errno::EINVAL, 0));
    let huge = [sys::accel_sge { length: u32::MAX, ..sge[0] }, sys::accel_sge { length: u32::MAX, ..sge[0] }];
    let (e, _) = a.qp.try_post_send(&[sys::accel_send_wr { num_sge: 2, ..wr }], &huge).unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    let (e, i) = a.qp.try_post_recv(&[rwr, sys::accel_recv_wr { num_sge: 3, ..rwr }], &[sge[0]; 3]).unwrap_err();
    assert_eq!((e.errno, i), (Errno::EINVAL, 1));
    // Nothing of the refused calls was posted: the peer has no receives, so nothing arrived.
    std::thread::sleep(Duration::from_millis(20));
    assert!(a.cq.poll(8).unwrap().is_empty() && b.cq.poll(8).unwrap().is_empty());

    // Queue room: max_recv_wr 4.
    a.qp.post_recv(&[rwr; 4], &sge).unwrap();
    assert_eq!(a.qp.post_recv(&[rwr], &sge).unwrap_err().errno, Errno::EAGAIN);
    // Send room: the peer posts no receive, so SENDs stay outstanding (RNR).
    a.qp.post_send(&[wr; 4], &sge).unwrap();
    assert_eq!(a.qp.post_send(&[wr], &sge).unwrap_err().errno, Errno::EAGAIN);
}

#[test]
fn unsignaled_sends_complete_silently_unless_sig_all() {
    let net = net(PortNetwork::Process);
    for sig_all in [false, true] {
        let init = QpInit { sig_all, ..QpInit::new(64, 1) };
        let a = Side::new(&net, 0, 1 << 16, ALL, init, 256);
        let b = Side::new(&net, 1, 1 << 16, ALL, QpInit::new(64, 1), 256);
        connect(&a, &b, &ConnectOptions::default(), (0, 0));
        let mut wrs = Vec::new();
        for i in 0..10u64 {
            b.post_recv(i, i * 16, 16);
            let flags = if i == 9 { sys::ACCEL_SEND_SIGNALED } else { 0 };
            wrs.push(sys::accel_send_wr { send_flags: flags, ..send_wr(i, sys::ACCEL_WR_SEND, 1, 0, 0, 0) });
        }
        a.qp.post_send(&wrs, &[a.sge(0, 16)]).unwrap();
        b.wait(10);
        let n = if sig_all { 10 } else { 1 };
        let wcs = a.wait(n);
        assert_eq!(wcs.last().unwrap().wr_id, 9);
        std::thread::sleep(Duration::from_millis(10));
        assert!(a.cq.poll(16).unwrap().is_empty());
    }
}

#[test]
fn cq_overrun_raises_events_errs_the_qp_and_polls_eio() {
    let net = net(PortNetwork::Process);
    let a = Side::new(&net, 0, 1 << 16, ALL, QpInit::new(64, 1), 4);
    let b = Side::new(&net, 1, 1 << 16, ALL, QpInit::new(64, 1), 64);
    connect(&a, &b, &ConnectOptions::default(), (0, 0));
    let wrs: Vec<_> = (0..8).map(|i| send_wr(i, sys::ACCEL_WR_RDMA_WRITE, 1, IOVA, b.mr.rkey(), 0)).collect();
    a.qp.post_send(&wrs, &[a.sge(0, 8)]).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut events = Vec::new();
    while events.len() < 2 && Instant::now() < deadline {
        match a.dev.async_event() {
            Ok(e) => events.push((e.event_type, e.handle)),
            Err(e) => {
                assert_eq!(e.errno, Errno::EAGAIN);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    assert_eq!(events, vec![(sys::ACCEL_EVENT_CQ_ERR, a.cq.handle()), (sys::ACCEL_EVENT_QP_FATAL, a.qp.handle())]);
    // The four that fit are delivered, then the CQ reports the loss.
    let wcs = a.cq.poll(16).unwrap();
    assert_eq!(wcs.iter().map(|w| w.wr_id).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(a.cq.poll(16).unwrap_err().errno, Errno::EIO);
    assert_eq!(a.qp.query().unwrap().qp_state, sys::ACCEL_QPS_ERR);
    assert_eq!(a.dev.async_event().unwrap_err().errno, Errno::EAGAIN);
}

#[test]
fn object_rules_and_device_counts() {
    let net = net(PortNetwork::Process);
    let core_dev = net.reg.find(&net.names[0]).unwrap();
    {
        let s = Side::new(&net, 0, 1 << 16, ALL, QpInit::new(4, 1), 8);
        assert_eq!(core_dev.fabric_counts(), [1, 1, 1, 1]);
        // PD and CQ in use: EBUSY through the raw ioctls.
        let mut f = sys::accel_pd_free { handle: s.pd.handle(), pad: 0 };
        assert_eq!(s.dev.ioctl("PD_FREE", sys::ACCEL_IOCTL_PD_FREE, &mut f).unwrap_err().errno, Errno::EBUSY);
        let mut c = sys::accel_cq_destroy { handle: s.cq.handle(), pad: 0 };
        assert_eq!(s.dev.ioctl("CQ_DESTROY", sys::ACCEL_IOCTL_CQ_DESTROY, &mut c).unwrap_err().errno, Errno::EBUSY);
        // MR rules.
        assert_eq!(s.pd.reg_mr(&s.bo, 0, 0, 0, ALL).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.pd.reg_mr(&s.bo, 1 << 16, 1, 0, ALL).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.pd.reg_mr(&s.bo, 0, 16, u64::MAX - 8, ALL).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.pd.reg_mr(&s.bo, 0, 16, 0, MrAccess::REMOTE_WRITE).unwrap_err().errno, Errno::EINVAL);
        // CQ and QP creation limits.
        let max_cqe = s.dev.limits().unwrap().max_cqe;
        assert_eq!(s.dev.create_cq(0).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.dev.create_cq(max_cqe + 1).unwrap_err().errno, Errno::EINVAL);
        let bad = |init: QpInit| s.pd.create_qp_with(&s.cq, &s.cq, init).unwrap_err().errno;
        assert_eq!(bad(QpInit { max_send_wr: 0, ..QpInit::new(4, 1) }), Errno::EINVAL);
        assert_eq!(bad(QpInit { max_send_sge: 1000, ..QpInit::new(4, 1) }), Errno::EINVAL);
        assert_eq!(bad(QpInit { port: 3, ..QpInit::new(4, 1) }), Errno::EINVAL);
        // Modify checks beyond the state table.
        type M = QpAttrMask;
        let init = |pkey: u32, port: u32| sys::accel_qp_attr {
            qp_state: sys::ACCEL_QPS_INIT,
            pkey_index: pkey,
            port_num: port,
            ..Default::default()
        };
        let m = M::STATE | M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS;
        assert_eq!(s.qp.modify(m, &init(1, 1)).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.qp.modify(m, &init(0, 9)).unwrap_err().errno, Errno::EINVAL);
        s.qp.modify(m, &init(0, 2)).unwrap();
        let ep = Endpoint { gid: [0; 16], qp_num: 5, psn: 0 };
        let rtr = |mtu: u32, sgid: u8, rd: u32| sys::accel_qp_attr {
            qp_state: sys::ACCEL_QPS_RTR,
            path_mtu: mtu,
            dest_qp_num: ep.qp_num,
            sgid_index: sgid,
            max_dest_rd_atomic: rd,
            ..Default::default()
        };
        let m = M::STATE | M::AV | M::PATH_MTU | M::DEST_QPN | M::RQ_PSN | M::MAX_DEST_RD_ATOMIC | M::MIN_RNR_TIMER;
        assert_eq!(s.qp.modify(m, &rtr(6, 0, 1)).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.qp.modify(m, &rtr(5, 1, 1)).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(s.qp.modify(m, &rtr(5, 0, 17)).unwrap_err().errno, Errno::EINVAL);
        s.qp.modify(m, &rtr(5, 0, 1)).unwrap();
        assert_eq!(s.qp.query().unwrap().port_num, 2);
    }
    assert_eq!(core_dev.fabric_counts(), [0, 0, 0, 0]);
    // Closing a file with live objects (a QP in RTR on its port) frees them all.
    let file = net.reg.open(&net.names[0]).unwrap();
    let pd = file.pd_alloc().unwrap();
    let (cq, _) = file.cq_create(8).unwrap();
    let caps = accel_core::fabric::verbs::QpCaps {
        max_send_wr: 4,
        max_recv_wr: 4,
        max_send_sge: 1,
        max_recv_sge: 1,
        sig_all: false,
    };
    let (qp, _) = file.qp_create(pd, cq, cq, caps, 1).unwrap();
    let q = file.qp(qp).unwrap();
    let init = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_INIT, port_num: 1, ..Default::default() };
    q.modify(QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS, &init).unwrap();
    drop(q);
    assert_eq!(core_dev.fabric_counts(), [1, 0, 1, 1]);
    file.close();
    assert_eq!(core_dev.fabric_counts(), [0, 0, 0, 0]);
    assert_eq!(file.pd_alloc().unwrap_err().errno(), Errno::EBADF);
}

#[test]
fn hundred_thousand_messages_under_faults_arrive_once_in_order() {
    let faults = Faults { seed: 0x5EED, loss: 0.10, reorder: 0.10, duplicate: 0.10, corrupt: 0.10, ..Faults::none() };
    let switch = VirtualSwitch::new(faults);
    let net = net(PortNetwork::Switch(switch.clone()));
    // ~4.2 ms ACK timer (above the switch's 1 ms reorder hold), 7 retries.
    let o = ConnectOptions { timeout: 10, min_rnr_timer: 1, ..mtu_opts(sys::ACCEL_MTU_1024) };
    const N: u64 = 100_000;
    const WINDOW: u64 = 512;
    const SLOT: u64 = 16;
    let a = Side::new(&net, 0, WINDOW * SLOT, ALL, QpInit::new(WINDOW as u32, 1), 4096);
    let b = Side::new(&net, 1, WINDOW * SLOT, ALL, QpInit::new(WINDOW as u32, 1), 4096);
    connect(&a, &b, &o, (0xFF_F000, 0x12_3456));
    for i in 0..WINDOW {
        b.post_recv(i, i * SLOT, SLOT as u32);
    }
    let (mut sent, mut acked, mut received) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while received < N {
        assert!(start.elapsed() < Duration::from_secs(300), "stuck at {received} of {N}");
        // Keep up to WINDOW sends outstanding; each carries its sequence number.
        let mut wrs = Vec::new();
        let mut sges = Vec::new();
        while sent < N && sent - acked < WINDOW && wrs.len() < 64 {
            let slot = sent % WINDOW;
            a.map.write_u64((slot * SLOT) as usize, sent).unwrap();
            sges.push(a.sge(slot * SLOT, 8));
            let mut wr = send_wr(sent, sys::ACCEL_WR_SEND, 1, 0, 0, 0);
            wr.first_sge = wrs.len() as u32;
            wrs.push(wr);
            sent += 1;
        }
        if !wrs.is_empty() {
            a.qp.post_send(&wrs, &sges).unwrap();
        }
        for wc in a.cq.poll(256).unwrap() {
            assert_eq!((wc.status, wc.wr_id), (sys::ACCEL_WC_SUCCESS, acked), "send completion out of order");
            acked += 1;
        }
        let wcs = b.cq.poll_wait(256, Duration::from_millis(1)).unwrap();
        for wc in wcs {
            assert_eq!(wc.status, sys::ACCEL_WC_SUCCESS);
            let slot = wc.wr_id;
            let seq = b.map.read_u64((slot * SLOT) as usize).unwrap();
            assert_eq!(seq, received, "message {received} arrived as {seq}: lost, duplicated or reordered");
            assert_eq!(slot, received % WINDOW);
            received += 1;
            b.post_recv(slot, slot * SLOT, SLOT as u32);
        }
    }
    let stats = switch.stats();
    assert!(
        stats.dropped > 1000 && stats.corrupted > 1000 && stats.duplicated > 1000 && stats.reordered > 1000,
        "{stats:?}"
    );
    eprintln!("100k messages under faults: {:?}, {stats:?}", start.elapsed());
}

#[test]
fn cq_poll_without_an_array_faults_before_reaping() {
    // A CQ_POLL whose wc_ptr is 0 with num_entries > 0 fails with EFAULT
    // before the CQ is touched: the completion is still there afterwards.
    let net = net(PortNetwork::Process);
    let (a, b) = pair_with(&net, 1 << 16, &mtu_opts(sys::ACCEL_MTU_1024), [ALL, ALL], (1, 2));
    b.post_recv(7, 0, 64);
    a.map.write(0, b"kept").unwrap();
    a.qp.post_send(&[send_wr(1, sys::ACCEL_WR_SEND, 1, 0, 0, 0)], &[a.sge(0, 4)]).unwrap();
    assert_eq!(a.wait(1)[0].status, sys::ACCEL_WC_SUCCESS);
    let mut p = sys::accel_cq_poll { handle: b.cq.handle(), num_entries: 4, wc_ptr: 0, ..Default::default() };
    let e = b.dev.ioctl("CQ_POLL", sys::ACCEL_IOCTL_CQ_POLL, &mut p).unwrap_err();
    assert_eq!(e.errno, Errno::EFAULT);
    let wcs = b.wait(1);
    assert_eq!((wcs[0].wr_id, wcs[0].byte_len), (7, 4));
    // A count of 0 with no array is a valid empty poll.
    let mut p = sys::accel_cq_poll { handle: b.cq.handle(), num_entries: 0, wc_ptr: 0, ..Default::default() };
    b.dev.ioctl("CQ_POLL", sys::ACCEL_IOCTL_CQ_POLL, &mut p).unwrap();
    assert_eq!(p.count, 0);
}
