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

/// A framework run by a background task: every update is acknowledged and recorded in
/// arrival order, offers are kept for the test to take (rescinded ones dropped).
pub struct Driven {
    pub client: std::sync::Arc<SchedulerClient>,
    updates: std::sync::Arc<std::sync::Mutex<Vec<TaskStatus>>>,
    offers: std::sync::Arc<std::sync::Mutex<Vec<Offer>>>,
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Driven {
    pub async fn connect(
        endpoint: fleet_client::MasterEndpoint,
        info: FrameworkInfo,
    ) -> Result<Driven> {
        let (client, mut events) = SchedulerClient::connect(endpoint, info).await?;
        let client = std::sync::Arc::new(client);
        let updates: std::sync::Arc<std::sync::Mutex<Vec<TaskStatus>>> = Default::default();
        let offers: std::sync::Arc<std::sync::Mutex<Vec<Offer>>> = Default::default();
        let errors: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let reader = {
            let (client, updates, offers, errors) = (
                client.clone(),
                updates.clone(),
                offers.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    let event = match event {
                        Ok(event) => event,
                        Err(e) => {
                            lock(&errors).push(e.to_string());
                            return;
                        }
                    };
                    match event {
                        Event::Update { status } => {
                            if let Err(e) = client.acknowledge(&status).await {
                                lock(&errors).push(format!("acknowledge: {e}"));
                            }
                            lock(&updates).push(status);
                        }
                        Event::Offers { offers: new } => lock(&offers).extend(new),
                        Event::Rescind { offer_id } => lock(&offers).retain(|o| o.id != offer_id),
                        Event::Error { message, .. } => lock(&errors).push(message),
                        _ => {}
                    }
                }
            })
        };
        Ok(Driven {
            client,
            updates,
            offers,
            errors,
            reader,
        })
    }

    /// Takes every outstanding offer, waiting up to `timeout` for at least one.
    pub async fn take_offers(&self, timeout: Duration) -> Result<Vec<Offer>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let taken = std::mem::take(&mut *lock(&self.offers));
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no offer within {timeout:?}; errors: {:?}", self.errors());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every update received so far, in arrival order.
    pub fn updates(&self) -> Vec<TaskStatus> {
        lock(&self.updates).clone()
    }

    /// The latest update of each task.
    pub fn latest(&self) -> std::collections::BTreeMap<TaskId, TaskStatus> {
        let mut latest = std::collections::BTreeMap::new();
        for status in lock(&self.updates).iter() {
            latest.insert(status.task_id.clone(), status.clone());
        }
        latest
    }

    /// Errors the event stream reported.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }

    /// Waits until `done` holds for the latest updates, or fails after `timeout`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&std::collections::BTreeMap<TaskId, TaskStatus>) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let latest = self.latest();
            if done(&latest) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let states: Vec<String> = latest
                    .iter()
                    .map(|(id, s)| format!("{id}={}", s.state.name()))
                    .collect();
                bail!(
                    "{what}: not within {timeout:?}; latest states {states:?}; errors {:?}",
                    self.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
