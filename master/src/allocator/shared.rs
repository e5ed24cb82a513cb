//! The table that shards of the allocator share: the cluster's scalar totals, and what each
//! role, and each framework within a role, holds over all shards, as atomic counters.
//!
//! Each shard owns its agents and allocates them in its own loop. To order roles and
//! frameworks by Dominant Resource Fairness it needs everyone's allocations, not only those
//! on its own agents: it reads them here, with relaxed atomic loads, and adds its own
//! allocations here as it makes them (one `fetch_add` per resource name and client). No
//! lock is taken on that path. A lock guards only registration: the first time a resource
//! name or a client (role, or framework in a role) is seen, which happens when an agent or
//! a framework is added, never in a cycle.
//!
//! Each shard caches its DRF order and recomputes it when the table's version (bumped by
//! every change) moved. The order a shard sees can miss the allocation another shard is
//! making at that moment; `docs/ARCHITECTURE.md` bounds what that costs in fairness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleet_proto::ids::FrameworkId;

use super::sorter::Quantities;

/// Distinct scalar resource names the table can count (cpus, mem, disk, gpus and custom
/// ones). An agent with more is refused by a sharded allocator, naming the resource.
pub const MAX_RESOURCE_NAMES: usize = 16;

/// Milli-units of each registered resource name, and how many allocations were made.
#[derive(Debug, Default)]
pub struct Counters {
    milli: [AtomicI64; MAX_RESOURCE_NAMES],
    allocations: AtomicU64,
}

impl Counters {
    pub fn get(&self, slot: usize) -> i64 {
        self.milli[slot].load(Ordering::Relaxed)
    }

    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    fn add(&self, slot: usize, milli: i64) {
        self.milli[slot].fetch_add(milli, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Role(String),
    Framework(String, FrameworkId),
}

#[derive(Debug, Default)]
struct Registry {
    names: Vec<String>,
    clients: HashMap<Client, Arc<Counters>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SharedTable {
    total: Counters,
    /// Unreserved resources over all agents, and how much of them is allocated: what
    /// quota headroom is computed from.
    unreserved_total: Counters,
    unreserved_allocated: Counters,
    /// Bumped after every change of a counter: a shard whose cached order was computed at
    /// an older version sorts again.
    version: AtomicU64,
    /// Names and clients by key, for registration only.
    registry: Mutex<Registry>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "resource '{name}': a sharded allocator counts at most {MAX_RESOURCE_NAMES} distinct scalar resource names"
)]
pub struct TooManyNames {
    pub name: String,
}

impl SharedTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The slot of resource `name`, registering it on first use.
    fn register_name(&self, name: &str) -> Result<usize, TooManyNames> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = registry.names.iter().position(|n| n == name) {
            return Ok(slot);
        }
        if registry.names.len() == MAX_RESOURCE_NAMES {
            return Err(TooManyNames {
                name: name.to_owned(),
            });
        }
        registry.names.push(name.to_owned());
        Ok(registry.names.len() - 1)
    }

    fn client(&self, key: Client) -> Arc<Counters> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.clients.entry(key).or_default().clone()
    }

    /// Drops the counters of `framework` in every role (it was removed from every shard
    /// and holds nothing); shards still holding them keep a valid, zero copy.
    pub fn forget_framework(&self, framework: &FrameworkId) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .clients
            .retain(|key, _| !matches!(key, Client::Framework(_, f) if f == framework));
    }

    /// What `role` (or `framework` in `role`) holds of resource `name` over all shards, in
    /// milli-units; for checks and reports, not for the allocation path (it locks).
    pub fn held(&self, role: &str, framework: Option<&FrameworkId>, name: &str) -> i64 {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = registry.names.iter().position(|n| n == name) else {
            return 0;
        };
        let key = match framework {
            Some(f) => Client::Framework(role.to_owned(), f.clone()),
            None => Client::Role(role.to_owned()),
        };
        registry
            .clients
            .get(&key)
            .map(|c| c.get(slot))
            .unwrap_or_default()
    }

    /// The registered resource names.
    pub fn names(&self) -> Vec<String> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.names.clone()
    }
}

/// One shard's window on the table: its cached slots and counters, and its cached DRF
/// orders.
#[derive(Debug)]
pub(super) struct SharedView {
    table: Arc<SharedTable>,
    slots: HashMap<String, usize>,
    /// The registered slots, for share computations.
    slot_list: Vec<usize>,
    roles: HashMap<String, Arc<Counters>>,
    /// By role, then framework: looked up with borrowed keys, and the counters are read
    /// through the `Arc` without cloning it (a clone would be a contended atomic too).
    frameworks: HashMap<String, HashMap<FrameworkId, Arc<Counters>>>,
    /// The table version the cached orders were computed at, if they are valid.
    sorted_at: Option<u64>,
    role_order: Vec<String>,
}

impl SharedView {
    pub(super) fn new(table: Arc<SharedTable>) -> Self {
        Self {
            table,
            slots: HashMap::new(),
            slot_list: Vec::new(),
            roles: HashMap::new(),
            frameworks: HashMap::new(),
            sorted_at: None,
            role_order: Vec::new(),
        }
    }

    /// Registers the names of `quantities` (adding an agent); fails on too many names.
    pub(super) fn register(&mut self, quantities: &Quantities) -> Result<(), TooManyNames> {
        for (name, _) in quantities.iter() {
            if !self.slots.contains_key(name) {
                let slot = self.table.register_name(name)?;
                self.slots.insert(name.to_owned(), slot);
                self.slot_list.push(slot);
            }
        }
        Ok(())
    }

    /// Registers the counters of `framework` in `role`, and of `role` (a framework
    /// subscribed): after this, charging them takes no lock.
    pub(super) fn register_client(&mut self, framework: &FrameworkId, role: &str) {
        self.ensure_role(role);
        self.ensure_framework(framework, role);
    }

    fn ensure_role(&mut self, role: &str) {
        if !self.roles.contains_key(role) {
            let counters = self.table.client(Client::Role(role.to_owned()));
            self.roles.insert(role.to_owned(), counters);
        }
    }

    fn ensure_framework(&mut self, framework: &FrameworkId, role: &str) {
        let known = self
            .frameworks
            .get(role)
            .is_some_and(|by_id| by_id.contains_key(framework));
        if !known {
            let counters = self
                .table
                .client(Client::Framework(role.to_owned(), framework.clone()));
            self.frameworks
                .entry(role.to_owned())
                .or_default()
                .insert(framework.clone(), counters);
        }
    }

    fn framework_counters(&self, framework: &FrameworkId, role: &str) -> Option<&Counters> {
        self.frameworks
            .get(role)
            .and_then(|by_id| by_id.get(framework))
            .map(|c| &**c)
    }

    /// Forgets this shard's handle on `framework`'s counters in `role`.
    pub(super) fn drop_client(&mut self, framework: &FrameworkId, role: &str) {
        if let Some(by_id) = self.frameworks.get_mut(role) {
            by_id.remove(framework);
            if by_id.is_empty() {
                self.frameworks.remove(role);
            }
        }
    }

    /// Adds (`sign` 1) or removes (`sign` -1) `quantities` to the cluster total.
    pub(super) fn add_total(&mut self, quantities: &Quantities, sign: i64) {
        for (name, milli) in quantities.iter() {
            if let Some(&slot) = self.slots.get(name) {
                self.table.total.add(slot, sign * milli);
            }
        }
        self.table.bump();
    }

    /// Adds (`sign` 1) or removes (`sign` -1) `quantities` of unreserved resources to the
    /// cluster's unreserved total (`allocated` false) or to what is allocated of it.
    pub(super) fn add_unreserved(&mut self, quantities: &Quantities, allocated: bool, sign: i64) {
        let counters = if allocated {
            &self.table.unreserved_allocated
        } else {
            &self.table.unreserved_total
        };
        for (name, milli) in quantities.iter() {
            if let Some(&slot) = self.slots.get(name) {
                counters.add(slot, sign * milli);
            }
        }
    }

    /// Unreserved resources nobody holds, over all shards.
    pub(super) fn unreserved_free(&self) -> Quantities {
        let mut free = Quantities::default();
        for (name, &slot) in &self.slots {
            let milli =
                self.table.unreserved_total.get(slot) - self.table.unreserved_allocated.get(slot);
            free.set(name, milli.max(0));
        }
        free
    }

    /// The cluster's scalar totals over all shards.
    pub(super) fn total_quantities(&self) -> Quantities {
        let mut total = Quantities::default();
        for (name, &slot) in &self.slots {
            total.set(name, self.table.total.get(slot).max(0));
        }
        total
    }

    /// How many allocations `role` received over all shards.
    pub(super) fn role_allocation_count(&self, role: &str) -> u64 {
        self.roles
            .get(role)
            .map(|c| c.allocations())
            .unwrap_or_default()
    }

    /// What `role` holds over all shards.
    pub(super) fn role_quantities(&self, role: &str) -> Quantities {
        let mut held = Quantities::default();
        if let Some(counters) = self.roles.get(role) {
            for (name, &slot) in &self.slots {
                held.set(name, counters.get(slot).max(0));
            }
        }
        held
    }

    /// Charges (`sign` 1) or credits (`sign` -1) `framework` in `role`, and `role`.
    pub(super) fn charge(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        quantities: &Quantities,
        sign: i64,
    ) {
        // Registered when the framework subscribed; this only covers a role it held
        // resources in before (a re-registering agent's tasks).
        self.ensure_role(role);
        self.ensure_framework(framework, role);
        let role_counters = &self.roles[role];
        let Some(framework_counters) = self.framework_counters(framework, role) else {
            return;
        };
        for (name, milli) in quantities.iter() {
            if let Some(&slot) = self.slots.get(name) {
                role_counters.add(slot, sign * milli);
                framework_counters.add(slot, sign * milli);
            }
        }
        if sign > 0 {
            role_counters.allocations.fetch_add(1, Ordering::Relaxed);
            framework_counters
                .allocations
                .fetch_add(1, Ordering::Relaxed);
        }
        self.table.bump();
    }

    /// Largest fraction of the cluster total held, over resource names, divided by weight.
    fn share(&self, counters: &Counters, weight: f64) -> f64 {
        let mut share = 0.0f64;
        for &slot in &self.slot_list {
            let total = self.table.total.get(slot);
            if total > 0 {
                share = share.max(counters.get(slot).max(0) as f64 / total as f64);
            }
        }
        share / weight
    }

    /// The weighted dominant share of `role` over all shards (zero if never seen here).
    pub(super) fn role_share(&self, role: &str, weight: f64) -> f64 {
        self.roles
            .get(role)
            .map(|counters| self.share(counters, weight))
            .unwrap_or_default()
    }

    /// The dominant share of `framework` in `role` over all shards.
    pub(super) fn framework_share(&self, framework: &FrameworkId, role: &str) -> f64 {
        self.framework_counters(framework, role)
            .map(|counters| self.share(counters, 1.0))
            .unwrap_or_default()
    }

    /// Drops the cached orders if anything changed since they were computed.
    fn refresh(&mut self) {
        let version = self.table.version();
        if self.sorted_at != Some(version) {
            self.sorted_at = Some(version);
            self.role_order.clear();
        }
    }

    /// Forgets the cached orders (a weight or a membership changed locally).
    pub(super) fn invalidate(&mut self) {
        self.sorted_at = None;
    }

    /// `roles` in DRF order over all shards: weighted share, allocation count, name.
    pub(super) fn sorted_roles<'a>(
        &mut self,
        roles: impl Iterator<Item = &'a String>,
        weight: impl Fn(&String) -> f64,
    ) -> Vec<String> {
        self.refresh();
        if self.role_order.is_empty() {
            let mut keyed: Vec<(f64, u64, String)> = roles
                .map(|role| match self.roles.get(role) {
                    Some(counters) => (
                        self.share(counters, weight(role)),
                        counters.allocations(),
                        role.clone(),
                    ),
                    None => (0.0, 0, role.clone()),
                })
                .collect();
            sort_keyed(&mut keyed);
            self.role_order = keyed.into_iter().map(|(_, _, role)| role).collect();
        }
        self.role_order.clone()
    }

    /// The DRF keys of the frameworks of `role` (those this shard registered: subscribed
    /// to the role or holding resources in it) over all shards: (share bits, allocation
    /// count, id), ordered as DRF orders them. One pass of atomic loads, no lookups;
    /// callers pick the least eligible with a heap instead of sorting everyone.
    pub(super) fn framework_keys(&self, role: &str) -> Vec<(u64, u64, &FrameworkId)> {
        let Some(members) = self.frameworks.get(role) else {
            return Vec::new();
        };
        members
            .iter()
            .map(|(framework, counters)| {
                (
                    self.share(counters, 1.0).max(0.0).to_bits(),
                    counters.allocations(),
                    framework,
                )
            })
            .collect()
    }
}

fn sort_keyed<K: Ord>(keyed: &mut [(f64, u64, K)]) {
    keyed.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
}
