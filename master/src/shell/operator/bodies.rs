//! The bodies of the operator calls that change the cluster, read from Mesos' JSON into
//! the core's [`OperatorCall`]. Each refusal names the field that is wrong and shows what
//! was sent.

use std::time::Duration;

use serde_json::Value;

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::resources::{Resources, Value as ResourceValue};

use crate::core::OperatorCall;
use crate::registry::QuotaConfig;

/// An id at `pointer`, in Mesos' shape `{"value": "..."}` (a bare string is taken too).
fn id_at(call: &Value, pointer: &str, kind: &str) -> Result<String, String> {
    let field = call.pointer(pointer);
    let value = field
        .and_then(|v| v.get("value").or(Some(v)))
        .and_then(Value::as_str);
    match value {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => {
            let (object, name) = pointer[1..].split_once('/').unwrap_or(("", &pointer[1..]));
            let sent = call
                .get(object)
                .map_or_else(|| "nothing".to_owned(), Value::to_string);
            Err(format!(
                "{kind} needs \"{object}\": {{\"{name}\": {{\"value\": \"...\"}}}}; got {sent}"
            ))
        }
    }
}

/// An optional id at `pointer`; present but malformed is an error.
fn optional_id_at(call: &Value, pointer: &str, kind: &str) -> Result<Option<String>, String> {
    match call.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => id_at(call, pointer, kind).map(Some),
    }
}

/// A duration in one of the shapes clients send: Mesos' `{"nanoseconds": N}`,
/// `{"seconds": N}`, or a number of seconds.
fn duration_at(call: &Value, pointer: &str) -> Result<Option<Duration>, String> {
    let Some(value) = call.pointer(pointer).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(n) => n.as_f64(),
        Value::Object(map) => match (map.get("nanoseconds"), map.get("seconds")) {
            (Some(ns), _) => ns.as_f64().map(|ns| ns / 1e9),
            (None, Some(s)) => s.as_f64(),
            (None, None) => None,
        },
        _ => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Duration::try_from_secs_f64(s).ok()),
        _ => Err(format!(
            "{pointer} must be a duration >= 0: {{\"nanoseconds\": N}}, {{\"seconds\": N}} \
             or a number of seconds; got {value}"
        )),
    }
}

/// UPDATE_WEIGHTS' body: `{"update_weights": {"weight_infos": [{"role": R, "weight": W}]}}`.
pub fn weights(call: &Value) -> Result<Vec<(String, f64)>, String> {
    let infos = call
        .pointer("/update_weights/weight_infos")
        .ok_or("UPDATE_WEIGHTS needs \"update_weights\": {\"weight_infos\": [...]}")?;
    weight_infos(infos)
}

/// A list of Mesos WeightInfos, `[{"role": R, "weight": W}]` (also `PUT /weights`' body).
pub fn weight_infos(infos: &Value) -> Result<Vec<(String, f64)>, String> {
    let infos = infos.as_array().ok_or_else(|| {
        format!("weight_infos must be a list of {{\"role\", \"weight\"}}: {infos}")
    })?;
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
pub fn quota_configs(call: &Value) -> Result<Vec<(String, QuotaConfig)>, String> {
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

/// TEARDOWN: `{"teardown": {"framework_id": {"value": F}}}`.
pub fn teardown(call: &Value) -> Result<OperatorCall, String> {
    let framework_id = id_at(call, "/teardown/framework_id", "TEARDOWN")?;
    Ok(OperatorCall::Teardown {
        framework_id: FrameworkId(framework_id),
    })
}

/// KILL_TASK (Fleet's own): `{"kill_task": {"task_id": {"value": T}, "framework_id":
/// {"value": F}, "grace_period": {"nanoseconds": N}}}`, framework and grace optional.
pub fn kill_task(call: &Value) -> Result<OperatorCall, String> {
    let task_id = id_at(call, "/kill_task/task_id", "KILL_TASK")?;
    let framework_id = optional_id_at(call, "/kill_task/framework_id", "KILL_TASK")?;
    let grace = duration_at(call, "/kill_task/grace_period")?;
    Ok(OperatorCall::KillTask {
        task_id: TaskId(task_id),
        framework_id: framework_id.map(FrameworkId),
        grace,
    })
}

/// DEACTIVATE_AGENT, REACTIVATE_AGENT, MARK_AGENT_GONE and DRAIN_AGENT: `{"<field>":
/// {"agent_id": {"value": A}}}`; DRAIN_AGENT also takes `max_grace_period` and
/// `mark_gone` (a bool, or `{"value": bool}`).
pub fn agent_call(kind: &str, call: &Value) -> Result<OperatorCall, String> {
    let field = kind.to_ascii_lowercase();
    let agent_id = AgentId(id_at(call, &format!("/{field}/agent_id"), kind)?);
    Ok(match kind {
        "DEACTIVATE_AGENT" => OperatorCall::DeactivateAgent { agent_id },
        "REACTIVATE_AGENT" => OperatorCall::ReactivateAgent { agent_id },
        "MARK_AGENT_GONE" => OperatorCall::MarkAgentGone { agent_id },
        _ => {
            let max_grace = duration_at(call, "/drain_agent/max_grace_period")?;
            let mark_gone = match call.pointer("/drain_agent/mark_gone") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => other.get("value").and_then(Value::as_bool).ok_or_else(|| {
                    format!("drain_agent.mark_gone must be true or false: {other}")
                })?,
            };
            OperatorCall::DrainAgent {
                agent_id,
                max_grace,
                mark_gone,
            }
        }
    })
}

/// The principal a resource entry's reservation names: Mesos' `reservations` (the last
/// one, the role the entry is reserved for) or the older `reservation`.
fn reservation_principal(entry: &Value) -> Option<&str> {
    entry
        .get("reservations")
        .and_then(Value::as_array)
        .and_then(|list| list.last())
        .or_else(|| entry.get("reservation"))
        .and_then(|r| r.get("principal"))
        .and_then(Value::as_str)
}

/// The roles and principals the resource entries of a RESERVE_RESOURCES or
/// UNRESERVE_RESOURCES name, for ACLs. Entries that name none are skipped.
pub fn reservation_objects(call: &Value) -> (Vec<String>, Vec<String>) {
    let entries = [
        "/reserve_resources/resources",
        "/unreserve_resources/resources",
    ]
    .iter()
    .find_map(|p| call.pointer(p))
    .and_then(Value::as_array)
    .map_or(&[][..], Vec::as_slice);
    let mut roles: Vec<String> = Vec::new();
    let mut principals: Vec<String> = Vec::new();
    for entry in entries {
        let role = entry
            .get("reservations")
            .and_then(Value::as_array)
            .and_then(|list| list.last())
            .and_then(|r| r.get("role"))
            .or_else(|| entry.get("role"))
            .and_then(Value::as_str);
        if let Some(role) = role.filter(|r| *r != "*" && !roles.iter().any(|x| x == r)) {
            roles.push(role.to_owned());
        }
        if let Some(p) = reservation_principal(entry).filter(|p| !principals.iter().any(|x| x == p))
        {
            principals.push(p.to_owned());
        }
    }
    (roles, principals)
}

/// Resources and the one principal their reservations name (None: none named), from a
/// JSON array of Mesos resources.
fn reserved_resources(list: &Value, at: &str) -> Result<(Resources, Option<String>), String> {
    let entries = list.as_array().ok_or_else(|| {
        format!(
            "{at} must be a list of resources such as [{{\"name\": \"cpus\", \"type\": \
             \"SCALAR\", \"scalar\": {{\"value\": 1}}, \"reservations\": [{{\"type\": \
             \"DYNAMIC\", \"role\": \"web\"}}]}}]; got {list}"
        )
    })?;
    let resources: Resources =
        serde_json::from_value(list.clone()).map_err(|e| format!("{at}: {e}; got {list}"))?;
    let mut principal: Option<&str> = None;
    for p in entries.iter().filter_map(reservation_principal) {
        match principal {
            Some(seen) if seen != p => {
                return Err(format!(
                    "{at} names two reservation principals ('{seen}' and '{p}'); send one call \
                     per principal"
                ));
            }
            _ => principal = Some(p),
        }
    }
    Ok((resources, principal.map(str::to_owned)))
}

/// RESERVE_RESOURCES and UNRESERVE_RESOURCES: `{"<field>": {"agent_id": {"value": A},
/// "resources": [...]}}`, each resource reserved for its role (`reservations` with the
/// role last, or Mesos' older `role`), optionally with a `principal`.
pub fn reservation_call(kind: &str, call: &Value) -> Result<OperatorCall, String> {
    let field = kind.to_ascii_lowercase();
    let agent_id = AgentId(id_at(call, &format!("/{field}/agent_id"), kind)?);
    let list = call
        .pointer(&format!("/{field}/resources"))
        .unwrap_or(&Value::Null);
    let (resources, principal) = reserved_resources(list, &format!("{field}.resources"))?;
    Ok(if kind == "RESERVE_RESOURCES" {
        OperatorCall::Reserve {
            agent_id,
            resources,
            principal,
        }
    } else {
        OperatorCall::Unreserve {
            agent_id,
            resources,
            principal,
        }
    })
}

/// The Mesos form of `/reserve` and `/unreserve`: `slaveId=A&resources=[...]` (URL
/// encoded), or the same as JSON: `{"agent_id": A, "resources": [...]}`.
pub fn reservation_form(kind: &str, body: &[u8]) -> Result<OperatorCall, String> {
    let field = kind.to_ascii_lowercase();
    let inner: Value = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json,
        Err(_) => {
            let mut agent = None;
            let mut resources = None;
            for (key, value) in form_urlencoded::parse(body) {
                match &*key {
                    "slaveId" | "agentId" => agent = Some(Value::String(value.into_owned())),
                    "resources" => {
                        resources = Some(serde_json::from_str::<Value>(&value).map_err(|e| {
                            format!("the form field resources is not a JSON list: {e}")
                        })?);
                    }
                    _ => {}
                }
            }
            let path = if kind == "RESERVE_RESOURCES" {
                "/reserve"
            } else {
                "/unreserve"
            };
            let (Some(agent), Some(resources)) = (agent, resources) else {
                return Err(format!(
                    "POST {path} needs the form fields slaveId=AGENT and resources=[JSON \
                     resources]; got {:?}",
                    String::from_utf8_lossy(body)
                ));
            };
            serde_json::json!({ "agent_id": agent, "resources": resources })
        }
    };
    reservation_call(kind, &serde_json::json!({ field: inner }))
}
