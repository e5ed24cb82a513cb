//! What the master keeps in memory about each connection, agent, framework, task and
//! outstanding offer. Plain data: the behaviour lives in the sibling modules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use fleet_proto::ids::{AgentId, FrameworkId, OfferId, TaskId, UpdateUuid};
use fleet_proto::messages::agent::{AgentFramework, AgentInfo, Usage};
use fleet_proto::messages::scheduler::{FrameworkInfo, Offer};
use fleet_proto::resources::Resources;
use fleet_proto::task::{TaskInfo, TaskState, TaskStatus};

/// A connection, as numbered by the I/O shell.
pub type ConnId = u64;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// An agent that has not registered yet.
    AgentPending,
    Agent(AgentId),
    /// A framework that has not subscribed yet.
    FrameworkPending,
    Framework(FrameworkId),
}

/// The last report of an agent.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastReport {
    pub seq: u64,
    /// The agent's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    pub total: Usage,
}

#[derive(Debug)]
pub(crate) struct Agent {
    pub id: AgentId,
    pub info: AgentInfo,
    /// None while disconnected.
    pub conn: Option<ConnId>,
    /// Last message or report on its connection (liveness).
    pub last_seen: Instant,
    /// When its connection closed; it is removed `agent_timeout` later unless it re-registers.
    pub disconnected_at: Option<Instant>,
    /// Tasks the master believes are on it, terminal ones until acknowledged.
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    /// Latest usage per task, by task id (a report names tasks by string, looked up in place).
    /// With it, the host pid of the task's main process (0 while unknown).
    pub task_usage: HashMap<String, Vec<(FrameworkId, Usage, u32)>>,
    pub offers: BTreeSet<OfferId>,
    pub last_report: Option<LastReport>,
    pub reports: u64,
}

/// An agent marked unreachable: what its re-registration needs to know.
#[derive(Debug, Clone)]
pub struct UnreachableAgent {
    pub since: Instant,
    /// Its tasks of partition-aware frameworks, now TASK_UNREACHABLE.
    pub unreachable: BTreeSet<(FrameworkId, TaskId)>,
    /// Its tasks reported TASK_LOST (other frameworks): they must not run on.
    pub lost: BTreeSet<(FrameworkId, TaskId)>,
}

impl Agent {
    pub fn add_task(&mut self, framework: &FrameworkId, task: &TaskId) {
        self.tasks.insert((framework.clone(), task.clone()));
        self.task_usage.entry(task.0.clone()).or_default().push((
            framework.clone(),
            Usage::default(),
            0,
        ));
    }

    pub fn remove_task(&mut self, framework: &FrameworkId, task: &TaskId) {
        self.tasks.remove(&(framework.clone(), task.clone()));
        if let Some(list) = self.task_usage.get_mut(task.as_str()) {
            list.retain(|(f, _, _)| f != framework);
            if list.is_empty() {
                self.task_usage.remove(task.as_str());
            }
        }
    }

    pub fn usage_of(&self, framework: &FrameworkId, task: &TaskId) -> Option<Usage> {
        self.task_usage
            .get(task.as_str())
            .and_then(|list| list.iter().find(|(f, _, _)| f == framework))
            .map(|(_, u, _)| *u)
    }

    /// The host pid of the task's main process, once a report named it.
    pub fn pid_of(&self, framework: &FrameworkId, task: &TaskId) -> Option<u32> {
        self.task_usage
            .get(task.as_str())
            .and_then(|list| list.iter().find(|(f, _, _)| f == framework))
            .map(|(_, _, pid)| *pid)
            .filter(|pid| *pid > 0)
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }
}

#[derive(Debug)]
pub(crate) struct Framework {
    pub id: FrameworkId,
    pub info: FrameworkInfo,
    pub roles: Vec<String>,
    /// None while disconnected.
    pub conn: Option<ConnId>,
    /// When its connection closed; torn down after its failover timeout.
    pub disconnected_at: Option<Instant>,
    /// Known from a re-registering agent or the registry only; it has not subscribed yet.
    pub recovered: bool,
    pub tasks: BTreeMap<TaskId, Task>,
    pub offers: BTreeSet<OfferId>,
}

impl Framework {
    pub fn partition_aware(&self) -> bool {
        self.info.capabilities.partition_aware
    }

    pub fn agent_view(&self) -> AgentFramework {
        AgentFramework {
            id: self.id.clone(),
            name: self.info.name.clone(),
            user: self.info.user.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub info: TaskInfo,
    pub framework_id: FrameworkId,
    pub state: TaskState,
    /// The latest status, as last sent (or to be sent) to the framework.
    pub status: TaskStatus,
    /// The uuid of the last agent update not yet acknowledged by the framework.
    pub unacked: Option<UpdateUuid>,
    /// Whether its resources went back to the allocator (it reached a terminal state).
    pub recovered: bool,
    /// The role its resources were allocated in (None: not known, e.g. a task a
    /// re-registering agent reported).
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct OfferRecord {
    pub offer: Offer,
    pub expires: Option<Instant>,
}

impl OfferRecord {
    pub fn resources(&self) -> &Resources {
        &self.offer.resources
    }
}
