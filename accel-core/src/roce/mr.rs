//! Local memory as the RC engine sees it: regions named by a key, with
//! access rights. [`MemRegions`] is a simple in-memory implementation.

use parking_lot::Mutex;

bitflags::bitflags! {
    /// Access rights of a memory region, and the access an operation needs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Access: u32 {
        /// The local QP may write (receives, READ responses).
        const LOCAL_WRITE = 1;
        /// A remote peer may RDMA WRITE.
        const REMOTE_WRITE = 2;
        /// A remote peer may RDMA READ.
        const REMOTE_READ = 4;
    }
}

/// Why a memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No region has this key.
    #[error("no memory region with key {0:#x}")]
    BadKey(u32),
    /// The range is not inside the region.
    #[error("range outside the memory region")]
    OutOfBounds,
    /// The region lacks the access right.
    #[error("memory region lacks access {0:?}")]
    Denied(Access),
}

/// Local memory used by an [`crate::roce::engine::RcQp`]. `access` is what
/// the operation needs (empty for a local read, e.g. gathering a SEND).
pub trait RcMemory: Send + Sync {
    /// Reads `len` bytes at `addr` through `key`.
    fn read(&self, key: u32, addr: u64, len: usize, access: Access) -> Result<Vec<u8>, AccessError>;
    /// Writes `data` at `addr` through `key`.
    fn write(&self, key: u32, addr: u64, data: &[u8], access: Access) -> Result<(), AccessError>;
    /// Reads `dst.len()` bytes at `addr` through `key` into `dst`. The
    /// default goes through [`RcMemory::read`]; implementations should copy
    /// straight into `dst`.
    fn read_into(&self, key: u32, addr: u64, dst: &mut [u8], access: Access) -> Result<(), AccessError> {
        let v = self.read(key, addr, dst.len(), access)?;
        dst.copy_from_slice(&v);
        Ok(())
    }
}

#[derive(Debug)]
struct Region {
    key: u32,
    addr: u64,
    access: Access,
    bytes: Vec<u8>,
}

/// A few registered regions held in host memory (for tests and loopback).
#[derive(Debug, Default)]
pub struct MemRegions {
    regions: Mutex<Vec<Region>>,
}

impl MemRegions {
    /// No regions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `len` zeroed bytes at virtual address `addr` under `key`.
    pub fn register(&self, key: u32, addr: u64, len: usize, access: Access) {
        let mut r = self.regions.lock();
        r.retain(|x| x.key != key);
        r.push(Region { key, addr, access, bytes: vec![0; len] });
    }

    /// Reads without access checks (test inspection).
    pub fn peek(&self, key: u32, addr: u64, len: usize) -> Result<Vec<u8>, AccessError> {
        self.read(key, addr, len, Access::empty())
    }

    /// Writes without access checks (test setup).
    pub fn poke(&self, key: u32, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.write(key, addr, data, Access::empty())
    }

    fn with<T>(
        &self,
        key: u32,
        addr: u64,
        len: usize,
        access: Access,
        f: impl FnOnce(&mut [u8]) -> T,
    ) -> Result<T, AccessError> {
        let mut regions = self.regions.lock();
        let r = regions.iter_mut().find(|r| r.key == key).ok_or(AccessError::BadKey(key))?;
        if !r.access.contains(access) {
            return Err(AccessError::Denied(access));
        }
        let start = addr.checked_sub(r.addr).ok_or(AccessError::OutOfBounds)?;
        let start = usize::try_from(start).map_err(|_| AccessError::OutOfBounds)?;
        let end = start.checked_add(len).ok_or(AccessError::OutOfBounds)?;
        let s = r.bytes.get_mut(start..end).ok_or(AccessError::OutOfBounds)?;
        Ok(f(s))
    }
}

impl RcMemory for MemRegions {
    fn read(&self, key: u32, addr: u64, len: usize, access: Access) -> Result<Vec<u8>, AccessError> {
        self.with(key, addr, len, access, |s| s.to_vec())
    }

    fn write(&self, key: u32, addr: u64, data: &[u8], access: Access) -> Result<(), AccessError> {
        self.with(key, addr, data.len(), access, |s| s.copy_from_slice(data))
    }

    fn read_into(&self, key: u32, addr: u64, dst: &mut [u8], access: Access) -> Result<(), AccessError> {
        self.with(key, addr, dst.len(), access, |s| dst.copy_from_slice(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_keys_bounds_and_access() {
        let m = MemRegions::new();
        m.register(1, 0x1000, 16, Access::LOCAL_WRITE);
        m.write(1, 0x1004, &[1, 2], Access::LOCAL_WRITE).unwrap();
        assert_eq!(m.read(1, 0x1003, 4, Access::empty()).unwrap(), vec![0, 1, 2, 0]);
        assert_eq!(m.read(2, 0x1000, 1, Access::empty()), Err(AccessError::BadKey(2)));
        assert_eq!(m.read(1, 0x100F, 2, Access::empty()), Err(AccessError::OutOfBounds));
        assert_eq!(m.read(1, 0xFFF, 1, Access::empty()), Err(AccessError::OutOfBounds));
        assert_eq!(m.read(1, 0x1000, 1, Access::REMOTE_READ), Err(AccessError::Denied(Access::REMOTE_READ)));
    }
}
