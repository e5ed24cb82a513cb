//! Shared by the cluster tests: a fast-electing node config, numbered writes whose final
//! state is known, and a check that every node holds exactly that state.
#![allow(dead_code)]

use std::ops::Range;
use std::time::Duration;

use fleet_raft::testing::{InProcessCluster, KeyValue, KvOp, WriteLoad, run_writes};
use fleet_raft::{NodeConfig, NodeId};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Elections after 150 to 300 ms without a heartbeat (every 50 ms). A snapshot every
/// `snapshot_every` entries, with no log kept behind it: a node that was away must be
/// sent the snapshot.
pub fn config(snapshot_every: u64) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.raft.heartbeat_interval = 50;
    config.raft.election_timeout_min = 150;
    config.raft.election_timeout_max = 300;
    config.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(snapshot_every);
    config.raft.max_in_snapshot_log_to_keep = 0;
    config
}

pub fn op(i: u64) -> KvOp {
    KvOp::Set {
        key: format!("key-{i:05}"),
        value: format!("value-{i}"),
    }
}

/// Writes ops `range` through node `leader` with 8 concurrent clients.
pub async fn write(cluster: &InProcessCluster<KeyValue>, leader: NodeId, range: Range<u64>) {
    let raft = cluster.node(leader).expect("leader runs").raft().clone();
    let offset = range.start;
    let load = WriteLoad {
        writes: range.end - range.start,
        clients: 8,
    };
    let report = run_writes(&raft, load, move |i| op(offset + i))
        .await
        .expect("writes are acknowledged");
    assert_eq!(report.writes, range.end - range.start);
}

/// Waits until every running node has applied the leader's whole log, then checks each
/// holds exactly ops `0..writes`, each applied once.
pub async fn assert_converged(cluster: &InProcessCluster<KeyValue>, writes: u64) {
    let leader = cluster.wait_for_leader(TIMEOUT).await.expect("a leader");
    let last = cluster
        .node(leader)
        .expect("leader runs")
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .expect("the leader has a log");
    cluster
        .wait_applied(last, TIMEOUT)
        .await
        .expect("all apply");
    for node in cluster.nodes() {
        let (ops, entries) = node.state().read(|kv| (kv.ops_applied, kv.entries.clone()));
        assert_eq!(ops, writes, "node {} applied {ops} ops", node.id());
        assert_eq!(entries.len() as u64, writes, "node {}", node.id());
        for i in 0..writes {
            let KvOp::Set { key, value } = op(i) else {
                unreachable!()
            };
            assert_eq!(
                entries.get(&key),
                Some(&value),
                "node {} key {key}",
                node.id()
            );
        }
    }
}
