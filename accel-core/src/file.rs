//! One open of a device: its handle tables, quota and the typed operations
//! behind the ioctls. Nothing here reads user bytes: the dispatcher has
//! already turned them into validated values.
//!
//! Locking: `File::state` guards the handle tables and is held only for
//! table updates, never across a driver call. Closing a file (explicitly or by
//! dropping the last reference) releases everything it owns in dependency
//! order: contexts (their VM mappings, then page tables), then BO handles.

use crate::bo::Bo;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::fabric::verbs::{Cq, Events, Mr, Pd, Qp, QpCaps};
use crate::handle::HandleTable;
use crate::queue::Queue;
use crate::stats::Counters;
use crate::syncobj::Syncobj;
use crate::vm::{BindOp, Context};
use accel_uapi::flags::{BoFlags, MrAccess};
use accel_uapi::types::{EngineClass, Priority};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Per-file limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Bytes of BOs a file may have created and not closed (ENOMEM past it).
    pub max_bytes: u64,
    /// Handles of all kinds (ENOSPC past it).
    pub max_handles: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota { max_bytes: 16 << 30, max_handles: 1 << 20 }
    }
}

struct State {
    contexts: HandleTable<Arc<Context>>,
    bos: HandleTable<Arc<Bo>>,
    queues: HandleTable<Arc<Queue>>,
    syncobjs: HandleTable<Arc<Syncobj>>,
    pds: HandleTable<Arc<Pd>>,
    mrs: HandleTable<Arc<Mr>>,
    cqs: HandleTable<Arc<Cq>>,
    qps: HandleTable<Arc<Qp>>,
    /// BO identity -> handle, so importing a BO the file already has returns the same handle.
    bo_handles: HashMap<usize, u32>,
    /// Bytes charged to this file per BO handle it created.
    charged: HashMap<u32, u64>,
    bytes: u64,
}

impl State {
    fn handles(&self) -> usize {
        self.contexts.len()
            + self.bos.len()
            + self.queues.len()
            + self.syncobjs.len()
            + self.pds.len()
            + self.mrs.len()
            + self.cqs.len()
            + self.qps.len()
    }
}

/// One open of a device.
pub struct File {
    device: Arc<Device>,
    quota: Quota,
    closed: AtomicBool,
    state: Mutex<State>,
    /// Asynchronous fabric events of this open (GET_ASYNC_EVENT).
    events: Arc<Events>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File").field("device", &self.device.name()).finish_non_exhaustive()
    }
}

fn bo_key(bo: &Arc<Bo>) -> usize {
    Arc::as_ptr(bo) as usize
}

impl File {
    pub(crate) fn new(device: Arc<Device>, quota: Quota) -> Arc<File> {
        Counters::add(&device.counters.files, 1);
        Arc::new(File {
            device,
            quota,
            closed: AtomicBool::new(false),
            state: Mutex::new(State {
                contexts: HandleTable::new("context"),
                bos: HandleTable::new("bo"),
                queues: HandleTable::new("queue"),
                syncobjs: HandleTable::new("syncobj"),
                pds: HandleTable::new("PD"),
                mrs: HandleTable::new("MR"),
                cqs: HandleTable::new("CQ"),
                qps: HandleTable::new("QP"),
                bo_handles: HashMap::new(),
                charged: HashMap::new(),
                bytes: 0,
            }),
            events: Arc::default(),
        })
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The quota of this file.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Fails with EBADF once closed and ENODEV once the device is gone.
    pub(crate) fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.device.check_alive()
    }

    /// ENOSPC once the file holds its quota of handles (checked again at
    /// insertion; the early checks spare creating an object that cannot be kept).
    fn handle_room(&self, st: &State) -> Result<()> {
        if st.handles() >= self.quota.max_handles as usize {
            return Err(Error::NoSpace(format!("file handle quota of {} reached", self.quota.max_handles)));
        }
        Ok(())
    }

    /// Insert under the quota. On failure the object comes back with the
    /// error, so the caller can drop it (which may call the driver) after
    /// releasing the state lock.
    fn insert_handle<T>(
        &self,
        st: &mut State,
        table: impl FnOnce(&mut State) -> &mut HandleTable<T>,
        v: T,
    ) -> Result<u32, (Error, T)> {
        if let Err(e) = self.handle_room(st) {
            return Err((e, v));
        }
        let h = table(st).insert(v)?;
        Counters::add(&self.device.counters.handles, 1);
        Ok(h)
    }

    /// Remove handle `h` from a table; the object is returned (and so dropped,
    /// possibly calling the driver) after the state lock is released.
    fn take<T>(&self, h: u32, table: impl FnOnce(&mut State) -> &mut HandleTable<T>) -> Result<T> {
        self.check()?;
        let v = table(&mut self.state.lock()).remove(h)?;
        Counters::add(&self.device.counters.handles, -1);
        Ok(v)
    }

    /// Look up handle `h` in a table.
    fn lookup<T: Clone>(&self, h: u32, table: impl FnOnce(&State) -> &HandleTable<T>) -> Result<T> {
        self.check()?;
        table(&self.state.lock()).get(h).cloned()
    }

    /// Create a context.
    pub fn context_create(&self) -> Result<u32> {
        self.check()?;
        self.handle_room(&self.state.lock())?;
        let ctx = Context::create(self.device.clone())?;
        self.insert_object(ctx, |s| &mut s.contexts)
    }

    /// Destroy a context (its mappings go with it); EBUSY while it has queues.
    pub fn context_destroy(&self, h: u32) -> Result<()> {
        self.check()?;
        let ctx = {
            let mut st = self.state.lock();
            let c = st.contexts.get(h)?;
            if c.queue_count() > 0 {
                return Err(Error::Busy(format!("context {h} still has {} queues", c.queue_count())));
            }
            st.contexts.remove(h)?
        };
        Counters::add(&self.device.counters.handles, -1);
        drop(ctx);
        Ok(())
    }

    /// A context by handle.
    pub fn context(&self, h: u32) -> Result<Arc<Context>> {
        self.lookup(h, |s| &s.contexts)
    }

    /// A BO by handle.
    pub fn bo(&self, h: u32) -> Result<Arc<Bo>> {
        self.lookup(h, |s| &s.bos)
    }

    /// Create a BO; returns its handle.
    pub fn bo_create(&self, size: u64, region: u32, flags: BoFlags) -> Result<u32> {
        self.check()?;
        let dev = &self.device;
        let r = dev.region(region).ok_or_else(|| Error::invalid(format!("no memory region {region}")))?;
        if size == 0 {
            return Err(Error::invalid("BO size 0"));
        }
        if size > dev.limits.max_bo_size {
            return Err(Error::TooBig(format!("BO of {size} bytes (max {})", dev.limits.max_bo_size)));
        }
        if flags.contains(BoFlags::CPU_VISIBLE) && !r.cpu_visible {
            return Err(Error::invalid(format!("region {region} is not CPU-visible")));
        }
        let page = r.min_page();
        let size = size.checked_next_multiple_of(page).ok_or_else(|| Error::Overflow("BO size".into()))?;
        {
            let mut st = self.state.lock();
            self.handle_room(&st)?;
            if st.bytes.saturating_add(size) > self.quota.max_bytes {
                return Err(Error::NoMemory(format!(
                    "file memory quota: {} + {size} bytes > {}",
                    st.bytes, self.quota.max_bytes
                )));
            }
            st.bytes += size; // reserved; returned on failure below
        }
        let alloc = match dev.driver.alloc(region, size) {
            Ok(a) => a,
            Err(e) => {
                let mut st = self.state.lock();
                st.bytes = st.bytes.saturating_sub(size); // a close may have reset it meanwhile
                return Err(e.into());
            }
        };
        let bo = Bo::new(dev.clone(), alloc, flags | BoFlags::ZEROED);
        let mut st = self.state.lock();
        if let Err(e) = self.check() {
            // Closed while allocating: nothing may enter the drained tables.
            drop(st);
            drop(bo);
            return Err(e);
        }
        let key = bo_key(&bo);
        match self.insert_handle(&mut st, |s| &mut s.bos, bo) {
            Ok(h) => {
                st.bo_handles.insert(key, h);
                st.charged.insert(h, size);
                Ok(h)
            }
            Err((e, bo)) => {
                st.bytes = st.bytes.saturating_sub(size);
                drop(st);
                drop(bo); // frees through the driver, outside the lock
                Err(e)
            }
        }
    }

    /// Close a BO handle.
    pub fn bo_close(&self, h: u32) -> Result<()> {
        self.check()?;
        let mut st = self.state.lock();
        let bo = st.bos.remove(h)?;
        st.bo_handles.remove(&bo_key(&bo));
        if let Some(bytes) = st.charged.remove(&h) {
            st.bytes -= bytes;
        }
        drop(st);
        Counters::add(&self.device.counters.handles, -1);
        drop(bo);
        Ok(())
    }

    /// The mmap offset of a CPU-visible BO (stable for the BO's life).
    pub fn bo_mmap_offset(&self, h: u32) -> Result<u64> {
        let bo = self.bo(h)?;
        if !bo.flags.contains(BoFlags::CPU_VISIBLE) || bo.host().is_none() {
            return Err(Error::invalid(format!("BO {h} is not CPU-visible")));
        }
        let mut off = bo.mmap_offset.lock();
        if let Some(o) = *off {
            return Ok(o);
        }
        let o = self.device.alloc_mmap_offset(bo.size)?;
        self.device.mmap_bos.lock().insert(o, Arc::downgrade(&bo));
        *off = Some(o);
        Ok(o)
    }

    /// The BO behind an mmap offset, if this file holds a handle to it.
    pub fn bo_by_mmap_offset(&self, offset: u64) -> Result<Arc<Bo>> {
        self.check()?;
        let bo = self
            .device
            .mmap_bos
            .lock()
            .get(&offset)
            .and_then(|w| w.upgrade())
            .ok_or_else(|| Error::invalid(format!("no BO at mmap offset {offset:#x}")))?;
        if !self.state.lock().bo_handles.contains_key(&bo_key(&bo)) {
            return Err(Error::NotPermitted(format!("mmap offset {offset:#x} names a BO this file has no handle to")));
        }
        Ok(bo)
    }

    /// Export a BO: a new descriptor (a dup of its memfd) the caller owns.
    pub fn bo_export(&self, h: u32) -> Result<OwnedFd> {
        let bo = self.bo(h)?;
        let host = bo.host().ok_or_else(|| Error::NotSupported("export of memory without a host view".into()))?;
        let fd = dup_cloexec(host.fd())?;
        let key = fd_key(fd.as_raw_fd())?;
        let mut ek = bo.export_key.lock();
        if ek.is_none() {
            self.device.exports.lock().insert(key, Arc::downgrade(&bo));
            Counters::add(&self.device.counters.exports, 1);
            *ek = Some(key);
        }
        Ok(fd)
    }

    /// Import an exported BO; the same handle if this file already has it.
    pub fn bo_import(&self, fd: RawFd) -> Result<(u32, u64)> {
        self.check()?;
        let key = fd_key(fd)?;
        let bo = self.device.exports.lock().get(&key).and_then(|w| w.upgrade()).ok_or(Error::BadFd(fd))?;
        let mut st = self.state.lock();
        if let Err(e) = self.check() {
            drop(st);
            drop(bo);
            return Err(e);
        }
        if let Some(h) = st.bo_handles.get(&bo_key(&bo)) {
            return Ok((*h, bo.size));
        }
        let size = bo.size;
        let key = bo_key(&bo);
        match self.insert_handle(&mut st, |s| &mut s.bos, bo) {
            Ok(h) => {
                st.bo_handles.insert(key, h);
                Ok((h, size))
            }
            Err((e, bo)) => {
                drop(st);
                drop(bo);
                Err(e)
            }
        }
    }

    /// Apply VM_BIND ops to a context.
    pub fn vm_bind(&self, ctx: u32, ops: Vec<BindOp>) -> Result<()> {
        let ctx = self.context(ctx)?;
        ctx.bind(ops)
    }

    fn insert_object<T>(&self, v: T, table: impl FnOnce(&mut State) -> &mut HandleTable<T>) -> Result<u32> {
        let mut st = self.state.lock();
        if let Err(e) = self.check() {
            drop(st);
            drop(v);
            return Err(e);
        }
        let r = self.insert_handle(&mut st, table, v);
        drop(st);
        r.map_err(|(e, v)| {
            drop(v);
            e
        })
    }

    /// Create a queue on context `ctx`.
    pub fn queue_create(
        &self,
        ctx: u32,
        class: EngineClass,
        priority: Priority,
        depth: usize,
        timeout: Duration,
    ) -> Result<u32> {
        let ctx_handle = ctx;
        let ctx = self.context(ctx_handle)?;
        self.handle_room(&self.state.lock())?;
        let q = Queue::create(self.device.clone(), ctx.clone(), class, priority, depth, timeout)?;
        {
            // CONTEXT_DESTROY may have run meanwhile: the queue may only be born
            // on a context that still has its handle.
            let st = self.state.lock();
            if st.contexts.get(ctx_handle).ok().is_none_or(|c| !Arc::ptr_eq(c, &ctx)) {
                drop(st);
                q.detach();
                return Err(Error::NoHandle { kind: "context", handle: ctx_handle });
            }
        }
        match self.insert_object(q.clone(), |s| &mut s.queues) {
            Ok(h) => Ok(h),
            Err(e) => {
                q.detach();
                Err(e)
            }
        }
    }

    /// Destroy a queue handle; jobs in flight still complete, but the queue
    /// no longer counts against its context.
    pub fn queue_destroy(&self, h: u32) -> Result<()> {
        let q = self.take(h, |s| &mut s.queues)?;
        q.detach();
        Ok(())
    }

    /// A queue by handle.
    pub fn queue(&self, h: u32) -> Result<Arc<Queue>> {
        self.lookup(h, |s| &s.queues)
    }

    /// Create a syncobj.
    pub fn syncobj_create(&self, timeline: bool, signaled: bool) -> Result<u32> {
        self.check()?;
        let s = Syncobj::on_device(self.device.clone(), timeline, signaled);
        self.insert_object(s, |st| &mut st.syncobjs)
    }

    /// Destroy a syncobj handle.
    pub fn syncobj_destroy(&self, h: u32) -> Result<()> {
        self.take(h, |s| &mut s.syncobjs).map(drop)
    }

    /// A syncobj by handle.
    pub fn syncobj(&self, h: u32) -> Result<Arc<Syncobj>> {
        self.lookup(h, |s| &s.syncobjs)
    }

    /// Export a syncobj: a new descriptor naming it.
    pub fn syncobj_export(&self, h: u32) -> Result<OwnedFd> {
        let s = self.syncobj(h)?;
        let mut ex = s.export.lock();
        if ex.is_none() {
            let token = nix::sys::memfd::memfd_create("accel-syncobj", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(|e| Error::NoSpace(format!("memfd_create: {e}")))?;
            let key = fd_key(token.as_raw_fd())?;
            self.device.syncobj_exports.lock().insert(key, Arc::downgrade(&s));
            *ex = Some((token, key));
        }
        let Some((token, _)) = ex.as_ref() else { return Err(Error::invalid("export token missing")) };
        dup_cloexec(token.as_fd())
    }

    /// Import an exported syncobj as a new handle of this file.
    pub fn syncobj_import(&self, fd: RawFd) -> Result<u32> {
        self.check()?;
        let key = fd_key(fd)?;
        let s = self.device.syncobj_exports.lock().get(&key).and_then(|w| w.upgrade()).ok_or(Error::BadFd(fd))?;
        self.insert_object(s, |st| &mut st.syncobjs)
    }

    /// The oldest pending async event.
    pub fn async_event(&self) -> Result<(accel_uapi::types::EventType, u32)> {
        self.check()?;
        self.events.take().ok_or_else(|| Error::Again("no async event pending".into()))
    }

    /// Allocate a PD.
    pub fn pd_alloc(&self) -> Result<u32> {
        self.check()?;
        self.handle_room(&self.state.lock())?;
        let pd = Pd::new(&self.device)?;
        self.insert_object(pd, |s| &mut s.pds)
    }

    /// Free a PD; EBUSY while MRs or QPs use it.
    pub fn pd_free(&self, h: u32) -> Result<()> {
        self.check()?;
        let pd = {
            let mut st = self.state.lock();
            let users = st.pds.get(h)?.users();
            if users > 0 {
                return Err(Error::Busy(format!("PD {h} still has {users} MRs/QPs")));
            }
            st.pds.remove(h)?
        };
        Counters::add(&self.device.counters.handles, -1);
        drop(pd);
        Ok(())
    }

    /// Register an MR; returns (handle, lkey, rkey).
    pub fn mr_reg(
        &self,
        pd: u32,
        bo: u32,
        bo_offset: u64,
        length: u64,
        iova: u64,
        access: MrAccess,
    ) -> Result<(u32, u32, u32)> {
        let pd = self.lookup(pd, |s| &s.pds)?;
        let bo = self.bo(bo)?;
        self.handle_room(&self.state.lock())?;
        let mr = Mr::register(&self.device, pd, bo, bo_offset, length, iova, access)?;
        let (l, r) = (mr.lkey(), mr.rkey());
        Ok((self.insert_object(mr, |s| &mut s.mrs)?, l, r))
    }

    /// Deregister an MR.
    pub fn mr_dereg(&self, h: u32) -> Result<()> {
        self.take(h, |s| &mut s.mrs).map(drop)
    }

    /// Create a CQ of at least `cqe` entries; returns (handle, depth).
    pub fn cq_create(&self, cqe: u32) -> Result<(u32, u32)> {
        self.check()?;
        self.handle_room(&self.state.lock())?;
        let cq = Cq::new(&self.device, cqe, self.events.clone())?;
        let depth = cq.depth();
        let h = self.insert_object(cq.clone(), |s| &mut s.cqs)?;
        cq.set_handle(h);
        Ok((h, depth))
    }

    /// Destroy a CQ; EBUSY while a QP uses it.
    pub fn cq_destroy(&self, h: u32) -> Result<()> {
        self.check()?;
        let cq = {
            let mut st = self.state.lock();
            let users = st.cqs.get(h)?.users();
            if users > 0 {
                return Err(Error::Busy(format!("CQ {h} still used by {users} QPs")));
            }
            st.cqs.remove(h)?
        };
        Counters::add(&self.device.counters.handles, -1);
        drop(cq);
        Ok(())
    }

    /// A CQ by handle.
    pub fn cq(&self, h: u32) -> Result<Arc<Cq>> {
        self.lookup(h, |s| &s.cqs)
    }

    /// Create a QP in RESET; returns (handle, QP number).
    pub fn qp_create(&self, pd: u32, send_cq: u32, recv_cq: u32, caps: QpCaps, port: u32) -> Result<(u32, u32)> {
        let pd = self.lookup(pd, |s| &s.pds)?;
        let scq = self.cq(send_cq)?;
        let rcq = self.cq(recv_cq)?;
        self.handle_room(&self.state.lock())?;
        let qp = Qp::create(&self.device, pd, scq, rcq, caps, port, self.events.clone())?;
        let qpn = qp.qpn();
        let h = self.insert_object(qp.clone(), |s| &mut s.qps)?;
        qp.set_handle(h);
        Ok((h, qpn))
    }

    /// Destroy a QP; its outstanding WRs are discarded.
    pub fn qp_destroy(&self, h: u32) -> Result<()> {
        self.take(h, |s| &mut s.qps).map(drop)
    }

    /// A QP by handle.
    pub fn qp(&self, h: u32) -> Result<Arc<Qp>> {
        self.lookup(h, |s| &s.qps)
    }

    /// Close the file: release everything it owns. Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (queues, contexts, bos, syncobjs, verbs) = {
            let mut st = self.state.lock();
            st.bo_handles.clear();
            st.charged.clear();
            st.bytes = 0;
            let verbs = (st.qps.drain(), st.mrs.drain(), st.cqs.drain(), st.pds.drain());
            (st.queues.drain(), st.contexts.drain(), st.bos.drain(), st.syncobjs.drain(), verbs)
        };
        let n = (queues.len()
            + contexts.len()
            + bos.len()
            + syncobjs.len()
            + verbs.0.len()
            + verbs.1.len()
            + verbs.2.len()
            + verbs.3.len()) as i64;
        // Verbs first: QPs leave their ports (no more completions), then MRs,
        // CQs and PDs.
        drop(verbs);
        // Dependency order: queues (in-flight jobs keep theirs alive until they
        // complete), contexts (their mappings hold BO references), BOs, syncobjs.
        for (_, q) in &queues {
            q.detach();
        }
        drop(queues);
        drop(contexts);
        drop(bos);
        drop(syncobjs);
        Counters::add(&self.device.counters.handles, -n);
        Counters::add(&self.device.counters.files, -1);
    }

    /// Whether the file was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        self.close();
    }
}

/// A new close-on-exec descriptor for what `fd` names (an export handed to the caller).
fn dup_cloexec(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned().map_err(|e| Error::NoSpace(format!("dup: {e}")))
}

/// (st_dev, st_ino) of a descriptor; EBADF if it is not one.
fn fd_key(fd: RawFd) -> Result<(u64, u64)> {
    if fd < 0 {
        return Err(Error::BadFd(fd));
    }
    let mut st = std::mem::MaybeUninit::<nix::libc::stat>::uninit();
    // SAFETY: fstat writes a struct stat into st on success and only reads fd;
    // an fd that is not open yields EBADF without side effects.
    let rc = unsafe { nix::libc::fstat(fd, st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Error::BadFd(fd));
    }
    // SAFETY: fstat returned 0, so it initialised st.
    let st = unsafe { st.assume_init() };
    Ok((st.st_dev, st.st_ino))
}
