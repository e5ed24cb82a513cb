//! Proposal batching in front of openraft's `client_write`: many callers' ops become one
//! log entry, so one leader fsync carries all of them. [`Batched`] is the state the log
//! drives (an entry is a `Vec` of the application's ops, applied in order); [`Proposer`]
//! is how callers write to it.
//!
//! Why: openraft 0.9's core appends each `client_write` as its own entry and waits for
//! that entry's `LogFlushed` before it handles the next message, so the leader's WAL sees
//! one entry per fsync however many writes are waiting, and group commit only helps the
//! followers. Batching above openraft is the one place the leader's writes can be grouped.
//!
//! How: callers queue ops ([`Proposer::submit`] / [`Proposer::propose`]). One task takes
//! everything queued (up to `max_batch` ops) and hands it to openraft as one entry; while
//! that entry is replicated, committed and applied (`max_in_flight` entries at a time, one
//! by default), the ops that arrive wait in the queue and form the next entry. So the
//! batch grows with the load by itself, and a lone op goes out at once. Entries reach
//! openraft in queue order, so ops are applied in the order they were submitted. Each
//! caller gets its own op's outcome, or, when the entry fails, the entry's error: every op
//! of a failed entry fails.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use openraft::error::ClientWriteError;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apply::Apply;
use crate::types::{ClientWriteResponse, Node, NodeId, Raft};

/// The state `A` with a log of op batches: one entry holds a `Vec` of `A`'s ops, applied
/// one after the other, and answers a `Vec` of their outcomes in the same order.
/// Snapshots are `A`'s own bytes. Dereferences to `A` for reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batched<A>(pub A);

impl<A> Deref for Batched<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.0
    }
}

impl<A> DerefMut for Batched<A> {
    fn deref_mut(&mut self) -> &mut A {
        &mut self.0
    }
}

impl<A: Apply> Apply for Batched<A> {
    type Op = Vec<A::Op>;
    type Outcome = Vec<A::Outcome>;
    type Error = A::Error;

    fn apply(&mut self, ops: Vec<A::Op>) -> Vec<A::Outcome> {
        ops.into_iter().map(|op| self.0.apply(op)).collect()
    }

    fn snapshot(&self) -> Result<Vec<u8>, A::Error> {
        self.0.snapshot()
    }

    fn restore(bytes: &[u8]) -> Result<Self, A::Error> {
        A::restore(bytes).map(Batched)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ProposerConfig {
    /// Ops in one log entry, at most.
    pub max_batch: usize,
    /// Entries handed to openraft and not yet answered, at most. openraft 0.9 does not
    /// group entries in flight into one fsync: its core appends each one and waits for
    /// that append's flush before it handles the next message (even the replies that
    /// would commit the earlier entry), so a second entry in flight costs a leader fsync
    /// of its own and splits the ops that would have gone into one entry.
    pub max_in_flight: usize,
    /// Ops waiting for an entry, at most; `submit` waits for room beyond that.
    pub queue: usize,
}

impl Default for ProposerConfig {
    /// Up to 1,024 ops per entry, one entry in flight: with two, `fleet bench raft`
    /// measured the same writes/s within its noise and fewer writes per leader fsync
    /// (bench/RESULTS.md); on a disk with an IOPS budget fewer fsyncs is what counts.
    fn default() -> Self {
        ProposerConfig {
            max_batch: 1_024,
            max_in_flight: 1,
            queue: 65_536,
        }
    }
}

/// Why an op got no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// The node does not lead (or stopped leading and dropped the entry): the op was not
    /// committed. `leader` is the node to send it to, when known.
    #[error("Raft node {node} does not lead (leader: {leader:?}); the op was not committed")]
    NotLeader {
        node: NodeId,
        leader: Option<NodeId>,
        leader_node: Option<Node>,
    },
    /// The node stopped before the entry was answered. The op may still be committed (a
    /// new leader commits what a quorum holds): the caller must find out, not assume.
    #[error("Raft node {node} stopped before the op's entry was answered; it may be committed")]
    Stopped { node: NodeId },
    /// openraft answered the entry with something other than its ops' outcomes.
    #[error("Raft node {node} failed the op's entry: {reason}")]
    Failed { node: NodeId, reason: String },
}

/// Counters of a proposer: `ops / entries` is the batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProposerStats {
    /// Entries handed to openraft.
    pub entries: u64,
    /// Ops in those entries.
    pub ops: u64,
}

type Reply<A> = oneshot::Sender<Result<<A as Apply>::Outcome, ProposeError>>;

struct Queued<A: Apply> {
    op: A::Op,
    reply: Reply<A>,
}

#[derive(Default)]
struct Counters {
    entries: AtomicU64,
    ops: AtomicU64,
}

/// Batches ops into log entries of `Raft<Batched<A>>`, for writers that come many at a
/// time (the master's registry). Cheap to clone; the batching task ends when every clone
/// is dropped, after the entries in flight are answered.
pub struct Proposer<A: Apply> {
    node: NodeId,
    queue: mpsc::Sender<Queued<A>>,
    counters: Arc<Counters>,
}

impl<A: Apply> Clone for Proposer<A> {
    fn clone(&self) -> Self {
        Proposer {
            node: self.node,
            queue: self.queue.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<A: Apply> Proposer<A> {
    /// Starts the batching task for `raft` (call inside a tokio runtime). Ops proposed
    /// while `raft` does not lead fail with [`ProposeError::NotLeader`].
    pub fn start(raft: Raft<Batched<A>>, config: ProposerConfig) -> Self {
        let node = raft.metrics().borrow().id;
        let (queue, queued) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(propose_batches(
            raft,
            node,
            queued,
            config,
            Arc::clone(&counters),
        ));
        Proposer {
            node,
            queue,
            counters,
        }
    }

    /// Proposes `op` and waits until it is committed and applied on this node: its
    /// outcome, or why there is none.
    pub async fn propose(&self, op: A::Op) -> Result<A::Outcome, ProposeError> {
        self.submit(op).await?.await
    }

    /// Queues `op` (waiting only for room in the queue) and returns its answer to await.
    /// Ops one caller submits are applied in the order it submitted them, even when it
    /// awaits their answers later.
    pub async fn submit(&self, op: A::Op) -> Result<PendingOp<A>, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { op, reply })
            .await
            .map_err(|_| ProposeError::Stopped { node: self.node })?;
        Ok(PendingOp {
            node: self.node,
            answer,
        })
    }

    pub fn stats(&self) -> ProposerStats {
        ProposerStats {
            entries: self.counters.entries.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
        }
    }
}

/// The answer to one submitted op: its outcome once applied, or why there is none.
pub struct PendingOp<A: Apply> {
    node: NodeId,
    answer: oneshot::Receiver<Result<A::Outcome, ProposeError>>,
}

impl<A: Apply> Future for PendingOp<A> {
    type Output = Result<A::Outcome, ProposeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let node = self.node;
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(ProposeError::Stopped { node })))
    }
}

/// The batching task: takes a slot for an entry in flight, then everything queued (up to
/// `max_batch`), and hands it to openraft from this one task, so entries enter the log in
/// queue order. Answers are awaited on tasks of their own.
async fn propose_batches<A: Apply>(
    raft: Raft<Batched<A>>,
    node: NodeId,
    mut queued: mpsc::Receiver<Queued<A>>,
    config: ProposerConfig,
    counters: Arc<Counters>,
) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // The semaphore is never closed.
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        if queued.recv_many(&mut batch, max_batch).await == 0 {
            return; // every Proposer is gone and the queue is empty
        }
        // The callers the last answer woke are queueing their next ops: let them run
        // before the entry is closed, or it would hold only the first of them. Stop
        // once letting them run brings nothing more.
        while batch.len() < max_batch {
            tokio::task::yield_now().await;
            let before = batch.len();
            while batch.len() < max_batch {
                match queued.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            if batch.len() == before {
                break;
            }
        }
        let (ops, replies): (Vec<A::Op>, Vec<Reply<A>>) = batch
            .drain(..)
            .map(|Queued { op, reply }| (op, reply))
            .unzip();
        counters.entries.fetch_add(1, Ordering::Relaxed);
        counters.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
        match raft.client_write_ff(ops).await {
            Ok(answer) => {
                tokio::spawn(async move {
                    match answer.await {
                        Ok(result) => answer_ops::<A>(node, result, replies),
                        Err(_) => fail_all::<A>(replies, ProposeError::Stopped { node }),
                    }
                    // Answers first, so that the next entry finds their callers' next ops.
                    drop(slot);
                });
            }
            Err(_) => fail_all::<A>(replies, ProposeError::Stopped { node }),
        }
    }
}

/// Hands each op of an answered entry its own outcome, or every op the entry's error.
fn answer_ops<A: Apply>(
    node: NodeId,
    result: Result<ClientWriteResponse<Batched<A>>, ClientWriteError<NodeId, Node>>,
    replies: Vec<Reply<A>>,
) {
    let error = match result {
        Ok(response) => match response.data {
            Some(outcomes) if outcomes.len() == replies.len() => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that stopped waiting has nobody to tell.
                    let _ = reply.send(Ok(outcome));
                }
                return;
            }
            data => ProposeError::Failed {
                node,
                reason: format!(
                    "{} outcomes for an entry of {} ops",
                    data.map_or(0, |d| d.len()),
                    replies.len()
                ),
            },
        },
        Err(ClientWriteError::ForwardToLeader(forward)) => ProposeError::NotLeader {
            node,
            leader: forward.leader_id,
            leader_node: forward.leader_node,
        },
        Err(e) => ProposeError::Failed {
            node,
            reason: e.to_string(),
        },
    };
    fail_all::<A>(replies, error);
}

fn fail_all<A: Apply>(replies: Vec<Reply<A>>, error: ProposeError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{KeyValue, KvOp};

    fn set(key: &str, value: &str) -> KvOp {
        KvOp::Set {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_batch_applies_its_ops_in_order_and_answers_each() {
        let mut state = Batched::<KeyValue>::default();
        let outcomes = state.apply(vec![set("a", "1"), set("a", "2"), set("b", "3")]);
        assert_eq!(outcomes, vec![None, Some("1".to_string()), None]);
        assert_eq!(state.ops_applied, 3);
        assert_eq!(state.entries.get("a").map(String::as_str), Some("2"));
    }

    #[test]
    fn a_batched_snapshot_is_the_states_own() {
        let mut state = Batched::<KeyValue>::default();
        state.apply(vec![set("a", "1")]);
        let bytes = state.snapshot().unwrap();
        assert_eq!(bytes, state.0.snapshot().unwrap());
        assert_eq!(Batched::<KeyValue>::restore(&bytes).unwrap(), state);
    }
}
