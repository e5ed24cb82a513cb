//! `fleet bench usage`, `allocator`, `reports`, `offers` and `raft` through the real
//! binary, with tiny parameters: they run, print their ratio lines, and `--json` parses
//! with the figures.

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
    let rows = results.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 16, "8 cases with 1 and 2 shards: {results:#}");
    assert!(results[0]["speedup_p50"].as_f64().is_some(), "{results:#}");
    for shards in [1, 2] {
        let with = rows.iter().filter(|r| r["shards"] == shards).count();
        assert_eq!(with, 8, "{shards} shards: {results:#}");
    }
    let out = output_within(
        Command::new(fleet_bin()).args(["bench", "allocator", "--shards", "0"]),
        Duration::from_secs(30),
    )?;
    assert!(!out.status.success());
    assert!(text(&out).contains("--shards 0"), "{}", text(&out));
    Ok(())
}

#[test]
fn bench_reports_streams_into_a_real_master_and_measures_the_baseline() -> Result<()> {
    let small = [
        "bench",
        "reports",
        "--agents",
        "20",
        "--seconds",
        "1",
        "--memory-agents",
        "50",
    ];
    let table = fleet(&small)?;
    assert!(table.contains("reports/s, Fleet / baseline:"), "{table}");
    assert!(table.contains("Fleet master, rkyv over QUIC"), "{table}");
    let mut json_args = small.to_vec();
    json_args.push("--json");
    let r: Value = serde_json::from_str(&fleet(&json_args)?)?;
    for side in ["fleet", "baseline"] {
        let per_second = r[side]["per_second"].as_f64().unwrap_or(0.0);
        // Twenty agents on loopback: thousands a second, whatever the machine.
        assert!(per_second > 1_000.0, "{side}: {r:#}");
        assert!(
            r[side]["server_cpu_cores"].as_f64().unwrap_or(0.0) > 0.0,
            "{r:#}"
        );
    }
    assert!(r["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");
    let memory = &r["memory"][0];
    assert_eq!(memory["agents"], 50, "{r:#}");
    assert!(
        memory["rss_bytes"].as_u64() > memory["rss_idle_bytes"].as_u64(),
        "{r:#}"
    );
    Ok(())
}

#[test]
fn bench_offers_places_tasks_end_to_end_and_paces_at_half_load() -> Result<()> {
    let out = fleet(&[
        "bench",
        "offers",
        "--agents",
        "20",
        "--frameworks",
        "2",
        "--seconds",
        "1",
        "--json",
    ])?;
    let r: Value = serde_json::from_str(&out)?;
    let full = &r["full"];
    let half = &r["half"];
    assert!(full["launches"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(half["launches"].as_u64().unwrap_or(0) > 0, "{r:#}");
    // Every launched task finished and its update reached a framework.
    assert!(
        full["updates_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{r:#}"
    );
    let paced = half["paced_per_second"].as_f64().unwrap_or(0.0);
    let full_rate = full["launches_per_second"].as_f64().unwrap_or(0.0);
    assert!((paced - full_rate / 2.0).abs() <= 1.0, "{r:#}");
    // Held to half the rate, the frameworks launch no more than that (and a second's
    // worth of banked tokens).
    assert!(
        half["launches"].as_f64().unwrap_or(f64::MAX)
            <= paced * (half["seconds"].as_f64().unwrap_or(0.0) + 1.0) + 1.0,
        "{r:#}"
    );
    let latency = &full["latency"];
    assert!(latency["p50_us"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");
    assert!(
        latency["p99_us"].as_f64() >= latency["p50_us"].as_f64(),
        "{r:#}"
    );
    Ok(())
}

#[test]
fn bench_raft_writes_through_one_and_three_nodes_against_the_baseline() -> Result<()> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let work = dir.path().display().to_string();
    let small = [
        "--log",
        "warn",
        "bench",
        "raft",
        "--writes",
        "2000",
        "--baseline-writes",
        "200",
        "--clients",
        "16",
        "--dir",
        &work,
    ];
    let table = fleet(&small)?;
    assert!(table.contains("writes/s, Fleet / baseline:"), "{table}");
    // QUIC unless asked otherwise; the JSON run over fleet-raft's channels.
    assert!(table.contains("transport QUIC on 127.0.0.1"), "{table}");
    let mut json_args = small.to_vec();
    json_args.extend(["--transport", "channel", "--json"]);
    let r: Value = serde_json::from_str(&fleet(&json_args)?)?;
    assert_eq!(r["transport"], "channel", "{r:#}");
    let runs = r["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 4, "1 and 3 nodes, Fleet and baseline: {r:#}");
    for run in &runs {
        assert!(
            run["writes_per_second"].as_f64().unwrap_or(0.0) > 0.0,
            "{r:#}"
        );
        assert!(
            run["latency"]["p99_us"].as_u64() >= run["latency"]["p50_us"].as_u64(),
            "{r:#}"
        );
        let writes_per_fsync = run["writes_per_fsync"].as_f64().unwrap_or(0.0);
        if run["mode"] == "baseline" {
            // One op per entry, one fsync per entry.
            assert!(
                run["fsyncs_per_entry"].as_f64().unwrap_or(0.0) >= 1.0,
                "{r:#}"
            );
            assert!(writes_per_fsync <= 1.0, "{r:#}");
        } else {
            // Sixteen clients share entries.
            assert!(writes_per_fsync > 2.0, "{r:#}");
        }
    }
    let ratios = r["ratios"].as_array().cloned().unwrap_or_default();
    assert_eq!(ratios.len(), 2, "{r:#}");
    assert!(r["disk"]["p50_us"].as_u64().is_some(), "{r:#}");
    // Every node's directory is gone.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
    Ok(())
}
