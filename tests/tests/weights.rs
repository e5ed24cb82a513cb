//! Role weights and quotas set through the operator API decide how one agent is shared:
//! two frameworks that both want everything, in roles weighted 1 and 3 (UPDATE_WEIGHTS),
//! end up holding resources in about that proportion; a role limited to 1 cpu
//! (UPDATE_QUOTA) never holds more, while another role takes the rest.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_client::SchedulerClient;
use fleet_proto::messages::scheduler::{Event, Filters, Operation};
use fleet_proto::resources::Resources;
use fleet_tests::{Dev, http, sdk};

const RUN_FOR: Duration = Duration::from_secs(12);
/// Samples taken after this long count (the first offers go to whoever asks first).
const WARM_UP: Duration = Duration::from_secs(4);
const PER_TASK: &str = "cpus:0.25;mem:32";

/// One cluster at a time: each keeps 2 cores busy with task churn, and shares measured
/// under that load drift toward 1:1 (1.97 was seen with these tests running together in
/// the full suite, 2.3 to 2.9 one at a time), because coarse offers hand a burst of slots
/// freed at once to one role.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A framework in `role` that launches as many `sleep 1` tasks as every offer holds and
/// counts how many it has running in `running`.
async fn framework(
    endpoint: fleet_client::MasterEndpoint,
    name: &'static str,
    role: &'static str,
    running: Arc<AtomicUsize>,
) -> Result<usize> {
    let mut info = sdk::framework(name);
    info.roles = vec![role.to_owned()];
    let (client, mut events) = SchedulerClient::connect(endpoint, info).await?;
    let per_task = Resources::parse(PER_TASK)?;
    let quick = Some(Filters {
        refuse_seconds: 0.1,
    });
    let mut live: HashSet<String> = HashSet::new();
    let mut launched = 0;
    let deadline = tokio::time::Instant::now() + RUN_FOR;
    while tokio::time::Instant::now() < deadline {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(event) = sdk::next_event(&mut events, left).await else {
            break;
        };
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    let mut rest = offer.resources.clone();
                    let mut tasks = Vec::new();
                    while rest.contains(&per_task) {
                        rest.subtract(&per_task);
                        let id = format!("{name}-{launched}");
                        launched += 1;
                        tasks.push(sdk::task(&offer.agent_id, &id, PER_TASK, &["sleep", "1"])?);
                        live.insert(id);
                    }
                    client
                        .accept(vec![offer.id], vec![Operation::Launch { tasks }], quick)
                        .await?;
                    running.store(live.len(), Ordering::SeqCst);
                }
            }
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                if status.state.is_terminal() {
                    live.remove(status.task_id.as_str());
                    running.store(live.len(), Ordering::SeqCst);
                }
            }
            _ => {}
        }
    }
    client.teardown().await?;
    Ok(launched)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_weighted_one_and_three_share_an_agent_one_to_three() -> Result<()> {
    weighted_one_to_three(&["--shards", "1"]).await
}

/// The same with the master's allocator in two shards (`fleet dev --shards 2`): tasks run
/// end to end and the weights still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_allocator_shards_roles_weighted_one_and_three_share_one_to_three() -> Result<()> {
    weighted_one_to_three(&["--shards", "2"]).await
}

async fn weighted_one_to_three(flags: &[&str]) -> Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut args = vec!["--resources", "cpus:4;mem:4096"];
    args.extend_from_slice(flags);
    let mut dev = Dev::start(&args)?;
    let shards = flags.last().copied().unwrap_or("1");
    let (status, metrics) = http(([127, 0, 0, 1], dev.port).into(), "GET", "/metrics", "")?;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains(&format!("fleet_master_allocator_shards {shards}")),
        "the master does not run {shards} allocator shards:\n{metrics}"
    );
    let (status, body) = http(
        ([127, 0, 0, 1], dev.port).into(),
        "POST",
        "/api/v1",
        r#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "light", "weight": 1}, {"role": "heavy", "weight": 3}]}}"#,
    )?;
    if status != 200 {
        bail!("UPDATE_WEIGHTS: HTTP {status}: {body}");
    }
    let (status, body) = http(
        ([127, 0, 0, 1], dev.port).into(),
        "POST",
        "/api/v1",
        r#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "x", "weight": -1}]}}"#,
    )?;
    assert_eq!(status, 400, "a negative weight was accepted: {body}");
    assert!(body.contains("weight -1"), "{body}");

    let endpoint = dev.endpoint()?;
    let (light, heavy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = tokio::spawn(framework(
        endpoint.clone(),
        "w-light",
        "light",
        light.clone(),
    ));
    let b = tokio::spawn(framework(endpoint, "w-heavy", "heavy", heavy.clone()));
    // Sample who holds how many tasks, every 100 ms after the warm-up.
    tokio::time::sleep(WARM_UP).await;
    let (mut sum_light, mut sum_heavy) = (0usize, 0usize);
    let sampling = RUN_FOR - WARM_UP - Duration::from_secs(1);
    let samples = (sampling.as_millis() / 100) as usize;
    for _ in 0..samples {
        sum_light += light.load(Ordering::SeqCst);
        sum_heavy += heavy.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (a, b) = (a.await?, b.await?);
    let log = dev.log();
    let (launched_light, launched_heavy) = (
        a.with_context(|| log.clone())?,
        b.with_context(|| log.clone())?,
    );
    let ratio = sum_heavy as f64 / sum_light.max(1) as f64;
    eprintln!(
        "running tasks, mean over {samples} samples: light {:.1}, heavy {:.1} (ratio {ratio:.2}); \
         launched: light {launched_light}, heavy {launched_heavy}",
        sum_light as f64 / samples as f64,
        sum_heavy as f64 / samples as f64
    );
    assert!(sum_light > 0, "the light role got nothing\n{log}");
    // Offers are coarse (whoever is furthest below its share gets all that is free on the
    // agent), so with tasks ending every second the lighter role often holds one slot
    // more than its exact share: 2.5-2.7 was measured for the ideal 3.
    assert!(
        (2.0..=4.0).contains(&ratio),
        "held resources heavy/light = {ratio:.2}, expected about 3\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_limit_caps_a_role_and_get_quota_reports_it() -> Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut dev = Dev::start(&["--resources", "cpus:4;mem:4096"])?;
    let api = |body: &str| http(([127, 0, 0, 1], dev.port).into(), "POST", "/api/v1", body);
    let (status, body) = api(
        r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "light", "guarantees": {"cpus": {"value": 0.5}},
             "limits": {"cpus": {"value": 1}}}]}}"#,
    )?;
    if status != 200 {
        bail!("UPDATE_QUOTA: HTTP {status}: {body}");
    }
    let (status, body) = api(
        r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "x", "guarantees": {"cpus": {"value": 3}}, "limits": {"cpus": {"value": 1}}}]}}"#,
    )?;
    assert_eq!(
        status, 400,
        "a guarantee above its limit was accepted: {body}"
    );
    assert!(body.contains("exceeds the limit"), "{body}");
    let (status, body) = api(r#"{"type": "GET_QUOTA"}"#)?;
    assert_eq!(status, 200, "{body}");
    let quota: serde_json::Value = serde_json::from_str(&body)?;
    let config = &quota["get_quota"]["status"]["configs"][0];
    assert_eq!(config["role"], "light", "{body}");
    assert_eq!(config["limits"]["cpus"]["value"], 1.0, "{body}");
    assert_eq!(config["guarantees"]["cpus"]["value"], 0.5, "{body}");

    let endpoint = dev.endpoint()?;
    let (light, heavy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = tokio::spawn(framework(
        endpoint.clone(),
        "q-light",
        "light",
        light.clone(),
    ));
    let b = tokio::spawn(framework(endpoint, "q-other", "other", heavy.clone()));
    let (mut most_light, mut most_other) = (0usize, 0usize);
    let deadline = tokio::time::Instant::now() + RUN_FOR - Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        most_light = most_light.max(light.load(Ordering::SeqCst));
        most_other = most_other.max(heavy.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = (a.await?, b.await?);
    let log = dev.log();
    let (launched_light, launched_other) = (
        a.with_context(|| log.clone())?,
        b.with_context(|| log.clone())?,
    );
    eprintln!(
        "most running at once: light {most_light} (limit 4 x cpus:0.25), other {most_other}; \
         launched: light {launched_light}, other {launched_other}"
    );
    assert!(launched_light > 0, "the limited role got nothing\n{log}");
    assert!(
        most_light <= 4,
        "role light held {most_light} tasks of cpus:0.25 at once, over its 1 cpu limit\n{log}"
    );
    assert!(
        most_other >= 8,
        "the other role never held most of the agent ({most_other} tasks)\n{log}"
    );
    Ok(())
}
