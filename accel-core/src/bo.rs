//! Buffer objects: device memory plus the bookkeeping the UAPI exposes.
//!
//! A BO is reference counted: file handles, VM mappings (in any context),
//! imports and CPU mappings each hold a reference, and the backing memory is
//! freed through the driver exactly once, when the last one goes.

use crate::device::Device;
use crate::driver::{Allocation, Driver};
use crate::stats::Counters;
use accel_uapi::flags::BoFlags;
use parking_lot::Mutex;
use std::sync::Arc;

/// One buffer object.
pub struct Bo {
    pub(crate) device: Arc<Device>,
    driver: Arc<dyn Driver>,
    alloc: Option<Allocation>,
    /// Bytes (rounded to the region's smallest page).
    pub size: u64,
    /// Region id.
    pub region: u32,
    /// Creation flags.
    pub flags: BoFlags,
    /// Lazily assigned mmap offset.
    pub(crate) mmap_offset: Mutex<Option<u64>>,
    /// (st_dev, st_ino) of the memfd once exported.
    pub(crate) export_key: Mutex<Option<(u64, u64)>>,
}

impl std::fmt::Debug for Bo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bo").field("size", &self.size).field("region", &self.region).finish_non_exhaustive()
    }
}

impl Bo {
    pub(crate) fn new(device: Arc<Device>, alloc: Allocation, flags: BoFlags) -> Arc<Bo> {
        let c = &device.counters;
        Counters::add(&c.bos, 1);
        Counters::add(&c.bo_bytes, alloc.size as i64);
        Arc::new(Bo {
            driver: device.driver.clone(),
            size: alloc.size,
            region: alloc.region,
            alloc: Some(alloc),
            flags,
            device,
            mmap_offset: Mutex::new(None),
            export_key: Mutex::new(None),
        })
    }

    /// The device memory.
    pub fn allocation(&self) -> &Allocation {
        // The allocation is only taken in Drop.
        self.alloc.as_ref().unwrap_or_else(|| unreachable!("BO allocation taken before drop"))
    }

    /// The memfd-backed CPU view, if the memory has one.
    pub fn host(&self) -> Option<&Arc<crate::memory::HostMemory>> {
        self.allocation().host.as_ref()
    }
}

impl Drop for Bo {
    fn drop(&mut self) {
        let c = &self.device.counters;
        if let Some(off) = self.mmap_offset.get_mut().take() {
            self.device.free_mmap_offset(off, self.size);
        }
        if let Some(key) = self.export_key.get_mut().take() {
            self.device.exports.lock().remove(&key);
            Counters::add(&c.exports, -1);
        }
        if let Some(a) = self.alloc.take() {
            Counters::add(&c.bo_bytes, -(a.size as i64));
            Counters::add(&c.bos, -1);
            self.driver.free(a);
        }
    }
}
