//! An agent that dies (SIGKILL) is removed after the master's agent timeout, and its tasks
//! are reported TASK_LOST, or TASK_UNREACHABLE to a partition-aware framework.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleet_tests::cgroups;
use fleet_tests::cluster::Cluster;

const AGENT_TIMEOUT_S: u64 = 3;
/// The sweep runs every second and the run's own reaction takes a moment.
const SLACK_S: u64 = 4;

/// Starts `sleep 60` through `fleet run EXTRA`, SIGKILLs the agent once it runs and
/// returns the cluster, the run and how long after the kill `expected` was printed.
fn lose_agent(extra: &[&str], expected: &str) -> Result<(Cluster, fleet_tests::Process, Duration)> {
    let timeout = AGENT_TIMEOUT_S.to_string();
    let mut cluster = Cluster::start(&["--agent-timeout", &timeout])?;
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sleep", "60"]);
    let mut run = cluster.spawn_run(&args)?;
    if let Err(e) = run.wait_for("TASK_RUNNING", Duration::from_secs(30)) {
        return Err(e.context(cluster.logs()));
    }
    let pids = cgroups::procs(&cluster.cgroup_root);
    assert!(
        !pids.is_empty(),
        "no task process under {}",
        cluster.cgroup_root
    );
    cluster.agent.kill_hard();
    let killed = Instant::now();
    let within = Duration::from_secs(AGENT_TIMEOUT_S + SLACK_S);
    let line = run.wait_for(expected, within);
    let elapsed = killed.elapsed();
    let line = line.with_context(|| cluster.logs())?;
    assert!(
        line.contains("REASON_AGENT_REMOVED"),
        "{line}\n{}",
        run.output()
    );
    Ok((cluster, run, elapsed))
}

#[test]
fn killed_agent_loses_its_task() -> Result<()> {
    let (mut cluster, mut run, elapsed) = lose_agent(&[], "TASK_LOST")?;
    let status = run.wait_exit(Duration::from_secs(10));
    let out = run.output();
    assert!(
        status.is_some_and(|s| !s.success()),
        "fleet run did not exit non-zero after TASK_LOST: {status:?}\n{out}\n{}",
        cluster.logs()
    );
    assert!(
        elapsed >= Duration::from_secs(AGENT_TIMEOUT_S - 1),
        "TASK_LOST after {elapsed:?}, before the agent timeout\n{out}"
    );
    assert!(!out.contains("TASK_UNREACHABLE"), "{out}");
    Ok(())
}

#[test]
fn killed_agent_makes_partition_aware_task_unreachable() -> Result<()> {
    let (mut cluster, mut run, _) = lose_agent(&["--partition-aware"], "TASK_UNREACHABLE")?;
    // Unreachable is not terminal: the run keeps waiting; nothing says TASK_LOST.
    std::thread::sleep(Duration::from_millis(500));
    let out = run.output();
    assert!(!out.contains("TASK_LOST"), "{out}\n{}", cluster.logs());
    run.stop(Duration::from_secs(5));
    Ok(())
}
