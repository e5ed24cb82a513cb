//! How a WAL is opened: segment size, how appends are made durable, preallocation.

/// How appended entries are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every batch queued while the writer was busy is written, then one fdatasync
    /// covers them all and every caller is acknowledged.
    GroupCommit,
    /// One write and one fdatasync per entry, batches taken one at a time: the
    /// baseline a benchmark measures group commit against.
    PerEntry,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    /// A segment is closed and a new one started once the next record would take it
    /// past this size (a record larger than this gets a segment of its own).
    pub segment_size: u64,
    pub sync: SyncMode,
    /// Reserve each new segment's blocks with fallocate(KEEP_SIZE) when it is created.
    pub preallocate: bool,
    /// A group commit stops draining the queue once it holds this many payload bytes.
    pub max_group_bytes: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size: 64 << 20,
            sync: SyncMode::GroupCommit,
            preallocate: false,
            max_group_bytes: 16 << 20,
        }
    }
}
