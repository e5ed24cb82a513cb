//! An agent killed with SIGKILL and started again takes its tasks back: the same
//! processes keep running (their output never stops), tasks that ended while it was down
//! are reported with their exit code, and the master and the framework see one agent, one
//! set of tasks, throughout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fleet_tests::cluster::Cluster;
use fleet_tests::{cgroups, http, wait_until};

/// Longer than any pause in these tests: the master must not give the agent up.
const AGENT_TIMEOUT: &str = "60";

/// The one task's stdout under the agent's work dir.
fn only_stdout(work_dir: &Path) -> Result<PathBuf> {
    let out = std::process::Command::new("find")
        .arg(work_dir.join("slaves"))
        .args(["-name", "stdout"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = text.lines().collect();
    match found.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        other => bail!(
            "expected one stdout under {}, found {other:?}",
            work_dir.display()
        ),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The value of an unlabelled Prometheus sample `name` in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn cmdline(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ")
}

/// The task's long-lived processes (from the container cgroups of `root`: the command and
/// the two small processes around it, without the `sleep`s its loop starts), once one
/// runs `needle`.
fn task_pids(root: &str, needle: &str) -> Result<Vec<i32>> {
    wait_until(Duration::from_secs(10), "the task's process", || {
        let pids: Vec<i32> = cgroups::procs(root)
            .into_iter()
            .filter(|p| !cmdline(*p).starts_with("sleep "))
            .collect();
        let found = pids.iter().any(|p| cmdline(*p).contains(needle));
        Ok(found.then_some(pids))
    })
}

/// The PID column of the one RUNNING task in `fleet status`, if there is one.
fn status_pid(cluster: &Cluster, master_http: std::net::SocketAddr) -> Result<Option<i32>> {
    let out = fleet_tests::output_within(
        std::process::Command::new(fleet_tests::fleet_bin())
            .env("FLEET_HOME", cluster.dir.path().join("home"))
            .args(["status", "--master", &master_http.to_string()]),
        Duration::from_secs(10),
    )?;
    let printed = fleet_tests::text(&out);
    if !out.status.success() {
        bail!("fleet status failed: {printed}");
    }
    let row = printed.lines().find(|l| l.contains("TASK_RUNNING"));
    Ok(row.and_then(|r| r.split_whitespace().last()?.parse().ok()))
}

#[test]
fn a_killed_agent_restarts_and_adopts_its_running_task() -> Result<()> {
    let mut cluster = Cluster::start(&["--agent-timeout", AGENT_TIMEOUT])?;
    let result = adopt_running(&mut cluster);
    result.with_context(|| cluster.logs())
}

fn adopt_running(cluster: &mut Cluster) -> Result<()> {
    let script = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done";
    let mut run = cluster.spawn_run(&["--", "sh", "-c", script])?;
    run.wait_for("TASK_RUNNING", Duration::from_secs(30))?;
    let stdout = only_stdout(&cluster.dir.path().join("agent")).with_context(|| run.output())?;
    let pids = task_pids(&cluster.cgroup_root, "while :")?;
    // `fleet status` names the task's main process once a report carried it.
    let master_http = cluster.http_addr()?;
    let pid = wait_until(
        Duration::from_secs(10),
        "the task's pid in fleet status",
        || status_pid(cluster, master_http),
    )?;
    assert!(
        pids.contains(&pid),
        "fleet status pid {pid} is not one of {pids:?}"
    );

    cluster.agent.kill_hard();
    let killed = Instant::now();
    // The task does not notice: it runs on and its output keeps growing.
    let before = file_len(&stdout);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        file_len(&stdout) > before,
        "the task's stdout stopped growing when the agent died"
    );
    for pid in &pids {
        assert!(
            cgroups::alive(*pid),
            "task process {pid} died with the agent"
        );
    }

    cluster.restart_agent(&[])?;
    cluster
        .master
        .wait_for("agent re-registered", Duration::from_secs(30))?;
    println!("agent back {:?} after the kill", killed.elapsed());
    assert_eq!(
        task_pids(&cluster.cgroup_root, "while :")?,
        pids,
        "the same processes run after the restart"
    );
    let before = file_len(&stdout);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        file_len(&stdout) > before,
        "stdout stopped after the restart"
    );

    // The agent says it adopted one container; the master still has the task running.
    let agent_http = cluster.agent_http_addr()?;
    let (_, metrics) = http(agent_http, "GET", "/metrics", "")?;
    assert_eq!(
        sample(&metrics, "fleet_agent_containers_recovered_total"),
        Some(1.0),
        "{metrics}"
    );
    let again = wait_until(
        Duration::from_secs(10),
        "fleet status after the restart",
        || status_pid(cluster, master_http),
    )?;
    assert_eq!(
        again, pid,
        "fleet status shows another pid after the restart"
    );
    let (_, state) = http(master_http, "GET", "/state", "")?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    let agents = state["agents"].as_array().context("no agents in /state")?;
    assert_eq!(agents.len(), 1, "one agent, the same one: {state}");
    let out = run.output();
    assert!(
        !out.contains("TASK_LOST") && !out.contains("TASK_FAILED"),
        "{out}"
    );

    // The adopted task is still under the agent's control: stopping the run kills it.
    run.stop(Duration::from_secs(15));
    wait_until(
        Duration::from_secs(15),
        "the task's processes to end",
        || Ok(pids.iter().all(|p| !cgroups::alive(*p)).then_some(())),
    )?;
    Ok(())
}

#[test]
fn a_task_that_ends_while_the_agent_is_down_is_reported_with_its_exit_code() -> Result<()> {
    let mut cluster = Cluster::start(&["--agent-timeout", AGENT_TIMEOUT])?;
    let result = ended_while_down(&mut cluster);
    result.with_context(|| cluster.logs())
}

fn ended_while_down(cluster: &mut Cluster) -> Result<()> {
    let mut run = cluster.spawn_run(&["--", "sh", "-c", "sleep 2; echo done; exit 7"])?;
    run.wait_for("TASK_RUNNING", Duration::from_secs(30))?;
    let pids = task_pids(&cluster.cgroup_root, "sleep 2")?;
    cluster.agent.kill_hard();
    wait_until(Duration::from_secs(10), "the task to end", || {
        Ok(pids.iter().all(|p| !cgroups::alive(*p)).then_some(()))
    })?;
    let out = run.output();
    if out.contains("TASK_FAILED") {
        bail!("the end was reported before the agent came back:\n{out}");
    }
    cluster.restart_agent(&[])?;
    let line = run.wait_for("TASK_FAILED", Duration::from_secs(30))?;
    let out = run.output();
    assert!(
        out.contains("status 7") || line.contains("exit code 7") || out.contains("exit 7"),
        "the exit code is not reported:\n{out}"
    );
    let status = run.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{out}");
    // Its container was cleaned up by the restarted agent.
    wait_until(
        Duration::from_secs(10),
        "the container cgroup to go",
        || {
            Ok(cgroups::containers(&cluster.cgroup_root)
                .is_empty()
                .then_some(()))
        },
    )?;
    Ok(())
}

/// The first agent id (`A-` and hex digits) in a log line.
fn agent_id_in(line: &str) -> Option<String> {
    let start = line.find("A-")?;
    let id: String = line[start + 2..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (!id.is_empty()).then(|| format!("A-{id}"))
}

#[test]
fn recover_cleanup_kills_what_the_previous_run_left_and_starts_a_new_agent() -> Result<()> {
    let mut cluster = Cluster::start(&["--agent-timeout", AGENT_TIMEOUT])?;
    let result = cleanup(&mut cluster);
    result.with_context(|| cluster.logs())
}

fn cleanup(cluster: &mut Cluster) -> Result<()> {
    let first = cluster
        .master
        .wait_for("agent registered", Duration::from_secs(5))?;
    let mut run = cluster.spawn_run(&["--", "sh", "-c", "sleep 600; true"])?;
    run.wait_for("TASK_RUNNING", Duration::from_secs(30))?;
    let pids = task_pids(&cluster.cgroup_root, "sleep 600; true")?;
    cluster.agent.kill_hard();
    cluster.restart_agent(&["--recover", "cleanup"])?;
    wait_until(
        Duration::from_secs(15),
        "the old task's processes to end",
        || Ok(pids.iter().all(|p| !cgroups::alive(*p)).then_some(())),
    )?;
    wait_until(
        Duration::from_secs(15),
        "the old container cgroup to go",
        || {
            Ok(cgroups::containers(&cluster.cgroup_root)
                .is_empty()
                .then_some(()))
        },
    )?;
    // A new agent: another id than the first registration's.
    let line = cluster
        .agent
        .wait_for("registered with master", Duration::from_secs(30))?;
    let old_id = agent_id_in(&first).context("no agent id in the first registration")?;
    let new_id = agent_id_in(&line).context("no agent id in the new registration")?;
    ensure!(
        new_id != old_id,
        "the cleaned-up agent registered with its old id {old_id}"
    );
    run.stop(Duration::from_secs(5));
    Ok(())
}
