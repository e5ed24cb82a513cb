//! The agent protocol: the control stream (both ways) and the report stream (agent to master).

use crate::ids::{AgentId, FrameworkId, TaskId, UpdateUuid};
use crate::resources::{Attributes, Resources};
use crate::task::{StatusUpdate, TaskInfo, TaskState};

/// What an agent tells the master about itself when it (re-)registers.
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
pub struct AgentInfo {
    pub hostname: String,
    /// Address of the agent's HTTP endpoint (host:port), for operators and sandbox links.
    pub http_address: String,
    pub resources: Resources,
    pub attributes: Attributes,
}

/// A framework as far as an agent needs to know it.
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
pub struct AgentFramework {
    pub id: FrameworkId,
    pub name: String,
    pub user: String,
}

/// A task an agent still runs (or knows the end of) when it re-registers.
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
pub struct RunningTask {
    pub framework: AgentFramework,
    pub task: TaskInfo,
    pub state: TaskState,
}

/// Agent -> master, on the control stream.
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
pub enum AgentMessage {
    /// First message on the control stream. `agent_id` is set when the agent has one
    /// from an earlier registration (re-registration).
    Register {
        agent_id: Option<AgentId>,
        info: AgentInfo,
        tasks: Vec<RunningTask>,
    },
    StatusUpdate(StatusUpdate),
    /// Answer to `MasterMessage::Ping`.
    Pong {
        nonce: u64,
    },
}

/// Master -> agent, on the control stream.
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
pub enum MasterMessage {
    Registered {
        agent_id: AgentId,
        /// How often the agent should send a report (which doubles as its heartbeat).
        report_interval_ms: u64,
    },
    RunTask {
        framework: AgentFramework,
        task: TaskInfo,
    },
    KillTask {
        framework_id: FrameworkId,
        task_id: TaskId,
        grace_ms: Option<u64>,
    },
    /// The framework acknowledged this update; the agent may forget it.
    AcknowledgeUpdate {
        framework_id: FrameworkId,
        task_id: TaskId,
        uuid: UpdateUuid,
    },
    /// Kill every task of a framework that was torn down.
    ShutdownFramework {
        framework_id: FrameworkId,
    },
    Ping {
        nonce: u64,
    },
    /// The master refuses the agent; the connection closes after this.
    Refused {
        reason: String,
    },
}

/// Resource usage of one container or of the whole agent.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Usage {
    pub cpu_time_ns: u64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Bytes written by write(2)-family syscalls, counted in the kernel by eBPF.
    pub bytes_written: u64,
}

/// Usage of one task.
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
pub struct TaskUsage {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub usage: Usage,
    /// The host pid of the container's main process (0 while unknown): the same across
    /// agent restarts for as long as the task runs.
    pub pid: u32,
}

/// Agent -> master, once per interval on the report stream. The master reads it in place
/// (`rkyv::access`) without copying it into owned structs.
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
pub struct Report {
    pub agent_id: AgentId,
    pub seq: u64,
    pub timestamp_ms: u64,
    pub tasks: Vec<TaskUsage>,
    pub total: Usage,
}
