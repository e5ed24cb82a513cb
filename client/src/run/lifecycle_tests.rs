use std::time::{Duration, Instant};

use super::*;
use crate::run::options::tests::offer;
use fleet_proto::ids::{OfferId, UpdateUuid};
use fleet_proto::task::{Reason, Source};

fn opts() -> RunOptions {
    let mut o = RunOptions::new(
        "127.0.0.1:5050".parse().unwrap(),
        String::new(),
        vec!["sh -c 'exit 3'".into()],
    );
    o.offer_timeout = Duration::from_secs(30);
    o
}

fn status(task: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: task.clone(),
        agent_id: Some(AgentId::from("A-1")),
        state,
        reason: None,
        message: String::new(),
        source: Source::Agent,
        uuid: Some(UpdateUuid([1; 16])),
        exit_code: None,
        sandbox: None,
        timestamp_ms: 0,
    }
}

fn offer_with(seq: u64, resources: &str) -> Offer {
    let mut o = offer("*", resources);
    o.id = OfferId { shard: 0, seq };
    o
}

fn sends(steps: &[Step]) -> Vec<&'static str> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(c) => Some(c.name()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_that_exits_3_ends_the_run_with_3() {
    let now = Instant::now();
    let mut run = OneTaskRun::new(&opts(), now).unwrap();
    assert_eq!(run.offer_deadline(), Some(now + Duration::from_secs(30)));
    let id = run.task_id().clone();

    let steps = run.handle(Event::Offers {
        offers: vec![
            offer_with(1, "cpus:0.01;mem:1024"),
            offer_with(2, "cpus:2;mem:1024"),
        ],
    });
    assert_eq!(sends(&steps), vec!["ACCEPT", "SUPPRESS", "DECLINE"]);
    let Step::Send(Call::Accept {
        offer_ids,
        operations,
        ..
    }) = &steps[1]
    else {
        panic!("{steps:?}");
    };
    assert_eq!(offer_ids, &vec![OfferId { shard: 0, seq: 2 }]);
    let Operation::Launch { tasks } = &operations[0] else {
        panic!("{operations:?}");
    };
    assert_eq!(tasks[0].task_id, id);
    assert_eq!(tasks[0].resources.to_string(), "cpus:0.1;mem:128");
    assert!(
        matches!(&steps[3], Step::Send(Call::Decline { offer_ids, .. })
        if offer_ids == &vec![OfferId { shard: 0, seq: 1 }])
    );
    assert_eq!(run.offer_deadline(), None);

    let steps = run.handle(Event::Update {
        status: status(&id, TaskState::Running),
    });
    assert_eq!(steps[0], Step::Print(format!("task {id} TASK_RUNNING")));
    assert_eq!(sends(&steps), vec!["ACKNOWLEDGE"]);

    // A retried update is acknowledged again but not printed twice.
    let steps = run.handle(Event::Update {
        status: status(&id, TaskState::Running),
    });
    assert_eq!(sends(&steps), vec!["ACKNOWLEDGE"]);
    assert_eq!(steps.len(), 1);

    let mut failed = status(&id, TaskState::Failed);
    failed.exit_code = Some(3);
    failed.sandbox = Some("/var/fleet/sandbox/x".into());
    let steps = run.handle(Event::Update { status: failed });
    assert_eq!(
        steps,
        vec![
            Step::Print(format!("task {id} TASK_FAILED (exit code 3)")),
            Step::Send(Call::Acknowledge {
                agent_id: AgentId::from("A-1"),
                task_id: id.clone(),
                uuid: UpdateUuid([1; 16]),
            }),
            Step::Print("sandbox: /var/fleet/sandbox/x".into()),
            Step::Finish(3),
        ]
    );
}

#[test]
fn offers_after_launch_are_declined_for_long() {
    let mut run = OneTaskRun::new(&opts(), Instant::now()).unwrap();
    run.handle(Event::Offers {
        offers: vec![offer_with(1, "cpus:1;mem:1024")],
    });
    let steps = run.handle(Event::Offers {
        offers: vec![offer_with(2, "cpus:1;mem:1024")],
    });
    assert!(
        matches!(&steps[..], [Step::Send(Call::Decline { filters: Some(f), .. })]
        if f.refuse_seconds >= 60.0)
    );
}

#[test]
fn waiting_too_long_explains_what_was_offered() {
    let mut run = OneTaskRun::new(&opts(), Instant::now()).unwrap();
    let err = run.no_offer_error().to_string();
    assert!(err.contains("no offers received"), "{err}");
    let steps = run.handle(Event::Offers {
        offers: vec![offer_with(1, "cpus:1;mem:64")],
    });
    assert!(
        matches!(&steps[..], [Step::Send(Call::Decline { filters: Some(f), .. })]
        if f.refuse_seconds <= 1.0)
    );
    let err = run.no_offer_error().to_string();
    assert_eq!(
        err,
        "no offer from master at 127.0.0.1:5050 fitted cpus:0.1;mem:128 within 30 s \
         (1 offers seen, none fitted; last: cpus:1;mem:64 on host1)"
    );
}

#[test]
fn updates_of_other_tasks_are_only_acknowledged() {
    let mut run = OneTaskRun::new(&opts(), Instant::now()).unwrap();
    let steps = run.handle(Event::Update {
        status: status(&TaskId::from("old"), TaskState::Finished),
    });
    assert_eq!(sends(&steps), vec!["ACKNOWLEDGE"]);
    assert_eq!(steps.len(), 1);
}

#[test]
fn interrupt_kills_a_launched_task_and_ends_a_waiting_run() {
    let mut run = OneTaskRun::new(&opts(), Instant::now()).unwrap();
    assert_eq!(
        run.interrupt().last(),
        Some(&Step::Finish(INTERRUPTED_EXIT))
    );

    let mut run = OneTaskRun::new(&opts(), Instant::now()).unwrap();
    run.handle(Event::Offers {
        offers: vec![offer_with(1, "cpus:1;mem:1024")],
    });
    assert_eq!(sends(&run.interrupt()), vec!["KILL"]);
}

#[test]
fn status_lines_show_reason_and_message() {
    let id = TaskId::from("t1");
    let mut s = status(&id, TaskState::Failed);
    s.reason = Some(Reason::ContainerLimitationMemory);
    s.message = "memory limit 64 MB exceeded".into();
    assert_eq!(
        status_line(&s),
        "task t1 TASK_FAILED (REASON_CONTAINER_LIMITATION_MEMORY: memory limit 64 MB exceeded)"
    );
    s.message.clear();
    assert_eq!(
        status_line(&s),
        "task t1 TASK_FAILED (REASON_CONTAINER_LIMITATION_MEMORY)"
    );
    s.reason = None;
    s.message = "lost contact".into();
    s.state = TaskState::Lost;
    assert_eq!(status_line(&s), "task t1 TASK_LOST (lost contact)");
}

#[test]
fn exit_codes() {
    let id = TaskId::from("t1");
    let with = |state, code| {
        let mut s = status(&id, state);
        s.exit_code = code;
        exit_code(&s)
    };
    assert_eq!(with(TaskState::Finished, Some(0)), 0);
    assert_eq!(with(TaskState::Finished, None), 0);
    assert_eq!(with(TaskState::Failed, Some(3)), 3);
    assert_eq!(with(TaskState::Failed, Some(0)), 1);
    assert_eq!(with(TaskState::Failed, None), 1);
    assert_eq!(with(TaskState::Failed, Some(-9)), 137);
    assert_eq!(with(TaskState::Failed, Some(1000)), 1);
    assert_eq!(with(TaskState::Killed, None), 1);
    assert_eq!(with(TaskState::Lost, None), 1);
    assert_eq!(with(TaskState::Error, None), 1);
}
