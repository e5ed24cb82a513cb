//! The registry: what the master must remember across failovers (admitted agents and
//! which of them are unreachable, deactivated or draining, agents marked gone, frameworks,
//! role weights, quotas, dynamic reservations and the maintenance schedule), never tasks
//! or usage. The master's core writes it
//! through the small synchronous [`Registry`] trait; [`InMemoryRegistry`] keeps it in
//! memory, [`ReplicatedRegistry`] in the masters' Raft log (`fleet-raft`), where
//! [`RegistryState`] is the state machine (`state_machine.rs`: ops applied, rkyv
//! snapshots).

mod replicated;
mod state_machine;

use std::collections::{BTreeMap, BTreeSet};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::messages::agent::AgentInfo;
use fleet_proto::messages::scheduler::FrameworkInfo;
use fleet_proto::resources::Resources;

use crate::core::{DrainInfo, Maintenance};

pub use replicated::{COMMIT_BUCKETS_US, CommitTimes, ReplicatedRegistry};
pub use state_machine::SnapshotError;

/// A role's quota as the operator set it (UPDATE_QUOTA): scalar guarantees and limits. No
/// guarantees and no limits is no quota.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct QuotaConfig {
    pub guarantees: Resources,
    pub limits: Option<Resources>,
}

impl QuotaConfig {
    pub fn is_empty(&self) -> bool {
        self.guarantees.is_empty() && self.limits.is_none()
    }
}

/// Resources reserved dynamically on one agent for one principal (RESERVE_RESOURCES by an
/// operator, or a framework's RESERVE): each entry carries the role it is reserved for.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Reservation {
    /// Who reserved them (the operator's or the framework's principal), if known.
    pub principal: Option<String>,
    pub resources: Resources,
}

/// What the master records about an admitted agent beyond its information: the default
/// (nothing marked) is not stored.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AgentMarks {
    /// Marked unreachable: it may re-register within `--agent-reregister-timeout`.
    pub unreachable: bool,
    /// Deactivated by an operator (DEACTIVATE_AGENT, DRAIN_AGENT).
    pub deactivated: bool,
    /// Its drain, when an operator drains it.
    pub drain: Option<DrainInfo>,
}

impl AgentMarks {
    pub fn is_empty(&self) -> bool {
        *self == AgentMarks::default()
    }
}

/// One change to the registry: what a Raft log entry carries. Its serde form is its rkyv
/// archive as bytes (`state_machine.rs`): the proto types it holds serialize to Mesos
/// JSON with serde, which a positional format such as the log's postcard cannot carry.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum RegistryOp {
    /// An agent was admitted (or re-registered with new information): insert or replace.
    AdmitAgent {
        id: AgentId,
        info: AgentInfo,
    },
    RemoveAgent {
        id: AgentId,
    },
    /// A framework subscribed (or re-subscribed with new information): insert or replace.
    AddFramework {
        id: FrameworkId,
        info: FrameworkInfo,
    },
    RemoveFramework {
        id: FrameworkId,
    },
    SetWeight {
        role: String,
        weight: f64,
    },
    /// Sets a role's quota; an empty one removes it.
    SetQuota {
        role: String,
        quota: QuotaConfig,
    },
    /// Replaces the dynamic reservations on an agent; none removes them.
    SetReservations {
        agent: AgentId,
        reservations: Vec<Reservation>,
    },
    /// Replaces what is marked on an admitted agent; empty marks remove them.
    SetAgentMarks {
        id: AgentId,
        marks: AgentMarks,
    },
    /// Removes an agent for good (MARK_AGENT_GONE): its id may not register again.
    MarkAgentGone {
        id: AgentId,
    },
    /// Replaces the maintenance schedule and the machines down.
    SetMaintenance {
        maintenance: Maintenance,
    },
}

impl RegistryOp {
    /// A short description for logs and errors, e.g. "admit agent A-1f".
    pub fn describe(&self) -> String {
        match self {
            RegistryOp::AdmitAgent { id, .. } => format!("admit agent {id}"),
            RegistryOp::RemoveAgent { id } => format!("remove agent {id}"),
            RegistryOp::AddFramework { id, .. } => format!("add framework {id}"),
            RegistryOp::RemoveFramework { id } => format!("remove framework {id}"),
            RegistryOp::SetWeight { role, weight } => {
                format!("set weight of role '{role}' to {weight}")
            }
            RegistryOp::SetQuota { role, quota } if quota.is_empty() => {
                format!("remove the quota of role '{role}'")
            }
            RegistryOp::SetQuota { role, .. } => format!("set the quota of role '{role}'"),
            RegistryOp::SetReservations { agent, .. } => {
                format!("set the reservations on agent {agent}")
            }
            RegistryOp::SetAgentMarks { id, .. } => format!("mark agent {id}"),
            RegistryOp::MarkAgentGone { id } => format!("mark agent {id} gone"),
            RegistryOp::SetMaintenance { .. } => "set the maintenance schedule".to_owned(),
        }
    }
}

/// Everything the registry holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    pub agents: BTreeMap<AgentId, AgentInfo>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    pub weights: BTreeMap<String, f64>,
    pub quotas: BTreeMap<String, QuotaConfig>,
    /// Dynamic reservations per agent (an agent's own `--resources` may reserve statically;
    /// those are not here).
    pub reservations: BTreeMap<AgentId, Vec<Reservation>>,
    /// Marks of admitted agents (only agents with some).
    pub marks: BTreeMap<AgentId, AgentMarks>,
    /// Agents marked gone: their ids may not register again.
    pub gone: BTreeSet<AgentId>,
    pub maintenance: Maintenance,
}

impl RegistryState {
    /// Applies one op; removing what is not there is not an error (ops are idempotent).
    pub fn apply(&mut self, op: RegistryOp) {
        match op {
            RegistryOp::AdmitAgent { id, info } => {
                // Admitted again: no longer unreachable.
                if let Some(marks) = self.marks.get_mut(&id) {
                    marks.unreachable = false;
                    if marks.is_empty() {
                        self.marks.remove(&id);
                    }
                }
                self.agents.insert(id, info);
            }
            RegistryOp::RemoveAgent { id } => {
                self.agents.remove(&id);
                self.reservations.remove(&id);
                self.marks.remove(&id);
            }
            RegistryOp::MarkAgentGone { id } => {
                self.agents.remove(&id);
                self.reservations.remove(&id);
                self.marks.remove(&id);
                self.gone.insert(id);
            }
            RegistryOp::SetAgentMarks { id, marks } => {
                if marks.is_empty() || !self.agents.contains_key(&id) {
                    self.marks.remove(&id);
                } else {
                    self.marks.insert(id, marks);
                }
            }
            RegistryOp::SetMaintenance { maintenance } => {
                self.maintenance = maintenance;
            }
            RegistryOp::AddFramework { id, info } => {
                self.frameworks.insert(id, info);
            }
            RegistryOp::RemoveFramework { id } => {
                self.frameworks.remove(&id);
            }
            RegistryOp::SetWeight { role, weight } => {
                self.weights.insert(role, weight);
            }
            RegistryOp::SetQuota { role, quota } => {
                if quota.is_empty() {
                    self.quotas.remove(&role);
                } else {
                    self.quotas.insert(role, quota);
                }
            }
            RegistryOp::SetReservations {
                agent,
                reservations,
            } => {
                if reservations.is_empty() {
                    self.reservations.remove(&agent);
                } else {
                    self.reservations.insert(agent, reservations);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The op could not be made durable (storage failed, no quorum, not the leader...).
    #[error("registry could not {op}: {reason}")]
    Unavailable { op: String, reason: String },
    #[error("registry refused to {op}: {reason}")]
    Rejected { op: String, reason: String },
}

/// Durable storage of the registry. `apply` returns only once the op is durable: the caller
/// acts on it (answers an agent or framework) only after `Ok`.
pub trait Registry: Send {
    fn apply(&mut self, op: RegistryOp) -> Result<(), RegistryError>;
    fn snapshot(&self) -> RegistryState;
}

/// A registry in memory: nothing survives the process. For `fleet dev` and tests.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    state: RegistryState,
    /// When set, every op fails with this reason (to test how callers handle failures).
    failing: Option<String>,
}

impl InMemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from an existing state, as after a failover.
    pub fn with_state(state: RegistryState) -> Self {
        Self {
            state,
            failing: None,
        }
    }

    /// Makes every following op fail with `reason` (None: succeed again).
    pub fn set_failing(&mut self, reason: Option<String>) {
        self.failing = reason;
    }
}

impl Registry for InMemoryRegistry {
    fn apply(&mut self, op: RegistryOp) -> Result<(), RegistryError> {
        if let Some(reason) = &self.failing {
            return Err(RegistryError::Unavailable {
                op: op.describe(),
                reason: reason.clone(),
            });
        }
        self.state.apply(op);
        Ok(())
    }

    fn snapshot(&self) -> RegistryState {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_info() -> AgentInfo {
        AgentInfo {
            hostname: "h1".into(),
            http_address: "127.0.0.1:5051".into(),
            resources: Default::default(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn ops_apply_and_are_idempotent() {
        let mut registry = InMemoryRegistry::new();
        let id = AgentId::from("A-1");
        registry
            .apply(RegistryOp::AdmitAgent {
                id: id.clone(),
                info: agent_info(),
            })
            .unwrap();
        registry
            .apply(RegistryOp::AddFramework {
                id: FrameworkId::from("F-1"),
                info: FrameworkInfo::default(),
            })
            .unwrap();
        registry
            .apply(RegistryOp::SetWeight {
                role: "eng".into(),
                weight: 2.0,
            })
            .unwrap();
        let state = registry.snapshot();
        assert!(state.agents.contains_key(&id));
        assert_eq!(state.frameworks.len(), 1);
        assert_eq!(state.weights.get("eng"), Some(&2.0));
        registry
            .apply(RegistryOp::RemoveAgent { id: id.clone() })
            .unwrap();
        registry.apply(RegistryOp::RemoveAgent { id }).unwrap();
        assert!(registry.snapshot().agents.is_empty());
    }

    #[test]
    fn failing_registry_reports_the_op() {
        let mut registry = InMemoryRegistry::new();
        registry.set_failing(Some("disk full".into()));
        let err = registry
            .apply(RegistryOp::RemoveFramework {
                id: FrameworkId::from("F-9"),
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "registry could not remove framework F-9: disk full"
        );
        assert!(registry.snapshot().frameworks.is_empty());
    }
}
