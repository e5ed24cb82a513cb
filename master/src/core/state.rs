//! The serialisable snapshot of the master for /state and `fleet status`: agents,
//! frameworks, tasks, role shares and counters, copied out of the core's books.

use fleet_proto::ids::{AgentId, FrameworkId, OfferId, TaskId};
use fleet_proto::messages::agent::Usage;
use fleet_proto::resources::Resources;
use fleet_proto::task::{Reason, TaskState};

use super::records::{Agent, Framework, Task};
use super::{Counters, Master};
use crate::allocator::Shares;

#[derive(Debug, Clone, serde::Serialize)]
pub struct MasterState {
    pub agents: Vec<AgentState>,
    pub frameworks: Vec<FrameworkState>,
    /// Live tasks (terminal ones until acknowledged, unreachable ones).
    pub tasks: Vec<TaskView>,
    /// The latest tasks that ended, oldest first.
    pub completed_tasks: Vec<TaskView>,
    /// Frameworks removed (torn down or timed out) since this master started, oldest first.
    pub completed_frameworks: Vec<FrameworkState>,
    /// Agents admitted before this master started that have not re-registered yet.
    pub recovered_agents: Vec<AgentId>,
    /// Agents marked unreachable that may still re-register.
    pub unreachable_agents: Vec<AgentId>,
    /// Agents an operator marked gone (MARK_AGENT_GONE); they may not register again.
    pub gone_agents: Vec<AgentId>,
    /// The maintenance schedule and the machines down.
    pub maintenance: super::Maintenance,
    /// Open connections of agents and frameworks (QUIC), registered or not yet.
    pub connections: usize,
    /// Agent reports received per second, over the last sweep interval.
    pub report_rate: f64,
    pub outstanding_offers: usize,
    pub shares: Shares,
    /// Allocator shards (`--shards`).
    pub allocator_shards: usize,
    /// How long allocation runs took.
    pub allocation_runs: super::RunTimes,
    /// Role weights that were set (others weigh 1.0).
    pub weights: std::collections::BTreeMap<String, f64>,
    /// Quotas by role, as set.
    pub quotas: std::collections::BTreeMap<String, crate::registry::QuotaConfig>,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentState {
    pub id: AgentId,
    pub hostname: String,
    pub http_address: String,
    /// Connected and offered (not deactivated).
    pub active: bool,
    /// An operator deactivated it (DEACTIVATE_AGENT or DRAIN_AGENT): not offered.
    pub deactivated: bool,
    /// Its drain, when an operator drains it (DRAIN_AGENT).
    pub drain: Option<super::DrainInfo>,
    /// What it declares, its dynamic reservations applied.
    pub total: Resources,
    /// Its dynamic reservations, with who made them (see `reservations.rs`).
    pub reservations: Vec<crate::registry::Reservation>,
    pub used: Resources,
    pub offered: Resources,
    pub tasks: usize,
    pub offers: Vec<OfferId>,
    /// Usage of the whole agent from its last report.
    pub usage: Option<Usage>,
    pub last_report_seq: Option<u64>,
    /// The agent's clock when it sent its last report, Unix milliseconds.
    pub last_report_timestamp_ms: Option<u64>,
    pub reports: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameworkState {
    pub id: FrameworkId,
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    /// Subscribed on a connection now.
    pub active: bool,
    /// Known from the registry or an agent; not subscribed since this master started.
    pub recovered: bool,
    pub partition_aware: bool,
    pub failover_timeout_ms: u64,
    pub used: Resources,
    pub offered: Resources,
    /// The largest dominant share over its roles.
    pub dominant_share: f64,
    pub tasks: usize,
    pub offers: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskView {
    pub id: TaskId,
    pub name: String,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub state: TaskState,
    pub reason: Option<Reason>,
    pub message: String,
    pub resources: Resources,
    pub sandbox: Option<String>,
    pub exit_code: Option<i32>,
    /// Whether an update awaits the framework's acknowledgement.
    pub unacknowledged: bool,
    pub usage: Option<Usage>,
    /// The host pid of its main process on the agent, once reported.
    pub pid: Option<u32>,
}

pub(super) fn task_view(task: &Task, usage: Option<Usage>, pid: Option<u32>) -> TaskView {
    TaskView {
        id: task.info.task_id.clone(),
        name: task.info.name.clone(),
        framework_id: task.framework_id.clone(),
        agent_id: task.info.agent_id.clone(),
        state: task.state,
        reason: task.status.reason,
        message: task.status.message.clone(),
        resources: task.info.resources.clone(),
        sandbox: task.status.sandbox.clone(),
        exit_code: task.status.exit_code,
        unacknowledged: task.unacked.is_some(),
        usage,
        pid,
    }
}

impl Master {
    /// A snapshot of everything, for /state. It copies: call it at the rate of reads, not
    /// of events.
    pub fn state(&self) -> MasterState {
        let agents = self.agents.values().map(|a| self.agent_state(a)).collect();
        let shares = self.allocator.shares();
        let frameworks = self
            .frameworks
            .values()
            .map(|f| self.framework_state(f, &shares))
            .collect();
        let tasks = self
            .frameworks
            .values()
            .flat_map(|f| f.tasks.values())
            .map(|t| {
                let agent = self.agents.get(&t.info.agent_id);
                let usage = agent.and_then(|a| a.usage_of(&t.framework_id, &t.info.task_id));
                let pid = agent.and_then(|a| a.pid_of(&t.framework_id, &t.info.task_id));
                task_view(t, usage, pid)
            })
            .collect();
        MasterState {
            agents,
            frameworks,
            tasks,
            completed_tasks: self
                .completed
                .iter()
                .map(|t| task_view(t, None, None))
                .collect(),
            completed_frameworks: self.completed_frameworks.iter().cloned().collect(),
            recovered_agents: self.recovered_agents.keys().cloned().collect(),
            unreachable_agents: self
                .unreachable_agents
                .keys()
                .chain(&self.recovered_unreachable)
                .cloned()
                .collect(),
            gone_agents: self.gone_agents.iter().cloned().collect(),
            maintenance: self.maintenance.clone(),
            connections: self.conns.len(),
            report_rate: self.report_rate,
            outstanding_offers: self.offers.len(),
            shares,
            allocator_shards: self.allocator.count(),
            allocation_runs: self.run_times.clone(),
            weights: self.allocator.weights(),
            quotas: self.quotas.clone(),
            counters: self.counters.clone(),
        }
    }

    pub(super) fn agent_state(&self, agent: &Agent) -> AgentState {
        let used: Resources = agent
            .tasks
            .iter()
            .filter_map(|(f, t)| self.frameworks.get(f).and_then(|f| f.tasks.get(t)))
            .filter(|t| !t.recovered)
            .map(|t| &t.info.resources)
            .sum();
        let offered: Resources = agent
            .offers
            .iter()
            .filter_map(|id| self.offers.get(id))
            .map(|r| r.resources())
            .sum();
        let reservations = self
            .reservations
            .get(&agent.id)
            .map_or(&[][..], Vec::as_slice);
        AgentState {
            id: agent.id.clone(),
            hostname: agent.info.hostname.clone(),
            http_address: agent.info.http_address.clone(),
            active: agent.is_connected() && !self.is_deactivated(&agent.id),
            deactivated: self.is_deactivated(&agent.id),
            drain: self.drain_of(&agent.id).cloned(),
            total: super::reservations::reserved_total(&agent.info.resources, reservations).0,
            reservations: reservations.to_vec(),
            used,
            offered,
            tasks: agent.tasks.len(),
            offers: agent.offers.iter().copied().collect(),
            usage: agent.last_report.as_ref().map(|r| r.total),
            last_report_seq: agent.last_report.as_ref().map(|r| r.seq),
            last_report_timestamp_ms: agent.last_report.as_ref().map(|r| r.timestamp_ms),
            reports: agent.reports,
        }
    }

    pub(super) fn framework_state(&self, framework: &Framework, shares: &Shares) -> FrameworkState {
        let used: Resources = framework
            .tasks
            .values()
            .filter(|t| !t.recovered)
            .map(|t| &t.info.resources)
            .sum();
        let offered: Resources = framework
            .offers
            .iter()
            .filter_map(|id| self.offers.get(id))
            .map(|r| r.resources())
            .sum();
        let dominant_share = shares
            .roles
            .values()
            .filter_map(|role| role.frameworks.get(&framework.id))
            .fold(0.0, |a: f64, b| a.max(*b));
        FrameworkState {
            id: framework.id.clone(),
            name: framework.info.name.clone(),
            user: framework.info.user.clone(),
            roles: framework.roles.clone(),
            active: framework.conn.is_some(),
            recovered: framework.recovered,
            partition_aware: framework.partition_aware(),
            failover_timeout_ms: framework.info.failover_timeout_ms,
            used,
            offered,
            dominant_share,
            tasks: framework.tasks.len(),
            offers: framework.offers.len(),
        }
    }
}
