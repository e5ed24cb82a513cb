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
