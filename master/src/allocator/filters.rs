//! Refusal filters: resources a framework declined on an agent stay hidden from that
//! framework on that agent until the filter expires or the framework revives.
//!
//! As in Mesos, a filter hides an offer only when the refused resources contain everything
//! that would be offered now: once more becomes free on the agent (a task ended), the
//! framework sees the agent again before the filter expires.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

/// The longest refusal Mesos accepts (`Filters.refuse_seconds` is capped at 365 days).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[derive(Debug, Clone)]
struct Refusal {
    resources: Resources,
    expires: Instant,
}

/// Active refusals by framework, then agent.
#[derive(Debug, Clone, Default)]
pub struct RefusalFilters {
    by_framework: BTreeMap<FrameworkId, BTreeMap<AgentId, Vec<Refusal>>>,
    /// The earliest expiry of any filter (or earlier): [`RefusalFilters::expire`] scans
    /// nothing before then, so long refusals cost nothing per cycle.
    next_expiry: Option<Instant>,
}

impl RefusalFilters {
    pub fn add(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        expires: Instant,
    ) {
        self.by_framework
            .entry(framework.clone())
            .or_default()
            .entry(agent.clone())
            .or_default()
            .push(Refusal {
                resources: resources.clone(),
                expires,
            });
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
        self.by_framework
            .get(framework)
            .and_then(|agents| agents.get(agent))
            .is_some_and(|refusals| {
                refusals
                    .iter()
                    .any(|r| now < r.expires && r.resources.contains(offerable))
            })
    }

    /// Drops every filter of `framework` (REVIVE, or the framework went away).
    pub fn clear_framework(&mut self, framework: &FrameworkId) {
        self.by_framework.remove(framework);
    }

    /// Drops every filter on `agent` (the agent went away).
    pub fn clear_agent(&mut self, agent: &AgentId) {
        for agents in self.by_framework.values_mut() {
            agents.remove(agent);
        }
        self.by_framework.retain(|_, agents| !agents.is_empty());
    }

    /// Drops filters that have expired at `now` and returns the agents that lost one (so
    /// the caller looks at them again). Scans only once the earliest expiry has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<AgentId> {
        let mut touched = Vec::new();
        if self.next_expiry.is_none_or(|next| now < next) {
            return touched;
        }
        let mut next: Option<Instant> = None;
        for agents in self.by_framework.values_mut() {
            for (agent, refusals) in agents.iter_mut() {
                let before = refusals.len();
                refusals.retain(|r| now < r.expires);
                if refusals.len() != before {
                    touched.push(agent.clone());
                }
                for r in refusals.iter() {
                    next = Some(next.map_or(r.expires, |n| n.min(r.expires)));
                }
            }
            agents.retain(|_, refusals| !refusals.is_empty());
        }
        self.by_framework.retain(|_, agents| !agents.is_empty());
        self.next_expiry = next;
        touched.sort();
        touched.dedup();
        touched
    }

    /// Number of active filters, expired or not yet swept.
    pub fn len(&self) -> usize {
        self.by_framework
            .values()
            .flat_map(|agents| agents.values())
            .map(Vec::len)
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

    #[test]
    fn durations_follow_mesos() {
        let second = Duration::from_secs(1);
        let five = Duration::from_secs(5);
        assert_eq!(refusal_duration(None, five, second), Some(five));
        assert_eq!(
            refusal_duration(Some(Duration::from_millis(10)), five, second),
            Some(second)
        );
        assert_eq!(refusal_duration(Some(Duration::ZERO), five, second), None);
        assert_eq!(
            refusal_duration(Some(Duration::from_secs(u64::MAX / 2)), five, second),
            Some(MAX_REFUSE)
        );
    }

    #[test]
    fn expiry_and_clearing() {
        let base = Instant::now();
        let mut filters = RefusalFilters::default();
        let (fw, agent) = (FrameworkId::from("f"), AgentId::from("a"));
        let empty = Resources::new();
        filters.add(&fw, &agent, &empty, base + Duration::from_secs(5));
        assert!(filters.refuses(&fw, &agent, &empty, base));
        assert!(!filters.refuses(&fw, &agent, &empty, base + Duration::from_secs(5)));
        assert!(!filters.refuses(&FrameworkId::from("g"), &agent, &empty, base));
        filters.expire(base + Duration::from_secs(4));
        assert_eq!(filters.len(), 1);
        filters.expire(base + Duration::from_secs(5));
        assert!(filters.is_empty());
        filters.add(&fw, &agent, &empty, base + Duration::from_secs(5));
        filters.clear_agent(&agent);
        assert!(filters.is_empty());
        filters.add(&fw, &agent, &empty, base + Duration::from_secs(5));
        filters.clear_framework(&fw);
        assert!(filters.is_empty());
    }
}
