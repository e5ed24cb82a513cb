//! A simulated cluster for allocator benchmarks: N agents of a few realistic shapes (cpus,
//! mem, disk, ports), M frameworks spread over K roles, and the two workloads of Mesos'
//! allocator benchmarks: every framework declines every offer with a long filter, or
//! frameworks launch a small task from each offer and give the rest back.
//!
//! Time is simulated: each cycle moves the clock by one allocation interval, so filters and
//! their expiry behave as in a real run without any sleep.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc;

use fleet_master::allocator::sharded::{ShardStopped, ThreadedShards, shard_of};
use fleet_master::allocator::{Allocation, Allocator, AllocatorConfig, AllocatorError};

use crate::mesos_drf::MesosDrf;
use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::resources::Resources;

use crate::BenchError;

/// Agent shapes, cycled over the agents: a big node, a medium one, a small one with a GPU.
const AGENT_SHAPES: [&str; 3] = [
    "cpus:32;mem:131072;disk:500000;ports:[31000-32000]",
    "cpus:16;mem:65536;disk:200000;ports:[31000-31500]",
    "cpus:8;mem:32768;disk:100000;gpus:1;ports:[31000-31100]",
];

/// What one simulated task takes from an offer, besides one port.
const TASK: &str = "cpus:1;mem:1024;disk:1000";

/// Size of a simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClusterSpec {
    pub agents: usize,
    pub frameworks: usize,
    /// Frameworks are spread round-robin over this many roles.
    pub roles: usize,
    /// Allocator shards: 1 is the single-threaded allocator; more run
    /// [`ThreadedShards`], one thread each.
    pub shards: usize,
}

impl ClusterSpec {
    pub const fn new(agents: usize, frameworks: usize, roles: usize) -> Self {
        Self {
            agents,
            frameworks,
            roles,
            shards: 1,
        }
    }

    pub const fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }
}

impl std::fmt::Display for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.agents, self.frameworks)
    }
}

/// How frameworks answer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Workload {
    /// Every framework declines every offer with a long refusal, so after the first rounds
    /// each agent is hidden from every framework by a filter and a cycle spends its time
    /// checking filters (Mesos' `DeclineOffers` benchmark).
    DeclineAll,
    /// Each offer launches one small task (cpus:1, mem:1024, disk:1000, one port) and the
    /// rest is recovered; tasks end a few cycles later, so the cluster stays busy but never
    /// fills up.
    AcceptPart,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::DeclineAll => "decline_all",
            Workload::AcceptPart => "accept_part",
        }
    }
}

/// Refusal used by [`Workload::DeclineAll`]: long enough never to expire during a run.
pub const LONG_REFUSE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many cycles a task of [`Workload::AcceptPart`] runs before it ends.
pub const TASK_CYCLES: usize = 4;

pub fn agent_id(i: usize) -> AgentId {
    AgentId::new(format!("{}-S{i}", crate::reports::uuid_like(i as u64)))
}

pub fn framework_id(i: usize) -> FrameworkId {
    FrameworkId::new(format!(
        "{}-{i:04}",
        crate::reports::uuid_like(1 << 40 | i as u64)
    ))
}

pub fn role_name(i: usize) -> String {
    format!("role-{i}")
}

fn parse(text: &str) -> Result<Resources, BenchError> {
    Resources::parse(text).map_err(|source| BenchError::Resources {
        text: text.to_owned(),
        source,
    })
}

/// Total resources of simulated agent `i`.
pub fn agent_resources(i: usize) -> Result<Resources, BenchError> {
    parse(AGENT_SHAPES[i % AGENT_SHAPES.len()])
}

/// What the simulation needs of an allocator: Fleet's, or the Mesos-algorithm baseline.
pub trait SimAllocator: Sized {
    /// An allocator with `shards` shards; one that cannot shard refuses more than one.
    fn new_with(config: AllocatorConfig, shards: usize) -> Result<Self, BenchError>;
    fn allocation_interval(&self) -> Duration;
    fn add_agent(&mut self, id: &AgentId, total: Resources) -> Result<(), BenchError>;
    fn add_framework(&mut self, id: &FrameworkId, role: String);
    fn allocate(&mut self, now: Instant) -> Vec<Allocation>;
    fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    );
    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), BenchError>;
    /// Returns once every queued call took effect (a threaded allocator applies declines
    /// and recoveries in the background): the answers stay off the clock of the next cycle.
    fn settle(&mut self) -> Result<(), BenchError> {
        Ok(())
    }
    /// Every framework declines every agent's `resources` (index-aligned with `agents`).
    fn decline_all(
        &mut self,
        frameworks: &[FrameworkId],
        agents: &[(AgentId, Resources)],
        refuse: Duration,
        now: Instant,
    ) {
        for framework in frameworks {
            for (agent, total) in agents {
                self.decline(framework, agent, total, Some(refuse), now);
            }
        }
    }
}

/// [`ThreadedShards`] for the simulation: errors of queued recoveries come back from the
/// next recovery.
#[derive(Debug)]
pub struct SimShards {
    pub shards: ThreadedShards,
    errors: Vec<AllocatorError>,
}

impl SimShards {
    fn stopped(e: ShardStopped) -> BenchError {
        BenchError::Sim {
            what: "allocator".to_owned(),
            reason: e.to_string(),
        }
    }
}

impl SimAllocator for SimShards {
    fn new_with(config: AllocatorConfig, shards: usize) -> Result<Self, BenchError> {
        let shards = ThreadedShards::start(config, shards).map_err(|source| BenchError::Io {
            what: "starting allocator shard threads".to_owned(),
            source,
        })?;
        Ok(Self {
            shards,
            errors: Vec::new(),
        })
    }
    fn allocation_interval(&self) -> Duration {
        self.shards.config().allocation_interval
    }
    fn add_agent(&mut self, id: &AgentId, total: Resources) -> Result<(), BenchError> {
        Ok(self
            .shards
            .add_agent(id.clone(), total, vec![])
            .map_err(Self::stopped)??)
    }
    fn add_framework(&mut self, id: &FrameworkId, role: String) {
        if let Err(e) = self.shards.add_framework(id.clone(), vec![role], vec![]) {
            panic!("{e}");
        }
    }
    fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        match self.shards.allocate(now) {
            Ok((offers, errors)) => {
                self.errors.extend(errors);
                offers
            }
            Err(e) => panic!("{e}"),
        }
    }
    fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        if let Err(e) = self.shards.decline(
            framework.clone(),
            agent.clone(),
            resources.clone(),
            refuse,
            now,
        ) {
            panic!("{e}");
        }
    }
    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), BenchError> {
        if let Some(e) = self.errors.pop() {
            return Err(e.into());
        }
        self.shards
            .recover(framework.clone(), agent.clone(), resources.clone())
            .map_err(Self::stopped)
    }
    fn settle(&mut self) -> Result<(), BenchError> {
        self.shards.settle().map_err(Self::stopped)
    }
    fn decline_all(
        &mut self,
        frameworks: &[FrameworkId],
        agents: &[(AgentId, Resources)],
        refuse: Duration,
        now: Instant,
    ) {
        let frameworks = Arc::new(frameworks.to_vec());
        let agents = Arc::new(agents.to_vec());
        let count = self.shards.count();
        let done = self.shards.on_each_shard(move |index, shard| {
            let mine: Vec<(AgentId, Resources)> = agents
                .iter()
                .filter(|(a, _)| shard_of(a, count) == index)
                .cloned()
                .collect();
            shard.decline_many(&frameworks, &mine, Some(refuse), now);
        });
        if let Err(e) = done {
            panic!("{e}");
        }
    }
}

fn unsharded(what: &str, shards: usize) -> Result<(), BenchError> {
    if shards == 1 {
        Ok(())
    } else {
        Err(BenchError::Option(format!(
            "{what} runs unsharded; asked for {shards} shards"
        )))
    }
}

impl SimAllocator for Allocator {
    fn new_with(config: AllocatorConfig, shards: usize) -> Result<Self, BenchError> {
        unsharded("the single-threaded allocator", shards)?;
        Ok(Allocator::new(config))
    }
    fn allocation_interval(&self) -> Duration {
        self.config().allocation_interval
    }
    fn add_agent(&mut self, id: &AgentId, total: Resources) -> Result<(), BenchError> {
        Ok(Allocator::add_agent(self, id.clone(), total, vec![])?)
    }
    fn add_framework(&mut self, id: &FrameworkId, role: String) {
        Allocator::add_framework(self, id.clone(), vec![role], vec![]);
    }
    fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        Allocator::allocate(self, now)
    }
    fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        Allocator::decline(self, framework, agent, resources, refuse, now);
    }
    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), BenchError> {
        Ok(Allocator::recover(self, framework, agent, resources)?)
    }
    fn decline_all(
        &mut self,
        frameworks: &[FrameworkId],
        agents: &[(AgentId, Resources)],
        refuse: Duration,
        now: Instant,
    ) {
        self.decline_many(frameworks, agents, Some(refuse), now);
    }
}

impl SimAllocator for MesosDrf {
    fn new_with(config: AllocatorConfig, shards: usize) -> Result<Self, BenchError> {
        unsharded("the Mesos-algorithm baseline", shards)?;
        Ok(MesosDrf::new(config))
    }
    fn allocation_interval(&self) -> Duration {
        self.config().allocation_interval
    }
    fn add_agent(&mut self, id: &AgentId, total: Resources) -> Result<(), BenchError> {
        MesosDrf::add_agent(self, id, total);
        Ok(())
    }
    fn add_framework(&mut self, id: &FrameworkId, role: String) {
        MesosDrf::add_framework(self, id, &role);
    }
    fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        MesosDrf::allocate(self, now)
    }
    fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        MesosDrf::decline(self, framework, agent, resources, refuse, now);
    }
    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), BenchError> {
        MesosDrf::recover(self, framework, agent, resources)
    }
}

/// An allocator with agents and frameworks, a simulated clock, and the tasks launched.
#[derive(Debug)]
pub struct SimCluster<A: SimAllocator = Allocator> {
    pub allocator: A,
    pub spec: ClusterSpec,
    pub agents: Vec<(AgentId, Resources)>,
    pub frameworks: Vec<FrameworkId>,
    pub now: Instant,
    /// Running tasks by the cycle that launched them: (framework, agent, resources).
    tasks: VecDeque<Vec<(FrameworkId, AgentId, Resources)>>,
    task: Resources,
}

impl<A: SimAllocator> SimCluster<A> {
    /// Builds the cluster with Mesos' default allocator settings.
    pub fn build(spec: ClusterSpec) -> Result<Self, BenchError> {
        Self::build_with(spec, AllocatorConfig::default())
    }

    pub fn build_with(spec: ClusterSpec, config: AllocatorConfig) -> Result<Self, BenchError> {
        if spec.roles == 0 || spec.roles > spec.frameworks.max(1) {
            return Err(BenchError::Option(format!(
                "{} roles for {} frameworks: need 1 <= roles <= frameworks",
                spec.roles, spec.frameworks
            )));
        }
        let mut allocator = A::new_with(config, spec.shards)?;
        let mut agents = Vec::with_capacity(spec.agents);
        for i in 0..spec.agents {
            let id = agent_id(i);
            let total = agent_resources(i)?;
            allocator.add_agent(&id, total.clone())?;
            agents.push((id, total));
        }
        let mut frameworks = Vec::with_capacity(spec.frameworks);
        for i in 0..spec.frameworks {
            let id = framework_id(i);
            allocator.add_framework(&id, role_name(i % spec.roles));
            frameworks.push(id);
        }
        Ok(Self {
            allocator,
            spec,
            agents,
            frameworks,
            now: Instant::now(),
            tasks: VecDeque::new(),
            task: parse(TASK)?,
        })
    }

    /// Builds the cluster and brings it to the steady state of `workload`.
    pub fn prepared(spec: ClusterSpec, workload: Workload) -> Result<Self, BenchError> {
        let mut cluster = Self::build(spec)?;
        match workload {
            Workload::DeclineAll => cluster.decline_everything(LONG_REFUSE)?,
            Workload::AcceptPart => {
                for _ in 0..=TASK_CYCLES {
                    let offers = cluster.cycle();
                    cluster.answer(offers, workload)?;
                }
            }
        }
        Ok(cluster)
    }

    /// Every framework declines every agent's whole resources for `refuse`: the filter state
    /// the decline workload reaches after one round per framework, set up directly rather
    /// than through `frameworks` full cycles.
    pub fn decline_everything(&mut self, refuse: Duration) -> Result<(), BenchError> {
        self.allocator
            .decline_all(&self.frameworks, &self.agents, refuse, self.now);
        self.allocator.settle()
    }

    /// One full allocation cycle, one allocation interval after the previous one.
    pub fn cycle(&mut self) -> Vec<Allocation> {
        self.now += self.allocator.allocation_interval();
        self.allocator.allocate(self.now)
    }

    /// Answers the offers of a cycle as `workload` does, and ends the tasks that have run
    /// their [`TASK_CYCLES`].
    pub fn answer(
        &mut self,
        offers: Vec<Allocation>,
        workload: Workload,
    ) -> Result<(), BenchError> {
        let mut launched = Vec::new();
        for offer in offers {
            let keep = match workload {
                Workload::DeclineAll => {
                    self.allocator.decline(
                        &offer.framework_id,
                        &offer.agent_id,
                        &offer.resources,
                        Some(LONG_REFUSE),
                        self.now,
                    );
                    Resources::new()
                }
                Workload::AcceptPart => self.task_from(&offer.resources)?,
            };
            let rest = offer.resources.checked_sub(&keep).unwrap_or_default();
            self.allocator
                .recover(&offer.framework_id, &offer.agent_id, &rest)?;
            if !keep.is_empty() {
                launched.push((offer.framework_id, offer.agent_id, keep));
            }
        }
        self.tasks.push_back(launched);
        while self.tasks.len() > TASK_CYCLES {
            for (framework, agent, resources) in self.tasks.pop_front().unwrap_or_default() {
                self.allocator.recover(&framework, &agent, &resources)?;
            }
        }
        self.allocator.settle()
    }

    /// Running tasks, over all agents.
    pub fn running_tasks(&self) -> usize {
        self.tasks.iter().map(Vec::len).sum()
    }

    /// One task's resources plus the offer's first port, or nothing if the offer is too
    /// small.
    fn task_from(&self, offered: &Resources) -> Result<Resources, BenchError> {
        let mut task = self.task.clone();
        if let Some(range) = offered.ports().as_slice().first() {
            task.add(&parse(&format!("ports:[{0}-{0}]", range.begin))?);
        }
        Ok(if offered.contains(&task) {
            task
        } else {
            Resources::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decline_all_filters_every_agent() {
        let mut cluster = SimCluster::<Allocator>::build(ClusterSpec::new(30, 4, 2)).unwrap();
        let first = cluster.cycle();
        assert_eq!(first.len(), 30);
        cluster.answer(first, Workload::DeclineAll).unwrap();
        cluster.decline_everything(LONG_REFUSE).unwrap();
        assert!(cluster.cycle().is_empty());
        cluster.allocator.check_invariants().unwrap();
    }

    #[test]
    fn accept_part_reaches_a_steady_state() {
        let mut cluster =
            SimCluster::<Allocator>::prepared(ClusterSpec::new(30, 4, 2), Workload::AcceptPart)
                .unwrap();
        for _ in 0..10 {
            let offers = cluster.cycle();
            assert_eq!(offers.len(), 30, "every agent has room left");
            cluster.answer(offers, Workload::AcceptPart).unwrap();
            cluster.allocator.check_invariants().unwrap();
        }
        assert_eq!(cluster.running_tasks(), 30 * TASK_CYCLES);
    }

    /// The baseline follows the same DRF order as Fleet's allocator (shares, then
    /// allocation counts, then ids), so on the same workload both make the same offers.
    #[test]
    fn the_mesos_baseline_offers_what_fleet_offers() {
        let spec = ClusterSpec::new(40, 6, 3);
        for workload in [Workload::AcceptPart, Workload::DeclineAll] {
            let mut fleet = SimCluster::<Allocator>::build(spec).unwrap();
            let mut mesos = SimCluster::<MesosDrf>::build(spec).unwrap();
            for cycle in 0..12 {
                let key = |offers: &[Allocation]| {
                    let mut keys: Vec<String> = offers
                        .iter()
                        .map(|o| format!("{} {} {}", o.agent_id, o.framework_id, o.resources))
                        .collect();
                    keys.sort();
                    keys
                };
                let (a, b) = (fleet.cycle(), mesos.cycle());
                let (ka, kb) = (key(&a), key(&b));
                let first_difference = ka.iter().zip(&kb).find(|(x, y)| x != y);
                assert!(
                    ka.len() == kb.len() && first_difference.is_none(),
                    "{workload:?}, cycle {cycle}: {} vs {} offers, first difference {first_difference:?}",
                    ka.len(),
                    kb.len()
                );
                fleet.answer(a, workload).unwrap();
                mesos.answer(b, workload).unwrap();
            }
        }
    }
}
