//! Contexts and their private GPU virtual address spaces (VM_BIND).
//!
//! Each context owns an [`IntervalMap`] of mappings (VA range -> BO, offset,
//! permissions) and a driver page table. VM_BIND applies an array of map and
//! unmap ops all-or-nothing: the ops are applied to the interval map with an
//! undo log, the resulting page-table updates go to the driver as one batch,
//! and any failure rolls the interval map back. The VM lock is per context
//! and is the only lock held across a driver call ([`Driver::vm_bind`] is
//! bounded work by contract).
//!
//! [`Driver::vm_bind`]: crate::driver::Driver::vm_bind

use crate::bo::Bo;
use crate::device::Device;
use crate::driver::{VmId, VmUpdate};
use crate::error::{Error, Result};
use crate::interval::{IntervalMap, Splittable};
use crate::stats::Counters;
use accel_uapi::flags::{FaultAccess, VmBindFlags};
use parking_lot::Mutex;
use std::ops::Range;
use std::sync::Arc;

/// One mapping of a context.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The BO.
    pub bo: Arc<Bo>,
    /// Offset in the BO of the range start.
    pub offset: u64,
    /// Permissions.
    pub perms: VmBindFlags,
}

impl Splittable for Mapping {
    fn tail(&self, delta: u64) -> Self {
        Mapping { bo: self.bo.clone(), offset: self.offset + delta, perms: self.perms }
    }
}

/// A validated VM_BIND op.
#[derive(Debug)]
pub enum BindOp {
    /// Map `range` to `bo` at `offset`.
    Map {
        /// VA range.
        range: Range<u64>,
        /// BO.
        bo: Arc<Bo>,
        /// Offset in the BO.
        offset: u64,
        /// Permissions.
        perms: VmBindFlags,
    },
    /// Unmap `range`.
    Unmap {
        /// VA range.
        range: Range<u64>,
    },
}

enum Undo {
    Inserted(Range<u64>),
    /// The unmapped pieces (for the driver) and the original entries (to restore).
    Removed(Vec<(Range<u64>, Mapping)>, Vec<(Range<u64>, Mapping)>),
}

/// The first fault a context's jobs took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultInfo {
    /// Faulting VA.
    pub addr: u64,
    /// The access.
    pub access: FaultAccess,
    /// Sequence number of the faulting job.
    pub seqno: u64,
}

/// A context: a private VA space on one device.
pub struct Context {
    device: Arc<Device>,
    vm_id: VmId,
    vm: Mutex<IntervalMap<Mapping>>,
    queues: std::sync::atomic::AtomicU32,
    fault: Mutex<Option<FaultInfo>>,
    ban: Mutex<Option<accel_uapi::Errno>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("vm", &self.vm_id).finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn create(device: Arc<Device>) -> Result<Arc<Context>> {
        device.acquire_context()?;
        let vm_id = match device.driver.vm_create() {
            Ok(v) => v,
            Err(e) => {
                device.release_context();
                return Err(e.into());
            }
        };
        Counters::add(&device.counters.contexts, 1);
        Ok(Arc::new(Context {
            device,
            vm_id,
            vm: Mutex::new(IntervalMap::new()),
            queues: Default::default(),
            fault: Mutex::new(None),
            ban: Mutex::new(None),
        }))
    }

    pub(crate) fn acquire_queue(&self, max: u32) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.queues
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| Error::Busy(format!("all {max} queues of the context in use")))
    }

    pub(crate) fn release_queue(&self) {
        self.queues.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Queues created on this context and not yet destroyed.
    pub fn queue_count(&self) -> u32 {
        self.queues.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Record a job's page fault (the first one is kept).
    pub(crate) fn record_fault(&self, addr: u64, access: FaultAccess, seqno: u64) {
        self.fault.lock().get_or_insert(FaultInfo { addr, access, seqno });
    }

    /// The first fault, if any.
    pub fn fault(&self) -> Option<FaultInfo> {
        *self.fault.lock()
    }

    /// Ban the context: later submits fail with EIO.
    pub(crate) fn ban(&self, why: accel_uapi::Errno) {
        self.ban.lock().get_or_insert(why);
    }

    /// Why the context is banned, if it is.
    pub fn banned(&self) -> Option<accel_uapi::Errno> {
        *self.ban.lock()
    }

    /// The driver's page-table id.
    pub fn vm_id(&self) -> VmId {
        self.vm_id
    }

    /// Number of live mappings.
    pub fn mapping_count(&self) -> usize {
        self.vm.lock().len()
    }

    /// What is mapped at `va`: the mapping and the offset of `va` in its BO.
    pub fn translate(&self, va: u64) -> Option<(Mapping, u64)> {
        let vm = self.vm.lock();
        let (r, m) = vm.lookup(va)?;
        let off = m.offset + (va - r.start);
        Some((m.clone(), off))
    }

    /// Check that `[va, va + len)` is mapped with `access` permission; the
    /// first failing address otherwise (for the fault checks of job execution).
    pub fn check_access(&self, va: u64, len: u64, access: FaultAccess) -> Result<(), u64> {
        let need = VmBindFlags::from_bits_truncate(access.bits());
        let vm = self.vm.lock();
        let end = va.checked_add(len).ok_or(va)?;
        let mut at = va;
        while at < end {
            match vm.lookup(at) {
                Some((r, m)) if m.perms.contains(need) => at = r.end,
                _ => return Err(at),
            }
        }
        Ok(())
    }

    /// Apply `ops` in order, all or nothing.
    pub fn bind(&self, ops: Vec<BindOp>) -> Result<()> {
        let mut vm = self.vm.lock();
        let before = vm.len() as i64;
        let mut undo: Vec<Undo> = Vec::with_capacity(ops.len());
        let mut result = Ok(());
        for op in &ops {
            match op {
                BindOp::Map { range, bo, offset, perms } => {
                    let m = Mapping { bo: bo.clone(), offset: *offset, perms: *perms };
                    if vm.insert(range.clone(), m).is_err() {
                        result = Err(Error::Exists { va: range.start, len: range.end - range.start });
                        break;
                    }
                    undo.push(Undo::Inserted(range.clone()));
                }
                BindOp::Unmap { range } => {
                    let (pieces, originals) = vm.remove_with_originals(range.clone());
                    undo.push(Undo::Removed(pieces, originals));
                }
            }
        }
        if result.is_ok() {
            let mut updates = Vec::new();
            for (op, u) in ops.iter().zip(&undo) {
                match (op, u) {
                    (BindOp::Map { range, bo, offset, perms }, _) => updates.push(VmUpdate::Map {
                        va: range.start,
                        len: range.end - range.start,
                        alloc: bo.allocation(),
                        offset: *offset,
                        perms: *perms,
                    }),
                    (BindOp::Unmap { .. }, Undo::Removed(pieces, _)) => updates
                        .extend(pieces.iter().map(|(r, _)| VmUpdate::Unmap { va: r.start, len: r.end - r.start })),
                    (BindOp::Unmap { .. }, Undo::Inserted(_)) => {}
                }
            }
            if !updates.is_empty() {
                result = self.device.driver.vm_bind(self.vm_id, &updates).map_err(Error::from);
            }
        }
        match result {
            Ok(()) => {
                Counters::add(&self.device.counters.mappings, vm.len() as i64 - before);
                Ok(())
            }
            Err(e) => {
                for u in undo.into_iter().rev() {
                    match u {
                        Undo::Inserted(r) => {
                            vm.remove(r);
                        }
                        // Every later op was undone first, so exactly the split
                        // fragments of these entries are in the map.
                        Undo::Removed(_, originals) => vm.restore(originals),
                    }
                }
                Err(e)
            }
        }
    }
}

impl Drop for Context {
    /// The last reference (a file handle, later also queues and in-flight
    /// jobs) is gone: unmap everything and destroy the page tables, once.
    fn drop(&mut self) {
        let removed = self.vm.get_mut().clear();
        if !removed.is_empty() {
            let updates: Vec<VmUpdate<'_>> =
                removed.iter().map(|(r, _)| VmUpdate::Unmap { va: r.start, len: r.end - r.start }).collect();
            if let Err(e) = self.device.driver.vm_bind(self.vm_id, &updates) {
                tracing::error!("driver failed to unmap a dying context: {e}");
            }
        }
        Counters::add(&self.device.counters.mappings, -(removed.len() as i64));
        drop(removed);
        self.device.driver.vm_destroy(self.vm_id);
        self.device.release_context();
        Counters::add(&self.device.counters.contexts, -1);
    }
}
