//! The RC queue-pair state machine of QP_MODIFY.
//!
//! [`check_modify`] decides whether a QP_MODIFY request is acceptable for an
//! RC QP: the transition must be one the IBA allows (the QP state table of
//! IBA 1.x, chapter 10.3, as also encoded by Linux `ib_modify_qp_is_ok`), the
//! attribute mask must carry every attribute the transition requires and no
//! attribute outside its required and optional sets, and every value the mask
//! names must be in range. [`QpAttrs`] holds the attributes a QP has been given
//! so far and renders them back for QP_QUERY.
//!
//! Attributes the UAPI does not carry (alternate path, path migration state,
//! SQD async notification) are simply absent from the sets below.

use accel_uapi::Errno;
use accel_uapi::flags::{MrAccess, QpAttrMask};
use accel_uapi::sys::accel_qp_attr;
use accel_uapi::types::{Mtu, QpState};

/// PSNs and QP numbers are 24-bit quantities.
const U24_LIMIT: u32 = 1 << 24;
/// The IPv6 / GRH flow label is 20 bits wide.
const FLOW_LABEL_LIMIT: u32 = 1 << 20;
/// Largest retry_cnt / rnr_retry (3-bit fields).
const MAX_RETRY: u8 = 7;
/// Largest timeout / min_rnr_timer (5-bit fields).
const MAX_TIMER_CODE: u8 = 31;

/// Why a QP_MODIFY request was refused. Every variant is `EINVAL` at the UAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QpModifyError {
    /// The state table has no `from -> to` transition.
    #[error("illegal QP transition {from:?} -> {to:?}")]
    IllegalTransition {
        /// The current state.
        from: QpState,
        /// The requested state.
        to: QpState,
    },
    /// Attributes the transition requires are absent from the mask.
    #[error("missing required QP attributes {0:?}")]
    MissingAttrs(QpAttrMask),
    /// Attributes the transition does not accept are present in the mask.
    #[error("QP attributes {0:?} not allowed for this transition")]
    UnexpectedAttrs(QpAttrMask),
    /// `CUR_STATE` was given and does not match the QP's actual state.
    #[error("cur_qp_state {given:?} does not match the QP state {actual:?}")]
    CurStateMismatch {
        /// The state the caller believes the QP is in.
        given: QpState,
        /// The state the QP is in.
        actual: QpState,
    },
    /// A masked attribute has an out-of-range value; names the field.
    #[error("bad value for QP attribute {0}")]
    BadValue(&'static str),
}

impl QpModifyError {
    /// The errno reported at the UAPI: always `EINVAL`.
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

/// The attribute sets of one legal transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRule {
    /// Attributes that must be in the mask (besides `STATE`).
    pub required: QpAttrMask,
    /// Attributes that may be in the mask.
    pub optional: QpAttrMask,
}

impl TransitionRule {
    const fn bare() -> Self {
        TransitionRule { required: QpAttrMask::empty(), optional: QpAttrMask::empty() }
    }

    /// Every attribute the mask may carry for this transition, `STATE` included.
    pub fn allowed(&self) -> QpAttrMask {
        self.required | self.optional | QpAttrMask::STATE
    }
}

/// The RC row of the QP state table: `Some(rule)` when `from -> to` is legal.
pub fn rc_transition(from: QpState, to: QpState) -> Option<TransitionRule> {
    use QpState::{Err as Error, Init, Reset, Rtr, Rts, Sqd, Sqe};
    type M = QpAttrMask;
    let rule = |required: QpAttrMask, optional: QpAttrMask| Some(TransitionRule { required, optional });
    match (from, to) {
        // Any state may be reset or moved to the error state, with no attributes.
        (_, Reset) | (_, Error) => Some(TransitionRule::bare()),
        (Reset, Init) => rule(M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS, M::empty()),
        (Init, Init) => rule(M::empty(), M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS),
        (Init, Rtr) => rule(
            M::AV | M::PATH_MTU | M::DEST_QPN | M::RQ_PSN | M::MAX_DEST_RD_ATOMIC | M::MIN_RNR_TIMER,
            M::ACCESS_FLAGS | M::PKEY_INDEX,
        ),
        (Rtr, Rts) => rule(
            M::SQ_PSN | M::TIMEOUT | M::RETRY_CNT | M::RNR_RETRY | M::MAX_QP_RD_ATOMIC,
            M::CUR_STATE | M::ACCESS_FLAGS | M::MIN_RNR_TIMER,
        ),
        (Rts, Rts) | (Sqd, Rts) => rule(M::empty(), M::CUR_STATE | M::ACCESS_FLAGS | M::MIN_RNR_TIMER),
        (Rts, Sqd) => Some(TransitionRule::bare()),
        (Sqd, Sqd) => rule(
            M::empty(),
            M::PORT
                | M::AV
                | M::TIMEOUT
                | M::RETRY_CNT
                | M::RNR_RETRY
                | M::MAX_QP_RD_ATOMIC
                | M::MAX_DEST_RD_ATOMIC
                | M::ACCESS_FLAGS
                | M::PKEY_INDEX
                | M::MIN_RNR_TIMER,
        ),
        // An RC QP never enters SQE itself; the recovery transition is kept for
        // completeness and, like every transition out of an SQ state, may
        // restate the current state.
        (Sqe, Rts) => rule(M::empty(), M::CUR_STATE),
        _ => None,
    }
}

/// Validate a QP_MODIFY of an RC QP currently in `cur`.
///
/// Returns the state the QP moves to: `attr.qp_state` when `STATE` is in the
/// mask, `cur` otherwise (an attribute-only modify is the `cur -> cur`
/// transition of the table).
pub fn check_modify(cur: QpState, mask: QpAttrMask, attr: &accel_qp_attr) -> Result<QpState, QpModifyError> {
    let next = if mask.contains(QpAttrMask::STATE) {
        QpState::try_from(attr.qp_state).map_err(|_| QpModifyError::BadValue("qp_state"))?
    } else {
        cur
    };
    let rule = rc_transition(cur, next).ok_or(QpModifyError::IllegalTransition { from: cur, to: next })?;
    let missing = rule.required - mask;
    if !missing.is_empty() {
        return Err(QpModifyError::MissingAttrs(missing));
    }
    let unexpected = mask - rule.allowed();
    if !unexpected.is_empty() {
        return Err(QpModifyError::UnexpectedAttrs(unexpected));
    }
    if mask.contains(QpAttrMask::CUR_STATE) {
        let given = QpState::try_from(attr.cur_qp_state).map_err(|_| QpModifyError::BadValue("cur_qp_state"))?;
        if given != cur {
            return Err(QpModifyError::CurStateMismatch { given, actual: cur });
        }
    }
    check_values(mask, attr)?;
    Ok(next)
}

/// Range checks of every attribute named by `mask`.
fn check_values(mask: QpAttrMask, attr: &accel_qp_attr) -> Result<(), QpModifyError> {
    let bad = |cond: bool, what: &'static str| if cond { Err(QpModifyError::BadValue(what)) } else { Ok(()) };
    let has = |m: QpAttrMask| mask.contains(m);
    if has(QpAttrMask::ACCESS_FLAGS) {
        bad(MrAccess::from_bits(attr.qp_access_flags).is_none(), "qp_access_flags")?;
    }
    if has(QpAttrMask::PORT) {
        bad(attr.port_num == 0, "port_num")?;
    }
    if has(QpAttrMask::AV) {
        bad(attr.flow_label >= FLOW_LABEL_LIMIT, "flow_label")?;
    }
    if has(QpAttrMask::PATH_MTU) {
        bad(Mtu::try_from(attr.path_mtu).is_err(), "path_mtu")?;
    }
    if has(QpAttrMask::DEST_QPN) {
        bad(attr.dest_qp_num == 0 || attr.dest_qp_num >= U24_LIMIT, "dest_qp_num")?;
    }
    if has(QpAttrMask::RQ_PSN) {
        bad(attr.rq_psn >= U24_LIMIT, "rq_psn")?;
    }
    if has(QpAttrMask::SQ_PSN) {
        bad(attr.sq_psn >= U24_LIMIT, "sq_psn")?;
    }
    if has(QpAttrMask::TIMEOUT) {
        bad(attr.timeout > MAX_TIMER_CODE, "timeout")?;
    }
    if has(QpAttrMask::RETRY_CNT) {
        bad(attr.retry_cnt > MAX_RETRY, "retry_cnt")?;
    }
    if has(QpAttrMask::RNR_RETRY) {
        bad(attr.rnr_retry > MAX_RETRY, "rnr_retry")?;
    }
    if has(QpAttrMask::MIN_RNR_TIMER) {
        bad(attr.min_rnr_timer > MAX_TIMER_CODE, "min_rnr_timer")?;
    }
    Ok(())
}

/// The attribute values an RC QP currently holds (everything of
/// [`accel_qp_attr`] except the states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpAttrs {
    /// Remote access rights granted to the peer.
    pub access_flags: MrAccess,
    /// P_Key table index.
    pub pkey_index: u32,
    /// Physical port (1-based).
    pub port_num: u32,
    /// Path MTU (`ACCEL_MTU_*` code).
    pub path_mtu: u32,
    /// Destination GID of the address vector.
    pub dest_gid: [u8; 16],
    /// Source GID index of the address vector.
    pub sgid_index: u8,
    /// Hop limit of the address vector.
    pub hop_limit: u8,
    /// Traffic class of the address vector.
    pub traffic_class: u8,
    /// Flow label of the address vector.
    pub flow_label: u32,
    /// Remote QP number.
    pub dest_qp_num: u32,
    /// Expected PSN of the receive queue.
    pub rq_psn: u32,
    /// Next PSN of the send queue.
    pub sq_psn: u32,
    /// Outstanding RDMA READ / atomic requests as initiator.
    pub max_rd_atomic: u32,
    /// Outstanding RDMA READ / atomic requests as responder.
    pub max_dest_rd_atomic: u32,
    /// Local ACK timeout code (4.096 µs * 2^timeout; 0 = infinite).
    pub timeout: u8,
    /// Transport retry count.
    pub retry_cnt: u8,
    /// RNR retry count (7 = infinite).
    pub rnr_retry: u8,
    /// Minimum RNR NAK timer code.
    pub min_rnr_timer: u8,
}

impl Default for QpAttrs {
    /// Everything zero and no access rights: the attributes of a new QP.
    fn default() -> Self {
        QpAttrs {
            access_flags: MrAccess::empty(),
            pkey_index: 0,
            port_num: 0,
            path_mtu: 0,
            dest_gid: [0; 16],
            sgid_index: 0,
            hop_limit: 0,
            traffic_class: 0,
            flow_label: 0,
            dest_qp_num: 0,
            rq_psn: 0,
            sq_psn: 0,
            max_rd_atomic: 0,
            max_dest_rd_atomic: 0,
            timeout: 0,
            retry_cnt: 0,
            rnr_retry: 0,
            min_rnr_timer: 0,
        }
    }
}

impl QpAttrs {
    /// Copy the attributes named by `mask` from `attr`; others keep their values.
    ///
    /// Meant for a request [`check_modify`] accepted; unknown access bits are
    /// dropped rather than stored.
    pub fn apply(&mut self, mask: QpAttrMask, attr: &accel_qp_attr) {
        let has = |m: QpAttrMask| mask.contains(m);
        if has(QpAttrMask::ACCESS_FLAGS) {
            self.access_flags = MrAccess::from_bits_truncate(attr.qp_access_flags);
        }
        if has(QpAttrMask::PKEY_INDEX) {
            self.pkey_index = attr.pkey_index;
        }
        if has(QpAttrMask::PORT) {
            self.port_num = attr.port_num;
        }
        if has(QpAttrMask::AV) {
            self.dest_gid = attr.dest_gid;
            self.sgid_index = attr.sgid_index;
            self.hop_limit = attr.hop_limit;
            self.traffic_class = attr.traffic_class;
            self.flow_label = attr.flow_label;
        }
        if has(QpAttrMask::PATH_MTU) {
            self.path_mtu = attr.path_mtu;
        }
        if has(QpAttrMask::DEST_QPN) {
            self.dest_qp_num = attr.dest_qp_num;
        }
        if has(QpAttrMask::RQ_PSN) {
            self.rq_psn = attr.rq_psn;
        }
        if has(QpAttrMask::SQ_PSN) {
            self.sq_psn = attr.sq_psn;
        }
        if has(QpAttrMask::MAX_QP_RD_ATOMIC) {
            self.max_rd_atomic = attr.max_rd_atomic;
        }
        if has(QpAttrMask::MAX_DEST_RD_ATOMIC) {
            self.max_dest_rd_atomic = attr.max_dest_rd_atomic;
        }
        if has(QpAttrMask::TIMEOUT) {
            self.timeout = attr.timeout;
        }
        if has(QpAttrMask::RETRY_CNT) {
            self.retry_cnt = attr.retry_cnt;
        }
        if has(QpAttrMask::RNR_RETRY) {
            self.rnr_retry = attr.rnr_retry;
        }
        if has(QpAttrMask::MIN_RNR_TIMER) {
            self.min_rnr_timer = attr.min_rnr_timer;
        }
    }

    /// The QP_QUERY answer for a QP in `state` holding these attributes.
    pub fn to_attr(&self, state: QpState) -> accel_qp_attr {
        accel_qp_attr {
            qp_state: state.into(),
            cur_qp_state: state.into(),
            path_mtu: self.path_mtu,
            qp_access_flags: self.access_flags.bits(),
            dest_gid: self.dest_gid,
            dest_qp_num: self.dest_qp_num,
            rq_psn: self.rq_psn,
            sq_psn: self.sq_psn,
            port_num: self.port_num,
            pkey_index: self.pkey_index,
            max_rd_atomic: self.max_rd_atomic,
            max_dest_rd_atomic: self.max_dest_rd_atomic,
            timeout: self.timeout,
            retry_cnt: self.retry_cnt,
            rnr_retry: self.rnr_retry,
            min_rnr_timer: self.min_rnr_timer,
            sgid_index: self.sgid_index,
            hop_limit: self.hop_limit,
            traffic_class: self.traffic_class,
            pad0: 0,
            flow_label: self.flow_label,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QpState::{Init, Reset, Rtr, Rts, Sqd, Sqe};
    use accel_uapi::sys;

    /// A request with every field valid, moving to `to`.
    fn valid_attr(to: QpState) -> accel_qp_attr {
        accel_qp_attr {
            qp_state: to.into(),
            cur_qp_state: 0,
            path_mtu: sys::ACCEL_MTU_1024,
            qp_access_flags: (MrAccess::LOCAL_WRITE | MrAccess::REMOTE_READ).bits(),
            dest_gid: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            dest_qp_num: 0x12_3456,
            rq_psn: 0xff_ffff,
            sq_psn: 0x10,
            port_num: 1,
            pkey_index: 0,
            max_rd_atomic: 4,
            max_dest_rd_atomic: 4,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            pad0: 0,
            flow_label: 0xf_ffff,
        }
    }

    fn pairs() -> impl Iterator<Item = (QpState, QpState)> {
        QpState::ALL.iter().flat_map(|&f| QpState::ALL.iter().map(move |&t| (f, t)))
    }

    fn legal() -> impl Iterator<Item = (QpState, QpState, TransitionRule)> {
        pairs().filter_map(|(f, t)| rc_transition(f, t).map(|r| (f, t, r)))
    }

    /// A valid request for `from -> to` whose CUR_STATE (if masked) matches.
    fn request(from: QpState, to: QpState) -> accel_qp_attr {
        accel_qp_attr { cur_qp_state: from.into(), ..valid_attr(to) }
    }

    #[test]
    fn table_literals() {
        assert!(rc_transition(Reset, Rts).is_none());
        assert!(rc_transition(Reset, Rtr).is_none());
        assert!(rc_transition(Rts, Rtr).is_none());
        assert!(rc_transition(Rtr, Init).is_none());
        assert!(rc_transition(Rtr, Rtr).is_none());
        assert!(rc_transition(QpState::Err, Rts).is_none());
        assert!(rc_transition(Sqe, Sqe).is_none());
        assert!(rc_transition(Reset, Init).is_some());
        assert!(rc_transition(Init, Init).is_some());
        assert!(rc_transition(Init, Rtr).is_some());
        assert!(rc_transition(Rtr, Rts).is_some());
        assert!(rc_transition(Rts, Rts).is_some());
        assert!(rc_transition(Rts, Sqd).is_some());
        assert!(rc_transition(Sqd, Rts).is_some());
        assert!(rc_transition(Sqd, Sqd).is_some());
        assert!(rc_transition(Sqe, Rts).is_some());
        for &s in QpState::ALL {
            assert_eq!(rc_transition(s, Reset), Some(TransitionRule::bare()), "{s:?} -> Reset");
            assert_eq!(rc_transition(s, QpState::Err), Some(TransitionRule::bare()), "{s:?} -> Err");
        }
        assert_eq!(legal().count(), 7 * 2 + 9);
        let r = rc_transition(Reset, Init).unwrap();
        assert_eq!(r.required, QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS);
        let r = rc_transition(Init, Rtr).unwrap();
        assert_eq!(
            r.required,
            QpAttrMask::AV
                | QpAttrMask::PATH_MTU
                | QpAttrMask::DEST_QPN
                | QpAttrMask::RQ_PSN
                | QpAttrMask::MAX_DEST_RD_ATOMIC
                | QpAttrMask::MIN_RNR_TIMER
        );
        let r = rc_transition(Rtr, Rts).unwrap();
        assert_eq!(
            r.required,
            QpAttrMask::SQ_PSN
                | QpAttrMask::TIMEOUT
                | QpAttrMask::RETRY_CNT
                | QpAttrMask::RNR_RETRY
                | QpAttrMask::MAX_QP_RD_ATOMIC
        );
    }

    #[test]
    fn every_pair_against_table() {
        for (from, to) in pairs() {
            let got = match rc_transition(from, to) {
                Some(rule) => {
                    let got = check_modify(from, QpAttrMask::STATE | rule.required, &request(from, to));
                    assert_eq!(got, Ok(to), "{from:?} -> {to:?}");
                    continue;
                }
                None => check_modify(from, QpAttrMask::all(), &request(from, to)),
            };
            assert_eq!(got, Err(QpModifyError::IllegalTransition { from, to }), "{from:?} -> {to:?}");
            let got = check_modify(from, QpAttrMask::STATE, &request(from, to));
            assert_eq!(got, Err(QpModifyError::IllegalTransition { from, to }), "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn rc_bring_up_sequence() {
        let steps = [
            (Reset, Init, QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS),
            (
                Init,
                Rtr,
                QpAttrMask::AV
                    | QpAttrMask::PATH_MTU
                    | QpAttrMask::DEST_QPN
                    | QpAttrMask::RQ_PSN
                    | QpAttrMask::MAX_DEST_RD_ATOMIC
                    | QpAttrMask::MIN_RNR_TIMER,
            ),
            (
                Rtr,
                Rts,
                QpAttrMask::SQ_PSN
                    | QpAttrMask::TIMEOUT
                    | QpAttrMask::RETRY_CNT
                    | QpAttrMask::RNR_RETRY
                    | QpAttrMask::MAX_QP_RD_ATOMIC,
            ),
        ];
        for (from, to, mask) in steps {
            assert_eq!(check_modify(from, QpAttrMask::STATE | mask, &valid_attr(to)), Ok(to));
        }
    }

    #[test]
    fn each_required_attr_missing() {
        let mut checked = 0;
        for (from, to, rule) in legal() {
            for bit in rule.required.iter() {
                let mask = (QpAttrMask::STATE | rule.required) - bit;
                let got = check_modify(from, mask, &request(from, to));
                assert_eq!(got, Err(QpModifyError::MissingAttrs(bit)), "{from:?} -> {to:?} without {bit:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 3 + 6 + 5);
    }

    #[test]
    fn optional_attrs_accepted() {
        for (from, to, rule) in legal() {
            let attr = request(from, to);
            for bit in rule.optional.iter() {
                let mask = QpAttrMask::STATE | rule.required | bit;
                assert_eq!(check_modify(from, mask, &attr), Ok(to), "{from:?} -> {to:?} with {bit:?}");
            }
            let mask = QpAttrMask::STATE | rule.required | rule.optional;
            assert_eq!(check_modify(from, mask, &attr), Ok(to), "{from:?} -> {to:?} with all optional");
        }
    }

    #[test]
    fn disallowed_attrs_rejected() {
        for (from, to, rule) in legal() {
            let attr = request(from, to);
            for bit in (QpAttrMask::all() - rule.allowed()).iter() {
                let mask = QpAttrMask::STATE | rule.required | bit;
                let got = check_modify(from, mask, &attr);
                assert_eq!(got, Err(QpModifyError::UnexpectedAttrs(bit)), "{from:?} -> {to:?} with {bit:?}");
            }
        }
        // Concrete cases.
        let m = QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS;
        let got = check_modify(Reset, m | QpAttrMask::SQ_PSN, &valid_attr(Init));
        assert_eq!(got, Err(QpModifyError::UnexpectedAttrs(QpAttrMask::SQ_PSN)));
        let got = check_modify(Rts, QpAttrMask::STATE | QpAttrMask::ACCESS_FLAGS, &valid_attr(QpState::Err));
        assert_eq!(got, Err(QpModifyError::UnexpectedAttrs(QpAttrMask::ACCESS_FLAGS)));
        // CUR_STATE is only accepted out of RTR/RTS/SQD/SQE.
        let attr = request(Init, Init);
        let got = check_modify(Init, QpAttrMask::CUR_STATE, &attr);
        assert_eq!(got, Err(QpModifyError::UnexpectedAttrs(QpAttrMask::CUR_STATE)));
    }

    #[test]
    fn attribute_only_modify_stays_put() {
        let attr = valid_attr(Reset); // qp_state ignored without STATE
        assert_eq!(check_modify(Init, QpAttrMask::ACCESS_FLAGS, &attr), Ok(Init));
        assert_eq!(check_modify(Rts, QpAttrMask::MIN_RNR_TIMER, &attr), Ok(Rts));
        assert_eq!(
            check_modify(Rtr, QpAttrMask::empty(), &attr),
            Err(QpModifyError::IllegalTransition { from: Rtr, to: Rtr })
        );
    }

    #[test]
    fn cur_state() {
        let mask = QpAttrMask::STATE | QpAttrMask::CUR_STATE;
        let mut attr = valid_attr(Rts);
        attr.cur_qp_state = Rts.into();
        assert_eq!(check_modify(Rts, mask, &attr), Ok(Rts));
        attr.cur_qp_state = Sqd.into();
        assert_eq!(check_modify(Rts, mask, &attr), Err(QpModifyError::CurStateMismatch { given: Sqd, actual: Rts }));
        attr.cur_qp_state = 99;
        assert_eq!(check_modify(Rts, mask, &attr), Err(QpModifyError::BadValue("cur_qp_state")));
        // Without CUR_STATE in the mask the field is ignored.
        assert_eq!(check_modify(Rts, QpAttrMask::STATE, &attr), Ok(Rts));
    }

    #[test]
    fn bad_values() {
        let init = QpAttrMask::STATE | QpAttrMask::PKEY_INDEX | QpAttrMask::PORT | QpAttrMask::ACCESS_FLAGS;
        let rtr = QpAttrMask::STATE | rc_transition(Init, Rtr).unwrap().required;
        let rts = QpAttrMask::STATE | rc_transition(Rtr, Rts).unwrap().required;
        type Edit = fn(&mut accel_qp_attr);
        let cases: &[(QpState, QpState, QpAttrMask, Edit, &str)] = &[
            (Reset, Init, init, |a| a.qp_access_flags = 1 << 31, "qp_access_flags"),
            (Reset, Init, init, |a| a.port_num = 0, "port_num"),
            (Init, Rtr, rtr, |a| a.path_mtu = 0, "path_mtu"),
            (Init, Rtr, rtr, |a| a.path_mtu = 6, "path_mtu"),
            (Init, Rtr, rtr, |a| a.dest_qp_num = 0, "dest_qp_num"),
            (Init, Rtr, rtr, |a| a.dest_qp_num = 1 << 24, "dest_qp_num"),
            (Init, Rtr, rtr, |a| a.rq_psn = 1 << 24, "rq_psn"),
            (Init, Rtr, rtr, |a| a.min_rnr_timer = 32, "min_rnr_timer"),
            (Init, Rtr, rtr, |a| a.flow_label = 1 << 20, "flow_label"),
            (Rtr, Rts, rts, |a| a.sq_psn = u32::MAX, "sq_psn"),
            (Rtr, Rts, rts, |a| a.timeout = 32, "timeout"),
            (Rtr, Rts, rts, |a| a.retry_cnt = 8, "retry_cnt"),
            (Rtr, Rts, rts, |a| a.rnr_retry = 8, "rnr_retry"),
            (Reset, Init, init, |a| a.qp_state = 7, "qp_state"),
        ];
        for &(from, to, mask, edit, what) in cases {
            let mut attr = valid_attr(to);
            assert_eq!(check_modify(from, mask, &attr), Ok(to), "{what}: baseline");
            edit(&mut attr);
            assert_eq!(check_modify(from, mask, &attr), Err(QpModifyError::BadValue(what)), "{what}");
        }
        // Values of attributes outside the mask are not checked.
        let attr = accel_qp_attr { port_num: 0, timeout: 99, sq_psn: u32::MAX, ..valid_attr(Rtr) };
        assert_eq!(check_modify(Init, rtr, &attr), Ok(Rtr));
        // Edge values in range are accepted.
        let attr = accel_qp_attr { dest_qp_num: 0xff_ffff, rq_psn: 0, min_rnr_timer: 31, ..valid_attr(Rtr) };
        assert_eq!(check_modify(Init, rtr, &attr), Ok(Rtr));
        let attr = accel_qp_attr { path_mtu: sys::ACCEL_MTU_4096, ..valid_attr(Rtr) };
        assert_eq!(check_modify(Init, rtr, &attr), Ok(Rtr));
        let attr = accel_qp_attr { timeout: 31, retry_cnt: 0, rnr_retry: 0, sq_psn: 0xff_ffff, ..valid_attr(Rts) };
        assert_eq!(check_modify(Rtr, rts, &attr), Ok(Rts));
    }

    #[test]
    fn errors_are_einval() {
        let errs = [
            QpModifyError::IllegalTransition { from: QpState::Reset, to: QpState::Rts },
            QpModifyError::MissingAttrs(QpAttrMask::PORT),
            QpModifyError::UnexpectedAttrs(QpAttrMask::SQ_PSN),
            QpModifyError::CurStateMismatch { given: QpState::Rtr, actual: QpState::Rts },
            QpModifyError::BadValue("port_num"),
        ];
        for e in errs {
            assert_eq!(e.errno(), Errno::EINVAL, "{e}");
        }
    }

    #[test]
    fn attrs_apply_and_query_round_trip() {
        let mut attrs = QpAttrs::default();
        let full = valid_attr(Rts);
        let all = QpAttrMask::all() - QpAttrMask::STATE - QpAttrMask::CUR_STATE;
        attrs.apply(all, &full);
        let back = attrs.to_attr(Rts);
        assert_eq!(back, accel_qp_attr { cur_qp_state: Rts.into(), ..full });

        let mut again = QpAttrs::default();
        again.apply(all, &back);
        assert_eq!(again, attrs);
    }

    #[test]
    fn attrs_apply_only_masked() {
        let mut attrs = QpAttrs::default();
        let a = valid_attr(Init);
        attrs.apply(QpAttrMask::STATE | QpAttrMask::PORT | QpAttrMask::PKEY_INDEX | QpAttrMask::ACCESS_FLAGS, &a);
        assert_eq!(
            attrs,
            QpAttrs {
                port_num: 1,
                pkey_index: 0,
                access_flags: MrAccess::LOCAL_WRITE | MrAccess::REMOTE_READ,
                ..QpAttrs::default()
            }
        );
        let before = attrs;
        let b = accel_qp_attr { sq_psn: 77, timeout: 3, port_num: 9, ..valid_attr(Rts) };
        attrs.apply(QpAttrMask::SQ_PSN | QpAttrMask::TIMEOUT, &b);
        assert_eq!(attrs, QpAttrs { sq_psn: 77, timeout: 3, ..before });

        attrs.apply(QpAttrMask::AV, &b);
        assert_eq!(attrs.dest_gid, b.dest_gid);
        assert_eq!((attrs.sgid_index, attrs.hop_limit, attrs.flow_label), (1, 64, 0xf_ffff));
        assert_eq!(attrs.port_num, 1);

        let q = attrs.to_attr(Init);
        assert_eq!((q.qp_state, q.cur_qp_state), (sys::ACCEL_QPS_INIT, sys::ACCEL_QPS_INIT));
        assert_eq!((q.sq_psn, q.timeout, q.pad0), (77, 3, 0));
        assert_eq!(q.qp_access_flags, (MrAccess::LOCAL_WRITE | MrAccess::REMOTE_READ).bits());
    }
}
