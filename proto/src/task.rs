//! Task states, reasons and status updates: what every process says about a task.

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateUuid};
use crate::resources::Resources;

/// Where a task is in its life. Terminal states end it; TASK_LOST is terminal for
/// frameworks that are not partition-aware (as in Mesos).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum TaskState {
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_KILLING")]
    Killing,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
    #[serde(rename = "TASK_ERROR")]
    Error,
    #[serde(rename = "TASK_LOST")]
    Lost,
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    #[serde(rename = "TASK_GONE")]
    Gone,
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// The Mesos name, e.g. "TASK_RUNNING".
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }

    /// Whether the task is over: its resources are free and no further update follows.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a task reached its state (Mesos' TaskStatus.Reason, the subset Fleet produces).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Reason {
    #[serde(rename = "REASON_COMMAND_EXECUTOR_FAILED")]
    CommandExecutorFailed,
    #[serde(rename = "REASON_CONTAINER_LAUNCH_FAILED")]
    ContainerLaunchFailed,
    #[serde(rename = "REASON_CONTAINER_LIMITATION_MEMORY")]
    ContainerLimitationMemory,
    #[serde(rename = "REASON_CONTAINER_LIMITATION_DISK")]
    ContainerLimitationDisk,
    #[serde(rename = "REASON_TASK_KILLED_DURING_LAUNCH")]
    TaskKilledDuringLaunch,
    #[serde(rename = "REASON_AGENT_REMOVED")]
    AgentRemoved,
    #[serde(rename = "REASON_AGENT_DISCONNECTED")]
    AgentDisconnected,
    #[serde(rename = "REASON_AGENT_UNKNOWN")]
    AgentUnknown,
    #[serde(rename = "REASON_FRAMEWORK_REMOVED")]
    FrameworkRemoved,
    #[serde(rename = "REASON_INVALID_OFFERS")]
    InvalidOffers,
    #[serde(rename = "REASON_TASK_INVALID")]
    TaskInvalid,
    #[serde(rename = "REASON_TASK_UNKNOWN")]
    TaskUnknown,
    #[serde(rename = "REASON_RECONCILIATION")]
    Reconciliation,
    #[serde(rename = "REASON_EXECUTOR_TERMINATED")]
    ExecutorTerminated,
    /// The operator marked the task's agent gone (MARK_AGENT_GONE).
    #[serde(rename = "REASON_AGENT_REMOVED_BY_OPERATOR")]
    AgentRemovedByOperator,
}

impl Reason {
    /// The Mesos name, e.g. "REASON_CONTAINER_LIMITATION_MEMORY".
    pub fn name(self) -> &'static str {
        match self {
            Reason::CommandExecutorFailed => "REASON_COMMAND_EXECUTOR_FAILED",
            Reason::ContainerLaunchFailed => "REASON_CONTAINER_LAUNCH_FAILED",
            Reason::ContainerLimitationMemory => "REASON_CONTAINER_LIMITATION_MEMORY",
            Reason::ContainerLimitationDisk => "REASON_CONTAINER_LIMITATION_DISK",
            Reason::TaskKilledDuringLaunch => "REASON_TASK_KILLED_DURING_LAUNCH",
            Reason::AgentRemoved => "REASON_AGENT_REMOVED",
            Reason::AgentDisconnected => "REASON_AGENT_DISCONNECTED",
            Reason::AgentUnknown => "REASON_AGENT_UNKNOWN",
            Reason::FrameworkRemoved => "REASON_FRAMEWORK_REMOVED",
            Reason::InvalidOffers => "REASON_INVALID_OFFERS",
            Reason::TaskInvalid => "REASON_TASK_INVALID",
            Reason::TaskUnknown => "REASON_TASK_UNKNOWN",
            Reason::Reconciliation => "REASON_RECONCILIATION",
            Reason::ExecutorTerminated => "REASON_EXECUTOR_TERMINATED",
            Reason::AgentRemovedByOperator => "REASON_AGENT_REMOVED_BY_OPERATOR",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who produced a status update.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum Source {
    #[serde(rename = "SOURCE_MASTER")]
    Master,
    #[serde(rename = "SOURCE_AGENT")]
    Agent,
    #[serde(rename = "SOURCE_EXECUTOR")]
    Executor,
}

/// One state change of one task, as the framework sees it.
#[derive(
    Clone,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub agent_id: Option<AgentId>,
    pub state: TaskState,
    pub reason: Option<Reason>,
    pub message: String,
    pub source: Source,
    /// Present when the update must be acknowledged (it came from an agent).
    pub uuid: Option<UpdateUuid>,
    /// Exit code of the task's command, when it exited.
    pub exit_code: Option<i32>,
    /// The task's sandbox directory on its agent, once it has one.
    pub sandbox: Option<String>,
    /// Unix time in milliseconds.
    pub timestamp_ms: u64,
}

/// The command a task runs: `sh -c value` when `shell`, else `value` exec'd with `arguments`.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct CommandInfo {
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
}

/// A task a framework asks to launch (Mesos' TaskInfo for command tasks).
#[derive(
    Clone,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct TaskInfo {
    pub task_id: TaskId,
    pub name: String,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub command: CommandInfo,
    /// Grace period between SIGTERM and SIGKILL when the task is killed.
    pub kill_grace_ms: Option<u64>,
}

impl TaskInfo {
    /// Command tasks run under an executor named after the task, as in Mesos.
    pub fn executor_id(&self) -> ExecutorId {
        ExecutorId(self.task_id.0.clone())
    }
}

/// A status update travelling agent -> master -> framework, acknowledged back by uuid.
#[derive(
    Clone,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct StatusUpdate {
    pub framework_id: FrameworkId,
    pub status: TaskStatus,
}

/// Unix time now, in milliseconds.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
