//! Write load for benchmarks: N writes from M concurrent clients through the leader's
//! `client_write`, each client waiting for its write to be committed and applied before
//! sending the next; throughput and per-write latency come back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleet_wal::{SyncMode, WalStats};
use hdrhistogram::Histogram;

use super::cluster::InProcessCluster;
use super::kv::{KeyValue, KvOp};
use crate::apply::Apply;
use crate::error::NodeError;
use crate::node::NodeConfig;
use crate::types::{NodeId, Raft};

#[derive(Debug, Clone, Copy)]
pub struct WriteLoad {
    pub writes: u64,
    pub clients: usize,
}

#[derive(Debug)]
pub struct WriteReport {
    pub writes: u64,
    pub elapsed: Duration,
    /// Microseconds from `client_write` to its answer, one sample per write.
    pub latency_us: Histogram<u64>,
    /// The leader's WAL counters over the run: `entries / syncs` is the group commit.
    pub leader_wal: Option<WalStats>,
}

impl WriteReport {
    pub fn writes_per_sec(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("1 us to 60 s at 3 digits are valid bounds")
}

/// Runs `load` against `raft`, which must be the leader; `op(i)` makes the `i`th write.
pub async fn run_writes<A, F>(
    raft: &Raft<A>,
    load: WriteLoad,
    op: F,
) -> Result<WriteReport, NodeError>
where
    A: Apply,
    F: Fn(u64) -> A::Op + Send + Sync + 'static,
{
    let id = raft.metrics().borrow().id;
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(load.clients);
    for _ in 0..load.clients.max(1) {
        let (raft, next, op) = (raft.clone(), Arc::clone(&next), Arc::clone(&op));
        clients.push(tokio::spawn(async move {
            let mut latency = histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.writes {
                    return Ok::<_, NodeError>(latency);
                }
                let sent = Instant::now();
                raft.client_write(op(i))
                    .await
                    .map_err(|e| NodeError::Raft {
                        id,
                        reason: format!("write {i}: {e}"),
                    })?;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut latency_us = histogram();
    for client in clients {
        let client_latency = client.await.map_err(|e| NodeError::Raft {
            id,
            reason: format!("a client task failed: {e}"),
        })??;
        latency_us
            .add(&client_latency)
            .map_err(|e| NodeError::Raft {
                id,
                reason: format!("merging latencies: {e}"),
            })?;
    }
    Ok(WriteReport {
        writes: load.writes,
        elapsed: started.elapsed(),
        latency_us,
        leader_wal: None,
    })
}

/// A write benchmark on a fresh in-process cluster of [`KeyValue`] nodes.
#[derive(Debug, Clone, Copy)]
pub struct WriteBench {
    /// 1 or 3 (any count works; 2 has no fault tolerance).
    pub nodes: usize,
    pub load: WriteLoad,
    /// How every node's WAL syncs: group commit, or the per-entry baseline.
    pub sync: SyncMode,
}

/// Starts `bench.nodes` nodes under `base` (which should be empty), initializes them,
/// runs the load through the leader with ~40-byte `Set` ops over 1,024 keys, and stops.
pub async fn run_write_bench(base: &Path, bench: WriteBench) -> Result<WriteReport, NodeError> {
    let mut config = NodeConfig::default();
    config.wal.sync = bench.sync;
    let ids: Vec<NodeId> = (1..=bench.nodes.max(1) as NodeId).collect();
    let cluster = InProcessCluster::<KeyValue>::start(base, &ids, config).await?;
    let leader_id = cluster.initialize(Duration::from_secs(10)).await?;
    let leader = cluster.node(leader_id).ok_or(NodeError::Raft {
        id: leader_id,
        reason: "the leader is not running".to_string(),
    })?;
    let wal_before = leader.wal_stats();
    let mut report = run_writes(leader.raft(), bench.load, |i| KvOp::Set {
        key: format!("key-{}", i % 1024),
        value: format!("value-{i:020}"),
    })
    .await?;
    report.leader_wal = match (wal_before, leader.wal_stats()) {
        (Some(before), Some(after)) => Some(WalStats {
            rounds: after.rounds - before.rounds,
            syncs: after.syncs - before.syncs,
            entries: after.entries - before.entries,
            bytes: after.bytes - before.bytes,
        }),
        _ => None,
    };
    cluster.shutdown().await?;
    Ok(report)
}
