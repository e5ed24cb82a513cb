//! The operator commands that change the cluster or watch it: `fleet teardown`, `fleet
//! kill`, `fleet drain`, `fleet deactivate`, `fleet reactivate`, `fleet mark-gone`, `fleet
//! reserve`, `fleet unreserve` and `fleet events`. Flags in, calls to fleet-client out.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use fleet_client::calls::{self, AgentCall};
use fleet_client::{ClientError, Credential};
use serde_json::{Value, json};

use crate::credentials::CredentialArgs;
use crate::{daemons, profile};

/// Where the master is, how to print, and who asks.
#[derive(Args)]
pub struct Target {
    /// Master address. Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long)]
    master: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    login: CredentialArgs,
}

impl Target {
    fn resolve(&self) -> Result<(SocketAddr, Option<Credential>)> {
        let (master, _) = profile::client_target(self.master.clone(), None)?;
        Ok((daemons::resolve(&master)?, self.login.credential()?))
    }
}

#[derive(Args)]
pub struct TeardownArgs {
    /// The framework's id (see `fleet status`).
    framework: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct KillArgs {
    /// The task's id (see `fleet tasks`).
    task: String,
    /// The task's framework, when several frameworks use the id.
    #[arg(long)]
    framework: Option<String>,
    /// Seconds between SIGTERM and SIGKILL (default: the task's own, else the agent's).
    #[arg(long)]
    grace: Option<f64>,
    /// Wait until the task has ended, and print how.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct DrainArgs {
    /// The agent's id (see `fleet agents`).
    agent: String,
    /// The longest grace period (seconds) its tasks get between SIGTERM and SIGKILL.
    #[arg(long)]
    grace: Option<f64>,
    /// Remove the agent for good once drained (as MARK_AGENT_GONE).
    #[arg(long)]
    mark_gone: bool,
    /// Wait until the agent is DRAINED.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct AgentArgs {
    /// The agent's id (see `fleet agents`).
    agent: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ReserveArgs {
    /// The agent's id (see `fleet agents`).
    agent: String,
    /// What to reserve, each entry for its role: 'cpus(web):2;mem(web):1024'. Recorded
    /// under the caller's principal (--principal of the credentials).
    resources: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct UnreserveArgs {
    /// The agent's id (see `fleet agents`).
    agent: String,
    /// What to make unreserved again, as reserved: 'cpus(web):2'.
    resources: String,
    /// Take only reservations made by this principal (default: any).
    #[arg(long = "reserved-by")]
    reserved_by: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Seconds between the master's HEARTBEAT events (default 15).
    #[arg(long)]
    heartbeat: Option<f64>,
    /// Stop after this many events (SUBSCRIBED included).
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    target: Target,
}

/// `--grace 2.5` as a duration; `flag` names it in errors.
fn seconds(value: Option<f64>, flag: &str) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Duration::try_from_secs_f64(s).ok()),
        Some(s) => bail!("invalid {flag} {s}: a number of seconds >= 0"),
    }
}

pub fn teardown(args: TeardownArgs) -> Result<ExitCode> {
    let (http, credential) = args.target.resolve()?;
    let answer = fleet_client::operator::call_as(
        http,
        &calls::teardown(&args.framework),
        credential.as_ref(),
    )?;
    calls::print_done(
        &format!(
            "framework {} torn down: its tasks are killed",
            args.framework
        ),
        &answer,
        json!({ "framework_id": args.framework }),
        args.target.json,
        &mut std::io::stdout(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn kill(args: KillArgs) -> Result<ExitCode> {
    let (http, credential) = args.target.resolve()?;
    let grace = seconds(args.grace, "--grace")?;
    // Name the framework from /state when it is there (the master finds it otherwise: a
    // task launched a moment ago may not be in the published state yet).
    let place = fleet_client::operator::status_as(http, credential.as_ref())
        .ok()
        .and_then(|state| calls::find_task(&state, &args.task, http).ok());
    if let Some(place) = place.as_ref().filter(|p| !p.live) {
        bail!(
            "task {} already ended ({}); nothing to kill",
            args.task,
            place.state
        );
    }
    let framework = args
        .framework
        .clone()
        .or_else(|| place.as_ref().map(|p| p.framework_id.clone()));
    let answer = fleet_client::operator::call_as(
        http,
        &calls::kill_task(&args.task, framework.as_deref(), grace),
        credential.as_ref(),
    )?;
    let mut details = json!({ "task_id": args.task, "framework_id": framework });
    let mut line = format!("task {}: kill sent", args.task);
    if args.wait {
        let what = format!("task {} to end", args.task);
        let ended = calls::wait_for(
            http,
            credential.as_ref(),
            &what,
            Duration::from_secs(args.timeout),
            |state| {
                Ok(calls::find_task(state, &args.task, http)
                    .ok()
                    .filter(|p| calls::is_terminal(&p.state)))
            },
        )?;
        line = format!("task {}: {}", args.task, ended.state);
        details["state"] = json!(ended.state);
    }
    calls::print_done(
        &line,
        &answer,
        details,
        args.target.json,
        &mut std::io::stdout(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn drain(args: DrainArgs) -> Result<ExitCode> {
    let (http, credential) = args.target.resolve()?;
    let grace = seconds(args.grace, "--grace")?;
    let answer = fleet_client::operator::call_as(
        http,
        &calls::drain_agent(&args.agent, grace, args.mark_gone),
        credential.as_ref(),
    )?;
    let mut state = "DRAINING".to_owned();
    if args.wait {
        let what = format!("agent {} to be drained", args.agent);
        let mark_gone = args.mark_gone;
        state = calls::wait_for(
            http,
            credential.as_ref(),
            &what,
            Duration::from_secs(args.timeout),
            |master_state| match calls::drain_state(master_state, &args.agent) {
                Ok(Some(s)) if s == "DRAINED" => Ok(Some(s)),
                Ok(_) => Ok(None),
                // With --mark-gone, a drained agent leaves the books.
                Err(_) if mark_gone => Ok(Some("DRAINED, marked gone".to_owned())),
                Err(gone) => Err(ClientError::InvalidOption {
                    option: "AGENT",
                    reason: gone,
                }),
            },
        )?;
    }
    calls::print_done(
        &format!("agent {}: {state}", args.agent),
        &answer,
        json!({ "agent_id": args.agent, "drain_state": state }),
        args.target.json,
        &mut std::io::stdout(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `fleet deactivate`, `fleet reactivate`, `fleet mark-gone`.
pub fn agent(call: AgentCall, args: AgentArgs) -> Result<ExitCode> {
    let (http, credential) = args.target.resolve()?;
    let answer =
        fleet_client::operator::call_as(http, &call.body(&args.agent), credential.as_ref())?;
    calls::print_done(
        &format!("agent {} {}", args.agent, call.done()),
        &answer,
        json!({ "agent_id": args.agent }),
        args.target.json,
        &mut std::io::stdout(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `fleet reserve` and `fleet unreserve`: the call, then the agent's reservations as the
/// master has them.
fn reservation(
    reserve: bool,
    agent: &str,
    text: &str,
    principal: Option<&str>,
    target: &Target,
) -> Result<ExitCode> {
    let resources =
        fleet_proto::resources::Resources::parse(text).map_err(|e| ClientError::InvalidOption {
            option: "RESOURCES",
            reason: format!("{text:?}: {e}"),
        })?;
    let (http, credential) = target.resolve()?;
    let body = calls::reservation(reserve, agent, &resources, principal);
    let answer = fleet_client::operator::call_as(http, &body, credential.as_ref())?;
    let state = fleet_client::operator::status_as(http, credential.as_ref())?;
    let total = state["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == agent)
        .map(|a| a["total"].clone())
        .unwrap_or(Value::Null);
    let total_text = serde_json::from_value::<fleet_proto::resources::Resources>(total.clone())
        .map(|r| r.to_string())
        .unwrap_or_default();
    let verb = if reserve { "reserved" } else { "unreserved" };
    calls::print_done(
        &format!("agent {agent}: {verb} {resources}; its resources now: {total_text}"),
        &answer,
        json!({ "agent_id": agent, "resources": resources, "total": total }),
        target.json,
        &mut std::io::stdout(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn reserve(args: ReserveArgs) -> Result<ExitCode> {
    reservation(true, &args.agent, &args.resources, None, &args.target)
}

pub fn unreserve(args: UnreserveArgs) -> Result<ExitCode> {
    reservation(
        false,
        &args.agent,
        &args.resources,
        args.reserved_by.as_deref(),
        &args.target,
    )
}

pub fn events(args: EventsArgs) -> Result<ExitCode> {
    let (http, credential) = args.target.resolve()?;
    let heartbeat = seconds(args.heartbeat, "--heartbeat")?;
    let mut seen = 0u64;
    let mut out = std::io::stdout();
    fleet_client::events::watch(http, credential.as_ref(), heartbeat, |event: &Value| {
        fleet_client::events::print_event(event, args.target.json, &mut out)?;
        seen += 1;
        Ok(args.count.is_none_or(|n| seen < n))
    })?;
    Ok(ExitCode::SUCCESS)
}
