//! Fixed scenarios of the multi-group simulator, for the figures of
//! `docs/multi-group.md`: what idle groups cost, quiesced and not, and
//! how a cluster recovers when the node leading a third of 10,000
//! quiesced groups dies (the wake storm). Deterministic: a seed and the
//! settings give the same counts on every machine.

use std::collections::BTreeSet;

use concord::NodeId;

use crate::config::{NodeOptions, ReadOptions};
use crate::faults::FaultSet;

use super::config::{Drawn, GroupsChoice, LayerOptions, MultiSimConfig};
use super::engine::{MultiSim, MS};

/// A calm cluster of `nodes` nodes hosting `groups` groups, each with
/// every node as a voter (three at most), the layer's default settings
/// (quiescence on or off), Raft's default options, no compaction, no
/// client: the setting of every scenario.
fn calm_cluster(nodes: usize, groups: usize, quiesce: bool, seed: u64) -> Result<MultiSim, String> {
    calm_cluster_with_clients(nodes, groups, quiesce, seed, 0)
}

/// [`calm_cluster`] with `clients` clients working on a sixteenth of the
/// groups (and 5 % of their operations on any group).
fn calm_cluster_with_clients(
    nodes: usize,
    groups: usize,
    quiesce: bool,
    seed: u64,
    clients: usize,
) -> Result<MultiSim, String> {
    let config = MultiSimConfig {
        seed,
        nodes,
        groups: GroupsChoice::Fixed(groups),
        clients,
        faults: FaultSet::NONE,
        swarm: false,
        max_skew_ppm: 0,
        vary_node_options: false,
        chaos_ns: u64::MAX / 4,
        max_events: u64::MAX,
        ..MultiSimConfig::default()
    };
    let voters: Vec<BTreeSet<NodeId>> = (0..groups)
        .map(|group| {
            // Three voters (or every node of a smaller cluster), spread
            // round the nodes.
            let count = nodes.min(3);
            (0..count)
                .map(|offset| ((group + offset) % nodes) as NodeId + 1)
                .collect()
        })
        .collect();
    let mut layer = LayerOptions::defaults();
    if !quiesce {
        layer.quiesce_after_idle_ticks = None;
    }
    let drawn = Drawn {
        groups,
        voters,
        layer,
        node_options: NodeOptions::default(),
        compaction: None,
        reads: ReadOptions {
            weights: [1, 0, 0, 0],
            lease: false,
        },
        hot: (1..=groups.div_ceil(16) as u64).collect(),
        cold_per_mille: 50,
    };
    let mut sim = MultiSim::with_drawn(config, None, Some(drawn))?;
    sim.phase = super::engine::Phase::Settling;
    sim.boot_all();
    Ok(sim)
}

impl MultiSim {
    /// Runs until `done` holds (looked at every tick), at most
    /// `limit_ns` of simulated time; the time it took.
    fn run_until(
        &mut self,
        limit_ns: u64,
        mut done: impl FnMut(&MultiSim) -> bool,
    ) -> Result<u64, String> {
        let start = self.now_ns;
        loop {
            if let Some(failure) = &self.failure {
                return Err(failure.to_string());
            }
            if done(self) {
                return Ok(self.now_ns - start);
            }
            if self.now_ns - start > limit_ns {
                return Err(format!(
                    "not done after {} simulated seconds",
                    limit_ns / 1_000_000_000
                ));
            }
            let next = self.now_ns + self.config.tick_ns;
            self.advance_to(next);
        }
    }

    /// Whether every group is led and every group sleeps on every node.
    fn settled_asleep(&self, quiesce: bool) -> bool {
        self.unled_group().is_none()
            && (!quiesce
                || self.hosts.iter().all(|host| {
                    host.multi
                        .as_ref()
                        .is_none_or(|multi| multi.awake_count() == 0)
                }))
    }

    /// Group steps, group items and frames sent so far, over every node
    /// and incarnation.
    fn layer_counts(&self) -> (u64, u64, u64) {
        let mut totals = super::report::LayerTotals::default();
        for host in &self.hosts {
            totals.merge(&host.totals);
            if let Some(multi) = &host.multi {
                totals.add(multi.stats());
            }
        }
        (totals.group_steps, totals.items, totals.frames)
    }
}

/// What idle groups cost over a window, summed over the nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleFigures {
    /// Nodes.
    pub nodes: usize,
    /// Groups.
    pub groups: usize,
    /// Whether the groups quiesced.
    pub quiesce: bool,
    /// Simulated time until every group was led (and asleep).
    pub settled_ns: u64,
    /// The window measured.
    pub window_ns: u64,
    /// Group messages sent in it (coalesced heartbeats and answers
    /// included, one each).
    pub messages: u64,
    /// `Node::step` calls on any group in it.
    pub group_steps: u64,
    /// Frames sent in it (node-level heartbeats included).
    pub frames: u64,
}

impl IdleFigures {
    fn per_group_second(&self, count: u64) -> f64 {
        count as f64 / self.groups as f64 / (self.window_ns as f64 / 1e9)
    }

    /// Group messages per idle group per simulated second.
    pub fn messages_per_group_second(&self) -> f64 {
        self.per_group_second(self.messages)
    }

    /// Group node steps per idle group per simulated second.
    pub fn steps_per_group_second(&self) -> f64 {
        self.per_group_second(self.group_steps)
    }

    /// Frames per simulated second (whole cluster).
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / (self.window_ns as f64 / 1e9)
    }
}

/// Starts `groups` idle groups on `nodes` nodes, waits until every group
/// is led (and asleep, with `quiesce`), then counts what they cost over
/// `window_ns`.
pub fn idle_figures(
    nodes: usize,
    groups: usize,
    quiesce: bool,
    window_ns: u64,
    seed: u64,
) -> Result<IdleFigures, String> {
    let mut sim = calm_cluster(nodes, groups, quiesce, seed)?;
    let settled_ns = sim.run_until(600_000 * MS, |sim| sim.settled_asleep(quiesce))?;
    let before = sim.layer_counts();
    let end = sim.now_ns + window_ns;
    sim.advance_to(end);
    if let Some(failure) = &sim.failure {
        return Err(failure.to_string());
    }
    let after = sim.layer_counts();
    Ok(IdleFigures {
        nodes,
        groups,
        quiesce,
        settled_ns,
        window_ns,
        messages: after.1 - before.1,
        group_steps: after.0 - before.0,
        frames: after.2 - before.2,
    })
}

/// What a node loss did to a cluster of quiesced groups.
#[derive(Clone, Debug, PartialEq)]
pub struct StormFigures {
    /// Nodes.
    pub nodes: usize,
    /// Groups.
    pub groups: usize,
    /// The node killed (the one leading the most groups).
    pub killed: NodeId,
    /// Groups it led.
    pub orphaned: usize,
    /// Simulated time from the kill until every group had a leader known
    /// to all its live members.
    pub leaders_ns: u64,
    /// The bound the simulator's `leaderless` check holds that time to.
    pub bound_ns: u64,
    /// Most groups electing at once on one node (woken from the election
    /// queue without a leader); the layer's limit is
    /// `elections_concurrent_max`.
    pub electing_max: usize,
    /// That limit.
    pub electing_limit: usize,
    /// Group messages sent from the kill until then.
    pub messages: u64,
    /// Group node steps from the kill until then.
    pub group_steps: u64,
}

/// Starts `groups` groups on `nodes` nodes, waits until all are led and
/// asleep, kills the node leading the most groups for good, and measures
/// how long until every group has a leader again.
pub fn node_loss_storm(nodes: usize, groups: usize, seed: u64) -> Result<StormFigures, String> {
    if nodes < 3 {
        return Err(
            "the wake storm needs 3 or more nodes (a group must survive a node)".to_string(),
        );
    }
    let mut sim = calm_cluster(nodes, groups, true, seed)?;
    sim.run_until(600_000 * MS, |sim| sim.settled_asleep(true))?;
    let victim = sim
        .top_leader()
        .ok_or_else(|| "no node leads any group".to_string())?;
    let orphaned = sim.hosts[victim]
        .multi
        .as_ref()
        .map(|multi| {
            multi
                .groups()
                .filter(|(_, node)| node.role() == concord::Role::Leader)
                .count()
        })
        .unwrap_or(0);
    let before = sim.layer_counts();
    sim.crash(victim);
    sim.electing_max = 0;
    let bound_ns = sim.leaders_bound_ns();
    let leaders_ns = sim.run_until(bound_ns, |sim| sim.unled_group().is_none())?;
    let after = sim.layer_counts();
    let figures = StormFigures {
        nodes,
        groups,
        killed: victim as NodeId + 1,
        orphaned,
        leaders_ns,
        bound_ns,
        electing_max: sim.electing_max,
        electing_limit: sim.drawn.layer.elections_concurrent_max,
        messages: after.1 - before.1,
        group_steps: after.0 - before.0,
    };
    if figures.electing_max > figures.electing_limit {
        return Err(format!(
            "{} groups elected at once on one node, above the limit of {}",
            figures.electing_max, figures.electing_limit
        ));
    }
    Ok(figures)
}

/// How fast the simulator runs a calm cluster of `groups` quiesced
/// groups with `clients` clients at work.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedFigures {
    /// Groups.
    pub groups: usize,
    /// Simulated time measured (after every group was led and asleep).
    pub simulated_ns: u64,
    /// Wall-clock time it took.
    pub wall: std::time::Duration,
    /// CPU time this thread spent on it, where the system says
    /// (`/proc/thread-self/schedstat` on Linux): on a shared machine the
    /// wall-clock time also counts the time other processes ran.
    pub cpu: Option<std::time::Duration>,
    /// Client operations completed in it.
    pub operations: u64,
}

impl SpeedFigures {
    /// Simulated seconds per wall-clock second.
    pub fn speedup(&self) -> f64 {
        self.simulated_ns as f64 / 1e9 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Simulated seconds per second of CPU time, if known.
    pub fn cpu_speedup(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| self.simulated_ns as f64 / 1e9 / cpu.as_secs_f64().max(1e-9))
    }
}

/// CPU time the calling thread has run, from Linux's scheduler
/// statistics (`None` elsewhere). Only the speed figure reads it; no run
/// does.
fn thread_cpu_time() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// Starts `groups` groups on `nodes` nodes, waits until every group is
/// led and asleep, then runs `clients` clients (one operation at a time
/// each, 100 ms mean think time, on a sixteenth of the groups and now
/// and then any group) for `simulated_ns` and measures the wall-clock
/// time that took. The only figure here that is not deterministic.
pub fn speed(
    nodes: usize,
    groups: usize,
    clients: usize,
    simulated_ns: u64,
    seed: u64,
) -> Result<SpeedFigures, String> {
    let mut sim = calm_cluster_with_clients(nodes, groups, true, seed, clients)?;
    sim.run_until(600_000 * MS, |sim| sim.settled_asleep(true))?;
    sim.phase = super::engine::Phase::Chaos;
    for client in 0..clients {
        sim.schedule(
            client as u64 * MS,
            super::engine::Event::ClientNext { client },
        );
    }
    let before: u64 = sim
        .groups
        .values()
        .map(|group| group.workload.history().len() as u64)
        .sum();
    let started = std::time::Instant::now();
    let cpu_started = thread_cpu_time();
    let end = sim.now_ns + simulated_ns;
    sim.advance_to(end);
    let wall = started.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu_started)
        .map(|(now, then)| now.saturating_sub(then));
    if let Some(failure) = &sim.failure {
        return Err(failure.to_string());
    }
    let after: u64 = sim
        .groups
        .values()
        .map(|group| group.workload.history().len() as u64)
        .sum();
    Ok(SpeedFigures {
        groups,
        simulated_ns,
        wall,
        cpu,
        operations: after - before,
    })
}
