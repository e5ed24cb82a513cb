//! The master's QUIC endpoint: accepts agent and framework connections (told apart by ALPN),
//! checks each stream's preamble, reads frames and hands them to the driver (a framework's
//! calls through its `auth::FrameworkGate` first), and writes what the driver sends back.
//! Any protocol violation closes that one connection with a reason the peer can read;
//! everyone else is unaffected. Masters' Raft connections (ALPN `fleet-raft/1`, master
//! certificates only) go to the replica; while this master does not lead, agents and
//! frameworks are closed at once with `NOT_LEADER` and the leader's address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleet_proto::frame::{
    self, ALPN_AGENT, ALPN_RAFT, ALPN_SCHEDULER, MAX_FRAME_LEN, StreamKind, close,
};
use fleet_proto::messages::agent::{AgentMessage, MasterMessage, Report};
use fleet_proto::messages::scheduler::{Call, Event};
use fleet_proto::stream::{self, StreamError};
use fleet_proto::tls::{self, CertifiedKey};
use tokio::sync::{mpsc, watch};

use super::ServerError;
use super::driver::{Outgoing, ReportBuffers, ReportFrame, ShellEvent};
use super::leadership::Leadership;
use super::net::ShardStats;
use super::replica::{ReplicaView, transport};
use crate::auth::{FrameworkGate, Refusal, Security, Verdict};
use crate::core::{ConnId, Input};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The endpoint's QUIC and TLS configuration: agents, frameworks and peer masters, the
/// latter two kinds verified against `ca_pem`; this master presents `identity`.
pub(super) fn server_config(
    ca_pem: &str,
    identity: &CertifiedKey,
) -> Result<quinn::ServerConfig, ServerError> {
    let tls = tls::server_config(ca_pem, identity, &[ALPN_AGENT, ALPN_SCHEDULER, ALPN_RAFT])
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Agents report every second and keep their own connections alive, as the SDK does;
    // the master's keep-alive is only for quiet peers. Every 2 s it was tens of thousands
    // of packets a second with 40,000 agents, enough to starve handshakes on 2 cores.
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(30))
            .map_err(|e| ServerError::Tls(e.to_string()))?,
    ));
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_concurrent_uni_streams(4u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

pub(super) fn endpoint(
    config: quinn::ServerConfig,
    socket: std::net::UdpSocket,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime found for quinn"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )
}

/// Where connections go besides the driver: whether this master leads, and its Raft node.
#[derive(Clone)]
pub(super) struct Routing {
    pub leadership: watch::Receiver<Leadership>,
    pub raft: Option<ReplicaView>,
}

/// The network shard an endpoint belongs to, and where it counts its connections.
pub(super) struct ShardRef {
    pub index: usize,
    pub stats: Arc<ShardStats>,
    /// Where report buffers come from, and go back to once the driver read them.
    pub buffers: ReportBuffers,
}

pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    events: mpsc::UnboundedSender<ShellEvent>,
    reports: mpsc::Sender<ReportFrame>,
    security: Arc<Security>,
    routing: Routing,
    shard: ShardRef,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => return },
            _ = stop.changed() => return,
        };
        let events = events.clone();
        let reports = reports.clone();
        let security = security.clone();
        let routing = routing.clone();
        let (index, stats) = (shard.index, shard.stats.clone());
        let buffers = shard.buffers.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    let _open = stats.opened(index);
                    serve_connection(conn, events, reports, buffers, security, routing).await
                }
                Err(e) => tracing::warn!(%peer, "refused peer: {}", handshake_failure(&e)),
            }
        });
    }
}

/// Why a handshake failed, in words an operator can act on: a client certificate that
/// does not chain to the cluster CA is the usual case (an agent of another cluster, or
/// certificates issued by another `fleet certs init`).
pub(super) fn handshake_failure(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("TLS handshake failed: {text} (its certificate is not issued by this cluster's CA)")
    } else if text.contains("invalid peer certificate") {
        format!("TLS handshake failed: {text}")
    } else {
        format!("QUIC handshake failed: {text}")
    }
}

/// The application protocol the handshake agreed on.
pub(super) fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
}

pub(super) fn close_conn(conn: &quinn::Connection, code: u32, reason: &str) {
    conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
}

async fn serve_connection(
    conn: quinn::Connection,
    events: mpsc::UnboundedSender<ShellEvent>,
    reports: mpsc::Sender<ReportFrame>,
    buffers: ReportBuffers,
    security: Arc<Security>,
    routing: Routing,
) {
    let peer = conn.remote_address();
    let alpn = alpn(&conn);
    if matches!(alpn.as_deref(), Some(ALPN_AGENT | ALPN_SCHEDULER)) {
        let leadership = *routing.leadership.borrow();
        if !leadership.serves() {
            tracing::debug!(%peer, "{}", leadership.refusal());
            close_conn(&conn, close::NOT_LEADER, &leadership.refusal());
            return;
        }
    }
    match alpn.as_deref() {
        Some(ALPN_RAFT) => serve_raft(conn, routing.raft),
        Some(ALPN_AGENT) => {
            if conn.peer_identity().is_none() {
                tracing::warn!(%peer, "refusing agent without a certificate of the cluster CA");
                close_conn(
                    &conn,
                    close::REFUSED,
                    "agents must present a certificate of the cluster CA",
                );
                return;
            }
            serve_agent(conn, events, reports, buffers).await;
        }
        Some(ALPN_SCHEDULER) => serve_framework(conn, events, security).await,
        other => {
            let name = other.map(String::from_utf8_lossy).unwrap_or_default();
            tracing::warn!(%peer, "refusing connection with unknown ALPN '{name}'");
            close_conn(&conn, close::PROTOCOL_ERROR, "unknown application protocol");
        }
    }
}

/// Hands a peer master's Raft connection to the replica: mutual TLS proved the peer holds
/// a certificate of the cluster CA; it must be a master's.
fn serve_raft(conn: quinn::Connection, raft: Option<ReplicaView>) {
    let peer = conn.remote_address();
    let Some(raft) = raft else {
        tracing::warn!(%peer, "refusing a Raft connection: this master is not replicated");
        close_conn(
            &conn,
            close::REFUSED,
            "this master is not replicated (no --data-dir)",
        );
        return;
    };
    if !transport::is_master_peer(&conn) {
        tracing::warn!(%peer, "refusing a Raft connection without a master certificate");
        close_conn(
            &conn,
            close::REFUSED,
            "Raft peers must present a master certificate of the cluster CA",
        );
        return;
    }
    raft.serve(conn);
}

/// Ends a session: logs why, closes the connection with the reason and tells the driver.
fn end_session(
    conn: &quinn::Connection,
    id: ConnId,
    events: &mpsc::UnboundedSender<ShellEvent>,
    what: &str,
    err: Option<StreamError>,
    agent: bool,
) {
    let reason = match &err {
        Some(e) => {
            tracing::warn!(peer = %conn.remote_address(), conn = id, "{what}: {e}; disconnecting");
            close_conn(conn, close::PROTOCOL_ERROR, &format!("{what}: {e}"));
            format!("{what}: {e}")
        }
        None => {
            let reason = conn
                .close_reason()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "stream closed".into());
            tracing::info!(peer = %conn.remote_address(), conn = id, "{what}: {reason}");
            close_conn(conn, close::NORMAL, "closed");
            reason
        }
    };
    let input = if agent {
        Input::AgentDisconnected { conn: id, reason }
    } else {
        Input::FrameworkDisconnected { conn: id, reason }
    };
    let _ = events.send(ShellEvent::Input(input));
}

async fn serve_agent(
    conn: quinn::Connection,
    events: mpsc::UnboundedSender<ShellEvent>,
    reports_tx: mpsc::Sender<ReportFrame>,
    buffers: ReportBuffers,
) {
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let peer = conn.remote_address().to_string();
    let (mut send, mut recv) = match conn.accept_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, "agent left before opening its control stream: {e}");
            return;
        }
    };
    if let Err(e) = stream::read_preamble(&mut recv, StreamKind::AgentControl).await {
        tracing::warn!(%peer, "bad agent control stream: {e}; disconnecting");
        close_conn(&conn, close::PROTOCOL_ERROR, &e.to_string());
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    let _ = events.send(ShellEvent::Open {
        conn: id,
        tx,
        connection: conn.clone(),
    });
    let _ = events.send(ShellEvent::Input(Input::AgentConnected {
        conn: id,
        peer: peer.clone(),
    }));

    // Writer: the driver's messages, in order, on the control stream.
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        if stream::write_preamble(&mut send, StreamKind::AgentControl)
            .await
            .is_err()
        {
            return;
        }
        while let Some(out) = rx.recv().await {
            let Outgoing::Agent(msg) = out else { continue };
            let refused = matches!(*msg, MasterMessage::Refused { .. });
            if let Err(e) = stream::write_message(&mut send, &*msg).await {
                tracing::debug!("agent control write failed: {e}");
                return;
            }
            if refused {
                let _ = send.finish();
                tokio::time::sleep(Duration::from_millis(100)).await;
                close_conn(&writer_conn, close::REFUSED, "registration refused");
                return;
            }
        }
    });

    // Reports: validated here, read in place by the core.
    let report_conn = conn.clone();
    let report_events = events.clone();
    let reports = tokio::spawn(async move {
        let mut recv = match report_conn.accept_uni().await {
            Ok(r) => r,
            Err(_) => return,
        };
        if let Err(e) = stream::read_preamble(&mut recv, StreamKind::AgentReport).await {
            end_session(
                &report_conn,
                id,
                &report_events,
                "bad report stream",
                Some(e),
                true,
            );
            return;
        }
        loop {
            let mut body = buffers.take();
            match stream::read_frame_into(&mut recv, MAX_FRAME_LEN, &mut body).await {
                Ok(true) => {
                    if let Err(e) = frame::access::<Report>(&body) {
                        end_session(
                            &report_conn,
                            id,
                            &report_events,
                            "bad report",
                            Some(e.into()),
                            true,
                        );
                        return;
                    }
                    // A full queue holds this stream back (and, through QUIC flow
                    // control, the agent), never the control messages.
                    if reports_tx
                        .send(ReportFrame { conn: id, body })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(false) => return,
                Err(e) => {
                    end_session(
                        &report_conn,
                        id,
                        &report_events,
                        "bad report stream",
                        Some(e),
                        true,
                    );
                    return;
                }
            }
        }
    });

    let result = loop {
        match stream::read_message::<_, AgentMessage>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(msg)) => {
                let _ = events.send(ShellEvent::Input(Input::Agent { conn: id, msg }));
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    // A peer that closed (or lost) its connection made no protocol error.
    let result = result.filter(|_| conn.close_reason().is_none());
    let quiet_end = result.is_none();
    let what = if quiet_end {
        "agent disconnected"
    } else {
        "bad agent message"
    };
    end_session(&conn, id, &events, what, result, true);
    reports.abort();
    writer.abort();
}

async fn serve_framework(
    conn: quinn::Connection,
    events: mpsc::UnboundedSender<ShellEvent>,
    security: Arc<Security>,
) {
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let peer = conn.remote_address().to_string();
    let (_control_send, mut recv) = match conn.accept_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, "framework left before opening its control stream: {e}");
            return;
        }
    };
    if let Err(e) = stream::read_preamble(&mut recv, StreamKind::SchedulerControl).await {
        tracing::warn!(%peer, "bad framework control stream: {e}; disconnecting");
        close_conn(&conn, close::PROTOCOL_ERROR, &e.to_string());
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    // The gate's refusals go straight to the writer, ahead of the core.
    let refusals = tx.clone();
    let _ = events.send(ShellEvent::Open {
        conn: id,
        tx,
        connection: conn.clone(),
    });
    let _ = events.send(ShellEvent::Input(Input::FrameworkConnected {
        conn: id,
        peer: peer.clone(),
    }));

    // Events go on a stream the master opens once there is a first event to send.
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        let mut send: Option<quinn::SendStream> = None;
        while let Some(out) = rx.recv().await {
            let Outgoing::Framework(event) = out else {
                continue;
            };
            if send.is_none() {
                let mut s = match writer_conn.open_uni().await {
                    Ok(s) => s,
                    Err(_) => return,
                };
                if stream::write_preamble(&mut s, StreamKind::SchedulerEvents)
                    .await
                    .is_err()
                {
                    return;
                }
                send = Some(s);
            }
            let fatal = matches!(*event, Event::Error { fatal: true, .. });
            let Some(s) = send.as_mut() else { return };
            if stream::write_message(s, &*event).await.is_err() {
                return;
            }
            if fatal {
                let _ = s.finish();
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        }
    });

    let mut gate = FrameworkGate::new(security);
    let result = loop {
        match stream::read_message::<_, Call>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(call)) => match gate.check(call) {
                Verdict::Pass(call) => {
                    let _ = events.send(ShellEvent::Input(Input::Framework { conn: id, call }));
                }
                Verdict::Answered => {}
                Verdict::Refuse(refusal) => {
                    refuse_framework(&conn, id, &events, &refusals, refusal, writer).await;
                    return;
                }
            },
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    // A peer that closed (or lost) its connection made no protocol error.
    let result = result.filter(|_| conn.close_reason().is_none());
    let quiet_end = result.is_none();
    let what = if quiet_end {
        "framework disconnected"
    } else {
        "bad framework call"
    };
    // Let queued events (e.g. a final ERROR) drain before closing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    end_session(&conn, id, &events, what, result, false);
    writer.abort();
}

/// Ends a framework session the gate refused: a fatal ERROR saying why, then the close with
/// the same reason, and the driver is told the connection is gone.
async fn refuse_framework(
    conn: &quinn::Connection,
    id: ConnId,
    events: &mpsc::UnboundedSender<ShellEvent>,
    refusals: &mpsc::UnboundedSender<Outgoing>,
    refusal: Refusal,
    writer: tokio::task::JoinHandle<()>,
) {
    let message = refusal.to_string();
    tracing::warn!(
        peer = %conn.remote_address(),
        conn = id,
        principal = %refusal.principal(),
        "framework refused: {}",
        refusal.detail()
    );
    let _ = refusals.send(Outgoing::Framework(Box::new(Event::Error {
        message: message.clone(),
        fatal: true,
    })));
    // The writer finishes its stream after a fatal ERROR and returns.
    if tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        tracing::debug!(conn = id, "the refusal was not written within 1 s");
    }
    close_conn(conn, close::REFUSED, &message);
    let _ = events.send(ShellEvent::Input(Input::FrameworkDisconnected {
        conn: id,
        reason: message,
    }));
}
