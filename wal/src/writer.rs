//! The writer thread: a tokio-uring runtime that owns the segment files and is the
//! only code that changes them. Each round takes every command queued while the last
//! round ran (group commit), writes all their records to the active segment with one
//! io_uring write, issues one fdatasync, and only then acknowledges them.
//!
//! Ordering rules that recovery relies on (see recovery.rs):
//! - a segment is synced in full before the next one is created, and a new segment's
//!   header is synced before any record goes in;
//! - a truncation is synced (file and directory) before anything is written after it;
//! - segments are deleted oldest first by purge and newest first by truncation, so a
//!   crash in the middle leaves a contiguous run of segments.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::config::{SyncMode, WalConfig};
use crate::durable::Completion;
use crate::entry::Entry;
use crate::error::WalError;
use crate::format::{
    SEGMENT_HEADER_LEN, encode_record, encode_segment_header, frame_len, segment_file_name,
};
use crate::meta::{META_FILE, META_TMP_FILE, encode_meta};
use crate::recovery::RecoveredSegment;
use crate::stats::Counters;
use crate::view::{Located, SegmentHandle, View, write_view};

pub(crate) enum Command {
    Append {
        seq: u64,
        entries: Vec<Entry>,
        done: Completion<u64>,
    },
    TruncateFrom {
        index: u64,
        done: Completion<()>,
    },
    PurgeUpto {
        index: u64,
        done: Completion<()>,
    },
    SaveMeta {
        payload: Bytes,
        done: Completion<()>,
    },
}

impl Command {
    fn payload_bytes(&self) -> usize {
        match self {
            Command::Append { entries, .. } => entries.iter().map(|e| e.payload.len()).sum(),
            Command::SaveMeta { payload, .. } => payload.len(),
            Command::TruncateFrom { .. } | Command::PurgeUpto { .. } => 0,
        }
    }
}

/// A command's completion, held until the round's fsync.
enum Ack {
    Append(Completion<u64>, u64),
    Done(Completion<()>),
}

impl Ack {
    fn of(command: Command) -> Ack {
        match command {
            Command::Append { entries, done, .. } => {
                let last = entries.last().map_or(0, |e| e.index);
                Ack::Append(done, last)
            }
            Command::TruncateFrom { done, .. }
            | Command::PurgeUpto { done, .. }
            | Command::SaveMeta { done, .. } => Ack::Done(done),
        }
    }

    fn complete(self, result: Result<(), WalError>) {
        match self {
            Ack::Append(done, last) => done.complete(result.map(|()| last)),
            Ack::Done(done) => done.complete(result),
        }
    }
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    file: tokio_uring::fs::File,
    /// The same file for ftruncate, which tokio-uring has no operation for.
    std: File,
    /// Start of each record, in index order from `first_index`.
    offsets: Vec<u64>,
    /// Where the next write goes: everything before it has been written (not
    /// necessarily synced); records buffered in the round come after it.
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }
}

struct Writer {
    dir: PathBuf,
    dir_file: tokio_uring::fs::File,
    config: WalConfig,
    segments: Vec<Segment>,
    view: Arc<RwLock<View>>,
    counters: Arc<Counters>,
    failed: Option<WalError>,
    /// Records of this round not yet written, for the active segment at its `end`.
    buf: Vec<u8>,
    /// The active segment holds written bytes not yet synced.
    dirty: bool,
    /// A segment or the meta file was created, renamed or removed since the last
    /// directory fsync.
    dir_dirty: bool,
    located: Vec<Located>,
}

/// Starts the writer thread; returns once its runtime is up and it owns the segments.
pub(crate) fn spawn(
    dir: PathBuf,
    config: WalConfig,
    recovered: Vec<RecoveredSegment>,
    view: Arc<RwLock<View>>,
    counters: Arc<Counters>,
) -> Result<(flume::Sender<Command>, JoinHandle<()>), WalError> {
    let (commands, queue) = flume::unbounded();
    let (ready_tx, ready_rx) = flume::bounded(1);
    let thread_dir = dir.clone();
    let thread = std::thread::Builder::new()
        .name("fleet-wal".to_string())
        .spawn(move || {
            let runtime = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                Ok(runtime) => runtime,
                Err(e) => {
                    let err = WalError::io("start io_uring runtime for", thread_dir, e);
                    drop(ready_tx.send(Err(err)));
                    return;
                }
            };
            runtime.block_on(async move {
                match Writer::new(thread_dir, config, recovered, view, counters) {
                    Ok(writer) => {
                        drop(ready_tx.send(Ok(())));
                        writer.run(queue).await;
                    }
                    Err(err) => drop(ready_tx.send(Err(err))),
                }
            });
        })
        .map_err(|e| WalError::io("spawn writer thread for", &dir, e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((commands, thread)),
        Ok(Err(err)) => {
            drop(thread.join());
            Err(err)
        }
        Err(_) => {
            drop(thread.join());
            Err(WalError::Stopped)
        }
    }
}

impl Writer {
    fn new(
        dir: PathBuf,
        config: WalConfig,
        recovered: Vec<RecoveredSegment>,
        view: Arc<RwLock<View>>,
        counters: Arc<Counters>,
    ) -> Result<Writer, WalError> {
        let dir_file = File::open(&dir).map_err(|e| WalError::io("open directory", &dir, e))?;
        let mut segments = Vec::with_capacity(recovered.len());
        for segment in recovered {
            let uring = segment
                .file
                .try_clone()
                .map_err(|e| WalError::io("duplicate handle of", &segment.path, e))?;
            segments.push(Segment {
                first_index: segment.first_index,
                path: segment.path,
                file: tokio_uring::fs::File::from_std(uring),
                std: segment.file,
                offsets: segment.records.iter().map(|&(offset, _)| offset).collect(),
                end: segment.end,
            });
        }
        Ok(Writer {
            dir,
            dir_file: tokio_uring::fs::File::from_std(dir_file),
            config,
            segments,
            view,
            counters,
            failed: None,
            buf: Vec::new(),
            dirty: false,
            dir_dirty: false,
            located: Vec::new(),
        })
    }

    async fn run(mut self, queue: flume::Receiver<Command>) {
        // Ends when every sender is gone, after the commands still queued.
        while let Ok(first) = queue.recv_async().await {
            let mut bytes = first.payload_bytes();
            let mut commands = vec![first];
            if self.config.sync == SyncMode::GroupCommit {
                while bytes < self.config.max_group_bytes {
                    let Ok(next) = queue.try_recv() else { break };
                    bytes += next.payload_bytes();
                    commands.push(next);
                }
            }
            self.round(commands).await;
        }
    }

    async fn round(&mut self, commands: Vec<Command>) {
        self.counters.round();
        let mut acks = Vec::with_capacity(commands.len());
        let mut outcome = match &self.failed {
            Some(err) => Err(WalError::Failed(Box::new(err.clone()))),
            None => Ok(()),
        };
        for command in commands {
            if outcome.is_ok() {
                outcome = self.apply(&command).await;
            }
            acks.push(Ack::of(command));
        }
        if outcome.is_ok() {
            outcome = self.commit().await;
        }
        let located = std::mem::take(&mut self.located);
        match &outcome {
            Ok(()) => write_view(&self.view).publish(&located),
            Err(err) if self.failed.is_none() => {
                tracing::error!(error = %err, "WAL write failed; the WAL refuses further operations");
                self.failed = Some(err.clone());
                write_view(&self.view).fail(err.clone());
            }
            Err(_) => {}
        }
        for ack in acks {
            ack.complete(outcome.clone());
        }
    }

    async fn apply(&mut self, command: &Command) -> Result<(), WalError> {
        match command {
            Command::Append { seq, entries, .. } => self.append(*seq, entries).await,
            Command::TruncateFrom { index, .. } => self.truncate_from(*index).await,
            Command::PurgeUpto { index, .. } => self.purge_upto(*index).await,
            Command::SaveMeta { payload, .. } => self.save_meta(payload).await,
        }
    }

    /// Writes what the round buffered, syncs the active segment and the directory.
    async fn commit(&mut self) -> Result<(), WalError> {
        self.flush().await?;
        self.sync_active().await?;
        self.sync_dir().await
    }

    fn next_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::next_index)
    }

    async fn append(&mut self, seq: u64, entries: &[Entry]) -> Result<(), WalError> {
        for entry in entries {
            if self.segments.is_empty() {
                self.create_segment(entry.index).await?;
            }
            let frame = frame_len(entry.payload.len());
            let Some(active) = self.segments.last() else {
                return Err(WalError::Stopped);
            };
            if active.next_index() != entry.index {
                // The view checked contiguity; disagreeing here is a bug, and writing
                // on would put a gap on disk.
                return Err(WalError::NotContiguous {
                    expected: active.next_index(),
                    got: entry.index,
                });
            }
            if !active.offsets.is_empty()
                && active.end + self.buf.len() as u64 + frame > self.config.segment_size
            {
                self.roll(entry.index).await?;
            }
            let Some(active) = self.segments.last_mut() else {
                return Err(WalError::Stopped);
            };
            let offset = active.end + self.buf.len() as u64;
            encode_record(&mut self.buf, entry.index, &entry.payload);
            active.offsets.push(offset);
            self.located.push(Located {
                index: entry.index,
                seq,
                segment: active.first_index,
                offset,
                len: entry.payload.len() as u32,
            });
            self.counters.written(1, frame);
            if self.config.sync == SyncMode::PerEntry {
                self.flush().await?;
                self.sync_active().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(active) = self.segments.last_mut() else {
            return Err(WalError::Stopped);
        };
        let buf = std::mem::take(&mut self.buf);
        let (result, mut buf) = active.file.write_all_at(buf, active.end).await;
        result.map_err(|e| WalError::io("write", &active.path, e))?;
        active.end += buf.len() as u64;
        buf.clear();
        self.buf = buf;
        self.dirty = true;
        Ok(())
    }

    async fn sync_active(&mut self) -> Result<(), WalError> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(active) = self.segments.last() {
            let started = std::time::Instant::now();
            active
                .file
                .sync_data()
                .await
                .map_err(|e| WalError::io("fdatasync", &active.path, e))?;
            self.counters.synced(started.elapsed());
        }
        self.dirty = false;
        Ok(())
    }

    async fn sync_dir(&mut self) -> Result<(), WalError> {
        if !self.dir_dirty {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.dir_file
            .sync_all()
            .await
            .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        self.counters.synced(started.elapsed());
        self.dir_dirty = false;
        Ok(())
    }

    /// Closes the active segment (synced in full) and starts one at `first_index`.
    async fn roll(&mut self, first_index: u64) -> Result<(), WalError> {
        self.flush().await?;
        self.sync_active().await?;
        self.create_segment(first_index).await
    }

    async fn create_segment(&mut self, first_index: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_file_name(first_index));
        let io = |op| {
            let path = path.clone();
            move |e| WalError::io(op, path, e)
        };
        let std = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create segment"))?;
        let file =
            tokio_uring::fs::File::from_std(std.try_clone().map_err(io("duplicate handle of"))?);
        let reader = std.try_clone().map_err(io("duplicate handle of"))?;
        let header = encode_segment_header(first_index).to_vec();
        let (result, _) = file.write_all_at(header, 0).await;
        result.map_err(io("write header of"))?;
        if self.config.preallocate {
            file.fallocate(0, self.config.segment_size, libc::FALLOC_FL_KEEP_SIZE)
                .await
                .map_err(io("preallocate"))?;
        }
        file.sync_data().await.map_err(io("fdatasync"))?;
        self.counters.sync();
        self.dir_dirty = true;
        write_view(&self.view).add_segment(
            first_index,
            SegmentHandle {
                file: Arc::new(reader),
                path: path.clone(),
            },
        );
        self.segments.push(Segment {
            first_index,
            path,
            file,
            std,
            offsets: Vec::new(),
            end: SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    async fn delete_segment(&mut self, position: usize) -> Result<(), WalError> {
        if position + 1 == self.segments.len() {
            self.dirty = false;
        }
        let segment = self.segments.remove(position);
        write_view(&self.view).remove_segment(segment.first_index);
        drop(segment.file);
        tokio_uring::fs::remove_file(&segment.path)
            .await
            .map_err(|e| WalError::io("remove segment", &segment.path, e))?;
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes `index` and everything after it, durably before anything else is
    /// written, so that new records never land on top of old ones a crash could
    /// bring back.
    async fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        self.flush().await?;
        match self.next_index() {
            Some(next) if index < next => {}
            _ => return Ok(()),
        }
        while self.segments.len() > 1
            && self.segments.last().is_some_and(|s| s.first_index >= index)
        {
            self.delete_segment(self.segments.len() - 1).await?;
        }
        let Some(active) = self.segments.last_mut() else {
            return Ok(());
        };
        if index >= active.first_index {
            let keep = (index - active.first_index) as usize;
            if let Some(&cut) = active.offsets.get(keep) {
                active
                    .std
                    .set_len(cut)
                    .map_err(|e| WalError::io("truncate", &active.path, e))?;
                active.offsets.truncate(keep);
                active.end = cut;
                self.dirty = true;
            }
        } else {
            self.delete_segment(0).await?;
            self.create_segment(index).await?;
        }
        self.sync_active().await?;
        self.sync_dir().await
    }

    /// Deletes the segments whose entries are all at or below `index`. When that is
    /// every entry, the log restarts as an empty segment at `index + 1`, so the next
    /// index survives a restart.
    async fn purge_upto(&mut self, index: u64) -> Result<(), WalError> {
        self.flush().await?;
        let new_first = index.saturating_add(1);
        match self.next_index() {
            None => self.create_segment(new_first).await?,
            Some(next) if next <= new_first => {
                let keep_last = self
                    .segments
                    .last()
                    .is_some_and(|s| s.offsets.is_empty() && s.first_index == new_first);
                let delete = self.segments.len() - usize::from(keep_last);
                for _ in 0..delete {
                    self.delete_segment(0).await?;
                }
                if !keep_last {
                    self.create_segment(new_first).await?;
                }
            }
            Some(_) => {
                while self.segments.len() > 1 && self.segments[0].next_index() <= new_first {
                    self.delete_segment(0).await?;
                }
            }
        }
        Ok(())
    }

    async fn save_meta(&mut self, payload: &Bytes) -> Result<(), WalError> {
        let tmp = self.dir.join(META_TMP_FILE);
        let path = self.dir.join(META_FILE);
        let std = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| WalError::io("create", &tmp, e))?;
        let file = tokio_uring::fs::File::from_std(std);
        let (result, _) = file.write_all_at(encode_meta(payload), 0).await;
        result.map_err(|e| WalError::io("write", &tmp, e))?;
        file.sync_all()
            .await
            .map_err(|e| WalError::io("fsync", &tmp, e))?;
        self.counters.sync();
        file.close()
            .await
            .map_err(|e| WalError::io("close", &tmp, e))?;
        tokio_uring::fs::rename(&tmp, &path)
            .await
            .map_err(|e| WalError::io("rename meta.tmp over", &path, e))?;
        self.dir_dirty = true;
        Ok(())
    }
}
