//! Configuration of one simulated run.

use crate::faults::FaultSet;

/// Deliberate host bugs, to prove the checkers catch them. All off by
/// default. A field's name in kebab case is the mistake's name in the
/// table of planted mistakes ([`crate::bugs`]): `run --bug NAME`.
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
    /// The host leaves its address book (the records of the Host entries
    /// it applied) out of its snapshots; a node restoring one loses every
    /// record the snapshot covers.
    pub host_book_dropped_from_snapshots: bool,
    /// The forced-recovery scenario starts the survivor on the plan's
    /// writes before they are synced (as if the offline tool returned
    /// without an fsync); a crash just after loses the forced term and
    /// configuration.
    pub forced_recovery_unsynced: bool,
    /// The transport stamps a message whose claimed sender names no peer
    /// (the node itself, id 0, a node outside the configuration) with a
    /// member's id instead of dropping it, so a forged message looks
    /// genuine (caught by the forged-sender check).
    pub forged_sender_relabelled: bool,
    /// The clients' session-contract probes are well-formed after all:
    /// the "older" command carries the newest answered number (answered
    /// from the cache) and the "malformed" registration has no trailing
    /// bytes (opens a session); caught by the probes' check.
    pub client_probes_well_formed: bool,
    /// The host builds its session tables one session larger
    /// than configured, so a full table evicts later than the
    /// least-recently-used promise says (caught by the session-answer
    /// check).
    pub session_table_one_larger: bool,
    /// During the latency writes after the quiet period the host's
    /// network drops the leader's commit updates (commit notices, and
    /// appends that carry no entries), so followers learn a commit only
    /// from the next heartbeat: the follower apply budget fails.
    pub calm_commit_updates_dropped: bool,
    /// During the read rounds after the latency writes the host's network
    /// drops heartbeat answers, so no read round is confirmed: the read
    /// budget fails.
    pub calm_heartbeat_answers_dropped: bool,
    /// While the backlog after the read rounds is under way, every message
    /// takes 5 ms more: the backlog budget fails.
    pub calm_backlog_delayed: bool,
    /// The host loses a node's announcement that it became leader
    /// (`Action::RoleChanged`) before its checks see it (caught by the
    /// accounting check, `node-report`).
    pub role_announcement_dropped: bool,
    /// During a split vote the host's transport loses the voters' vote
    /// grants to the first candidate before they leave the node (caught
    /// by the vote-answer check).
    pub split_vote_grant_dropped: bool,
    /// Clients forget that a server failed them: they keep sending
    /// attempts to a crashed or paused server, or follower reads to a
    /// removed one, on every turn (caught by the `client-avoidance`
    /// check).
    pub client_forgets_failures: bool,
    /// With durable state machines: the state machine records its applied
    /// index durably at every batch, ahead of the state it covers
    /// ([`crate::durable::DurableBugs::index_before_state`]).
    pub durable_index_before_state: bool,
    /// With durable state machines: a snapshot view reads the live state
    /// when it is read, so it sees the applies made after its index
    /// ([`crate::durable::DurableBugs::view_reads_live`]).
    pub durable_view_reads_live: bool,
    /// With durable state machines: the host hands a snapshot to the log
    /// without making its index durable in the state machine (no `sync()`
    /// once the view is read), so the log is compacted past the state
    /// machine's durable applied index.
    pub durable_snapshot_without_sync: bool,
    /// With durable state machines: at a restart the host hands the node
    /// the state machine's durable applied index as the index applied
    /// (`Recovered::applied_index`, capped at the durable log's end), so
    /// the node takes the log's entries up to it for committed ones; they
    /// need not be the entries applied when the state came from a leader's
    /// snapshot whose write to the log was not durable yet.
    pub durable_restart_trusts_applied: bool,
    /// With durable state machines: a forced recovery keeps the
    /// survivor's on-disk state machine as it is, though the recovery
    /// gives up committed entries whose effect it may hold.
    pub durable_forced_recovery_keeps_state: bool,
    /// With in-memory state machines that can copy themselves
    /// (`StateMachine::snapshot_source`): the host takes the copy for a
    /// snapshot when it serialises it, later, instead of when the node
    /// asked, so the snapshot holds applies past its index (every seed
    /// then takes its snapshots from copies).
    pub snapshot_copy_taken_late: bool,
}

impl HostBugs {
    /// Whether any bug is on.
    pub fn any(&self) -> bool {
        self.persisted_before_sync
            || self.nondeterministic_state_machine
            || self.client_without_sessions
            || self.snapshot_reported_before_sync
            || self.snapshot_past_applied
            || self.host_book_dropped_from_snapshots
            || self.forced_recovery_unsynced
            || self.forged_sender_relabelled
            || self.client_probes_well_formed
            || self.session_table_one_larger
            || self.calm_commit_updates_dropped
            || self.calm_heartbeat_answers_dropped
            || self.calm_backlog_delayed
            || self.role_announcement_dropped
            || self.split_vote_grant_dropped
            || self.client_forgets_failures
            || self.snapshot_copy_taken_late
            || self.durable_any()
    }

    /// Whether a bug of the durable state machine (or of the host driving
    /// it) is on.
    pub fn durable_any(&self) -> bool {
        self.durable_index_before_state
            || self.durable_view_reads_live
            || self.durable_snapshot_without_sync
            || self.durable_restart_trusts_applied
            || self.durable_forced_recovery_keeps_state
    }
}

/// The core's planted mistakes (the classic Raft mistakes), to measure how
/// quickly the simulator's outside checks catch them: the core's own
/// switches, named in the table of `crate::bugs`. Planting one needs
/// concord-sim's `planted-bugs` feature (on by default), which turns on
/// the core's. While one is on, the core's own assertions that would
/// report it directly are set aside (see the core's `src/planted.rs`), so
/// a catch comes from the simulator's checks.
pub type CoreBugs = concord::PlantedBugs;

/// Which way the workload's reads go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadChoice {
    /// Each seed draws its own mix of paths ([`ReadOptions::draw`]).
    #[default]
    Mix,
    /// Every read is a log entry, like a write.
    Log,
    /// Every read takes this path.
    Only(concord::ReadPath),
}

/// How the reads of one run are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// Relative weights of the paths a read takes: through the log,
    /// ReadIndex, lease, follower read. Chosen per operation.
    pub weights: [u32; 4],
    /// Lease reads on (where CheckQuorum is), with the longest lease the
    /// run's clock skew allows.
    pub lease: bool,
}

impl ReadOptions {
    /// A quarter of the seeds read only through the log (as before reads
    /// had their own paths); the others weigh each path 0 to 3.
    pub fn draw(rng: &mut impl rand::Rng) -> ReadOptions {
        let lease = rng.gen_bool(0.5);
        if rng.gen_bool(0.25) {
            return ReadOptions {
                weights: [1, 0, 0, 0],
                lease,
            };
        }
        let mut weights = [0u32; 4];
        for weight in &mut weights {
            *weight = rng.gen_range(0..=3);
        }
        if weights.iter().all(|weight| *weight == 0) {
            weights[1] = 1;
        }
        ReadOptions { weights, lease }
    }

    /// The options `choice` fixes, or `drawn` for [`ReadChoice::Mix`].
    pub fn for_choice(choice: ReadChoice, drawn: ReadOptions) -> ReadOptions {
        let only = |slot: usize| {
            let mut weights = [0; 4];
            weights[slot] = 1;
            weights
        };
        match choice {
            ReadChoice::Mix => drawn,
            ReadChoice::Log => ReadOptions {
                weights: only(0),
                lease: drawn.lease,
            },
            ReadChoice::Only(path) => ReadOptions {
                weights: only(1 + path as usize),
                lease: drawn.lease || path == concord::ReadPath::Lease,
            },
        }
    }

    /// Picks the path of one read: `None` for through the log.
    pub fn pick(&self, rng: &mut impl rand::Rng) -> Option<concord::ReadPath> {
        let total: u32 = self.weights.iter().sum();
        let mut pick = rng.gen_range(0..total.max(1));
        let paths = [
            None,
            Some(concord::ReadPath::ReadIndex),
            Some(concord::ReadPath::Lease),
            Some(concord::ReadPath::Follower),
        ];
        for (weight, path) in self.weights.iter().zip(paths) {
            if pick < *weight {
                return path;
            }
            pick -= weight;
        }
        None
    }

    /// Turns leases on in one node's configuration when the run has them
    /// and CheckQuorum is on. The declared drift bound covers the run's
    /// clock skew: tick rates within ±`max_skew_ppm` differ by at most a
    /// factor (1+ρ)/(1−ρ), so over a minimum election timeout of `m`
    /// ticks, tick counts drift apart by up to `m·2ρ/(1+ρ)`. With
    /// `skew_beyond_bound` the bound is declared as 0 instead, and the
    /// lease is as long as that false bound allows.
    pub fn apply(&self, config: &mut concord::Config, max_skew_ppm: i64, skew_beyond_bound: bool) {
        if !self.lease || !config.check_quorum {
            return;
        }
        let min = u64::from(config.election_timeout_min_ticks);
        let rho = max_skew_ppm.unsigned_abs();
        let drift = if skew_beyond_bound {
            0
        } else {
            // ceil(min · 2ρ / (1 + ρ)), ρ in parts per million.
            (min * 2 * rho).div_ceil(1_000_000 + rho)
        };
        if drift + 1 >= min {
            return;
        }
        config.clock_drift_bound_ticks = drift as u32;
        config.lease_read_ticks = (min - drift - 1) as u32;
    }
}

impl std::fmt::Display for ReadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [log, index, lease, follower] = self.weights;
        write!(
            f,
            "reads log:{log} read-index:{index} lease:{lease} follower:{follower}, leases {}",
            on_off(self.lease)
        )
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
    /// With tight limits: an append byte limit too small for two entries,
    /// so every append carries exactly the one entry a leader always sends,
    /// however large: half of one entry's fixed overhead
    /// ([`concord::ENTRY_OVERHEAD_BYTES`]), or one and a half of it when
    /// the preferred leader is on too (above one entry's overhead, below
    /// two: a batch limit computed from it must still let one entry go).
    pub appends_below_entry_overhead: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            pre_vote: true,
            check_quorum: true,
            preferred_leader: false,
            tight_limits: false,
            appends_below_entry_overhead: false,
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
            // Drawn last, so the draws above are those of earlier versions.
            appends_below_entry_overhead: rng.gen_bool(1.0 / 3.0),
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
            // The size under one entry's overhead, or between one and
            // two, is chosen by a flag drawn already, so every seed draws
            // what it drew before.
            config.append_bytes_max =
                match (self.appends_below_entry_overhead, self.preferred_leader) {
                    (true, false) => concord::ENTRY_OVERHEAD_BYTES / 2,
                    (true, true) => {
                        concord::ENTRY_OVERHEAD_BYTES + concord::ENTRY_OVERHEAD_BYTES / 2
                    }
                    (false, _) => 256,
                };
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
        )?;
        if self.tight_limits && self.appends_below_entry_overhead {
            write!(f, " (appends of one entry)")?;
        }
        Ok(())
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag {
        "on"
    } else {
        "off"
    }
}

/// Whether a seed runs the forced-recovery scenario (`engine::forced`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForcedRecoveryChoice {
    /// Drawn per seed: about a fifth of the seeds without membership
    /// churn, on 2 or more nodes, with a workload that accounts for lost
    /// writes (the built-in key-value workload). The default.
    #[default]
    Swarm,
    /// Every seed (membership churn is then off in every seed).
    Always,
    /// No seed (`--no-forced-recovery`).
    Off,
}

/// Whether a seed's state machines keep their state on disk
/// ([`crate::durable::SimDurable`], driven as a
/// [`concord::durable::DurableStateMachine`]) instead of in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DurableChoice {
    /// Drawn per seed: about a third of the seeds. The default.
    #[default]
    Swarm,
    /// Every seed (`--durable-sm`).
    Always,
    /// No seed (`--no-durable-sm`).
    Off,
}

/// Whether a seed takes the own snapshots of in-memory state machines
/// that can copy themselves (`StateMachine::snapshot_source`) from a
/// copy serialised later, while applies go on, as the runtime's host
/// does, instead of serialising them at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SnapshotCopyChoice {
    /// Drawn per seed: about half of the seeds. The default.
    #[default]
    Swarm,
    /// Every seed (`--snapshot-copies`).
    Always,
    /// No seed (`--no-snapshot-copies`).
    Off,
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
    /// Which read paths the workload uses.
    pub reads: ReadChoice,
    /// Declare a clock drift bound of 0 for leases while clocks skew up
    /// to `max_skew_ppm`: the fault that shows leases depend on the bound.
    pub lease_skew_beyond_bound: bool,
    /// Draw each seed's [`NodeOptions`] (PreVote, CheckQuorum, preferred
    /// leader, tight limits) instead of using the defaults.
    pub vary_node_options: bool,
    /// Membership churn: in about half the seeds (on 2 or more nodes)
    /// voters are removed or demoted, learners added and promoted during
    /// the faults, some runs starting from a single voter and growing (in
    /// half of those 1 → 3 → 5 and back to 1), some leaving joint
    /// configurations explicitly (`Config::auto_leave_joint` off); the
    /// run ends in the configuration the churn left, and liveness is
    /// checked under it.
    pub membership_churn: bool,
    /// Witnesses: in some seeds on 3 or more nodes one node is built as a
    /// witness voter (it stores the log and votes, never applies or
    /// leads); the membership workload removes and re-adds it as one.
    pub witnesses: bool,
    /// About half the seeds propose Host entries (address records) now
    /// and then, and before membership changes that add a node.
    pub host_entries: bool,
    /// About half the seeds' clients now and then send, instead of a
    /// workload command, a malformed request (which must be answered
    /// `Malformed`) or a command older than their last answered one
    /// (which must be answered `SessionExpired`). Off in forced-recovery
    /// runs, where a recovery may take a session's last commands back.
    pub client_probes: bool,
    /// In about a quarter of the seeds whose session table could hold
    /// every client's session, the table holds fewer sessions than there
    /// are clients (half to all but one), so sessions are evicted and the
    /// least-recently-used order is checked.
    pub session_pressure: bool,
    /// Record a readable timeline (slower).
    pub timeline: bool,
    /// The run fails if it needs more node steps than this.
    pub max_node_steps: u64,
    /// The service whose state machine and workload run
    /// ([`crate::services`]).
    pub service: crate::services::Service,
    /// Plant the selected service's bug (see [`crate::services`]).
    pub service_bug: bool,
    /// Whether seeds lose a majority of their voters for good and are
    /// rebuilt from one survivor by forced recovery.
    pub forced_recovery: ForcedRecoveryChoice,
    /// Fail a run that exceeds a statistical budget
    /// ([`crate::budgets::Expectation`]) instead of reporting it in a
    /// class of its own (`--strict-budgets`).
    pub strict_budgets: bool,
    /// Check every step of every node against the step rules
    /// ([`crate::rules`]; `--no-step-rules` turns them off, to measure
    /// what the other checks catch without them).
    pub step_rules: bool,
    /// Judge every read served without the log as it is released
    /// (`read-fresh`, against the highest index committed anywhere when
    /// it arrived); `--no-read-fresh` turns it off, to see what the history
    /// checker (or a service's model) catches alone.
    pub read_fresh: bool,
    /// Whether seeds run on-disk state machines (`crate::durable`): the
    /// host drives them as a real host drives a
    /// [`concord::durable::DurableStateMachine`] (applies in batches,
    /// `sync()` before a snapshot's view, views streamed later, restores
    /// streamed over time, restarts from the durable applied index).
    pub durable_state_machine: DurableChoice,
    /// Whether seeds take own snapshots of in-memory state machines from
    /// copies serialised later (`engine::snapshot_copy`).
    pub snapshot_copies: SnapshotCopyChoice,
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
            reads: ReadChoice::Mix,
            lease_skew_beyond_bound: false,
            vary_node_options: true,
            membership_churn: true,
            witnesses: true,
            host_entries: true,
            client_probes: true,
            session_pressure: true,
            timeline: false,
            max_node_steps: 2_000_000,
            service: crate::services::Service::Builtin,
            service_bug: false,
            forced_recovery: ForcedRecoveryChoice::Swarm,
            strict_budgets: false,
            step_rules: true,
            read_fresh: true,
            durable_state_machine: DurableChoice::Swarm,
            snapshot_copies: SnapshotCopyChoice::Swarm,
        }
    }
}

impl SimConfig {
    /// The capacity a host builds its session table with: `max_sessions`,
    /// the capacity every check holds the table to, except under the
    /// planted `session_table_one_larger` bug.
    pub fn table_sessions(&self) -> usize {
        self.max_sessions + usize::from(self.bugs.session_table_one_larger)
    }

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
        if self.service_bug && self.service == crate::services::Service::Builtin {
            return Err("--bug service-bug plants a service's bug: add --service kv".to_string());
        }
        if self.forced_recovery == ForcedRecoveryChoice::Always
            && self.service != crate::services::Service::Builtin
        {
            return Err("--forced-recovery runs the built-in workload only (its history check accounts for the writes a forced recovery loses): drop --service".to_string());
        }
        if self.bugs.forced_recovery_unsynced && self.forced_recovery == ForcedRecoveryChoice::Off {
            return Err("--bug forced-recovery-unsynced plants a bug of the forced-recovery scenario: drop --no-forced-recovery".to_string());
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
        if (self.core_bugs != CoreBugs::NONE || self.service_bug) && !cfg!(feature = "planted-bugs")
        {
            return Err(
                "planted core and service mistakes need concord-sim built with its `planted-bugs` feature".to_string(),
            );
        }
        if self.liveness_bound_ns == 0 {
            return Err("--liveness-ms must be positive".to_string());
        }
        if self.bugs.durable_any() && self.durable_state_machine == DurableChoice::Off {
            return Err("the durable-* planted mistakes are mistakes of on-disk state machines: drop --no-durable-sm".to_string());
        }
        if self.bugs.snapshot_copy_taken_late && self.snapshot_copies == SnapshotCopyChoice::Off {
            return Err("--bug snapshot-copy-taken-late is a mistake of snapshots taken from copies: drop --no-snapshot-copies".to_string());
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
        if !self.membership_churn {
            flags += " --no-membership-churn";
        }
        if !self.witnesses {
            flags += " --no-witnesses";
        }
        if self.max_node_steps != default.max_node_steps {
            flags += &format!(" --max-steps {}", self.max_node_steps);
        }
        if !self.host_entries {
            flags += " --no-host-entries";
        }
        if !self.client_probes {
            flags += " --no-client-probes";
        }
        if !self.session_pressure {
            flags += " --no-session-pressure";
        }
        match self.reads {
            ReadChoice::Mix => {}
            ReadChoice::Log => flags += " --reads log",
            ReadChoice::Only(concord::ReadPath::ReadIndex) => flags += " --reads index",
            ReadChoice::Only(concord::ReadPath::Lease) => flags += " --reads lease",
            ReadChoice::Only(concord::ReadPath::Follower) => flags += " --reads follower",
        }
        if self.lease_skew_beyond_bound {
            flags += " --lease-skew-beyond-bound";
        }
        if self.service != crate::services::Service::Builtin {
            flags += &format!(" --service {}", self.service.name());
        }
        match self.forced_recovery {
            ForcedRecoveryChoice::Swarm => {}
            ForcedRecoveryChoice::Always => flags += " --forced-recovery",
            ForcedRecoveryChoice::Off => flags += " --no-forced-recovery",
        }
        if self.strict_budgets {
            flags += " --strict-budgets";
        }
        if !self.step_rules {
            flags += " --no-step-rules";
        }
        if !self.read_fresh {
            flags += " --no-read-fresh";
        }
        match self.durable_state_machine {
            DurableChoice::Swarm => {}
            DurableChoice::Always => flags += " --durable-sm",
            DurableChoice::Off => flags += " --no-durable-sm",
        }
        match self.snapshot_copies {
            SnapshotCopyChoice::Swarm => {}
            SnapshotCopyChoice::Always => flags += " --snapshot-copies",
            SnapshotCopyChoice::Off => flags += " --no-snapshot-copies",
        }
        for flag in crate::bugs::Switches::of(self).flags() {
            flags += " ";
            flags += &flag;
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
