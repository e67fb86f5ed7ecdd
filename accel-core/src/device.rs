//! The device registry and the per-device state the core keeps for a driver.
//!
//! `Registry::register` turns a driver instance into `accelN`. Unregistering
//! while files are open marks the device dead: every later call on those
//! files fails with ENODEV, and their objects are released (once) when the
//! files close, through the driver instance they were created with.

use crate::bo::Bo;
use crate::driver::{Driver, Limits, RegionInfo, VaLayout};
use crate::error::{Error, Result};
use crate::file::{File, Quota};
use crate::range_alloc::RangeAllocator;
use crate::stats::{Counters, Stats};
use accel_uapi::flags::Caps;
use accel_uapi::types::MemRegionKind;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Optional features the core itself implements today; a device announces
/// the intersection with what its driver implements.
pub const CORE_CAPS: Caps = Caps::MEMORY
    .union(Caps::BO_SHARE)
    .union(Caps::DEVICE_MEMORY)
    .union(Caps::SUBMIT)
    .union(Caps::PORTABLE_CS)
    .union(Caps::NATIVE_CS)
    .union(Caps::SYNCOBJ)
    .union(Caps::SYNCOBJ_TIMELINE)
    .union(Caps::SYNCOBJ_SHARE)
    .union(Caps::CONTEXT_QUERY)
    .union(Caps::FABRIC);

/// Core-side maxima reported in ACCEL_QUERY_LIMITS.
pub mod max {
    /// Ops per VM_BIND.
    pub const VM_BIND_OPS: u32 = 4096;
    /// Chunks per SUBMIT.
    pub const SUBMIT_CHUNKS: u32 = 512;
    /// Waits or signals per SUBMIT or VM_BIND.
    pub const SYNCS: u32 = 256;
    /// Handles per SYNCOBJ_WAIT.
    pub const SYNCOBJ_WAIT: u32 = 1024;
    /// Work requests per POST_SEND/POST_RECV.
    pub const POST_WRS: u32 = 1024;
    /// Bytes of a DEVICE_QUERY result buffer.
    pub const QUERY_BYTES: u32 = 1 << 16;
    /// Bytes of command streams per SUBMIT (all chunks together).
    pub const SUBMIT_BYTES: u64 = 8 << 20;
    /// PDs per device.
    pub const PDS: u32 = 1 << 16;
    /// MRs per device.
    pub const MRS: u32 = 1 << 20;
    /// CQs per device.
    pub const CQS: u32 = 1 << 16;
    /// QPs per device (QP numbers are 24-bit).
    pub const QPS: u32 = 1 << 18;
}

/// A registered device.
pub struct Device {
    minor: u32,
    name: String,
    pub(crate) driver: Arc<dyn Driver>,
    alive: AtomicBool,
    pub(crate) caps: Caps,
    pub(crate) limits: Limits,
    pub(crate) regions: Vec<RegionInfo>,
    pub(crate) layout: VaLayout,
    pub(crate) counters: Counters,
    contexts: AtomicU32,
    default_quota: Mutex<Quota>,
    /// mmap offsets: a fake offset space like DRM's, page granular.
    mmap_space: Mutex<RangeAllocator>,
    pub(crate) mmap_bos: Mutex<HashMap<u64, Weak<Bo>>>,
    /// Exported BOs by the (st_dev, st_ino) of their memfd.
    pub(crate) exports: Mutex<HashMap<(u64, u64), Weak<Bo>>>,
    /// Exported syncobjs by the (st_dev, st_ino) of their token.
    pub(crate) syncobj_exports: Mutex<HashMap<(u64, u64), Weak<crate::syncobj::Syncobj>>>,
    /// Queues the watchdog checks.
    queues: Mutex<Vec<Weak<crate::queue::Queue>>>,
    watchdog: std::sync::Once,
    /// Ports, QP numbers, keys and verbs object counts.
    pub(crate) fabric: crate::fabric::verbs::Fabric,
    me: Weak<Device>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("name", &self.name).field("alive", &self.is_alive()).finish_non_exhaustive()
    }
}

/// Where mmap offsets start (like DRM's DRM_FILE_PAGE_OFFSET_START).
pub const MMAP_OFFSET_BASE: u64 = 1 << 32;

impl Device {
    fn new(minor: u32, driver: Arc<dyn Driver>, layout: VaLayout, me: Weak<Device>) -> Device {
        let regions = driver.regions();
        let ports = driver.ports();
        let mut caps = (driver.caps() & CORE_CAPS) | Caps::MEMORY;
        if regions.iter().any(|r| r.kind == MemRegionKind::Device) {
            caps |= Caps::DEVICE_MEMORY;
        } else {
            caps -= Caps::DEVICE_MEMORY;
        }
        Device {
            minor,
            name: format!("accel{minor}"),
            limits: driver.limits(),
            driver,
            alive: AtomicBool::new(true),
            caps,
            regions,
            layout,
            counters: Counters::default(),
            contexts: AtomicU32::new(0),
            default_quota: Mutex::new(Quota::default()),
            mmap_space: Mutex::new(RangeAllocator::new(MMAP_OFFSET_BASE, 1 << 62, 4096)),
            mmap_bos: Mutex::new(HashMap::new()),
            exports: Mutex::new(HashMap::new()),
            syncobj_exports: Mutex::new(HashMap::new()),
            queues: Mutex::new(Vec::new()),
            watchdog: std::sync::Once::new(),
            fabric: crate::fabric::verbs::Fabric::new(ports),
            me,
        }
    }

    /// Put a queue under the hang watchdog (started with the first queue).
    pub(crate) fn watch(&self, q: &Arc<crate::queue::Queue>) {
        let mut qs = self.queues.lock();
        qs.retain(|w| w.strong_count() > 0);
        qs.push(Arc::downgrade(q));
        drop(qs);
        self.watchdog.call_once(|| crate::queue::spawn_watchdog(self.me.clone()));
    }

    pub(crate) fn watched_queues(&self) -> Vec<Arc<crate::queue::Queue>> {
        self.queues.lock().iter().filter_map(Weak::upgrade).collect()
    }

    /// `accelN`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Live verbs objects: [PDs, MRs, CQs, QPs].
    pub fn fabric_counts(&self) -> [u32; 4] {
        self.fabric.counts()
    }

    /// N of `accelN`.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// Still registered.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// What the device announces.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Live-object counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The quota given to files opened from now on.
    pub fn set_default_quota(&self, q: Quota) {
        *self.default_quota.lock() = q;
    }

    pub(crate) fn check_alive(&self) -> Result<()> {
        if self.is_alive() { Ok(()) } else { Err(Error::NoDevice(self.name.clone())) }
    }

    pub(crate) fn region(&self, id: u32) -> Option<&RegionInfo> {
        self.regions.iter().find(|r| r.id == id)
    }

    /// The smallest page size of any region: the VM_BIND granule for unmaps.
    pub(crate) fn min_page(&self) -> u64 {
        self.regions.iter().map(|r| r.min_page()).min().unwrap_or(4096)
    }

    pub(crate) fn acquire_context(&self) -> Result<()> {
        let max = self.limits.max_contexts;
        self.contexts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| Error::Busy(format!("{}: all {max} contexts in use", self.name)))
    }

    pub(crate) fn release_context(&self) {
        self.contexts.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn alloc_mmap_offset(&self, size: u64) -> Result<u64> {
        self.mmap_space.lock().alloc(size, 4096).ok_or_else(|| Error::NoSpace("mmap offset space".into()))
    }

    pub(crate) fn free_mmap_offset(&self, offset: u64, size: u64) {
        // Forget the offset before it can be handed out again.
        self.mmap_bos.lock().remove(&offset);
        self.mmap_space.lock().free(offset, size);
    }
}

/// The devices of this process, by minor number.
#[derive(Default)]
pub struct Registry {
    devices: Mutex<BTreeMap<u32, Arc<Device>>>,
}

impl Registry {
    /// An empty registry (tests make their own; programs use [`Registry::global`]).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The process-wide registry the in-process transport opens devices from by default.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// Register a driver instance as the lowest free `accelN`.
    pub fn register(&self, driver: Arc<dyn Driver>) -> Result<Arc<Device>> {
        crate::memory::raise_fd_limit();
        let mut devs = self.devices.lock();
        let minor = (0..).find(|m| !devs.contains_key(m)).unwrap_or(0);
        let layout = driver.va_layout();
        if layout.range.start >= layout.range.end {
            return Err(Error::invalid("driver reports an empty VA range"));
        }
        let dev = Arc::new_cyclic(|me| Device::new(minor, driver, layout, me.clone()));
        devs.insert(minor, dev.clone());
        tracing::info!(device = %dev.name, "registered");
        Ok(dev)
    }

    /// Unregister `accelN`: open files keep working only to close (ENODEV otherwise).
    pub fn unregister(&self, name: &str) -> Result<Arc<Device>> {
        let mut devs = self.devices.lock();
        let minor = devs
            .iter()
            .find(|(_, d)| d.name == name)
            .map(|(m, _)| *m)
            .ok_or_else(|| Error::NoDevice(name.to_string()))?;
        let dev = devs.remove(&minor).ok_or_else(|| Error::NoDevice(name.to_string()))?;
        dev.alive.store(false, Ordering::Release);
        tracing::info!(device = %dev.name, "unregistered");
        Ok(dev)
    }

    /// A registered device by name (`accel0`) or path (`/dev/accel/accel0`).
    pub fn find(&self, name: &str) -> Result<Arc<Device>> {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.devices.lock().values().find(|d| d.name == base).cloned().ok_or_else(|| Error::NoDevice(name.to_string()))
    }

    /// Every registered device, by minor.
    pub fn devices(&self) -> Vec<Arc<Device>> {
        self.devices.lock().values().cloned().collect()
    }

    /// Open a device: one [`File`] per open.
    pub fn open(&self, name: &str) -> Result<Arc<File>> {
        let dev = self.find(name)?;
        let quota = *dev.default_quota.lock();
        Ok(File::new(dev, quota))
    }
}
