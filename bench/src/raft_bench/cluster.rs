//! The nodes of one run, all in this process, each with its WAL and snapshot in its own
//! directory, over the transport asked for: the masters' QUIC (each node with a client
//! endpoint and a listening endpoint of its own on 127.0.0.1, ALPN `fleet-raft/1`, mutual
//! TLS with master certificates of a CA made for the run) or fleet-raft's channels.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_master::shell::RaftEndpoint;
use fleet_master::shell::replica::transport::QuicTransport;
use fleet_proto::tls::{self, Role};
use fleet_raft::testing::InProcessCluster;
use fleet_raft::{Apply, Node, NodeConfig, NodeId, RaftNode};
use serde::Serialize;

use crate::BenchError;

const POLL: Duration = Duration::from_millis(2);

/// How the nodes talk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftTransport {
    /// The masters' Raft transport (`shell::replica::transport`) on loopback.
    #[default]
    Quic,
    /// fleet-raft's `InProcessNetwork`: requests handed over as values, no bytes.
    Channel,
}

impl RaftTransport {
    /// What the report header says.
    pub fn describe(self) -> &'static str {
        match self {
            RaftTransport::Quic => {
                "QUIC on 127.0.0.1 (the masters' Raft transport: ALPN fleet-raft/1, mutual \
                 TLS with master certificates of a throwaway CA, one stream per RPC)"
            }
            RaftTransport::Channel => {
                "channel (fleet-raft's in-process transport: tokio channels, no \
                 serialization, no sockets)"
            }
        }
    }
}

impl std::str::FromStr for RaftTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quic" => Ok(RaftTransport::Quic),
            "channel" => Ok(RaftTransport::Channel),
            other => Err(format!(
                "unknown Raft transport '{other}': expected quic or channel"
            )),
        }
    }
}

/// A node on QUIC and the endpoint that serves it.
pub(super) struct QuicNode<A: Apply> {
    node: RaftNode<A>,
    endpoint: RaftEndpoint,
}

pub(super) enum Cluster<A: Apply> {
    Channel(InProcessCluster<A>),
    Quic(BTreeMap<NodeId, QuicNode<A>>),
}

fn raft_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Sim {
        what: "Raft cluster".into(),
        reason: e.to_string(),
    }
}

impl<A: Apply> Cluster<A> {
    /// Starts nodes 1..=`nodes`, node `i` in `base/node-<i>`, and makes them one group
    /// with a leader; returns the cluster and the leader's id.
    pub(super) async fn start(
        transport: RaftTransport,
        base: &Path,
        nodes: usize,
        config: NodeConfig,
        election: Duration,
    ) -> Result<(Self, NodeId), BenchError> {
        let ids: Vec<NodeId> = (1..=nodes as NodeId).collect();
        match transport {
            RaftTransport::Channel => {
                let cluster = InProcessCluster::start(base, &ids, config)
                    .await
                    .map_err(raft_error)?;
                let leader = cluster.initialize(election).await.map_err(raft_error)?;
                Ok((Cluster::Channel(cluster), leader))
            }
            RaftTransport::Quic => {
                let cluster = Cluster::Quic(start_quic(base, &ids, &config).await?);
                let leader = cluster.initialize(election).await?;
                Ok((cluster, leader))
            }
        }
    }

    pub(super) fn node(&self, id: NodeId) -> Option<&RaftNode<A>> {
        match self {
            Cluster::Channel(cluster) => cluster.node(id),
            Cluster::Quic(nodes) => nodes.get(&id).map(|n| &n.node),
        }
    }

    /// Every node a voter, from node 1, with its endpoint's address; then a leader.
    async fn initialize(&self, timeout: Duration) -> Result<NodeId, BenchError> {
        let Cluster::Quic(nodes) = self else {
            return Err(raft_error("only a QUIC cluster is initialized here"));
        };
        let members: BTreeMap<NodeId, Node> = nodes
            .iter()
            .map(|(&id, n)| (id, Node::new(n.endpoint.local_addr().to_string())))
            .collect();
        let first = nodes
            .values()
            .next()
            .ok_or_else(|| raft_error("a cluster of no nodes"))?;
        first
            .node
            .raft()
            .initialize(members)
            .await
            .map_err(|e| raft_error(format!("initialize: {e}")))?;
        let started = Instant::now();
        loop {
            if let Some(id) = agreed_leader(nodes.values().map(|n| &n.node)) {
                return Ok(id);
            }
            if started.elapsed() > timeout {
                return Err(raft_error(format!("no leader within {timeout:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every node, then closes the QUIC endpoints: closed first, they would fail
    /// the leader's last heartbeats, which openraft logs as errors.
    pub(super) async fn shutdown(self) -> Result<(), BenchError> {
        match self {
            Cluster::Channel(cluster) => cluster.shutdown().await.map_err(raft_error),
            Cluster::Quic(nodes) => {
                let mut endpoints = Vec::with_capacity(nodes.len());
                for n in nodes.into_values() {
                    endpoints.push(n.endpoint);
                    n.node.shutdown().await.map_err(raft_error)?;
                }
                Ok(())
            }
        }
    }
}

/// Each node as a master runs it: a master certificate, a client endpoint for its RPCs
/// (`QuicTransport`) and a listening endpoint with the master's QUIC configuration.
async fn start_quic<A: Apply>(
    base: &Path,
    ids: &[NodeId],
    config: &NodeConfig,
) -> Result<BTreeMap<NodeId, QuicNode<A>>, BenchError> {
    let tls_error = |e: tls::TlsError| raft_error(format!("certificates: {e}"));
    let ca = tls::new_ca("fleet-bench-raft").map_err(tls_error)?;
    let mut nodes = BTreeMap::new();
    for &id in ids {
        let identity = tls::issue(
            &ca,
            Role::Master,
            &format!("bench-raft-{id}"),
            &["127.0.0.1".into()],
        )
        .map_err(tls_error)?;
        let transport = QuicTransport::new(&ca.cert_pem, &identity, false).map_err(raft_error)?;
        let node = RaftNode::start(
            id,
            base.join(format!("node-{id}")),
            config,
            Arc::new(transport),
        )
        .await
        .map_err(raft_error)?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let endpoint = RaftEndpoint::start(listen, &ca.cert_pem, &identity, node.raft().clone())
            .map_err(raft_error)?;
        nodes.insert(id, QuicNode { node, endpoint });
    }
    Ok(nodes)
}

/// The leader every node follows, if they agree and it leads (a node alone calling
/// itself leader may just have been deposed).
fn agreed_leader<'a, A: Apply>(nodes: impl Iterator<Item = &'a RaftNode<A>>) -> Option<NodeId> {
    let mut agreed = None;
    let mut leads = false;
    for node in nodes {
        let metrics = node.raft().metrics().borrow().clone();
        match (metrics.current_leader, agreed) {
            (Some(id), None) => agreed = Some(id),
            (Some(id), Some(other)) if id == other => {}
            _ => return None,
        }
        if Some(node.id()) == metrics.current_leader {
            leads = metrics.state.is_leader();
        }
    }
    agreed.filter(|_| leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_by_name() {
        assert_eq!("quic".parse(), Ok(RaftTransport::Quic));
        assert_eq!("channel".parse(), Ok(RaftTransport::Channel));
        let err = "tcp".parse::<RaftTransport>().unwrap_err();
        assert!(
            err.contains("'tcp'") && err.contains("quic or channel"),
            "{err}"
        );
        assert_eq!(RaftTransport::default(), RaftTransport::Quic);
    }
}
