//! `fleet bench reports`: how many agent reports a real master absorbs, against the Mesos
//! style measured in the same run.
//!
//! - Fleet: a `fleet master` child process; simulated agents (QUIC connections from this
//!   process, with the agents' certificate) register and then stream rkyv reports on their
//!   report streams as fast as flow control lets them. Absorbed = the master's
//!   `reports_received` counter (every report validated, read in place and applied to its
//!   agent). The master's CPU comes from /proc/<pid>/stat.
//! - Baseline: the same reports as JSON, one HTTP/1.1 POST each on keep-alive connections
//!   (libprocess-style: the request is answered 202 and the body handed to one actor that
//!   decodes it into owned structs and applies it to its agent). Its CPU is that of its two
//!   threads (HTTP and actor).
//! - Memory: fresh masters with N agents each reporting once per interval (10 s by
//!   default); resident memory over the idle master's, divided by N.
//!
//! Frames and JSON bodies are encoded once per agent before the clock starts, so the load
//! generator spends its CPU on transport rather than on encoding.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleet_proto::frame;
use fleet_proto::messages::agent::{Report, Usage};

use crate::BenchError;
use crate::master_process::{MasterProcess, stat_cpu_seconds};
use crate::sim_agents::{self, SimAgent};

/// What to run.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The `fleet` binary that runs the master.
    pub fleet: PathBuf,
    /// Simulated agents streaming reports in the throughput phase.
    pub agents: usize,
    /// Seconds each side is measured for.
    pub seconds: f64,
    /// Tasks in each report.
    pub tasks: usize,
    /// Agent counts at which the master's memory is measured.
    pub memory_agents: Vec<usize>,
    /// How often each agent reports in the memory phase. Longer than the master's 1 s so
    /// that 100,000 agents and their load generator fit on one small machine; within the
    /// master's agent timeout (75 s), as Mesos' agents ping every 15 s.
    pub memory_report_interval: Duration,
    /// Also run the JSON-over-HTTP baseline.
    pub baseline: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            fleet: PathBuf::from("fleet"),
            agents: 1_000,
            seconds: 10.0,
            tasks: 10,
            memory_agents: vec![10_000],
            memory_report_interval: Duration::from_secs(10),
            baseline: true,
        }
    }
}

/// Reports one side absorbed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Absorbed {
    pub reports: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// CPU the receiving side used, in cores (CPU seconds per second).
    pub server_cpu_cores: f64,
    pub cpu_us_per_report: f64,
    /// Reports one fully busy core of the receiver would absorb at that cost: the
    /// receiver's capacity where the load generator, sharing the machine, is what limits
    /// `per_second`.
    pub per_cpu_second: f64,
    /// Size of one report on the wire (frame or JSON body).
    pub bytes_per_report: usize,
}

/// The master's resident memory with `agents` agents connected and reporting.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryPoint {
    pub agents: usize,
    pub rss_idle_bytes: u64,
    pub rss_bytes: u64,
    pub bytes_per_agent: f64,
    pub connect_seconds: f64,
    /// Registrations that failed (a handshake or an answer lost for 30 s) and were tried
    /// again.
    pub registration_retries: u64,
    /// Agents whose report stream failed (their connection was lost) before the memory
    /// was read; printed, not hidden.
    pub lost_connections: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ReportResults {
    pub agents: usize,
    pub tasks_per_report: usize,
    pub fleet: Absorbed,
    pub baseline: Option<Absorbed>,
    /// Fleet's reports/s over the baseline's.
    pub ratio: Option<f64>,
    pub memory: Vec<MemoryPoint>,
    pub memory_report_seconds: f64,
}

/// Reports written per write in the throughput phase.
const BATCH: usize = 16;

/// Runs the bench; `progress(done, total, what)` hears about each step.
pub fn run(
    options: &ReportOptions,
    mut progress: impl FnMut(u64, u64, &str),
) -> Result<ReportResults, BenchError> {
    if options.agents == 0 || options.seconds <= 0.0 {
        return Err(BenchError::Option(
            "--agents and --seconds must be above zero".into(),
        ));
    }
    let rt = sim_agents::load_runtime()?;
    let seconds = options.seconds.ceil() as u64;
    let total = 2 * seconds + 2 + options.memory_agents.len() as u64;
    let mut step = 0;
    progress(step, total, "starting a master");
    let fleet = rt.block_on(fleet_rate(options, &mut step, total, &mut progress))?;
    let baseline = if options.baseline {
        Some(rt.block_on(json_rate(options, &mut step, total, &mut progress))?)
    } else {
        None
    };
    let mut memory = Vec::new();
    for &n in &options.memory_agents {
        progress(step, total, &format!("master memory with {n} agents"));
        memory.push(rt.block_on(memory_point(options, n))?);
        step += 1;
    }
    progress(total, total, "done");
    let ratio = baseline
        .as_ref()
        .map(|b| fleet.per_second / b.per_second.max(f64::MIN_POSITIVE));
    Ok(ReportResults {
        agents: options.agents,
        tasks_per_report: options.tasks,
        fleet,
        baseline,
        ratio,
        memory,
        memory_report_seconds: options.memory_report_interval.as_secs_f64(),
    })
}

fn close_all(endpoints: &[quinn::Endpoint], agents: &[SimAgent]) {
    for a in agents {
        a.close();
    }
    for e in endpoints {
        e.close(quinn::VarInt::from_u32(0), b"bench done");
    }
}

/// Measures `absorbed()` and `cpu()` over `seconds`, after a one-second warm-up.
async fn measure(
    seconds: u64,
    step: &mut u64,
    total: u64,
    what: &str,
    progress: &mut impl FnMut(u64, u64, &str),
    absorbed: impl Fn() -> Result<u64, BenchError>,
    cpu: impl Fn() -> Result<f64, BenchError>,
) -> Result<(u64, f64, f64), BenchError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    *step += 1;
    let (r0, c0, t0) = (absorbed()?, cpu()?, Instant::now());
    for s in 0..seconds {
        progress(*step, total, &format!("{what}: {s}/{seconds} s"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        *step += 1;
    }
    let (r1, c1) = (absorbed()?, cpu()?);
    let dt = t0.elapsed().as_secs_f64();
    Ok((r1.saturating_sub(r0), c1 - c0, dt))
}

fn absorbed(reports: u64, cpu: f64, dt: f64, bytes: usize) -> Absorbed {
    Absorbed {
        reports,
        seconds: dt,
        per_second: reports as f64 / dt,
        server_cpu_cores: cpu / dt,
        cpu_us_per_report: if reports == 0 {
            f64::INFINITY
        } else {
            cpu * 1e6 / reports as f64
        },
        per_cpu_second: if cpu > 0.0 { reports as f64 / cpu } else { 0.0 },
        bytes_per_report: bytes,
    }
}

async fn fleet_rate(
    options: &ReportOptions,
    step: &mut u64,
    total: u64,
    progress: &mut impl FnMut(u64, u64, &str),
) -> Result<Absorbed, BenchError> {
    let master = MasterProcess::spawn(&options.fleet, &[])?;
    progress(
        *step,
        total,
        &format!("registering {} simulated agents", options.agents),
    );
    let mut agents = Vec::with_capacity(options.agents);
    let registered = sim_agents::register_many(
        &master,
        options.agents,
        crate::sim::agent_resources(0)?,
        |agent| {
            agents.push(agent);
            Ok(())
        },
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut frame_len = 0;
    for agent in &agents {
        let one = frame::encode(&agent.report(1, options.tasks))?;
        frame_len = one.len();
        let batch = one.repeat(BATCH);
        let mut stream = agent.report_stream().await?;
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if stream.write_all(&batch).await.is_err() {
                    return;
                }
            }
        }));
    }
    let result = measure(
        options.seconds.ceil() as u64,
        step,
        total,
        "Fleet, rkyv over QUIC",
        progress,
        || master.counter("reports_received"),
        || master.cpu_seconds(),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    close_all(&registered.endpoints, &agents);
    for s in senders {
        s.abort();
    }
    let (reports, cpu, dt) = result?;
    if reports == 0 {
        let log = master.log_tail(40);
        return Err(BenchError::Sim {
            what: "agents".into(),
            reason: format!("the master absorbed no report; its log:\n{log}"),
        });
    }
    Ok(absorbed(reports, cpu, dt, frame_len))
}

/// What the baseline's actor keeps per agent: the same as the master's core.
#[derive(Default)]
struct JsonAgent {
    reports: u64,
    seq: u64,
    timestamp_ms: u64,
    total: Usage,
    task_usage: HashMap<String, Vec<(String, Usage)>>,
}

fn thread_cpu_seconds(tid: i32) -> Result<f64, BenchError> {
    let path = format!("/proc/self/task/{tid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        what: path.clone(),
        source,
    })?;
    stat_cpu_seconds(&stat).ok_or_else(|| BenchError::Option(format!("cannot parse {path}")))
}

/// The baseline server: an HTTP/1.1 thread that answers 202 and hands each body to an actor
/// thread, which decodes the JSON and applies it. Returns its address, the two thread ids,
/// the applied-reports counter, and a sender that stops it.
struct JsonServer {
    addr: SocketAddr,
    tids: Vec<i32>,
    applied: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_json_server(agent_ids: Vec<String>) -> Result<JsonServer, BenchError> {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| BenchError::Io { what, source }
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("a TCP listener"))?;
    let addr = listener.local_addr().map_err(io("a TCP listener"))?;
    listener
        .set_nonblocking(true)
        .map_err(io("a TCP listener"))?;
    let applied = Arc::new(AtomicU64::new(0));
    let (bodies, inbox) = std::sync::mpsc::channel::<Bytes>();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let actor_applied = applied.clone();
    let actor_tid = tid_tx.clone();
    let actor = std::thread::Builder::new()
        .name("bench-json-actor".into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = actor_tid.send(unsafe { libc::gettid() });
            let mut agents: HashMap<String, JsonAgent> = agent_ids
                .into_iter()
                .map(|id| (id, JsonAgent::default()))
                .collect();
            for body in inbox {
                let Ok(report) = serde_json::from_slice::<Report>(&body) else {
                    continue;
                };
                let Some(agent) = agents.get_mut(report.agent_id.as_str()) else {
                    continue;
                };
                agent.reports += 1;
                agent.seq = report.seq;
                agent.timestamp_ms = report.timestamp_ms;
                agent.total = report.total;
                for task in &report.tasks {
                    if let Some(list) = agent.task_usage.get_mut(task.task_id.as_str())
                        && let Some(entry) = list
                            .iter_mut()
                            .find(|(f, _)| f == task.framework_id.as_str())
                    {
                        entry.1 = task.usage;
                    }
                }
                actor_applied.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(io("the baseline actor thread"))?;
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let http = std::thread::Builder::new()
        .name("bench-json-http".into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new().route(
                    "/master/report",
                    axum::routing::post(move |body: Bytes| {
                        let bodies = bodies.clone();
                        async move {
                            let _ = bodies.send(body);
                            StatusCode::ACCEPTED
                        }
                    }),
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    })
                    .await;
            });
        })
        .map_err(io("the baseline HTTP thread"))?;
    let tids = (0..2)
        .map(|_| {
            tid_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| BenchError::Option("the baseline threads did not start".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JsonServer {
        addr,
        tids,
        applied,
        stop,
        threads: vec![http, actor],
    })
}

/// One keep-alive connection posting `body` in batches of `BATCH` pipelined requests.
async fn post_loop(addr: SocketAddr, body: Vec<u8>, stop: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut request = format!(
        "POST /master/report HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let batch = request.repeat(BATCH);
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if stream.write_all(&batch).await.is_err() {
            return;
        }
        // Wait for every answer of the batch before sending the next.
        let mut answered = 0;
        while answered < BATCH {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carry.extend_from_slice(&buf[..n]);
            while let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
                carry.drain(..end + 4);
                answered += 1;
            }
        }
    }
}

async fn json_rate(
    options: &ReportOptions,
    step: &mut u64,
    total: u64,
    progress: &mut impl FnMut(u64, u64, &str),
) -> Result<Absorbed, BenchError> {
    // The same agents and reports as the Fleet side, as JSON.
    let ids: Vec<String> = (0..options.agents)
        .map(|i| crate::sim::agent_id(i).as_str().to_owned())
        .collect();
    let server = start_json_server(ids.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut body_len = 0;
    let mut clients = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let agent_id = fleet_proto::ids::AgentId::new(id.clone());
        let report = sim_agents::agent_report(i, &agent_id, 1, options.tasks);
        let body = serde_json::to_vec(&report)?;
        body_len = body.len();
        clients.push(tokio::spawn(post_loop(server.addr, body, stop.clone())));
    }
    let applied = server.applied.clone();
    let tids = server.tids.clone();
    let result = measure(
        options.seconds.ceil() as u64,
        step,
        total,
        "baseline, JSON over HTTP/1.1",
        progress,
        || Ok(applied.load(Ordering::Relaxed)),
        || tids.iter().map(|t| thread_cpu_seconds(*t)).sum(),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.abort();
    }
    let _ = server.stop.send(true);
    let threads = server.threads;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    let (reports, cpu, dt) = result?;
    Ok(absorbed(reports, cpu, dt, body_len))
}

async fn memory_point(options: &ReportOptions, n: usize) -> Result<MemoryPoint, BenchError> {
    let master = MasterProcess::spawn(&options.fleet, &[])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = master.rss_bytes()?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    // Each agent reports once per interval from the moment it registers, as a real one.
    let mut agents = Vec::with_capacity(n);
    let registered =
        sim_agents::register_many(&master, n, crate::sim::agent_resources(0)?, |agent| {
            let one = frame::encode(&agent.report(1, options.tasks))?;
            let conn = agent.conn.clone();
            let interval = options.memory_report_interval;
            let (stop, failed) = (stop.clone(), failed.clone());
            senders.push(tokio::spawn(async move {
                let opened = async {
                    let mut s = conn.open_uni().await.ok()?;
                    fleet_proto::stream::write_preamble(&mut s, frame::StreamKind::AgentReport)
                        .await
                        .ok()?;
                    Some(s)
                };
                let Some(mut stream) = opened.await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut tick = tokio::time::interval(interval);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if stream.write_all(&one).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }));
            agents.push(agent);
            Ok(())
        })
        .await?;
    let connect_seconds = t0.elapsed().as_secs_f64();
    // Steady state: every agent has reported a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = master.rss_bytes()?;
    let admitted = master.counter("agents_registered")?;
    // Read before the bench closes the connections, which fails writes in flight.
    let lost = failed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    close_all(&registered.endpoints, &agents);
    for s in senders {
        s.abort();
    }
    if admitted < n as u64 {
        return Err(BenchError::Sim {
            what: "agents".into(),
            reason: format!(
                "{admitted} of {n} registered; the end of the master's log:\n{}",
                master.log_tail(40)
            ),
        });
    }
    Ok(MemoryPoint {
        agents: n,
        rss_idle_bytes: rss_idle,
        rss_bytes: rss,
        bytes_per_agent: rss.saturating_sub(rss_idle) as f64 / n as f64,
        connect_seconds,
        registration_retries: registered.retries,
        lost_connections: lost,
    })
}

/// The figures as a table.
pub fn table(r: &ReportResults) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} simulated agents, {} tasks per report\n",
        r.agents, r.tasks_per_report
    );
    let _ = writeln!(
        out,
        "{:<32} {:>12} {:>10} {:>12} {:>14} {:>8}",
        "", "reports/s", "CPU cores", "us/report", "reports/CPU-s", "bytes"
    );
    let mut row = |name: &str, a: &Absorbed| {
        let _ = writeln!(
            out,
            "{:<32} {:>12.0} {:>10.2} {:>12.2} {:>14.0} {:>8}",
            name,
            a.per_second,
            a.server_cpu_cores,
            a.cpu_us_per_report,
            a.per_cpu_second,
            a.bytes_per_report
        );
    };
    row("Fleet master, rkyv over QUIC", &r.fleet);
    if let Some(b) = &r.baseline {
        row("baseline, JSON over HTTP/1.1", b);
    }
    if let Some(ratio) = r.ratio {
        let _ = writeln!(out, "\nreports/s, Fleet / baseline: {ratio:.2}x");
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            out,
            "reports per CPU second, Fleet / baseline: {:.2}x",
            r.fleet.per_cpu_second / b.per_cpu_second.max(f64::MIN_POSITIVE)
        );
    }
    if !r.memory.is_empty() {
        let _ = writeln!(
            out,
            "\nmaster memory, each agent reporting every {:.0} s:\n{:>10} {:>14} {:>14} {:>14} {:>12} {:>8} {:>8}",
            r.memory_report_seconds,
            "agents",
            "idle RSS MiB",
            "RSS MiB",
            "bytes/agent",
            "connect s",
            "retries",
            "lost"
        );
        for m in &r.memory {
            let _ = writeln!(
                out,
                "{:>10} {:>14.1} {:>14.1} {:>14.0} {:>12.1} {:>8} {:>8}",
                m.agents,
                m.rss_idle_bytes as f64 / 1048576.0,
                m.rss_bytes as f64 / 1048576.0,
                m.bytes_per_agent,
                m.connect_seconds,
                m.registration_retries,
                m.lost_connections
            );
        }
    }
    out
}
