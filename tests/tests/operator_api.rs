//! The master's operator API at /api/v1 (Mesos' v1 operator calls, JSON), end to end
//! against `fleet dev`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_tests::{Dev, http, text, wait_until};
use serde_json::Value;

fn call(port: u16, kind: &str) -> Result<Value> {
    let (status, body) = http(
        ([127, 0, 0, 1], port).into(),
        "POST",
        "/api/v1",
        &format!(r#"{{"type": "{kind}"}}"#),
    )?;
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
fn malformed_and_unknown_calls_are_refused_clearly() -> Result<()> {
    let dev = Dev::start(&[])?;
    let port = dev.port;
    let (status, body) = http(
        ([127, 0, 0, 1], port).into(),
        "POST",
        "/api/v1",
        "{\"type\": ",
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a JSON call"), "{body}");
    let (status, body) = http(
        ([127, 0, 0, 1], port).into(),
        "POST",
        "/api/v1",
        r#"{"type": "GET_EVERYTHING"}"#,
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("GET_EVERYTHING"), "{body}");
    let (status, body) = http(
        ([127, 0, 0, 1], port).into(),
        "POST",
        "/api/v1",
        r#"{"type": "RESERVE_RESOURCES"}"#,
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reserve_resources"), "{body}");
    let (status, body) = http(
        ([127, 0, 0, 1], port).into(),
        "POST",
        "/api/v1",
        r#"{"type": "TEARDOWN"}"#,
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("framework_id"), "{body}");
    let (status, body) = http(([127, 0, 0, 1], port).into(), "GET", "/api/v1", "")?;
    assert_eq!(status, 405, "{body}");
    Ok(())
}
