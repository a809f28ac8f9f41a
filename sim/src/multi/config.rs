//! What defines one multi-group run: the settings (most shared with the
//! single-group simulator's [`SimConfig`]), and what each seed draws
//! (the number of groups, their voters, the layer's limits, the Raft
//! options, compaction, reads, the workload's hot groups).

use std::collections::BTreeSet;
use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord::multi::{GroupId, MultiConfig};
use concord::NodeId;

use crate::config::{CompactionOptions, NodeOptions, ReadOptions, SimConfig};
use crate::faults::FaultSet;

/// Groups per seed in ordinary sweeps with `--groups swarm`: drawn from
/// `1..=SWARM_GROUPS_MAX`.
pub const SWARM_GROUPS_MAX: usize = 256;

/// Most groups one run may host (`--groups N`).
pub const GROUPS_MAX: usize = 100_000;

/// The lowest snapshot bandwidth limit a seed draws, in bytes per tick.
pub const SNAPSHOT_PACE_BYTES_PER_TICK_MIN: u64 = 4;

/// The highest snapshot bandwidth limit a seed draws, in bytes per tick.
pub const SNAPSHOT_PACE_BYTES_PER_TICK_MAX: u64 = 256;

/// How many groups a seed runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupsChoice {
    /// Each seed draws its own count, log-uniformly in
    /// `1..=`[`SWARM_GROUPS_MAX`] (as many seeds with a handful of groups
    /// as with hundreds).
    Swarm,
    /// Every seed runs this many.
    Fixed(usize),
}

impl GroupsChoice {
    /// Parses `swarm` or a count.
    pub fn parse(text: &str) -> Result<GroupsChoice, String> {
        if text == "swarm" {
            return Ok(GroupsChoice::Swarm);
        }
        match text.parse::<usize>() {
            Ok(count) if (1..=GROUPS_MAX).contains(&count) => Ok(GroupsChoice::Fixed(count)),
            _ => Err(format!(
                "--groups {text:?}: give `swarm` or a count from 1 to {GROUPS_MAX}"
            )),
        }
    }
}

impl fmt::Display for GroupsChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupsChoice::Swarm => f.write_str("swarm"),
            GroupsChoice::Fixed(count) => write!(f, "{count}"),
        }
    }
}

/// The planted mistakes of the multi-group layer: the layer's own
/// switches (`concord::multi::MultiPlantedBugs`), named in the table of
/// `crate::bugs` and switched on in every node of a run. Planting one
/// needs concord-sim's `planted-bugs` feature (on by default).
pub type MultiBugs = concord::multi::MultiPlantedBugs;

/// Everything that defines one multi-group run, besides the fault plan
/// (which the seed draws).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Nodes in the cluster (1 to 7).
    pub nodes: usize,
    /// Groups per seed.
    pub groups: GroupsChoice,
    /// Concurrent clients (each works on one group at a time).
    pub clients: usize,
    /// Keys per group.
    pub keys: usize,
    /// Virtual nanoseconds of faults before they heal.
    pub chaos_ns: u64,
    /// After the heal, every group must commit a write and every member
    /// apply it within this long.
    pub liveness_bound_ns: u64,
    /// Tick period (before each node's skew).
    pub tick_ns: u64,
    /// Mean client think time.
    pub think_mean_ns: u64,
    /// A client gives up on an operation after this long.
    pub client_timeout_ns: u64,
    /// Attempts per operation (refusals retried at the hinted leader).
    pub client_max_attempts: u32,
    /// Faults allowed.
    pub faults: FaultSet,
    /// Each seed switches on a random half of the allowed faults.
    pub swarm: bool,
    /// Bound of the per-node clock skew, parts per million.
    pub max_skew_ppm: i64,
    /// Each seed draws its Raft options (PreVote, CheckQuorum, preferred
    /// leader, tight limits); otherwise the defaults.
    pub vary_node_options: bool,
    /// Planted mistakes of the layer.
    pub bugs: MultiBugs,
    /// Planted mistakes of the core, in every group's node (a step-level
    /// mistake under the multi-group layer: `--bug NAME` of layer core).
    pub core_bugs: crate::config::CoreBugs,
    /// Membership changes and node replacement drawn under the faults
    /// (half the seeds of a swarm; `--no-membership` turns them off).
    pub membership: bool,
    /// Check every step of every group's node against the step rules
    /// ([`crate::rules`], `--no-step-rules` turns them off).
    pub step_rules: bool,
    /// Every seed runs the forced-recovery scenario (`--forced-recovery`,
    /// see `forced.rs`): every node but one is lost for good and every
    /// group that lost its majority is forced onto the survivor.
    /// Membership changes are off in such a run.
    pub forced_recovery: bool,
    /// Engine events one run may take before it fails (`event-budget`).
    pub max_events: u64,
    /// Record a timeline (for `replay`).
    pub timeline: bool,
}

impl Default for MultiSimConfig {
    fn default() -> Self {
        MultiSimConfig::from_sim(&SimConfig::default(), GroupsChoice::Swarm)
    }
}

impl MultiSimConfig {
    /// The multi-group run of the single-group settings `sim` (cluster,
    /// timing, clients, faults, skew, Raft options) with `groups`.
    pub fn from_sim(sim: &SimConfig, groups: GroupsChoice) -> MultiSimConfig {
        MultiSimConfig {
            seed: sim.seed,
            nodes: sim.nodes,
            groups,
            clients: sim.clients,
            keys: sim.keys.min(4),
            chaos_ns: sim.chaos_ns,
            liveness_bound_ns: sim.liveness_bound_ns,
            tick_ns: sim.tick_ns,
            think_mean_ns: sim.think_mean_ns,
            client_timeout_ns: sim.client_timeout_ns,
            client_max_attempts: sim.client_max_attempts,
            // The snapshot-conflict nemesis aims at one group's leader and
            // its log; the multi-group engine does not host it, nor the
            // disk-loss fault (yet). The lease nemeses it does
            // (`lease.rs`).
            faults: sim
                .faults
                .without(crate::faults::FaultKind::SnapshotConflict)
                .without(crate::faults::FaultKind::DiskLoss),
            swarm: sim.swarm,
            max_skew_ppm: sim.max_skew_ppm,
            vary_node_options: sim.vary_node_options,
            bugs: MultiBugs::default(),
            core_bugs: crate::config::CoreBugs::NONE,
            membership: true,
            step_rules: sim.step_rules,
            forced_recovery: false,
            max_events: 50_000_000,
            timeline: false,
        }
    }

    /// Checks the configuration; the error names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.nodes) {
            return Err(format!(
                "--nodes {} is out of range: a cluster has 1 to 7 nodes",
                self.nodes
            ));
        }
        if self.keys == 0 || self.tick_ns == 0 || self.think_mean_ns == 0 {
            return Err("keys, tick and think time must be positive".to_string());
        }
        if self.client_timeout_ns == 0 || self.client_max_attempts == 0 {
            return Err("client timeout and attempts must be positive".to_string());
        }
        if self.clients > 1000 {
            return Err(format!(
                "--clients {} is too many (at most 1000)",
                self.clients
            ));
        }
        if !(0..900_000).contains(&self.max_skew_ppm) {
            return Err(format!(
                "--max-skew-ppm {} must be in 0..900000",
                self.max_skew_ppm
            ));
        }
        if self.liveness_bound_ns == 0 {
            return Err("--liveness-ms must be positive".to_string());
        }
        let planted =
            self.bugs != MultiBugs::NONE || self.core_bugs != crate::config::CoreBugs::NONE;
        if planted && !cfg!(feature = "planted-bugs") {
            return Err(
                "planted multi-group mistakes need concord-sim's `planted-bugs` feature"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// The command-line flags that reproduce this run (every setting that
    /// differs from the default, plus the seed, size and groups).
    pub fn cli_flags(&self) -> String {
        let default = MultiSimConfig::default();
        let mut flags = format!(
            "--seed {} --nodes {} --groups {}",
            self.seed, self.nodes, self.groups
        );
        let ms = |ns: u64| ns / 1_000_000;
        let mut add = |differs: bool, flag: String| {
            if differs {
                flags.push(' ');
                flags.push_str(&flag);
            }
        };
        add(
            self.clients != default.clients,
            format!("--clients {}", self.clients),
        );
        add(self.keys != default.keys, format!("--keys {}", self.keys));
        add(
            self.chaos_ns != default.chaos_ns,
            format!("--chaos-ms {}", ms(self.chaos_ns)),
        );
        add(
            self.liveness_bound_ns != default.liveness_bound_ns,
            format!("--liveness-ms {}", ms(self.liveness_bound_ns)),
        );
        add(
            self.tick_ns != default.tick_ns,
            format!("--tick-us {}", self.tick_ns / 1000),
        );
        add(
            self.think_mean_ns != default.think_mean_ns,
            format!("--think-us {}", self.think_mean_ns / 1000),
        );
        add(
            self.client_timeout_ns != default.client_timeout_ns,
            format!("--client-timeout-ms {}", ms(self.client_timeout_ns)),
        );
        add(
            self.client_max_attempts != default.client_max_attempts,
            format!("--client-attempts {}", self.client_max_attempts),
        );
        add(
            self.faults != default.faults,
            format!("--faults {}", self.faults),
        );
        add(!self.swarm, "--no-swarm".to_string());
        add(
            self.max_skew_ppm != default.max_skew_ppm,
            format!("--max-skew-ppm {}", self.max_skew_ppm),
        );
        add(!self.vary_node_options, "--fixed-node-options".to_string());
        add(!self.step_rules, "--no-step-rules".to_string());
        let switches = crate::bugs::Switches {
            multi: self.bugs,
            core: self.core_bugs,
            ..crate::bugs::Switches::default()
        };
        for flag in switches.flags() {
            add(true, flag);
        }
        add(!self.membership, "--no-membership".to_string());
        add(self.forced_recovery, "--forced-recovery".to_string());
        flags
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p concord-sim -- replay {}",
            self.cli_flags()
        )
    }
}

/// What one seed drew, besides its fault plan.
#[derive(Clone, Debug)]
pub struct Drawn {
    /// Groups hosted (ids `1..=groups`).
    pub groups: usize,
    /// Each group's voters, by group id (index `group - 1`).
    pub voters: Vec<BTreeSet<NodeId>>,
    /// The layer's settings shared by every node (id, peers and
    /// incarnation are each node's own).
    pub layer: LayerOptions,
    /// Raft options of every group.
    pub node_options: NodeOptions,
    /// Compaction of every group (`None`: no group compacts).
    pub compaction: Option<CompactionOptions>,
    /// Read paths of the workload's gets.
    pub reads: ReadOptions,
    /// The groups most operations go to.
    pub hot: Vec<GroupId>,
    /// Per mille of operations that go to any group instead of a hot one.
    pub cold_per_mille: u32,
}

/// The multi-group layer's knobs a seed draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOptions {
    /// `MultiConfig::liveness_interval_ticks`.
    pub liveness_interval_ticks: u32,
    /// `MultiConfig::liveness_timeout_ticks`.
    pub liveness_timeout_ticks: u32,
    /// `MultiConfig::quiesce_after_idle_ticks`.
    pub quiesce_after_idle_ticks: Option<u32>,
    /// `MultiConfig::wakes_per_tick_max`.
    pub wakes_per_tick_max: usize,
    /// `MultiConfig::elections_concurrent_max`.
    pub elections_concurrent_max: usize,
    /// `MultiConfig::election_slot_ticks`.
    pub election_slot_ticks: u32,
    /// `MultiConfig::frame_items_max`.
    pub frame_items_max: usize,
    /// `MultiConfig::persist_batch_writes_max`.
    pub persist_batch_writes_max: usize,
    /// `MultiConfig::snapshot_send_bytes_per_tick_max` (drawn from a
    /// stream of its own: `LayerOptions::draw_snapshot_pace`).
    pub snapshot_send_bytes_per_tick_max: Option<u64>,
}

impl LayerOptions {
    /// The defaults of `MultiConfig::new`.
    pub fn defaults() -> LayerOptions {
        let config = MultiConfig::new(1, []);
        LayerOptions {
            liveness_interval_ticks: config.liveness_interval_ticks,
            liveness_timeout_ticks: config.liveness_timeout_ticks,
            quiesce_after_idle_ticks: config.quiesce_after_idle_ticks,
            wakes_per_tick_max: config.wakes_per_tick_max,
            elections_concurrent_max: config.elections_concurrent_max,
            election_slot_ticks: config.election_slot_ticks,
            frame_items_max: config.frame_items_max,
            persist_batch_writes_max: config.persist_batch_writes_max,
            snapshot_send_bytes_per_tick_max: config.snapshot_send_bytes_per_tick_max,
        }
    }

    /// Half the time (with compaction on), a snapshot bandwidth limit on
    /// every node: log-uniform from [`SNAPSHOT_PACE_BYTES_PER_TICK_MIN`]
    /// to [`SNAPSHOT_PACE_BYTES_PER_TICK_MAX`], and at least half a byte
    /// per group. The simulator's snapshots are small (tens of bytes), so
    /// the range holds back the chunks of a wave of transfers, and its
    /// floor still lets every group's snapshot reach every member well
    /// within the liveness bound.
    pub(crate) fn draw_snapshot_pace(
        &mut self,
        rng: &mut ChaCha8Rng,
        compaction: &mut Option<CompactionOptions>,
        groups: usize,
    ) {
        let Some(compaction) = compaction.as_mut() else {
            return;
        };
        if !rng.gen_bool(0.5) {
            return;
        }
        let (low, high) = (
            (SNAPSHOT_PACE_BYTES_PER_TICK_MIN as f64).log2(),
            (SNAPSHOT_PACE_BYTES_PER_TICK_MAX as f64).log2(),
        );
        let rate = rng.gen_range(low..=high).exp2() as u64;
        // Half a byte per tick per group at least: a wave of transfers
        // of every group (a node back after the heal) then takes a second
        // or two, not the whole liveness bound.
        let floor = (groups as u64 / 2).max(SNAPSHOT_PACE_BYTES_PER_TICK_MIN);
        let rate = rate.clamp(floor, SNAPSHOT_PACE_BYTES_PER_TICK_MAX.max(floor));
        self.snapshot_send_bytes_per_tick_max = Some(rate);
        // Half of these cut chunks as concord-node does under a limit: one
        // to a few ticks' worth (a tenth of a second's, at least 4 KiB),
        // so that a transfer spans many chunks and each waits for credit.
        // Chunks cut so, with a leader resending its window on every
        // heartbeat answer while a transfer waits, are what a real
        // process showed held repeats piling up without end.
        if rng.gen_bool(0.5) {
            let ticks = rng.gen_range(1..=3);
            compaction.chunk_bytes_max = usize::try_from(rate * ticks)
                .unwrap_or(usize::MAX)
                .clamp(8, compaction.chunk_bytes_max);
        }
    }

    /// Draws the knobs: mostly near the defaults, sometimes tight (a wake
    /// or an election at a time, frames of a few items, batches of one
    /// write), a run in eight without quiescence.
    fn draw(rng: &mut ChaCha8Rng) -> LayerOptions {
        let liveness_interval_ticks = if rng.gen_bool(0.75) {
            1
        } else {
            rng.gen_range(2..=3)
        };
        let liveness_timeout_ticks = liveness_interval_ticks + rng.gen_range(2..=25);
        let quiesce_after_idle_ticks = if rng.gen_bool(0.125) {
            None
        } else {
            Some(rng.gen_range(1..=8))
        };
        let tight = |rng: &mut ChaCha8Rng, small: std::ops::RangeInclusive<usize>, usual: usize| {
            if rng.gen_bool(0.25) {
                rng.gen_range(small)
            } else {
                usual
            }
        };
        LayerOptions {
            liveness_interval_ticks,
            liveness_timeout_ticks,
            quiesce_after_idle_ticks,
            wakes_per_tick_max: tight(rng, 1..=16, 1024),
            elections_concurrent_max: tight(rng, 1..=16, 256),
            election_slot_ticks: rng.gen_range(20..=100),
            frame_items_max: tight(rng, 1..=32, 65_536),
            persist_batch_writes_max: tight(rng, 1..=8, 65_536),
            snapshot_send_bytes_per_tick_max: None,
        }
    }

    /// Node `id`'s configuration among `nodes` nodes, in its
    /// `incarnation`.
    pub fn config(&self, id: NodeId, nodes: usize, incarnation: u64) -> MultiConfig {
        let mut config = MultiConfig::new(id, 1..=nodes as NodeId);
        config.incarnation = incarnation;
        config.liveness_interval_ticks = self.liveness_interval_ticks;
        config.liveness_timeout_ticks = self.liveness_timeout_ticks;
        config.quiesce_after_idle_ticks = self.quiesce_after_idle_ticks;
        config.wakes_per_tick_max = self.wakes_per_tick_max;
        config.elections_concurrent_max = self.elections_concurrent_max;
        config.election_slot_ticks = self.election_slot_ticks;
        config.frame_items_max = self.frame_items_max;
        config.persist_batch_writes_max = self.persist_batch_writes_max;
        config.snapshot_send_bytes_per_tick_max = self.snapshot_send_bytes_per_tick_max;
        config
    }
}

impl fmt::Display for LayerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "liveness every {} ticks, dead after {}, quiesce after {}, {} wakes per tick, {} concurrent elections ({} ticks each), frames of {} items, batches of {} writes",
            self.liveness_interval_ticks,
            self.liveness_timeout_ticks,
            self.quiesce_after_idle_ticks
                .map_or("never".to_string(), |ticks| format!("{ticks} idle ticks")),
            self.wakes_per_tick_max,
            self.elections_concurrent_max,
            self.election_slot_ticks,
            self.frame_items_max,
            self.persist_batch_writes_max
        )?;
        if let Some(rate) = self.snapshot_send_bytes_per_tick_max {
            write!(f, ", snapshot chunks paced at {rate} bytes per tick")?;
        }
        Ok(())
    }
}

impl Drawn {
    /// Draws a seed's groups, voters and options from `rng`.
    pub(crate) fn draw(config: &MultiSimConfig, rng: &mut ChaCha8Rng) -> Drawn {
        let groups = match config.groups {
            GroupsChoice::Fixed(count) => count,
            GroupsChoice::Swarm => {
                // Log-uniform: 2^(8u), u uniform in [0, 1].
                let exponent: f64 = rng.gen_range(0.0..=(SWARM_GROUPS_MAX as f64).log2());
                (exponent.exp2() as usize).clamp(1, SWARM_GROUPS_MAX)
            }
        };
        let nodes = config.nodes;
        // Most groups have three voters (or every node of a smaller
        // cluster); some one, two, or every node.
        let usual = nodes.min(3);
        let mut voters = Vec::with_capacity(groups);
        for _ in 0..groups {
            let count = match rng.gen_range(0..10) {
                0 => 1,
                1 => nodes,
                2 => rng.gen_range(1..=nodes),
                _ => usual,
            };
            let mut set = BTreeSet::new();
            while set.len() < count {
                set.insert(rng.gen_range(1..=nodes as NodeId));
            }
            voters.push(set);
        }
        let layer = LayerOptions::draw(rng);
        let node_options = if config.vary_node_options {
            NodeOptions::draw(rng)
        } else {
            NodeOptions::default()
        };
        let compaction = rng.gen_bool(0.5).then(|| CompactionOptions::draw(rng));
        let reads = ReadOptions::draw(rng);
        let hot_count = match rng.gen_range(0..3) {
            0 => groups,
            1 => groups.div_ceil(4),
            _ => groups.div_ceil(16),
        };
        let mut all: Vec<GroupId> = (1..=groups as GroupId).collect();
        for i in 0..hot_count {
            let j = rng.gen_range(i..groups);
            all.swap(i, j);
        }
        all.truncate(hot_count);
        all.sort_unstable();
        let cold_per_mille = rng.gen_range(0..=200);
        Drawn {
            groups,
            voters,
            layer,
            node_options,
            compaction,
            reads,
            hot: all,
            cold_per_mille,
        }
    }

    /// The voters of `group`.
    pub fn voters_of(&self, group: GroupId) -> &BTreeSet<NodeId> {
        &self.voters[group as usize - 1]
    }
}
