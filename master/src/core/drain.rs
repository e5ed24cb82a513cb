//! Operator calls about agents, with Mesos' semantics: DEACTIVATE_AGENT and
//! REACTIVATE_AGENT (no offers from the agent meanwhile, across disconnections), DRAIN_AGENT
//! (deactivate it and kill its tasks: DRAINING until they have ended and their last updates
//! are acknowledged, then DRAINED; it cannot be cancelled), and MARK_AGENT_GONE (removed for
//! good, its tasks TASK_GONE_BY_OPERATOR, its id refused if it comes back).
//!
//! These marks are written to the registry (`AgentMarks`, `MarkAgentGone`) as they
//! change, so a new leader keeps them, as Mesos keeps them in its registry.

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::task::{Reason, TaskState};

use super::{Master, Output};
use crate::registry::RegistryOp;

/// The kill grace period fleet-agent gives a task that declares none: draining caps it
/// with `max_grace_period` too.
const AGENT_DEFAULT_KILL_GRACE_MS: u64 = 3_000;

/// Where a drain stands, as Mesos' `DrainState`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum DrainState {
    /// Its tasks are being killed.
    #[serde(rename = "DRAINING")]
    Draining,
    /// No task is left on it; it stays deactivated until REACTIVATE_AGENT.
    #[serde(rename = "DRAINED")]
    Drained,
}

/// A drain an operator asked for (Mesos' `DrainInfo` with its `DrainConfig`).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct DrainInfo {
    pub state: DrainState,
    /// The longest kill grace period its tasks get.
    pub max_grace_ms: Option<u64>,
    /// Whether it is marked gone once drained.
    pub mark_gone: bool,
}

/// The grace period a draining task is killed with: its own (or the agent's default),
/// capped by the drain's maximum.
fn drain_grace(task_grace_ms: Option<u64>, max_grace_ms: Option<u64>) -> Option<u64> {
    match (task_grace_ms, max_grace_ms) {
        (Some(own), Some(max)) => Some(own.min(max)),
        (None, Some(max)) => Some(AGENT_DEFAULT_KILL_GRACE_MS.min(max)),
        (own, None) => own,
    }
}

impl Master {
    /// Refuses an agent id the master does not know, or that was marked gone.
    fn known_agent(&self, id: &AgentId) -> Result<(), String> {
        if self.gone_agents.contains(id) {
            return Err(format!("agent {id} was marked gone"));
        }
        if self.agents.contains_key(id)
            || self.unreachable_agents.contains_key(id)
            || self.recovered_agents.contains_key(id)
        {
            return Ok(());
        }
        Err(format!("unknown agent {id} (see `fleet agents`)"))
    }

    /// Whether an operator deactivated the agent (also by draining it).
    pub(super) fn is_deactivated(&self, id: &AgentId) -> bool {
        self.deactivated.contains(id)
    }

    /// The agent's drain, if an operator drains it.
    pub(super) fn drain_of(&self, id: &AgentId) -> Option<&DrainInfo> {
        self.drains.get(id)
    }

    /// DEACTIVATE_AGENT: its outstanding offers are rescinded and it is offered no more.
    pub(super) fn deactivate_agent(
        &mut self,
        id: &AgentId,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        self.known_agent(id)?;
        if self.deactivated.insert(id.clone()) {
            tracing::info!(agent = %id, "agent deactivated by the operator");
        }
        self.allocator.deactivate_agent(id);
        self.rescind_agent_offers(id, true, out);
        self.record_marks(id)
    }

    /// REACTIVATE_AGENT: offered again (once connected). A DRAINING agent is refused:
    /// draining cannot be cancelled, as in Mesos.
    pub(super) fn reactivate_agent(&mut self, id: &AgentId) -> Result<(), String> {
        self.known_agent(id)?;
        if self
            .drains
            .get(id)
            .is_some_and(|d| d.state == DrainState::Draining)
        {
            return Err(format!(
                "agent {id} is DRAINING: draining cannot be cancelled; reactivate it once it is \
                 DRAINED"
            ));
        }
        let drained = self.drains.remove(id).is_some();
        if !self.deactivated.remove(id) {
            return if drained {
                self.record_marks(id)
            } else {
                Ok(())
            };
        }
        tracing::info!(agent = %id, "agent reactivated by the operator");
        if self.agents.get(id).is_some_and(|a| a.is_connected()) {
            self.allocator.activate_agent(id);
            self.allocate_agents.insert(id.clone());
        }
        self.record_marks(id)
    }

    /// DRAIN_AGENT: deactivates the agent and kills its tasks now (or when it comes back,
    /// if it is away); it is DRAINED once no task is left on it.
    pub(super) fn drain_agent(
        &mut self,
        id: &AgentId,
        max_grace: Option<std::time::Duration>,
        mark_gone: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        self.deactivate_agent(id, out)?;
        let max_grace_ms = max_grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
        tracing::info!(agent = %id, ?max_grace_ms, mark_gone, "draining agent");
        self.drains.insert(
            id.clone(),
            DrainInfo {
                state: DrainState::Draining,
                max_grace_ms,
                mark_gone,
            },
        );
        self.record_marks(id)?;
        self.kill_for_drain(id, out);
        self.check_drains(out);
        Ok(())
    }

    /// Kills the live tasks of a DRAINING agent, if it is connected; called again when it
    /// re-registers.
    pub(super) fn kill_for_drain(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        let Some(max_grace_ms) = self
            .drains
            .get(id)
            .filter(|d| d.state == DrainState::Draining)
            .map(|d| d.max_grace_ms)
        else {
            return;
        };
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        let kills: Vec<MasterMessage> = agent
            .tasks
            .iter()
            .filter_map(|(framework_id, task_id)| {
                let task = self.frameworks.get(framework_id)?.tasks.get(task_id)?;
                (!task.state.is_terminal()).then(|| MasterMessage::KillTask {
                    framework_id: framework_id.clone(),
                    task_id: task_id.clone(),
                    grace_ms: drain_grace(task.info.kill_grace_ms, max_grace_ms),
                })
            })
            .collect();
        for kill in kills {
            self.send_to_agent(id, kill, out);
        }
    }

    /// DRAINING agents with no task left (ended and acknowledged) are DRAINED, and marked
    /// gone if the drain asked for it.
    pub(super) fn check_drains(&mut self, out: &mut Vec<Output>) {
        let drained: Vec<(AgentId, bool)> = self
            .drains
            .iter()
            .filter(|(_, d)| d.state == DrainState::Draining)
            .filter(|(id, _)| self.agents.get(*id).is_some_and(|a| a.tasks.is_empty()))
            .map(|(id, d)| (id.clone(), d.mark_gone))
            .collect();
        for (id, mark_gone) in drained {
            tracing::info!(agent = %id, "agent drained");
            if let Some(drain) = self.drains.get_mut(&id) {
                drain.state = DrainState::Drained;
            }
            self.record_marks_logged(&id);
            if mark_gone && let Err(e) = self.mark_agent_gone(&id, out) {
                tracing::warn!(agent = %id, "cannot mark the drained agent gone: {e}");
            }
        }
    }

    /// MARK_AGENT_GONE: the agent is removed for good. Its live tasks end
    /// TASK_GONE_BY_OPERATOR for their frameworks (the agent is told to kill them), its
    /// connection is refused and closed, and a later registration with its id is refused.
    pub(super) fn mark_agent_gone(
        &mut self,
        id: &AgentId,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        if self.gone_agents.contains(id) {
            return Ok(());
        }
        self.known_agent(id)?;
        let message = format!("agent {id} was marked gone by the operator");
        self.evict_agent(id, &message, TaskState::GoneByOperator, out);
        self.recovered_agents.remove(id);
        self.deactivated.remove(id);
        self.drains.remove(id);
        self.gone_agents.insert(id.clone());
        self.recovered_unreachable.remove(id);
        self.counters.agents_removed += 1;
        let op = RegistryOp::MarkAgentGone { id: id.clone() };
        let what = op.describe();
        self.reservations.remove(id);
        self.registry.apply(op).map_err(|e| {
            self.counters.registry_errors += 1;
            format!("agent {id} is gone in this master, but the registry refused to {what}: {e}")
        })
    }

    /// Removes an agent on the operator's word: its live tasks are killed on it and end
    /// `state` for their frameworks (TASK_GONE_BY_OPERATOR for partition-aware ones), and
    /// its connection is refused with `message` and closed.
    pub(super) fn evict_agent(
        &mut self,
        id: &AgentId,
        message: &str,
        state: TaskState,
        out: &mut Vec<Output>,
    ) {
        tracing::warn!(agent = %id, "{message}");
        if let Some(agent) = self.agents.get(id) {
            let tasks: Vec<(FrameworkId, TaskId)> = agent.tasks.iter().cloned().collect();
            let conn = agent.conn;
            self.rescind_agent_offers(id, true, out);
            for (framework_id, task_id) in &tasks {
                let live = self
                    .frameworks
                    .get(framework_id)
                    .and_then(|f| f.tasks.get(task_id))
                    .is_some_and(|t| !t.state.is_terminal());
                if live && let Some(conn) = conn {
                    out.push(Output::ToAgent {
                        conn,
                        msg: MasterMessage::KillTask {
                            framework_id: framework_id.clone(),
                            task_id: task_id.clone(),
                            grace_ms: None,
                        },
                    });
                }
                self.removed_by_operator(framework_id, task_id, state, message, out);
            }
            if let Some(conn) = conn {
                out.push(Output::ToAgent {
                    conn,
                    msg: MasterMessage::Refused {
                        reason: message.to_owned(),
                    },
                });
                self.close(conn, message.to_owned(), out);
            }
            self.allocator.remove_agent(id);
            self.agents.remove(id);
            self.notify_agent_removed(id, out);
        }
        if let Some(record) = self.unreachable_agents.remove(id) {
            for (framework_id, task_id) in &record.unreachable {
                self.removed_by_operator(framework_id, task_id, state, message, out);
            }
        }
    }

    fn removed_by_operator(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
        message: &str,
        out: &mut Vec<Output>,
    ) {
        let aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        self.master_transition(
            framework_id,
            task_id,
            if aware {
                TaskState::GoneByOperator
            } else {
                state
            },
            Reason::AgentRemovedByOperator,
            message.to_owned(),
            out,
        );
    }

    /// Whether `id` was marked gone: its registrations are refused.
    pub(super) fn is_gone(&self, id: &AgentId) -> bool {
        self.gone_agents.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_caps_the_kill_grace() {
        assert_eq!(drain_grace(Some(10_000), Some(2_000)), Some(2_000));
        assert_eq!(drain_grace(Some(1_000), Some(2_000)), Some(1_000));
        assert_eq!(drain_grace(None, Some(500)), Some(500));
        assert_eq!(drain_grace(None, Some(60_000)), Some(3_000));
        assert_eq!(drain_grace(Some(7), None), Some(7));
        assert_eq!(drain_grace(None, None), None);
    }
}
