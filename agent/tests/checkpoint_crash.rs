//! The checkpoint survives being killed mid-write: a child process rewrites an agent's
//! checkpoint as fast as it can (through glommio's io_uring, as the agent does) and is
//! SIGKILLed at a random moment, 200 times. After every kill the checkpoint reads back,
//! every record parses, and none is older than the last write the child saw complete.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_agent::checkpoint::{Checkpoint, Write};
use fleet_agent::tasks::{ProcessRecord, TaskRecord};
use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::agent::AgentFramework;
use fleet_proto::resources::Resources;
use fleet_proto::task::{CommandInfo, TaskInfo, TaskState};

const CHILD_ENV: &str = "FLEET_CHECKPOINT_CRASH_DIR";
const KILLS: usize = 200;
/// Containers rewritten per generation: each generation is one `apply`.
const CONTAINERS: [&str; 3] = ["C-a", "C-b", "C-c"];

fn record(container_id: &str, generation: u64) -> TaskRecord {
    TaskRecord {
        framework: AgentFramework {
            id: FrameworkId::new("F-1"),
            name: "crash".into(),
            user: "root".into(),
        },
        task: TaskInfo {
            task_id: TaskId::new(format!("task-{container_id}")),
            name: format!("generation {generation}"),
            agent_id: AgentId::new("A-1"),
            resources: Resources::parse("cpus:0.1;mem:32").expect("resources"),
            command: CommandInfo {
                shell: true,
                // Long enough that a write is more than one page.
                value: "x".repeat(6000),
                arguments: Vec::new(),
                environment: Vec::new(),
            },
            kill_grace_ms: None,
        },
        container_id: container_id.to_owned(),
        sandbox: PathBuf::from("/nowhere"),
        state: TaskState::Running,
        kill_requested: false,
        limitation: None,
        gpus: Vec::new(),
        process: Some(ProcessRecord {
            pid: 1,
            start_time: generation,
        }),
        unacknowledged: Vec::new(),
    }
}

fn generation_of(record: &TaskRecord) -> u64 {
    record
        .task
        .name
        .strip_prefix("generation ")
        .and_then(|g| g.parse().ok())
        .expect("a generation in the record")
}

/// The child: rewrites the checkpoint in `dir` forever, printing each generation once it
/// is durable.
fn write_forever(dir: &Path) {
    let checkpoint = Checkpoint::new(dir);
    let start = match checkpoint.read() {
        Ok(Some(previous)) => previous.tasks.iter().map(generation_of).max().unwrap_or(0) + 1,
        _ => 1,
    };
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            checkpoint
                .write_agent(&AgentId::new("A-1"))
                .await
                .expect("agent record");
            let mut generation = start;
            loop {
                let writes = CONTAINERS
                    .iter()
                    .map(|c| Write {
                        container_id: (*c).to_owned(),
                        record: Some(
                            serde_json::to_vec_pretty(&record(c, generation)).expect("json"),
                        ),
                    })
                    .collect();
                checkpoint.apply(writes).await.expect("apply");
                println!("durable {generation}");
                generation += 1;
            }
        })
        .expect("executor")
        .join()
        .expect("join");
}

/// A cheap pseudo-random sequence (no dependency needed for picking kill moments).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn kills_during_checkpoint_writes_never_leave_an_unreadable_checkpoint() {
    // The test starts itself again as the writer it kills.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        write_forever(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let started = Instant::now();
    let mut durable_total = 0u64;
    let mut last_durable = 0u64;
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kills_during_checkpoint_writes_never_leave_an_unreadable_checkpoint",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(g) = line.strip_prefix("durable ") {
                    last = g.trim().parse::<u64>().ok();
                }
            }
            last
        });
        // Between just after exec and several generations in.
        std::thread::sleep(Duration::from_micros(2_000 + rng.next(60_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = reader.join().unwrap();
        if let Some(g) = seen {
            durable_total += g.saturating_sub(last_durable);
            last_durable = g;
        }
        let checkpoint = Checkpoint::new(dir.path());
        let read = checkpoint.read().unwrap_or_else(|e| {
            panic!("kill {kill}: the checkpoint does not read back: {e}");
        });
        let Some(recovered) = read else {
            assert!(
                last_durable == 0,
                "kill {kill}: no checkpoint after generation {last_durable} was durable"
            );
            continue;
        };
        assert_eq!(recovered.agent.agent_id, AgentId::new("A-1"));
        if last_durable > 0 {
            assert_eq!(recovered.tasks.len(), CONTAINERS.len(), "kill {kill}");
        }
        for task in &recovered.tasks {
            let g = generation_of(task);
            assert!(
                g >= last_durable,
                "kill {kill}: {} went back to generation {g} after {last_durable} was durable",
                task.container_id
            );
            assert_eq!(task, &record(&task.container_id, g), "kill {kill}");
        }
        // A kill inside one `apply` leaves some records a generation ahead: every record
        // is at least the oldest one read.
        let oldest = recovered.tasks.iter().map(generation_of).min();
        last_durable = last_durable.max(oldest.unwrap_or(0));
    }
    println!(
        "{KILLS} kills in {:?}; {durable_total} generations written; every restart read the \
         checkpoint back",
        started.elapsed()
    );
    assert!(
        durable_total > 0,
        "no write ever completed: the kills came too early to test anything"
    );
}
