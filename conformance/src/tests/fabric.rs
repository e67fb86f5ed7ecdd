//! Area: fabric — verbs semantics (PD, MR, CQ, QP state machine) and the
//! RC data path between two QPs of the device under test (port 1 to its last
//! port, so a one-port device talks to itself). A device without
//! `ACCEL_CAP_FABRIC` reports these as NOT SUPPORTED.

use super::{Ctx, cpu_region, ensure, expect_errno, tests};
use crate::{Area, Env, TestCase};
use accel::{ConnectOptions, QpInit};
use accel_uapi::flags::{BoFlags, Caps, MrAccess, QpAttrMask};
use accel_uapi::{Errno, sys};
use std::time::Duration;

pub(crate) fn tests() -> Vec<TestCase> {
    tests!(
        Area::Fabric,
        Caps::FABRIC,
        [
            pd_alloc_and_free,
            mr_keys_are_distinct,
            mr_outside_its_bo_is_einval,
            cq_poll_of_an_empty_cq_returns_nothing,
            qp_starts_in_reset,
            qp_reset_to_rts_directly_is_einval,
            qp_init_needs_its_attributes,
            no_async_event_is_eagain,
            ports_are_described,
            limits_announce_verbs_maxima,
            mr_remote_write_needs_local_write,
            cq_depth_zero_is_einval,
            qp_type_other_than_rc_is_einval,
            pd_in_use_is_ebusy,
            cq_in_use_is_ebusy,
            qp_cur_state_mismatch_is_einval,
            qp_mtu_above_the_port_is_einval,
            post_send_before_rts_is_einval,
            post_send_reports_bad_wr,
            send_recv_is_byte_exact,
            send_with_imm_carries_the_immediate,
            rdma_write_is_byte_exact,
            rdma_write_with_imm_consumes_a_receive,
            rdma_read_is_byte_exact,
            multi_packet_messages_at_mtu_256,
            rnr_then_receive_completes,
            remote_access_error_on_both_sides,
            receive_too_small_is_loc_len_err,
            err_state_flushes_receives,
            cq_overrun_raises_cq_err,
        ]
    )
}

fn pd_alloc_and_free(env: &Env) -> Result<(), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    ensure!(pd.handle() != 0, "PD handle 0");
    Ok(())
}

fn mr_keys_are_distinct(env: &Env) -> Result<(), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let bo = env.dev.create_bo(8192, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    let a = pd.reg_mr(&bo, 0, 4096, 0x1000, MrAccess::LOCAL_WRITE).ctx("MR a")?;
    let b = pd.reg_mr(&bo, 4096, 4096, 0x2000, MrAccess::LOCAL_WRITE | MrAccess::REMOTE_WRITE).ctx("MR b")?;
    ensure!(a.lkey() != b.lkey() && a.rkey() != b.rkey(), "keys repeat across MRs");
    Ok(())
}

fn mr_outside_its_bo_is_einval(env: &Env) -> Result<(), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    expect_errno(pd.reg_mr(&bo, 0, 8192, 0x1000, MrAccess::LOCAL_WRITE), Errno::EINVAL, "MR past the BO")
}

fn cq_poll_of_an_empty_cq_returns_nothing(env: &Env) -> Result<(), String> {
    let cq = env.dev.create_cq(16).ctx("CQ_CREATE")?;
    ensure!(cq.poll(16).ctx("CQ_POLL")?.is_empty(), "completions on a new CQ");
    Ok(())
}

fn new_qp(env: &Env) -> Result<(accel::Pd, accel::Cq, accel::Qp), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let cq = env.dev.create_cq(16).ctx("CQ_CREATE")?;
    let qp = pd.create_qp(&cq, &cq, 16, 1).ctx("QP_CREATE")?;
    Ok((pd, cq, qp))
}

fn qp_starts_in_reset(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    ensure!(qp.query().ctx("QP_QUERY")?.qp_state == sys::ACCEL_QPS_RESET, "new QP not in RESET");
    ensure!(qp.qp_num() != 0 && qp.qp_num() < (1 << 24), "QP number {} not a 24-bit non-zero value", qp.qp_num());
    Ok(())
}

fn qp_reset_to_rts_directly_is_einval(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    let attr = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_RTS, ..Default::default() };
    expect_errno(qp.modify(QpAttrMask::STATE, &attr), Errno::EINVAL, "RESET -> RTS")
}

fn qp_init_needs_its_attributes(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    let attr = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_INIT, port_num: 1, ..Default::default() };
    // RESET -> INIT requires PKEY_INDEX, PORT and ACCESS_FLAGS, as ibv_modify_qp does.
    expect_errno(qp.modify(QpAttrMask::STATE, &attr), Errno::EINVAL, "INIT without its attributes")?;
    let mask = QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS;
    qp.modify(mask, &attr).ctx("RESET -> INIT")?;
    ensure!(qp.query().ctx("QP_QUERY")?.qp_state == sys::ACCEL_QPS_INIT, "not in INIT");
    Ok(())
}

fn no_async_event_is_eagain(env: &Env) -> Result<(), String> {
    expect_errno(env.dev.async_event(), Errno::EAGAIN, "GET_ASYNC_EVENT with nothing pending")
}

fn ports_are_described(env: &Env) -> Result<(), String> {
    let ports = env.dev.ports().ctx("QUERY_PORTS")?;
    ensure!(!ports.is_empty(), "a FABRIC device with no ports");
    for (i, p) in ports.iter().enumerate() {
        ensure!(p.port_num == i as u32 + 1, "port {i} numbered {}", p.port_num);
        ensure!((sys::ACCEL_PORT_DOWN..=sys::ACCEL_PORT_ACTIVE).contains(&p.state), "port state {}", p.state);
        ensure!((sys::ACCEL_MTU_256..=sys::ACCEL_MTU_4096).contains(&p.max_mtu), "max_mtu {}", p.max_mtu);
        ensure!(p.active_mtu <= p.max_mtu, "active_mtu {} above max_mtu {}", p.active_mtu, p.max_mtu);
        if p.state == sys::ACCEL_PORT_ACTIVE {
            ensure!(p.gid != [0; 16], "active port {} without a GID", p.port_num);
        }
    }
    Ok(())
}

fn limits_announce_verbs_maxima(env: &Env) -> Result<(), String> {
    let l = env.dev.limits().ctx("QUERY_LIMITS")?;
    for (what, v) in [
        ("max_pd", l.max_pd),
        ("max_mr", l.max_mr),
        ("max_cq", l.max_cq),
        ("max_cqe", l.max_cqe),
        ("max_qp", l.max_qp),
        ("max_qp_wr", l.max_qp_wr),
        ("max_sge", l.max_sge),
        ("max_msg_size", l.max_msg_size),
    ] {
        ensure!(v > 0, "{what} is 0 on a FABRIC device");
    }
    Ok(())
}

fn mr_remote_write_needs_local_write(env: &Env) -> Result<(), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    expect_errno(pd.reg_mr(&bo, 0, 4096, 0, MrAccess::REMOTE_WRITE), Errno::EINVAL, "REMOTE_WRITE alone")?;
    expect_errno(pd.reg_mr(&bo, 0, 0, 0, MrAccess::LOCAL_WRITE), Errno::EINVAL, "length 0")
}

fn cq_depth_zero_is_einval(env: &Env) -> Result<(), String> {
    expect_errno(env.dev.create_cq(0), Errno::EINVAL, "CQ of depth 0")?;
    let max = env.dev.limits().ctx("QUERY_LIMITS")?.max_cqe;
    expect_errno(env.dev.create_cq(max.saturating_add(1)), Errno::EINVAL, "CQ above max_cqe")?;
    let cq = env.dev.create_cq(3).ctx("CQ_CREATE")?;
    ensure!(cq.cqe() >= 3, "depth {} below the 3 asked", cq.cqe());
    Ok(())
}

fn qp_type_other_than_rc_is_einval(env: &Env) -> Result<(), String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let cq = env.dev.create_cq(16).ctx("CQ_CREATE")?;
    let mut a = sys::accel_qp_create {
        pd_handle: pd.handle(),
        send_cq: cq.handle(),
        recv_cq: cq.handle(),
        qp_type: 4, // IBV_QPT_UD
        max_send_wr: 4,
        max_recv_wr: 4,
        max_send_sge: 1,
        max_recv_sge: 1,
        port_num: 1,
        ..Default::default()
    };
    expect_errno(env.dev.ioctl("QP_CREATE", sys::ACCEL_IOCTL_QP_CREATE, &mut a), Errno::EINVAL, "UD QP")
}

fn pd_in_use_is_ebusy(env: &Env) -> Result<(), String> {
    let (pd, _cq, _qp) = new_qp(env)?;
    let mut a = sys::accel_pd_free { handle: pd.handle(), pad: 0 };
    expect_errno(env.dev.ioctl("PD_FREE", sys::ACCEL_IOCTL_PD_FREE, &mut a), Errno::EBUSY, "PD_FREE with a QP")
}

fn cq_in_use_is_ebusy(env: &Env) -> Result<(), String> {
    let (_pd, cq, _qp) = new_qp(env)?;
    let mut a = sys::accel_cq_destroy { handle: cq.handle(), pad: 0 };
    expect_errno(env.dev.ioctl("CQ_DESTROY", sys::ACCEL_IOCTL_CQ_DESTROY, &mut a), Errno::EBUSY, "CQ_DESTROY with a QP")
}

fn qp_cur_state_mismatch_is_einval(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    let attr =
        sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_ERR, cur_qp_state: sys::ACCEL_QPS_RTS, ..Default::default() };
    // RESET -> ERR takes no attributes; CUR_STATE is not allowed there.
    expect_errno(
        qp.modify(QpAttrMask::STATE | QpAttrMask::CUR_STATE, &attr),
        Errno::EINVAL,
        "CUR_STATE on RESET -> ERR",
    )?;
    qp.modify(QpAttrMask::STATE, &attr).ctx("RESET -> ERR")?;
    ensure!(qp.query().ctx("QP_QUERY")?.qp_state == sys::ACCEL_QPS_ERR, "not in ERR");
    Ok(())
}

fn qp_mtu_above_the_port_is_einval(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    let port = env.dev.ports().ctx("QUERY_PORTS")?[0];
    let init = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_INIT, port_num: 1, ..Default::default() };
    qp.modify(QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS, &init)
        .ctx("RESET -> INIT")?;
    let rtr = sys::accel_qp_attr {
        qp_state: sys::ACCEL_QPS_RTR,
        path_mtu: port.active_mtu + 1,
        dest_qp_num: qp.qp_num(),
        dest_gid: port.gid,
        ..Default::default()
    };
    type M = QpAttrMask;
    let m = M::STATE | M::AV | M::PATH_MTU | M::DEST_QPN | M::RQ_PSN | M::MAX_DEST_RD_ATOMIC | M::MIN_RNR_TIMER;
    expect_errno(qp.modify(m, &rtr), Errno::EINVAL, "path_mtu above the port's")
}

fn post_send_before_rts_is_einval(env: &Env) -> Result<(), String> {
    let (_pd, _cq, qp) = new_qp(env)?;
    let wr = sys::accel_send_wr { opcode: sys::ACCEL_WR_SEND, ..Default::default() };
    expect_errno(qp.post_send(&[wr], &[]), Errno::EINVAL, "POST_SEND in RESET")?;
    let rwr = sys::accel_recv_wr::default();
    expect_errno(qp.post_recv(&[rwr], &[]), Errno::EINVAL, "POST_RECV in RESET")
}

/// Two connected QPs of the device (port 1 and the last port) with one MR each.
struct Link2 {
    a: Side,
    b: Side,
}

struct Side {
    _pd: accel::Pd,
    cq: accel::Cq,
    _bo: accel::Bo,
    map: accel::Mapping,
    mr: accel::Mr,
    qp: accel::Qp,
}

const IOVA: u64 = 0x4000_0000;
const WAIT: Duration = Duration::from_secs(5);

impl Side {
    fn sge(&self, off: u64, len: u32) -> sys::accel_sge {
        sys::accel_sge { addr: IOVA + off, length: len, lkey: self.mr.lkey() }
    }

    fn recv(&self, wr_id: u64, off: u64, len: u32) -> Result<(), String> {
        let wr = sys::accel_recv_wr { wr_id, first_sge: 0, num_sge: 1 };
        self.qp.post_recv(&[wr], &[self.sge(off, len)]).ctx("POST_RECV")
    }

    fn send(&self, wr: sys::accel_send_wr, sge: sys::accel_sge) -> Result<(), String> {
        self.qp.post_send(&[wr], &[sge]).ctx("POST_SEND")
    }

    fn one(&self, what: &str) -> Result<sys::accel_wc, String> {
        let wcs = self.cq.poll_wait(1, WAIT).ctx("CQ_POLL")?;
        wcs.first().copied().ok_or_else(|| format!("no completion for {what} within {WAIT:?}"))
    }
}

fn side(env: &Env, port: u32, access: MrAccess) -> Result<Side, String> {
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let cq = env.dev.create_cq(64).ctx("CQ_CREATE")?;
    let bo = env.dev.create_bo(1 << 16, cpu_region(&env.dev)?, BoFlags::CPU_VISIBLE).ctx("BO")?;
    let map = bo.map().ctx("mmap")?;
    let mr = pd.reg_mr(&bo, 0, 1 << 16, IOVA, access).ctx("MR_REG")?;
    let qp = pd.create_qp_with(&cq, &cq, QpInit { port, ..QpInit::new(16, 2) }).ctx("QP_CREATE")?;
    Ok(Side { _pd: pd, cq, _bo: bo, map, mr, qp })
}

const ALL: MrAccess = MrAccess::LOCAL_WRITE.union(MrAccess::REMOTE_WRITE).union(MrAccess::REMOTE_READ);

fn link(env: &Env, mtu: u32, access_b: MrAccess) -> Result<Link2, String> {
    let ports = env.dev.ports().ctx("QUERY_PORTS")?;
    let last = ports.len() as u32;
    let mtu = mtu.min(ports[0].active_mtu).min(ports[ports.len() - 1].active_mtu);
    let a = side(env, 1, ALL)?;
    let b = side(env, last, access_b)?;
    let o = ConnectOptions { mtu, timeout: 12, min_rnr_timer: 1, ..Default::default() };
    let (ea, eb) = (a.qp.endpoint(100).ctx("endpoint")?, b.qp.endpoint(200).ctx("endpoint")?);
    a.qp.connect(&eb, 100, &o).ctx("connect a")?;
    b.qp.connect(&ea, 200, &o).ctx("connect b")?;
    Ok(Link2 { a, b })
}

fn wr(wr_id: u64, opcode: u32) -> sys::accel_send_wr {
    sys::accel_send_wr { wr_id, opcode, send_flags: sys::ACCEL_SEND_SIGNALED, num_sge: 1, ..Default::default() }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn check_wc(wc: sys::accel_wc, status: u32, opcode: u32, len: u32, what: &str) -> Result<(), String> {
    ensure!(
        (wc.status, wc.opcode, wc.byte_len) == (status, opcode, len),
        "{what}: completion status {} opcode {} byte_len {}, expected {status} {opcode} {len}",
        wc.status,
        wc.opcode,
        wc.byte_len
    );
    Ok(())
}

fn bytes(map: &accel::Mapping, off: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0; len];
    map.read(off, &mut v).ctx("read mapping")?;
    Ok(v)
}

fn post_send_reports_bad_wr(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    let good = wr(1, sys::ACCEL_WR_SEND);
    let bad = sys::accel_send_wr { opcode: 77, ..good };
    match l.a.qp.try_post_send(&[good, bad], &[l.a.sge(0, 8)]) {
        Err((e, i)) => ensure!(e.errno == Errno::EINVAL && i == 1, "got {:?} with bad_wr {i}", e.errno),
        Ok(()) => return Err("a WR with opcode 77 was accepted".into()),
    }
    std::thread::sleep(Duration::from_millis(20));
    ensure!(l.a.cq.poll(4).ctx("CQ_POLL")?.is_empty(), "a WR of a refused POST_SEND completed");
    Ok(())
}

fn send_recv_is_byte_exact(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    let d = data(3000, 1);
    l.a.map.write(0, &d).ctx("write")?;
    l.b.recv(5, 8192, 4096)?;
    l.a.send(wr(1, sys::ACCEL_WR_SEND), l.a.sge(0, 3000))?;
    check_wc(l.a.one("SEND")?, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_SEND, 3000, "SEND")?;
    let r = l.b.one("RECV")?;
    check_wc(r, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RECV, 3000, "RECV")?;
    ensure!(r.wr_id == 5 && r.qp_num == l.b.qp.qp_num() && r.src_qp == l.a.qp.qp_num(), "RECV ids {r:?}");
    ensure!(bytes(&l.b.map, 8192, 3000)? == d, "received bytes differ");
    Ok(())
}

fn send_with_imm_carries_the_immediate(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    l.b.recv(5, 0, 64)?;
    let w = sys::accel_send_wr { imm_data: 0x1234_5678u32.to_be(), ..wr(1, sys::ACCEL_WR_SEND_WITH_IMM) };
    l.a.send(w, l.a.sge(0, 10))?;
    let r = l.b.one("RECV")?;
    check_wc(r, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RECV, 10, "RECV")?;
    ensure!(r.wc_flags & sys::ACCEL_WC_WITH_IMM != 0, "WITH_IMM missing");
    ensure!(u32::from_be(r.imm_data) == 0x1234_5678, "immediate {:#x}", u32::from_be(r.imm_data));
    Ok(())
}

fn rdma_write_is_byte_exact(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    let d = data(5000, 2);
    l.a.map.write(0, &d).ctx("write")?;
    let w = sys::accel_send_wr { remote_addr: IOVA + 10_000, rkey: l.b.mr.rkey(), ..wr(1, sys::ACCEL_WR_RDMA_WRITE) };
    l.a.send(w, l.a.sge(0, 5000))?;
    check_wc(l.a.one("WRITE")?, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RDMA_WRITE, 5000, "WRITE")?;
    ensure!(bytes(&l.b.map, 10_000, 5000)? == d, "written bytes differ");
    ensure!(l.b.cq.poll(1).ctx("CQ_POLL")?.is_empty(), "a plain WRITE completed at the responder");
    Ok(())
}

fn rdma_write_with_imm_consumes_a_receive(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    l.b.recv(9, 0, 0)?;
    let w = sys::accel_send_wr {
        remote_addr: IOVA + 100,
        rkey: l.b.mr.rkey(),
        imm_data: 7u32.to_be(),
        ..wr(1, sys::ACCEL_WR_RDMA_WRITE_WITH_IMM)
    };
    l.a.send(w, l.a.sge(0, 2000))?;
    let r = l.b.one("RECV_RDMA_WITH_IMM")?;
    check_wc(r, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RECV_RDMA_WITH_IMM, 2000, "WRITE_WITH_IMM at the responder")?;
    ensure!(r.wr_id == 9 && u32::from_be(r.imm_data) == 7, "receive {r:?}");
    Ok(())
}

fn rdma_read_is_byte_exact(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    let d = data(6000, 3);
    l.b.map.write(20_000, &d).ctx("write")?;
    let w = sys::accel_send_wr { remote_addr: IOVA + 20_000, rkey: l.b.mr.rkey(), ..wr(1, sys::ACCEL_WR_RDMA_READ) };
    l.a.send(w, l.a.sge(0, 6000))?;
    check_wc(l.a.one("READ")?, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RDMA_READ, 6000, "READ")?;
    ensure!(bytes(&l.a.map, 0, 6000)? == d, "read bytes differ");
    Ok(())
}

fn multi_packet_messages_at_mtu_256(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_256, ALL)?;
    let d = data(40_000, 4);
    l.a.map.write(0, &d).ctx("write")?;
    l.b.recv(1, 0, 40_000)?;
    l.a.send(wr(1, sys::ACCEL_WR_SEND), l.a.sge(0, 40_000))?;
    check_wc(l.b.one("RECV")?, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_RECV, 40_000, "RECV")?;
    ensure!(bytes(&l.b.map, 0, 40_000)? == d, "157-packet SEND differs");
    Ok(())
}

fn rnr_then_receive_completes(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    l.a.send(wr(1, sys::ACCEL_WR_SEND), l.a.sge(0, 16))?;
    std::thread::sleep(Duration::from_millis(20));
    ensure!(l.a.cq.poll(1).ctx("CQ_POLL")?.is_empty(), "a SEND completed with no receive posted");
    l.b.recv(2, 0, 16)?;
    check_wc(l.a.one("SEND after RNR")?, sys::ACCEL_WC_SUCCESS, sys::ACCEL_WC_SEND, 16, "SEND after RNR")
}

fn remote_access_error_on_both_sides(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, MrAccess::LOCAL_WRITE)?;
    l.b.recv(3, 0, 16)?;
    let w = sys::accel_send_wr { remote_addr: IOVA, rkey: l.b.mr.rkey(), ..wr(1, sys::ACCEL_WR_RDMA_WRITE) };
    l.a.send(w, l.a.sge(0, 16))?;
    let s = l.a.one("WRITE")?;
    ensure!(s.status == sys::ACCEL_WC_REM_ACCESS_ERR, "requester status {}, expected REM_ACCESS_ERR", s.status);
    let r = l.b.one("flushed receive")?;
    ensure!(r.status == sys::ACCEL_WC_WR_FLUSH_ERR && r.wr_id == 3, "responder completion {r:?}");
    ensure!(l.a.qp.query().ctx("QP_QUERY")?.qp_state == sys::ACCEL_QPS_ERR, "requester QP not in ERR");
    Ok(())
}

fn receive_too_small_is_loc_len_err(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    l.b.recv(3, 0, 10)?;
    l.a.send(wr(1, sys::ACCEL_WR_SEND), l.a.sge(0, 100))?;
    let s = l.a.one("SEND")?;
    ensure!(s.status == sys::ACCEL_WC_REM_INV_REQ_ERR, "requester status {}, expected REM_INV_REQ_ERR", s.status);
    let r = l.b.one("RECV")?;
    ensure!(r.status == sys::ACCEL_WC_LOC_LEN_ERR, "responder status {}, expected LOC_LEN_ERR", r.status);
    Ok(())
}

fn err_state_flushes_receives(env: &Env) -> Result<(), String> {
    let l = link(env, sys::ACCEL_MTU_1024, ALL)?;
    l.b.recv(1, 0, 8)?;
    l.b.recv(2, 8, 8)?;
    let attr = sys::accel_qp_attr { qp_state: sys::ACCEL_QPS_ERR, ..Default::default() };
    l.b.qp.modify(QpAttrMask::STATE, &attr).ctx("-> ERR")?;
    for id in [1, 2] {
        let w = l.b.one("flush")?;
        ensure!(w.wr_id == id && w.status == sys::ACCEL_WC_WR_FLUSH_ERR, "flush completion {w:?}");
    }
    Ok(())
}

fn cq_overrun_raises_cq_err(env: &Env) -> Result<(), String> {
    let ports = env.dev.ports().ctx("QUERY_PORTS")?;
    let pd = env.dev.alloc_pd().ctx("PD_ALLOC")?;
    let small = env.dev.create_cq(1).ctx("CQ_CREATE")?;
    let big = env.dev.create_cq(64).ctx("CQ_CREATE")?;
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO")?;
    let mr = pd.reg_mr(&bo, 0, 4096, 0, ALL).ctx("MR_REG")?;
    let a = pd.create_qp_with(&small, &small, QpInit::new(64, 1)).ctx("QP_CREATE")?;
    let b =
        pd.create_qp_with(&big, &big, QpInit { port: ports.len() as u32, ..QpInit::new(64, 1) }).ctx("QP_CREATE")?;
    let o = ConnectOptions::default();
    a.connect(&b.endpoint(0).ctx("endpoint")?, 0, &o).ctx("connect")?;
    b.connect(&a.endpoint(0).ctx("endpoint")?, 0, &o).ctx("connect")?;
    let n = small.cqe() as usize + 2;
    let w = sys::accel_send_wr { remote_addr: 0, rkey: mr.rkey(), ..wr(1, sys::ACCEL_WR_RDMA_WRITE) };
    let sge = sys::accel_sge { addr: 0, length: 8, lkey: mr.lkey() };
    a.post_send(&vec![w; n], &[sge]).ctx("POST_SEND")?;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match env.dev.async_event() {
            Ok(e) if e.event_type == sys::ACCEL_EVENT_CQ_ERR => {
                ensure!(e.handle == small.handle(), "CQ_ERR names handle {}", e.handle);
                break;
            }
            Ok(_) => {}
            Err(e) if e.errno == Errno::EAGAIN => {}
            Err(e) => return Err(format!("GET_ASYNC_EVENT: {e}")),
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no CQ_ERR event after {n} completions into a CQ of {}",
            small.cqe()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
