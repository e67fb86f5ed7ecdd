//! # test-driver: the accel mock backend
//!
//! A software device for CI and conformance runs: configurable (memory
//! sizes, page sizes, engine counts, ports, context limit), deterministic,
//! with fault injection, and host memory standing in for device memory. It is
//! also the worked example of `docs/writing-a-backend.md`: everything a real
//! driver does through its hardware, the mock does in plain data structures.
//!
//! - Memory: two regions (0 = host, 1 = device), each managed by the core's
//!   [`RangeAllocator`]; every allocation is backed by its own memfd
//!   ([`HostMemory`]) so it can be mmapped and exported.
//! - Page tables: one [`IntervalMap`] per context, updated all-or-nothing,
//!   with a configurable entry budget (ENOMEM past it).
//! - Queues: one worker thread per hardware queue executes its jobs in FIFO
//!   order (portable command streams on host memory, with page faults for
//!   unmapped or under-privileged accesses) and reports each exactly once
//!   through the queue's sink; a reset aborts the executing job.
//! - Fault injection: fail the Nth allocation; hang or fail the Nth job; delay
//!   every completion ([`MockConfig`]).
//! - Fabric: ports on a [`VirtualSwitch`] (by default one shared by every
//!   mock of the process, so devices can connect QPs to each other) or, for
//!   port 1, RoCE v2 over UDP ([`PortNetwork`]). The core runs the RC engine.
//! - Counters ([`MockStats`]) prove that the core frees everything exactly
//!   once; [`MockTotals`] counts jobs and resets.
#![deny(missing_docs)]

mod engine;
mod exec;
#[cfg(test)]
mod tests;

use accel_core::driver::{
    Allocation, DeviceInfo, EngineInfo, HwQueueId, Job, JobSink, Limits, PortInfo, RegionInfo, VaLayout, VmId, VmUpdate,
};
use accel_core::fabric::link::{Faults, Gid, Link, UdpLink, VirtualSwitch, gid_from_ipv4};
use accel_core::{Driver, DriverError, HostMemory, IntervalMap, RangeAllocator, Splittable};
use accel_uapi::flags::{Caps, VmBindFlags};
use accel_uapi::types::{EngineClass, MemRegionKind, Mtu, PortState, Priority};
use engine::{Engine, JobFaults};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// PCI vendor id the mock reports (a value no real vendor uses).
pub const MOCK_VENDOR_ID: u32 = 0x1dea;
/// Device id the mock reports.
pub const MOCK_DEVICE_ID: u32 = 0x0001;
/// Region id of host memory.
pub const REGION_HOST: u32 = 0;
/// Region id of (simulated) device memory.
pub const REGION_DEVICE: u32 = 1;

/// How the mock device looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// Bytes of the host region.
    pub host_memory: u64,
    /// Bytes of the device region (0 = no device region).
    pub device_memory: u64,
    /// Supported page sizes (bit n = 2^n bytes); the smallest is the BO granule.
    pub page_sizes: u64,
    /// Compute engines.
    pub compute_engines: u32,
    /// Copy engines.
    pub copy_engines: u32,
    /// Fabric ports.
    pub ports: u32,
    /// Contexts per device.
    pub max_contexts: u32,
    /// Page-table entries across all contexts (ENOMEM past it).
    pub max_mappings: u64,
    /// Largest BO.
    pub max_bo_size: u64,
    /// Fail the Nth allocation (1-based) with ENOMEM.
    pub fail_alloc_at: Option<u64>,
    /// The Nth job (1-based, counted across the whole device in execution
    /// order) never completes until its queue is reset; it is then reported
    /// as [`JobFault::Cancelled`](accel_core::driver::JobFault::Cancelled).
    pub hang_job_at: Option<u64>,
    /// The Nth job (1-based, as for `hang_job_at`) completes with
    /// `JobFault::Device("injected failure")` without running its commands.
    pub fail_job_at: Option<u64>,
    /// Microseconds every job waits after executing and before it is reported
    /// (a reset during the wait cancels it).
    pub completion_delay_us: u64,
    /// Where the fabric ports are attached.
    pub network: PortNetwork,
}

/// Where a mock's fabric ports are attached.
#[derive(Clone, Debug, Default)]
pub enum PortNetwork {
    /// The process-wide fault-free [`VirtualSwitch`] ([`process_switch`]),
    /// shared by every mock with this setting. GIDs are `::ffff:10.a.b.p`
    /// with `a.b` unique per mock and `p` the port number.
    #[default]
    Process,
    /// A given switch (for example one with fault injection); GIDs as for
    /// [`PortNetwork::Process`].
    Switch(Arc<VirtualSwitch>),
    /// Port 1 is RoCE v2 over UDP from `local` (its GID is `local`'s
    /// address); frames go to the peer's address and `peer_port`. Other
    /// ports are down.
    Udp {
        /// The address to bind: a specific unicast address.
        local: SocketAddrV4,
        /// The UDP destination port of frames (4791 for standard RoCE v2).
        peer_port: u16,
    },
}

impl PartialEq for PortNetwork {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PortNetwork::Process, PortNetwork::Process) => true,
            (PortNetwork::Switch(a), PortNetwork::Switch(b)) => Arc::ptr_eq(a, b),
            (PortNetwork::Udp { local: a, peer_port: p }, PortNetwork::Udp { local: b, peer_port: q }) => {
                a == b && p == q
            }
            _ => false,
        }
    }
}

impl Eq for PortNetwork {}

/// The fault-free switch the ports of [`PortNetwork::Process`] mocks attach to.
pub fn process_switch() -> &'static Arc<VirtualSwitch> {
    static SWITCH: OnceLock<Arc<VirtualSwitch>> = OnceLock::new();
    SWITCH.get_or_init(|| VirtualSwitch::new(Faults::none()))
}

/// Numbers mocks on switches, for unique GIDs.
static NEXT_NODE: AtomicU32 = AtomicU32::new(1);

/// The attachments of a mock's ports.
enum Ports {
    Switch { switch: Arc<VirtualSwitch>, node: u32, links: Mutex<HashMap<u32, Arc<dyn Link>>> },
    Udp(Result<Arc<UdpLink>, String>),
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            host_memory: 1 << 30,
            device_memory: 1 << 30,
            page_sizes: (1 << 12) | (1 << 21),
            compute_engines: 2,
            copy_engines: 1,
            ports: 2,
            max_contexts: 16,
            max_mappings: 1 << 22,
            max_bo_size: 256 << 20,
            fail_alloc_at: None,
            hang_job_at: None,
            fail_job_at: None,
            completion_delay_us: 0,
            network: PortNetwork::Process,
        }
    }
}

/// Base device address of each region (only for reporting; memory is host memory).
const REGION_BASE: [u64; 2] = [0x0000_1000_0000_0000, 0x0000_2000_0000_0000];

/// The mock's VA window: 48 bits, the first 1 MiB never mappable, the top 4 GiB reserved for the core.
pub const VA_START: u64 = 1 << 20;
/// End of the VA window.
pub const VA_END: u64 = 1 << 48;
/// Start of the reserved VA range.
pub const VA_RESERVED_START: u64 = VA_END - (4 << 30);

/// One page-table entry range.
#[derive(Clone, Debug)]
pub struct Pte {
    /// Backing memory.
    pub host: Arc<HostMemory>,
    /// Offset in the backing memory of the range start.
    pub offset: u64,
    /// Permissions.
    pub perms: VmBindFlags,
}

impl Splittable for Pte {
    fn tail(&self, delta: u64) -> Self {
        Pte { host: self.host.clone(), offset: self.offset + delta, perms: self.perms }
    }
}

/// Live-resource counters of the mock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Allocations not yet freed.
    pub live_allocs: i64,
    /// Bytes not yet freed.
    pub live_bytes: i64,
    /// Page tables not yet destroyed.
    pub live_vms: i64,
    /// Page-table entry ranges.
    pub live_ptes: i64,
    /// Frees of memory that was not allocated (must stay 0).
    pub bad_frees: i64,
    /// Page-table updates the core should never have sent (must stay 0).
    pub bad_updates: i64,
    /// Hardware queues created and not yet destroyed.
    pub live_queues: i64,
    /// Queue operations (run, reset, destroy) on queues that do not exist (must stay 0).
    pub bad_queue_ops: i64,
}

/// Cumulative counters of the mock (never go back to zero, unlike [`MockStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockTotals {
    /// Jobs reported through a sink, whatever their result.
    pub jobs_run: u64,
    /// Successful `reset_queue` calls.
    pub resets: u64,
}

/// The mock device.
pub struct MockDriver {
    cfg: MockConfig,
    regions: Vec<(RegionInfo, Mutex<RangeAllocator>)>,
    engine: Arc<Engine>,
    next_vm: AtomicU64,
    alloc_calls: AtomicU64,
    live_allocs: AtomicI64,
    live_bytes: AtomicI64,
    live_vms: AtomicI64,
    live_ptes: AtomicI64,
    bad_frees: AtomicI64,
    bad_updates: AtomicI64,
    ports: Ports,
}

impl std::fmt::Debug for MockDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockDriver").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl MockDriver {
    /// The GID and state of port `p`.
    fn port_gid(&self, p: u32) -> (Gid, PortState) {
        match &self.ports {
            Ports::Switch { node, .. } => {
                let [_, _, a, b] = node.to_be_bytes();
                (gid_from_ipv4(Ipv4Addr::new(10, a, b, p as u8)), PortState::Active)
            }
            Ports::Udp(Ok(link)) if p == 1 => (link.gid(), PortState::Active),
            Ports::Udp(Err(_)) if p == 1 => (gid_from_ipv4(Ipv4Addr::UNSPECIFIED), PortState::Down),
            Ports::Udp(_) => ([0; 16], PortState::Down),
        }
    }

    /// Why port 1's UDP link could not be set up, if it could not.
    pub fn port_error(&self) -> Option<String> {
        match &self.ports {
            Ports::Udp(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// A mock device with `cfg`.
    pub fn new(cfg: MockConfig) -> Arc<MockDriver> {
        let granule = 1u64 << cfg.page_sizes.trailing_zeros().min(63);
        let mut regions = Vec::new();
        for (id, kind, size) in [
            (REGION_HOST, MemRegionKind::Host, cfg.host_memory),
            (REGION_DEVICE, MemRegionKind::Device, cfg.device_memory),
        ] {
            if size == 0 {
                continue;
            }
            let info = RegionInfo { id, kind, size, page_sizes: cfg.page_sizes, cpu_visible: true };
            regions.push((info, Mutex::new(RangeAllocator::new(REGION_BASE[id as usize], size, granule))));
        }
        let faults = JobFaults {
            hang_job_at: cfg.hang_job_at,
            fail_job_at: cfg.fail_job_at,
            completion_delay: Duration::from_micros(cfg.completion_delay_us),
        };
        let ports = match &cfg.network {
            PortNetwork::Process => Ports::Switch {
                switch: process_switch().clone(),
                node: NEXT_NODE.fetch_add(1, Ordering::Relaxed),
                links: Mutex::new(HashMap::new()),
            },
            PortNetwork::Switch(s) => Ports::Switch {
                switch: s.clone(),
                node: NEXT_NODE.fetch_add(1, Ordering::Relaxed),
                links: Mutex::new(HashMap::new()),
            },
            PortNetwork::Udp { local, peer_port } => Ports::Udp(
                UdpLink::bind(*local)
                    .map(|l| Arc::new(l.with_peer_port(*peer_port)))
                    .map_err(|e| format!("cannot bind {local}: {e}")),
            ),
        };
        Arc::new(MockDriver {
            ports,
            cfg,
            regions,
            engine: Arc::new(Engine::new(faults)),
            next_vm: AtomicU64::new(1),
            alloc_calls: AtomicU64::new(0),
            live_allocs: AtomicI64::new(0),
            live_bytes: AtomicI64::new(0),
            live_vms: AtomicI64::new(0),
            live_ptes: AtomicI64::new(0),
            bad_frees: AtomicI64::new(0),
            bad_updates: AtomicI64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MockConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> MockStats {
        let r = |a: &AtomicI64| a.load(Ordering::Relaxed);
        MockStats {
            live_allocs: r(&self.live_allocs),
            live_bytes: r(&self.live_bytes),
            live_vms: r(&self.live_vms),
            live_ptes: r(&self.live_ptes),
            bad_frees: r(&self.bad_frees),
            bad_updates: r(&self.bad_updates),
            live_queues: r(&self.engine.live_queues),
            bad_queue_ops: r(&self.engine.bad_queue_ops),
        }
    }

    /// Cumulative job and reset counts.
    pub fn totals(&self) -> MockTotals {
        MockTotals {
            jobs_run: self.engine.jobs_run.load(Ordering::Relaxed),
            resets: self.engine.resets.load(Ordering::Relaxed),
        }
    }

    /// What context `vm` maps at `va`: backing memory, offset of `va` in it, permissions.
    pub fn translate(&self, vm: VmId, va: u64) -> Option<(Arc<HostMemory>, u64, VmBindFlags)> {
        let vms = self.engine.vms.lock();
        let (r, pte) = vms.get(&vm.0)?.lookup(va)?;
        Some((pte.host.clone(), pte.offset + (va - r.start), pte.perms))
    }

    fn engine_count(&self, class: EngineClass) -> u32 {
        match class {
            EngineClass::Compute => self.cfg.compute_engines,
            EngineClass::Copy => self.cfg.copy_engines,
            EngineClass::Fabric => 0,
        }
    }

    fn region(&self, id: u32) -> Option<&(RegionInfo, Mutex<RangeAllocator>)> {
        self.regions.iter().find(|(r, _)| r.id == id)
    }
}

impl Driver for MockDriver {
    fn info(&self) -> DeviceInfo {
        DeviceInfo { vendor_id: MOCK_VENDOR_ID, device_id: MOCK_DEVICE_ID, revision: 1, driver_name: "mock".into() }
    }

    fn caps(&self) -> Caps {
        let fabric = if self.cfg.ports > 0 { Caps::FABRIC } else { Caps::empty() };
        fabric
            | Caps::MEMORY
            | Caps::BO_SHARE
            | Caps::SUBMIT
            | Caps::PORTABLE_CS
            | Caps::SYNCOBJ
            | Caps::SYNCOBJ_TIMELINE
            | Caps::SYNCOBJ_SHARE
            | Caps::CONTEXT_QUERY
    }

    fn limits(&self) -> Limits {
        Limits {
            max_contexts: self.cfg.max_contexts,
            max_queues_per_context: 64,
            max_bo_size: self.cfg.max_bo_size,
            max_queue_depth: 1024,
            default_job_timeout_ns: 5_000_000_000,
            max_cqe: 65536,
            max_qp_wr: 16384,
            max_sge: 16,
            max_msg_size: 1 << 30,
        }
    }

    fn regions(&self) -> Vec<RegionInfo> {
        self.regions.iter().map(|(r, _)| r.clone()).collect()
    }

    fn engines(&self) -> Vec<EngineInfo> {
        [(EngineClass::Compute, self.cfg.compute_engines), (EngineClass::Copy, self.cfg.copy_engines)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(class, count)| EngineInfo { class, count })
            .collect()
    }

    fn ports(&self) -> Vec<PortInfo> {
        (1..=self.cfg.ports)
            .map(|p| {
                let (gid, state) = self.port_gid(p);
                PortInfo {
                    port_num: p,
                    state,
                    max_mtu: Mtu::Mtu4096,
                    active_mtu: Mtu::Mtu4096,
                    gid,
                    speed_mbps: 100_000,
                }
            })
            .collect()
    }

    fn port_link(&self, port: u32) -> Result<Arc<dyn Link>, DriverError> {
        if port == 0 || port > self.cfg.ports {
            return Err(DriverError::Invalid(format!("no port {port}")));
        }
        match &self.ports {
            Ports::Switch { switch, links, .. } => {
                let mut links = links.lock();
                if let Some(l) = links.get(&port) {
                    return Ok(l.clone());
                }
                let link = switch
                    .attach(self.port_gid(port).0)
                    .map_err(|e| DriverError::Device(format!("port {port}: {e}")))?;
                links.insert(port, link.clone());
                Ok(link)
            }
            Ports::Udp(Ok(link)) if port == 1 => Ok(link.clone() as Arc<dyn Link>),
            Ports::Udp(Err(e)) if port == 1 => Err(DriverError::Device(e.clone())),
            Ports::Udp(_) => Err(DriverError::Device(format!("port {port} is down (only port 1 is on UDP)"))),
        }
    }

    fn va_layout(&self) -> VaLayout {
        VaLayout { range: VA_START..VA_END, reserved: VA_RESERVED_START..VA_END }
    }

    fn region_used(&self, region: u32) -> u64 {
        self.region(region).map_or(0, |(_, a)| a.lock().used())
    }

    fn alloc(&self, region: u32, size: u64) -> Result<Allocation, DriverError> {
        let n = self.alloc_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.cfg.fail_alloc_at == Some(n) {
            return Err(DriverError::OutOfMemory);
        }
        let (info, alloc) = self.region(region).ok_or_else(|| DriverError::Invalid(format!("region {region}")))?;
        let addr = alloc.lock().alloc(size, info.min_page()).ok_or(DriverError::OutOfMemory)?;
        let host = match HostMemory::new("accel-mock-bo", size) {
            Ok(h) => Arc::new(h),
            Err(_) => {
                alloc.lock().free(addr, size);
                return Err(DriverError::OutOfMemory);
            }
        };
        self.live_allocs.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(size as i64, Ordering::Relaxed);
        Ok(Allocation { region, addr, size, host: Some(host) })
    }

    fn free(&self, a: Allocation) {
        let ok = self.region(a.region).is_some_and(|(_, alloc)| alloc.lock().free(a.addr, a.size));
        if ok {
            self.live_allocs.fetch_sub(1, Ordering::Relaxed);
            self.live_bytes.fetch_sub(a.size as i64, Ordering::Relaxed);
        } else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn vm_create(&self) -> Result<VmId, DriverError> {
        let id = self.next_vm.fetch_add(1, Ordering::Relaxed);
        self.engine.vms.lock().insert(id, IntervalMap::new());
        self.live_vms.fetch_add(1, Ordering::Relaxed);
        Ok(VmId(id))
    }

    fn vm_destroy(&self, vm: VmId) {
        if let Some(pt) = self.engine.vms.lock().remove(&vm.0) {
            self.live_vms.fetch_sub(1, Ordering::Relaxed);
            if !pt.is_empty() {
                // The core unmaps everything before destroying a VM.
                self.bad_updates.fetch_add(1, Ordering::Relaxed);
                self.live_ptes.fetch_sub(pt.len() as i64, Ordering::Relaxed);
            }
        } else {
            self.bad_updates.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn vm_bind(&self, vm: VmId, updates: &[VmUpdate<'_>]) -> Result<(), DriverError> {
        let mut vms = self.engine.vms.lock();
        let pt = vms.get_mut(&vm.0).ok_or_else(|| DriverError::Invalid(format!("no VM {}", vm.0)))?;
        // Preflight, so a failure changes nothing: each map adds one entry;
        // an unmap adds one only when it splits an entry in two.
        let growth = updates
            .iter()
            .filter(|u| match u {
                VmUpdate::Map { .. } => true,
                VmUpdate::Unmap { va, len } => {
                    pt.lookup(*va).is_some_and(|(r, _)| r.start < *va && r.end > va.saturating_add(*len))
                }
            })
            .count() as u64;
        let live = self.live_ptes.load(Ordering::Relaxed).max(0) as u64;
        if growth > 0 && live.saturating_add(growth) > self.cfg.max_mappings {
            return Err(DriverError::OutOfMemory);
        }
        for u in updates {
            if let VmUpdate::Map { alloc, offset, len, .. } = u
                && (alloc.host.is_none() || offset.checked_add(*len).is_none_or(|e| e > alloc.size))
            {
                return Err(DriverError::Invalid("map outside its allocation".into()));
            }
        }
        for u in updates {
            let before = pt.len() as i64;
            match u {
                VmUpdate::Map { va, len, alloc, offset, perms } => {
                    let Some(host) = alloc.host.clone() else { continue };
                    let pte = Pte { host, offset: *offset, perms: *perms };
                    if pt.insert(*va..va + len, pte).is_err() {
                        self.bad_updates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                VmUpdate::Unmap { va, len } => {
                    pt.remove(*va..va + len);
                }
            }
            self.live_ptes.fetch_add(pt.len() as i64 - before, Ordering::Relaxed);
        }
        Ok(())
    }

    fn queue_create(
        &self,
        vm: VmId,
        class: EngineClass,
        _priority: Priority,
        sink: Arc<dyn JobSink>,
    ) -> Result<HwQueueId, DriverError> {
        if self.engine_count(class) == 0 {
            return Err(DriverError::NotSupported);
        }
        self.engine.create(vm.0, sink).map(HwQueueId)
    }

    fn queue_destroy(&self, queue: HwQueueId) {
        self.engine.destroy(queue.0);
    }

    fn run_job(&self, queue: HwQueueId, job: Job) -> Result<(), DriverError> {
        self.engine.submit(queue.0, job)
    }

    fn reset_queue(&self, queue: HwQueueId, hung_seqno: u64) -> Result<(), DriverError> {
        self.engine.reset(queue.0, hung_seqno)
    }
}

impl Drop for MockDriver {
    fn drop(&mut self) {
        // Workers share the engine, not the driver: stop them so their threads exit.
        self.engine.shutdown();
    }
}
