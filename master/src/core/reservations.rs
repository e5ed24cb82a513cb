//! Dynamic reservations: unreserved resources of an agent reserved for a role, by an
//! operator (RESERVE_RESOURCES, `/reserve`) or by a framework in an ACCEPT (RESERVE), and
//! made unreserved again (UNRESERVE). They live in the registry per agent, with the
//! principal that made them, so they survive master failover; an agent's total is what it
//! declares with its reservations applied (see [`reserved_total`]). Reserved resources are
//! offered only to frameworks of their role (and its sub-roles), as static ones are.
//!
//! Following Mesos: an operator may reserve or unreserve only resources nobody uses;
//! outstanding offers on the agent are rescinded when they hold what is needed. A framework
//! reserves or unreserves resources it was offered, for the role they were offered in;
//! LAUNCH operations after it in the same ACCEPT see the converted resources. A framework
//! unreserves only what was reserved under its own principal (what the
//! `unreserve_resources` ACL was asked about); an operator may name any principal.

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::messages::scheduler::Operation;
use fleet_proto::resources::Resources;

use crate::registry::{RegistryOp, Reservation};

use super::records::OfferRecord;
use super::{Master, Output};

/// `declared` with `reservations` applied: each reserved entry moves from the unreserved
/// resources to its role. Entries that no longer fit (the agent came back declaring less)
/// are left out: returned are the total, the reservations as kept and what was dropped.
pub(super) fn reserved_total(
    declared: &Resources,
    reservations: &[Reservation],
) -> (Resources, Vec<Reservation>, Vec<Reservation>) {
    let mut total = declared.clone();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for reservation in reservations {
        let (mut fits, mut misfits) = (Resources::new(), Resources::new());
        for entry in &reservation.resources {
            let entry = Resources::from(entry.clone());
            let flat = entry.flatten();
            if total.unreserved().contains(&flat) {
                total.subtract(&flat);
                total.add(&entry);
                fits.add(&entry);
            } else {
                misfits.add(&entry);
            }
        }
        for (resources, list) in [(fits, &mut kept), (misfits, &mut dropped)] {
            if !resources.is_empty() {
                list.push(Reservation {
                    principal: reservation.principal.clone(),
                    resources,
                });
            }
        }
    }
    (total, kept, dropped)
}

/// What RESERVE and UNRESERVE may name: something, and every entry reserved for a role.
fn check_reserved(resources: &Resources, what: &str) -> Result<(), String> {
    if resources.is_empty() {
        return Err(format!("{what} names no resources"));
    }
    if let Some(unreserved) = resources.iter().find(|r| !r.is_reserved()) {
        return Err(format!(
            "{what}: '{}' names no role; write it reserved, e.g. '{}(ROLE):...'",
            Resources::from(unreserved.clone()),
            unreserved.name
        ));
    }
    Ok(())
}

/// The part of `a` that is also in `b`.
fn intersection(a: &Resources, b: &Resources) -> Resources {
    let mut outside = a.clone();
    outside.subtract(b);
    let mut part = a.clone();
    part.subtract(&outside);
    part
}

/// `list` with `resources` added under `principal`.
fn with_reserved(
    list: &[Reservation],
    resources: &Resources,
    principal: Option<&str>,
) -> Vec<Reservation> {
    let mut list = list.to_vec();
    match list
        .iter_mut()
        .find(|r| r.principal.as_deref() == principal)
    {
        Some(entry) => entry.resources.add(resources),
        None => list.push(Reservation {
            principal: principal.map(str::to_owned),
            resources: resources.clone(),
        }),
    }
    list
}

/// `list` without `resources`, taken from the reservations made under `only` (`None`:
/// any reservation; `Some(None)`: those made without a principal).
fn without_reserved(
    list: &[Reservation],
    resources: &Resources,
    only: Option<Option<&str>>,
) -> Result<Vec<Reservation>, String> {
    let mut list = list.to_vec();
    let mut remaining = resources.clone();
    for entry in list
        .iter_mut()
        .filter(|r| only.is_none_or(|p| r.principal.as_deref() == p))
    {
        let piece = intersection(&remaining, &entry.resources);
        entry.resources.subtract(&piece);
        remaining.subtract(&piece);
    }
    if !remaining.is_empty() {
        let by = match only {
            None => String::new(),
            Some(None) => " without a principal".to_owned(),
            Some(Some(p)) => format!(" by principal '{p}'"),
        };
        return Err(format!(
            "'{remaining}' is not reserved dynamically{by} on this agent (reservations made \
             with the agent's --resources cannot be undone here)"
        ));
    }
    list.retain(|r| !r.resources.is_empty());
    Ok(list)
}

/// One RESERVE or UNRESERVE of an ACCEPT, checked: in the offer `offer` (index into the
/// ACCEPT's offers), `from` becomes `to`.
struct Conversion {
    offer: usize,
    from: Resources,
    to: Resources,
}

/// The RESERVE and UNRESERVE operations of an ACCEPT, checked: the conversions, and the
/// agent's reservations once they are made.
pub(super) struct Conversions {
    list: Vec<Conversion>,
    reservations: Vec<Reservation>,
}

impl Master {
    fn framework_principal(&self, framework: &FrameworkId) -> Option<&str> {
        self.frameworks
            .get(framework)
            .and_then(|f| f.info.principal.as_deref())
    }

    /// The dynamic reservations on `agent`.
    fn reservations_on(&self, agent: &AgentId) -> &[Reservation] {
        self.reservations.get(agent).map_or(&[], Vec::as_slice)
    }

    /// The total the allocator is given for an agent declaring `declared`: its
    /// reservations applied. Reservations that no longer fit are dropped (logged, and
    /// removed from the registry).
    pub(super) fn agent_total(&mut self, agent: &AgentId, declared: &Resources) -> Resources {
        let (total, kept, dropped) = reserved_total(declared, self.reservations_on(agent));
        if !dropped.is_empty() {
            for misfit in &dropped {
                tracing::warn!(
                    agent = %agent,
                    "dropping the reservation of '{}' (principal {:?}): the agent no longer declares enough unreserved resources ({declared})",
                    misfit.resources,
                    misfit.principal
                );
            }
            if let Err(e) = self.set_reservations(agent, kept) {
                tracing::warn!(agent = %agent, "{e}");
            }
        }
        total
    }

    /// Records an agent's reservations: the registry first, then memory.
    fn set_reservations(&mut self, agent: &AgentId, list: Vec<Reservation>) -> Result<(), String> {
        let op = RegistryOp::SetReservations {
            agent: agent.clone(),
            reservations: list.clone(),
        };
        let what = op.describe();
        if let Err(e) = self.registry.apply(op) {
            self.counters.registry_errors += 1;
            return Err(format!("the registry refused to {what}: {e}"));
        }
        if list.is_empty() {
            self.reservations.remove(agent);
        } else {
            self.reservations.insert(agent.clone(), list);
        }
        Ok(())
    }

    /// The agent's declared resources and current total, or why it cannot be changed.
    fn reservable_agent(&self, agent: &AgentId) -> Result<Resources, String> {
        match self.agents.get(agent) {
            Some(a) => Ok(reserved_total(&a.info.resources, self.reservations_on(agent)).0),
            None if self.recovered_agents.contains_key(agent)
                || self.unreachable_agents.contains_key(agent) =>
            {
                Err(format!(
                    "agent {agent} has not re-registered with this master yet; try again when \
                     it has"
                ))
            }
            None => Err(format!("unknown agent {agent} (see `fleet agents`)")),
        }
    }

    /// Makes sure nobody holds `needed` on the agent: when what is free lacks it,
    /// outstanding offers there are rescinded; `Err` if tasks use it.
    fn free_on(
        &mut self,
        agent: &AgentId,
        needed: &Resources,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        let free = |m: &Self| m.allocator.available_on(agent).unwrap_or_default();
        if free(self).contains(needed) {
            return Ok(());
        }
        self.rescind_agent_offers(agent, true, out);
        let free = free(self);
        if free.contains(needed) {
            return Ok(());
        }
        Err(format!(
            "'{needed}' is not free on agent {agent}: tasks use part of it (free: '{free}')"
        ))
    }

    /// RESERVE_RESOURCES: reserves unreserved resources nobody uses on `agent` for the roles
    /// their entries name, recorded under `principal`.
    pub(super) fn reserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
        principal: Option<&str>,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        check_reserved(resources, "RESERVE_RESOURCES")?;
        let total = self.reservable_agent(agent)?;
        let flat = resources.flatten();
        let unreserved = total.unreserved();
        if !unreserved.contains(&flat) {
            return Err(format!(
                "agent {agent} has '{unreserved}' unreserved: not enough for '{resources}'"
            ));
        }
        self.free_on(agent, &flat, out)?;
        let list = with_reserved(self.reservations_on(agent), resources, principal);
        self.convert_free(agent, total, list, &flat, resources)?;
        tracing::info!(agent = %agent, principal = ?principal, "reserved '{resources}'");
        Ok(())
    }

    /// Records `list` as the agent's reservations and turns `from` into `to` in its
    /// total (resources nobody holds); the agent is allocated again at the next tick.
    fn convert_free(
        &mut self,
        agent: &AgentId,
        total: Resources,
        list: Vec<Reservation>,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), String> {
        self.set_reservations(agent, list)?;
        let mut new_total = total;
        new_total.subtract(from);
        new_total.add(to);
        self.allocator
            .set_agent_total(agent, new_total)
            .map_err(|e| e.to_string())?;
        self.allocate_agents.insert(agent.clone());
        Ok(())
    }

    /// UNRESERVE_RESOURCES: makes resources reserved dynamically on `agent` (by `principal`
    /// when given) unreserved again; nobody may be using them.
    pub(super) fn unreserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
        principal: Option<&str>,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        check_reserved(resources, "UNRESERVE_RESOURCES")?;
        let total = self.reservable_agent(agent)?;
        let only = principal.map(Some);
        let list = without_reserved(self.reservations_on(agent), resources, only)
            .map_err(|e| format!("agent {agent}: {e}"))?;
        self.free_on(agent, resources, out)?;
        self.convert_free(agent, total, list, resources, &resources.flatten())?;
        tracing::info!(agent = %agent, principal = ?principal, "unreserved '{resources}'");
        Ok(())
    }

    /// Checks the RESERVE and UNRESERVE operations of an ACCEPT against its offers, in
    /// order, converting `offers` (a copy) as they go so that later operations (and the
    /// LAUNCHes) see the result. Nothing outside `offers` changes.
    pub(super) fn plan_conversions(
        &self,
        framework: &FrameworkId,
        offers: &mut [OfferRecord],
        operations: &[Operation],
    ) -> Result<Conversions, String> {
        let principal = self.framework_principal(framework);
        let mut list = match offers.first() {
            Some(r) => self.reservations_on(&r.offer.agent_id).to_vec(),
            None => Vec::new(),
        };
        let mut conversions = Vec::new();
        for operation in operations {
            let (resources, reserve) = match operation {
                Operation::Launch { .. } => continue,
                Operation::Reserve { resources } => (resources, true),
                Operation::Unreserve { resources } => (resources, false),
            };
            let what = if reserve { "RESERVE" } else { "UNRESERVE" };
            check_reserved(resources, what)?;
            if reserve {
                list = with_reserved(&list, resources, principal);
            } else {
                list = without_reserved(&list, resources, Some(principal))
                    .map_err(|e| format!("UNRESERVE: {e}"))?;
            }
            for role in resources.reservation_roles() {
                let part = resources.reserved(role);
                let flat = part.flatten();
                let (from, to) = if reserve {
                    (flat, part.clone())
                } else {
                    (part.clone(), flat)
                };
                let index = offers
                    .iter()
                    .position(|r| r.offer.role == role && r.resources().contains(&from))
                    .ok_or_else(|| {
                        let held: Vec<String> = offers
                            .iter()
                            .map(|r| format!("{} in role '{}'", r.resources(), r.offer.role))
                            .collect();
                        format!(
                            "{what} of '{part}': no offer in role '{role}' holds '{from}' (the offers \
                             hold {})",
                            held.join(", ")
                        )
                    })?;
                let resources = &mut offers[index].offer.resources;
                resources.subtract(&from);
                resources.add(&to);
                conversions.push(Conversion {
                    offer: index,
                    from,
                    to,
                });
            }
        }
        Ok(Conversions {
            list: conversions,
            reservations: list,
        })
    }

    /// Makes checked conversions real: the registry, then the allocator (the framework's
    /// allocation and the agent's total). `Err` (nothing changed) if the registry refuses.
    pub(super) fn apply_conversions(
        &mut self,
        framework: &FrameworkId,
        offers: &[OfferRecord],
        conversions: Conversions,
    ) -> Result<(), String> {
        let Some(agent) = offers.first().map(|r| r.offer.agent_id.clone()) else {
            return Ok(());
        };
        if conversions.list.is_empty() {
            return Ok(());
        }
        self.set_reservations(&agent, conversions.reservations)?;
        for c in &conversions.list {
            let role = &offers[c.offer].offer.role;
            if let Err(e) = self
                .allocator
                .update_allocation(framework, role, &agent, &c.from, &c.to)
            {
                tracing::error!(agent = %agent, framework = %framework, "{e}");
            }
            tracing::info!(agent = %agent, framework = %framework, "'{}' is now '{}'", c.from, c.to);
        }
        self.allocate_agents.insert(agent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    fn reservation(principal: Option<&str>, text: &str) -> Reservation {
        Reservation {
            principal: principal.map(str::to_owned),
            resources: r(text),
        }
    }

    #[test]
    fn reservations_move_declared_resources_to_their_role() {
        let declared = r("cpus:4;mem:1024;ports:[31000-31010]");
        let list = [
            reservation(Some("ops"), "cpus(web):1;mem(web):256"),
            reservation(None, "ports(db):[31000-31001]"),
        ];
        let (total, kept, dropped) = reserved_total(&declared, &list);
        assert!(dropped.is_empty());
        assert_eq!(kept, list);
        assert_eq!(
            total,
            r(
                "cpus:3;mem:768;ports:[31002-31010];cpus(web):1;mem(web):256;ports(db):[31000-31001]"
            )
        );
        // The agent came back smaller: what no longer fits is dropped, the rest kept.
        let (total, kept, dropped) =
            reserved_total(&r("cpus:0.5;mem:1024;ports:[31005-31006]"), &list);
        assert_eq!(kept, vec![reservation(Some("ops"), "mem(web):256")]);
        assert_eq!(
            dropped,
            vec![
                reservation(Some("ops"), "cpus(web):1"),
                reservation(None, "ports(db):[31000-31001]")
            ]
        );
        assert_eq!(
            total,
            r("cpus:0.5;mem:768;mem(web):256;ports:[31005-31006]")
        );
    }

    #[test]
    fn unreserving_takes_from_the_named_principal_only() {
        let list = vec![
            reservation(Some("ops"), "cpus(web):1"),
            reservation(Some("web"), "cpus(web):2"),
        ];
        let left = without_reserved(&list, &r("cpus(web):2"), Some(Some("web"))).unwrap();
        assert_eq!(left, vec![reservation(Some("ops"), "cpus(web):1")]);
        let err = without_reserved(&list, &r("cpus(web):2"), Some(Some("ops"))).unwrap_err();
        assert!(err.contains("by principal 'ops'"), "{err}");
        let err = without_reserved(&list, &r("cpus(web):1"), Some(None)).unwrap_err();
        assert!(err.contains("without a principal"), "{err}");
        let left = without_reserved(&list, &r("cpus(web):3"), None).unwrap();
        assert!(left.is_empty(), "{left:?}");
        let merged = with_reserved(&list, &r("cpus(web):1"), Some("web"));
        assert_eq!(merged[1], reservation(Some("web"), "cpus(web):3"));
    }

    #[test]
    fn only_reserved_entries_may_be_reserved() {
        assert!(check_reserved(&r("cpus(web):1"), "RESERVE").is_ok());
        let err = check_reserved(&r("cpus(web):1;mem:32"), "RESERVE").unwrap_err();
        assert!(err.contains("'mem:32' names no role"), "{err}");
        assert!(check_reserved(&Resources::new(), "RESERVE").is_err());
    }
}
