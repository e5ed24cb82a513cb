//! A cluster in memory: 10,000 agents and 50 frameworks running many allocation cycles,
//! launching, finishing and declining, with the books checked as they go.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use fleet_proto::ids::AgentId;
use fleet_proto::messages::scheduler::{Call, Filters};

use super::*;

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 50;
const CYCLES: u64 = 6;

/// Every agent's offers plus live tasks fit in its total; every offer is on the books of
/// its agent and its framework; the allocator agrees with itself.
fn check_invariants(master: &Master) {
    for (id, agent) in &master.agents {
        let mut held = Resources::new();
        for offer_id in &agent.offers {
            let record = &master.offers[offer_id];
            assert_eq!(&record.offer.agent_id, id);
            assert!(
                master.frameworks[&record.offer.framework_id]
                    .offers
                    .contains(offer_id)
            );
            held.add(record.resources());
        }
        for (fw, task) in &agent.tasks {
            let task = &master.frameworks[fw].tasks[task];
            if !task.recovered {
                held.add(&task.info.resources);
            }
        }
        assert!(
            agent.info.resources.contains(&held),
            "agent {id} over-offered: {held} of {}",
            agent.info.resources
        );
    }
    let booked: usize = master.agents.values().map(|a| a.offers.len()).sum();
    assert_eq!(booked, master.offers.len());
    master.allocator.check_invariants().unwrap();
}

#[test]
fn ten_thousand_agents_fifty_frameworks() {
    simulate(1);
}

/// The same with the allocator in two shards, full cycles running them in parallel.
#[test]
fn ten_thousand_agents_fifty_frameworks_two_allocator_shards() {
    simulate(2);
}

fn simulate(shards: usize) {
    let started = std::time::Instant::now();
    let config = MasterConfig {
        allocator_shards: shards,
        ..MasterConfig::default()
    };
    let mut sim = Sim::with(config, Box::new(InMemoryRegistry::new()));
    let mut agent_conns: HashMap<AgentId, ConnId> = HashMap::new();
    for i in 0..AGENTS {
        let (conn, id) = sim.agent(&format!("host{i}"), "cpus:8;mem:16384");
        agent_conns.insert(id, conn);
    }
    let roles = ["a", "b", "c", "d", "e"];
    let mut frameworks: Vec<(ConnId, FrameworkId)> = Vec::new();
    for i in 0..FRAMEWORKS {
        frameworks.push(sim.framework(&format!("fw{i}"), &[roles[i % roles.len()]], false, 0));
    }
    let template = task("template", &AgentId::from("A"), "cpus:2;mem:4096");
    let mut seen_offers: BTreeSet<OfferId> = BTreeSet::new();
    // (finish at cycle, agent, framework, task)
    let mut running: Vec<(u64, AgentId, FrameworkId, TaskId)> = Vec::new();
    let mut launched = vec![0u64; FRAMEWORKS];
    let mut offered = vec![0u64; FRAMEWORKS];
    let mut next_task = 0u64;
    for cycle in 0..CYCLES {
        let out = sim.advance(Duration::from_secs(1));
        for (index, (conn, fw)) in frameworks.iter().enumerate() {
            let offers = offers(&out, *conn);
            offered[index] += offers.len() as u64;
            let mut declined = Vec::new();
            for offer in offers {
                assert!(
                    seen_offers.insert(offer.id),
                    "offer {} sent twice",
                    offer.id
                );
                assert_eq!(&offer.framework_id, fw);
                next_task += 1;
                // Decline one offer in five; put 1 or 2 tasks on the others.
                let fits = (offer.resources.cpus().milli() / 2000) as u64;
                if next_task.is_multiple_of(5) || fits == 0 {
                    declined.push(offer.id);
                    continue;
                }
                let mut tasks = Vec::new();
                for k in 0..fits.min(1 + next_task % 2) {
                    let id = format!("t{next_task}-{k}");
                    let mut info = template.clone();
                    info.task_id = TaskId::from(id.as_str());
                    info.agent_id = offer.agent_id.clone();
                    running.push((
                        cycle + 2 + (next_task + k) % 3,
                        offer.agent_id.clone(),
                        fw.clone(),
                        info.task_id.clone(),
                    ));
                    tasks.push(info);
                    launched[index] += 1;
                }
                sim.call(*conn, launch(vec![offer.id], tasks));
            }
            if !declined.is_empty() {
                sim.call(
                    *conn,
                    Call::Decline {
                        offer_ids: declined,
                        filters: Some(Filters {
                            refuse_seconds: 2.0,
                        }),
                    },
                );
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = running.into_iter().partition(|(at, ..)| *at <= cycle);
        running = later;
        for (_, agent, fw, task_id) in due {
            let conn = agent_conns[&agent];
            let (out, uuid) = sim.update(conn, &fw, &agent, &task_id, TaskState::Finished);
            let fconn = frameworks.iter().find(|(_, f)| *f == fw).unwrap().0;
            assert_eq!(updates(&out, fconn).len(), 1);
            sim.call(
                fconn,
                Call::Acknowledge {
                    agent_id: agent,
                    task_id,
                    uuid,
                },
            );
        }
        if cycle == CYCLES / 2 {
            check_invariants(&sim.master);
        }
    }
    check_invariants(&sim.master);
    let state = sim.master.state();
    assert_eq!(state.agents.len(), AGENTS);
    assert!(state.counters.tasks_launched > 0);
    assert_eq!(state.counters.tasks_invalid, 0);
    // Nobody starves: every framework was offered and launched.
    assert!(
        offered.iter().all(|n| *n > 0),
        "offers per framework: {offered:?}"
    );
    assert!(
        launched.iter().all(|n| *n > 0),
        "launches per framework: {launched:?}"
    );
    let elapsed = started.elapsed();
    eprintln!(
        "{AGENTS} agents, {FRAMEWORKS} frameworks, {CYCLES} cycles, {shards} allocator shards: {} offers, {} launches in {elapsed:?}",
        state.counters.offers_sent, state.counters.tasks_launched
    );
    // Timing belongs to bench/; this bound only catches a pathological slowdown.
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
