//! The replicated master with real processes on loopback: three `fleet master --peers`
//! and one `fleet agent --master A,B,C`. The leader is SIGKILLed ten times while a
//! framework launches tasks continuously; each time another master serves within 2 s,
//! every task running at the kill is known to the new leader with its right state, the
//! killed master is started again on its data dir and catches up. At the end every
//! accepted launch ended in a reported state and no task ran twice. A flipped byte in a
//! master's WAL segment stops that master at start, naming the file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use fleet_client::{MasterEndpoint, SchedulerClient};
use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::scheduler::{Call, Event, Filters, Operation, ReconcileTask};
use fleet_proto::task::TaskState;
use fleet_tests::masters::Masters;
use fleet_tests::{fleet_bin, http_with, output_within, sdk, text, wait_until};

const KILLS: usize = 10;
/// Tasks launched per offer, and at most this many unfinished at once.
const PER_OFFER: usize = 2;
const MAX_UNFINISHED: usize = 8;
/// How long a task runs: long enough to be running across a kill.
const TASK_SECONDS: &str = "3";

/// What the framework knows, shared with the test.
#[derive(Default)]
struct Book {
    /// Every launch the framework sent (ACCEPT written or attempted), with its agent.
    launched: BTreeMap<TaskId, AgentId>,
    /// The latest state reported for each task.
    states: BTreeMap<TaskId, TaskState>,
    /// Tasks ever reported TASK_RUNNING.
    ever_running: usize,
    /// The masters subscribed with, in order.
    subscriptions: Vec<String>,
    /// Why sessions ended.
    losses: Vec<String>,
}

impl Book {
    fn unfinished(&self) -> Vec<(TaskId, AgentId)> {
        self.launched
            .iter()
            .filter(|(id, _)| !self.states.get(*id).is_some_and(|s| s.is_terminal()))
            .map(|(id, agent)| (id.clone(), agent.clone()))
            .collect()
    }
}

type Shared = Arc<Mutex<Book>>;

/// The tests of this file run one at a time: each starts several masters, and the
/// failover test measures elections, which a busy 2-core machine would slow down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn book(shared: &Shared) -> std::sync::MutexGuard<'_, Book> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The framework: subscribes with the leader (again with its id after each failover),
/// launches `PER_OFFER` tasks per offer while `launching`, reconciles what is unfinished
/// every second, and ends (TEARDOWN) once launching stopped and every task ended.
async fn framework(
    masters: Vec<MasterEndpoint>,
    shared: Shared,
    launching: Arc<AtomicBool>,
    launches: PathBuf,
) -> Result<()> {
    let mut id: Option<FrameworkId> = None;
    let mut next = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the framework ran out of time"
        );
        let mut info = sdk::framework("failover-test");
        info.id = id.clone();
        info.failover_timeout_ms = 300_000;
        let (client, mut events) = match SchedulerClient::connect_any(&masters, info).await {
            Ok(session) => session,
            Err(e) => {
                book(&shared).losses.push(format!("subscribe: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        id = Some(client.framework_id().clone());
        book(&shared)
            .subscriptions
            .push(client.master_addr().to_string());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let lost = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Offers { offers })) => {
                        let mut failed = None;
                        for offer in offers {
                            let room = MAX_UNFINISHED.saturating_sub(book(&shared).unfinished().len());
                            let count = if launching.load(Ordering::Relaxed) { room.min(PER_OFFER) } else { 0 };
                            if count == 0 {
                                let filters = Some(Filters { refuse_seconds: 1.0 });
                                let _ = client.decline(vec![offer.id], filters).await;
                                continue;
                            }
                            let mut tasks = Vec::new();
                            for _ in 0..count {
                                next += 1;
                                let task_id = format!("t-{next}");
                                let script = format!(
                                    "echo {task_id} >> {}; sleep {TASK_SECONDS}",
                                    launches.display()
                                );
                                tasks.push(sdk::task(
                                    &offer.agent_id,
                                    &task_id,
                                    "cpus:0.1;mem:32",
                                    &["sh", "-c", &script],
                                )?);
                                book(&shared).launched.insert(TaskId(task_id), offer.agent_id.clone());
                            }
                            let launch = vec![Operation::Launch { tasks }];
                            if let Err(e) = client.accept(vec![offer.id], launch, None).await {
                                failed = Some(format!("ACCEPT: {e}"));
                                break;
                            }
                        }
                        if let Some(why) = failed {
                            break why;
                        }
                    }
                    Some(Ok(Event::Update { status })) => {
                        {
                            let mut b = book(&shared);
                            if status.state == TaskState::Running
                                && b.states.get(&status.task_id) != Some(&TaskState::Running)
                                && !b.states.get(&status.task_id).is_some_and(|s| s.is_terminal())
                            {
                                b.ever_running += 1;
                            }
                            // A terminal state is final: a late RUNNING resent before it
                            // does not undo it.
                            if !b.states.get(&status.task_id).is_some_and(|s| s.is_terminal()) {
                                b.states.insert(status.task_id.clone(), status.state);
                            }
                        }
                        let _ = client.acknowledge(&status).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "the event stream ended".to_owned(),
                },
                _ = tick.tick() => {
                    let unfinished = book(&shared).unfinished();
                    if unfinished.is_empty() && !launching.load(Ordering::Relaxed) {
                        client.teardown().await?;
                        return Ok(());
                    }
                    let tasks = unfinished
                        .into_iter()
                        .map(|(task_id, agent_id)| ReconcileTask { task_id, agent_id: Some(agent_id) })
                        .collect();
                    if let Err(e) = client.call(&Call::Reconcile { tasks }).await {
                        break format!("RECONCILE: {e}");
                    }
                }
            }
        };
        book(&shared).losses.push(lost);
    }
}

/// Task id -> state name of every task master `i` knows (live and completed).
fn known_tasks(masters: &Masters, i: usize) -> Result<BTreeMap<String, String>> {
    let state = masters.state(i)?;
    let mut known = BTreeMap::new();
    for list in ["tasks", "completed_tasks"] {
        for task in state[list].as_array().into_iter().flatten() {
            let id = task["id"].as_str().unwrap_or_default().to_owned();
            let state = task["state"].as_str().unwrap_or_default().to_owned();
            known.insert(id, state);
        }
    }
    Ok(known)
}

fn launch_counts(file: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *counts.entry(line.trim().to_owned()).or_default() += 1;
    }
    counts
}

#[test]
fn leader_killed_ten_times_while_a_framework_launches() -> Result<()> {
    let _serial = one_at_a_time();
    let mut masters = Masters::start(3, &[])?;
    masters.start_agent(&[])?;
    let launches = masters.dir.path().join("launches");
    let shared: Shared = Arc::default();
    let launching = Arc::new(AtomicBool::new(true));
    let framework = {
        let (endpoints, shared, launching, launches) = (
            masters.endpoints()?,
            shared.clone(),
            launching.clone(),
            launches.clone(),
        );
        std::thread::spawn(move || -> Result<()> {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(framework(endpoints, shared, launching, launches))
        })
    };
    let mut elections = Vec::new();
    let mut restarted = Vec::new();
    let mut restarted_led = 0;
    for round in 1..=KILLS {
        let before = book(&shared).ever_running;
        let waited = wait_until(Duration::from_secs(60), "two more tasks running", || {
            Ok((book(&shared).ever_running >= before + 2).then_some(()))
        });
        if let Err(e) = waited {
            bail!("round {round}: {e:#}\n{}", masters.logs());
        }
        let leader = masters
            .serving()
            .with_context(|| format!("round {round}: no master serves"))?;
        let running: Vec<TaskId> = book(&shared)
            .states
            .iter()
            .filter(|(_, s)| **s == TaskState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        masters.kill(leader);
        let (new, took) = match masters.wait_leader(Duration::from_secs(10), Some(leader)) {
            Ok(found) => found,
            Err(e) => bail!("round {round}: {e:#}\n{}", masters.logs()),
        };
        println!(
            "round {round}: killed the leader {} (node {}); {} (node {}) serves after {} ms; \
             {} tasks were running",
            masters.addrs[leader],
            leader + 1,
            masters.addrs[new],
            new + 1,
            took.as_millis(),
            running.len()
        );
        elections.push(took);
        if restarted.contains(&new) {
            restarted_led += 1;
        }
        masters.spawn_master(leader)?;
        restarted.push(leader);
        // The new leader learns the tasks from the agent's re-registration.
        let known = wait_until(
            Duration::from_secs(30),
            "the new leader to know every task running at the kill",
            || {
                let known = known_tasks(&masters, new)?;
                let b = book(&shared);
                for task in &running {
                    let finished = b.states.get(task) == Some(&TaskState::Finished);
                    match known.get(task.as_str()).map(String::as_str) {
                        Some("TASK_RUNNING" | "TASK_FINISHED") => {}
                        None if finished => {}
                        Some(other) => bail!("task {task} is {other} on the new leader"),
                        None => return Ok(None),
                    }
                }
                Ok(Some(()))
            },
        );
        if let Err(e) = known {
            bail!("round {round}: {e:#}\n{}", masters.logs());
        }
        // The restarted master catches up with the leader's log.
        let caught_up = wait_until(
            Duration::from_secs(20),
            "the restarted master to catch up",
            || {
                let leader_commit = masters.raft(new)?["commit_index"].as_u64();
                let applied = masters.raft(leader)?["last_applied"].as_u64();
                Ok((applied >= leader_commit && applied.is_some()).then_some(applied))
            },
        );
        match caught_up {
            Ok(applied) => println!(
                "round {round}: restarted node {} caught up to index {}",
                leader + 1,
                applied.unwrap_or_default()
            ),
            Err(e) => bail!("round {round}: {e:#}\n{}", masters.logs()),
        }
    }
    launching.store(false, Ordering::Relaxed);
    let ended = framework
        .join()
        .map_err(|_| anyhow::anyhow!("the framework thread panicked"))?;
    if let Err(e) = ended {
        bail!("framework: {e:#}\n{}", masters.logs());
    }

    let b = book(&shared);
    let counts = launch_counts(&launches);
    println!(
        "{} launches, {} tasks ran, {} subscriptions, sessions lost: {:?}",
        b.launched.len(),
        counts.len(),
        b.subscriptions.len(),
        b.losses
    );
    for (task, n) in &counts {
        ensure!(*n == 1, "task {task} ran {n} times");
    }
    for task in b.launched.keys() {
        let state = b.states.get(task);
        let ran = counts.contains_key(task.as_str());
        match state {
            Some(TaskState::Finished) => {
                ensure!(ran, "task {task} is reported FINISHED but never ran")
            }
            Some(s) if s.is_terminal() => ensure!(
                !ran,
                "task {task} ran but ended {s} (a failover must not end a running task)"
            ),
            other => bail!("task {task} ended in no reported state (last: {other:?})"),
        }
    }
    let mut millis: Vec<u128> = elections.iter().map(Duration::as_millis).collect();
    millis.sort_unstable();
    println!(
        "new leader served after (ms, sorted): {millis:?}; a restarted master led {restarted_led} times"
    );
    ensure!(
        elections.iter().all(|d| *d <= Duration::from_secs(2)),
        "a new leader took more than 2 s: {millis:?}"
    );
    ensure!(restarted_led > 0, "no restarted master ever became leader");
    Ok(())
}

/// Followers send HTTP to the leader (307), answer /raft and /metrics themselves, and
/// `fleet status --master A,B,C` names the leader with its term and commit index.
#[test]
fn followers_redirect_and_everyone_reports_the_raft_group() -> Result<()> {
    let _serial = one_at_a_time();
    let masters = Masters::start(3, &[])?;
    let (leader, _) = masters.wait_leader(Duration::from_secs(30), None)?;
    let follower = (leader + 1) % 3;
    // A follower knows the leader from its first heartbeat.
    let answer = wait_until(Duration::from_secs(5), "a follower to redirect", || {
        let answer = http_with(masters.addrs[follower], "GET", "/state", &[], "")?;
        Ok((answer.status == 307).then_some(answer))
    })?;
    let location = format!("location: http://{}/state", masters.addrs[leader]);
    ensure!(
        answer.headers.to_ascii_lowercase().contains(&location),
        "no {location}: {answer:?}"
    );
    let raft = masters.raft(follower)?;
    ensure!(raft["role"] == "follower", "{raft}");
    ensure!(
        raft["leader_address"] == masters.addrs[leader].to_string().as_str(),
        "{raft}"
    );
    let metrics = http_with(masters.addrs[leader], "GET", "/metrics", &[], "")?.body;
    for series in [
        "fleet_master_raft_is_leader 1",
        "fleet_master_raft_term ",
        "fleet_master_raft_commit_index ",
        "fleet_master_raft_apply_lag 0",
        "fleet_master_raft_wal_fsync_seconds_bucket",
        "fleet_master_raft_commit_seconds_count",
    ] {
        ensure!(
            metrics.contains(series),
            "/metrics lacks {series}:\n{metrics}"
        );
    }
    let fsyncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fleet_master_raft_wal_fsync_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(fsyncs > 0, "no fsync timed:\n{metrics}");
    let follower_metrics = http_with(masters.addrs[follower], "GET", "/metrics", &[], "")?;
    ensure!(
        follower_metrics.status == 200
            && follower_metrics
                .body
                .contains("fleet_master_raft_is_leader 0"),
        "{follower_metrics:?}"
    );
    let out = output_within(
        Command::new(fleet_bin())
            .env("FLEET_HOME", masters.dir.path().join("home"))
            .args(["status", "--master", &masters.list()]),
        Duration::from_secs(30),
    )?;
    let said = text(&out);
    ensure!(out.status.success(), "fleet status failed:\n{said}");
    let row = said
        .lines()
        .find(|l| l.starts_with(&masters.addrs[leader].to_string()))
        .with_context(|| format!("no MASTERS row for the leader:\n{said}"))?;
    ensure!(row.contains(" leader "), "{said}");
    println!("{said}");
    Ok(())
}

/// Sends `signal` to master `i`.
fn signal(masters: &Masters, i: usize, signal: i32) -> Result<()> {
    let pid = masters.masters[i]
        .as_ref()
        .and_then(fleet_tests::Process::pid)
        .context("the master is not running")?;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    ensure!(rc == 0, "kill({pid}, {signal}) failed");
    Ok(())
}

/// How many masters say they serve (`/raft`), asked one after the other.
fn serving_now(masters: &Masters) -> usize {
    (0..masters.addrs.len())
        .filter(|&i| {
            masters
                .raft(i)
                .is_ok_and(|r| r["serving"].as_bool() == Some(true))
        })
        .count()
}

/// A leader cut off from the others (stopped with SIGSTOP: it hears nothing and says
/// nothing) is replaced; when it comes back its lease has run out, so it does not serve,
/// it follows the new leader and has the registry write made meanwhile, and it sends
/// registry writes (UPDATE_WEIGHTS) to the leader. At no time do two masters serve.
#[test]
fn a_leader_cut_off_stops_serving_and_only_one_master_takes_writes() -> Result<()> {
    let _serial = one_at_a_time();
    let masters = Masters::start(3, &[])?;
    let (old, _) = masters.wait_leader(Duration::from_secs(30), None)?;
    signal(&masters, old, libc::SIGSTOP)?;
    let (new, took) = masters.wait_leader(Duration::from_secs(10), Some(old))?;
    println!(
        "node {} stopped; node {} serves after {} ms",
        old + 1,
        new + 1,
        took.as_millis()
    );
    let weights = r#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "web", "weight": 3}]}}"#;
    let answer = http_with(masters.addrs[new], "POST", "/api/v1", &[], weights)?;
    ensure!(
        answer.status == 200,
        "UPDATE_WEIGHTS on the new leader: {answer:?}"
    );
    let commit = masters.raft(new)?["commit_index"].as_u64();
    signal(&masters, old, libc::SIGCONT)?;
    let started = std::time::Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let serving = serving_now(&masters);
        ensure!(serving <= 1, "{serving} masters serve at once");
        samples += 1;
    }
    let raft = wait_until(
        Duration::from_secs(10),
        "the old leader to follow the new one",
        || {
            let raft = masters.raft(old)?;
            let follows = raft["serving"] == false
                && raft["leader_address"] == masters.addrs[new].to_string().as_str()
                && raft["last_applied"].as_u64() >= commit;
            Ok(follows.then_some(raft))
        },
    )?;
    ensure!(raft["role"] == "follower", "{raft}");
    let answer = http_with(masters.addrs[old], "POST", "/api/v1", &[], weights)?;
    ensure!(
        answer.status == 307,
        "UPDATE_WEIGHTS on the old leader was not sent to the leader: {answer:?}"
    );
    println!("{samples} samples of /raft on every master: never two serving; old leader: {raft}");
    Ok(())
}

#[test]
fn a_flipped_byte_in_the_wal_stops_the_master_naming_file_and_offset() -> Result<()> {
    let _serial = one_at_a_time();
    let mut masters = Masters::start(1, &[])?;
    // A second start appends another entry: the damaged record is not the log's last one
    // (a damaged last record is a torn write, cut at recovery).
    if let Some(mut m) = masters.masters[0].take() {
        m.stop(Duration::from_secs(10));
    }
    masters.spawn_master(0)?;
    masters.wait_leader(Duration::from_secs(30), None)?;
    if let Some(mut m) = masters.masters[0].take() {
        m.stop(Duration::from_secs(10));
    }
    let log_dir = masters.data_dir(0).join("log");
    let segment = std::fs::read_dir(&log_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .min()
        .with_context(|| format!("no WAL segment in {}", log_dir.display()))?;
    let mut bytes = std::fs::read(&segment)?;
    // Segment header (32 bytes), then the first record: length, crc, index (16 bytes),
    // payload. Flip a payload byte.
    let at = 32 + 16 + 2;
    ensure!(
        bytes.len() > at + 16,
        "segment too short: {} bytes",
        bytes.len()
    );
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes)?;
    let out = output_within(&mut masters.master_command(0), Duration::from_secs(30))?;
    let said = text(&out);
    ensure!(
        !out.status.success(),
        "the master started on a damaged log:\n{said}"
    );
    let file = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    ensure!(
        said.contains(file),
        "the error does not name {file}:\n{said}"
    );
    ensure!(
        said.contains("offset 32"),
        "the error does not name offset 32:\n{said}"
    );
    println!("refused: {}", said.trim());
    Ok(())
}
