//! The dispatcher: the one place userspace bytes enter the core.
//!
//! `dispatch(file, cmd, arg, user)` applies UAPI-RULES.md rules 5-8 from the
//! ioctl table, in this order, before any handler runs:
//! 1. type byte, command number and direction bits -> ENOTTY;
//! 2. the argument is exactly the size the command encodes; shorter than the
//!    first release -> EINVAL; longer than the core's struct with non-zero
//!    tail bytes -> E2BIG; shorter is zero-extended;
//! 3. (commands that copy in) pad/reserved fields zero and no unknown flag bits -> EINVAL;
//! 4. the file is open (EBADF) and its device registered (ENODEV);
//! 5. the capability that announces the command -> EOPNOTSUPP;
//! 6. nested arrays: count within its maximum (E2BIG), count x element size
//!    without overflow (EOVERFLOW), copied in through [`UserMemory`] (EFAULT),
//!    every element's pad and flag words checked (EINVAL); output arrays are
//!    checked writable (EFAULT) so results are never lost after the handler ran.
//!
//! Handlers receive typed structs and typed element vectors, never bytes or
//! pointers, and return a core [`Error`] that becomes exactly one errno.

use crate::cmd;
use crate::device::{Device, max};
use crate::driver::JobChunk;
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::file::File;
use crate::query;
use crate::syncobj::{Claim, Syncobj};
use crate::user::UserMemory;
use crate::vm::BindOp;
use accel_uapi::flags::{BoFlags, Caps, ContextStatus, QueueFlags, SubmitFlags, VmBindFlags};
use accel_uapi::ioctl::{self, Access, IoctlDesc, PtrField, StructDesc};
use accel_uapi::types::VmBindOp;
use accel_uapi::types::{ChunkKind, EngineClass, Priority};
use accel_uapi::{Errno, sys};
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::time::Duration;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Dispatch one ioctl. `arg` is the caller's struct, exactly as many bytes as
/// `cmd` encodes; nested arrays are reached through `user`.
pub fn dispatch(file: &File, cmd: u32, arg: &mut [u8], user: &dyn UserMemory) -> Result<(), Errno> {
    dispatch_inner(file, cmd, arg, user).map_err(|e| {
        tracing::debug!(device = file.device().name(), cmd = format_args!("{cmd:#010x}"), "ioctl failed: {e}");
        e.errno()
    })
}

/// Room for the largest argument struct this core knows (a test checks
/// the table): the struct is copied to the stack, not to the heap.
const MAX_ARG: usize = 256;
/// Nested arrays of one ioctl at most (a test checks the table).
const MAX_PTRS: usize = 4;

/// An input array as copied in, in 8-byte-aligned storage so that handlers
/// can borrow it as a slice of its element type ([`Call::input_ref`]).
struct Input {
    words: Vec<u64>,
    len: usize,
}

/// Array buffers a thread keeps for its next calls: a busy-polling caller
/// makes two or three ioctls per message, each of which would otherwise
/// allocate and free its arrays.
struct Pool<T> {
    free: Vec<Vec<T>>,
}

/// Buffers of up to this many bytes go back to the pool; larger ones are freed.
const POOL_MAX_BYTES: usize = 4096;
/// Buffers a pool keeps.
const POOL_DEPTH: usize = 8;

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool { free: Vec::new() }
    }

    fn take(&mut self) -> Vec<T> {
        self.free.pop().unwrap_or_default()
    }

    fn give(&mut self, mut v: Vec<T>) {
        if v.capacity() * size_of::<T>() <= POOL_MAX_BYTES && self.free.len() < POOL_DEPTH {
            v.clear();
            self.free.push(v);
        }
    }
}

thread_local! {
    static WORDS: std::cell::RefCell<Pool<u64>> = const { std::cell::RefCell::new(Pool::new()) };
    static BYTES: std::cell::RefCell<Pool<u8>> = const { std::cell::RefCell::new(Pool::new()) };
}

impl Input {
    fn zeroed(len: usize) -> Input {
        let mut words = WORDS.try_with(|p| p.borrow_mut().take()).unwrap_or_default();
        words.resize(len.div_ceil(8), 0);
        Input { words, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[..self.len]
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        let words = std::mem::take(&mut self.words);
        // During thread teardown the pool may be gone: then just free.
        let _ = WORDS.try_with(|p| p.borrow_mut().give(words));
    }
}

/// An output array staged until the handler succeeded, in pooled storage.
struct Output(Vec<u8>);

impl Drop for Output {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let _ = BYTES.try_with(|p| p.borrow_mut().give(bytes));
    }
}

/// A validated call, as handlers see it.
pub struct Call<'a> {
    desc: &'static IoctlDesc,
    /// The argument struct: `buf[..desc.arg.size]`.
    buf: [u8; MAX_ARG],
    inputs: [Option<Input>; MAX_PTRS],
    outputs: [Option<Output>; MAX_PTRS],
    counts: [u32; MAX_PTRS],
    device: &'a Device,
    /// Copy the struct back even when the handler fails (POST_SEND and
    /// POST_RECV, for `bad_wr`).
    pub(crate) copy_back_on_error: bool,
}

/// `what` names the struct in the error; it is only formatted on failure.
fn check_struct(desc: &StructDesc, bytes: &[u8], what: impl Fn() -> String) -> Result<()> {
    for z in desc.zero {
        if bytes[z.offset..z.offset + z.size].iter().any(|b| *b != 0) {
            return Err(Error::invalid(format!("{}.{} must be zero", what(), z.name)));
        }
    }
    for f in desc.flags {
        let v = u32::from_ne_bytes([bytes[f.offset], bytes[f.offset + 1], bytes[f.offset + 2], bytes[f.offset + 3]]);
        if v & !f.valid != 0 {
            return Err(Error::invalid(format!("{}.{}: unknown bits {:#x}", what(), f.name, v & !f.valid)));
        }
    }
    Ok(())
}

/// Output arrays the header defines as optional: a 0 pointer means "not
/// wanted" (every other output array with a count needs a pointer).
fn optional_output(desc: &IoctlDesc, p: &PtrField) -> bool {
    (desc.name, p.name) == ("ACCEL_IOCTL_SYNCOBJ_QUERY", "status_ptr")
}

/// The documented maximum element count of a nested array.
fn array_max(dev: &Device, desc: &IoctlDesc, p: &PtrField) -> u32 {
    match (desc.name, p.name) {
        ("ACCEL_IOCTL_DEVICE_QUERY", _) => max::QUERY_BYTES,
        ("ACCEL_IOCTL_VM_BIND", "ops_ptr") => max::VM_BIND_OPS,
        ("ACCEL_IOCTL_SUBMIT", "chunks_ptr") => max::SUBMIT_CHUNKS,
        ("ACCEL_IOCTL_VM_BIND" | "ACCEL_IOCTL_SUBMIT", _) => max::SYNCS,
        ("ACCEL_IOCTL_CQ_POLL", _) => dev.limits.max_cqe,
        ("ACCEL_IOCTL_POST_SEND" | "ACCEL_IOCTL_POST_RECV", "sges_ptr") => {
            max::POST_WRS.saturating_mul(dev.limits.max_sge)
        }
        ("ACCEL_IOCTL_POST_SEND" | "ACCEL_IOCTL_POST_RECV", _) => max::POST_WRS,
        _ => max::SYNCOBJ_WAIT,
    }
}

fn dispatch_inner(file: &File, cmd: u32, arg: &mut [u8], user: &dyn UserMemory) -> Result<()> {
    // 1. identity
    let d = ioctl::decode(cmd);
    let desc = match ioctl::by_nr(d.nr) {
        Some(desc) if d.ty == ioctl::IOCTL_TYPE && d.dir == desc.dir as u32 => desc,
        _ => return Err(Error::UnknownIoctl { cmd }),
    };
    // 2. size
    if arg.len() != d.size {
        return Err(Error::invalid(format!("argument is {} bytes but {cmd:#010x} encodes {}", arg.len(), d.size)));
    }
    if d.size < desc.min_size {
        return Err(Error::invalid(format!(
            "{}: {} bytes is shorter than version 1 ({})",
            desc.name, d.size, desc.min_size
        )));
    }
    let core_size = desc.arg.size;
    if core_size > MAX_ARG || desc.ptrs.len() > MAX_PTRS {
        return Err(Error::invalid(format!("{}: the core's table entry is too large", desc.name)));
    }
    let n = d.size.min(core_size);
    let mut buf = [0u8; MAX_ARG];
    if desc.dir.copies_in() {
        if arg[core_size.min(d.size)..].iter().any(|b| *b != 0) {
            return Err(Error::TooBig(format!("{}: non-zero bytes past the {core_size} this core knows", desc.name)));
        }
        buf[..n].copy_from_slice(&arg[..n]);
        // 3. reserved fields and flags
        check_struct(desc.arg, &buf[..core_size], || desc.arg.name.to_string())?;
    }
    // 4. file and device
    file.check()?;
    let device = file.device();
    // 5. capability
    if !device.caps().contains(desc.cap) {
        return Err(Error::NotSupported(format!("{} needs {:?}", desc.name, desc.cap)));
    }
    // 6. nested arrays
    let mut inputs = [const { None }; MAX_PTRS];
    let mut counts = [0; MAX_PTRS];
    for (i, p) in desc.ptrs.iter().enumerate() {
        let (ptr, count) =
            p.read(&buf[..core_size]).ok_or_else(|| Error::invalid("pointer field outside the struct"))?;
        counts[i] = count;
        if count > 0 && ptr == 0 && p.access == Access::Out && !optional_output(desc, p) {
            // The handler's results could not be copied out, after it ran
            // (completions reaped from a CQ would be lost).
            return Err(Error::Fault { addr: 0, len: u64::from(count) * p.elem.size as u64 });
        }
        if count == 0 || ptr == 0 {
            continue;
        }
        let limit = array_max(device, desc, p);
        if count > limit {
            return Err(Error::TooBig(format!("{}.{} = {count} > {limit}", desc.name, p.count_name)));
        }
        let bytes = (count as usize)
            .checked_mul(p.elem.size)
            .ok_or_else(|| Error::Overflow(format!("{}.{} x {}", desc.name, p.count_name, p.elem.size)))?;
        match p.access {
            Access::In => {
                let mut v = Input::zeroed(bytes);
                user.copy_in(ptr, v.bytes_mut()).map_err(|_| Error::Fault { addr: ptr, len: bytes as u64 })?;
                for (i, e) in v.bytes().chunks_exact(p.elem.size).enumerate() {
                    check_struct(p.elem, e, || format!("{}[{i}]", p.name))?;
                }
                inputs[i] = Some(v);
            }
            Access::Out => {
                user.check_writable(ptr, bytes).map_err(|_| Error::Fault { addr: ptr, len: bytes as u64 })?;
            }
        }
    }
    let mut call =
        Call { desc, buf, inputs, outputs: [const { None }; MAX_PTRS], counts, device, copy_back_on_error: false };
    if let Err(e) = handle(file, &mut call) {
        if call.copy_back_on_error && desc.dir.copies_out() {
            arg[..n].copy_from_slice(&call.buf[..n]);
            arg[n..].fill(0);
        }
        return Err(e);
    }
    // Results: arrays first (checked writable above), then the struct.
    for (i, p) in desc.ptrs.iter().enumerate() {
        if let Some(Output(out)) = &call.outputs[i] {
            let (ptr, _) =
                p.read(&call.buf[..core_size]).ok_or_else(|| Error::invalid("pointer field outside the struct"))?;
            user.copy_out(ptr, out).map_err(|_| Error::Fault { addr: ptr, len: out.len() as u64 })?;
        }
    }
    if desc.dir.copies_out() {
        arg[..n].copy_from_slice(&call.buf[..n]);
        // A caller built against a newer header sees zeros in fields this core lacks.
        arg[n..].fill(0);
    }
    Ok(())
}

impl Call<'_> {
    /// The command being handled.
    pub fn desc(&self) -> &'static IoctlDesc {
        self.desc
    }

    /// The device the call is for.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// The argument struct.
    pub fn arg<T: FromBytes + KnownLayout + Immutable>(&self) -> Result<T> {
        T::read_from_bytes(&self.buf[..self.desc.arg.size]).map_err(|_| Error::invalid("argument layout mismatch"))
    }

    /// Replace the argument struct (copied back for R/RW commands).
    pub fn set_arg<T: IntoBytes + Immutable>(&mut self, v: &T) {
        let b = v.as_bytes();
        let n = b.len().min(self.desc.arg.size);
        self.buf[..n].copy_from_slice(&b[..n]);
    }

    /// The elements of input array `i` (empty when its count is 0); EFAULT when
    /// the count is non-zero but the pointer is 0.
    pub fn input<E: FromBytes + Immutable>(&self, i: usize) -> Result<Vec<E>> {
        match self.inputs.get(i) {
            Some(Some(v)) => {
                Ok(v.bytes().chunks_exact(size_of::<E>()).filter_map(|c| E::read_from_bytes(c).ok()).collect())
            }
            _ if self.counts.get(i).copied().unwrap_or(0) == 0 => Ok(Vec::new()),
            _ => Err(Error::Fault { addr: 0, len: 0 }),
        }
    }

    /// [`Call::input`] borrowed in place, without a copy.
    pub fn input_ref<E: FromBytes + Immutable + KnownLayout>(&self, i: usize) -> Result<&[E]> {
        match self.inputs.get(i) {
            Some(Some(v)) => <[E]>::ref_from_bytes(v.bytes())
                .map_err(|_| Error::invalid(format!("{}: array {i} is not an array of its element", self.desc.name))),
            _ if self.counts.get(i).copied().unwrap_or(0) == 0 => Ok(&[]),
            _ => Err(Error::Fault { addr: 0, len: 0 }),
        }
    }

    /// Like [`Call::output`], with the array's bytes appended by `fill`
    /// to a buffer from the thread's pool (no allocation per call).
    pub fn output_with(&mut self, i: usize, fill: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        let max = self.counts.get(i).copied().unwrap_or(0) as usize * self.desc.ptrs.get(i).map_or(0, |p| p.elem.size);
        let mut out = Output(BYTES.try_with(|p| p.borrow_mut().take()).unwrap_or_default());
        let r = fill(&mut out.0);
        out.0.truncate(max);
        if let Some(slot) = self.outputs.get_mut(i) {
            *slot = Some(out);
        }
        r
    }

    /// Set output array `i`, truncated to its count.
    pub fn output<E: IntoBytes + Immutable>(&mut self, i: usize, data: &[E]) {
        let _ = self.output_with(i, |out| {
            out.extend_from_slice(data.as_bytes());
            Ok(())
        });
    }
}

fn handle(file: &File, call: &mut Call<'_>) -> Result<()> {
    match call.desc.nr {
        0x00 => {
            let v = sys::accel_version {
                major: accel_uapi::ABI_VERSION.0,
                minor: accel_uapi::ABI_VERSION.1,
                pad: 0,
                caps: call.device.caps().bits(),
            };
            call.set_arg(&v);
            Ok(())
        }
        0x01 => {
            let mut q: sys::accel_device_query = call.arg()?;
            let result = query::build(call.device, q.query_id)?;
            let len = u32::try_from(result.len()).map_err(|_| Error::Overflow("query result".into()))?;
            if q.size != 0 {
                if q.size < len {
                    return Err(Error::invalid(format!("query buffer of {} bytes < {len}", q.size)));
                }
                if q.data_ptr == 0 {
                    return Err(Error::Fault { addr: 0, len: u64::from(len) });
                }
                call.output(0, &result);
            }
            q.size = len;
            call.set_arg(&q);
            Ok(())
        }
        0x10 => {
            let mut a: sys::accel_context_create = call.arg()?;
            a.ctx_id = file.context_create()?;
            call.set_arg(&a);
            Ok(())
        }
        0x11 => {
            let a: sys::accel_context_destroy = call.arg()?;
            file.context_destroy(a.ctx_id)
        }
        0x20 => {
            let mut a: sys::accel_bo_create = call.arg()?;
            let flags = BoFlags::from_bits_retain(a.flags);
            a.handle = file.bo_create(a.size, a.region, flags)?;
            call.set_arg(&a);
            Ok(())
        }
        0x21 => {
            let a: sys::accel_bo_close = call.arg()?;
            file.bo_close(a.handle)
        }
        0x22 => {
            let mut a: sys::accel_bo_info = call.arg()?;
            let bo = file.bo(a.handle)?;
            a.size = bo.size;
            a.region = bo.region;
            a.flags = bo.flags.bits();
            call.set_arg(&a);
            Ok(())
        }
        0x23 => {
            let mut a: sys::accel_bo_mmap_offset = call.arg()?;
            a.offset = file.bo_mmap_offset(a.handle)?;
            call.set_arg(&a);
            Ok(())
        }
        0x24 => {
            let mut a: sys::accel_bo_export = call.arg()?;
            a.fd = file.bo_export(a.handle)?.into_raw_fd();
            call.set_arg(&a);
            Ok(())
        }
        0x25 => {
            let mut a: sys::accel_bo_import = call.arg()?;
            let (h, size) = file.bo_import(a.fd)?;
            a.handle = h;
            a.size = size;
            call.set_arg(&a);
            Ok(())
        }
        0x26 => vm_bind(file, call),
        0x12 => {
            let mut a: sys::accel_context_query = call.arg()?;
            let ctx = file.context(a.ctx_id)?;
            let mut status = ContextStatus::empty();
            if let Some(f) = ctx.fault() {
                status |= ContextStatus::FAULTED;
                (a.fault_addr, a.fault_access, a.fault_seqno) = (f.addr, f.access.bits(), f.seqno);
            }
            if let Some(e) = ctx.banned() {
                status |= ContextStatus::BANNED;
                a.ban_errno = e.raw() as u32;
            }
            a.status = status.bits();
            call.set_arg(&a);
            Ok(())
        }
        0x30 => queue_create(file, call),
        0x31 => {
            let a: sys::accel_queue_destroy = call.arg()?;
            file.queue_destroy(a.queue_id)
        }
        0x32 => submit(file, call),
        0x40..=0x49 => crate::dispatch_sync::handle(file, call),
        0x02 | 0x50..=0x5C => crate::dispatch_verbs::handle(file, call),
        _ => Err(Error::NotSupported(format!("{} is not implemented by this core", call.desc.name))),
    }
}

fn queue_create(file: &File, call: &mut Call<'_>) -> Result<()> {
    let mut a: sys::accel_queue_create = call.arg()?;
    let class = EngineClass::try_from(a.engine_class).map_err(|e| Error::invalid(e.to_string()))?;
    let priority = Priority::try_from(a.priority).map_err(|e| Error::invalid(e.to_string()))?;
    let limits = &call.device.limits;
    let max_depth = limits.max_queue_depth as usize;
    let depth = match a.depth as usize {
        0 => max_depth.min(64),
        d if d > max_depth => return Err(Error::TooBig(format!("queue depth {d} > {max_depth}"))),
        d => d,
    };
    let default = limits.default_job_timeout_ns;
    let timeout = if QueueFlags::from_bits_retain(a.flags).contains(QueueFlags::TIMEOUT) {
        if a.timeout_ns == 0 || a.timeout_ns > default {
            return Err(Error::invalid(format!("queue timeout {} ns outside 1..={default}", a.timeout_ns)));
        }
        a.timeout_ns
    } else {
        default
    };
    a.queue_id = file.queue_create(a.ctx_id, class, priority, depth, Duration::from_nanos(timeout))?;
    call.set_arg(&a);
    Ok(())
}

fn submit(file: &File, call: &mut Call<'_>) -> Result<()> {
    let mut a: sys::accel_submit = call.arg()?;
    let q = file.queue(a.queue_id)?;
    if let Some(e) = q.context().banned() {
        return Err(Error::Device(format!("context banned after {e:?}")));
    }
    let raw_chunks: Vec<sys::accel_chunk> = call.input(0)?;
    let waits: Vec<sys::accel_sync> = call.input(1)?;
    let signals: Vec<sys::accel_sync> = call.input(2)?;
    let caps = call.device.caps();
    if (!waits.is_empty() || !signals.is_empty()) && !caps.contains(Caps::SYNCOBJ) {
        return Err(Error::NotSupported("SUBMIT waits/signals need ACCEL_CAP_SYNCOBJ".into()));
    }
    if waits.iter().chain(&signals).any(|s| s.point != 0) && !caps.contains(Caps::SYNCOBJ_TIMELINE) {
        return Err(Error::NotSupported("timeline points need ACCEL_CAP_SYNCOBJ_TIMELINE".into()));
    }
    // 1. Chunks: bounded in total, copied out of their BOs and validated.
    let total = raw_chunks.iter().try_fold(0u64, |t, c| t.checked_add(c.size)).unwrap_or(u64::MAX);
    if total > max::SUBMIT_BYTES {
        return Err(Error::TooBig(format!("{total} bytes of command streams > {}", max::SUBMIT_BYTES)));
    }
    let mut chunks = Vec::with_capacity(raw_chunks.len());
    for (i, c) in raw_chunks.iter().enumerate() {
        let kind = ChunkKind::try_from(c.kind).map_err(|e| Error::invalid(format!("chunks[{i}]: {e}")))?;
        let bo = file.bo(c.handle)?;
        if c.size == 0 || !c.offset.is_multiple_of(8) || !c.size.is_multiple_of(8) {
            return Err(Error::invalid(format!("chunks[{i}]: offset/size must be non-zero multiples of 8")));
        }
        if c.offset.checked_add(c.size).is_none_or(|e| e > bo.size) {
            return Err(Error::invalid(format!("chunks[{i}]: range past the BO's {} bytes", bo.size)));
        }
        let host = bo.host().ok_or_else(|| Error::invalid(format!("chunks[{i}]: BO has no CPU view")))?;
        let mut bytes = vec![0u8; c.size as usize];
        host.read(c.offset, &mut bytes)?;
        chunks.push(match kind {
            ChunkKind::Portable if !caps.contains(Caps::PORTABLE_CS) => {
                return Err(Error::NotSupported("portable command streams".into()));
            }
            ChunkKind::Portable => {
                JobChunk::Portable(cmd::parse(&bytes).map_err(|e| Error::invalid(format!("chunks[{i}]: {e}")))?)
            }
            ChunkKind::Native => {
                if !caps.contains(Caps::NATIVE_CS) {
                    return Err(Error::NotSupported("native command buffers".into()));
                }
                JobChunk::Native(call.device.driver.validate_native(q.context().vm_id(), &bytes)?)
            }
        });
    }
    // 2. Signals: all checked before any is installed.
    let outs = signal_targets(file, &signals, "signals")?;
    // 3. Dependencies. A wait on a timeline point nobody has submitted yet,
    // with a signal of that point or later in the same job, would wait on itself.
    let mut wait_fences = Vec::with_capacity(waits.len());
    for (i, w) in waits.iter().enumerate() {
        let obj = file.syncobj(w.handle)?;
        if !obj.covers(w.point) && outs.iter().any(|(o, p)| Arc::ptr_eq(o, &obj) && *p >= w.point) {
            return Err(Error::invalid(format!("waits[{i}]: the job would wait for its own signal")));
        }
        wait_fences.push(obj.submit_wait_fence(w.point)?);
    }
    // 4. A slot in the queue before anything is installed: a blocking SUBMIT
    // never waits for room while holding its signals.
    let block = SubmitFlags::from_bits_retain(a.flags).contains(SubmitFlags::BLOCK);
    let slot = q.reserve(block)?;
    let fence = Fence::new();
    Claim::install(&fence, &outs)?;
    a.seqno = q.submit(slot, chunks, wait_fences, fence);
    call.set_arg(&a);
    Ok(())
}

fn aligned(v: u64, page: u64) -> bool {
    v & (page - 1) == 0
}

fn vm_bind(file: &File, call: &mut Call<'_>) -> Result<()> {
    let a: sys::accel_vm_bind = call.arg()?;
    let ctx = file.context(a.ctx_id)?;
    // VM_BIND is synchronous: it waits for its in-syncs (up to the device's
    // default job timeout) and signals its out-syncs before returning.
    let ins: Vec<sys::accel_sync> = call.input(1)?;
    let outs: Vec<sys::accel_sync> = call.input(2)?;
    if (!ins.is_empty() || !outs.is_empty()) && !call.device.caps().contains(Caps::SYNCOBJ) {
        return Err(Error::NotSupported("VM_BIND syncs need ACCEL_CAP_SYNCOBJ".into()));
    }
    if ins.iter().chain(&outs).any(|s| s.point != 0) && !call.device.caps().contains(Caps::SYNCOBJ_TIMELINE) {
        return Err(Error::NotSupported("timeline points need ACCEL_CAP_SYNCOBJ_TIMELINE".into()));
    }
    let mut in_fences = Vec::with_capacity(ins.len());
    for s in &ins {
        in_fences.push(file.syncobj(s.handle)?.wait_fence(s.point, false)?);
    }
    let out_objs = signal_targets(file, &outs, "out_syncs")?;
    if a.num_ops == 0 {
        return Err(Error::invalid("VM_BIND without ops"));
    }
    let raw: Vec<sys::accel_vm_bind_op> = call.input(0)?;
    let dev = call.device;
    let layout = &dev.layout;
    let mut ops = Vec::with_capacity(raw.len());
    for (i, op) in raw.iter().enumerate() {
        let kind = VmBindOp::try_from(op.op).map_err(|e| Error::invalid(format!("ops[{i}]: {e}")))?;
        let end = op.va.checked_add(op.range).ok_or_else(|| Error::invalid(format!("ops[{i}]: va + range wraps")))?;
        if op.range == 0 {
            return Err(Error::invalid(format!("ops[{i}]: range 0")));
        }
        if op.va < layout.range.start || end > layout.range.end {
            return Err(Error::invalid(format!("ops[{i}]: {:#x}..{end:#x} outside the VA range", op.va)));
        }
        if op.va < layout.reserved.end && end > layout.reserved.start {
            return Err(Error::invalid(format!("ops[{i}]: {:#x}..{end:#x} overlaps the reserved range", op.va)));
        }
        match kind {
            VmBindOp::Map => {
                let perms = VmBindFlags::from_bits_retain(op.flags);
                if perms.is_empty() {
                    return Err(Error::invalid(format!("ops[{i}]: MAP without permissions")));
                }
                let bo = file.bo(op.handle)?;
                let page = dev.region(bo.region).map_or(4096, |r| r.min_page());
                if !aligned(op.va, page) || !aligned(op.range, page) || !aligned(op.bo_offset, page) {
                    return Err(Error::invalid(format!("ops[{i}]: not aligned to {page:#x}")));
                }
                let bo_end = op.bo_offset.checked_add(op.range);
                if bo_end.is_none_or(|e| e > bo.size) {
                    return Err(Error::invalid(format!("ops[{i}]: BO range past its {} bytes", bo.size)));
                }
                ops.push(BindOp::Map { range: op.va..end, bo, offset: op.bo_offset, perms });
            }
            VmBindOp::Unmap => {
                if op.flags != 0 || op.handle != 0 || op.bo_offset != 0 {
                    return Err(Error::invalid(format!("ops[{i}]: UNMAP with flags, handle or bo_offset")));
                }
                let page = dev.min_page();
                if !aligned(op.va, page) || !aligned(op.range, page) {
                    return Err(Error::invalid(format!("ops[{i}]: not aligned to {page:#x}")));
                }
                ops.push(BindOp::Unmap { range: op.va..end });
            }
        }
    }
    // The out-syncs are claimed before waiting and binding, so the call
    // cannot succeed without signalling them; they are undone if it fails.
    let done = Fence::new();
    let claim = Claim::install(&done, &out_objs)?;
    let mut result = Ok(());
    if !in_fences.is_empty() {
        let deadline = std::time::Instant::now() + Duration::from_nanos(dev.limits.default_job_timeout_ns);
        result = crate::fence::wait_many(&in_fences, true, Some(deadline))
            .map(|_| ())
            .map_err(|_| Error::TimedOut("VM_BIND in-syncs".into()));
    }
    match result.and_then(|()| ctx.bind(ops)) {
        Ok(()) => {
            done.signal(Ok(()));
            Ok(())
        }
        Err(e) => {
            claim.cancel();
            Err(e)
        }
    }
}

/// The syncobjs a call signals: resolved (ENOENT), each syncobj once by
/// identity whatever its handle (EINVAL), each point installable (EINVAL).
fn signal_targets(file: &File, syncs: &[sys::accel_sync], what: &str) -> Result<Vec<(Arc<Syncobj>, u64)>> {
    let mut out: Vec<(Arc<Syncobj>, u64)> = Vec::with_capacity(syncs.len());
    for (i, s) in syncs.iter().enumerate() {
        let obj = file.syncobj(s.handle)?;
        if out.iter().any(|(o, _)| Arc::ptr_eq(o, &obj)) {
            return Err(Error::invalid(format!("{what}[{i}]: syncobj listed twice")));
        }
        obj.check_install(s.point)?;
        out.push((obj, s.point));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_fits_the_inline_storage() {
        for d in ioctl::IOCTLS {
            assert!(d.arg.size <= MAX_ARG, "{}: {} bytes > {MAX_ARG}", d.name, d.arg.size);
            assert!(d.ptrs.len() <= MAX_PTRS, "{}: {} arrays > {MAX_PTRS}", d.name, d.ptrs.len());
        }
    }
}
