//! `fleet`: the one binary. It parses flags, config files and environment, then calls into
//! fleet-master, fleet-agent, fleet-client and fleet-bench; no logic of its own lives here.

mod bench;
mod certs;
mod config;
mod credentials;
mod daemons;
mod dev;
mod operator;
mod profile;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use credentials::CredentialArgs;

/// mimalloc: thread-local free lists. With glibc's malloc, the allocator's shard threads
/// and the master's threads waited on arena locks and spent a third of an allocation
/// cycle in malloc and free (`perf record` of `fleet bench allocator --shards 2`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "Fleet: a cluster manager in the line of Apache Mesos"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "fleet_master=debug".
    #[arg(long, global = true, env = "FLEET_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Master and one agent in one process on loopback, with throwaway credentials.
    Dev(dev::DevArgs),
    /// Run a master.
    Master(daemons::MasterArgs),
    /// Run an agent.
    Agent(daemons::AgentArgs),
    /// Run one command as a task and print its state changes (like mesos-execute).
    Run(RunArgs),
    /// Show agents, frameworks and tasks.
    Status(StatusArgs),
    /// Show the agents.
    Agents(StatusArgs),
    /// Show the tasks, live then completed.
    Tasks(StatusArgs),
    /// Print a task's stdout (or stderr) from its sandbox; --follow until it ends.
    Logs(LogsArgs),
    /// Show role quotas, or set or remove one (guarantees and limits).
    Quota(QuotaArgs),
    /// Show roles with their weights and shares, or set weights.
    Weights(WeightsArgs),
    /// Kill a task for its framework (Fleet's KILL_TASK operator call).
    Kill(operator::KillArgs),
    /// Remove a framework and kill its tasks (TEARDOWN).
    Teardown(operator::TeardownArgs),
    /// Drain an agent: no more offers, its tasks killed, then DRAINED (DRAIN_AGENT).
    Drain(operator::DrainArgs),
    /// Stop offering an agent's resources (DEACTIVATE_AGENT).
    Deactivate(operator::AgentArgs),
    /// Offer a deactivated or drained agent again (REACTIVATE_AGENT).
    Reactivate(operator::AgentArgs),
    /// Remove an agent for good: its tasks TASK_GONE_BY_OPERATOR (MARK_AGENT_GONE).
    MarkGone(operator::AgentArgs),
    /// Reserve an agent's unreserved resources for a role (RESERVE_RESOURCES).
    Reserve(operator::ReserveArgs),
    /// Make dynamically reserved resources unreserved again (UNRESERVE_RESOURCES).
    Unreserve(operator::UnreserveArgs),
    /// Print the master's events as they happen (the operator SUBSCRIBE stream).
    #[command(alias = "watch")]
    Events(operator::EventsArgs),
    /// Create the cluster CA and issue certificates.
    Certs(CertsArgs),
    /// Benchmarks against a baseline measured in the same run.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Master address (QUIC, UDP). Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long)]
    master: Option<String>,
    /// Cluster CA certificate. Default: the running `fleet dev`'s.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    role: Option<String>,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory in MiB.
    #[arg(long, default_value_t = 128.0)]
    mem: f64,
    /// Disk in MiB.
    #[arg(long)]
    disk: Option<f64>,
    /// Number of ports.
    #[arg(long, default_value_t = 0)]
    ports: u32,
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Ask for TASK_UNREACHABLE rather than TASK_LOST when the agent goes away.
    #[arg(long)]
    partition_aware: bool,
    /// Seconds to wait for an offer that fits.
    #[arg(long, default_value_t = 30)]
    offer_timeout: u64,
    /// Run only on agents that meet this, e.g. `zone=west`, `rack!=r1`, `hostname~node-.*`,
    /// `gpu` (has the attribute), `!spot` (lacks it); repeat for several (all must hold).
    #[arg(long)]
    constraint: Vec<String>,
    #[command(flatten)]
    login: CredentialArgs,
    /// The command; one word is run by `sh -c`, several are exec'd as they are.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct StatusArgs {
    /// Master address. Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long)]
    master: Option<String>,
    /// Print the master's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    login: CredentialArgs,
}

#[derive(Args)]
struct LogsArgs {
    /// The task's id (see `fleet status`).
    task: String,
    /// Master address. Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long)]
    master: Option<String>,
    /// The task's stderr instead of its stdout.
    #[arg(long)]
    stderr: bool,
    /// Keep printing what the task writes until it ends.
    #[arg(long, short)]
    follow: bool,
    /// Print each piece as a JSON line: {"task", "file", "offset", "data"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    login: CredentialArgs,
}

#[derive(Args)]
struct QuotaArgs {
    /// Master address. Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long, global = true)]
    master: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    login: CredentialArgs,
    #[command(subcommand)]
    command: Option<QuotaCommand>,
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Set ROLE's quota, e.g. `fleet quota set dev --guarantee cpus:2;mem:4096 --limit cpus:8`.
    Set {
        role: String,
        /// Scalar resources the role gets whenever the cluster can give them.
        #[arg(long)]
        guarantee: Option<String>,
        /// Scalar resources the role never holds more of.
        #[arg(long)]
        limit: Option<String>,
    },
    /// Remove ROLE's quota.
    Remove { role: String },
}

#[derive(Args)]
struct WeightsArgs {
    /// Master address. Default: the running `fleet dev`, else 127.0.0.1:5050.
    #[arg(long, global = true)]
    master: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    login: CredentialArgs,
    #[command(subcommand)]
    command: Option<WeightsCommand>,
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Set weights, e.g. `fleet weights set batch=1 web=3`.
    Set {
        #[arg(required = true, value_name = "ROLE=WEIGHT")]
        weights: Vec<String>,
    },
}

#[derive(Args)]
struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA in DIR (ca.pem, ca-key.pem).
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "fleet")]
        cluster: String,
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by the CA in DIR.
    Issue {
        /// master, agent or client
        kind: String,
        name: String,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Extra host names or IP addresses the certificate is valid for.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fleet: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Dev(args) => dev::run(args).map(|()| ExitCode::SUCCESS),
        Command::Master(args) => daemons::master(args).map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => daemons::agent(args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run(args),
        Command::Status(args) => status(args),
        Command::Agents(args) => listing(args, fleet_client::operator::print_agents),
        Command::Tasks(args) => listing(args, fleet_client::operator::print_tasks),
        Command::Logs(args) => logs(args),
        Command::Quota(args) => quota(args),
        Command::Weights(args) => weights(args),
        Command::Kill(args) => operator::kill(args),
        Command::Teardown(args) => operator::teardown(args),
        Command::Drain(args) => operator::drain(args),
        Command::Deactivate(args) => {
            operator::agent(fleet_client::calls::AgentCall::Deactivate, args)
        }
        Command::Reactivate(args) => {
            operator::agent(fleet_client::calls::AgentCall::Reactivate, args)
        }
        Command::MarkGone(args) => operator::agent(fleet_client::calls::AgentCall::MarkGone, args),
        Command::Reserve(args) => operator::reserve(args),
        Command::Unreserve(args) => operator::unreserve(args),
        Command::Events(args) => operator::events(args),
        Command::Certs(args) => certs_command(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let (master, ca_pem) = profile::client_target(args.master, args.ca)?;
    let Some(ca_pem) = ca_pem else {
        anyhow::bail!(
            "no cluster CA: pass --ca FILE (the cluster's ca.pem), or start `fleet dev` first"
        );
    };
    let mut masters = daemons::resolve_list(&master)?.into_iter();
    let master = masters.next().context("--master names no address")?;
    let opts = fleet_client::run::RunOptions {
        master,
        other_masters: masters.collect(),
        ca_pem,
        name: args.name.unwrap_or_else(|| "fleet-run".into()),
        role: args.role,
        cpus: args.cpus,
        mem_mb: args.mem,
        disk_mb: args.disk,
        ports: args.ports,
        gpus: args.gpus,
        command: args.command,
        partition_aware: args.partition_aware,
        offer_timeout: std::time::Duration::from_secs(args.offer_timeout),
        constraints: args
            .constraint
            .iter()
            .map(|c| fleet_client::run::parse_constraint(c))
            .collect::<Result<_, _>>()?,
        credential: args.login.credential()?,
    };
    let code = runtime()?.block_on(fleet_client::run::run(opts, &mut std::io::stdout()))?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// `fleet agents`, `fleet tasks`: one part of /state, as a table or JSON.
fn listing(
    args: StatusArgs,
    print: fn(
        &serde_json::Value,
        bool,
        &mut std::io::Stdout,
    ) -> Result<(), fleet_client::ClientError>,
) -> Result<ExitCode> {
    let (master, _) = profile::client_target(args.master, None)?;
    let credential = args.login.credential()?;
    let masters = daemons::resolve_list(&master)?;
    let views = fleet_client::masters::views(&masters, credential.as_ref());
    let leader = leader_or_first(&views, &masters)?;
    let state = fleet_client::operator::status_as(leader, credential.as_ref())?;
    print(&state, args.json, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> Result<ExitCode> {
    let (master, _) = profile::client_target(args.master, None)?;
    let credential = args.login.credential()?;
    let masters = daemons::resolve_list(&master)?;
    let views = fleet_client::masters::views(&masters, credential.as_ref());
    let leader = leader_or_first(&views, &masters)?;
    let state = fleet_client::operator::status_as(leader, credential.as_ref())?;
    fleet_client::operator::print_status(&state, args.json, &mut std::io::stdout())?;
    if !args.json {
        fleet_client::masters::print_masters(&views, &mut std::io::stdout())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTTP address to send calls to: the one master given, or the one that serves
/// among several (`--master A,B,C`).
fn leader_address(
    master: &str,
    credential: Option<&fleet_client::Credential>,
) -> Result<std::net::SocketAddr> {
    let masters = daemons::resolve_list(master)?;
    if masters.len() == 1 {
        return Ok(masters[0]);
    }
    let views = fleet_client::masters::views(&masters, credential);
    leader_or_first(&views, &masters)
}

/// The master that serves among those asked (`--master A,B,C`), else the first given.
fn leader_or_first(
    views: &[fleet_client::masters::MasterView],
    masters: &[std::net::SocketAddr],
) -> Result<std::net::SocketAddr> {
    fleet_client::masters::serving(views)
        .or_else(|| masters.first().copied())
        .context("--master names no address")
}

fn logs(args: LogsArgs) -> Result<ExitCode> {
    use fleet_client::operator::{read_file, status_as, task_files};
    use std::io::Write as _;
    let (master, _) = profile::client_target(args.master, None)?;
    let credential = args.login.credential()?;
    let http = leader_address(&master, credential.as_ref())?;
    let master_state = |http| status_as(http, credential.as_ref());
    let name = if args.stderr { "stderr" } else { "stdout" };
    // /state is a copy at most 200 ms old: a task launched just now may not be in it yet.
    let mut attempt = 0;
    let mut files = loop {
        match task_files(&master_state(http)?, &args.task, http) {
            Ok(files) => break files,
            Err(e) if attempt < 4 => {
                attempt += 1;
                tracing::debug!("{e}; asking again");
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let path = format!("{}/{name}", files.sandbox.trim_end_matches('/'));
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    let mut last_state_check = std::time::Instant::now();
    loop {
        let (data, at) = read_file(&files.agent_http, &path, offset)?;
        if !data.is_empty() {
            if args.json {
                let line = serde_json::json!({
                    "task": args.task, "file": name, "offset": at, "data": data,
                });
                writeln!(out, "{line}")?;
            } else {
                write!(out, "{data}")?;
            }
            out.flush()?;
            offset = at + data.len() as u64;
            continue;
        }
        let ended = files.state.starts_with("TASK_")
            && !matches!(
                files.state.as_str(),
                "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING"
            );
        if !args.follow || ended {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        if last_state_check.elapsed() >= std::time::Duration::from_secs(1) {
            // The task may have ended; read once more after it did, then stop.
            files = task_files(&master_state(http)?, &args.task, http)?;
            last_state_check = std::time::Instant::now();
        }
    }
}

fn quota(args: QuotaArgs) -> Result<ExitCode> {
    use fleet_client::operator::{call_as, print_quota, quota_quantities};
    let (master, _) = profile::client_target(args.master, None)?;
    let credential = args.login.credential()?;
    let http = leader_address(&master, credential.as_ref())?;
    let call = |http, body: &serde_json::Value| call_as(http, body, credential.as_ref());
    let config = match &args.command {
        None => {
            let answer = call(http, &serde_json::json!({ "type": "GET_QUOTA" }))?;
            print_quota(&answer, args.json, &mut std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(QuotaCommand::Set {
            role,
            guarantee,
            limit,
        }) => {
            if guarantee.is_none() && limit.is_none() {
                anyhow::bail!("fleet quota set {role}: give --guarantee, --limit or both");
            }
            let mut config = serde_json::json!({ "role": role });
            if let Some(text) = guarantee {
                config["guarantees"] = quota_quantities(text, "--guarantee")?;
            }
            if let Some(text) = limit {
                config["limits"] = quota_quantities(text, "--limit")?;
            }
            config
        }
        Some(QuotaCommand::Remove { role }) => serde_json::json!({ "role": role }),
    };
    let body = serde_json::json!({
        "type": "UPDATE_QUOTA",
        "update_quota": { "quota_configs": [config] },
    });
    call(http, &body)?;
    let answer = call(http, &serde_json::json!({ "type": "GET_QUOTA" }))?;
    print_quota(&answer, args.json, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn weights(args: WeightsArgs) -> Result<ExitCode> {
    use fleet_client::operator::{call_as, print_roles};
    let (master, _) = profile::client_target(args.master, None)?;
    let credential = args.login.credential()?;
    let http = leader_address(&master, credential.as_ref())?;
    let call = |http, body: &serde_json::Value| call_as(http, body, credential.as_ref());
    if let Some(WeightsCommand::Set { weights }) = &args.command {
        let mut infos = Vec::new();
        for pair in weights {
            let (role, weight) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{pair:?}: expected ROLE=WEIGHT, e.g. web=3"))?;
            let weight: f64 = weight.parse().map_err(|e| {
                anyhow::anyhow!("{pair:?}: the weight {weight:?} is not a number: {e}")
            })?;
            infos.push(serde_json::json!({ "role": role, "weight": weight }));
        }
        let body = serde_json::json!({
            "type": "UPDATE_WEIGHTS",
            "update_weights": { "weight_infos": infos },
        });
        call(http, &body)?;
    }
    let answer = call(http, &serde_json::json!({ "type": "GET_ROLES" }))?;
    print_roles(&answer, args.json, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn certs_command(args: CertsArgs) -> Result<()> {
    match args.command {
        CertsCommand::Init {
            dir,
            cluster,
            force,
        } => {
            certs::init(&dir, &cluster, force)?;
            println!(
                "cluster CA written to {}",
                dir.join(certs::CA_CERT).display()
            );
        }
        CertsCommand::Issue {
            kind,
            name,
            dir,
            sans,
        } => {
            let role = certs::parse_role(&kind)?;
            let (cert, key) = certs::issue(&dir, role, &name, &sans)?;
            println!(
                "{} certificate: {}\nkey: {}",
                role.name(),
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}
