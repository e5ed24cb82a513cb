//! Operator calls that change the cluster, applied by the core. Weights and quotas go
//! first to the registry (so they survive a master restart once the registry is durable),
//! then to the allocator; TEARDOWN and KILL_TASK reuse what the scheduler calls do; the
//! agent calls (deactivate, drain, mark gone) live in `drain.rs`, the maintenance
//! schedule in `maintenance.rs`, reservations in `reservations.rs`.

use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::scheduler::Event;
use fleet_proto::resources::Resources;

use crate::allocator::quota::Quota;
use crate::registry::{QuotaConfig, RegistryOp};

use super::{Master, Output};

/// An operator call that changes the cluster, parsed by the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCall {
    UpdateWeights(Vec<(String, f64)>),
    UpdateQuota(Vec<(String, QuotaConfig)>),
    /// Removes a framework and kills its tasks (Mesos' operator TEARDOWN).
    Teardown {
        framework_id: FrameworkId,
    },
    /// Kills one task for its framework (Fleet's own call: Mesos' operator API has none).
    /// Without a framework the task id must name one live task.
    KillTask {
        task_id: TaskId,
        framework_id: Option<FrameworkId>,
        grace: Option<Duration>,
    },
    DeactivateAgent {
        agent_id: AgentId,
    },
    ReactivateAgent {
        agent_id: AgentId,
    },
    DrainAgent {
        agent_id: AgentId,
        /// Caps each task's kill grace period.
        max_grace: Option<Duration>,
        /// Mark the agent gone once it is drained.
        mark_gone: bool,
    },
    MarkAgentGone {
        agent_id: AgentId,
    },
    /// Replaces the maintenance schedule.
    UpdateSchedule(Vec<super::Window>),
    /// Takes scheduled machines down (Mesos' START_MAINTENANCE, `/machine/down`).
    MachinesDown(Vec<super::MachineId>),
    /// Brings down machines up (Mesos' STOP_MAINTENANCE, `/machine/up`).
    MachinesUp(Vec<super::MachineId>),
    /// Reserves unreserved resources of an agent for the roles their entries name
    /// (RESERVE_RESOURCES, `/reserve`), recorded under `principal`.
    Reserve {
        agent_id: AgentId,
        resources: Resources,
        principal: Option<String>,
    },
    /// Makes dynamically reserved resources of an agent unreserved (UNRESERVE_RESOURCES,
    /// `/unreserve`); with a principal, only its reservations.
    Unreserve {
        agent_id: AgentId,
        resources: Resources,
        principal: Option<String>,
    },
}

/// A role an operator names: a non-empty name without whitespace, not `*`.
fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty() || role.chars().any(char::is_whitespace) || role == "*" {
        return Err(format!(
            "invalid role {role:?}: a role is a non-empty name without whitespace, not '*'"
        ));
    }
    Ok(())
}

/// The allocator's view of a quota config.
pub(super) fn allocator_quota(config: &QuotaConfig) -> Quota {
    Quota::new(&config.guarantees, config.limits.as_ref())
}

impl Master {
    /// Applies an operator call: `Err` says why it was refused, with nothing changed.
    pub fn operator(
        &mut self,
        call: OperatorCall,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        self.observe(now);
        match call {
            OperatorCall::UpdateWeights(weights) => self.update_weights(&weights),
            OperatorCall::UpdateQuota(configs) => self.update_quota(&configs),
            OperatorCall::Teardown { framework_id } => self.teardown(&framework_id, out),
            OperatorCall::KillTask {
                task_id,
                framework_id,
                grace,
            } => self.kill_task(&task_id, framework_id.as_ref(), grace, out),
            OperatorCall::DeactivateAgent { agent_id } => self.deactivate_agent(&agent_id, out),
            OperatorCall::ReactivateAgent { agent_id } => self.reactivate_agent(&agent_id),
            OperatorCall::DrainAgent {
                agent_id,
                max_grace,
                mark_gone,
            } => self.drain_agent(&agent_id, max_grace, mark_gone, out),
            OperatorCall::MarkAgentGone { agent_id } => self.mark_agent_gone(&agent_id, out),
            OperatorCall::UpdateSchedule(windows) => self.update_schedule(windows),
            OperatorCall::MachinesDown(machines) => self.machines_down(machines, out),
            OperatorCall::MachinesUp(machines) => self.machines_up(machines),
            OperatorCall::Reserve {
                agent_id,
                resources,
                principal,
            } => self.reserve(&agent_id, &resources, principal.as_deref(), out),
            OperatorCall::Unreserve {
                agent_id,
                resources,
                principal,
            } => self.unreserve(&agent_id, &resources, principal.as_deref(), out),
        }
    }

    /// TEARDOWN by the operator: the framework is told (a fatal ERROR), then removed as a
    /// scheduler TEARDOWN removes it: its tasks are killed, its id may not come back.
    fn teardown(&mut self, id: &FrameworkId, out: &mut Vec<Output>) -> Result<(), String> {
        let Some(framework) = self.frameworks.get(id) else {
            if self.removed_frameworks.contains(id) {
                return Err(format!("framework {id} was already removed"));
            }
            return Err(format!("unknown framework {id} (see `fleet status`)"));
        };
        let why = "framework torn down by the operator (TEARDOWN)".to_owned();
        if let Some(conn) = framework.conn {
            out.push(Output::ToFramework {
                conn,
                event: Event::Error {
                    message: why.clone(),
                    fatal: true,
                },
            });
        }
        self.remove_framework(id, why, out);
        Ok(())
    }

    /// KILL_TASK: as if the task's framework had sent KILL; the task ends TASK_KILLED
    /// (reported by its agent) for its framework. `grace` overrides the task's kill grace.
    fn kill_task(
        &mut self,
        task_id: &TaskId,
        framework_id: Option<&FrameworkId>,
        grace: Option<Duration>,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        if let Some(f) = framework_id
            && !self.frameworks.contains_key(f)
        {
            return Err(format!("unknown framework {f} (see `fleet status`)"));
        }
        let owners: Vec<&FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| framework_id.is_none_or(|wanted| &f.id == wanted))
            .filter(|f| f.tasks.contains_key(task_id))
            .map(|f| &f.id)
            .collect();
        let framework = match owners.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let ended = self.completed.iter().rev().find(|t| {
                    &t.info.task_id == task_id
                        && framework_id.is_none_or(|wanted| &t.framework_id == wanted)
                });
                return Err(match ended {
                    Some(t) => format!("task {task_id} already ended ({})", t.state.name()),
                    None => format!("no live task {task_id} (see `fleet tasks`)"),
                });
            }
            many => {
                let names: Vec<String> = many.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "task id {task_id} is used by frameworks {}: name one with \"framework_id\"",
                    names.join(", ")
                ));
            }
        };
        let task = self
            .frameworks
            .get(&framework)
            .and_then(|f| f.tasks.get(task_id))
            .ok_or_else(|| format!("no live task {task_id}"))?;
        if task.state.is_terminal() {
            return Err(format!(
                "task {task_id} already ended ({})",
                task.state.name()
            ));
        }
        if task.state == fleet_proto::task::TaskState::Unreachable {
            return Err(format!(
                "task {task_id} is unreachable with agent {}: it cannot be killed until the \
                 agent comes back",
                task.info.agent_id
            ));
        }
        let grace_ms = grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
        tracing::info!(task = %task_id, framework = %framework, "operator kills task");
        self.kill(&framework, task_id, None, grace_ms, out);
        Ok(())
    }

    /// Sets role weights (UPDATE_WEIGHTS). All are checked before any is applied: a weight
    /// must be finite and > 0, a role a non-empty name without whitespace. Takes effect at
    /// the next allocation, which runs over every agent.
    pub fn update_weights(&mut self, weights: &[(String, f64)]) -> Result<(), String> {
        if weights.is_empty() {
            return Err("no weight given".into());
        }
        for (role, weight) in weights {
            check_role(role)?;
            if !weight.is_finite() || *weight <= 0.0 {
                return Err(format!(
                    "invalid weight {weight} for role '{role}': a weight must be a finite number > 0"
                ));
            }
        }
        for (role, weight) in weights {
            let op = RegistryOp::SetWeight {
                role: role.clone(),
                weight: *weight,
            };
            let what = op.describe();
            self.registry
                .apply(op)
                .map_err(|e| format!("the registry refused to {what}: {e}"))?;
            self.allocator
                .set_weight(role, *weight)
                .map_err(|e| e.to_string())?;
            tracing::info!(role, weight, "weight set");
        }
        self.allocate_all = true;
        Ok(())
    }

    /// Sets role quotas (UPDATE_QUOTA): guarantees and limits over scalar resources; a
    /// config with neither removes the role's quota. All are checked before any is
    /// applied. Takes effect at the next allocation, which runs over every agent.
    pub fn update_quota(&mut self, configs: &[(String, QuotaConfig)]) -> Result<(), String> {
        if configs.is_empty() {
            return Err("no quota config given".into());
        }
        for (role, config) in configs {
            check_role(role)?;
            allocator_quota(config)
                .check(role)
                .map_err(|e| e.to_string())?;
        }
        for (role, config) in configs {
            let op = RegistryOp::SetQuota {
                role: role.clone(),
                quota: config.clone(),
            };
            let what = op.describe();
            self.registry
                .apply(op)
                .map_err(|e| format!("the registry refused to {what}: {e}"))?;
            self.allocator
                .set_quota(role, allocator_quota(config))
                .map_err(|e| e.to_string())?;
            if config.is_empty() {
                self.quotas.remove(role);
            } else {
                self.quotas.insert(role.clone(), config.clone());
            }
            tracing::info!(role, guarantees = %config.guarantees, "quota set");
        }
        self.allocate_all = true;
        Ok(())
    }
}
