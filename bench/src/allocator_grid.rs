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
use crate::sim::{ClusterSpec, SimAllocator, SimCluster, SimShards, Workload};

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
    /// Shard counts to run Fleet's allocator with (1: the single-threaded allocator).
    pub shards: Vec<usize>,
    /// Timed cycles of Fleet's allocator per case, at most.
    pub cycles: usize,
    /// Timed cycles of the baseline per case, at most (it is slower; fewer keep the run
    /// short).
    pub baseline_cycles: usize,
    /// A case stops timing once its timed cycles took this long, after at least three
    /// cycles (one for the baseline), so that big cases keep the run short.
    pub budget: Duration,
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
            shards: vec![1, 2],
            cycles: 20,
            baseline_cycles: 3,
            budget: Duration::from_secs(4),
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
    /// Shards Fleet's allocator ran with (1: single-threaded, no shared table).
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
    min_cycles: usize,
    budget: Duration,
) -> Result<CycleTimes, BenchError> {
    let mut cluster = SimCluster::<A>::prepared(spec, workload)?;
    let mut times = Vec::with_capacity(cycles);
    let mut spent = Duration::ZERO;
    for done in 0..cycles.max(1) {
        if done >= min_cycles && spent >= budget {
            break;
        }
        let start = Instant::now();
        let offers = cluster.cycle();
        let took = start.elapsed();
        times.push(took);
        spent += took;
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
    let mut results = Vec::with_capacity(total * options.shards.len());
    for (i, (workload, agents, frameworks)) in cases.into_iter().enumerate() {
        let roles = options.max_roles.clamp(1, frameworks.max(1));
        let label = format!(
            "{} {agents} agents x {frameworks} frameworks",
            workload.name()
        );
        progress(i, total, &label);
        let spec = ClusterSpec::new(agents, frameworks.max(1), roles);
        let pairs = agents.saturating_mul(frameworks);
        let mut skipped = None;
        let mut mesos = None;
        if options.baseline
            && workload == Workload::DeclineAll
            && pairs > options.baseline_max_pairs
        {
            skipped = Some(format!(
                "baseline skipped: its {pairs} refusal filters (one object per agent and \
                 framework, as in Mesos) exceed the {} this run keeps in memory",
                options.baseline_max_pairs
            ));
        } else if options.baseline {
            mesos = Some(time_cycles::<MesosDrf>(
                spec,
                workload,
                options.baseline_cycles,
                1,
                options.budget,
            )?);
        }
        for &shards in &options.shards {
            let spec = spec.with_shards(shards.max(1));
            let fleet = if shards <= 1 {
                time_cycles::<Allocator>(spec, workload, options.cycles, 3, options.budget)?
            } else {
                time_cycles::<SimShards>(spec, workload, options.cycles, 3, options.budget)?
            };
            results.push(CaseResult {
                agents,
                frameworks,
                roles,
                workload: workload.name(),
                shards: shards.max(1),
                fleet: Some(fleet),
                mesos_baseline: mesos,
                speedup_p50: mesos
                    .filter(|_| fleet.p50_us > 0.0)
                    .map(|m| m.p50_us / fleet.p50_us),
                skipped: skipped.clone(),
            });
        }
    }
    Ok(results)
}

/// A speed-up: whole numbers from 10x, one decimal below (0.6x is slower than the baseline).
fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}x")
    } else {
        format!("{x:.1}x")
    }
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
            r.speedup_p50.map_or("-".to_owned(), ratio),
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
        let fleet = format!("fleet x{}", r.shards);
        // The baseline is measured once per case: chart it with the first shard count.
        let baseline = r.shards == results[0].shards;
        for (name, times) in [
            (fleet.as_str(), r.fleet),
            ("mesos", r.mesos_baseline.filter(|_| baseline)),
        ] {
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
        assert_eq!(results.len(), 16, "8 cases with 1 and 2 shards");
        assert_eq!(seen, 8);
        assert_eq!(
            results.iter().filter(|r| r.shards == 2).count(),
            8,
            "{results:?}"
        );
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
