//! What can stop a Raft node's storage from opening: the crate's boundary error. Once
//! running, storage failures reach openraft as its `StorageError`, built here too.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use fleet_wal::WalError;
use openraft::{AnyError, StorageIOError};

use crate::codec::CodecError;
use crate::types::{NodeId, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The WAL refused to open; a damaged log names its file and offset.
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("Raft log meta record in '{}' is unreadable: {source}", dir.display())]
    Meta {
        dir: PathBuf,
        #[source]
        source: CodecError,
    },
    #[error(
        "Raft log in '{}' starts at index {first}, but its meta record says only entries \
         up to index {purged_next} (exclusive) were purged: entries are missing",
        dir.display()
    )]
    MissingEntries {
        dir: PathBuf,
        first: u64,
        purged_next: u64,
    },
    #[error("Raft log entry {index} in '{}' is unreadable: {reason}", dir.display())]
    Entry {
        dir: PathBuf,
        index: u64,
        reason: String,
    },
    #[error("snapshot file '{}' at offset {offset}: {reason}", file.display())]
    CorruptSnapshot {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("snapshot {op} '{}': {source}", path.display())]
    SnapshotIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot '{}' could not be restored by the application: {reason}", file.display())]
    Restore { file: PathBuf, reason: String },
    #[error("Raft node {id} could not start: {reason}")]
    Start { id: NodeId, reason: String },
    #[error("Raft node {id}: {reason}")]
    Raft { id: NodeId, reason: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
}

impl NodeError {
    pub(crate) fn snapshot_io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        NodeError::SnapshotIo {
            op,
            path: path.into(),
            source,
        }
    }
}

pub(crate) fn read_logs(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

pub(crate) fn write_logs(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

pub(crate) fn write_vote(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_vote(AnyError::new(e)).into()
}
