//! Configuration of one simulated run.

use crate::faults::FaultSet;

/// Deliberate host bugs, to prove the checkers catch them. All off by
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostBugs {
    /// The host reports `Persisted` as soon as a write is handed to the
    /// disk, before it is synced; a crash then loses data the node
    /// believes durable.
    pub persisted_before_sync: bool,
    /// Each node's state machine applies some commands differently (the
    /// built-in key-value store appends twice on some replicas).
    pub nondeterministic_state_machine: bool,
    /// Clients send every retry as a new command (a new sequence number),
    /// so a retried command may be executed twice.
    pub client_without_sessions: bool,
    /// The host reports its own snapshot to the node, and drops the log
    /// entries it covers from disk, as soon as the snapshot file is
    /// written, before it is synced; a crash then loses both.
    pub snapshot_reported_before_sync: bool,
    /// The host labels its snapshot with the node's commit index instead of
    /// the last entry its state machine applied, compacting past what was
    /// applied.
    pub snapshot_past_applied: bool,
}

impl HostBugs {
    /// Whether any bug is on.
    pub fn any(&self) -> bool {
        self.persisted_before_sync
            || self.nondeterministic_state_machine
            || self.client_without_sessions
            || self.snapshot_reported_before_sync
            || self.snapshot_past_applied
    }
}

/// Deliberate mistakes planted in the core itself (the classic Raft
/// mistakes), to measure how quickly the simulator's outside checks catch
/// them. All off by default; needs concord-sim's `planted-bugs` feature (on
/// by default), which turns on the core's. While one is on, the core's own
/// assertions that would report it directly are set aside (see the core's
/// `src/planted.rs`), so a catch comes from the simulator's checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CoreBugs {
    /// Raft's Figure 8 mistake: a leader commits an entry of an earlier
    /// term by counting the replicas that hold it.
    pub figure_8_commit: bool,
    /// A vote grant is sent before the vote is durable.
    pub vote_before_durable: bool,
    /// An inefficiency: a leader ignores the follower's hint when an
    /// append is refused and backs up one entry per refusal (caught by the
    /// efficiency budgets, `crate::budgets`).
    pub probe_ignores_hint: bool,
}

impl CoreBugs {
    /// Whether any bug is on.
    pub fn any(&self) -> bool {
        self.figure_8_commit || self.vote_before_durable || self.probe_ignores_hint
    }
}

/// How every node of one run compacts its log. Each seed draws small
/// thresholds, so that compaction and snapshot transfers happen many times
/// per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompactionOptions {
    /// Snapshot after this many entries applied.
    pub threshold_entries: u64,
    /// Snapshot after this many bytes of entries applied, if set.
    pub threshold_bytes: Option<u64>,
    /// Entries kept below each snapshot.
    pub trailing_entries: u64,
    /// Largest snapshot chunk.
    pub chunk_bytes_max: usize,
    /// Most snapshot chunks unanswered per follower (1 is stop-and-wait).
    pub chunks_inflight_max: usize,
}

impl CompactionOptions {
    /// Draws small thresholds, windows and chunks.
    pub fn draw(rng: &mut impl rand::Rng) -> CompactionOptions {
        CompactionOptions {
            threshold_entries: rng.gen_range(4..=24),
            threshold_bytes: rng.gen_bool(1.0 / 3.0).then(|| rng.gen_range(512..=8192)),
            trailing_entries: if rng.gen_bool(1.0 / 3.0) {
                0
            } else {
                rng.gen_range(1..=16)
            },
            chunk_bytes_max: rng.gen_range(32..=1024),
            chunks_inflight_max: rng.gen_range(1..=4),
        }
    }

    /// Applies the options to one node's configuration.
    pub fn apply(&self, config: &mut concord::Config) {
        config.compaction_threshold_entries = Some(self.threshold_entries);
        config.compaction_threshold_bytes = self.threshold_bytes;
        config.compaction_trailing_entries = self.trailing_entries;
        config.snapshot_chunk_bytes_max = self.chunk_bytes_max;
        config.snapshot_chunks_inflight_max = self.chunks_inflight_max;
    }
}

impl std::fmt::Display for CompactionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot every {} entries", self.threshold_entries)?;
        if let Some(bytes) = self.threshold_bytes {
            write!(f, " or {bytes} bytes")?;
        }
        write!(
            f,
            ", {} trailing entries, {}-byte chunks, {} in flight",
            self.trailing_entries, self.chunk_bytes_max, self.chunks_inflight_max
        )
    }
}

/// Raft options of every node in one run. With
/// [`SimConfig::vary_node_options`] each seed draws its own (swarm
/// testing of the core's modes); otherwise the defaults are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeOptions {
    /// PreVote on (thesis §9.6).
    pub pre_vote: bool,
    /// CheckQuorum and leader leases on.
    pub check_quorum: bool,
    /// The highest node id is the preferred leader (priority transfer).
    pub preferred_leader: bool,
    /// Tiny batching, in-flight and backlog limits, so flow control,
    /// backpressure and dropped appends are exercised.
    pub tight_limits: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            pre_vote: true,
            check_quorum: true,
            preferred_leader: false,
            tight_limits: false,
        }
    }
}

impl NodeOptions {
    /// Draws options: each departure from the defaults with probability
    /// 1/4 (preferred leader and tight limits 1/3).
    pub fn draw(rng: &mut impl rand::Rng) -> NodeOptions {
        NodeOptions {
            pre_vote: !rng.gen_bool(0.25),
            check_quorum: !rng.gen_bool(0.25),
            preferred_leader: rng.gen_bool(1.0 / 3.0),
            tight_limits: rng.gen_bool(1.0 / 3.0),
        }
    }

    /// Applies the options to one node's configuration in a cluster of
    /// `nodes` nodes.
    pub fn apply(&self, config: &mut concord::Config, nodes: usize) {
        config.pre_vote = self.pre_vote;
        config.check_quorum = self.check_quorum;
        if self.preferred_leader && nodes > 1 {
            config.priorities.insert(nodes as concord::NodeId, 1);
        }
        if self.tight_limits {
            config.append_entries_max = 3;
            config.append_bytes_max = 256;
            config.inflight_messages_max = 2;
            config.uncommitted_entries_max = 16;
            config.apply_batch_entries_max = 2;
            config.unpersisted_writes_max = 3;
        }
    }
}

impl std::fmt::Display for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pre-vote {}, check-quorum {}, preferred leader {}, tight limits {}",
            on_off(self.pre_vote),
            on_off(self.check_quorum),
            on_off(self.preferred_leader),
            on_off(self.tight_limits)
        )
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag {
        "on"
    } else {
        "off"
    }
}

/// Everything that defines one run, besides the fault plan (which the
/// seed draws unless one is given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Cluster size, 1 to 7.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys of the key-value workload.
    pub keys: usize,
    /// Faults are injected in `0..chaos_ns` of virtual time; then every
    /// fault heals and the liveness check starts.
    pub chaos_ns: u64,
    /// After healing, a new write must commit and be applied by every node
    /// within this bound.
    pub liveness_bound_ns: u64,
    /// Nominal period of a node's logical tick.
    pub tick_ns: u64,
    /// Mean client think time between operations (exponential).
    pub think_mean_ns: u64,
    /// A client waits this long for an answer before retrying.
    pub client_timeout_ns: u64,
    /// A client gives up on an operation after this many attempts.
    pub client_max_attempts: u32,
    /// Fault kinds allowed.
    pub faults: FaultSet,
    /// Swarm testing: each allowed fault is on in about half the seeds.
    pub swarm: bool,
    /// Bound of the per-node clock skew, parts per million.
    pub max_skew_ppm: i64,
    /// Capacity of the session table.
    pub max_sessions: usize,
    /// Deliberate bugs.
    pub bugs: HostBugs,
    /// Deliberate mistakes planted in the core.
    pub core_bugs: CoreBugs,
    /// Draw each seed's [`NodeOptions`] (PreVote, CheckQuorum, preferred
    /// leader, tight limits) instead of using the defaults.
    pub vary_node_options: bool,
    /// Record a readable timeline (slower).
    pub timeline: bool,
    /// The run fails if it needs more node steps than this.
    pub max_node_steps: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            nodes: 5,
            clients: 8,
            keys: 8,
            chaos_ns: 10_000_000_000,
            liveness_bound_ns: 10_000_000_000,
            tick_ns: 10_000_000,
            think_mean_ns: 100_000_000,
            client_timeout_ns: 500_000_000,
            client_max_attempts: 10,
            faults: FaultSet::all(),
            swarm: true,
            max_skew_ppm: 200_000,
            max_sessions: 64,
            bugs: HostBugs::default(),
            core_bugs: CoreBugs::default(),
            vary_node_options: true,
            timeline: false,
            max_node_steps: 2_000_000,
        }
    }
}

impl SimConfig {
    /// Checks the configuration; the error names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.nodes) {
            return Err(format!(
                "--nodes {} is out of range: a cluster has 1 to 7 nodes",
                self.nodes
            ));
        }
        if self.clients > 1000 {
            return Err(format!(
                "--clients {} is too many (at most 1000)",
                self.clients
            ));
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".to_string());
        }
        if self.tick_ns == 0 {
            return Err("--tick-ms must be positive".to_string());
        }
        if self.think_mean_ns == 0 || self.client_timeout_ns == 0 {
            return Err("client think time and timeout must be positive".to_string());
        }
        if self.client_max_attempts == 0 {
            return Err("clients need at least one attempt per operation".to_string());
        }
        if self.max_sessions == 0 {
            return Err("--max-sessions must be at least 1".to_string());
        }
        if !(0..900_000).contains(&self.max_skew_ppm) {
            return Err(format!(
                "--max-skew-ppm {} must be in 0..900000",
                self.max_skew_ppm
            ));
        }
        if self.core_bugs.any() && !cfg!(feature = "planted-bugs") {
            return Err(
                "core bugs need concord-sim built with its `planted-bugs` feature".to_string(),
            );
        }
        if self.liveness_bound_ns == 0 {
            return Err("--liveness-ms must be positive".to_string());
        }
        Ok(())
    }

    /// The command-line flags that reproduce this configuration (every
    /// setting that differs from the default, plus the seed and size).
    pub fn cli_flags(&self) -> String {
        let default = SimConfig::default();
        let mut flags = format!("--seed {} --nodes {}", self.seed, self.nodes);
        let ms = |ns: u64| ns / 1_000_000;
        if self.clients != default.clients {
            flags += &format!(" --clients {}", self.clients);
        }
        if self.keys != default.keys {
            flags += &format!(" --keys {}", self.keys);
        }
        if self.chaos_ns != default.chaos_ns {
            flags += &format!(" --chaos-ms {}", ms(self.chaos_ns));
        }
        if self.liveness_bound_ns != default.liveness_bound_ns {
            flags += &format!(" --liveness-ms {}", ms(self.liveness_bound_ns));
        }
        if self.tick_ns != default.tick_ns {
            flags += &format!(" --tick-us {}", self.tick_ns / 1000);
        }
        if self.think_mean_ns != default.think_mean_ns {
            flags += &format!(" --think-us {}", self.think_mean_ns / 1000);
        }
        if self.client_timeout_ns != default.client_timeout_ns {
            flags += &format!(" --client-timeout-ms {}", ms(self.client_timeout_ns));
        }
        if self.client_max_attempts != default.client_max_attempts {
            flags += &format!(" --client-attempts {}", self.client_max_attempts);
        }
        if self.faults != default.faults {
            flags += &format!(" --faults {}", self.faults);
        }
        if !self.swarm {
            flags += " --no-swarm";
        }
        if self.max_skew_ppm != default.max_skew_ppm {
            flags += &format!(" --max-skew-ppm {}", self.max_skew_ppm);
        }
        if self.max_sessions != default.max_sessions {
            flags += &format!(" --max-sessions {}", self.max_sessions);
        }
        if !self.vary_node_options {
            flags += " --fixed-node-options";
        }
        if self.max_node_steps != default.max_node_steps {
            flags += &format!(" --max-steps {}", self.max_node_steps);
        }
        if self.bugs.persisted_before_sync {
            flags += " --bug-persisted-before-sync";
        }
        if self.bugs.nondeterministic_state_machine {
            flags += " --bug-nondeterministic-sm";
        }
        if self.bugs.snapshot_reported_before_sync {
            flags += " --bug-snapshot-before-sync";
        }
        if self.bugs.snapshot_past_applied {
            flags += " --bug-snapshot-past-applied";
        }
        if self.bugs.client_without_sessions {
            flags += " --bug-no-sessions";
        }
        if self.core_bugs.figure_8_commit {
            flags += " --bug-figure-8";
        }
        if self.core_bugs.vote_before_durable {
            flags += " --bug-vote-before-durable";
        }
        if self.core_bugs.probe_ignores_hint {
            flags += " --bug-probe-ignores-hint";
        }
        flags
    }

    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p concord-sim -- replay {}",
            self.cli_flags()
        )
    }
}
