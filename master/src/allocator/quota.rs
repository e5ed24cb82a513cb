//! Quotas: per role, a guarantee (the least it is allocated whenever the cluster can) and a
//! limit (the most it is ever allocated), over scalar resources, as in Mesos 1.11.
//!
//! - A role's consumption is what it is allocated (offered or in use), its reservations
//!   included once allocated. (Mesos also counts reservations nobody holds yet; here they
//!   count once offered.)
//! - Stage 1 of a cycle, for each agent: roles below their guarantee, in DRF order, are
//!   offered the agent's resources reserved for them and unreserved scalars cut to what
//!   their guarantee still lacks; resources their guarantee does not name come along
//!   within the headroom (next point).
//! - Headroom: the unreserved resources nobody holds must cover what every guarantee
//!   still lacks. In stage 2 (every role, DRF order) unreserved scalars are cut so that
//!   this stays true; a role whose guarantee is unmet and which has no framework keeps its
//!   headroom, as in Mesos.
//! - Limits cut every offer to the role, reserved resources included, so that its
//!   consumption never exceeds the limit.
//!
//! With shards, consumption and the free unreserved resources come from the shared table,
//! so each shard sees the whole cluster's; two shards deciding at the same moment can each
//! hand out the last of the same headroom, by at most one allocation per other shard.

use fleet_proto::resources::{Resource, Resources, Scalar, Value};

use super::sorter::Quantities;
use super::{Allocator, AllocatorError};

/// A role's guarantee and limit, in milli-units by resource name. A name missing from
/// `limit` is not limited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    pub guarantee: Quantities,
    pub limit: Option<Quantities>,
}

impl Quota {
    /// A quota from resources such as `cpus:4;mem:4096` (their scalars; a reservation role
    /// is ignored, quotas are not tied to reservations).
    pub fn new(guarantee: &Resources, limit: Option<&Resources>) -> Self {
        Self {
            guarantee: Quantities::of(guarantee),
            limit: limit.map(Quantities::of),
        }
    }
}

impl Quota {
    /// Checks that no amount is negative and no guarantee exceeds its limit.
    pub fn check(&self, role: &str) -> Result<(), AllocatorError> {
        let invalid = |reason: String| AllocatorError::InvalidQuota {
            role: role.to_owned(),
            reason,
        };
        let amounts = self
            .guarantee
            .iter()
            .chain(self.limit.iter().flat_map(Quantities::iter));
        for (name, milli) in amounts {
            if milli < 0 {
                return Err(invalid(format!("negative amount of '{name}'")));
            }
        }
        if let Some(limit) = &self.limit {
            for (name, milli) in self.guarantee.iter() {
                let cap = limit.iter().find(|(n, _)| *n == name).map(|(_, m)| m);
                if let Some(cap) = cap.filter(|cap| milli > *cap) {
                    return Err(invalid(format!(
                        "guarantee of {} '{name}' exceeds the limit of {}",
                        Scalar::from_milli(milli),
                        Scalar::from_milli(cap)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Which stage of the cycle an offer is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Towards unmet guarantees.
    Guarantee,
    /// Everyone, in DRF order, keeping headroom.
    Fair,
}

/// Keeps at most `caps[name]` of each capped scalar among the entries `capped` selects
/// (taken in order, so reserved and unreserved entries of one name share the cap); other
/// entries pass unchanged.
fn cut(resources: &Resources, caps: &Quantities, capped: impl Fn(&Resource) -> bool) -> Resources {
    let mut left = caps.clone();
    let mut out = Resources::new();
    for resource in resources.iter() {
        let Value::Scalar(value) = &resource.value else {
            out.push(resource.clone());
            continue;
        };
        if !capped(resource) {
            out.push(resource.clone());
            continue;
        }
        let name = resource.name.as_str();
        if !caps.iter().any(|(n, _)| n == name) {
            out.push(resource.clone());
            continue;
        }
        let room = left.get(name).max(0);
        let take = value.milli().min(room);
        if take > 0 {
            left.set(name, room - take);
            let mut piece = resource.clone();
            piece.value = Value::Scalar(Scalar::from_milli(take));
            out.push(piece);
        }
    }
    out
}

/// `a - b` per name of `a`, never below zero; names that reach zero are dropped.
fn lacking(a: &Quantities, b: &Quantities) -> Quantities {
    let mut out = Quantities::default();
    for (name, milli) in a.iter() {
        out.set(name, (milli - b.get(name)).max(0));
    }
    out
}

impl Allocator {
    /// Sets `role`'s quota (replacing any; an empty one removes it). Fails, changing
    /// nothing, if the quota is invalid (see [`Quota::check`]).
    pub fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        quota.check(role)?;
        if quota == Quota::default() {
            self.quotas.remove(role);
        } else {
            self.quotas.insert(role.to_owned(), quota);
        }
        // Every agent may now be offered differently.
        self.epoch += 1;
        Ok(())
    }

    /// Removes `role`'s quota.
    pub fn remove_quota(&mut self, role: &str) {
        if self.quotas.remove(role).is_some() {
            self.epoch += 1;
        }
    }

    pub fn quota(&self, role: &str) -> Option<&Quota> {
        self.quotas.get(role)
    }

    /// What `role` holds over the whole cluster (all shards).
    pub fn consumed(&self, role: &str) -> Quantities {
        match &self.shared {
            Some(view) => view.role_quantities(role),
            None => self.roles.allocation(&role.to_owned()),
        }
    }

    /// Unreserved resources nobody holds, over the whole cluster.
    fn unreserved_free(&self) -> Quantities {
        match &self.shared {
            Some(view) => view.unreserved_free(),
            None => lacking(&self.unreserved_total, &self.unreserved_allocated),
        }
    }

    /// Per resource name some guarantee still lacks: how much of it may still be handed
    /// out in stage 2 (free unreserved minus the total lacking).
    fn headroom_slack(&self) -> Quantities {
        let mut required = Quantities::default();
        for (role, quota) in &self.quotas {
            required.add(&lacking(&quota.guarantee, &self.consumed(role)));
        }
        let free = self.unreserved_free();
        let mut slack = Quantities::default();
        for (name, need) in required.iter() {
            // A cap of -1 keeps the name capped at nothing (`set` drops a zero).
            let room = free.get(name) - need;
            slack.set(name, if room > 0 { room } else { -1 });
        }
        slack
    }

    /// What `role` may be offered of `available` in `stage`; empty if nothing.
    pub(super) fn shape(&self, available: &Resources, role: &str, stage: Stage) -> Resources {
        let offerable = available.allocatable_to(role);
        let unreserved = |r: &Resource| !r.is_reserved();
        let consumed = self.consumed(role);
        let quota = self.quotas.get(role);
        let mut shaped = match stage {
            Stage::Guarantee => {
                let Some(quota) = quota else {
                    return Resources::new();
                };
                let unmet = lacking(&quota.guarantee, &consumed);
                if unmet.is_zero() {
                    return Resources::new();
                }
                // Guaranteed names cut to what is lacking; the others within headroom.
                let slack = self.headroom_slack();
                let mut caps = slack;
                for (name, milli) in unmet.iter() {
                    caps.set(name, milli);
                }
                cut(&offerable, &caps, unreserved)
            }
            Stage::Fair => cut(&offerable, &self.headroom_slack(), unreserved),
        };
        if let Some(limit) = quota.and_then(|q| q.limit.as_ref()) {
            let mut room = lacking(limit, &consumed);
            for (name, _) in limit.iter() {
                if room.get(name) == 0 {
                    room.set(name, -1);
                }
            }
            shaped = cut(&shaped, &room, |_| true);
        }
        shaped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use fleet_proto::ids::{AgentId, FrameworkId};

    use super::*;
    use crate::allocator::sharded::Shards;
    use crate::allocator::{Allocation, AllocatorConfig};

    fn q(text: &str) -> Quantities {
        Quantities::of(&Resources::parse(text).unwrap())
    }

    fn res(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    /// The allocator under test: one, or shards interleaved in one thread.
    enum Under {
        One(Box<Allocator>),
        Many(Shards),
    }

    impl Under {
        fn all() -> Vec<(String, Under)> {
            let mut all = vec![(
                "one allocator".to_owned(),
                Under::One(Box::new(Allocator::new(AllocatorConfig::default()))),
            )];
            for n in [2, 3] {
                all.push((
                    format!("{n} shards"),
                    Under::Many(Shards::new(AllocatorConfig::default(), n)),
                ));
            }
            all
        }
        fn agents(&mut self, n: usize, text: &str) {
            for i in 0..n {
                let id = AgentId::from(format!("agent-{i}").as_str());
                match self {
                    Under::One(a) => a.add_agent(id, res(text), vec![]).unwrap(),
                    Under::Many(s) => s.add_agent(id, res(text), vec![]).unwrap(),
                }
            }
        }
        fn framework(&mut self, name: &str, role: &str) {
            let id = FrameworkId::from(name);
            match self {
                Under::One(a) => a.add_framework(id, vec![role.to_owned()], vec![]),
                Under::Many(s) => s.add_framework(id, vec![role.to_owned()], vec![]),
            }
        }
        fn weight(&mut self, role: &str, weight: f64) {
            match self {
                Under::One(a) => a.set_weight(role, weight).unwrap(),
                Under::Many(s) => s.set_weight(role, weight).unwrap(),
            }
        }
        fn quota(&mut self, role: &str, guarantee: &str, limit: Option<&str>) {
            let quota = Quota::new(&res(guarantee), limit.map(res).as_ref());
            match self {
                Under::One(a) => a.set_quota(role, quota).unwrap(),
                Under::Many(s) => s.set_quota(role, quota).unwrap(),
            }
        }
        fn allocate(&mut self) -> Vec<Allocation> {
            let now = Instant::now();
            match self {
                Under::One(a) => a.allocate(now),
                Under::Many(s) => s.allocate(now),
            }
        }
        fn consumed(&self, role: &str) -> Quantities {
            match self {
                Under::One(a) => a.consumed(role),
                Under::Many(s) => s.consumed(role),
            }
        }
    }

    #[test]
    fn cut_keeps_at_most_the_cap_and_passes_the_rest() {
        let r = Resources::parse("cpus:4;mem:1024;ports:[1-10];cpus(a):2").unwrap();
        let out = cut(&r, &q("cpus:3"), |_| true);
        assert_eq!(out.cpus(), Scalar::from_milli(3_000));
        assert_eq!(out.mem_mb(), Scalar::from_milli(1_024_000));
        assert_eq!(out.ports(), r.ports());
        let only_unreserved = cut(&r, &q("cpus:1"), |r| !r.is_reserved());
        assert_eq!(only_unreserved.cpus(), Scalar::from_milli(3_000));
        let mut none = Quantities::default();
        none.set("mem", -1);
        assert_eq!(cut(&r, &none, |_| true).mem_mb(), Scalar::default());
    }

    #[test]
    fn a_guarantee_above_its_limit_is_refused() {
        let mut a = Allocator::new(AllocatorConfig::default());
        let err = a
            .set_quota("r", Quota::new(&res("cpus:4"), Some(&res("cpus:2"))))
            .unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert!(a.quota("r").is_none());
    }

    /// A role with a small weight and a guarantee gets its guarantee although DRF alone,
    /// against a role of weight 100, would give it one agent.
    #[test]
    fn a_guarantee_is_met_against_a_heavier_role() {
        for (label, mut a) in Under::all() {
            a.agents(10, "cpus:4;mem:8192");
            a.weight("big", 100.0);
            a.framework("fw-big-1", "big");
            a.framework("fw-big-2", "big");
            a.framework("fw-q", "q");
            a.quota("q", "cpus:12;mem:12288", None);
            let offers = a.allocate();
            assert!(!offers.is_empty());
            let held = a.consumed("q");
            assert!(
                held.get("cpus") >= 12_000 && held.get("mem") >= 12_288_000,
                "{label}: q holds {held:?}"
            );
            assert!(a.consumed("big").get("cpus") > 0, "{label}");
        }
    }

    /// Without any framework in the quota role, the others leave its guarantee free; once
    /// it has a framework, it gets it.
    #[test]
    fn headroom_is_kept_for_an_unmet_guarantee() {
        for (label, mut a) in Under::all() {
            a.agents(10, "cpus:4;mem:8192");
            a.framework("fw-x", "x");
            a.quota("q", "cpus:12", None);
            a.allocate();
            let x = a.consumed("x").get("cpus");
            assert_eq!(x, 28_000, "{label}: x holds {x} milli-cpus of 40,000");
            a.framework("fw-q", "q");
            a.allocate();
            assert_eq!(a.consumed("q").get("cpus"), 12_000, "{label}");
        }
    }

    #[test]
    fn a_limit_caps_what_a_role_is_offered() {
        for (label, mut a) in Under::all() {
            a.agents(10, "cpus:4;mem:8192");
            a.framework("fw-x", "x");
            a.framework("fw-y", "y");
            a.quota("x", "", Some("cpus:6"));
            a.allocate();
            a.allocate();
            assert_eq!(a.consumed("x").get("cpus"), 6_000, "{label}");
            assert_eq!(a.consumed("y").get("cpus"), 34_000, "{label}");
        }
    }

    /// Random clusters and guarantees the cluster can meet: after one cycle in which every
    /// framework keeps what it is offered, every role with a framework holds at least its
    /// guarantee, although a role of weight 100 wants everything; with 1 and 2 shards.
    #[test]
    fn guarantees_the_cluster_can_meet_are_met() {
        use proptest::prelude::*;
        let agents = proptest::collection::vec((1..=8u32, 1..=8u32), 1..10);
        let shares = (0..=100u32, 0..=100u32, 0..=100u32, 0..=100u32);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 128,
            ..ProptestConfig::default()
        });
        let result = runner.run(&(agents, shares), |(agents, (c0, m0, c1, m1))| {
            let cpus: u32 = agents.iter().map(|a| a.0).sum();
            let mem: u32 = agents.iter().map(|a| a.1 * 1024).sum();
            // Guarantees in whole cpus and 256 MB steps, together at most 80% of the
            // cluster: (fraction of the 80%) split between two roles.
            let whole = |total: u32, pct: u32, step: u32| total * 8 / 10 * pct / 200 / step * step;
            let guarantees = [
                (whole(cpus, c0, 1), whole(mem, m0, 256)),
                (whole(cpus, c1, 1), whole(mem, m1, 256)),
            ];
            for shards in [1, 2] {
                let mut s = Shards::new(AllocatorConfig::default(), shards);
                for (i, (c, m)) in agents.iter().enumerate() {
                    let total = res(&format!("cpus:{c};mem:{}", m * 1024));
                    s.add_agent(AgentId::from(format!("a{i}").as_str()), total, vec![])
                        .unwrap();
                }
                s.set_weight("x", 100.0).unwrap();
                s.add_framework(FrameworkId::from("fx"), vec!["x".into()], vec![]);
                for (i, (c, m)) in guarantees.iter().enumerate() {
                    let role = format!("q{i}");
                    let text = format!("cpus:{c};mem:{m}");
                    s.set_quota(&role, Quota::new(&res(&text), None)).unwrap();
                    s.add_framework(FrameworkId::from(format!("f{i}").as_str()), vec![role], vec![]);
                }
                s.allocate(Instant::now());
                s.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
                for (i, (c, m)) in guarantees.iter().enumerate() {
                    let held = s.consumed(&format!("q{i}"));
                    prop_assert!(
                        held.get("cpus") >= i64::from(*c) * 1000
                            && held.get("mem") >= i64::from(*m) * 1000,
                        "{shards} shards, agents {agents:?}: q{i} holds {held:?}, guaranteed cpus:{c};mem:{m}"
                    );
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
