//! Prometheus text exposition of a published state snapshot.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::core::MasterState;

/// Renders gauges (agents, frameworks, tasks by state, offers, resources) and every counter
/// the core keeps, as `fleet_master_<counter>_total`.
pub fn render(state: &MasterState) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let active = state.agents.iter().filter(|a| a.active).count();
    gauge(
        "fleet_master_agents",
        "Agents known to the master, by state.",
        &[
            ("{state=\"active\"}".into(), active as f64),
            (
                "{state=\"inactive\"}".into(),
                (state.agents.len() - active) as f64,
            ),
        ],
    );
    gauge(
        "fleet_master_frameworks",
        "Frameworks known to the master.",
        &[(String::new(), state.frameworks.len() as f64)],
    );
    gauge(
        "fleet_master_quic_connections",
        "Open QUIC connections of agents and frameworks, registered or not yet.",
        &[(String::new(), state.connections as f64)],
    );
    gauge(
        "fleet_master_report_rate",
        "Agent reports received per second, over the last sweep interval.",
        &[(String::new(), state.report_rate)],
    );
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &state.tasks {
        *by_state.entry(t.state.name()).or_default() += 1;
    }
    let samples: Vec<(String, f64)> = by_state
        .iter()
        .map(|(s, n)| (format!("{{state=\"{s}\"}}"), *n as f64))
        .collect();
    gauge("fleet_master_tasks", "Live tasks, by state.", &samples);
    gauge(
        "fleet_master_outstanding_offers",
        "Offers sent and not yet answered.",
        &[(String::new(), state.outstanding_offers as f64)],
    );
    let mut resources: BTreeMap<(&str, String), f64> = BTreeMap::new();
    for a in &state.agents {
        for (kind, set) in [
            ("total", &a.total),
            ("used", &a.used),
            ("offered", &a.offered),
        ] {
            for (name, _role, value) in set.scalars() {
                *resources.entry((kind, name.to_owned())).or_default() += value.as_f64();
            }
        }
    }
    let samples: Vec<(String, f64)> = resources
        .iter()
        .map(|((kind, name), v)| (format!("{{resource=\"{name}\",kind=\"{kind}\"}}"), *v))
        .collect();
    gauge(
        "fleet_master_resources",
        "Scalar resources over all agents: total, used by tasks, offered.",
        &samples,
    );
    gauge(
        "fleet_master_allocator_shards",
        "Allocator shards; a full cycle runs them in parallel.",
        &[(String::new(), state.allocator_shards as f64)],
    );
    histogram(
        &mut out,
        "fleet_master_allocation_run_seconds",
        "Wall-clock time of allocation runs (full cycles and runs after events).",
        &state.allocation_runs,
    );
    if let Ok(serde_json::Value::Object(counters)) = serde_json::to_value(&state.counters) {
        for (name, value) in counters {
            if let Some(v) = value.as_f64() {
                let metric = format!("fleet_master_{name}_total");
                let _ = writeln!(
                    out,
                    "# HELP {metric} Count of {}.\n# TYPE {metric} counter\n{metric} {v}",
                    name.replace('_', " ")
                );
            }
        }
    }
    out
}

/// A Prometheus histogram from the core's run times (cumulative buckets, sum, count).
fn histogram(out: &mut String, name: &str, help: &str, runs: &crate::core::RunTimes) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in crate::core::RUN_BUCKETS_US.iter().zip(runs.counts) {
        cumulative += count;
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", runs.count());
    let _ = writeln!(out, "{name}_sum {}", runs.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", runs.count());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allocation_runs_render_as_a_cumulative_histogram() {
        let master = crate::core::Master::new(
            crate::core::MasterConfig::default(),
            Box::new(crate::registry::InMemoryRegistry::default()),
        );
        let mut state = master.state();
        for us in [50, 700, 700, 20_000_000] {
            state.allocation_runs.record(Duration::from_micros(us));
        }
        let text = render(&state);
        let line = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "fleet_master_allocation_run_seconds_bucket{{le=\"{le}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert!(
            text.contains("# TYPE fleet_master_allocation_run_seconds histogram"),
            "{text}"
        );
        assert_eq!(line("0.0001").as_deref(), Some("1"), "{text}");
        assert_eq!(line("0.001").as_deref(), Some("3"), "{text}");
        assert_eq!(line("10").as_deref(), Some("3"), "{text}");
        assert_eq!(line("+Inf").as_deref(), Some("4"), "{text}");
        assert!(
            text.contains("fleet_master_allocation_run_seconds_count 4"),
            "{text}"
        );
        assert!(
            text.contains("fleet_master_allocation_run_seconds_sum 20.00145"),
            "{text}"
        );
        for gauge in [
            "fleet_master_quic_connections 0",
            "fleet_master_report_rate 0",
        ] {
            assert!(text.contains(gauge), "{gauge} missing:\n{text}");
        }
    }
}
