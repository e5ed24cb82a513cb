//! Framework failover with a real framework process: it launches two tasks and is
//! SIGKILLed; started again with its framework id within its failover timeout, it finds
//! its tasks running (the same processes) and reconciliation answers them. Killed again
//! and left dead past the failover timeout, its tasks are killed and it is removed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fleet_client::{MasterEndpoint, SchedulerClient};
use fleet_proto::ids::FrameworkId;
use fleet_proto::messages::scheduler::{Event, Operation};
use fleet_tests::cluster::Cluster;
use fleet_tests::{Process, cgroups, sdk, wait_until};

const CHILD: &str = "FLEET_FAILOVER_CHILD";
const FAILOVER_TIMEOUT_MS: u64 = 3_000;
const TASKS: [&str; 2] = ["keep-a", "keep-b"];

/// The framework process (this test binary started again by the test below):
/// `MASTER|CA_PATH|FRAMEWORK_ID` (`-` for a new framework).
fn run_child(spec: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = rt.block_on(child(spec)) {
        println!("child failed: {e:#}");
        std::process::exit(1);
    }
}

async fn child(spec: &str) -> Result<()> {
    let mut parts = spec.split('|');
    let (master, ca, id) = (
        parts.next().context("master")?,
        parts.next().context("ca")?,
        parts.next().context("id")?,
    );
    let endpoint = MasterEndpoint {
        addr: master.parse()?,
        ca_pem: std::fs::read_to_string(ca)?,
    };
    let mut info = sdk::framework("failover");
    info.failover_timeout_ms = FAILOVER_TIMEOUT_MS;
    if id != "-" {
        info.id = Some(FrameworkId::new(id));
    }
    let (client, mut events) = SchedulerClient::connect(endpoint, info).await?;
    println!("framework {}", client.framework_id());
    if id == "-" {
        let (offers, _) = sdk::next_offers(&client, &mut events, Duration::from_secs(30)).await?;
        let agent = offers[0].agent_id.clone();
        let tasks = TASKS
            .iter()
            .map(|t| sdk::task(&agent, t, "cpus:0.1;mem:16", &["sleep", "600"]))
            .collect::<Result<Vec<_>>>()?;
        client
            .accept(
                offers.iter().map(|o| o.id).collect(),
                vec![Operation::Launch { tasks }],
                None,
            )
            .await?;
    } else {
        client.reconcile(Vec::new()).await?;
    }
    // Print every update (acknowledged), forever: the parent kills this process.
    loop {
        match sdk::next_event(&mut events, Duration::from_secs(3600)).await? {
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                println!("update {} {}", status.task_id, status.state.name());
            }
            Event::Error { message, .. } => bail!("master sent ERROR: {message}"),
            _ => {}
        }
    }
}

fn start_child(cluster: &Cluster, id: &str) -> Result<Process> {
    let spec = format!("{}|{}|{id}", cluster.addr(), cluster.ca_path().display());
    Process::spawn(
        "framework",
        Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "a_framework_restarted_within_its_failover_timeout_keeps_its_tasks",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, spec),
    )
}

#[test]
fn a_framework_restarted_within_its_failover_timeout_keeps_its_tasks() -> Result<()> {
    if let Ok(spec) = std::env::var(CHILD) {
        run_child(&spec);
        return Ok(());
    }
    let mut cluster = Cluster::start(&[])?;
    let result = scenario(&mut cluster);
    result.with_context(|| cluster.logs())
}

fn scenario(cluster: &mut Cluster) -> Result<()> {
    let mut first = start_child(cluster, "-")?;
    let line = first.wait_for("framework F-", Duration::from_secs(30))?;
    let id = line
        .rsplit(' ')
        .next()
        .context("no framework id")?
        .to_owned();
    for task in TASKS {
        first.wait_for(
            &format!("update {task} TASK_RUNNING"),
            Duration::from_secs(30),
        )?;
    }
    let pids = cgroups::procs(&cluster.cgroup_root);
    ensure!(!pids.is_empty(), "no task processes");

    // Killed, and back with its id well within the failover timeout.
    first.kill_hard();
    let mut second = start_child(cluster, &id)?;
    second.wait_for(&format!("framework {id}"), Duration::from_secs(30))?;
    for task in TASKS {
        second
            .wait_for(
                &format!("update {task} TASK_RUNNING"),
                Duration::from_secs(30),
            )
            .with_context(|| second.output())?;
    }
    ensure!(
        cgroups::procs(&cluster.cgroup_root) == pids,
        "the tasks' processes changed across the framework's failover"
    );

    // Killed again and not coming back: once the master notices (the connection's idle
    // timeout) and the failover timeout passes, its tasks are killed.
    second.kill_hard();
    let killed = Instant::now();
    wait_until(Duration::from_secs(90), "the tasks to be killed", || {
        Ok(pids.iter().all(|p| !cgroups::alive(*p)).then_some(()))
    })?;
    cluster
        .master
        .wait_for("failover timeout", Duration::from_secs(5))?;
    println!(
        "tasks killed {:?} after the framework was",
        killed.elapsed()
    );
    Ok(())
}
