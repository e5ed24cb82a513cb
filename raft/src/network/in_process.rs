//! A transport inside one process, for tests and benchmarks: each connected node has a
//! channel, and a task that answers what arrives on it with the node's `Raft`. A node
//! that is not connected (never was, or was disconnected when it stopped) is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use super::{RaftRequest, RaftResponse, Transport, TransportError, serve};
use crate::apply::Apply;
use crate::types::{Node, NodeId, Raft};

struct Call<A: Apply> {
    request: RaftRequest<A>,
    reply: oneshot::Sender<RaftResponse>,
}

type Inboxes<A> = HashMap<NodeId, mpsc::UnboundedSender<Call<A>>>;

/// The nodes of one in-process cluster. Clones share the same nodes.
pub struct InProcessNetwork<A: Apply> {
    inboxes: Arc<Mutex<Inboxes<A>>>,
}

impl<A: Apply> Clone for InProcessNetwork<A> {
    fn clone(&self) -> Self {
        InProcessNetwork {
            inboxes: Arc::clone(&self.inboxes),
        }
    }
}

impl<A: Apply> Default for InProcessNetwork<A> {
    fn default() -> Self {
        InProcessNetwork {
            inboxes: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<A: Apply> InProcessNetwork<A> {
    pub fn new() -> Self {
        Self::default()
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, Inboxes<A>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `raft` reachable as node `id` (replacing what was there), serving each
    /// request in a task of its own. Call from within a tokio runtime.
    pub fn connect(&self, id: NodeId, raft: Raft<A>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Call<A>>();
        self.inboxes().insert(id, tx);
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                let raft = raft.clone();
                tokio::spawn(async move {
                    let response = serve(&raft, call.request).await;
                    // The caller may have given up (openraft's RPC deadline): fine.
                    drop(call.reply.send(response));
                });
            }
        });
    }

    /// Makes node `id` unreachable; requests already delivered are still answered.
    pub fn disconnect(&self, id: NodeId) {
        self.inboxes().remove(&id);
    }
}

impl<A: Apply> Transport<A> for InProcessNetwork<A> {
    async fn send(
        &self,
        target: NodeId,
        _node: &Node,
        request: RaftRequest<A>,
    ) -> Result<RaftResponse, TransportError> {
        let unreachable = |reason: &str| TransportError::Unreachable {
            target,
            reason: reason.to_string(),
        };
        let inbox = self
            .inboxes()
            .get(&target)
            .cloned()
            .ok_or_else(|| unreachable("not connected"))?;
        let (reply, response) = oneshot::channel();
        inbox
            .send(Call { request, reply })
            .map_err(|_| unreachable("its inbox is closed"))?;
        response
            .await
            .map_err(|_| unreachable("it stopped before answering"))
    }
}
