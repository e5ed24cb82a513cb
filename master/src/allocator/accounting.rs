//! Bookkeeping of who holds what: one place that changes an agent's allocations and the
//! DRF sorters together, so that they never disagree.

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

use super::sorter::Quantities;
use super::{Allocator, DEFAULT_ROLE, UNKNOWN_ROLE};

impl Allocator {
    /// The role that resources a framework already uses on a re-registering agent count for.
    pub(super) fn role_for_used(&self, framework: &FrameworkId, resources: &Resources) -> String {
        let Some(fw) = self.frameworks.get(framework) else {
            return UNKNOWN_ROLE.to_owned();
        };
        fw.roles
            .iter()
            .find(|role| !resources.reserved(role).is_empty())
            .or(fw.roles.first())
            .cloned()
            .unwrap_or_else(|| DEFAULT_ROLE.to_owned())
    }

    /// Charges resources held before the framework subscribed to one of its roles.
    pub(super) fn adopt_unknown(&mut self, framework: &FrameworkId) {
        let Some(agent_ids) = self.unknown.remove(framework) else {
            return;
        };
        let key = (framework.clone(), UNKNOWN_ROLE.to_owned());
        for agent_id in agent_ids {
            let Some(resources) = self
                .agents
                .get_mut(&agent_id)
                .and_then(|agent| agent.allocations.remove(&key))
            else {
                continue;
            };
            if let Some(agent) = self.agents.get_mut(&agent_id)
                && let Some(rest) = agent.allocated.checked_sub(&resources)
            {
                agent.allocated = rest;
                agent.available.add(&resources);
            }
            let role = self.role_for_used(framework, &resources);
            self.track(framework, &role, &agent_id, &resources);
        }
    }

    /// Records `resources` on `agent` as held by `framework` in `role`.
    pub(super) fn track(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        resources: &Resources,
    ) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        state.allocated.add(resources);
        state.available.subtract(resources);
        state.version += 1;
        state
            .allocations
            .entry((framework.clone(), role.to_owned()))
            .or_default()
            .add(resources);
        if role == UNKNOWN_ROLE {
            return;
        }
        let quantities = Quantities::of(resources);
        let unreserved = Quantities::of_unreserved(resources);
        self.unreserved_allocated.add(&unreserved);
        if let Some(view) = &mut self.shared {
            view.charge(framework, role, &quantities, 1);
            view.add_unreserved(&unreserved, true, 1);
        }
        let role = role.to_owned();
        self.roles.allocated(&role, &quantities);
        self.role_frameworks
            .entry(role)
            .or_default()
            .allocated(framework, &quantities);
    }

    /// Releases `resources`, which the caller checked are held by `framework` in `role` on
    /// `agent`.
    pub(super) fn untrack(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        resources: &Resources,
    ) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        let key = (framework.clone(), role.to_owned());
        if let Some(held) = state.allocations.get_mut(&key) {
            held.subtract_or_clear(resources);
            if held.is_empty() {
                state.allocations.remove(&key);
            }
        }
        state.allocated.subtract_or_clear(resources);
        state.available.add(resources);
        state.version += 1;
        if role == UNKNOWN_ROLE {
            if !state.allocations.contains_key(&key)
                && let Some(agents) = self.unknown.get_mut(framework)
            {
                agents.remove(agent);
                if agents.is_empty() {
                    self.unknown.remove(framework);
                }
            }
            return;
        }
        let quantities = Quantities::of(resources);
        let unreserved = Quantities::of_unreserved(resources);
        self.unreserved_allocated.subtract(&unreserved);
        if let Some(view) = &mut self.shared {
            view.charge(framework, role, &quantities, -1);
            view.add_unreserved(&unreserved, true, -1);
        }
        let role = role.to_owned();
        self.roles.unallocated(&role, &quantities);
        if let Some(sorter) = self.role_frameworks.get_mut(&role) {
            sorter.unallocated(framework, &quantities);
        }
        self.prune(framework, &role);
    }

    /// Drops `framework` from `role`'s sorter once it neither subscribes to the role nor
    /// holds anything in it, and the role once no framework is left in it.
    pub(super) fn prune(&mut self, framework: &FrameworkId, role: &str) {
        let subscribed = self
            .frameworks
            .get(framework)
            .is_some_and(|fw| fw.roles.iter().any(|r| r == role));
        let Some(sorter) = self.role_frameworks.get_mut(role) else {
            return;
        };
        if !subscribed && sorter.allocation(framework).is_zero() {
            sorter.remove(framework);
            if let Some(view) = &mut self.shared {
                view.drop_client(framework, role);
                view.invalidate();
            }
        }
        if sorter.is_empty() {
            self.role_frameworks.remove(role);
            self.roles.remove(&role.to_owned());
        }
    }
}
