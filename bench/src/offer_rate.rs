//! `fleet bench offers`: placements end to end over real QUIC on loopback.
//!
//! A `fleet master` child process; simulated agents (QUIC connections from this process)
//! that answer every RunTask at once with TASK_FINISHED and report once per interval;
//! simulated frameworks on Fleet's scheduler SDK that fill every offer with small no-op
//! tasks and acknowledge every update. A placement is a task the master sent to a
//! simulated agent after a framework accepted an offer for it; its latency runs from the
//! moment the framework sent the ACCEPT to the moment the RunTask reached the agent (the
//! accept instant travels in the task id, so no table is shared between the two sides).
//!
//! Two phases on the same cluster: as fast as it goes, then paced at half that rate (each
//! framework spends launch tokens from a bucket and holds an offer until it may launch on
//! it), where the latency is read against the target.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_client::scheduler::{MasterEndpoint, SchedulerClient};
use fleet_proto::frame::{self, MAX_FRAME_LEN};
use fleet_proto::ids::{TaskId, UpdateUuid};
use fleet_proto::messages::agent::{AgentMessage, MasterMessage};
use fleet_proto::messages::scheduler::{Event, Filters, FrameworkInfo, Operation};
use fleet_proto::resources::Resources;
use fleet_proto::stream;
use fleet_proto::task::{CommandInfo, Source, StatusUpdate, TaskInfo, TaskState, TaskStatus};
use hdrhistogram::Histogram;

use crate::BenchError;
use crate::master_process::MasterProcess;
use crate::sim_agents::{self, SimAgent};

/// What to run.
#[derive(Clone, Debug)]
pub struct OfferOptions {
    /// The `fleet` binary that runs the master.
    pub fleet: PathBuf,
    pub agents: usize,
    pub frameworks: usize,
    /// Seconds each phase is measured for.
    pub seconds: f64,
    /// What each simulated agent offers.
    pub agent_resources: String,
    /// What each no-op task takes.
    pub task_resources: String,
    /// Also run the phase paced at half the measured rate.
    pub half_load: bool,
}

impl Default for OfferOptions {
    fn default() -> Self {
        OfferOptions {
            fleet: PathBuf::from("fleet"),
            agents: 1_000,
            frameworks: 10,
            seconds: 10.0,
            agent_resources: "cpus:8;mem:16384".into(),
            task_resources: "cpus:0.1;mem:32".into(),
            half_load: true,
        }
    }
}

/// Offer-to-launch latency percentiles, in microseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One measured phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Phase {
    pub name: String,
    /// Launches per second the frameworks were held to; none when unpaced.
    pub paced_per_second: Option<f64>,
    pub seconds: f64,
    pub launches: u64,
    pub launches_per_second: f64,
    pub offers_per_second: f64,
    pub updates_per_second: f64,
    pub latency: Latency,
    pub master_cpu_cores: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct OfferResults {
    pub agents: usize,
    pub frameworks: usize,
    pub full: Phase,
    pub half: Option<Phase>,
    pub master_rss_bytes: u64,
}

/// Counters the simulated agents and frameworks share with the measuring loop.
struct Shared {
    base: Instant,
    launched: AtomicU64,
    offers: AtomicU64,
    updates: AtomicU64,
    errors: AtomicU64,
    /// Offer-to-launch latencies, in nanoseconds.
    latency: Mutex<Histogram<u64>>,
    /// Launches per second all frameworks together may make; 0 = unpaced.
    pace: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn since_base(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// Runs the bench; `progress(done, total, what)` hears about each step.
pub fn run(
    options: &OfferOptions,
    mut progress: impl FnMut(u64, u64, &str),
) -> Result<OfferResults, BenchError> {
    if options.agents == 0 || options.frameworks == 0 || options.seconds <= 0.0 {
        return Err(BenchError::Option(
            "--agents, --frameworks and --seconds must be above zero".into(),
        ));
    }
    let agent_resources = parse(&options.agent_resources)?;
    let task_resources = parse(&options.task_resources)?;
    if !agent_resources.contains(&task_resources) {
        return Err(BenchError::Option(format!(
            "a task ({}) does not fit on an agent ({})",
            options.task_resources, options.agent_resources
        )));
    }
    let rt = sim_agents::load_runtime()?;
    rt.block_on(run_async(
        options,
        agent_resources,
        task_resources,
        &mut progress,
    ))
}

fn parse(text: &str) -> Result<Resources, BenchError> {
    Resources::parse(text).map_err(|source| BenchError::Resources {
        text: text.to_owned(),
        source,
    })
}

async fn run_async(
    options: &OfferOptions,
    agent_resources: Resources,
    task_resources: Resources,
    progress: &mut impl FnMut(u64, u64, &str),
) -> Result<OfferResults, BenchError> {
    let seconds = options.seconds.ceil() as u64;
    let phases = if options.half_load { 2 } else { 1 };
    let total = 2 + phases * (seconds + 1);
    let mut step = 0;
    progress(step, total, "starting a master");
    // Full allocation cycles often, so resources a framework declined come back quickly.
    let master = MasterProcess::spawn(&options.fleet, &["--allocation-interval", "0.05"])?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        launched: AtomicU64::new(0),
        offers: AtomicU64::new(0),
        updates: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency: Mutex::new(
            Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .map_err(|e| BenchError::Histogram(e.to_string()))?,
        ),
        pace: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    progress(
        step,
        total,
        &format!("registering {} simulated agents", options.agents),
    );
    let mut tasks = Vec::new();
    let mut connections = Vec::new();
    let registered = sim_agents::register_many(&master, options.agents, agent_resources, |agent| {
        connections.push(agent.conn.clone());
        tasks.push(tokio::spawn(drive_agent(agent, shared.clone())));
        Ok(())
    })
    .await?;
    let addr = master.quic_addr();
    step += 1;

    progress(
        step,
        total,
        &format!("subscribing {} frameworks", options.frameworks),
    );
    for i in 0..options.frameworks {
        let endpoint = MasterEndpoint {
            addr,
            ca_pem: master.ca_pem().to_owned(),
        };
        let info = FrameworkInfo {
            id: None,
            name: format!("bench-framework-{i}"),
            user: "bench".into(),
            roles: Vec::new(),
            principal: None,
            failover_timeout_ms: 0,
            capabilities: Default::default(),
            offer_constraints: Vec::new(),
        };
        let (client, events) = SchedulerClient::connect(endpoint, info)
            .await
            .map_err(|e| BenchError::Sim {
                what: format!("framework {i}"),
                reason: e.to_string(),
            })?;
        tasks.push(tokio::spawn(drive_framework(
            i,
            options.frameworks,
            client,
            events,
            task_resources.clone(),
            shared.clone(),
        )));
    }
    step += 1;

    let full = measure_phase(
        "as fast as it goes",
        None,
        seconds,
        &master,
        &shared,
        &mut step,
        total,
        progress,
    )
    .await?;
    let half = if options.half_load {
        let rate = (full.launches_per_second / 2.0).max(1.0);
        shared.pace.store(rate as u64, Ordering::Relaxed);
        Some(
            measure_phase(
                "at half that rate",
                Some(rate),
                seconds,
                &master,
                &shared,
                &mut step,
                total,
                progress,
            )
            .await?,
        )
    } else {
        None
    };
    let master_rss_bytes = master.rss_bytes()?;
    shared.stop.store(true, Ordering::Relaxed);
    for c in &connections {
        c.close(quinn::VarInt::from_u32(0), b"bench done");
    }
    for e in &registered.endpoints {
        e.close(quinn::VarInt::from_u32(0), b"bench done");
    }
    for t in tasks {
        t.abort();
    }
    progress(total, total, "done");
    Ok(OfferResults {
        agents: options.agents,
        frameworks: options.frameworks,
        full,
        half,
        master_rss_bytes,
    })
}

#[allow(clippy::too_many_arguments)]
async fn measure_phase(
    name: &str,
    paced: Option<f64>,
    seconds: u64,
    master: &MasterProcess,
    shared: &Shared,
    step: &mut u64,
    total: u64,
    progress: &mut impl FnMut(u64, u64, &str),
) -> Result<Phase, BenchError> {
    // Warm up (and, after a change of pace, let the queues the faster phase built drain),
    // then start from clean counts.
    progress(*step, total, &format!("{name}: warming up"));
    let settle = if paced.is_some() { 3 } else { 1 };
    tokio::time::sleep(Duration::from_secs(settle)).await;
    *step += 1;
    if let Ok(mut h) = shared.latency.lock() {
        h.reset();
    }
    let counts = |s: &Shared| {
        (
            s.launched.load(Ordering::Relaxed),
            s.offers.load(Ordering::Relaxed),
            s.updates.load(Ordering::Relaxed),
        )
    };
    let (l0, o0, u0) = counts(shared);
    let cpu0 = master.cpu_seconds()?;
    let t0 = Instant::now();
    for s in 0..seconds {
        let launched = shared.launched.load(Ordering::Relaxed) - l0;
        let rate = launched as f64 / t0.elapsed().as_secs_f64().max(1e-3);
        progress(
            *step,
            total,
            &format!("{name}: {s}/{seconds} s, {rate:.0} launches/s"),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        *step += 1;
    }
    let (l1, o1, u1) = counts(shared);
    let cpu1 = master.cpu_seconds()?;
    let dt = t0.elapsed().as_secs_f64();
    let errors = shared.errors.load(Ordering::Relaxed);
    if l1 == l0 {
        let log = master.log_tail(40);
        return Err(BenchError::Sim {
            what: "cluster".into(),
            reason: format!(
                "no task was launched in {dt:.1} s ({errors} framework or agent errors); \
                 the master's log:\n{log}"
            ),
        });
    }
    let latency = {
        let h = shared
            .latency
            .lock()
            .map_err(|_| BenchError::Option("latency histogram poisoned".into()))?;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Latency {
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1_000.0,
        }
    };
    Ok(Phase {
        name: name.to_owned(),
        paced_per_second: paced,
        seconds: dt,
        launches: l1 - l0,
        launches_per_second: (l1 - l0) as f64 / dt,
        offers_per_second: (o1 - o0) as f64 / dt,
        updates_per_second: (u1 - u0) as f64 / dt,
        latency,
        master_cpu_cores: (cpu1 - cpu0) / dt,
    })
}

/// The accept instant a framework put in a task id: `<framework>.<nanos>.<n>`.
fn accept_nanos(task_id: &str) -> Option<u64> {
    task_id.split('.').nth(1)?.parse().ok()
}

/// A simulated agent: records each RunTask, answers it with TASK_FINISHED, answers pings,
/// and reports once per interval.
async fn drive_agent(agent: SimAgent, shared: Arc<Shared>) {
    let SimAgent {
        id,
        conn,
        mut send,
        mut recv,
        report_interval,
        ..
    } = agent;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AgentMessage>();
    let reader_shared = shared.clone();
    let agent_id = id.clone();
    let reader = tokio::spawn(async move {
        loop {
            let msg = match stream::read_message::<_, MasterMessage>(&mut recv, MAX_FRAME_LEN).await
            {
                Ok(Some(m)) => m,
                _ => return,
            };
            let reply = match msg {
                MasterMessage::RunTask { framework, task } => {
                    let now = reader_shared.since_base();
                    if let Some(at) = accept_nanos(task.task_id.as_str())
                        && let Ok(mut h) = reader_shared.latency.lock()
                    {
                        let _ = h.record(now.saturating_sub(at).max(1_000));
                    }
                    reader_shared.launched.fetch_add(1, Ordering::Relaxed);
                    Some(finished(&agent_id, framework.id, task.task_id))
                }
                MasterMessage::KillTask {
                    framework_id,
                    task_id,
                    ..
                } => Some(finished(&agent_id, framework_id, task_id)),
                MasterMessage::Ping { nonce } => Some(AgentMessage::Pong { nonce }),
                _ => None,
            };
            if let Some(reply) = reply
                && tx.send(reply).is_err()
            {
                return;
            }
        }
    });
    let mut reports = match conn.open_uni().await {
        Ok(s) => s,
        Err(_) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if stream::write_preamble(&mut reports, fleet_proto::frame::StreamKind::AgentReport)
        .await
        .is_err()
    {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut report = crate::reports::sample_report(0);
    report.agent_id = id;
    let mut tick = tokio::time::interval(report_interval);
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                if stream::write_message(&mut send, &msg).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            _ = tick.tick() => {
                seq += 1;
                report.seq = seq;
                report.timestamp_ms = fleet_proto::task::unix_millis();
                let Ok(bytes) = frame::encode(&report) else { break };
                if reports.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
    }
    reader.abort();
}

fn finished(
    agent_id: &fleet_proto::ids::AgentId,
    framework_id: fleet_proto::ids::FrameworkId,
    task_id: TaskId,
) -> AgentMessage {
    AgentMessage::StatusUpdate(StatusUpdate {
        framework_id,
        status: TaskStatus {
            task_id,
            agent_id: Some(agent_id.clone()),
            state: TaskState::Finished,
            reason: None,
            message: String::new(),
            source: Source::Executor,
            uuid: Some(UpdateUuid::random()),
            exit_code: Some(0),
            sandbox: None,
            timestamp_ms: fleet_proto::task::unix_millis(),
        },
    })
}

/// A launch-token bucket: `rate` tokens a second, at most one second's worth banked.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, want: usize) -> usize {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate.max(1.0));
        self.last = now;
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        n
    }
}

/// A simulated framework: fills each offer with no-op tasks (as many as the pace allows),
/// declines the rest with no filter, and acknowledges every update.
async fn drive_framework(
    index: usize,
    frameworks: usize,
    client: SchedulerClient,
    mut events: fleet_client::scheduler::EventStream,
    task: Resources,
    shared: Arc<Shared>,
) {
    let cpus = task.cpus().as_f64();
    let mem = task.mem_mb().as_f64();
    let no_filter = Some(Filters {
        refuse_seconds: 0.0,
    });
    let mut bucket = Bucket {
        tokens: 0.0,
        last: Instant::now(),
    };
    let mut next = 0u64;
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match event {
            Event::Offers { offers } => {
                shared
                    .offers
                    .fetch_add(offers.len() as u64, Ordering::Relaxed);
                for offer in offers {
                    let by = |have: f64, need: f64| {
                        if need > 0.0 {
                            (have / need + 1e-9).floor() as usize
                        } else {
                            usize::MAX
                        }
                    };
                    let mut n = by(offer.resources.cpus().as_f64(), cpus)
                        .min(by(offer.resources.mem_mb().as_f64(), mem));
                    if n == usize::MAX {
                        n = 1;
                    }
                    let pace = shared.pace.load(Ordering::Relaxed);
                    if pace > 0 && n > 0 {
                        // Hold the offer until the pace allows a launch, as a scheduler
                        // with nothing to run yet would; declining it instead would make
                        // the master re-offer it every cycle.
                        let rate = pace as f64 / frameworks as f64;
                        loop {
                            let k = bucket.take(rate, n);
                            if k > 0 {
                                n = k;
                                break;
                            }
                            if shared.stop.load(Ordering::Relaxed) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs_f64(1.0 / rate)).await;
                        }
                    }
                    let result = if n == 0 {
                        client.decline(vec![offer.id], no_filter).await
                    } else {
                        let at = shared.since_base();
                        let tasks = (0..n)
                            .map(|_| {
                                next += 1;
                                TaskInfo {
                                    task_id: TaskId::new(format!("f{index}.{at}.{next}")),
                                    name: "no-op".into(),
                                    agent_id: offer.agent_id.clone(),
                                    resources: task.clone(),
                                    command: CommandInfo::default(),
                                    kill_grace_ms: None,
                                }
                            })
                            .collect();
                        client
                            .accept(vec![offer.id], vec![Operation::Launch { tasks }], no_filter)
                            .await
                    };
                    if result.is_err() {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            Event::Update { status } => {
                shared.updates.fetch_add(1, Ordering::Relaxed);
                if client.acknowledge(&status).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Event::Error { fatal: true, .. } => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The figures as a table.
pub fn table(r: &OfferResults) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} simulated agents, {} frameworks, over QUIC on loopback\n",
        r.agents, r.frameworks
    );
    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "phase",
        "launches/s",
        "offers/s",
        "updates/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "master"
    );
    for p in std::iter::once(&r.full).chain(r.half.as_ref()) {
        let _ = writeln!(
            out,
            "{:<20} {:>12.0} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.2}c",
            p.name,
            p.launches_per_second,
            p.offers_per_second,
            p.updates_per_second,
            p.latency.p50_us / 1e3,
            p.latency.p90_us / 1e3,
            p.latency.p99_us / 1e3,
            p.latency.max_us / 1e3,
            p.master_cpu_cores
        );
    }
    let _ = writeln!(
        out,
        "\nlatency: framework sends ACCEPT -> RunTask reaches the agent; master: CPU cores \
         it used; its resident memory at the end: {:.1} MiB",
        r.master_rss_bytes as f64 / 1048576.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_instant_travels_in_the_task_id() {
        assert_eq!(accept_nanos("f3.123456789.42"), Some(123_456_789));
        assert_eq!(accept_nanos("web-1"), None);
    }

    #[test]
    fn the_bucket_banks_at_most_a_second() {
        let mut b = Bucket {
            tokens: 0.0,
            last: Instant::now() - Duration::from_secs(10),
        };
        assert_eq!(b.take(100.0, 1_000), 100);
        assert_eq!(b.take(100.0, 1_000), 0);
    }
}
