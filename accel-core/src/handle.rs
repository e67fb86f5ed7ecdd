//! Per-file handle tables (like DRM GEM handles and RDMA uobjects).
//!
//! A handle is a `u32`, never 0, and never reused within its file: a stale
//! handle is always ENOENT, never another object (UAPI-RULES.md rule 10).

use crate::error::{Error, Result};
use rustc_hash::FxHashMap as HashMap;

/// Objects of one kind, by handle.
#[derive(Debug)]
pub struct HandleTable<T> {
    kind: &'static str,
    map: HashMap<u32, T>,
    next: u32,
}

impl<T> HandleTable<T> {
    /// An empty table for objects of `kind` (used in error messages).
    pub fn new(kind: &'static str) -> Self {
        HandleTable { kind, map: HashMap::default(), next: 1 }
    }

    /// Insert and return the new handle; ENOSPC (with the value handed back)
    /// once 2^32 - 2 handles were ever issued.
    pub fn insert(&mut self, v: T) -> Result<u32, (Error, T)> {
        if self.next == u32::MAX {
            return Err((Error::NoSpace(format!("{} handles exhausted", self.kind)), v));
        }
        let h = self.next;
        self.next += 1;
        self.map.insert(h, v);
        Ok(h)
    }

    /// Look up a handle.
    pub fn get(&self, h: u32) -> Result<&T> {
        self.map.get(&h).ok_or(Error::NoHandle { kind: self.kind, handle: h })
    }

    /// Remove a handle.
    pub fn remove(&mut self, h: u32) -> Result<T> {
        self.map.remove(&h).ok_or(Error::NoHandle { kind: self.kind, handle: h })
    }

    /// Live handles.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No live handles.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remove everything, in handle order.
    pub fn drain(&mut self) -> Vec<(u32, T)> {
        let mut v: Vec<(u32, T)> = self.map.drain().collect();
        v.sort_by_key(|(h, _)| *h);
        v
    }

    /// Iterate live handles.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.map.iter().map(|(h, v)| (*h, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_start_at_one_and_are_never_reused() {
        let mut t = HandleTable::new("bo");
        let a = t.insert("a").unwrap();
        assert_eq!(a, 1);
        t.remove(a).unwrap();
        let b = t.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.get(a), Err(Error::NoHandle { kind: "bo", handle: 1 }));
        assert_eq!(t.get(0).unwrap_err().errno(), accel_uapi::Errno::ENOENT);
        t.next = u32::MAX;
        assert_eq!(t.insert("c").unwrap_err().0.errno(), accel_uapi::Errno::ENOSPC);
    }
}
