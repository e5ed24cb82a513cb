//! A network partition between a running agent and its master, through a UDP relay this
//! test controls: the master marks the agent unreachable and a partition-aware framework
//! is told (TASK_UNREACHABLE) while the tasks run on; when the link heals the agent
//! re-registers with the same id, the tasks are RUNNING again, nothing is orphaned, and
//! one reconcile gives the framework the agent's view.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use fleet_proto::ids::TaskId;
use fleet_proto::messages::scheduler::Operation;
use fleet_proto::task::TaskState;
use fleet_tests::cluster::Cluster;
use fleet_tests::sdk::{self, Driven};
use fleet_tests::{UdpRelay, cgroups, http};

const TASKS: usize = 3;

/// The tasks the agent itself reports running (its /monitor/statistics).
fn agent_tasks(cluster: &mut Cluster) -> Result<BTreeSet<String>> {
    let (_, body) = http(cluster.agent_http_addr()?, "GET", "/monitor/statistics", "")?;
    let stats: serde_json::Value = serde_json::from_str(&body)?;
    Ok(stats
        .as_array()
        .context("statistics are not a list")?
        .iter()
        .filter_map(|e| e["executor_id"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_agent_comes_back_with_its_tasks() -> Result<()> {
    let mut relay = None;
    // A 3 s agent timeout: 1 s pings, 3 missed.
    let mut cluster = Cluster::start_with(
        &[
            "--agent-ping-timeout",
            "1",
            "--max-agent-ping-timeouts",
            "3",
        ],
        |master| match UdpRelay::start(master.parse().expect("master address")) {
            Ok(started) => {
                let addr = started.addr.to_string();
                relay = Some(started);
                addr
            }
            Err(_) => master.to_owned(),
        },
    )?;
    let relay = relay.context("the UDP relay did not start")?;
    let result = scenario(&mut cluster, &relay).await;
    result.with_context(|| cluster.logs())
}

async fn scenario(cluster: &mut Cluster, relay: &UdpRelay) -> Result<()> {
    let mut info = sdk::framework("partition");
    info.capabilities.partition_aware = true;
    info.failover_timeout_ms = 600_000;
    let framework = Driven::connect(cluster.endpoint()?, info).await?;
    let offers = framework.take_offers(Duration::from_secs(30)).await?;
    let agent = offers[0].agent_id.clone();
    let tasks = (0..TASKS)
        .map(|i| {
            sdk::task(
                &agent,
                &format!("part-{i}"),
                "cpus:0.1;mem:16",
                &["sleep", "600"],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    framework
        .client
        .accept(
            offers.iter().map(|o| o.id).collect(),
            vec![Operation::Launch { tasks }],
            None,
        )
        .await?;
    framework
        .wait_until("the tasks to run", Duration::from_secs(30), |latest| {
            latest.len() == TASKS && latest.values().all(|s| s.state == TaskState::Running)
        })
        .await?;
    let pids = cgroups::procs(&cluster.cgroup_root);
    ensure!(!pids.is_empty(), "no task processes");

    relay.cut();
    let cut = Instant::now();
    framework
        .wait_until(
            "TASK_UNREACHABLE for every task",
            Duration::from_secs(20),
            |latest| latest.values().all(|s| s.state == TaskState::Unreachable),
        )
        .await?;
    println!("unreachable {:?} after the cut", cut.elapsed());
    // The tasks run on, and the agent keeps them.
    for pid in &pids {
        ensure!(
            cgroups::alive(*pid),
            "task process {pid} died in the partition"
        );
    }
    ensure!(
        cluster
            .agent
            .wait_exit(Duration::from_millis(100))
            .is_none(),
        "the agent exited during the partition"
    );
    let (_, state) = http(cluster.http_addr()?, "GET", "/state", "")?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    ensure!(
        state["unreachable_agents"][0] == agent.as_str(),
        "the master does not list the agent as unreachable: {state}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.heal();
    let healed = Instant::now();
    framework
        .wait_until(
            "RUNNING again after the heal",
            Duration::from_secs(60),
            |latest| latest.values().all(|s| s.state == TaskState::Running),
        )
        .await?;
    println!(
        "running again {:?} after the heal ({} datagrams dropped while cut)",
        healed.elapsed(),
        relay.dropped.load(std::sync::atomic::Ordering::Relaxed)
    );

    // The same agent, the same processes, nothing orphaned.
    let (_, state) = http(cluster.http_addr()?, "GET", "/state", "")?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    let agents = state["agents"].as_array().context("no agents")?;
    ensure!(
        agents.len() == 1 && agents[0]["id"] == agent.as_str(),
        "{state}"
    );
    ensure!(
        state["unreachable_agents"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{state}"
    );
    for pid in &pids {
        ensure!(
            cgroups::alive(*pid),
            "task process {pid} died after the heal"
        );
    }
    ensure!(
        cgroups::containers(&cluster.cgroup_root).len() == TASKS,
        "containers: {:?}",
        cgroups::containers(&cluster.cgroup_root)
    );

    // One reconcile: the framework's view is the agent's.
    let before = framework.updates().len();
    framework.client.reconcile(Vec::new()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while framework.updates().len() < before + TASKS {
        ensure!(Instant::now() < deadline, "reconcile answered too little");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered: BTreeSet<(TaskId, &'static str)> = framework.updates()[before..]
        .iter()
        .map(|s| (s.task_id.clone(), s.state.name()))
        .collect();
    let on_agent = agent_tasks(cluster)?;
    let expected: BTreeSet<(TaskId, &'static str)> = on_agent
        .iter()
        .map(|id| (TaskId::from(id.as_str()), TaskState::Running.name()))
        .collect();
    ensure!(
        answered == expected,
        "reconcile says {answered:?}, the agent runs {on_agent:?}"
    );
    Ok(())
}
