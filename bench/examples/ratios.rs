//! Quick wire and allocator measurements with ratios against baselines of the same run:
//! `cargo run -p fleet-bench --release --example ratios [-- --json]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let json = std::env::args().any(|a| a == "--json");
    match fleet_bench::ratios::run(&fleet_bench::ratios::Options::quick()) {
        Ok(results) if json => match serde_json::to_string_pretty(&results) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(results) => {
            println!("{results}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
