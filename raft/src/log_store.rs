//! The Raft log on a fleet-wal WAL: openraft's `RaftLogStorage` and `RaftLogReader`.
//! Each Raft entry is one WAL entry with the same index, its payload the postcard-encoded
//! openraft entry; the vote, the last purged log id and the committed log id live in the
//! WAL's meta record.
//!
//! Durability follows openraft's contract: `append` hands its `LogFlushed` callback to the
//! WAL, which runs it on the writer thread after the fsync (group commit); `save_vote`,
//! `truncate` and the meta half of `purge` return once durable. The committed id is a hint
//! (openraft re-applies up to it at start), so it is written at most every
//! [`COMMITTED_SAVE_INTERVAL`] rather than with every commit, which would add a meta-file
//! fsync to every group commit.

use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_wal::{Wal, WalConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogIdOptionExt, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::error::{NodeError, read_logs, write_logs, write_vote};
use crate::types::{LogId, NodeId, StorageError, Vote};

/// The longest a changed committed id waits before it is written to the meta record.
pub const COMMITTED_SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// First byte of the meta record: the layout of what follows.
const META_VERSION: u8 = 1;

/// What the WAL's meta record holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LogMeta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

impl LogMeta {
    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut bytes = vec![META_VERSION];
        bytes.extend(codec::encode("Raft log meta record", self)?);
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.split_first() {
            Some((&META_VERSION, rest)) => codec::decode("Raft log meta record", rest),
            Some((&version, _)) => Err(CodecError::Version {
                what: "Raft log meta record",
                version,
            }),
            None => Err(CodecError::Version {
                what: "Raft log meta record",
                version: 0,
            }),
        }
    }
}

/// The Raft log of one master. openraft owns it (`Raft::new`); the replication tasks read
/// through [`LogReader`]s that share its WAL.
pub struct LogStore<C> {
    wal: Arc<Wal>,
    meta: LogMeta,
    saved_committed: Option<LogId>,
    saved_at: Instant,
    _config: PhantomData<fn() -> C>,
}

/// Reads entries for openraft's replication tasks; cheap to clone.
pub struct LogReader<C> {
    wal: Arc<Wal>,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            wal: Arc::clone(&self.wal),
            _config: PhantomData,
        }
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    /// Opens the log in `dir` (the WAL's directory). A damaged WAL fails with the WAL's
    /// error, naming file and offset; so does a log whose entries do not decode or do not
    /// continue where the meta record says the log was purged. Nothing wrong is served.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<Self, NodeError> {
        let dir = dir.as_ref();
        let (wal, recovery) = Wal::open(dir, config)?;
        let meta = match wal.meta() {
            Some(bytes) => LogMeta::decode(&bytes).map_err(|source| NodeError::Meta {
                dir: dir.to_path_buf(),
                source,
            })?,
            None => LogMeta::default(),
        };
        let purged_next = meta.last_purged.next_index();
        if let Some(first) = wal.first_index()
            && first > purged_next
        {
            return Err(NodeError::MissingEntries {
                dir: dir.to_path_buf(),
                first,
                purged_next,
            });
        }
        // Purge deletes whole segments only: entries the meta record calls purged can
        // still be on disk. Drop them from the view so that nobody reads them.
        if let Some(purged) = &meta.last_purged
            && wal.first_index().is_some_and(|first| first <= purged.index)
        {
            wal.purge_upto(purged.index)?.wait()?;
        }
        let store = LogStore {
            wal: Arc::new(wal),
            saved_committed: meta.committed,
            meta,
            saved_at: Instant::now(),
            _config: PhantomData,
        };
        // The ends of the log must decode to the indexes they are stored under.
        for index in [store.wal.first_index(), store.wal.last_index()] {
            if let Some(index) = index.filter(|_| store.wal.last_index().is_some()) {
                read_entry::<C>(&store.wal, index)?;
            }
        }
        tracing::debug!(
            dir = %dir.display(),
            entries = recovery.entries,
            vote = ?store.meta.vote,
            last_purged = ?store.meta.last_purged,
            committed = ?store.meta.committed,
            "opened Raft log"
        );
        Ok(store)
    }

    /// The WAL underneath, for its statistics (entries per fsync) and to see when the
    /// last handle is gone after a shutdown.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    async fn save_meta(&mut self) -> Result<(), NodeError> {
        let bytes = self.meta.encode().map_err(|source| NodeError::Meta {
            dir: self.wal.dir().to_path_buf(),
            source,
        })?;
        let durable = self.wal.save_meta(bytes)?;
        self.saved_committed = self.meta.committed;
        self.saved_at = Instant::now();
        durable.await?;
        Ok(())
    }
}

impl<C> Drop for LogStore<C> {
    fn drop(&mut self) {
        // Leave the latest committed id behind; the WAL writes what is queued before it
        // stops, so there is nothing to wait for here.
        if self.meta.committed != self.saved_committed
            && let Ok(bytes) = self.meta.encode()
            && let Ok(durable) = self.wal.save_meta(bytes)
        {
            drop(durable);
        }
    }
}

/// Reads one entry and checks that it is the entry of `index`.
fn read_entry<C>(wal: &Wal, index: u64) -> Result<C::Entry, NodeError>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    let mut raw = wal.read(index..=index)?;
    match raw.pop() {
        Some(raw) => decode_entry::<C>(wal.dir(), &raw),
        None => Err(NodeError::Entry {
            dir: wal.dir().to_path_buf(),
            index,
            reason: "the log holds no entry at this index".to_string(),
        }),
    }
}

fn decode_entry<C>(dir: &Path, raw: &fleet_wal::Entry) -> Result<C::Entry, NodeError>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    let entry: C::Entry =
        codec::decode("Raft log entry", &raw.payload).map_err(|e| NodeError::Entry {
            dir: dir.to_path_buf(),
            index: raw.index,
            reason: e.to_string(),
        })?;
    let found = entry.get_log_id().index;
    if found != raw.index {
        return Err(NodeError::Entry {
            dir: dir.to_path_buf(),
            index: raw.index,
            reason: format!("it holds the Raft entry of index {found}"),
        });
    }
    Ok(entry)
}

fn read_entries<C, RB>(wal: &Wal, range: RB) -> Result<Vec<C::Entry>, StorageError>
where
    C: RaftTypeConfig<NodeId = NodeId>,
    RB: RangeBounds<u64>,
{
    let raw = wal.read(range).map_err(|e| read_logs(&e))?;
    raw.iter()
        .map(|raw| decode_entry::<C>(wal.dir(), raw).map_err(|e| read_logs(&e)))
        .collect()
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> Result<Vec<C::Entry>, StorageError>
    where
        RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend,
    {
        read_entries::<C, RB>(&self.wal, range)
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> Result<Vec<C::Entry>, StorageError>
    where
        RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend,
    {
        read_entries::<C, RB>(&self.wal, range)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        let last_purged_log_id = self.meta.last_purged;
        let last_in_wal = match self.wal.last_index() {
            Some(index) => Some(
                *read_entry::<C>(&self.wal, index)
                    .map_err(|e| read_logs(&e))?
                    .get_log_id(),
            ),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_in_wal.max(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            wal: Arc::clone(&self.wal),
            _config: PhantomData,
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta.vote = Some(*vote);
        self.save_meta().await.map_err(|e| write_vote(&e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.meta.committed = committed;
        if committed != self.saved_committed && self.saved_at.elapsed() >= COMMITTED_SAVE_INTERVAL {
            let bytes = self.meta.encode().map_err(|e| write_logs(&e))?;
            // Not waited for: a committed id that is lost in a crash only means less is
            // re-applied at start; the leader commits the rest again.
            drop(self.wal.save_meta(bytes).map_err(|e| write_logs(&e))?);
            self.saved_committed = committed;
            self.saved_at = Instant::now();
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Entries at or below the purge point are covered by a snapshot and would never
        // be read; openraft does not send them, and the WAL could not take them (it
        // continues after the purge point).
        let purged_next = self.meta.last_purged.next_index();
        let batch = entries
            .into_iter()
            .filter(|entry| entry.get_log_id().index >= purged_next)
            .map(|entry| {
                let payload = codec::encode("Raft log entry", &entry)?;
                Ok(fleet_wal::Entry::new(entry.get_log_id().index, payload))
            })
            .collect::<Result<Vec<_>, CodecError>>()
            .map_err(|e| write_logs(&e))?;
        if batch.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // The WAL runs this on its writer thread once the batch is fsynced: openraft
        // counts the entries as persisted (and votes and commits with them) only then.
        self.wal
            .append_then(batch, move |result| {
                callback.log_io_completed(result.map(drop).map_err(std::io::Error::other));
            })
            .map_err(|e| write_logs(&e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating Raft log");
        let durable = self
            .wal
            .truncate_from(log_id.index)
            .map_err(|e| write_logs(&e))?;
        durable.await.map_err(|e| write_logs(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self.meta.last_purged >= Some(log_id) {
            return Ok(());
        }
        tracing::debug!(%log_id, "purging Raft log");
        // The meta record says where the log starts: it is durable before any segment is
        // deleted, so a crash in between leaves entries that are merely hidden.
        self.meta.last_purged = Some(log_id);
        self.save_meta().await.map_err(|e| write_logs(&e))?;
        drop(
            self.wal
                .purge_upto(log_id.index)
                .map_err(|e| write_logs(&e))?,
        );
        Ok(())
    }
}
