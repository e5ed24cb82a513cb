use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::agent::AgentFramework;
use fleet_proto::resources::Resources;
use fleet_proto::task::{CommandInfo, Reason, TaskInfo, TaskState};

use super::*;
use crate::containerizer::{ContainerEvent, Termination};

fn framework() -> AgentFramework {
    AgentFramework {
        id: FrameworkId::new("F-1"),
        name: "test".into(),
        user: "root".into(),
    }
}

fn task(id: &str) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(id),
        name: id.into(),
        agent_id: AgentId::new("A-1"),
        resources: Resources::parse("cpus:0.5;mem:64;ports:[31000-31001]").unwrap(),
        command: CommandInfo {
            shell: true,
            value: "echo hi".into(),
            ..CommandInfo::default()
        },
        kill_grace_ms: None,
    }
}

fn tasks() -> Tasks {
    Tasks::new(AgentId::new("A-1"), "/work".into())
}

fn launched(actions: &[Action]) -> ContainerSpec {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Launch(spec) => Some(spec.clone()),
            _ => None,
        })
        .expect("a launch")
}

/// Acknowledges every update in `actions`, as a framework would; returns `actions`.
fn ack(t: &mut Tasks, actions: Vec<Action>) -> Vec<Action> {
    for action in &actions {
        if let Action::Send(u) = action {
            let released =
                t.acknowledged(&u.status.task_id, u.status.uuid.unwrap(), Instant::now());
            assert!(released.is_empty(), "{released:?}");
        }
    }
    actions
}

fn states(actions: &[Action]) -> Vec<(TaskState, Option<Reason>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(u) => Some((u.status.state, u.status.reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_runs_in_a_mesos_sandbox_with_its_limits_and_environment() {
    let mut t = tasks();
    let actions = t.run(framework(), task("t1"), Instant::now());
    assert_eq!(states(&actions), vec![(TaskState::Starting, None)]);
    let spec = launched(&actions);
    let sandbox = spec.sandbox.display().to_string();
    assert!(
        sandbox.starts_with("/work/slaves/A-1/frameworks/F-1/executors/t1/runs/"),
        "{sandbox}"
    );
    assert_eq!(spec.limits.cpus_milli, 500);
    assert_eq!(spec.limits.mem_bytes, 64 * 1024 * 1024);
    let env: std::collections::HashMap<_, _> = spec.env.iter().cloned().collect();
    assert_eq!(env["FLEET_TASK_ID"], "t1");
    assert_eq!(env["FLEET_FRAMEWORK_ID"], "F-1");
    assert_eq!(env["FLEET_AGENT_ID"], "A-1");
    assert_eq!(env["FLEET_SANDBOX"], sandbox);
    assert_eq!(env["PORT0"], "31000");
    assert_eq!(env["PORT1"], "31001");
    assert_eq!(env["PORTS"], "31000,31001");
}

#[test]
fn container_events_become_ordered_updates_that_wait_for_acks() {
    let mut t = tasks();
    let now = Instant::now();
    let spec = launched(&t.run(framework(), task("t1"), now));
    let id = spec.container_id.clone();
    // Each task's updates are a stream: RUNNING waits until STARTING is acknowledged.
    let running = t.container(
        ContainerEvent::Started {
            container_id: id.clone(),
            pid: 10,
            start_time: 1,
            cgroup2_id: Some(7),
        },
        now,
    );
    assert!(running.is_empty(), "{running:?}");
    let exited = t.container(
        ContainerEvent::Exited {
            container_id: id,
            termination: Termination {
                exit_code: Some(3),
                signal: None,
                oom_killed: false,
            },
            killed: false,
        },
        now,
    );
    assert!(exited.is_empty(), "{exited:?}");
    // Nothing acknowledged: after the retry interval only the oldest goes again.
    let again = t.retry(now + UPDATE_RETRY);
    assert_eq!(states(&again), vec![(TaskState::Starting, None)]);
    let mut order = Vec::new();
    let mut next = again;
    while let Some(Action::Send(u)) = next.first().cloned() {
        order.push((u.status.state, u.status.exit_code));
        next = t.acknowledged(&u.status.task_id, u.status.uuid.unwrap(), now);
    }
    assert_eq!(
        order,
        vec![
            (TaskState::Starting, None),
            (TaskState::Running, None),
            (TaskState::Failed, Some(3)),
        ]
    );
    assert!(t.retry(now + UPDATE_RETRY * 3).is_empty());
    assert!(
        t.running().is_empty(),
        "an acknowledged terminal task is forgotten"
    );
}

#[test]
fn oom_is_a_memory_limitation_and_kill_is_killed() {
    let mut t = tasks();
    let now = Instant::now();
    let run = t.run(framework(), task("a"), now);
    let a = launched(&ack(&mut t, run)).container_id;
    let run = t.run(framework(), task("b"), now);
    let b = launched(&ack(&mut t, run)).container_id;
    let oom = t.container(
        ContainerEvent::Exited {
            container_id: a,
            termination: Termination {
                exit_code: None,
                signal: Some(9),
                oom_killed: true,
            },
            killed: false,
        },
        now,
    );
    assert_eq!(
        states(&oom),
        vec![(TaskState::Failed, Some(Reason::ContainerLimitationMemory))]
    );
    let kill = t.kill(&FrameworkId::new("F-1"), &TaskId::new("b"), None, now);
    let kill = ack(&mut t, kill);
    assert_eq!(states(&kill), vec![(TaskState::Killing, None)]);
    assert!(
        kill.iter()
            .any(|a| matches!(a, Action::Kill { grace, .. } if *grace == DEFAULT_KILL_GRACE))
    );
    let killed = t.container(
        ContainerEvent::Exited {
            container_id: b,
            termination: Termination {
                exit_code: None,
                signal: Some(15),
                oom_killed: false,
            },
            killed: true,
        },
        now,
    );
    assert_eq!(states(&killed), vec![(TaskState::Killed, None)]);
}

#[test]
fn launch_failure_fails_the_task_with_the_reason() {
    let mut t = tasks();
    let now = Instant::now();
    let run = t.run(framework(), task("t"), now);
    let id = launched(&ack(&mut t, run)).container_id;
    let failed = t.container(
        ContainerEvent::LaunchFailed {
            container_id: id,
            message: "cgroup mkdir '/sys/fs/cgroup/memory/x': Permission denied".into(),
        },
        now,
    );
    let Action::Send(u) = &failed[0] else {
        panic!()
    };
    assert_eq!(u.status.state, TaskState::Failed);
    assert_eq!(u.status.reason, Some(Reason::ContainerLaunchFailed));
    assert!(u.status.message.contains("Permission denied"));
}

#[test]
fn unknown_kill_is_lost_and_duplicate_run_is_an_error() {
    let mut t = tasks();
    let now = Instant::now();
    let lost = t.kill(&FrameworkId::new("F-1"), &TaskId::new("nope"), None, now);
    assert_eq!(
        states(&lost),
        vec![(TaskState::Lost, Some(Reason::TaskUnknown))]
    );
    let run = t.run(framework(), task("t"), now);
    ack(&mut t, run);
    let dup = t.run(framework(), task("t"), now + Duration::from_secs(1));
    assert_eq!(
        states(&dup),
        vec![(TaskState::Error, Some(Reason::TaskInvalid))]
    );
}

#[test]
fn a_container_over_its_disk_limit_is_killed_and_fails_with_the_disk_reason() {
    let mut t = tasks();
    let mut info = task("t1");
    info.resources = Resources::parse("cpus:0.5;mem:64;disk:10").unwrap();
    let now = Instant::now();
    let run = t.run(framework(), info, now);
    let spec = launched(&ack(&mut t, run));
    assert_eq!(spec.isolation.disk_bytes, 10 * 1024 * 1024);
    let id = spec.container_id.clone();
    let started = t.container(
        ContainerEvent::Started {
            container_id: id.clone(),
            pid: 42,
            start_time: 1,
            cgroup2_id: Some(7),
        },
        now,
    );
    ack(&mut t, started);
    assert_eq!(
        t.disk_limits().collect::<Vec<_>>(),
        vec![(id.as_str(), 10 * 1024 * 1024)]
    );
    let kill = t.limit_exceeded(&id, Reason::ContainerLimitationDisk, "too big".into());
    assert!(
        matches!(&kill[..], [Action::Kill { container_id, grace }] if *container_id == id && grace.is_zero()),
        "{kill:?}"
    );
    // Asked once: no second kill, and no longer checked.
    assert!(
        t.limit_exceeded(&id, Reason::ContainerLimitationDisk, "again".into())
            .is_empty()
    );
    assert_eq!(t.disk_limits().count(), 0);
    let ended = t.container(
        ContainerEvent::Exited {
            container_id: id,
            termination: Termination {
                signal: Some(9),
                ..Termination::default()
            },
            killed: true,
        },
        now,
    );
    assert_eq!(
        states(&ended),
        vec![(TaskState::Failed, Some(Reason::ContainerLimitationDisk))]
    );
}

#[test]
fn tasks_without_disk_have_no_disk_limit() {
    let mut t = tasks();
    t.run(framework(), task("t1"), Instant::now());
    assert_eq!(t.disk_limits().count(), 0);
}

/// The records a lifecycle writes, as the checkpoint would hold them.
fn records(t: &mut Tasks) -> Vec<(String, Option<crate::tasks::TaskRecord>)> {
    t.take_checkpoint()
        .into_iter()
        .map(|w| {
            let record = w
                .record
                .map(|bytes| serde_json::from_slice(&bytes).expect("record parses"));
            (w.container_id, record)
        })
        .collect()
}

#[test]
fn every_change_is_checkpointed_and_a_restart_takes_the_tasks_back() {
    let mut t = tasks();
    let now = Instant::now();
    let spec = launched(&t.run(framework(), task("t1"), now));
    let id = spec.container_id.clone();
    assert_eq!(
        spec.runtime_dir.as_deref(),
        Some(t.checkpoint.container_dir(&id).as_path())
    );
    // The launch is recorded (before it is performed) with its STARTING update.
    let first = records(&mut t);
    assert_eq!(first.len(), 1);
    let record = first[0].1.clone().expect("a record for the new task");
    assert_eq!(record.state, TaskState::Starting);
    assert_eq!(record.process, None);
    assert_eq!(record.unacknowledged.len(), 1);
    assert!(records(&mut t).is_empty(), "nothing changed since");

    t.container(
        ContainerEvent::Started {
            container_id: id.clone(),
            pid: 4242,
            start_time: 99,
            cgroup2_id: Some(7),
        },
        now,
    );
    let second = records(&mut t);
    let record = second[0].1.clone().expect("record");
    assert_eq!(record.state, TaskState::Running);
    assert_eq!(
        record.process,
        Some(crate::tasks::ProcessRecord {
            pid: 4242,
            start_time: 99
        })
    );
    assert_eq!(record.unacknowledged.len(), 2);

    // A new agent process restores it: same spec, the recorded process to adopt, the two
    // unacknowledged updates queued again in order.
    let mut again = Tasks::new(t.agent_id().clone(), t.work_dir.clone());
    let adopt = again.restore(vec![record.clone()]);
    assert_eq!(adopt.len(), 1);
    assert_eq!(adopt[0].0, spec);
    assert_eq!(
        adopt[0].1,
        Some(crate::containerizer::Adoption {
            pid: 4242,
            start_time: 99
        })
    );
    let resent = again.unacknowledged(now);
    assert_eq!(states(&resent), vec![(TaskState::Starting, None)]);
    let Action::Send(starting) = &resent[0] else {
        panic!("an update")
    };
    let next = again.acknowledged(
        &starting.status.task_id,
        starting.status.uuid.expect("uuid"),
        now,
    );
    assert_eq!(states(&next), vec![(TaskState::Running, None)]);
    // Adoption reports Started again: no duplicate RUNNING.
    let quiet = again.container(
        ContainerEvent::Started {
            container_id: id.clone(),
            pid: 4242,
            start_time: 99,
            cgroup2_id: Some(7),
        },
        now,
    );
    assert!(quiet.is_empty(), "{quiet:?}");
    // It ended while the agent was down: the exit code is reported.
    let ended = again.container(
        ContainerEvent::Exited {
            container_id: id.clone(),
            termination: Termination {
                exit_code: Some(5),
                ..Termination::default()
            },
            killed: false,
        },
        now,
    );
    // Queued behind RUNNING, which is in flight: acknowledging it sends the end.
    assert!(ended.is_empty(), "{ended:?}");
    let Action::Send(running) = &next[0] else {
        panic!("an update")
    };
    let ended = again.acknowledged(
        &running.status.task_id,
        running.status.uuid.expect("uuid"),
        now,
    );
    assert_eq!(
        states(&ended),
        vec![(TaskState::Failed, Some(Reason::CommandExecutorFailed))]
    );
    // Once every update is acknowledged the record goes.
    for p in again.unacked.clone() {
        again.acknowledged(
            &p.update.status.task_id,
            p.update.status.uuid.expect("uuid"),
            now,
        );
    }
    let last = records(&mut again);
    assert_eq!(last, vec![(id, None)]);
}

#[test]
fn a_restored_task_that_had_ended_is_not_adopted_but_its_updates_are_resent() {
    let mut t = tasks();
    let now = Instant::now();
    let spec = launched(&t.run(framework(), task("t1"), now));
    t.container(
        ContainerEvent::LaunchFailed {
            container_id: spec.container_id.clone(),
            message: "no".into(),
        },
        now,
    );
    let record = records(&mut t).remove(0).1.expect("record");
    assert_eq!(record.state, TaskState::Failed);
    let mut again = Tasks::new(t.agent_id().clone(), t.work_dir.clone());
    assert!(again.restore(vec![record]).is_empty());
    // The stream starts over with its oldest update.
    assert_eq!(
        states(&again.unacknowledged(now)),
        vec![(TaskState::Starting, None)]
    );
    assert_eq!(again.running().len(), 1);
}

#[test]
fn unacknowledged_updates_back_off_from_one_second_to_a_minute() {
    let mut t = tasks();
    let start = Instant::now();
    t.run(framework(), task("t1"), start);
    // Sent again at 1, 3, 7, 15, 31, 63 s, then every 60 s.
    let mut sends = Vec::new();
    let mut now = start;
    while now < start + Duration::from_secs(200) {
        now += Duration::from_millis(500);
        if !t.retry(now).is_empty() {
            sends.push((now - start).as_secs_f64());
        }
    }
    assert_eq!(sends, vec![1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0]);
    // A reconnect sends everything at once and starts the backoff over.
    assert_eq!(t.unacknowledged(now).len(), 1);
    assert!(t.retry(now + Duration::from_millis(900)).is_empty());
    assert_eq!(t.retry(now + UPDATE_RETRY).len(), 1);
}
