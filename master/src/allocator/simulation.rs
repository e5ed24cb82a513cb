//! Deterministic simulations: thousands of agents and tens of frameworks driven through
//! offers, launches, declines, task ends, agent churn and suppression, checking after every
//! step that no agent is ever allocated more than it has. Plus a property test over random
//! operation sequences on a small cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;
use proptest::prelude::*;

use super::tests::res;
use super::{Allocation, Allocator, AllocatorConfig};

/// A small deterministic generator (xorshift64*), so the simulation needs no seed plumbing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random events after the first cycle.
const STEPS: usize = 3000;

const ROLES: [&str; 6] = ["web", "batch", "eng", "eng/frontend", "eng/backend", "ops"];

struct Cluster {
    allocator: Allocator,
    agents: Vec<(AgentId, Resources)>,
    frameworks: Vec<FrameworkId>,
    /// Running tasks: (framework, agent, resources).
    tasks: Vec<(FrameworkId, AgentId, Resources)>,
    /// Offers not yet answered.
    offers: Vec<Allocation>,
    now: Instant,
}

impl Cluster {
    fn new(agents: usize, frameworks: usize) -> Self {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        let mut agent_list = Vec::new();
        for i in 0..agents {
            let total = match i % 4 {
                0 => res("cpus:16;mem:65536;disk:100000;ports:[31000-32000]"),
                1 => res("cpus:8;mem:32768;ports:[31000-31100]"),
                2 => res("cpus(eng):4;mem(eng):8192;cpus:4;mem:8192"),
                _ => res("cpus(web):2;cpus:2;mem:4096;gpus:1"),
            };
            let id = AgentId::from(format!("agent-{i:05}"));
            allocator
                .add_agent(id.clone(), total.clone(), vec![])
                .unwrap();
            agent_list.push((id, total));
        }
        allocator.set_weight("web", 2.0).unwrap();
        allocator.set_weight("eng/frontend", 0.5).unwrap();
        let mut framework_list = Vec::new();
        for i in 0..frameworks {
            let id = FrameworkId::from(format!("fw-{i:03}"));
            let mut roles = vec![ROLES[i % ROLES.len()].to_owned()];
            if i % 5 == 0 {
                roles.push(ROLES[(i + 1) % ROLES.len()].to_owned());
            }
            allocator.add_framework(id.clone(), roles, vec![]);
            framework_list.push(id);
        }
        Cluster {
            allocator,
            agents: agent_list,
            frameworks: framework_list,
            tasks: Vec::new(),
            offers: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Answers one pending offer: launch a task from it (keeping part), or decline it.
    fn answer_offer(&mut self, rng: &mut Rng) -> Vec<AgentId> {
        if self.offers.is_empty() {
            return vec![];
        }
        let offer = self.offers.swap_remove(rng.below(self.offers.len()));
        let task_size =
            res(["cpus:1;mem:2048", "cpus:2;mem:1024", "cpus:0.5;mem:512"][rng.below(3)]);
        let task = if offer.resources.contains(&task_size) && rng.below(4) != 0 {
            task_size
        } else {
            // Decline the lot, sometimes with a filter.
            if rng.below(2) == 0 {
                let refuse = Duration::from_secs(rng.below(10) as u64);
                self.allocator.decline(
                    &offer.framework_id,
                    &offer.agent_id,
                    &offer.resources,
                    Some(refuse),
                    self.now,
                );
            }
            Resources::new()
        };
        let unused = offer.resources.checked_sub(&task).unwrap();
        self.allocator
            .recover(&offer.framework_id, &offer.agent_id, &unused)
            .unwrap();
        let touched = vec![offer.agent_id.clone()];
        if !task.is_empty() {
            self.tasks.push((offer.framework_id, offer.agent_id, task));
        }
        touched
    }

    /// One random event; returns the agents whose allocations it may have changed.
    fn step(&mut self, rng: &mut Rng) -> Vec<AgentId> {
        match rng.below(100) {
            0..=49 => self.answer_offer(rng),
            50..=64 => {
                // A task ends.
                if self.tasks.is_empty() {
                    return vec![];
                }
                let (fw, agent, resources) = self.tasks.swap_remove(rng.below(self.tasks.len()));
                self.allocator.recover(&fw, &agent, &resources).unwrap();
                vec![agent]
            }
            65..=79 => {
                // Event-triggered cycle over a few agents.
                let agents: Vec<AgentId> = (0..8)
                    .map(|_| self.agents[rng.below(self.agents.len())].0.clone())
                    .collect();
                let offers = self.allocator.allocate_agents(&agents, self.now);
                self.offers.extend(offers);
                agents
            }
            80..=84 => {
                // An agent fails over: removed, then re-registers with its running tasks.
                let (id, total) = self.agents[rng.below(self.agents.len())].clone();
                self.allocator.remove_agent(&id);
                self.offers.retain(|o| o.agent_id != id);
                let mut used: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
                for (fw, agent, resources) in &self.tasks {
                    if *agent == id {
                        used.entry(fw.clone()).or_default().add(resources);
                    }
                }
                self.allocator
                    .add_agent(id.clone(), total, used.into_iter().collect())
                    .unwrap();
                vec![id]
            }
            85..=89 => {
                let fw = &self.frameworks[rng.below(self.frameworks.len())];
                if rng.below(2) == 0 {
                    self.allocator.suppress(fw, None);
                } else {
                    self.allocator.revive(fw, None);
                }
                vec![]
            }
            90..=94 => {
                let (id, _) = &self.agents[rng.below(self.agents.len())];
                if rng.below(2) == 0 {
                    self.allocator.deactivate_agent(id);
                } else {
                    self.allocator.activate_agent(id);
                }
                vec![]
            }
            _ => {
                // A full cycle; only agents that got an offer changed.
                self.now += Duration::from_secs(1);
                let offers = self.allocator.allocate(self.now);
                let touched = offers.iter().map(|o| o.agent_id.clone()).collect();
                self.offers.extend(offers);
                touched
            }
        }
    }
}

#[test]
fn thousands_of_agents_never_overallocated() {
    let mut cluster = Cluster::new(3000, 30);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let first = cluster.allocator.allocate(cluster.now);
    // Every agent has cpus and mem, and every framework wants offers: all are offered,
    // some twice (the unreserved part to one role, the reserved part to another).
    let offered: BTreeSet<&AgentId> = first.iter().map(|o| &o.agent_id).collect();
    assert_eq!(offered.len(), 3000);
    cluster.offers = first;
    cluster.allocator.check_invariants().unwrap();
    for step in 1..=STEPS {
        // Every step checks the agents it changed; every few hundred, all of them.
        for agent in cluster.step(&mut rng) {
            cluster.allocator.check_agent(&agent).unwrap();
        }
        if step % 500 == 0 {
            cluster.allocator.check_invariants().unwrap();
        }
    }
    assert!(!cluster.tasks.is_empty());
    // Recovering everything leaves every agent whole.
    for offer in std::mem::take(&mut cluster.offers) {
        cluster
            .allocator
            .recover(&offer.framework_id, &offer.agent_id, &offer.resources)
            .unwrap();
    }
    for (fw, agent, resources) in std::mem::take(&mut cluster.tasks) {
        cluster.allocator.recover(&fw, &agent, &resources).unwrap();
    }
    for (id, total) in &cluster.agents {
        assert_eq!(cluster.allocator.available_on(id).as_ref(), Some(total));
    }
    assert!(
        cluster
            .allocator
            .shares()
            .roles
            .values()
            .all(|r| r.share == 0.0)
    );
}

#[derive(Debug, Clone)]
enum Op {
    AddAgent(usize, usize),
    RemoveAgent(usize),
    AddFramework(usize, usize),
    RemoveFramework(usize),
    Allocate,
    AllocateAgent(usize),
    AnswerOffer(usize, bool),
    EndTask(usize),
    Decline(usize, u64),
    Suppress(usize),
    Revive(usize),
    Weight(usize, u8),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, 0..4usize).prop_map(|(a, t)| Op::AddAgent(a, t)),
        (0..6usize).prop_map(Op::RemoveAgent),
        (0..4usize, 0..6usize).prop_map(|(f, r)| Op::AddFramework(f, r)),
        (0..4usize).prop_map(Op::RemoveFramework),
        Just(Op::Allocate),
        (0..6usize).prop_map(Op::AllocateAgent),
        (0..16usize, any::<bool>()).prop_map(|(i, keep)| Op::AnswerOffer(i, keep)),
        (0..16usize).prop_map(Op::EndTask),
        (0..16usize, 0..8u64).prop_map(|(i, s)| Op::Decline(i, s)),
        (0..4usize).prop_map(Op::Suppress),
        (0..4usize).prop_map(Op::Revive),
        (0..6usize, 1..5u8).prop_map(|(r, w)| Op::Weight(r, w)),
        (0..3000u64).prop_map(Op::Tick),
    ]
}

const TOTALS: [&str; 4] = [
    "cpus:4;mem:4096;ports:[1-10]",
    "cpus(eng):2;mem(eng):1024;cpus:1;mem:512",
    "cpus:0.005;mem:8",
    "disk:100",
];

proptest! {
    #[test]
    fn random_operations_never_overallocate(ops in proptest::collection::vec(op(), 1..60)) {
        let mut a = Allocator::new(AllocatorConfig::default());
        let agent = |i: usize| AgentId::from(format!("a{i}"));
        let framework = |i: usize| FrameworkId::from(format!("f{i}"));
        let mut now = Instant::now();
        let mut offers: Vec<Allocation> = Vec::new();
        let mut tasks: Vec<(FrameworkId, AgentId, Resources)> = Vec::new();
        for op in ops {
            match op {
                Op::AddAgent(i, t) => {
                    a.remove_agent(&agent(i));
                    offers.retain(|o| o.agent_id != agent(i));
                    tasks.retain(|t| t.1 != agent(i));
                    a.add_agent(agent(i), res(TOTALS[t]), vec![]).unwrap();
                }
                Op::RemoveAgent(i) => {
                    a.remove_agent(&agent(i));
                    offers.retain(|o| o.agent_id != agent(i));
                    tasks.retain(|t| t.1 != agent(i));
                }
                Op::AddFramework(f, r) => {
                    a.add_framework(framework(f), vec![ROLES[r].to_owned()], vec![]);
                }
                Op::RemoveFramework(f) => {
                    a.remove_framework(&framework(f));
                    offers.retain(|o| o.framework_id != framework(f));
                    tasks.retain(|t| t.0 != framework(f));
                }
                Op::Allocate => offers.extend(a.allocate(now)),
                Op::AllocateAgent(i) => offers.extend(a.allocate_agents(&[agent(i)], now)),
                Op::AnswerOffer(i, keep) if !offers.is_empty() => {
                    let offer = offers.swap_remove(i % offers.len());
                    if keep {
                        tasks.push((offer.framework_id, offer.agent_id, offer.resources));
                    } else {
                        a.recover(&offer.framework_id, &offer.agent_id, &offer.resources).unwrap();
                    }
                }
                Op::EndTask(i) if !tasks.is_empty() => {
                    let (f, ag, r) = tasks.swap_remove(i % tasks.len());
                    a.recover(&f, &ag, &r).unwrap();
                }
                Op::Decline(i, s) if !offers.is_empty() => {
                    let offer = offers.swap_remove(i % offers.len());
                    a.decline(&offer.framework_id, &offer.agent_id, &offer.resources, Some(Duration::from_secs(s)), now);
                    a.recover(&offer.framework_id, &offer.agent_id, &offer.resources).unwrap();
                }
                Op::Suppress(f) => a.suppress(&framework(f), None),
                Op::Revive(f) => a.revive(&framework(f), None),
                Op::Weight(r, w) => a.set_weight(ROLES[r], f64::from(w)).unwrap(),
                Op::Tick(ms) => now += Duration::from_millis(ms),
                _ => {}
            }
            prop_assert!(a.check_invariants().is_ok(), "{:?}", a.check_invariants());
        }
        for offer in offers {
            a.recover(&offer.framework_id, &offer.agent_id, &offer.resources).unwrap();
        }
        for (f, ag, r) in tasks {
            a.recover(&f, &ag, &r).unwrap();
        }
        for i in 0..6 {
            if let Some(available) = a.available_on(&agent(i)) {
                prop_assert!(a.allocated_on(&agent(i)).is_some_and(Resources::is_empty));
                prop_assert!(!available.is_empty());
            }
        }
    }
}
