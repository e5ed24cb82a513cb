//! One master's Raft node: its log store and state machine opened from its directory,
//! openraft started over a transport, and a shutdown that leaves the directory free to
//! be opened again.
//!
//! Directory layout: `log/` is the WAL (segments, `meta`, `LOCK`), `state/` holds the
//! `snapshot` file. The WAL's lock keeps a second process off both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fleet_wal::{SyncLatency, Wal, WalConfig, WalStats};

use crate::apply::Apply;
use crate::error::NodeError;
use crate::log_store::LogStore;
use crate::network::{Network, Transport};
use crate::state_machine::{StateMachineStore, StateView};
use crate::types::{NodeId, Raft, TypeConfig};

const LOG_DIR: &str = "log";
const STATE_DIR: &str = "state";
/// How long a shutdown waits for openraft's tasks to let go of the WAL.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub raft: openraft::Config,
    pub wal: WalConfig,
}

impl Default for NodeConfig {
    /// Heartbeats every 100 ms and elections after 300 to 600 ms of silence: a failed
    /// leader is replaced in well under a second on a LAN. A snapshot every 5,000 entries,
    /// keeping 1,000 entries behind it for followers that lag a little.
    fn default() -> Self {
        NodeConfig {
            raft: openraft::Config {
                cluster_name: "fleet-masters".to_string(),
                heartbeat_interval: 100,
                election_timeout_min: 300,
                election_timeout_max: 600,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
                max_in_snapshot_log_to_keep: 1_000,
                ..openraft::Config::default()
            },
            wal: WalConfig::default(),
        }
    }
}

/// A running Raft node of the application state `A`.
pub struct RaftNode<A: Apply> {
    id: NodeId,
    dir: PathBuf,
    raft: Raft<A>,
    state: StateView<A>,
    wal: Weak<Wal>,
}

impl<A: Apply> RaftNode<A> {
    /// Opens (or creates) the node's storage in `dir` and starts openraft. A new node
    /// waits to be made part of a cluster (`raft().initialize(..)` on one node, or
    /// `add_learner`/`change_membership` from the leader); a restarted one rejoins.
    pub async fn start<T: Transport<A>>(
        id: NodeId,
        dir: impl AsRef<Path>,
        config: &NodeConfig,
        transport: Arc<T>,
    ) -> Result<Self, NodeError> {
        let dir = dir.as_ref().to_path_buf();
        let raft_config = config
            .raft
            .clone()
            .validate()
            .map_err(|e| NodeError::Start {
                id,
                reason: e.to_string(),
            })?;
        // Opening reads and checks every segment: off the async threads.
        let (log_dir, state_dir, wal_config) =
            (dir.join(LOG_DIR), dir.join(STATE_DIR), config.wal.clone());
        let (log_store, state_machine) = tokio::task::spawn_blocking(move || {
            let log_store = LogStore::<TypeConfig<A>>::open(&log_dir, wal_config)?;
            let state_machine = StateMachineStore::<A>::open(&state_dir)?;
            Ok::<_, NodeError>((log_store, state_machine))
        })
        .await
        .map_err(|e| NodeError::Start {
            id,
            reason: format!("opening storage panicked: {e}"),
        })??;
        let wal = Arc::downgrade(log_store.wal());
        let state = state_machine.view();
        // Retry unreachable peers at the heartbeat interval (see `Network::new`).
        let retry = Duration::from_millis(raft_config.heartbeat_interval);
        let raft = Raft::<A>::new(
            id,
            Arc::new(raft_config),
            Network::new(transport, retry),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| NodeError::Start {
            id,
            reason: e.to_string(),
        })?;
        Ok(RaftNode {
            id,
            dir,
            raft,
            state,
            wal,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn raft(&self) -> &Raft<A> {
        &self.raft
    }

    /// The applied state, to read.
    pub fn state(&self) -> &StateView<A> {
        &self.state
    }

    /// The log WAL's counters (None once the node is shut down).
    pub fn wal_stats(&self) -> Option<WalStats> {
        self.wal.upgrade().map(|wal| wal.stats())
    }

    /// How long the log WAL's fsyncs took (None once the node is shut down).
    pub fn wal_sync_latency(&self) -> Option<SyncLatency> {
        self.wal.upgrade().map(|wal| wal.sync_latency())
    }

    /// Stops openraft and waits until its tasks have dropped the log, so that the WAL has
    /// finished what was queued, released its lock, and the node can be started again.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let id = self.id;
        self.raft.shutdown().await.map_err(|e| NodeError::Raft {
            id,
            reason: format!("shutdown failed: {e}"),
        })?;
        drop(self.raft);
        let started = Instant::now();
        while self.wal.strong_count() > 0 {
            if started.elapsed() > RELEASE_TIMEOUT {
                return Err(NodeError::Timeout {
                    what: format!("node {id} to release its log after shutdown"),
                    after: RELEASE_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
