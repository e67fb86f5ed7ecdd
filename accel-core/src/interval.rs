//! An interval map over `u64` addresses: non-overlapping `[start, end)`
//! ranges with a value each, O(log n) insert, lookup and range removal with
//! splitting. The core's VM uses it for a context's mappings; drivers may use
//! it for their page tables (the mock does).

use std::collections::BTreeMap;
use std::ops::Range;

/// A value that can be cut: `tail(delta)` is the value for the part of the
/// range that starts `delta` bytes after the original start.
pub trait Splittable: Clone {
    /// The value of the piece starting `delta` bytes into the range.
    fn tail(&self, delta: u64) -> Self;
}

/// Ranges with their values, as [`IntervalMap`] hands them out.
pub type Entries<V> = Vec<(Range<u64>, V)>;

/// Non-overlapping ranges with values.
#[derive(Clone, Debug)]
pub struct IntervalMap<V> {
    map: BTreeMap<u64, (u64, V)>,
}

impl<V> Default for IntervalMap<V> {
    fn default() -> Self {
        IntervalMap { map: BTreeMap::new() }
    }
}

impl<V: Splittable> IntervalMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No ranges.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The first range overlapping `r`, if any.
    pub fn first_overlap(&self, r: Range<u64>) -> Option<(Range<u64>, &V)> {
        if r.start >= r.end {
            return None;
        }
        if let Some((&s, (e, v))) = self.map.range(..=r.start).next_back()
            && *e > r.start
        {
            return Some((s..*e, v));
        }
        self.map.range(r.start..r.end).next().map(|(&s, (e, v))| (s..*e, v))
    }

    /// Insert `r`; fails (returning the value) if it overlaps an existing range or is empty.
    pub fn insert(&mut self, r: Range<u64>, v: V) -> Result<(), V> {
        if r.start >= r.end || self.first_overlap(r.clone()).is_some() {
            return Err(v);
        }
        self.map.insert(r.start, (r.end, v));
        Ok(())
    }

    /// The range containing `addr` and its value.
    pub fn lookup(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let (&s, (e, v)) = self.map.range(..=addr).next_back()?;
        (addr < *e).then_some((s..*e, v))
    }

    /// Remove everything inside `r`, splitting ranges that stick out. Returns
    /// the removed pieces (clipped to `r`) in address order.
    pub fn remove(&mut self, r: Range<u64>) -> Vec<(Range<u64>, V)> {
        self.remove_with_originals(r).0
    }

    /// As [`remove`](Self::remove), also returning the whole original entries
    /// that were removed or split, so the change can be undone exactly with
    /// [`restore`](Self::restore).
    pub fn remove_with_originals(&mut self, r: Range<u64>) -> (Entries<V>, Entries<V>) {
        let mut out = Vec::new();
        let mut originals = Vec::new();
        if r.start >= r.end {
            return (out, originals);
        }
        let mut keys: Vec<u64> = Vec::new();
        if let Some((&s, (e, _))) = self.map.range(..r.start).next_back()
            && *e > r.start
        {
            keys.push(s);
        }
        keys.extend(self.map.range(r.start..r.end).map(|(&s, _)| s));
        for s in keys {
            let Some((e, v)) = self.map.remove(&s) else { continue };
            originals.push((s..e, v.clone()));
            if s < r.start {
                self.map.insert(s, (r.start, v.clone()));
            }
            if e > r.end {
                self.map.insert(r.end, (e, v.tail(r.end - s)));
            }
            let (cs, ce) = (s.max(r.start), e.min(r.end));
            out.push((cs..ce, v.tail(cs - s)));
        }
        (out, originals)
    }

    /// Undo a [`remove_with_originals`](Self::remove_with_originals): drop the
    /// fragments it left and put the original entries back.
    pub fn restore(&mut self, originals: Entries<V>) {
        for (r, v) in originals {
            self.remove(r.clone());
            self.map.insert(r.start, (r.end, v));
        }
    }

    /// Iterate all ranges in address order.
    pub fn iter(&self) -> impl Iterator<Item = (Range<u64>, &V)> {
        self.map.iter().map(|(&s, (e, v))| (s..*e, v))
    }

    /// Remove everything.
    pub fn clear(&mut self) -> Vec<(Range<u64>, V)> {
        std::mem::take(&mut self.map).into_iter().map(|(s, (e, v))| (s..e, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value is the offset of the range start in some backing object.
    #[derive(Clone, Debug, PartialEq)]
    struct Off(u64);
    impl Splittable for Off {
        fn tail(&self, d: u64) -> Self {
            Off(self.0 + d)
        }
    }

    #[test]
    fn insert_rejects_overlaps_and_empty_ranges() {
        let mut m = IntervalMap::new();
        m.insert(0x1000..0x3000, Off(0)).unwrap();
        assert_eq!(m.insert(0x2000..0x4000, Off(0)), Err(Off(0)));
        assert_eq!(m.insert(0x0..0x1001, Off(0)), Err(Off(0)));
        assert_eq!(m.insert(0x5000..0x5000, Off(0)), Err(Off(0)));
        m.insert(0x3000..0x4000, Off(9)).unwrap();
        m.insert(0x0..0x1000, Off(7)).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.lookup(0x2fff), Some((0x1000..0x3000, &Off(0))));
        assert_eq!(m.lookup(0x4000), None);
    }

    #[test]
    fn remove_splits_partially_covered_ranges() {
        let mut m = IntervalMap::new();
        m.insert(0x1000..0x5000, Off(0x100)).unwrap();
        m.insert(0x6000..0x8000, Off(0x900)).unwrap();
        let removed = m.remove(0x2000..0x7000);
        assert_eq!(removed, vec![(0x2000..0x5000, Off(0x1100)), (0x6000..0x7000, Off(0x900))]);
        let left: Vec<_> = m.iter().map(|(r, v)| (r, v.clone())).collect();
        assert_eq!(left, vec![(0x1000..0x2000, Off(0x100)), (0x7000..0x8000, Off(0x1900))]);
        // A hole in the middle of one range leaves both sides.
        let mut m = IntervalMap::new();
        m.insert(0..0x10000, Off(0)).unwrap();
        m.remove(0x4000..0x5000);
        let left: Vec<_> = m.iter().map(|(r, v)| (r, v.clone())).collect();
        assert_eq!(left, vec![(0..0x4000, Off(0)), (0x5000..0x10000, Off(0x5000))]);
        assert!(m.remove(0x4000..0x5000).is_empty());
    }

    #[test]
    fn restore_undoes_a_split_exactly() {
        let mut m = IntervalMap::new();
        m.insert(0x1000..0x4000, Off(0)).unwrap();
        let (clipped, originals) = m.remove_with_originals(0x2000..0x3000);
        assert_eq!(clipped, vec![(0x2000..0x3000, Off(0x1000))]);
        assert_eq!(m.len(), 2);
        m.restore(originals);
        let all: Vec<_> = m.iter().map(|(r, v)| (r, v.clone())).collect();
        assert_eq!(all, vec![(0x1000..0x4000, Off(0))], "one entry again, not three pieces");
    }
}
