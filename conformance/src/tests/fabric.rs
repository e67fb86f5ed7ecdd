//! Area: fabric — verbs semantics (PD, MR, CQ, QP state machine). A device
//! without `ACCEL_CAP_FABRIC` reports these as NOT SUPPORTED.

use super::{Ctx, cpu_region, ensure, expect_errno, tests};
use crate::{Area, Env, TestCase};
use accel_uapi::flags::{BoFlags, Caps, MrAccess, QpAttrMask};
use accel_uapi::{Errno, sys};

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
