//! `trait Driver`: the whole backend contract, and the only thing a vendor
//! implements. The core owns every rule (validation, handles, lifetimes,
//! isolation, scheduling, fences); a driver does only what is truly hardware
//! specific: describe the device, allocate its memory, own its page tables,
//! run jobs on its engines, and reset them.
//!
//! Rules every implementation must follow:
//! - Methods are called without any core lock that other files contend on,
//!   except [`Driver::vm_bind`], which runs under the target context's VM lock
//!   and must therefore be bounded CPU/MMIO work (never wait for a job).
//! - A method that fails changes nothing (the core relies on it for
//!   all-or-nothing ioctls).
//! - Freeing is infallible and happens exactly once per successful allocation.
//! - Nothing here may panic on any argument: the core validated what came from
//!   userspace, but a backend still returns errors, never aborts.

use crate::error::DriverError;
use crate::memory::HostMemory;
use accel_uapi::flags::{Caps, VmBindFlags};
use accel_uapi::types::{EngineClass, MemRegionKind, Mtu, PortState, Priority};
use std::ops::Range;
use std::sync::Arc;

/// Who the device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// PCI vendor id (or a registered software id).
    pub vendor_id: u32,
    /// Device id.
    pub device_id: u32,
    /// Revision.
    pub revision: u32,
    /// Driver name (at most 31 bytes are reported).
    pub driver_name: String,
}

/// One memory region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region id (what BO_CREATE names).
    pub id: u32,
    /// Host or device memory.
    pub kind: MemRegionKind,
    /// Bytes.
    pub size: u64,
    /// Bitmask of supported page sizes (bit n = 2^n bytes); the smallest is the
    /// BO size granule and the VM_BIND alignment for BOs of this region.
    pub page_sizes: u64,
    /// BOs of this region can be mapped by the CPU.
    pub cpu_visible: bool,
}

impl RegionInfo {
    /// The smallest supported page size.
    pub fn min_page(&self) -> u64 {
        1u64 << self.page_sizes.trailing_zeros().min(63)
    }
}

/// One engine class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// The class.
    pub class: EngineClass,
    /// How many engines of it.
    pub count: u32,
}

/// One fabric port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// 1-based port number.
    pub port_num: u32,
    /// Link state.
    pub state: PortState,
    /// Largest MTU.
    pub max_mtu: Mtu,
    /// Current MTU.
    pub active_mtu: Mtu,
    /// RoCE v2 GID.
    pub gid: [u8; 16],
    /// Link speed.
    pub speed_mbps: u64,
}

/// The driver's hard limits; the core enforces them and reports them in ACCEL_QUERY_LIMITS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Contexts per device (GAUDI: 1).
    pub max_contexts: u32,
    /// Queues per context.
    pub max_queues_per_context: u32,
    /// Largest BO.
    pub max_bo_size: u64,
    /// Jobs in flight per queue.
    pub max_queue_depth: u32,
    /// Default job timeout; a queue may only lower it.
    pub default_job_timeout_ns: u64,
    /// Completion queue depth.
    pub max_cqe: u32,
    /// Work requests per QP queue.
    pub max_qp_wr: u32,
    /// SGEs per work request.
    pub max_sge: u32,
    /// Largest message.
    pub max_msg_size: u32,
}

/// The VA window of every context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaLayout {
    /// Usable addresses.
    pub range: Range<u64>,
    /// Part of `range` that the core keeps for itself (VM_BIND refuses it).
    pub reserved: Range<u64>,
}

/// A driver's page-table handle for one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmId(pub u64);

/// Device memory backing one BO.
#[derive(Debug)]
pub struct Allocation {
    /// Region it came from.
    pub region: u32,
    /// Device (physical) address.
    pub addr: u64,
    /// Size in bytes (a multiple of the region's smallest page).
    pub size: u64,
    /// CPU-visible backing; `None` for memory the CPU cannot reach. The core
    /// mmaps and exports through it.
    pub host: Option<Arc<HostMemory>>,
}

/// One page-table update of a [`Driver::vm_bind`] batch. The core has already
/// checked alignment, bounds, overlap and permissions.
#[derive(Debug)]
pub enum VmUpdate<'a> {
    /// Map `len` bytes at `va` to `alloc` starting `offset` bytes in.
    Map {
        /// Virtual address.
        va: u64,
        /// Length.
        len: u64,
        /// Backing memory.
        alloc: &'a Allocation,
        /// Offset into the allocation.
        offset: u64,
        /// Permissions.
        perms: VmBindFlags,
    },
    /// Remove whatever is mapped in `[va, va + len)` (the core only unmaps what it mapped).
    Unmap {
        /// Virtual address.
        va: u64,
        /// Length.
        len: u64,
    },
}

/// A driver's handle for one hardware queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HwQueueId(pub u64);

/// Why a job failed, as the hardware reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobFault {
    /// An access to an unmapped VA or without the needed permission.
    PageFault {
        /// Faulting VA.
        addr: u64,
        /// The access (`ACCEL_FAULT_*`).
        access: accel_uapi::flags::FaultAccess,
    },
    /// A WAIT_VALUE or native wait ran past its own timeout.
    Timeout,
    /// The device failed the job.
    Device(String),
    /// The job was dropped by a reset before it ran.
    Cancelled,
}

/// Where a driver reports job completion (called from any thread, once per job).
pub trait JobSink: Send + Sync {
    /// Job `seqno` finished, successfully or not.
    fn job_done(&self, seqno: u64, result: Result<(), JobFault>);
}

/// A job as the core hands it to the driver: validated, dependencies resolved.
#[derive(Debug)]
pub struct Job {
    /// Sequence number on its queue (never 0 or u64::MAX).
    pub seqno: u64,
    /// The command streams, in order.
    pub chunks: Vec<JobChunk>,
}

/// One command stream of a job, already copied out of its BO (so userspace
/// cannot change it after validation).
#[derive(Debug)]
pub enum JobChunk {
    /// Portable commands, parsed and validated by the core.
    Portable(Vec<crate::cmd::PortableCmd>),
    /// A native command buffer the driver validated with [`Driver::validate_native`].
    Native(Vec<u8>),
}

/// The backend contract.
pub trait Driver: Send + Sync + 'static {
    /// Identity.
    fn info(&self) -> DeviceInfo;
    /// Optional features the backend implements (the core adds what it
    /// implements itself and reports the intersection).
    fn caps(&self) -> Caps;
    /// Hard limits.
    fn limits(&self) -> Limits;
    /// Memory regions, with stable ids.
    fn regions(&self) -> Vec<RegionInfo>;
    /// Engine classes.
    fn engines(&self) -> Vec<EngineInfo>;
    /// Fabric ports (none by default).
    fn ports(&self) -> Vec<PortInfo> {
        Vec::new()
    }
    /// The VA window of every context.
    fn va_layout(&self) -> VaLayout;

    /// The network attachment of port `port` (1-based, as in
    /// [`Driver::ports`]), asked for once, when the port's first QP enters
    /// RTR. The core runs the RoCE v2 RC engine over it. Drivers of NICs
    /// that implement RC in hardware would instead get their own verbs hooks;
    /// this contract is for ports that move frames.
    fn port_link(&self, _port: u32) -> Result<Arc<dyn crate::fabric::link::Link>, DriverError> {
        Err(DriverError::NotSupported)
    }

    /// Bytes in use in `region` (for ACCEL_QUERY_MEMORY_REGIONS.available).
    fn region_used(&self, _region: u32) -> u64 {
        0
    }

    /// Allocate `size` bytes (already rounded to the region's smallest page) in `region`.
    fn alloc(&self, region: u32, size: u64) -> Result<Allocation, DriverError>;
    /// Free an allocation (exactly once).
    fn free(&self, alloc: Allocation);

    /// Create the page tables of a new context.
    fn vm_create(&self) -> Result<VmId, DriverError>;
    /// Destroy them; the core unmaps everything first.
    fn vm_destroy(&self, vm: VmId);
    /// Apply a batch of page-table updates, all or nothing.
    fn vm_bind(&self, vm: VmId, updates: &[VmUpdate<'_>]) -> Result<(), DriverError>;

    /// Create a hardware queue on an engine of `class` for context `vm`; jobs
    /// complete through `sink`. Backends without SUBMIT keep the default.
    fn queue_create(
        &self,
        _vm: VmId,
        _class: EngineClass,
        _priority: Priority,
        _sink: Arc<dyn JobSink>,
    ) -> Result<HwQueueId, DriverError> {
        Err(DriverError::NotSupported)
    }
    /// Destroy a queue; the core has drained or reset it first.
    fn queue_destroy(&self, _queue: HwQueueId) {}
    /// Start a job; it completes through the queue's sink, in FIFO order per queue.
    fn run_job(&self, _queue: HwQueueId, _job: Job) -> Result<(), DriverError> {
        Err(DriverError::NotSupported)
    }
    /// Reset the engine behind `queue` after job `hung_seqno` hung. The core has
    /// already completed that job (ETIMEDOUT) and ignores a late report of it.
    /// If it is still executing, abort it; if it already finished (a reset
    /// racing with completion), leave the engine alone. Jobs queued behind it
    /// are innocent: they run (or re-run) afterwards and complete normally,
    /// and the engine accepts new jobs.
    fn reset_queue(&self, _queue: HwQueueId, _hung_seqno: u64) -> Result<(), DriverError> {
        Err(DriverError::NotSupported)
    }
    /// Validate and patch a native command buffer for context `vm`.
    fn validate_native(&self, _vm: VmId, _cb: &[u8]) -> Result<Vec<u8>, DriverError> {
        Err(DriverError::NotSupported)
    }
}
