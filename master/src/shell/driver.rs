//! Drives the core: feeds it connection events, reports and clock ticks, routes its outputs
//! to the connections, and publishes state snapshots for the HTTP thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet_proto::frame::close;
use fleet_proto::messages::agent::{MasterMessage, Report};
use fleet_proto::messages::scheduler::Event;
use rkyv::util::AlignedVec;
use tokio::sync::{mpsc, watch};

use super::leadership::Leadership;
use super::operator::events::Watchers;
use super::snapshots::Publisher;
use crate::core::{ConnId, Input, Master, MasterState, OperatorCall, Output};

/// From sessions to the driver.
pub(super) enum ShellEvent {
    /// A session is ready to receive; registered before its first input.
    Open {
        conn: ConnId,
        tx: mpsc::UnboundedSender<Outgoing>,
        connection: quinn::Connection,
    },
    Input(Input),
    /// An operator call from the HTTP API that changes the cluster; the outcome goes back
    /// on `reply`.
    Operator {
        call: OperatorCall,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// An operator event stream opens (SUBSCRIBE): SUBSCRIBED, then the core's events.
    Watch {
        stream: mpsc::Sender<axum::body::Bytes>,
        heartbeat: Duration,
    },
}

/// A report frame already validated by the session (`frame::access` succeeded). Reports
/// travel on a queue of their own, bounded, which the driver reads when no control
/// message waits, and a few of after each batch of control messages: a registration, a
/// launch or an update never queues behind reports, and reports still flow under load.
pub(super) struct ReportFrame {
    pub conn: ConnId,
    pub body: AlignedVec,
}

/// Reports queued for the driver before sessions must wait.
pub(super) const REPORT_QUEUE: usize = 16_384;

/// Report buffers the driver hands back to the shards once read, so that a report costs
/// neither an allocation on its network shard nor a free on the core's thread (a free
/// across threads, which the allocator returns to the owning thread's heap only later).
/// A lock-free queue; when it is empty a shard allocates, when full the driver frees.
#[derive(Clone)]
pub(super) struct ReportBuffers(std::sync::Arc<crossbeam_queue::ArrayQueue<AlignedVec>>);

/// Buffers larger than this are freed rather than kept (a report is a few KiB).
const KEEP_BUFFER: usize = 64 << 10;

impl ReportBuffers {
    pub fn new() -> Self {
        ReportBuffers(std::sync::Arc::new(crossbeam_queue::ArrayQueue::new(
            REPORT_QUEUE + 1024,
        )))
    }

    pub fn take(&self) -> AlignedVec {
        self.0.pop().unwrap_or_default()
    }

    pub fn give_back(&self, buffer: AlignedVec) {
        if buffer.capacity() <= KEEP_BUFFER {
            let _ = self.0.push(buffer);
        }
    }
}
/// Reports the driver reads after each batch of control messages, when control keeps
/// coming.
const REPORTS_PER_CONTROL_BATCH: usize = 64;

/// From the driver to one session's writer. Boxed: each session's queue allocates its
/// first block of slots up front, and with one session per agent that block is per agent.
pub(super) enum Outgoing {
    Agent(Box<MasterMessage>),
    Framework(Box<Event>),
}

/// What the HTTP thread serves: the core's state plus where this master listens.
#[derive(Debug, serde::Serialize)]
pub struct Published {
    /// When the driver made this copy.
    #[serde(skip)]
    pub made: Instant,
    pub quic_address: String,
    pub http_address: String,
    pub published_at_ms: u64,
    #[serde(flatten)]
    pub state: MasterState,
}

impl Published {
    pub(super) fn new(state: MasterState, quic: SocketAddr, http: SocketAddr) -> Self {
        Published {
            made: Instant::now(),
            quic_address: quic.to_string(),
            http_address: http.to_string(),
            published_at_ms: fleet_proto::task::unix_millis(),
            state,
        }
    }
}

struct Session {
    tx: mpsc::UnboundedSender<Outgoing>,
    connection: quinn::Connection,
}

const TICK: Duration = Duration::from_millis(50);

/// Drives `master` until the master stops or, replicated, stops leading (`leadership`);
/// then closes every session, telling clients where the leader is in the second case.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    mut master: Master,
    events: &mut mpsc::UnboundedReceiver<ShellEvent>,
    reports: &mut mpsc::Receiver<ReportFrame>,
    buffers: &ReportBuffers,
    published: &mut Publisher,
    stop: &mut watch::Receiver<bool>,
    leadership: &mut watch::Receiver<Leadership>,
    quic: SocketAddr,
    http: SocketAddr,
) {
    let mut sessions: HashMap<ConnId, Session> = HashMap::new();
    let mut watchers = Watchers::default();
    let mut out = Vec::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // In order of precedence: stopping, the clock, control messages, then reports.
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            changed = leadership.changed() => {
                if changed.is_err() || !leadership.borrow().serving { break }
            }
            _ = ticker.tick() => master.tick(Instant::now(), &mut out),
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                handle(&mut master, &mut sessions, &mut watchers, published, ev, now, &mut out);
                // Drain what is queued before dispatching, so bursts are batched.
                while let Ok(ev) = events.try_recv() {
                    handle(&mut master, &mut sessions, &mut watchers, published, ev, now, &mut out);
                    if out.len() > 4096 { break; }
                }
                // Control goes first, but never starves reports: they are agents'
                // heartbeats, and an agent unheard for its timeout is removed.
                for _ in 0..REPORTS_PER_CONTROL_BATCH {
                    let Ok(frame) = reports.try_recv() else { break };
                    handle_report(&mut master, frame, buffers, now, &mut out);
                }
            }
            frame = reports.recv() => {
                let Some(frame) = frame else { break };
                let now = Instant::now();
                handle_report(&mut master, frame, buffers, now, &mut out);
                // A batch, then back to the control queue.
                for _ in 0..256 {
                    let Ok(frame) = reports.try_recv() else { break };
                    handle_report(&mut master, frame, buffers, now, &mut out);
                }
            }
        }
        dispatch(&mut sessions, &mut watchers, &mut out);
        master.set_watched(!watchers.is_empty());
        let now = Instant::now();
        if published.due(now) {
            published.publish(now, Published::new(master.state(), quic, http));
        }
    }
    let now = *leadership.borrow();
    let (code, reason) = if now.serving || *stop.borrow() {
        (close::SHUTDOWN, "master shutting down".to_owned())
    } else {
        tracing::info!("closing {} connections: {}", sessions.len(), now.refusal());
        (close::NOT_LEADER, now.refusal())
    };
    for s in sessions.values() {
        s.connection
            .close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }
}

fn handle(
    master: &mut Master,
    sessions: &mut HashMap<ConnId, Session>,
    watchers: &mut Watchers,
    published: &Publisher,
    ev: ShellEvent,
    now: Instant,
    out: &mut Vec<Output>,
) {
    match ev {
        ShellEvent::Open {
            conn,
            tx,
            connection,
        } => {
            sessions.insert(conn, Session { tx, connection });
        }
        ShellEvent::Input(input) => {
            let gone = match &input {
                Input::AgentDisconnected { conn, .. }
                | Input::FrameworkDisconnected { conn, .. } => Some(*conn),
                _ => None,
            };
            if let Some(conn) = gone
                && sessions.remove(&conn).is_none()
            {
                // Already reported gone (two streams of one connection can both end it).
                return;
            }
            master.handle(input, now, out);
        }
        ShellEvent::Operator { call, reply } => {
            let result = master.operator(call, now, out);
            if result.is_ok() {
                published.stale();
            }
            let _ = reply.send(result);
        }
        ShellEvent::Watch { stream, heartbeat } => {
            // What is already decided goes out first: the new stream starts from the state
            // after it, and sees only what follows.
            dispatch(sessions, watchers, out);
            watchers.add(stream, &master.state(), heartbeat);
            master.set_watched(true);
        }
    }
}

fn handle_report(
    master: &mut Master,
    frame: ReportFrame,
    buffers: &ReportBuffers,
    now: Instant,
    out: &mut Vec<Output>,
) {
    // SAFETY: the session validated this exact buffer with `frame::access::<Report>`
    // (bytecheck) before sending it here, and it has not been modified since.
    let report = unsafe { rkyv::access_unchecked::<rkyv::Archived<Report>>(&frame.body) };
    master.handle_report(frame.conn, report, now, out);
    buffers.give_back(frame.body);
}

fn dispatch(
    sessions: &mut HashMap<ConnId, Session>,
    watchers: &mut Watchers,
    out: &mut Vec<Output>,
) {
    for o in out.drain(..) {
        match o {
            Output::ToAgent { conn, msg } => {
                if let Some(s) = sessions.get(&conn) {
                    let _ = s.tx.send(Outgoing::Agent(Box::new(msg)));
                }
            }
            Output::ToFramework { conn, mut event } => {
                // The core reads no wall clock: updates it makes itself (LOST, ERROR,
                // reconciliation) are stamped here, on their way out.
                if let Event::Update { status } = &mut event
                    && status.timestamp_ms == 0
                {
                    status.timestamp_ms = fleet_proto::task::unix_millis();
                }
                if let Some(s) = sessions.get(&conn) {
                    let _ = s.tx.send(Outgoing::Framework(Box::new(event)));
                }
            }
            Output::Close { conn, reason } => {
                if let Some(s) = sessions.get(&conn) {
                    tracing::info!(conn, "closing connection: {reason}");
                    // Give the writer a moment to flush what was queued (an ERROR event
                    // that explains the close) before the connection goes.
                    let connection = s.connection.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        connection
                            .close(quinn::VarInt::from_u32(close::REFUSED), reason.as_bytes());
                    });
                }
            }
            Output::Operator(event) => watchers.publish(&event),
        }
    }
}
