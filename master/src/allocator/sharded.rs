//! The allocator split into shards: each shard is an [`Allocator`] that owns a fixed part
//! of the agents and allocates them in its own loop, ordering roles and frameworks by what
//! they hold on every shard through the [`SharedTable`] of atomic counters. Frameworks,
//! weights, suppression and revival reach every shard; an agent's events reach its shard
//! only.
//!
//! Two drivers over the same shards:
//! - [`Shards`] runs them in one thread, a full cycle interleaving the shards agent by
//!   agent (shard 0's first agent, shard 1's first, ...): the deterministic model of the
//!   concurrent schedule, for property tests.
//! - [`ThreadedShards`] gives each shard a thread of its own, fed through lock-free
//!   channels; a full cycle runs on all shards at once. No lock is taken while a shard
//!   allocates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::messages::scheduler::RoleConstraints;
use fleet_proto::resources::{Attributes, Resources};

use super::quota::Quota;
use super::shared::SharedTable;
use super::sorter::Quantities;
use super::{Allocation, Allocator, AllocatorConfig, AllocatorError, Shares};

/// The shard that owns `agent` among `shards`: a stable hash of its id (FNV-1a), so every
/// master process places an agent on the same shard.
pub fn shard_of(agent: &AgentId, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in agent.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// Shards driven from one thread; see the module documentation.
#[derive(Debug)]
pub struct Shards {
    table: Arc<SharedTable>,
    shards: Vec<Allocator>,
}

impl Shards {
    /// `count` shards sharing one table; one shard is a plain [`Allocator`] (no table).
    pub fn new(config: AllocatorConfig, count: usize) -> Self {
        let table = SharedTable::new();
        let shards = if count <= 1 {
            vec![Allocator::new(config)]
        } else {
            (0..count)
                .map(|_| Allocator::shard(config.clone(), table.clone()))
                .collect()
        };
        Self { table, shards }
    }

    /// A full cycle with every shard in a thread of its own, at once (scoped threads for
    /// the cycle's duration); one shard runs in the caller's thread. The offers of shard 0
    /// come first, then shard 1's, and so on.
    pub fn allocate_parallel(&mut self, now: Instant) -> Vec<Allocation> {
        if self.shards.len() == 1 {
            return self.shards[0].allocate(now);
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = self
                .shards
                .iter_mut()
                .map(|shard| scope.spawn(move || shard.allocate(now)))
                .collect();
            running
                .into_iter()
                .flat_map(|thread| match thread.join() {
                    Ok(offers) => offers,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    pub fn config(&self) -> &AllocatorConfig {
        self.shards[0].config()
    }

    /// Role weights that were set.
    pub fn weights(&self) -> BTreeMap<String, f64> {
        self.shards[0].weights()
    }

    pub fn table(&self) -> &Arc<SharedTable> {
        &self.table
    }

    pub fn count(&self) -> usize {
        self.shards.len()
    }

    fn owner(&mut self, agent: &AgentId) -> &mut Allocator {
        let index = shard_of(agent, self.shards.len());
        &mut self.shards[index]
    }

    fn owner_ref(&self, agent: &AgentId) -> &Allocator {
        &self.shards[shard_of(agent, self.shards.len())]
    }

    fn each(&mut self, mut f: impl FnMut(&mut Allocator)) {
        self.shards.iter_mut().for_each(&mut f);
    }

    pub fn add_agent(
        &mut self,
        id: AgentId,
        total: Resources,
        used: Vec<(FrameworkId, Resources)>,
    ) -> Result<(), AllocatorError> {
        self.owner(&id).add_agent(id, total, used)
    }

    pub fn remove_agent(&mut self, id: &AgentId) {
        self.owner(id).remove_agent(id);
    }

    pub fn set_agent_total(
        &mut self,
        id: &AgentId,
        total: Resources,
    ) -> Result<(), AllocatorError> {
        self.owner(id).set_agent_total(id, total)
    }

    pub fn update_allocation(
        &mut self,
        framework: &FrameworkId,
        role: &str,
        agent: &AgentId,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        self.owner(agent)
            .update_allocation(framework, role, agent, from, to)
    }

    pub fn deactivate_agent(&mut self, id: &AgentId) {
        self.owner(id).deactivate_agent(id);
    }

    pub fn activate_agent(&mut self, id: &AgentId) {
        self.owner(id).activate_agent(id);
    }

    pub fn add_framework(&mut self, id: FrameworkId, roles: Vec<String>, suppressed: Vec<String>) {
        self.each(|shard| shard.add_framework(id.clone(), roles.clone(), suppressed.clone()));
    }

    pub fn remove_framework(&mut self, id: &FrameworkId) {
        self.each(|shard| shard.remove_framework(id));
        self.table.forget_framework(id);
    }

    pub fn deactivate_framework(&mut self, id: &FrameworkId) {
        self.each(|shard| shard.deactivate_framework(id));
    }

    pub fn activate_framework(&mut self, id: &FrameworkId) {
        self.each(|shard| shard.activate_framework(id));
    }

    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        self.shards
            .iter_mut()
            .try_for_each(|shard| shard.set_weight(role, weight))
    }

    pub fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[String]>) {
        self.each(|shard| shard.suppress(framework, roles));
    }

    pub fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        self.shards
            .iter_mut()
            .try_for_each(|shard| shard.set_quota(role, quota.clone()))
    }

    pub fn describe_agent(&mut self, id: &AgentId, hostname: &str, attributes: &Attributes) {
        self.owner(id).describe_agent(id, hostname, attributes);
    }

    pub fn set_offer_constraints(
        &mut self,
        framework: &FrameworkId,
        constraints: &[RoleConstraints],
    ) -> Result<(), AllocatorError> {
        self.shards
            .iter_mut()
            .try_for_each(|shard| shard.set_offer_constraints(framework, constraints))
    }

    /// What `role` holds over all shards.
    pub fn consumed(&self, role: &str) -> Quantities {
        self.shards[0].consumed(role)
    }

    pub fn revive(&mut self, framework: &FrameworkId, roles: Option<&[String]>) {
        self.each(|shard| shard.revive(framework, roles));
    }

    pub fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        self.owner(agent)
            .decline(framework, agent, resources, refuse, now);
    }

    pub fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        self.owner(agent).recover(framework, agent, resources)
    }

    pub fn recover_in(
        &mut self,
        framework: &FrameworkId,
        role: Option<&str>,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        self.owner(agent)
            .recover_in(framework, role, agent, resources)
    }

    /// A full cycle on every shard, interleaved agent by agent.
    pub fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        let mut cycles: Vec<_> = self
            .shards
            .iter_mut()
            .map(|shard| shard.begin_cycle(now))
            .collect();
        let mut out = Vec::new();
        let mut busy = true;
        while busy {
            busy = false;
            for (shard, cycle) in self.shards.iter_mut().zip(cycles.iter_mut()) {
                busy |= shard.step(cycle, &mut out);
            }
        }
        out
    }

    pub fn allocate_agents(&mut self, agents: &[AgentId], now: Instant) -> Vec<Allocation> {
        let count = self.shards.len();
        let mut out = Vec::new();
        for (index, shard) in self.shards.iter_mut().enumerate() {
            let mine: Vec<AgentId> = agents
                .iter()
                .filter(|a| shard_of(a, count) == index)
                .cloned()
                .collect();
            if !mine.is_empty() {
                out.extend(shard.allocate_agents(&mine, now));
            }
        }
        out
    }

    pub fn check_invariants(&self) -> Result<(), AllocatorError> {
        self.shards.iter().try_for_each(Allocator::check_invariants)
    }

    pub fn allocated_on(&self, agent: &AgentId) -> Option<&Resources> {
        self.owner_ref(agent).allocated_on(agent)
    }

    /// Checks that the shared table holds, for every role, exactly the sum of what the
    /// shards hold for it on their own agents; the error names the first difference.
    pub fn check_table(&self) -> Result<(), String> {
        if self.shards.len() == 1 {
            // One shard keeps no table.
            return Ok(());
        }
        let mut sums: BTreeMap<String, Quantities> = BTreeMap::new();
        for shard in &self.shards {
            for (role, quantities) in shard.role_allocations() {
                sums.entry(role).or_default().add(&quantities);
            }
        }
        for (role, sum) in &sums {
            for name in self.table.names() {
                let table = self.table.held(role, None, &name);
                if table != sum.get(&name) {
                    return Err(format!(
                        "role '{role}' holds {} milli-{name} on the shards' agents, the table says {table}",
                        sum.get(&name)
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn available_on(&self, agent: &AgentId) -> Option<Resources> {
        self.owner_ref(agent).available_on(agent)
    }

    pub fn allocated_to(&self, framework: &FrameworkId) -> Resources {
        let mut sum = Resources::new();
        for shard in &self.shards {
            sum.add(&shard.allocated_to(framework));
        }
        sum
    }

    /// Shares over all shards (every shard reads the same table).
    pub fn shares(&self) -> Shares {
        self.shards[0].shares()
    }

    pub fn agent_count(&self) -> usize {
        self.shards.iter().map(Allocator::agent_count).sum()
    }
}

type Job = Box<dyn FnOnce(&mut ShardState) + Send>;

struct ShardState {
    allocator: Allocator,
    /// Errors of calls that do not wait for an answer (recover), reported with the next
    /// cycle's result.
    errors: Vec<AllocatorError>,
}

/// Shards, each in a thread of its own; see the module documentation. Calls that change
/// one agent go to its shard's queue and return at once (in order per shard); a full cycle
/// runs on every shard concurrently and returns when all are done.
pub struct ThreadedShards {
    table: Arc<SharedTable>,
    queues: Vec<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    config: AllocatorConfig,
}

impl std::fmt::Debug for ThreadedShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedShards")
            .field("shards", &self.queues.len())
            .finish()
    }
}

/// A shard's thread stopped (it panicked); the sharded allocator cannot go on.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("allocator shard {0} stopped")]
pub struct ShardStopped(pub usize);

impl ThreadedShards {
    /// Starts `count` shard threads (at least one) sharing one table.
    pub fn start(config: AllocatorConfig, count: usize) -> std::io::Result<Self> {
        let table = SharedTable::new();
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let (send, recv) = mpsc::channel::<Job>();
            let mut state = ShardState {
                allocator: Allocator::shard(config.clone(), table.clone()),
                errors: Vec::new(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("allocator-{index}"))
                .spawn(move || {
                    while let Ok(job) = recv.recv() {
                        job(&mut state);
                    }
                })?;
            queues.push(send);
            threads.push(thread);
        }
        Ok(Self {
            table,
            queues,
            threads,
            config,
        })
    }

    pub fn count(&self) -> usize {
        self.queues.len()
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    pub fn table(&self) -> &Arc<SharedTable> {
        &self.table
    }

    fn send(&self, index: usize, job: Job) -> Result<(), ShardStopped> {
        self.queues[index]
            .send(job)
            .map_err(|_| ShardStopped(index))
    }

    fn to_owner(
        &self,
        agent: &AgentId,
        job: impl FnOnce(&mut ShardState) + Send + 'static,
    ) -> Result<(), ShardStopped> {
        self.send(shard_of(agent, self.queues.len()), Box::new(job))
    }

    /// Runs `f` on every shard and waits for all of them.
    fn on_all<T: Send + 'static>(
        &self,
        f: impl Fn(&mut ShardState) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, ShardStopped> {
        self.on_all_indexed(move |_, state| f(state))
    }

    /// [`ThreadedShards::on_all`], telling `f` which shard it runs on.
    fn on_all_indexed<T: Send + 'static>(
        &self,
        f: impl Fn(usize, &mut ShardState) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, ShardStopped> {
        let f = Arc::new(f);
        let mut answers = Vec::new();
        for index in 0..self.queues.len() {
            let (reply, answer) = mpsc::sync_channel(1);
            let f = f.clone();
            self.send(
                index,
                Box::new(move |state| {
                    let _ = reply.send(f(index, state));
                }),
            )?;
            answers.push(answer);
        }
        answers
            .into_iter()
            .enumerate()
            .map(|(index, answer)| answer.recv().map_err(|_| ShardStopped(index)))
            .collect()
    }

    /// Runs `f` on every shard (with its index) and waits for all of them: for batches,
    /// such as setting up a benchmark's filters, where one call per agent would cost more
    /// than the work.
    pub fn on_each_shard(
        &self,
        f: impl Fn(usize, &mut Allocator) + Send + Sync + 'static,
    ) -> Result<(), ShardStopped> {
        self.on_all_indexed(move |index, state| f(index, &mut state.allocator))
            .map(drop)
    }

    /// Runs `f` on the shard that owns `agent` and waits for its answer.
    fn on_owner<T: Send + 'static>(
        &self,
        agent: &AgentId,
        f: impl FnOnce(&mut ShardState) -> T + Send + 'static,
    ) -> Result<T, ShardStopped> {
        let index = shard_of(agent, self.queues.len());
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(
            index,
            Box::new(move |state| {
                let _ = reply.send(f(state));
            }),
        )?;
        answer.recv().map_err(|_| ShardStopped(index))
    }

    pub fn add_agent(
        &self,
        id: AgentId,
        total: Resources,
        used: Vec<(FrameworkId, Resources)>,
    ) -> Result<Result<(), AllocatorError>, ShardStopped> {
        let owner = id.clone();
        self.on_owner(&owner, move |s| s.allocator.add_agent(id, total, used))
    }

    pub fn add_framework(
        &self,
        id: FrameworkId,
        roles: Vec<String>,
        suppressed: Vec<String>,
    ) -> Result<(), ShardStopped> {
        self.on_all(move |s| {
            s.allocator
                .add_framework(id.clone(), roles.clone(), suppressed.clone())
        })
        .map(drop)
    }

    pub fn remove_framework(&self, id: FrameworkId) -> Result<(), ShardStopped> {
        let forget = id.clone();
        self.on_all(move |s| s.allocator.remove_framework(&id))?;
        self.table.forget_framework(&forget);
        Ok(())
    }

    pub fn set_quota(
        &self,
        role: String,
        quota: Quota,
    ) -> Result<Result<(), AllocatorError>, ShardStopped> {
        let answers = self.on_all(move |s| s.allocator.set_quota(&role, quota.clone()))?;
        Ok(answers.into_iter().collect())
    }

    pub fn set_weight(
        &self,
        role: String,
        weight: f64,
    ) -> Result<Result<(), AllocatorError>, ShardStopped> {
        let answers = self.on_all(move |s| s.allocator.set_weight(&role, weight))?;
        Ok(answers.into_iter().collect())
    }

    /// DECLINE, queued to the agent's shard.
    pub fn decline(
        &self,
        framework: FrameworkId,
        agent: AgentId,
        resources: Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ShardStopped> {
        let owner = agent.clone();
        self.to_owner(&owner, move |s| {
            s.allocator
                .decline(&framework, &agent, &resources, refuse, now)
        })
    }

    /// Returns once every shard has applied every call queued before.
    pub fn settle(&self) -> Result<(), ShardStopped> {
        self.on_all(|_| ()).map(drop)
    }

    /// Recovery, queued to the agent's shard; an error comes back with the next cycle.
    pub fn recover(
        &self,
        framework: FrameworkId,
        agent: AgentId,
        resources: Resources,
    ) -> Result<(), ShardStopped> {
        let owner = agent.clone();
        self.to_owner(&owner, move |s| {
            if let Err(e) = s.allocator.recover(&framework, &agent, &resources) {
                s.errors.push(e);
            }
        })
    }

    /// A full cycle on every shard at once. Errors of queued calls since the last cycle
    /// come back with it.
    pub fn allocate(
        &self,
        now: Instant,
    ) -> Result<(Vec<Allocation>, Vec<AllocatorError>), ShardStopped> {
        let answers = self.on_all(move |s| {
            let offers = s.allocator.allocate(now);
            (offers, std::mem::take(&mut s.errors))
        })?;
        let mut offers = Vec::new();
        let mut errors = Vec::new();
        for (o, e) in answers {
            offers.extend(o);
            errors.extend(e);
        }
        Ok((offers, errors))
    }

    /// Every shard's invariants; what each holds for `framework`, summed.
    pub fn check_invariants(&self) -> Result<Result<(), AllocatorError>, ShardStopped> {
        let answers = self.on_all(|s| s.allocator.check_invariants())?;
        Ok(answers.into_iter().collect())
    }

    pub fn allocated_to(&self, framework: FrameworkId) -> Result<Resources, ShardStopped> {
        let parts = self.on_all(move |s| s.allocator.allocated_to(&framework))?;
        let mut sum = Resources::new();
        for part in parts {
            sum.add(&part);
        }
        Ok(sum)
    }

    /// Shares over all shards, as shard 0 reads them from the table.
    pub fn shares(&self) -> Result<Shares, ShardStopped> {
        let mut answers = self.on_all(|s| s.allocator.shares())?;
        Ok(answers.swap_remove(0))
    }
}

impl Drop for ThreadedShards {
    fn drop(&mut self) {
        self.queues.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
