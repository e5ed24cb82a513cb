//! The master's operator API at /api/v1 (Mesos' v1 operator calls, JSON), end to end
//! against `fleet dev`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_tests::{Dev, text, wait_until};
use serde_json::Value;

/// One HTTP/1.1 request; returns the status and the body.
fn request(port: u16, method: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn call(port: u16, kind: &str) -> Result<Value> {
    let (status, body) = request(port, "POST", &format!(r#"{{"type": "{kind}"}}"#))?;
    if status != 200 {
        bail!("{kind}: HTTP {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

#[test]
fn read_calls_show_the_agent_and_a_finished_task() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&["--", "echo", "hello"])?;
    assert!(out.status.success(), "{}", text(&out));
    let port = dev.port;
    let health = call(port, "GET_HEALTH")?;
    assert_eq!(health["get_health"]["healthy"], true);
    let state = wait_until(
        Duration::from_secs(5),
        "the finished task in GET_STATE",
        || {
            let state = call(port, "GET_STATE")?;
            let done = state["get_state"]["get_tasks"]["completed_tasks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["state"] == "TASK_FINISHED"));
            Ok(done.then_some(state))
        },
    )
    .with_context(|| dev.log())?;
    let agents = &state["get_state"]["get_agents"]["agents"];
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{state:#}");
    assert!(agents[0]["agent_info"]["id"]["value"].is_string());
    assert!(agents[0]["total_resources"].is_array(), "{state:#}");
    let frameworks = call(port, "GET_FRAMEWORKS")?;
    assert!(
        frameworks["get_frameworks"]["completed_frameworks"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{frameworks:#}"
    );
    let roles = call(port, "GET_ROLES")?;
    assert!(roles["get_roles"]["roles"].is_array(), "{roles:#}");
    let version = call(port, "GET_VERSION")?;
    assert!(version["get_version"]["version_info"]["version"].is_string());
    Ok(())
}

#[test]
fn malformed_unknown_and_unbuilt_calls_are_refused_clearly() -> Result<()> {
    let dev = Dev::start(&[])?;
    let port = dev.port;
    let (status, body) = request(port, "POST", "{\"type\": ")?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a JSON call"), "{body}");
    let (status, body) = request(port, "POST", r#"{"type": "GET_EVERYTHING"}"#)?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("GET_EVERYTHING"), "{body}");
    let (status, body) = request(port, "POST", r#"{"type": "UPDATE_QUOTA"}"#)?;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("UPDATE_QUOTA"), "{body}");
    let (status, body) = request(port, "GET", "")?;
    assert_eq!(status, 405, "{body}");
    Ok(())
}
