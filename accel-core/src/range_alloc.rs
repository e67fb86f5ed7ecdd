//! A range allocator for memory regions: best-fit over free ranges, O(log n)
//! allocation and free with coalescing. Drivers use it for device memory
//! (the mock for both of its regions; GAUDI for HBM).

use std::collections::{BTreeMap, BTreeSet};

/// Allocates aligned sub-ranges of `[base, base + size)`.
#[derive(Debug)]
pub struct RangeAllocator {
    base: u64,
    size: u64,
    granule: u64,
    by_start: BTreeMap<u64, u64>,
    by_size: BTreeSet<(u64, u64)>,
    used: u64,
}

impl RangeAllocator {
    /// A region of `size` bytes at `base`; every allocation is a multiple of `granule`
    /// (a power of two) and aligned to it.
    pub fn new(base: u64, size: u64, granule: u64) -> RangeAllocator {
        assert!(granule.is_power_of_two(), "granule must be a power of two");
        let size = size / granule * granule;
        let mut a =
            RangeAllocator { base, size, granule, by_start: BTreeMap::new(), by_size: BTreeSet::new(), used: 0 };
        if size > 0 {
            a.insert_free(base, size);
        }
        a
    }

    /// Total bytes managed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes allocated.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes free.
    pub fn available(&self) -> u64 {
        self.size - self.used
    }

    /// The allocation granule.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    fn insert_free(&mut self, start: u64, len: u64) {
        self.by_start.insert(start, len);
        self.by_size.insert((len, start));
    }

    fn remove_free(&mut self, start: u64, len: u64) {
        self.by_start.remove(&start);
        self.by_size.remove(&(len, start));
    }

    /// Round `size` up to the granule; `None` on overflow or zero.
    pub fn round(&self, size: u64) -> Option<u64> {
        if size == 0 {
            return None;
        }
        size.checked_add(self.granule - 1).map(|s| s & !(self.granule - 1))
    }

    /// Allocate `size` bytes (rounded up to the granule) aligned to `align`
    /// (a power of two, at least the granule). Returns the start address.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let size = self.round(size)?;
        let align = align.max(self.granule);
        if !align.is_power_of_two() {
            return None;
        }
        let found = self.by_size.range((size, 0)..).find_map(|&(len, start)| {
            let aligned = start.checked_add(align - 1)? & !(align - 1);
            (aligned - start + size <= len).then_some((len, start, aligned))
        });
        let (len, start, aligned) = found?;
        self.remove_free(start, len);
        if aligned > start {
            self.insert_free(start, aligned - start);
        }
        let end = aligned + size;
        if end < start + len {
            self.insert_free(end, start + len - end);
        }
        self.used += size;
        Some(aligned)
    }

    /// Free a range returned by [`alloc`](Self::alloc) with the same size.
    /// Returns false (and changes nothing) for a range that is not wholly allocated.
    pub fn free(&mut self, start: u64, size: u64) -> bool {
        let Some(size) = self.round(size) else { return false };
        let Some(end) = start.checked_add(size) else { return false };
        if start < self.base || end > self.base + self.size {
            return false;
        }
        // The range must not overlap any free range.
        if let Some((&s, &l)) = self.by_start.range(..end).next_back()
            && s + l > start
        {
            return false;
        }
        let (mut s, mut e) = (start, end);
        if let Some((&ps, &pl)) = self.by_start.range(..start).next_back()
            && ps + pl == start
        {
            self.remove_free(ps, pl);
            s = ps;
        }
        if let Some(&nl) = self.by_start.get(&end) {
            self.remove_free(end, nl);
            e = end + nl;
        }
        self.insert_free(s, e - s);
        self.used -= size;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_aligned_and_coalesces_on_free() {
        let mut a = RangeAllocator::new(0x1000_0000, 1 << 20, 4096);
        let x = a.alloc(100, 4096).unwrap();
        assert_eq!(x, 0x1000_0000);
        let y = a.alloc(64 << 10, 64 << 10).unwrap();
        assert_eq!(y % (64 << 10), 0);
        assert_eq!(a.used(), 4096 + (64 << 10));
        assert!(a.free(x, 100));
        assert!(!a.free(x, 100), "double free is refused");
        assert!(a.free(y, 64 << 10));
        assert_eq!(a.used(), 0);
        assert_eq!(a.alloc(1 << 20, 4096), Some(0x1000_0000), "everything coalesced back");
        assert_eq!(a.alloc(4096, 4096), None);
    }

    #[test]
    fn rejects_zero_overflow_and_foreign_ranges() {
        let mut a = RangeAllocator::new(0, 1 << 16, 4096);
        assert_eq!(a.alloc(0, 4096), None);
        assert_eq!(a.alloc(u64::MAX, 4096), None);
        assert!(!a.free(1 << 20, 4096));
        assert_eq!(a.available(), 1 << 16);
    }
}
