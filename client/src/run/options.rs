//! What `fleet run` is asked to do, its validation, and the pure decisions made from it:
//! which part of an offer holds the task, which ports it gets, and the task to launch.

use std::net::SocketAddr;
use std::time::Duration;

use fleet_proto::ids::{AgentId, TaskId, random_id};
use fleet_proto::messages::scheduler::{
    AttributeConstraint, Capabilities, FrameworkInfo, Offer, Predicate, RoleConstraints, Selector,
};
use fleet_proto::resources::{DEFAULT_ROLE, Resource, Resources, Scalar, check_role};
use fleet_proto::task::{CommandInfo, TaskInfo};

use crate::credential::Credential;
use crate::error::ClientError;

/// Options of a one-task run (the `fleet run` flags).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The master's QUIC address.
    pub master: SocketAddr,
    /// The other masters of a replicated group (`--master A,B,C`): the run subscribes
    /// with whichever leads, and again with the next leader after a failover.
    pub other_masters: Vec<SocketAddr>,
    /// PEM of the cluster CA certificate.
    pub ca_pem: String,
    /// Task (and framework) name.
    pub name: String,
    /// Role to run under; None is the default role "*".
    pub role: Option<String>,
    pub cpus: f64,
    pub mem_mb: f64,
    pub disk_mb: Option<f64>,
    /// How many ports the task gets (picked from the offer, lowest first).
    pub ports: u32,
    pub gpus: u32,
    /// One element: run through `sh -c`. Several: exec'd as argv.
    pub command: Vec<String>,
    pub partition_aware: bool,
    /// How long to wait for an offer that holds the task.
    pub offer_timeout: Duration,
    /// Offer constraints, all of which an agent must meet (see [`parse_constraint`]).
    pub constraints: Vec<AttributeConstraint>,
    /// The principal and secret to authenticate with (a master with a credentials file
    /// requires them).
    pub credential: Option<Credential>,
}

/// One `--constraint`: `NAME=VALUE` (equals), `NAME!=VALUE` (differs or is absent),
/// `NAME~REGEX` (the whole value matches), `NAME` (present), `!NAME` (absent). `hostname`
/// names the agent's hostname; any other NAME an attribute.
pub fn parse_constraint(text: &str) -> Result<AttributeConstraint, ClientError> {
    let bad = |why: &str| {
        invalid(
            "--constraint",
            format!("{text:?}: {why} (NAME=VALUE, NAME!=VALUE, NAME~REGEX, NAME or !NAME)"),
        )
    };
    let selector = |name: &str| -> Result<Selector, ClientError> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(bad("the name must be a word"));
        }
        Ok(if name == "hostname" {
            Selector::Hostname
        } else {
            Selector::Attribute(name.to_owned())
        })
    };
    let (selector, predicate) = if let Some((name, value)) = text.split_once("!=") {
        (selector(name)?, Predicate::TextNotEquals(value.to_owned()))
    } else if let Some((name, value)) = text.split_once('=') {
        (selector(name)?, Predicate::TextEquals(value.to_owned()))
    } else if let Some((name, pattern)) = text.split_once('~') {
        (selector(name)?, Predicate::TextMatches(pattern.to_owned()))
    } else if let Some(name) = text.strip_prefix('!') {
        (selector(name)?, Predicate::NotExists)
    } else {
        (selector(text)?, Predicate::Exists)
    };
    Ok(AttributeConstraint {
        selector,
        predicate,
    })
}

impl RunOptions {
    /// Defaults (cpus 0.1, mem 128 MB, no disk, ports or GPUs, 60 s offer timeout) for
    /// `command` on the master at `master`.
    pub fn new(master: SocketAddr, ca_pem: String, command: Vec<String>) -> Self {
        RunOptions {
            master,
            other_masters: Vec::new(),
            ca_pem,
            name: "fleet-run".to_owned(),
            role: None,
            cpus: 0.1,
            mem_mb: 128.0,
            disk_mb: None,
            ports: 0,
            gpus: 0,
            command,
            partition_aware: false,
            offer_timeout: Duration::from_secs(60),
            constraints: Vec::new(),
            credential: None,
        }
    }

    /// Checks the options and turns them into the task's resource request.
    pub fn validate(&self) -> Result<TaskRequest, ClientError> {
        if self.command.is_empty() || self.command.iter().all(|a| a.trim().is_empty()) {
            return Err(invalid("command", "no command given (put it after `--`)"));
        }
        if self.name.trim().is_empty() {
            return Err(invalid("--name", "the task name must not be empty"));
        }
        if let Some(role) = &self.role {
            check_role(role).map_err(|e| invalid("--role", format!("'{role}': {e}")))?;
        }
        let cpus = positive_scalar("--cpus", self.cpus)?;
        let mem = positive_scalar("--mem", self.mem_mb)?;
        let disk = match self.disk_mb {
            Some(d) => positive_scalar("--disk", d)?,
            None => Scalar::ZERO,
        };
        if self.offer_timeout.is_zero() {
            return Err(invalid("offer timeout", "must be longer than 0 s"));
        }
        Ok(TaskRequest {
            cpus,
            mem,
            disk,
            gpus: Scalar::from_units(u64::from(self.gpus)),
            ports: u64::from(self.ports),
        })
    }

    /// The role asked for, or "*".
    pub fn effective_role(&self) -> &str {
        self.role.as_deref().unwrap_or(DEFAULT_ROLE)
    }

    /// The framework this run subscribes as.
    pub fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo {
            id: None,
            name: self.name.clone(),
            user: std::env::var("USER").unwrap_or_else(|_| "root".to_owned()),
            roles: self.role.iter().cloned().collect(),
            principal: None,
            failover_timeout_ms: 0,
            capabilities: Capabilities {
                partition_aware: self.partition_aware,
                gpu_resources: self.gpus > 0,
                multi_role: false,
            },
            offer_constraints: if self.constraints.is_empty() {
                Vec::new()
            } else {
                vec![RoleConstraints {
                    role: self.effective_role().to_owned(),
                    groups: vec![self.constraints.clone()],
                }]
            },
        }
    }

    /// The command as the agent runs it.
    pub fn command_info(&self) -> CommandInfo {
        match self.command.as_slice() {
            [shell] => CommandInfo {
                shell: true,
                value: shell.clone(),
                arguments: Vec::new(),
                environment: Vec::new(),
            },
            argv => CommandInfo {
                shell: false,
                value: argv.first().cloned().unwrap_or_default(),
                arguments: argv.to_vec(),
                environment: Vec::new(),
            },
        }
    }

    /// A fresh task id named after the run, e.g. "fleet-run-6f1c0e2d9ab34c57".
    pub fn new_task_id(&self) -> TaskId {
        TaskId(random_id(&self.name))
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> ClientError {
    ClientError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

fn positive_scalar(option: &'static str, value: f64) -> Result<Scalar, ClientError> {
    let scalar = Scalar::from_f64(value)
        .ok_or_else(|| invalid(option, format!("{value} is not a usable number")))?;
    if !scalar.is_positive() {
        return Err(invalid(
            option,
            format!("{value} must be > 0 (and at least 0.001)"),
        ));
    }
    Ok(scalar)
}

/// What the one task needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    pub cpus: Scalar,
    pub mem: Scalar,
    pub disk: Scalar,
    pub gpus: Scalar,
    pub ports: u64,
}

impl TaskRequest {
    /// The request in the resource text syntax, for messages ("cpus:0.1;mem:128").
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("cpus:{}", self.cpus), format!("mem:{}", self.mem)];
        if self.disk.is_positive() {
            parts.push(format!("disk:{}", self.disk));
        }
        if self.gpus.is_positive() {
            parts.push(format!("gpus:{}", self.gpus));
        }
        if self.ports > 0 {
            parts.push(format!("ports:{} ports", self.ports));
        }
        parts.join(";")
    }

    /// The exact resources to take from `offer`, or None when it cannot hold the task.
    ///
    /// Each resource comes whole from one reservation: resources reserved for the offer's
    /// role are preferred (that is what they are for), unreserved ones otherwise. Ports
    /// are the lowest free ones.
    pub fn fit(&self, offer: &Offer) -> Option<Resources> {
        let mut roles = Vec::with_capacity(2);
        if offer.role != DEFAULT_ROLE {
            roles.push(offer.role.as_str());
        }
        roles.push(DEFAULT_ROLE);
        let mut out = Resources::new();
        for (name, amount) in [
            ("cpus", self.cpus),
            ("mem", self.mem),
            ("disk", self.disk),
            ("gpus", self.gpus),
        ] {
            if !amount.is_positive() {
                continue;
            }
            let role = roles
                .iter()
                .find(|role| offer.resources.reserved(role).scalar(name) >= amount)?;
            out.push(Resource::scalar(name, amount).with_role(*role));
        }
        if self.ports > 0 {
            let (role, ports) = roles.iter().find_map(|role| {
                let free = offer.resources.reserved(role).ports();
                free.take(self.ports).map(|taken| (*role, taken))
            })?;
            out.push(Resource::ranges("ports", ports).with_role(role));
        }
        // Belt and braces: never send an ACCEPT the master must refuse.
        offer.resources.contains(&out).then_some(out)
    }

    /// The task to launch on `offer` with `resources` (from [`fit`](Self::fit)).
    pub fn task_info(
        &self,
        opts: &RunOptions,
        task_id: TaskId,
        agent_id: AgentId,
        resources: Resources,
    ) -> TaskInfo {
        TaskInfo {
            task_id,
            name: opts.name.clone(),
            agent_id,
            resources,
            command: opts.command_info(),
            kill_grace_ms: None,
        }
    }
}

#[cfg(test)]
#[path = "options_tests.rs"]
pub(crate) mod tests;
