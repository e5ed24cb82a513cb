//! Raft between masters: the seam a transport fills ([`Transport`]: deliver one request to
//! a peer, bring back its response), openraft's `RaftNetworkFactory`/`RaftNetwork` over
//! any such transport ([`Network`]), and the receiving side ([`serve`]).
//!
//! A transport moves [`RaftRequest`]s and [`RaftResponse`]s, which serialize (serde;
//! `crate::codec` for bytes), and says whether a peer could not be reached. It does not
//! time out calls itself: openraft cancels an RPC past its deadline. [`InProcessNetwork`]
//! is the transport for tests (and `fleet bench raft --transport channel`); the masters'
//! QUIC transport (ALPN `fleet-raft/1`, in fleet-master's `shell::replica::transport`)
//! is the production one.

mod in_process;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

pub use in_process::InProcessNetwork;

use crate::apply::Apply;
use crate::types::{Node, NodeId, Raft, TypeConfig};

/// One Raft RPC, as a transport carries it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftRequest<A: Apply> {
    AppendEntries(AppendEntriesRequest<TypeConfig<A>>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig<A>>),
}

/// The peer's answer to a [`RaftRequest`] of the same kind, its own errors included.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

impl RaftResponse {
    fn kind(&self) -> &'static str {
        match self {
            RaftResponse::AppendEntries(_) => "AppendEntries",
            RaftResponse::Vote(_) => "Vote",
            RaftResponse::InstallSnapshot(_) => "InstallSnapshot",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// Nothing reached the peer (no connection, peer stopped): openraft backs off.
    #[error("master {target} is unreachable: {reason}")]
    Unreachable { target: NodeId, reason: String },
    /// The exchange failed midway; openraft retries at once.
    #[error("Raft RPC to master {target} failed: {reason}")]
    Failed { target: NodeId, reason: String },
}

/// Carries Raft RPCs from this master to the others.
pub trait Transport<A: Apply>: Send + Sync + 'static {
    /// Delivers `request` to master `target`, whose address is `node.addr`, and returns
    /// its response.
    fn send(
        &self,
        target: NodeId,
        node: &Node,
        request: RaftRequest<A>,
    ) -> impl Future<Output = Result<RaftResponse, TransportError>> + Send;
}

/// Answers one request with the local Raft node: what a transport's receiving side runs.
pub async fn serve<A: Apply>(raft: &Raft<A>, request: RaftRequest<A>) -> RaftResponse {
    match request {
        RaftRequest::AppendEntries(rpc) => {
            RaftResponse::AppendEntries(raft.append_entries(rpc).await)
        }
        RaftRequest::Vote(rpc) => RaftResponse::Vote(raft.vote(rpc).await),
        RaftRequest::InstallSnapshot(rpc) => {
            RaftResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
    }
}

/// openraft's network over a [`Transport`]: `Raft::new` takes it.
pub struct Network<T> {
    transport: Arc<T>,
    retry: Duration,
}

impl<T> Network<T> {
    /// `retry`: how long replication to an unreachable peer waits before trying again.
    /// openraft's default is 500 ms; it should stay below the election timeout, or a
    /// leader that started before its peers leaves them without heartbeats long enough
    /// to elect another leader once they are up.
    pub fn new(transport: Arc<T>, retry: Duration) -> Self {
        Network { transport, retry }
    }
}

/// openraft's client for one peer.
pub struct PeerClient<T> {
    transport: Arc<T>,
    target: NodeId,
    node: Node,
    retry: Duration,
}

impl<A: Apply, T: Transport<A>> RaftNetworkFactory<TypeConfig<A>> for Network<T> {
    type Network = PeerClient<T>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient<T> {
        PeerClient {
            transport: Arc::clone(&self.transport),
            target,
            node: node.clone(),
            retry: self.retry,
        }
    }
}

type RpcResult<R, E = openraft::error::Infallible> =
    Result<R, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl<T> PeerClient<T> {
    async fn call<A: Apply>(&self, request: RaftRequest<A>) -> Result<RaftResponse, TransportError>
    where
        T: Transport<A>,
    {
        self.transport.send(self.target, &self.node, request).await
    }

    fn transport_error<E: std::error::Error>(
        &self,
        e: TransportError,
    ) -> RPCError<NodeId, Node, E> {
        match e {
            TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            TransportError::Failed { .. } => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn remote<R, E: std::error::Error>(
        &self,
        result: Result<R, RaftError<NodeId, E>>,
    ) -> RpcResult<R, E> {
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn mismatch<E: std::error::Error>(
        &self,
        want: &str,
        got: &RaftResponse,
    ) -> RPCError<NodeId, Node, E> {
        self.transport_error(TransportError::Failed {
            target: self.target,
            reason: format!("answered a {want} request with a {} response", got.kind()),
        })
    }
}

impl<A: Apply, T: Transport<A>> RaftNetwork<TypeConfig<A>> for PeerClient<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig<A>>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(RaftRequest::AppendEntries(rpc)).await {
            Ok(RaftResponse::AppendEntries(result)) => self.remote(result),
            Ok(other) => Err(self.mismatch("AppendEntries", &other)),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig<A>>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(RaftRequest::InstallSnapshot(rpc)).await {
            Ok(RaftResponse::InstallSnapshot(result)) => self.remote(result),
            Ok(other) => Err(self.mismatch("InstallSnapshot", &other)),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(RaftRequest::Vote(rpc)).await {
            Ok(RaftResponse::Vote(result)) => self.remote(result),
            Ok(other) => Err(self.mismatch("Vote", &other)),
            Err(e) => Err(self.transport_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;
    use openraft::{EntryPayload, Vote};

    use super::*;
    use crate::codec;
    use crate::testing::{KeyValue, KvOp};
    use crate::types::Entry;

    /// What a byte transport (QUIC) will do with a request: encode, decode, same request.
    #[test]
    fn requests_survive_encoding() {
        let entry = Entry::<KeyValue> {
            log_id: log_id(2, 1, 7),
            payload: EntryPayload::Normal(KvOp::Set {
                key: "role/dev".to_string(),
                value: "weight 2".to_string(),
            }),
        };
        let request = RaftRequest::<KeyValue>::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(2, 1, 6)),
            entries: vec![entry.clone()],
            leader_commit: Some(log_id(2, 1, 5)),
        });
        let bytes = codec::encode("request", &request).unwrap();
        let decoded: RaftRequest<KeyValue> = codec::decode("request", &bytes).unwrap();
        let RaftRequest::AppendEntries(decoded) = decoded else {
            panic!("decoded another kind of request: {decoded:?}");
        };
        assert_eq!(decoded.entries, vec![entry]);
        assert_eq!(decoded.prev_log_id, Some(log_id(2, 1, 6)));
    }
}
