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

/// Upper bounds of the fsync-latency histogram's buckets, in microseconds (50 us to 1 s).
pub const SYNC_BUCKETS_US: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000,
];

/// How long the writer's fdatasyncs of segments and fsyncs of the directory took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncLatency {
    /// Syncs per bucket of [`SYNC_BUCKETS_US`] (not cumulative); the last counts the rest.
    pub counts: [u64; SYNC_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    rounds: AtomicU64,
    syncs: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    sync_counts: [AtomicU64; SYNC_BUCKETS_US.len() + 1],
    sync_sum_us: AtomicU64,
}

impl Counters {
    pub(crate) fn round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// A timed sync of a segment or the directory.
    pub(crate) fn synced(&self, took: std::time::Duration) {
        self.sync();
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNC_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(SYNC_BUCKETS_US.len());
        self.sync_counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sync_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn sync_latency(&self) -> SyncLatency {
        let mut counts = [0; SYNC_BUCKETS_US.len() + 1];
        for (count, counter) in counts.iter_mut().zip(&self.sync_counts) {
            *count = counter.load(Ordering::Relaxed);
        }
        SyncLatency {
            counts,
            sum_us: self.sync_sum_us.load(Ordering::Relaxed),
        }
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
