//! The scheduler SDK: a framework's QUIC session with the master. [`SchedulerClient`] sends
//! calls on the control stream; [`EventStream`] yields the events the master sends back.
//!
//! Wire contract: the framework opens one bidirectional stream (preamble `SchedulerControl`,
//! then `Call` frames, SUBSCRIBE first, or AUTHENTICATE then SUBSCRIBE where the master has
//! a credentials file); after SUBSCRIBE the master opens one unidirectional
//! stream (preamble `SchedulerEvents`, then `Event` frames, SUBSCRIBED first). A refusal is
//! a connection close with an application code and a reason, which is reported verbatim.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fleet_proto::frame::{self, ALPN_SCHEDULER, FrameDecoder, StreamKind};
use fleet_proto::ids::{AgentId, FrameworkId, OfferId, TaskId};
use fleet_proto::messages::scheduler::{
    Call, Event, Filters, FrameworkInfo, Operation, ReconcileTask,
};
use fleet_proto::stream::{self, StreamError};
use fleet_proto::task::{TaskInfo, TaskStatus};
use fleet_proto::tls;
use tokio::sync::Mutex;

use crate::credential::Credential;
use crate::error::ClientError;

/// How long connecting (QUIC + TLS handshake) may take before a master counts as
/// unreachable: as long as an established master may stay silent ([`MASTER_SILENCE`]),
/// which also bounds the handshake.
pub const CONNECT_TIMEOUT: Duration = MASTER_SILENCE;
/// How long the master may take to answer SUBSCRIBE.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive interval, so a framework waiting quietly for offers keeps its session.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A master silent this long is gone (a crashed leader sends no close): the session
/// ends with an error and the framework can subscribe again with another master.
pub const MASTER_SILENCE: Duration = Duration::from_secs(4);
/// How long TEARDOWN waits for the master to take the call before closing anyway.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where a master listens and the cluster CA that vouches for it.
#[derive(Clone, Debug)]
pub struct MasterEndpoint {
    /// The master's UDP (QUIC) address.
    pub addr: SocketAddr,
    /// PEM of the cluster CA certificate.
    pub ca_pem: String,
}

/// The sending half of a subscribed framework: every scheduler call.
///
/// Methods take `&self`, so the client can be shared (e.g. in an `Arc`) between the task
/// that reads events and tasks that launch or kill.
pub struct SchedulerClient {
    addr: SocketAddr,
    framework_id: FrameworkId,
    heartbeat_interval: Option<Duration>,
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
    control: Mutex<quinn::SendStream>,
    // Held so the master's end of the control stream is not stopped under it.
    _control_recv: quinn::RecvStream,
}

impl std::fmt::Debug for SchedulerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerClient")
            .field("addr", &self.addr)
            .field("framework_id", &self.framework_id)
            .finish_non_exhaustive()
    }
}

/// The receiving half: events from the master, in order.
pub struct EventStream {
    addr: SocketAddr,
    connection: quinn::Connection,
    events: quinn::RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    ended: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("addr", &self.addr)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl SchedulerClient {
    /// Connects to one master and subscribes `framework`. Returns once SUBSCRIBED arrived.
    pub async fn connect(
        master: MasterEndpoint,
        framework: FrameworkInfo,
    ) -> Result<(SchedulerClient, EventStream), ClientError> {
        Self::connect_with_suppressed(master, framework, Vec::new()).await
    }

    /// Like [`connect`](Self::connect), subscribing with offers for `suppressed_roles`
    /// suppressed from the start.
    pub async fn connect_with_suppressed(
        master: MasterEndpoint,
        framework: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(SchedulerClient, EventStream), ClientError> {
        Self::connect_as(master, framework, suppressed_roles, None).await
    }

    /// Like [`connect_with_suppressed`](Self::connect_with_suppressed), proving
    /// `credential`'s principal first (AUTHENTICATE) when one is given, as a master with a
    /// credentials file requires. A wrong secret comes back as [`ClientError::Refused`]
    /// naming the principal.
    pub async fn connect_as(
        master: MasterEndpoint,
        framework: FrameworkInfo,
        suppressed_roles: Vec<String>,
        credential: Option<&Credential>,
    ) -> Result<(SchedulerClient, EventStream), ClientError> {
        let addr = master.addr;
        let endpoint = client_endpoint(&master)?;
        let connecting = endpoint
            .connect(addr, tls::MASTER_SERVER_NAME)
            .map_err(|e| ClientError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(ClientError::Connect {
                    addr,
                    reason: format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
                });
            }
            Ok(Err(e)) => return Err(connection_error(addr, e, "connecting")),
            Ok(Ok(c)) => c,
        };
        let subscribed = tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            subscribe(addr, &connection, framework, suppressed_roles, credential),
        )
        .await;
        let (send, recv, events, framework_id, heartbeat_ms) = match subscribed {
            Err(_) => {
                connection.close(0u32.into(), b"subscribe timed out");
                return Err(ClientError::Session {
                    addr,
                    reason: format!(
                        "no answer to SUBSCRIBE within {} s",
                        SUBSCRIBE_TIMEOUT.as_secs()
                    ),
                });
            }
            Ok(result) => result?,
        };
        tracing::debug!(%addr, %framework_id, "subscribed");
        let client = SchedulerClient {
            addr,
            framework_id,
            heartbeat_interval: (heartbeat_ms > 0).then(|| Duration::from_millis(heartbeat_ms)),
            connection: connection.clone(),
            endpoint,
            control: Mutex::new(send),
            _control_recv: recv,
        };
        let events = EventStream {
            addr,
            connection,
            events,
            decoder: FrameDecoder::new(frame::MAX_FRAME_LEN),
            buf: vec![0; 64 * 1024],
            ended: false,
        };
        Ok((client, events))
    }

    /// Subscribes with whichever of `masters` leads (see [`crate::masters`]): all are
    /// tried at once, a follower's pointer to the leader is followed, and an election is
    /// waited out for up to [`crate::masters::FIND_LEADER`]. A refusal (the leader
    /// answered and said no) is returned at once.
    pub async fn connect_any(
        masters: &[MasterEndpoint],
        framework: FrameworkInfo,
    ) -> Result<(SchedulerClient, EventStream), ClientError> {
        crate::masters::connect_leader(masters, framework, Vec::new(), None).await
    }

    /// The id the master gave (or confirmed for) this framework.
    pub fn framework_id(&self) -> &FrameworkId {
        &self.framework_id
    }

    /// The master this session is with.
    pub fn master_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How often the master promised to send HEARTBEAT, when it did.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// Sends any call on the control stream.
    pub async fn call(&self, call: &Call) -> Result<(), ClientError> {
        let mut control = self.control.lock().await;
        stream::write_message(&mut *control, call)
            .await
            .map_err(|e| stream_error(self.addr, &self.connection, call.name(), e))
    }

    /// ACCEPT: uses `offer_ids` for `operations`; unused resources are declined with `filters`.
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    ) -> Result<(), ClientError> {
        self.call(&Call::Accept {
            offer_ids,
            operations,
            filters,
        })
        .await
    }

    /// Launches `tasks` on one offer (ACCEPT with one LAUNCH operation).
    pub async fn launch(&self, offer_id: OfferId, tasks: Vec<TaskInfo>) -> Result<(), ClientError> {
        self.accept(vec![offer_id], vec![Operation::Launch { tasks }], None)
            .await
    }

    /// DECLINE: returns the offers; `filters` keep them away for a while.
    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<(), ClientError> {
        self.call(&Call::Decline { offer_ids, filters }).await
    }

    /// REVIVE: unsuppresses and clears filters for `roles` (all of them when empty).
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), ClientError> {
        self.call(&Call::Revive { roles }).await
    }

    /// SUPPRESS: no more offers for `roles` (all of them when empty) until REVIVE.
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), ClientError> {
        self.call(&Call::Suppress { roles }).await
    }

    /// KILL a task; `grace` overrides the task's own kill grace period.
    pub async fn kill(
        &self,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        grace: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.call(&Call::Kill {
            task_id,
            agent_id,
            grace_ms: grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
        })
        .await
    }

    /// ACKNOWLEDGE a status update. Updates without a uuid or agent (from the master
    /// itself) need none: returns Ok(false) without sending anything.
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<bool, ClientError> {
        match acknowledgement(status) {
            Some(call) => self.call(&call).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// RECONCILE the given tasks, or all of the framework's tasks when `tasks` is empty.
    pub async fn reconcile(&self, tasks: Vec<ReconcileTask>) -> Result<(), ClientError> {
        self.call(&Call::Reconcile { tasks }).await
    }

    /// TEARDOWN: ends the framework (the master kills its tasks) and closes the session.
    pub async fn teardown(self) -> Result<(), ClientError> {
        self.call(&Call::Teardown).await?;
        {
            let mut control = self.control.lock().await;
            // A finished stream lets us wait until the master has the call before closing.
            if control.finish().is_ok() {
                let _ = tokio::time::timeout(TEARDOWN_GRACE, control.stopped()).await;
            }
        }
        self.close(b"teardown").await;
        Ok(())
    }

    /// Closes the session without TEARDOWN: the master keeps the framework (and its tasks)
    /// for its failover timeout, so a new session can take over with the same framework id.
    pub async fn disconnect(self) {
        self.close(b"disconnect").await;
    }

    async fn close(self, reason: &[u8]) {
        self.connection.close(0u32.into(), reason);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl EventStream {
    /// The next event; None once the session ended cleanly (after TEARDOWN or a close).
    /// A fatal ERROR event is returned as [`ClientError::Fatal`] and ends the stream.
    ///
    /// Cancel-safe: it may be used in `tokio::select!` without losing events.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        if self.ended {
            return None;
        }
        let result = self.next_inner().await;
        if !matches!(result, Some(Ok(_))) {
            self.ended = true;
        }
        result
    }

    async fn next_inner(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    return Some(match frame::decode::<Event>(&body) {
                        Ok(Event::Error {
                            message,
                            fatal: true,
                        }) => Err(ClientError::Fatal {
                            addr: self.addr,
                            message,
                        }),
                        Ok(event) => Ok(event),
                        Err(e) => Err(self.broken(&format!("events: {e}"))),
                    });
                }
                Ok(None) => {}
                Err(e) => return Some(Err(self.broken(&format!("events: {e}")))),
            }
            match self.events.read(&mut self.buf).await {
                Ok(Some(n)) => self.decoder.push(&self.buf[..n]),
                Ok(None) => {
                    return match self.decoder.finish() {
                        Ok(()) => None,
                        Err(e) => Some(Err(self.broken(&format!("events: {e}")))),
                    };
                }
                Err(quinn::ReadError::ConnectionLost(quinn::ConnectionError::LocallyClosed)) => {
                    return None;
                }
                Err(quinn::ReadError::ConnectionLost(e)) => {
                    return Some(Err(connection_error(self.addr, e, "reading events")));
                }
                Err(e) => return Some(Err(self.broken(&format!("reading events: {e}")))),
            }
        }
    }

    fn broken(&self, reason: &str) -> ClientError {
        match self.connection.close_reason() {
            Some(e) => connection_error(self.addr, e, "reading events"),
            None => ClientError::Session {
                addr: self.addr,
                reason: reason.to_owned(),
            },
        }
    }

    /// The master this stream comes from.
    pub fn master_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The ACKNOWLEDGE call for a status update, if it needs one.
pub fn acknowledgement(status: &TaskStatus) -> Option<Call> {
    Some(Call::Acknowledge {
        agent_id: status.agent_id.clone()?,
        task_id: status.task_id.clone(),
        uuid: status.uuid?,
    })
}

fn client_endpoint(master: &MasterEndpoint) -> Result<quinn::Endpoint, ClientError> {
    let tls_config = tls::client_config(&master.ca_pem, None, ALPN_SCHEDULER)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls_config)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(MASTER_SILENCE)
            .map_err(|e| ClientError::Tls(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if master.addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect {
        addr: master.addr,
        reason: format!("cannot open a UDP socket on {bind}: {e}"),
    })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

type Subscribed = (
    quinn::SendStream,
    quinn::RecvStream,
    quinn::RecvStream,
    FrameworkId,
    u64,
);

async fn subscribe(
    addr: SocketAddr,
    connection: &quinn::Connection,
    framework: FrameworkInfo,
    suppressed_roles: Vec<String>,
    credential: Option<&Credential>,
) -> Result<Subscribed, ClientError> {
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| connection_error(addr, e, "opening the control stream"))?;
    let io = |e| stream_error(addr, connection, "SUBSCRIBE", e);
    stream::write_preamble(&mut send, StreamKind::SchedulerControl)
        .await
        .map_err(io)?;
    if let Some(credential) = credential {
        stream::write_message(&mut send, &credential.authenticate_call())
            .await
            .map_err(io)?;
    }
    let call = Call::Subscribe {
        framework,
        suppressed_roles,
    };
    stream::write_message(&mut send, &call).await.map_err(io)?;
    let mut events = connection
        .accept_uni()
        .await
        .map_err(|e| connection_error(addr, e, "waiting for the event stream"))?;
    let io = |e| stream_error(addr, connection, "event stream", e);
    stream::read_preamble(&mut events, StreamKind::SchedulerEvents)
        .await
        .map_err(io)?;
    let first = stream::read_message::<_, Event>(&mut events, frame::MAX_FRAME_LEN)
        .await
        .map_err(io)?;
    match first {
        Some(Event::Subscribed {
            framework_id,
            heartbeat_interval_ms,
        }) => Ok((send, recv, events, framework_id, heartbeat_interval_ms)),
        Some(Event::Error { message, .. }) => Err(ClientError::Refused {
            addr,
            reason: message,
        }),
        Some(other) => Err(ClientError::Session {
            addr,
            reason: format!(
                "expected SUBSCRIBED as the first event, got {}",
                other.name()
            ),
        }),
        None => Err(match connection.close_reason() {
            Some(e) => connection_error(addr, e, "subscribing"),
            None => ClientError::Session {
                addr,
                reason: "event stream ended before SUBSCRIBED".into(),
            },
        }),
    }
}

/// Maps a connection-level failure; an application close is the master's refusal.
fn connection_error(addr: SocketAddr, e: quinn::ConnectionError, doing: &str) -> ClientError {
    if let quinn::ConnectionError::ApplicationClosed(close) = &e
        && let Some(hint) = fleet_proto::leader::hint(close.error_code.into_inner(), &close.reason)
    {
        return ClientError::NotLeader {
            addr,
            leader: match hint {
                fleet_proto::leader::LeaderHint::At(leader) => Some(leader),
                fleet_proto::leader::LeaderHint::Unknown => None,
            },
        };
    }
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => ClientError::Refused {
            addr,
            reason: close_reason_text(&close),
        },
        quinn::ConnectionError::TimedOut if doing == "connecting" => ClientError::Connect {
            addr,
            reason: format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
        },
        other if doing == "connecting" => ClientError::Connect {
            addr,
            reason: other.to_string(),
        },
        other => ClientError::Session {
            addr,
            reason: format!("{doing}: {other}"),
        },
    }
}

/// Maps a stream failure, preferring the connection's close reason when it has one (a
/// stream error is usually just the echo of the connection closing).
fn stream_error(
    addr: SocketAddr,
    connection: &quinn::Connection,
    doing: &str,
    e: StreamError,
) -> ClientError {
    if let Some(reason) = connection.close_reason() {
        return connection_error(addr, reason, doing);
    }
    if let StreamError::Io(io) = &e {
        let lost = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
            .and_then(|r| match r {
                quinn::ReadError::ConnectionLost(c) => Some(c.clone()),
                _ => None,
            });
        if let Some(c) = lost {
            return connection_error(addr, c, doing);
        }
    }
    ClientError::Session {
        addr,
        reason: format!("{doing}: {e}"),
    }
}

fn close_reason_text(close: &quinn::ApplicationClose) -> String {
    let text = String::from_utf8_lossy(&close.reason).into_owned();
    if text.is_empty() {
        format!("connection closed with code {}", close.error_code)
    } else {
        text
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
