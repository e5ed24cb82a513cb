//! Fleet's write-ahead log, built to hold the masters' Raft log: entries with
//! contiguous u64 indexes and opaque payloads in checksummed segment files, appended
//! and fsynced through io_uring with group commit, plus a small meta record (vote,
//! last purged, committed) replaced atomically.
//!
//! [`Wal::open`] recovers the directory (cutting a torn tail, refusing corruption) and
//! starts the writer thread. Operations change what readers see at once and return a
//! [`Durable`] that resolves once they are on disk; nothing is acknowledged earlier.

mod config;
mod durable;
mod entry;
mod error;
mod format;
mod meta;
mod recovery;
mod stats;
mod view;
mod writer;

use std::fs::{File, TryLockError};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;

pub use config::{SyncMode, WalConfig};
pub use durable::{Durable, DurableFuture};
pub use entry::Entry;
pub use error::WalError;
pub use format::{
    FORMAT_VERSION, MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, segment_file_name,
};
pub use meta::META_FILE;
pub use recovery::{Recovery, TornTail};
pub use stats::{SYNC_BUCKETS_US, SyncLatency, WalStats};

use durable::Completion;
use view::{SegmentHandle, View, read_view, write_view};
use writer::Command;

const LOCK_FILE: &str = "LOCK";

/// An open write-ahead log. Share it behind an `Arc`; every method takes `&self`.
/// Dropping it (or [`Wal::close`]) lets the writer finish what is queued and stop.
pub struct Wal {
    dir: PathBuf,
    /// Held (flock) while open: two writers on one directory would interleave records.
    _lock: File,
    view: Arc<RwLock<View>>,
    counters: Arc<stats::Counters>,
    commands: Option<flume::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`: checks every segment, cuts a torn
    /// tail off the last one, and fails with [`WalError::Corrupt`] on any other damage.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Wal, Recovery), WalError> {
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        let (segments, recovery) = recovery::recover(&dir)?;
        let meta = meta::read_meta(&dir)?;
        let mut view = View::new(meta);
        for segment in &segments {
            let reader = segment
                .file
                .try_clone()
                .map_err(|e| WalError::io("duplicate handle of", &segment.path, e))?;
            let handle = SegmentHandle {
                file: Arc::new(reader),
                path: segment.path.clone(),
            };
            view.add_recovered(segment.first_index, handle, &segment.records);
        }
        let view = Arc::new(RwLock::new(view));
        let counters = Arc::new(stats::Counters::default());
        let (commands, writer) = writer::spawn(
            dir.clone(),
            config,
            segments,
            Arc::clone(&view),
            Arc::clone(&counters),
        )?;
        let wal = Wal {
            dir,
            _lock: lock,
            view,
            counters,
            commands: Some(commands),
            writer: Some(writer),
        };
        Ok((wal, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends entries that continue the log (the first must carry [`Wal::next_index`],
    /// or any index on a WAL that never held one). They are readable when this returns;
    /// the `Durable` resolves to the last index once they are synced.
    pub fn append(&self, entries: Vec<Entry>) -> Result<Durable<u64>, WalError> {
        let (done, durable) = Durable::channel();
        self.submit_append(entries, done)?;
        Ok(durable)
    }

    /// As [`Wal::append`], but runs `on_durable` on the writer thread once synced
    /// (or failed). It must be quick: the next group commit waits for it.
    pub fn append_then(
        &self,
        entries: Vec<Entry>,
        on_durable: impl FnOnce(Result<u64, WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        self.submit_append(entries, Completion::Callback(Box::new(on_durable)))
    }

    fn submit_append(&self, entries: Vec<Entry>, done: Completion<u64>) -> Result<(), WalError> {
        // The view and the queue change under one lock, so the writer sees commands
        // in the order the view applied them.
        let mut view = write_view(&self.view);
        view.ensure_usable()?;
        let seq = view.push_pending(&entries)?;
        self.send(&mut view, Command::Append { seq, entries, done })
    }

    /// Deletes `index` and every entry after it; the next append must carry `index`.
    pub fn truncate_from(&self, index: u64) -> Result<Durable<()>, WalError> {
        let (done, durable) = Durable::channel();
        let mut view = write_view(&self.view);
        view.ensure_usable()?;
        view.truncate_from(index);
        self.send(&mut view, Command::TruncateFrom { index, done })?;
        Ok(durable)
    }

    /// Drops every entry up to and including `index` (after a snapshot covers them).
    /// Whole segments are deleted; entries of a segment that also holds later ones stay
    /// on disk, so after a reopen [`Wal::first_index`] may be lower than `index + 1`.
    /// Purging past the end leaves an empty log whose next index is `index + 1`.
    pub fn purge_upto(&self, index: u64) -> Result<Durable<()>, WalError> {
        let (done, durable) = Durable::channel();
        let mut view = write_view(&self.view);
        view.ensure_usable()?;
        view.purge_upto(index);
        self.send(&mut view, Command::PurgeUpto { index, done })?;
        Ok(durable)
    }

    /// Replaces the meta record (write temp file, fsync, rename, fsync directory).
    pub fn save_meta(&self, payload: impl Into<Bytes>) -> Result<Durable<()>, WalError> {
        let payload = payload.into();
        let (done, durable) = Durable::channel();
        let mut view = write_view(&self.view);
        view.ensure_usable()?;
        view.set_meta(payload.clone());
        self.send(&mut view, Command::SaveMeta { payload, done })?;
        Ok(durable)
    }

    /// The latest meta record saved (possibly not yet durable), or the one found at open.
    pub fn meta(&self) -> Option<Bytes> {
        read_view(&self.view).meta()
    }

    /// The entries of `range` that the log holds, in index order.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, WalError> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        read_view(&self.view).read(from, to)
    }

    /// The lowest index the log holds (or would hold next, when empty); None for a WAL
    /// that never held an entry.
    pub fn first_index(&self) -> Option<u64> {
        read_view(&self.view).first_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        read_view(&self.view).last_index()
    }

    /// The index the next append must carry; None when any index is accepted.
    pub fn next_index(&self) -> Option<u64> {
        read_view(&self.view).next_index()
    }

    pub fn stats(&self) -> WalStats {
        self.counters.snapshot()
    }

    /// How long the writer's fsyncs took (segments and directory), as a histogram.
    pub fn sync_latency(&self) -> SyncLatency {
        self.counters.sync_latency()
    }

    /// Lets the writer finish every queued command, stops it, and reports whether the
    /// WAL had failed.
    pub fn close(mut self) -> Result<(), WalError> {
        self.stop();
        read_view(&self.view).ensure_usable()
    }

    fn send(&self, view: &mut View, command: Command) -> Result<(), WalError> {
        let sent = self
            .commands
            .as_ref()
            .map(|commands| commands.send(command));
        if let Some(Ok(())) = sent {
            return Ok(());
        }
        view.fail(WalError::Stopped);
        Err(WalError::Stopped)
    }

    fn stop(&mut self) {
        self.commands = None;
        let Some(writer) = self.writer.take() else {
            return;
        };
        // The last handle may be dropped by a callback on the writer thread itself,
        // which then ends on its own once the queue is empty.
        if writer.thread().id() != std::thread::current().id() && writer.join().is_err() {
            write_view(&self.view).fail(WalError::Stopped);
        }
    }
}

/// Locks `dir/LOCK`, creating the directory if needed. The kernel drops the lock when
/// the process dies, so a crash never leaves the WAL locked.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    std::fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::InUse {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(WalError::io("lock", path, e)),
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}
