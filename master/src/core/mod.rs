//! The master's decisions as a sans-I/O state machine: connection events, agent messages,
//! reports and framework calls go in, messages to agents and events to frameworks come out,
//! and time is passed in as a value. The I/O shell (QUIC, HTTP) drives it: it calls
//! [`Master::handle`] for each input, [`Master::handle_report`] for each report frame, and
//! [`Master::tick`] when [`Master::next_deadline`] is reached.
//!
//! After the core emits [`Output::Close`] for a connection it has already forgotten it: a
//! later `*Disconnected` input for that connection is ignored.

mod agents;
mod drain;
mod frameworks;
mod launch;
mod maintenance;
mod offers;
mod operator;
mod records;
mod recovery;
mod reservations;
pub mod state;
mod tasks;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, OfferId};
use fleet_proto::messages::agent::{AgentInfo, AgentMessage, ArchivedReport, MasterMessage};
use fleet_proto::messages::scheduler::{Call, Event};
use fleet_proto::resources::Scalar;

use crate::allocator::AllocatorConfig;
use crate::allocator::sharded::Shards;
use crate::registry::Registry;

use records::{Agent, Framework, OfferRecord, Peer, Task};

pub use drain::{DrainInfo, DrainState};
pub use maintenance::{MachineId, Maintenance, Window};
pub use operator::OperatorCall;
pub use records::ConnId;
pub use state::MasterState;
pub use watch::OperatorEvent;

/// Something that happened on a connection.
#[derive(Debug, Clone)]
pub enum Input {
    AgentConnected {
        conn: ConnId,
        peer: String,
    },
    /// A message on an agent's control stream.
    Agent {
        conn: ConnId,
        msg: AgentMessage,
    },
    AgentDisconnected {
        conn: ConnId,
        reason: String,
    },
    FrameworkConnected {
        conn: ConnId,
        peer: String,
    },
    Framework {
        conn: ConnId,
        call: Call,
    },
    FrameworkDisconnected {
        conn: ConnId,
        reason: String,
    },
}

/// Something the shell must send or do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    ToAgent {
        conn: ConnId,
        msg: MasterMessage,
    },
    ToFramework {
        conn: ConnId,
        event: Event,
    },
    /// Close the connection (protocol violation, refusal, removal, failover).
    Close {
        conn: ConnId,
        reason: String,
    },
    /// For the operators' event streams; emitted only while [`Master::set_watched`].
    Operator(Box<OperatorEvent>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// How often a full allocation cycle runs (Mesos `--allocation_interval`).
    pub allocation_interval: Duration,
    /// How long an agent may be silent (connected) or gone (disconnected) before it is
    /// marked unreachable and its tasks are lost, or unreachable for partition-aware
    /// frameworks (Mesos: `--agent_ping_timeout` 15 s x `--max_agent_ping_timeouts` 5).
    pub agent_timeout: Duration,
    /// How long an unreachable agent may still re-register with its id and tasks; after
    /// that it is removed and its tasks are gone.
    pub agent_reregister_timeout: Duration,
    /// How often agents send reports; told to them at registration.
    pub report_interval: Duration,
    /// How often frameworks get a HEARTBEAT event.
    pub heartbeat_interval: Duration,
    /// Outstanding offers are rescinded after this long (None: never).
    pub offer_timeout: Option<Duration>,
    /// Refusal when DECLINE or ACCEPT carries no filters (Mesos: 5 s).
    pub default_refuse: Duration,
    /// The longest refusal accepted (Mesos: 365 days).
    pub max_refuse: Duration,
    /// How often timeouts (agents, offers, framework failover) are checked.
    pub sweep_interval: Duration,
    /// Terminal tasks kept for /state after they are acknowledged.
    pub max_completed_tasks: usize,
    pub min_allocatable_cpus: Scalar,
    pub min_allocatable_mem_mb: Scalar,
    /// Allocator shards: agents are split among them, and a full cycle runs them in
    /// parallel over the shared table (`allocator/sharded.rs`). 1: one allocator.
    pub allocator_shards: usize,
}

impl Default for MasterConfig {
    fn default() -> Self {
        let allocator = AllocatorConfig::default();
        Self {
            allocation_interval: Duration::from_secs(1),
            agent_timeout: Duration::from_secs(75),
            agent_reregister_timeout: Duration::from_secs(600),
            report_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            default_refuse: Duration::from_secs(5),
            max_refuse: Duration::from_secs(365 * 24 * 60 * 60),
            sweep_interval: Duration::from_secs(1),
            max_completed_tasks: 1000,
            min_allocatable_cpus: allocator.min_allocatable_cpus,
            min_allocatable_mem_mb: allocator.min_allocatable_mem_mb,
            allocator_shards: 1,
        }
    }
}

impl MasterConfig {
    fn allocator_config(&self) -> AllocatorConfig {
        AllocatorConfig {
            allocation_interval: self.allocation_interval,
            default_refuse: self.default_refuse,
            min_allocatable_cpus: self.min_allocatable_cpus,
            min_allocatable_mem_mb: self.min_allocatable_mem_mb,
        }
    }
}

/// Running totals, for /state and /metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub agents_registered: u64,
    pub agents_reregistered: u64,
    pub agents_refused: u64,
    pub agents_removed: u64,
    /// Agents marked unreachable (silent or disconnected for `agent_timeout`).
    pub agents_unreachable: u64,
    /// Unreachable agents that re-registered in time.
    pub agents_reachable_again: u64,
    pub frameworks_subscribed: u64,
    pub frameworks_removed: u64,
    pub allocation_cycles: u64,
    pub offers_sent: u64,
    pub offers_accepted: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub tasks_launched: u64,
    pub tasks_invalid: u64,
    pub tasks_lost: u64,
    pub status_updates: u64,
    pub reports_received: u64,
    pub calls_rejected: u64,
    pub registry_errors: u64,
}

/// Upper bounds of the allocation-run histogram's buckets, in microseconds (100 us to 10 s).
pub const RUN_BUCKETS_US: [u64; 10] = [
    100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 10_000_000,
];

/// How long allocation runs took (full cycles and runs after events), as a histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunTimes {
    /// Runs per bucket of [`RUN_BUCKETS_US`] (not cumulative); the last counts the rest.
    pub counts: [u64; RUN_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl RunTimes {
    pub fn record(&mut self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = RUN_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(RUN_BUCKETS_US.len());
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Debug, Default)]
struct Timers {
    started: Option<Instant>,
    /// The latest `now` seen; what `next_deadline` answers when work is pending.
    last_now: Option<Instant>,
    next_allocation: Option<Instant>,
    next_sweep: Option<Instant>,
    next_heartbeat: Option<Instant>,
}

/// The master: agents, frameworks, tasks and offers, and the allocator deciding offers.
pub struct Master {
    config: MasterConfig,
    registry: Box<dyn Registry>,
    allocator: Shards,
    conns: HashMap<ConnId, Peer>,
    agents: BTreeMap<AgentId, Agent>,
    /// Admitted in the registry but not re-registered since this master started.
    recovered_agents: BTreeMap<AgentId, AgentInfo>,
    /// Those of them the registry has as unreachable: they get `agent_reregister_timeout`
    /// (from this master's start) to come back, not `agent_timeout`.
    recovered_unreachable: BTreeSet<AgentId>,
    /// How many agents the registry held at start (see `recovery.rs`).
    recovery_expected: usize,
    /// Agents that went quiet for `agent_timeout`: they may still re-register within
    /// `agent_reregister_timeout`.
    unreachable_agents: BTreeMap<AgentId, records::UnreachableAgent>,
    frameworks: BTreeMap<FrameworkId, Framework>,
    /// Frameworks torn down or timed out: they may not subscribe again with their id.
    removed_frameworks: BTreeSet<FrameworkId>,
    offers: BTreeMap<OfferId, OfferRecord>,
    next_offer_seq: u64,
    completed: VecDeque<Task>,
    /// Frameworks removed since this master started, newest last (bounded).
    completed_frameworks: VecDeque<state::FrameworkState>,
    /// A full allocation cycle is due at the next tick.
    allocate_all: bool,
    /// Agents to allocate at the next tick.
    allocate_agents: BTreeSet<AgentId>,
    timers: Timers,
    counters: Counters,
    /// Quotas as set (also in the registry), for /state and GET_QUOTA.
    quotas: BTreeMap<String, crate::registry::QuotaConfig>,
    /// Dynamic reservations per agent, as in the registry (see `reservations.rs`).
    reservations: BTreeMap<AgentId, Vec<crate::registry::Reservation>>,
    /// Wall-clock time of allocation runs, for /metrics (never for decisions).
    run_times: RunTimes,
    /// Agents an operator deactivated (DEACTIVATE_AGENT, DRAIN_AGENT): never offered
    /// until reactivated, also across disconnections and re-registrations.
    deactivated: BTreeSet<AgentId>,
    /// Agents an operator is draining or drained (DRAIN_AGENT).
    drains: BTreeMap<AgentId, DrainInfo>,
    /// Agents an operator marked gone (MARK_AGENT_GONE): their id may not register again.
    gone_agents: BTreeSet<AgentId>,
    /// The maintenance schedule and the machines down (see `maintenance.rs`).
    maintenance: Maintenance,
    /// Whether an operator event stream listens (see `watch.rs`).
    watched: bool,
    /// Reports per second over the last sweep interval, and where that interval began.
    report_rate: f64,
    report_mark: Option<(Instant, u64)>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("agents", &self.agents.len())
            .field("frameworks", &self.frameworks.len())
            .field("offers", &self.offers.len())
            .finish_non_exhaustive()
    }
}

impl Master {
    /// A master starting from what the registry holds: admitted agents may re-register with
    /// their ids, frameworks may re-subscribe with theirs, weights apply at once.
    pub fn new(config: MasterConfig, registry: Box<dyn Registry>) -> Self {
        let snapshot = registry.snapshot();
        let mut allocator = Shards::new(config.allocator_config(), config.allocator_shards);
        for (role, weight) in &snapshot.weights {
            if let Err(e) = allocator.set_weight(role, *weight) {
                tracing::warn!("ignoring weight from the registry: {e}");
            }
        }
        for (role, config) in &snapshot.quotas {
            if let Err(e) = allocator.set_quota(role, operator::allocator_quota(config)) {
                tracing::warn!("ignoring quota from the registry: {e}");
            }
        }
        let recovered_unreachable: BTreeSet<AgentId> = snapshot
            .marks
            .iter()
            .filter(|(id, m)| m.unreachable && snapshot.agents.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let deactivated = snapshot
            .marks
            .iter()
            .filter(|(_, m)| m.deactivated)
            .map(|(id, _)| id.clone())
            .collect();
        let drains = snapshot
            .marks
            .iter()
            .filter_map(|(id, m)| Some((id.clone(), m.drain.clone()?)))
            .collect();
        let mut master = Self {
            config,
            registry,
            allocator,
            conns: HashMap::new(),
            agents: BTreeMap::new(),
            recovery_expected: snapshot.agents.len() - recovered_unreachable.len(),
            recovered_agents: snapshot.agents,
            recovered_unreachable,
            unreachable_agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            removed_frameworks: BTreeSet::new(),
            offers: BTreeMap::new(),
            next_offer_seq: 0,
            completed: VecDeque::new(),
            completed_frameworks: VecDeque::new(),
            allocate_all: false,
            allocate_agents: BTreeSet::new(),
            timers: Timers::default(),
            counters: Counters::default(),
            quotas: snapshot.quotas,
            reservations: snapshot.reservations,
            run_times: RunTimes::default(),
            deactivated,
            drains,
            gone_agents: snapshot.gone,
            maintenance: snapshot.maintenance,
            watched: false,
            report_rate: 0.0,
            report_mark: None,
        };
        for (id, info) in snapshot.frameworks {
            master.recover_framework(id, Some(info));
        }
        master
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Applies one input.
    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        self.observe(now);
        match input {
            Input::AgentConnected { conn, peer } => {
                tracing::debug!(conn, %peer, "agent connection");
                self.conns.insert(conn, Peer::AgentPending);
            }
            Input::Agent { conn, msg } => self.agent_message(conn, msg, now, out),
            Input::FrameworkConnected { conn, peer } => {
                tracing::debug!(conn, %peer, "framework connection");
                self.conns.insert(conn, Peer::FrameworkPending);
            }
            Input::Framework { conn, call } => self.framework_call(conn, call, now, out),
            Input::AgentDisconnected { conn, reason }
            | Input::FrameworkDisconnected { conn, reason } => match self.conns.remove(&conn) {
                Some(Peer::Agent(id)) => self.agent_disconnected(&id, &reason, now, out),
                Some(Peer::Framework(id)) => self.framework_disconnected(&id, &reason, now, out),
                Some(Peer::AgentPending | Peer::FrameworkPending) | None => {}
            },
        }
    }

    /// Applies a report read in place: only the numbers kept (usage per agent and task,
    /// sequence, timestamp) are copied out.
    pub fn handle_report(
        &mut self,
        conn: ConnId,
        report: &ArchivedReport,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.observe(now);
        self.report(conn, report, now, out);
    }

    /// Runs what is due at `now`: timeouts, heartbeats and allocation.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.observe(now);
        if self.timers.next_sweep.is_none_or(|t| now >= t) {
            self.sweep(now, out);
            self.timers.next_sweep = Some(now + self.config.sweep_interval);
        }
        if self.timers.next_heartbeat.is_none_or(|t| now >= t) {
            self.heartbeat(out);
            self.timers.next_heartbeat = Some(now + self.config.heartbeat_interval);
        }
        if self.allocation_held() {
            return;
        }
        if self.timers.next_allocation.is_none_or(|t| now >= t) {
            self.allocate(true, now, out);
            self.timers.next_allocation = Some(now + self.config.allocation_interval);
        } else if self.allocate_all || !self.allocate_agents.is_empty() {
            self.allocate(self.allocate_all, now, out);
        }
    }

    /// When [`Master::tick`] should next run: at once (the last `now` seen) when an
    /// allocation is pending, else the earliest timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.allocate_all || !self.allocate_agents.is_empty() {
            return self.timers.last_now;
        }
        [
            self.timers.next_allocation,
            self.timers.next_sweep,
            self.timers.next_heartbeat,
        ]
        .into_iter()
        .flatten()
        .min()
        .or(self.timers.last_now)
    }

    /// Records the clock; the first call starts the timers.
    fn observe(&mut self, now: Instant) {
        self.timers.last_now = Some(self.timers.last_now.map_or(now, |last| last.max(now)));
        if self.timers.started.is_none() {
            self.timers.started = Some(now);
            self.timers.next_heartbeat = Some(now + self.config.heartbeat_interval);
            self.timers.next_sweep = Some(now + self.config.sweep_interval);
            self.timers.next_allocation = Some(now + self.config.allocation_interval);
            for framework in self.frameworks.values_mut() {
                if framework.conn.is_none() && framework.disconnected_at.is_none() {
                    framework.disconnected_at = Some(now);
                }
            }
        }
    }

    /// Timeouts: agents silent or gone too long, recovered agents that never came back,
    /// frameworks past their failover timeout, expired offers.
    fn sweep(&mut self, now: Instant, out: &mut Vec<Output>) {
        let timeout = self.config.agent_timeout;
        let expired_agents: Vec<(AgentId, bool)> = self
            .agents
            .values()
            .filter_map(|agent| match agent.disconnected_at {
                Some(at) if now.saturating_duration_since(at) >= timeout => {
                    Some((agent.id.clone(), false))
                }
                None if now.saturating_duration_since(agent.last_seen) >= timeout => {
                    Some((agent.id.clone(), true))
                }
                _ => None,
            })
            .collect();
        for (id, silent) in expired_agents {
            self.agent_timed_out(&id, silent, now, out);
        }
        let since_start = now.saturating_duration_since(self.timers.started.unwrap_or(now));
        let expired: Vec<AgentId> = self
            .recovered_agents
            .keys()
            .filter(|id| {
                since_start
                    >= if self.recovered_unreachable.contains(*id) {
                        self.config.agent_reregister_timeout
                    } else {
                        timeout
                    }
            })
            .cloned()
            .collect();
        for id in expired {
            tracing::info!(agent = %id, "agent did not re-register after master start; removing it");
            self.recovered_agents.remove(&id);
            self.recovered_unreachable.remove(&id);
            self.registry_apply(crate::registry::RegistryOp::RemoveAgent { id });
        }
        let gone: Vec<AgentId> = self
            .unreachable_agents
            .iter()
            .filter(|(_, a)| {
                now.saturating_duration_since(a.since) >= self.config.agent_reregister_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.unreachable_agent_gone(&id, out);
        }
        self.expire_frameworks(now, out);
        self.expire_offers(now, out);
        self.check_drains(out);
        self.measure_report_rate(now);
    }

    /// Reports per second since the last sweep, for /metrics.
    fn measure_report_rate(&mut self, now: Instant) {
        let count = self.counters.reports_received;
        if let Some((since, before)) = self.report_mark {
            let seconds = now.saturating_duration_since(since).as_secs_f64();
            if seconds > 0.0 {
                self.report_rate = count.saturating_sub(before) as f64 / seconds;
            }
        }
        self.report_mark = Some((now, count));
    }

    /// Writes to the registry where failure is logged but does not change the decision
    /// (removals: a stale entry only delays a later cleanup).
    fn registry_apply(&mut self, op: crate::registry::RegistryOp) {
        if let crate::registry::RegistryOp::RemoveAgent { id } = &op {
            // The registry drops them with the agent.
            self.reservations.remove(id);
        }
        if let Err(e) = self.registry.apply(op) {
            self.counters.registry_errors += 1;
            tracing::warn!("{e}");
        }
    }

    /// Writes what is marked on agent `id` (unreachable, deactivated, its drain) to the
    /// registry; `Err` says the registry refused.
    fn record_marks(&mut self, id: &AgentId) -> Result<(), String> {
        let marks = crate::registry::AgentMarks {
            unreachable: self.unreachable_agents.contains_key(id)
                || self.recovered_unreachable.contains(id),
            deactivated: self.deactivated.contains(id),
            drain: self.drains.get(id).cloned(),
        };
        let op = crate::registry::RegistryOp::SetAgentMarks {
            id: id.clone(),
            marks,
        };
        let what = op.describe();
        self.registry.apply(op).map_err(|e| {
            self.counters.registry_errors += 1;
            format!("the registry refused to {what}: {e}")
        })
    }

    /// [`Master::record_marks`] where a failure is logged only.
    fn record_marks_logged(&mut self, id: &AgentId) {
        if let Err(e) = self.record_marks(id) {
            tracing::warn!("{e}");
        }
    }

    fn close(&mut self, conn: ConnId, reason: impl Into<String>, out: &mut Vec<Output>) {
        self.conns.remove(&conn);
        out.push(Output::Close {
            conn,
            reason: reason.into(),
        });
    }

    fn send_to_framework(&self, framework: &FrameworkId, event: Event, out: &mut Vec<Output>) {
        if let Some(conn) = self.frameworks.get(framework).and_then(|f| f.conn) {
            out.push(Output::ToFramework { conn, event });
        }
    }

    fn send_to_agent(&self, agent: &AgentId, msg: MasterMessage, out: &mut Vec<Output>) -> bool {
        match self.agents.get(agent).and_then(|a| a.conn) {
            Some(conn) => {
                out.push(Output::ToAgent { conn, msg });
                true
            }
            None => false,
        }
    }
}
