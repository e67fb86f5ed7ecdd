//! Every flag word of the ABI as a `bitflags` type. `from_bits` returns
//! `None` for a word with unknown bits, which the dispatcher turns into
//! EINVAL (UAPI-RULES.md rule 7); the ioctl table uses `all()` as the valid mask.

use crate::sys;
use bitflags::bitflags;

bitflags! {
    /// `ACCEL_CAP_*`: what a device announces (accel_version.caps, accel_device_info.caps).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Caps: u64 {
        /// Contexts, BOs and VM_BIND.
        const MEMORY = sys::ACCEL_CAP_MEMORY;
        /// BO export/import.
        const BO_SHARE = sys::ACCEL_CAP_BO_SHARE;
        /// Queues and SUBMIT.
        const SUBMIT = sys::ACCEL_CAP_SUBMIT;
        /// Portable command chunks.
        const PORTABLE_CS = sys::ACCEL_CAP_PORTABLE_CS;
        /// Native command chunks.
        const NATIVE_CS = sys::ACCEL_CAP_NATIVE_CS;
        /// Binary syncobjs.
        const SYNCOBJ = sys::ACCEL_CAP_SYNCOBJ;
        /// Timeline syncobjs.
        const SYNCOBJ_TIMELINE = sys::ACCEL_CAP_SYNCOBJ_TIMELINE;
        /// Syncobj export/import.
        const SYNCOBJ_SHARE = sys::ACCEL_CAP_SYNCOBJ_SHARE;
        /// Fabric verbs.
        const FABRIC = sys::ACCEL_CAP_FABRIC;
        /// CONTEXT_QUERY.
        const CONTEXT_QUERY = sys::ACCEL_CAP_CONTEXT_QUERY;
        /// Device-local memory regions.
        const DEVICE_MEMORY = sys::ACCEL_CAP_DEVICE_MEMORY;
    }

    /// `ACCEL_MEM_REGION_*` flags of accel_memory_region.flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemRegionFlags: u32 {
        /// The CPU can map BOs of this region.
        const CPU_VISIBLE = sys::ACCEL_MEM_REGION_CPU_VISIBLE;
    }

    /// `ACCEL_CONTEXT_*` bits of accel_context_query.status.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ContextStatus: u32 {
        /// A job faulted.
        const FAULTED = sys::ACCEL_CONTEXT_FAULTED;
        /// The context is banned.
        const BANNED = sys::ACCEL_CONTEXT_BANNED;
    }

    /// `ACCEL_FAULT_*`: the access that faulted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct FaultAccess: u32 {
        /// A read.
        const READ = sys::ACCEL_FAULT_READ;
        /// A write.
        const WRITE = sys::ACCEL_FAULT_WRITE;
        /// An instruction fetch.
        const EXEC = sys::ACCEL_FAULT_EXEC;
    }

    /// `ACCEL_BO_*` of accel_bo_create.flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct BoFlags: u32 {
        /// May be mmapped.
        const CPU_VISIBLE = sys::ACCEL_BO_CPU_VISIBLE;
        /// Contents start as zero.
        const ZEROED = sys::ACCEL_BO_ZEROED;
    }

    /// `ACCEL_VM_BIND_*` permissions of a MAP op.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VmBindFlags: u32 {
        /// Jobs may read.
        const READ = sys::ACCEL_VM_BIND_READ;
        /// Jobs may write.
        const WRITE = sys::ACCEL_VM_BIND_WRITE;
        /// Jobs may execute (command buffers).
        const EXEC = sys::ACCEL_VM_BIND_EXEC;
    }

    /// `ACCEL_QUEUE_*` of accel_queue_create.flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct QueueFlags: u32 {
        /// timeout_ns is valid.
        const TIMEOUT = sys::ACCEL_QUEUE_TIMEOUT;
    }

    /// `ACCEL_SUBMIT_*` of accel_submit.flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SubmitFlags: u32 {
        /// Block for room instead of EAGAIN.
        const BLOCK = sys::ACCEL_SUBMIT_BLOCK;
    }

    /// `ACCEL_SYNCOBJ_CREATE_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SyncobjCreateFlags: u32 {
        /// Start signalled.
        const SIGNALED = sys::ACCEL_SYNCOBJ_CREATE_SIGNALED;
        /// A timeline syncobj.
        const TIMELINE = sys::ACCEL_SYNCOBJ_CREATE_TIMELINE;
    }

    /// `ACCEL_SYNCOBJ_WAIT_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SyncobjWaitFlags: u32 {
        /// Wait for all (else any).
        const ALL = sys::ACCEL_SYNCOBJ_WAIT_ALL;
        /// Wait for a fence to be submitted.
        const WAIT_FOR_SUBMIT = sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT;
    }

    /// `ACCEL_ACCESS_*` of an MR (and of a QP's remote access).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MrAccess: u32 {
        /// The local side may write (receives, READ responses).
        const LOCAL_WRITE = sys::ACCEL_ACCESS_LOCAL_WRITE;
        /// Peers may RDMA WRITE.
        const REMOTE_WRITE = sys::ACCEL_ACCESS_REMOTE_WRITE;
        /// Peers may RDMA READ.
        const REMOTE_READ = sys::ACCEL_ACCESS_REMOTE_READ;
    }

    /// `ACCEL_QP_SIG_ALL` of accel_qp_create.flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct QpCreateFlags: u32 {
        /// Every send WR completes.
        const SIG_ALL = sys::ACCEL_QP_SIG_ALL;
    }

    /// `ACCEL_QP_*` attribute mask of QP_MODIFY.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct QpAttrMask: u32 {
        /// qp_state.
        const STATE = sys::ACCEL_QP_STATE;
        /// cur_qp_state.
        const CUR_STATE = sys::ACCEL_QP_CUR_STATE;
        /// qp_access_flags.
        const ACCESS_FLAGS = sys::ACCEL_QP_ACCESS_FLAGS;
        /// pkey_index.
        const PKEY_INDEX = sys::ACCEL_QP_PKEY_INDEX;
        /// port_num.
        const PORT = sys::ACCEL_QP_PORT;
        /// The address vector (dest_gid, sgid_index, hop_limit, traffic_class, flow_label).
        const AV = sys::ACCEL_QP_AV;
        /// path_mtu.
        const PATH_MTU = sys::ACCEL_QP_PATH_MTU;
        /// timeout.
        const TIMEOUT = sys::ACCEL_QP_TIMEOUT;
        /// retry_cnt.
        const RETRY_CNT = sys::ACCEL_QP_RETRY_CNT;
        /// rnr_retry.
        const RNR_RETRY = sys::ACCEL_QP_RNR_RETRY;
        /// rq_psn.
        const RQ_PSN = sys::ACCEL_QP_RQ_PSN;
        /// max_rd_atomic.
        const MAX_QP_RD_ATOMIC = sys::ACCEL_QP_MAX_QP_RD_ATOMIC;
        /// min_rnr_timer.
        const MIN_RNR_TIMER = sys::ACCEL_QP_MIN_RNR_TIMER;
        /// sq_psn.
        const SQ_PSN = sys::ACCEL_QP_SQ_PSN;
        /// max_dest_rd_atomic.
        const MAX_DEST_RD_ATOMIC = sys::ACCEL_QP_MAX_DEST_RD_ATOMIC;
        /// dest_qp_num.
        const DEST_QPN = sys::ACCEL_QP_DEST_QPN;
    }

    /// `ACCEL_SEND_*` of a send WR.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SendFlags: u32 {
        /// Wait for earlier READs first.
        const FENCE = sys::ACCEL_SEND_FENCE;
        /// Generate a completion.
        const SIGNALED = sys::ACCEL_SEND_SIGNALED;
        /// Solicited event.
        const SOLICITED = sys::ACCEL_SEND_SOLICITED;
    }

    /// `ACCEL_WC_*` flags of a work completion.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct WcFlags: u32 {
        /// imm_data is valid.
        const WITH_IMM = sys::ACCEL_WC_WITH_IMM;
    }
}
