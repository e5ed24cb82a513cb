//! What operators who watch the master are told (the operator API's SUBSCRIBE): tasks
//! added and changing state, agents and frameworks coming and going. The core emits these
//! as [`Output::Operator`] only while [`Master::set_watched`] says someone listens, so an
//! unwatched master builds none of them.

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::task::TaskStatus;

use super::state::{AgentState, FrameworkState, TaskView, task_view};
use super::{Master, Output};

/// One change an operator's event stream reports, in the terms of Mesos' v1 operator
/// events.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorEvent {
    /// A task was launched (TASK_ADDED).
    TaskAdded(TaskView),
    /// A task's latest state changed (TASK_UPDATED).
    TaskUpdated {
        framework_id: FrameworkId,
        status: TaskStatus,
    },
    /// An agent registered, or came back after it was removed (AGENT_ADDED).
    AgentAdded(AgentState),
    /// An agent was removed: unreachable, or gone for good (AGENT_REMOVED).
    AgentRemoved(AgentId),
    /// A framework subscribed for the first time (FRAMEWORK_ADDED).
    FrameworkAdded(FrameworkState),
    /// A known framework subscribed again (FRAMEWORK_UPDATED).
    FrameworkUpdated(FrameworkState),
    /// A framework was torn down or timed out (FRAMEWORK_REMOVED).
    FrameworkRemoved(FrameworkState),
}

impl Master {
    /// Whether the core emits [`Output::Operator`] events: the shell turns it on while an
    /// operator event stream is open.
    pub fn set_watched(&mut self, watched: bool) {
        self.watched = watched;
    }

    fn notify(&self, event: OperatorEvent, out: &mut Vec<Output>) {
        out.push(Output::Operator(Box::new(event)));
    }

    pub(super) fn notify_task_added(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        out: &mut Vec<Output>,
    ) {
        if !self.watched {
            return;
        }
        if let Some(task) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(task_id))
        {
            self.notify(OperatorEvent::TaskAdded(task_view(task, None, None)), out);
        }
    }

    /// A task's state changed to `status.state`.
    pub(super) fn notify_task_updated(
        &self,
        framework_id: &FrameworkId,
        status: &TaskStatus,
        out: &mut Vec<Output>,
    ) {
        if !self.watched {
            return;
        }
        let event = OperatorEvent::TaskUpdated {
            framework_id: framework_id.clone(),
            status: status.clone(),
        };
        self.notify(event, out);
    }

    pub(super) fn notify_agent_added(&self, id: &AgentId, out: &mut Vec<Output>) {
        if !self.watched {
            return;
        }
        if let Some(agent) = self.agents.get(id) {
            self.notify(OperatorEvent::AgentAdded(self.agent_state(agent)), out);
        }
    }

    pub(super) fn notify_agent_removed(&self, id: &AgentId, out: &mut Vec<Output>) {
        if self.watched {
            self.notify(OperatorEvent::AgentRemoved(id.clone()), out);
        }
    }

    /// A framework subscribed: `added` the first time, else it subscribed again.
    pub(super) fn notify_framework_subscribed(
        &self,
        id: &FrameworkId,
        added: bool,
        out: &mut Vec<Output>,
    ) {
        if !self.watched {
            return;
        }
        let Some(framework) = self.frameworks.get(id) else {
            return;
        };
        let state = self.framework_state(framework, &self.allocator.shares());
        let event = if added {
            OperatorEvent::FrameworkAdded(state)
        } else {
            OperatorEvent::FrameworkUpdated(state)
        };
        self.notify(event, out);
    }

    pub(super) fn notify_framework_removed(&self, gone: &FrameworkState, out: &mut Vec<Output>) {
        if self.watched {
            self.notify(OperatorEvent::FrameworkRemoved(gone.clone()), out);
        }
    }
}
