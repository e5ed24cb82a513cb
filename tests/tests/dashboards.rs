//! The Grafana dashboard in deploy/ asks only for metrics that a running master and agent
//! export, and the Prometheus configuration scrapes both.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use std::time::Duration;

use fleet_tests::{Dev, http, wait_until};
use serde_json::Value;

/// The metric names a `/metrics` text declares (`# TYPE name kind`).
fn declared(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `fleet_...` names in a PromQL expression.
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("fleet_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_asks_only_for_exported_metrics() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_path_buf();
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("deploy/grafana/fleet.json"),
    )?)?;
    let prometheus = std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))?;
    assert!(
        prometheus.contains("job_name: fleet-master")
            && prometheus.contains("job_name: fleet-agent"),
        "{prometheus}"
    );

    let mut dev = Dev::start(&[])?;
    let (status, master) = http(([127, 0, 0, 1], dev.port).into(), "GET", "/metrics", "")?;
    assert_eq!(status, 200, "{master}");
    // Under load the agent may register a moment after dev says it is ready.
    let agent_http: std::net::SocketAddr = wait_until(
        Duration::from_secs(30),
        "the dev agent with its HTTP address in /state",
        || {
            let state = dev.state()?;
            Ok(state["agents"][0]["http_address"]
                .as_str()
                .and_then(|a| a.parse().ok()))
        },
    )?;
    let (status, agent) = http(agent_http, "GET", "/metrics", "")?;
    assert_eq!(status, 200, "{agent}\n{}", dev.log());
    let mut exported = declared(&master);
    exported.extend(declared(&agent));

    let mut asked = 0;
    let panels = dashboard["panels"].as_array().context("no panels")?;
    for panel in panels {
        for target in panel["targets"]
            .as_array()
            .context("a panel without targets")?
        {
            let expr = target["expr"].as_str().context("a target without expr")?;
            for name in names(expr) {
                asked += 1;
                // A histogram is declared once and read as its _bucket, _sum, _count series.
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| exported.contains(*base))
                    .unwrap_or(&name);
                assert!(
                    exported.contains(base),
                    "panel {:?} asks for {name}, which neither /metrics exports; exported: {exported:?}",
                    panel["title"]
                );
            }
        }
    }
    assert!(asked >= 16, "only {asked} metrics asked for");
    Ok(())
}
