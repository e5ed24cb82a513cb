//! Mesos' HTTP endpoints beside `/api/v1`, each one an operator call in another shape:
//! `/teardown` (POST `frameworkId=F`), `/quota` (GET), `/weights` (GET, PUT
//! `[{"role", "weight"}]`), `/maintenance/schedule` (GET, POST a schedule),
//! `/maintenance/status` (GET), `/machine/down` and `/machine/up` (POST `[{"hostname",
//! "ip"}]`), `/reserve` and `/unreserve` (POST `slaveId=A&resources=[...]`, 202). Also
//! the way every change reaches the core: [`apply`], and the principal a reservation is
//! recorded under: [`bind_principal`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::driver::ShellEvent;
use super::http_auth::{self, Caller};
use super::operator::{Answer, bodies, error, maintenance, shapes};
use super::snapshots::Snapshots;
use crate::auth::{Action, Security};
use crate::core::OperatorCall;

/// How long an operator change may wait for the core before the caller is told so.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a change to the core and waits for its outcome.
pub(super) async fn apply(
    events: &UnboundedSender<ShellEvent>,
    call: OperatorCall,
) -> Result<(), String> {
    let (reply, result) = tokio::sync::oneshot::channel();
    if events.send(ShellEvent::Operator { call, reply }).is_err() {
        return Err("the master is shutting down".to_owned());
    }
    match tokio::time::timeout(CHANGE_TIMEOUT, result).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the master dropped the call".to_owned()),
        Err(_) => Err(format!(
            "no answer from the master within {CHANGE_TIMEOUT:?}"
        )),
    }
}

/// A reservation is recorded under the caller's principal: one named in the call must be
/// the caller's (Mesos' rule); without credentials the named one is taken as given.
pub(super) fn bind_principal(
    call: OperatorCall,
    caller: Option<&str>,
) -> Result<OperatorCall, String> {
    match call {
        OperatorCall::Reserve {
            agent_id,
            resources,
            principal,
        } => {
            let principal = match (principal, caller) {
                (Some(named), Some(caller)) if named != caller => {
                    return Err(format!(
                        "the reservation names principal '{named}', but the caller is                          '{caller}': a reservation is made under the caller's own principal"
                    ));
                }
                (named, caller) => caller.map(str::to_owned).or(named),
            };
            Ok(OperatorCall::Reserve {
                agent_id,
                resources,
                principal,
            })
        }
        other => Ok(other),
    }
}

/// What these handlers share.
#[derive(Clone)]
pub(super) struct Endpoints {
    pub published: Snapshots,
    pub events: UnboundedSender<ShellEvent>,
    pub security: Arc<Security>,
}

pub(super) fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/teardown", post(teardown))
        .route("/quota", get(quota))
        .route("/weights", get(weights).put(set_weights))
        .route("/maintenance/schedule", get(schedule).post(set_schedule))
        .route("/maintenance/status", get(status))
        .route("/machine/down", post(machine_down))
        .route("/machine/up", post(machine_up))
        .route("/reserve", post(reserve))
        .route("/unreserve", post(unreserve))
        .with_state(endpoints)
}

fn ok(value: Value) -> Response {
    Answer {
        status: 200,
        body: value,
    }
    .into_response()
}

/// Applies `call` (or answers the refusal): 200 with an empty body, as Mesos answers
/// these endpoints.
async fn change(e: &Endpoints, call: Result<OperatorCall, String>) -> Response {
    change_answering(e, call, StatusCode::OK).await
}

/// [`change`], answering `done` when it is applied.
async fn change_answering(
    e: &Endpoints,
    call: Result<OperatorCall, String>,
    done: StatusCode,
) -> Response {
    let result = match call {
        Ok(call) => apply(&e.events, call).await,
        Err(refused) => Err(refused),
    };
    match result {
        Ok(()) => done.into_response(),
        Err(why) => error(400, why).into_response(),
    }
}

/// [`change`], once `principal` may do `action` (else 401/403, logged, naming `path`).
async fn authorized_change(
    e: &Endpoints,
    principal: Option<&str>,
    action: Action,
    path: &str,
    call: Result<OperatorCall, String>,
) -> Response {
    if let Err(refusal) = e.security.authorize(principal, action) {
        return http_auth::refuse(path, refusal);
    }
    change(e, call).await
}

fn json_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// `frameworkId=F` from a form body (Mesos), or `{"framework_id": ...}` in JSON.
fn framework_of(body: &[u8]) -> Result<OperatorCall, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not text".to_owned())?;
    let from_form = text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == "frameworkId").then(|| value.trim().to_owned())
    });
    match from_form.filter(|f| !f.is_empty()) {
        Some(framework) => Ok(OperatorCall::Teardown {
            framework_id: fleet_proto::ids::FrameworkId(framework),
        }),
        None => {
            let call = serde_json::json!({ "teardown": json_body(body).ok() });
            bodies::teardown(&call).map_err(|_| {
                format!("POST /teardown needs the form field frameworkId=ID; got {text:?}")
            })
        }
    }
}

async fn teardown(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    let action = Action::TeardownFramework {
        framework_principal: None,
    };
    authorized_change(
        &e,
        principal.as_deref(),
        action,
        "/teardown",
        framework_of(&body),
    )
    .await
}

async fn quota(State(e): State<Endpoints>) -> Response {
    let snapshot = e.published.fresh().await;
    ok(shapes::get_quota(&snapshot.state)["status"].clone())
}

async fn weights(State(e): State<Endpoints>) -> Response {
    let snapshot = e.published.fresh().await;
    ok(shapes::weight_infos(&snapshot.state))
}

async fn set_weights(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    let weights = json_body(&body).and_then(|infos| bodies::weight_infos(&infos));
    if let Ok(weights) = &weights {
        for (role, _) in weights {
            let action = Action::UpdateWeight { role: role.clone() };
            if let Err(refusal) = e.security.authorize(principal.as_deref(), action) {
                return http_auth::refuse("/weights", refusal);
            }
        }
    }
    change(&e, weights.map(OperatorCall::UpdateWeights)).await
}

async fn schedule(State(e): State<Endpoints>) -> Response {
    let snapshot = e.published.fresh().await;
    ok(maintenance::schedule_json(&snapshot.state.maintenance))
}

async fn set_schedule(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    let windows = json_body(&body).and_then(|s| maintenance::schedule(&s));
    let call = windows.map(OperatorCall::UpdateSchedule);
    let action = Action::UpdateMaintenanceSchedule;
    authorized_change(
        &e,
        principal.as_deref(),
        action,
        "/maintenance/schedule",
        call,
    )
    .await
}

async fn status(State(e): State<Endpoints>) -> Response {
    let snapshot = e.published.fresh().await;
    ok(maintenance::status_json(&snapshot.state.maintenance))
}

async fn machine_down(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    let machines = json_body(&body).and_then(|m| maintenance::machines(&m, "the body"));
    let call = machines.map(OperatorCall::MachinesDown);
    authorized_change(
        &e,
        principal.as_deref(),
        Action::StartMaintenance,
        "/machine/down",
        call,
    )
    .await
}

async fn machine_up(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    let machines = json_body(&body).and_then(|m| maintenance::machines(&m, "the body"));
    let call = machines.map(OperatorCall::MachinesUp);
    authorized_change(
        &e,
        principal.as_deref(),
        Action::StopMaintenance,
        "/machine/up",
        call,
    )
    .await
}

/// `/reserve` and `/unreserve`: authorized on the roles (RESERVE) or the reservations'
/// principals (UNRESERVE) the resources name, answered 202 as Mesos does.
async fn reservation(
    e: &Endpoints,
    path: &str,
    kind: &str,
    principal: Option<&str>,
    body: &[u8],
) -> Response {
    let call = bodies::reservation_form(kind, body);
    let actions = match &call {
        Ok(OperatorCall::Reserve { resources, .. }) => http_auth::reserve_actions(
            resources
                .reservation_roles()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        Ok(OperatorCall::Unreserve { principal, .. }) => {
            http_auth::unreserve_actions(principal.iter().cloned().collect())
        }
        _ => Vec::new(),
    };
    for action in actions {
        if let Err(refusal) = e.security.authorize(principal, action) {
            return http_auth::refuse(path, refusal);
        }
    }
    let call = call.and_then(|c| bind_principal(c, principal));
    change_answering(e, call, StatusCode::ACCEPTED).await
}

async fn reserve(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    reservation(
        &e,
        "/reserve",
        "RESERVE_RESOURCES",
        principal.as_deref(),
        &body,
    )
    .await
}

async fn unreserve(
    State(e): State<Endpoints>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    reservation(
        &e,
        "/unreserve",
        "UNRESERVE_RESOURCES",
        principal.as_deref(),
        &body,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_takes_a_form_or_json() {
        let want = Ok(OperatorCall::Teardown {
            framework_id: fleet_proto::ids::FrameworkId("F-1".into()),
        });
        assert_eq!(framework_of(b"frameworkId=F-1"), want);
        assert_eq!(framework_of(b"x=1&frameworkId=F-1"), want);
        assert_eq!(framework_of(br#"{"framework_id": {"value": "F-1"}}"#), want);
        assert!(framework_of(b"").unwrap_err().contains("frameworkId"));
    }
}
