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

// ------------------------------------------------------------ submission

/// A context with a CPU-visible BO of `pages` pages mapped RW at `VA_START`.
pub struct Space {
    pub c: Client,
    pub ctx: u32,
    pub bo: u32,
    pub map: accel_core::inproc::CpuMapping,
    pub cmd_bo: u32,
    pub cmd_map: accel_core::inproc::CpuMapping,
}

pub const CMD_BYTES: u64 = 64 * 1024;

impl Space {
    pub fn new(c: Client, pages: u64) -> Space {
        let ctx = ctx_create(&c).unwrap();
        let bo = bo_create(&c, pages * PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
        vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, pages * PAGE, RW)]).unwrap();
        let map = mmap_bo(&c, bo, pages * PAGE);
        let cmd_bo = bo_create(&c, CMD_BYTES, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
        let cmd_map = mmap_bo(&c, cmd_bo, CMD_BYTES);
        Space { c, ctx, bo, map, cmd_bo, cmd_map }
    }

    pub fn queue(&self) -> u32 {
        queue_create(&self.c, self.ctx, sys::ACCEL_ENGINE_CLASS_COMPUTE, 0, None).unwrap()
    }

    /// Write `stream` at `offset` of the command BO and return its chunk.
    pub fn chunk(&self, offset: u64, stream: &[u8]) -> sys::accel_chunk {
        self.cmd_map.write(offset as usize, stream).unwrap();
        sys::accel_chunk {
            kind: sys::ACCEL_CHUNK_PORTABLE,
            handle: self.cmd_bo,
            offset,
            size: stream.len() as u64,
            ..Default::default()
        }
    }

    pub fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.map.read(off as usize, &mut v).unwrap();
        v
    }

    pub fn read_u64(&self, off: u64) -> u64 {
        u64::from_le_bytes(self.read(off, 8).try_into().unwrap())
    }
}

pub fn mmap_bo(c: &Client, h: u32, len: u64) -> accel_core::inproc::CpuMapping {
    let mut a = sys::accel_bo_mmap_offset { handle: h, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_MMAP_OFFSET, &mut a).unwrap();
    c.mmap(a.offset, len, true).unwrap()
}

pub fn queue_create(c: &Client, ctx: u32, class: u32, depth: u32, timeout_ns: Option<u64>) -> Result<u32, Errno> {
    let mut a = sys::accel_queue_create {
        ctx_id: ctx,
        engine_class: class,
        priority: sys::ACCEL_PRIORITY_NORMAL,
        depth,
        flags: if timeout_ns.is_some() { sys::ACCEL_QUEUE_TIMEOUT } else { 0 },
        timeout_ns: timeout_ns.unwrap_or(0),
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_QUEUE_CREATE, &mut a).map(|_| a.queue_id)
}

pub fn submit(
    c: &Client,
    q: u32,
    chunks: &[sys::accel_chunk],
    waits: &[sys::accel_sync],
    signals: &[sys::accel_sync],
    flags: u32,
) -> Result<u64, Errno> {
    let mut a = sys::accel_submit {
        queue_id: q,
        flags,
        num_chunks: chunks.len() as u32,
        num_waits: waits.len() as u32,
        num_signals: signals.len() as u32,
        chunks_ptr: chunks.as_ptr() as u64,
        waits_ptr: waits.as_ptr() as u64,
        signals_ptr: signals.as_ptr() as u64,
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_SUBMIT, &mut a).map(|_| a.seqno)
}

pub fn sync(handle: u32, point: u64) -> sys::accel_sync {
    sys::accel_sync { handle, flags: 0, point }
}

pub fn syncobj(c: &Client, flags: u32) -> Result<u32, Errno> {
    let mut a = sys::accel_syncobj_create { flags, handle: 0 };
    io(c, sys::ACCEL_IOCTL_SYNCOBJ_CREATE, &mut a).map(|_| a.handle)
}

/// Absolute CLOCK_MONOTONIC deadline `ms` from now.
pub fn in_ms(ms: i64) -> i64 {
    accel_core::fence::monotonic_ns() + ms * 1_000_000
}

pub fn wait(c: &Client, handles: &[u32], points: Option<&[u64]>, flags: u32, deadline: i64) -> Result<u32, Errno> {
    let mut a = sys::accel_syncobj_wait {
        handles_ptr: handles.as_ptr() as u64,
        points_ptr: points.map_or(0, |p| p.as_ptr() as u64),
        timeout_ns: deadline,
        count: handles.len() as u32,
        flags,
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_SYNCOBJ_WAIT, &mut a).map(|_| a.first_signaled)
}

/// (point, status) of each syncobj.
pub fn query(c: &Client, handles: &[u32]) -> Vec<(u64, i32)> {
    let mut points = vec![0u64; handles.len()];
    let mut status = vec![0i32; handles.len()];
    let mut a = sys::accel_syncobj_query {
        handles_ptr: handles.as_ptr() as u64,
        points_ptr: points.as_mut_ptr() as u64,
        status_ptr: status.as_mut_ptr() as u64,
        count: handles.len() as u32,
        flags: 0,
    };
    io(c, sys::ACCEL_IOCTL_SYNCOBJ_QUERY, &mut a).unwrap();
    points.into_iter().zip(status).collect()
}

/// Wait for a binary syncobj (WAIT_FOR_SUBMIT, 5 s) and return its status.
pub fn finish(c: &Client, s: u32) -> i32 {
    wait(c, &[s], None, sys::ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT, in_ms(5000)).unwrap();
    query(c, &[s])[0].1
}

pub mod cmd {
    use accel_uapi::sys;
    use zerocopy::IntoBytes;

    fn hdr(op: u32, len: usize) -> sys::accel_cmd_header {
        sys::accel_cmd_header { opcode: op as u16, flags: 0, length: len as u32 }
    }
    pub fn copy(src: u64, dst: u64, size: u64) -> Vec<u8> {
        sys::accel_cmd_copy { hdr: hdr(sys::ACCEL_CMD_COPY, 32), src, dst, size }.as_bytes().to_vec()
    }
    pub fn fill(dst: u64, size: u64, pattern: u32) -> Vec<u8> {
        sys::accel_cmd_fill { hdr: hdr(sys::ACCEL_CMD_FILL, 32), dst, size, pattern, pad: 0 }.as_bytes().to_vec()
    }
    pub fn write(addr: u64, value: u64, width: u32) -> Vec<u8> {
        sys::accel_cmd_write_value { hdr: hdr(sys::ACCEL_CMD_WRITE_VALUE, 32), addr, value, width, pad: 0 }
            .as_bytes()
            .to_vec()
    }
    pub fn wait(addr: u64, value: u64, op: u32, timeout_ns: u64) -> Vec<u8> {
        sys::accel_cmd_wait_value {
            hdr: hdr(sys::ACCEL_CMD_WAIT_VALUE, 48),
            addr,
            value,
            mask: u64::MAX,
            timeout_ns,
            op,
            width: 8,
        }
        .as_bytes()
        .to_vec()
    }
    pub fn timestamp(dst: u64) -> Vec<u8> {
        sys::accel_cmd_timestamp { hdr: hdr(sys::ACCEL_CMD_TIMESTAMP, 16), dst }.as_bytes().to_vec()
    }
    pub fn barrier() -> Vec<u8> {
        sys::accel_cmd_barrier { hdr: hdr(sys::ACCEL_CMD_BARRIER, 8) }.as_bytes().to_vec()
    }
    pub fn reduce(src: u64, dst: u64, count: u64, op: u32, dtype: u32) -> Vec<u8> {
        sys::accel_cmd_reduce { hdr: hdr(sys::ACCEL_CMD_REDUCE, 40), src, dst, count, op, dtype }.as_bytes().to_vec()
    }
}

/// Poll until every core and mock counter is idle (jobs finish asynchronously).
pub fn wait_idle(rig: &Rig) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(rig.device.stats().is_idle() && rig.mock.stats() == test_driver::MockStats::default()) {
        assert!(std::time::Instant::now() < end, "not idle: {:?} {:?}", rig.device.stats(), rig.mock.stats());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
