//! Operator calls that act on frameworks, tasks and agents: TEARDOWN, KILL_TASK,
//! DEACTIVATE_AGENT / REACTIVATE_AGENT, DRAIN_AGENT, MARK_AGENT_GONE, and the events an
//! operator's stream is fed.

use std::time::Duration;

use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::task::Reason;

use super::*;
use crate::core::{DrainState, OperatorCall, OperatorEvent};

impl Sim {
    fn operator(&mut self, call: OperatorCall) -> (Result<(), String>, Vec<Output>) {
        let result = self.master.operator(call, self.now, &mut self.out);
        (result, std::mem::take(&mut self.out))
    }
}

/// An agent, a framework and one running task `a` on the agent.
fn running_task(sim: &mut Sim) -> (ConnId, AgentId, ConnId, FrameworkId) {
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], false, 60_000);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("a", &agent, "cpus:1;mem:100")]),
    );
    sim.update(aconn, &fw, &agent, &TaskId::from("a"), TaskState::Running);
    (aconn, agent, fconn, fw)
}

fn acknowledge(sim: &mut Sim, fconn: ConnId, agent: &AgentId, task: &str, uuid: UpdateUuid) {
    sim.call(
        fconn,
        Call::Acknowledge {
            agent_id: agent.clone(),
            task_id: TaskId::from(task),
            uuid,
        },
    );
}

fn kills(out: &[Output], aconn: ConnId) -> Vec<(String, Option<u64>)> {
    to_agent(out, aconn)
        .into_iter()
        .filter_map(|m| match m {
            MasterMessage::KillTask {
                task_id, grace_ms, ..
            } => Some((task_id.as_str().to_owned(), grace_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn teardown_removes_the_framework_and_kills_its_tasks() {
    let mut sim = Sim::new();
    let (aconn, _agent, fconn, fw) = running_task(&mut sim);
    let (result, out) = sim.operator(OperatorCall::Teardown {
        framework_id: fw.clone(),
    });
    assert_eq!(result, Ok(()));
    assert!(
        matches!(&to_framework(&out, fconn)[..], [Event::Error { fatal: true, message }] if message.contains("operator")),
        "{out:?}"
    );
    assert!(closed(&out, fconn));
    assert!(
        matches!(&to_agent(&out, aconn)[..], [MasterMessage::ShutdownFramework { framework_id }] if *framework_id == fw),
        "{out:?}"
    );
    let state = sim.master.state();
    assert!(state.frameworks.is_empty());
    let done = &state.completed_tasks[0];
    assert_eq!(
        (done.state, done.reason),
        (TaskState::Killed, Some(Reason::FrameworkRemoved))
    );

    let (again, _) = sim.operator(OperatorCall::Teardown { framework_id: fw });
    assert!(again.unwrap_err().contains("already removed"));
    let (unknown, _) = sim.operator(OperatorCall::Teardown {
        framework_id: FrameworkId("F-nope".into()),
    });
    assert!(unknown.unwrap_err().contains("unknown framework F-nope"));
}

#[test]
fn kill_task_asks_the_agent_and_refuses_what_cannot_be_killed() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim);
    let (result, out) = sim.operator(OperatorCall::KillTask {
        task_id: TaskId::from("a"),
        framework_id: None,
        grace: Some(Duration::from_secs(2)),
    });
    assert_eq!(result, Ok(()));
    assert_eq!(kills(&out, aconn), vec![("a".to_owned(), Some(2000))]);
    let (out, uuid) = sim.update(aconn, &fw, &agent, &TaskId::from("a"), TaskState::Killed);
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Killed);
    acknowledge(&mut sim, fconn, &agent, "a", uuid);

    let (ended, _) = sim.operator(OperatorCall::KillTask {
        task_id: TaskId::from("a"),
        framework_id: None,
        grace: None,
    });
    assert!(ended.unwrap_err().contains("already ended (TASK_KILLED)"));
    let (ghost, _) = sim.operator(OperatorCall::KillTask {
        task_id: TaskId::from("ghost"),
        framework_id: None,
        grace: None,
    });
    assert!(ghost.unwrap_err().contains("no live task ghost"));
    let (wrong, _) = sim.operator(OperatorCall::KillTask {
        task_id: TaskId::from("a"),
        framework_id: Some(FrameworkId("F-other".into())),
        grace: None,
    });
    assert!(wrong.unwrap_err().contains("unknown framework F-other"));
}

#[test]
fn a_deactivated_agent_is_not_offered_until_reactivated() {
    let mut sim = Sim::new();
    let (_aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, _fw) = sim.framework("f", &[], false, 60_000);
    let offer = offers(&sim.tick(), fconn).remove(0);
    let (result, out) = sim.operator(OperatorCall::DeactivateAgent {
        agent_id: agent.clone(),
    });
    assert_eq!(result, Ok(()));
    assert_eq!(rescinds(&out, fconn), vec![offer.id]);
    assert!(sim.offers_within(fconn, 3).is_empty());
    let state = sim.master.state();
    assert!(!state.agents[0].active && state.agents[0].deactivated);

    // Reconnecting does not bring it back.
    let (_aconn, again) = sim.register_agent(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        Vec::new(),
    );
    assert_eq!(again, agent);
    assert!(sim.offers_within(fconn, 3).is_empty());

    let (result, _) = sim.operator(OperatorCall::ReactivateAgent {
        agent_id: agent.clone(),
    });
    assert_eq!(result, Ok(()));
    assert_eq!(sim.offers_within(fconn, 2).len(), 1);
    let (unknown, _) = sim.operator(OperatorCall::DeactivateAgent {
        agent_id: AgentId("A-nope".into()),
    });
    assert!(unknown.unwrap_err().contains("unknown agent A-nope"));
}

#[test]
fn drain_kills_the_tasks_then_the_agent_is_drained() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim);
    let (result, out) = sim.operator(OperatorCall::DrainAgent {
        agent_id: agent.clone(),
        max_grace: Some(Duration::from_secs(1)),
        mark_gone: false,
    });
    assert_eq!(result, Ok(()));
    assert_eq!(kills(&out, aconn), vec![("a".to_owned(), Some(1000))]);
    let drain = |sim: &Sim| sim.master.state().agents[0].drain.clone().map(|d| d.state);
    assert_eq!(drain(&sim), Some(DrainState::Draining));
    let (refused, _) = sim.operator(OperatorCall::ReactivateAgent {
        agent_id: agent.clone(),
    });
    assert!(refused.unwrap_err().contains("DRAINING"));

    // Ended but not acknowledged yet: still draining.
    let (_, uuid) = sim.update(aconn, &fw, &agent, &TaskId::from("a"), TaskState::Killed);
    sim.advance(Duration::from_secs(1));
    assert_eq!(drain(&sim), Some(DrainState::Draining));
    acknowledge(&mut sim, fconn, &agent, "a", uuid);
    sim.advance(Duration::from_secs(1));
    assert_eq!(drain(&sim), Some(DrainState::Drained));
    assert!(
        sim.offers_within(fconn, 3).is_empty(),
        "a drained agent stays inactive"
    );

    let (result, _) = sim.operator(OperatorCall::ReactivateAgent {
        agent_id: agent.clone(),
    });
    assert_eq!(result, Ok(()));
    assert_eq!(drain(&sim), None);
    assert_eq!(sim.offers_within(fconn, 2).len(), 1);
}

#[test]
fn a_drain_with_mark_gone_removes_the_agent_once_drained() {
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (result, out) = sim.operator(OperatorCall::DrainAgent {
        agent_id: agent.clone(),
        max_grace: None,
        mark_gone: true,
    });
    assert_eq!(result, Ok(()));
    // Nothing ran on it: drained, then gone, at once.
    assert!(closed(&out, aconn), "{out:?}");
    let state = sim.master.state();
    assert!(state.agents.is_empty());
    assert_eq!(state.gone_agents, vec![agent]);
}

#[test]
fn a_gone_agent_loses_its_tasks_and_may_not_come_back() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim);
    let (result, out) = sim.operator(OperatorCall::MarkAgentGone {
        agent_id: agent.clone(),
    });
    assert_eq!(result, Ok(()));
    let ups = updates(&out, fconn);
    assert_eq!(
        (ups[0].state, ups[0].reason),
        (
            TaskState::GoneByOperator,
            Some(Reason::AgentRemovedByOperator)
        )
    );
    assert_eq!(kills(&out, aconn), vec![("a".to_owned(), None)]);
    assert!(
        to_agent(&out, aconn)
            .iter()
            .any(|m| matches!(m, MasterMessage::Refused { .. }))
    );
    assert!(closed(&out, aconn));
    let state = sim.master.state();
    assert!(state.agents.is_empty() && state.tasks.is_empty());
    assert_eq!(state.gone_agents, vec![agent.clone()]);

    // Its id is refused, with the reason.
    let (conn, out) = sim.agent_registers(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        Vec::new(),
    );
    assert!(
        matches!(&to_agent(&out, conn)[..], [MasterMessage::Refused { reason }] if reason.contains("marked gone")),
        "{out:?}"
    );
    assert!(closed(&out, conn));
    let (again, _) = sim.operator(OperatorCall::DeactivateAgent { agent_id: agent });
    assert!(again.unwrap_err().contains("marked gone"));
}

fn operator_events(out: &[Output]) -> Vec<OperatorEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Operator(event) => Some((**event).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_watched_master_reports_tasks_agents_and_frameworks() {
    let mut sim = Sim::new();
    let (_aconn, agent, fconn, _fw) = running_task(&mut sim);
    assert!(
        sim.master.state().tasks.len() == 1,
        "nothing is emitted while unwatched"
    );
    // The first framework takes no more offers, so the second one's come whatever the
    // allocator shards decide.
    sim.call(fconn, Call::Suppress { roles: Vec::new() });
    sim.master.set_watched(true);
    let (aconn2, agent2) = {
        let (conn, out) =
            sim.agent_registers(None, Sim::agent_info("h2", "cpus:4;mem:4096"), Vec::new());
        let events = operator_events(&out);
        let Some(OperatorEvent::AgentAdded(added)) = events.first() else {
            panic!("{out:?}");
        };
        (conn, added.id.clone())
    };
    let conn = sim.conn();
    sim.input(Input::FrameworkConnected {
        conn,
        peer: "sim".into(),
    });
    let out = sim.call(
        conn,
        Call::Subscribe {
            framework: FrameworkInfo {
                name: "g".into(),
                ..FrameworkInfo::default()
            },
            suppressed_roles: Vec::new(),
        },
    );
    let gfw = match &operator_events(&out)[..] {
        [OperatorEvent::FrameworkAdded(f)] => f.id.clone(),
        other => panic!("{other:?}"),
    };
    let mut offer = Vec::new();
    for _ in 0..5 {
        let out = sim.advance(Duration::from_secs(1));
        // Offers the first framework still held come back declined.
        let held: Vec<_> = offers(&out, fconn).iter().map(|o| o.id).collect();
        if !held.is_empty() {
            sim.call(
                fconn,
                Call::Decline {
                    offer_ids: held,
                    filters: None,
                },
            );
        }
        offer = offers(&out, conn);
        if offer.iter().any(|o| o.agent_id == agent2) {
            break;
        }
    }
    let offer = offer
        .into_iter()
        .find(|o| o.agent_id == agent2)
        .expect("an offer on h2");
    let out = sim.call(
        conn,
        launch(vec![offer.id], vec![task("b", &agent2, "cpus:1;mem:100")]),
    );
    assert!(
        matches!(&operator_events(&out)[..], [OperatorEvent::TaskAdded(t)] if t.id.as_str() == "b" && t.state == TaskState::Staging),
        "{out:?}"
    );
    let (out, _) = sim.update(
        aconn2,
        &gfw,
        &agent2,
        &TaskId::from("b"),
        TaskState::Running,
    );
    assert!(
        matches!(&operator_events(&out)[..], [OperatorEvent::TaskUpdated { status, framework_id }] if status.state == TaskState::Running && *framework_id == gfw),
        "{out:?}"
    );
    // The same state again changes nothing an operator sees.
    let (out, _) = sim.update(
        aconn2,
        &gfw,
        &agent2,
        &TaskId::from("b"),
        TaskState::Running,
    );
    assert!(operator_events(&out).is_empty(), "{out:?}");
    let (_, out) = sim.operator(OperatorCall::MarkAgentGone {
        agent_id: agent2.clone(),
    });
    let events = operator_events(&out);
    assert!(
        matches!(&events[..], [OperatorEvent::TaskUpdated { status, .. }, OperatorEvent::AgentRemoved(id)] if status.state == TaskState::GoneByOperator && *id == agent2),
        "{events:?}"
    );
    let (_, out) = sim.operator(OperatorCall::Teardown { framework_id: gfw });
    assert!(
        matches!(&operator_events(&out)[..], [OperatorEvent::FrameworkRemoved(f)] if f.name == "g"),
        "{out:?}"
    );
    sim.master.set_watched(false);
    let (_, out) = sim.operator(OperatorCall::DeactivateAgent {
        agent_id: agent.clone(),
    });
    assert!(operator_events(&out).is_empty());
}

#[test]
fn a_machine_down_for_maintenance_loses_its_agents_until_it_is_up() {
    use crate::core::{MachineId, Window};
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim);
    let h1 = MachineId::new("H1", "").unwrap();
    let (unscheduled, _) = sim.operator(OperatorCall::MachinesDown(vec![h1.clone()]));
    assert!(
        unscheduled
            .unwrap_err()
            .contains("not in the maintenance schedule")
    );
    let window = |machines: Vec<MachineId>| Window {
        machines,
        start_ns: 0,
        duration_ns: 3_600_000_000_000,
    };
    let (twice, _) = sim.operator(OperatorCall::UpdateSchedule(vec![
        window(vec![h1.clone()]),
        window(vec![h1.clone()]),
    ]));
    assert!(twice.unwrap_err().contains("twice"));
    let (result, _) = sim.operator(OperatorCall::UpdateSchedule(vec![window(vec![h1.clone()])]));
    assert_eq!(result, Ok(()));
    assert_eq!(sim.master.state().maintenance.draining(), vec![&h1]);

    let (result, out) = sim.operator(OperatorCall::MachinesDown(vec![h1.clone()]));
    assert_eq!(result, Ok(()));
    // Not partition-aware: TASK_LOST, as Mesos reports tasks of a machine taken down.
    let ups = updates(&out, fconn);
    assert_eq!(
        (ups[0].state, ups[0].reason),
        (TaskState::Lost, Some(Reason::AgentRemovedByOperator))
    );
    assert!(closed(&out, aconn));
    assert!(sim.master.state().agents.is_empty());
    let (cancel, _) = sim.operator(OperatorCall::UpdateSchedule(Vec::new()));
    assert!(cancel.unwrap_err().contains("is down"));

    // Agents from it are refused, whatever their id.
    let (conn, out) = sim.agent_registers(
        Some(agent),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        Vec::new(),
    );
    assert!(
        matches!(&to_agent(&out, conn)[..], [MasterMessage::Refused { reason }] if reason.contains("down for maintenance")),
        "{out:?}"
    );

    let (result, _) = sim.operator(OperatorCall::MachinesUp(vec![h1.clone()]));
    assert_eq!(result, Ok(()));
    let state = sim.master.state();
    assert!(state.maintenance.windows.is_empty() && state.maintenance.down.is_empty());
    let (again, _) = sim.operator(OperatorCall::MachinesUp(vec![h1]));
    assert!(again.unwrap_err().contains("is not down"));
    sim.agent("h1", "cpus:4;mem:4096");
}

#[test]
fn the_report_rate_is_measured_over_each_sweep() {
    use fleet_proto::messages::agent::{Report, Usage};
    let mut sim = Sim::new();
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    sim.advance(Duration::from_secs(1));
    for seq in 0..4 {
        sim.report(
            aconn,
            &Report {
                agent_id: agent.clone(),
                seq,
                timestamp_ms: 1,
                total: Usage::default(),
                tasks: Vec::new(),
            },
        );
    }
    sim.advance(Duration::from_secs(2));
    let state = sim.master.state();
    assert_eq!(state.report_rate, 2.0);
    assert_eq!(state.connections, 1);
}
