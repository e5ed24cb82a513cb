//! The resource allocator: which framework is offered which agent's free resources, by
//! Dominant Resource Fairness over roles and then over the frameworks of each role.
//!
//! A pure state machine in the style of Mesos' HierarchicalDRF allocator: no I/O, no clock
//! (time comes in as `now`), no timers. The caller feeds it agents, frameworks, declines and
//! recovered resources, and asks for allocations on its own schedule: [`Allocator::allocate`]
//! every allocation interval over all agents, [`Allocator::allocate_agents`] after an event
//! (agent added, framework added or revived, resources recovered) over the affected agents.
//!
//! Semantics, following Mesos 1.11 where not stated otherwise:
//! - Offered resources count as allocated until the caller recovers them
//!   ([`Allocator::recover`]): for a declined or rescinded offer, for the unused part of an
//!   accepted one, and for a task that ended.
//! - For each agent, roles are taken in DRF order (share = max over scalar resources of the
//!   role's allocation / cluster total, divided by the role's weight; ties by allocation
//!   count, then name); within a role, frameworks in DRF order. The first framework that may
//!   take them gets everything on the agent its role may use (unreserved plus reserved for
//!   the role); the next role gets what is left (its own reservations). So a framework gets
//!   at most one allocation per agent and role per cycle.
//! - Roles are sorted as a tree (`hierarchy.rs`), as Mesos does: `eng` competes with `ops`
//!   on everything held under `eng/`, and `eng/frontend` with `eng/backend` (and with
//!   `eng`'s own frameworks) inside it; weights belong to role paths (default 1.0).
//!   Without a `/` in any role this is the flat DRF order.
//! - Reserved resources count toward their role's share, and toward the share of the
//!   framework they were offered to.
//! - Refusal filters are per framework and agent (not per role): they hide an agent from the
//!   framework while the refused resources contain everything it would be offered there, for
//!   `max(refuse, allocation_interval)`. REVIVE, with or without roles, clears all of the
//!   framework's filters and unsuppresses the named roles.
//! - Quotas (`quota.rs`): per role a guarantee and a limit. With quotas set, each agent's
//!   step runs Mesos' stage 1 (roles below their guarantee, offered what it lacks) before
//!   stage 2 (everyone, in DRF order), which keeps headroom for unmet guarantees; limits
//!   cut every offer. Without quotas the step is stage 2 alone.
//! - Offer constraints (`constraints.rs`): per framework and role, predicates on agent
//!   attributes and hostname that an agent must meet to be offered.
//! - Sharding (`shared.rs`, `sharded.rs`): shards own agents and order clients by the
//!   whole cluster's allocations, read from a shared table of atomic counters.

mod accounting;
pub mod constraints;
mod cycle;
pub mod filters;
mod hierarchy;
pub mod quota;
pub mod sharded;
pub mod shared;
pub mod sorter;

pub use cycle::Cycle;

#[cfg(test)]
mod fairness;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::{Resources, Scalar};

use filters::{RefusalFilters, refusal_duration};
use shared::{SharedTable, SharedView, TooManyNames};
use sorter::{DrfSorter, Quantities};

/// The role Mesos gives a framework that names none.
pub const DEFAULT_ROLE: &str = "*";

/// Stands for "not known yet": resources an agent reports in use by a framework that has not
/// subscribed again since a master failover. They are allocated on the agent but count for no
/// role until the framework comes back.
const UNKNOWN_ROLE: &str = "";

#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorConfig {
    /// How often the caller runs a full cycle; also the shortest refusal.
    pub allocation_interval: Duration,
    /// Refusal when a DECLINE carries no `refuse_seconds`.
    pub default_refuse: Duration,
    /// An offer must hold at least this many cpus, or at least `min_allocatable_mem_mb`.
    pub min_allocatable_cpus: Scalar,
    pub min_allocatable_mem_mb: Scalar,
}

impl Default for AllocatorConfig {
    /// Mesos' defaults: 1 s interval, 5 s refusal, `cpus:0.01|mem:32`.
    fn default() -> Self {
        Self {
            allocation_interval: Duration::from_secs(1),
            default_refuse: Duration::from_secs(5),
            min_allocatable_cpus: Scalar::from_milli(10),
            min_allocatable_mem_mb: Scalar::from_milli(32_000),
        }
    }
}

/// Resources of one agent given to one framework, for one of its roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub framework_id: FrameworkId,
    pub role: String,
    pub agent_id: AgentId,
    pub resources: Resources,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AllocatorError {
    #[error("invalid weight {weight} for role '{role}': a weight must be a finite number > 0")]
    InvalidWeight { role: String, weight: f64 },
    #[error("agent '{agent}' reports '{used}' in use, more than its total '{total}'")]
    UsedExceedsTotal {
        agent: AgentId,
        used: Resources,
        total: Resources,
    },
    #[error(
        "cannot recover '{resources}' on agent '{agent}' from framework '{framework}': it holds only '{held}' there"
    )]
    NotAllocated {
        framework: FrameworkId,
        agent: AgentId,
        resources: Resources,
        held: Resources,
    },
    #[error("agent '{agent}': allocated '{allocated}' is not within its total '{total}'")]
    Overallocated {
        agent: AgentId,
        allocated: Resources,
        total: Resources,
    },
    #[error("framework '{framework}': {reason}")]
    InvalidConstraint {
        framework: FrameworkId,
        reason: String,
    },
    #[error("invalid quota for role '{role}': {reason}")]
    InvalidQuota { role: String, reason: String },
    #[error("agent '{agent}': {source}")]
    TooManyNames {
        agent: AgentId,
        source: TooManyNames,
    },
}

/// Dominant shares, for /state and for tests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Shares {
    pub roles: BTreeMap<String, RoleShare>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RoleShare {
    pub weight: f64,
    /// The role's dominant share divided by its weight: what DRF orders roles by.
    pub share: f64,
    /// Each framework's dominant share of what it holds in this role.
    pub frameworks: BTreeMap<FrameworkId, f64>,
}

#[derive(Debug, Clone)]
struct Agent {
    total: Resources,
    /// Sum of `allocations`; kept to make the per-agent step one subtraction.
    allocated: Resources,
    /// `total - allocated`, kept so that a fully offered agent costs nothing in a cycle.
    available: Resources,
    allocations: BTreeMap<(FrameworkId, String), Resources>,
    active: bool,
    /// Agents without cpus and mem are never offered (Mesos).
    offerable: bool,
    /// Bumped whenever what the agent has free, or who may be offered it there, changes.
    version: u64,
    /// `(epoch, version)` when a cycle last found nobody to offer the agent to: until
    /// either changes, a cycle skips it without sorting anyone (see `cycle.rs`).
    idle_at: Option<(u64, u64)>,
    /// Hostname and attributes, for offer constraints.
    description: constraints::Description,
}

#[derive(Debug, Clone)]
struct Framework {
    /// Subscribed roles, in the order the framework named them.
    roles: Vec<String>,
    suppressed: BTreeSet<String>,
    active: bool,
    constraints: constraints::Constraints,
}

/// The DRF allocator. See the module documentation for its semantics.
#[derive(Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: BTreeMap<AgentId, Agent>,
    frameworks: BTreeMap<FrameworkId, Framework>,
    /// Scalar totals over all agents, active or not: the denominator of every share.
    total: Quantities,
    roles: DrfSorter<String>,
    /// Per role, the frameworks subscribed to it or still holding resources in it.
    role_frameworks: BTreeMap<String, DrfSorter<FrameworkId>>,
    filters: RefusalFilters,
    /// Agents holding resources of frameworks whose role is not known yet.
    unknown: BTreeMap<FrameworkId, BTreeSet<AgentId>>,
    cycles: u64,
    /// Bumped whenever a framework may take more than before on any agent (it subscribed,
    /// came back, revived, lost its filters): every idle agent is looked at again.
    epoch: u64,
    /// For a shard of a sharded allocator: the table of everyone's allocations, which DRF
    /// orders by instead of this shard's own (see `shared.rs`).
    shared: Option<SharedView>,
    /// Quotas by role (see `quota.rs`).
    quotas: BTreeMap<String, quota::Quota>,
    /// Unreserved resources on this allocator's agents, and how much of them roles hold
    /// (resources of frameworks whose role is not known yet are not counted).
    unreserved_total: Quantities,
    unreserved_allocated: Quantities,
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        Self {
            config,
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            total: Quantities::default(),
            roles: DrfSorter::default(),
            role_frameworks: BTreeMap::new(),
            filters: RefusalFilters::default(),
            unknown: BTreeMap::new(),
            cycles: 0,
            epoch: 0,
            shared: None,
            quotas: BTreeMap::new(),
            unreserved_total: Quantities::default(),
            unreserved_allocated: Quantities::default(),
        }
    }

    /// One shard of a sharded allocator: it owns the agents added to it, and orders roles
    /// and frameworks by what they hold on every shard sharing `table`.
    pub fn shard(config: AllocatorConfig, table: Arc<SharedTable>) -> Self {
        let mut allocator = Self::new(config);
        allocator.shared = Some(SharedView::new(table));
        allocator
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Adds an agent, active, with `used` already held by frameworks (tasks that survived a
    /// master failover or agent re-registration). An id already known is replaced. Fails,
    /// adding nothing, if `used` does not fit in `total`.
    pub fn add_agent(
        &mut self,
        id: AgentId,
        total: Resources,
        used: Vec<(FrameworkId, Resources)>,
    ) -> Result<(), AllocatorError> {
        let mut sum = Resources::new();
        for (_, resources) in &used {
            sum.add(resources);
        }
        if !total.contains(&sum) {
            return Err(AllocatorError::UsedExceedsTotal {
                agent: id,
                used: sum,
                total,
            });
        }
        let quantities = Quantities::of(&total);
        if let Some(view) = &mut self.shared {
            view.register(&quantities)
                .map_err(|source| AllocatorError::TooManyNames {
                    agent: id.clone(),
                    source,
                })?;
        }
        self.remove_agent(&id);
        self.total.add(&quantities);
        let unreserved = Quantities::of_unreserved(&total);
        self.unreserved_total.add(&unreserved);
        if let Some(view) = &mut self.shared {
            view.add_unreserved(&unreserved, false, 1);
            view.add_total(&quantities, 1);
        }
        self.total_changed();
        let offerable = total.cpus() > Scalar::default() || total.mem_mb() > Scalar::default();
        self.agents.insert(
            id.clone(),
            Agent {
                available: total.clone(),
                total,
                allocated: Resources::new(),
                allocations: BTreeMap::new(),
                active: true,
                offerable,
                version: 0,
                idle_at: None,
                description: constraints::Description::default(),
            },
        );
        for (framework, resources) in used {
            if resources.is_empty() {
                continue;
            }
            let role = self.role_for_used(&framework, &resources);
            if role == UNKNOWN_ROLE {
                self.unknown
                    .entry(framework.clone())
                    .or_default()
                    .insert(id.clone());
            }
            self.track(&framework, &role, &id, &resources);
        }
        Ok(())
    }

    /// Forgets an agent and everything allocated on it; outstanding offers on it are the
    /// caller's to rescind. Unknown ids are ignored.
    pub fn remove_agent(&mut self, id: &AgentId) {
        let Some(agent) = self.agents.remove(id) else {
            return;
        };
        self.total.subtract(&Quantities::of(&agent.total));
        let unreserved = Quantities::of_unreserved(&agent.total);
        self.unreserved_total.subtract(&unreserved);
        if let Some(view) = &mut self.shared {
            view.add_unreserved(&unreserved, false, -1);
            view.add_total(&Quantities::of(&agent.total), -1);
        }
        self.total_changed();
        for ((framework, role), resources) in &agent.allocations {
            if role == UNKNOWN_ROLE {
                if let Some(agents) = self.unknown.get_mut(framework) {
                    agents.remove(id);
                    if agents.is_empty() {
                        self.unknown.remove(framework);
                    }
                }
                continue;
            }
            let quantities = Quantities::of(resources);
            self.roles.unallocated(role, &quantities);
            if let Some(sorter) = self.role_frameworks.get_mut(role) {
                sorter.unallocated(framework, &quantities);
            }
            let unreserved = Quantities::of_unreserved(resources);
            self.unreserved_allocated.subtract(&unreserved);
            if let Some(view) = &mut self.shared {
                view.charge(framework, role, &quantities, -1);
                view.add_unreserved(&unreserved, true, -1);
            }
            self.prune(framework, role);
        }
        self.filters.clear_agent(id);
    }

    /// Replaces an agent's total, keeping what frameworks hold there: a dynamic reservation
    /// made or undone on resources nobody holds. Fails, changing nothing, if what is
    /// allocated on the agent does not fit in `total`.
    pub fn set_agent_total(
        &mut self,
        id: &AgentId,
        total: Resources,
    ) -> Result<(), AllocatorError> {
        let Some(agent) = self.agents.get(id) else {
            return Ok(());
        };
        let Some(available) = total.checked_sub(&agent.allocated) else {
            return Err(AllocatorError::Overallocated {
                agent: id.clone(),
                allocated: agent.allocated.clone(),
                total,
            });
        };
        let (before, after) = (Quantities::of(&agent.total), Quantities::of(&total));
        let unreserved_before = Quantities::of_unreserved(&agent.total);
        let unreserved_after = Quantities::of_unreserved(&total);
        if let Some(view) = &mut self.shared {
            view.register(&after)
                .map_err(|source| AllocatorError::TooManyNames {
                    agent: id.clone(),
                    source,
                })?;
            view.add_total(&before, -1);
            view.add_total(&after, 1);
            view.add_unreserved(&unreserved_before, false, -1);
            view.add_unreserved(&unreserved_after, false, 1);
        }
        self.total.subtract(&before);
        self.total.add(&after);
        self.unreserved_total.subtract(&unreserved_before);
        self.unreserved_total.add(&unreserved_after);
        if let Some(agent) = self.agents.get_mut(id) {
            agent.offerable =
                total.cpus() > Scalar::default() || total.mem_mb() > Scalar::default();
            agent.total = total;
            agent.available = available;
            agent.version += 1;
        }
        self.total_changed();
        Ok(())
    }

    /// Applies a framework's RESERVE or UNRESERVE to resources it holds on `agent` in
    /// `role` (an accepted offer): `from` becomes `to` (the same amounts, reserved
    /// differently) in its allocation and in the agent's total. Fails, changing nothing, if
    /// the framework does not hold `from` there in that role.
    pub fn update_allocation(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        let Some(state) = self.agents.get(agent) else {
            return Ok(());
        };
        let held = state
            .allocations
            .get(&(framework.clone(), role.to_owned()))
            .cloned()
            .unwrap_or_default();
        if !held.contains(from) {
            return Err(AllocatorError::NotAllocated {
                framework: framework.clone(),
                agent: agent.clone(),
                resources: from.clone(),
                held,
            });
        }
        let mut total = state.total.clone();
        total.subtract(from);
        total.add(to);
        self.untrack(framework, role, agent, from);
        if let Err(e) = self.set_agent_total(agent, total) {
            self.track(framework, role, agent, from);
            return Err(e);
        }
        self.track(framework, role, agent, to);
        Ok(())
    }

    /// Stops offers from the agent (it disconnected); its resources stay accounted.
    pub fn deactivate_agent(&mut self, id: &AgentId) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.active = false;
            agent.version += 1;
        }
    }

    pub fn activate_agent(&mut self, id: &AgentId) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.active = true;
            agent.version += 1;
        }
    }

    /// Adds a framework, active, or updates a known one's roles (UPDATE_FRAMEWORK). No roles
    /// means the default role `*`. Resources it already held on agents before it subscribed
    /// (see [`Allocator::add_agent`]) are charged to the role they are reserved for, if it
    /// has that role, else to its first role.
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        roles: Vec<String>,
        suppressed_roles: Vec<String>,
    ) {
        let mut ordered: Vec<String> = Vec::new();
        for role in roles {
            if !ordered.contains(&role) {
                ordered.push(role);
            }
        }
        if ordered.is_empty() {
            ordered.push(DEFAULT_ROLE.to_owned());
        }
        let suppressed = suppressed_roles
            .into_iter()
            .filter(|r| ordered.contains(r))
            .collect();
        self.epoch += 1;
        // Constraints stay until set again (`set_offer_constraints`).
        let constraints = self
            .frameworks
            .get(&id)
            .map(|f| f.constraints.clone())
            .unwrap_or_default();
        let previous = self.frameworks.insert(
            id.clone(),
            Framework {
                roles: ordered.clone(),
                suppressed,
                active: true,
                constraints,
            },
        );
        for role in &ordered {
            self.roles.add(role);
            self.role_frameworks
                .entry(role.clone())
                .or_default()
                .add(&id);
            if let Some(view) = &mut self.shared {
                view.register_client(&id, role);
                view.invalidate();
            }
        }
        if let Some(previous) = previous {
            for role in previous.roles.iter().filter(|r| !ordered.contains(r)) {
                self.prune(&id, role);
            }
        }
        self.adopt_unknown(&id);
    }

    /// Forgets a framework, recovering everything allocated to it (offers and tasks alike):
    /// the caller need not recover its resources first.
    pub fn remove_framework(&mut self, id: &FrameworkId) {
        let agent_ids: Vec<AgentId> = self.agents.keys().cloned().collect();
        for agent_id in agent_ids {
            let held: Vec<(String, Resources)> = match self.agents.get(&agent_id) {
                Some(agent) => agent
                    .allocations
                    .iter()
                    .filter(|((framework, _), _)| framework == id)
                    .map(|((_, role), resources)| (role.clone(), resources.clone()))
                    .collect(),
                None => continue,
            };
            for (role, resources) in held {
                self.untrack(id, &role, &agent_id, &resources);
            }
        }
        self.unknown.remove(id);
        if let Some(framework) = self.frameworks.remove(id) {
            for role in &framework.roles {
                self.prune(id, role);
            }
        }
        self.filters.forget_framework(id);
        self.epoch += 1;
    }

    /// Stops offers to the framework (it disconnected); its allocations stay accounted.
    pub fn deactivate_framework(&mut self, id: &FrameworkId) {
        if let Some(framework) = self.frameworks.get_mut(id) {
            framework.active = false;
        }
    }

    pub fn activate_framework(&mut self, id: &FrameworkId) {
        if let Some(framework) = self.frameworks.get_mut(id) {
            framework.active = true;
        }
        self.epoch += 1;
    }

    /// Sets a role's weight (default 1.0); a role with weight 2 is entitled to twice the
    /// dominant share of a role with weight 1.
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::InvalidWeight {
                role: role.to_owned(),
                weight,
            });
        }
        self.roles.set_weight(&role.to_owned(), weight);
        if let Some(view) = &mut self.shared {
            view.invalidate();
        }
        Ok(())
    }

    /// SUPPRESS: no more offers to the framework for `roles` (None: all its roles) until it
    /// revives. Roles it is not subscribed to are ignored.
    pub fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[String]>) {
        if let Some(fw) = self.frameworks.get_mut(framework) {
            let chosen: Vec<String> = match roles {
                None => fw.roles.clone(),
                Some(roles) => roles
                    .iter()
                    .filter(|r| fw.roles.contains(r))
                    .cloned()
                    .collect(),
            };
            fw.suppressed.extend(chosen);
        }
    }

    /// REVIVE: unsuppresses `roles` (None: all its roles) and clears all the framework's
    /// refusal filters. The caller then runs a cycle over all agents.
    pub fn revive(&mut self, framework: &FrameworkId, roles: Option<&[String]>) {
        if let Some(fw) = self.frameworks.get_mut(framework) {
            match roles {
                None => fw.suppressed.clear(),
                Some(roles) => fw.suppressed.retain(|r| !roles.contains(r)),
            }
            self.filters.clear_framework(framework);
        }
        self.epoch += 1;
    }

    /// DECLINE: hides `resources` on `agent` from `framework` for
    /// `max(refuse or default_refuse, allocation_interval)`, capped at 365 days; a refusal of
    /// zero sets no filter. The caller also recovers the declined resources.
    pub fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        if !self.frameworks.contains_key(framework) || !self.agents.contains_key(agent) {
            return;
        }
        let interval = self.config.allocation_interval;
        if let Some(duration) = refusal_duration(refuse, self.config.default_refuse, interval) {
            self.filters
                .add(framework, agent, resources, now, duration, interval);
        }
    }

    /// DECLINEs by several frameworks of the whole offers on several agents (`(agent,
    /// resources)`), as after an offer round where all of them declined; unknown
    /// frameworks and agents are skipped. One call sets up what one DECLINE per framework
    /// and agent would.
    pub fn decline_many(
        &mut self,
        frameworks: &[FrameworkId],
        offers: &[(AgentId, Resources)],
        refuse: Option<Duration>,
        now: Instant,
    ) {
        let interval = self.config.allocation_interval;
        let Some(duration) = refusal_duration(refuse, self.config.default_refuse, interval) else {
            return;
        };
        let mut set = filters::FrameworkSet::default();
        for framework in frameworks
            .iter()
            .filter(|f| self.frameworks.contains_key(*f))
        {
            set.insert(self.filters.number(framework));
        }
        for (agent, resources) in offers.iter().filter(|(a, _)| self.agents.contains_key(a)) {
            self.filters
                .add_set(&set, agent, resources, now, duration, interval);
        }
    }

    /// Gives back resources allocated to `framework` on `agent`: an offer declined, rescinded
    /// or partly used, or a task that ended. Resources on an agent already removed were
    /// recovered with it and are ignored. Resources held in several roles of the framework
    /// are taken from its roles in name order (see [`Allocator::recover_in`] to say which).
    /// Fails, changing nothing, if the framework does not hold all of `resources` on the
    /// agent.
    pub fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        self.recover_in(framework, None, agent, resources)
    }

    /// [`Allocator::recover`], taking the resources from `role` first when given (the
    /// role the offer or task was allocated in), so that a multi-role framework's roles
    /// are credited what they were charged.
    pub fn recover_in(
        &mut self,
        framework: &FrameworkId,
        role: Option<&str>,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let Some(state) = self.agents.get(agent) else {
            return Ok(());
        };
        let mut pieces: Vec<(String, Resources)> = Vec::new();
        let mut remaining = resources.clone();
        let mut mine: Vec<(&String, &Resources)> = state
            .allocations
            .iter()
            .filter(|((holder, _), _)| holder == framework)
            .map(|((_, r), allocation)| (r, allocation))
            .collect();
        // Stable: the named role first, the others in name order.
        mine.sort_by_key(|(r, _)| Some(r.as_str()) != role);
        for &(held_role, allocation) in &mine {
            if remaining.is_empty() {
                break;
            }
            // The common case, one allocation holding all of it, without the copies.
            if allocation.contains(&remaining) {
                pieces.push((held_role.clone(), std::mem::take(&mut remaining)));
                break;
            }
            // Saturating subtraction twice gives the intersection with this allocation.
            let mut uncovered = remaining.clone();
            uncovered.subtract(allocation);
            let mut piece = remaining;
            piece.subtract(&uncovered);
            remaining = uncovered;
            if !piece.is_empty() {
                pieces.push((held_role.clone(), piece));
            }
        }
        if !remaining.is_empty() {
            let mut held = Resources::new();
            for (_, allocation) in &mine {
                held.add(allocation);
            }
            return Err(AllocatorError::NotAllocated {
                framework: framework.clone(),
                agent: agent.clone(),
                resources: resources.clone(),
                held,
            });
        }
        for (role, piece) in pieces {
            self.untrack(framework, &role, agent, &piece);
        }
        Ok(())
    }

    /// Every share's denominator changed: the sorters' cached orders are stale.
    fn total_changed(&mut self) {
        if let Some(view) = &mut self.shared {
            view.invalidate();
        }
        self.roles.invalidate();
        for sorter in self.role_frameworks.values_mut() {
            sorter.invalidate();
        }
    }

    /// Dominant shares of every role that has frameworks or allocations.
    pub fn shares(&self) -> Shares {
        let mut shares = Shares::default();
        for role in self.roles.clients() {
            let frameworks = self
                .role_frameworks
                .get(role)
                .map(|sorter| {
                    sorter
                        .clients()
                        .map(|fw| {
                            let share = match &self.shared {
                                Some(view) => view.framework_share(fw, role),
                                None => sorter.share(fw, &self.total),
                            };
                            (fw.clone(), share)
                        })
                        .collect()
                })
                .unwrap_or_default();
            shares.roles.insert(
                role.clone(),
                RoleShare {
                    weight: self.roles.weight(role),
                    share: match &self.shared {
                        Some(view) => view.role_share(role, self.roles.weight(role)),
                        None => self.roles.share(role, &self.total),
                    },
                    frameworks,
                },
            );
        }
        shares
    }

    /// Role weights that were set (roles not named weigh 1.0).
    pub fn weights(&self) -> BTreeMap<String, f64> {
        self.roles
            .weights()
            .map(|(role, weight)| (role.clone(), weight))
            .collect()
    }

    /// What each role holds on this allocator's agents (for a shard: its own part).
    pub fn role_allocations(&self) -> Vec<(String, Quantities)> {
        self.roles
            .clients()
            .map(|role| (role.clone(), self.roles.allocation(role)))
            .collect()
    }

    /// What is allocated (offered or in use) on `agent`.
    pub fn allocated_on(&self, agent: &AgentId) -> Option<&Resources> {
        self.agents.get(agent).map(|a| &a.allocated)
    }

    /// What `agent` has that nobody holds.
    pub fn available_on(&self, agent: &AgentId) -> Option<Resources> {
        self.agents.get(agent).map(|a| a.available.clone())
    }

    /// Everything allocated to `framework`, over all agents and roles.
    pub fn allocated_to(&self, framework: &FrameworkId) -> Resources {
        let mut sum = Resources::new();
        for agent in self.agents.values() {
            for ((holder, _), resources) in &agent.allocations {
                if holder == framework {
                    sum.add(resources);
                }
            }
        }
        sum
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Checks that on every agent the allocations fit in its total and add up to what the
    /// agent counts as allocated.
    pub fn check_invariants(&self) -> Result<(), AllocatorError> {
        self.agents.keys().try_for_each(|id| self.check_agent(id))
    }

    /// [`Allocator::check_invariants`] for one agent; an unknown agent passes.
    pub fn check_agent(&self, id: &AgentId) -> Result<(), AllocatorError> {
        let Some(agent) = self.agents.get(id) else {
            return Ok(());
        };
        let mut sum = Resources::new();
        for resources in agent.allocations.values() {
            sum.add(resources);
        }
        let mut whole = agent.available.clone();
        whole.add(&sum);
        if sum != agent.allocated || !agent.total.contains(&sum) || whole != agent.total {
            return Err(AllocatorError::Overallocated {
                agent: id.clone(),
                allocated: sum,
                total: agent.total.clone(),
            });
        }
        Ok(())
    }
}
