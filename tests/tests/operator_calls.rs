//! The operator calls that change the cluster, end to end against `fleet dev` through the
//! CLI: `fleet teardown`, `fleet kill`, `fleet drain`, `fleet deactivate` / `reactivate`,
//! `fleet mark-gone`, and the SUBSCRIBE event stream behind `fleet events`; malformed
//! bodies (400 naming the problem) and an unreachable master (named, with what failed).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_tests::{Dev, Process, cgroups, http, text, wait_until};
use serde_json::Value;

/// `fleet run -- sleep 600` in the background, once its task runs: the process, the task
/// id and the framework id.
fn sleeper(dev: &Dev) -> Result<(Process, String, String)> {
    let mut run = Process::spawn(
        "fleet run",
        dev.fleet()
            .args(["run", "--name", "sleeper", "--", "sleep", "600"]),
    )?;
    let subscribed = run.wait_for("as framework ", Duration::from_secs(20))?;
    let framework = subscribed
        .rsplit(' ')
        .next()
        .context("no framework id")?
        .to_owned();
    let running = run.wait_for("TASK_RUNNING", Duration::from_secs(30))?;
    let task = running
        .split_whitespace()
        .nth(1)
        .context("no task id")?
        .to_owned();
    Ok((run, task, framework))
}

fn agent_id(dev: &Dev) -> Result<String> {
    let state = dev.state()?;
    state["agents"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no agent in {state}"))
}

/// Runs `fleet ARGS --json` and parses the one JSON line it prints.
fn fleet_json(dev: &Dev, args: &[&str]) -> Result<Value> {
    let out = dev.fleet().args(args).arg("--json").output()?;
    if !out.status.success() {
        bail!("fleet {args:?} failed: {}", text(&out));
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("fleet {args:?} printed no JSON: {}", text(&out)))
}

fn no_containers_left(dev: &Dev) -> Result<()> {
    let root = dev.cgroup_root.clone();
    wait_until(
        Duration::from_secs(10),
        "the task's container to go",
        || Ok(cgroups::containers(&root).is_empty().then_some(())),
    )
}

#[test]
fn teardown_removes_the_framework_and_kills_its_tasks() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let (mut run, task, framework) = sleeper(&dev)?;
    let done = fleet_json(&dev, &["teardown", &framework])?;
    assert_eq!(done["type"], "TEARDOWN", "{done}");
    // `fleet run` is told why and exits with an error.
    let status = run
        .wait_exit(Duration::from_secs(15))
        .with_context(|| format!("fleet run still runs\n{}", run.output()))?;
    assert!(!status.success(), "{}", run.output());
    assert!(run.output().contains("operator"), "{}", run.output());
    let state = dev.state()?;
    let ended = state["completed_tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == task.as_str()))
        .with_context(|| format!("{task} not completed: {state:#}"))?;
    assert_eq!(ended["state"], "TASK_KILLED", "{ended}");
    assert_eq!(ended["reason"], "REASON_FRAMEWORK_REMOVED", "{ended}");
    no_containers_left(&dev).with_context(|| dev.log())?;
    // Gone for good: a second teardown says so.
    let out = dev.fleet().args(["teardown", &framework]).output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("already removed"), "{}", text(&out));
    Ok(())
}

#[test]
fn fleet_kill_ends_a_task_killed() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let (mut run, task, framework) = sleeper(&dev)?;
    let done = fleet_json(&dev, &["kill", &task, "--grace", "1", "--wait"])?;
    assert_eq!(done["type"], "KILL_TASK", "{done}");
    assert_eq!(done["state"], "TASK_KILLED", "{done}");
    assert_eq!(done["framework_id"], framework.as_str(), "{done}");
    // Its framework saw it end TASK_KILLED.
    run.wait_for(&format!("task {task} TASK_KILLED"), Duration::from_secs(10))?;
    assert!(run.wait_exit(Duration::from_secs(10)).is_some());
    no_containers_left(&dev).with_context(|| dev.log())?;
    let out = dev.fleet().args(["kill", &task]).output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("already ended"), "{}", text(&out));
    let out = dev.fleet().args(["kill", "no-such-task"]).output()?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no live task no-such-task"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn drain_kills_the_tasks_and_a_drained_agent_is_offered_again_once_reactivated() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let (mut run, task, _framework) = sleeper(&dev)?;
    let agent = agent_id(&dev)?;
    let done = fleet_json(&dev, &["drain", &agent, "--grace", "1", "--wait"])?;
    assert_eq!(done["drain_state"], "DRAINED", "{done}");
    run.wait_for(&format!("task {task} TASK_KILLED"), Duration::from_secs(10))?;
    let (status, body) = http(dev.addr(), "POST", "/api/v1", r#"{"type": "GET_AGENTS"}"#)?;
    assert_eq!(status, 200, "{body}");
    let agents: Value = serde_json::from_str(&body)?;
    let listed = &agents["get_agents"]["agents"][0];
    assert_eq!(listed["drain_info"]["state"], "DRAINED", "{listed}");
    assert_eq!(listed["deactivated"], true, "{listed}");
    assert_eq!(
        listed["drain_info"]["config"]["max_grace_period"]["nanoseconds"], 1_000_000_000u64,
        "{listed}"
    );
    // Drained: nothing is offered.
    let out = dev
        .fleet()
        .args(["run", "--offer-timeout", "3", "--", "true"])
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    let out = dev.fleet().args(["reactivate", &agent]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let out = dev.run(&["--", "true"])?;
    assert!(out.status.success(), "{}\n{}", text(&out), dev.log());
    Ok(())
}

#[test]
fn a_deactivated_agent_gets_no_tasks_until_reactivated() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let agent = agent_id(&dev)?;
    let done = fleet_json(&dev, &["deactivate", &agent])?;
    assert_eq!(done["type"], "DEACTIVATE_AGENT", "{done}");
    let out = dev
        .fleet()
        .args(["run", "--offer-timeout", "3", "--", "true"])
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no offer"), "{}", text(&out));
    let agents = dev.fleet().args(["agents", "--json"]).output()?;
    let agents: Value = serde_json::from_slice(&agents.stdout)?;
    assert_eq!(agents[0]["deactivated"], true, "{agents}");
    assert_eq!(agents[0]["active"], false, "{agents}");
    let out = dev.fleet().args(["reactivate", &agent]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let out = dev.run(&["--", "true"])?;
    assert!(out.status.success(), "{}\n{}", text(&out), dev.log());
    Ok(())
}

#[test]
fn a_gone_agent_takes_its_tasks_and_is_refused() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let (mut run, task, _framework) = sleeper(&dev)?;
    let agent = agent_id(&dev)?;
    let out = dev.fleet().args(["mark-gone", &agent]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    run.wait_for(
        &format!("task {task} TASK_GONE_BY_OPERATOR"),
        Duration::from_secs(10),
    )?;
    let state = wait_until(Duration::from_secs(5), "the agent to be gone", || {
        let state = dev.state()?;
        let gone = state["gone_agents"]
            .as_array()
            .is_some_and(|g| g.iter().any(|a| a == agent.as_str()));
        Ok(gone.then_some(state))
    })?;
    assert!(
        state["agents"].as_array().is_some_and(Vec::is_empty),
        "{state:#}"
    );
    // The agent keeps trying with its id and is refused, saying why.
    dev.process
        .wait_for("may not register again", Duration::from_secs(10))?;
    no_containers_left(&dev).with_context(|| dev.log())?;
    Ok(())
}

#[test]
fn events_stream_tasks_frameworks_and_heartbeats() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let mut events = Process::spawn(
        "fleet events",
        dev.fleet().args(["events", "--json", "--heartbeat", "0.5"]),
    )?;
    let subscribed: Value =
        serde_json::from_str(&events.wait_for("SUBSCRIBED", Duration::from_secs(10))?)?;
    assert!(
        subscribed["subscribed"]["get_state"]["get_agents"]["agents"].is_array(),
        "{subscribed}"
    );
    let out = dev.run(&["--", "echo", "hi"])?;
    assert!(out.status.success(), "{}", text(&out));
    let wait = |events: &mut Process, needle: &str| -> Result<Value> {
        let line = events.wait_for(needle, Duration::from_secs(10))?;
        Ok(serde_json::from_str(&line)?)
    };
    wait(&mut events, "\"FRAMEWORK_ADDED\"")?;
    let added = wait(&mut events, "\"TASK_ADDED\"")?;
    assert_eq!(
        added["task_added"]["task"]["state"], "TASK_STAGING",
        "{added}"
    );
    let finished = wait(&mut events, "\"state\":\"TASK_FINISHED\"")?;
    assert_eq!(finished["type"], "TASK_UPDATED", "{finished}");
    wait(&mut events, "\"FRAMEWORK_REMOVED\"")?;
    wait(&mut events, "\"HEARTBEAT\"")?;

    // Lines for people.
    let out = fleet_tests::output_within(
        dev.fleet()
            .args(["events", "--count", "2", "--heartbeat", "0.2"]),
        Duration::from_secs(10),
    )?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.starts_with("SUBSCRIBED: 1 agents") && printed.contains("HEARTBEAT"),
        "{printed}\n{}",
        dev.log()
    );
    Ok(())
}

#[test]
fn malformed_and_impossible_calls_are_refused_naming_the_problem() -> Result<()> {
    let dev = Dev::start(&[])?;
    for (body, status, says) in [
        (r#"{"type": "TEARDOWN"}"#, 400, "framework_id"),
        (
            r#"{"type": "TEARDOWN", "teardown": {"framework_id": {"value": "F-nope"}}}"#,
            400,
            "unknown framework F-nope",
        ),
        (
            r#"{"type": "KILL_TASK", "kill_task": {"task_id": {"value": "t"}, "grace_period": "x"}}"#,
            400,
            "grace_period",
        ),
        (
            r#"{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "A-nope"}}}"#,
            400,
            "unknown agent A-nope",
        ),
        (r#"{"type": "DEACTIVATE_AGENT"}"#, 400, "agent_id"),
        (
            r#"{"type": "SUBSCRIBE", "subscribe": {"heartbeat_interval_seconds": "often"}}"#,
            400,
            "heartbeat_interval_seconds",
        ),
        (
            r#"{"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": {"value": "A-nope"}, "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]}}"#,
            400,
            "names no role",
        ),
        (
            r#"{"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": {"value": "A-nope"}, "resources": {"cpus": 1}}}"#,
            400,
            "reserve_resources.resources must be a list",
        ),
    ] {
        let (got, answer) = http(dev.addr(), "POST", "/api/v1", body)?;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
    }
    Ok(())
}

#[test]
fn an_unreachable_master_is_named_by_every_command() -> Result<()> {
    for args in [
        &["kill", "t"][..],
        &["teardown", "F"],
        &["drain", "A"],
        &["deactivate", "A"],
        &["reactivate", "A"],
        &["mark-gone", "A"],
        &["events"],
    ] {
        let out = fleet_tests::output_within(
            std::process::Command::new(fleet_tests::fleet_bin())
                .args(args)
                .args(["--master", "127.0.0.1:9", "--json"]),
            Duration::from_secs(20),
        )?;
        let printed = text(&out);
        assert!(!out.status.success(), "{args:?}: {printed}");
        assert!(
            printed.contains("127.0.0.1:9") && printed.contains("unreachable"),
            "{args:?}: {printed}"
        );
    }
    Ok(())
}

#[test]
fn mesos_maintenance_and_older_endpoints() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let addr = dev.addr();
    let state = dev.state()?;
    let hostname = state["agents"][0]["hostname"]
        .as_str()
        .context("no agent hostname")?
        .to_owned();
    let machines = format!(r#"[{{"hostname": "{hostname}"}}]"#);
    let (status, body) = http(addr, "GET", "/maintenance/schedule", "")?;
    assert_eq!((status, body.as_str()), (200, "{\n  \"windows\": []\n}"));
    let (status, body) = http(addr, "POST", "/machine/down", &machines)?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not in the maintenance schedule"), "{body}");
    let schedule = format!(
        r#"{{"windows": [{{"machine_ids": {machines},
            "unavailability": {{"start": {{"nanoseconds": 0}}, "duration": {{"nanoseconds": 3600000000000}}}}}}]}}"#
    );
    let (status, body) = http(addr, "POST", "/maintenance/schedule", &schedule)?;
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(addr, "GET", "/maintenance/status", "")?;
    let status_now: Value = serde_json::from_str(&body)?;
    assert_eq!(
        status_now["draining_machines"][0]["id"]["hostname"],
        hostname.to_lowercase().as_str(),
        "{status_now}"
    );

    let (status, body) = http(addr, "POST", "/machine/down", &machines)?;
    assert_eq!(status, 200, "{body}");
    dev.process
        .wait_for("down for maintenance", Duration::from_secs(10))?;
    let (_, body) = http(addr, "GET", "/maintenance/status", "")?;
    assert!(body.contains("down_machines"), "{body}");
    assert!(dev.state()?["agents"].as_array().is_some_and(Vec::is_empty));
    let (status, body) = http(addr, "POST", "/machine/up", &machines)?;
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(15), "the agent to come back", || {
        let agents = dev.state()?["agents"].as_array().map_or(0, Vec::len);
        Ok((agents == 1).then_some(()))
    })
    .with_context(|| dev.log())?;
    let (_, body) = http(addr, "GET", "/maintenance/schedule", "")?;
    assert!(body.contains("\"windows\": []"), "{body}");

    // /weights, /quota and /teardown, as Mesos serves them.
    let (status, body) = http(
        addr,
        "PUT",
        "/weights",
        r#"[{"role": "web", "weight": 2.5}]"#,
    )?;
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(addr, "GET", "/weights", "")?;
    let weights: Value = serde_json::from_str(&body)?;
    assert_eq!(weights, serde_json::json!([{"role": "web", "weight": 2.5}]));
    let (status, body) = http(addr, "GET", "/quota", "")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"infos\""), "{body}");
    let (status, body) = http(addr, "POST", "/teardown", "frameworkId=F-nope")?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown framework F-nope"), "{body}");
    Ok(())
}
