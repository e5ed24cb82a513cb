//! `fleet bench`: the benches a performance engineer runs against a baseline measured in
//! the same run. `usage` (eBPF disk accounting against du) and `allocator` (Fleet's
//! allocator against the Mesos-algorithm baseline); both print a table, `--json` prints
//! the figures as JSON instead.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fleet_bench::allocator_grid::{self, GridOptions};
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
    /// Framework counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 100])]
    frameworks: Vec<usize>,
    /// Timed cycles of Fleet's allocator per case.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// Timed cycles of the baseline per case.
    #[arg(long, default_value_t = 3)]
    baseline_cycles: usize,
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
    }
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
    let progress = bar(0);
    let report = usage::run(&options, |done, total, what| {
        progress.set_length(total);
        progress.set_position(done);
        progress.set_message(what.to_owned());
    })?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", usage::table(&report));
    }
    Ok(())
}

fn run_allocator(args: AllocatorArgs) -> Result<()> {
    if args.agents.is_empty() || args.frameworks.is_empty() {
        bail!("--agents and --frameworks need at least one count each");
    }
    let options = GridOptions {
        agents: args.agents,
        frameworks: args.frameworks,
        workloads: vec![Workload::DeclineAll, Workload::AcceptPart],
        cycles: args.cycles.max(1),
        baseline_cycles: args.baseline_cycles.max(1),
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
