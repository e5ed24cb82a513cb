//! Frameworks: SUBSCRIBE (new, re-subscribe, failover to a new connection), the dispatch of
//! the other calls, disconnection with its failover timeout, TEARDOWN, and heartbeats.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, random_id};
use fleet_proto::messages::agent::{AgentFramework, MasterMessage};
use fleet_proto::messages::scheduler::{Call, Event, FrameworkInfo};
use fleet_proto::task::{Reason, Source, TaskState};

use super::records::{Framework, Peer};
use super::{ConnId, Master, Output};
use crate::allocator::constraints;
use crate::registry::RegistryOp;

impl Master {
    pub(super) fn framework_call(
        &mut self,
        conn: ConnId,
        call: Call,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match self.conns.get(&conn).cloned() {
            Some(Peer::FrameworkPending) | None => match call {
                Call::Subscribe {
                    framework,
                    suppressed_roles,
                } => self.subscribe(conn, framework, suppressed_roles, now, out),
                other => {
                    let message = format!(
                        "{} before SUBSCRIBE: the first call on a connection must be SUBSCRIBE",
                        other.name()
                    );
                    self.reject(conn, message, out);
                }
            },
            Some(Peer::Framework(id)) => self.subscribed_call(conn, &id, call, now, out),
            Some(Peer::Agent(_) | Peer::AgentPending) => {
                self.close(
                    conn,
                    format!(
                        "{} is a framework call, sent on an agent connection",
                        call.name()
                    ),
                    out,
                );
            }
        }
    }

    /// A fatal ERROR event, then the connection closes.
    fn reject(&mut self, conn: ConnId, message: String, out: &mut Vec<Output>) {
        tracing::warn!(conn, "rejecting framework call: {message}");
        self.counters.calls_rejected += 1;
        out.push(Output::ToFramework {
            conn,
            event: Event::Error {
                message: message.clone(),
                fatal: true,
            },
        });
        self.close(conn, message, out);
    }

    fn subscribed_call(
        &mut self,
        conn: ConnId,
        id: &FrameworkId,
        call: Call,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match call {
            Call::Subscribe {
                framework,
                suppressed_roles,
            } => {
                if framework.id.as_ref() == Some(id) {
                    self.subscribe(conn, framework, suppressed_roles, now, out);
                } else {
                    let message =
                        format!("SUBSCRIBE on a connection already subscribed as framework {id}");
                    self.reject(conn, message, out);
                }
            }
            Call::Accept {
                offer_ids,
                operations,
                filters,
            } => self.accept(id, offer_ids, operations, filters, now, out),
            Call::Decline { offer_ids, filters } => self.decline(id, &offer_ids, filters, now),
            Call::Revive { roles } => {
                let roles = (!roles.is_empty()).then_some(roles);
                self.allocator.revive(id, roles.as_deref());
                self.allocate_all = true;
            }
            Call::Suppress { roles } => {
                let roles = (!roles.is_empty()).then_some(roles);
                self.allocator.suppress(id, roles.as_deref());
            }
            Call::Kill {
                task_id,
                agent_id,
                grace_ms,
            } => self.kill(id, &task_id, agent_id, grace_ms, out),
            Call::Acknowledge {
                agent_id,
                task_id,
                uuid,
            } => self.acknowledge(id, &agent_id, &task_id, uuid, out),
            Call::Reconcile { tasks } => self.reconcile(id, tasks, out),
            Call::Teardown => {
                self.remove_framework(id, "framework torn down (TEARDOWN)".to_owned(), out)
            }
            // Answered by the shell's gate (`auth::FrameworkGate`), which never passes it on.
            Call::Authenticate { .. } => {}
        }
    }

    fn subscribe(
        &mut self,
        conn: ConnId,
        info: FrameworkInfo,
        suppressed_roles: Vec<String>,
        _now: Instant,
        out: &mut Vec<Output>,
    ) {
        let roles = info.effective_roles();
        let id = match &info.id {
            Some(id) if self.frameworks.contains_key(id) => id.clone(),
            Some(id) => {
                let message = format!(
                    "framework {id} is unknown or was removed (torn down, or its failover timeout passed); subscribe without an id"
                );
                return self.reject(conn, message, out);
            }
            None => FrameworkId(random_id("F")),
        };
        if let Err(message) = constraints::compile(&info.offer_constraints) {
            return self.reject(conn, message, out);
        }
        let mut info = info;
        info.id = Some(id.clone());
        let op = RegistryOp::AddFramework {
            id: id.clone(),
            info: info.clone(),
        };
        if let Err(e) = self.registry.apply(op) {
            self.counters.registry_errors += 1;
            return self.reject(conn, format!("framework could not be registered: {e}"), out);
        }
        let previous_conn = self
            .frameworks
            .get(&id)
            .and_then(|f| f.conn)
            .filter(|c| *c != conn);
        if let Some(old) = previous_conn {
            out.push(Output::ToFramework {
                conn: old,
                event: Event::Error {
                    message: format!("framework {id} subscribed again on another connection"),
                    fatal: true,
                },
            });
            self.close(
                old,
                format!("framework {id} failed over to another connection"),
                out,
            );
        }
        // Offers made to the previous subscription are taken back; fresh ones follow.
        self.recover_framework_offers(&id);
        let added = !self.frameworks.contains_key(&id);
        let framework = self
            .frameworks
            .entry(id.clone())
            .or_insert_with(|| Framework {
                id: id.clone(),
                info: info.clone(),
                roles: roles.clone(),
                conn: None,
                disconnected_at: None,
                recovered: false,
                tasks: BTreeMap::new(),
                offers: BTreeSet::new(),
            });
        framework.info = info;
        framework.roles = roles.clone();
        framework.conn = Some(conn);
        framework.disconnected_at = None;
        framework.recovered = false;
        self.conns.insert(conn, Peer::Framework(id.clone()));
        self.allocator
            .add_framework(id.clone(), roles, suppressed_roles);
        if let Some(info) = self.frameworks.get(&id).map(|f| &f.info)
            && let Err(e) = self
                .allocator
                .set_offer_constraints(&id, &info.offer_constraints)
        {
            // Compiled above already; an error here would be a bug, not the caller's.
            tracing::error!(framework = %id, "{e}");
        }
        self.allocator.activate_framework(&id);
        tracing::info!(framework = %id, "framework subscribed");
        self.counters.frameworks_subscribed += 1;
        self.notify_framework_subscribed(&id, added, out);
        out.push(Output::ToFramework {
            conn,
            event: Event::Subscribed {
                framework_id: id,
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            },
        });
        self.allocate_all = true;
    }

    pub(super) fn framework_disconnected(
        &mut self,
        id: &FrameworkId,
        reason: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get_mut(id) else {
            return;
        };
        framework.conn = None;
        if framework.info.failover_timeout_ms == 0 {
            let why = format!("framework disconnected ({reason}) with failover timeout 0");
            return self.remove_framework(id, why, out);
        }
        tracing::info!(framework = %id, "framework disconnected: {reason}");
        framework.disconnected_at = Some(now);
        self.allocator.deactivate_framework(id);
        self.recover_framework_offers(id);
    }

    /// Frameworks disconnected past their failover timeout are removed. Frameworks known
    /// only from the registry or agents get at least `agent_timeout` to come back.
    pub(super) fn expire_frameworks(&mut self, now: Instant, out: &mut Vec<Output>) {
        let expired: Vec<(FrameworkId, Duration)> = self
            .frameworks
            .values()
            .filter(|f| f.conn.is_none())
            .filter_map(|f| {
                let mut timeout = Duration::from_millis(f.info.failover_timeout_ms);
                if f.recovered {
                    timeout = timeout.max(self.config.agent_timeout);
                }
                let at = f.disconnected_at?;
                (now.saturating_duration_since(at) >= timeout).then(|| (f.id.clone(), timeout))
            })
            .collect();
        for (id, timeout) in expired {
            let why = format!(
                "framework did not re-subscribe within its failover timeout of {}s",
                timeout.as_secs_f64()
            );
            self.remove_framework(&id, why, out);
        }
    }

    /// Removes a framework: its agents shut its tasks down, its offers go back, its
    /// connection closes, its registry entry goes, and its id may not subscribe again.
    pub(super) fn remove_framework(
        &mut self,
        id: &FrameworkId,
        why: String,
        out: &mut Vec<Output>,
    ) {
        tracing::info!(framework = %id, "removing framework: {why}");
        let offer_ids: Vec<_> = self
            .frameworks
            .get(id)
            .map(|f| f.offers.iter().copied().collect())
            .unwrap_or_default();
        for offer_id in offer_ids {
            if let Some(record) = self.take_offer(&offer_id) {
                self.allocate_agents.insert(record.offer.agent_id);
            }
        }
        let Some(framework) = self.frameworks.remove(id) else {
            return;
        };
        let mut gone = self.framework_state(&framework, &crate::allocator::Shares::default());
        gone.active = false;
        let removed = self.watched.then(|| gone.clone());
        self.completed_frameworks.push_back(gone);
        while self.completed_frameworks.len() > self.config.max_completed_tasks {
            self.completed_frameworks.pop_front();
        }
        if let Some(conn) = framework.conn {
            self.close(conn, why.clone(), out);
        }
        let mut agents: BTreeSet<AgentId> = BTreeSet::new();
        for (task_id, mut task) in framework.tasks {
            let agent_id = task.info.agent_id.clone();
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.remove_task(id, &task_id);
                agents.insert(agent_id.clone());
            }
            if !task.state.is_terminal() {
                task.state = TaskState::Killed;
                task.status.state = TaskState::Killed;
                task.status.reason = Some(Reason::FrameworkRemoved);
                task.status.message = why.clone();
                task.status.source = Source::Master;
                task.status.uuid = None;
                self.notify_task_updated(id, &task.status, out);
            }
            self.push_completed(task);
        }
        for agent_id in &agents {
            self.send_to_agent(
                agent_id,
                MasterMessage::ShutdownFramework {
                    framework_id: id.clone(),
                },
                out,
            );
            self.allocate_agents.insert(agent_id.clone());
        }
        self.allocator.remove_framework(id);
        self.registry_apply(RegistryOp::RemoveFramework { id: id.clone() });
        self.removed_frameworks.insert(id.clone());
        self.counters.frameworks_removed += 1;
        if let Some(removed) = removed {
            self.notify_framework_removed(&removed, out);
        }
    }

    pub(super) fn heartbeat(&mut self, out: &mut Vec<Output>) {
        for framework in self.frameworks.values() {
            if let Some(conn) = framework.conn {
                out.push(Output::ToFramework {
                    conn,
                    event: Event::Heartbeat,
                });
            }
        }
    }

    /// A framework known from the registry (or an agent) that has not subscribed since this
    /// master started: kept inactive until it re-subscribes or times out.
    pub(super) fn recover_framework(&mut self, id: FrameworkId, info: Option<FrameworkInfo>) {
        let info = info.unwrap_or_default();
        let roles = info.effective_roles();
        self.allocator
            .add_framework(id.clone(), roles.clone(), Vec::new());
        if let Err(e) = self
            .allocator
            .set_offer_constraints(&id, &info.offer_constraints)
        {
            tracing::warn!(framework = %id, "ignoring offer constraints from the registry: {e}");
        }
        self.allocator.deactivate_framework(&id);
        self.frameworks.insert(
            id.clone(),
            Framework {
                id,
                info,
                roles,
                conn: None,
                disconnected_at: self.timers.last_now,
                recovered: true,
                tasks: BTreeMap::new(),
                offers: BTreeSet::new(),
            },
        );
    }

    /// A framework an agent reports tasks of, unknown to this master. Its roles are not
    /// known: the allocator learns them when it subscribes.
    pub(super) fn recover_framework_from_agent(&mut self, framework: &AgentFramework) {
        let info = FrameworkInfo {
            id: Some(framework.id.clone()),
            name: framework.name.clone(),
            user: framework.user.clone(),
            ..FrameworkInfo::default()
        };
        let roles = info.effective_roles();
        self.frameworks.insert(
            framework.id.clone(),
            Framework {
                id: framework.id.clone(),
                info,
                roles,
                conn: None,
                disconnected_at: self.timers.last_now,
                recovered: true,
                tasks: BTreeMap::new(),
                offers: BTreeSet::new(),
            },
        );
    }
}
