//! Tasks after launch: status updates from agents, forwarded for acknowledgement; KILL,
//! ACKNOWLEDGE and RECONCILE; and the states the master decides itself (lost, unreachable,
//! dropped) when an agent goes away or forgets a task.

use fleet_proto::ids::{AgentId, FrameworkId, TaskId, UpdateUuid};
use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::messages::scheduler::{Event, ReconcileTask};
use fleet_proto::task::{Reason, Source, StatusUpdate, TaskState, TaskStatus};

use super::records::Task;
use super::{Master, Output};

/// A status the master makes up itself: no uuid, nothing to acknowledge.
pub(super) fn master_status(
    task_id: &TaskId,
    agent_id: Option<AgentId>,
    state: TaskState,
    reason: Reason,
    message: String,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        agent_id,
        state,
        reason: Some(reason),
        message,
        source: Source::Master,
        uuid: None,
        exit_code: None,
        sandbox: None,
        timestamp_ms: 0,
    }
}

impl Master {
    /// An update from the agent `agent_id` (the connection it came on, whatever it claims).
    pub(super) fn status_update(
        &mut self,
        agent_id: &AgentId,
        update: StatusUpdate,
        _now: std::time::Instant,
        out: &mut Vec<Output>,
    ) {
        let StatusUpdate {
            framework_id,
            mut status,
        } = update;
        status.agent_id = Some(agent_id.clone());
        self.counters.status_updates += 1;
        let task = self
            .frameworks
            .get_mut(&framework_id)
            .and_then(|f| f.tasks.get_mut(&status.task_id))
            .filter(|t| &t.info.agent_id == agent_id);
        let Some(task) = task else {
            return self.unknown_task_update(agent_id, framework_id, status, out);
        };
        if status.sandbox.is_none() {
            status.sandbox = task.status.sandbox.clone();
        }
        // A terminal state sticks: a late non-terminal update is forwarded (so that it is
        // acknowledged) but does not bring the task back.
        let changed = status.state != task.state && !task.state.is_terminal();
        if !task.state.is_terminal() || status.state == task.state {
            task.state = status.state;
            task.status = status.clone();
        }
        task.unacked = status.uuid;
        let recover = task.state.is_terminal() && !task.recovered;
        task.recovered |= recover;
        // Copied only when they go back (most updates are STARTING or RUNNING).
        let released = recover.then(|| (task.info.resources.clone(), task.role.clone()));
        let done = task.state.is_terminal() && task.unacked.is_none();
        if let Some((resources, role)) = released {
            self.recover(&framework_id, role.as_deref(), agent_id, &resources);
            self.allocate_agents.insert(agent_id.clone());
        }
        let task_id = status.task_id.clone();
        if changed {
            self.notify_task_updated(&framework_id, &status, out);
        }
        self.send_to_framework(&framework_id, Event::Update { status }, out);
        if done {
            self.complete_task(&framework_id, &task_id);
        }
    }

    /// An update for a task the master does not know (it ended and was acknowledged, or it
    /// ran under a framework that is gone): forwarded when the framework is there to
    /// acknowledge it, acknowledged on its behalf when the framework is gone for good.
    fn unknown_task_update(
        &mut self,
        agent_id: &AgentId,
        framework_id: FrameworkId,
        status: TaskStatus,
        out: &mut Vec<Output>,
    ) {
        match self.frameworks.get(&framework_id) {
            Some(f) if f.conn.is_some() => {
                self.send_to_framework(&framework_id, Event::Update { status }, out)
            }
            Some(_) => {}
            None => {
                if let Some(uuid) = status.uuid {
                    let msg = MasterMessage::AcknowledgeUpdate {
                        framework_id,
                        task_id: status.task_id,
                        uuid,
                    };
                    self.send_to_agent(agent_id, msg, out);
                }
            }
        }
    }

    pub(super) fn kill(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: Option<AgentId>,
        grace_ms: Option<u64>,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(task_id))
        else {
            // As in Mesos: killing an unknown task answers like an explicit reconciliation.
            return self.reconcile_unknown(framework_id, task_id, agent_id, out);
        };
        if task.state.is_terminal() || task.state == TaskState::Unreachable {
            let status = reconciliation_status(task);
            return self.send_to_framework(framework_id, Event::Update { status }, out);
        }
        let msg = MasterMessage::KillTask {
            framework_id: framework_id.clone(),
            task_id: task_id.clone(),
            grace_ms: grace_ms.or(task.info.kill_grace_ms),
        };
        let agent = task.info.agent_id.clone();
        if !self.send_to_agent(&agent, msg, out) {
            tracing::info!(task = %task_id, agent = %agent, "KILL of a task on a disconnected agent: waits for the agent");
        }
    }

    pub(super) fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        task_id: &TaskId,
        uuid: UpdateUuid,
        out: &mut Vec<Output>,
    ) {
        let task = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(task_id));
        let mut agent = agent_id.clone();
        let mut done = false;
        if let Some(task) = task {
            agent = task.info.agent_id.clone();
            if task.unacked == Some(uuid) {
                task.unacked = None;
                done = task.state.is_terminal();
            }
        }
        let msg = MasterMessage::AcknowledgeUpdate {
            framework_id: framework_id.clone(),
            task_id: task_id.clone(),
            uuid,
        };
        self.send_to_agent(&agent, msg, out);
        if done {
            self.complete_task(framework_id, task_id);
        }
    }

    /// RECONCILE: with no tasks, the latest state of each of the framework's non-terminal
    /// tasks; with tasks, the latest state of each (Mesos' rules for unknown ones).
    pub(super) fn reconcile(
        &mut self,
        framework_id: &FrameworkId,
        tasks: Vec<ReconcileTask>,
        out: &mut Vec<Output>,
    ) {
        if tasks.is_empty() {
            let statuses: Vec<TaskStatus> = self
                .frameworks
                .get(framework_id)
                .map(|f| {
                    f.tasks
                        .values()
                        .filter(|t| !t.state.is_terminal())
                        .map(reconciliation_status)
                        .collect()
                })
                .unwrap_or_default();
            for status in statuses {
                self.send_to_framework(framework_id, Event::Update { status }, out);
            }
            return;
        }
        for wanted in tasks {
            let known = self
                .frameworks
                .get(framework_id)
                .and_then(|f| f.tasks.get(&wanted.task_id))
                .map(reconciliation_status);
            match known {
                Some(status) => self.send_to_framework(framework_id, Event::Update { status }, out),
                None => self.reconcile_unknown(framework_id, &wanted.task_id, wanted.agent_id, out),
            }
        }
    }

    /// Mesos' answer for a task the master does not know: TASK_GONE (TASK_LOST for older
    /// frameworks) when its agent is registered; nothing while the agent may still
    /// re-register; TASK_UNKNOWN (TASK_LOST) when the agent is unknown.
    fn reconcile_unknown(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: Option<AgentId>,
        out: &mut Vec<Output>,
    ) {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        let pick = |aware: TaskState| {
            if partition_aware {
                aware
            } else {
                TaskState::Lost
            }
        };
        let state = match &agent_id {
            Some(agent) if self.agents.contains_key(agent) => Some(pick(TaskState::Gone)),
            Some(agent) if self.recovered_agents.contains_key(agent) => None,
            Some(agent) if self.unreachable_agents.contains_key(agent) => {
                Some(pick(TaskState::Unreachable))
            }
            Some(_) => Some(pick(TaskState::Unknown)),
            None if !self.recovered_agents.is_empty() => None,
            None => Some(pick(TaskState::Unknown)),
        };
        let Some(state) = state else {
            return;
        };
        let message = format!("task {task_id} is unknown to the master");
        let status = master_status(task_id, agent_id, state, Reason::Reconciliation, message);
        self.send_to_framework(framework_id, Event::Update { status }, out);
    }

    /// A re-registered agent does not know a task: TASK_LOST (TASK_DROPPED for
    /// partition-aware frameworks) if it had not ended; forgotten if it had.
    pub(super) fn task_gone_from_agent(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        reason: Reason,
        message: String,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let state = if framework.partition_aware() {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        self.master_transition(framework_id, task_id, state, reason, message, out);
    }

    /// The task's agent was removed: TASK_LOST, or TASK_UNREACHABLE for partition-aware
    /// frameworks (kept, so that reconciliation reports it).
    pub(super) fn agent_task_lost(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        reason: Reason,
        message: &str,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let state = if framework.partition_aware() {
            TaskState::Unreachable
        } else {
            TaskState::Lost
        };
        self.master_transition(
            framework_id,
            task_id,
            state,
            reason,
            message.to_owned(),
            out,
        );
    }

    /// A state change decided by the master: the update is sent, resources of a task that
    /// ends are recovered, and a task that ends is completed at once (nothing to ack).
    pub(super) fn master_transition(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
        reason: Reason,
        message: String,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(task_id))
        else {
            return;
        };
        if task.state.is_terminal() {
            return self.complete_task(framework_id, task_id);
        }
        let agent_id = task.info.agent_id.clone();
        let mut status = master_status(task_id, Some(agent_id.clone()), state, reason, message);
        status.sandbox = task.status.sandbox.clone();
        task.state = state;
        task.status = status.clone();
        task.unacked = None;
        let recover = !task.recovered && (state.is_terminal() || state == TaskState::Unreachable);
        task.recovered |= recover;
        let resources = task.info.resources.clone();
        let role = task.role.clone();
        if recover {
            self.recover(framework_id, role.as_deref(), &agent_id, &resources);
        }
        if state == TaskState::Lost {
            self.counters.tasks_lost += 1;
        }
        self.notify_task_updated(framework_id, &status, out);
        self.send_to_framework(framework_id, Event::Update { status }, out);
        if state.is_terminal() {
            self.complete_task(framework_id, task_id);
        } else if let Some(agent) = self.agents.get_mut(&agent_id) {
            // An unreachable task stays with its framework, no longer on the agent.
            agent.remove_task(framework_id, task_id);
        }
    }

    /// Moves an ended task out of the live books into the completed list.
    pub(super) fn complete_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.remove(task_id))
        else {
            return;
        };
        if let Some(agent) = self.agents.get_mut(&task.info.agent_id) {
            agent.remove_task(framework_id, task_id);
        }
        self.push_completed(task);
    }

    pub(super) fn push_completed(&mut self, task: Task) {
        self.completed.push_back(task);
        while self.completed.len() > self.config.max_completed_tasks {
            self.completed.pop_front();
        }
    }
}

fn reconciliation_status(task: &Task) -> TaskStatus {
    let mut status = task.status.clone();
    status.reason = Some(Reason::Reconciliation);
    status.source = Source::Master;
    status.uuid = None;
    status
}
