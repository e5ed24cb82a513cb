//! All three masters stop and start again from their directories: every acknowledged
//! write is still there, rebuilt from each node's snapshot and the log after it.

mod common;

use common::{TIMEOUT, assert_converged, config, write};
use fleet_raft::SNAPSHOT_FILE;
use fleet_raft::testing::{InProcessCluster, KeyValue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_disk_keeps_every_acknowledged_write() {
    let base = tempfile::tempdir().unwrap();
    let ids = [1, 2, 3];
    let cluster = InProcessCluster::<KeyValue>::start(base.path(), &ids, config(400))
        .await
        .unwrap();
    let leader = cluster.initialize(TIMEOUT).await.unwrap();
    write(&cluster, leader, 0..1_000).await;
    assert_converged(&cluster, 1_000).await;
    let last_before = cluster
        .node(leader)
        .unwrap()
        .raft()
        .metrics()
        .borrow()
        .last_log_index;
    cluster.shutdown().await.unwrap();
    for id in ids {
        let snapshot = base.path().join(format!("node-{id}/state/{SNAPSHOT_FILE}"));
        assert!(snapshot.exists(), "node {id} left no snapshot");
    }

    let cluster = InProcessCluster::<KeyValue>::start(base.path(), &ids, config(400))
        .await
        .unwrap();
    // Each node reloads its log and snapshot before any leader is elected.
    for node in cluster.nodes() {
        node.raft()
            .wait(Some(TIMEOUT))
            .metrics(
                |m| m.last_log_index >= last_before && m.snapshot.is_some(),
                format!("node {} reloads its log", node.id()),
            )
            .await
            .unwrap();
    }
    assert_converged(&cluster, 1_000).await;
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    write(&cluster, leader, 1_000..1_100).await;
    assert_converged(&cluster, 1_100).await;
    cluster.shutdown().await.unwrap();
}
