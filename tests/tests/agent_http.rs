//! The agent's HTTP endpoint under `fleet dev`: /monitor/statistics shows a running task's
//! usage and limits, /metrics has its series, /health answers, unknown paths are 404, and
//! the address is the one the master's /state gives for the agent.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use fleet_tests::cluster::Cluster;
use fleet_tests::{Dev, Process, fleet_bin, output_within, text, unique, wait_until};
use serde_json::Value;

fn get_json(addr: SocketAddr, path: &str) -> Result<Value> {
    let (status, body) = fleet_tests::http(addr, "GET", path, "")?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
}

/// The agent's HTTP address, from the line `fleet dev` prints for it.
fn agent_http(dev: &mut Dev) -> Result<SocketAddr> {
    let line = dev.process.wait_for("agent HTTP", Duration::from_secs(5))?;
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .with_context(|| format!("no URL in '{line}'"))?;
    let addr = url.split('/').next().unwrap_or_default();
    addr.parse()
        .with_context(|| format!("bad address '{addr}' in '{line}'"))
}

fn task_of<'a>(stats: &'a Value, task_id: &str) -> Option<&'a Value> {
    stats.as_array()?.iter().find(|t| t["task_id"] == task_id)
}

#[test]
fn monitor_statistics_and_metrics_show_a_running_task() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let http = agent_http(&mut dev)?;

    // The master knows the same address for the agent (its /state may trail a moment).
    let known = wait_until(
        Duration::from_secs(10),
        "the agent in the master's /state",
        || {
            Ok(dev.state()?["agents"][0]["http_address"]
                .as_str()
                .map(str::to_owned))
        },
    )
    .with_context(|| dev.log())?;
    assert_eq!(known, http.to_string());

    let (status, body) = fleet_tests::http(http, "GET", "/health", "")?;
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    let (status, body) = fleet_tests::http(http, "GET", "/no/such/endpoint", "")?;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/no/such/endpoint"), "{body}");

    const WRITTEN: u64 = 1_000_000;
    let mut cmd = Command::new(fleet_bin());
    cmd.env("FLEET_HOME", dev.home.path()).args([
        "run",
        "--cpus",
        "0.5",
        "--mem",
        "64",
        "--disk",
        "16",
        "--",
        "sh",
        "-c",
        "head -c 1000000 /dev/zero > f && sleep 8",
    ]);
    let mut run = Process::spawn("fleet run", &mut cmd)?;
    let launching = run.wait_for(" launching on agent ", Duration::from_secs(10))?;
    let task_id = launching
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no task id in '{launching}'"))?
        .to_owned();

    let task = wait_until(
        Duration::from_secs(10),
        "the task in /monitor/statistics with its write counted",
        || {
            let stats = get_json(http, "/monitor/statistics")?;
            Ok(task_of(&stats, &task_id)
                .filter(|t| t["statistics"]["write_bytes"].as_u64() >= Some(WRITTEN))
                .cloned())
        },
    )
    .with_context(|| format!("{}\n{}", run.output(), dev.log()))?;

    let s = &task["statistics"];
    let framework_id = task["framework_id"]
        .as_str()
        .context("no framework_id")?
        .to_owned();
    assert!(!framework_id.is_empty(), "{task:#}");
    assert_eq!(task["executor_id"], task_id.as_str(), "{task:#}");
    assert_eq!(task["source"], task_id.as_str(), "{task:#}");
    assert_eq!(s["cpus_limit"], 0.5, "{task:#}");
    assert_eq!(s["mem_limit_bytes"], 64u64 << 20, "{task:#}");
    assert_eq!(s["disk_limit_bytes"], 16u64 << 20, "{task:#}");
    assert!(s["mem_total_bytes"].as_u64() > Some(0), "{task:#}");
    for field in [
        "cpus_total_time_secs",
        "disk_used_bytes",
        "net_rx_bytes",
        "net_tx_bytes",
    ] {
        assert!(s[field].is_number(), "{field} missing: {task:#}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let timestamp = s["timestamp"].as_f64().context("no timestamp")?;
    assert!(
        (now - timestamp).abs() < 10.0,
        "timestamp {timestamp}, now {now}"
    );

    let (status, metrics) = fleet_tests::http(http, "GET", "/metrics", "")?;
    assert_eq!(status, 200);
    let labels = format!("{{framework_id=\"{framework_id}\",task_id=\"{task_id}\"}}");
    for series in [
        "fleet_agent_task_cpu_seconds_total",
        "fleet_agent_task_memory_bytes",
        "fleet_agent_task_disk_bytes",
        "fleet_agent_task_network_receive_bytes_total",
        "fleet_agent_task_network_transmit_bytes_total",
    ] {
        assert!(
            metrics.contains(&format!("\n{series}{labels} ")),
            "no {series}{labels} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!("\nfleet_agent_task_cpus_limit{labels} 0.5\n")),
        "{metrics}"
    );
    let sample = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
    };
    assert!(
        sample("fleet_agent_written_bytes_total") >= Some(WRITTEN as f64),
        "{metrics}"
    );
    assert!(
        sample("fleet_agent_reports_sent_total") >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample("fleet_agent_registered"), Some(1.0), "{metrics}");

    let agent = get_json(http, "/state")?;
    assert_eq!(agent["http_address"], http.to_string(), "{agent:#}");
    assert!(
        agent["usage_total"]["write_bytes"].as_u64() >= Some(WRITTEN),
        "{agent:#}"
    );

    // Once the task has ended, its entry is gone.
    wait_until(
        Duration::from_secs(20),
        "the ended task to leave /monitor/statistics",
        || {
            let stats = get_json(http, "/monitor/statistics")?;
            Ok(task_of(&stats, &task_id).is_none().then_some(()))
        },
    )
    .with_context(|| format!("{}\n{}", run.output(), dev.log()))?;
    let ended = run.wait_exit(Duration::from_secs(10));
    assert!(
        ended.is_some_and(|s| s.success()),
        "fleet run: {ended:?}\n{}",
        run.output()
    );
    Ok(())
}

#[test]
fn fleet_agent_prints_its_http_address_and_refuses_a_taken_port() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let line = cluster
        .agent
        .wait_for("fleet agent: running", Duration::from_secs(10))?;
    let http: SocketAddr = line
        .split_once("HTTP http://")
        .and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok())
        .with_context(|| format!("no HTTP address in '{line}'"))?;
    assert_ne!(http.port(), 0, "{line}");
    assert_eq!(
        fleet_tests::http(http, "GET", "/health", "")?,
        (200, "OK\n".to_owned())
    );
    let state = wait_until(Duration::from_secs(10), "a registered agent", || {
        let state = get_json(http, "/state")?;
        Ok(state["id"].is_string().then_some(state))
    })
    .with_context(|| cluster.logs())?;
    assert_eq!(state["http_address"], http.to_string(), "{state:#}");

    // A second agent asked to listen where this one does refuses to start, naming it.
    let certs = cluster.dir.path().join("certs");
    let out = output_within(
        Command::new(fleet_bin())
            .args(["agent", "--master", &cluster.addr(), "--work-dir"])
            .arg(cluster.dir.path().join("agent-2"))
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join("agent-a.pem"))
            .arg("--key")
            .arg(certs.join("agent-a-key.pem"))
            .args(["--cgroup-root", &unique("fleet-test")])
            .args(["--http-listen", &http.to_string()]),
        Duration::from_secs(20),
    )?;
    let printed = text(&out);
    assert!(!out.status.success(), "a second agent started:\n{printed}");
    assert!(
        printed.contains(&format!("cannot listen for HTTP on {http}")),
        "{printed}"
    );
    Ok(())
}
