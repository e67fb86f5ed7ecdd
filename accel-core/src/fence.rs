//! Fences: one-shot completion objects carrying a status (0 or an errno).
//!
//! A fence is signalled exactly once. Callbacks registered with
//! [`Fence::on_signal`] run after the fence's lock is released, so they may
//! take other locks or signal other fences. [`wait_many`] waits for any or all
//! of several fences until an absolute deadline.

use accel_uapi::Errno;
use parking_lot::{Condvar, Mutex};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// A fence's outcome: `Ok` or the errno the work failed with.
pub type Status = Result<(), Errno>;

type Callback = Box<dyn FnOnce(Status) + Send>;

#[derive(Default)]
struct Inner {
    status: Option<Status>,
    callbacks: Vec<Callback>,
    /// Threads blocked in [`wait_many`]; dead entries are pruned on insert.
    wakers: Vec<Weak<Waker>>,
}

/// A one-shot completion with an error status.
#[derive(Default)]
pub struct Fence {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("status", &self.status()).finish()
    }
}

impl Fence {
    /// An unsignalled fence.
    pub fn new() -> Arc<Fence> {
        Arc::new(Fence::default())
    }

    /// A fence already signalled with `status`.
    pub fn signaled(status: Status) -> Arc<Fence> {
        let f = Fence::default();
        f.inner.lock().status = Some(status);
        Arc::new(f)
    }

    /// Signal; returns false (and changes nothing) if it already was.
    pub fn signal(&self, status: Status) -> bool {
        let (callbacks, wakers) = {
            let mut g = self.inner.lock();
            if g.status.is_some() {
                return false;
            }
            g.status = Some(status);
            (std::mem::take(&mut g.callbacks), std::mem::take(&mut g.wakers))
        };
        self.cond.notify_all();
        for w in wakers.iter().filter_map(Weak::upgrade) {
            w.wake();
        }
        for cb in callbacks {
            cb(status);
        }
        true
    }

    /// A fence that signals once every one of `fences` has, with the first
    /// error among them (or `initial`, if set). It lives as long as anyone
    /// holds it or any of `fences` can still signal it.
    pub fn join(fences: Vec<Arc<Fence>>, initial: Option<Errno>) -> Arc<Fence> {
        let out = Fence::new();
        if fences.is_empty() {
            out.signal(initial.map_or(Ok(()), Err));
            return out;
        }
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(fences.len()));
        let err = Arc::new(Mutex::new(initial));
        for f in fences {
            let (left, err, out) = (left.clone(), err.clone(), out.clone());
            f.on_signal(move |s| {
                if let Err(e) = s {
                    err.lock().get_or_insert(e);
                }
                if left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    let e = *err.lock();
                    out.signal(e.map_or(Ok(()), Err));
                }
            });
        }
        out
    }

    /// Whether anything waits on this fence (a callback or a blocked waiter).
    pub fn has_waiters(&self) -> bool {
        let g = self.inner.lock();
        !g.callbacks.is_empty() || g.wakers.iter().any(|w| w.strong_count() > 0)
    }

    /// Register a blocked waiter; false if the fence is already signalled.
    fn add_waker(&self, w: &Arc<Waker>) -> bool {
        let mut g = self.inner.lock();
        if g.status.is_some() {
            return false;
        }
        g.wakers.retain(|x| x.strong_count() > 0);
        g.wakers.push(Arc::downgrade(w));
        true
    }

    /// `None` while unsignalled.
    pub fn status(&self) -> Option<Status> {
        self.inner.lock().status
    }

    /// Signalled (successfully or not).
    pub fn is_signaled(&self) -> bool {
        self.status().is_some()
    }

    /// Run `f` once the fence is signalled (now, if it already is).
    pub fn on_signal(&self, f: impl FnOnce(Status) + Send + 'static) {
        let now = {
            let mut g = self.inner.lock();
            match g.status {
                Some(s) => Some(s),
                None => {
                    g.callbacks.push(Box::new(f));
                    return;
                }
            }
        };
        if let Some(s) = now {
            f(s);
        }
    }

    /// Block until signalled or `deadline`; returns the status if signalled.
    pub fn wait(&self, deadline: Option<Instant>) -> Option<Status> {
        let mut g = self.inner.lock();
        loop {
            if let Some(s) = g.status {
                return Some(s);
            }
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut g, d).timed_out() {
                        return g.status;
                    }
                }
                None => self.cond.wait(&mut g),
            }
        }
    }
}

impl Drop for Fence {
    /// A fence that dies unsignalled can never signal: its callbacks (jobs
    /// waiting on it) learn that with ECANCELED instead of waiting forever.
    fn drop(&mut self) {
        let g = self.inner.get_mut();
        if g.status.is_none() {
            for cb in std::mem::take(&mut g.callbacks) {
                cb(Err(Errno::ECANCELED));
            }
        }
    }
}

#[derive(Default)]
struct Waker {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Waker {
    fn wake(&self) {
        *self.generation.lock() += 1;
        self.cond.notify_all();
    }
}

/// Wait for `all` (or any) of `fences` until `deadline` (`None` = forever;
/// a deadline in the past = poll). Returns the index of the first signalled
/// fence (any) or 0 (all), or `ETIMEDOUT`.
pub fn wait_many(fences: &[Arc<Fence>], all: bool, deadline: Option<Instant>) -> Result<u32, Errno> {
    let check = || -> Option<u32> {
        if all {
            fences.iter().all(|f| f.is_signaled()).then_some(0)
        } else {
            fences.iter().position(|f| f.is_signaled()).map(|i| i as u32)
        }
    };
    if let Some(i) = check() {
        return Ok(i);
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Err(Errno::ETIMEDOUT);
    }
    let waker = Arc::new(Waker::default());
    for f in fences {
        f.add_waker(&waker);
    }
    let mut g = waker.generation.lock();
    loop {
        if let Some(i) = check() {
            return Ok(i);
        }
        match deadline {
            Some(d) => {
                if waker.cond.wait_until(&mut g, d).timed_out() {
                    return check().ok_or(Errno::ETIMEDOUT);
                }
            }
            None => waker.cond.wait(&mut g),
        }
    }
}

/// Convert an absolute CLOCK_MONOTONIC deadline in ns (UAPI-RULES.md rule 11)
/// to an `Instant`: `<= now` polls, `i64::MAX` waits forever.
pub fn deadline_from_monotonic_ns(timeout_ns: i64) -> Option<Instant> {
    if timeout_ns == i64::MAX {
        return None;
    }
    let now_ns = monotonic_ns();
    let now = Instant::now();
    if timeout_ns <= now_ns {
        return Some(now);
    }
    Some(now + std::time::Duration::from_nanos((timeout_ns - now_ns) as u64))
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> i64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec().saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec()),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signals_once_and_runs_callbacks() {
        let f = Fence::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        f.on_signal(move |st| s.lock().push(st));
        assert!(f.signal(Err(Errno::EIO)));
        assert!(!f.signal(Ok(())));
        assert_eq!(f.status(), Some(Err(Errno::EIO)));
        let s = seen.clone();
        f.on_signal(move |st| s.lock().push(st));
        assert_eq!(*seen.lock(), vec![Err(Errno::EIO), Err(Errno::EIO)]);
    }

    #[test]
    fn dropping_an_unsignalled_fence_cancels_its_waiters() {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let f = Fence::new();
        f.on_signal(move |st| *s.lock() = Some(st));
        assert!(f.has_waiters());
        drop(f);
        assert_eq!(*seen.lock(), Some(Err(Errno::ECANCELED)));
    }

    #[test]
    fn timed_out_waits_leave_nothing_behind() {
        let f = Fence::new();
        for _ in 0..100 {
            assert_eq!(
                wait_many(std::slice::from_ref(&f), false, Some(Instant::now() + Duration::from_micros(10))),
                Err(Errno::ETIMEDOUT)
            );
        }
        assert!(!f.has_waiters(), "dead waiters are not kept");
        assert!(f.inner.lock().wakers.len() <= 1);
    }

    #[test]
    fn wait_many_any_all_and_deadline() {
        let (a, b) = (Fence::new(), Fence::new());
        let fs = [a.clone(), b.clone()];
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(wait_many(&fs, false, soon), Err(Errno::ETIMEDOUT));
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            b2.signal(Ok(()));
        });
        assert_eq!(wait_many(&fs, false, None), Ok(1));
        t.join().unwrap();
        assert_eq!(wait_many(&fs, true, Some(Instant::now())), Err(Errno::ETIMEDOUT));
        a.signal(Ok(()));
        assert_eq!(wait_many(&fs, true, Some(Instant::now())), Ok(0));
    }

    #[test]
    fn monotonic_deadlines() {
        assert_eq!(deadline_from_monotonic_ns(i64::MAX), None);
        let past = deadline_from_monotonic_ns(0).unwrap();
        assert!(past <= Instant::now());
        let fut = deadline_from_monotonic_ns(monotonic_ns() + 50_000_000).unwrap();
        let left = fut - Instant::now();
        assert!(left > Duration::from_millis(30) && left <= Duration::from_millis(50), "{left:?}");
    }
}
