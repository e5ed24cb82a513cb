//! Unit tests of the allocator's semantics, each on a small cluster with a fake clock.

use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::{Resources, Scalar};

use super::*;

pub(super) fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

fn fw(name: &str) -> FrameworkId {
    FrameworkId::from(name)
}

fn agent(name: &str) -> AgentId {
    AgentId::from(name)
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|r| r.to_string()).collect()
}

fn allocator() -> Allocator {
    Allocator::new(AllocatorConfig::default())
}

fn add_agents(a: &mut Allocator, count: usize, text: &str) {
    for i in 0..count {
        a.add_agent(agent(&format!("a{i:03}")), res(text), vec![])
            .unwrap();
    }
}

fn role_share(a: &Allocator, role: &str) -> f64 {
    a.shares()
        .roles
        .get(role)
        .map(|r| r.share)
        .unwrap_or_default()
}

fn framework_share(a: &Allocator, role: &str, framework: &str) -> f64 {
    a.shares()
        .roles
        .get(role)
        .and_then(|r| r.frameworks.get(&fw(framework)).copied())
        .unwrap_or_default()
}

/// Frameworks that launch one task per offer, of a fixed size, and give back the rest with
/// no filter. Returns how many tasks each launched.
fn run_cycles(a: &mut Allocator, tasks: &[(&str, &str)], cycles: usize) -> Vec<usize> {
    let base = Instant::now();
    let mut launched = vec![0; tasks.len()];
    for cycle in 0..cycles {
        let now = base + Duration::from_secs(cycle as u64);
        for offer in a.allocate(now) {
            let i = tasks
                .iter()
                .position(|(name, _)| fw(name) == offer.framework_id)
                .unwrap();
            let unused = match offer.resources.checked_sub(&res(tasks[i].1)) {
                Some(rest) => {
                    launched[i] += 1;
                    rest
                }
                None => offer.resources.clone(),
            };
            a.recover(&offer.framework_id, &offer.agent_id, &unused)
                .unwrap();
            a.check_invariants().unwrap();
        }
    }
    launched
}

#[test]
fn two_frameworks_converge_to_equal_dominant_shares() {
    // The DRF paper's example, scaled: A's tasks are memory-heavy, B's cpu-heavy.
    for (role_a, role_b) in [("*", "*"), ("a", "b")] {
        let mut a = allocator();
        add_agents(&mut a, 30, "cpus:9;mem:18432");
        a.add_framework(fw("A"), roles(&[role_a]), vec![]);
        a.add_framework(fw("B"), roles(&[role_b]), vec![]);
        let launched = run_cycles(
            &mut a,
            &[("A", "cpus:1;mem:4096"), ("B", "cpus:3;mem:1024")],
            40,
        );
        let (share_a, share_b) = if role_a == role_b {
            (framework_share(&a, "*", "A"), framework_share(&a, "*", "B"))
        } else {
            (role_share(&a, "a"), role_share(&a, "b"))
        };
        assert!(launched[0] > 0 && launched[1] > 0, "{launched:?}");
        // A task is at most 3/270 cpus or 4096/552960 mem: shares end within a few tasks.
        assert!(
            (share_a - share_b).abs() < 0.05,
            "roles {role_a},{role_b}: {share_a} vs {share_b}"
        );
        assert!(share_a > 0.5, "cluster left idle: {share_a}");
    }
}

#[test]
fn weights_scale_shares() {
    let mut a = allocator();
    add_agents(&mut a, 40, "cpus:4;mem:4096");
    a.set_weight("heavy", 3.0).unwrap();
    a.add_framework(fw("L"), roles(&["light"]), vec![]);
    a.add_framework(fw("H"), roles(&["heavy"]), vec![]);
    let launched = run_cycles(
        &mut a,
        &[("L", "cpus:1;mem:1024"), ("H", "cpus:1;mem:1024")],
        60,
    );
    // All 160 cpus are used; DRF with weight 3 splits them 1:3.
    assert_eq!(launched.iter().sum::<usize>(), 160);
    let ratio = launched[1] as f64 / launched[0] as f64;
    assert!((2.7..=3.3).contains(&ratio), "{launched:?}");
    let shares = a.shares();
    assert_eq!(shares.roles["heavy"].weight, 3.0);
    assert!((shares.roles["heavy"].share - shares.roles["light"].share).abs() < 0.05);
    assert!(a.set_weight("x", 0.0).is_err());
    assert!(a.set_weight("x", f64::NAN).is_err());
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut a = allocator();
    let now = Instant::now();
    a.add_agent(
        agent("a"),
        res("cpus(eng):2;mem(eng):1024;cpus:2;mem:1024"),
        vec![],
    )
    .unwrap();
    a.add_framework(fw("E"), roles(&["eng"]), roles(&["eng"]));
    a.add_framework(fw("O"), roles(&["ops"]), vec![]);
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, fw("O"));
    assert_eq!(offers[0].resources, res("cpus:2;mem:1024"));
    // A sub-role may use its parent's reservation.
    a.add_framework(fw("F"), roles(&["eng/frontend"]), vec![]);
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, fw("F"));
    assert_eq!(offers[0].resources, res("cpus(eng):2;mem(eng):1024"));
    a.recover(&fw("F"), &agent("a"), &offers[0].resources)
        .unwrap();
    a.remove_framework(&fw("F"));
    a.revive(&fw("E"), None);
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        (offers[0].framework_id.clone(), offers[0].role.as_str()),
        (fw("E"), "eng")
    );
    assert_eq!(offers[0].resources, res("cpus(eng):2;mem(eng):1024"));
    // With the whole agent free, the reserving role's framework gets both parts at once.
    a.remove_framework(&fw("O"));
    a.recover(&fw("E"), &agent("a"), &offers[0].resources)
        .unwrap();
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        offers[0].resources,
        res("cpus(eng):2;mem(eng):1024;cpus:2;mem:1024")
    );
}

#[test]
fn declined_resources_skip_the_decliner_until_the_filter_expires() {
    let mut a = allocator();
    let base = Instant::now();
    let at = |s: u64| base + Duration::from_secs(s);
    a.add_agent(agent("a"), res("cpus:4;mem:4096"), vec![])
        .unwrap();
    a.add_framework(fw("A"), roles(&["r"]), vec![]);
    a.add_framework(fw("B"), roles(&["r"]), vec![]);
    let offer = a.allocate(at(0)).remove(0);
    assert_eq!(offer.framework_id, fw("A"));
    a.decline(&fw("A"), &agent("a"), &offer.resources, None, at(0));
    a.recover(&fw("A"), &agent("a"), &offer.resources).unwrap();
    for s in 1..5 {
        let offers = a.allocate(at(s));
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].framework_id, fw("B"), "second {s}");
        a.recover(&fw("B"), &agent("a"), &offers[0].resources)
            .unwrap();
    }
    // Default refusal is 5 s; then A (fewer allocations than B) comes first again.
    let offers = a.allocate(at(5));
    assert_eq!(offers[0].framework_id, fw("A"));
    a.recover(&fw("A"), &agent("a"), &offers[0].resources)
        .unwrap();

    // A lone framework: a refusal shorter than the interval lasts the interval.
    a.remove_framework(&fw("B"));
    a.decline(
        &fw("A"),
        &agent("a"),
        &res("cpus:4;mem:4096"),
        Some(Duration::from_millis(1)),
        at(10),
    );
    assert!(a.allocate(at(10) + Duration::from_millis(500)).is_empty());
    assert_eq!(a.allocate(at(11)).len(), 1);
    a.recover(&fw("A"), &agent("a"), &res("cpus:4;mem:4096"))
        .unwrap();

    // A filter hides only offers it covers: more free resources show the agent again.
    a.decline(&fw("A"), &agent("a"), &res("cpus:2;mem:2048"), None, at(20));
    a.track(&fw("X"), UNKNOWN_ROLE, &agent("a"), &res("cpus:2;mem:2048"));
    assert!(a.allocate(at(21)).is_empty());
    a.recover(&fw("X"), &agent("a"), &res("cpus:2;mem:2048"))
        .unwrap();
    assert_eq!(a.allocate(at(21)).len(), 1);

    // A zero refusal sets no filter.
    a.recover(&fw("A"), &agent("a"), &res("cpus:4;mem:4096"))
        .unwrap();
    a.decline(
        &fw("A"),
        &agent("a"),
        &res("cpus:4;mem:4096"),
        Some(Duration::ZERO),
        at(30),
    );
    assert_eq!(a.allocate(at(30)).len(), 1);
}

#[test]
fn revive_clears_filters() {
    let mut a = allocator();
    let now = Instant::now();
    a.add_agent(agent("a"), res("cpus:4;mem:4096"), vec![])
        .unwrap();
    a.add_framework(fw("A"), roles(&["r"]), vec![]);
    let offer = a.allocate(now).remove(0);
    a.decline(
        &fw("A"),
        &agent("a"),
        &offer.resources,
        Some(Duration::from_secs(3600)),
        now,
    );
    a.recover(&fw("A"), &agent("a"), &offer.resources).unwrap();
    assert!(a.allocate(now + Duration::from_secs(60)).is_empty());
    a.revive(&fw("A"), Some(&roles(&["r"])));
    assert_eq!(a.allocate(now + Duration::from_secs(61)).len(), 1);
}

#[test]
fn suppressed_frameworks_get_nothing() {
    let mut a = allocator();
    let now = Instant::now();
    add_agents(&mut a, 3, "cpus:4;mem:4096");
    a.add_framework(fw("A"), roles(&["x", "y"]), roles(&["x"]));
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 3);
    assert!(offers.iter().all(|o| o.role == "y"));
    for o in &offers {
        a.recover(&o.framework_id, &o.agent_id, &o.resources)
            .unwrap();
    }
    a.suppress(&fw("A"), None);
    assert!(a.allocate(now).is_empty());
    a.revive(&fw("A"), Some(&roles(&["x"])));
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 3);
    assert!(offers.iter().all(|o| o.role == "x"));
}

#[test]
fn min_allocatable_and_agents_without_cpus_or_mem() {
    let mut a = allocator();
    let now = Instant::now();
    a.add_agent(agent("tiny"), res("cpus:0.005;mem:16"), vec![])
        .unwrap();
    a.add_agent(agent("cpu"), res("cpus:0.01"), vec![]).unwrap();
    a.add_agent(agent("mem"), res("mem:32"), vec![]).unwrap();
    a.add_framework(fw("A"), vec![], vec![]);
    let mut offered: Vec<String> = a.allocate(now).into_iter().map(|o| o.agent_id.0).collect();
    offered.sort();
    assert_eq!(offered, ["cpu", "mem"]);

    // What is left after a task falls below the minimum: no offer.
    a.add_agent(
        agent("big"),
        res("cpus:1;mem:64"),
        vec![(fw("A"), res("cpus:0.995;mem:40"))],
    )
    .unwrap();
    assert!(a.allocate(now).is_empty());

    // No cpus and no mem: never offered, even with no minimum at all.
    let mut a = Allocator::new(AllocatorConfig {
        min_allocatable_cpus: Scalar::ZERO,
        min_allocatable_mem_mb: Scalar::ZERO,
        ..AllocatorConfig::default()
    });
    a.add_agent(agent("disk"), res("disk:1000;ports:[1000-2000]"), vec![])
        .unwrap();
    a.add_framework(fw("A"), vec![], vec![]);
    assert!(a.allocate(now).is_empty());
}

#[test]
fn remove_agent_forgets_its_allocation() {
    let mut a = allocator();
    let now = Instant::now();
    add_agents(&mut a, 2, "cpus:4;mem:4096");
    a.add_framework(fw("A"), roles(&["r"]), vec![]);
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 2);
    assert!((role_share(&a, "r") - 1.0).abs() < 1e-9);
    a.remove_agent(&agent("a000"));
    assert_eq!(a.agent_count(), 1);
    assert!((role_share(&a, "r") - 1.0).abs() < 1e-9);
    a.remove_agent(&agent("a001"));
    assert_eq!(role_share(&a, "r"), 0.0);
    assert_eq!(a.allocated_to(&fw("A")), Resources::new());
    // Late recovery of an offer on a removed agent is harmless.
    a.recover(&fw("A"), &agent("a000"), &offers[0].resources)
        .unwrap();
}

#[test]
fn agent_used_by_unknown_framework_is_charged_when_it_subscribes() {
    let mut a = allocator();
    let now = Instant::now();
    let used = vec![(fw("old"), res("cpus(eng):1;cpus:1;mem:1024"))];
    a.add_agent(agent("a"), res("cpus(eng):1;cpus:3;mem:4096"), used)
        .unwrap();
    assert!(a.shares().roles.is_empty());
    a.add_framework(fw("old"), roles(&["web", "eng"]), roles(&["web", "eng"]));
    assert!((framework_share(&a, "eng", "old") - 0.5).abs() < 1e-9);
    assert_eq!(a.available_on(&agent("a")), Some(res("cpus:2;mem:3072")));
    a.check_invariants().unwrap();
    a.remove_framework(&fw("old"));
    assert_eq!(
        a.available_on(&agent("a")),
        Some(res("cpus(eng):1;cpus:3;mem:4096"))
    );
    let too_much = vec![(fw("x"), res("cpus:5"))];
    assert!(matches!(
        a.add_agent(agent("b"), res("cpus:4;mem:1"), too_much),
        Err(AllocatorError::UsedExceedsTotal { .. })
    ));
    assert_eq!(a.agent_count(), 1);
    assert!(a.allocate(now).is_empty());
}

#[test]
fn inactive_agents_and_frameworks_get_no_offers() {
    let mut a = allocator();
    let now = Instant::now();
    add_agents(&mut a, 1, "cpus:4;mem:4096");
    a.add_framework(fw("A"), vec![], vec![]);
    a.deactivate_agent(&agent("a000"));
    assert!(a.allocate(now).is_empty());
    a.activate_agent(&agent("a000"));
    a.deactivate_framework(&fw("A"));
    assert!(a.allocate(now).is_empty());
    a.activate_framework(&fw("A"));
    assert_eq!(
        a.allocate_agents(&[agent("a000"), agent("a000"), agent("nope")], now)
            .len(),
        1
    );
}

#[test]
fn recover_across_roles_and_errors() {
    let mut a = allocator();
    let now = Instant::now();
    a.add_agent(agent("a"), res("cpus(x):1;cpus:3;mem:4096"), vec![])
        .unwrap();
    a.add_framework(fw("A"), roles(&["x", "y"]), roles(&["x"]));
    let first = a.allocate(now).remove(0);
    assert_eq!(first.resources, res("cpus:3;mem:4096"));
    a.revive(&fw("A"), None);
    let second = a.allocate(now).remove(0);
    assert_eq!(
        (second.role.as_str(), second.resources.clone()),
        ("x", res("cpus(x):1"))
    );
    // One merged offer's worth, spanning both roles, comes back in one call.
    let err = a
        .recover(&fw("A"), &agent("a"), &res("cpus:4"))
        .unwrap_err();
    assert!(err.to_string().contains("cannot recover"), "{err}");
    a.recover(&fw("A"), &agent("a"), &res("cpus(x):1;cpus:3;mem:4096"))
        .unwrap();
    assert_eq!(a.allocated_on(&agent("a")), Some(&Resources::new()));
    assert!(a.shares().roles.values().all(|r| r.share == 0.0));
}

/// An agent everyone refused is skipped by later cycles, and looked at again as soon as
/// anything could change that: a filter expires, a framework subscribes, comes back or
/// revives, or resources come back to the agent.
#[test]
fn an_agent_nobody_takes_is_skipped_until_something_changes() {
    let base = Instant::now();
    let mut a = allocator();
    add_agents(&mut a, 1, "cpus:4;mem:4096");
    a.add_framework(fw("f"), roles(&["r"]), vec![]);
    let decline_all = |a: &mut Allocator, offers: Vec<Allocation>, refuse: u64, now| {
        for o in offers {
            a.decline(
                &o.framework_id,
                &o.agent_id,
                &o.resources,
                Some(Duration::from_secs(refuse)),
                now,
            );
            a.recover(&o.framework_id, &o.agent_id, &o.resources)
                .unwrap();
        }
    };
    let offers = a.allocate(base);
    assert_eq!(offers.len(), 1);
    decline_all(&mut a, offers, 10, base);
    // Refused: nothing, now and in later cycles (the agent is idle).
    for s in 1..5 {
        assert!(a.allocate(base + Duration::from_secs(s)).is_empty());
    }
    // The filter expires: offered again.
    let offers = a.allocate(base + Duration::from_secs(10));
    assert_eq!(offers.len(), 1, "not re-offered after the filter expired");
    decline_all(&mut a, offers, 1000, base + Duration::from_secs(10));
    assert!(a.allocate(base + Duration::from_secs(11)).is_empty());

    // A new framework subscribes: it gets the agent.
    a.add_framework(fw("g"), roles(&["r"]), vec![]);
    let offers = a.allocate(base + Duration::from_secs(12));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, fw("g"));
    decline_all(&mut a, offers, 1000, base + Duration::from_secs(12));
    assert!(a.allocate(base + Duration::from_secs(13)).is_empty());

    // Revive clears f's filter.
    a.revive(&fw("f"), None);
    let offers = a.allocate(base + Duration::from_secs(14));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, fw("f"));
    decline_all(&mut a, offers, 1000, base + Duration::from_secs(14));
    assert!(a.allocate(base + Duration::from_secs(15)).is_empty());

    // Resources coming back to the agent make it worth a look: filters hide an offer only
    // while they cover all of it. Take part of the agent, then give it back.
    a.add_framework(fw("h"), roles(&["r"]), vec![]);
    let offers = a.allocate(base + Duration::from_secs(16));
    assert_eq!(offers.len(), 1);
    let taken = offers[0].resources.clone();
    assert!(a.allocate(base + Duration::from_secs(17)).is_empty());
    a.recover(&fw("h"), &agent("a000"), &taken).unwrap();
    let offers = a.allocate(base + Duration::from_secs(18));
    assert_eq!(offers.len(), 1, "recovered resources not offered again");
    assert_eq!(offers[0].framework_id, fw("h"));
    a.check_invariants().unwrap();
}

/// Hierarchical roles: `eng/a` and `eng/b` share what `eng` gets, and `eng` competes with
/// `ops` on its whole subtree, so `ops` ends with half the agents, not a third.
#[test]
fn sub_roles_share_their_parent_s_part() {
    for shards in [1, 2] {
        let mut s = sharded::Shards::new(AllocatorConfig::default(), shards);
        for i in 0..12 {
            s.add_agent(agent(&format!("a{i:03}")), res("cpus:4;mem:4096"), vec![])
                .unwrap();
        }
        s.add_framework(fw("fa"), roles(&["eng/a"]), vec![]);
        s.add_framework(fw("fb"), roles(&["eng/b"]), vec![]);
        s.add_framework(fw("fo"), roles(&["ops"]), vec![]);
        let offers = s.allocate(Instant::now());
        assert_eq!(offers.len(), 12);
        let count = |role: &str| offers.iter().filter(|o| o.role == role).count();
        assert_eq!(
            (count("ops"), count("eng/a"), count("eng/b")),
            (6, 3, 3),
            "{shards} shards"
        );
    }
    // One allocator, without shards: the same.
    let mut a = allocator();
    add_agents(&mut a, 12, "cpus:4;mem:4096");
    a.add_framework(fw("fa"), roles(&["eng/a"]), vec![]);
    a.add_framework(fw("fb"), roles(&["eng/b"]), vec![]);
    a.add_framework(fw("fo"), roles(&["ops"]), vec![]);
    let offers = a.allocate(Instant::now());
    let ops = offers.iter().filter(|o| o.role == "ops").count();
    assert_eq!(ops, 6);
}
