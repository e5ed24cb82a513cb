//! Three masters in one process, each with its own WAL directory: a leader is elected
//! and 1,000 writes through it reach every state machine.

mod common;

use common::{TIMEOUT, assert_converged, config, write};
use fleet_raft::testing::{InProcessCluster, KeyValue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_on_a_thousand_writes() {
    let base = tempfile::tempdir().unwrap();
    let cluster = InProcessCluster::<KeyValue>::start(base.path(), &[1, 2, 3], config(5_000))
        .await
        .unwrap();
    let leader = cluster.initialize(TIMEOUT).await.unwrap();

    write(&cluster, leader, 0..1_000).await;

    assert_converged(&cluster, 1_000).await;
    for node in cluster.nodes() {
        let stats = node.wal_stats().unwrap();
        assert!(stats.entries >= 1_000, "node {}: {stats:?}", node.id());
    }
    cluster.shutdown().await.unwrap();
}
