//! The operator event stream (SUBSCRIBE): Mesos' RecordIO, `<length>\n<json>`, of
//! SUBSCRIBED (with a GET_STATE snapshot), TASK_ADDED, TASK_UPDATED, AGENT_ADDED,
//! AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and HEARTBEAT.
//!
//! The driver owns the [`Watchers`] and publishes each core event to every stream with
//! `try_send` on a bounded queue: a stream that falls [`STREAM_QUEUE`] events behind is
//! dropped (its response ends), so the core never waits on a slow reader.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::shapes;
use crate::core::{MasterState, OperatorEvent};

/// Events queued for one stream before it counts as too slow and is dropped.
pub const STREAM_QUEUE: usize = 1024;

/// How often a stream gets a HEARTBEAT unless the call asks otherwise (Mesos: 15 s).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// One event as a RecordIO record: its length in bytes, a newline, the JSON.
pub fn record(event: &Value) -> Bytes {
    let json = event.to_string();
    Bytes::from(format!("{}\n{json}", json.len()))
}

/// A core event in Mesos' shape, `{"type": "TASK_ADDED", "task_added": {...}}`.
pub fn event_json(event: &OperatorEvent) -> Value {
    match event {
        OperatorEvent::TaskAdded(task) => json!({
            "type": "TASK_ADDED",
            "task_added": { "task": shapes::task(task) },
        }),
        OperatorEvent::TaskUpdated {
            framework_id,
            status,
        } => json!({
            "type": "TASK_UPDATED",
            "task_updated": {
                "framework_id": shapes::id(framework_id),
                "status": shapes::status(status),
                "state": status.state,
            },
        }),
        OperatorEvent::AgentAdded(agent) => json!({
            "type": "AGENT_ADDED",
            "agent_added": { "agent": shapes::agent(agent) },
        }),
        OperatorEvent::AgentRemoved(agent_id) => json!({
            "type": "AGENT_REMOVED",
            "agent_removed": { "agent_id": shapes::id(agent_id) },
        }),
        OperatorEvent::FrameworkAdded(framework) => json!({
            "type": "FRAMEWORK_ADDED",
            "framework_added": { "framework": shapes::framework(framework) },
        }),
        OperatorEvent::FrameworkUpdated(framework) => json!({
            "type": "FRAMEWORK_UPDATED",
            "framework_updated": { "framework": shapes::framework(framework) },
        }),
        OperatorEvent::FrameworkRemoved(framework) => json!({
            "type": "FRAMEWORK_REMOVED",
            "framework_removed": { "framework_info": shapes::framework_info(framework) },
        }),
    }
}

/// The first event of a stream: the state it starts from.
pub fn subscribed(state: &MasterState, heartbeat: Duration) -> Value {
    json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "get_state": shapes::get_state(state),
            "heartbeat_interval_seconds": heartbeat.as_secs_f64(),
        },
    })
}

/// The open event streams, fed by the driver.
#[derive(Debug, Default)]
pub struct Watchers {
    streams: Vec<mpsc::Sender<Bytes>>,
}

impl Watchers {
    /// Starts a stream with SUBSCRIBED from `state`, the state the events that follow
    /// change.
    pub fn add(&mut self, stream: mpsc::Sender<Bytes>, state: &MasterState, heartbeat: Duration) {
        if stream
            .try_send(record(&subscribed(state, heartbeat)))
            .is_ok()
        {
            self.streams.push(stream);
        }
    }

    /// Sends `event` to every stream; streams closed or too far behind are dropped.
    pub fn publish(&mut self, event: &OperatorEvent) {
        if self.streams.is_empty() {
            return;
        }
        let record = record(&event_json(event));
        self.streams
            .retain(|stream| match stream.try_send(record.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        "dropping an operator event stream: it fell {STREAM_QUEUE} events behind"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.streams.len()
    }
}

/// The HTTP response of SUBSCRIBE: the stream's records as they come, a HEARTBEAT every
/// `heartbeat`, until the driver drops the stream or the client goes.
pub fn response(events: mpsc::Receiver<Bytes>, heartbeat: Duration) -> Response {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = record(&json!({ "type": "HEARTBEAT" }));
    let stream = futures::stream::unfold((events, ticker), move |(mut events, mut ticker)| {
        let beat = beat.clone();
        async move {
            let next = tokio::select! {
                record = events.recv() => record?,
                _ = ticker.tick() => beat,
            };
            Some((Ok::<Bytes, std::io::Error>(next), (events, ticker)))
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/recordio"),
            (
                header::HeaderName::from_static("message-content-type"),
                "application/json",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_proto::ids::AgentId;

    #[test]
    fn records_are_length_prefixed_json() {
        let r = record(&json!({"type": "HEARTBEAT"}));
        assert_eq!(&r[..], b"20\n{\"type\":\"HEARTBEAT\"}");
    }

    #[test]
    fn a_full_stream_is_dropped_and_the_others_keep_going() {
        let state = crate::core::Master::new(
            crate::core::MasterConfig::default(),
            Box::new(crate::registry::InMemoryRegistry::default()),
        )
        .state();
        let mut watchers = Watchers::default();
        let (slow, _slow_rx) = mpsc::channel(2);
        let (fast, mut fast_rx) = mpsc::channel(STREAM_QUEUE);
        watchers.add(slow, &state, DEFAULT_HEARTBEAT);
        watchers.add(fast, &state, DEFAULT_HEARTBEAT);
        assert_eq!(watchers.len(), 2);
        let event = OperatorEvent::AgentRemoved(AgentId("A-1".into()));
        for _ in 0..3 {
            watchers.publish(&event);
        }
        // The slow one held SUBSCRIBED and one event, then had no room.
        assert_eq!(watchers.len(), 1);
        let first = fast_rx.try_recv().unwrap();
        assert!(
            std::str::from_utf8(&first)
                .unwrap()
                .contains("\"SUBSCRIBED\""),
            "{first:?}"
        );
        for _ in 0..3 {
            let next = fast_rx.try_recv().unwrap();
            let text = std::str::from_utf8(&next).unwrap();
            let (len, json) = text.split_once('\n').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), json.len());
            let value: Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["type"], "AGENT_REMOVED");
            assert_eq!(value["agent_removed"]["agent_id"]["value"], "A-1");
        }
        // A closed stream goes at the next event.
        drop(fast_rx);
        watchers.publish(&event);
        assert!(watchers.is_empty());
    }
}
