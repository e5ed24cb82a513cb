//! KILL through the scheduler SDK: a running task ends TASK_KILLED and its processes and
//! cgroup are gone.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_client::SchedulerClient;
use fleet_proto::task::TaskState;
use fleet_tests::{Dev, cgroups, sdk, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_running_task() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let result = scenario(&dev).await;
    result.with_context(|| dev.log())
}

async fn scenario(dev: &Dev) -> Result<()> {
    let (client, mut events) =
        SchedulerClient::connect(dev.endpoint()?, sdk::framework("kill-test")).await?;
    let (offers, _) = sdk::next_offers(&client, &mut events, Duration::from_secs(10)).await?;
    let offer = offers.first().context("an empty OFFERS event")?;
    let task = sdk::task(
        &offer.agent_id,
        "sleeper",
        "cpus:0.1;mem:32",
        &["sleep", "60"],
    )?;
    let task_id = task.task_id.clone();
    client.launch(offer.id, vec![task]).await?;
    let (running, _) = sdk::wait_state(
        &client,
        &mut events,
        &task_id,
        TaskState::Running,
        Duration::from_secs(15),
    )
    .await?;

    // The task's processes, from its container cgroup.
    let root = dev.cgroup_root.clone();
    let pids = wait_until(Duration::from_secs(5), "the sleeper's process", || {
        let pids = cgroups::procs(&root);
        let sleeping = pids.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\0"))
        });
        Ok(sleeping.then_some(pids))
    })?;
    let containers = cgroups::containers(&root);
    assert_eq!(containers.len(), 1, "{containers:?}");

    client
        .kill(task_id.clone(), running.agent_id.clone(), None)
        .await?;
    let (killed, _) = sdk::wait_state(
        &client,
        &mut events,
        &task_id,
        TaskState::Killed,
        Duration::from_secs(15),
    )
    .await?;
    assert_eq!(killed.agent_id, running.agent_id);

    let left = wait_until(
        Duration::from_secs(5),
        "the task's processes to be gone",
        || {
            let alive: Vec<i32> = pids
                .iter()
                .copied()
                .filter(|p| cgroups::alive(*p))
                .collect();
            Ok(alive.is_empty().then_some(()))
        },
    );
    if let Err(e) = left {
        bail!("after TASK_KILLED, processes {pids:?} remain: {e:#}");
    }
    wait_until(
        Duration::from_secs(5),
        "the container cgroup to be removed",
        || Ok(containers.iter().all(|c| !c.exists()).then_some(())),
    )?;
    client.teardown().await?;
    Ok(())
}
