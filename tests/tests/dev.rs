//! `fleet dev` with `fleet run` and `fleet status`: the commands of the README, end to end.

use std::time::Duration;

use anyhow::{Context, Result};
use fleet_tests::{Dev, Process, sandbox_of, text, wait_until};
use serde_json::Value;

/// The task id from `task ID launching on agent ...`.
fn task_id(out: &str) -> Option<String> {
    out.lines()
        .find(|l| l.contains(" launching on agent "))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
}

/// The framework id from `subscribed to master ADDR as framework ID`.
fn framework_id(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.split_once(" as framework "))
        .map(|(_, id)| id.trim().to_owned())
}

/// The state names `fleet run` printed, in order.
fn states(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("task "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("TASK_"))
        .map(str::to_owned)
        .collect()
}

fn find_by_id<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v["id"] == id)
}

#[test]
fn run_echo_then_status_shows_agent_framework_and_task() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&["--", "echo", "hello"])?;
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(out.status.success(), "fleet run failed:\n{}", context());
    assert_eq!(
        states(&printed),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{}",
        context()
    );
    let sandbox = sandbox_of(&printed).with_context(context)?;
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))
        .with_context(|| format!("no stdout in sandbox {}", sandbox.display()))?;
    assert_eq!(stdout, "hello\n", "{}", context());
    let task = task_id(&printed).with_context(context)?;
    let framework = framework_id(&printed).with_context(context)?;

    // /state is a snapshot that may trail the run by a moment.
    let state = wait_until(
        Duration::from_secs(10),
        "the finished task in /state",
        || {
            let state = dev.state()?;
            Ok(find_by_id(&state["completed_tasks"], &task)
                .is_some()
                .then_some(state))
        },
    )
    .with_context(|| dev.log())?;
    let agents = state["agents"].as_array().context("no agents list")?;
    assert_eq!(agents.len(), 1, "{state:#}");
    assert_eq!(agents[0]["active"], true, "{state:#}");
    let agent_id = agents[0]["id"].as_str().context("agent without id")?;
    let done = find_by_id(&state["completed_tasks"], &task).context("task gone")?;
    assert_eq!(done["state"], "TASK_FINISHED", "{done:#}");
    assert_eq!(done["exit_code"], 0, "{done:#}");
    assert_eq!(done["agent_id"], agent_id, "{done:#}");
    assert_eq!(done["framework_id"], framework.as_str(), "{done:#}");
    assert_eq!(
        done["sandbox"].as_str(),
        sandbox.to_str(),
        "{done:#}\nprinted:\n{printed}"
    );
    let fw = find_by_id(&state["frameworks"], &framework)
        .or_else(|| find_by_id(&state["completed_frameworks"], &framework))
        .with_context(|| format!("framework {framework} not in /state: {state:#}"))?;
    assert_eq!(fw["name"], "fleet-run", "{fw:#}");

    // The human tables list the same three things.
    let status = dev.fleet().arg("status").output()?;
    let table = text(&status);
    assert!(status.status.success(), "{table}");
    for needle in [agent_id, &framework, &task, "TASK_FINISHED", "AGENTS (1)"] {
        assert!(
            table.contains(needle),
            "fleet status lacks '{needle}':\n{table}"
        );
    }
    Ok(())
}

#[test]
fn run_exit_3_is_task_failed_and_exit_code_3() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&["--", "sh", "-c", "exit 3"])?;
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(3), "{printed}\n{}", dev.log());
    assert_eq!(
        states(&printed).last().map(String::as_str),
        Some("TASK_FAILED"),
        "{printed}"
    );
    let failed = printed
        .lines()
        .find(|l| l.contains("TASK_FAILED"))
        .unwrap_or_default();
    assert!(
        failed.contains("REASON_COMMAND_EXECUTOR_FAILED") && failed.contains('3'),
        "{printed}"
    );
    Ok(())
}

#[test]
fn run_over_memory_limit_is_oom_failure() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&[
        "--mem",
        "64",
        "--",
        "python3",
        "-c",
        "b = bytearray(512 * 2**20)",
    ])?;
    let printed = text(&out);
    assert!(!out.status.success(), "{printed}\n{}", dev.log());
    let last = printed
        .lines()
        .rfind(|l| l.starts_with("task ") && l.contains("TASK_"))
        .unwrap_or_default();
    assert!(
        last.contains("TASK_FAILED") && last.contains("REASON_CONTAINER_LIMITATION_MEMORY"),
        "expected TASK_FAILED (REASON_CONTAINER_LIMITATION_MEMORY ...):\n{printed}\n{}",
        dev.log()
    );
    Ok(())
}

#[test]
fn task_sees_its_id_sandbox_and_port() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&[
        "--ports",
        "1",
        "--",
        "sh",
        "-c",
        "echo $FLEET_TASK_ID $PORT0 $FLEET_SANDBOX",
    ])?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}\n{}", dev.log());
    let task = task_id(&printed).context("no launch line")?;
    let sandbox = sandbox_of(&printed).context("no sandbox line")?;
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))?;
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.len(), 3, "stdout: {stdout:?}\n{printed}");
    assert_eq!(words[0], task, "FLEET_TASK_ID; {printed}");
    let port: u16 = words[1]
        .parse()
        .with_context(|| format!("PORT0 is not a port: {stdout:?}"))?;
    // The launch line names the ports the task was given, e.g. ports:[31000-31000].
    let launch = printed
        .lines()
        .find(|l| l.contains(" launching on agent "))
        .unwrap_or_default();
    assert!(
        launch.contains(&format!("ports:[{port}-{port}]")),
        "PORT0={port} is not the assigned port: {launch}"
    );
    assert_eq!(
        std::path::Path::new(words[2]),
        sandbox,
        "FLEET_SANDBOX; {printed}"
    );
    Ok(())
}

/// Ctrl-C on `fleet dev` kills running tasks (their framework hears TASK_KILLED), removes
/// every cgroup and the pinned eBPF maps.
#[test]
fn stopping_dev_kills_tasks_and_removes_cgroups_and_pins() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let root = dev.cgroup_root.clone();
    let mut run = Process::spawn("fleet run", dev.fleet().args(["run", "--", "sleep", "60"]))?;
    run.wait_for("TASK_RUNNING", Duration::from_secs(30))?;
    let pids = fleet_tests::cgroups::procs(&root);
    assert!(
        !pids.is_empty(),
        "the task runs in a container cgroup under {root}"
    );
    let pins = std::path::Path::new("/sys/fs/bpf/fleet").join(&root);
    assert!(
        pins.exists(),
        "the agent pins its counters in {}",
        pins.display()
    );

    dev.process.stop(Duration::from_secs(15));
    run.wait_exit(Duration::from_secs(15));
    let out = run.output();
    assert!(out.contains("TASK_KILLED"), "fleet run output:\n{out}");
    for pid in pids {
        assert!(
            !fleet_tests::cgroups::alive(pid),
            "task process {pid} survived"
        );
    }
    for dir in fleet_tests::cgroups::root_dirs(&root) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!pins.exists(), "{} left behind", pins.display());
    Ok(())
}

#[test]
fn run_with_constraints_lands_only_on_matching_agents() -> Result<()> {
    let mut dev = Dev::start(&["--attributes", "zone:west;rack:r1"])?;
    for constraint in ["zone=west", "zone~w.s.", "rack", "!gpu", "hostname~.+"] {
        let out = dev
            .fleet()
            .args(["run", "--constraint", constraint, "--", "true"])
            .output()?;
        let printed = text(&out);
        assert!(
            out.status.success() && states(&printed).contains(&"TASK_FINISHED".to_owned()),
            "--constraint {constraint}:\n{printed}\n{}",
            dev.log()
        );
    }
    // No agent is in zone east: no offer comes, and the run says so.
    let out = dev
        .fleet()
        .args([
            "run",
            "--constraint",
            "zone=east",
            "--offer-timeout",
            "3",
            "--",
            "true",
        ])
        .output()?;
    let printed = text(&out);
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains("no offer"), "{printed}");
    // A regular expression that does not compile is refused by the master, naming it.
    let out = dev
        .fleet()
        .args(["run", "--constraint", "zone~(", "--", "true"])
        .output()?;
    let printed = text(&out);
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains("invalid regular expression"), "{printed}");
    Ok(())
}

#[test]
fn logs_prints_a_task_s_output_and_follows_it_to_the_end() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    // A finished task: its stdout and stderr.
    let out = dev
        .fleet()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2",
        ])
        .output()?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}\n{}", dev.log());
    let id = task_id(&printed).context("no task id")?;
    let out = dev.fleet().args(["logs", &id]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    let out = dev.fleet().args(["logs", &id, "--stderr"]).output()?;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("to-stderr"),
        "{}",
        text(&out)
    );
    let out = dev.fleet().args(["logs", &id, "--json"]).output()?;
    let line: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(line["data"], "to-stdout\n", "{line}");
    // An unknown task is named.
    let out = dev.fleet().args(["logs", "no-such-task"]).output()?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no task 'no-such-task'"),
        "{}",
        text(&out)
    );

    // A running task, followed until it ends: both lines, the second written later.
    let mut run = Process::spawn(
        "fleet run",
        dev.fleet()
            .args(["run", "--", "sh", "-c", "echo one; sleep 2; echo two"]),
    )?;
    let launched = run.wait_for(" launching on agent ", Duration::from_secs(30))?;
    let id = task_id(&launched).context("no task id")?;
    let out = dev.fleet().args(["logs", "--follow", &id]).output()?;
    let followed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(followed, "one\ntwo\n", "{}", text(&out));
    run.wait_for("TASK_FINISHED", Duration::from_secs(30))?;
    Ok(())
}
