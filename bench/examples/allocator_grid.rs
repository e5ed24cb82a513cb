//! The allocator grid without the `fleet` binary:
//! `cargo run -p fleet-bench --release --example allocator_grid -- [AGENTS,..] [FRAMEWORKS,..]`.

use fleet_bench::allocator_grid::{GridOptions, run, table};

fn list(arg: Option<String>, default: Vec<usize>) -> Vec<usize> {
    arg.map(|text| {
        text.split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    })
    .unwrap_or(default)
}

fn main() -> Result<(), fleet_bench::BenchError> {
    let mut args = std::env::args().skip(1);
    let defaults = GridOptions::default();
    let options = GridOptions {
        agents: list(args.next(), defaults.agents.clone()),
        frameworks: list(args.next(), defaults.frameworks.clone()),
        ..defaults
    };
    let results = run(&options, |i, n, label| eprintln!("[{}/{n}] {label}", i + 1))?;
    print!("{}", table(&results));
    Ok(())
}
