//! Dynamic reservations: RESERVE_RESOURCES / UNRESERVE_RESOURCES by an operator, RESERVE
//! and UNRESERVE in a framework's ACCEPT, their place in the registry, and what is offered
//! to whom afterwards.

use fleet_proto::messages::scheduler::Filters;

use super::*;
use crate::core::OperatorCall;
use crate::registry::Reservation;

impl Sim {
    fn operate(&mut self, call: OperatorCall) -> (Result<(), String>, Vec<Output>) {
        let result = self.master.operator(call, self.now, &mut self.out);
        (result, std::mem::take(&mut self.out))
    }

    fn reserve(&mut self, agent: &AgentId, resources: &str) -> (Result<(), String>, Vec<Output>) {
        self.operate(OperatorCall::Reserve {
            agent_id: agent.clone(),
            resources: res(resources),
            principal: Some("ops".into()),
        })
    }

    fn reservations(&self, agent: &AgentId) -> Vec<Reservation> {
        self.master
            .registry
            .snapshot()
            .reservations
            .get(agent)
            .cloned()
            .unwrap_or_default()
    }
}

fn offered(offers: &[Offer]) -> Resources {
    offers.iter().map(|o| &o.resources).sum()
}

#[test]
fn an_operator_reservation_is_offered_to_its_role_only_and_kept_in_the_registry() {
    let mut sim = Sim::new();
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (result, _) = sim.reserve(&agent, "cpus(web):2;mem(web):1024");
    assert_eq!(result, Ok(()));
    assert_eq!(
        sim.reservations(&agent),
        vec![Reservation {
            principal: Some("ops".into()),
            resources: res("cpus(web):2;mem(web):1024"),
        }]
    );
    let (bconn, _) = sim.framework("batch", &["batch"], false, 0);
    let batch = offers(&sim.tick(), bconn);
    assert_eq!(offered(&batch), res("cpus:2;mem:3072"), "{batch:?}");
    let (wconn, _) = sim.framework("web", &["web"], false, 0);
    let web = offers(&sim.tick(), wconn);
    assert_eq!(offered(&web), res("cpus(web):2;mem(web):1024"), "{web:?}");
    let state = sim.master.state();
    assert_eq!(
        state.agents[0].total,
        res("cpus:2;mem:3072;cpus(web):2;mem(web):1024")
    );
    assert_eq!(state.agents[0].reservations.len(), 1);

    // A master started on the same registry (a failover) offers them the same way once
    // the agent re-registers.
    let registry = crate::registry::InMemoryRegistry::with_state(sim.master.registry.snapshot());
    let mut next = Sim::with(MasterConfig::default(), Box::new(registry));
    next.register_agent(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        Vec::new(),
    );
    let (bconn, _) = next.framework("batch", &["batch"], false, 0);
    assert_eq!(
        offered(&offers(&next.tick(), bconn)),
        res("cpus:2;mem:3072")
    );
}

#[test]
fn reserving_rescinds_offers_that_hold_the_resources_and_refuses_what_tasks_use() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &["web"], false, 0);
    let offer = offers(&sim.tick(), fconn).remove(0);
    // The whole agent is offered: reserving part of it takes the offer back first.
    let (result, out) = sim.reserve(&agent, "cpus(web):1");
    assert_eq!(result, Ok(()));
    assert_eq!(rescinds(&out, fconn), vec![offer.id]);
    let offer = offers(&sim.tick(), fconn).remove(0);
    assert_eq!(offer.resources, res("cpus:3;mem:4096;cpus(web):1"));
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("t", &agent, "cpus:3;mem:100")]),
    );
    sim.update(aconn, &fw, &agent, &TaskId::from("t"), TaskState::Running);
    let (result, _) = sim.reserve(&agent, "cpus(web):1");
    let err = result.unwrap_err();
    assert!(err.contains("not free on agent"), "{err}");
    let (result, _) = sim.reserve(&agent, "cpus(web):8");
    let err = result.unwrap_err();
    assert!(err.contains("unreserved: not enough"), "{err}");
    let (result, _) = sim.reserve(&agent, "cpus:1");
    assert!(result.unwrap_err().contains("names no role"));
    let (result, _) = sim.reserve(&AgentId::from("A-nope"), "cpus(web):1");
    assert!(result.unwrap_err().contains("unknown agent A-nope"));
    assert_eq!(sim.reservations(&agent).len(), 1);
}

#[test]
fn unreserving_gives_the_resources_back_to_everyone() {
    let mut sim = Sim::new();
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    sim.reserve(&agent, "cpus(web):4;mem(web):4096").0.unwrap();
    let (bconn, _) = sim.framework("batch", &["batch"], false, 0);
    assert!(offers(&sim.tick(), bconn).is_empty());
    let unreserve = |principal: Option<&str>| OperatorCall::Unreserve {
        agent_id: agent.clone(),
        resources: res("cpus(web):4;mem(web):4096"),
        principal: principal.map(str::to_owned),
    };
    let (result, _) = sim.operate(unreserve(Some("someone-else")));
    assert!(
        result.unwrap_err().contains("by principal 'someone-else'"),
        "only the reserving principal's reservations are taken when one is named"
    );
    let (result, _) = sim.operate(unreserve(Some("ops")));
    assert_eq!(result, Ok(()));
    assert!(sim.reservations(&agent).is_empty());
    assert_eq!(offered(&offers(&sim.tick(), bconn)), res("cpus:4;mem:4096"));
    let (result, _) = sim.operate(unreserve(None));
    assert!(result.unwrap_err().contains("not reserved dynamically"));
}

#[test]
fn a_framework_reserves_in_its_accept_and_launches_on_the_reservation() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (wconn, web) = sim.subscribe(FrameworkInfo {
        name: "web".into(),
        roles: vec!["web".into()],
        principal: Some("web-principal".into()),
        ..FrameworkInfo::default()
    });
    let offer = offers(&sim.tick(), wconn).remove(0);
    let out = sim.call(
        wconn,
        Call::Accept {
            offer_ids: vec![offer.id],
            operations: vec![
                Operation::Reserve {
                    resources: res("cpus(web):2;mem(web):512"),
                },
                Operation::Launch {
                    tasks: vec![task("t", &agent, "cpus(web):1;mem(web):256")],
                },
            ],
            filters: Some(Filters {
                refuse_seconds: 0.0,
            }),
        },
    );
    let run = to_agent(&out, aconn);
    assert!(
        matches!(&run[..], [MasterMessage::RunTask { task, .. }] if task.resources == res("cpus(web):1;mem(web):256")),
        "{run:?}"
    );
    assert_eq!(
        sim.reservations(&agent),
        vec![Reservation {
            principal: Some("web-principal".into()),
            resources: res("cpus(web):2;mem(web):512"),
        }]
    );
    // What the task does not use comes back: the rest of the reservation only to web.
    let (bconn, _) = sim.framework("batch", &["batch"], false, 0);
    let out = sim.advance(Duration::from_secs(1));
    assert_eq!(offered(&offers(&out, bconn)), res("cpus:2;mem:3584"));
    assert_eq!(
        offered(&offers(&out, wconn)),
        res("cpus(web):1;mem(web):256")
    );
    // The task ends: its reserved resources stay reserved.
    sim.update(aconn, &web, &agent, &TaskId::from("t"), TaskState::Finished);
    let out = sim.advance(Duration::from_secs(1));
    assert!(offered(&offers(&out, bconn)).all_reserved().is_empty());
    sim.master.allocator.check_invariants().unwrap();
}

#[test]
fn a_framework_unreserves_its_own_reservation_only() {
    let mut sim = Sim::new();
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    sim.reserve(&agent, "cpus(web):1").0.unwrap();
    let (wconn, _) = sim.subscribe(FrameworkInfo {
        name: "web".into(),
        roles: vec!["web".into()],
        principal: Some("web-principal".into()),
        ..FrameworkInfo::default()
    });
    let offer = offers(&sim.tick(), wconn).remove(0);
    assert_eq!(offer.resources, res("cpus:3;mem:4096;cpus(web):1"));
    // Reserved by "ops", not by this framework: the ACCEPT is refused, nothing changes.
    let accept = |offer: OfferId, operations: Vec<Operation>| Call::Accept {
        offer_ids: vec![offer],
        operations,
        filters: Some(Filters {
            refuse_seconds: 0.0,
        }),
    };
    sim.call(
        wconn,
        accept(
            offer.id,
            vec![Operation::Unreserve {
                resources: res("cpus(web):1"),
            }],
        ),
    );
    assert_eq!(sim.reservations(&agent).len(), 1);
    // Its own reservation it may undo, in the same ACCEPT that made it.
    let offer = offers(&sim.advance(Duration::from_secs(1)), wconn).remove(0);
    sim.call(
        wconn,
        accept(
            offer.id,
            vec![
                Operation::Reserve {
                    resources: res("cpus(web):2"),
                },
                Operation::Unreserve {
                    resources: res("cpus(web):1"),
                },
            ],
        ),
    );
    let left = sim.reservations(&agent);
    assert_eq!(
        left,
        vec![
            Reservation {
                principal: Some("ops".into()),
                resources: res("cpus(web):1"),
            },
            Reservation {
                principal: Some("web-principal".into()),
                resources: res("cpus(web):1"),
            },
        ]
    );
    sim.master.allocator.check_invariants().unwrap();
}

#[test]
fn a_reservation_that_no_longer_fits_an_agent_is_dropped_when_it_comes_back() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    sim.reserve(&agent, "cpus(web):3").0.unwrap();
    sim.reserve(&agent, "mem(web):1024").0.unwrap();
    sim.input(Input::AgentDisconnected {
        conn: aconn,
        reason: "restart".into(),
    });
    // Back with 2 cpus: the cpus reservation cannot be kept, the mem one can.
    sim.register_agent(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:2;mem:4096"),
        Vec::new(),
    );
    assert_eq!(
        sim.reservations(&agent),
        vec![Reservation {
            principal: Some("ops".into()),
            resources: res("mem(web):1024"),
        }]
    );
    let (bconn, _) = sim.framework("batch", &["batch"], false, 0);
    assert_eq!(offered(&offers(&sim.tick(), bconn)), res("cpus:2;mem:3072"));
}
