//! `fleet bench allocator`: Mesos' allocator benchmark grid (agents x frameworks, for the
//! decline-everything and accept-and-launch workloads), timing Fleet's allocator and, in
//! the same run on the same simulated cluster, the baseline that follows Mesos'
//! HierarchicalDRF loop ([`crate::mesos_drf`]). Prints cycle time p50/p99 and the ratio;
//! writes JSON and an SVG chart of cycle time against agents.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fleet_master::allocator::Allocator;

use crate::BenchError;
use crate::mesos_drf::MesosDrf;
use crate::sim::{ClusterSpec, SimAllocator, SimCluster, Workload};

/// The baseline keeps one filter object per (agent, framework) pair in the decline
/// workload (a `Resources` each, as Mesos does); above this many pairs it is skipped for
/// that case, with the reason, rather than exhausting the machine's memory. Fleet's
/// grouped filters run every case.
pub const MAX_BASELINE_DECLINE_PAIRS: usize = 40_000_000;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridOptions {
    pub agents: Vec<usize>,
    pub frameworks: Vec<usize>,
    pub workloads: Vec<Workload>,
    /// Timed cycles of Fleet's allocator per case.
    pub cycles: usize,
    /// Timed cycles of the baseline per case (it is slower; fewer keep the run short).
    pub baseline_cycles: usize,
    /// Frameworks are spread over at most this many roles.
    pub max_roles: usize,
    /// Run the Mesos-algorithm baseline too.
    pub baseline: bool,
    /// Skip the baseline of decline cases with more (agent, framework) pairs than this.
    pub baseline_max_pairs: usize,
}

impl Default for GridOptions {
    /// Mesos' grid, minus what does not fit this machine's memory in the decline workload.
    fn default() -> Self {
        Self {
            agents: vec![1_000, 10_000, 50_000],
            frameworks: vec![1, 100, 1_000, 3_000],
            workloads: vec![Workload::DeclineAll, Workload::AcceptPart],
            cycles: 20,
            baseline_cycles: 3,
            max_roles: 10,
            baseline: true,
            baseline_max_pairs: MAX_BASELINE_DECLINE_PAIRS,
        }
    }
}

/// Cycle times of one allocator on one case, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CycleTimes {
    pub cycles: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaseResult {
    pub agents: usize,
    pub frameworks: usize,
    pub roles: usize,
    pub workload: &'static str,
    /// Shards the allocator ran with (one: the sharded allocator is not built yet).
    pub shards: usize,
    pub fleet: Option<CycleTimes>,
    pub mesos_baseline: Option<CycleTimes>,
    /// Baseline p50 / Fleet p50.
    pub speedup_p50: Option<f64>,
    /// Why the case (or its baseline) did not run, when it did not.
    pub skipped: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e6
}

/// Builds the case's cluster in its steady state and times `cycles` cycles; the
/// frameworks' answers run off the clock.
fn time_cycles<A: SimAllocator>(
    spec: ClusterSpec,
    workload: Workload,
    cycles: usize,
) -> Result<CycleTimes, BenchError> {
    let mut cluster = SimCluster::<A>::prepared(spec, workload)?;
    let mut times = Vec::with_capacity(cycles);
    for _ in 0..cycles.max(1) {
        let start = Instant::now();
        let offers = cluster.cycle();
        times.push(start.elapsed());
        cluster.answer(offers, workload)?;
    }
    times.sort();
    Ok(CycleTimes {
        cycles: times.len(),
        p50_us: percentile(&times, 50.0),
        p99_us: percentile(&times, 99.0),
    })
}

/// Runs the grid; `progress` hears about each case before it starts.
pub fn run(
    options: &GridOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<CaseResult>, BenchError> {
    let mut cases = Vec::new();
    for &workload in &options.workloads {
        for &agents in &options.agents {
            for &frameworks in &options.frameworks {
                cases.push((workload, agents, frameworks));
            }
        }
    }
    let total = cases.len();
    let mut results = Vec::with_capacity(total);
    for (i, (workload, agents, frameworks)) in cases.into_iter().enumerate() {
        let roles = options.max_roles.clamp(1, frameworks.max(1));
        let label = format!(
            "{} {agents} agents x {frameworks} frameworks",
            workload.name()
        );
        progress(i, total, &label);
        let spec = ClusterSpec::new(agents, frameworks.max(1), roles);
        let mut result = CaseResult {
            agents,
            frameworks,
            roles,
            workload: workload.name(),
            shards: 1,
            fleet: None,
            mesos_baseline: None,
            speedup_p50: None,
            skipped: None,
        };
        let fleet = time_cycles::<Allocator>(spec, workload, options.cycles)?;
        result.fleet = Some(fleet);
        let pairs = agents.saturating_mul(frameworks);
        if options.baseline
            && workload == Workload::DeclineAll
            && pairs > options.baseline_max_pairs
        {
            result.skipped = Some(format!(
                "baseline skipped: its {pairs} refusal filters (one object per agent and \
                 framework, as in Mesos) exceed the {} this run keeps in memory",
                options.baseline_max_pairs
            ));
        } else if options.baseline {
            let mesos = time_cycles::<MesosDrf>(spec, workload, options.baseline_cycles)?;
            result.speedup_p50 = (fleet.p50_us > 0.0).then(|| mesos.p50_us / fleet.p50_us);
            result.mesos_baseline = Some(mesos);
        }
        results.push(result);
    }
    Ok(results)
}

fn ms(us: f64) -> String {
    if us >= 1_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{us:.1} us")
    }
}

/// The results as a table.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:>6} {:>6} {:>11} {:>11} {:>11} {:>11} {:>9}",
        "workload",
        "agents",
        "fws",
        "shards",
        "fleet p50",
        "fleet p99",
        "mesos p50",
        "mesos p99",
        "ratio"
    );
    for r in results {
        let cell = |t: Option<CycleTimes>, p99: bool| {
            t.map_or("-".to_owned(), |t| {
                ms(if p99 { t.p99_us } else { t.p50_us })
            })
        };
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>6} {:>6} {:>11} {:>11} {:>11} {:>11} {:>9}",
            r.workload,
            r.agents,
            r.frameworks,
            r.shards,
            cell(r.fleet, false),
            cell(r.fleet, true),
            cell(r.mesos_baseline, false),
            cell(r.mesos_baseline, true),
            r.speedup_p50.map_or("-".to_owned(), |x| format!("{x:.0}x")),
        );
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "{:>12} {why}", "");
        }
    }
    out
}

/// An SVG chart: p50 cycle time (log scale) against agents, one line per workload,
/// framework count and allocator.
pub fn svg(results: &[CaseResult]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 220.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    for r in results {
        for (name, times) in [("fleet", r.fleet), ("mesos", r.mesos_baseline)] {
            let Some(t) = times else { continue };
            let key = format!("{name} {} {}fw", r.workload, r.frameworks);
            match series.iter_mut().find(|(k, _)| *k == key) {
                Some((_, points)) => points.push((r.agents, t.p50_us.max(0.1))),
                None => series.push((key, vec![(r.agents, t.p50_us.max(0.1))])),
            }
        }
    }
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(a, _)| (*a as f64).log10()))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, t)| t.log10()))
        .collect();
    let (x0, x1) = bounds(&xs);
    let (y0, y1) = bounds(&ys);
    let px = |a: f64| LEFT + (a.log10() - x0) / (x1 - x0).max(1e-9) * (W - LEFT - RIGHT);
    let py = |t: f64| H - BOTTOM - (t.log10() - y0) / (y1 - y0).max(1e-9) * (H - TOP - BOTTOM);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"18\" font-size=\"13\">Allocation cycle p50 \
         (log) against agents (log)</text>\n"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"black\"/>",
        H - BOTTOM
    );
    for exp in (y0.floor() as i32)..=(y1.ceil() as i32) {
        let t = 10f64.powi(exp);
        let y = py(t);
        if (TOP..=H - BOTTOM).contains(&y) {
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 5.0,
                ms(t)
            );
        }
    }
    let mut agents: Vec<usize> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(a, _)| *a))
        .collect();
    agents.sort_unstable();
    agents.dedup();
    for a in agents {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{a}</text>",
            px(a as f64),
            H - BOTTOM + 15.0
        );
    }
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let dash = if name.starts_with("mesos") {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let path: Vec<String> = points
            .iter()
            .map(|(a, t)| format!("{:.1},{:.1}", px(*a as f64), py(*t)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        let y = TOP + 14.0 * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{y:.1}\" fill=\"{color}\">{name}</text>",
            W - RIGHT + 10.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn bounds(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_grid_times_both_allocators_and_charts_them() {
        let options = GridOptions {
            agents: vec![20, 60],
            frameworks: vec![1, 4],
            cycles: 3,
            baseline_cycles: 2,
            ..GridOptions::default()
        };
        let mut seen = 0;
        let results = run(&options, |_, _, _| seen += 1).unwrap();
        assert_eq!(results.len(), 8);
        assert_eq!(seen, 8);
        for r in &results {
            assert!(r.fleet.is_some() && r.mesos_baseline.is_some(), "{r:?}");
            assert!(r.speedup_p50.is_some());
        }
        let text = table(&results);
        assert!(
            text.contains("decline_all") && text.contains("accept_part"),
            "{text}"
        );
        let chart = svg(&results);
        assert!(
            chart.starts_with("<svg") && chart.contains("polyline"),
            "{chart}"
        );
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json[0]["shards"], 1);
    }

    #[test]
    fn fleet_runs_decline_cases_too_big_for_the_baseline() {
        let options = GridOptions {
            agents: vec![50],
            frameworks: vec![30],
            workloads: vec![Workload::DeclineAll],
            cycles: 2,
            baseline_max_pairs: 1_000,
            ..GridOptions::default()
        };
        let results = run(&options, |_, _, _| {}).unwrap();
        assert!(results[0].fleet.is_some());
        assert!(results[0].mesos_baseline.is_none());
        assert!(
            results[0]
                .skipped
                .as_deref()
                .unwrap_or("")
                .contains("baseline skipped")
        );
    }
}
