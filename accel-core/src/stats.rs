//! Live-object counters of a device: what leak tests assert returns to zero.

use std::sync::atomic::{AtomicI64, Ordering};

/// Counters of live objects, updated as objects are created and released.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) files: AtomicI64,
    pub(crate) contexts: AtomicI64,
    pub(crate) bos: AtomicI64,
    pub(crate) bo_bytes: AtomicI64,
    pub(crate) mappings: AtomicI64,
    pub(crate) handles: AtomicI64,
    pub(crate) exports: AtomicI64,
    pub(crate) cpu_mappings: AtomicI64,
    pub(crate) queues: AtomicI64,
    pub(crate) jobs: AtomicI64,
    pub(crate) syncobjs: AtomicI64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open files.
    pub files: i64,
    /// Live contexts.
    pub contexts: i64,
    /// Live BOs (backing allocated).
    pub bos: i64,
    /// Bytes of live BOs.
    pub bo_bytes: i64,
    /// Live VM mappings across all contexts.
    pub mappings: i64,
    /// Live handles across all files.
    pub handles: i64,
    /// BOs with a live export entry.
    pub exports: i64,
    /// Live CPU mappings handed out by the in-process transport.
    pub cpu_mappings: i64,
    /// Live queues.
    pub queues: i64,
    /// Jobs submitted and not yet completed.
    pub jobs: i64,
    /// Live syncobjs.
    pub syncobjs: i64,
}

impl Stats {
    /// Every counter is zero.
    pub fn is_idle(&self) -> bool {
        *self == Stats::default()
    }
}

impl Counters {
    pub(crate) fn add(c: &AtomicI64, n: i64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Read all counters.
    pub fn snapshot(&self) -> Stats {
        let r = |c: &AtomicI64| c.load(Ordering::Relaxed);
        Stats {
            files: r(&self.files),
            contexts: r(&self.contexts),
            bos: r(&self.bos),
            bo_bytes: r(&self.bo_bytes),
            mappings: r(&self.mappings),
            handles: r(&self.handles),
            exports: r(&self.exports),
            cpu_mappings: r(&self.cpu_mappings),
            queues: r(&self.queues),
            jobs: r(&self.jobs),
            syncobjs: r(&self.syncobjs),
        }
    }
}
