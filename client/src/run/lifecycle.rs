//! The one-task framework as a state machine: events from the master in, steps out (calls
//! to send, lines to print, the exit code). No I/O and no clock of its own, so every path
//! is tested without a master.

use std::time::Instant;

use fleet_proto::ids::{AgentId, TaskId};
use fleet_proto::messages::scheduler::{Call, Event, Filters, Offer, Operation, ReconcileTask};
use fleet_proto::task::{TaskState, TaskStatus};

use super::options::{RunOptions, TaskRequest};
use crate::error::ClientError;
use crate::scheduler::acknowledgement;

/// Seconds a declined, unfitting offer stays away: short, so a freed agent comes back soon.
const DECLINE_WHILE_WAITING_S: f64 = 1.0;
/// Seconds offers stay away once the task is launched (the framework is also suppressed).
const DECLINE_AFTER_LAUNCH_S: f64 = 3600.0;
/// Exit code when interrupted before the task started (as a shell does for SIGINT).
pub const INTERRUPTED_EXIT: i32 = 130;

/// What the driver must do next, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Send(Call),
    Print(String),
    /// The run is over: tear the framework down and exit with this code.
    Finish(i32),
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    WaitingForOffer,
    Launched { agent_id: AgentId },
    Done,
}

/// The state of one `fleet run`.
#[derive(Debug)]
pub struct OneTaskRun {
    opts: RunOptions,
    request: TaskRequest,
    task_id: TaskId,
    phase: Phase,
    deadline: Instant,
    offers_seen: u64,
    last_unfitting: Option<String>,
    last_state: Option<TaskState>,
    sandbox: Option<String>,
}

impl OneTaskRun {
    /// Validates `opts`; offers are awaited until `now + opts.offer_timeout`.
    pub fn new(opts: &RunOptions, now: Instant) -> Result<Self, ClientError> {
        let request = opts.validate()?;
        Ok(OneTaskRun {
            opts: opts.clone(),
            request,
            task_id: opts.new_task_id(),
            phase: Phase::WaitingForOffer,
            deadline: now + opts.offer_timeout,
            offers_seen: 0,
            last_unfitting: None,
            last_state: None,
            sandbox: None,
        })
    }

    pub fn task_id(&self) -> &TaskId {
        &self.task_id
    }

    /// When waiting for an offer must give up, while it is waiting.
    pub fn offer_deadline(&self) -> Option<Instant> {
        (self.phase == Phase::WaitingForOffer).then_some(self.deadline)
    }

    /// The error to end with when [`offer_deadline`](Self::offer_deadline) passed.
    pub fn no_offer_error(&self) -> ClientError {
        let seen = match (&self.last_unfitting, self.offers_seen) {
            (_, 0) if !self.opts.constraints.is_empty() => {
                " (no offers received: is an agent registered that meets every --constraint \
                 and has enough free resources?)"
                    .to_owned()
            }
            (_, 0) => " (no offers received: is an agent registered with enough free resources?)"
                .to_owned(),
            (Some(last), n) => format!(" ({n} offers seen, none fitted; last: {last})"),
            (None, n) => format!(" ({n} offers seen, none fitted)"),
        };
        ClientError::NoFittingOffer {
            addr: self.opts.master,
            wanted: self.request.describe(),
            waited_s: self.opts.offer_timeout.as_secs(),
            seen,
        }
    }

    /// After subscribing again (a new leading master), what asks it for the task's state:
    /// an explicit RECONCILE once the task was launched.
    pub fn reconciliation(&self) -> Option<Call> {
        match &self.phase {
            Phase::Launched { agent_id } => Some(Call::Reconcile {
                tasks: vec![ReconcileTask {
                    task_id: self.task_id.clone(),
                    agent_id: Some(agent_id.clone()),
                }],
            }),
            Phase::WaitingForOffer | Phase::Done => None,
        }
    }

    /// Ctrl-C: kill the task if it was launched, else end at once.
    pub fn interrupt(&mut self) -> Vec<Step> {
        match &self.phase {
            Phase::Launched { agent_id } => vec![
                Step::Print(format!("task {} interrupted, killing it", self.task_id)),
                Step::Send(Call::Kill {
                    task_id: self.task_id.clone(),
                    agent_id: Some(agent_id.clone()),
                    grace_ms: None,
                }),
            ],
            Phase::WaitingForOffer => {
                self.phase = Phase::Done;
                vec![
                    Step::Print("interrupted before the task was launched".to_owned()),
                    Step::Finish(INTERRUPTED_EXIT),
                ]
            }
            Phase::Done => Vec::new(),
        }
    }

    /// Reacts to one event from the master.
    pub fn handle(&mut self, event: Event) -> Vec<Step> {
        match event {
            Event::Offers { offers } => self.offers(offers),
            Event::Update { status } => self.update(status),
            Event::Error { message, .. } => vec![Step::Print(format!("master error: {message}"))],
            Event::Subscribed { .. } | Event::Rescind { .. } | Event::Heartbeat => Vec::new(),
        }
    }

    fn offers(&mut self, offers: Vec<Offer>) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut declined = Vec::new();
        for offer in offers {
            self.offers_seen += 1;
            if self.phase != Phase::WaitingForOffer {
                declined.push(offer.id);
                continue;
            }
            match self.request.fit(&offer) {
                Some(resources) => {
                    steps.push(Step::Print(format!(
                        "task {} launching on agent {} ({}) with {}",
                        self.task_id, offer.agent_id, offer.hostname, resources
                    )));
                    let task = self.request.task_info(
                        &self.opts,
                        self.task_id.clone(),
                        offer.agent_id.clone(),
                        resources,
                    );
                    steps.push(Step::Send(Call::Accept {
                        offer_ids: vec![offer.id],
                        operations: vec![Operation::Launch { tasks: vec![task] }],
                        filters: Some(Filters {
                            refuse_seconds: DECLINE_AFTER_LAUNCH_S,
                        }),
                    }));
                    steps.push(Step::Send(Call::Suppress { roles: Vec::new() }));
                    self.phase = Phase::Launched {
                        agent_id: offer.agent_id,
                    };
                }
                None => {
                    self.last_unfitting =
                        Some(format!("{} on {}", offer.resources, offer.hostname));
                    declined.push(offer.id);
                }
            }
        }
        if !declined.is_empty() {
            let refuse_seconds = if self.phase == Phase::WaitingForOffer {
                DECLINE_WHILE_WAITING_S
            } else {
                DECLINE_AFTER_LAUNCH_S
            };
            steps.push(Step::Send(Call::Decline {
                offer_ids: declined,
                filters: Some(Filters { refuse_seconds }),
            }));
        }
        steps
    }

    fn update(&mut self, status: TaskStatus) -> Vec<Step> {
        let mut steps = Vec::new();
        let ours = status.task_id == self.task_id && self.phase != Phase::Done;
        if ours {
            if status.sandbox.is_some() {
                self.sandbox.clone_from(&status.sandbox);
            }
            if self.last_state != Some(status.state) {
                self.last_state = Some(status.state);
                steps.push(Step::Print(status_line(&status)));
            }
        }
        if let Some(ack) = acknowledgement(&status) {
            steps.push(Step::Send(ack));
        }
        if ours && status.state.is_terminal() {
            self.phase = Phase::Done;
            if let Some(sandbox) = &self.sandbox {
                steps.push(Step::Print(format!("sandbox: {sandbox}")));
            }
            steps.push(Step::Finish(exit_code(&status)));
        }
        steps
    }
}

/// One line per state change: `task ID STATE`, then `(REASON: message)` when there is a
/// reason or message, e.g.
/// `task t1 TASK_FAILED (REASON_CONTAINER_LIMITATION_MEMORY: memory limit 64 MB exceeded)`.
pub fn status_line(status: &TaskStatus) -> String {
    let mut detail: Vec<String> = Vec::new();
    if let Some(reason) = status.reason {
        detail.push(reason.name().to_owned());
    }
    let message = status.message.trim();
    if !message.is_empty() {
        detail.push(message.to_owned());
    } else if let (TaskState::Failed, Some(code)) = (status.state, status.exit_code) {
        detail.push(format!("exit code {code}"));
    }
    if detail.is_empty() {
        format!("task {} {}", status.task_id, status.state)
    } else {
        format!(
            "task {} {} ({})",
            status.task_id,
            status.state,
            detail.join(": ")
        )
    }
}

/// The exit code `fleet run` ends with for the task's final status: 0 only for
/// TASK_FINISHED; the command's own code for TASK_FAILED (128 + N for death by signal N,
/// reported as -N); 1 for every other end.
pub fn exit_code(status: &TaskStatus) -> i32 {
    match (status.state, status.exit_code) {
        (TaskState::Finished, _) => 0,
        (TaskState::Failed, Some(code)) if (1..=255).contains(&code) => code,
        (TaskState::Failed, Some(code)) if (-127..0).contains(&code) => 128 - code,
        _ => 1,
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
