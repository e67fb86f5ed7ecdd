//! [`Queue`] and [`Submit`]: jobs on an engine.

use super::memory::ContextInner;
use super::{Bo, Commands, Device, Error, QueueId, Result, Syncobj, count};
use accel_core::SliceMemory;
use accel_uapi::flags::{BoFlags, SubmitFlags};
use accel_uapi::{Errno, sys};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// A queue of a context feeding one engine class. Dropped: QUEUE_DESTROY (jobs
/// already submitted still complete); it keeps its context alive.
#[derive(Debug)]
pub struct Queue {
    ctx: Arc<ContextInner>,
    id: QueueId,
}

/// The arguments of one SUBMIT: chunks, waits, signals and the BLOCK flag.
///
/// ```
/// # use accel::{Submit, Device};
/// # let dev = Device::open("accel0").unwrap();
/// # let done = dev.create_syncobj(false, false).unwrap();
/// let s = Submit::new().signal(&done, 0).block(true);
/// ```
#[derive(Default, Debug)]
pub struct Submit<'a> {
    /// Each chunk with the open its BO belongs to (`None` for raw chunks).
    chunks: Vec<(sys::accel_chunk, Option<Device>)>,
    waits: Vec<(&'a Syncobj, u64)>,
    signals: Vec<(&'a Syncobj, u64)>,
    block: bool,
}

impl<'a> Submit<'a> {
    /// No chunks, syncs or flags: submitted as is, a synchronisation-only job.
    pub fn new() -> Self {
        Self::default()
    }

    fn bo_chunk(mut self, kind: u32, bo: &Bo, offset: u64, size: u64) -> Self {
        let c = sys::accel_chunk { kind, handle: bo.handle().get(), offset, size, ..Default::default() };
        self.chunks.push((c, Some(bo.device().clone())));
        self
    }

    /// A portable chunk: `size` bytes of `bo` at `offset`.
    pub fn chunk(self, bo: &Bo, offset: u64, size: u64) -> Self {
        self.bo_chunk(sys::ACCEL_CHUNK_PORTABLE, bo, offset, size)
    }

    /// A native (vendor) chunk: `size` bytes of `bo` at `offset`.
    pub fn native_chunk(self, bo: &Bo, offset: u64, size: u64) -> Self {
        self.bo_chunk(sys::ACCEL_CHUNK_NATIVE, bo, offset, size)
    }

    /// A chunk exactly as given (not checked against the queue's open).
    pub fn raw_chunk(mut self, c: sys::accel_chunk) -> Self {
        self.chunks.push((c, None));
        self
    }

    /// Start the job after `s` signals (at `point`; 0 for a binary syncobj).
    pub fn wait(mut self, s: &'a Syncobj, point: u64) -> Self {
        self.waits.push((s, point));
        self
    }

    /// Install the job's fence in `s` (at `point`; 0 for a binary syncobj).
    pub fn signal(mut self, s: &'a Syncobj, point: u64) -> Self {
        self.signals.push((s, point));
        self
    }

    /// Wait for room in the queue instead of failing with EAGAIN.
    pub fn block(mut self, yes: bool) -> Self {
        self.block = yes;
        self
    }
}

impl Queue {
    pub(crate) fn from_parts(ctx: Arc<ContextInner>, id: QueueId) -> Queue {
        Queue { ctx, id }
    }

    /// The queue handle.
    pub fn id(&self) -> QueueId {
        self.id
    }

    /// The open this queue belongs to.
    pub fn device(&self) -> &Device {
        &self.ctx.dev
    }

    /// SUBMIT one job; returns its sequence number on the queue.
    pub fn submit(&self, s: &Submit<'_>) -> Result<u64> {
        const CALL: &str = "SUBMIT";
        let dev = &self.ctx.dev;
        let mut chunks = Vec::with_capacity(s.chunks.len());
        for (c, owner) in &s.chunks {
            if let Some(owner) = owner {
                dev.check_same(CALL, owner)?;
            }
            chunks.push(*c);
        }
        let waits = dev.syncs(CALL, &s.waits)?;
        let signals = dev.syncs(CALL, &s.signals)?;
        let flags = if s.block { SubmitFlags::BLOCK } else { SubmitFlags::empty() };
        let mut mem = SliceMemory::new();
        let mut a = sys::accel_submit {
            queue_id: self.id.get(),
            flags: flags.bits(),
            num_chunks: count(CALL, chunks.len())?,
            num_waits: count(CALL, waits.len())?,
            num_signals: count(CALL, signals.len())?,
            pad: 0,
            chunks_ptr: mem.lend(chunks.as_bytes()),
            waits_ptr: mem.lend(waits.as_bytes()),
            signals_ptr: mem.lend(signals.as_bytes()),
            seqno: 0,
        };
        dev.ioctl_lent(CALL, sys::ACCEL_IOCTL_SUBMIT, &mut a, &mem)?;
        Ok(a.seqno)
    }

    /// Copy `cmds` into a fresh CPU-visible BO of region 0, SUBMIT it as one
    /// portable chunk signalling a fresh binary syncobj, and return that syncobj
    /// (which keeps the BO alive). Does not wait. An empty stream submits a
    /// synchronisation-only job.
    pub fn run(&self, cmds: &Commands) -> Result<Syncobj> {
        let dev = &self.ctx.dev;
        let mut done = dev.create_syncobj(false, false)?;
        if cmds.is_empty() {
            self.submit(&Submit::new().signal(&done, 0))?;
            return Ok(done);
        }
        let len = u64::try_from(cmds.len()).map_err(|_| Error::new("BO_CREATE", Errno::E2BIG))?;
        let bo = dev.create_bo(len, 0, BoFlags::CPU_VISIBLE)?;
        bo.map()?.write(0, cmds.bytes())?;
        self.submit(&Submit::new().chunk(&bo, 0, len).signal(&done, 0))?;
        done.keep_alive(bo);
        Ok(done)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let mut a = sys::accel_queue_destroy { queue_id: self.id.get(), pad: 0 };
        let _ = self.ctx.dev.ioctl("QUEUE_DESTROY", sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut a);
    }
}
