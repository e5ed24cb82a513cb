//! Mesos' maintenance primitives, the operator's side: a schedule of windows (machines and
//! when they may be unavailable) puts its machines in DRAINING mode; `/machine/down` takes
//! scheduled machines DOWN (their agents are removed, their tasks lost, and agents from
//! them are refused); `/machine/up` brings them back and out of the schedule.
//!
//! Not built: inverse offers and the unavailability in offers, so a DRAINING machine is
//! only a mark operators read in `/maintenance/status`. The schedule and the machines down
//! are written to the registry on every change, as Mesos keeps them.

use std::collections::BTreeSet;

use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::AgentInfo;
use fleet_proto::task::TaskState;

use super::{Master, Output};
use crate::registry::RegistryOp;

/// A machine as the schedule names it: a hostname (compared without case), an IP, or both.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord))]
pub struct MachineId {
    pub hostname: String,
    pub ip: String,
}

impl MachineId {
    /// Checks the names: at least one of them, and an IP that parses.
    pub fn new(hostname: &str, ip: &str) -> Result<Self, String> {
        let hostname = hostname.trim().to_lowercase();
        let ip = ip.trim().to_owned();
        if hostname.is_empty() && ip.is_empty() {
            return Err("a machine needs a \"hostname\" or an \"ip\"".to_owned());
        }
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("machine ip {ip:?} is not an IP address"));
        }
        Ok(MachineId { hostname, ip })
    }

    /// Whether the agent runs on this machine: each name given matches the agent's
    /// hostname and the IP of its HTTP address.
    pub fn hosts(&self, agent: &AgentInfo) -> bool {
        let ip = agent
            .http_address
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        (self.hostname.is_empty() || self.hostname == agent.hostname.to_lowercase())
            && (self.ip.is_empty() || self.ip == ip)
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.hostname.is_empty(), self.ip.is_empty()) {
            (false, false) => write!(f, "{} ({})", self.hostname, self.ip),
            (false, true) => f.write_str(&self.hostname),
            _ => f.write_str(&self.ip),
        }
    }
}

/// Machines and when they may be unavailable (Unix nanoseconds).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Window {
    pub machines: Vec<MachineId>,
    pub start_ns: i64,
    pub duration_ns: i64,
}

/// The schedule and the machines that are down.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Maintenance {
    pub windows: Vec<Window>,
    /// Taken down by the operator; still in the schedule until brought up.
    pub down: BTreeSet<MachineId>,
}

impl Maintenance {
    fn scheduled(&self, machine: &MachineId) -> bool {
        self.windows.iter().any(|w| w.machines.contains(machine))
    }

    /// Scheduled machines that are not down.
    pub fn draining(&self) -> Vec<&MachineId> {
        self.windows
            .iter()
            .flat_map(|w| &w.machines)
            .filter(|m| !self.down.contains(*m))
            .collect()
    }

    /// The down machine the agent runs on, if any.
    pub fn down_machine_of(&self, agent: &AgentInfo) -> Option<&MachineId> {
        self.down.iter().find(|m| m.hosts(agent))
    }
}

/// A list of machines each named once.
fn distinct(machines: &[MachineId]) -> Result<(), String> {
    if machines.is_empty() {
        return Err("no machine given".to_owned());
    }
    let mut seen = BTreeSet::new();
    match machines.iter().find(|m| !seen.insert(*m)) {
        Some(twice) => Err(format!("machine {twice} is listed twice")),
        None => Ok(()),
    }
}

impl Master {
    /// Replaces the schedule (`POST /maintenance/schedule`); an empty one cancels it.
    /// Checked as Mesos checks it: each window has machines and a duration >= 0, each
    /// machine appears once, and every machine that is down stays in it.
    pub(super) fn update_schedule(&mut self, windows: Vec<Window>) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (i, window) in windows.iter().enumerate() {
            if window.machines.is_empty() {
                return Err(format!("window {i} names no machine"));
            }
            if window.duration_ns < 0 {
                return Err(format!(
                    "window {i}: the duration {} ns is negative",
                    window.duration_ns
                ));
            }
            if let Some(twice) = window.machines.iter().find(|m| !seen.insert(*m)) {
                return Err(format!("machine {twice} appears twice in the schedule"));
            }
        }
        if let Some(down) = self.maintenance.down.iter().find(|m| !seen.contains(m)) {
            return Err(format!(
                "machine {down} is down: it stays in the schedule until /machine/up"
            ));
        }
        tracing::info!(windows = windows.len(), "maintenance schedule set");
        self.maintenance.windows = windows;
        self.record_maintenance()
    }

    /// Takes scheduled machines down (`POST /machine/down`): their agents are removed, their
    /// tasks TASK_LOST (TASK_GONE_BY_OPERATOR for partition-aware frameworks), and agents
    /// from them are refused until the machines are up again.
    pub(super) fn machines_down(
        &mut self,
        machines: Vec<MachineId>,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        distinct(&machines)?;
        for machine in &machines {
            if !self.maintenance.scheduled(machine) {
                return Err(format!(
                    "machine {machine} is not in the maintenance schedule"
                ));
            }
            if self.maintenance.down.contains(machine) {
                return Err(format!("machine {machine} is already down"));
            }
        }
        for machine in machines {
            let on_it: Vec<AgentId> = self
                .agents
                .values()
                .filter(|a| machine.hosts(&a.info))
                .map(|a| a.id.clone())
                .collect();
            for id in on_it {
                let message = format!("agent {id} was removed: machine {machine} is down");
                self.evict_agent(&id, &message, TaskState::Lost, out);
                self.deactivated.remove(&id);
                self.drains.remove(&id);
                self.registry_apply(RegistryOp::RemoveAgent { id: id.clone() });
                self.counters.agents_removed += 1;
            }
            tracing::info!(%machine, "machine down for maintenance");
            self.maintenance.down.insert(machine);
        }
        self.record_maintenance()
    }

    /// Brings down machines up (`POST /machine/up`): their agents may register again, and
    /// the machines leave the schedule.
    pub(super) fn machines_up(&mut self, machines: Vec<MachineId>) -> Result<(), String> {
        distinct(&machines)?;
        if let Some(up) = machines
            .iter()
            .find(|m| !self.maintenance.down.contains(*m))
        {
            return Err(format!("machine {up} is not down"));
        }
        for machine in &machines {
            tracing::info!(%machine, "machine up after maintenance");
            self.maintenance.down.remove(machine);
        }
        for window in &mut self.maintenance.windows {
            window.machines.retain(|m| !machines.contains(m));
        }
        self.maintenance.windows.retain(|w| !w.machines.is_empty());
        self.record_maintenance()
    }

    /// Writes the schedule and the machines down to the registry.
    fn record_maintenance(&mut self) -> Result<(), String> {
        let op = RegistryOp::SetMaintenance {
            maintenance: self.maintenance.clone(),
        };
        let what = op.describe();
        self.registry.apply(op).map_err(|e| {
            self.counters.registry_errors += 1;
            format!("applied in this master, but the registry refused to {what}: {e}")
        })
    }

    /// Why an agent may not register: it runs on a machine that is down.
    pub(super) fn down_for_maintenance(&self, info: &AgentInfo) -> Option<String> {
        self.maintenance.down_machine_of(info).map(|machine| {
            format!(
                "machine {machine} is down for maintenance; its agents may register once it \
                 is up (/machine/up)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(hostname: &str, http: &str) -> AgentInfo {
        AgentInfo {
            hostname: hostname.into(),
            http_address: http.into(),
            resources: Default::default(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn machines_are_named_by_hostname_ip_or_both() {
        let agent = info("Node-1", "10.0.0.1:5051");
        assert!(MachineId::new("node-1", "").unwrap().hosts(&agent));
        assert!(MachineId::new("", "10.0.0.1").unwrap().hosts(&agent));
        assert!(MachineId::new("NODE-1", "10.0.0.1").unwrap().hosts(&agent));
        assert!(!MachineId::new("node-1", "10.0.0.2").unwrap().hosts(&agent));
        assert!(!MachineId::new("node-2", "").unwrap().hosts(&agent));
        assert!(MachineId::new("", "").is_err());
        assert!(
            MachineId::new("h", "10.0.0.300")
                .unwrap_err()
                .contains("10.0.0.300")
        );
    }
}
