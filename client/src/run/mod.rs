//! `fleet run`: a framework that launches one command task, prints each of its state
//! changes, and ends with the task's exit code (like Mesos' mesos-execute).
//!
//! [`OneTaskRun`] decides everything; [`run`] only carries its steps to the master and the
//! terminal.

mod lifecycle;
mod options;

use std::io::Write;

use tokio::time::Instant;

pub use lifecycle::{INTERRUPTED_EXIT, OneTaskRun, Step, exit_code, status_line};
pub use options::{RunOptions, TaskRequest, parse_constraint};

use crate::error::ClientError;
use crate::scheduler::{EventStream, MasterEndpoint, SchedulerClient};

/// Runs one task to its end. Returns the exit code to exit with (see [`exit_code`]).
/// Ctrl-C kills a launched task (the run still waits for its final state); a second
/// Ctrl-C, or one before launch, tears the framework down at once. Given several masters,
/// it subscribes with the leader, and when the session is lost (the leader failed) it
/// subscribes again with the new leader under the same framework id and reconciles.
pub async fn run(opts: RunOptions, out: &mut impl Write) -> Result<i32, ClientError> {
    let mut state = OneTaskRun::new(&opts, Instant::now().into_std())?;
    let (mut client, mut events) = subscribe(&opts, None).await?;
    writeln!(
        out,
        "subscribed to master {} as framework {}",
        client.master_addr(),
        client.framework_id()
    )?;
    out.flush()?;
    let mut reconcile = None;
    let result = loop {
        let result = drive(&client, &mut events, &mut state, &mut reconcile, out).await;
        let lost = matches!(
            result,
            Err(ClientError::Session { .. }
                | ClientError::NotLeader { .. }
                | ClientError::Connect { .. })
        );
        if !lost || opts.other_masters.is_empty() {
            break result;
        }
        if let Err(e) = &result {
            writeln!(out, "{e}; subscribing again with the leading master")?;
        }
        let id = client.framework_id().clone();
        match subscribe(&opts, Some(id)).await {
            Ok((next, next_events)) => {
                (client, events) = (next, next_events);
                writeln!(
                    out,
                    "subscribed again to master {} as framework {}",
                    client.master_addr(),
                    client.framework_id()
                )?;
                out.flush()?;
                reconcile = state.reconciliation();
            }
            Err(e) => break Err(e),
        }
    };
    // Always tear down: a one-task framework must not leave a task behind.
    let teardown = client.teardown().await;
    let code = result?;
    teardown?;
    Ok(code)
}

/// Subscribes with the one master, or with the leader of several; `id` re-subscribes.
async fn subscribe(
    opts: &RunOptions,
    id: Option<fleet_proto::ids::FrameworkId>,
) -> Result<(SchedulerClient, EventStream), ClientError> {
    let mut framework = opts.framework_info();
    framework.id = id;
    let master = MasterEndpoint {
        addr: opts.master,
        ca_pem: opts.ca_pem.clone(),
    };
    if opts.other_masters.is_empty() {
        return SchedulerClient::connect_as(
            master,
            framework,
            Vec::new(),
            opts.credential.as_ref(),
        )
        .await;
    }
    let mut masters = vec![master];
    masters.extend(opts.other_masters.iter().map(|addr| MasterEndpoint {
        addr: *addr,
        ca_pem: opts.ca_pem.clone(),
    }));
    crate::masters::connect_leader(&masters, framework, Vec::new(), opts.credential.as_ref()).await
}

/// How often a re-subscribed run asks for its task's state until an update comes (a new
/// leader knows the task only once its agent re-registered).
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

async fn drive(
    client: &SchedulerClient,
    events: &mut EventStream,
    state: &mut OneTaskRun,
    reconcile: &mut Option<fleet_proto::messages::scheduler::Call>,
    out: &mut impl Write,
) -> Result<i32, ClientError> {
    let mut interrupts = 0u32;
    let mut reconcile_tick = tokio::time::interval(RECONCILE_EVERY);
    loop {
        let deadline = state.offer_deadline().map(Instant::from_std);
        let steps = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let fleet_proto::messages::scheduler::Event::Update { status } = &event
                        && &status.task_id == state.task_id()
                    {
                        *reconcile = None;
                    }
                    state.handle(event)
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ClientError::Session {
                        addr: client.master_addr(),
                        reason: format!(
                            "the master ended the session before task {} ended",
                            state.task_id()
                        ),
                    });
                }
            },
            _ = reconcile_tick.tick(), if reconcile.is_some() => {
                if let Some(call) = reconcile.as_ref() {
                    client.call(call).await?;
                }
                Vec::new()
            }
            () = sleep_until(deadline) => return Err(state.no_offer_error()),
            signal = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if signal.is_err() || interrupts > 1 {
                    writeln!(out, "interrupted again, tearing down")?;
                    return Ok(INTERRUPTED_EXIT);
                }
                state.interrupt()
            }
        };
        for step in steps {
            match step {
                Step::Send(call) => client.call(&call).await?,
                Step::Print(line) => {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                Step::Finish(code) => return Ok(code),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
