//! A master taking over with quotas set waits for most admitted agents before offering.

use fleet_proto::ids::AgentId;

use super::{Sim, offers, res};
use crate::core::MasterConfig;
use crate::registry::{InMemoryRegistry, QuotaConfig, RegistryOp, RegistryState};

fn registry(agents: usize, quota: bool) -> RegistryState {
    let mut state = RegistryState::default();
    for i in 0..agents {
        state.apply(RegistryOp::AdmitAgent {
            id: AgentId::from(format!("A-{i}").as_str()),
            info: Sim::agent_info(&format!("h{i}"), "cpus:1;mem:1024"),
        });
    }
    if quota {
        state.apply(RegistryOp::SetQuota {
            role: "web".into(),
            quota: QuotaConfig {
                guarantees: res("cpus:2"),
                limits: None,
            },
        });
    }
    state
}

/// Re-registers agents `from..to` of the registry; returns whether the framework on
/// `conn` got an offer afterwards.
fn back(sim: &mut Sim, from: usize, to: usize, conn: u64) -> bool {
    for i in from..to {
        sim.register_agent(
            Some(AgentId::from(format!("A-{i}").as_str())),
            Sim::agent_info(&format!("h{i}"), "cpus:1;mem:1024"),
            Vec::new(),
        );
    }
    let out = sim.advance(sim.master.config().allocation_interval * 2);
    !offers(&out, conn).is_empty()
}

#[test]
fn with_a_quota_allocation_waits_for_most_agents_to_return() {
    let state = registry(5, true);
    let mut sim = Sim::with(
        MasterConfig::default(),
        Box::new(InMemoryRegistry::with_state(state)),
    );
    let (conn, _) = sim.framework("f", &["web"], false, 60_000);
    assert!(
        !back(&mut sim, 0, 3, conn),
        "offered with 3 of 5 agents back"
    );
    assert!(
        back(&mut sim, 3, 4, conn),
        "no offer with 4 of 5 agents back"
    );
}

#[test]
fn without_a_quota_allocation_starts_at_once() {
    let state = registry(5, false);
    let mut sim = Sim::with(
        MasterConfig::default(),
        Box::new(InMemoryRegistry::with_state(state)),
    );
    let (conn, _) = sim.framework("f", &["web"], false, 60_000);
    assert!(
        back(&mut sim, 0, 1, conn),
        "no offer with 1 of 5 agents back"
    );
}

/// What an operator marked on agents, and agents gone unreachable, outlive the master: a
/// new one started on the same registry keeps a deactivated agent unoffered, a draining
/// one draining, refuses a gone one, keeps the maintenance schedule, and gives an
/// unreachable agent the re-register timeout rather than the agent timeout.
#[test]
fn operator_marks_unreachable_agents_and_maintenance_survive_a_failover() {
    use crate::core::{DrainState, MachineId, OperatorCall, Window};

    let config = MasterConfig {
        agent_timeout: std::time::Duration::from_secs(10),
        agent_reregister_timeout: std::time::Duration::from_secs(100),
        ..MasterConfig::default()
    };
    let mut sim = Sim::with(config.clone(), Box::new(InMemoryRegistry::new()));
    let ids: Vec<AgentId> = (0..4)
        .map(|i| sim.agent(&format!("h{i}"), "cpus:1;mem:1024").1)
        .collect();
    let operate = |sim: &mut Sim, call: OperatorCall| {
        let result = sim.master.operator(call, sim.now, &mut sim.out);
        sim.out.clear();
        result.unwrap();
    };
    operate(
        &mut sim,
        OperatorCall::DeactivateAgent {
            agent_id: ids[0].clone(),
        },
    );
    operate(
        &mut sim,
        OperatorCall::DrainAgent {
            agent_id: ids[1].clone(),
            max_grace: None,
            mark_gone: false,
        },
    );
    operate(
        &mut sim,
        OperatorCall::MarkAgentGone {
            agent_id: ids[2].clone(),
        },
    );
    let machine = MachineId::new("h9", "").unwrap();
    operate(
        &mut sim,
        OperatorCall::UpdateSchedule(vec![Window {
            machines: vec![machine.clone()],
            start_ns: 0,
            duration_ns: 1,
        }]),
    );
    operate(&mut sim, OperatorCall::MachinesDown(vec![machine]));
    // Agent 3 goes silent and is marked unreachable.
    // Every agent goes silent past the agent timeout: the three not gone are unreachable.
    sim.advance(std::time::Duration::from_secs(12));
    let before = sim.master.state();
    assert_eq!(
        before.unreachable_agents.len(),
        3,
        "{:?}",
        before.unreachable_agents
    );

    let registry = InMemoryRegistry::with_state(sim.master.registry.snapshot());
    let mut next = Sim::with(config, Box::new(registry));
    let state = next.master.state();
    assert_eq!(state.gone_agents, vec![ids[2].clone()]);
    assert_eq!(state.maintenance.down.len(), 1);
    assert_eq!(state.maintenance.windows.len(), 1);
    let (_, out) = next.agent_registers(
        Some(ids[2].clone()),
        Sim::agent_info("h2", "cpus:1;mem:1024"),
        Vec::new(),
    );
    assert!(
        format!("{out:?}").contains("marked gone"),
        "a gone agent registered again: {out:?}"
    );
    for i in [0, 1] {
        next.register_agent(
            Some(ids[i].clone()),
            Sim::agent_info(&format!("h{i}"), "cpus:1;mem:1024"),
            Vec::new(),
        );
    }
    let state = next.master.state();
    let agent = |id: &AgentId| state.agents.iter().find(|a| &a.id == id).unwrap();
    assert!(agent(&ids[0]).deactivated);
    assert_eq!(
        agent(&ids[1]).drain.as_ref().map(|d| d.state),
        Some(DrainState::Drained),
        "a drained agent with no tasks is DRAINED once back"
    );
    let (conn, _) = next.framework("f", &[], false, 60_000);
    assert!(
        offers(&next.tick(), conn).is_empty(),
        "deactivated agents offered"
    );
    // The unreachable agent outlives the agent timeout (10 s) and may come back.
    next.advance(std::time::Duration::from_secs(30));
    assert!(next.master.state().unreachable_agents.contains(&ids[3]));
    next.register_agent(
        Some(ids[3].clone()),
        Sim::agent_info("h3", "cpus:1;mem:1024"),
        Vec::new(),
    );
    assert!(!next.master.state().unreachable_agents.contains(&ids[3]));
    assert!(!offers(&next.advance(std::time::Duration::from_secs(1)), conn).is_empty());
}
