//! Counters the writer keeps, for benchmarks and /metrics: how many entries each
//! fdatasync carried is the measure of group commit.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Rounds of the writer: each took every queued command (one in PerEntry mode).
    pub rounds: u64,
    /// fdatasync/fsync calls on segments, the meta file and the directory.
    pub syncs: u64,
    pub entries: u64,
    /// Record bytes written (frames, not counting segment headers).
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    rounds: AtomicU64,
    syncs: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn written(&self, entries: u64, bytes: u64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WalStats {
        WalStats {
            rounds: self.rounds.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}
