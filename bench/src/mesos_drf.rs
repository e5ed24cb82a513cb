//! A baseline allocator that follows Mesos' HierarchicalDRF allocation loop as Mesos 1.11
//! runs it (`src/master/allocator/mesos/hierarchical.cpp`, `__allocate`, stage 2, and
//! `sorter/drf/sorter.cpp`), for the benches to time Fleet's allocator against in the same
//! run. It is deliberately not optimised beyond what Mesos does:
//!
//! - every cycle walks every activated agent (shuffled; here rotated, to stay
//!   deterministic);
//! - per agent, the role sorter is asked for its order, then per role the framework
//!   sorter; a sorter recomputes every client's dominant share and re-sorts when it is
//!   dirty (after any allocation or recovery), else returns its cached order, as
//!   `DRFSorter::sort` does;
//! - per framework: suppressed roles are skipped, the agent's available resources (kept
//!   up to date, as Mesos' `Slave::available`) allocatable to the role are copied, and the offer filters of (framework, role,
//!   agent) are checked one by one (`isFiltered`: a refused-offer filter hides the offer
//!   when the refused resources contain it);
//! - ids and names are strings in hash maps, as Mesos keys its maps by protobuf ids.
//!
//! Only what the benchmark workloads use is here: one role per framework, no quota (stage
//! 1 is empty without quotas), no reservations beyond what the resources carry.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use fleet_master::allocator::sorter::Quantities;
use fleet_master::allocator::{Allocation, AllocatorConfig};
use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

use crate::BenchError;

#[derive(Debug)]
struct Slave {
    allocated: Resources,
    /// `total - allocated`, kept up to date as Mesos' `Slave::available` is
    /// (`updateAvailable`), so the loop copies it rather than computing it.
    available: Resources,
    activated: bool,
    /// The resources of the last refusal on this agent, shared by the filters that refuse
    /// the same (Mesos copies them into each filter; sharing keeps the per-filter work and
    /// saves only memory, so large grids fit on a small machine).
    last_refused: Option<Rc<Resources>>,
}

#[derive(Debug)]
struct RefusedFilter {
    resources: Rc<Resources>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Framework {
    role: String,
    suppressed: bool,
    /// role -> agent -> filters, as `Framework::offerFilters` in Mesos.
    offer_filters: HashMap<String, HashMap<String, Vec<RefusedFilter>>>,
}

#[derive(Debug, Default)]
struct SorterClient {
    allocated: Quantities,
    allocations: u64,
    share: f64,
}

/// Mesos' DRFSorter: shares recomputed for every client on `sort` when dirty.
#[derive(Debug, Default)]
struct DrfSorter {
    clients: HashMap<String, SorterClient>,
    weights: HashMap<String, f64>,
    sorted: Vec<String>,
    dirty: bool,
}

impl DrfSorter {
    fn add(&mut self, client: &str) {
        self.clients.entry(client.to_owned()).or_default();
        self.dirty = true;
    }

    fn allocated(&mut self, client: &str, quantities: &Quantities) {
        let entry = self.clients.entry(client.to_owned()).or_default();
        entry.allocated.add(quantities);
        entry.allocations += 1;
        self.dirty = true;
    }

    fn unallocated(&mut self, client: &str, quantities: &Quantities) {
        if let Some(entry) = self.clients.get_mut(client) {
            entry.allocated.subtract(quantities);
        }
        self.dirty = true;
    }

    fn sort(&mut self, total: &Quantities) -> Vec<String> {
        if self.dirty {
            for (name, client) in &mut self.clients {
                let weight = self.weights.get(name).copied().unwrap_or(1.0);
                client.share = client.allocated.dominant_share(total) / weight;
            }
            let mut keyed: Vec<(&String, &SorterClient)> = self.clients.iter().collect();
            keyed.sort_by(|a, b| {
                a.1.share
                    .total_cmp(&b.1.share)
                    .then(a.1.allocations.cmp(&b.1.allocations))
                    .then_with(|| a.0.cmp(b.0))
            });
            self.sorted = keyed.into_iter().map(|(name, _)| name.clone()).collect();
            self.dirty = false;
        }
        self.sorted.clone()
    }
}

/// The baseline allocator. See the module documentation.
#[derive(Debug)]
pub struct MesosDrf {
    config: AllocatorConfig,
    slaves: HashMap<String, Slave>,
    /// Agent ids in id order (Mesos walks its `slaves` hashmap in hash order, then
    /// shuffles; the order is the one Fleet's allocator uses, so both make the same offers).
    slave_ids: Vec<String>,
    frameworks: HashMap<String, Framework>,
    role_sorter: DrfSorter,
    framework_sorters: HashMap<String, DrfSorter>,
    total: Quantities,
    cycles: u64,
}

impl MesosDrf {
    pub fn new(config: AllocatorConfig) -> Self {
        Self {
            config,
            slaves: HashMap::new(),
            slave_ids: Vec::new(),
            frameworks: HashMap::new(),
            role_sorter: DrfSorter::default(),
            framework_sorters: HashMap::new(),
            total: Quantities::default(),
            cycles: 0,
        }
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    pub fn add_agent(&mut self, id: &AgentId, total: Resources) {
        self.total.add(&Quantities::of(&total));
        let id_text = id.to_string();
        let at = self.slave_ids.partition_point(|s| *s < id_text);
        self.slave_ids.insert(at, id_text);
        self.slaves.insert(
            id.to_string(),
            Slave {
                available: total,
                allocated: Resources::new(),
                activated: true,
                last_refused: None,
            },
        );
    }

    pub fn add_framework(&mut self, id: &FrameworkId, role: &str) {
        self.frameworks.insert(
            id.to_string(),
            Framework {
                role: role.to_owned(),
                ..Framework::default()
            },
        );
        self.role_sorter.add(role);
        self.framework_sorters
            .entry(role.to_owned())
            .or_default()
            .add(id.as_str());
    }

    /// Mesos' `isAllocatable` with its default minimums.
    fn allocatable(&self, resources: &Resources) -> bool {
        !resources.is_empty()
            && (resources.cpus() >= self.config.min_allocatable_cpus
                || resources.mem_mb() >= self.config.min_allocatable_mem_mb)
    }

    fn is_filtered(
        &self,
        framework: &Framework,
        role: &str,
        slave: &str,
        offer: &Resources,
        now: Instant,
    ) -> bool {
        framework
            .offer_filters
            .get(role)
            .and_then(|by_slave| by_slave.get(slave))
            .is_some_and(|filters| {
                filters
                    .iter()
                    .any(|f| now < f.expires && f.resources.contains(offer))
            })
    }

    /// One allocation cycle over every agent, as `__allocate` stage 2.
    pub fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        let mut offers = Vec::new();
        let mut order = self.slave_ids.clone();
        if !order.is_empty() {
            let start = (self.cycles % order.len() as u64) as usize;
            order.rotate_left(start);
        }
        self.cycles += 1;
        for slave_id in &order {
            let Some(slave) = self.slaves.get(slave_id) else {
                continue;
            };
            if !slave.activated {
                continue;
            }
            for role in self.role_sorter.sort(&self.total) {
                let Some(sorter) = self.framework_sorters.get_mut(&role) else {
                    continue;
                };
                for framework_id in sorter.sort(&self.total) {
                    let Some(framework) = self.frameworks.get(&framework_id) else {
                        continue;
                    };
                    if framework.suppressed || framework.role != role {
                        continue;
                    }
                    let Some(slave) = self.slaves.get(slave_id) else {
                        break;
                    };
                    let available = slave.available.allocatable_to(&role);
                    if !self.allocatable(&available) {
                        continue;
                    }
                    if self.is_filtered(framework, &role, slave_id, &available, now) {
                        continue;
                    }
                    let quantities = Quantities::of(&available);
                    if let Some(slave) = self.slaves.get_mut(slave_id) {
                        slave.allocated.add(&available);
                        slave.available.subtract(&available);
                    }
                    self.role_sorter.allocated(&role, &quantities);
                    if let Some(sorter) = self.framework_sorters.get_mut(&role) {
                        sorter.allocated(&framework_id, &quantities);
                    }
                    offers.push(Allocation {
                        framework_id: FrameworkId::new(framework_id.as_str()),
                        role: role.clone(),
                        agent_id: AgentId::new(slave_id.as_str()),
                        resources: available,
                    });
                }
            }
        }
        offers
    }

    /// DECLINE with a refusal of `refuse` (Mesos' `max(refuse, allocation interval)`).
    pub fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        let refuse = refuse
            .unwrap_or(self.config.default_refuse)
            .max(self.config.allocation_interval);
        let Some(slave) = self.slaves.get_mut(agent.as_str()) else {
            return;
        };
        let shared = match &slave.last_refused {
            Some(last) if **last == *resources => last.clone(),
            _ => {
                let fresh = Rc::new(resources.clone());
                slave.last_refused = Some(fresh.clone());
                fresh
            }
        };
        let Some(fw) = self.frameworks.get_mut(framework.as_str()) else {
            return;
        };
        let role = fw.role.clone();
        fw.offer_filters
            .entry(role)
            .or_default()
            .entry(agent.to_string())
            .or_default()
            .push(RefusedFilter {
                resources: shared,
                expires: now + refuse,
            });
    }

    /// Gives back resources held by `framework` on `agent`.
    pub fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), BenchError> {
        let Some(slave) = self.slaves.get_mut(agent.as_str()) else {
            return Ok(());
        };
        slave.allocated = slave.allocated.checked_sub(resources).ok_or_else(|| {
            BenchError::Option(format!(
                "baseline: recovering {resources} on {agent}, which holds only {}",
                slave.allocated
            ))
        })?;
        slave.available.add(resources);
        let Some(role) = self
            .frameworks
            .get(framework.as_str())
            .map(|f| f.role.clone())
        else {
            return Ok(());
        };
        let quantities = Quantities::of(resources);
        self.role_sorter.unallocated(&role, &quantities);
        if let Some(sorter) = self.framework_sorters.get_mut(&role) {
            sorter.unallocated(framework.as_str(), &quantities);
        }
        Ok(())
    }
}
