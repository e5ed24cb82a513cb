//! The offer cycle: offer, launch, status updates and acknowledgements, resources back;
//! invalid ACCEPTs; DECLINE filters.

use std::time::Duration;

use fleet_proto::ids::{OfferId, TaskId};
use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::messages::scheduler::{Call, Filters};
use fleet_proto::task::{Reason, TaskState};

use super::*;

#[test]
fn offer_launch_update_ack_and_reoffer() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 0);
    let out = sim.tick();
    let offered = offers(&out, fconn);
    assert_eq!(offered.len(), 1, "{out:?}");
    assert_eq!(offered[0].resources, res("cpus:4;mem:4096"));
    assert_eq!(offered[0].agent_id, agent);
    assert_eq!(offered[0].hostname, "h1");

    let out = sim.call(
        fconn,
        launch(
            vec![offered[0].id],
            vec![task("t1", &agent, "cpus:1;mem:512")],
        ),
    );
    let msgs = to_agent(&out, aconn);
    assert!(
        matches!(&msgs[..], [MasterMessage::RunTask { task, framework }] if task.task_id.as_str() == "t1" && framework.id == fw),
        "{out:?}"
    );
    let state = sim.master.state();
    assert_eq!(state.tasks[0].state, TaskState::Staging);
    assert_eq!(state.agents[0].used, res("cpus:1;mem:512"));
    assert_eq!(state.counters.tasks_launched, 1);

    let t1 = TaskId::from("t1");
    let (out, uuid) = sim.update(aconn, &fw, &agent, &t1, TaskState::Running);
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].state, TaskState::Running);
    assert_eq!(ups[0].uuid, Some(uuid));
    let out = sim.call(
        fconn,
        Call::Acknowledge {
            agent_id: agent.clone(),
            task_id: t1.clone(),
            uuid,
        },
    );
    assert!(
        matches!(&to_agent(&out, aconn)[..], [MasterMessage::AcknowledgeUpdate { uuid: u, .. }] if *u == uuid)
    );

    // The rest of the offer was refused for the default 5 s: nothing offered meanwhile.
    let out = sim.advance(Duration::from_secs(1));
    assert!(offers(&out, fconn).is_empty(), "{out:?}");

    let (out, uuid) = sim.update(aconn, &fw, &agent, &t1, TaskState::Finished);
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Finished);
    // The task's resources are back: the whole agent is offered at the next tick.
    let out = sim.tick();
    let offered = offers(&out, fconn);
    assert_eq!(offered.len(), 1, "{out:?}");
    assert_eq!(offered[0].resources, res("cpus:4;mem:4096"));
    assert_eq!(
        sim.master.state().tasks.len(),
        1,
        "terminal task kept until acknowledged"
    );
    let out = sim.call(
        fconn,
        Call::Acknowledge {
            agent_id: agent.clone(),
            task_id: t1,
            uuid,
        },
    );
    assert_eq!(to_agent(&out, aconn).len(), 1);
    let state = sim.master.state();
    assert!(state.tasks.is_empty());
    assert_eq!(state.completed_tasks[0].state, TaskState::Finished);
    assert_eq!(
        state.completed_tasks[0].sandbox.as_deref(),
        Some("/sandbox")
    );
}

/// Sends `call`, expects one TASK_ERROR per task with `reason` and a message containing
/// `needle`, and then the whole agent offered again.
fn expect_task_error(
    sim: &mut Sim,
    fconn: ConnId,
    call: Call,
    tasks: usize,
    reason: Reason,
    needle: &str,
) {
    let out = sim.call(fconn, call);
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), tasks, "{out:?}");
    for up in &ups {
        assert_eq!(up.state, TaskState::Error);
        assert_eq!(up.reason, Some(reason));
        assert!(
            up.message.contains(needle),
            "'{}' lacks '{needle}'",
            up.message
        );
        assert_eq!(up.uuid, None);
    }
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::ToAgent {
            msg: MasterMessage::RunTask { .. },
            ..
        }
    )));
}

#[test]
fn invalid_accepts_launch_nothing_and_resources_come_back() {
    let config = MasterConfig {
        offer_timeout: Some(Duration::from_secs(10)),
        ..MasterConfig::default()
    };
    let mut sim = Sim::with(config, Box::new(InMemoryRegistry::new()));
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, _fw) = sim.framework("f", &[], false, 0);
    let full = res("cpus:4;mem:4096");

    // Too many resources.
    let offer = offers(&sim.tick(), fconn).remove(0);
    let call = launch(
        vec![offer.id],
        vec![
            task("big", &agent, "cpus:3;mem:100"),
            task("b2", &agent, "cpus:2;mem:100"),
        ],
    );
    expect_task_error(
        &mut sim,
        fconn,
        call,
        2,
        Reason::TaskInvalid,
        "more than the offers hold",
    );
    let offer = offers(&sim.tick(), fconn).remove(0);
    assert_eq!(offer.resources, full);

    // Unknown offer id (the real offer named beside it goes back too).
    let bogus = OfferId { shard: 0, seq: 999 };
    let call = launch(
        vec![offer.id, bogus],
        vec![task("t", &agent, "cpus:1;mem:100")],
    );
    expect_task_error(
        &mut sim,
        fconn,
        call,
        1,
        Reason::InvalidOffers,
        "offer O0-999 is unknown or expired",
    );
    let offer = offers(&sim.tick(), fconn).remove(0);
    assert_eq!(offer.resources, full);

    // Expired offer: rescinded by the timeout, then accepted.
    let out = sim.advance(Duration::from_secs(10));
    assert_eq!(rescinds(&out, fconn), vec![offer.id]);
    let mut again = offers(&out, fconn);
    let call = launch(vec![offer.id], vec![task("t", &agent, "cpus:1;mem:100")]);
    expect_task_error(
        &mut sim,
        fconn,
        call,
        1,
        Reason::InvalidOffers,
        &format!("offer {} is unknown or expired", offer.id),
    );
    if again.is_empty() {
        again = sim.offers_within(fconn, 2);
    }
    let offer = again.remove(0);
    assert_eq!(offer.resources, full);

    // Duplicate task id within one ACCEPT.
    let call = launch(
        vec![offer.id],
        vec![
            task("d", &agent, "cpus:1;mem:100"),
            task("d", &agent, "cpus:1;mem:100"),
        ],
    );
    expect_task_error(
        &mut sim,
        fconn,
        call,
        2,
        Reason::TaskInvalid,
        "task id d appears twice",
    );
    let offer = offers(&sim.tick(), fconn).remove(0);

    // A task id already in use.
    let out = sim.call(
        fconn,
        launch(vec![offer.id], vec![task("used", &agent, "cpus:1;mem:100")]),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let offer = sim.offers_within(fconn, 10).remove(0);
    assert_eq!(offer.resources, res("cpus:3;mem:3996"));
    let call = launch(vec![offer.id], vec![task("used", &agent, "cpus:1;mem:100")]);
    expect_task_error(
        &mut sim,
        fconn,
        call,
        1,
        Reason::TaskInvalid,
        "task id used is already in use",
    );
    let offer = offers(&sim.tick(), fconn).remove(0);
    assert_eq!(offer.resources, res("cpus:3;mem:3996"));

    // A task naming another agent.
    let other = fleet_proto::ids::AgentId::from("A-other");
    let call = launch(vec![offer.id], vec![task("x", &other, "cpus:1;mem:100")]);
    expect_task_error(
        &mut sim,
        fconn,
        call,
        1,
        Reason::TaskInvalid,
        "names agent A-other",
    );
    assert_eq!(sim.master.state().counters.tasks_invalid, 8);
}

#[test]
fn decline_filter_is_honoured_then_expires() {
    let mut sim = Sim::new();
    let (_aconn, _agent) = sim.agent("h1", "cpus:2;mem:2048");
    let (fconn, _fw) = sim.framework("f", &[], false, 0);
    let offer = offers(&sim.tick(), fconn).remove(0);
    let out = sim.call(
        fconn,
        Call::Decline {
            offer_ids: vec![offer.id],
            filters: Some(Filters {
                refuse_seconds: 10.0,
            }),
        },
    );
    assert!(out.is_empty());
    for second in 1..10 {
        let out = sim.advance(Duration::from_secs(1));
        assert!(
            offers(&out, fconn).is_empty(),
            "offered again after {second}s: {out:?}"
        );
    }
    let out = sim.advance(Duration::from_secs(1));
    assert_eq!(offers(&out, fconn).len(), 1, "not offered again after 10s");

    // Without filters the default refusal (5 s) applies; REVIVE clears it at once.
    let offer = offers(&out, fconn).remove(0);
    sim.call(
        fconn,
        Call::Decline {
            offer_ids: vec![offer.id],
            filters: None,
        },
    );
    assert!(offers(&sim.advance(Duration::from_secs(2)), fconn).is_empty());
    sim.call(fconn, Call::Revive { roles: vec![] });
    assert_eq!(offers(&sim.tick(), fconn).len(), 1);
}

#[test]
fn suppress_stops_offers_until_revive() {
    let mut sim = Sim::new();
    sim.agent("h1", "cpus:2;mem:2048");
    let (fconn, _fw) = sim.framework("f", &["eng"], false, 0);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(fconn, Call::Suppress { roles: vec![] });
    sim.call(
        fconn,
        Call::Decline {
            offer_ids: vec![offer.id],
            filters: Some(Filters {
                refuse_seconds: 0.0,
            }),
        },
    );
    for _ in 0..5 {
        assert!(offers(&sim.advance(Duration::from_secs(1)), fconn).is_empty());
    }
    sim.call(
        fconn,
        Call::Revive {
            roles: vec!["eng".into()],
        },
    );
    let offered = offers(&sim.tick(), fconn);
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].role, "eng");
}

/// A framework in two roles holds unreserved resources of one agent in both; when the
/// task launched in one role ends, that role is credited, not the other one.
#[test]
fn a_multi_role_framework_gets_back_what_each_role_was_charged() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:2;mem:2048");
    let (fconn, fw) = sim.framework("f", &["a", "b"], false, 0);
    let mut launched = Vec::new();
    for name in ["t1", "t2"] {
        let offer = sim
            .offers_within(fconn, 3)
            .into_iter()
            .next()
            .expect("an offer");
        sim.call(
            fconn,
            Call::Accept {
                offer_ids: vec![offer.id],
                operations: vec![Operation::Launch {
                    tasks: vec![task(name, &agent, "cpus:1;mem:512")],
                }],
                filters: Some(Filters {
                    refuse_seconds: 0.0,
                }),
            },
        );
        sim.update(aconn, &fw, &agent, &TaskId::from(name), TaskState::Running);
        launched.push((name, offer.role));
    }
    let roles: Vec<&str> = launched.iter().map(|(_, r)| r.as_str()).collect();
    assert!(roles.contains(&"a") && roles.contains(&"b"), "{launched:?}");
    let (in_b, _) = launched.iter().find(|(_, r)| r == "b").unwrap();
    sim.update(
        aconn,
        &fw,
        &agent,
        &TaskId::from(*in_b),
        TaskState::Finished,
    );
    let shares = sim.master.allocator.shares();
    let share = |role: &str| shares.roles.get(role).map_or(0.0, |r| r.share);
    assert_eq!(share("b"), 0.0, "{shares:?}");
    assert!(
        share("a") > 0.0,
        "role a was credited role b's task: {shares:?}"
    );
}
