//! The proposer on three nodes in one process: every op of many concurrent callers is
//! applied exactly once, each caller's in the order it submitted them, and each outcome
//! goes back to the caller that proposed the op; an entry that fails fails every op in it.

mod common;

use std::time::Duration;

use fleet_raft::testing::InProcessCluster;
use fleet_raft::{Apply, Batched, NodeId, ProposeError, Proposer, ProposerConfig, codec};
use serde::{Deserialize, Serialize};

/// One caller's `seq`th op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Step {
    caller: u32,
    seq: u32,
}

/// Every op in the order it was applied.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Trace {
    applied: Vec<Step>,
}

impl Apply for Trace {
    type Op = Step;
    /// The op itself and where in the trace it went.
    type Outcome = (Step, u64);
    type Error = codec::CodecError;

    fn apply(&mut self, op: Step) -> (Step, u64) {
        self.applied.push(op);
        (op, self.applied.len() as u64 - 1)
    }

    fn snapshot(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode("trace", self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode("trace", bytes)
    }
}

type Cluster = InProcessCluster<Batched<Trace>>;

async fn cluster(dir: &std::path::Path) -> (Cluster, NodeId) {
    let cluster = Cluster::start(dir, &[1, 2, 3], common::config(100_000))
        .await
        .expect("nodes start");
    let leader = cluster.initialize(common::TIMEOUT).await.expect("a leader");
    (cluster, leader)
}

fn proposer(
    cluster: &Cluster,
    id: NodeId,
    max_batch: usize,
    max_in_flight: usize,
) -> Proposer<Trace> {
    let config = ProposerConfig {
        max_batch,
        max_in_flight,
        ..ProposerConfig::default()
    };
    Proposer::start(cluster.node(id).expect("node runs").raft().clone(), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_ops_apply_once_in_submission_order_and_answer_their_caller() {
    const CALLERS: u32 = 16;
    const OPS: u32 = 150;
    let dir = tempfile::tempdir().unwrap();
    let (cluster, leader) = cluster(dir.path()).await;
    // Small entries, many in flight: ordering across entries is what is tested.
    let proposer = proposer(&cluster, leader, 16, 8);
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let proposer = proposer.clone();
        callers.push(tokio::spawn(async move {
            if caller % 2 == 0 {
                // One op at a time.
                for seq in 0..OPS {
                    let step = Step { caller, seq };
                    let (applied, _) = proposer.propose(step).await.unwrap();
                    assert_eq!(applied, step, "caller {caller} got another's outcome");
                }
            } else {
                // All submitted before any answer is awaited: they span several entries.
                let mut pending = Vec::new();
                for seq in 0..OPS {
                    pending.push((seq, proposer.submit(Step { caller, seq }).await.unwrap()));
                }
                let mut last = None;
                for (seq, answer) in pending {
                    let (applied, at) = answer.await.unwrap();
                    assert_eq!(applied, Step { caller, seq });
                    assert!(last < Some(at), "caller {caller}: op {seq} applied at {at}");
                    last = Some(at);
                }
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let stats = proposer.stats();
    let total = u64::from(CALLERS * OPS);
    assert_eq!(stats.ops, total);
    assert!(
        stats.entries < stats.ops,
        "concurrent ops share entries: {stats:?}"
    );

    let last = cluster
        .node(leader)
        .unwrap()
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    cluster.wait_applied(last, common::TIMEOUT).await.unwrap();
    for node in cluster.nodes() {
        let applied = node.state().read(|t| t.applied.clone());
        assert_eq!(applied.len() as u64, total, "node {}", node.id());
        let mut next = vec![0; CALLERS as usize];
        for step in applied {
            assert_eq!(
                step.seq,
                next[step.caller as usize],
                "node {}: caller {}'s ops out of order or twice",
                node.id(),
                step.caller
            );
            next[step.caller as usize] += 1;
        }
        assert!(next.iter().all(|&n| n == OPS), "node {}", node.id());
    }
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_leader_fails_every_op_of_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, leader) = cluster(dir.path()).await;

    // On a follower every op is refused and pointed at the leader.
    let follower = cluster.nodes().map(|n| n.id()).find(|&id| id != leader);
    let on_follower = proposer(&cluster, follower.unwrap(), 1_024, 2);
    let mut pending = Vec::new();
    for seq in 0..20 {
        pending.push(on_follower.submit(Step { caller: 0, seq }).await.unwrap());
    }
    for answer in pending {
        match answer.await {
            Err(ProposeError::NotLeader { leader: to, .. }) => assert_eq!(to, Some(leader)),
            other => panic!("an op on a follower: {other:?}"),
        }
    }

    // Without its followers the leader cannot commit; then it stops too.
    let on_leader = proposer(&cluster, leader, 8, 2);
    let followers: Vec<NodeId> = cluster
        .nodes()
        .map(|n| n.id())
        .filter(|&id| id != leader)
        .collect();
    for id in followers {
        cluster.stop(id).await.unwrap();
    }
    let mut callers = Vec::new();
    for caller in 0..5 {
        let proposer = on_leader.clone();
        callers.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for seq in 0..10 {
                pending.push(proposer.submit(Step { caller, seq }).await.unwrap());
            }
            let mut failed = 0;
            for answer in pending {
                match answer.await {
                    Err(ProposeError::Stopped { .. } | ProposeError::NotLeader { .. }) => {
                        failed += 1
                    }
                    other => panic!("caller {caller}: an op without a quorum: {other:?}"),
                }
            }
            failed
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        callers.iter().all(|c| !c.is_finished()),
        "nothing commits without a quorum"
    );
    assert!(
        on_leader.stats().entries > 1,
        "ops went out in several entries"
    );
    cluster.stop(leader).await.unwrap();
    for caller in callers {
        let failed = tokio::time::timeout(common::TIMEOUT, caller)
            .await
            .expect("answers come once the leader stops")
            .unwrap();
        assert_eq!(failed, 10);
    }
    assert_eq!(on_leader.stats().ops, 50);
    // The proposer of a stopped node refuses at once.
    let after = on_leader.propose(Step { caller: 9, seq: 0 }).await;
    assert!(
        matches!(after, Err(ProposeError::Stopped { .. })),
        "{after:?}"
    );
}
