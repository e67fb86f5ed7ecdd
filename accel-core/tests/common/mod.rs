//! Helpers shared by the behaviour tests: a registry with mock devices and
//! typed ioctls over the in-process transport.
#![allow(dead_code, unused_imports)]

use accel_core::inproc::Client;
use accel_core::{Device, Registry};
use accel_uapi::{Errno, sys};
use std::sync::Arc;
use test_driver::{MockConfig, MockDriver};
use zerocopy::{FromBytes, IntoBytes};

pub use test_driver::{REGION_DEVICE, REGION_HOST, VA_RESERVED_START, VA_START};

/// A registry with one mock device.
pub struct Rig {
    pub registry: Registry,
    pub device: Arc<Device>,
    pub mock: Arc<MockDriver>,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(MockConfig::default())
    }

    pub fn with(cfg: MockConfig) -> Rig {
        let registry = Registry::new();
        let mock = MockDriver::new(cfg);
        let device = registry.register(mock.clone()).unwrap();
        Rig { registry, device, mock }
    }

    pub fn open(&self) -> Client {
        Client::open_in(&self.registry, "accel0").unwrap()
    }

    /// Every core and mock counter is back to zero and nothing was freed twice.
    pub fn assert_idle(&self) {
        let s = self.device.stats();
        assert!(s.is_idle(), "core counters not idle: {s:?}");
        let m = self.mock.stats();
        assert_eq!(m, test_driver::MockStats::default(), "mock counters not idle");
    }
}

/// A typed ioctl.
pub fn io<T: IntoBytes + FromBytes>(c: &Client, cmd: u32, arg: &mut T) -> Result<(), Errno> {
    c.ioctl(cmd, arg.as_mut_bytes())
}

pub fn ctx_create(c: &Client) -> Result<u32, Errno> {
    let mut a = sys::accel_context_create::default();
    io(c, sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a).map(|_| a.ctx_id)
}

pub fn ctx_destroy(c: &Client, ctx: u32) -> Result<(), Errno> {
    io(c, sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut sys::accel_context_destroy { ctx_id: ctx, pad: 0 })
}

pub fn bo_create(c: &Client, size: u64, region: u32, flags: u32) -> Result<u32, Errno> {
    let mut a = sys::accel_bo_create { size, region, flags, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_CREATE, &mut a).map(|_| a.handle)
}

pub fn bo_close(c: &Client, h: u32) -> Result<(), Errno> {
    io(c, sys::ACCEL_IOCTL_BO_CLOSE, &mut sys::accel_bo_close { handle: h, pad: 0 })
}

pub fn map_op(handle: u32, bo_offset: u64, va: u64, range: u64, perms: u32) -> sys::accel_vm_bind_op {
    sys::accel_vm_bind_op { op: sys::ACCEL_VM_BIND_OP_MAP, flags: perms, handle, pad: 0, bo_offset, va, range }
}

pub fn unmap_op(va: u64, range: u64) -> sys::accel_vm_bind_op {
    sys::accel_vm_bind_op { op: sys::ACCEL_VM_BIND_OP_UNMAP, va, range, ..Default::default() }
}

pub fn vm_bind(c: &Client, ctx: u32, ops: &[sys::accel_vm_bind_op]) -> Result<(), Errno> {
    let mut a = sys::accel_vm_bind {
        ctx_id: ctx,
        num_ops: ops.len() as u32,
        ops_ptr: ops.as_ptr() as u64,
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_VM_BIND, &mut a)
}

pub const RW: u32 = sys::ACCEL_VM_BIND_READ | sys::ACCEL_VM_BIND_WRITE;
pub const PAGE: u64 = 4096;
