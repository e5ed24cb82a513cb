//! openraft's state machine side (`RaftStateMachine`, `RaftSnapshotBuilder`): committed
//! entries applied, in memory, to the application's [`Apply`] state; snapshots of that
//! state written to the node's `snapshot` file and installed from the leader's.
//!
//! The state itself is not written on every apply: after a restart it is rebuilt from
//! the snapshot, and openraft re-applies the committed entries after it from the log.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use crate::apply::Apply;
use crate::error::NodeError;
use crate::snapshot_file::{self, SNAPSHOT_FILE};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// The application state and how far into the log it is.
struct Applied<A> {
    app: A,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Shared<A> {
    dir: PathBuf,
    applied: RwLock<Applied<A>>,
    /// The snapshot `get_current_snapshot` hands out, always the one in the file. Held
    /// while the file is written, so two writers never share `snapshot.tmp`.
    current: Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    built: AtomicU64,
}

impl<A> Shared<A> {
    fn applied(&self) -> std::sync::RwLockReadGuard<'_, Applied<A>> {
        // A panic in `apply` leaves the lock poisoned; the node is broken either way,
        // and readers are better served by the state than by a second panic.
        self.applied.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn applied_mut(&self) -> std::sync::RwLockWriteGuard<'_, Applied<A>> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a snapshot file and makes it current. A built snapshot older than the
    /// current one (an install overtook it) is not written; an installed one always is.
    fn store(&self, meta: &SnapshotMeta, data: &[u8], force: bool) -> Result<(), NodeError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if !force
            && let Some((newer, _)) = current.as_ref()
            && newer.last_log_id > meta.last_log_id
        {
            return Ok(());
        }
        snapshot_file::write(&self.dir, meta, data)?;
        *current = Some((meta.clone(), data.to_vec()));
        Ok(())
    }
}

/// The state machine openraft drives (`Raft::new` takes it).
pub struct StateMachineStore<A> {
    shared: Arc<Shared<A>>,
}

/// Builds a snapshot of the state as it is when openraft asks for it.
pub struct SnapshotBuilder<A> {
    shared: Arc<Shared<A>>,
}

/// Read access to the applied state for the rest of the master (its `/state`, its
/// allocator's view of roles and quotas). Cheap to clone.
pub struct StateView<A> {
    shared: Arc<Shared<A>>,
}

impl<A> Clone for StateView<A> {
    fn clone(&self) -> Self {
        StateView {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A: Apply> StateView<A> {
    /// Runs `f` on the state. Applying waits meanwhile: keep `f` short.
    pub fn read<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        f(&self.shared.applied().app)
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.shared.applied().last_applied
    }
}

impl<A: Apply> StateMachineStore<A> {
    /// Opens the state machine kept in `dir`: restores the state from the snapshot file
    /// if there is one (a damaged file fails, naming file and offset), else starts empty.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, NodeError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| NodeError::snapshot_io("create directory", &dir, e))?;
        let (applied, current) = match snapshot_file::read(&dir)? {
            Some((meta, data)) => {
                let app = A::restore(&data).map_err(|e| NodeError::Restore {
                    file: dir.join(SNAPSHOT_FILE),
                    reason: e.to_string(),
                })?;
                let applied = Applied {
                    app,
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                };
                (applied, Some((meta, data)))
            }
            None => (
                Applied {
                    app: A::default(),
                    last_applied: None,
                    membership: StoredMembership::default(),
                },
                None,
            ),
        };
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                dir,
                applied: RwLock::new(applied),
                current: Mutex::new(current),
                built: AtomicU64::new(0),
            }),
        })
    }

    pub fn view(&self) -> StateView<A> {
        StateView {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Runs a snapshot file write off the async threads (it fsyncs twice).
async fn store_blocking<A: Apply>(
    shared: &Arc<Shared<A>>,
    meta: &SnapshotMeta,
    data: Vec<u8>,
    force: bool,
) -> Result<Vec<u8>, StorageError> {
    let (shared, meta_copy) = (Arc::clone(shared), meta.clone());
    let write_error = |e: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), e);
    tokio::task::spawn_blocking(move || {
        shared.store(&meta_copy, &data, force)?;
        Ok::<_, NodeError>(data)
    })
    .await
    .map_err(|e| write_error(AnyError::new(&e)))?
    .map_err(|e| write_error(AnyError::new(&e)).into())
}

impl<A: Apply> RaftSnapshotBuilder<TypeConfig<A>> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<A>, StorageError> {
        let (last_log_id, last_membership, data) = {
            let applied = self.shared.applied();
            let data = applied
                .app
                .snapshot()
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            (applied.last_applied, applied.membership.clone(), data)
        };
        let built = self.shared.built.fetch_add(1, Ordering::Relaxed);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let snapshot_id = match &last_log_id {
            Some(id) => format!("{}-{}-{millis}-{built}", id.leader_id.term, id.index),
            None => format!("none-{millis}-{built}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let data = store_blocking(&self.shared, &meta, data, false).await?;
        tracing::debug!(%meta, bytes = data.len(), "built snapshot");
        Ok(Snapshot::<A> {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: Apply> RaftStateMachine<TypeConfig<A>> for StateMachineStore<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.applied();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<A::Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry<A>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut outcomes = Vec::with_capacity(entries.size_hint().0);
        let mut applied = self.shared.applied_mut();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(None),
                EntryPayload::Normal(op) => outcomes.push(Some(applied.app.apply(op))),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    outcomes.push(None);
                }
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let app = A::restore(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        // Durable before the state changes: a crash after this restarts from it.
        let data = store_blocking(&self.shared, meta, data, true).await?;
        *self.shared.applied_mut() = Applied {
            app,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        tracing::debug!(%meta, bytes = data.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<A>>, StorageError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(current.as_ref().map(|(meta, data)| Snapshot::<A> {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
