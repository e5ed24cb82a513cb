//! Offers: turning the allocator's allocations into OFFERS events, and taking offers back
//! (DECLINE, rescinds when an agent or framework goes away, offer timeouts).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, OfferId};
use fleet_proto::messages::scheduler::{Event, Filters, Offer};
use fleet_proto::resources::Resources;

use super::records::OfferRecord;
use super::{Master, Output};

/// The refusal a framework asked for, capped at `max`; None when it sent no filters or
/// an unusable number (the allocator's default applies then).
pub(super) fn refusal(filters: Option<Filters>, max: Duration) -> Option<Duration> {
    let seconds = filters?.refuse_seconds;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds.min(max.as_secs_f64())).unwrap_or(max))
}

impl Master {
    /// Runs an allocation cycle (all agents, or those with something new) and sends the
    /// resulting offers, one OFFERS event per framework.
    pub(super) fn allocate(&mut self, full: bool, now: Instant, out: &mut Vec<Output>) {
        // The one clock read of the core: how long allocation takes, for /metrics only.
        let started = std::time::Instant::now();
        let allocations = if full {
            self.allocator.allocate_parallel(now)
        } else {
            let agents: Vec<AgentId> = self.allocate_agents.iter().cloned().collect();
            self.allocator.allocate_agents(&agents, now)
        };
        self.run_times.record(started.elapsed());
        self.allocate_all = false;
        self.allocate_agents.clear();
        self.counters.allocation_cycles += 1;
        let mut by_framework: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for allocation in allocations {
            let framework_connected = self
                .frameworks
                .get(&allocation.framework_id)
                .is_some_and(|f| f.conn.is_some());
            let agent = self
                .agents
                .get(&allocation.agent_id)
                .filter(|a| a.is_connected());
            let Some(agent) = agent.filter(|_| framework_connected) else {
                self.recover(
                    &allocation.framework_id,
                    Some(&allocation.role),
                    &allocation.agent_id,
                    &allocation.resources,
                );
                continue;
            };
            let id = OfferId {
                shard: 0,
                seq: self.next_offer_seq,
            };
            self.next_offer_seq += 1;
            let offer = Offer {
                id,
                framework_id: allocation.framework_id.clone(),
                agent_id: allocation.agent_id.clone(),
                hostname: agent.info.hostname.clone(),
                role: allocation.role,
                resources: allocation.resources,
                attributes: agent.info.attributes.clone(),
            };
            if let Some(agent) = self.agents.get_mut(&allocation.agent_id) {
                agent.offers.insert(id);
            }
            if let Some(framework) = self.frameworks.get_mut(&allocation.framework_id) {
                framework.offers.insert(id);
            }
            self.offers.insert(
                id,
                OfferRecord {
                    offer: offer.clone(),
                    expires: self.config.offer_timeout.and_then(|t| now.checked_add(t)),
                },
            );
            by_framework
                .entry(allocation.framework_id)
                .or_default()
                .push(offer);
        }
        for (framework_id, offers) in by_framework {
            self.counters.offers_sent += offers.len() as u64;
            self.send_to_framework(&framework_id, Event::Offers { offers }, out);
        }
    }

    /// Gives resources back to the allocator; a mismatch is a bug worth a log line, never
    /// a reason to stop.
    /// Gives resources back to the allocator, taken from `role` first when known (the
    /// role they were offered in), so that a multi-role framework's roles are credited
    /// what they were charged.
    pub(super) fn recover(
        &mut self,
        framework: &FrameworkId,
        role: Option<&str>,
        agent: &AgentId,
        resources: &Resources,
    ) {
        if let Err(e) = self.allocator.recover_in(framework, role, agent, resources) {
            tracing::error!("{e}");
        }
    }

    /// Removes an offer from the books (not from the allocator).
    pub(super) fn take_offer(&mut self, id: &OfferId) -> Option<OfferRecord> {
        let record = self.offers.remove(id)?;
        if let Some(agent) = self.agents.get_mut(&record.offer.agent_id) {
            agent.offers.remove(id);
        }
        if let Some(framework) = self.frameworks.get_mut(&record.offer.framework_id) {
            framework.offers.remove(id);
        }
        Some(record)
    }

    /// Takes back an offer: RESCIND to its framework, and (`recover`) its resources back to
    /// the allocator.
    fn rescind(&mut self, id: &OfferId, recover: bool, out: &mut Vec<Output>) {
        let Some(record) = self.take_offer(id) else {
            return;
        };
        self.counters.offers_rescinded += 1;
        self.send_to_framework(
            &record.offer.framework_id,
            Event::Rescind { offer_id: *id },
            out,
        );
        if recover {
            self.recover(
                &record.offer.framework_id,
                Some(&record.offer.role),
                &record.offer.agent_id,
                record.resources(),
            );
        }
    }

    /// Rescinds every offer on an agent (it went away or reconnected).
    pub(super) fn rescind_agent_offers(
        &mut self,
        agent: &AgentId,
        recover: bool,
        out: &mut Vec<Output>,
    ) {
        let ids: Vec<OfferId> = self
            .agents
            .get(agent)
            .map(|a| a.offers.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.rescind(&id, recover, out);
        }
    }

    /// Takes back a framework's offers without telling it (it disconnected or failed over).
    pub(super) fn recover_framework_offers(&mut self, framework: &FrameworkId) {
        let ids: Vec<OfferId> = self
            .frameworks
            .get(framework)
            .map(|f| f.offers.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(record) = self.take_offer(&id) {
                self.recover(
                    framework,
                    Some(&record.offer.role),
                    &record.offer.agent_id,
                    record.resources(),
                );
                self.allocate_agents.insert(record.offer.agent_id);
            }
        }
    }

    pub(super) fn expire_offers(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.config.offer_timeout.is_none() {
            return;
        }
        let expired: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, r)| r.expires.is_some_and(|e| now >= e))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::debug!(offer = %id, "offer timed out");
            self.rescind(&id, true, out);
        }
    }

    /// DECLINE: the offers' resources go back, hidden from this framework on those agents
    /// for the refusal asked (Mesos: 5 s by default). Unknown offers are ignored, as in Mesos.
    pub(super) fn decline(
        &mut self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
        filters: Option<Filters>,
        now: Instant,
    ) {
        let refuse = refusal(filters, self.config.max_refuse);
        for id in offer_ids {
            if self
                .offers
                .get(id)
                .is_none_or(|r| &r.offer.framework_id != framework)
            {
                tracing::debug!(offer = %id, framework = %framework, "DECLINE of an unknown offer ignored");
                continue;
            }
            let Some(record) = self.take_offer(id) else {
                continue;
            };
            let agent = &record.offer.agent_id;
            self.allocator
                .decline(framework, agent, record.resources(), refuse, now);
            self.recover(
                framework,
                Some(&record.offer.role),
                agent,
                record.resources(),
            );
            self.counters.offers_declined += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_capped_and_checked() {
        let max = Duration::from_secs(100);
        assert_eq!(refusal(None, max), None);
        assert_eq!(
            refusal(
                Some(Filters {
                    refuse_seconds: 2.5
                }),
                max
            ),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            refusal(
                Some(Filters {
                    refuse_seconds: 1e300
                }),
                max
            ),
            Some(max)
        );
        assert_eq!(
            refusal(
                Some(Filters {
                    refuse_seconds: f64::NAN
                }),
                max
            ),
            None
        );
        assert_eq!(
            refusal(
                Some(Filters {
                    refuse_seconds: -1.0
                }),
                max
            ),
            None
        );
    }
}
