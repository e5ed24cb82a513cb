//! `fleet bench usage` and `fleet bench allocator` through the real binary, with tiny
//! parameters: they run, print their ratio lines, and `--json` parses with the figures.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use fleet_tests::{fleet_bin, output_within, text};
use serde_json::Value;

fn fleet(args: &[&str]) -> Result<String> {
    let out = output_within(
        Command::new(fleet_bin()).args(args),
        Duration::from_secs(120),
    )?;
    let printed = text(&out);
    assert!(out.status.success(), "fleet {args:?} failed:\n{printed}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bench_usage_compares_ebpf_with_du() -> Result<()> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let work = dir.path().display().to_string();
    let small = [
        "bench",
        "usage",
        "--sandboxes",
        "2",
        "--files",
        "10",
        "--work-dir",
        &work,
    ];
    let table = fleet(&small)?;
    assert!(table.contains("eBPF/du CPU ratio"), "{table}");
    assert!(
        table.contains("largest difference in one sandbox 0 B"),
        "{table}"
    );
    let mut json_args = small.to_vec();
    json_args.push("--json");
    let report: Value = serde_json::from_str(&fleet(&json_args)?)?;
    assert_eq!(report["sandboxes"], 2);
    assert_eq!(
        report["total_bytes_ebpf"], report["total_bytes_du"],
        "{report:#}"
    );
    assert!(
        report["ebpf_program_runs"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert!(report["cpu_ratio"].as_f64().is_some(), "{report:#}");
    // Nothing left behind in the work dir.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
    Ok(())
}

#[test]
fn bench_allocator_runs_both_allocators_and_charts_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let svg = dir.path().join("cycles.svg");
    let svg_arg = svg.display().to_string();
    let args = [
        "bench",
        "allocator",
        "--agents",
        "50,100",
        "--frameworks",
        "1,4",
        "--cycles",
        "3",
        "--baseline-cycles",
        "2",
        "--svg",
        &svg_arg,
    ];
    let table = fleet(&args)?;
    assert!(
        table.contains("decline_all") && table.contains("accept_part"),
        "{table}"
    );
    assert!(std::fs::read_to_string(&svg)?.starts_with("<svg"));
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let results: Value = serde_json::from_str(&fleet(&json_args)?)?;
    let cases = results.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(cases, 8, "{results:#}");
    assert!(results[0]["speedup_p50"].as_f64().is_some(), "{results:#}");
    Ok(())
}
