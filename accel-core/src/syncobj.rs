//! Syncobjs, like DRM's: binary ones hold the latest fence; timeline ones
//! hold a u64 payload that advances as points signal, in order (a point is
//! reached only when it and every earlier submitted point have signalled, as
//! with DRM's fence chains).
//!
//! Fences installed by SUBMIT (or a transfer) are attached at submit time, so
//! WAIT_FOR_SUBMIT waiters see them; a wait on a timeline point that nobody
//! has submitted yet resolves through a watcher fence once the payload
//! reaches it.

use crate::error::{Error, Result};
use crate::fence::{Fence, Status};
use accel_uapi::Errno;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};

enum State {
    Binary {
        fence: Option<Arc<Fence>>,
        /// WAIT_FOR_SUBMIT proxies waiting for a fence to be installed.
        proxies: Vec<Arc<Fence>>,
    },
    Timeline {
        value: u64,
        /// The first error among retired points.
        error: Option<Errno>,
        /// Submitted points not yet retired.
        pending: BTreeMap<u64, Arc<Fence>>,
        /// Fences to signal once the payload reaches their point.
        watchers: Vec<(u64, Arc<Fence>)>,
    },
}

/// One syncobj.
pub struct Syncobj {
    state: Mutex<State>,
    me: Weak<Syncobj>,
    device: Option<Arc<crate::device::Device>>,
    /// The export token (a memfd) once exported.
    pub(crate) export: Mutex<Option<(OwnedFd, (u64, u64))>>,
}

impl std::fmt::Debug for Syncobj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncobj").field("timeline", &self.is_timeline()).finish_non_exhaustive()
    }
}

/// How to undo a fence installation when a submit fails after it.
pub(crate) enum Undo {
    Binary(Option<Arc<Fence>>),
    Timeline(u64),
}

impl Syncobj {
    /// A binary (or timeline) syncobj, optionally signalled.
    pub fn new(timeline: bool, signaled: bool) -> Arc<Syncobj> {
        Self::build(None, timeline, signaled)
    }

    /// A syncobj accounted to `device` (its counters and export table).
    pub(crate) fn on_device(device: Arc<crate::device::Device>, timeline: bool, signaled: bool) -> Arc<Syncobj> {
        crate::stats::Counters::add(&device.counters.syncobjs, 1);
        Self::build(Some(device), timeline, signaled)
    }

    fn build(device: Option<Arc<crate::device::Device>>, timeline: bool, signaled: bool) -> Arc<Syncobj> {
        let state = if timeline {
            State::Timeline { value: 0, error: None, pending: BTreeMap::new(), watchers: Vec::new() }
        } else {
            State::Binary { fence: signaled.then(|| Fence::signaled(Ok(()))), proxies: Vec::new() }
        };
        Arc::new_cyclic(|me| Syncobj { state: Mutex::new(state), me: me.clone(), device, export: Mutex::new(None) })
    }

    /// A timeline syncobj.
    pub fn is_timeline(&self) -> bool {
        matches!(*self.state.lock(), State::Timeline { .. })
    }

    /// The fence to wait on for `point` (0 for a binary syncobj). Without
    /// `wait_for_submit`, waiting on nothing submitted is EINVAL (as in DRM).
    /// A submitted timeline point is waited on through the fences that reach
    /// it, so the wait does not depend on the syncobj staying alive.
    pub fn wait_fence(&self, point: u64, wait_for_submit: bool) -> Result<Arc<Fence>> {
        let mut st = self.state.lock();
        let chain = match &mut *st {
            State::Binary { fence, proxies } => {
                if point != 0 {
                    return Err(Error::invalid(format!("point {point} on a binary syncobj")));
                }
                return match fence {
                    Some(f) => Ok(f.clone()),
                    None if wait_for_submit => {
                        let p = Fence::new();
                        // Proxies nobody waits on any more (timed-out waits) are dropped.
                        proxies.retain(|x| Arc::strong_count(x) > 1 || x.has_waiters());
                        proxies.push(p.clone());
                        Ok(p)
                    }
                    None => Err(Error::invalid("syncobj has no fence (use WAIT_FOR_SUBMIT)")),
                };
            }
            State::Timeline { value, error, pending, watchers } => {
                if point == 0 {
                    return Err(Error::invalid("timeline point 0"));
                }
                if *value >= point {
                    return Ok(Fence::signaled(error.map_or(Ok(()), Err)));
                }
                match pending.range(point..).next().map(|(k, _)| *k) {
                    // Reached once every pending point up to the first one at or
                    // above `point` has signalled.
                    Some(reach) => (pending.range(..=reach).map(|(_, f)| f.clone()).collect::<Vec<_>>(), *error),
                    None if wait_for_submit => {
                        let w = Fence::new();
                        watchers.retain(|(_, x)| Arc::strong_count(x) > 1 || x.has_waiters());
                        watchers.push((point, w.clone()));
                        return Ok(w);
                    }
                    None => {
                        return Err(Error::invalid(format!(
                            "timeline point {point} not submitted (use WAIT_FOR_SUBMIT)"
                        )));
                    }
                }
            }
        };
        drop(st);
        Ok(Fence::join(chain.0, chain.1))
    }

    /// Whether `point` is reached or submitted (binary syncobjs: always).
    pub fn covers(&self, point: u64) -> bool {
        match &*self.state.lock() {
            State::Binary { .. } => true,
            State::Timeline { value, pending, .. } => {
                *value >= point || pending.keys().next_back().is_some_and(|&m| m >= point)
            }
        }
    }

    /// The fence a wait inside a SUBMIT depends on: binary syncobjs must have
    /// a fence; timeline points may lie in the future (wait-before-signal).
    pub fn submit_wait_fence(&self, point: u64) -> Result<Arc<Fence>> {
        let timeline = self.is_timeline();
        self.wait_fence(point, timeline)
    }

    /// Check that `point` can be installed (binary: 0; timeline: above every point so far).
    pub fn check_install(&self, point: u64) -> Result<()> {
        Self::check_state(&self.state.lock(), point)
    }

    fn check_state(st: &State, point: u64) -> Result<()> {
        match st {
            State::Binary { .. } if point != 0 => Err(Error::invalid(format!("point {point} on a binary syncobj"))),
            State::Binary { .. } => Ok(()),
            State::Timeline { value, pending, .. } => {
                let last = pending.keys().next_back().copied().unwrap_or(0).max(*value);
                if point <= last {
                    Err(Error::invalid(format!("timeline point {point} is not above {last}")))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Attach `fence` at `point`; returns how to undo it.
    pub(crate) fn install(&self, point: u64, fence: Arc<Fence>) -> Result<Undo> {
        let mut st = self.state.lock();
        Self::check_state(&st, point)?;
        match &mut *st {
            State::Binary { fence: slot, proxies } => {
                let old = slot.replace(fence.clone());
                let proxies = std::mem::take(proxies);
                drop(st);
                for p in proxies {
                    fence.on_signal(move |s| {
                        p.signal(s);
                    });
                }
                Ok(Undo::Binary(old))
            }
            State::Timeline { pending, .. } => {
                pending.insert(point, fence.clone());
                drop(st);
                let me = self.me.clone();
                fence.on_signal(move |_| {
                    if let Some(s) = me.upgrade() {
                        s.retire();
                    }
                });
                Ok(Undo::Timeline(point))
            }
        }
    }

    pub(crate) fn undo(&self, u: Undo) {
        // Whatever is replaced is dropped after the lock: dropping a fence may run callbacks.
        let _replaced = {
            let mut st = self.state.lock();
            match (&mut *st, u) {
                (State::Binary { fence, .. }, Undo::Binary(old)) => std::mem::replace(fence, old),
                (State::Timeline { pending, .. }, Undo::Timeline(p)) => pending.remove(&p),
                _ => None,
            }
        };
    }

    /// Advance a timeline over every leading signalled point and fire watchers.
    fn retire(&self) {
        let fire = {
            let mut st = self.state.lock();
            let State::Timeline { value, error, pending, watchers } = &mut *st else { return };
            while let Some(e) = pending.first_entry() {
                let Some(s) = e.get().status() else { break };
                if let Err(e) = s {
                    error.get_or_insert(e);
                }
                *value = *e.key();
                e.remove();
            }
            let v = *value;
            let status: Status = error.map_or(Ok(()), Err);
            let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(watchers).into_iter().partition(|(p, _)| *p <= v);
            *watchers = keep;
            ready.into_iter().map(move |(_, f)| (f, status)).collect::<Vec<_>>()
        };
        for (f, s) in fire {
            f.signal(s);
        }
    }

    /// Host signal of a binary syncobj.
    pub fn signal(&self) -> Result<()> {
        if self.is_timeline() {
            return Err(Error::invalid("SIGNAL on a timeline syncobj (use TIMELINE_SIGNAL)"));
        }
        self.install(0, Fence::signaled(Ok(()))).map(|_| ())
    }

    /// Host signal of a timeline point.
    pub fn timeline_signal(&self, point: u64) -> Result<()> {
        if !self.is_timeline() {
            return Err(Error::invalid("TIMELINE_SIGNAL on a binary syncobj"));
        }
        self.install(point, Fence::signaled(Ok(()))).map(|_| ())
    }

    /// Reset a binary syncobj to "no fence".
    pub fn reset(&self) -> Result<()> {
        let _old = match &mut *self.state.lock() {
            State::Binary { fence, .. } => fence.take(),
            State::Timeline { .. } => return Err(Error::invalid("RESET of a timeline syncobj")),
        };
        Ok(())
    }

    /// (point, status): binary -> 1 if its fence signalled else 0; timeline ->
    /// the payload. Status is 0 or -errno.
    pub fn query(&self) -> (u64, i32) {
        // A waiter wakes as soon as the fences of a point signal, which can
        // be before the signalling thread retires the point: retire here
        // too, so a point a wait saw reached is never reported unreached.
        self.retire();
        match &*self.state.lock() {
            State::Binary { fence, .. } => match fence.as_ref().and_then(|f| f.status()) {
                Some(Ok(())) => (1, 0),
                Some(Err(e)) => (1, -e.raw()),
                None => (0, 0),
            },
            State::Timeline { value, error, .. } => (*value, error.map_or(0, |e| -e.raw())),
        }
    }
}

/// One fence installed into several syncobjs by one call (SUBMIT signals,
/// VM_BIND out-syncs), undone together if the call fails after installing.
pub(crate) struct Claim {
    fence: Arc<Fence>,
    undo: Vec<(Arc<Syncobj>, Undo)>,
}

impl Claim {
    /// Install `fence` at each `(syncobj, point)`; if one fails, the earlier
    /// ones are undone (see [`Claim::cancel`]) and its error is returned.
    pub(crate) fn install(fence: &Arc<Fence>, targets: &[(Arc<Syncobj>, u64)]) -> Result<Claim> {
        let mut claim = Claim { fence: fence.clone(), undo: Vec::with_capacity(targets.len()) };
        for (obj, point) in targets {
            match obj.install(*point, fence.clone()) {
                Ok(u) => claim.undo.push((obj.clone(), u)),
                Err(e) => {
                    claim.cancel();
                    return Err(e);
                }
            }
        }
        Ok(claim)
    }

    /// Undo every install, newest first, and fail the fence with ECANCELED:
    /// anyone who already chained on it sees the call fail.
    pub(crate) fn cancel(self) {
        for (obj, u) in self.undo.into_iter().rev() {
            obj.undo(u);
        }
        self.fence.signal(Err(Errno::ECANCELED));
    }
}

impl Drop for Syncobj {
    fn drop(&mut self) {
        if let Some(dev) = &self.device {
            if let Some((_, key)) = self.export.get_mut().take() {
                dev.syncobj_exports.lock().remove(&key);
            }
            crate::stats::Counters::add(&dev.counters.syncobjs, -1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_signal_reset_and_wait_for_submit() {
        let s = Syncobj::new(false, false);
        assert_eq!(s.wait_fence(0, false).unwrap_err().errno(), Errno::EINVAL);
        let proxy = s.wait_fence(0, true).unwrap();
        assert!(!proxy.is_signaled());
        let f = Fence::new();
        s.install(0, f.clone()).unwrap();
        assert!(!proxy.is_signaled());
        f.signal(Err(Errno::EFAULT));
        assert_eq!(proxy.status(), Some(Err(Errno::EFAULT)));
        assert_eq!(s.query(), (1, -14));
        s.reset().unwrap();
        assert_eq!(s.query(), (0, 0));
        s.signal().unwrap();
        assert_eq!(s.query(), (1, 0));
    }

    #[test]
    fn timeline_points_retire_in_order() {
        let s = Syncobj::new(true, false);
        let (f1, f2, f3) = (Fence::new(), Fence::new(), Fence::new());
        s.install(1, f1.clone()).unwrap();
        s.install(2, f2.clone()).unwrap();
        s.install(3, f3.clone()).unwrap();
        assert_eq!(s.check_install(3).unwrap_err().errno(), Errno::EINVAL);
        let w2 = s.wait_fence(2, false).unwrap();
        let w5 = s.wait_fence(5, true).unwrap();
        assert_eq!(s.wait_fence(5, false).unwrap_err().errno(), Errno::EINVAL);
        f3.signal(Ok(())); // out of order: nothing retires yet
        assert_eq!(s.query().0, 0);
        f1.signal(Ok(()));
        assert_eq!(s.query().0, 1);
        assert!(!w2.is_signaled());
        f2.signal(Ok(()));
        assert_eq!(s.query().0, 3, "2 and the already signalled 3 retire together");
        assert!(w2.is_signaled());
        assert!(!w5.is_signaled());
        s.timeline_signal(5).unwrap();
        assert_eq!(w5.status(), Some(Ok(())));
        assert!(s.wait_fence(4, false).unwrap().is_signaled());
    }
}
