//! The agent is SIGKILLed and started again 20 times while 50 tasks run and new ones
//! launch. After every restart each task that was running still runs, with the same
//! process, and the master knows it; tasks that ended while the agent was down are
//! reported with their exit code; and the framework gets every task's updates in order,
//! at least once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fleet_proto::ids::{AgentId, TaskId};
use fleet_proto::messages::scheduler::{Offer, Operation};
use fleet_proto::task::{TaskInfo, TaskState, TaskStatus};
use fleet_tests::cluster::Cluster;
use fleet_tests::sdk::{self, Driven};
use fleet_tests::{cgroups, http};

const LONG_TASKS: usize = 50;
const RESTARTS: usize = 20;
const LONG: &str = "cpus:0.01;mem:4";

/// Where a state sits in a task's life: updates of one task must never go back.
fn rank(state: TaskState) -> u8 {
    match state {
        TaskState::Staging => 0,
        TaskState::Starting => 1,
        TaskState::Running => 2,
        TaskState::Killing => 3,
        _ => 4,
    }
}

/// Launches `tasks` on the next offers (all on the one agent).
async fn launch(framework: &Driven, tasks: Vec<TaskInfo>) -> Result<()> {
    let offers: Vec<Offer> = framework.take_offers(Duration::from_secs(30)).await?;
    let agent = offers[0].agent_id.clone();
    let tasks = tasks
        .into_iter()
        .map(|mut t| {
            t.agent_id = agent.clone();
            t
        })
        .collect();
    framework
        .client
        .accept(
            offers.iter().map(|o| o.id).collect(),
            vec![Operation::Launch { tasks }],
            None,
        )
        .await?;
    Ok(())
}

fn long_task(i: usize) -> Result<TaskInfo> {
    sdk::task(
        &AgentId::new(""),
        &format!("long-{i:02}"),
        LONG,
        &["sleep", "3600"],
    )
}

/// A task that ends by itself with `code` after a moment.
fn short_task(i: usize, code: i32) -> Result<TaskInfo> {
    let script = format!("sleep 0.4; exit {code}");
    sdk::task(
        &AgentId::new(""),
        &format!("short-{i:02}"),
        LONG,
        &["sh", "-c", &script],
    )
}

/// Task id -> host pid of every TASK_RUNNING task in the master's /state.
fn running_pids(cluster: &mut Cluster) -> Result<BTreeMap<String, u64>> {
    let (_, body) = http(cluster.http_addr()?, "GET", "/state", "")?;
    let state: serde_json::Value = serde_json::from_str(&body)?;
    let mut out = BTreeMap::new();
    for task in state["tasks"].as_array().context("no tasks in /state")? {
        if task["state"] == "TASK_RUNNING"
            && let (Some(id), Some(pid)) = (task["id"].as_str(), task["pid"].as_u64())
        {
            out.insert(id.to_owned(), pid);
        }
    }
    Ok(out)
}

/// Whether task `id` ever got a sandbox on the agent.
fn ran(cluster: &Cluster, id: &TaskId) -> bool {
    let out = std::process::Command::new("find")
        .arg(cluster.dir.path().join("agent").join("slaves"))
        .args([
            "-type",
            "d",
            "-path",
            &format!("*/executors/{}", id.as_str()),
        ])
        .output();
    out.is_ok_and(|o| !o.stdout.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agent_kills_lose_nothing() -> Result<()> {
    let mut cluster = Cluster::start(&["--agent-timeout", "120"])?;
    let result = scenario(&mut cluster).await;
    result.with_context(|| cluster.logs())
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let started = Instant::now();
    let mut info = sdk::framework("restarts");
    info.failover_timeout_ms = 600_000;
    let framework = Driven::connect(cluster.endpoint()?, info).await?;
    launch(
        &framework,
        (0..LONG_TASKS).map(long_task).collect::<Result<_>>()?,
    )
    .await?;
    framework
        .wait_until("50 tasks running", Duration::from_secs(60), |latest| {
            latest
                .values()
                .filter(|s| s.state == TaskState::Running)
                .count()
                == LONG_TASKS
        })
        .await?;
    println!("{LONG_TASKS} tasks running after {:?}", started.elapsed());

    let mut expected_codes: BTreeMap<TaskId, i32> = BTreeMap::new();
    let mut seed = started.elapsed().as_nanos() as u64 | 1;
    for round in 0..RESTARTS {
        // Wait until the master has every running task's pid, then launch two more.
        // Short tasks end by themselves: only the long ones must survive every kill.
        let running_before: BTreeMap<TaskId, TaskStatus> = framework
            .latest()
            .into_iter()
            .filter(|(id, s)| s.state == TaskState::Running && id.as_str().starts_with("long-"))
            .collect();
        let pids_before = fleet_tests::wait_until(
            Duration::from_secs(15),
            "the master to know every running task's pid",
            || {
                let mut pids = running_pids(cluster)?;
                pids.retain(|id, _| running_before.contains_key(&TaskId::from(id.as_str())));
                let known = pids.len() == running_before.len();
                Ok(known.then_some(pids))
            },
        )?;
        let code = (round % 5) as i32 + 1;
        expected_codes.insert(TaskId::from(format!("short-{round:02}").as_str()), code);
        launch(
            &framework,
            vec![long_task(LONG_TASKS + round)?, short_task(round, code)?],
        )
        .await?;
        // Kill at a random moment: during a launch, while a task ends, or in between.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis((seed >> 33) % 600)).await;
        cluster.agent.kill_hard();
        for (id, pid) in &pids_before {
            ensure!(
                cgroups::alive(*pid as i32),
                "round {round}: task {id} (pid {pid}) died with the agent"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart_agent(&[])?;
        cluster
            .agent
            .wait_for("registered with master", Duration::from_secs(30))?;
        // Every task running before the kill runs on, the same process, and the master
        // says so.
        let pids_after = fleet_tests::wait_until(
            Duration::from_secs(15),
            "the tasks running before the kill to be running again in /state",
            || {
                let pids = running_pids(cluster)?;
                let all = pids_before.keys().all(|id| pids.contains_key(id));
                Ok(all.then_some(pids))
            },
        )
        .with_context(|| format!("round {round}"))?;
        for (id, pid) in &pids_before {
            ensure!(
                pids_after.get(id) == Some(pid),
                "round {round}: task {id} was pid {pid}, now {:?}",
                pids_after.get(id)
            );
        }
        println!(
            "round {round}: {} tasks running through the restart ({:?})",
            pids_before.len(),
            started.elapsed()
        );
    }

    // Every short task ends FAILED with its own exit code, whether it ended while the
    // agent ran or while it was down.
    framework
        .wait_until(
            "every short task to report its end and every long one to run",
            Duration::from_secs(60),
            |latest| {
                let shorts_ended = expected_codes
                    .keys()
                    .all(|id| latest.get(id).is_some_and(|s| s.state.is_terminal()));
                let longs_settled = latest
                    .iter()
                    .filter(|(id, _)| id.as_str().starts_with("long-"))
                    .all(|(_, s)| s.state == TaskState::Running || s.state.is_terminal());
                shorts_ended && longs_settled
            },
        )
        .await?;
    let latest = framework.latest();
    let mut never_reached = 0;
    for (id, code) in &expected_codes {
        let status = &latest[id];
        // A launch the agent died before receiving: the master reports it lost when the
        // agent comes back without it, and it never ran.
        if status.state == TaskState::Lost
            && status.message.contains("unknown to agent")
            && !ran(cluster, id)
        {
            never_reached += 1;
            continue;
        }
        ensure!(
            status.state == TaskState::Failed && status.exit_code == Some(*code),
            "{id}: expected TASK_FAILED with exit code {code}, got {} {:?} ({})",
            status.state.name(),
            status.exit_code,
            status.message
        );
    }
    // Long tasks: running, unless a kill came while one was starting (it then fails as
    // a launch the restarted agent stopped, and says so).
    let mut interrupted = 0;
    for (id, status) in latest
        .iter()
        .filter(|(id, _)| id.as_str().starts_with("long-"))
    {
        match status.state {
            TaskState::Running => {}
            TaskState::Failed if status.message.contains("agent restarted") => interrupted += 1,
            TaskState::Lost if status.message.contains("unknown to agent") && !ran(cluster, id) => {
                never_reached += 1
            }
            other => bail!("{id} ended {} ({})", other.name(), status.message),
        }
    }
    // Updates of each task arrive in order (duplicates allowed, recognisable by uuid).
    let mut history: BTreeMap<TaskId, Vec<TaskStatus>> = BTreeMap::new();
    let updates = framework.updates();
    for status in &updates {
        history
            .entry(status.task_id.clone())
            .or_default()
            .push(status.clone());
    }
    let mut duplicates = 0;
    for (id, seen) in &history {
        let mut uuids = std::collections::BTreeSet::new();
        for pair in seen.windows(2) {
            ensure!(
                rank(pair[1].state) >= rank(pair[0].state),
                "{id}: {} after {}: {:?}",
                pair[1].state.name(),
                pair[0].state.name(),
                seen.iter().map(|s| s.state.name()).collect::<Vec<_>>()
            );
        }
        for status in seen {
            if let Some(uuid) = status.uuid
                && !uuids.insert(uuid)
            {
                duplicates += 1;
            }
        }
        ensure!(
            seen.iter().any(|s| s.state == TaskState::Running)
                || seen.iter().any(|s| s.state.is_terminal()),
            "{id} never reported running or ended: {seen:?}"
        );
    }
    println!(
        "{RESTARTS} agent kills in {:?}: {} updates ({duplicates} duplicates), {} short tasks \
         reported with their exit codes, {never_reached} launches the agent died before \
         receiving (reported lost, never ran), {interrupted} that ended while starting",
        started.elapsed(),
        updates.len(),
        expected_codes.len() - never_reached.min(expected_codes.len())
    );
    Ok(())
}
