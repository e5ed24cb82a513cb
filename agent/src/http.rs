//! The agent's HTTP endpoint on TCP: /health, /state, /monitor/statistics (JSON in the shape
//! of Mesos' endpoint), /metrics (Prometheus text), and the sandbox files
//! (/files/browse, /files/read, /files/download; `files.rs`). It runs on a thread of its own and
//! serves the usage snapshot the link publishes with each report, so a read never waits on
//! the executors or the link.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::{AgentInfo, Report, Usage};
use fleet_proto::resources::Resources;
use serde::Serialize;
use tokio::sync::watch;

/// A task's limits, from the resources it was launched with; zero means "no limit".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub cpus: f64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
}

impl Limits {
    /// The limits the containerizer applies for these resources (MB are MiB, as in Mesos).
    pub fn of(resources: &Resources) -> Limits {
        let bytes = |milli_mb: i64| u64::try_from(milli_mb).unwrap_or(0) * 1024 * 1024 / 1000;
        Limits {
            cpus: resources.cpus().as_f64(),
            mem_bytes: bytes(resources.mem_mb().milli()),
            disk_bytes: bytes(resources.disk_mb().milli()),
        }
    }
}

/// What the HTTP endpoint serves: the last report (per-task usage and the agent's totals),
/// each task's limits, and the link's counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub agent_id: Option<AgentId>,
    /// The last report built, whether or not it reached the master.
    pub report: Option<Report>,
    /// Limits of `report.tasks`, in the same order.
    pub limits: Vec<Limits>,
    /// Reports written to the master's report stream.
    pub reports_sent: u64,
    /// Successful registrations with a master (the first one, then each reconnect).
    pub registrations: u64,
    /// Link sessions that ended in an error (lost master, refused, unreachable).
    pub link_failures: u64,
    /// Checkpoint writes that failed (a restart then would miss their changes).
    pub checkpoint_failures: u64,
    /// Containers adopted at start, still running after the agent restarted.
    pub containers_recovered: u64,
    /// Whether the link is registered with a master now.
    pub connected: bool,
}

/// The link's side: keeps the counters and publishes a fresh snapshot on each change.
pub struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
    current: Snapshot,
}

impl Publisher {
    pub fn new() -> (Publisher, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        (
            Publisher {
                tx,
                current: Snapshot::default(),
            },
            rx,
        )
    }

    /// Publishes a report and its tasks' limits; `sent` when it went to the master.
    pub fn report(&mut self, report: Report, limits: Vec<Limits>, sent: bool) {
        if sent {
            self.current.reports_sent += 1;
        }
        if !report.agent_id.as_str().is_empty() {
            self.current.agent_id = Some(report.agent_id.clone());
        }
        self.current.report = Some(report);
        self.current.limits = limits;
        self.publish();
    }

    pub fn registered(&mut self, agent_id: &AgentId) {
        self.current.registrations += 1;
        self.current.connected = true;
        self.current.agent_id = Some(agent_id.clone());
        self.publish();
    }

    pub fn checkpoint_failed(&mut self) {
        self.current.checkpoint_failures += 1;
        self.publish();
    }

    pub fn container_recovered(&mut self) {
        self.current.containers_recovered += 1;
        self.publish();
    }

    pub fn link_failed(&mut self) {
        self.current.link_failures += 1;
        self.current.connected = false;
        self.publish();
    }

    fn publish(&self) {
        // Nobody listening (no HTTP endpoint configured) is fine.
        let _ = self.tx.send(Arc::new(self.current.clone()));
    }
}

#[derive(Clone)]
struct Served {
    info: Arc<AgentInfo>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// `<work_dir>/slaves`: the only tree /files serves.
    sandboxes: Arc<std::path::PathBuf>,
}

/// Serves until `stop` turns true (or its sender goes away). Blocks: run it on its own thread.
pub fn serve(
    listener: std::net::TcpListener,
    info: AgentInfo,
    sandboxes: std::path::PathBuf,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the agent's HTTP runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot serve the agent's HTTP endpoint: {e}");
                return;
            }
        };
        let app = Router::new()
            .route("/health", get(health))
            .route("/state", get(state))
            .route("/metrics", get(metrics))
            .route("/monitor/statistics", get(statistics))
            .route("/monitor/statistics.json", get(statistics))
            .route("/files/browse", get(files_browse))
            .route("/files/read", get(files_read))
            .route("/files/download", get(files_download))
            .fallback(not_found)
            .with_state(Served {
                info: Arc::new(info),
                snapshot,
                sandboxes: Arc::new(sandboxes),
            });
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("agent HTTP server failed: {e}");
        }
    });
}

/// `?path=P&offset=N&length=M` of the /files endpoints (`offset=-1`: the size only).
#[derive(serde::Deserialize)]
struct FilesQuery {
    #[serde(default)]
    path: String,
    offset: Option<i64>,
    length: Option<u64>,
}

fn files_refused(refused: crate::files::Refused) -> Response {
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
    if status == StatusCode::FORBIDDEN {
        tracing::warn!("/files refused: {}", refused.message);
    }
    (status, format!("{}\n", refused.message)).into_response()
}

async fn files_browse(
    State(served): State<Served>,
    axum::extract::Query(q): axum::extract::Query<FilesQuery>,
) -> Response {
    match crate::files::browse(&served.sandboxes, &q.path) {
        Ok(entries) => axum::Json(entries).into_response(),
        Err(refused) => files_refused(refused),
    }
}

async fn files_read(
    State(served): State<Served>,
    axum::extract::Query(q): axum::extract::Query<FilesQuery>,
) -> Response {
    let offset = match q.offset {
        Some(n) if n < 0 => None,
        Some(n) => Some(n.unsigned_abs()),
        None => Some(0),
    };
    match crate::files::read(&served.sandboxes, &q.path, offset, q.length) {
        Ok(chunk) => axum::Json(chunk).into_response(),
        Err(refused) => files_refused(refused),
    }
}

async fn files_download(
    State(served): State<Served>,
    axum::extract::Query(q): axum::extract::Query<FilesQuery>,
) -> Response {
    match crate::files::download(&served.sandboxes, &q.path) {
        Ok((name, bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(refused) => files_refused(refused),
    }
}

async fn health() -> &'static str {
    "OK\n"
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint '{}' on this agent; it serves /health, /state, /metrics, \
             /monitor/statistics and /files/{{browse,read,download}}\n",
            uri.path()
        ),
    )
        .into_response()
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize: {e}\n"),
        )
            .into_response(),
    }
}

async fn statistics(State(served): State<Served>) -> Response {
    let snapshot = served.snapshot.borrow().clone();
    json(&task_statistics(&snapshot))
}

async fn state(State(served): State<Served>) -> Response {
    let snapshot = served.snapshot.borrow().clone();
    json(&AgentState::of(&served.info, &snapshot))
}

async fn metrics(State(served): State<Served>) -> Response {
    let snapshot = served.snapshot.borrow().clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&snapshot),
    )
        .into_response()
}

/// One element of /monitor/statistics, as Mesos' ResourceUsage per executor: a command task
/// is its own executor here, so `executor_id` and `source` are the task id.
#[derive(Debug, Serialize)]
pub struct TaskStatistics {
    pub framework_id: String,
    pub executor_id: String,
    pub executor_name: String,
    pub task_id: String,
    pub source: String,
    pub statistics: Statistics,
}

/// Mesos' ResourceStatistics fields the agent measures, plus the bytes written. Limits of
/// zero (none given) are left out. CPU time is one total (user plus system).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Statistics {
    /// Seconds since the Unix epoch when the usage was read.
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_limit: Option<f64>,
    pub cpus_total_time_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit_bytes: Option<u64>,
    pub mem_total_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_limit_bytes: Option<u64>,
    pub disk_used_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub write_bytes: u64,
}

impl Statistics {
    fn of(usage: &Usage, limits: Limits, timestamp_ms: u64) -> Statistics {
        let nonzero = |v: u64| (v > 0).then_some(v);
        Statistics {
            timestamp: timestamp_ms as f64 / 1000.0,
            cpus_limit: (limits.cpus > 0.0).then_some(limits.cpus),
            cpus_total_time_secs: usage.cpu_time_ns as f64 / 1e9,
            mem_limit_bytes: nonzero(limits.mem_bytes),
            mem_total_bytes: usage.mem_bytes,
            disk_limit_bytes: nonzero(limits.disk_bytes),
            disk_used_bytes: usage.disk_bytes,
            net_rx_bytes: usage.net_rx_bytes,
            net_tx_bytes: usage.net_tx_bytes,
            write_bytes: usage.bytes_written,
        }
    }
}

/// The body of /monitor/statistics: one element per live task of the last report.
pub fn task_statistics(snapshot: &Snapshot) -> Vec<TaskStatistics> {
    let Some(report) = &snapshot.report else {
        return Vec::new();
    };
    report
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let limits = snapshot.limits.get(i).copied().unwrap_or_default();
            TaskStatistics {
                framework_id: t.framework_id.to_string(),
                executor_id: t.task_id.to_string(),
                executor_name: format!("Command Executor (Task: {})", t.task_id),
                task_id: t.task_id.to_string(),
                source: t.task_id.to_string(),
                statistics: Statistics::of(&t.usage, limits, report.timestamp_ms),
            }
        })
        .collect()
}

/// The body of /state: who the agent is, its link counters and its totals (tasks that have
/// ended included in the counters, so they never go backwards).
#[derive(Debug, Serialize)]
struct AgentState<'a> {
    id: Option<&'a str>,
    hostname: &'a str,
    http_address: &'a str,
    resources: &'a Resources,
    connected: bool,
    tasks_running: usize,
    last_report_seq: Option<u64>,
    reports_sent: u64,
    registrations: u64,
    link_failures: u64,
    usage_total: Statistics,
}

impl<'a> AgentState<'a> {
    fn of(info: &'a AgentInfo, snapshot: &'a Snapshot) -> AgentState<'a> {
        let report = snapshot.report.as_ref();
        AgentState {
            id: snapshot.agent_id.as_ref().map(AgentId::as_str),
            hostname: &info.hostname,
            http_address: &info.http_address,
            resources: &info.resources,
            connected: snapshot.connected,
            tasks_running: report.map_or(0, |r| r.tasks.len()),
            last_report_seq: report.map(|r| r.seq),
            reports_sent: snapshot.reports_sent,
            registrations: snapshot.registrations,
            link_failures: snapshot.link_failures,
            usage_total: report
                .map(|r| Statistics::of(&r.total, Limits::of(&info.resources), r.timestamp_ms))
                .unwrap_or_default(),
        }
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the per-task series (labelled framework_id and task_id), the agent's totals and
/// the link's counters in the Prometheus text format.
pub fn render_metrics(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let tasks: &[_] = snapshot.report.as_ref().map_or(&[], |r| &r.tasks);
    let labels: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{{framework_id=\"{}\",task_id=\"{}\"}}",
                label(t.framework_id.as_str()),
                label(t.task_id.as_str())
            )
        })
        .collect();
    let limits = |i: usize| snapshot.limits.get(i).copied().unwrap_or_default();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(&str, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    type Per<'a> = &'a dyn Fn(&Usage, Limits) -> Option<f64>;
    let per_task: [(&str, &str, &str, Per); 9] = [
        (
            "fleet_agent_task_cpu_seconds_total",
            "counter",
            "CPU time used by the task (user and system), in seconds.",
            &|u, _| Some(u.cpu_time_ns as f64 / 1e9),
        ),
        (
            "fleet_agent_task_cpus_limit",
            "gauge",
            "CPUs the task was given.",
            &|_, l| (l.cpus > 0.0).then_some(l.cpus),
        ),
        (
            "fleet_agent_task_memory_bytes",
            "gauge",
            "Memory charged to the task's cgroup, in bytes.",
            &|u, _| Some(u.mem_bytes as f64),
        ),
        (
            "fleet_agent_task_memory_limit_bytes",
            "gauge",
            "The task's memory limit, in bytes.",
            &|_, l| (l.mem_bytes > 0).then_some(l.mem_bytes as f64),
        ),
        (
            "fleet_agent_task_disk_bytes",
            "gauge",
            "Disk space the task holds, in bytes, counted in the kernel.",
            &|u, _| Some(u.disk_bytes as f64),
        ),
        (
            "fleet_agent_task_disk_limit_bytes",
            "gauge",
            "The task's disk limit, in bytes.",
            &|_, l| (l.disk_bytes > 0).then_some(l.disk_bytes as f64),
        ),
        (
            "fleet_agent_task_network_receive_bytes_total",
            "counter",
            "Bytes the task received.",
            &|u, _| Some(u.net_rx_bytes as f64),
        ),
        (
            "fleet_agent_task_network_transmit_bytes_total",
            "counter",
            "Bytes the task sent.",
            &|u, _| Some(u.net_tx_bytes as f64),
        ),
        (
            "fleet_agent_task_written_bytes_total",
            "counter",
            "Bytes the task wrote with write(2)-family calls.",
            &|u, _| Some(u.bytes_written as f64),
        ),
    ];
    for (name, kind, help, value) in per_task {
        let samples = tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((labels[i].as_str(), value(&t.usage, limits(i))?)))
            .collect();
        family(name, kind, help, samples);
    }
    let total = snapshot
        .report
        .as_ref()
        .map(|r| r.total)
        .unwrap_or_default();
    let totals: [(&str, &str, &str, f64); 6] = [
        (
            "fleet_agent_cpu_seconds_total",
            "counter",
            "CPU time used by all tasks, ended ones included, in seconds.",
            total.cpu_time_ns as f64 / 1e9,
        ),
        (
            "fleet_agent_memory_bytes",
            "gauge",
            "Memory charged to running tasks, in bytes.",
            total.mem_bytes as f64,
        ),
        (
            "fleet_agent_disk_bytes",
            "gauge",
            "Disk space held by running tasks, in bytes.",
            total.disk_bytes as f64,
        ),
        (
            "fleet_agent_network_receive_bytes_total",
            "counter",
            "Bytes received by all tasks, ended ones included.",
            total.net_rx_bytes as f64,
        ),
        (
            "fleet_agent_network_transmit_bytes_total",
            "counter",
            "Bytes sent by all tasks, ended ones included.",
            total.net_tx_bytes as f64,
        ),
        (
            "fleet_agent_written_bytes_total",
            "counter",
            "Bytes written by all tasks, ended ones included.",
            total.bytes_written as f64,
        ),
    ];
    for (name, kind, help, value) in totals {
        family(name, kind, help, vec![("", value)]);
    }
    let link: [(&str, &str, &str, f64); 8] = [
        (
            "fleet_agent_tasks",
            "gauge",
            "Tasks running on this agent.",
            tasks.len() as f64,
        ),
        (
            "fleet_agent_registered",
            "gauge",
            "1 while the agent is registered with a master.",
            if snapshot.connected { 1.0 } else { 0.0 },
        ),
        (
            "fleet_agent_reports_sent_total",
            "counter",
            "Usage reports written to the master.",
            snapshot.reports_sent as f64,
        ),
        (
            "fleet_agent_registrations_total",
            "counter",
            "Registrations with a master: the first, then one per reconnect.",
            snapshot.registrations as f64,
        ),
        (
            "fleet_agent_link_failures_total",
            "counter",
            "Links to the master that failed or were lost.",
            snapshot.link_failures as f64,
        ),
        (
            "fleet_agent_checkpoint_failures_total",
            "counter",
            "Checkpoint writes that failed.",
            snapshot.checkpoint_failures as f64,
        ),
        (
            "fleet_agent_containers_recovered_total",
            "counter",
            "Containers found still running when the agent started, and adopted.",
            snapshot.containers_recovered as f64,
        ),
        (
            "fleet_agent_last_report_timestamp_seconds",
            "gauge",
            "When the last report's usage was read, in seconds since the Unix epoch.",
            snapshot
                .report
                .as_ref()
                .map_or(0.0, |r| r.timestamp_ms as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, value) in link {
        family(name, kind, help, vec![("", value)]);
    }
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
