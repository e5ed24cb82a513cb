//! Several masters' Raft nodes in one process over an [`InProcessNetwork`], each with its
//! own directory: for tests of elections, failover and restarts, and for benchmarks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::apply::Apply;
use crate::error::NodeError;
use crate::network::InProcessNetwork;
use crate::node::{NodeConfig, RaftNode};
use crate::types::{Node, NodeId};

const POLL: Duration = Duration::from_millis(2);

pub struct InProcessCluster<A: Apply> {
    base: PathBuf,
    config: NodeConfig,
    network: Arc<InProcessNetwork<A>>,
    nodes: BTreeMap<NodeId, RaftNode<A>>,
}

impl<A: Apply> InProcessCluster<A> {
    /// Starts nodes `ids`, node `i` in `base/node-<i>` (kept: a second `start` on the
    /// same `base` restarts them from disk), all connected. A new cluster still has to be
    /// [initialized](Self::initialize).
    pub async fn start(
        base: impl AsRef<Path>,
        ids: &[NodeId],
        config: NodeConfig,
    ) -> Result<Self, NodeError> {
        let mut cluster = InProcessCluster {
            base: base.as_ref().to_path_buf(),
            config,
            network: Arc::new(InProcessNetwork::new()),
            nodes: BTreeMap::new(),
        };
        for &id in ids {
            cluster.restart(id).await?;
        }
        Ok(cluster)
    }

    pub fn dir_of(&self, id: NodeId) -> PathBuf {
        self.base.join(format!("node-{id}"))
    }

    pub fn node(&self, id: NodeId) -> Option<&RaftNode<A>> {
        self.nodes.get(&id)
    }

    /// The running nodes, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &RaftNode<A>> {
        self.nodes.values()
    }

    /// Makes every running node a voter, from the node with the lowest id, and waits
    /// for a leader.
    pub async fn initialize(&self, timeout: Duration) -> Result<NodeId, NodeError> {
        let members: BTreeMap<NodeId, Node> = self
            .nodes
            .keys()
            .map(|&id| (id, Node::new(format!("in-process:{id}"))))
            .collect();
        let Some(first) = self.nodes.values().next() else {
            return Err(NodeError::Raft {
                id: 0,
                reason: "a cluster of no nodes cannot be initialized".to_string(),
            });
        };
        first
            .raft()
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft {
                id: first.id(),
                reason: format!("initialize: {e}"),
            })?;
        self.wait_for_leader(timeout).await
    }

    /// Waits until a running node is leader and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, NodeError> {
        let started = Instant::now();
        loop {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            if started.elapsed() > timeout {
                return Err(NodeError::Timeout {
                    what: "a leader".to_string(),
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The leader every running node follows, if they agree and it is running and leads.
    /// (A node alone calling itself leader may be one that has just been deposed.)
    pub fn leader(&self) -> Option<NodeId> {
        let mut agreed = None;
        for node in self.nodes.values() {
            let current = node.raft().metrics().borrow().current_leader;
            match (current, agreed) {
                (Some(id), None) => agreed = Some(id),
                (Some(id), Some(other)) if id == other => {}
                _ => return None,
            }
        }
        let id = agreed?;
        let leads = self.nodes.get(&id)?.raft().metrics().borrow().state == ServerState::Leader;
        leads.then_some(id)
    }

    /// Waits until every running node has applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), NodeError> {
        for node in self.nodes.values() {
            node.raft()
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), format!("node {} applies", node.id()))
                .await
                .map_err(|e| NodeError::Timeout {
                    what: format!("node {} to apply index {index}: {e}", node.id()),
                    after: timeout,
                })?;
        }
        Ok(())
    }

    /// Stops node `id`: unreachable at once, then shut down (its directory stays).
    pub async fn stop(&mut self, id: NodeId) -> Result<(), NodeError> {
        self.network.disconnect(id);
        match self.nodes.remove(&id) {
            Some(node) => node.shutdown().await,
            None => Ok(()),
        }
    }

    /// Starts node `id` from its directory (a new one if it has none) and connects it.
    pub async fn restart(&mut self, id: NodeId) -> Result<(), NodeError> {
        self.stop(id).await?;
        let node =
            RaftNode::start(id, self.dir_of(id), &self.config, Arc::clone(&self.network)).await?;
        self.network.connect(id, node.raft().clone());
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }
}
