//! ACLs in the shape and with the semantics of Mesos' local authorizer: per action a list
//! of rules, each a set of principals and a set of objects (roles, paths, principals). The
//! first rule whose principals and objects both match the request decides; when none
//! matches, `permissive` does (default true).
//!
//! An entity is `{"values": [...]}` (those names), `{"type": "ANY"}` or `{"type": "NONE"}`.
//! A request without a principal (anonymous) is matched only by `ANY` and `NONE` rules and
//! allowed only by `ANY`; an object the master cannot name (e.g. the principal of a
//! framework it does not know) likewise.

use std::collections::BTreeMap;

use serde_json::Value;

/// What a principal asks to do, with the object the ACL is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SUBSCRIBE in a role (`register_frameworks`, objects `roles`).
    RegisterFramework { role: String },
    /// UPDATE_QUOTA for a role (`update_quotas` or Mesos' older `set_quotas`, `roles`).
    UpdateQuota { role: String },
    /// UPDATE_WEIGHTS for a role (`update_weights`, `roles`).
    UpdateWeight { role: String },
    /// The operator's TEARDOWN (`teardown_frameworks`, objects `framework_principals`).
    TeardownFramework { framework_principal: Option<String> },
    /// RESERVE_RESOURCES (`reserve_resources`, `roles`).
    ReserveResources { role: Option<String> },
    /// UNRESERVE_RESOURCES (`unreserve_resources`, `reserver_principals`).
    UnreserveResources { reserver_principal: Option<String> },
    /// An HTTP read: a GET of a path, or a read call of /api/v1 (`get_endpoints`, `paths`).
    GetEndpoint { path: String },
    /// KILL_TASK, Fleet's own call (`kill_tasks`, objects `framework_principals`; the
    /// task's framework is not named, so only ANY and NONE rules speak for it).
    KillTask,
    /// DRAIN_AGENT (`drain_agents`, objects `agents`: agent ids).
    DrainAgent { agent: String },
    /// DEACTIVATE_AGENT (`deactivate_agents`, `agents`).
    DeactivateAgent { agent: String },
    /// REACTIVATE_AGENT (`reactivate_agents`, `agents`).
    ReactivateAgent { agent: String },
    /// MARK_AGENT_GONE (`mark_agents_gone`, `agents`).
    MarkAgentGone { agent: String },
    /// UPDATE_MAINTENANCE_SCHEDULE, POST /maintenance/schedule
    /// (`update_maintenance_schedules`, objects `machines`, not named).
    UpdateMaintenanceSchedule,
    /// START_MAINTENANCE, /machine/down (`start_maintenances`, `machines`, not named).
    StartMaintenance,
    /// STOP_MAINTENANCE, /machine/up (`stop_maintenances`, `machines`, not named).
    StopMaintenance,
}

impl Action {
    fn category(&self) -> Category {
        match self {
            Action::RegisterFramework { .. } => Category::RegisterFrameworks,
            Action::UpdateQuota { .. } => Category::UpdateQuotas,
            Action::UpdateWeight { .. } => Category::UpdateWeights,
            Action::TeardownFramework { .. } => Category::TeardownFrameworks,
            Action::ReserveResources { .. } => Category::ReserveResources,
            Action::UnreserveResources { .. } => Category::UnreserveResources,
            Action::GetEndpoint { .. } => Category::GetEndpoints,
            Action::KillTask => Category::KillTasks,
            Action::DrainAgent { .. } => Category::DrainAgents,
            Action::DeactivateAgent { .. } => Category::DeactivateAgents,
            Action::ReactivateAgent { .. } => Category::ReactivateAgents,
            Action::MarkAgentGone { .. } => Category::MarkAgentsGone,
            Action::UpdateMaintenanceSchedule => Category::UpdateMaintenanceSchedules,
            Action::StartMaintenance => Category::StartMaintenances,
            Action::StopMaintenance => Category::StopMaintenances,
        }
    }

    fn object(&self) -> Option<&str> {
        match self {
            Action::RegisterFramework { role }
            | Action::UpdateQuota { role }
            | Action::UpdateWeight { role } => Some(role),
            Action::GetEndpoint { path } => Some(path),
            Action::DrainAgent { agent }
            | Action::DeactivateAgent { agent }
            | Action::ReactivateAgent { agent }
            | Action::MarkAgentGone { agent } => Some(agent),
            Action::KillTask
            | Action::UpdateMaintenanceSchedule
            | Action::StartMaintenance
            | Action::StopMaintenance => None,
            Action::TeardownFramework {
                framework_principal: object,
            }
            | Action::ReserveResources { role: object }
            | Action::UnreserveResources {
                reserver_principal: object,
            } => object.as_deref(),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RegisterFramework { role } => write!(f, "register in role '{role}'"),
            Action::UpdateQuota { role } => write!(f, "set the quota of role '{role}'"),
            Action::UpdateWeight { role } => write!(f, "set the weight of role '{role}'"),
            Action::TeardownFramework {
                framework_principal: Some(p),
            } => write!(f, "tear down frameworks of principal '{p}'"),
            Action::TeardownFramework { .. } => write!(f, "tear down frameworks"),
            Action::ReserveResources { role: Some(r) } => {
                write!(f, "reserve resources for role '{r}'")
            }
            Action::ReserveResources { .. } => write!(f, "reserve resources"),
            Action::UnreserveResources {
                reserver_principal: Some(p),
            } => write!(f, "unreserve resources reserved by '{p}'"),
            Action::UnreserveResources { .. } => write!(f, "unreserve resources"),
            Action::GetEndpoint { path } => write!(f, "read {path}"),
            Action::KillTask => write!(f, "kill tasks"),
            Action::DrainAgent { agent } => write!(f, "drain agent {agent}"),
            Action::DeactivateAgent { agent } => write!(f, "deactivate agent {agent}"),
            Action::ReactivateAgent { agent } => write!(f, "reactivate agent {agent}"),
            Action::MarkAgentGone { agent } => write!(f, "mark agent {agent} gone"),
            Action::UpdateMaintenanceSchedule => write!(f, "update the maintenance schedule"),
            Action::StartMaintenance => write!(f, "start maintenance (machines down)"),
            Action::StopMaintenance => write!(f, "stop maintenance (machines up)"),
        }
    }
}

/// The actions an ACL file can speak of, with their keys in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    RegisterFrameworks,
    UpdateQuotas,
    UpdateWeights,
    TeardownFrameworks,
    ReserveResources,
    UnreserveResources,
    GetEndpoints,
    KillTasks,
    DrainAgents,
    DeactivateAgents,
    ReactivateAgents,
    MarkAgentsGone,
    UpdateMaintenanceSchedules,
    StartMaintenances,
    StopMaintenances,
}

/// (key in the file, category, the rule's object field).
const CATEGORIES: [(&str, Category, &str); 16] = [
    ("register_frameworks", Category::RegisterFrameworks, "roles"),
    ("update_quotas", Category::UpdateQuotas, "roles"),
    ("set_quotas", Category::UpdateQuotas, "roles"),
    ("update_weights", Category::UpdateWeights, "roles"),
    (
        "teardown_frameworks",
        Category::TeardownFrameworks,
        "framework_principals",
    ),
    ("reserve_resources", Category::ReserveResources, "roles"),
    (
        "unreserve_resources",
        Category::UnreserveResources,
        "reserver_principals",
    ),
    ("get_endpoints", Category::GetEndpoints, "paths"),
    ("kill_tasks", Category::KillTasks, "framework_principals"),
    ("drain_agents", Category::DrainAgents, "agents"),
    ("deactivate_agents", Category::DeactivateAgents, "agents"),
    ("reactivate_agents", Category::ReactivateAgents, "agents"),
    ("mark_agents_gone", Category::MarkAgentsGone, "agents"),
    (
        "update_maintenance_schedules",
        Category::UpdateMaintenanceSchedules,
        "machines",
    ),
    (
        "start_maintenances",
        Category::StartMaintenances,
        "machines",
    ),
    ("stop_maintenances", Category::StopMaintenances, "machines"),
];

/// A set of principals or objects in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    Any,
    None,
    /// These names; for paths, a name ending in `*` matches every path it starts.
    Some(Vec<String>),
}

impl Entity {
    fn parse(value: &Value, at: &str) -> Result<Entity, String> {
        let Some(map) = value.as_object() else {
            return Err(format!(
                "{at}: expected {{\"values\": [...]}}, {{\"type\": \"ANY\"}} or {{\"type\": \"NONE\"}}, got {value}"
            ));
        };
        if let Some(key) = map.keys().find(|k| *k != "type" && *k != "values") {
            return Err(format!(
                "{at}: unknown key {key:?}; an entity has \"type\" or \"values\""
            ));
        }
        let values = match map.get("values") {
            None => None,
            Some(v) => {
                let list = v
                    .as_array()
                    .ok_or_else(|| format!("{at}.values: expected a list of strings, got {v}"))?;
                let names = list
                    .iter()
                    .map(|n| {
                        n.as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{at}.values: {n} is not a non-empty string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(names)
            }
        };
        let kind = match map.get("type") {
            None => None,
            Some(Value::String(t)) => Some(t.as_str()),
            Some(other) => return Err(format!("{at}.type: expected a string, got {other}")),
        };
        match (kind, values) {
            (Some("ANY"), None) => Ok(Entity::Any),
            (Some("NONE"), None) => Ok(Entity::None),
            (Some("ANY" | "NONE"), Some(_)) => Err(format!(
                "{at}: \"type\" {} takes no \"values\"",
                kind.unwrap_or_default()
            )),
            (Some("SOME") | None, Some(names)) if names.is_empty() => Err(format!(
                "{at}.values is empty; write {{\"type\": \"NONE\"}} for nobody"
            )),
            (Some("SOME") | None, Some(names)) => Ok(Entity::Some(names)),
            (Some("SOME") | None, None) => Err(format!(
                "{at}: give \"values\": [...], or \"type\": \"ANY\" or \"NONE\""
            )),
            (Some(other), _) => Err(format!(
                "{at}.type: unknown type {other:?}; expected ANY, NONE or SOME"
            )),
        }
    }

    fn contains(&self, name: &str, globs: bool) -> bool {
        match self {
            Entity::Some(names) => names.iter().any(|n| {
                n == name
                    || (globs
                        && n.strip_suffix('*')
                            .is_some_and(|prefix| name.starts_with(prefix)))
            }),
            Entity::Any | Entity::None => false,
        }
    }

    /// Mesos' `matches`: does this rule speak of the request's entity (`None`: unnamed,
    /// Mesos' ANY)?
    fn matches(&self, request: Option<&str>, globs: bool) -> bool {
        match (self, request) {
            (Entity::Any | Entity::None, _) => true,
            (Entity::Some(_), None) => false,
            (Entity::Some(_), Some(name)) => self.contains(name, globs),
        }
    }

    /// Mesos' `allows`: once a rule matches, does it let the request's entity through?
    fn allows(&self, request: Option<&str>, globs: bool) -> bool {
        match (self, request) {
            (Entity::Any, _) => true,
            (Entity::None, _) | (Entity::Some(_), None) => false,
            (Entity::Some(_), Some(name)) => self.contains(name, globs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    principals: Entity,
    objects: Entity,
}

/// The ACLs of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    permissive: bool,
    rules: BTreeMap<Category, Vec<Rule>>,
}

impl Acls {
    /// Parses the text of an ACL file (JSON). Unknown keys are errors, so a misspelt
    /// action never silently falls through to `permissive`.
    pub fn parse(text: &str) -> Result<Acls, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Some(top) = doc.as_object() else {
            return Err(
                "expected an object {\"permissive\": ..., \"register_frameworks\": [...], ...}"
                    .into(),
            );
        };
        let mut acls = Acls {
            permissive: true,
            rules: BTreeMap::new(),
        };
        for (key, value) in top {
            if key == "permissive" {
                acls.permissive = value
                    .as_bool()
                    .ok_or_else(|| format!("\"permissive\" must be true or false, got {value}"))?;
                continue;
            }
            let Some((_, category, object)) = CATEGORIES.iter().find(|(k, ..)| k == key) else {
                let known: Vec<&str> = CATEGORIES.iter().map(|(k, ..)| *k).collect();
                return Err(format!(
                    "unknown key {key:?}; expected \"permissive\" or one of {known:?}"
                ));
            };
            let list = value
                .as_array()
                .ok_or_else(|| format!("{key}: expected a list of rules, got {value}"))?;
            for (i, rule) in list.iter().enumerate() {
                let rule = parse_rule(rule, &format!("{key}[{i}]"), object)?;
                acls.rules.entry(*category).or_default().push(rule);
            }
        }
        Ok(acls)
    }

    /// Whether `principal` (None: anonymous) may do `action`.
    pub fn allows(&self, principal: Option<&str>, action: &Action) -> bool {
        let category = action.category();
        let globs = category == Category::GetEndpoints;
        let object = action.object();
        for rule in self.rules.get(&category).into_iter().flatten() {
            if rule.principals.matches(principal, false) && rule.objects.matches(object, globs) {
                return rule.principals.allows(principal, false)
                    && rule.objects.allows(object, globs);
            }
        }
        self.permissive
    }
}

fn parse_rule(value: &Value, at: &str, object: &str) -> Result<Rule, String> {
    let Some(map) = value.as_object() else {
        return Err(format!(
            "{at}: expected {{\"principals\": ..., \"{object}\": ...}}, got {value}"
        ));
    };
    if let Some(key) = map.keys().find(|k| *k != "principals" && *k != object) {
        return Err(format!(
            "{at}: unknown key {key:?}; a rule here has \"principals\" and \"{object}\""
        ));
    }
    let field = |name: &str| {
        map.get(name)
            .ok_or_else(|| format!("{at}: missing \"{name}\""))
            .and_then(|v| Entity::parse(v, &format!("{at}.{name}")))
    };
    Ok(Rule {
        principals: field("principals")?,
        objects: field(object)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(role: &str) -> Action {
        Action::RegisterFramework { role: role.into() }
    }

    #[test]
    fn the_first_matching_rule_decides_and_permissive_covers_the_rest() {
        let acls = Acls::parse(
            r#"{
              "register_frameworks": [
                {"principals": {"values": ["web"]}, "roles": {"values": ["web", "batch"]}},
                {"principals": {"values": ["web"]}, "roles": {"type": "NONE"}},
                {"principals": {"type": "ANY"}, "roles": {"values": ["ops"]}}
              ]
            }"#,
        )
        .unwrap();
        assert!(acls.allows(Some("web"), &register("web")));
        assert!(acls.allows(Some("web"), &register("batch")));
        // The NONE rule matches every role and allows none.
        assert!(!acls.allows(Some("web"), &register("ops")));
        assert!(acls.allows(Some("other"), &register("ops")));
        assert!(acls.allows(None, &register("ops")));
        // No rule matches: permissive (the default) decides.
        assert!(acls.allows(Some("other"), &register("web")));
        assert!(acls.allows(Some("web"), &Action::UpdateWeight { role: "x".into() }));
    }

    #[test]
    fn without_permissive_only_what_a_rule_allows_is_allowed() {
        let acls = Acls::parse(
            r#"{
              "permissive": false,
              "set_quotas": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}}],
              "get_endpoints": [{"principals": {"type": "ANY"}, "paths": {"values": ["/state", "/ui/*"]}}]
            }"#,
        )
        .unwrap();
        let quota = |role: &str| Action::UpdateQuota { role: role.into() };
        assert!(acls.allows(Some("ops"), &quota("dev")));
        assert!(!acls.allows(Some("web"), &quota("dev")));
        assert!(!acls.allows(None, &quota("dev")));
        assert!(!acls.allows(Some("ops"), &Action::UpdateWeight { role: "dev".into() }));
        let get = |path: &str| Action::GetEndpoint { path: path.into() };
        assert!(acls.allows(None, &get("/state")));
        assert!(acls.allows(Some("web"), &get("/ui/app.js")));
        assert!(!acls.allows(Some("web"), &get("/metrics")));
    }

    #[test]
    fn anonymous_and_unnamed_objects_match_only_any_and_none() {
        let acls = Acls::parse(
            r#"{
              "permissive": false,
              "teardown_frameworks": [
                {"principals": {"values": ["ops"]}, "framework_principals": {"values": ["web"]}},
                {"principals": {"values": ["admin"]}, "framework_principals": {"type": "ANY"}}
              ],
              "update_weights": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]
            }"#,
        )
        .unwrap();
        let teardown = |p: Option<&str>| Action::TeardownFramework {
            framework_principal: p.map(str::to_owned),
        };
        assert!(acls.allows(Some("ops"), &teardown(Some("web"))));
        assert!(!acls.allows(Some("ops"), &teardown(Some("batch"))));
        assert!(!acls.allows(Some("ops"), &teardown(None)));
        assert!(acls.allows(Some("admin"), &teardown(None)));
        assert!(!acls.allows(None, &teardown(Some("web"))));
        assert!(acls.allows(None, &Action::UpdateWeight { role: "a".into() }));
    }

    #[test]
    fn agent_and_maintenance_calls_have_their_own_rules() {
        let acls = Acls::parse(
            r#"{
              "permissive": false,
              "drain_agents": [{"principals": {"values": ["ops"]}, "agents": {"values": ["A-1"]}}],
              "mark_agents_gone": [{"principals": {"values": ["admin"]}, "agents": {"type": "ANY"}}],
              "start_maintenances": [{"principals": {"values": ["ops"]}, "machines": {"type": "ANY"}}],
              "kill_tasks": [{"principals": {"type": "ANY"}, "framework_principals": {"type": "ANY"}}]
            }"#,
        )
        .unwrap();
        let drain = |agent: &str| Action::DrainAgent {
            agent: agent.into(),
        };
        assert!(acls.allows(Some("ops"), &drain("A-1")));
        assert!(!acls.allows(Some("ops"), &drain("A-2")));
        let gone = Action::MarkAgentGone {
            agent: "A-1".into(),
        };
        assert!(acls.allows(Some("admin"), &gone));
        assert!(!acls.allows(Some("ops"), &gone));
        assert!(acls.allows(Some("ops"), &Action::StartMaintenance));
        assert!(!acls.allows(Some("ops"), &Action::StopMaintenance));
        assert!(acls.allows(None, &Action::KillTask));
        assert!(!acls.allows(
            Some("ops"),
            &Action::DeactivateAgent {
                agent: "A-1".into()
            }
        ));
    }

    #[test]
    fn bad_files_say_where_and_what() {
        for (text, says) in [
            ("{", "not valid JSON"),
            ("[]", "expected an object"),
            (
                r#"{"permissive": "no"}"#,
                "\"permissive\" must be true or false",
            ),
            (
                r#"{"register_framework": []}"#,
                "unknown key \"register_framework\"",
            ),
            (
                r#"{"update_weights": {}}"#,
                "update_weights: expected a list",
            ),
            (r#"{"update_weights": [7]}"#, "update_weights[0]: expected"),
            (
                r#"{"update_weights": [{"principals": {"type": "ANY"}}]}"#,
                "update_weights[0]: missing \"roles\"",
            ),
            (
                r#"{"update_weights": [{"principals": {"type": "ANY"}, "role": {"type": "ANY"}}]}"#,
                "unknown key \"role\"",
            ),
            (
                r#"{"update_weights": [{"principals": {"type": "ALL"}, "roles": {"type": "ANY"}}]}"#,
                "update_weights[0].principals.type: unknown type \"ALL\"",
            ),
            (
                r#"{"update_weights": [{"principals": {"values": []}, "roles": {"type": "ANY"}}]}"#,
                "values is empty",
            ),
            (
                r#"{"update_weights": [{"principals": {"values": [1]}, "roles": {"type": "ANY"}}]}"#,
                "not a non-empty string",
            ),
            (
                r#"{"update_weights": [{"principals": {"type": "ANY", "values": ["a"]}, "roles": {"type": "ANY"}}]}"#,
                "takes no \"values\"",
            ),
            (
                r#"{"teardown_frameworks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#,
                "\"framework_principals\"",
            ),
        ] {
            let err = Acls::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
