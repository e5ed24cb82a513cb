//! The scheduler protocol between a framework and the master: calls up, events down.

use crate::ids::{AgentId, FrameworkId, OfferId, TaskId, UpdateUuid};
use crate::resources::{Attributes, Resources};
use crate::task::{TaskInfo, TaskStatus};

/// How a framework describes itself when it subscribes.
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
pub struct FrameworkInfo {
    /// Set when re-subscribing after a failover.
    pub id: Option<FrameworkId>,
    pub name: String,
    pub user: String,
    /// Roles the framework wants offers for; empty means the default role "*".
    pub roles: Vec<String>,
    pub principal: Option<String>,
    /// How long the master keeps the framework's tasks after it disconnects.
    pub failover_timeout_ms: u64,
    pub capabilities: Capabilities,
    /// Per role, the agents the framework wants offers from (Mesos' OfferConstraints);
    /// a role without an entry takes offers from any agent.
    #[serde(default)]
    pub offer_constraints: Vec<RoleConstraints>,
}

/// The constraints of one role: an agent qualifies if it satisfies every constraint of at
/// least one group.
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
pub struct RoleConstraints {
    pub role: String,
    pub groups: Vec<Vec<AttributeConstraint>>,
}

/// One predicate on an agent's attribute or hostname.
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
pub struct AttributeConstraint {
    pub selector: Selector,
    pub predicate: Predicate,
}

/// What a constraint looks at.
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
pub enum Selector {
    /// The agent's attribute of this name (the first, if repeated).
    Attribute(String),
    /// The agent's hostname.
    Hostname,
}

/// How a constraint judges the selected value. Text predicates compare the value as
/// text: a text attribute's value, a scalar's number as written (`3`, `2.5`), the
/// hostname; ranges and sets never equal or match a text, and an agent without the
/// attribute satisfies only `NotExists` and `TextNotEquals`.
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
pub enum Predicate {
    Exists,
    NotExists,
    TextEquals(String),
    TextNotEquals(String),
    /// The whole text matches this regular expression (Rust `regex` syntax).
    TextMatches(String),
}

impl FrameworkInfo {
    /// The roles in effect: the given ones, or "*" when none are given.
    pub fn effective_roles(&self) -> Vec<String> {
        if self.roles.is_empty() {
            vec!["*".to_owned()]
        } else {
            self.roles.clone()
        }
    }
}

/// Framework capabilities that change what the master does for it.
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
pub struct Capabilities {
    /// Gets TASK_UNREACHABLE / TASK_GONE / TASK_UNKNOWN instead of TASK_LOST.
    pub partition_aware: bool,
    pub gpu_resources: bool,
    pub multi_role: bool,
}

/// Filters sent with DECLINE or ACCEPT.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Filters {
    /// Seconds before the refused resources are offered to this framework again.
    /// Mesos' default is 5 s; capped at 365 days.
    pub refuse_seconds: f64,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: 5.0,
        }
    }
}

/// An operation in an ACCEPT call.
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
pub enum Operation {
    Launch {
        tasks: Vec<TaskInfo>,
    },
    /// Reserves offered unreserved resources for a role of the framework (dynamic
    /// reservation): each entry names the role it is to be reserved for. They stay offered
    /// to the framework, now reserved; later LAUNCH operations of the same ACCEPT may use
    /// them.
    Reserve {
        resources: Resources,
    },
    /// Makes offered resources reserved dynamically for a role of the framework
    /// unreserved again.
    Unreserve {
        resources: Resources,
    },
}

/// A task named in an explicit RECONCILE.
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
pub struct ReconcileTask {
    pub task_id: TaskId,
    pub agent_id: Option<AgentId>,
}

/// A framework's secret. Its `Debug` shows no characters, so a logged call never leaks it.
#[derive(
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Framework -> master.
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
pub enum Call {
    /// Proves the framework's principal before SUBSCRIBE, as Mesos' scheduler driver
    /// authenticates before it registers. Required when the master has a credentials file;
    /// the master's connection layer answers it (a refusal is a fatal ERROR naming the
    /// principal), the core never sees it.
    Authenticate {
        principal: String,
        secret: Secret,
    },
    Subscribe {
        framework: FrameworkInfo,
        suppressed_roles: Vec<String>,
    },
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    },
    /// Unsuppress and clear filters, for the given roles or all of the framework's.
    Revive {
        roles: Vec<String>,
    },
    Suppress {
        roles: Vec<String>,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
        grace_ms: Option<u64>,
    },
    Acknowledge {
        agent_id: AgentId,
        task_id: TaskId,
        uuid: UpdateUuid,
    },
    /// Empty list: implicit reconciliation (all of the framework's tasks).
    Reconcile {
        tasks: Vec<ReconcileTask>,
    },
    Teardown,
}

impl Call {
    /// The Mesos name of the call, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Authenticate { .. } => "AUTHENTICATE",
            Call::Subscribe { .. } => "SUBSCRIBE",
            Call::Accept { .. } => "ACCEPT",
            Call::Decline { .. } => "DECLINE",
            Call::Revive { .. } => "REVIVE",
            Call::Suppress { .. } => "SUPPRESS",
            Call::Kill { .. } => "KILL",
            Call::Acknowledge { .. } => "ACKNOWLEDGE",
            Call::Reconcile { .. } => "RECONCILE",
            Call::Teardown => "TEARDOWN",
        }
    }
}

/// Resources of one agent offered to one framework.
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
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    /// The role the resources are allocated to.
    pub role: String,
    pub resources: Resources,
    pub attributes: Attributes,
}

/// Master -> framework.
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
pub enum Event {
    Subscribed {
        framework_id: FrameworkId,
        heartbeat_interval_ms: u64,
    },
    Offers {
        offers: Vec<Offer>,
    },
    Rescind {
        offer_id: OfferId,
    },
    Update {
        status: TaskStatus,
    },
    Heartbeat,
    /// The framework did something the master refuses; with `fatal` the session ends.
    Error {
        message: String,
        fatal: bool,
    },
}

impl Event {
    /// The Mesos name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Subscribed { .. } => "SUBSCRIBED",
            Event::Offers { .. } => "OFFERS",
            Event::Rescind { .. } => "RESCIND",
            Event::Update { .. } => "UPDATE",
            Event::Heartbeat => "HEARTBEAT",
            Event::Error { .. } => "ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_authenticate_call_hides_the_secret() {
        let call = Call::Authenticate {
            principal: "web".into(),
            secret: Secret("hunter2".into()),
        };
        let shown = format!("{call:?}");
        assert!(
            shown.contains("web") && !shown.contains("hunter2"),
            "{shown}"
        );
        let mut decoder = crate::frame::FrameDecoder::new(crate::frame::MAX_FRAME_LEN);
        decoder.push(&crate::frame::encode(&call).unwrap());
        let body = decoder.next_frame().unwrap().unwrap();
        assert_eq!(crate::frame::decode::<Call>(&body).unwrap(), call);
    }
}
