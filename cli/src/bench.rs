//! `fleet bench`: the benches a performance engineer runs against a baseline measured in
//! the same run. `usage` (eBPF disk accounting against du), `allocator` (Fleet's
//! allocator against the Mesos-algorithm baseline), `reports`, `offers` and `raft`
//! (registry writes through fleet-raft against one fsync per entry); each prints a table,
//! `--json` prints the figures as JSON instead.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fleet_bench::allocator_grid::{self, GridOptions};
use fleet_bench::offer_rate::{self, OfferOptions};
use fleet_bench::raft_bench::{self, ProposerConfig, RaftOptions, RaftTransport};
use fleet_bench::report_rate::{self, ReportOptions};
use fleet_bench::sim::Workload;
use fleet_bench::usage::{self, UsageOptions};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// eBPF disk accounting against `du -sk` on the same sandboxes (needs root, ext4).
    Usage(UsageArgs),
    /// The allocator on Mesos' benchmark grid, against the Mesos-algorithm baseline.
    Allocator(AllocatorArgs),
    /// Agent reports a real master absorbs (rkyv over QUIC), against JSON over HTTP/1.1.
    Reports(ReportsArgs),
    /// Placements end to end: a real master, simulated agents and frameworks over QUIC.
    Offers(OffersArgs),
    /// Registry writes through fleet-raft nodes (1 and 3, WAL fsync on), against one
    /// fsync per entry without batching or group commit.
    Raft(RaftArgs),
}

#[derive(Args)]
struct RaftArgs {
    /// Writes in each Fleet run.
    #[arg(long, default_value_t = 100_000)]
    writes: u64,
    /// Writes in each baseline run (it is much slower).
    #[arg(long, default_value_t = 10_000)]
    baseline_writes: u64,
    /// Concurrent clients, each waiting for its write before the next.
    #[arg(long, default_value_t = 128)]
    clients: usize,
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 3])]
    nodes: Vec<usize>,
    /// Where the nodes' WAL directories go (a real disk: fsync is measured); default: the
    /// system's temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Ops in one log entry, at most.
    #[arg(long, default_value_t = ProposerConfig::default().max_batch)]
    max_batch: usize,
    /// Entries in flight, at most.
    #[arg(long, default_value_t = ProposerConfig::default().max_in_flight)]
    in_flight: usize,
    /// Also run WAL group commit without the proposer (one op per entry).
    #[arg(long)]
    unbatched: bool,
    /// How the nodes talk: `quic` (the masters' Raft transport on 127.0.0.1, mutual TLS)
    /// or `channel` (fleet-raft's in-process channels).
    #[arg(long, default_value = "quic")]
    transport: RaftTransport,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct OffersArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Simulated frameworks (Fleet's scheduler SDK), each filling every offer it gets.
    #[arg(long, default_value_t = 10)]
    frameworks: usize,
    /// Seconds each phase is measured for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// What each simulated agent offers.
    #[arg(long, default_value = "cpus:8;mem:16384")]
    agent_resources: String,
    /// What each no-op task takes.
    #[arg(long, default_value = "cpus:0.1;mem:32")]
    task_resources: String,
    /// Skip the phase paced at half the measured rate.
    #[arg(long)]
    no_half_load: bool,
    /// The `fleet` binary that runs the master; default: this one.
    #[arg(long)]
    master_bin: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReportsArgs {
    /// Simulated agents streaming reports as fast as they can.
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Seconds each side is measured for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Tasks in each report.
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    /// Agent counts at which the master's memory per agent is measured, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000])]
    memory_agents: Vec<usize>,
    /// Seconds between two reports of one agent while memory is measured.
    #[arg(long, default_value_t = 10.0)]
    memory_report_interval: f64,
    /// Skip the JSON-over-HTTP baseline.
    #[arg(long)]
    no_baseline: bool,
    /// The `fleet` binary that runs the master (another build, or a wrapper that profiles
    /// it); default: this one.
    #[arg(long)]
    master_bin: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct UsageArgs {
    /// Sandboxes (each its own container cgroup).
    #[arg(long, default_value_t = 20)]
    sandboxes: usize,
    /// Files written in each sandbox.
    #[arg(long, default_value_t = 500)]
    files: usize,
    /// Size of each file, in KiB.
    #[arg(long, default_value_t = 16)]
    file_kib: usize,
    /// Where the sandboxes go (must be on ext4); default: the current directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AllocatorArgs {
    /// Agent counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000, 10_000])]
    agents: Vec<usize>,
    /// Framework counts, comma-separated. Mesos' grid is agents 1000,10000,50000 x
    /// frameworks 1,100,1000,3000; the default keeps the run near two minutes and holds
    /// the 10,000 x 1,000 case.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 100, 1_000])]
    frameworks: Vec<usize>,
    /// Shard counts to run Fleet's allocator with, comma-separated (1: single-threaded).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2])]
    shards: Vec<usize>,
    /// Timed cycles of Fleet's allocator per case, at most.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// Timed cycles of the baseline per case, at most.
    #[arg(long, default_value_t = 3)]
    baseline_cycles: usize,
    /// Seconds of timed cycles after which a case stops (after 3 cycles, 1 of the
    /// baseline).
    #[arg(long, default_value_t = 4.0)]
    budget: f64,
    /// Skip the Mesos-algorithm baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Write an SVG chart of cycle time against agents here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.bench {
        Bench::Usage(args) => run_usage(args),
        Bench::Allocator(args) => run_allocator(args),
        Bench::Reports(args) => run_reports(args),
        Bench::Offers(args) => run_offers(args),
        Bench::Raft(args) => run_raft(args),
    }
}

/// Runs a bench under a progress bar, then prints its table or, with `json`, its figures.
fn run_with_bar<T: serde::Serialize, E: std::error::Error + Send + Sync + 'static>(
    json: bool,
    run: impl FnOnce(&mut dyn FnMut(u64, u64, &str)) -> Result<T, E>,
    table: impl FnOnce(&T) -> String,
) -> Result<()> {
    let progress = bar(0);
    let results = run(&mut |done, total, what| {
        progress.set_length(total);
        progress.set_position(done);
        progress.set_message(what.to_owned());
    })?;
    progress.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", table(&results));
    }
    Ok(())
}

fn master_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => std::env::current_exe().context("the path of this fleet binary"),
    }
}

fn run_raft(args: RaftArgs) -> Result<()> {
    if args.max_batch == 0 || args.in_flight == 0 {
        bail!("--max-batch and --in-flight must be at least 1");
    }
    let options = RaftOptions {
        writes: args.writes,
        baseline_writes: args.baseline_writes,
        clients: args.clients,
        nodes: args.nodes,
        dir: args.dir.unwrap_or_else(std::env::temp_dir),
        proposer: ProposerConfig {
            max_batch: args.max_batch,
            max_in_flight: args.in_flight,
            ..ProposerConfig::default()
        },
        unbatched: args.unbatched,
        transport: args.transport,
    };
    run_with_bar(
        args.json,
        |progress| raft_bench::run(&options, progress),
        raft_bench::table,
    )
}

fn run_offers(args: OffersArgs) -> Result<()> {
    let options = OfferOptions {
        fleet: master_bin(args.master_bin)?,
        agents: args.agents,
        frameworks: args.frameworks,
        seconds: args.seconds,
        agent_resources: args.agent_resources,
        task_resources: args.task_resources,
        half_load: !args.no_half_load,
    };
    run_with_bar(
        args.json,
        |progress| offer_rate::run(&options, progress),
        offer_rate::table,
    )
}

fn run_reports(args: ReportsArgs) -> Result<()> {
    if args.memory_agents.contains(&0) {
        bail!("--memory-agents counts must be at least 1");
    }
    let options = ReportOptions {
        fleet: master_bin(args.master_bin)?,
        agents: args.agents,
        seconds: args.seconds,
        tasks: args.tasks,
        memory_agents: args.memory_agents,
        memory_report_interval: std::time::Duration::try_from_secs_f64(args.memory_report_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--memory-report-interval must be a positive number of seconds")?,
        baseline: !args.no_baseline,
    };
    run_with_bar(
        args.json,
        |progress| report_rate::run(&options, progress),
        report_rate::table,
    )
}

fn run_usage(args: UsageArgs) -> Result<()> {
    if args.sandboxes == 0 || args.files == 0 || args.file_kib == 0 {
        bail!("--sandboxes, --files and --file-kib must be at least 1");
    }
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("the current directory")?,
    };
    let options = UsageOptions {
        sandboxes: args.sandboxes,
        files: args.files,
        file_kib: args.file_kib,
        work_dir,
    };
    run_with_bar(
        args.json,
        |progress| usage::run(&options, progress),
        usage::table,
    )
}

fn run_allocator(args: AllocatorArgs) -> Result<()> {
    if args.agents.is_empty() || args.frameworks.is_empty() || args.shards.is_empty() {
        bail!("--agents, --frameworks and --shards need at least one count each");
    }
    if let Some(zero) = args.shards.iter().find(|s| **s == 0) {
        bail!("--shards {zero}: a shard count must be at least 1");
    }
    let options = GridOptions {
        agents: args.agents,
        frameworks: args.frameworks,
        workloads: vec![Workload::DeclineAll, Workload::AcceptPart],
        shards: args.shards,
        cycles: args.cycles.max(1),
        baseline_cycles: args.baseline_cycles.max(1),
        budget: std::time::Duration::try_from_secs_f64(args.budget)
            .with_context(|| format!("--budget {}: not a number of seconds", args.budget))?,
        baseline: !args.no_baseline,
        ..GridOptions::default()
    };
    let progress = bar(0);
    let results = allocator_grid::run(&options, |done, total, what| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
        progress.set_message(what.to_owned());
    })?;
    progress.finish_and_clear();
    if let Some(path) = &args.svg {
        std::fs::write(path, allocator_grid::svg(&results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", allocator_grid::table(&results));
        if let Some(path) = &args.svg {
            println!("chart: {}", path.display());
        }
    }
    Ok(())
}
