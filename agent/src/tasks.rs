//! The agent's task lifecycle as a sans-I/O state machine: what a master message or a
//! container event changes, which containers to launch or kill, and which status updates
//! to send (and resend until acknowledged). The link drives it; tests drive it directly.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, TaskId, UpdateUuid, random_id};
use fleet_proto::messages::agent::{AgentFramework, RunningTask};
use fleet_proto::task::{
    Reason, Source, StatusUpdate, TaskInfo, TaskState, TaskStatus, unix_millis,
};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, Write};
use crate::containerizer::{
    Adoption, CommandSpec, ContainerEvent, ContainerSpec, Isolation, Limits, Outcome, outcome,
};

/// An unacknowledged update is sent again after this long, then after twice as long each
/// time, up to [`UPDATE_RETRY_MAX`] (Mesos' status update manager does the same).
pub const UPDATE_RETRY: Duration = Duration::from_secs(1);
pub const UPDATE_RETRY_MAX: Duration = Duration::from_secs(60);

/// An update waiting for its acknowledgement.
#[derive(Debug, Clone)]
struct Pending {
    /// When it is next due to be sent again.
    due: Instant,
    /// How long after the next send it is due again.
    backoff: Duration,
    /// Whether it went out at least once (an update waits while an older one of its task
    /// is unacknowledged).
    sent: bool,
    update: StatusUpdate,
}

impl Pending {
    fn new(now: Instant, update: StatusUpdate) -> Self {
        Pending {
            due: now + UPDATE_RETRY,
            backoff: UPDATE_RETRY,
            sent: false,
            update,
        }
    }
}
/// Grace between SIGTERM and SIGKILL when the framework names none.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// What the lifecycle asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Launch(ContainerSpec),
    Kill {
        container_id: String,
        grace: Duration,
    },
    Send(StatusUpdate),
}

/// The most processes and threads one task may hold (its cgroup's pids limit): a fork
/// bomb stops there instead of exhausting the host's pid space.
pub const TASK_PIDS_MAX: u64 = 4096;

/// A container's main process, as recorded so a restarted agent can find it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    /// See `containerizer::process_start_time`.
    pub start_time: u64,
}

/// One task as checkpointed (`checkpoint.rs`): everything the lifecycle knows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub framework: AgentFramework,
    pub task: TaskInfo,
    pub container_id: String,
    pub sandbox: PathBuf,
    pub state: TaskState,
    pub kill_requested: bool,
    pub limitation: Option<(Reason, String)>,
    pub gpus: Vec<u32>,
    /// `None` until the container's process has started.
    pub process: Option<ProcessRecord>,
    /// Its status updates not yet acknowledged, oldest first.
    pub unacknowledged: Vec<StatusUpdate>,
}

struct Entry {
    framework: AgentFramework,
    task: TaskInfo,
    container_id: String,
    sandbox: PathBuf,
    state: TaskState,
    kill_requested: bool,
    /// Set when the agent killed it for going over a limit (reason, message): it ends
    /// TASK_FAILED with that reason however its process ends.
    limitation: Option<(Reason, String)>,
    /// Minors of the GPUs it was given; back to the pool when it ends.
    gpus: Vec<u32>,
    process: Option<ProcessRecord>,
}

/// The agent's GPUs: which are free, and the control devices that come with any GPU.
#[derive(Debug, Default)]
struct GpuPool {
    free: std::collections::BTreeSet<u32>,
    control: Vec<(u32, u32)>,
}

/// Every task this agent runs or has run and not yet had acknowledged.
pub struct Tasks {
    agent_id: AgentId,
    work_dir: PathBuf,
    tasks: HashMap<TaskId, Entry>,
    by_container: HashMap<String, TaskId>,
    unacked: VecDeque<Pending>,
    gpus: GpuPool,
    checkpoint: Checkpoint,
    /// Containers whose record changed since the last `take_checkpoint`.
    dirty: BTreeSet<String>,
}

impl Tasks {
    pub fn new(agent_id: AgentId, work_dir: PathBuf) -> Self {
        Tasks {
            agent_id,
            tasks: HashMap::new(),
            by_container: HashMap::new(),
            unacked: VecDeque::new(),
            gpus: GpuPool::default(),
            checkpoint: Checkpoint::new(&work_dir),
            work_dir,
            dirty: BTreeSet::new(),
        }
    }

    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    /// The master gave this agent an id (first registration or a new one).
    pub fn set_agent_id(&mut self, id: AgentId) {
        self.agent_id = id;
    }

    /// Mesos' sandbox layout: <work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>.
    pub fn sandbox_path(
        work_dir: &Path,
        agent: &AgentId,
        framework: &FrameworkId,
        task: &TaskInfo,
        container_id: &str,
    ) -> PathBuf {
        work_dir
            .join("slaves")
            .join(agent.as_str())
            .join("frameworks")
            .join(framework.as_str())
            .join("executors")
            .join(task.executor_id().as_str())
            .join("runs")
            .join(container_id)
    }

    /// Launch a task the master sent.
    pub fn run(&mut self, framework: AgentFramework, task: TaskInfo, now: Instant) -> Vec<Action> {
        if let Some(existing) = self.tasks.get(&task.task_id)
            && !existing.state.is_terminal()
        {
            let update = self.update(
                &framework.id,
                &task.task_id,
                TaskState::Error,
                Some(Reason::TaskInvalid),
                format!("task {} is already running on this agent", task.task_id),
                None,
                None,
            );
            return self.send(update, now).into_iter().collect();
        }
        let gpus = match self.take_gpus(&task) {
            Ok(gpus) => gpus,
            Err(message) => {
                let update = self.update(
                    &framework.id,
                    &task.task_id,
                    TaskState::Failed,
                    Some(Reason::ContainerLaunchFailed),
                    message,
                    None,
                    None,
                );
                return self.send(update, now).into_iter().collect();
            }
        };
        let container_id = random_id("C");
        let sandbox = Self::sandbox_path(
            &self.work_dir,
            &self.agent_id,
            &framework.id,
            &task,
            &container_id,
        );
        let starting = self.update(
            &framework.id,
            &task.task_id,
            TaskState::Starting,
            None,
            String::new(),
            None,
            Some(&sandbox),
        );
        let entry = Entry {
            framework,
            task,
            container_id: container_id.clone(),
            sandbox,
            state: TaskState::Starting,
            kill_requested: false,
            limitation: None,
            gpus,
            process: None,
        };
        let spec = self.spec_of(&entry);
        self.by_container
            .insert(container_id.clone(), entry.task.task_id.clone());
        self.tasks.insert(entry.task.task_id.clone(), entry);
        self.dirty.insert(container_id);
        let mut actions: Vec<Action> = self.send(starting, now).into_iter().collect();
        actions.push(Action::Launch(spec));
        actions
    }

    /// The container that runs `entry`'s task (the same after a restart: its environment,
    /// limits and isolation come from the task alone).
    fn spec_of(&self, entry: &Entry) -> ContainerSpec {
        let task = &entry.task;
        let gpus = &entry.gpus;
        ContainerSpec {
            container_id: entry.container_id.clone(),
            sandbox: entry.sandbox.clone(),
            command: CommandSpec {
                shell: task.command.shell,
                value: task.command.value.clone(),
                arguments: task.command.arguments.clone(),
            },
            env: self.environment(&entry.framework.id, task, &entry.sandbox),
            limits: Limits {
                cpus_milli: task.resources.cpus().milli().max(1) as u64,
                mem_bytes: (task.resources.mem_mb().milli().max(0) as u64) * 1024 * 1024 / 1000,
                pids_max: Some(TASK_PIDS_MAX),
                gpus: Some(crate::cgroups::GpuAccess {
                    minors: gpus.clone(),
                    control: self.gpus.control.clone(),
                }),
            },
            isolation: Isolation {
                ports: task
                    .resources
                    .ports()
                    .as_slice()
                    .iter()
                    .filter_map(|r| {
                        Some((u16::try_from(r.begin).ok()?, u16::try_from(r.end).ok()?))
                    })
                    .collect(),
                gpus: gpus.clone(),
                // Given to every container: they are denied to one without GPUs.
                gpu_control: self.gpus.control.clone(),
                disk_bytes: (task.resources.disk_mb().milli().max(0) as u64) * 1024 * 1024 / 1000,
            },
            runtime_dir: Some(self.checkpoint.container_dir(&entry.container_id)),
        }
    }

    fn environment(
        &self,
        framework: &FrameworkId,
        task: &TaskInfo,
        sandbox: &Path,
    ) -> Vec<(String, String)> {
        let mut env = task.command.environment.clone();
        env.push(("FLEET_TASK_ID".into(), task.task_id.to_string()));
        env.push(("FLEET_FRAMEWORK_ID".into(), framework.to_string()));
        env.push(("FLEET_AGENT_ID".into(), self.agent_id.to_string()));
        env.push(("FLEET_EXECUTOR_ID".into(), task.executor_id().to_string()));
        env.push(("FLEET_SANDBOX".into(), sandbox.display().to_string()));
        let ports: Vec<u64> = task.resources.ports().iter().collect();
        for (i, port) in ports.iter().enumerate() {
            env.push((format!("PORT{i}"), port.to_string()));
        }
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u64::to_string).collect();
            env.push(("PORTS".into(), list.join(",")));
            env.push(("PORT".into(), ports[0].to_string()));
        }
        env
    }

    /// Kill a task; a task this agent does not know is reported lost.
    pub fn kill(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        grace: Option<Duration>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(entry) = self.tasks.get_mut(task_id) else {
            let update = self.update(
                framework_id,
                task_id,
                TaskState::Lost,
                Some(Reason::TaskUnknown),
                format!("task {task_id} is not known on this agent"),
                None,
                None,
            );
            return self.send(update, now).into_iter().collect();
        };
        if entry.state.is_terminal() {
            return Vec::new();
        }
        entry.kill_requested = true;
        let first = entry.state != TaskState::Killing;
        entry.state = TaskState::Killing;
        let container_id = entry.container_id.clone();
        self.dirty.insert(container_id.clone());
        let grace = grace
            .or(entry.task.kill_grace_ms.map(Duration::from_millis))
            .unwrap_or(DEFAULT_KILL_GRACE);
        let mut actions = Vec::new();
        if first {
            let fw = entry.framework.id.clone();
            let update = self.update(
                &fw,
                task_id,
                TaskState::Killing,
                None,
                String::new(),
                None,
                None,
            );
            actions.extend(self.send(update, now));
        }
        actions.push(Action::Kill {
            container_id,
            grace,
        });
        actions
    }

    /// Kill every task of a framework that was torn down.
    pub fn shutdown_framework(&mut self, framework_id: &FrameworkId, now: Instant) -> Vec<Action> {
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, e)| &e.framework.id == framework_id && !e.state.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .flat_map(|id| self.kill(framework_id, id, None, now))
            .collect()
    }

    /// The framework acknowledged an update: stop resending it, and forget a task whose
    /// terminal update is acknowledged.
    pub fn acknowledged(
        &mut self,
        task_id: &TaskId,
        uuid: UpdateUuid,
        now: Instant,
    ) -> Vec<Action> {
        self.unacked.retain(|p| {
            !(p.update.status.task_id == *task_id && p.update.status.uuid == Some(uuid))
        });
        // The task's next update, if one waited, goes now.
        let mut actions = Vec::new();
        if let Some(next) = self
            .unacked
            .iter_mut()
            .find(|p| p.update.status.task_id == *task_id)
            && !next.sent
        {
            next.sent = true;
            next.due = now + next.backoff;
            actions.push(Action::Send(next.update.clone()));
        }
        let pending = self
            .unacked
            .iter()
            .any(|p| p.update.status.task_id == *task_id);
        if let Some(entry) = self.tasks.get(task_id) {
            self.dirty.insert(entry.container_id.clone());
        }
        if !pending
            && let Some(entry) = self.tasks.get(task_id)
            && entry.state.is_terminal()
        {
            self.by_container.remove(&entry.container_id);
            self.tasks.remove(task_id);
        }
        actions
    }

    /// A container changed; turn it into the task's next state.
    pub fn container(&mut self, event: ContainerEvent, now: Instant) -> Vec<Action> {
        let (container_id, next) = match event {
            ContainerEvent::Started {
                container_id,
                pid,
                start_time,
                ..
            } => {
                if let Some(entry) = self
                    .by_container
                    .get(&container_id)
                    .and_then(|t| self.tasks.get_mut(t))
                {
                    entry.process = Some(ProcessRecord { pid, start_time });
                    self.dirty.insert(container_id.clone());
                }
                (
                    container_id,
                    (TaskState::Running, None, String::new(), None),
                )
            }
            ContainerEvent::LaunchFailed {
                container_id,
                message,
            } => (
                container_id,
                (
                    TaskState::Failed,
                    Some(Reason::ContainerLaunchFailed),
                    message,
                    None,
                ),
            ),
            ContainerEvent::Exited {
                container_id,
                termination,
                killed,
            } => {
                let requested = killed
                    || self
                        .by_container
                        .get(&container_id)
                        .and_then(|t| self.tasks.get(t))
                        .is_some_and(|e| e.kill_requested);
                let next = match outcome(&termination, requested) {
                    Outcome::Finished => (
                        TaskState::Finished,
                        None,
                        "command exited with status 0".into(),
                        Some(0),
                    ),
                    Outcome::Failed { exit_code, signal } => {
                        let message = match (exit_code, signal) {
                            (Some(code), _) => format!("command exited with status {code}"),
                            (None, Some(sig)) => format!("command was killed by signal {sig}"),
                            (None, None) => "command ended without a status".into(),
                        };
                        (
                            TaskState::Failed,
                            Some(Reason::CommandExecutorFailed),
                            message,
                            exit_code,
                        )
                    }
                    Outcome::MemoryLimit => (
                        TaskState::Failed,
                        Some(Reason::ContainerLimitationMemory),
                        "memory limit exceeded: the container was OOM-killed".into(),
                        termination.exit_code,
                    ),
                    Outcome::Killed => (
                        TaskState::Killed,
                        None,
                        "killed".into(),
                        termination.exit_code,
                    ),
                };
                (container_id, next)
            }
        };
        let Some(task_id) = self.by_container.get(&container_id).cloned() else {
            return Vec::new();
        };
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return Vec::new();
        };
        let (state, reason, message, exit_code) = match (&entry.limitation, next) {
            (Some((reason, message)), (state, _, _, exit_code)) if state.is_terminal() => {
                (TaskState::Failed, Some(*reason), message.clone(), exit_code)
            }
            (_, next) => next,
        };
        // Running again (a container adopted after a restart) is no news either.
        if entry.state.is_terminal()
            || (state == TaskState::Running && entry.state == TaskState::Killing)
            || (state == TaskState::Running && entry.state == TaskState::Running)
        {
            return Vec::new();
        }
        entry.state = state;
        self.dirty.insert(container_id.clone());
        if state.is_terminal() {
            let released = std::mem::take(&mut entry.gpus);
            self.gpus.free.extend(released);
        }
        let Some(entry) = self.tasks.get(&task_id) else {
            return Vec::new();
        };
        let fw = entry.framework.id.clone();
        let sandbox = entry.sandbox.clone();
        let update = self.update(
            &fw,
            &task_id,
            state,
            reason,
            message,
            exit_code,
            Some(&sandbox),
        );
        self.send(update, now).into_iter().collect()
    }

    /// The GPUs this agent offers (minors of /dev/nvidia<N>) and the control devices
    /// (/dev/nvidia-uvm and the like) that come with any of them.
    pub fn set_gpus(&mut self, minors: Vec<u32>, control: Vec<(u32, u32)>) {
        self.gpus = GpuPool {
            free: minors.into_iter().collect(),
            control,
        };
    }

    /// Takes the GPUs `task` asks for from the pool (lowest minors first).
    fn take_gpus(&mut self, task: &TaskInfo) -> Result<Vec<u32>, String> {
        let milli = task.resources.gpus().milli();
        if milli <= 0 {
            return Ok(Vec::new());
        }
        if milli % 1000 != 0 {
            return Err(format!(
                "gpus:{} is not a whole number of GPUs",
                task.resources.gpus()
            ));
        }
        let wanted = usize::try_from(milli / 1000).unwrap_or(usize::MAX);
        if wanted > self.gpus.free.len() {
            return Err(format!(
                "{wanted} GPUs asked for, {} free on this agent",
                self.gpus.free.len()
            ));
        }
        let taken: Vec<u32> = self.gpus.free.iter().take(wanted).copied().collect();
        for minor in &taken {
            self.gpus.free.remove(minor);
        }
        Ok(taken)
    }

    /// Container `container_id` went over a limit that the kernel does not enforce by
    /// itself (disk): kill it at once; its task ends TASK_FAILED with `reason` and
    /// `message`. Nothing happens for a container already ending or unknown.
    pub fn limit_exceeded(
        &mut self,
        container_id: &str,
        reason: Reason,
        message: String,
    ) -> Vec<Action> {
        let Some(entry) = self
            .by_container
            .get(container_id)
            .and_then(|task_id| self.tasks.get_mut(task_id))
        else {
            return Vec::new();
        };
        if entry.state.is_terminal() || entry.limitation.is_some() {
            return Vec::new();
        }
        entry.limitation = Some((reason, message));
        self.dirty.insert(container_id.to_owned());
        vec![Action::Kill {
            container_id: container_id.to_owned(),
            grace: Duration::ZERO,
        }]
    }

    /// (container, disk limit in bytes) of every live container that has one.
    pub fn disk_limits(&self) -> impl Iterator<Item = (&str, u64)> {
        self.tasks
            .values()
            .filter(|e| !e.state.is_terminal() && e.limitation.is_none())
            .filter_map(|e| {
                let milli = u64::try_from(e.task.resources.disk_mb().milli()).ok()?;
                (milli > 0).then(|| (e.container_id.as_str(), milli * 1024 * 1024 / 1000))
            })
    }

    /// Updates due to be sent again.
    pub fn retry(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for pending in self.heads() {
            if now >= pending.due || !pending.sent {
                pending.backoff = (pending.backoff * 2).min(UPDATE_RETRY_MAX);
                pending.due = now + pending.backoff;
                pending.sent = true;
                out.push(Action::Send(pending.update.clone()));
            }
        }
        out
    }

    /// The oldest unacknowledged update of every task (sent again after a reconnect, with
    /// the backoff starting over: a new master answers at once).
    pub fn unacknowledged(&mut self, now: Instant) -> Vec<Action> {
        self.heads()
            .map(|pending| {
                pending.backoff = UPDATE_RETRY;
                pending.due = now + UPDATE_RETRY;
                pending.sent = true;
                Action::Send(pending.update.clone())
            })
            .collect()
    }

    /// Tasks to report when re-registering.
    pub fn running(&self) -> Vec<RunningTask> {
        self.tasks
            .values()
            .map(|e| RunningTask {
                framework: e.framework.clone(),
                task: e.task.clone(),
                state: e.state,
            })
            .collect()
    }

    /// (container, framework, task, host pid or 0) of every live container, for usage
    /// reports.
    pub fn containers(&self) -> impl Iterator<Item = (&str, &FrameworkId, &TaskId, u32)> {
        self.tasks
            .values()
            .filter(|e| !e.state.is_terminal())
            .map(|e| {
                let pid = e.process.map_or(0, |p| u32::try_from(p.pid).unwrap_or(0));
                (
                    e.container_id.as_str(),
                    &e.framework.id,
                    &e.task.task_id,
                    pid,
                )
            })
    }

    /// The resources a task was launched with (its limits), if the agent knows the task.
    pub fn resources_of(&self, task_id: &TaskId) -> Option<&fleet_proto::resources::Resources> {
        self.tasks.get(task_id).map(|e| &e.task.resources)
    }

    /// The checkpoint writes for every container whose record changed since the last call
    /// (a record, or `None` once its task is forgotten), to be made durable before the
    /// actions that came with the changes are performed.
    pub fn take_checkpoint(&mut self) -> Vec<Write> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut writes = Vec::with_capacity(dirty.len());
        for container_id in dirty {
            let entry = self
                .by_container
                .get(&container_id)
                .and_then(|t| self.tasks.get(t));
            let record = match entry.map(|e| serde_json::to_vec_pretty(&self.record_of(e))) {
                Some(Ok(bytes)) => Some(bytes),
                None => None,
                Some(Err(e)) => {
                    // Keeps the previous record rather than removing it.
                    tracing::error!(container = %container_id, "cannot serialize the task record: {e}");
                    continue;
                }
            };
            writes.push(Write {
                container_id,
                record,
            });
        }
        writes
    }

    /// Whether some record changed since the last `take_checkpoint`.
    pub fn checkpoint_pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn record_of(&self, entry: &Entry) -> TaskRecord {
        TaskRecord {
            framework: entry.framework.clone(),
            task: entry.task.clone(),
            container_id: entry.container_id.clone(),
            sandbox: entry.sandbox.clone(),
            state: entry.state,
            kill_requested: entry.kill_requested,
            limitation: entry.limitation.clone(),
            gpus: entry.gpus.clone(),
            process: entry.process,
            unacknowledged: self
                .unacked
                .iter()
                .filter(|p| p.update.status.task_id == entry.task.task_id)
                .map(|p| p.update.clone())
                .collect(),
        }
    }

    /// Takes back the tasks of a checkpoint (after `set_gpus`): their unacknowledged
    /// updates are queued again, their GPUs taken from the pool. Returns the container of
    /// every task not yet ended, with the process recorded for it, to be adopted.
    pub fn restore(&mut self, records: Vec<TaskRecord>) -> Vec<(ContainerSpec, Option<Adoption>)> {
        let now = Instant::now();
        let mut adopt = Vec::new();
        for record in records {
            for update in record.unacknowledged {
                self.unacked.push_back(Pending::new(now, update));
            }
            let entry = Entry {
                framework: record.framework,
                task: record.task,
                container_id: record.container_id,
                sandbox: record.sandbox,
                state: record.state,
                kill_requested: record.kill_requested,
                limitation: record.limitation,
                gpus: record.gpus,
                process: record.process,
            };
            if !entry.state.is_terminal() {
                for minor in &entry.gpus {
                    self.gpus.free.remove(minor);
                }
                let adoption = entry.process.map(|p| Adoption {
                    pid: p.pid,
                    start_time: p.start_time,
                });
                adopt.push((self.spec_of(&entry), adoption));
            }
            self.by_container
                .insert(entry.container_id.clone(), entry.task.task_id.clone());
            self.tasks.insert(entry.task.task_id.clone(), entry);
        }
        adopt
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
        message: String,
        exit_code: Option<i32>,
        sandbox: Option<&Path>,
    ) -> StatusUpdate {
        StatusUpdate {
            framework_id: framework_id.clone(),
            status: TaskStatus {
                task_id: task_id.clone(),
                agent_id: Some(self.agent_id.clone()),
                state,
                reason,
                message,
                source: Source::Agent,
                uuid: Some(UpdateUuid::random()),
                exit_code,
                sandbox: sandbox.map(|p| p.display().to_string()),
                timestamp_ms: unix_millis(),
            },
        }
    }

    /// Queues `update` until acknowledged. Each task's updates form a stream, as in Mesos'
    /// status update manager: only the oldest unacknowledged one is in flight, the next
    /// goes once it is acknowledged, so a framework sees them in order even across
    /// retries and restarts.
    fn send(&mut self, update: StatusUpdate, now: Instant) -> Option<Action> {
        let first = !self
            .unacked
            .iter()
            .any(|p| p.update.status.task_id == update.status.task_id);
        let mut pending = Pending::new(now, update);
        pending.sent = first;
        let action = first.then(|| Action::Send(pending.update.clone()));
        self.unacked.push_back(pending);
        action
    }

    /// The oldest unacknowledged update of each task, in queue order.
    fn heads(&mut self) -> impl Iterator<Item = &mut Pending> {
        let mut seen = std::collections::HashSet::new();
        self.unacked
            .iter_mut()
            .filter(move |p| seen.insert(p.update.status.task_id.clone()))
    }
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
