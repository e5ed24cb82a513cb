//! The operator API at `/api/v1`, in the JSON shapes of Mesos' v1 operator API: one POST
//! per call, `{"type": "GET_STATE"}`, answered `{"type": "GET_STATE", "get_state": {...}}`.
//! Read calls are answered from the last published snapshot, so a read never waits on
//! allocation. UPDATE_WEIGHTS and UPDATE_QUOTA go to the core through the driver. The
//! other calls that change the cluster (reservations, drain, teardown) and the SUBSCRIBE
//! event stream are not built yet: they get 501 and say so. A body that is not a call gets 400
//! naming what is wrong.

use serde_json::{Value, json};

use fleet_proto::resources::{Resources, Value as ResourceValue};

use super::driver::{OperatorChange, Published};
use crate::core::state::{AgentState, FrameworkState, TaskView};
use crate::registry::QuotaConfig;

/// The read calls this master answers.
pub const READ_CALLS: [&str; 8] = [
    "GET_HEALTH",
    "GET_VERSION",
    "GET_STATE",
    "GET_AGENTS",
    "GET_FRAMEWORKS",
    "GET_TASKS",
    "GET_ROLES",
    "GET_QUOTA",
];

/// Calls that change the cluster, applied by the core.
pub const CHANGE_CALLS: [&str; 2] = ["UPDATE_WEIGHTS", "UPDATE_QUOTA"];

/// Calls of Mesos' operator API this master knows but does not implement yet.
pub const NOT_BUILT: [&str; 8] = [
    "RESERVE_RESOURCES",
    "UNRESERVE_RESOURCES",
    "DRAIN_AGENT",
    "DEACTIVATE_AGENT",
    "REACTIVATE_AGENT",
    "MARK_AGENT_GONE",
    "TEARDOWN",
    "SUBSCRIBE",
];

/// The answer to one call: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

fn error(status: u16, message: String) -> Answer {
    Answer {
        status,
        body: json!({ "error": message }),
    }
}

fn id(value: impl std::fmt::Display) -> Value {
    json!({ "value": value.to_string() })
}

fn agent(a: &AgentState) -> Value {
    let mut allocated = a.used.clone();
    allocated.add(&a.offered);
    json!({
        "agent_info": {
            "id": id(&a.id),
            "hostname": a.hostname,
            "resources": a.total,
        },
        "active": a.active,
        "pid": a.http_address,
        "total_resources": a.total,
        "allocated_resources": allocated,
        "offered_resources": a.offered,
    })
}

fn framework(f: &FrameworkState) -> Value {
    json!({
        "framework_info": {
            "id": id(&f.id),
            "name": f.name,
            "user": f.user,
            "roles": f.roles,
            "failover_timeout": f.failover_timeout_ms as f64 / 1000.0,
            "capabilities": if f.partition_aware {
                json!([{ "type": "PARTITION_AWARE" }])
            } else {
                json!([])
            },
        },
        "active": f.active,
        "connected": f.active,
        "recovered": f.recovered,
        "allocated_resources": f.used,
        "offered_resources": f.offered,
    })
}

fn task(t: &TaskView) -> Value {
    let mut status = json!({
        "task_id": id(&t.id),
        "state": t.state,
        "agent_id": id(&t.agent_id),
    });
    if let Some(reason) = t.reason {
        status["reason"] = json!(reason);
    }
    if !t.message.is_empty() {
        status["message"] = json!(t.message);
    }
    json!({
        "name": t.name,
        "task_id": id(&t.id),
        "framework_id": id(&t.framework_id),
        "agent_id": id(&t.agent_id),
        "state": t.state,
        "resources": t.resources,
        "statuses": [status],
    })
}

fn get_agents(p: &Published) -> Value {
    json!({
        "agents": p.state.agents.iter().map(agent).collect::<Vec<_>>(),
        "recovered_agents": p.state.recovered_agents.iter()
            .map(|a| json!({ "id": id(a) }))
            .collect::<Vec<_>>(),
    })
}

fn get_frameworks(p: &Published) -> Value {
    json!({
        "frameworks": p.state.frameworks.iter().map(framework).collect::<Vec<_>>(),
        "completed_frameworks": p.state.completed_frameworks.iter().map(framework)
            .collect::<Vec<_>>(),
    })
}

fn get_tasks(p: &Published) -> Value {
    json!({
        "tasks": p.state.tasks.iter().map(task).collect::<Vec<_>>(),
        "completed_tasks": p.state.completed_tasks.iter().map(task).collect::<Vec<_>>(),
    })
}

/// Roles in use (with frameworks or allocations), weighted, or with a quota, as Mesos'
/// GET_ROLES lists them.
fn get_roles(p: &Published) -> Value {
    let state = &p.state;
    let mut names: std::collections::BTreeSet<&String> = state.shares.roles.keys().collect();
    names.extend(state.weights.keys());
    names.extend(state.quotas.keys());
    let roles: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let share = state.shares.roles.get(name);
            let weight = share
                .map(|s| s.weight)
                .or_else(|| state.weights.get(name).copied())
                .unwrap_or(1.0);
            let mut role = json!({
                "name": name,
                "weight": weight,
                "frameworks": share
                    .map(|s| s.frameworks.keys().map(id).collect::<Vec<_>>())
                    .unwrap_or_default(),
                "share": share.map_or(0.0, |s| s.share),
            });
            if let Some(q) = state.quotas.get(name) {
                role["quota"] = json!({
                    "guarantees": quota_shape(&q.guarantees),
                    "limits": q.limits.as_ref().map(quota_shape),
                });
            }
            role
        })
        .collect();
    json!({ "roles": roles })
}

/// A call, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A read call, answered from the snapshot by [`read`].
    Read(String),
    /// A change for the core; answered `{"type": kind}` once applied.
    Change(&'static str, OperatorChange),
}

/// UPDATE_WEIGHTS' body: `{"update_weights": {"weight_infos": [{"role": R, "weight": W}]}}`.
fn weights(call: &Value) -> Result<Vec<(String, f64)>, String> {
    let infos = call
        .pointer("/update_weights/weight_infos")
        .and_then(Value::as_array)
        .ok_or("UPDATE_WEIGHTS needs \"update_weights\": {\"weight_infos\": [...]}")?;
    infos
        .iter()
        .map(|info| {
            let role = info.get("role").and_then(Value::as_str);
            let weight = info.get("weight").and_then(Value::as_f64);
            match (role, weight) {
                (Some(role), Some(weight)) => Ok((role.to_owned(), weight)),
                _ => Err(format!(
                    "each weight_info needs a string \"role\" and a number \"weight\": {info}"
                )),
            }
        })
        .collect()
}

/// Mesos' `{"cpus": {"value": 4}, "mem": {"value": 4096}}` as scalar resources; `what`
/// names the field in errors.
fn quantities(value: Option<&Value>, what: &str) -> Result<Resources, String> {
    let Some(value) = value else {
        return Ok(Resources::new());
    };
    let map = value.as_object().ok_or_else(|| {
        format!("{what} must be an object of {{\"name\": {{\"value\": N}}}}: {value}")
    })?;
    let mut text = Vec::new();
    for (name, amount) in map {
        let number = amount
            .get("value")
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{what}.{name} needs a number \"value\": {amount}"))?;
        if !number.is_finite() || number < 0.0 {
            return Err(format!("{what}.{name}: {number} is not an amount >= 0"));
        }
        text.push(format!("{name}:{number}"));
    }
    let resources = Resources::parse(&text.join(";")).map_err(|e| format!("{what}: {e}"))?;
    if let Some(r) = resources
        .iter()
        .find(|r| !matches!(r.value, ResourceValue::Scalar(_)))
    {
        return Err(format!(
            "{what}.{}: a quota is over scalar resources",
            r.name
        ));
    }
    Ok(resources)
}

/// UPDATE_QUOTA's body: `{"update_quota": {"quota_configs": [{"role": R, "guarantees":
/// {"cpus": {"value": 4}}, "limits": {"cpus": {"value": 8}}}]}}` (Mesos 1.9+).
fn quota_configs(call: &Value) -> Result<Vec<(String, QuotaConfig)>, String> {
    let configs = call
        .pointer("/update_quota/quota_configs")
        .and_then(Value::as_array)
        .ok_or("UPDATE_QUOTA needs \"update_quota\": {\"quota_configs\": [...]}")?;
    configs
        .iter()
        .map(|config| {
            let role = config
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("each quota config needs a string \"role\": {config}"))?;
            let guarantees = quantities(config.get("guarantees"), "guarantees")?;
            let limits = match config.get("limits") {
                None => None,
                Some(limits) => Some(quantities(Some(limits), "limits")?),
            };
            Ok((role.to_owned(), QuotaConfig { guarantees, limits }))
        })
        .collect()
}

/// Scalar resources in Mesos' quota shape, `{"cpus": {"value": 4}}`.
fn quota_shape(resources: &Resources) -> Value {
    let mut map = serde_json::Map::new();
    for r in resources.iter() {
        if let ResourceValue::Scalar(value) = &r.value {
            map.insert(
                r.name.clone(),
                json!({ "value": value.milli() as f64 / 1000.0 }),
            );
        }
    }
    Value::Object(map)
}

fn get_quota(p: &Published) -> Value {
    let configs: Vec<Value> = p
        .state
        .quotas
        .iter()
        .map(|(role, q)| {
            let mut config = json!({ "role": role, "guarantees": quota_shape(&q.guarantees) });
            if let Some(limits) = &q.limits {
                config["limits"] = quota_shape(limits);
            }
            config
        })
        .collect();
    let infos: Vec<Value> = p
        .state
        .quotas
        .iter()
        .map(|(role, q)| json!({ "role": role, "guarantee": q.guarantees }))
        .collect();
    json!({ "status": { "infos": infos, "configs": configs } })
}

/// Parses the call in `body` (the request's bytes); a refusal comes as the answer to send.
pub fn parse(body: &[u8]) -> Result<Call, Answer> {
    let call: Value = serde_json::from_slice(body)
        .map_err(|e| error(400, format!("the body is not a JSON call: {e}")))?;
    let Some(kind) = call.get("type").and_then(Value::as_str) else {
        return Err(error(
            400,
            format!("the call has no string field \"type\" (one of {READ_CALLS:?}): {call}"),
        ));
    };
    if READ_CALLS.contains(&kind) {
        return Ok(Call::Read(kind.to_owned()));
    }
    if kind == CHANGE_CALLS[0] {
        return weights(&call)
            .map(|w| Call::Change(CHANGE_CALLS[0], OperatorChange::UpdateWeights(w)))
            .map_err(|e| error(400, e));
    }
    if kind == CHANGE_CALLS[1] {
        return quota_configs(&call)
            .map(|q| Call::Change(CHANGE_CALLS[1], OperatorChange::UpdateQuota(q)))
            .map_err(|e| error(400, e));
    }
    if NOT_BUILT.contains(&kind) {
        return Err(error(
            501,
            format!("{kind} is not implemented by this master yet"),
        ));
    }
    Err(error(
        400,
        format!(
            "unknown call type {kind:?}; this master answers {READ_CALLS:?} and \
             {CHANGE_CALLS:?} (and knows {NOT_BUILT:?}, not built yet)"
        ),
    ))
}

/// The answer to a change the core applied (`Ok`) or refused (`Err`, 400 with why).
pub fn changed(kind: &str, result: Result<(), String>) -> Answer {
    match result {
        Ok(()) => Answer {
            status: 200,
            body: json!({ "type": kind }),
        },
        Err(e) => error(400, e),
    }
}

/// Answers a read call in `body` from the snapshot `p` (a change is refused: the HTTP
/// handler routes those to the core).
#[cfg(test)]
fn answer(body: &[u8], p: &Published) -> Answer {
    match parse(body) {
        Ok(Call::Read(kind)) => read(&kind, p),
        Ok(Call::Change(kind, _)) => error(500, format!("{kind} must go to the core")),
        Err(refused) => refused,
    }
}

/// Answers the read call `kind` from the snapshot `p`.
pub fn read(kind: &str, p: &Published) -> Answer {
    let (field, value) = match kind {
        "GET_HEALTH" => ("get_health", json!({ "healthy": true })),
        "GET_VERSION" => (
            "get_version",
            json!({ "version_info": { "version": env!("CARGO_PKG_VERSION") } }),
        ),
        "GET_AGENTS" => ("get_agents", get_agents(p)),
        "GET_FRAMEWORKS" => ("get_frameworks", get_frameworks(p)),
        "GET_TASKS" => ("get_tasks", get_tasks(p)),
        "GET_ROLES" => ("get_roles", get_roles(p)),
        "GET_QUOTA" => ("get_quota", get_quota(p)),
        "GET_STATE" => (
            "get_state",
            json!({
                "get_tasks": get_tasks(p),
                "get_executors": { "executors": [] },
                "get_frameworks": get_frameworks(p),
                "get_agents": get_agents(p),
            }),
        ),
        other => return error(400, format!("unknown read call {other:?}")),
    };
    let mut body = json!({ "type": kind });
    body[field] = value;
    Answer { status: 200, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Published {
        let master = crate::core::Master::new(
            crate::core::MasterConfig::default(),
            Box::new(crate::registry::InMemoryRegistry::default()),
        );
        Published::new(
            master.state(),
            "127.0.0.1:5050".parse().unwrap(),
            "127.0.0.1:5050".parse().unwrap(),
        )
    }

    #[test]
    fn read_calls_answer_in_mesos_shapes() {
        let p = empty();
        let a = answer(br#"{"type": "GET_HEALTH"}"#, &p);
        assert_eq!(a.status, 200);
        assert_eq!(
            a.body,
            json!({"type": "GET_HEALTH", "get_health": {"healthy": true}})
        );
        let a = answer(br#"{"type": "GET_STATE"}"#, &p);
        assert_eq!(a.status, 200);
        for key in ["get_tasks", "get_executors", "get_frameworks", "get_agents"] {
            assert!(
                a.body["get_state"].get(key).is_some(),
                "{key} missing: {}",
                a.body
            );
        }
        for call in READ_CALLS {
            let a = answer(format!(r#"{{"type": "{call}"}}"#).as_bytes(), &p);
            assert_eq!(a.status, 200, "{call}: {}", a.body);
            assert_eq!(a.body["type"], call);
        }
    }

    #[test]
    fn bad_calls_are_refused_naming_the_problem() {
        let p = empty();
        let a = answer(b"{not json", &p);
        assert_eq!(a.status, 400);
        assert!(
            a.body["error"]
                .as_str()
                .unwrap()
                .contains("not a JSON call")
        );
        let a = answer(br#"{"kind": "GET_STATE"}"#, &p);
        assert_eq!(a.status, 400);
        assert!(a.body["error"].as_str().unwrap().contains("\"type\""));
        let a = answer(br#"{"type": "GET_EVERYTHING"}"#, &p);
        assert_eq!(a.status, 400);
        assert!(a.body["error"].as_str().unwrap().contains("GET_EVERYTHING"));
        let a = answer(br#"{"type": "TEARDOWN"}"#, &p);
        assert_eq!(a.status, 501);
        assert!(a.body["error"].as_str().unwrap().contains("TEARDOWN"));
        let bad = parse(br#"{"type": "UPDATE_WEIGHTS", "update_weights": {}}"#).unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(bad.body["error"].as_str().unwrap().contains("weight_infos"));
        let bad = parse(
            br#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "a"}]}}"#,
        )
        .unwrap_err();
        assert!(bad.body["error"].as_str().unwrap().contains("\"weight\""));
    }

    #[test]
    fn update_weights_parses_mesos_weight_infos() {
        let call = parse(
            br#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
                {"role": "light", "weight": 1}, {"role": "heavy", "weight": 3.0}]}}"#,
        )
        .unwrap();
        assert_eq!(
            call,
            Call::Change(
                "UPDATE_WEIGHTS",
                OperatorChange::UpdateWeights(vec![("light".into(), 1.0), ("heavy".into(), 3.0)])
            )
        );
        assert_eq!(changed("UPDATE_WEIGHTS", Ok(())).status, 200);
        assert_eq!(changed("UPDATE_WEIGHTS", Err("no".into())).status, 400);
    }

    #[test]
    fn update_quota_parses_mesos_quota_configs() {
        let call = parse(
            br#"{"type": "UPDATE_QUOTA", "update_quota": {"force": false, "quota_configs": [
                {"role": "dev", "guarantees": {"cpus": {"value": 2}, "mem": {"value": 1024}},
                 "limits": {"cpus": {"value": 4.5}}}]}}"#,
        )
        .unwrap();
        let Call::Change("UPDATE_QUOTA", OperatorChange::UpdateQuota(configs)) = call else {
            panic!("{call:?}");
        };
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].0, "dev");
        assert_eq!(
            configs[0].1.guarantees,
            Resources::parse("cpus:2;mem:1024").unwrap()
        );
        assert_eq!(
            configs[0].1.limits,
            Some(Resources::parse("cpus:4.5").unwrap())
        );
        for (body, says) in [
            (r#"{"type": "UPDATE_QUOTA"}"#, "quota_configs"),
            (
                r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"guarantees": {}}]}}"#,
                "\"role\"",
            ),
            (
                r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "guarantees": {"cpus": 2}}]}}"#,
                "guarantees.cpus",
            ),
            (
                r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "guarantees": {"cpus": {"value": -1}}}]}}"#,
                "-1",
            ),
            (
                r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "limits": {"ports": {"value": 3}}}]}}"#,
                "ports",
            ),
        ] {
            let bad = parse(body.as_bytes()).unwrap_err();
            assert_eq!(bad.status, 400, "{body}");
            let message = bad.body["error"].as_str().unwrap();
            assert!(message.contains(says), "{body}: {message}");
        }
    }
}
