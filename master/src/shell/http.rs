//! The master's HTTP API on TCP: /health, /state (JSON), /metrics (Prometheus text) and
//! the web UI at / (see `ui.rs`), served from snapshots of the state (see `snapshots.rs`)
//! on a thread of its own. Every route but /health passes `http_auth`'s layer first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};
use tokio::sync::watch;

use super::driver::ShellEvent;
use super::http_auth::{self, Caller};
use super::leadership::Leadership;
use super::net::ShardStats;
use super::operator::{self, Call, events};
use super::replica::ReplicaView;
use super::snapshots::Snapshots;
use crate::auth::Security;

/// What the handlers share: the last snapshot, and the way to the core for changes.
#[derive(Clone)]
struct App {
    published: Snapshots,
    events: tokio::sync::mpsc::UnboundedSender<ShellEvent>,
    security: Arc<Security>,
    /// The Raft node, for /metrics, when replicated.
    raft: Option<ReplicaView>,
    /// Connections per network shard, for /metrics.
    shards: Arc<ShardStats>,
}

/// Whether this master leads (followers redirect), and its Raft node.
pub(super) struct Routing {
    pub leadership: watch::Receiver<Leadership>,
    pub raft: Option<ReplicaView>,
    pub shards: Arc<ShardStats>,
}

pub(super) fn serve(
    listener: std::net::TcpListener,
    published: Snapshots,
    events: tokio::sync::mpsc::UnboundedSender<ShellEvent>,
    security: Arc<Security>,
    routing: Routing,
    mut stop: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the HTTP runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        if let Err(e) = listener.set_nonblocking(true) {
            tracing::error!("cannot serve HTTP: {e}");
            return;
        }
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot serve HTTP: {e}");
                return;
            }
        };
        let app = Router::new()
            .route("/health", get(health))
            .route("/state", get(state))
            .route("/metrics", get(metrics))
            .route("/api/v1", post(operator).get(operator_get))
            .route(
                "/raft",
                get(super::redirect::raft).with_state(routing.raft.clone()),
            )
            .with_state(App {
                published: published.clone(),
                events: events.clone(),
                security: security.clone(),
                raft: routing.raft,
                shards: routing.shards,
            })
            .merge(super::endpoints::router(super::endpoints::Endpoints {
                published: published.clone(),
                events: events.clone(),
                security: security.clone(),
            }))
            .merge(super::ui::router(published))
            .layer(middleware::from_fn_with_state(security, http_auth::layer))
            .layer(middleware::from_fn_with_state(
                routing.leadership,
                super::redirect::layer,
            ));
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("HTTP server failed: {e}");
        }
    });
}

async fn health() -> &'static str {
    "OK\n"
}

async fn state(State(app): State<App>) -> Response {
    let snapshot = app.published.fresh().await;
    match serde_json::to_vec_pretty(&*snapshot) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize state: {e}\n"),
        )
            .into_response(),
    }
}

/// POST /api/v1: one operator call (see `operator.rs`).
async fn operator(
    State(app): State<App>,
    Extension(Caller(principal)): Extension<Caller>,
    body: Bytes,
) -> Response {
    for action in http_auth::operator_actions(&body) {
        if let Err(refusal) = app.security.authorize(principal.as_deref(), action) {
            return http_auth::refuse("/api/v1", refusal);
        }
    }
    let answer = match operator::parse(&body) {
        Err(refused) => refused,
        Ok(Call::Read(kind)) => {
            let snapshot = app.published.fresh().await;
            operator::read(&kind, &snapshot.state)
        }
        Ok(Call::Change(kind, call)) => {
            match super::endpoints::bind_principal(call, principal.as_deref()) {
                Ok(call) => {
                    operator::changed(kind, super::endpoints::apply(&app.events, call).await)
                }
                Err(why) => operator::error(400, why),
            }
        }
        Ok(Call::Subscribe { heartbeat }) => {
            let (stream, records) = tokio::sync::mpsc::channel(events::STREAM_QUEUE);
            if app
                .events
                .send(ShellEvent::Watch { stream, heartbeat })
                .is_ok()
            {
                return events::response(records, heartbeat);
            }
            operator::error(503, "the master is shutting down".to_owned())
        }
    };
    answer.into_response()
}

async fn operator_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "POST a call to /api/v1, e.g. {\"type\": \"GET_STATE\"}\n",
    )
        .into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let snapshot = app.published.fresh().await;
    let mut text = super::metrics::render(&snapshot.state);
    text.push_str(&app.shards.metrics());
    if let Some(raft) = &app.raft {
        text.push_str(&raft.metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
