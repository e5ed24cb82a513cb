//! Raft RPCs between masters over QUIC (ALPN `fleet-raft/1`, mutual TLS: both sides
//! present master certificates of the cluster CA). One bidirectional stream per RPC: the
//! `RaftRpc` preamble and the request frame, then the response frame back; frames are a
//! u32 little-endian length and the postcard bytes of `fleet_raft::codec`.
//!
//! Outgoing RPCs use a client endpoint of their own on the Raft runtime, not the
//! master's listening endpoint: that one is driven by the driver thread, which blocks
//! while a registry write waits for this very replication.
//!
//! Generic over the replicated state: the master runs it for `RegistryState`, and
//! `fleet bench raft` runs the same code for its own state (`shell::raft_endpoint`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_proto::frame::{ALPN_RAFT, MAX_FRAME_LEN, StreamKind};
use fleet_proto::stream;
use fleet_proto::tls::{self, CertifiedKey, MASTER_SERVER_NAME};
use fleet_raft::network::serve;
use fleet_raft::{
    Apply, Node, NodeId, Raft, RaftRequest, RaftResponse, Transport, TransportError, codec,
};
use rustls::pki_types::CertificateDer;

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer silent this long is gone: its connection is dropped and made again.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The client side: one cached connection per peer.
pub struct QuicTransport {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl QuicTransport {
    /// Opens the client endpoint (IPv6 when the peers are); call on the Raft runtime.
    pub fn new(ca_pem: &str, identity: &CertifiedKey, ipv6: bool) -> Result<Self, String> {
        let tls = tls::client_config(ca_pem, Some(identity), ALPN_RAFT)
            .map_err(|e| format!("Raft TLS set-up: {e}"))?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| format!("Raft TLS set-up: {e}"))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_millis(500)));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| e.to_string())?,
        ));
        client.transport_config(Arc::new(transport));
        let bind: SocketAddr = if ipv6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| format!("cannot open the Raft client endpoint on {bind}: {e}"))?;
        endpoint.set_default_client_config(client);
        Ok(QuicTransport {
            endpoint,
            connections: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, target: NodeId) -> Option<quinn::Connection> {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections
            .get(&target)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn forget(&self, target: NodeId) {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target);
    }

    async fn connection(
        &self,
        target: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(conn) = self.cached(target) {
            return Ok(conn);
        }
        let unreachable = |reason: String| TransportError::Unreachable { target, reason };
        let connecting = self
            .endpoint
            .connect(addr, MASTER_SERVER_NAME)
            .map_err(|e| unreachable(format!("{addr}: {e}")))?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(format!("{addr}: {e}"))),
            Err(_) => {
                return Err(unreachable(format!(
                    "{addr}: no handshake within {CONNECT_TIMEOUT:?}"
                )));
            }
        };
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target, conn.clone());
        Ok(conn)
    }

    async fn exchange(
        &self,
        target: NodeId,
        addr: SocketAddr,
        request: Vec<u8>,
    ) -> Result<RaftResponse, TransportError> {
        let conn = self.connection(target, addr).await?;
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => {
                self.forget(target);
                return Err(TransportError::Unreachable {
                    target,
                    reason: format!("{addr}: {e}"),
                });
            }
        };
        let failed = |reason: String| TransportError::Failed {
            target,
            reason: format!("{addr}: {reason}"),
        };
        // A stream dies with its connection: the peer's reason for closing it (a refusal
        // names what it wants) says more than the stream's "connection lost".
        let broken = |e: String| match conn.close_reason() {
            Some(closed) => {
                self.forget(target);
                failed(closed.to_string())
            }
            None => failed(e),
        };
        stream::write_preamble(&mut send, StreamKind::RaftRpc)
            .await
            .map_err(|e| broken(e.to_string()))?;
        write_frame(&mut send, &request).await.map_err(broken)?;
        let _ = send.finish();
        let body = stream::read_frame(&mut recv, MAX_FRAME_LEN)
            .await
            .map_err(|e| broken(e.to_string()))?
            .ok_or_else(|| broken("the stream ended without a response".to_owned()))?;
        codec::decode("Raft response", &body).map_err(|e| failed(e.to_string()))
    }
}

impl<A: Apply> Transport<A> for QuicTransport {
    async fn send(
        &self,
        target: NodeId,
        node: &Node,
        request: RaftRequest<A>,
    ) -> Result<RaftResponse, TransportError> {
        let addr: SocketAddr = node.addr.parse().map_err(|e| TransportError::Unreachable {
            target,
            reason: format!("bad address '{}': {e}", node.addr),
        })?;
        let bytes =
            codec::encode("Raft request", &request).map_err(|e| TransportError::Failed {
                target,
                reason: e.to_string(),
            })?;
        self.exchange(target, addr, bytes).await
    }
}

async fn write_frame(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), String> {
    let len = u32::try_from(body.len()).map_err(|_| format!("a frame of {} bytes", body.len()))?;
    send.write_all(&len.to_le_bytes())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(body).await.map_err(|e| e.to_string())
}

/// Whether the peer of `conn` presented a master certificate (mutual TLS already proved
/// it chains to the cluster CA): only masters may speak Raft.
pub fn is_master_peer(conn: &quinn::Connection) -> bool {
    conn.peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(tls::is_master_certificate))
        .unwrap_or(false)
}

/// The server side: answers every RPC a peer master opens on `conn` with the local node.
pub async fn serve_connection<A: Apply>(conn: quinn::Connection, raft: Raft<A>) {
    let peer = conn.remote_address();
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "Raft connection ended: {e}");
                return;
            }
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_rpc(send, recv, &raft).await {
                tracing::debug!(%peer, "Raft RPC failed: {e}");
            }
        });
    }
}

async fn serve_rpc<A: Apply>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    raft: &Raft<A>,
) -> Result<(), String> {
    stream::read_preamble(&mut recv, StreamKind::RaftRpc)
        .await
        .map_err(|e| e.to_string())?;
    let body = stream::read_frame(&mut recv, MAX_FRAME_LEN)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the stream ended before a request")?;
    let request: RaftRequest<A> =
        codec::decode("Raft request", &body).map_err(|e| e.to_string())?;
    let response = serve(raft, request).await;
    let bytes = codec::encode("Raft response", &response).map_err(|e| e.to_string())?;
    write_frame(&mut send, &bytes).await?;
    let _ = send.finish();
    Ok(())
}
