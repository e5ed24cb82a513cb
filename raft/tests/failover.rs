//! The leader stops: another is elected within 2 s and takes writes; the stopped node,
//! restarted from its directories, catches up (by snapshot: the log it missed has been
//! purged) and can itself become leader again.

mod common;

use std::time::{Duration, Instant};

use common::{TIMEOUT, assert_converged, config, write};
use fleet_raft::testing::{InProcessCluster, KeyValue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_fails_over_and_the_old_leader_rejoins() {
    let base = tempfile::tempdir().unwrap();
    let config = config(250);
    let lease = Duration::from_millis(config.raft.election_timeout_max);
    let mut cluster = InProcessCluster::<KeyValue>::start(base.path(), &[1, 2, 3], config)
        .await
        .unwrap();
    let first = cluster.initialize(TIMEOUT).await.unwrap();
    write(&cluster, first, 0..300).await;

    // Stop the leader; time until one of the others leads.
    let stopped = Instant::now();
    cluster.stop(first).await.unwrap();
    let shutdown = stopped.elapsed();
    let second = cluster
        .wait_for_leader(Duration::from_secs(2))
        .await
        .unwrap();
    let election = stopped.elapsed();
    println!(
        "leader {first} stopped (its shutdown took {} ms); node {second} leads, as all \
         running nodes agree, {} ms after it stopped",
        shutdown.as_millis(),
        election.as_millis()
    );
    assert_ne!(second, first);
    assert!(
        election < Duration::from_secs(2),
        "election took {election:?}"
    );

    // Writes go on; snapshots every 250 entries purge the log the stopped node missed.
    write(&cluster, second, 300..800).await;
    cluster
        .node(second)
        .unwrap()
        .raft()
        .wait(Some(TIMEOUT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 300),
            "the leader purges what node 1 missed",
        )
        .await
        .unwrap();

    // The old leader comes back from disk and catches up.
    cluster.restart(first).await.unwrap();
    assert_converged(&cluster, 800).await;
    let rejoined = cluster
        .node(first)
        .unwrap()
        .raft()
        .metrics()
        .borrow()
        .clone();
    assert!(
        rejoined.snapshot.is_some_and(|s| s.index >= 300),
        "{rejoined:?}"
    );

    // Make it leader: the others stop electing, the leader stops its heartbeats, and
    // once their lease has run out the old leader asks for votes.
    for node in cluster.nodes().filter(|n| n.id() != first) {
        node.raft().runtime_config().elect(false);
        node.raft().runtime_config().heartbeat(false);
    }
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    cluster
        .node(first)
        .unwrap()
        .raft()
        .trigger()
        .elect()
        .await
        .unwrap();
    cluster
        .node(first)
        .unwrap()
        .raft()
        .wait(Some(TIMEOUT))
        .current_leader(first, "old leader leads again")
        .await
        .unwrap();
    for node in cluster.nodes() {
        node.raft().runtime_config().elect(true);
        node.raft().runtime_config().heartbeat(true);
    }
    write(&cluster, first, 800..900).await;
    assert_converged(&cluster, 900).await;
    cluster.shutdown().await.unwrap();
}
