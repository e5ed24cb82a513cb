//! Agents: timeouts, re-registration, reports, registry failures, master failover.

use std::time::Duration;

use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::{AgentFramework, MasterMessage, TaskUsage, Usage};
use fleet_proto::task::Reason;

use super::*;
use crate::registry::{RegistryError, RegistryOp, RegistryState};

/// One agent, one framework, one task `t1` launched on the agent.
fn launched_task(sim: &mut Sim, partition_aware: bool) -> (ConnId, AgentId, ConnId, FrameworkId) {
    let (aconn, agent) = sim.agent("h1", "cpus:4;mem:4096");
    let (fconn, fw) = sim.framework("f", &[], partition_aware, 600_000);
    let offer = offers(&sim.tick(), fconn).remove(0);
    sim.call(
        fconn,
        launch(vec![offer.id], vec![task("t1", &agent, "cpus:1;mem:512")]),
    );
    (aconn, agent, fconn, fw)
}

/// One agent, one framework, one running task `t1`.
fn running_task(sim: &mut Sim, partition_aware: bool) -> (ConnId, AgentId, ConnId, FrameworkId) {
    let (aconn, agent, fconn, fw) = launched_task(sim, partition_aware);
    sim.update(aconn, &fw, &agent, &TaskId::from("t1"), TaskState::Running);
    (aconn, agent, fconn, fw)
}

fn disconnect_agent(sim: &mut Sim, conn: ConnId) -> Vec<Output> {
    sim.input(Input::AgentDisconnected {
        conn,
        reason: "gone".into(),
    })
}

#[test]
fn disconnected_agent_times_out_and_its_tasks_are_lost() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim, false);
    let outstanding = sim.offers_within(fconn, 10);
    assert_eq!(outstanding.len(), 1);
    let out = disconnect_agent(&mut sim, aconn);
    assert_eq!(rescinds(&out, fconn), vec![outstanding[0].id]);
    let out = sim.advance(Duration::from_secs(74));
    assert!(updates(&out, fconn).is_empty());
    let out = sim.advance(Duration::from_secs(1));
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1, "{out:?}");
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason, Some(Reason::AgentDisconnected));
    assert_eq!(ups[0].agent_id.as_ref(), Some(&agent));
    let state = sim.master.state();
    assert!(state.agents.is_empty());
    assert!(state.tasks.is_empty());
    assert_eq!(state.unreachable_agents, vec![agent.clone()]);
    assert_eq!(state.counters.agents_unreachable, 1);
    // Removed for good only after the re-register timeout.
    sim.advance(Duration::from_secs(600));
    let state = sim.master.state();
    assert!(state.unreachable_agents.is_empty());
    assert_eq!(state.counters.agents_removed, 1);
}

fn running_on(fw: &FrameworkId, agent: &AgentId, id: &str) -> RunningTask {
    RunningTask {
        framework: AgentFramework {
            id: fw.clone(),
            name: "f".into(),
            user: "root".into(),
        },
        task: task(id, agent, "cpus:1;mem:512"),
        state: TaskState::Running,
    }
}

#[test]
fn an_unreachable_agent_that_comes_back_in_time_gets_its_tasks_back() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim, true);
    disconnect_agent(&mut sim, aconn);
    let out = sim.advance(Duration::from_secs(75));
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Unreachable);
    sim.advance(Duration::from_secs(300));
    let info = Sim::agent_info("h1", "cpus:4;mem:4096");
    let conn = sim.conn();
    sim.input(Input::AgentConnected {
        conn,
        peer: "sim".into(),
    });
    let out = sim.agent_says(
        conn,
        AgentMessage::Register {
            agent_id: Some(agent.clone()),
            info,
            tasks: vec![running_on(&fw, &agent, "t1")],
        },
    );
    // The same agent, its task running again, and the framework told so.
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1, "{out:?}");
    assert_eq!(ups[0].state, TaskState::Running);
    let state = sim.master.state();
    assert_eq!(state.agents.len(), 1);
    assert_eq!(state.agents[0].id, agent);
    assert_eq!(state.agents[0].used, res("cpus:1;mem:512"));
    assert!(state.unreachable_agents.is_empty());
    assert_eq!(state.tasks[0].state, TaskState::Running);
    assert_eq!(state.counters.agents_reachable_again, 1);
    assert!(
        !to_agent(&out, conn)
            .iter()
            .any(|m| matches!(m, MasterMessage::KillTask { .. })),
        "{out:?}"
    );
}

#[test]
fn tasks_reported_lost_while_their_agent_was_unreachable_are_killed_when_it_returns() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim, false);
    disconnect_agent(&mut sim, aconn);
    let out = sim.advance(Duration::from_secs(75));
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Lost);
    let (conn, out) = sim.agent_registers(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        vec![running_on(&fw, &agent, "t1")],
    );
    let kills: Vec<_> = to_agent(&out, conn)
        .into_iter()
        .filter(|m| matches!(m, MasterMessage::KillTask { .. }))
        .collect();
    assert_eq!(kills.len(), 1, "{out:?}");
    assert!(
        updates(&out, fconn).is_empty(),
        "no news for a task already lost"
    );
    assert_eq!(sim.master.state().agents[0].id, agent);
}

#[test]
fn an_unreachable_agent_past_the_reregister_timeout_is_gone_with_its_tasks() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim, true);
    disconnect_agent(&mut sim, aconn);
    sim.advance(Duration::from_secs(75));
    let out = sim.advance(Duration::from_secs(600));
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1, "{out:?}");
    assert_eq!(ups[0].state, TaskState::Gone);
    // Too late: it registers as a new agent and its old task is killed.
    let (conn, id) = sim.register_agent(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        vec![],
    );
    assert_ne!(id, agent);
    let _ = conn;
}

#[test]
fn partition_aware_frameworks_get_unreachable() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim, true);
    disconnect_agent(&mut sim, aconn);
    let out = sim.advance(Duration::from_secs(75));
    let ups = updates(&out, fconn);
    assert_eq!(ups[0].state, TaskState::Unreachable);
    // It stays known: explicit reconciliation reports it unreachable.
    let out = sim.call(
        fconn,
        Call::Reconcile {
            tasks: vec![fleet_proto::messages::scheduler::ReconcileTask {
                task_id: TaskId::from("t1"),
                agent_id: Some(agent),
            }],
        },
    );
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Unreachable);
}

#[test]
fn silent_connected_agent_is_closed_and_removed_but_reports_keep_it_alive() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim, false);
    for seq in 0..20 {
        let out = sim.advance(Duration::from_secs(5));
        assert!(updates(&out, fconn).is_empty());
        let report = Report {
            agent_id: agent.clone(),
            seq,
            timestamp_ms: 1000 + seq,
            tasks: vec![TaskUsage {
                framework_id: fw.clone(),
                task_id: TaskId::from("t1"),
                usage: Usage {
                    bytes_written: 4096 * seq,
                    ..Default::default()
                },
                pid: 0,
            }],
            total: Usage {
                mem_bytes: 1 << 20,
                ..Default::default()
            },
        };
        sim.report(aconn, &report);
    }
    let state = sim.master.state();
    assert_eq!(state.agents[0].last_report_seq, Some(19));
    assert_eq!(state.agents[0].usage.map(|u| u.mem_bytes), Some(1 << 20));
    assert_eq!(
        state.tasks[0].usage.map(|u| u.bytes_written),
        Some(4096 * 19)
    );
    assert_eq!(state.counters.reports_received, 20);

    let out = sim.advance(Duration::from_secs(75));
    assert!(closed(&out, aconn), "{out:?}");
    let ups = updates(&out, fconn);
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason, Some(Reason::AgentRemoved));
}

#[test]
fn reregistration_within_timeout_keeps_tasks() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = running_task(&mut sim, false);
    disconnect_agent(&mut sim, aconn);
    sim.advance(Duration::from_secs(30));
    let info = Sim::agent_info("h1", "cpus:4;mem:4096");
    let running = RunningTask {
        framework: AgentFramework {
            id: fw.clone(),
            name: "f".into(),
            user: "root".into(),
        },
        task: task("t1", &agent, "cpus:1;mem:512"),
        state: TaskState::Running,
    };
    let (_aconn2, id) = sim.register_agent(Some(agent.clone()), info, vec![running]);
    assert_eq!(id, agent);
    let out = sim.advance(Duration::from_secs(60));
    assert!(updates(&out, fconn).is_empty(), "{out:?}");
    // The free part is offered again, the task's part is not.
    let offered = offers(&out, fconn);
    assert_eq!(offered[0].resources, res("cpus:3;mem:3584"));
    let state = sim.master.state();
    assert_eq!(state.tasks.len(), 1);
    assert_eq!(state.tasks[0].state, TaskState::Running);
    assert_eq!(state.agents[0].used, res("cpus:1;mem:512"));
}

/// The agent's own update stream tells the framework what happened while it was away, in
/// order: a task that started running while its STARTING was unacknowledged re-registers
/// as running, and its STARTING is resent after. Had the master told the framework
/// "running" from the re-registration, the resent STARTING would arrive after it.
#[test]
fn reregistration_tells_the_framework_nothing_the_update_stream_will() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, fw) = launched_task(&mut sim, false);
    let t1 = TaskId::from("t1");
    sim.update(aconn, &fw, &agent, &t1, TaskState::Starting);
    disconnect_agent(&mut sim, aconn);
    let (aconn2, out) = sim.agent_registers(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        vec![running_on(&fw, &agent, "t1")],
    );
    assert!(updates(&out, fconn).is_empty(), "{out:?}");
    assert_eq!(sim.master.state().tasks[0].state, TaskState::Running);
    let (out, _) = sim.update(aconn2, &fw, &agent, &t1, TaskState::Starting);
    let (more, _) = sim.update(aconn2, &fw, &agent, &t1, TaskState::Running);
    let seen: Vec<TaskState> = updates(&out, fconn)
        .into_iter()
        .chain(updates(&more, fconn))
        .map(|s| s.state)
        .collect();
    assert_eq!(seen, vec![TaskState::Starting, TaskState::Running]);
}

#[test]
fn reregistered_agent_without_a_task_loses_it() {
    let mut sim = Sim::new();
    let (aconn, agent, fconn, _fw) = running_task(&mut sim, false);
    disconnect_agent(&mut sim, aconn);
    let (_, out) = sim.agent_registers(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        vec![],
    );
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1, "{out:?}");
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason, Some(Reason::Reconciliation));
    assert!(sim.master.state().tasks.is_empty());
}

#[test]
fn unknown_agent_id_gets_a_new_id() {
    let mut sim = Sim::new();
    let (_conn, id) = sim.register_agent(
        Some(AgentId::from("A-forgotten")),
        Sim::agent_info("h", "cpus:1;mem:128"),
        vec![],
    );
    assert_ne!(id.as_str(), "A-forgotten");
    assert!(id.as_str().starts_with("A-"));
}

#[test]
fn messages_before_register_close_the_connection() {
    let mut sim = Sim::new();
    let conn = sim.conn();
    sim.input(Input::AgentConnected {
        conn,
        peer: "sim".into(),
    });
    let out = sim.agent_says(conn, AgentMessage::Pong { nonce: 1 });
    assert!(closed(&out, conn));
}

/// A registry that fails every op.
struct Broken;

impl Registry for Broken {
    fn apply(&mut self, op: RegistryOp) -> Result<(), RegistryError> {
        Err(RegistryError::Unavailable {
            op: op.describe(),
            reason: "no quorum".into(),
        })
    }

    fn snapshot(&self) -> RegistryState {
        RegistryState::default()
    }
}

#[test]
fn registry_failure_refuses_agents_and_frameworks() {
    let mut sim = Sim::with(MasterConfig::default(), Box::new(Broken));
    let (conn, out) = sim.agent_registers(None, Sim::agent_info("h", "cpus:1;mem:128"), vec![]);
    assert!(
        matches!(&to_agent(&out, conn)[..], [MasterMessage::Refused { reason }] if reason.contains("no quorum")),
        "{out:?}"
    );
    assert!(closed(&out, conn));
    assert!(sim.master.state().agents.is_empty());

    let fconn = sim.conn();
    sim.input(Input::FrameworkConnected {
        conn: fconn,
        peer: "sim".into(),
    });
    let out = sim.call(
        fconn,
        Call::Subscribe {
            framework: FrameworkInfo::default(),
            suppressed_roles: vec![],
        },
    );
    assert!(
        matches!(&to_framework(&out, fconn)[..], [Event::Error { fatal: true, message }] if message.contains("no quorum"))
    );
    assert!(closed(&out, fconn));
}

#[test]
fn master_failover_rebuilds_tasks_from_agents() {
    let agent = AgentId::from("A-1");
    let fw = FrameworkId::from("F-1");
    let mut registry = InMemoryRegistry::new();
    registry
        .apply(RegistryOp::AdmitAgent {
            id: agent.clone(),
            info: Sim::agent_info("h1", "cpus:4;mem:4096"),
        })
        .unwrap();
    let info = FrameworkInfo {
        id: Some(fw.clone()),
        name: "f".into(),
        failover_timeout_ms: 60_000,
        ..FrameworkInfo::default()
    };
    registry
        .apply(RegistryOp::AddFramework {
            id: fw.clone(),
            info: info.clone(),
        })
        .unwrap();
    let mut sim = Sim::with(MasterConfig::default(), Box::new(registry));
    let running = RunningTask {
        framework: AgentFramework {
            id: fw.clone(),
            name: "f".into(),
            user: "root".into(),
        },
        task: task("t1", &agent, "cpus:1;mem:512"),
        state: TaskState::Running,
    };
    let (aconn, id) = sim.register_agent(
        Some(agent.clone()),
        Sim::agent_info("h1", "cpus:4;mem:4096"),
        vec![running],
    );
    assert_eq!(id, agent);
    let (fconn, id) = sim.subscribe(info);
    assert_eq!(id, fw);
    let out = sim.call(fconn, Call::Reconcile { tasks: vec![] });
    let ups = updates(&out, fconn);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].state, TaskState::Running);
    assert_eq!(ups[0].reason, Some(Reason::Reconciliation));
    let offered = offers(&sim.tick(), fconn);
    assert_eq!(offered[0].resources, res("cpus:3;mem:3584"));
    // Its updates flow as before.
    let (out, _) = sim.update(aconn, &fw, &agent, &TaskId::from("t1"), TaskState::Finished);
    assert_eq!(updates(&out, fconn)[0].state, TaskState::Finished);
}
