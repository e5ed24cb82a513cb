//! Authentication and authorization of HTTP callers: a layer over every route but /health
//! reads the caller's principal from `Authorization` (401 with `WWW-Authenticate` when it is
//! missing or wrong, so a browser asks for a login), checks `get_endpoints` for GETs, and
//! leaves the principal in the request for the operator calls' own checks (403). Every
//! refusal is logged with the principal, the path and the reason.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::operator::{READ_CALLS, SUBSCRIBE, bodies};
use crate::auth::{Action, Refusal, Security};

/// The principal of an HTTP request that passed the layer (None: anonymous, when the
/// master has no credentials file).
#[derive(Debug, Clone)]
pub(super) struct Caller(pub Option<String>);

/// The path that needs no credentials: load balancers and probes ask it.
const OPEN_PATH: &str = "/health";

pub(super) async fn layer(
    State(security): State<Arc<Security>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == OPEN_PATH {
        return next.run(request).await;
    }
    let header = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                let reason = "the Authorization header is not plain text".to_owned();
                return refuse(&path, Refusal::Malformed { reason });
            }
        },
    };
    let principal = match security.http_principal(header.as_deref()) {
        Ok(principal) => principal,
        Err(refusal) => return refuse(&path, refusal),
    };
    if request.method() == Method::GET {
        let action = Action::GetEndpoint { path: path.clone() };
        if let Err(refusal) = security.authorize(principal.as_deref(), action) {
            return refuse(&path, refusal);
        }
    }
    request.extensions_mut().insert(Caller(principal));
    next.run(request).await
}

/// Logs the refusal and answers it: 401 with the login schemes, or 403.
pub(super) fn refuse(path: &str, refusal: Refusal) -> Response {
    tracing::warn!(
        principal = %refusal.principal(),
        path = %path,
        "HTTP request refused: {}",
        refusal.detail()
    );
    let status = if refusal.is_authentication() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut response = (status, Json(json!({ "error": refusal.to_string() }))).into_response();
    if refusal.is_authentication() {
        let headers = response.headers_mut();
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fleet\", charset=\"UTF-8\""),
        );
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"fleet\""),
        );
    }
    response
}

/// The ACL actions an operator call asks for, read from its JSON body. A body that is not
/// a call asks for none: the call's own parser refuses it (400).
pub(super) fn operator_actions(body: &[u8]) -> Vec<Action> {
    let Ok(call) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let roles = |pointer: &str| -> Vec<String> {
        call.pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get("role").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    match call.get("type").and_then(Value::as_str) {
        Some(kind) if READ_CALLS.contains(&kind) || kind == SUBSCRIBE => {
            vec![Action::GetEndpoint {
                path: "/api/v1".to_owned(),
            }]
        }
        Some("UPDATE_QUOTA") => roles("/update_quota/quota_configs")
            .into_iter()
            .map(|role| Action::UpdateQuota { role })
            .collect(),
        Some("UPDATE_WEIGHTS") => roles("/update_weights/weight_infos")
            .into_iter()
            .map(|role| Action::UpdateWeight { role })
            .collect(),
        // The framework's principal is not named, so only rules over ANY objects speak
        // for it; reservations name their roles (RESERVE) and principals (UNRESERVE).
        Some("TEARDOWN") => vec![Action::TeardownFramework {
            framework_principal: None,
        }],
        Some("RESERVE_RESOURCES") => reserve_actions(bodies::reservation_objects(&call).0),
        Some("UNRESERVE_RESOURCES") => unreserve_actions(bodies::reservation_objects(&call).1),
        Some("KILL_TASK") => vec![Action::KillTask],
        Some(
            kind @ ("DRAIN_AGENT" | "DEACTIVATE_AGENT" | "REACTIVATE_AGENT" | "MARK_AGENT_GONE"),
        ) => {
            let field = kind.to_ascii_lowercase();
            let agent = call
                .pointer(&format!("/{field}/agent_id"))
                .and_then(|v| v.get("value").or(Some(v)))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            vec![match kind {
                "DRAIN_AGENT" => Action::DrainAgent { agent },
                "DEACTIVATE_AGENT" => Action::DeactivateAgent { agent },
                "REACTIVATE_AGENT" => Action::ReactivateAgent { agent },
                _ => Action::MarkAgentGone { agent },
            }]
        }
        Some("UPDATE_MAINTENANCE_SCHEDULE") => vec![Action::UpdateMaintenanceSchedule],
        Some("START_MAINTENANCE") => vec![Action::StartMaintenance],
        Some("STOP_MAINTENANCE") => vec![Action::StopMaintenance],
        _ => Vec::new(),
    }
}

/// RESERVE asks `reserve_resources` once per role reserved for (no role named: an object
/// only ANY rules speak for).
pub(super) fn reserve_actions(roles: Vec<String>) -> Vec<Action> {
    if roles.is_empty() {
        return vec![Action::ReserveResources { role: None }];
    }
    roles
        .into_iter()
        .map(|role| Action::ReserveResources { role: Some(role) })
        .collect()
}

/// UNRESERVE asks `unreserve_resources` once per reservation principal named.
pub(super) fn unreserve_actions(principals: Vec<String>) -> Vec<Action> {
    if principals.is_empty() {
        return vec![Action::UnreserveResources {
            reserver_principal: None,
        }];
    }
    principals
        .into_iter()
        .map(|p| Action::UnreserveResources {
            reserver_principal: Some(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_calls_name_their_actions() {
        assert_eq!(
            operator_actions(
                br#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
                    {"role": "dev", "guarantees": {}}, {"role": "web"}]}}"#
            ),
            vec![
                Action::UpdateQuota { role: "dev".into() },
                Action::UpdateQuota { role: "web".into() }
            ]
        );
        assert_eq!(
            operator_actions(
                br#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
                    {"role": "batch", "weight": 2}]}}"#
            ),
            vec![Action::UpdateWeight {
                role: "batch".into()
            }]
        );
        assert_eq!(
            operator_actions(br#"{"type": "GET_STATE"}"#),
            vec![Action::GetEndpoint {
                path: "/api/v1".into()
            }]
        );
        assert_eq!(
            operator_actions(br#"{"type": "TEARDOWN"}"#),
            vec![Action::TeardownFramework {
                framework_principal: None
            }]
        );
        assert_eq!(
            operator_actions(
                br#"{"type": "RESERVE_RESOURCES", "reserve_resources": {"resources": [
                    {"name": "cpus", "reservations": [{"role": "web", "principal": "ops"}]},
                    {"name": "mem", "role": "db"}]}}"#
            ),
            vec![
                Action::ReserveResources {
                    role: Some("web".into())
                },
                Action::ReserveResources {
                    role: Some("db".into())
                }
            ]
        );
        assert_eq!(
            operator_actions(
                br#"{"type": "UNRESERVE_RESOURCES", "unreserve_resources": {"resources": [
                    {"name": "cpus", "reservations": [{"role": "web", "principal": "ops"}]}]}}"#
            ),
            vec![Action::UnreserveResources {
                reserver_principal: Some("ops".into())
            }]
        );
        assert_eq!(
            operator_actions(
                br#"{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "A-1"}}}"#
            ),
            vec![Action::DrainAgent {
                agent: "A-1".into()
            }]
        );
        assert_eq!(
            operator_actions(br#"{"type": "START_MAINTENANCE"}"#),
            vec![Action::StartMaintenance]
        );
        assert_eq!(
            operator_actions(br#"{"type": "KILL_TASK"}"#),
            vec![Action::KillTask]
        );
        assert_eq!(
            operator_actions(br#"{"type": "SUBSCRIBE"}"#),
            vec![Action::GetEndpoint {
                path: "/api/v1".into()
            }]
        );
        assert!(operator_actions(b"{not json").is_empty());
        assert!(operator_actions(br#"{"type": "GET_EVERYTHING"}"#).is_empty());
    }

    #[test]
    fn a_refusal_is_401_with_the_login_schemes_or_403() {
        let missing = refuse("/state", Refusal::Missing { principal: None });
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        let schemes: Vec<_> = missing
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(schemes[0].starts_with("Basic realm="), "{schemes:?}");
        let forbidden = refuse(
            "/api/v1",
            Refusal::Forbidden {
                principal: Some("web".into()),
                action: Action::UpdateQuota { role: "dev".into() },
            },
        );
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
