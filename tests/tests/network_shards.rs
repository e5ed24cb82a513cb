//! `--shards 3` runs the core's thread and two network shards on one UDP port
//! (SO_REUSEPORT): the kernel spreads connections over both shards, and a framework on
//! either subscribes and launches through the one core.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use fleet_client::SchedulerClient;
use fleet_proto::messages::scheduler::{Event, Filters, Operation};
use fleet_proto::task::TaskState;
use fleet_tests::{Dev, http, sdk};

const FRAMEWORKS: usize = 16;

/// `fleet_master_shard_connections{shard="N"}` for each shard, from /metrics.
fn shard_connections(metrics: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("fleet_master_shard_connections{shard=\"")
            && let Some((shard, value)) = rest.split_once("\"} ")
            && let (Ok(shard), Ok(value)) = (shard.parse::<usize>(), value.parse::<u64>())
        {
            out.resize(out.len().max(shard + 1), 0);
            out[shard] = value;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_two_shards_and_all_reach_the_core() -> Result<()> {
    let mut dev = Dev::start(&["--shards", "3"])?;
    let result = scenario(&dev).await;
    result.with_context(|| dev.log())
}

/// `Cpus_allowed_list` of each thread of `pid`, by thread name.
fn cpu_masks(pid: u32) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let name = std::fs::read_to_string(dir.join("comm"))?.trim().to_owned();
        let status = std::fs::read_to_string(dir.join("status"))?;
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .context("no Cpus_allowed_list in /proc status")?
            .trim()
            .to_owned();
        out.push((name, mask));
    }
    Ok(out)
}

async fn scenario(dev: &Dev) -> Result<()> {
    // Network shards are pinned, one cpu each; the core's thread is not, since the
    // allocator shards' threads it spawns for a full cycle inherit its cpu mask.
    let pid = dev.process.pid().context("fleet dev has no pid")?;
    let process_mask = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|m| m.trim().to_owned())
        })
        .context("no Cpus_allowed_list")?;
    let masks = cpu_masks(pid)?;
    println!("threads' cpus: {masks:?}");
    let core = masks.iter().find(|(n, _)| n == "fleet-core");
    ensure!(
        core.is_some_and(|(_, m)| *m == process_mask),
        "fleet-core should run on every cpu ({process_mask}): {masks:?}"
    );
    let nets: Vec<&(String, String)> = masks
        .iter()
        .filter(|(n, _)| n.starts_with("fleet-net-"))
        .collect();
    ensure!(nets.len() == 2, "two network shards: {masks:?}");
    ensure!(
        nets.iter().all(|(_, m)| m.parse::<usize>().is_ok()),
        "each network shard pinned to one cpu: {masks:?}"
    );

    let endpoint = dev.endpoint()?;
    // Each client binds its own UDP port, so the kernel hashes each to a shard by itself.
    let mut frameworks = Vec::new();
    for i in 0..FRAMEWORKS {
        let info = sdk::framework(&format!("spread-{i}"));
        let (client, events) = SchedulerClient::connect(endpoint.clone(), info)
            .await
            .with_context(|| format!("framework {i} subscribing"))?;
        frameworks.push((client, events));
    }
    let (_, metrics) = http(dev.addr(), "GET", "/metrics", "")?;
    let open = shard_connections(&metrics);
    println!("sessions per shard: {open:?}");
    ensure!(open.len() == 2, "two shards in /metrics: {open:?}");
    ensure!(
        open.iter().sum::<u64>() > FRAMEWORKS as u64,
        "{FRAMEWORKS} frameworks and the agent: {open:?}"
    );
    ensure!(
        open.iter().all(|n| *n > 0),
        "a shard has no sessions: {open:?}"
    );

    // Every framework, whichever shard it is on, gets an offer and launches a task on it
    // (all at once: an offer waits with whoever holds it).
    let mut running = tokio::task::JoinSet::new();
    for (i, (client, events)) in frameworks.into_iter().enumerate() {
        running.spawn(async move {
            launch_one(i, client, events)
                .await
                .with_context(|| format!("framework {i}"))
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

/// Waits for an event, at most 60 s.
async fn next(events: &mut fleet_client::EventStream) -> Result<Event> {
    match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        Ok(Some(event)) => Ok(event?),
        Ok(None) => anyhow::bail!("the event stream ended"),
        Err(_) => anyhow::bail!("no event within 60 s"),
    }
}

/// Launches `true` on the first offer and waits for TASK_FINISHED.
async fn launch_one(
    i: usize,
    client: SchedulerClient,
    mut events: fleet_client::EventStream,
) -> Result<()> {
    let offer = loop {
        if let Event::Offers { mut offers } = next(&mut events).await? {
            break offers.remove(0);
        }
    };
    let task = sdk::task(
        &offer.agent_id,
        &format!("t-{i}"),
        "cpus:0.1;mem:16",
        &["true"],
    )?;
    // What is left of the offer goes back at once for the others.
    client
        .accept(
            vec![offer.id],
            vec![Operation::Launch { tasks: vec![task] }],
            Some(Filters {
                refuse_seconds: 0.0,
            }),
        )
        .await?;
    loop {
        match next(&mut events).await? {
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                if status.state == TaskState::Finished {
                    return Ok(());
                }
                ensure!(
                    !status.state.is_terminal(),
                    "{} ({})",
                    status.state.name(),
                    status.message
                );
            }
            Event::Offers { offers } => {
                client
                    .decline(offers.iter().map(|o| o.id).collect(), None)
                    .await?;
            }
            _ => {}
        }
    }
}
