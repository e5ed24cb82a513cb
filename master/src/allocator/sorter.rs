//! Dominant Resource Fairness ordering: who, among roles (or among the frameworks of one
//! role), is furthest below its fair share and should be offered resources next.
//!
//! A client's dominant share is the largest, over all scalar resources, of its allocation
//! divided by the cluster total of that resource, divided by the client's weight. Clients
//! sort by that share, then by how many allocations they have received, then by key, as in
//! Mesos' DRF sorter. The sorter only knows quantities (name -> milli-units); it never sees
//! agents, reservations or ranges.

use std::collections::{BTreeMap, BTreeSet};

use fleet_proto::resources::{Resources, Value};

/// Scalar amounts by resource name, in milli-units; the only view of resources that
/// fairness needs. Ranges and sets (ports) carry no share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantities(BTreeMap<String, i64>);

impl Quantities {
    /// The scalar part of `resources`, summed by name over roles.
    pub fn of(resources: &Resources) -> Self {
        let mut quantities = Self::default();
        for resource in resources.iter() {
            if let Value::Scalar(value) = &resource.value {
                let entry = quantities.0.entry(resource.name.clone()).or_default();
                *entry = entry.saturating_add(value.milli());
            }
        }
        quantities
    }

    /// The scalar part of the unreserved entries of `resources`.
    pub fn of_unreserved(resources: &Resources) -> Self {
        let mut quantities = Self::default();
        for resource in resources.iter().filter(|r| !r.is_reserved()) {
            if let Value::Scalar(value) = &resource.value {
                let entry = quantities.0.entry(resource.name.clone()).or_default();
                *entry = entry.saturating_add(value.milli());
            }
        }
        quantities
    }

    /// Sets `name` to `milli` (dropping it at zero).
    pub fn set(&mut self, name: &str, milli: i64) {
        if milli == 0 {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_owned(), milli);
        }
    }

    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or_default()
    }

    pub fn add(&mut self, other: &Quantities) {
        for (name, milli) in &other.0 {
            let entry = self.0.entry(name.clone()).or_default();
            *entry = entry.saturating_add(*milli);
        }
    }

    /// Subtracts `other`, never going below zero, and drops names that reach zero.
    pub fn subtract(&mut self, other: &Quantities) {
        for (name, milli) in &other.0 {
            if let Some(have) = self.0.get_mut(name) {
                *have = (*have - milli).max(0);
                if *have == 0 {
                    self.0.remove(name);
                }
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        self.0.values().all(|milli| *milli == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(name, milli)| (name.as_str(), *milli))
    }

    /// The largest fraction `self[name] / total[name]` over the names in `total`.
    pub fn dominant_share(&self, total: &Quantities) -> f64 {
        total
            .0
            .iter()
            .filter(|(_, total)| **total > 0)
            .map(|(name, total)| self.get(name) as f64 / *total as f64)
            .fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, Default)]
struct Client {
    allocated: Quantities,
    /// How many times this client was allocated to; a tie-breaker that spreads offers
    /// among clients with equal shares (never decremented, as in Mesos).
    allocations: u64,
    /// Its place in the order: the bits of its weighted share (non-negative, so they
    /// order as the numbers do) and its allocation count.
    key: (u64, u64),
}

/// Clients (role names or framework ids) ordered by weighted dominant share.
///
/// The order is kept as a tree, updated as allocations change: one allocation moves one
/// client (O(log n)), and the first eligible client is found by walking the tree from the
/// least share, without sorting or copying the others. When the cluster total (every
/// share's denominator) changes, the tree is rebuilt at the next read.
#[derive(Debug, Clone)]
pub struct DrfSorter<K: Ord + Clone> {
    clients: BTreeMap<K, Client>,
    /// Weights outlive clients: an operator may weigh a role before any framework uses it.
    weights: BTreeMap<K, f64>,
    /// The denominator the keys were computed with.
    total: Quantities,
    order: BTreeSet<(u64, u64, K)>,
    /// `order` as a slice, for [`DrfSorter::sort`]; rebuilt when stale.
    sorted: Vec<K>,
    dirty: bool,
}

impl<K: Ord + Clone> Default for DrfSorter<K> {
    fn default() -> Self {
        Self {
            clients: BTreeMap::new(),
            weights: BTreeMap::new(),
            total: Quantities::default(),
            order: BTreeSet::new(),
            sorted: Vec::new(),
            dirty: true,
        }
    }
}

impl<K: Ord + Clone> DrfSorter<K> {
    fn key_of(&self, client: &K, entry: &Client) -> (u64, u64) {
        let share = entry.allocated.dominant_share(&self.total) / self.weight(client);
        (share.max(0.0).to_bits(), entry.allocations)
    }

    /// Recomputes `client`'s place after its allocation or weight changed.
    fn reposition(&mut self, client: &K) {
        let Some(entry) = self.clients.get(client) else {
            return;
        };
        let old = entry.key;
        let new = self.key_of(client, entry);
        if old != new || !self.order.contains(&(old.0, old.1, client.clone())) {
            self.order.remove(&(old.0, old.1, client.clone()));
            self.order.insert((new.0, new.1, client.clone()));
            if let Some(entry) = self.clients.get_mut(client) {
                entry.key = new;
            }
        }
        self.dirty = true;
    }

    /// Brings the order up to date with the cluster `total`.
    pub fn refresh(&mut self, total: &Quantities) {
        if self.total == *total {
            return;
        }
        self.total = total.clone();
        let keys: Vec<(K, (u64, u64))> = self
            .clients
            .iter()
            .map(|(k, c)| (k.clone(), self.key_of(k, c)))
            .collect();
        self.order.clear();
        for (client, key) in keys {
            self.order.insert((key.0, key.1, client.clone()));
            if let Some(entry) = self.clients.get_mut(&client) {
                entry.key = key;
            }
        }
        self.dirty = true;
    }

    /// Adds `client` with no allocation, if it is not there yet.
    pub fn add(&mut self, client: &K) {
        if !self.clients.contains_key(client) {
            self.clients.insert(client.clone(), Client::default());
            self.order.insert((0.0f64.to_bits(), 0, client.clone()));
            self.dirty = true;
        }
    }

    /// Forgets `client` and whatever it had allocated.
    pub fn remove(&mut self, client: &K) {
        if let Some(entry) = self.clients.remove(client) {
            self.order
                .remove(&(entry.key.0, entry.key.1, client.clone()));
        }
        self.dirty = true;
    }

    /// The cluster total changed: the order is rebuilt at the next read (which passes the
    /// new total).
    pub fn invalidate(&mut self) {
        self.dirty = true;
    }

    pub fn contains(&self, client: &K) -> bool {
        self.clients.contains_key(client)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn clients(&self) -> impl Iterator<Item = &K> {
        self.clients.keys()
    }

    /// Weight of `client`: 1.0 unless set. Callers validate weights (finite, > 0).
    pub fn weight(&self, client: &K) -> f64 {
        self.weights.get(client).copied().unwrap_or(1.0)
    }

    /// Every weight that was set, whether or not its client is here.
    pub fn weights(&self) -> impl Iterator<Item = (&K, f64)> {
        self.weights.iter().map(|(k, w)| (k, *w))
    }

    pub fn set_weight(&mut self, client: &K, weight: f64) {
        self.weights.insert(client.clone(), weight);
        self.reposition(client);
    }

    /// Records an allocation to `client`, adding the client if needed.
    pub fn allocated(&mut self, client: &K, quantities: &Quantities) {
        self.add(client);
        if let Some(entry) = self.clients.get_mut(client) {
            entry.allocated.add(quantities);
            entry.allocations += 1;
        }
        self.reposition(client);
    }

    /// Records that `client` gave `quantities` back (saturating at zero).
    pub fn unallocated(&mut self, client: &K, quantities: &Quantities) {
        if let Some(entry) = self.clients.get_mut(client) {
            entry.allocated.subtract(quantities);
        }
        self.reposition(client);
    }

    /// What `client` holds now; zero for an unknown client.
    pub fn allocation(&self, client: &K) -> Quantities {
        self.clients
            .get(client)
            .map(|c| c.allocated.clone())
            .unwrap_or_default()
    }

    /// How many allocations `client` received (the sort's tie-breaker).
    pub fn allocation_count(&self, client: &K) -> u64 {
        self.clients
            .get(client)
            .map(|c| c.allocations)
            .unwrap_or_default()
    }

    /// Weighted dominant share of `client` against the cluster `total`.
    pub fn share(&self, client: &K, total: &Quantities) -> f64 {
        self.clients
            .get(client)
            .map(|c| c.allocated.dominant_share(total) / self.weight(client))
            .unwrap_or_default()
    }

    /// The clients in order, the one furthest below its fair share first, as of the last
    /// [`DrfSorter::refresh`].
    pub fn ordered(&self) -> impl Iterator<Item = &K> {
        self.order.iter().map(|(_, _, k)| k)
    }

    /// All clients in order against `total`, as a slice (rebuilt only when the order
    /// changed).
    pub fn sort(&mut self, total: &Quantities) -> &[K] {
        self.refresh(total);
        if self.dirty {
            self.sorted = self.order.iter().map(|(_, _, k)| k.clone()).collect();
            self.dirty = false;
        }
        &self.sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, i64)]) -> Quantities {
        Quantities(pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect())
    }

    #[test]
    fn dominant_share_is_the_largest_fraction() {
        let total = q(&[("cpus", 10_000), ("mem", 1_000_000)]);
        let alloc = q(&[("cpus", 1_000), ("mem", 500_000)]);
        assert!((alloc.dominant_share(&total) - 0.5).abs() < 1e-12);
        assert_eq!(Quantities::default().dominant_share(&total), 0.0);
    }

    #[test]
    fn sorts_by_share_then_count_then_name() {
        let total = q(&[("cpus", 10_000)]);
        let mut sorter = DrfSorter::<String>::default();
        for name in ["c", "b", "a"] {
            sorter.add(&name.to_string());
        }
        assert_eq!(sorter.sort(&total), ["a", "b", "c"]);
        sorter.allocated(&"a".to_string(), &q(&[("cpus", 2_000)]));
        sorter.allocated(&"b".to_string(), &q(&[("cpus", 1_000)]));
        assert_eq!(sorter.sort(&total), ["c", "b", "a"]);
        // Equal shares: fewer allocations first.
        sorter.allocated(&"c".to_string(), &q(&[("cpus", 1_000)]));
        sorter.allocated(&"c".to_string(), &q(&[("cpus", 0)]));
        assert_eq!(sorter.sort(&total), ["b", "c", "a"]);
    }

    #[test]
    fn weight_divides_share() {
        let total = q(&[("cpus", 10_000)]);
        let mut sorter = DrfSorter::<String>::default();
        let (a, b) = ("a".to_string(), "b".to_string());
        sorter.set_weight(&b, 3.0);
        sorter.allocated(&a, &q(&[("cpus", 2_000)]));
        sorter.allocated(&b, &q(&[("cpus", 3_000)]));
        assert!((sorter.share(&b, &total) - 0.1).abs() < 1e-12);
        assert_eq!(sorter.sort(&total), ["b", "a"]);
        sorter.unallocated(&b, &q(&[("cpus", 9_000)]));
        assert!(sorter.allocation(&b).is_zero());
    }
}
