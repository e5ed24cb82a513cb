//! Operator calls that change the cluster, as `fleet teardown`, `fleet kill`, `fleet drain`,
//! `fleet deactivate`, `fleet reactivate`, `fleet mark-gone`, `fleet reserve` and `fleet
//! unreserve` send them: their bodies in
//! the JSON of Mesos' v1 operator API (KILL_TASK is Fleet's own), where a task or an agent
//! stands in the master's `/state`, and what is printed once the master agreed.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::credential::Credential;
use crate::error::ClientError;

fn id(value: &str) -> Value {
    json!({ "value": value })
}

fn nanoseconds(d: Duration) -> Value {
    json!({ "nanoseconds": d.as_nanos() as u64 })
}

/// TEARDOWN of a framework.
pub fn teardown(framework: &str) -> Value {
    json!({ "type": "TEARDOWN", "teardown": { "framework_id": id(framework) } })
}

/// KILL_TASK: the task is killed for its framework; `grace` overrides its kill grace.
pub fn kill_task(task: &str, framework: Option<&str>, grace: Option<Duration>) -> Value {
    let mut kill = json!({ "task_id": id(task) });
    if let Some(framework) = framework {
        kill["framework_id"] = id(framework);
    }
    if let Some(grace) = grace {
        kill["grace_period"] = nanoseconds(grace);
    }
    json!({ "type": "KILL_TASK", "kill_task": kill })
}

/// DRAIN_AGENT: its tasks are killed (grace capped by `max_grace`), then it is DRAINED.
pub fn drain_agent(agent: &str, max_grace: Option<Duration>, mark_gone: bool) -> Value {
    let mut drain = json!({ "agent_id": id(agent), "mark_gone": mark_gone });
    if let Some(grace) = max_grace {
        drain["max_grace_period"] = nanoseconds(grace);
    }
    json!({ "type": "DRAIN_AGENT", "drain_agent": drain })
}

/// RESERVE_RESOURCES (`reserve`) or UNRESERVE_RESOURCES of `resources` on `agent`, each
/// entry reserved for its role (`cpus(web):2` in the text syntax). With `principal`, each
/// entry's reservation names it (UNRESERVE: only that principal's reservations).
pub fn reservation(
    reserve: bool,
    agent: &str,
    resources: &fleet_proto::resources::Resources,
    principal: Option<&str>,
) -> Value {
    let mut list = serde_json::to_value(resources).unwrap_or(Value::Null);
    if let (Some(principal), Some(entries)) = (principal, list.as_array_mut()) {
        for entry in entries {
            let role = entry.get("role").cloned().unwrap_or(Value::Null);
            entry["reservations"] =
                json!([{ "type": "DYNAMIC", "role": role, "principal": principal }]);
        }
    }
    let (kind, field) = if reserve {
        ("RESERVE_RESOURCES", "reserve_resources")
    } else {
        ("UNRESERVE_RESOURCES", "unreserve_resources")
    };
    json!({ "type": kind, field: { "agent_id": id(agent), "resources": list } })
}

/// An operator call that names only an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCall {
    Deactivate,
    Reactivate,
    MarkGone,
}

impl AgentCall {
    /// The call's type, e.g. "DEACTIVATE_AGENT".
    pub fn kind(self) -> &'static str {
        match self {
            AgentCall::Deactivate => "DEACTIVATE_AGENT",
            AgentCall::Reactivate => "REACTIVATE_AGENT",
            AgentCall::MarkGone => "MARK_AGENT_GONE",
        }
    }

    /// What was done, for the line printed after it.
    pub fn done(self) -> &'static str {
        match self {
            AgentCall::Deactivate => "deactivated: it is offered no more",
            AgentCall::Reactivate => "reactivated: it is offered again",
            AgentCall::MarkGone => "marked gone: its tasks are gone, its id refused",
        }
    }

    pub fn body(self, agent: &str) -> Value {
        let field = self.kind().to_ascii_lowercase();
        let mut body = json!({ "type": self.kind() });
        body[field] = json!({ "agent_id": id(agent) });
        body
    }
}

/// A field of `/state` as text; ids may be `{"value": ...}`.
fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("value").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A task as `/state` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlace {
    pub framework_id: String,
    pub agent_id: String,
    pub state: String,
    /// Whether it is among the live tasks (else it ended and was acknowledged).
    pub live: bool,
}

/// Where `task` is in `state` (`/state`): live tasks first, then the latest that ended.
pub fn find_task(state: &Value, task: &str, master: SocketAddr) -> Result<TaskPlace, ClientError> {
    let listed = |key: &str| {
        state
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| text(t, "id").as_deref() == Some(task))
            .cloned()
            .collect::<Vec<_>>()
    };
    let place = |t: &Value, live: bool| TaskPlace {
        framework_id: text(t, "framework_id").unwrap_or_default(),
        agent_id: text(t, "agent_id").unwrap_or_default(),
        state: text(t, "state").unwrap_or_default(),
        live,
    };
    let live = listed("tasks");
    match live.as_slice() {
        [one] => return Ok(place(one, true)),
        [] => {}
        many => {
            let frameworks: Vec<String> = many
                .iter()
                .filter_map(|t| text(t, "framework_id"))
                .collect();
            return Err(ClientError::InvalidOption {
                option: "TASK",
                reason: format!(
                    "task '{task}' runs under frameworks {}: name one with --framework",
                    frameworks.join(", ")
                ),
            });
        }
    }
    listed("completed_tasks")
        .last()
        .map(|t| place(t, false))
        .ok_or_else(|| ClientError::InvalidOption {
            option: "TASK",
            reason: format!("master {master} knows no task '{task}' (see `fleet tasks`)"),
        })
}

/// The drain state of `agent` in `/state` ("DRAINING", "DRAINED"), None when not
/// draining; Err when the master no longer lists it (it was marked gone).
pub fn drain_state(state: &Value, agent: &str) -> Result<Option<String>, String> {
    let found = state
        .get("agents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| text(a, "id").as_deref() == Some(agent));
    match found {
        Some(a) => Ok(a
            .pointer("/drain/state")
            .and_then(Value::as_str)
            .map(str::to_owned)),
        None => Err(format!("agent {agent} is no longer registered")),
    }
}

/// Whether a task state (`TASK_...`) is terminal; an unknown name is not.
pub fn is_terminal(state: &str) -> bool {
    serde_json::from_value::<fleet_proto::task::TaskState>(json!(state))
        .is_ok_and(|s| s.is_terminal())
}

/// Polls the master's `/state` until `done` says what it waited for, or `timeout` passes
/// (then [`ClientError::Waited`] names `what`).
pub fn wait_for<T>(
    http_addr: SocketAddr,
    credential: Option<&Credential>,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&Value) -> Result<Option<T>, ClientError>,
) -> Result<T, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = crate::operator::status_as(http_addr, credential)?;
        if let Some(found) = done(&state)? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Waited {
                addr: http_addr,
                what: what.to_owned(),
                waited_s: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints what a change did: `line` for people, or `answer` with `details` merged in as
/// JSON.
pub fn print_done(
    line: &str,
    answer: &Value,
    details: Value,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    if json {
        let mut merged = answer.clone();
        if let (Some(target), Value::Object(extra)) = (merged.as_object_mut(), details) {
            target.extend(extra);
        }
        writeln!(out, "{merged}")?;
    } else {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_in_mesos_shapes() {
        assert_eq!(
            teardown("F-1"),
            json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "F-1"}}})
        );
        assert_eq!(
            kill_task("t", Some("F"), Some(Duration::from_millis(1500))),
            json!({"type": "KILL_TASK", "kill_task": {"task_id": {"value": "t"},
                "framework_id": {"value": "F"}, "grace_period": {"nanoseconds": 1_500_000_000u64}}})
        );
        assert_eq!(
            drain_agent("A", None, true),
            json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "A"}, "mark_gone": true}})
        );
        assert_eq!(
            AgentCall::MarkGone.body("A"),
            json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "A"}}})
        );
    }

    #[test]
    fn tasks_are_found_live_or_ended() {
        let master: SocketAddr = "127.0.0.1:5050".parse().unwrap();
        let state = json!({
            "tasks": [{"id": "t1", "framework_id": "F-1", "agent_id": "A-1", "state": "TASK_RUNNING"}],
            "completed_tasks": [{"id": "t0", "framework_id": "F-0", "agent_id": "A-1", "state": "TASK_FINISHED"}],
            "agents": [{"id": "A-1", "drain": {"state": "DRAINING"}}, {"id": "A-2"}]
        });
        let live = find_task(&state, "t1", master).unwrap();
        assert_eq!((live.framework_id.as_str(), live.live), ("F-1", true));
        let ended = find_task(&state, "t0", master).unwrap();
        assert_eq!((ended.state.as_str(), ended.live), ("TASK_FINISHED", false));
        let missing = find_task(&state, "t9", master).unwrap_err().to_string();
        assert!(
            missing.contains("127.0.0.1:5050") && missing.contains("t9"),
            "{missing}"
        );
        assert_eq!(drain_state(&state, "A-1"), Ok(Some("DRAINING".into())));
        assert_eq!(drain_state(&state, "A-2"), Ok(None));
        assert!(drain_state(&state, "A-3").is_err());
    }
}
