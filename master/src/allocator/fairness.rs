//! Fairness of the sharded allocator against exact sequential DRF, on the same workload.
//!
//! Workload: `AGENTS` identical agents, roles with weights 1, 2.5 and 3.5 and several
//! frameworks each, every framework taking every offer. Before the cycle, one framework of
//! the first role already runs tasks filling `HELD` agents, all owned by shard 0 (a shard
//! that sorted by its own agents' allocations alone would get this wrong by far more than
//! the bound). One full cycle hands out every other agent. Both allocators give whole agents, so one allocation moves a weighted role share
//! by at most `d = (1 / AGENTS) / min weight`.
//!
//! The bound, printed by the tests:
//! - Sequential DRF gives each agent to a client with the least share, so when everything
//!   is handed out every share is within `d` of the smallest.
//! - A shard decides on the table as published; at most `S - 1` allocations (one in flight
//!   per other shard) are missing from it, and allocations only grow during the cycle, so
//!   the client it picks is within `(S - 1) d` of the true least share, and all shares end
//!   within `S d` of the smallest.
//! - With identical agents the weighted shares of the roles sum to the same amount in both
//!   runs (every agent is handed out), so each role's share differs between the runs by at
//!   most `(S + 1) d`. Within a role of weight `w` with `k` frameworks, the frameworks'
//!   shares sum to the role's unweighted share, so each differs by at most
//!   `(1 + w / k)(S + 1) d`.

use std::collections::BTreeMap;
use std::time::Instant;

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

use super::sharded::{Shards, ThreadedShards, shard_of};
use super::{Allocation, AllocatorConfig};

const AGENTS: usize = 2_999;
/// (role, weight, frameworks)
const ROLES: [(&str, f64, usize); 3] = [("a", 1.0, 3), ("b", 2.5, 5), ("c", 3.5, 4)];
const AGENT: &str = "cpus:16;mem:65536;disk:1000";
/// Agents whose whole resources `fw-a-0` already uses, all on shard 0 of any shard count.
const HELD: usize = 300;

fn agent_id(i: usize) -> AgentId {
    AgentId::from(format!("agent-{i:05}").as_str())
}

fn framework_id(role: &str, i: usize) -> FrameworkId {
    FrameworkId::from(format!("fw-{role}-{i}").as_str())
}

fn frameworks() -> Vec<(FrameworkId, &'static str)> {
    ROLES
        .iter()
        .flat_map(|(role, _, count)| (0..*count).map(move |i| (framework_id(role, i), *role)))
        .collect()
}

/// Largest weighted step one allocation can make: one agent of `AGENTS`, over the least
/// weight.
fn step() -> f64 {
    let least = ROLES.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    (1.0 / AGENTS as f64) / least
}

/// Shares per role (weighted) and per framework (within its role, unweighted), computed
/// from the offers alone.
#[derive(Debug, Default)]
struct Outcome {
    roles: BTreeMap<String, f64>,
    frameworks: BTreeMap<FrameworkId, f64>,
}

fn outcome(offers: &[Allocation]) -> Outcome {
    let mut per_framework: BTreeMap<FrameworkId, usize> = BTreeMap::new();
    let mut per_role: BTreeMap<String, usize> = BTreeMap::new();
    per_framework.insert(framework_id("a", 0), HELD);
    per_role.insert("a".to_owned(), HELD);
    for offer in offers {
        *per_framework.entry(offer.framework_id.clone()).or_default() += 1;
        *per_role.entry(offer.role.clone()).or_default() += 1;
    }
    let mut out = Outcome::default();
    for (role, weight, _) in ROLES {
        let agents = per_role.get(role).copied().unwrap_or_default();
        out.roles
            .insert(role.to_owned(), agents as f64 / AGENTS as f64 / weight);
    }
    for (framework, _) in frameworks() {
        let agents = per_framework.get(&framework).copied().unwrap_or_default();
        out.frameworks
            .insert(framework, agents as f64 / AGENTS as f64);
    }
    out
}

fn total() -> Resources {
    Resources::parse(AGENT).expect("agent resources")
}

/// The agents, each with what is already used on it: `HELD` agents owned by shard 0 of
/// every shard count used here are full.
fn agents() -> Vec<(AgentId, Vec<(FrameworkId, Resources)>)> {
    let mut held = 0;
    (0..AGENTS)
        .map(|i| {
            let id = agent_id(i);
            let on_zero = [2, 4].iter().all(|n| shard_of(&id, *n) == 0);
            let used = if on_zero && held < HELD {
                held += 1;
                vec![(framework_id("a", 0), total())]
            } else {
                vec![]
            };
            (id, used)
        })
        .collect()
}

/// How many agents are handed out in the cycle.
fn free() -> usize {
    AGENTS - HELD
}

/// Exact sequential DRF: one allocator (`Shards` with one shard is a plain `Allocator`).
fn sequential() -> Outcome {
    with_shards(1, false)
}

/// `shards` shards, their cycle interleaved agent by agent in this thread, or (`parallel`)
/// run on a thread each as the master runs them (`Shards::allocate_parallel`).
fn with_shards(shards: usize, parallel: bool) -> Outcome {
    let mut allocator = Shards::new(AllocatorConfig::default(), shards);
    for (role, weight, _) in ROLES {
        allocator.set_weight(role, weight).expect("weight");
    }
    for (framework, role) in frameworks() {
        allocator.add_framework(framework, vec![role.to_owned()], vec![]);
    }
    for (id, used) in agents() {
        allocator.add_agent(id, total(), used).expect("agent");
    }
    let offers = if parallel {
        allocator.allocate_parallel(Instant::now())
    } else {
        allocator.allocate(Instant::now())
    };
    assert_eq!(offers.len(), free(), "every free agent is offered once");
    allocator.check_invariants().expect("invariants");
    allocator.check_table().expect("table");
    outcome(&offers)
}

fn threaded(shards: usize) -> Outcome {
    let allocator = ThreadedShards::start(AllocatorConfig::default(), shards).expect("threads");
    for (role, weight, _) in ROLES {
        allocator
            .set_weight(role.to_owned(), weight)
            .expect("running")
            .expect("weight");
    }
    for (framework, role) in frameworks() {
        allocator
            .add_framework(framework, vec![role.to_owned()], vec![])
            .expect("running");
    }
    for (id, used) in agents() {
        allocator
            .add_agent(id, total(), used)
            .expect("running")
            .expect("agent");
    }
    let (offers, errors) = allocator.allocate(Instant::now()).expect("running");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(offers.len(), free(), "every free agent is offered once");
    allocator
        .check_invariants()
        .expect("running")
        .expect("invariants");
    outcome(&offers)
}

/// Checks `got` against `exact` within the bounds of the module docs for `shards`, and
/// prints the differences.
fn within_bound(label: &str, shards: usize, exact: &Outcome, got: &Outcome) {
    let d = step();
    let role_bound = (shards as f64 + 1.0) * d;
    let spread = |shares: &BTreeMap<String, f64>| {
        let max = shares.values().copied().fold(f64::MIN, f64::max);
        let min = shares.values().copied().fold(f64::MAX, f64::min);
        max - min
    };
    assert!(
        spread(&exact.roles) <= d + 1e-12,
        "sequential DRF spread {} > one step {d}",
        spread(&exact.roles)
    );
    assert!(
        spread(&got.roles) <= shards as f64 * d + 1e-12,
        "{label}: spread {} > {shards} steps of {d}",
        spread(&got.roles)
    );
    let mut worst_role = 0.0f64;
    for (role, share) in &exact.roles {
        let diff = (share - got.roles[role]).abs();
        worst_role = worst_role.max(diff);
        assert!(
            diff <= role_bound + 1e-12,
            "{label}: role {role} share {} against {share} exact: {diff} > bound {role_bound}",
            got.roles[role]
        );
    }
    let mut worst_framework = 0.0f64;
    for (role, weight, count) in ROLES {
        let bound = (1.0 + weight / count as f64) * (shards as f64 + 1.0) * d;
        for i in 0..count {
            let id = framework_id(role, i);
            let diff = (exact.frameworks[&id] - got.frameworks[&id]).abs();
            worst_framework = worst_framework.max(diff / bound);
            assert!(
                diff <= bound + 1e-12,
                "{label}: framework {id} differs by {diff} > bound {bound}"
            );
        }
    }
    println!(
        "{label}, {shards} shards: largest role share difference {worst_role:.6} \
         (bound {role_bound:.6} = {} steps of {d:.6}); largest framework difference \
         {:.0}% of its bound",
        shards + 1,
        worst_framework * 100.0
    );
}

#[test]
fn interleaved_shards_stay_within_the_bound_of_sequential_drf() {
    let exact = sequential();
    for shards in [1, 2, 4] {
        within_bound("interleaved", shards, &exact, &with_shards(shards, false));
    }
}

/// As the master runs them: a full cycle on a scoped thread per shard.
#[test]
fn parallel_shards_stay_within_the_bound_of_sequential_drf() {
    let exact = sequential();
    for shards in [2, 4] {
        for _ in 0..3 {
            within_bound("parallel", shards, &exact, &with_shards(shards, true));
        }
    }
}

#[test]
fn threaded_shards_stay_within_the_bound_of_sequential_drf() {
    let exact = sequential();
    for shards in [2, 4] {
        for _ in 0..3 {
            within_bound("threaded", shards, &exact, &threaded(shards));
        }
    }
}
