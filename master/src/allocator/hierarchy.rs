//! Hierarchical roles, as Mesos' hierarchical DRF sorter orders them: `eng/frontend` and
//! `eng/backend` compete inside `eng` on their own allocations, and `eng` competes with
//! `ops` on everything held in its subtree. A role that has frameworks of its own and
//! sub-roles (`eng` beside `eng/frontend`) competes inside its subtree as one more child,
//! on its own allocation. Weights belong to the full role path.
//!
//! The order is a depth-first walk of the tree with each node's children sorted by
//! weighted dominant share of their subtree, then allocation count, then name. With no
//! `/` in any role this is the flat order, so the allocator takes this path only when a
//! role has a parent.

use std::collections::{BTreeMap, BTreeSet};

use super::sorter::Quantities;

/// One role's own allocation and allocation count.
#[derive(Debug, Clone, Default)]
pub(super) struct RoleUse {
    pub allocation: Quantities,
    pub allocations: u64,
}

#[derive(Debug, Default)]
struct Node {
    /// The role's own use, if the path is a role.
    own: Option<RoleUse>,
    subtree: Quantities,
    allocations: u64,
    children: BTreeSet<String>,
}

/// Roles in hierarchical DRF order (see the module documentation).
pub(super) fn order(
    roles: &BTreeMap<String, RoleUse>,
    weight: impl Fn(&str) -> f64,
    total: &Quantities,
) -> Vec<String> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut top: BTreeSet<String> = BTreeSet::new();
    for (role, usage) in roles {
        let mut parent: Option<String> = None;
        let mut path = String::new();
        for part in role.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            let node = nodes.entry(path.clone()).or_default();
            node.subtree.add(&usage.allocation);
            node.allocations += usage.allocations;
            match &parent {
                Some(p) => {
                    let p = p.clone();
                    nodes.entry(p).or_default().children.insert(path.clone());
                }
                None => {
                    top.insert(path.clone());
                }
            }
            parent = Some(path.clone());
        }
        nodes.entry(role.clone()).or_default().own = Some(usage.clone());
    }
    let mut out = Vec::with_capacity(roles.len());
    walk(&top, None, &nodes, &weight, total, &mut out);
    out
}

/// Emits, in order, the roles under the siblings `children` (and `parent`'s own entry
/// among them, if `parent` is a role with children).
fn walk(
    children: &BTreeSet<String>,
    parent: Option<&str>,
    nodes: &BTreeMap<String, Node>,
    weight: &impl Fn(&str) -> f64,
    total: &Quantities,
    out: &mut Vec<String>,
) {
    // (share, allocations, name, whether it is the parent's own entry)
    let mut entries: Vec<(f64, u64, &str, bool)> = Vec::new();
    for child in children {
        let node = &nodes[child];
        entries.push((
            node.subtree.dominant_share(total) / weight(child),
            node.allocations,
            child,
            false,
        ));
    }
    if let Some(own) = parent.and_then(|p| nodes[p].own.as_ref().map(|own| (p, own))) {
        let (p, usage) = own;
        entries.push((
            usage.allocation.dominant_share(total) / weight(p),
            usage.allocations,
            p,
            true,
        ));
    }
    entries.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(b.2))
            .then(b.3.cmp(&a.3))
    });
    for (_, _, name, own) in entries {
        let node = &nodes[name];
        if own || node.children.is_empty() {
            if node.own.is_some() {
                out.push(name.to_owned());
            }
        } else {
            walk(&node.children, Some(name), nodes, weight, total, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_proto::resources::Resources;

    fn usage(cpus: i64) -> RoleUse {
        RoleUse {
            allocation: Quantities::of(
                &Resources::parse(&format!("cpus:{cpus}")).unwrap_or_default(),
            ),
            allocations: 0,
        }
    }

    fn total() -> Quantities {
        Quantities::of(&Resources::parse("cpus:100").unwrap())
    }

    #[test]
    fn flat_roles_sort_by_share() {
        let roles: BTreeMap<String, RoleUse> = [("a", 30), ("b", 10), ("c", 20)]
            .into_iter()
            .map(|(r, c)| (r.to_owned(), usage(c)))
            .collect();
        assert_eq!(order(&roles, |_| 1.0, &total()), ["b", "c", "a"]);
    }

    /// eng holds 30 in its subtree against ops' 20: ops first, although eng/frontend alone
    /// holds the least of all.
    #[test]
    fn a_subtree_competes_on_everything_under_it() {
        let roles: BTreeMap<String, RoleUse> =
            [("eng/frontend", 5), ("eng/backend", 25), ("ops", 20)]
                .into_iter()
                .map(|(r, c)| (r.to_owned(), usage(c)))
                .collect();
        assert_eq!(
            order(&roles, |_| 1.0, &total()),
            ["ops", "eng/frontend", "eng/backend"]
        );
        // Weighted 2, eng's subtree counts 15 against ops' 20.
        let weight = |r: &str| if r == "eng" { 2.0 } else { 1.0 };
        assert_eq!(
            order(&roles, weight, &total()),
            ["eng/frontend", "eng/backend", "ops"]
        );
    }

    /// A role with frameworks of its own and a sub-role competes inside its subtree on its
    /// own allocation.
    #[test]
    fn a_parent_role_competes_with_its_children() {
        let roles: BTreeMap<String, RoleUse> = [("eng", 10), ("eng/web", 5), ("eng/db", 20)]
            .into_iter()
            .map(|(r, c)| (r.to_owned(), usage(c)))
            .collect();
        assert_eq!(
            order(&roles, |_| 1.0, &total()),
            ["eng/web", "eng", "eng/db"]
        );
    }
}
