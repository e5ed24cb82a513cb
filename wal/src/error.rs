//! The crate's one error type. It is `Clone` because one failed fsync fails every
//! caller whose batch rode in that group commit.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("WAL {op} '{}': {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("corrupt WAL file '{}' at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("append of index {got} rejected: the log's next index is {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("entry {index} has {len} bytes; a record holds at most {max}")]
    TooLarge { index: u64, len: usize, max: usize },
    #[error("append of an empty batch")]
    EmptyBatch,
    /// After a failed write or fsync the log's state on disk is unknown (a retried
    /// fsync may report success for pages the kernel already dropped), so every later
    /// operation fails until the WAL is reopened and recovered.
    #[error("WAL is failed after an earlier error: {0}")]
    Failed(Box<WalError>),
    #[error("WAL directory '{}' is already open (its LOCK file is held)", dir.display())]
    InUse { dir: PathBuf },
    #[error("WAL writer thread has stopped")]
    Stopped,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
