//! The registry in the masters' Raft log: [`ReplicatedRegistry::apply`] proposes the op
//! with `client_write` on the Raft runtime and blocks the calling thread (the core's
//! driver) until a quorum of masters has it in an fsynced log and this master applied it,
//! or until the write timeout. Reads come from the applied state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleet_raft::{ClientWriteError, Raft, StateView};
use openraft::error::RaftError;

use super::{Registry, RegistryError, RegistryOp, RegistryState};

/// Upper bounds of the commit-latency histogram's buckets, in microseconds (100 us to 5 s).
pub const COMMIT_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 5_000_000,
];

/// How long registry writes took from proposal to commit and apply, for /metrics: the
/// quorum's fsync plus a round trip. Shared between the registry and the HTTP thread.
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// Writes per bucket of [`COMMIT_BUCKETS_US`] (not cumulative); the last counts the rest.
    counts: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    failed: AtomicU64,
}

impl CommitTimes {
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = COMMIT_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(COMMIT_BUCKETS_US.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative), the sum in microseconds, and failed writes.
    pub fn read(&self) -> (Vec<u64>, u64, u64) {
        (
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.sum_us.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A [`Registry`] whose writes go through Raft. Built by the master's replica for each
/// term it leads; the core owns it while it serves.
pub struct ReplicatedRegistry {
    raft: Raft<RegistryState>,
    state: StateView<RegistryState>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    times: Arc<CommitTimes>,
}

impl ReplicatedRegistry {
    /// `runtime` runs the Raft node; `timeout` bounds how long one write may block the
    /// caller (a leader cut off from its peers never commits).
    pub fn new(
        raft: Raft<RegistryState>,
        state: StateView<RegistryState>,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
        times: Arc<CommitTimes>,
    ) -> Self {
        ReplicatedRegistry {
            raft,
            state,
            runtime,
            timeout,
            times,
        }
    }
}

fn refusal(e: RaftError<fleet_raft::NodeId, ClientWriteError>) -> String {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_node {
            Some(node) => format!(
                "this master is no longer the leader (the leader is {})",
                node.addr
            ),
            None => "this master is no longer the leader".to_owned(),
        },
        other => other.to_string(),
    }
}

impl Registry for ReplicatedRegistry {
    fn apply(&mut self, op: RegistryOp) -> Result<(), RegistryError> {
        let what = op.describe();
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let raft = self.raft.clone();
        // The driver thread is not the Raft runtime's: propose there and wait here.
        self.runtime.spawn(async move {
            let _ = tx.send(raft.client_write(op).await);
        });
        let outcome = match rx.recv_timeout(self.timeout) {
            Ok(Ok(_)) => {
                self.times.record(started.elapsed());
                return Ok(());
            }
            Ok(Err(e)) => refusal(e),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => format!(
                "not committed by a quorum of masters within {:?}",
                self.timeout
            ),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                "the Raft node stopped".to_owned()
            }
        };
        self.times.failed.fetch_add(1, Ordering::Relaxed);
        Err(RegistryError::Unavailable {
            op: what,
            reason: outcome,
        })
    }

    fn snapshot(&self) -> RegistryState {
        self.state.read(RegistryState::clone)
    }
}
