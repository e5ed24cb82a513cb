//! Two frameworks that both want everything share one agent by DRF: each keeps getting
//! offers and launching tasks; neither starves.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result};
use fleet_client::SchedulerClient;
use fleet_proto::messages::scheduler::{Event, Filters};
use fleet_proto::resources::Resources;
use fleet_proto::task::TaskState;
use fleet_tests::{Dev, sdk};

const RUN_FOR: Duration = Duration::from_secs(10);
const PER_TASK: &str = "cpus:0.5;mem:64";

#[derive(Debug, Default)]
struct Tally {
    offers: usize,
    launched: usize,
    finished: usize,
    /// Most tasks this framework had running (launched, not yet ended) at once.
    max_running: usize,
    other_ends: Vec<String>,
}

/// One framework: on every offer it launches as many `sleep 1` tasks as fit and hands the
/// rest back at once (0.1 s filter), so the allocator decides who gets freed resources.
async fn framework(
    dev_endpoint: fleet_client::MasterEndpoint,
    name: &'static str,
) -> Result<Tally> {
    let (client, mut events) = SchedulerClient::connect(dev_endpoint, sdk::framework(name)).await?;
    let per_task = Resources::parse(PER_TASK)?;
    let mut tally = Tally::default();
    let mut running: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + RUN_FOR;
    let quick = Some(Filters {
        refuse_seconds: 0.1,
    });
    while tokio::time::Instant::now() < deadline {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(event) = sdk::next_event(&mut events, left).await else {
            break;
        };
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    tally.offers += 1;
                    if !offer.resources.contains(&per_task) {
                        client.decline(vec![offer.id], quick).await?;
                        continue;
                    }
                    // Take as much of the offer as fits: both want the whole agent.
                    let mut left = offer.resources.clone();
                    let mut tasks = Vec::new();
                    while left.contains(&per_task) {
                        left.subtract(&per_task);
                        let id = format!("{name}-{}", tally.launched);
                        tasks.push(sdk::task(&offer.agent_id, &id, PER_TASK, &["sleep", "1"])?);
                        tally.launched += 1;
                        running.insert(id);
                    }
                    client
                        .accept(
                            vec![offer.id],
                            vec![fleet_proto::messages::scheduler::Operation::Launch { tasks }],
                            quick,
                        )
                        .await?;
                    tally.max_running = tally.max_running.max(running.len());
                }
            }
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                if status.state.is_terminal() {
                    running.remove(status.task_id.as_str());
                    if status.state == TaskState::Finished {
                        tally.finished += 1;
                    } else {
                        tally.other_ends.push(format!(
                            "{} {} {:?} {}",
                            status.task_id, status.state, status.reason, status.message
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    client.teardown().await?;
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frameworks_share_one_agent() -> Result<()> {
    // A fixed agent, so that four tasks fill it whatever this machine has.
    let mut dev = Dev::start(&["--resources", "cpus:2;mem:1024"])?;
    let endpoint = dev.endpoint()?;
    let a = tokio::spawn(framework(endpoint.clone(), "drf-a"));
    let b = tokio::spawn(framework(endpoint, "drf-b"));
    let (a, b) = (a.await?, b.await?);
    let log = dev.log();
    let tallies: HashMap<&str, Tally> = [
        ("drf-a", a.with_context(|| log.clone())?),
        ("drf-b", b.with_context(|| log.clone())?),
    ]
    .into_iter()
    .collect();
    let summary = format!("{tallies:#?}");
    eprintln!("{summary}");
    for (name, t) in &tallies {
        assert!(t.offers >= 3, "{name} got too few offers: {summary}\n{log}");
        assert!(
            t.launched >= 3,
            "{name} launched too few tasks: {summary}\n{log}"
        );
        assert!(
            t.finished >= 2,
            "{name} saw too few tasks finish: {summary}\n{log}"
        );
        assert!(t.other_ends.is_empty(), "{name}: {summary}");
    }
    let (low, high) = (
        tallies.values().map(|t| t.launched).min().unwrap_or(0),
        tallies.values().map(|t| t.launched).max().unwrap_or(0),
    );
    // Equal demands, equal weights: the launches should be close to even.
    assert!(
        low * 2 >= high,
        "one framework got far more than the other: {summary}"
    );
    Ok(())
}
