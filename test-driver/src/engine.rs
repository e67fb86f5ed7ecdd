//! Hardware queues of the mock: one worker thread per queue runs its jobs in
//! FIFO order and reports each through the queue's sink exactly once.
//!
//! Locks: the queue table, each queue's state and the page tables are never
//! held together, and none is held while a sink is called (a sink may call
//! back into the driver, even [`Engine::destroy`] from the worker's own thread).

use crate::exec::{Abort, Control, Exec, PageTables};
use accel_core::driver::{Job, JobChunk, JobFault, JobSink};
use accel_core::{DriverError, IntervalMap};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One hardware queue.
struct Queue {
    /// The context whose page tables its jobs use.
    vm: u64,
    state: Mutex<QueueState>,
    /// Signalled on a new job, a reset and destruction.
    cv: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Jobs not started yet, oldest first.
    jobs: VecDeque<Job>,
    /// A job is executing.
    running: bool,
    /// Sequence number of the executing job.
    current: Option<u64>,
    /// A reset aborted the executing job.
    abort: bool,
    /// Destroyed: drop everything (unreported) and exit.
    dead: bool,
}

impl Control for Queue {
    fn stopped(&self) -> bool {
        let s = self.state.lock();
        s.abort || s.dead
    }

    fn pause(&self, d: Duration) -> bool {
        let mut s = self.state.lock();
        if !(s.abort || s.dead) {
            self.cv.wait_for(&mut s, d);
        }
        s.abort || s.dead
    }
}

impl Queue {
    /// Block until the executing job is aborted (a hung engine).
    fn hang(&self) {
        let mut s = self.state.lock();
        while !(s.abort || s.dead) {
            self.cv.wait(&mut s);
        }
    }

    /// Sleep `d`, waking early on a reset or destruction.
    fn delay(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut s = self.state.lock();
        while !(s.abort || s.dead) && Instant::now() < deadline {
            self.cv.wait_until(&mut s, deadline);
        }
    }
}

/// Fault injection and timing of job execution.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JobFaults {
    /// The Nth job (1-based, device-wide, in execution order) hangs until reset.
    pub(crate) hang_job_at: Option<u64>,
    /// The Nth job fails with a device error.
    pub(crate) fail_job_at: Option<u64>,
    /// Sleep before reporting each job.
    pub(crate) completion_delay: Duration,
}

/// Everything the workers share with the driver.
pub(crate) struct Engine {
    /// Page tables of every context.
    pub(crate) vms: PageTables,
    faults: JobFaults,
    queues: Mutex<HashMap<u64, Arc<Queue>>>,
    next_queue: AtomicU64,
    jobs_started: AtomicU64,
    /// Jobs reported (any result).
    pub(crate) jobs_run: AtomicU64,
    /// Successful reset_queue calls.
    pub(crate) resets: AtomicU64,
    /// Queues created and not destroyed.
    pub(crate) live_queues: AtomicI64,
    /// Operations on queues that do not exist.
    pub(crate) bad_queue_ops: AtomicI64,
}

impl Engine {
    pub(crate) fn new(faults: JobFaults) -> Engine {
        Engine {
            vms: Mutex::new(HashMap::<u64, IntervalMap<crate::Pte>>::new()),
            faults,
            queues: Mutex::new(HashMap::new()),
            next_queue: AtomicU64::new(1),
            jobs_started: AtomicU64::new(0),
            jobs_run: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            live_queues: AtomicI64::new(0),
            bad_queue_ops: AtomicI64::new(0),
        }
    }

    fn queue(&self, id: u64) -> Result<Arc<Queue>, DriverError> {
        self.queues.lock().get(&id).cloned().ok_or_else(|| {
            self.bad_queue_ops.fetch_add(1, Ordering::Relaxed);
            DriverError::Invalid(format!("no queue {id}"))
        })
    }

    /// Create a queue for `vm` and start its worker.
    pub(crate) fn create(self: &Arc<Self>, vm: u64, sink: Arc<dyn JobSink>) -> Result<u64, DriverError> {
        if !self.vms.lock().contains_key(&vm) {
            return Err(DriverError::Invalid(format!("no VM {vm}")));
        }
        let id = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let q = Arc::new(Queue { vm, state: Mutex::new(QueueState::default()), cv: Condvar::new() });
        let (engine, wq) = (self.clone(), q.clone());
        std::thread::Builder::new()
            .name(format!("accel-mock-q{id}"))
            .spawn(move || engine.worker(&wq, sink))
            .map_err(|_| DriverError::OutOfMemory)?;
        self.queues.lock().insert(id, q);
        self.live_queues.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Mark a queue dead and wake its worker (never waits for it).
    pub(crate) fn destroy(&self, id: u64) {
        let Some(q) = self.queues.lock().remove(&id) else {
            self.bad_queue_ops.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.live_queues.fetch_sub(1, Ordering::Relaxed);
        Self::kill(&q);
    }

    fn kill(q: &Queue) {
        let dropped = {
            let mut s = q.state.lock();
            s.dead = true;
            std::mem::take(&mut s.jobs)
        };
        q.cv.notify_all();
        drop(dropped);
    }

    /// Queue a job.
    pub(crate) fn submit(&self, id: u64, job: Job) -> Result<(), DriverError> {
        let q = self.queue(id)?;
        {
            let mut s = q.state.lock();
            if s.dead {
                return Err(DriverError::Invalid(format!("queue {id} is destroyed")));
            }
            s.jobs.push_back(job);
        }
        q.cv.notify_all();
        Ok(())
    }

    /// Abort job `hung` if it is the one executing (it reports Cancelled);
    /// queued jobs stay. A job that already finished is not touched, so a
    /// reset racing with a completion never cancels the next, innocent job.
    pub(crate) fn reset(&self, id: u64, hung: u64) -> Result<(), DriverError> {
        let q = self.queue(id)?;
        {
            let mut s = q.state.lock();
            if s.running && s.current == Some(hung) {
                s.abort = true;
            }
        }
        q.cv.notify_all();
        self.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stop every worker (the driver is going away).
    pub(crate) fn shutdown(&self) {
        let queues: Vec<_> = self.queues.lock().drain().map(|(_, q)| q).collect();
        for q in queues {
            Self::kill(&q);
        }
    }

    fn worker(&self, q: &Queue, sink: Arc<dyn JobSink>) {
        loop {
            let job = {
                let mut s = q.state.lock();
                loop {
                    if s.dead {
                        let dropped = std::mem::take(&mut s.jobs);
                        drop(s);
                        drop(dropped);
                        return;
                    }
                    if let Some(j) = s.jobs.pop_front() {
                        s.running = true;
                        s.current = Some(j.seqno);
                        s.abort = false;
                        break j;
                    }
                    q.cv.wait(&mut s);
                }
            };
            let n = self.jobs_started.fetch_add(1, Ordering::Relaxed) + 1;
            let result = self.execute(q, n, &job);
            if !self.faults.completion_delay.is_zero() {
                q.delay(self.faults.completion_delay);
            }
            let (aborted, dead) = {
                let mut s = q.state.lock();
                s.running = false;
                s.current = None;
                (std::mem::take(&mut s.abort), s.dead)
            };
            if dead {
                continue; // dropped unreported; the loop exits
            }
            let outcome = match result {
                _ if aborted => Err(JobFault::Cancelled),
                Ok(()) => Ok(()),
                Err(Abort::Fault(f)) => Err(f),
                Err(Abort::Stopped) => Err(JobFault::Cancelled),
            };
            self.jobs_run.fetch_add(1, Ordering::Relaxed);
            sink.job_done(job.seqno, outcome);
        }
    }

    /// Run job number `n` (device-wide) on `q`.
    fn execute(&self, q: &Queue, n: u64, job: &Job) -> Result<(), Abort> {
        if self.faults.hang_job_at == Some(n) {
            q.hang();
            return Err(Abort::Stopped);
        }
        if self.faults.fail_job_at == Some(n) {
            return Err(Abort::Fault(JobFault::Device("injected failure".into())));
        }
        let exec = Exec { vms: &self.vms, vm: q.vm, ctl: q };
        for chunk in &job.chunks {
            match chunk {
                JobChunk::Portable(cmds) => exec.run(cmds)?,
                JobChunk::Native(_) => {
                    return Err(Abort::Fault(JobFault::Device("native command buffers are not supported".into())));
                }
            }
        }
        Ok(())
    }
}
