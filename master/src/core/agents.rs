//! Agents: registration and re-registration (re-adopting the tasks an agent reports),
//! disconnection, liveness from reports and messages, and removal after `agent_timeout`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use fleet_proto::ids::{AgentId, FrameworkId, TaskId, random_id};
use fleet_proto::messages::agent::{
    AgentInfo, AgentMessage, ArchivedReport, ArchivedUsage, MasterMessage, RunningTask, Usage,
};
use fleet_proto::resources::Resources;
use fleet_proto::task::{Reason, Source, TaskState, TaskStatus};

use super::records::{Agent, LastReport, Peer, Task, UnreachableAgent};
use super::{ConnId, Master, Output};
use crate::registry::RegistryOp;

fn message_name(msg: &AgentMessage) -> &'static str {
    match msg {
        AgentMessage::Register { .. } => "REGISTER",
        AgentMessage::StatusUpdate(_) => "STATUS_UPDATE",
        AgentMessage::Pong { .. } => "PONG",
    }
}

fn usage_of(archived: &ArchivedUsage) -> Usage {
    Usage {
        cpu_time_ns: archived.cpu_time_ns.to_native(),
        mem_bytes: archived.mem_bytes.to_native(),
        disk_bytes: archived.disk_bytes.to_native(),
        net_rx_bytes: archived.net_rx_bytes.to_native(),
        net_tx_bytes: archived.net_tx_bytes.to_native(),
        bytes_written: archived.bytes_written.to_native(),
    }
}

impl Master {
    pub(super) fn agent_message(
        &mut self,
        conn: ConnId,
        msg: AgentMessage,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match self.conns.get(&conn).cloned() {
            Some(Peer::AgentPending) | None => match msg {
                AgentMessage::Register {
                    agent_id,
                    info,
                    tasks,
                } => self.register_agent(conn, agent_id, info, tasks, now, out),
                other => {
                    let reason = format!(
                        "the first message on an agent connection must be REGISTER, got {}",
                        message_name(&other)
                    );
                    self.close(conn, reason, out);
                }
            },
            Some(Peer::Agent(id)) => {
                if let Some(agent) = self.agents.get_mut(&id) {
                    agent.last_seen = now;
                }
                match msg {
                    AgentMessage::StatusUpdate(update) => self.status_update(&id, update, now, out),
                    AgentMessage::Pong { .. } => {}
                    AgentMessage::Register { .. } => {
                        let reason =
                            format!("agent {id} sent REGISTER again on a registered connection");
                        self.close(conn, reason, out);
                        self.agent_disconnected(&id, "protocol violation", now, out);
                    }
                }
            }
            Some(Peer::Framework(_) | Peer::FrameworkPending) => {
                self.close(
                    conn,
                    format!(
                        "{} is an agent message, sent on a framework connection",
                        message_name(&msg)
                    ),
                    out,
                );
            }
        }
    }

    fn refuse_agent(&mut self, conn: ConnId, reason: String, out: &mut Vec<Output>) {
        tracing::warn!(conn, "refusing agent: {reason}");
        self.counters.agents_refused += 1;
        out.push(Output::ToAgent {
            conn,
            msg: MasterMessage::Refused {
                reason: reason.clone(),
            },
        });
        self.close(conn, reason, out);
    }

    fn register_agent(
        &mut self,
        conn: ConnId,
        requested: Option<AgentId>,
        info: AgentInfo,
        tasks: Vec<RunningTask>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if let Some(id) = requested.as_ref().filter(|id| self.is_gone(id)) {
            let reason = format!(
                "agent {id} was marked gone by the operator and may not register again; \
                 start the agent with an empty work dir to join as a new agent"
            );
            return self.refuse_agent(conn, reason, out);
        }
        if let Some(reason) = self.down_for_maintenance(&info) {
            return self.refuse_agent(conn, reason, out);
        }
        if let Some(id) = requested.filter(|id| {
            self.agents.contains_key(id)
                || self.recovered_agents.contains_key(id)
                || self.unreachable_agents.contains_key(id)
        }) {
            return self.reregister_agent(conn, id, info, tasks, now, out);
        }
        let id = AgentId(random_id("A"));
        let op = RegistryOp::AdmitAgent {
            id: id.clone(),
            info: info.clone(),
        };
        if let Err(e) = self.registry.apply(op) {
            self.counters.registry_errors += 1;
            return self.refuse_agent(conn, format!("agent could not be admitted: {e}"), out);
        }
        let total = self.agent_total(&id, &info.resources);
        if let Err(e) = self.allocator.add_agent(id.clone(), total, Vec::new()) {
            return self.refuse_agent(conn, e.to_string(), out);
        }
        self.allocator
            .describe_agent(&id, &info.hostname, &info.attributes);
        tracing::info!(agent = %id, hostname = %info.hostname, resources = ?info.resources, "agent registered");
        self.conns.insert(conn, Peer::Agent(id.clone()));
        self.agents
            .insert(id.clone(), Agent::new(id.clone(), info, conn, now));
        self.counters.agents_registered += 1;
        out.push(Output::ToAgent {
            conn,
            msg: MasterMessage::Registered {
                agent_id: id.clone(),
                report_interval_ms: self.config.report_interval.as_millis() as u64,
            },
        });
        // Tasks of an agent the master no longer knows were reported lost: they must not run on.
        for task in tasks.iter().filter(|t| !t.state.is_terminal()) {
            out.push(Output::ToAgent {
                conn,
                msg: MasterMessage::KillTask {
                    framework_id: task.framework.id.clone(),
                    task_id: task.task.task_id.clone(),
                    grace_ms: None,
                },
            });
        }
        self.notify_agent_added(&id, out);
        self.allocate_agents.insert(id);
    }

    fn reregister_agent(
        &mut self,
        conn: ConnId,
        id: AgentId,
        info: AgentInfo,
        reported: Vec<RunningTask>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let op = RegistryOp::AdmitAgent {
            id: id.clone(),
            info: info.clone(),
        };
        if let Err(e) = self.registry.apply(op) {
            self.counters.registry_errors += 1;
            return self.refuse_agent(
                conn,
                format!("agent {id} could not be re-admitted: {e}"),
                out,
            );
        }
        // A connection still open for this agent is stale: its offers too.
        if let Some(old) = self
            .agents
            .get(&id)
            .and_then(|a| a.conn)
            .filter(|old| *old != conn)
        {
            self.close(
                old,
                format!("agent {id} re-registered on another connection"),
                out,
            );
            self.rescind_agent_offers(&id, true, out);
        }
        self.recovered_agents.remove(&id);
        self.recovered_unreachable.remove(&id);
        let added = !self.agents.contains_key(&id);
        let unreachable = self.unreachable_agents.remove(&id);
        let agent = self
            .agents
            .entry(id.clone())
            .or_insert_with(|| Agent::new(id.clone(), info.clone(), conn, now));
        let mut lost = BTreeSet::new();
        if let Some(record) = unreachable {
            // Back within the re-register timeout: its unreachable tasks are its again
            // (those it no longer has are dropped below); the lost ones must stop.
            tracing::info!(agent = %id, "unreachable agent came back");
            for (framework_id, task_id) in &record.unreachable {
                agent.add_task(framework_id, task_id);
            }
            lost = record.lost;
            self.counters.agents_reachable_again += 1;
        }
        agent.info = info;
        agent.conn = Some(conn);
        agent.disconnected_at = None;
        agent.last_seen = now;
        self.conns.insert(conn, Peer::Agent(id.clone()));

        let (lost_tasks, reported): (Vec<RunningTask>, Vec<RunningTask>) = reported
            .into_iter()
            .partition(|t| lost.contains(&(t.framework.id.clone(), t.task.task_id.clone())));
        self.reconcile_agent_tasks(&id, reported, out);
        // Reported TASK_LOST while the agent was unreachable: the framework was told they
        // ended, so they must not run on.
        for task in lost_tasks.iter().filter(|t| !t.state.is_terminal()) {
            tracing::info!(agent = %id, task = %task.task.task_id, "killing a task reported lost while its agent was unreachable");
            out.push(Output::ToAgent {
                conn,
                msg: MasterMessage::KillTask {
                    framework_id: task.framework.id.clone(),
                    task_id: task.task.task_id.clone(),
                    grace_ms: None,
                },
            });
        }

        let mut used: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
        let mut declared = Resources::new();
        if let Some(agent) = self.agents.get(&id) {
            declared = agent.info.resources.clone();
            for (framework_id, task_id) in &agent.tasks {
                if let Some(task) = self
                    .frameworks
                    .get(framework_id)
                    .and_then(|f| f.tasks.get(task_id))
                    && !task.recovered
                {
                    used.entry(framework_id.clone())
                        .or_default()
                        .add(&task.info.resources);
                }
            }
        }
        let total = self.agent_total(&id, &declared);
        if let Err(e) =
            self.allocator
                .add_agent(id.clone(), total.clone(), used.into_iter().collect())
        {
            // The agent runs more than it declares: keep it, offer nothing more than it has free.
            tracing::error!(agent = %id, "{e}");
            let _ = self.allocator.add_agent(id.clone(), total, Vec::new());
            self.allocator.deactivate_agent(&id);
        }
        if let Some(agent) = self.agents.get(&id) {
            self.allocator
                .describe_agent(&id, &agent.info.hostname, &agent.info.attributes);
        }
        if self.is_deactivated(&id) {
            self.allocator.deactivate_agent(&id);
        }
        tracing::info!(agent = %id, "agent re-registered");
        self.counters.agents_reregistered += 1;
        out.push(Output::ToAgent {
            conn,
            msg: MasterMessage::Registered {
                agent_id: id.clone(),
                report_interval_ms: self.config.report_interval.as_millis() as u64,
            },
        });
        if added {
            self.notify_agent_added(&id, out);
        }
        // A drain asked for while it was away starts now.
        self.kill_for_drain(&id, out);
        self.allocate_agents.insert(id);
    }

    /// Makes the master's view of the agent's tasks match what the agent reports: reported
    /// tasks are (re-)adopted with their state, known tasks the agent no longer has are lost.
    fn reconcile_agent_tasks(
        &mut self,
        id: &AgentId,
        reported: Vec<RunningTask>,
        out: &mut Vec<Output>,
    ) {
        let mut seen: BTreeSet<(FrameworkId, TaskId)> = BTreeSet::new();
        for running in reported {
            let framework_id = running.framework.id.clone();
            let task_id = running.task.task_id.clone();
            seen.insert((framework_id.clone(), task_id.clone()));
            if !self.frameworks.contains_key(&framework_id) {
                if self.removed_frameworks.contains(&framework_id) {
                    self.send_to_agent(
                        id,
                        MasterMessage::ShutdownFramework {
                            framework_id: framework_id.clone(),
                        },
                        out,
                    );
                    continue;
                }
                self.recover_framework_from_agent(&running.framework);
            }
            let Some(framework) = self.frameworks.get_mut(&framework_id) else {
                continue;
            };
            let status = TaskStatus {
                task_id: task_id.clone(),
                agent_id: Some(id.clone()),
                state: running.state,
                reason: None,
                message: format!("reported by agent {id} at re-registration"),
                source: Source::Agent,
                uuid: None,
                exit_code: None,
                sandbox: None,
                timestamp_ms: 0,
            };
            match framework.tasks.get_mut(&task_id) {
                Some(task) if task.state != running.state => {
                    // UNREACHABLE was the master's word, not the agent's: nothing the
                    // agent resends corrects it, so the framework hears it back here.
                    let told_unreachable = task.state == TaskState::Unreachable;
                    task.state = running.state;
                    task.status.state = running.state;
                    task.status.message = status.message.clone();
                    task.recovered = running.state.is_terminal();
                    // Otherwise operators see the state now and the framework hears it
                    // from the agent's update stream, which resends what it has not had
                    // acknowledged, in order: an update from here could overtake an
                    // older one the agent resends (RUNNING, then its STARTING again).
                    let update = task.status.clone();
                    self.notify_task_updated(&framework_id, &update, out);
                    if told_unreachable {
                        self.send_to_framework(
                            &framework_id,
                            fleet_proto::messages::scheduler::Event::Update { status: update },
                            out,
                        );
                    }
                }
                Some(_) => {}
                None => {
                    let mut info = running.task;
                    info.agent_id = id.clone();
                    framework.tasks.insert(
                        task_id.clone(),
                        Task {
                            info,
                            framework_id: framework_id.clone(),
                            state: running.state,
                            status,
                            unacked: None,
                            recovered: running.state.is_terminal(),
                            role: None,
                        },
                    );
                    self.notify_task_added(&framework_id, &task_id, out);
                }
            }
            if let Some(agent) = self.agents.get_mut(id)
                && !agent
                    .tasks
                    .contains(&(framework_id.clone(), task_id.clone()))
            {
                agent.add_task(&framework_id, &task_id);
            }
        }
        let missing: Vec<(FrameworkId, TaskId)> = self
            .agents
            .get(id)
            .map(|a| {
                a.tasks
                    .iter()
                    .filter(|key| !seen.contains(*key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for (framework_id, task_id) in missing {
            let message = format!("task is unknown to agent {id} after it re-registered");
            self.task_gone_from_agent(
                &framework_id,
                &task_id,
                Reason::Reconciliation,
                message,
                out,
            );
        }
    }

    pub(super) fn agent_disconnected(
        &mut self,
        id: &AgentId,
        reason: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        tracing::info!(agent = %id, "agent disconnected: {reason}");
        agent.conn = None;
        agent.disconnected_at = Some(now);
        self.allocator.deactivate_agent(id);
        self.rescind_agent_offers(id, true, out);
    }

    /// The agent was gone (`silent`: connected but quiet) for `agent_timeout`: remove it.
    pub(super) fn agent_timed_out(
        &mut self,
        id: &AgentId,
        silent: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let timeout = self.config.agent_timeout.as_secs_f64();
        let (reason, message) = if silent {
            (
                Reason::AgentRemoved,
                format!(
                    "agent {id} sent no report or message for {timeout}s and was marked \
                     unreachable"
                ),
            )
        } else {
            (
                Reason::AgentDisconnected,
                format!("agent {id} stayed disconnected for {timeout}s and was marked unreachable"),
            )
        };
        self.mark_unreachable(id, reason, message, now, out);
    }

    /// Like `remove_agent`, but the agent may still come back with its id and tasks for
    /// `agent_reregister_timeout`: it stays in the registry meanwhile.
    fn mark_unreachable(
        &mut self,
        id: &AgentId,
        reason: Reason,
        message: String,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        tracing::warn!(agent = %id, "{message}");
        if let Some(conn) = self.agents.get(id).and_then(|a| a.conn) {
            self.close(conn, message.clone(), out);
        }
        self.rescind_agent_offers(id, false, out);
        self.allocator.remove_agent(id);
        let Some(agent) = self.agents.remove(id) else {
            return;
        };
        let mut record = UnreachableAgent {
            since: now,
            unreachable: BTreeSet::new(),
            lost: BTreeSet::new(),
        };
        for (framework_id, task_id) in &agent.tasks {
            let aware = self
                .frameworks
                .get(framework_id)
                .is_some_and(|f| f.partition_aware());
            let live = self
                .frameworks
                .get(framework_id)
                .and_then(|f| f.tasks.get(task_id))
                .is_some_and(|t| !t.state.is_terminal());
            self.agent_task_lost(framework_id, task_id, reason, &message, out);
            let key = (framework_id.clone(), task_id.clone());
            match (live, aware) {
                (true, true) => record.unreachable.insert(key),
                (true, false) => record.lost.insert(key),
                (false, _) => false,
            };
        }
        self.unreachable_agents.insert(id.clone(), record);
        self.record_marks_logged(id);
        self.counters.agents_unreachable += 1;
        self.notify_agent_removed(id, out);
    }

    /// An unreachable agent did not re-register in time: it is removed, and its tasks
    /// still unreachable are gone.
    pub(super) fn unreachable_agent_gone(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        let Some(record) = self.unreachable_agents.remove(id) else {
            return;
        };
        let timeout = self.config.agent_reregister_timeout.as_secs_f64();
        let message = format!("agent {id} did not re-register within {timeout}s and was removed");
        tracing::warn!(agent = %id, "{message}");
        for (framework_id, task_id) in &record.unreachable {
            self.master_transition(
                framework_id,
                task_id,
                TaskState::Gone,
                Reason::AgentRemoved,
                message.clone(),
                out,
            );
        }
        self.registry_apply(RegistryOp::RemoveAgent { id: id.clone() });
        self.counters.agents_removed += 1;
    }

    pub(super) fn report(
        &mut self,
        conn: ConnId,
        report: &ArchivedReport,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(Peer::Agent(id)) = self.conns.get(&conn) else {
            tracing::debug!(
                conn,
                "report on a connection without a registered agent; ignored"
            );
            return;
        };
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if report.agent_id.0.as_str() != id.as_str() {
            let reason = format!(
                "report names agent {} but the connection belongs to agent {id}",
                report.agent_id.0.as_str()
            );
            let id = id.clone();
            self.close(conn, reason, out);
            self.agent_disconnected(&id, "protocol violation", now, out);
            return;
        }
        agent.last_seen = now;
        agent.reports += 1;
        agent.last_report = Some(LastReport {
            seq: report.seq.to_native(),
            timestamp_ms: report.timestamp_ms.to_native(),
            total: usage_of(&report.total),
        });
        for task in report.tasks.iter() {
            if let Some(list) = agent.task_usage.get_mut(task.task_id.0.as_str())
                && let Some(entry) = list
                    .iter_mut()
                    .find(|(f, _, _)| f.as_str() == task.framework_id.0.as_str())
            {
                entry.1 = usage_of(&task.usage);
                entry.2 = task.pid.to_native();
            }
        }
        self.counters.reports_received += 1;
    }
}

impl Agent {
    pub(super) fn new(id: AgentId, info: AgentInfo, conn: ConnId, now: Instant) -> Self {
        Agent {
            id,
            info,
            conn: Some(conn),
            last_seen: now,
            disconnected_at: None,
            tasks: BTreeSet::new(),
            task_usage: HashMap::new(),
            offers: BTreeSet::new(),
            last_report: None,
            reports: 0,
        }
    }
}
