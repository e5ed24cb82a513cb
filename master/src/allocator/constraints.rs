//! Offer constraints (Mesos' OfferConstraints): per framework and role, groups of
//! predicates on an agent's attributes and hostname. An agent is offered to the framework
//! in that role only if it satisfies every predicate of at least one group. Regular
//! expressions are compiled once, when the constraints are set; a bad one is refused then,
//! naming it.

use std::collections::BTreeMap;

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::messages::scheduler::{Predicate, RoleConstraints, Selector};
use fleet_proto::resources::{AttributeValue, Attributes};
use regex::Regex;

use super::{Allocator, AllocatorError};

#[derive(Debug, Clone)]
enum Test {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    Matches(Regex),
}

/// One predicate, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    selector: Selector,
    test: Test,
}

/// One framework's constraints, by role: groups of compiled predicates.
pub type Constraints = BTreeMap<String, Vec<Vec<Compiled>>>;

/// What constraints look at on an agent.
#[derive(Debug, Clone, Default)]
pub(super) struct Description {
    pub hostname: String,
    pub attributes: Attributes,
}

/// Compiles `constraints`; the error names the role and the regular expression that
/// does not compile, or a role given twice.
pub fn compile(constraints: &[RoleConstraints]) -> Result<Constraints, String> {
    let mut out = Constraints::new();
    for rc in constraints {
        let mut groups = Vec::new();
        for group in &rc.groups {
            let mut compiled = Vec::new();
            for c in group {
                let test = match &c.predicate {
                    Predicate::Exists => Test::Exists,
                    Predicate::NotExists => Test::NotExists,
                    Predicate::TextEquals(t) => Test::Equals(t.clone()),
                    Predicate::TextNotEquals(t) => Test::NotEquals(t.clone()),
                    Predicate::TextMatches(pattern) => {
                        // Anchored: the whole text must match, as in Mesos.
                        let anchored = format!("^(?:{pattern})$");
                        let regex = Regex::new(&anchored).map_err(|e| {
                            format!(
                                "offer constraint of role '{}': invalid regular expression {pattern:?}: {e}",
                                rc.role
                            )
                        })?;
                        Test::Matches(regex)
                    }
                };
                compiled.push(Compiled {
                    selector: c.selector.clone(),
                    test,
                });
            }
            groups.push(compiled);
        }
        if out.insert(rc.role.clone(), groups).is_some() {
            return Err(format!("offer constraints name role '{}' twice", rc.role));
        }
    }
    Ok(out)
}

/// The selected value as text, if it has a text form.
fn text(value: &AttributeValue) -> Option<String> {
    match value {
        AttributeValue::Text(t) => Some(t.clone()),
        AttributeValue::Scalar(s) => Some(s.to_string()),
        AttributeValue::Ranges(_) | AttributeValue::Set(_) => None,
    }
}

fn holds(c: &Compiled, agent: &Description) -> bool {
    let selected: Option<Option<String>> = match &c.selector {
        Selector::Hostname => Some(Some(agent.hostname.clone())),
        Selector::Attribute(name) => agent.attributes.get(name).map(text),
    };
    match (&c.test, selected) {
        (Test::Exists, found) => found.is_some(),
        (Test::NotExists, found) => found.is_none(),
        (Test::Equals(want), Some(Some(have))) => *want == have,
        (Test::NotEquals(want), Some(Some(have))) => *want != have,
        (Test::NotEquals(_), _) => true,
        (Test::Matches(regex), Some(Some(have))) => regex.is_match(&have),
        (Test::Equals(_) | Test::Matches(_), _) => false,
    }
}

/// Whether `agent` qualifies under `groups` (no groups: any agent).
fn qualifies(groups: &[Vec<Compiled>], agent: &Description) -> bool {
    groups.is_empty() || groups.iter().any(|g| g.iter().all(|c| holds(c, agent)))
}

impl Allocator {
    /// Records what offer constraints look at on an agent (at registration); an unknown
    /// agent is ignored.
    pub fn describe_agent(&mut self, id: &AgentId, hostname: &str, attributes: &Attributes) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.description = Description {
                hostname: hostname.to_owned(),
                attributes: attributes.clone(),
            };
            agent.version += 1;
        }
    }

    /// Sets `framework`'s offer constraints (replacing any; empty: none). Fails, changing
    /// nothing, on an invalid regular expression.
    pub fn set_offer_constraints(
        &mut self,
        framework: &FrameworkId,
        constraints: &[RoleConstraints],
    ) -> Result<(), AllocatorError> {
        let compiled =
            compile(constraints).map_err(|reason| AllocatorError::InvalidConstraint {
                framework: framework.clone(),
                reason,
            })?;
        if let Some(fw) = self.frameworks.get_mut(framework) {
            fw.constraints = compiled;
        }
        self.epoch += 1;
        Ok(())
    }

    /// Whether `framework`'s constraints for `role` let it be offered `agent`.
    pub(super) fn admits(&self, framework: &FrameworkId, role: &str, agent: &AgentId) -> bool {
        let Some(groups) = self
            .frameworks
            .get(framework)
            .and_then(|fw| fw.constraints.get(role))
        else {
            return true;
        };
        self.agents
            .get(agent)
            .is_some_and(|a| qualifies(groups, &a.description))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use fleet_proto::messages::scheduler::AttributeConstraint;
    use fleet_proto::resources::{Attribute, Resources};

    use super::*;
    use crate::allocator::AllocatorConfig;

    fn constraint(selector: Selector, predicate: Predicate) -> AttributeConstraint {
        AttributeConstraint {
            selector,
            predicate,
        }
    }

    fn attr(name: &str) -> Selector {
        Selector::Attribute(name.to_owned())
    }

    /// Four agents: two in zone west (one with a GPU attribute), one in east, one with no
    /// zone. Returns the agents offered to a framework with `groups` on role r.
    fn offered(groups: Vec<Vec<AttributeConstraint>>) -> Vec<String> {
        let mut a = Allocator::new(AllocatorConfig::default());
        let agents = [
            ("w1", Some("west"), true),
            ("w2", Some("west"), false),
            ("e1", Some("east"), false),
            ("n1", None, false),
        ];
        for (name, zone, gpu) in agents {
            let id = AgentId::from(name);
            a.add_agent(
                id.clone(),
                Resources::parse("cpus:1;mem:1024").unwrap(),
                vec![],
            )
            .unwrap();
            let mut attributes = Attributes::new();
            if let Some(zone) = zone {
                attributes.push(Attribute::text("zone", zone));
            }
            if gpu {
                attributes.push(Attribute::text("gpu", "a100"));
            }
            a.describe_agent(&id, &format!("{name}.example"), &attributes);
        }
        let fw = FrameworkId::from("fw");
        a.add_framework(fw.clone(), vec!["r".into()], vec![]);
        a.set_offer_constraints(
            &fw,
            &[RoleConstraints {
                role: "r".into(),
                groups,
            }],
        )
        .unwrap();
        let mut names: Vec<String> = a
            .allocate(Instant::now())
            .into_iter()
            .map(|o| o.agent_id.to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn predicates_select_agents() {
        let eq = |z: &str| constraint(attr("zone"), Predicate::TextEquals(z.into()));
        assert_eq!(offered(vec![vec![eq("west")]]), ["w1", "w2"]);
        assert_eq!(
            offered(vec![vec![constraint(attr("zone"), Predicate::NotExists)]]),
            ["n1"]
        );
        assert_eq!(
            offered(vec![vec![constraint(
                attr("zone"),
                Predicate::TextNotEquals("west".into())
            )]]),
            ["e1", "n1"]
        );
        assert_eq!(
            offered(vec![vec![constraint(
                Selector::Hostname,
                Predicate::TextMatches("[ew]1\\..*".into())
            )]]),
            ["e1", "w1"]
        );
        // All of a group, any group.
        assert_eq!(
            offered(vec![vec![
                eq("west"),
                constraint(attr("gpu"), Predicate::Exists)
            ]]),
            ["w1"]
        );
        assert_eq!(offered(vec![vec![eq("east")], vec![eq("none")]]), ["e1"]);
        assert_eq!(offered(vec![]), ["e1", "n1", "w1", "w2"]);
    }

    #[test]
    fn a_bad_regular_expression_is_refused_by_name() {
        let mut a = Allocator::new(AllocatorConfig::default());
        let fw = FrameworkId::from("fw");
        a.add_framework(fw.clone(), vec!["r".into()], vec![]);
        let err = a
            .set_offer_constraints(
                &fw,
                &[RoleConstraints {
                    role: "r".into(),
                    groups: vec![vec![constraint(
                        Selector::Hostname,
                        Predicate::TextMatches("(".into()),
                    )]],
                }],
            )
            .unwrap_err();
        assert!(err.to_string().contains("\"(\""), "{err}");
    }
}
