//! Refusal filters: resources a framework declined on an agent stay hidden from that
//! framework on that agent until the filter expires or the framework revives.
//!
//! As in Mesos, a filter hides an offer only when the refused resources contain everything
//! that would be offered now: once more becomes free on the agent (a task ended), the
//! framework sees the agent again before the filter expires.
//!
//! Layout, built for fleets where every framework declines every agent: frameworks are
//! numbered, and on each agent the filters that refuse the same resources until the same
//! moment form one group holding a bitset of frameworks. Expiry is rounded up to a grid
//! (the allocation interval, or 1/64 of the refusal when that is longer), so declines made
//! in successive cycles land in the same group: a cluster where 10,000 frameworks refused
//! an agent holds one or two 1.25 KB bitsets for it, not 10,000 entries. A refusal thus
//! lasts up to one grid step longer than asked; full cycles run once per allocation
//! interval anyway, so only refusals longer than 64 intervals see the difference (at most
//! 1/64 of their length).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

/// The longest refusal Mesos accepts (`Filters.refuse_seconds` is capped at 365 days).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A refusal lasts at most this fraction longer than asked (see the module docs).
const GRID_FRACTION: u32 = 64;

/// A set of framework numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameworkSet(Vec<u64>);

impl FrameworkSet {
    pub fn insert(&mut self, index: u32) {
        let (word, bit) = ((index / 64) as usize, index % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    pub fn remove(&mut self, index: u32) {
        let (word, bit) = ((index / 64) as usize, index % 64);
        if let Some(w) = self.0.get_mut(word) {
            *w &= !(1 << bit);
        }
    }

    pub fn contains(&self, index: u32) -> bool {
        let (word, bit) = ((index / 64) as usize, index % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn union_with(&mut self, other: &FrameworkSet) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w |= o;
        }
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &FrameworkSet) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.0.get(i).copied().unwrap_or(0) == 0)
    }
}

#[derive(Debug, Clone)]
struct Group {
    resources: Resources,
    expires: Instant,
    frameworks: FrameworkSet,
}

/// Active refusals, by agent, grouped by what they refuse and until when.
#[derive(Debug, Clone, Default)]
pub struct RefusalFilters {
    /// Framework ids and their numbers; numbers of removed frameworks are reused.
    numbers: HashMap<FrameworkId, u32>,
    free: Vec<u32>,
    next_number: u32,
    by_agent: HashMap<AgentId, Vec<Group>>,
    /// The origin of the expiry grid: the first moment a filter was added.
    origin: Option<Instant>,
    /// The earliest expiry of any filter (or earlier): [`RefusalFilters::expire`] scans
    /// nothing before then, so long refusals cost nothing per cycle.
    next_expiry: Option<Instant>,
}

impl RefusalFilters {
    /// The number of `framework`, assigned on first use.
    pub fn number(&mut self, framework: &FrameworkId) -> u32 {
        if let Some(n) = self.numbers.get(framework) {
            return *n;
        }
        let n = self.free.pop().unwrap_or_else(|| {
            self.next_number += 1;
            self.next_number - 1
        });
        self.numbers.insert(framework.clone(), n);
        n
    }

    /// The number of `framework`, if it has one.
    pub fn number_of(&self, framework: &FrameworkId) -> Option<u32> {
        self.numbers.get(framework).copied()
    }

    /// `expires` rounded up to the grid of a refusal of `duration` (see the module docs).
    fn on_grid(&mut self, expires: Instant, duration: Duration, interval: Duration) -> Instant {
        let origin = *self.origin.get_or_insert(expires - duration);
        let step = interval.max(duration / GRID_FRACTION);
        let Some(offset) = expires.checked_duration_since(origin) else {
            return expires;
        };
        if step.is_zero() {
            return expires;
        }
        let steps = offset.as_nanos().div_ceil(step.as_nanos());
        let rounded = step.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX));
        origin.checked_add(rounded).unwrap_or(expires)
    }

    /// Hides `resources` on `agent` from `framework` until `now + duration` (rounded up to
    /// the grid for refusals of that length, given the allocation `interval`).
    pub fn add(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        now: Instant,
        duration: Duration,
        interval: Duration,
    ) {
        self.add_many(
            std::slice::from_ref(framework),
            agent,
            resources,
            now,
            duration,
            interval,
        );
    }

    /// [`RefusalFilters::add`] for several frameworks refusing the same resources on one
    /// agent at once (one group lookup for all of them).
    pub fn add_many(
        &mut self,
        frameworks: &[FrameworkId],
        agent: &AgentId,
        resources: &Resources,
        now: Instant,
        duration: Duration,
        interval: Duration,
    ) {
        let mut set = FrameworkSet::default();
        for framework in frameworks {
            set.insert(self.number(framework));
        }
        self.add_set(&set, agent, resources, now, duration, interval);
    }

    /// [`RefusalFilters::add_many`] for frameworks already numbered (see
    /// [`RefusalFilters::number`]), so that one set serves many agents.
    pub fn add_set(
        &mut self,
        frameworks: &FrameworkSet,
        agent: &AgentId,
        resources: &Resources,
        now: Instant,
        duration: Duration,
        interval: Duration,
    ) {
        let Some(expires) = now.checked_add(duration) else {
            return;
        };
        let expires = self.on_grid(expires, duration, interval);
        let groups = self.by_agent.entry(agent.clone()).or_default();
        match groups
            .iter_mut()
            .find(|g| g.expires == expires && g.resources == *resources)
        {
            Some(group) => group.frameworks.union_with(frameworks),
            None => groups.push(Group {
                resources: resources.clone(),
                expires,
                frameworks: frameworks.clone(),
            }),
        }
        self.next_expiry = Some(self.next_expiry.map_or(expires, |next| next.min(expires)));
    }

    /// Whether `framework` refused, on `agent`, everything in `offerable`, with a filter
    /// that has not expired at `now`.
    pub fn refuses(
        &self,
        framework: &FrameworkId,
        agent: &AgentId,
        offerable: &Resources,
        now: Instant,
    ) -> bool {
        let Some(number) = self.number_of(framework) else {
            return false;
        };
        self.by_agent.get(agent).is_some_and(|groups| {
            groups.iter().any(|g| {
                g.frameworks.contains(number) && now < g.expires && g.resources.contains(offerable)
            })
        })
    }

    /// Every framework that refused all of `offerable` on `agent` with a filter still
    /// active at `now`; `None` when none did.
    pub fn refusing(
        &self,
        agent: &AgentId,
        offerable: &Resources,
        now: Instant,
    ) -> Option<FrameworkSet> {
        let groups = self.by_agent.get(agent)?;
        let mut all: Option<FrameworkSet> = None;
        for g in groups {
            if now < g.expires && g.resources.contains(offerable) {
                all.get_or_insert_with(FrameworkSet::default)
                    .union_with(&g.frameworks);
            }
        }
        all
    }

    /// Drops every filter of `framework` (REVIVE, or the framework went away).
    pub fn clear_framework(&mut self, framework: &FrameworkId) {
        let Some(number) = self.number_of(framework) else {
            return;
        };
        for groups in self.by_agent.values_mut() {
            for g in groups.iter_mut() {
                g.frameworks.remove(number);
            }
            groups.retain(|g| !g.frameworks.is_empty());
        }
        self.by_agent.retain(|_, groups| !groups.is_empty());
    }

    /// Forgets `framework`'s number too (it went away for good); its filters are cleared.
    pub fn forget_framework(&mut self, framework: &FrameworkId) {
        self.clear_framework(framework);
        if let Some(number) = self.numbers.remove(framework) {
            self.free.push(number);
        }
    }

    /// Drops every filter on `agent` (the agent went away).
    pub fn clear_agent(&mut self, agent: &AgentId) {
        self.by_agent.remove(agent);
    }

    /// Drops filters that have expired at `now` and returns the agents that lost one (so
    /// the caller looks at them again). Scans only once the earliest expiry has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<AgentId> {
        let mut touched = Vec::new();
        if self.next_expiry.is_none_or(|next| now < next) {
            return touched;
        }
        let mut next: Option<Instant> = None;
        for (agent, groups) in self.by_agent.iter_mut() {
            let before = groups.len();
            groups.retain(|g| now < g.expires);
            if groups.len() != before {
                touched.push(agent.clone());
            }
            for g in groups.iter() {
                next = Some(next.map_or(g.expires, |n| n.min(g.expires)));
            }
        }
        self.by_agent.retain(|_, groups| !groups.is_empty());
        self.next_expiry = next;
        touched.sort();
        touched
    }

    /// Number of active (framework, agent, refusal) filters, expired or not yet swept.
    pub fn len(&self) -> usize {
        self.by_agent
            .values()
            .flat_map(|groups| groups.iter())
            .map(|g| g.frameworks.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a refusal lasts: Mesos' `max(refuse_seconds, allocation_interval)`, with
/// `default_refuse` when the framework sent none and [`MAX_REFUSE`] as the cap. `None` means
/// no filter at all: the framework asked for a zero refusal.
pub fn refusal_duration(
    refuse: Option<Duration>,
    default_refuse: Duration,
    allocation_interval: Duration,
) -> Option<Duration> {
    let refuse = refuse.unwrap_or(default_refuse).min(MAX_REFUSE);
    if refuse.is_zero() {
        return None;
    }
    Some(refuse.max(allocation_interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn durations_follow_mesos() {
        let five = Duration::from_secs(5);
        assert_eq!(refusal_duration(None, five, SECOND), Some(five));
        assert_eq!(
            refusal_duration(Some(Duration::from_millis(10)), five, SECOND),
            Some(SECOND)
        );
        assert_eq!(refusal_duration(Some(Duration::ZERO), five, SECOND), None);
        assert_eq!(
            refusal_duration(Some(Duration::from_secs(u64::MAX / 2)), five, SECOND),
            Some(MAX_REFUSE)
        );
    }

    #[test]
    fn expiry_and_clearing() {
        let base = Instant::now();
        let five = Duration::from_secs(5);
        let mut filters = RefusalFilters::default();
        let (fw, agent) = (FrameworkId::from("f"), AgentId::from("a"));
        let empty = Resources::new();
        filters.add(&fw, &agent, &empty, base, five, SECOND);
        assert!(filters.refuses(&fw, &agent, &empty, base));
        assert!(!filters.refuses(&fw, &agent, &empty, base + five));
        assert!(!filters.refuses(&FrameworkId::from("g"), &agent, &empty, base));
        assert!(filters.expire(base + Duration::from_secs(4)).is_empty());
        assert_eq!(filters.len(), 1);
        assert_eq!(filters.expire(base + five), vec![agent.clone()]);
        assert!(filters.is_empty());
        filters.add(&fw, &agent, &empty, base, five, SECOND);
        filters.clear_agent(&agent);
        assert!(filters.is_empty());
        filters.add(&fw, &agent, &empty, base, five, SECOND);
        filters.clear_framework(&fw);
        assert!(filters.is_empty());
    }

    #[test]
    fn declines_of_successive_cycles_share_one_group() {
        let base = Instant::now();
        let day = Duration::from_secs(24 * 3600);
        let mut filters = RefusalFilters::default();
        let agent = AgentId::from("a");
        let offered = Resources::parse("cpus:4;mem:4096").unwrap();
        for i in 0..1000u32 {
            let fw = FrameworkId::from(format!("f{i}").as_str());
            // One decline per cycle, a second apart.
            filters.add(&fw, &agent, &offered, base + SECOND * i, day, SECOND);
        }
        assert_eq!(filters.len(), 1000);
        let groups = filters.by_agent[&agent].len();
        assert!(groups <= 2, "{groups} groups for 1,000 declines of one day");
        let refusing = filters
            .refusing(&agent, &offered, base + SECOND * 1000)
            .unwrap();
        assert_eq!(refusing.len(), 1000);
        // No filter ends before it was asked to, nor more than 1/64 of a day later.
        assert!(filters.refuses(&FrameworkId::from("f999"), &agent, &offered, base + day));
        let latest = base + SECOND * 999 + day + day / GRID_FRACTION + SECOND;
        assert!(!filters.refuses(&FrameworkId::from("f999"), &agent, &offered, latest));
    }

    #[test]
    fn a_refusal_covers_only_offers_within_what_was_refused() {
        let base = Instant::now();
        let mut filters = RefusalFilters::default();
        let (fw, agent) = (FrameworkId::from("f"), AgentId::from("a"));
        let small = Resources::parse("cpus:1;mem:128").unwrap();
        let big = Resources::parse("cpus:2;mem:128").unwrap();
        filters.add(&fw, &agent, &small, base, SECOND * 10, SECOND);
        assert!(filters.refuses(&fw, &agent, &small, base));
        assert!(!filters.refuses(&fw, &agent, &big, base));
        assert!(filters.refusing(&agent, &big, base).is_none());
    }

    #[test]
    fn framework_numbers_are_reused_after_forgetting() {
        let mut filters = RefusalFilters::default();
        let a = filters.number(&FrameworkId::from("a"));
        let b = filters.number(&FrameworkId::from("b"));
        assert_ne!(a, b);
        filters.forget_framework(&FrameworkId::from("a"));
        assert_eq!(filters.number(&FrameworkId::from("c")), a);
        assert_eq!(filters.number_of(&FrameworkId::from("a")), None);
    }

    #[test]
    fn framework_sets() {
        let mut s = FrameworkSet::default();
        s.insert(3);
        s.insert(130);
        assert!(s.contains(130) && !s.contains(4));
        let mut t = FrameworkSet::default();
        t.insert(3);
        assert!(t.is_subset(&s) && !s.is_subset(&t));
        t.union_with(&s);
        assert_eq!(t.len(), 2);
        t.remove(130);
        assert_eq!(t.len(), 1);
        assert!(FrameworkSet::default().is_subset(&t));
    }
}
