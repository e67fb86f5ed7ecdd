//! Queues and the scheduler.
//!
//! A queue belongs to one context and one engine class. SUBMIT creates a job
//! with an out-fence; the job waits for its in-fences, then runs in FIFO
//! order on the driver's hardware queue, and its completion signals the
//! fence with a status: 0, EFAULT (page fault, recorded in the context),
//! ETIMEDOUT (its own WAIT_VALUE timeout, or a hang), EIO (device error),
//! ECANCELED (a dependency failed with that errno is propagated instead).
//!
//! Hangs: a per-device watchdog thread checks the job at the head of every
//! queue; one running longer than the queue's timeout gets ETIMEDOUT, its
//! context is banned (later submits fail with EIO), and the driver resets the
//! engine; jobs behind it are re-run by the driver and complete normally.
//!
//! Locks: `Queue::state` is never held across a driver call or a wait on
//! anything but its own condvar (the ACCEL_SUBMIT_BLOCK wait for room).

use crate::device::Device;
use crate::driver::{HwQueueId, Job, JobChunk, JobFault, JobSink};
use crate::error::{Error, Result};
use crate::fence::{Fence, Status};
use crate::stats::Counters;
use crate::vm::Context;
use accel_uapi::Errno;
use accel_uapi::types::{EngineClass, Priority};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A slot in a queue, taken before a SUBMIT installs its fences so that a
/// blocking SUBMIT never waits for room while holding them. Dropped unused,
/// it is given back.
pub(crate) struct Reservation<'a> {
    queue: &'a Queue,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.queue.unreserve();
        }
    }
}

struct Pending {
    seqno: u64,
    deps: Arc<AtomicUsize>,
    dep_error: Arc<Mutex<Option<Errno>>>,
    chunks: Vec<JobChunk>,
    fence: Arc<Fence>,
}

#[derive(Default)]
struct State {
    next_seqno: u64,
    /// Submitted and not yet completed.
    inflight: usize,
    /// Waiting for dependencies or for the jobs ahead of them.
    waiting: VecDeque<Pending>,
    /// Handed to the driver, in order, with the status forced on jobs that
    /// did not need to run (a failed dependency, no chunks).
    running: VecDeque<(u64, Arc<Fence>, Option<Status>)>,
    /// When the head of `running` became the head.
    head_since: Option<Instant>,
    pumping: bool,
    repump: bool,
    /// A strong self-reference while jobs are in flight, so completions land
    /// even after the last handle is gone.
    keepalive: Option<Arc<Queue>>,
}

/// One queue.
pub struct Queue {
    device: Arc<Device>,
    ctx: Arc<Context>,
    hw: HwQueueId,
    /// Engine class.
    pub class: EngineClass,
    /// Priority.
    pub priority: Priority,
    /// Maximum jobs in flight.
    pub depth: usize,
    /// Job timeout.
    pub timeout: Duration,
    state: Mutex<State>,
    room: Condvar,
    me: Weak<Queue>,
    detached: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("hw", &self.hw).field("class", &self.class).finish_non_exhaustive()
    }
}

/// The driver's completion path into a queue (set once the queue exists).
struct Sink(Arc<OnceLock<Weak<Queue>>>);

impl JobSink for Sink {
    fn job_done(&self, seqno: u64, result: std::result::Result<(), JobFault>) {
        if let Some(q) = self.0.get().and_then(Weak::upgrade) {
            q.complete(seqno, result);
        }
    }
}

impl Queue {
    /// Create a queue on `ctx`.
    pub(crate) fn create(
        device: Arc<Device>,
        ctx: Arc<Context>,
        class: EngineClass,
        priority: Priority,
        depth: usize,
        timeout: Duration,
    ) -> Result<Arc<Queue>> {
        ctx.acquire_queue(device.limits.max_queues_per_context)?;
        let slot = Arc::new(OnceLock::new());
        let hw = match device.driver.queue_create(ctx.vm_id(), class, priority, Arc::new(Sink(slot.clone()))) {
            Ok(h) => h,
            Err(e) => {
                ctx.release_queue();
                return Err(e.into());
            }
        };
        let q = Arc::new_cyclic(|me| Queue {
            device: device.clone(),
            ctx,
            hw,
            class,
            priority,
            depth,
            timeout,
            state: Mutex::new(State { next_seqno: 1, ..State::default() }),
            room: Condvar::new(),
            me: me.clone(),
            detached: Default::default(),
        });
        let _ = slot.set(Arc::downgrade(&q));
        Counters::add(&device.counters.queues, 1);
        device.watch(&q);
        Ok(q)
    }

    /// The context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Jobs submitted and not yet completed.
    pub fn inflight(&self) -> usize {
        self.state.lock().inflight
    }

    /// Queue a job; returns its sequence number. The caller has validated
    /// everything and installed `fence` into the signal syncobjs.
    pub(crate) fn reserve(&self, block: bool) -> Result<Reservation<'_>> {
        let mut st = self.state.lock();
        loop {
            if let Some(e) = self.ctx.banned() {
                return Err(Error::Device(format!("context banned after {e:?}")));
            }
            if st.inflight < self.depth {
                break;
            }
            if !block {
                return Err(Error::Again(format!("queue full ({} jobs in flight)", self.depth)));
            }
            self.room.wait(&mut st);
        }
        st.inflight += 1;
        if st.inflight == 1 {
            st.keepalive = self.me.upgrade();
        }
        Ok(Reservation { queue: self, used: false })
    }

    /// Give back a reserved slot that was not used.
    fn unreserve(&self) {
        let keep = {
            let mut st = self.state.lock();
            st.inflight -= 1;
            if st.inflight == 0 { st.keepalive.take() } else { None }
        };
        self.room.notify_all();
        drop(keep);
    }

    /// Queue a job in a reserved slot; returns its sequence number. The caller
    /// has validated everything and installed `fence` into the signal syncobjs.
    pub(crate) fn submit(
        &self,
        mut slot: Reservation<'_>,
        chunks: Vec<JobChunk>,
        waits: Vec<Arc<Fence>>,
        fence: Arc<Fence>,
    ) -> u64 {
        slot.used = true;
        let mut st = self.state.lock();
        let seqno = st.next_seqno;
        st.next_seqno = if seqno >= u64::MAX - 1 { 1 } else { seqno + 1 };
        let unresolved: Vec<Arc<Fence>> = waits.into_iter().filter(|f| f.status() != Some(Ok(()))).collect();
        let deps = Arc::new(AtomicUsize::new(unresolved.len() + 1));
        let dep_error = Arc::new(Mutex::new(None));
        st.waiting.push_back(Pending { seqno, deps: deps.clone(), dep_error: dep_error.clone(), chunks, fence });
        drop(st);
        Counters::add(&self.device.counters.jobs, 1);
        for f in unresolved {
            let (deps, dep_error, me) = (deps.clone(), dep_error.clone(), self.me.clone());
            f.on_signal(move |s| {
                if let Err(e) = s {
                    dep_error.lock().get_or_insert(e);
                }
                if deps.fetch_sub(1, Ordering::AcqRel) == 1
                    && let Some(q) = me.upgrade()
                {
                    q.pump();
                }
            });
        }
        if deps.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pump();
        }
        seqno
    }

    /// Hand every ready job at the head of the queue to the driver, in order.
    fn pump(&self) {
        loop {
            let mut run = Vec::new();
            let mut immediate: Vec<(Arc<Fence>, Status)> = Vec::new();
            {
                let mut st = self.state.lock();
                if st.pumping {
                    st.repump = true;
                    return;
                }
                st.pumping = true;
                while st.waiting.front().is_some_and(|p| p.deps.load(Ordering::Acquire) == 0) {
                    let Some(p) = st.waiting.pop_front() else { break };
                    let dep_err = *p.dep_error.lock();
                    // A job whose dependency failed does not run (it takes that
                    // errno); a job without chunks has nothing to run. On an
                    // idle queue both complete at once; behind running jobs they
                    // go to the engine empty, so completion stays in FIFO order.
                    let forced = match dep_err {
                        Some(e) => Some(Err(e)),
                        None if p.chunks.is_empty() => Some(Ok(())),
                        None => None,
                    };
                    match forced {
                        Some(status) if st.running.is_empty() => immediate.push((p.fence, status)),
                        _ => {
                            if st.running.is_empty() {
                                st.head_since = Some(Instant::now());
                            }
                            let chunks = if forced.is_some() { Vec::new() } else { p.chunks };
                            st.running.push_back((p.seqno, p.fence, forced));
                            run.push(Job { seqno: p.seqno, chunks });
                        }
                    }
                }
            }
            for (fence, status) in immediate {
                self.retire(&fence, status);
            }
            for job in run {
                let seqno = job.seqno;
                if let Err(e) = self.device.driver.run_job(self.hw, job) {
                    tracing::error!("driver refused job {seqno}: {e}");
                    self.complete(seqno, Err(JobFault::Device(e.to_string())));
                }
            }
            let mut st = self.state.lock();
            st.pumping = false;
            if !std::mem::take(&mut st.repump) {
                return;
            }
        }
    }

    /// The driver finished job `seqno`.
    fn complete(&self, seqno: u64, result: std::result::Result<(), JobFault>) {
        let (fence, forced) = {
            let mut st = self.state.lock();
            let Some(pos) = st.running.iter().position(|(s, _, _)| *s == seqno) else {
                return; // already completed by the watchdog
            };
            let Some((_, f, forced)) = st.running.remove(pos) else { return };
            if pos == 0 {
                st.head_since = (!st.running.is_empty()).then(Instant::now);
            }
            (f, forced)
        };
        if let Some(status) = forced {
            self.retire(&fence, status);
            return;
        }
        let status = match result {
            Ok(()) => Ok(()),
            Err(JobFault::PageFault { addr, access }) => {
                self.ctx.record_fault(addr, access, seqno);
                Err(Errno::EFAULT)
            }
            Err(JobFault::Timeout) => Err(Errno::ETIMEDOUT),
            Err(JobFault::Device(msg)) => {
                tracing::warn!(seqno, "job failed on the device: {msg}");
                Err(Errno::EIO)
            }
            Err(JobFault::Cancelled) => Err(Errno::ECANCELED),
        };
        self.retire(&fence, status);
    }

    fn retire(&self, fence: &Arc<Fence>, status: Status) {
        // Room first, then the fence: whoever the fence wakes sees the job gone.
        Counters::add(&self.device.counters.jobs, -1);
        let keep = {
            let mut st = self.state.lock();
            st.inflight -= 1;
            if st.inflight == 0 { st.keepalive.take() } else { None }
        };
        self.room.notify_all();
        fence.signal(status);
        drop(keep); // may drop the queue: outside the lock
    }

    /// The queue's handle is gone (QUEUE_DESTROY or file close): it no longer
    /// counts against its context, although jobs in flight still complete.
    pub(crate) fn detach(&self) {
        if !self.detached.swap(true, Ordering::AcqRel) {
            self.ctx.release_queue();
        }
    }

    /// Watchdog check: time out the head job if it ran too long.
    pub(crate) fn check_hang(&self, now: Instant) {
        let hung = {
            let mut st = self.state.lock();
            match st.head_since {
                Some(t) if now.duration_since(t) > self.timeout => {
                    let head = st.running.pop_front().map(|(seqno, f, _)| (seqno, f));
                    st.head_since = (!st.running.is_empty()).then_some(now);
                    head
                }
                _ => None,
            }
        };
        let Some((seqno, fence)) = hung else { return };
        tracing::warn!(seqno, timeout = ?self.timeout, "job timed out: banning its context and resetting the engine");
        self.ctx.ban(Errno::ETIMEDOUT);
        self.retire(&fence, Err(Errno::ETIMEDOUT));
        if let Err(e) = self.device.driver.reset_queue(self.hw, seqno) {
            tracing::error!("engine reset failed: {e}");
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.device.driver.queue_destroy(self.hw);
        self.detach();
        Counters::add(&self.device.counters.queues, -1);
    }
}

/// Start (once per device) the watchdog thread that times out hung jobs.
pub(crate) fn spawn_watchdog(device: Weak<Device>) {
    let spawned = std::thread::Builder::new().name("accel-watchdog".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let Some(dev) = device.upgrade() else { return };
            let now = Instant::now();
            for q in dev.watched_queues() {
                q.check_hang(now);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the watchdog thread: {e}");
    }
}
