//! HTTP on a master that does not lead: every request but those about this master itself
//! (`/health`, `/raft`, `/metrics`) is answered 307 with the leader's address in
//! `Location`, or 503 while no leader is known. `/raft` is this master's view of the Raft
//! group (`replica::RaftStatus`), which `fleet status` reads from every master.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::leadership::Leadership;
use super::replica::ReplicaView;

/// What a follower answers itself.
const LOCAL: [&str; 3] = ["/health", "/raft", "/metrics"];

pub(super) async fn layer(
    State(leadership): State<watch::Receiver<Leadership>>,
    request: Request,
    next: Next,
) -> Response {
    let now = *leadership.borrow();
    if now.serves() || LOCAL.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let refusal = now.refusal();
    match now.leader {
        Some(leader) => {
            let target = format!(
                "http://{leader}{}",
                request.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, target)],
                Json(json!({ "error": refusal, "leader": leader.to_string() })),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": refusal })),
        )
            .into_response(),
    }
}

/// GET /raft: this master's Raft status, or 404 for a master that is not replicated.
pub(super) async fn raft(State(raft): State<Option<ReplicaView>>) -> Response {
    match raft {
        Some(raft) => Json(raft.status()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "this master is not replicated (started without --data-dir)" })),
        )
            .into_response(),
    }
}
