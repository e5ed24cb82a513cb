//! Deterministic tests of the master core: agents and frameworks are simulated in memory
//! with a fake clock.

mod agents;
mod frameworks;
mod offer_cycle;
mod operator;
mod recovery;
mod reservations;
mod simulation;

use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId, OfferId, TaskId, UpdateUuid};
use fleet_proto::messages::agent::{AgentInfo, AgentMessage, MasterMessage, Report, RunningTask};
use fleet_proto::messages::scheduler::{
    Call, Capabilities, Event, FrameworkInfo, Offer, Operation,
};
use fleet_proto::resources::Resources;
use fleet_proto::task::{CommandInfo, Source, StatusUpdate, TaskInfo, TaskState, TaskStatus};

use super::{ConnId, Input, Master, MasterConfig, Output};
use crate::registry::{InMemoryRegistry, Registry};

pub(super) fn res(text: &str) -> Resources {
    text.parse().unwrap()
}

pub(super) struct Sim {
    pub master: Master,
    pub now: Instant,
    pub out: Vec<Output>,
    next_conn: ConnId,
}

impl Sim {
    pub fn new() -> Self {
        Self::with(MasterConfig::default(), Box::new(InMemoryRegistry::new()))
    }

    pub fn with(config: MasterConfig, registry: Box<dyn Registry>) -> Self {
        Self {
            master: Master::new(config, registry),
            now: Instant::now(),
            out: Vec::new(),
            next_conn: 1,
        }
    }

    pub fn input(&mut self, input: Input) -> Vec<Output> {
        self.master.handle(input, self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }

    /// Moves the clock and ticks.
    pub fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.master.tick(self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }

    /// Ticks without moving the clock (runs pending allocations).
    pub fn tick(&mut self) -> Vec<Output> {
        self.advance(Duration::ZERO)
    }

    pub fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    pub fn agent_info(hostname: &str, resources: &str) -> AgentInfo {
        AgentInfo {
            hostname: hostname.into(),
            http_address: format!("{hostname}:5051"),
            resources: res(resources),
            attributes: Default::default(),
        }
    }

    /// Connects and registers an agent; returns its connection and id.
    pub fn agent(&mut self, hostname: &str, resources: &str) -> (ConnId, AgentId) {
        self.register_agent(None, Self::agent_info(hostname, resources), Vec::new())
    }

    /// Connects an agent and sends REGISTER; returns the connection and whatever the
    /// master answered (a refusal included).
    pub fn agent_registers(
        &mut self,
        id: Option<AgentId>,
        info: AgentInfo,
        tasks: Vec<RunningTask>,
    ) -> (ConnId, Vec<Output>) {
        let conn = self.conn();
        self.input(Input::AgentConnected {
            conn,
            peer: "sim".into(),
        });
        let out = self.input(Input::Agent {
            conn,
            msg: AgentMessage::Register {
                agent_id: id,
                info,
                tasks,
            },
        });
        (conn, out)
    }

    pub fn register_agent(
        &mut self,
        id: Option<AgentId>,
        info: AgentInfo,
        tasks: Vec<RunningTask>,
    ) -> (ConnId, AgentId) {
        let (conn, out) = self.agent_registers(id, info, tasks);
        let id = to_agent(&out, conn)
            .into_iter()
            .find_map(|m| match m {
                MasterMessage::Registered { agent_id, .. } => Some(agent_id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("agent not registered: {out:?}"));
        (conn, id)
    }

    pub fn framework(
        &mut self,
        name: &str,
        roles: &[&str],
        partition_aware: bool,
        failover_timeout_ms: u64,
    ) -> (ConnId, FrameworkId) {
        let info = FrameworkInfo {
            id: None,
            name: name.into(),
            user: "root".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            principal: None,
            failover_timeout_ms,
            capabilities: Capabilities {
                partition_aware,
                ..Default::default()
            },
            offer_constraints: Vec::new(),
        };
        self.subscribe(info)
    }

    pub fn subscribe(&mut self, info: FrameworkInfo) -> (ConnId, FrameworkId) {
        let conn = self.conn();
        self.input(Input::FrameworkConnected {
            conn,
            peer: "sim".into(),
        });
        let out = self.call(
            conn,
            Call::Subscribe {
                framework: info,
                suppressed_roles: Vec::new(),
            },
        );
        let id = to_framework(&out, conn)
            .into_iter()
            .find_map(|e| match e {
                Event::Subscribed { framework_id, .. } => Some(framework_id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("framework not subscribed: {out:?}"));
        (conn, id)
    }

    pub fn call(&mut self, conn: ConnId, call: Call) -> Vec<Output> {
        self.input(Input::Framework { conn, call })
    }

    pub fn agent_says(&mut self, conn: ConnId, msg: AgentMessage) -> Vec<Output> {
        self.input(Input::Agent { conn, msg })
    }

    /// The agent sends a status update; returns the outputs and the uuid used.
    pub fn update(
        &mut self,
        conn: ConnId,
        framework: &FrameworkId,
        agent: &AgentId,
        task: &TaskId,
        state: TaskState,
    ) -> (Vec<Output>, UpdateUuid) {
        let uuid = UpdateUuid::random();
        let status = TaskStatus {
            task_id: task.clone(),
            agent_id: Some(agent.clone()),
            state,
            reason: None,
            message: String::new(),
            source: Source::Executor,
            uuid: Some(uuid),
            exit_code: None,
            sandbox: Some("/sandbox".into()),
            timestamp_ms: 1,
        };
        let out = self.agent_says(
            conn,
            AgentMessage::StatusUpdate(StatusUpdate {
                framework_id: framework.clone(),
                status,
            }),
        );
        (out, uuid)
    }

    /// An in-place report, as the shell would pass it.
    pub fn report(&mut self, conn: ConnId, report: &Report) -> Vec<Output> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(report).unwrap();
        let archived = rkyv::access::<
            fleet_proto::messages::agent::ArchivedReport,
            rkyv::rancor::Error,
        >(&bytes)
        .unwrap();
        self.master
            .handle_report(conn, archived, self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }

    /// Ticks until a framework gets offers (at most `max` allocation intervals).
    pub fn offers_within(&mut self, conn: ConnId, max: u32) -> Vec<Offer> {
        for _ in 0..max {
            let out = self.advance(self.master.config().allocation_interval);
            let offers = offers(&out, conn);
            if !offers.is_empty() {
                return offers;
            }
        }
        Vec::new()
    }
}

pub(super) fn to_framework(out: &[Output], conn: ConnId) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToFramework { conn: c, event } if *c == conn => Some(event.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn to_agent(out: &[Output], conn: ConnId) -> Vec<MasterMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToAgent { conn: c, msg } if *c == conn => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn offers(out: &[Output], conn: ConnId) -> Vec<Offer> {
    to_framework(out, conn)
        .into_iter()
        .flat_map(|e| match e {
            Event::Offers { offers } => offers,
            _ => Vec::new(),
        })
        .collect()
}

pub(super) fn updates(out: &[Output], conn: ConnId) -> Vec<TaskStatus> {
    to_framework(out, conn)
        .into_iter()
        .filter_map(|e| match e {
            Event::Update { status } => Some(status),
            _ => None,
        })
        .collect()
}

pub(super) fn rescinds(out: &[Output], conn: ConnId) -> Vec<OfferId> {
    to_framework(out, conn)
        .into_iter()
        .filter_map(|e| match e {
            Event::Rescind { offer_id } => Some(offer_id),
            _ => None,
        })
        .collect()
}

pub(super) fn closed(out: &[Output], conn: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))
}

pub(super) fn task(id: &str, agent: &AgentId, resources: &str) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::from(id),
        name: id.into(),
        agent_id: agent.clone(),
        resources: res(resources),
        command: CommandInfo {
            shell: true,
            value: "true".into(),
            ..Default::default()
        },
        kill_grace_ms: None,
    }
}

pub(super) fn launch(offer_ids: Vec<OfferId>, tasks: Vec<TaskInfo>) -> Call {
    Call::Accept {
        offer_ids,
        operations: vec![Operation::Launch { tasks }],
        filters: None,
    }
}
