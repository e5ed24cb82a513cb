//! Small conveniences over the scheduler SDK for tests: framework and task descriptions,
//! and waiting for events with a deadline.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_client::{EventStream, SchedulerClient};
use fleet_proto::ids::{AgentId, TaskId};
use fleet_proto::messages::scheduler::{Event, FrameworkInfo, Offer};
use fleet_proto::resources::Resources;
use fleet_proto::task::{CommandInfo, TaskInfo, TaskState, TaskStatus};

/// A framework named `name` in the default role.
pub fn framework(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        name: name.to_owned(),
        user: "root".to_owned(),
        ..FrameworkInfo::default()
    }
}

/// A command task exec'ing `argv` (no shell) with `resources` in Mesos text syntax.
pub fn task(agent: &AgentId, id: &str, resources: &str, argv: &[&str]) -> Result<TaskInfo> {
    let resources =
        Resources::parse(resources).with_context(|| format!("bad resources '{resources}'"))?;
    Ok(TaskInfo {
        task_id: TaskId(id.to_owned()),
        name: id.to_owned(),
        agent_id: agent.clone(),
        resources,
        command: CommandInfo {
            shell: false,
            value: argv.first().map(|s| (*s).to_owned()).unwrap_or_default(),
            arguments: argv.iter().map(|s| (*s).to_owned()).collect(),
            environment: Vec::new(),
        },
        kill_grace_ms: None,
    })
}

/// The next event, failing after `timeout` or when the session ends.
pub async fn next_event(events: &mut EventStream, timeout: Duration) -> Result<Event> {
    match tokio::time::timeout(timeout, events.next()).await {
        Err(_) => bail!("no event within {timeout:?}"),
        Ok(None) => bail!("the event stream ended"),
        Ok(Some(Err(e))) => bail!("the event stream failed: {e}"),
        Ok(Some(Ok(event))) => Ok(event),
    }
}

/// Waits for the next OFFERS event; updates met on the way are acknowledged and returned
/// beside the offers, heartbeats skipped.
pub async fn next_offers(
    client: &SchedulerClient,
    events: &mut EventStream,
    timeout: Duration,
) -> Result<(Vec<Offer>, Vec<TaskStatus>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut updates = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = next_event(events, left)
            .await
            .with_context(|| format!("waiting for offers (updates seen: {updates:?})"))?;
        match event {
            Event::Offers { offers } => return Ok((offers, updates)),
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                updates.push(status);
            }
            Event::Error { message, .. } => bail!("master sent ERROR: {message}"),
            _ => {}
        }
    }
}

/// Waits until task `task_id` reaches `state`, acknowledging every update; offers that
/// arrive meanwhile are left alone. Fails if the task reaches another terminal state first.
/// Returns the matching status and every status of the task seen before it.
pub async fn wait_state(
    client: &SchedulerClient,
    events: &mut EventStream,
    task_id: &TaskId,
    state: TaskState,
    timeout: Duration,
) -> Result<(TaskStatus, Vec<TaskStatus>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen: Vec<TaskStatus> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = next_event(events, left).await.with_context(|| {
            format!(
                "waiting for {task_id} to reach {state}; its states so far: {:?}",
                seen.iter().map(|s| s.state.name()).collect::<Vec<_>>()
            )
        })?;
        match event {
            Event::Update { status } => {
                client.acknowledge(&status).await?;
                if &status.task_id != task_id {
                    continue;
                }
                if status.state == state {
                    return Ok((status, seen));
                }
                if status.state.is_terminal() {
                    bail!(
                        "{task_id} ended {} ({:?}: {}) while waiting for {state}",
                        status.state,
                        status.reason,
                        status.message
                    );
                }
                seen.push(status);
            }
            Event::Error { message, .. } => bail!("master sent ERROR: {message}"),
            _ => {}
        }
    }
}
