//! The master's operator event stream (`fleet events`): SUBSCRIBE on `/api/v1`, then
//! Mesos' RecordIO (`<length>\n<json>`) of SUBSCRIBED, TASK_ADDED, TASK_UPDATED,
//! AGENT_ADDED, AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and
//! HEARTBEAT, each printed as one line or one JSON object.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::credential::Credential;
use crate::error::ClientError;
use crate::operator::HTTP_TIMEOUT;

/// The largest record accepted: a SUBSCRIBED carries the whole state.
const MAX_RECORD: usize = 256 << 20;

/// Reads one RecordIO record; None at the end of the stream.
pub fn next_record(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut header = Vec::new();
    let n = reader
        .read_until(b'\n', &mut header)
        .map_err(|e| format!("the stream broke: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    let digits = std::str::from_utf8(&header)
        .map_err(|_| format!("not a RecordIO length: {header:?}"))?
        .trim();
    let len: usize = digits
        .parse()
        .map_err(|_| format!("not a RecordIO length: {digits:?}"))?;
    if len > MAX_RECORD {
        return Err(format!(
            "a record of {len} bytes is larger than {MAX_RECORD}"
        ));
    }
    let mut record = vec![0; len];
    reader
        .read_exact(&mut record)
        .map_err(|e| format!("the stream ended inside a record of {len} bytes: {e}"))?;
    Ok(Some(record))
}

/// Subscribes to the master's events and hands each to `each` until it returns false.
/// `heartbeat` asks the master for a HEARTBEAT that often; the stream counts as lost
/// after three missed.
pub fn watch(
    http_addr: SocketAddr,
    credential: Option<&Credential>,
    heartbeat: Option<Duration>,
    mut each: impl FnMut(&Value) -> Result<bool, ClientError>,
) -> Result<(), ClientError> {
    let url = format!("http://{http_addr}/api/v1");
    let http_error = |reason: String| ClientError::Http {
        url: url.clone(),
        reason,
    };
    let beat = heartbeat.unwrap_or(Duration::from_secs(15));
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(HTTP_TIMEOUT))
        .timeout_recv_response(Some(HTTP_TIMEOUT))
        .timeout_per_read(Some(beat * 3 + HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build();
    let mut call = json!({ "type": "SUBSCRIBE" });
    if let Some(beat) = heartbeat {
        call["subscribe"] = json!({ "heartbeat_interval_seconds": beat.as_secs_f64() });
    }
    let mut request = ureq::Agent::new_with_config(config)
        .post(&url)
        .header("Accept", "application/recordio");
    if let Some(c) = credential {
        request = request.header("Authorization", &c.authorization());
    }
    let response = request
        .send_json(&call)
        .map_err(|e| http_error(crate::operator::unreachable(e)))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if status >= 400 {
        let text = body.read_to_string().unwrap_or_default();
        let reason = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Err(http_error(format!(
            "the master refused (HTTP {status}): {reason}"
        )));
    }
    let mut reader = BufReader::new(body.into_reader());
    loop {
        let record = next_record(&mut reader).map_err(&http_error)?;
        let Some(record) = record else {
            return Err(http_error(
                "the master ended the event stream (it stopped, or this reader fell behind)"
                    .to_owned(),
            ));
        };
        let event: Value = serde_json::from_slice(&record)
            .map_err(|e| http_error(format!("an event is not JSON: {e}")))?;
        if !each(&event)? {
            return Ok(());
        }
    }
}

fn field(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn count(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// One event as a line for people, e.g. `TASK_UPDATED t1 TASK_RUNNING (framework F-1)`.
pub fn event_line(event: &Value) -> String {
    let kind = field(event, "/type");
    match kind.as_str() {
        "SUBSCRIBED" => {
            let state = "/subscribed/get_state";
            format!(
                "SUBSCRIBED: {} agents, {} frameworks, {} tasks; heartbeat every {} s",
                count(event, &format!("{state}/get_agents/agents")),
                count(event, &format!("{state}/get_frameworks/frameworks")),
                count(event, &format!("{state}/get_tasks/tasks")),
                field(event, "/subscribed/heartbeat_interval_seconds"),
            )
        }
        "TASK_ADDED" => format!(
            "TASK_ADDED {} ({}) {} on agent {} (framework {})",
            field(event, "/task_added/task/task_id/value"),
            field(event, "/task_added/task/name"),
            field(event, "/task_added/task/state"),
            field(event, "/task_added/task/agent_id/value"),
            field(event, "/task_added/task/framework_id/value"),
        ),
        "TASK_UPDATED" => {
            let mut line = format!(
                "TASK_UPDATED {} {} (framework {})",
                field(event, "/task_updated/status/task_id/value"),
                field(event, "/task_updated/state"),
                field(event, "/task_updated/framework_id/value"),
            );
            if let Some(message) = event
                .pointer("/task_updated/status/message")
                .and_then(Value::as_str)
            {
                line.push_str(": ");
                line.push_str(message);
            }
            line
        }
        "AGENT_ADDED" => format!(
            "AGENT_ADDED {} ({})",
            field(event, "/agent_added/agent/agent_info/id/value"),
            field(event, "/agent_added/agent/agent_info/hostname"),
        ),
        "AGENT_REMOVED" => format!(
            "AGENT_REMOVED {}",
            field(event, "/agent_removed/agent_id/value")
        ),
        "FRAMEWORK_ADDED" | "FRAMEWORK_UPDATED" => {
            let at = format!("/{}/framework/framework_info", kind.to_ascii_lowercase());
            format!(
                "{kind} {} ({})",
                field(event, &format!("{at}/id/value")),
                field(event, &format!("{at}/name")),
            )
        }
        "FRAMEWORK_REMOVED" => format!(
            "FRAMEWORK_REMOVED {} ({})",
            field(event, "/framework_removed/framework_info/id/value"),
            field(event, "/framework_removed/framework_info/name"),
        ),
        _ => kind,
    }
}

/// Prints one event: a line, or its JSON on one line with `json`.
pub fn print_event(event: &Value, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    if json {
        writeln!(out, "{event}")?;
    } else {
        writeln!(out, "{}", event_line(event))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordio_records_are_read_one_by_one() {
        let stream = b"20\n{\"type\":\"HEARTBEAT\"}2\n{}";
        let mut reader = &stream[..];
        assert_eq!(
            next_record(&mut reader).unwrap().unwrap(),
            br#"{"type":"HEARTBEAT"}"#.to_vec()
        );
        assert_eq!(next_record(&mut reader).unwrap().unwrap(), b"{}".to_vec());
        assert_eq!(next_record(&mut reader).unwrap(), None);
        let mut bad = &b"x\n{}"[..];
        assert!(
            next_record(&mut bad)
                .unwrap_err()
                .contains("RecordIO length")
        );
        let mut short = &b"10\n{}"[..];
        assert!(next_record(&mut short).unwrap_err().contains("10 bytes"));
    }

    #[test]
    fn events_print_as_one_line_each() {
        let updated = json!({"type": "TASK_UPDATED", "task_updated": {
            "framework_id": {"value": "F-1"}, "state": "TASK_KILLED",
            "status": {"task_id": {"value": "t1"}, "state": "TASK_KILLED", "message": "bye"}}});
        assert_eq!(
            event_line(&updated),
            "TASK_UPDATED t1 TASK_KILLED (framework F-1): bye"
        );
        let added = json!({"type": "FRAMEWORK_ADDED", "framework_added": {"framework": {
            "framework_info": {"id": {"value": "F-2"}, "name": "web"}}}});
        assert_eq!(event_line(&added), "FRAMEWORK_ADDED F-2 (web)");
        assert_eq!(event_line(&json!({"type": "HEARTBEAT"})), "HEARTBEAT");
        let mut out = Vec::new();
        print_event(&json!({"type": "HEARTBEAT"}), true, &mut out).unwrap();
        assert_eq!(out, b"{\"type\":\"HEARTBEAT\"}\n");
    }
}
