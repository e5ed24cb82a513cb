//! One allocation cycle: for each agent, roles in DRF order, frameworks of the role in DRF
//! order; the first framework that may take the agent's offerable resources gets them all.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Instant;

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

use super::filters::FrameworkSet;
use super::hierarchy::{self, RoleUse};
use super::quota::Stage;
use super::{Allocation, Allocator};

/// Per role, the numbers of the frameworks that may be offered resources in it this
/// cycle (subscribed, connected, not suppressed there).
type Eligible = HashMap<String, FrameworkSet>;

/// A full cycle in progress (see [`Allocator::begin_cycle`]).
#[derive(Debug)]
pub struct Cycle {
    ids: Vec<AgentId>,
    next: usize,
    now: Instant,
    eligible: Eligible,
}

impl Allocator {
    /// A full cycle over all active agents. The starting agent rotates from one cycle to the
    /// next so that no agent is always first (Mesos shuffles; this stays deterministic).
    pub fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        let mut cycle = self.begin_cycle(now);
        let mut allocations = Vec::new();
        while self.step(&mut cycle, &mut allocations) {}
        allocations
    }

    /// Starts a full cycle: expires filters and lists the agents to look at, in order.
    /// [`Allocator::step`] then allocates them one by one; [`Allocator::allocate`] is both.
    pub fn begin_cycle(&mut self, now: Instant) -> Cycle {
        self.expire_filters(now);
        // Only agents with something to offer that somebody may take: most are fully
        // offered or in use, or were refused by everyone and have not changed since.
        let epoch = self.epoch;
        let mut ids: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, agent)| {
                agent.active
                    && agent.offerable
                    && agent.idle_at != Some((epoch, agent.version))
                    && self.allocatable(&agent.available)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !ids.is_empty() {
            let start = (self.cycles % ids.len() as u64) as usize;
            ids.rotate_left(start);
        }
        self.cycles += 1;
        let eligible = if ids.is_empty() {
            Eligible::new()
        } else {
            self.eligible()
        };
        Cycle {
            ids,
            next: 0,
            now,
            eligible,
        }
    }

    /// Allocates the cycle's next agent, appending its offers to `out`; false once every
    /// agent of the cycle was looked at.
    pub fn step(&mut self, cycle: &mut Cycle, out: &mut Vec<Allocation>) -> bool {
        let Some(id) = cycle.ids.get(cycle.next) else {
            return false;
        };
        cycle.next += 1;
        let id = id.clone();
        self.allocate_agent(&id, cycle.now, &cycle.eligible, out);
        true
    }

    /// A partial cycle over `agents` (unknown ones are skipped), after an event that changed
    /// what they have free or who may have it.
    pub fn allocate_agents(&mut self, agents: &[AgentId], now: Instant) -> Vec<Allocation> {
        self.expire_filters(now);
        let mut seen = BTreeSet::new();
        let mut allocations = Vec::new();
        let eligible = self.eligible();
        for id in agents {
            if seen.insert(id) {
                self.allocate_agent(id, now, &eligible, &mut allocations);
            }
        }
        allocations
    }

    /// Drops expired refusals; the agents that lost one may have a taker again.
    fn expire_filters(&mut self, now: Instant) {
        for id in self.filters.expire(now) {
            if let Some(agent) = self.agents.get_mut(&id) {
                agent.version += 1;
            }
        }
    }

    /// Who may be offered what this cycle, by role, as framework numbers.
    fn eligible(&mut self) -> Eligible {
        let mut eligible = Eligible::new();
        for (id, fw) in &self.frameworks {
            if !fw.active {
                continue;
            }
            let number = self.filters.number(id);
            for role in fw.roles.iter().filter(|r| !fw.suppressed.contains(*r)) {
                eligible.entry(role.clone()).or_default().insert(number);
            }
        }
        eligible
    }

    /// Mesos' cycle for one agent: with quotas, stage 1 (roles below their guarantee, in
    /// DRF order, offered what their guarantee lacks); then stage 2, every role in DRF
    /// order, keeping headroom for unmet guarantees and cutting offers at limits.
    fn allocate_agent(
        &mut self,
        id: &AgentId,
        now: Instant,
        eligible: &Eligible,
        out: &mut Vec<Allocation>,
    ) {
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        if !agent.active || !agent.offerable {
            return;
        }
        // Any part of the agent is allocatable only if the whole is: skip sorting when not.
        if !self.allocatable(&agent.available) {
            return;
        }
        let mut available = agent.available.clone();
        let idle_at = (self.epoch, agent.version);
        let before = out.len();
        let roles = if self.roles.clients().any(|r| r.contains('/')) {
            self.hierarchical_roles()
        } else {
            match &mut self.shared {
                Some(view) => {
                    view.sorted_roles(self.roles.clients(), |role| self.roles.weight(role))
                }
                None => self.roles.sort(&self.total).to_vec(),
            }
        };
        let quotas = !self.quotas.is_empty();
        if quotas {
            let guaranteed: Vec<&String> = roles
                .iter()
                .filter(|r| self.quotas.contains_key(*r))
                .collect();
            for role in guaranteed {
                let offerable = self.shape(&available, role, Stage::Guarantee);
                if self.offer_in_role(id, role, offerable, now, eligible, &mut available, out)
                    && !self.allocatable(&available)
                {
                    return;
                }
            }
        }
        for role in &roles {
            let offerable = if quotas {
                self.shape(&available, role, Stage::Fair)
            } else {
                available.allocatable_to(role)
            };
            if self.offer_in_role(id, role, offerable, now, eligible, &mut available, out)
                && !self.allocatable(&available)
            {
                break;
            }
        }
        // With quotas, whether an agent may be offered also depends on what is held
        // elsewhere (headroom, limits): never memoise it as idle then.
        if out.len() == before
            && !quotas
            && let Some(agent) = self.agents.get_mut(id)
        {
            // Nobody may take it now; nothing will change that until the agent's resources
            // or filters change (its version) or a framework may take more (the epoch).
            agent.idle_at = Some(idle_at);
        }
    }

    /// Roles in hierarchical DRF order (`hierarchy.rs`), over the whole cluster's
    /// allocations (all shards).
    fn hierarchical_roles(&self) -> Vec<String> {
        let mut roles = BTreeMap::new();
        for role in self.roles.clients() {
            let usage = match &self.shared {
                Some(view) => RoleUse {
                    allocation: view.role_quantities(role),
                    allocations: view.role_allocation_count(role),
                },
                None => RoleUse {
                    allocation: self.roles.allocation(role),
                    allocations: self.roles.allocation_count(role),
                },
            };
            roles.insert(role.clone(), usage);
        }
        let total = match &self.shared {
            Some(view) => view.total_quantities(),
            None => self.total.clone(),
        };
        hierarchy::order(&roles, |role| self.roles.weight(&role.to_owned()), &total)
    }

    /// Offers `offerable` on agent `id` to the first framework of `role`, in DRF order,
    /// that may take it; true if one did (`available` and `out` then show it).
    #[allow(clippy::too_many_arguments)]
    fn offer_in_role(
        &mut self,
        id: &AgentId,
        role: &str,
        offerable: Resources,
        now: Instant,
        eligible: &Eligible,
        available: &mut Resources,
        out: &mut Vec<Allocation>,
    ) -> bool {
        if !self.allocatable(&offerable) {
            return false;
        }
        // Skip the role without sorting anyone when every framework that may take
        // something in it has refused all of this: one bitset test, not one filter
        // lookup per framework.
        let Some(candidates) = eligible.get(role).filter(|c| !c.is_empty()) else {
            return false;
        };
        if self
            .filters
            .refusing(id, &offerable, now)
            .is_some_and(|refusing| candidates.is_subset(&refusing))
        {
            return false;
        }
        if self.shared.is_none()
            && let Some(frameworks) = self.role_frameworks.get_mut(role)
        {
            frameworks.refresh(&self.total);
        }
        let Some(frameworks) = self.role_frameworks.get(role) else {
            return false;
        };
        let chosen = match &self.shared {
            Some(view) => {
                // Everyone's current shares, then the least eligible through a heap: one
                // pass of atomic loads, not a sort, per agent.
                let keys = view.framework_keys(role);
                let mut heap: BinaryHeap<Reverse<(u64, u64, &FrameworkId)>> =
                    keys.into_iter().map(Reverse).collect();
                let mut chosen = None;
                while let Some(Reverse((_, _, fw))) = heap.pop() {
                    if self.may_offer(fw, role, id, &offerable, now) {
                        chosen = Some(fw.clone());
                        break;
                    }
                }
                chosen
            }
            // Walk the kept order from the least share; nothing is sorted or copied.
            None => frameworks
                .ordered()
                .find(|fw| self.may_offer(fw, role, id, &offerable, now))
                .cloned(),
        };
        let Some(framework) = chosen else {
            return false;
        };
        self.track(&framework, role, id, &offerable);
        available.subtract_or_clear(&offerable);
        out.push(Allocation {
            framework_id: framework,
            role: role.to_owned(),
            agent_id: id.clone(),
            resources: offerable,
        });
        true
    }

    /// Whether `framework` may be offered `offerable` on `agent` for `role` now: it is
    /// connected, not suppressed for the role, the agent meets its offer constraints, and
    /// it has no refusal covering the offer.
    fn may_offer(
        &self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        offerable: &Resources,
        now: Instant,
    ) -> bool {
        let Some(fw) = self.frameworks.get(framework) else {
            return false;
        };
        fw.active
            && fw.roles.iter().any(|r| r == role)
            && !fw.suppressed.contains(role)
            && (fw.constraints.is_empty() || self.admits(framework, role, agent))
            && !self.filters.refuses(framework, agent, offerable, now)
    }

    /// Mesos' min-allocatable check: enough cpus or enough memory to be worth an offer.
    fn allocatable(&self, resources: &Resources) -> bool {
        !resources.is_empty()
            && (resources.cpus() >= self.config.min_allocatable_cpus
                || resources.mem_mb() >= self.config.min_allocatable_mem_mb)
    }
}
