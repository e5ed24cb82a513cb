//! Frameworks: calls before SUBSCRIBE, reconciliation, KILL, TEARDOWN, failover, DRF
//! sharing of one agent, heartbeats.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::messages::scheduler::{Filters, ReconcileTask};
use fleet_proto::task::Reason;

use super::*;

#[test]
fn calls_before_subscribe_are_rejected() {
    let mut sim = Sim::new();
    let conn = sim.conn();
    sim.input(Input::FrameworkConnected {
        conn,
        peer: "sim".into(),
    });
    let out = sim.call(conn, Call::Revive { roles: vec![] });
    let events = to_framework(&out, conn);
    assert!(
        matches!(&events[..], [Event::Error { fatal: true, message }] if message.starts_with("REVIVE before SUBSCRIBE")),
        "{out:?}"
    );
    assert!(closed(&out, conn));
    assert_eq!(sim.master.state().counters.calls_rejected, 1);
    // The shell's later disconnect for it is ignored.
    assert!(
        sim.input(Input::FrameworkDisconnected {
            conn,
            reason: "closed".into()
        })
        .is_empty()
    );
}

#[test]
fn reconcile_implicit_and_explicit() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 0);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(
            vec![offer.id],
            vec![
                task("a", &agent, "cpus:1;mem:100"),
                task("b", &agent, "cpus:1;mem:100"),
            ],
        ),
    );
    sim.update(aconn, &fw, &agent, &TaskId::from("a"), TaskState::Running);

    let out = sim.call(fconn, Call::Reconcile { tasks: vec![] });
    let mut ups = updates(&out, fconn);
    ups.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(ups.len(), 2);
    assert_eq!(
        (ups[0].state, ups[1].state),
        (TaskState::Running, TaskState::Staging)
    );
    assert!(
        ups.iter()
            .all(|u| u.reason == Some(Reason::Reconciliation) && u.uuid.is_none())
    );

    let out = sim.call(
        fconn,
        Call::Reconcile {
            tasks: vec![
                ReconcileTask {
                    task_id: TaskId::from("a"),
                    agent_id: Some(agent.clone()),
                },
                ReconcileTask {
                    task_id: TaskId::from("nope"),
                    agent_id: Some(agent.clone()),
                },
                ReconcileTask {
                    task_id: TaskId::from("nowhere"),
                    agent_id: None,
                },
            ],
        },
    );
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 3);
    assert_eq!(ups[0].state, TaskState::Running);
    assert_eq!(ups[1].state, TaskState::Lost);
    assert_eq!(ups[2].state, TaskState::Lost);
    assert!(ups.iter().all(|u| u.reason == Some(Reason::Reconciliation)));
}

#[test]
fn partition_aware_reconcile_of_unknown_tasks() {
    let mut sim = Sim::new();
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, _fw) = sim.framework("f", &[], true, 0);
    let out = sim.call(
        fconn,
        Call::Reconcile {
            tasks: vec![
                ReconcileTask {
                    task_id: TaskId::from("x"),
                    agent_id: Some(agent),
                },
                ReconcileTask {
                    task_id: TaskId::from("y"),
                    agent_id: Some(fleet_proto::ids::AgentId::from("A-none")),
                },
            ],
        },
    );
    let states: Vec<TaskState> = updates(&out, fconn).iter().map(|u| u.state).collect();
    assert_eq!(states, vec![TaskState::Gone, TaskState::Unknown]);
}

#[test]
fn kill_known_and_unknown_tasks() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 0);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("a", &agent, "cpus:1;mem:100")]),
    );
    let out = sim.call(
        fconn,
        Call::Kill {
            task_id: TaskId::from("a"),
            agent_id: None,
            grace_ms: Some(3000),
        },
    );
    assert!(
        matches!(&to_agent(&out, aconn)[..], [MasterMessage::KillTask { task_id, grace_ms: Some(3000), framework_id }] if task_id.as_str() == "a" && *framework_id == fw),
        "{out:?}"
    );
    let (out, _) = sim.update(aconn, &fw, &agent, &TaskId::from("a"), TaskState::Killed);
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Killed);

    let out = sim.call(
        fconn,
        Call::Kill {
            task_id: TaskId::from("ghost"),
            agent_id: Some(agent.clone()),
            grace_ms: None,
        },
    );
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].state, TaskState::Lost);
    assert!(to_agent(&out, aconn).is_empty());
}

#[test]
fn teardown_kills_tasks_and_frees_resources() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 600_000);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("a", &agent, "cpus:1;mem:100")]),
    );
    let (gconn, _g) = sim.framework("g", &[], false, 0);
    let offered = offers(&sim.tick(), gconn);
    assert_eq!(offered[0].resources, res("cpus:3;mem:3996"));

    let out = sim.call(fconn, Call::Teardown);
    assert!(
        matches!(&to_agent(&out, aconn)[..], [MasterMessage::ShutdownFramework { framework_id }] if *framework_id == fw)
    );
    assert!(closed(&out, fconn));
    let state = sim.master.state();
    assert_eq!(state.frameworks.len(), 1);
    assert_eq!(
        state.completed_tasks[0].reason,
        Some(Reason::FrameworkRemoved)
    );
    // g declines its offer; the whole agent then comes back to g once the refusal ends.
    sim.call(
        gconn,
        Call::Decline {
            offer_ids: vec![offered[0].id],
            filters: Some(Filters {
                refuse_seconds: 0.0,
            }),
        },
    );
    let offered = sim.offers_within(gconn, 2);
    assert_eq!(offered[0].resources, res("cpus:4;mem:4096"));

    // Its id may not come back.
    let conn = sim.conn();
    sim.input(Input::FrameworkConnected {
        conn,
        peer: "sim".into(),
    });
    let out = sim.call(
        conn,
        Call::Subscribe {
            framework: FrameworkInfo {
                id: Some(fw),
                ..FrameworkInfo::default()
            },
            suppressed_roles: vec![],
        },
    );
    assert!(matches!(
        &to_framework(&out, conn)[..],
        [Event::Error { fatal: true, .. }]
    ));
}

#[test]
fn failover_keeps_tasks_until_timeout() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 30_000);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("a", &agent, "cpus:1;mem:100")]),
    );
    sim.input(Input::FrameworkDisconnected {
        conn: fconn,
        reason: "bye".into(),
    });
    // Inactive: no offers while away.
    for _ in 0..10 {
        assert!(offers(&sim.advance(Duration::from_secs(1)), fconn).is_empty());
    }
    let info = FrameworkInfo {
        id: Some(fw.clone()),
        name: "f".into(),
        failover_timeout_ms: 30_000,
        ..FrameworkInfo::default()
    };
    let (fconn2, id) = sim.subscribe(info);
    assert_eq!(id, fw);
    assert_eq!(sim.master.state().tasks.len(), 1);
    assert_eq!(offers(&sim.tick(), fconn2).len(), 1);

    // Away again, this time past the timeout: removed, its tasks shut down.
    sim.input(Input::FrameworkDisconnected {
        conn: fconn2,
        reason: "bye".into(),
    });
    let out = sim.advance(Duration::from_secs(31));
    assert!(
        matches!(
            &to_agent(&out, aconn)[..],
            [MasterMessage::ShutdownFramework { .. }]
        ),
        "{out:?}"
    );
    assert!(sim.master.state().frameworks.is_empty());
}

#[test]
fn failover_timeout_zero_removes_at_once() {
    let mut sim = Sim::new();
    let (_fconn, _fw) = sim.framework("f", &[], false, 0);
    sim.input(Input::FrameworkDisconnected {
        conn: _fconn,
        reason: "bye".into(),
    });
    assert!(sim.master.state().frameworks.is_empty());
}

#[test]
fn two_frameworks_share_an_agent_by_drf() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:8;mem:8192");
    let (c1, f1) = sim.framework("one", &[], false, 0);
    let (c2, f2) = sim.framework("two", &[], false, 0);
    let conns = [(c1, f1.clone()), (c2, f2.clone())];
    let mut launched: BTreeMap<FrameworkId, Vec<TaskId>> = BTreeMap::new();
    let mut seq = 0;
    for round in 0..65 {
        let out = if round % 2 == 0 {
            sim.advance(Duration::from_secs(1))
        } else {
            sim.tick()
        };
        for (conn, fw) in &conns {
            for offer in offers(&out, *conn) {
                seq += 1;
                let id = format!("{fw}-{seq}");
                let call = if offer.resources.contains(&res("cpus:1;mem:1024")) {
                    launched
                        .entry(fw.clone())
                        .or_default()
                        .push(TaskId::from(id.as_str()));
                    Call::Accept {
                        offer_ids: vec![offer.id],
                        operations: vec![fleet_proto::messages::scheduler::Operation::Launch {
                            tasks: vec![task(&id, &agent, "cpus:1;mem:1024")],
                        }],
                        filters: Some(Filters {
                            refuse_seconds: 0.0,
                        }),
                    }
                } else {
                    Call::Decline {
                        offer_ids: vec![offer.id],
                        filters: None,
                    }
                };
                sim.call(*conn, call);
            }
        }
        // Every 10 rounds each framework's oldest task finishes, freeing room.
        if round % 10 == 9 {
            for (_, fw) in &conns {
                if let Some(tasks) = launched.get(fw)
                    && let Some(t) = tasks
                        .iter()
                        .find(|t| sim.master.state().tasks.iter().any(|v| &v.id == *t))
                {
                    let t = t.clone();
                    let (out, uuid) = sim.update(aconn, fw, &agent, &t, TaskState::Finished);
                    let conn = conns.iter().find(|(_, f)| f == fw).unwrap().0;
                    assert_eq!(updates(&out, conn).len(), 1);
                    sim.call(
                        conn,
                        Call::Acknowledge {
                            agent_id: agent.clone(),
                            task_id: t,
                            uuid,
                        },
                    );
                }
            }
        }
    }
    let n1 = launched.get(&f1).map_or(0, Vec::len);
    let n2 = launched.get(&f2).map_or(0, Vec::len);
    assert!(n1 >= 5 && n2 >= 5, "launches {n1} vs {n2}");
    assert!(n1.abs_diff(n2) <= 2, "launches {n1} vs {n2}");
    let state = sim.master.state();
    let running: Vec<usize> = state.frameworks.iter().map(|f| f.tasks).collect();
    assert_eq!(
        running.iter().sum::<usize>(),
        8,
        "the agent is full: {running:?}"
    );
    assert!(running.iter().all(|n| *n == 4), "{running:?}");
}

#[test]
fn heartbeats_every_interval() {
    let mut sim = Sim::new();
    let (fconn, _fw) = sim.framework("f", &[], false, 0);
    let mut beats = 0;
    for _ in 0..46 {
        let out = sim.advance(Duration::from_secs(1));
        beats += to_framework(&out, fconn)
            .iter()
            .filter(|e| matches!(e, Event::Heartbeat))
            .count();
    }
    assert_eq!(beats, 3);
}

/// A framework whose role asks for agents in zone west is offered the west agent only; a
/// framework with a regular expression that does not compile is refused, naming it.
#[test]
fn offer_constraints_pick_agents_by_attribute() {
    use fleet_proto::messages::scheduler::{
        AttributeConstraint, Predicate, RoleConstraints, Selector,
    };
    use fleet_proto::resources::Attribute;

    let mut h = Sim::new();
    for (host, zone) in [("west-1", "west"), ("east-1", "east")] {
        let mut info = Sim::agent_info(host, "cpus:2;mem:2048");
        info.attributes.push(Attribute::text("zone", zone));
        h.register_agent(None, info, Vec::new());
    }
    let constraint = |predicate| RoleConstraints {
        role: "web".into(),
        groups: vec![vec![AttributeConstraint {
            selector: Selector::Attribute("zone".into()),
            predicate,
        }]],
    };
    let info = FrameworkInfo {
        name: "picky".into(),
        roles: vec!["web".into()],
        offer_constraints: vec![constraint(Predicate::TextEquals("west".into()))],
        ..FrameworkInfo::default()
    };
    let (conn, _) = h.subscribe(info);
    let first = h.offers_within(conn, 3);
    let hosts: Vec<&str> = first.iter().map(|o| o.hostname.as_str()).collect();
    assert_eq!(hosts, ["west-1"], "{first:?}");
    // Nothing from east follows.
    for _ in 0..3 {
        let out = h.advance(h.master.config().allocation_interval);
        assert!(offers(&out, conn).is_empty());
    }

    let bad = FrameworkInfo {
        name: "bad".into(),
        roles: vec!["web".into()],
        offer_constraints: vec![constraint(Predicate::TextMatches("[".into()))],
        ..FrameworkInfo::default()
    };
    let conn = h.conn();
    h.input(Input::FrameworkConnected {
        conn,
        peer: "sim".into(),
    });
    let out = h.call(
        conn,
        Call::Subscribe {
            framework: bad,
            suppressed_roles: Vec::new(),
        },
    );
    let refused = to_framework(&out, conn).into_iter().any(|e| {
        matches!(&e, Event::Error { message, .. } if message.contains("invalid regular expression \"[\""))
    });
    assert!(refused, "{out:?}");
}
