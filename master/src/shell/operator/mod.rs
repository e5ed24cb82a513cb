//! The operator API at `/api/v1`, in the JSON shapes of Mesos' v1 operator API: one POST
//! per call, `{"type": "GET_STATE"}`, answered `{"type": "GET_STATE", "get_state": {...}}`.
//! Read calls are answered from the last published snapshot, so a read never waits on
//! allocation (`shapes.rs`). Calls that change the cluster are read into the core's
//! [`OperatorCall`] (`bodies.rs`) and applied by the core through the driver. SUBSCRIBE
//! opens an event stream (`events.rs`). A body that is not a call gets 400 naming what is
//! wrong.
//!
//! KILL_TASK is Fleet's own call (Mesos' operator API has none): `{"type": "KILL_TASK",
//! "kill_task": {"task_id": {"value": T}}}` kills the task for its framework.

pub mod bodies;
pub mod events;
pub mod maintenance;
pub mod shapes;

#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::core::{MasterState, OperatorCall};

/// The read calls this master answers.
pub const READ_CALLS: [&str; 11] = [
    "GET_HEALTH",
    "GET_VERSION",
    "GET_STATE",
    "GET_AGENTS",
    "GET_FRAMEWORKS",
    "GET_TASKS",
    "GET_ROLES",
    "GET_QUOTA",
    "GET_WEIGHTS",
    "GET_MAINTENANCE_SCHEDULE",
    "GET_MAINTENANCE_STATUS",
];

/// Calls that change the cluster, applied by the core.
pub const CHANGE_CALLS: [&str; 13] = [
    "UPDATE_WEIGHTS",
    "RESERVE_RESOURCES",
    "UNRESERVE_RESOURCES",
    "UPDATE_QUOTA",
    "TEARDOWN",
    "KILL_TASK",
    "DEACTIVATE_AGENT",
    "REACTIVATE_AGENT",
    "DRAIN_AGENT",
    "MARK_AGENT_GONE",
    "UPDATE_MAINTENANCE_SCHEDULE",
    "START_MAINTENANCE",
    "STOP_MAINTENANCE",
];

/// The event stream.
pub const SUBSCRIBE: &str = "SUBSCRIBE";

/// The longest heartbeat interval a SUBSCRIBE may ask for.
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// The answer to one call: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match serde_json::to_vec_pretty(&self.body) {
            Ok(body) => {
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialize the answer: {e}\n"),
            )
                .into_response(),
        }
    }
}

pub fn error(status: u16, message: String) -> Answer {
    Answer {
        status,
        body: json!({ "error": message }),
    }
}

/// A call, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A read call, answered from the snapshot by [`read`].
    Read(String),
    /// A change for the core; answered `{"type": kind}` once applied.
    Change(&'static str, OperatorCall),
    /// An event stream with a HEARTBEAT every `heartbeat`.
    Subscribe { heartbeat: Duration },
}

/// SUBSCRIBE's optional `{"subscribe": {"heartbeat_interval_seconds": N}}` (a Fleet
/// extension; Mesos always beats every 15 s).
fn heartbeat(call: &Value) -> Result<Duration, String> {
    let Some(value) = call
        .pointer("/subscribe/heartbeat_interval_seconds")
        .filter(|v| !v.is_null())
    else {
        return Ok(events::DEFAULT_HEARTBEAT);
    };
    value
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.05 && *s <= MAX_HEARTBEAT.as_secs_f64())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!(
                "subscribe.heartbeat_interval_seconds must be a number of seconds from 0.05 \
                 to {}: {value}",
                MAX_HEARTBEAT.as_secs()
            )
        })
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
    if kind == SUBSCRIBE {
        return heartbeat(&call)
            .map(|heartbeat| Call::Subscribe { heartbeat })
            .map_err(|e| error(400, e));
    }
    if let Some(kind) = CHANGE_CALLS.iter().find(|c| **c == kind) {
        let change = match *kind {
            "UPDATE_WEIGHTS" => bodies::weights(&call).map(OperatorCall::UpdateWeights),
            "UPDATE_QUOTA" => bodies::quota_configs(&call).map(OperatorCall::UpdateQuota),
            "TEARDOWN" => bodies::teardown(&call),
            "KILL_TASK" => bodies::kill_task(&call),
            "RESERVE_RESOURCES" | "UNRESERVE_RESOURCES" => bodies::reservation_call(kind, &call),
            "UPDATE_MAINTENANCE_SCHEDULE" => {
                let schedule = call
                    .pointer("/update_maintenance_schedule/schedule")
                    .unwrap_or(&Value::Null);
                maintenance::schedule(schedule).map(OperatorCall::UpdateSchedule)
            }
            "START_MAINTENANCE" | "STOP_MAINTENANCE" => {
                let field = kind.to_ascii_lowercase();
                let list = call
                    .pointer(&format!("/{field}/machines"))
                    .unwrap_or(&Value::Null);
                let machines = maintenance::machines(list, &format!("{field}.machines"));
                if *kind == "START_MAINTENANCE" {
                    machines.map(OperatorCall::MachinesDown)
                } else {
                    machines.map(OperatorCall::MachinesUp)
                }
            }
            agent_call => bodies::agent_call(agent_call, &call),
        };
        return change
            .map(|change| Call::Change(kind, change))
            .map_err(|e| error(400, e));
    }
    Err(error(
        400,
        format!(
            "unknown call type {kind:?}; this master answers {READ_CALLS:?}, {CHANGE_CALLS:?} \
             and {SUBSCRIBE:?}"
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

/// Answers the read call `kind` from the snapshot `state`.
pub fn read(kind: &str, state: &MasterState) -> Answer {
    let (field, value) = match kind {
        "GET_HEALTH" => ("get_health", json!({ "healthy": true })),
        "GET_VERSION" => (
            "get_version",
            json!({ "version_info": { "version": env!("CARGO_PKG_VERSION") } }),
        ),
        "GET_AGENTS" => ("get_agents", shapes::get_agents(state)),
        "GET_FRAMEWORKS" => ("get_frameworks", shapes::get_frameworks(state)),
        "GET_TASKS" => ("get_tasks", shapes::get_tasks(state)),
        "GET_ROLES" => ("get_roles", shapes::get_roles(state)),
        "GET_QUOTA" => ("get_quota", shapes::get_quota(state)),
        "GET_WEIGHTS" => (
            "get_weights",
            json!({ "weight_infos": shapes::weight_infos(state) }),
        ),
        "GET_STATE" => ("get_state", shapes::get_state(state)),
        "GET_MAINTENANCE_SCHEDULE" => (
            "get_maintenance_schedule",
            json!({ "schedule": maintenance::schedule_json(&state.maintenance) }),
        ),
        "GET_MAINTENANCE_STATUS" => (
            "get_maintenance_status",
            json!({ "status": maintenance::status_json(&state.maintenance) }),
        ),
        other => return error(400, format!("unknown read call {other:?}")),
    };
    let mut body = json!({ "type": kind });
    body[field] = value;
    Answer { status: 200, body }
}
