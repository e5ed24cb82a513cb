//! The operator client: reads the master's HTTP API (`/state`) and renders it as tables
//! for `fleet status`. The printer is tolerant of the JSON's exact shape: it knows the
//! Fleet and the Mesos field names and prints "-" for what is missing.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use fleet_proto::resources::Resources;
use serde_json::Value;

use crate::credential::Credential;
use crate::error::ClientError;

/// How long one HTTP request to the master may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP client with the request timeout; 4xx and 5xx answers come back as responses
/// (to read the server's reason) instead of errors.
fn http_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// GETs `path` (e.g. "/state") from the master's HTTP address and parses the JSON body.
pub fn get_json(http_addr: SocketAddr, path: &str) -> Result<Value, ClientError> {
    get_json_as(http_addr, path, None)
}

/// Like [`get_json`], as `credential`'s principal when given (a master with a credentials
/// file answers 401 without one).
pub fn get_json_as(
    http_addr: SocketAddr,
    path: &str,
    credential: Option<&Credential>,
) -> Result<Value, ClientError> {
    let url = format!("http://{http_addr}{path}");
    let mut request = http_agent().get(&url);
    if let Some(c) = credential {
        request = request.header("Authorization", &c.authorization());
    }
    let response = request.call();
    answer_json(&url, response)
}

/// POSTs one operator call (`{"type": ...}`) to the master's `/api/v1` and returns its
/// JSON answer. A refusal (4xx, 5xx) comes back as an error carrying the master's reason.
pub fn call(http_addr: SocketAddr, body: &Value) -> Result<Value, ClientError> {
    call_as(http_addr, body, None)
}

/// Like [`call`], as `credential`'s principal when given.
pub fn call_as(
    http_addr: SocketAddr,
    body: &Value,
    credential: Option<&Credential>,
) -> Result<Value, ClientError> {
    let url = format!("http://{http_addr}/api/v1");
    let mut request = http_agent().post(&url);
    if let Some(c) = credential {
        request = request.header("Authorization", &c.authorization());
    }
    let response = request.send_json(body);
    answer_json(&url, response)
}

/// Why a request to the master got no answer, in words.
pub(crate) fn unreachable(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {} s", HTTP_TIMEOUT.as_secs()),
        ureq::Error::Io(io) => format!("master unreachable: {io}"),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            format!("master unreachable: {e}")
        }
        other => other.to_string(),
    }
}

/// The JSON body of a master's answer; a refusal (4xx, 5xx) is an error with the master's
/// reason (its `{"error": ...}`).
fn answer_json(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, ClientError> {
    let http_error = |reason: String| ClientError::Http {
        url: url.to_owned(),
        reason,
    };
    let mut response = response.map_err(|e| http_error(unreachable(e)))?;
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .read_json::<Value>()
        .map_err(|e| http_error(format!("HTTP {status}, and the body is not JSON: {e}")))?;
    if status >= 400 {
        let reason = answer
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| answer.to_string(), str::to_owned);
        return Err(http_error(format!(
            "the master refused (HTTP {status}): {reason}"
        )));
    }
    Ok(answer)
}

/// Scalar resources (`cpus:2;mem:1024`) in the shape of Mesos' quota calls,
/// `{"cpus": {"value": 2}, "mem": {"value": 1024}}`; `option` names the flag in errors.
pub fn quota_quantities(text: &str, option: &'static str) -> Result<Value, ClientError> {
    let invalid = |reason: String| ClientError::InvalidOption { option, reason };
    let resources = Resources::parse(text).map_err(|e| invalid(format!("{text:?}: {e}")))?;
    let mut map = serde_json::Map::new();
    for r in resources.iter() {
        if r.is_reserved() {
            return Err(invalid(format!(
                "{text:?}: a quota is not tied to a reservation; drop the role of '{}'",
                r.name
            )));
        }
        let fleet_proto::resources::Value::Scalar(value) = &r.value else {
            return Err(invalid(format!(
                "{text:?}: '{}' is not a scalar resource; quotas count scalars",
                r.name
            )));
        };
        map.insert(
            r.name.clone(),
            serde_json::json!({ "value": value.milli() as f64 / 1000.0 }),
        );
    }
    Ok(Value::Object(map))
}

/// The array at `pointer` in an operator call's answer, printed as pretty JSON with
/// `json` (then `None`: nothing more to print), else returned for a table.
fn listed(
    answer: &Value,
    pointer: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<Option<Vec<Value>>, ClientError> {
    let items = answer
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if json {
        let text = serde_json::to_string_pretty(&items).unwrap_or_default();
        writeln!(out, "{text}")?;
        return Ok(None);
    }
    Ok(Some(items))
}

/// Prints GET_QUOTA's answer as a table of roles with their guarantees and limits.
pub fn print_quota(answer: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let Some(configs) = listed(answer, "/get_quota/status/configs", json, out)? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                text(c, &["role"]),
                quota_text(c.get("guarantees")),
                quota_text(c.get("limits")),
            ]
        })
        .collect();
    table(out, "QUOTAS", &["ROLE", "GUARANTEES", "LIMITS"], &rows)
}

/// `{"cpus": {"value": 2}}` as `cpus:2`; "-" for none.
fn quota_text(v: Option<&Value>) -> String {
    let Some(map) = v.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "-".to_owned();
    };
    map.iter()
        .map(|(name, amount)| {
            let value = amount.get("value").and_then(Value::as_f64);
            // As the resource syntax writes amounts: `mem:256`, `cpus:0.5`.
            match value.and_then(fleet_proto::resources::Scalar::from_f64) {
                Some(v) => format!("{name}:{v}"),
                None => format!("{name}:{}", text(amount, &["value"])),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Prints GET_ROLES' answer as a table of roles with weight, dominant share and
/// frameworks.
pub fn print_roles(answer: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let Some(roles) = listed(answer, "/get_roles/roles", json, out)? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let share = r
                .get("share")
                .and_then(Value::as_f64)
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
            let frameworks = r
                .get("frameworks")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![
                text(r, &["name", "role"]),
                text(r, &["weight"]),
                share,
                frameworks.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "ROLES",
        &["ROLE", "WEIGHT", "SHARE", "FRAMEWORKS"],
        &rows,
    )
}

/// Where a task's files are: its agent's HTTP address, its sandbox, and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFiles {
    pub agent_http: String,
    pub sandbox: String,
    pub state: String,
}

/// Finds `task` (live or completed) in the master's `state` and where its sandbox is.
pub fn task_files(state: &Value, task: &str, master: SocketAddr) -> Result<TaskFiles, ClientError> {
    let mut all = list(state, &["tasks"]);
    all.extend(list(state, &["completed_tasks"]));
    let found = all
        .into_iter()
        .rev()
        .find(|t| text(t, &["id", "task_id"]) == task)
        .ok_or_else(|| ClientError::InvalidOption {
            option: "TASK",
            reason: format!("master {master} knows no task '{task}' (see `fleet status`)"),
        })?;
    let sandbox = found
        .get("sandbox")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ClientError::InvalidOption {
            option: "TASK",
            reason: format!(
                "task '{task}' has no sandbox yet (state {})",
                text(found, &["state"])
            ),
        })?;
    let agent_id = text(found, &["agent_id"]);
    let agent_http = list(state, &["agents"])
        .into_iter()
        .find(|a| text(a, &["id"]) == agent_id)
        .map(|a| text(a, &["http_address"]))
        .filter(|h| !h.is_empty() && h != "-")
        .ok_or_else(|| ClientError::InvalidOption {
            option: "TASK",
            reason: format!(
                "task '{task}' ran on agent {agent_id}, which the master no longer knows or which has no HTTP endpoint"
            ),
        })?;
    Ok(TaskFiles {
        agent_http,
        sandbox: sandbox.to_owned(),
        state: text(found, &["state"]),
    })
}

/// Reads `path` on the agent at `agent_http` from `offset` (`/files/read`): the data and
/// the offset it starts at.
pub fn read_file(agent_http: &str, path: &str, offset: u64) -> Result<(String, u64), ClientError> {
    let url = format!("http://{agent_http}/files/read");
    let agent = http_agent();
    let http_error = |reason: String| ClientError::Http {
        url: format!("{url}?path={path}"),
        reason,
    };
    let mut response = agent
        .get(&url)
        .query("path", path)
        .query("offset", offset.to_string())
        .call()
        .map_err(|e| {
            http_error(match e {
                ureq::Error::Io(io) => format!("agent unreachable: {io}"),
                other => other.to_string(),
            })
        })?;
    let status = response.status().as_u16();
    if status >= 400 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        return Err(http_error(format!(
            "the agent refused (HTTP {status}): {}",
            body.trim()
        )));
    }
    let chunk: Value = response
        .body_mut()
        .read_json()
        .map_err(|e| http_error(format!("the body is not JSON: {e}")))?;
    let data = chunk
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let at = chunk
        .get("offset")
        .and_then(Value::as_u64)
        .unwrap_or(offset);
    Ok((data.to_owned(), at))
}

/// The master's `/state`: `{"agents": [...], "frameworks": [...], "tasks": [...]}`.
pub fn status(http_addr: SocketAddr) -> Result<Value, ClientError> {
    get_json(http_addr, "/state")
}

/// Like [`status`], as `credential`'s principal when given.
pub fn status_as(
    http_addr: SocketAddr,
    credential: Option<&Credential>,
) -> Result<Value, ClientError> {
    get_json_as(http_addr, "/state", credential)
}

/// Prints `state` as tables of agents, frameworks and tasks, or as pretty JSON with `json`.
pub fn print_status(state: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    if json {
        let text = serde_json::to_string_pretty(state).unwrap_or_else(|_| state.to_string());
        writeln!(out, "{text}")?;
        return Ok(());
    }
    print_agents(state, false, out)?;
    writeln!(out)?;
    print_frameworks(state, out)?;
    writeln!(out)?;
    print_tasks(state, false, out)
}

/// Prints the agents of `state` (`fleet agents`), or their JSON with `json`.
pub fn print_agents(state: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let agents = list(state, &["agents", "slaves"]);
    if json {
        let text = serde_json::to_string_pretty(&agents).unwrap_or_default();
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                text(a, &["id", "agent_id"]),
                text(a, &["hostname", "host"]),
                resources(a, &["resources", "total", "total_resources"]),
                resources(
                    a,
                    &["used", "used_resources", "allocated", "allocated_resources"],
                ),
            ]
        })
        .collect();
    table(
        out,
        "AGENTS",
        &["ID", "HOSTNAME", "RESOURCES", "USED"],
        &rows,
    )
}

fn print_frameworks(state: &Value, out: &mut impl Write) -> Result<(), ClientError> {
    let frameworks = list(state, &["frameworks"]);
    let completed_frameworks = list(state, &["completed_frameworks"]);
    let mut rows: Vec<Vec<String>> = frameworks
        .iter()
        .map(|f| {
            vec![
                text(f, &["id", "framework_id"]),
                text(f, &["name"]),
                roles(f),
                text(f, &["active", "connected"]),
            ]
        })
        .collect();
    // Removed frameworks (torn down, timed out), newest first, as Mesos' completed_frameworks.
    rows.extend(completed_frameworks.iter().rev().map(|f| {
        vec![
            text(f, &["id", "framework_id"]),
            text(f, &["name"]),
            roles(f),
            "removed".to_owned(),
        ]
    }));
    table(out, "FRAMEWORKS", &["ID", "NAME", "ROLES", "ACTIVE"], &rows)
}

/// Prints the tasks of `state`, live then completed (`fleet tasks`), or their JSON with
/// `json`.
pub fn print_tasks(state: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let frameworks = list(state, &["frameworks"]);
    let mut tasks = tasks(state, &frameworks);
    tasks.extend(list(state, &["completed_tasks"]));
    if json {
        let text = serde_json::to_string_pretty(&tasks).unwrap_or_default();
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                text(t, &["id", "task_id"]),
                text(t, &["name"]),
                text(t, &["state"]),
                text(t, &["agent_id", "agent", "slave_id"]),
                text(t, &["pid"]),
            ]
        })
        .collect();
    table(
        out,
        "TASKS",
        &["ID", "NAME", "STATE", "AGENT", "PID"],
        &rows,
    )
}

/// The first array found under one of `keys`.
fn list<'a>(v: &'a Value, keys: &[&str]) -> Vec<&'a Value> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_array))
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Top-level tasks, or else the tasks listed inside each framework (the Mesos layout).
fn tasks<'a>(state: &'a Value, frameworks: &[&'a Value]) -> Vec<&'a Value> {
    if state.get("tasks").is_some() {
        return list(state, &["tasks"]);
    }
    frameworks
        .iter()
        .flat_map(|f| list(f, &["tasks"]))
        .collect()
}

/// A field as plain text: strings as they are, other JSON compact; "-" when missing.
fn text(v: &Value, keys: &[&str]) -> String {
    match keys.iter().find_map(|k| v.get(*k)) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        // Ids are sometimes objects ({"value": "..."}), as in Mesos.
        Some(Value::Object(o)) if o.len() == 1 && o.contains_key("value") => {
            text(&Value::Object(o.clone()), &["value"])
        }
        Some(other) => other.to_string(),
    }
}

fn roles(f: &Value) -> String {
    match f.get("roles").and_then(Value::as_array) {
        Some(roles) if !roles.is_empty() => roles
            .iter()
            .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Some(_) => "*".to_owned(),
        None => text(f, &["role"]),
    }
}

/// Resources in the text syntax: a string as is, the Mesos JSON list through the resource
/// model, a `{"cpus": 1, ...}` map as `cpus:1;...`.
fn resources(v: &Value, keys: &[&str]) -> String {
    let Some(value) = keys.iter().find_map(|k| v.get(*k)) else {
        return "-".to_owned();
    };
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(_) => match Resources::from_json_value(value.clone()) {
            Ok(r) if r.is_empty() => "-".to_owned(),
            Ok(r) => r.to_string(),
            Err(_) => value.to_string(),
        },
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}:{s}"),
                    other => format!("{k}:{other}"),
                })
                .collect();
            if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(";")
            }
        }
        other => other.to_string(),
    }
}

fn table(
    out: &mut impl Write,
    title: &str,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<(), ClientError> {
    writeln!(out, "{title} ({})", rows.len())?;
    if rows.is_empty() {
        writeln!(out, "  (none)")?;
        return Ok(());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
