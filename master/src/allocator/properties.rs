//! Property tests of the allocator: random sequences of agents, frameworks, roles,
//! reservations (static, and dynamic ones made and undone by an operator or by a framework
//! on its offer), suppressions, declines, launches and task ends, checked after every step
//! against a model of who holds what. Deterministic: proptest's seed is fixed per run by
//! its configuration, and every failure shrinks to a minimal sequence.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;
use proptest::prelude::*;

use super::quota::Quota;
use super::sharded::Shards;
use super::{Allocation, Allocator, AllocatorConfig, AllocatorError};

/// The allocator under test: one [`Allocator`], or [`Shards`] sharing a table.
trait Subject {
    fn add_agent(&mut self, id: AgentId, total: Resources) -> Result<(), AllocatorError>;
    fn remove_agent(&mut self, id: &AgentId);
    fn deactivate_agent(&mut self, id: &AgentId);
    fn activate_agent(&mut self, id: &AgentId);
    fn add_framework(&mut self, id: FrameworkId, roles: Vec<String>);
    fn remove_framework(&mut self, id: &FrameworkId);
    fn deactivate_framework(&mut self, id: &FrameworkId);
    fn activate_framework(&mut self, id: &FrameworkId);
    fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[String]>);
    fn revive(&mut self, framework: &FrameworkId);
    fn allocate(&mut self, now: Instant) -> Vec<Allocation>;
    fn decline(&mut self, offer: &Allocation, refuse: Duration, now: Instant);
    /// Recovery in the role the resources were offered in.
    fn recover(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError>;
    /// Per-agent invariants, and for shards the shared table against the shards.
    fn check(&self) -> Result<(), String>;
    fn allocated_on(&self, agent: &AgentId) -> Option<Resources>;
    fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError>;
    fn set_agent_total(&mut self, id: &AgentId, total: Resources) -> Result<(), AllocatorError>;
    fn update_allocation(
        &mut self,
        offer: &Allocation,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError>;
}

macro_rules! subject {
    ($type:ty, $check:expr) => {
        impl Subject for $type {
            fn add_agent(&mut self, id: AgentId, total: Resources) -> Result<(), AllocatorError> {
                <$type>::add_agent(self, id, total, vec![])
            }
            fn remove_agent(&mut self, id: &AgentId) {
                <$type>::remove_agent(self, id)
            }
            fn deactivate_agent(&mut self, id: &AgentId) {
                <$type>::deactivate_agent(self, id)
            }
            fn activate_agent(&mut self, id: &AgentId) {
                <$type>::activate_agent(self, id)
            }
            fn add_framework(&mut self, id: FrameworkId, roles: Vec<String>) {
                <$type>::add_framework(self, id, roles, vec![])
            }
            fn remove_framework(&mut self, id: &FrameworkId) {
                <$type>::remove_framework(self, id)
            }
            fn deactivate_framework(&mut self, id: &FrameworkId) {
                <$type>::deactivate_framework(self, id)
            }
            fn activate_framework(&mut self, id: &FrameworkId) {
                <$type>::activate_framework(self, id)
            }
            fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[String]>) {
                <$type>::suppress(self, framework, roles)
            }
            fn revive(&mut self, framework: &FrameworkId) {
                <$type>::revive(self, framework, None)
            }
            fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
                <$type>::allocate(self, now)
            }
            fn decline(&mut self, offer: &Allocation, refuse: Duration, now: Instant) {
                <$type>::decline(
                    self,
                    &offer.framework_id,
                    &offer.agent_id,
                    &offer.resources,
                    Some(refuse),
                    now,
                )
            }
            fn recover(
                &mut self,
                framework: &FrameworkId,
                role: &str,
                agent: &AgentId,
                resources: &Resources,
            ) -> Result<(), AllocatorError> {
                <$type>::recover_in(self, framework, Some(role), agent, resources)
            }
            fn check(&self) -> Result<(), String> {
                let check: fn(&$type) -> Result<(), String> = $check;
                check(self)
            }
            fn allocated_on(&self, agent: &AgentId) -> Option<Resources> {
                <$type>::allocated_on(self, agent).cloned()
            }
            fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
                <$type>::set_quota(self, role, quota)
            }
            fn set_agent_total(
                &mut self,
                id: &AgentId,
                total: Resources,
            ) -> Result<(), AllocatorError> {
                <$type>::set_agent_total(self, id, total)
            }
            fn update_allocation(
                &mut self,
                offer: &Allocation,
                from: &Resources,
                to: &Resources,
            ) -> Result<(), AllocatorError> {
                <$type>::update_allocation(
                    self,
                    &offer.framework_id,
                    &offer.role,
                    &offer.agent_id,
                    from,
                    to,
                )
            }
        }
    };
}

subject!(Allocator, |a| a
    .check_invariants()
    .map_err(|e| e.to_string()));
subject!(Shards, |s| {
    s.check_invariants().map_err(|e| e.to_string())?;
    s.check_table()
});

const ROLES: [&str; 3] = ["a", "b", "a/x"];
const SHAPES: [&str; 4] = [
    "cpus:4;mem:4096;ports:[31000-31010]",
    "cpus:2;mem:2048;disk:100",
    "cpus(a):2;mem(a):1024;cpus:2;mem:1024",
    "cpus(b):1;mem(b):512;gpus:1;cpus:1;mem:512",
];

#[derive(Debug, Clone)]
enum Op {
    AddAgent {
        agent: usize,
        shape: usize,
    },
    RemoveAgent {
        agent: usize,
    },
    DeactivateAgent {
        agent: usize,
    },
    ActivateAgent {
        agent: usize,
    },
    AddFramework {
        framework: usize,
        roles: Vec<usize>,
    },
    RemoveFramework {
        framework: usize,
    },
    DeactivateFramework {
        framework: usize,
    },
    ActivateFramework {
        framework: usize,
    },
    Suppress {
        framework: usize,
        role: Option<usize>,
    },
    Revive {
        framework: usize,
    },
    Allocate {
        seconds: u64,
    },
    /// Answer the oldest outstanding offer: 0 decline, 1 launch a small task, 2 give all
    /// back with no filter, 3 reserve half a cpu of it for the offer's role and launch a
    /// task on that.
    Answer {
        how: u8,
        refuse: u64,
    },
    /// End the oldest running task.
    EndTask,
    /// Limit a role's cpus (0: remove its quota).
    Limit {
        role: usize,
        cpus: u8,
    },
    /// An operator reserves one free unreserved cpu of an agent for a role, or makes one
    /// free cpu reserved for it unreserved.
    Reserve {
        agent: usize,
        role: usize,
        unreserve: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6usize, 0..SHAPES.len()).prop_map(|(agent, shape)| Op::AddAgent { agent, shape }),
        1 => (0..6usize).prop_map(|agent| Op::RemoveAgent { agent }),
        1 => (0..6usize).prop_map(|agent| Op::DeactivateAgent { agent }),
        1 => (0..6usize).prop_map(|agent| Op::ActivateAgent { agent }),
        3 => (0..4usize, proptest::collection::vec(0..ROLES.len(), 0..3))
            .prop_map(|(framework, roles)| Op::AddFramework { framework, roles }),
        1 => (0..4usize).prop_map(|framework| Op::RemoveFramework { framework }),
        1 => (0..4usize).prop_map(|framework| Op::DeactivateFramework { framework }),
        1 => (0..4usize).prop_map(|framework| Op::ActivateFramework { framework }),
        1 => (0..4usize, proptest::option::of(0..ROLES.len()))
            .prop_map(|(framework, role)| Op::Suppress { framework, role }),
        1 => (0..4usize).prop_map(|framework| Op::Revive { framework }),
        4 => (0..4u64).prop_map(|seconds| Op::Allocate { seconds }),
        5 => (0..4u8, 0..10u64).prop_map(|(how, refuse)| Op::Answer { how, refuse }),
        2 => Just(Op::EndTask),
        1 => (0..ROLES.len(), 0..8u8).prop_map(|(role, cpus)| Op::Limit { role, cpus }),
        2 => (0..6usize, 0..ROLES.len(), any::<bool>())
            .prop_map(|(agent, role, unreserve)| Op::Reserve { agent, role, unreserve }),
    ]
}

fn agent_id(i: usize) -> AgentId {
    AgentId::from(format!("agent-{i}").as_str())
}

fn framework_id(i: usize) -> FrameworkId {
    FrameworkId::from(format!("fw-{i}").as_str())
}

#[derive(Debug, Default, Clone)]
struct FrameworkModel {
    roles: Vec<String>,
    suppressed: Vec<String>,
    active: bool,
}

/// What the test believes: frameworks and their state, agents, and who holds what.
#[derive(Debug, Default)]
struct Model {
    frameworks: BTreeMap<usize, FrameworkModel>,
    agents: BTreeMap<usize, Resources>,
    offers: Vec<Allocation>,
    tasks: Vec<(FrameworkId, AgentId, Resources, String)>,
    /// Cpu limits by role, in milli-cpus.
    limits: BTreeMap<String, i64>,
}

impl Model {
    fn held_on(&self, agent: &AgentId) -> Resources {
        let mut sum = Resources::new();
        for o in self.offers.iter().filter(|o| o.agent_id == *agent) {
            sum.add(&o.resources);
        }
        for (_, a, r, _) in self.tasks.iter().filter(|(_, a, _, _)| a == agent) {
            let _ = a;
            sum.add(r);
        }
        sum
    }

    /// Milli-cpus `role` holds in offers and tasks.
    fn cpus_of(&self, role: &str) -> i64 {
        let offers = self.offers.iter().filter(|o| o.role == role);
        let tasks = self.tasks.iter().filter(|t| t.3 == role);
        offers.map(|o| o.resources.cpus().milli()).sum::<i64>()
            + tasks.map(|t| t.2.cpus().milli()).sum::<i64>()
    }

    fn forget_agent(&mut self, agent: &AgentId) {
        self.offers.retain(|o| o.agent_id != *agent);
        self.tasks.retain(|(_, a, _, _)| a != agent);
    }

    fn forget_framework(&mut self, framework: &FrameworkId) {
        self.offers.retain(|o| o.framework_id != *framework);
        self.tasks.retain(|(f, _, _, _)| f != framework);
    }
}

fn check_offer(model: &Model, offer: &Allocation) -> Result<(), TestCaseError> {
    let index = (0..4)
        .find(|i| framework_id(*i) == offer.framework_id)
        .ok_or_else(|| TestCaseError::fail(format!("offer to unknown {offer:?}")))?;
    let fw = model
        .frameworks
        .get(&index)
        .ok_or_else(|| TestCaseError::fail(format!("offer to a removed framework {offer:?}")))?;
    prop_assert!(fw.active, "offer to an inactive framework: {offer:?}");
    prop_assert!(
        fw.roles.contains(&offer.role),
        "offer for a role it has not: {offer:?}"
    );
    prop_assert!(
        !fw.suppressed.contains(&offer.role),
        "offer to a framework suppressed in the role: {offer:?}"
    );
    prop_assert_eq!(
        offer.resources.allocatable_to(&offer.role),
        offer.resources.clone(),
        "resources reserved for another role reached role {}",
        offer.role
    );
    prop_assert!(!offer.resources.is_empty());
    Ok(())
}

/// Runs one sequence; returns how many offers it saw, how many of them carried reserved
/// resources, and how many dynamic reservations were made or undone.
fn run(ops: Vec<Op>, a: &mut impl Subject) -> Result<(usize, usize, usize), TestCaseError> {
    let mut offers_seen = 0;
    let mut reserved_seen = 0;
    let mut conversions = 0;
    let base = Instant::now();
    let mut now = base;
    let mut m = Model::default();
    let task =
        Resources::parse("cpus:0.5;mem:128").map_err(|e| TestCaseError::fail(e.to_string()))?;
    for op in ops {
        match op {
            Op::AddAgent { agent, shape } => {
                if m.agents.contains_key(&agent) {
                    continue;
                }
                let total = Resources::parse(SHAPES[shape])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                a.add_agent(agent_id(agent), total.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.agents.insert(agent, total);
            }
            Op::RemoveAgent { agent } => {
                a.remove_agent(&agent_id(agent));
                m.agents.remove(&agent);
                m.forget_agent(&agent_id(agent));
            }
            Op::DeactivateAgent { agent } => a.deactivate_agent(&agent_id(agent)),
            Op::ActivateAgent { agent } => a.activate_agent(&agent_id(agent)),
            Op::AddFramework { framework, roles } => {
                if m.frameworks.contains_key(&framework) {
                    continue;
                }
                let mut names: Vec<String> = roles.iter().map(|r| ROLES[*r].to_owned()).collect();
                names.dedup();
                a.add_framework(framework_id(framework), names.clone());
                if names.is_empty() {
                    names.push(super::DEFAULT_ROLE.to_owned());
                }
                m.frameworks.insert(
                    framework,
                    FrameworkModel {
                        roles: names,
                        suppressed: Vec::new(),
                        active: true,
                    },
                );
            }
            Op::RemoveFramework { framework } => {
                a.remove_framework(&framework_id(framework));
                m.frameworks.remove(&framework);
                m.forget_framework(&framework_id(framework));
            }
            Op::DeactivateFramework { framework } => {
                a.deactivate_framework(&framework_id(framework));
                if let Some(fw) = m.frameworks.get_mut(&framework) {
                    fw.active = false;
                }
            }
            Op::ActivateFramework { framework } => {
                a.activate_framework(&framework_id(framework));
                if let Some(fw) = m.frameworks.get_mut(&framework) {
                    fw.active = true;
                }
            }
            Op::Suppress { framework, role } => {
                let Some(fw) = m.frameworks.get_mut(&framework) else {
                    continue;
                };
                let chosen: Vec<String> = match role {
                    Some(r) => vec![ROLES[r].to_owned()],
                    None => fw.roles.clone(),
                };
                a.suppress(&framework_id(framework), role.map(|_| chosen.as_slice()));
                for r in chosen {
                    if fw.roles.contains(&r) && !fw.suppressed.contains(&r) {
                        fw.suppressed.push(r);
                    }
                }
            }
            Op::Revive { framework } => {
                a.revive(&framework_id(framework));
                if let Some(fw) = m.frameworks.get_mut(&framework) {
                    fw.suppressed.clear();
                }
            }
            Op::Allocate { seconds } => {
                now += Duration::from_secs(seconds);
                let offers = a.allocate(now);
                // No offer takes a role past its cpu limit (a role already past a limit
                // set later gets no more cpus).
                for (role, limit) in &m.limits {
                    let before = m.cpus_of(role);
                    let offered: i64 = offers
                        .iter()
                        .filter(|o| o.role == *role)
                        .map(|o| o.resources.cpus().milli())
                        .sum();
                    prop_assert!(
                        offered <= (limit - before).max(0),
                        "role {role} held {before} milli-cpus, limit {limit}, offered {offered}"
                    );
                }
                for offer in offers {
                    check_offer(&m, &offer)?;
                    offers_seen += 1;
                    if offer.resources.unreserved() != offer.resources {
                        reserved_seen += 1;
                    }
                    m.offers.push(offer);
                }
            }
            Op::Answer { how, refuse } => {
                if m.offers.is_empty() {
                    continue;
                }
                let mut offer = m.offers.remove(0);
                let half =
                    Resources::parse("cpus:0.5").map_err(|e| TestCaseError::fail(e.to_string()))?;
                let keep = if how == 1 && offer.resources.contains(&task) {
                    task.clone()
                } else if how == 3
                    && offer.role != super::DEFAULT_ROLE
                    && offer.resources.contains(&half)
                {
                    // A framework's RESERVE: the same amount, now reserved for its role,
                    // in its allocation and in the agent's total.
                    let reserved = half.with_role(&offer.role);
                    a.update_allocation(&offer, &half, &reserved)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    offer.resources.subtract(&half);
                    offer.resources.add(&reserved);
                    conversions += 1;
                    let index = (0..6).find(|i| agent_id(*i) == offer.agent_id);
                    if let Some(total) = index.and_then(|i| m.agents.get_mut(&i)) {
                        total.subtract(&half);
                        total.add(&reserved);
                    }
                    reserved
                } else {
                    Resources::new()
                };
                if how == 0 {
                    a.decline(&offer, Duration::from_secs(refuse), now);
                }
                let rest = offer.resources.checked_sub(&keep).unwrap_or_default();
                a.recover(&offer.framework_id, &offer.role, &offer.agent_id, &rest)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if !keep.is_empty() {
                    m.tasks
                        .push((offer.framework_id, offer.agent_id, keep, offer.role));
                }
            }
            Op::Limit { role, cpus } => {
                let role = ROLES[role].to_owned();
                let quota = if cpus == 0 {
                    Quota::default()
                } else {
                    let limit = Resources::parse(&format!("cpus:{cpus}"))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    Quota::new(&Resources::new(), Some(&limit))
                };
                a.set_quota(&role, quota)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if cpus == 0 {
                    m.limits.remove(&role);
                } else {
                    m.limits.insert(role, i64::from(cpus) * 1_000);
                }
            }
            Op::Reserve {
                agent,
                role,
                unreserve,
            } => {
                let Some(total) = m.agents.get(&agent).cloned() else {
                    continue;
                };
                let id = agent_id(agent);
                let free = total.checked_sub(&m.held_on(&id)).unwrap_or_default();
                let reserved = Resources::parse(&format!("cpus({}):1", ROLES[role]))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let flat = reserved.flatten();
                let (from, to) = if unreserve {
                    (reserved, flat)
                } else {
                    (flat, reserved)
                };
                if !free.contains(&from) {
                    continue;
                }
                let mut new_total = total;
                new_total.subtract(&from);
                new_total.add(&to);
                a.set_agent_total(&id, new_total.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.agents.insert(agent, new_total);
                conversions += 1;
            }
            Op::EndTask => {
                if m.tasks.is_empty() {
                    continue;
                }
                let (framework, agent, resources, role) = m.tasks.remove(0);
                a.recover(&framework, &role, &agent, &resources)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        // No agent is ever offered or allocated more than it has, and the allocator holds
        // on each agent exactly what the frameworks hold there.
        a.check().map_err(TestCaseError::fail)?;
        for (i, total) in &m.agents {
            let id = agent_id(*i);
            let held = m.held_on(&id);
            prop_assert!(total.contains(&held), "agent {id}: holds {held} of {total}");
            prop_assert_eq!(a.allocated_on(&id), Some(held.clone()), "agent {}", id);
        }
    }
    Ok((offers_seen, reserved_seen, conversions))
}

/// Runs 256 random sequences against allocators from `make`.
fn check_sequences<A: Subject>(make: impl Fn() -> A) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    let offers = std::cell::Cell::new((0usize, 0usize, 0usize));
    let result = runner.run(&proptest::collection::vec(op(), 1..120), |ops| {
        let (seen, reserved, converted) = run(ops, &mut make())?;
        let (all, with_reserved, conversions) = offers.get();
        offers.set((
            all + seen,
            with_reserved + reserved,
            conversions + converted,
        ));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences must exercise what they check.
    let (all, with_reserved, conversions) = offers.get();
    assert!(all > 1_000, "only {all} offers over all sequences");
    assert!(
        conversions > 100,
        "only {conversions} dynamic reservations made or undone"
    );
    assert!(
        with_reserved > 50,
        "only {with_reserved} offers with reserved resources"
    );
}

#[test]
fn offers_respect_totals_roles_reservations_and_suppression() {
    check_sequences(|| Allocator::new(AllocatorConfig::default()));
}

/// The same across shards: no agent over-offered on any shard, reservations and
/// suppression respected, and the shared table equal to the sum of the shards.
#[test]
fn sharded_offers_respect_totals_roles_reservations_and_suppression() {
    check_sequences(|| Shards::new(AllocatorConfig::default(), 2));
    check_sequences(|| Shards::new(AllocatorConfig::default(), 3));
}
