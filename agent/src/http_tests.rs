use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use fleet_proto::ids::{FrameworkId, TaskId};
use fleet_proto::messages::agent::TaskUsage;

use super::*;

fn usage(n: u64) -> Usage {
    Usage {
        cpu_time_ns: 1_500_000_000 * n,
        mem_bytes: 10 << 20,
        disk_bytes: 4096 * n,
        net_rx_bytes: 100 * n,
        net_tx_bytes: 200 * n,
        bytes_written: 1000 * n,
    }
}

fn snapshot() -> Snapshot {
    let (mut publisher, rx) = Publisher::new();
    publisher.registered(&AgentId::new("agent-1"));
    let report = Report {
        agent_id: AgentId::new("agent-1"),
        seq: 7,
        timestamp_ms: 1_700_000_000_500,
        tasks: vec![
            TaskUsage {
                framework_id: FrameworkId::new("fw-1"),
                task_id: TaskId::new("web-1"),
                usage: usage(1),
                pid: 0,
            },
            TaskUsage {
                framework_id: FrameworkId::new("fw-\"2\""),
                task_id: TaskId::new("batch\\2"),
                usage: usage(2),
                pid: 0,
            },
        ],
        total: usage(5),
    };
    let limits = vec![
        Limits::of(&Resources::parse("cpus:0.5;mem:64;disk:16").unwrap()),
        Limits::default(),
    ];
    publisher.report(report, limits, true);
    let published = rx.borrow().clone();
    (*published).clone()
}

#[test]
fn limits_follow_the_task_resources() {
    let limits = Limits::of(&Resources::parse("cpus:0.5;mem:64;disk:16").unwrap());
    assert_eq!(limits.cpus, 0.5);
    assert_eq!(limits.mem_bytes, 64 << 20);
    assert_eq!(limits.disk_bytes, 16 << 20);
    assert_eq!(
        Limits::of(&Resources::parse("cpus:1").unwrap()),
        Limits {
            cpus: 1.0,
            mem_bytes: 0,
            disk_bytes: 0
        }
    );
}

#[test]
fn statistics_have_the_mesos_shape_and_leave_out_absent_limits() {
    let body = serde_json::to_value(task_statistics(&snapshot())).unwrap();
    let tasks = body.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let web = &tasks[0];
    assert_eq!(web["framework_id"], "fw-1");
    assert_eq!(web["executor_id"], "web-1");
    assert_eq!(web["task_id"], "web-1");
    assert_eq!(web["source"], "web-1");
    let s = &web["statistics"];
    assert_eq!(s["timestamp"], 1_700_000_000.5);
    assert_eq!(s["cpus_limit"], 0.5);
    assert_eq!(s["cpus_total_time_secs"], 1.5);
    assert_eq!(s["mem_limit_bytes"], 64 << 20);
    assert_eq!(s["mem_total_bytes"], 10 << 20);
    assert_eq!(s["disk_limit_bytes"], 16 << 20);
    assert_eq!(s["disk_used_bytes"], 4096);
    assert_eq!(s["net_rx_bytes"], 100);
    assert_eq!(s["net_tx_bytes"], 200);
    assert_eq!(s["write_bytes"], 1000);
    let batch = &tasks[1]["statistics"];
    for absent in ["cpus_limit", "mem_limit_bytes", "disk_limit_bytes"] {
        assert!(batch.get(absent).is_none(), "{absent} in {batch}");
    }
    assert!(task_statistics(&Snapshot::default()).is_empty());
}

#[test]
fn metrics_label_each_task_and_escape_the_labels() {
    let text = render_metrics(&snapshot());
    assert!(
        text.contains(
            "fleet_agent_task_cpu_seconds_total{framework_id=\"fw-1\",task_id=\"web-1\"} 1.5\n"
        ),
        "{text}"
    );
    assert!(text.contains(
        "fleet_agent_task_disk_limit_bytes{framework_id=\"fw-1\",task_id=\"web-1\"} 16777216\n"
    ));
    assert!(text.contains(
        "fleet_agent_task_written_bytes_total{framework_id=\"fw-\\\"2\\\"\",task_id=\"batch\\\\2\"} 2000\n"
    ));
    // A task without a disk limit has no limit series.
    assert_eq!(
        text.matches("fleet_agent_task_disk_limit_bytes{").count(),
        1
    );
    assert!(text.contains("\nfleet_agent_cpu_seconds_total 7.5\n"));
    assert!(text.contains("\nfleet_agent_tasks 2\n"));
    assert!(text.contains("\nfleet_agent_reports_sent_total 1\n"));
    assert!(text.contains("\nfleet_agent_registrations_total 1\n"));
    assert!(text.contains("\nfleet_agent_registered 1\n"));
    assert!(text.contains("# TYPE fleet_agent_task_memory_bytes gauge\n"));
    // Every sample line is "name{labels} value" or "name value".
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line '{line}'");
    }
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serves_each_endpoint_and_stops() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info = AgentInfo {
        hostname: "h".into(),
        http_address: addr.to_string(),
        resources: Resources::parse("cpus:2;mem:1024").unwrap(),
        attributes: Default::default(),
    };
    let (tx, rx) = watch::channel(Arc::new(snapshot()));
    let (stop, stop_rx) = watch::channel(false);
    let work = tempfile::tempdir().unwrap();
    let sandboxes = work.path().join("slaves");
    let sandbox = sandboxes.join("a/frameworks/f/executors/t/runs/c");
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::write(sandbox.join("stdout"), "out\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", sandbox.join("escape")).unwrap();
    let server = std::thread::spawn(move || serve(listener, info, sandboxes, rx, stop_rx));

    assert_eq!(get(addr, "/health"), (200, "OK\n".into()));
    let stdout = format!("{}/stdout", sandbox.display());
    let (status, body) = get(addr, &format!("/files/read?path={stdout}&offset=0"));
    assert_eq!(status, 200, "{body}");
    let chunk: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(chunk["data"], "out\n");
    let (status, body) = get(addr, &format!("/files/read?path={stdout}&offset=-1"));
    assert_eq!(
        (status, body.contains("\"offset\":4")),
        (200, true),
        "{body}"
    );
    let (status, body) = get(addr, &format!("/files/browse?path={}", sandbox.display()));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stdout"), "{body}");
    let (status, body) = get(addr, &format!("/files/download?path={stdout}"));
    assert_eq!((status, body.as_str()), (200, "out\n"));
    let (status, body) = get(
        addr,
        &format!("/files/read?path={}/escape", sandbox.display()),
    );
    assert_eq!(
        status, 403,
        "a symlink out of the sandbox was followed: {body}"
    );
    let (status, _) = get(
        addr,
        &format!(
            "/files/read?path={}/../../../../../../../secret",
            sandbox.display()
        ),
    );
    assert!(status == 403 || status == 404, "{status}");
    let (status, _) = get(addr, "/files/read?path=/etc/hostname");
    assert_eq!(status, 403);
    let (status, body) = get(addr, "/monitor/statistics");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats[0]["task_id"], "web-1");
    let (status, body) = get(addr, "/state");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["id"], "agent-1");
    assert_eq!(state["http_address"], addr.to_string());
    assert_eq!(state["usage_total"]["net_tx_bytes"], 1000);
    assert_eq!(state["usage_total"]["cpus_limit"], 2.0);
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("fleet_agent_task_cpus_limit{"), "{body}");
    let (status, body) = get(addr, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("'/nope'"), "{body}");

    // A new snapshot is served as soon as it is published.
    tx.send(Arc::new(Snapshot::default())).unwrap();
    assert_eq!(get(addr, "/monitor/statistics").1.trim(), "[]");

    stop.send(true).unwrap();
    server.join().unwrap();
    // Other tests in this process fork children; one caught between fork and exec holds
    // a copy of the listening socket for a moment, so give it a short while to go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while TcpStream::connect(addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "still listening");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
