//! A QUIC endpoint that serves only Raft: the master's endpoint configuration and socket
//! buffers (`quic.rs`, `udp.rs`) with the replica's serving side (`replica::transport`),
//! for any replicated state. `fleet bench raft` runs its nodes on it, so it measures the
//! masters' own Raft network without the rest of a master.

use std::net::SocketAddr;

use fleet_proto::frame::{ALPN_RAFT, close};
use fleet_proto::tls::CertifiedKey;
use fleet_raft::{Apply, Raft};
use tokio::task::JoinHandle;

use super::replica::transport;
use super::{ServerError, quic, udp};

/// A listening endpoint answering peer masters' Raft RPCs with one node; closed on drop.
pub struct RaftEndpoint {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl RaftEndpoint {
    /// Binds `listen` (port 0: any) and serves `raft` to clients presenting a master
    /// certificate of the CA `ca_pem`; this node presents `identity`. Call inside a tokio
    /// runtime.
    pub fn start<A: Apply>(
        listen: SocketAddr,
        ca_pem: &str,
        identity: &CertifiedKey,
        raft: Raft<A>,
    ) -> Result<RaftEndpoint, ServerError> {
        let bind = |source| ServerError::Bind {
            what: "Raft QUIC (UDP)",
            addr: listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind)?;
        let addr = socket.local_addr().map_err(bind)?;
        udp::grow_buffers(&socket, udp::QUIC_SOCKET_BUFFER);
        let config = quic::server_config(ca_pem, identity)?;
        let endpoint = quic::endpoint(config, socket).map_err(bind)?;
        let accept = tokio::spawn(accept_loop(endpoint.clone(), raft));
        Ok(RaftEndpoint {
            endpoint,
            addr,
            accept,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RaftEndpoint {
    fn drop(&mut self) {
        self.accept.abort();
        self.endpoint
            .close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node stopped");
    }
}

/// What the master's endpoint does with a `fleet-raft/1` connection, with every other
/// protocol refused.
async fn accept_loop<A: Apply>(endpoint: quinn::Endpoint, raft: Raft<A>) {
    while let Some(incoming) = endpoint.accept().await {
        let raft = raft.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(%peer, "refused peer: {}", quic::handshake_failure(&e));
                    return;
                }
            };
            if quic::alpn(&conn).as_deref() != Some(ALPN_RAFT) {
                quic::close_conn(
                    &conn,
                    close::PROTOCOL_ERROR,
                    "this endpoint serves only Raft",
                );
                return;
            }
            if !transport::is_master_peer(&conn) {
                tracing::warn!(%peer, "refusing a Raft connection without a master certificate");
                quic::close_conn(
                    &conn,
                    close::REFUSED,
                    "Raft peers must present a master certificate of the cluster CA",
                );
                return;
            }
            transport::serve_connection(conn, raft).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use fleet_proto::tls::{self, Role};
    use fleet_raft::testing::KeyValue;
    use fleet_raft::{Node, NodeConfig, RaftNode, RaftRequest, RaftResponse, Transport};
    use openraft::Vote;
    use openraft::raft::VoteRequest;

    use super::*;
    use crate::shell::replica::transport::QuicTransport;

    fn vote() -> RaftRequest<KeyValue> {
        RaftRequest::Vote(VoteRequest::new(Vote::new(1, 2), None))
    }

    /// A master's certificate gets an answer from the node; an agent's, of the same CA,
    /// does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_raft_to_masters_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = tls::new_ca("test").unwrap();
        let master = |name: &str| tls::issue(&ca, Role::Master, name, &[]).unwrap();
        let server = master("one");
        let node = RaftNode::<KeyValue>::start(
            1,
            dir.path(),
            &NodeConfig::default(),
            Arc::new(QuicTransport::new(&ca.cert_pem, &server, false).unwrap()),
        )
        .await
        .unwrap();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let endpoint =
            RaftEndpoint::start(listen, &ca.cert_pem, &server, node.raft().clone()).unwrap();
        let peer = Node::new(endpoint.local_addr().to_string());

        let from_master = QuicTransport::new(&ca.cert_pem, &master("two"), false).unwrap();
        let answer = from_master.send(1, &peer, vote()).await.unwrap();
        assert!(matches!(answer, RaftResponse::Vote(Ok(_))), "{answer:?}");

        let agent = tls::issue(&ca, Role::Agent, "agent", &[]).unwrap();
        let from_agent = QuicTransport::new(&ca.cert_pem, &agent, false).unwrap();
        let refused = from_agent.send(1, &peer, vote()).await.unwrap_err();
        assert!(
            refused.to_string().contains("master certificate"),
            "an agent certificate: {refused}"
        );

        drop(endpoint);
        node.shutdown().await.unwrap();
    }
}
