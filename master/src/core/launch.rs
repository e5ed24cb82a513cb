//! ACCEPT with LAUNCH: validation of the offers and tasks (all or nothing), RunTask to the
//! agent, and the unused part of the offers back to the allocator under the call's filters.

use std::collections::BTreeSet;
use std::time::Instant;

use fleet_proto::ids::{AgentId, FrameworkId, OfferId};
use fleet_proto::messages::agent::MasterMessage;
use fleet_proto::messages::scheduler::{Event, Filters, Operation};
use fleet_proto::resources::Resources;
use fleet_proto::task::{Reason, Source, TaskInfo, TaskState};

use super::offers::refusal;
use super::records::{OfferRecord, Task};
use super::tasks::master_status;
use super::{Master, Output};

/// Why an ACCEPT launches nothing.
struct Invalid {
    reason: Reason,
    message: String,
}

impl Invalid {
    fn offers(message: String) -> Self {
        Self {
            reason: Reason::InvalidOffers,
            message,
        }
    }

    fn task(message: String) -> Self {
        Self {
            reason: Reason::TaskInvalid,
            message,
        }
    }
}

impl Master {
    pub(super) fn accept(
        &mut self,
        framework_id: &FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let (taken, offers_invalid) = self.take_offers(framework_id, &offer_ids, now);
        // RESERVE and UNRESERVE convert the offered resources (the offers as taken are kept
        // until all checks pass, to give back on a refusal); the LAUNCHes are checked
        // against the result. Without them nothing converts and nothing is copied.
        let converts = operations
            .iter()
            .any(|op| !matches!(op, Operation::Launch { .. }));
        let original = converts.then(|| taken.clone());
        let mut converted = taken;
        let checked = match offers_invalid {
            Some(invalid) => Err(invalid),
            None => self
                .plan_conversions(framework_id, &mut converted, &operations)
                .map_err(Invalid::offers),
        };
        let tasks: Vec<TaskInfo> = operations
            .into_iter()
            .flat_map(|op| match op {
                Operation::Launch { tasks } => tasks,
                Operation::Reserve { .. } | Operation::Unreserve { .. } => Vec::new(),
            })
            .collect();
        let checked = checked.and_then(|conversions| {
            self.check_tasks(framework_id, &converted, &tasks)?;
            self.apply_conversions(framework_id, &converted, conversions)
                .map_err(Invalid::offers)
        });
        let agent_id = converted.first().map(|r| r.offer.agent_id.clone());
        match (checked, agent_id) {
            (Ok(()), Some(agent_id)) => {
                self.launch(framework_id, &agent_id, converted, tasks, filters, now, out)
            }
            (Err(invalid), _) => {
                let taken = original.unwrap_or(converted);
                self.refuse_launch(framework_id, taken, tasks, invalid, out)
            }
            (Ok(()), None) => {}
        }
    }

    /// Takes the named offers off the books; the first problem found, if any, is returned
    /// beside what was taken (which the caller gives back).
    fn take_offers(
        &mut self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
        now: Instant,
    ) -> (Vec<OfferRecord>, Option<Invalid>) {
        let mut invalid = None;
        if offer_ids.is_empty() {
            invalid = Some(Invalid::offers("ACCEPT names no offers".to_owned()));
        }
        let mut taken: Vec<OfferRecord> = Vec::new();
        let mut seen = BTreeSet::new();
        for id in offer_ids {
            let problem = match self.offers.get(id) {
                _ if !seen.insert(*id) => Some(format!("offer {id} is named twice")),
                None => Some(format!("offer {id} is unknown or expired")),
                Some(r) if &r.offer.framework_id != framework_id => {
                    Some(format!("offer {id} is unknown or expired"))
                }
                Some(r) if r.expires.is_some_and(|e| now >= e) => {
                    // Expired but not yet swept: it goes back like the others.
                    if let Some(record) = self.take_offer(id) {
                        taken.push(record);
                    }
                    Some(format!("offer {id} is unknown or expired"))
                }
                Some(_) => {
                    if let Some(record) = self.take_offer(id) {
                        taken.push(record);
                    }
                    None
                }
            };
            if invalid.is_none()
                && let Some(message) = problem
            {
                invalid = Some(Invalid::offers(message));
            }
        }
        if invalid.is_none()
            && let Some(first) = taken.first()
            && let Some(other) = taken
                .iter()
                .find(|r| r.offer.agent_id != first.offer.agent_id)
        {
            invalid = Some(Invalid::offers(format!(
                "offers {} and {} are on different agents ({} and {})",
                first.offer.id, other.offer.id, first.offer.agent_id, other.offer.agent_id
            )));
        }
        if invalid.is_none()
            && let Some(first) = taken.first()
            && !self
                .agents
                .get(&first.offer.agent_id)
                .is_some_and(|a| a.is_connected())
        {
            invalid = Some(Invalid::offers(format!(
                "agent {} of offer {} is not connected",
                first.offer.agent_id, first.offer.id
            )));
        }
        (taken, invalid)
    }

    fn check_tasks(
        &self,
        framework_id: &FrameworkId,
        offers: &[OfferRecord],
        tasks: &[TaskInfo],
    ) -> Result<(), Invalid> {
        let Some(first) = offers.first() else {
            return Ok(());
        };
        let agent_id = &first.offer.agent_id;
        let known = self.frameworks.get(framework_id).map(|f| &f.tasks);
        let mut ids = BTreeSet::new();
        let mut needed = Resources::new();
        for task in tasks {
            let id = &task.task_id;
            if id.as_str().is_empty() {
                return Err(Invalid::task("a task has an empty task id".to_owned()));
            }
            if !ids.insert(id) {
                return Err(Invalid::task(format!(
                    "task id {id} appears twice in the ACCEPT"
                )));
            }
            if known.is_some_and(|t| t.contains_key(id)) {
                return Err(Invalid::task(format!(
                    "task id {id} is already in use by this framework"
                )));
            }
            if task.resources.is_empty() {
                return Err(Invalid::task(format!("task {id} has no resources")));
            }
            if &task.agent_id != agent_id {
                return Err(Invalid::task(format!(
                    "task {id} names agent {} but the offers are on agent {agent_id}",
                    task.agent_id
                )));
            }
            needed.add(&task.resources);
        }
        let offered: Resources = offers.iter().map(|r| r.resources()).sum();
        if !offered.contains(&needed) {
            return Err(Invalid::task(format!(
                "the tasks need {needed}, more than the offers hold ({offered})"
            )));
        }
        Ok(())
    }

    /// Nothing launches: TASK_ERROR for each task, the offers' resources go back.
    fn refuse_launch(
        &mut self,
        framework_id: &FrameworkId,
        taken: Vec<OfferRecord>,
        tasks: Vec<TaskInfo>,
        invalid: Invalid,
        out: &mut Vec<Output>,
    ) {
        tracing::info!(framework = %framework_id, "ACCEPT refused: {}", invalid.message);
        for record in taken {
            self.recover(
                framework_id,
                Some(&record.offer.role),
                &record.offer.agent_id,
                record.resources(),
            );
            self.allocate_agents.insert(record.offer.agent_id);
        }
        for task in tasks {
            self.counters.tasks_invalid += 1;
            let status = master_status(
                &task.task_id,
                Some(task.agent_id.clone()),
                TaskState::Error,
                invalid.reason,
                invalid.message.clone(),
            );
            self.send_to_framework(framework_id, Event::Update { status }, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        taken: Vec<OfferRecord>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut unused: Resources = taken.iter().map(|r| r.resources()).sum();
        for task in &tasks {
            unused.subtract(&task.resources);
        }
        self.counters.offers_accepted += taken.len() as u64;
        // Give back per offer (each offer is one allocation role): the part of the unused
        // resources it held. `a - (a - b)` is the intersection of a and b.
        let refuse = refusal(filters, self.config.max_refuse);
        let single = taken.len() == 1;
        for record in &taken {
            let part = if single {
                std::mem::take(&mut unused)
            } else {
                let held = record.resources();
                let mut outside = held.clone();
                outside.subtract(&unused);
                let mut part = held.clone();
                part.subtract(&outside);
                part
            };
            if part.is_empty() {
                continue;
            }
            unused.subtract(&part);
            self.allocator
                .decline(framework_id, agent_id, &part, refuse, now);
            self.recover(framework_id, Some(&record.offer.role), agent_id, &part);
        }
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let agent_framework = framework.agent_view();
        // The role the tasks' resources were allocated in: the offers', when they agree.
        let role = taken
            .first()
            .map(|r| r.offer.role.clone())
            .filter(|role| taken.iter().all(|r| &r.offer.role == role));
        for info in tasks {
            let task_id = info.task_id.clone();
            let mut status = master_status(
                &task_id,
                Some(agent_id.clone()),
                TaskState::Staging,
                Reason::Reconciliation,
                String::new(),
            );
            status.reason = None;
            status.source = Source::Master;
            let task = Task {
                info: info.clone(),
                framework_id: framework_id.clone(),
                state: TaskState::Staging,
                status,
                unacked: None,
                recovered: false,
                role: role.clone(),
            };
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                framework.tasks.insert(task_id.clone(), task);
            }
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.add_task(framework_id, &task_id);
            }
            self.notify_task_added(framework_id, &task_id, out);
            self.counters.tasks_launched += 1;
            tracing::debug!(task = %task_id, agent = %agent_id, "launching task");
            let msg = MasterMessage::RunTask {
                framework: agent_framework.clone(),
                task: info,
            };
            self.send_to_agent(agent_id, msg, out);
        }
    }
}
