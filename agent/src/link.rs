//! The agent's link to the master, on its own tokio thread (quinn needs tokio): connects
//! over QUIC with the agent's certificate, registers (or re-registers with its id and
//! tasks), then carries master messages to the task lifecycle, status updates back, and a
//! report every interval on a stream of its own. Reconnects with backoff when the link
//! drops; tasks keep running meanwhile and their updates wait, unacknowledged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_proto::frame::{self, ALPN_AGENT, MAX_FRAME_LEN, StreamKind};
use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::{
    AgentInfo, AgentMessage, MasterMessage, Report, TaskUsage, Usage,
};
use fleet_proto::stream::{self, StreamError};
use fleet_proto::task::{Reason, unix_millis};
use fleet_proto::tls::{self, CertifiedKey, MASTER_SERVER_NAME};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::Checkpoint;
use crate::containerizer::ContainerEvent;
use crate::ebpf::UsageProbes;
use crate::executors::Executors;
use crate::http::{Limits, Publisher};
use crate::tasks::{Action, Tasks};

/// How the link reaches the master.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub masters: Vec<SocketAddr>,
    pub ca_pem: String,
    pub identity: CertifiedKey,
    pub info: AgentInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach master at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("master at {addr} refused this agent: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    #[error("link to master at {addr} failed: {source}")]
    Stream {
        addr: SocketAddr,
        source: StreamError,
    },
    #[error("link to master at {addr} lost: {reason}")]
    Lost { addr: SocketAddr, reason: String },
    /// The master does not lead the replicated masters; `leader` is where it said to go.
    #[error("master at {addr} is not the leader{}", match leader {
        Some(l) => format!("; the leader is {l}"),
        None => "; no leader is elected yet".to_owned(),
    })]
    NotLeader {
        addr: SocketAddr,
        leader: Option<SocketAddr>,
    },
    #[error("invalid TLS set-up: {0}")]
    Tls(String),
}

/// The running parts of the agent the link drives.
pub(crate) struct Parts {
    pub executors: Arc<Executors>,
    pub probes: Arc<UsageProbes>,
    pub events: mpsc::UnboundedReceiver<ContainerEvent>,
    pub tasks: Tasks,
    /// cgroup2 id of each live container, for the eBPF counters.
    pub cgroups: HashMap<String, u64>,
    /// Usage of containers that have ended, so the agent's totals never go backwards.
    pub ended: Usage,
    /// Registration state published for the agent's own status.
    pub registered: watch::Sender<Option<AgentId>>,
    /// Usage and link counters published for the agent's HTTP endpoint.
    pub monitor: Publisher,
    pub checkpoint: Checkpoint,
    /// The agent id in the checkpoint's agent record, once written.
    pub checkpointed_agent: Option<AgentId>,
    /// Containers handed to the executors for adoption whose fate is not known yet.
    pub adopting: std::collections::HashSet<String>,
}

enum SessionEnd {
    Stop,
    Failed(LinkError),
}

pub(crate) async fn run(config: LinkConfig, mut parts: Parts, mut stop: watch::Receiver<bool>) {
    let endpoint = match client_endpoint(&config) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    let mut next_master = 0usize;
    // Where a follower said the leader is: tried next, before the list.
    let mut leader: Option<SocketAddr> = None;
    loop {
        let addr = leader
            .take()
            .unwrap_or(config.masters[next_master % config.masters.len()]);
        match session(&endpoint, addr, &config, &mut parts, &mut stop).await {
            SessionEnd::Stop => break,
            SessionEnd::Failed(e) => {
                // A session that registered was a working link: start backing off anew.
                if parts.registered.borrow().is_some() {
                    backoff = FIRST_BACKOFF;
                }
                let _ = parts.registered.send(None);
                parts.monitor.link_failed();
                match e {
                    // Sent on: go to the leader at once; during an election, wait a little.
                    LinkError::NotLeader { leader: to, .. } => {
                        tracing::info!("{e}");
                        leader = to;
                        backoff = if to.is_some() {
                            Duration::from_millis(50)
                        } else {
                            FIRST_BACKOFF
                        };
                    }
                    _ => tracing::warn!("{e}; retrying in {backoff:?}"),
                }
                next_master += 1;
            }
        }
        // Keep the lifecycle moving while disconnected: containers still end.
        let deadline = tokio::time::Instant::now() + backoff;
        let mut limits_tick = tokio::time::interval(LIMITS_CHECK);
        let mut usage_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = usage_tick.tick() => {
                    // The agent's own endpoint keeps showing usage while the master is away.
                    let agent_id = parts.tasks.agent_id().clone();
                    let report = build_report(&parts, &agent_id, 0).await;
                    publish(&mut parts, report, false);
                }
                _ = limits_tick.tick() => {
                    let actions = check_limits(&mut parts);
                    perform_offline(&mut parts, actions).await;
                }
                ev = parts.events.recv() => {
                    if let Some(ev) = ev {
                        let actions = container_event(&mut parts, ev);
                        perform_offline(&mut parts, actions).await;
                    }
                }
                _ = stop.changed() => {
                    endpoint.close(quinn::VarInt::from_u32(frame::close::SHUTDOWN), b"agent stopping");
                    return;
                }
            }
        }
        backoff = (backoff * 2).clamp(FIRST_BACKOFF, Duration::from_secs(5));
    }
    endpoint.close(
        quinn::VarInt::from_u32(frame::close::SHUTDOWN),
        b"agent stopping",
    );
    tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle())
        .await
        .ok();
}

/// The first wait after a failed session (doubling up to 5 s while failures go on).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A master silent this long is gone (a crashed leader sends no close): with keep-alives
/// every second, the link moves to another master within this.
const MASTER_SILENCE: Duration = Duration::from_secs(4);

fn client_endpoint(config: &LinkConfig) -> Result<quinn::Endpoint, LinkError> {
    let tls = tls::client_config(&config.ca_pem, Some(&config.identity), ALPN_AGENT)
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(MASTER_SILENCE).map_err(|e| LinkError::Tls(e.to_string()))?,
    ));
    client.transport_config(Arc::new(transport));
    let bind: SocketAddr = match config.masters.first() {
        Some(SocketAddr::V6(_)) => "[::]:0",
        _ => "0.0.0.0:0",
    }
    .parse()
    .map_err(|e: std::net::AddrParseError| LinkError::Tls(e.to_string()))?;
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| LinkError::Connect {
        addr: bind,
        reason: e.to_string(),
    })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// A master that closed with `NOT_LEADER` sends the agent to the leader.
fn not_leader(addr: SocketAddr, err: &quinn::ConnectionError) -> Option<LinkError> {
    let quinn::ConnectionError::ApplicationClosed(close) = err else {
        return None;
    };
    let hint = fleet_proto::leader::hint(close.error_code.into_inner(), &close.reason)?;
    Some(LinkError::NotLeader {
        addr,
        leader: match hint {
            fleet_proto::leader::LeaderHint::At(leader) => Some(leader),
            fleet_proto::leader::LeaderHint::Unknown => None,
        },
    })
}

fn describe(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => other.to_string(),
    }
}

async fn session(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    config: &LinkConfig,
    parts: &mut Parts,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let fail = |source: StreamError| SessionEnd::Failed(LinkError::Stream { addr, source });
    let connecting = match endpoint.connect(addr, MASTER_SERVER_NAME) {
        Ok(c) => c,
        Err(e) => {
            return SessionEnd::Failed(LinkError::Connect {
                addr,
                reason: e.to_string(),
            });
        }
    };
    let conn = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return SessionEnd::Failed(not_leader(addr, &e).unwrap_or(LinkError::Connect {
                addr,
                reason: describe(&e),
            }));
        }
        Err(_) => {
            return SessionEnd::Failed(LinkError::Connect {
                addr,
                reason: "timed out after 5 s".into(),
            });
        }
    };
    let lost = |conn: &quinn::Connection, fallback: String| {
        let reason = conn.close_reason();
        if let Some(e) = reason.as_ref().and_then(|r| not_leader(addr, r)) {
            return SessionEnd::Failed(e);
        }
        SessionEnd::Failed(LinkError::Lost {
            addr,
            reason: reason.map(|e| describe(&e)).unwrap_or(fallback),
        })
    };
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return lost(&conn, e.to_string()),
    };
    let known = parts.registered.borrow().clone().or_else(|| {
        let id = parts.tasks.agent_id();
        (!id.as_str().is_empty()).then(|| id.clone())
    });
    let register = AgentMessage::Register {
        agent_id: known,
        info: config.info.clone(),
        tasks: parts.tasks.running(),
    };
    if let Err(e) = stream::write_preamble(&mut send, StreamKind::AgentControl).await {
        return fail(e);
    }
    if let Err(e) = stream::write_message(&mut send, &register).await {
        return fail(e);
    }
    if let Err(e) = stream::read_preamble(&mut recv, StreamKind::AgentControl).await {
        return lost(&conn, e.to_string());
    }
    let (agent_id, report_interval) =
        match stream::read_message::<_, MasterMessage>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(MasterMessage::Registered {
                agent_id,
                report_interval_ms,
            })) => (agent_id, Duration::from_millis(report_interval_ms.max(100))),
            Ok(Some(MasterMessage::Refused { reason })) => {
                return SessionEnd::Failed(LinkError::Refused { addr, reason });
            }
            Ok(Some(other)) => {
                return SessionEnd::Failed(LinkError::Lost {
                    addr,
                    reason: format!("expected Registered, got {other:?}"),
                });
            }
            Ok(None) => return lost(&conn, "control stream closed".into()),
            Err(e) => return lost(&conn, e.to_string()),
        };
    tracing::info!(%addr, agent_id = %agent_id, "registered with master");
    parts.tasks.set_agent_id(agent_id.clone());
    if parts.checkpointed_agent.as_ref() != Some(&agent_id) {
        let writes = parts.tasks.take_checkpoint();
        match parts
            .executors
            .checkpoint(&parts.checkpoint, Some(agent_id.clone()), writes)
            .await
        {
            Ok(()) => parts.checkpointed_agent = Some(agent_id.clone()),
            Err(e) => tracing::error!("{e}"),
        }
    }
    let _ = parts.registered.send(Some(agent_id.clone()));
    parts.monitor.registered(&agent_id);

    let mut reports = match conn.open_uni().await {
        Ok(s) => s,
        Err(e) => return lost(&conn, e.to_string()),
    };
    if let Err(e) = stream::write_preamble(&mut reports, StreamKind::AgentReport).await {
        return fail(e);
    }

    // Master messages are read by a task of their own: reading is not cancel-safe.
    let (master_tx, mut master_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match stream::read_message::<_, MasterMessage>(&mut recv, MAX_FRAME_LEN).await {
                Ok(Some(msg)) => {
                    if master_tx.send(Ok(msg)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = master_tx.send(Err("control stream closed by master".to_string()));
                    return;
                }
                Err(e) => {
                    let _ = master_tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });

    let resend = parts.tasks.unacknowledged(Instant::now());
    if let Err(e) = perform(parts, &mut send, resend).await {
        reader.abort();
        return fail(e);
    }

    let mut report_tick = tokio::time::interval(report_interval);
    let mut retry_tick = tokio::time::interval(Duration::from_secs(1));
    let mut limits_tick = tokio::time::interval(LIMITS_CHECK);
    let mut seq = 0u64;
    let end = loop {
        let actions = tokio::select! {
            msg = master_rx.recv() => match msg {
                Some(Ok(MasterMessage::Ping { nonce })) => {
                    let pong = AgentMessage::Pong { nonce };
                    if let Err(e) = stream::write_message(&mut send, &pong).await {
                        break fail(e);
                    }
                    Vec::new()
                }
                Some(Ok(msg)) => master_message(parts, msg),
                Some(Err(reason)) => break lost(&conn, reason),
                None => break lost(&conn, "control stream ended".into()),
            },
            ev = parts.events.recv() => match ev {
                Some(ev) => container_event(parts, ev),
                None => break SessionEnd::Stop,
            },
            _ = report_tick.tick() => {
                seq += 1;
                let report = build_report(parts, &agent_id, seq).await;
                if let Err(e) = stream::write_message(&mut reports, &report).await {
                    break fail(e);
                }
                publish(parts, report, true);
                Vec::new()
            }
            _ = retry_tick.tick() => parts.tasks.retry(Instant::now()),
            _ = limits_tick.tick() => check_limits(parts),
            _ = stop.changed() => break SessionEnd::Stop,
        };
        if let Err(e) = perform(parts, &mut send, actions).await {
            break fail(e);
        }
    };
    reader.abort();
    if matches!(end, SessionEnd::Stop) {
        // The last updates (a stopping agent's TASK_KILLED) reach the master before the
        // connection closes: closing at once would drop what is still unsent.
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
        conn.close(
            quinn::VarInt::from_u32(frame::close::SHUTDOWN),
            b"agent stopping",
        );
    }
    end
}

/// Turns a master message into lifecycle actions.
fn master_message(parts: &mut Parts, msg: MasterMessage) -> Vec<Action> {
    let now = Instant::now();
    match msg {
        MasterMessage::RunTask { framework, task } => parts.tasks.run(framework, task, now),
        MasterMessage::KillTask {
            framework_id,
            task_id,
            grace_ms,
        } => parts.tasks.kill(
            &framework_id,
            &task_id,
            grace_ms.map(Duration::from_millis),
            now,
        ),
        MasterMessage::AcknowledgeUpdate { task_id, uuid, .. } => {
            parts.tasks.acknowledged(&task_id, uuid, now)
        }
        MasterMessage::ShutdownFramework { framework_id } => {
            parts.tasks.shutdown_framework(&framework_id, now)
        }
        MasterMessage::Ping { .. } | MasterMessage::Registered { .. } => Vec::new(),
        MasterMessage::Refused { reason } => {
            tracing::error!("master refused this agent: {reason}");
            Vec::new()
        }
    }
}

/// How often containers are checked against the limits the agent enforces itself (disk:
/// the kernel counts, the agent compares), so a container over its limit is stopped
/// within this period of crossing it.
const LIMITS_CHECK: Duration = Duration::from_millis(250);

/// Kills the containers over their disk limit; their tasks end TASK_FAILED with
/// REASON_CONTAINER_LIMITATION_DISK.
fn check_limits(parts: &mut Parts) -> Vec<Action> {
    let over: Vec<(String, u64, u64)> = parts
        .tasks
        .disk_limits()
        .filter_map(|(container_id, limit)| {
            let cgroup_id = parts.cgroups.get(container_id)?;
            let counters = match parts.probes.counters(*cgroup_id) {
                Ok(counters) => counters?,
                Err(e) => {
                    tracing::warn!(container = container_id, "cannot read disk usage: {e}");
                    return None;
                }
            };
            let used = u64::try_from(counters.disk_bytes).unwrap_or(0);
            (used > limit).then(|| (container_id.to_owned(), used, limit))
        })
        .collect();
    over.into_iter()
        .flat_map(|(container_id, used, limit)| {
            tracing::info!(container = %container_id, used, limit, "disk limit exceeded");
            parts.tasks.limit_exceeded(
                &container_id,
                Reason::ContainerLimitationDisk,
                format!(
                    "disk limit exceeded: the container holds {used} bytes on disk, over its \
                     limit of {limit} bytes"
                ),
            )
        })
        .collect()
}

fn container_event(parts: &mut Parts, ev: ContainerEvent) -> Vec<Action> {
    match &ev {
        ContainerEvent::Started { container_id, .. } if parts.adopting.remove(container_id) => {
            parts.monitor.container_recovered();
        }
        ContainerEvent::Exited { container_id, .. }
        | ContainerEvent::LaunchFailed { container_id, .. } => {
            parts.adopting.remove(container_id);
        }
        _ => {}
    }
    match &ev {
        ContainerEvent::Started {
            container_id,
            cgroup2_id: Some(id),
            ..
        } => {
            parts.cgroups.insert(container_id.clone(), *id);
        }
        ContainerEvent::Exited { container_id, .. } => {
            if let Some(id) = parts.cgroups.remove(container_id) {
                if let Ok(Some(last)) = parts.probes.counters(id) {
                    parts.ended.bytes_written += last.bytes_written;
                    parts.ended.net_rx_bytes += last.net_rx_bytes;
                    parts.ended.net_tx_bytes += last.net_tx_bytes;
                }
                if let Err(e) = parts.probes.untrack(id) {
                    tracing::warn!("{e}");
                }
            }
        }
        _ => {}
    }
    parts.tasks.container(ev, Instant::now())
}

/// Makes the lifecycle's changed records durable. Called before any action is performed,
/// so that nothing is launched, killed or reported that a restarted agent would not know.
async fn flush_checkpoint(parts: &mut Parts) {
    if !parts.tasks.checkpoint_pending() {
        return;
    }
    let writes = parts.tasks.take_checkpoint();
    if let Err(e) = parts
        .executors
        .checkpoint(&parts.checkpoint, None, writes)
        .await
    {
        tracing::error!("{e}; a restart now would miss these changes");
        parts.monitor.checkpoint_failed();
    }
}

async fn perform(
    parts: &mut Parts,
    send: &mut quinn::SendStream,
    actions: Vec<Action>,
) -> Result<(), StreamError> {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    flush_checkpoint(parts).await;
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Send(update) => {
                stream::write_message(send, &AgentMessage::StatusUpdate(update)).await?;
            }
            other => queue.extend(perform_local(parts, other)),
        }
        flush_checkpoint(parts).await;
    }
    Ok(())
}

/// While disconnected, updates wait in the lifecycle's unacknowledged queue.
async fn perform_offline(parts: &mut Parts, actions: Vec<Action>) {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    flush_checkpoint(parts).await;
    while let Some(action) = queue.pop_front() {
        if !matches!(action, Action::Send(_)) {
            queue.extend(perform_local(parts, action));
        }
        flush_checkpoint(parts).await;
    }
}

/// Hands launches and kills to the executors; a launch the pool cannot take fails its task.
fn perform_local(parts: &mut Parts, action: Action) -> Vec<Action> {
    match action {
        Action::Launch(spec) => {
            let container_id = spec.container_id.clone();
            if let Err(e) = parts.executors.launch(spec) {
                tracing::warn!(container = %container_id, "launch failed: {e}");
                return parts.tasks.container(
                    ContainerEvent::LaunchFailed {
                        container_id,
                        message: e.to_string(),
                    },
                    Instant::now(),
                );
            }
        }
        Action::Kill {
            container_id,
            grace,
        } => {
            if let Err(e) = parts.executors.kill(&container_id, grace) {
                tracing::warn!(container = %container_id, "kill failed: {e}");
            }
        }
        Action::Send(_) => {}
    }
    Vec::new()
}

/// Hands a report and its tasks' limits (from their resources) to the HTTP endpoint.
fn publish(parts: &mut Parts, report: Report, sent: bool) {
    let limits = report
        .tasks
        .iter()
        .map(|t| {
            parts
                .tasks
                .resources_of(&t.task_id)
                .map(Limits::of)
                .unwrap_or_default()
        })
        .collect();
    parts.monitor.report(report, limits, sent);
}

async fn build_report(parts: &Parts, agent_id: &AgentId, seq: u64) -> Report {
    let usage: HashMap<String, _> = parts.executors.usage_all().await.into_iter().collect();
    let mut total = parts.ended;
    let mut tasks = Vec::new();
    for (container_id, framework_id, task_id, pid) in parts.tasks.containers() {
        let mut u = Usage::default();
        if let Some(c) = usage.get(container_id) {
            u.cpu_time_ns = c.cpu_time_ns;
            u.mem_bytes = c.mem_bytes;
        }
        if let Some(id) = parts.cgroups.get(container_id)
            && let Ok(Some(counters)) = parts.probes.counters(*id)
        {
            u.bytes_written = counters.bytes_written;
            u.net_rx_bytes = counters.net_rx_bytes;
            u.net_tx_bytes = counters.net_tx_bytes;
            u.disk_bytes = u64::try_from(counters.disk_bytes).unwrap_or(0);
        }
        total.cpu_time_ns += u.cpu_time_ns;
        total.mem_bytes += u.mem_bytes;
        total.bytes_written += u.bytes_written;
        total.net_rx_bytes += u.net_rx_bytes;
        total.net_tx_bytes += u.net_tx_bytes;
        total.disk_bytes += u.disk_bytes;
        tasks.push(TaskUsage {
            framework_id: framework_id.clone(),
            task_id: task_id.clone(),
            usage: u,
            pid,
        });
    }
    Report {
        agent_id: agent_id.clone(),
        seq,
        timestamp_ms: unix_millis(),
        tasks,
        total,
    }
}
