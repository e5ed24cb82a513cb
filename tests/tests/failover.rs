//! The replicated master with real processes on loopback: three `fleet master --peers`
//! and one `fleet agent --master A,B,C`. The leader is SIGKILLed ten times while a
//! framework launches tasks continuously; each time another master serves within 2 s,
//! every task running at the kill is known to the new leader with its right state, the
//! killed master is started again on its data dir and catches up. At the end every
//! accepted launch ended in a reported state and no task ran twice. Three masters in
//! network namespaces of their own: the leader's link is cut, another master takes over
//! and only one master ever serves or commits a registry write. A flipped byte in a
//! master's WAL segment stops that master at start, naming the file and offset.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fleet_client::{MasterEndpoint, SchedulerClient};
use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::scheduler::{Call, Event, Filters, Operation, ReconcileTask};
use fleet_proto::task::TaskState;
use fleet_tests::masters::Masters;
use fleet_tests::netns::Netns;
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
        // The new leader learns the tasks from the agent's re-registration. On a loaded
        // machine leadership may move on once more (an election timeout passing before a
        // heartbeat): whichever master serves must know them.
        let known = wait_until(
            Duration::from_secs(30),
            "the serving master to know every task running at the kill",
            || {
                let serving = masters
                    .serving_but(None)
                    .context("no master serves at the moment")?;
                let known = known_tasks(&masters, serving)?;
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
                let serving = masters
                    .serving_but(None)
                    .context("no master serves at the moment")?;
                let leader_commit = masters.raft(serving)?["commit_index"].as_u64();
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

/// How long a leader takes clients after the start of its last heartbeat round a quorum
/// confirmed: 80 % of `election_timeout_max` (300 ms), less than the time for which
/// followers refuse to vote for another master (`master/src/shell/replica/mod.rs`).
const STRICT_LEASE: Duration = Duration::from_millis(240);

/// A registry write: the weight of role `web`.
fn set_weight(weight: u32) -> String {
    format!(
        r#"{{"type": "UPDATE_WEIGHTS", "update_weights": {{"weight_infos": [{{"role": "web", "weight": {weight}}}]}}}}"#
    )
}

/// One answer of a master to `GET /raft`: when it was asked and answered, and whether
/// the master said it serves.
struct Sample {
    master: usize,
    sent: Instant,
    answered: Instant,
    serving: bool,
}

/// Asks master `i` at `addr` for `/raft` every 2 ms from inside its own namespace (where
/// it is reachable whether cut off or not) until `stop`, counting answers in `answers`;
/// the answers, and how many requests failed.
fn sample_raft(
    net: &Netns,
    i: usize,
    addr: SocketAddr,
    answers: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<(Vec<Sample>, usize)> {
    Netns::within(net.member(i), || {
        let (mut samples, mut failed) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let raft = http_with(addr, "GET", "/raft", &[], "")
                .and_then(|a| Ok(serde_json::from_str::<serde_json::Value>(&a.body)?));
            let answered = Instant::now();
            match raft {
                Ok(raft) => {
                    samples.push(Sample {
                        master: i,
                        sent,
                        answered,
                        serving: raft["serving"] == true,
                    });
                    answers.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (samples, failed)
    })
}

/// Two masters answered "serving" to requests that overlapped in time: the first such
/// pair, as (earlier, later).
fn overlap(samples: &[Sample]) -> Option<(&Sample, &Sample)> {
    let mut serving: Vec<&Sample> = samples.iter().filter(|s| s.serving).collect();
    serving.sort_by_key(|s| s.sent);
    // Per master, its serving answer that was answered last among those sent so far.
    let mut latest: BTreeMap<usize, &Sample> = BTreeMap::new();
    for s in serving {
        if let Some(other) = latest
            .iter()
            .find(|(m, o)| **m != s.master && o.answered > s.sent)
        {
            return Some((*other.1, s));
        }
        let entry = latest.entry(s.master).or_insert(s);
        if s.answered > entry.answered {
            *entry = s;
        }
    }
    None
}

fn millis_between(from: Instant, to: Instant) -> i128 {
    if to >= from {
        to.duration_since(from).as_millis() as i128
    } else {
        -(from.duration_since(to).as_millis() as i128)
    }
}

/// Three masters, each in a network namespace of its own on a bridge. The leader's link
/// is taken down: the two others elect a new leader, which takes a registry write
/// (UPDATE_WEIGHTS, 200); the cut-off leader says it no longer serves (`/raft`, asked
/// from inside its namespace) within its 240 ms lease, and registry writes sent to it
/// fail (one sent at once, which may reach its core before the lease ends, is not
/// committed; one sent after the lease is refused). Each master is asked for `/raft`
/// every few milliseconds throughout: no two masters ever answer "serving" to requests
/// that overlap in time. Once the link is up again the old leader follows the new one and
/// has applied its write, the leader's weight is the one the new leader took (not one the
/// cut-off leader was sent), and the old leader redirects registry writes (307).
#[test]
fn a_leader_cut_off_stops_serving_and_only_one_master_takes_writes() -> Result<()> {
    let _serial = one_at_a_time();
    let mut masters = Masters::start_in_namespaces(3, &[])?;
    let net = masters.net().context("the masters are not in namespaces")?;
    let old = settled_leader(&masters)?;
    let (answers, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let sampled = std::thread::scope(|scope| -> Result<(Vec<Sample>, usize)> {
        let samplers: Vec<_> = (0..masters.addrs.len())
            .map(|i| {
                let (addr, answers, stop) = (masters.addrs[i], &answers, &stop);
                scope.spawn(move || sample_raft(net, i, addr, answers, stop))
            })
            .collect();
        // Sampling runs before the cut.
        let checked = wait_until(Duration::from_secs(10), "/raft samples", || {
            Ok((answers.load(Ordering::Relaxed) >= 100).then_some(()))
        })
        .and_then(|()| cut_and_heal(&masters, net, old));
        stop.store(true, Ordering::Relaxed);
        let (mut samples, mut failed) = (Vec::new(), 0);
        for sampler in samplers {
            let (s, f) = sampler
                .join()
                .map_err(|_| anyhow::anyhow!("a /raft sampler panicked"))??;
            samples.extend(s);
            failed += f;
        }
        let cut = checked?;
        // The cut-off leader answered "serving" only to requests sent within its lease.
        let late = samples
            .iter()
            .filter(|s| s.master == old && s.serving && s.sent >= cut.done + STRICT_LEASE)
            .map(|s| millis_between(cut.done, s.sent))
            .collect::<Vec<_>>();
        ensure!(
            late.is_empty(),
            "the cut-off leader (node {}) said it serves to requests sent {late:?} ms after \
             its link went down, past its {STRICT_LEASE:?} lease",
            old + 1
        );
        let before: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.master == old && s.answered < cut.started)
            .collect();
        println!(
            "before the cut the leader said it serves in {} of {} samples",
            before.iter().filter(|s| s.serving).count(),
            before.len()
        );
        let last_serving = samples
            .iter()
            .filter(|s| s.master == old && s.serving && s.sent >= cut.started)
            .map(|s| s.answered)
            .max();
        let first_refusal = samples
            .iter()
            .filter(|s| s.master == old && !s.serving && s.sent >= cut.started)
            .map(|s| s.answered)
            .min();
        let new_first_serving = samples
            .iter()
            .filter(|s| s.master == cut.new && s.serving)
            .map(|s| s.sent)
            .min();
        println!(
            "cut-off leader: last 'serving' answered {} ms after the cut, first 'not \
             serving' {} ms after; new leader's first 'serving' asked {} ms after the old \
             one's last",
            last_serving.map_or("-".into(), |t| millis_between(cut.done, t).to_string()),
            first_refusal.map_or("-".into(), |t| millis_between(cut.done, t).to_string()),
            match (last_serving, new_first_serving) {
                (Some(a), Some(b)) => millis_between(a, b).to_string(),
                _ => "-".into(),
            }
        );
        Ok((samples, failed))
    });
    let (samples, failed) = match sampled {
        Ok(sampled) => sampled,
        Err(e) => bail!("{e:#}\n{}", masters.logs()),
    };
    if let Some((a, b)) = overlap(&samples) {
        bail!(
            "two masters served at once: node {} said so to a request answered {} ms after \
             node {} was asked and also said so",
            a.master + 1,
            millis_between(b.sent, a.answered),
            b.master + 1
        );
    }
    println!(
        "{} samples of /raft ({} per master, {failed} failed): never two masters serving \
         at once",
        samples.len(),
        (0..masters.addrs.len())
            .map(|i| samples.iter().filter(|s| s.master == i).count().to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
    Ok(())
}

/// Waits until the same master has served for a second, every master naming it leader in
/// the same term, and returns it. Right after start a master that joins last may still
/// call an election (its `initialize`) and depose the first leader tens of milliseconds
/// after it began to serve.
fn settled_leader(masters: &Masters) -> Result<usize> {
    let mut since: Option<(usize, u64, Instant)> = None;
    wait_until(Duration::from_secs(30), "one leader for a second", || {
        let views = (0..masters.addrs.len())
            .map(|i| masters.raft(i))
            .collect::<Result<Vec<_>>>()?;
        let term = views[0]["term"].as_u64();
        let agreed = views
            .iter()
            .position(|r| r["serving"] == true)
            .filter(|&l| {
                views.iter().all(|r| {
                    r["term"].as_u64() == term && r["leader_id"].as_u64() == Some(l as u64 + 1)
                })
            });
        match (agreed, term, since) {
            (Some(l), Some(t), Some((was, in_term, at))) if l == was && t == in_term => {
                return Ok((at.elapsed() >= Duration::from_secs(1)).then_some(l));
            }
            (Some(l), Some(t), _) => since = Some((l, t, Instant::now())),
            _ => since = None,
        }
        Ok(None)
    })
}

/// When the cut began and ended, and who led after it.
struct Cut {
    started: Instant,
    done: Instant,
    new: usize,
}

/// The cut, the writes and the heal of
/// [`a_leader_cut_off_stops_serving_and_only_one_master_takes_writes`].
fn cut_and_heal(masters: &Masters, net: &Netns, old: usize) -> Result<Cut> {
    let started = Instant::now();
    net.cut(old)?;
    let done = Instant::now();
    std::thread::scope(|scope| -> Result<Cut> {
        // Sent at once, this write may reach the old leader's core within its lease; it
        // cannot be committed without a quorum.
        let old_addr = masters.addrs[old];
        let early = scope.spawn(move || {
            Netns::within(net.member(old), || {
                http_with(old_addr, "POST", "/api/v1", &[], &set_weight(5))
            })
        });
        let (new, took) = masters.wait_leader(Duration::from_secs(10), Some(old))?;
        println!(
            "node {} cut off ({} ms to take its link down); node {} serves {} ms after the cut",
            old + 1,
            done.duration_since(started).as_millis(),
            new + 1,
            took.as_millis()
        );
        let raft = masters.raft(old)?;
        ensure!(
            raft["serving"] == false,
            "the cut-off leader still serves once another master does: {raft}"
        );
        let answer = masters.http_with(new, "POST", "/api/v1", &[], &set_weight(3))?;
        ensure!(
            answer.status == 200,
            "UPDATE_WEIGHTS on the new leader: {answer:?}"
        );
        let commit = masters.raft(new)?["commit_index"].as_u64();
        let late = masters.http_with(old, "POST", "/api/v1", &[], &set_weight(7))?;
        ensure!(
            late.status == 503,
            "UPDATE_WEIGHTS on the cut-off leader after its lease was not refused with 503 \
             (no leader it could name): {late:?}"
        );
        let early = early
            .join()
            .map_err(|_| anyhow::anyhow!("the early write panicked"))???;
        ensure!(
            early.status != 200,
            "UPDATE_WEIGHTS sent to the leader as it was cut off succeeded: {early:?}"
        );
        println!(
            "writes to the cut-off leader: at once HTTP {} {}; after its lease HTTP {} {}",
            early.status,
            early.body.trim(),
            late.status,
            late.body.trim()
        );
        net.heal(old)?;
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
        let answer = masters.http_with(old, "POST", "/api/v1", &[], &set_weight(9))?;
        let location = format!("location: http://{}/api/v1", masters.addrs[new]);
        ensure!(
            answer.status == 307 && answer.headers.to_ascii_lowercase().contains(&location),
            "UPDATE_WEIGHTS on the old leader was not sent to the leader: {answer:?}"
        );
        let weights = masters.http_with(new, "GET", "/weights", &[], "")?;
        let weights: serde_json::Value = serde_json::from_str(&weights.body)
            .with_context(|| format!("GET /weights: {weights:?}"))?;
        let web = weights
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["role"] == "web")
            .and_then(|w| w["weight"].as_f64());
        ensure!(
            web == Some(3.0),
            "the leader's weight of role web is {web:?}, not 3: {weights}"
        );
        println!("old leader follows the new one: {raft}");
        // Keep sampling a while with every link up.
        std::thread::sleep(Duration::from_secs(1));
        Ok(Cut { started, done, new })
    })
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
    let out = output_within(&mut masters.master_command(0)?, Duration::from_secs(30))?;
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
