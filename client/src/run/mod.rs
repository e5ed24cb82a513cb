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
/// Ctrl-C, or one before launch, tears the framework down at once.
pub async fn run(opts: RunOptions, out: &mut impl Write) -> Result<i32, ClientError> {
    let mut state = OneTaskRun::new(&opts, Instant::now().into_std())?;
    let master = MasterEndpoint {
        addr: opts.master,
        ca_pem: opts.ca_pem.clone(),
    };
    let (client, mut events) = SchedulerClient::connect_as(
        master,
        opts.framework_info(),
        Vec::new(),
        opts.credential.as_ref(),
    )
    .await?;
    writeln!(
        out,
        "subscribed to master {} as framework {}",
        client.master_addr(),
        client.framework_id()
    )?;
    out.flush()?;
    let result = drive(&client, &mut events, &mut state, out).await;
    // Always tear down: a one-task framework must not leave a task behind.
    let teardown = client.teardown().await;
    let code = result?;
    teardown?;
    Ok(code)
}

async fn drive(
    client: &SchedulerClient,
    events: &mut EventStream,
    state: &mut OneTaskRun,
    out: &mut impl Write,
) -> Result<i32, ClientError> {
    let mut interrupts = 0u32;
    loop {
        let deadline = state.offer_deadline().map(Instant::from_std);
        let steps = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => state.handle(event),
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
