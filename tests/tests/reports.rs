//! The agent's usage reports: they reach the master about once a second and carry the
//! eBPF counters (bytes written by tasks).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleet_tests::{Dev, Process, fleet_bin, wait_until};
use serde_json::Value;

fn agent(state: &Value) -> Result<&Value> {
    state["agents"]
        .get(0)
        .with_context(|| format!("no agent in /state: {state:#}"))
}

fn seq(state: &Value) -> Result<Option<u64>> {
    Ok(agent(state)?["last_report_seq"].as_u64())
}

fn bytes_written(state: &Value) -> Result<u64> {
    agent(state)?["usage"]["bytes_written"]
        .as_u64()
        .with_context(|| format!("no usage.bytes_written in /state: {state:#}"))
}

#[test]
fn reports_arrive_every_second() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let first = wait_until(Duration::from_secs(5), "a first report", || {
        seq(&dev.state()?)
    })
    .with_context(|| dev.log())?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let state = dev.state()?;
    let elapsed = started.elapsed().as_secs_f64();
    let last = seq(&state)?.context("last_report_seq vanished")?;
    let grown = last.saturating_sub(first) as f64;
    // About one report a second; allow for the snapshot trailing and scheduling jitter.
    assert!(
        grown >= elapsed - 2.5 && grown <= elapsed + 2.5,
        "last_report_seq grew by {grown} in {elapsed:.1} s (from {first} to {last})\n{}",
        dev.log()
    );
    let reports = agent(&state)?["reports"].as_u64().unwrap_or_default();
    assert!(
        reports as f64 >= grown,
        "reports counted {reports}, fewer than the seq grew"
    );
    Ok(())
}

#[test]
fn bytes_written_by_a_task_reach_the_master() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    wait_until(Duration::from_secs(5), "a first report", || {
        seq(&dev.state()?)
    })
    .with_context(|| dev.log())?;
    let before = bytes_written(&dev.state()?)?;
    const WRITTEN: u64 = 2_000_000;
    let mut cmd = Command::new(fleet_bin());
    cmd.env("FLEET_HOME", dev.home.path()).args([
        "run",
        "--",
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > f && sleep 3",
    ]);
    let mut run = Process::spawn("fleet run", &mut cmd)?;
    let grown = wait_until(
        Duration::from_secs(8),
        "bytes_written to grow by 2 MB",
        || {
            let now = bytes_written(&dev.state()?)?;
            Ok((now >= before + WRITTEN).then_some(now - before))
        },
    );
    let run_status = run.wait_exit(Duration::from_secs(15));
    let run_out = run.output();
    let grown = grown.with_context(|| format!("{run_out}\n{}", dev.log()))?;
    assert!(
        run_status.is_some_and(|s| s.success()),
        "fleet run failed: {run_status:?}\n{run_out}"
    );
    assert!(grown >= WRITTEN, "grew by {grown}");
    Ok(())
}
