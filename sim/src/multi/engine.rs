//! The multi-group engine: a virtual clock and one event queue, the nodes
//! (each a [`MultiNode`] with its disk, its groups' state machines and
//! its clock), the network of frames between them, the clients, the
//! fault plan, and the checks.
//!
//! Everything random derives from the seed through ChaCha8 streams (the
//! plan, the draws, the network, the disks, the clients, the nemeses);
//! nothing reads the wall clock and every collection iterated is ordered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::multi::{BatchId, Frame, GroupId, MultiNode};
use concord::{Index, LogPosition, NodeId, ReadPath, SnapshotMeta, Term, WriteId};

use crate::disk::Disk;
use crate::engine::{FailureKind, FaultCounts};
use crate::faults::{FaultPlan, PlanLimits};
use crate::safety::Safety;
use crate::services::kv::{KvWorkload, KvWorkloadConfig};
use crate::trace::TraceHash;
use concord_services::{kv::Kv, ServiceMachine};

use super::config::{Drawn, MultiSimConfig};
use super::report::{LayerTotals, MultiCheck, MultiFailure, MultiReport};

pub(crate) const MS: u64 = 1_000_000;

/// Most inputs queued for a paused node; later network input is dropped.
pub(crate) const PAUSED_QUEUE_MAX: usize = 4096;

/// After the workload ends and every group is led and caught up, every
/// group must be asleep within this long (quiescence on): a few idle
/// spells and quiescence rounds, with room for the wake limits.
pub const QUIESCE_BOUND_NS: u64 = 3_000 * MS;

/// Once every group sleeps, the nodes are watched this long: no group
/// message may be sent and no group stepped.
pub const IDLE_WINDOW_NS: u64 = 1_000 * MS;

/// An event of the run.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A node's clock ticks.
    Tick { node: usize, incarnation: u64 },
    /// A frame arrives at `frame.to`.
    Deliver { frame: Box<Frame> },
    /// A node's sync of the batches written when it started completes.
    Sync { node: usize, incarnation: u64 },
    /// A node's own snapshot file of a group is synced.
    SnapshotSync {
        node: usize,
        incarnation: u64,
        group: GroupId,
    },
    /// The plan's `index`th fault is due.
    Fault(usize),
    /// A nemesis restarts a node it crashed.
    Restart { node: usize },
    /// A round of leader churn.
    ChurnRound { down_ns: u64 },
    /// A nemesis heals the partition it made.
    HealNetwork { generation: u64 },
    /// A client starts its next operation.
    ClientNext { client: usize },
    /// A client's request reaches a node.
    ClientArrive {
        client: usize,
        op_seq: u64,
        attempt: u32,
        node: NodeId,
    },
    /// A client hears its request was refused.
    ClientRetry {
        client: usize,
        op_seq: u64,
        attempt: u32,
        hint: Option<NodeId>,
    },
    /// A client gives up on its operation.
    ClientTimeout { client: usize, op_seq: u64 },
    /// The liveness probe of a group tries (again).
    ProbeTry { group: GroupId },
    /// A stall that a peer change set off (`MultiSim::stall_bursts`)
    /// ends, unless the node was resumed and paused again since.
    StallEnd { node: usize, generation: u64 },
    /// The faults end: everything heals.
    Heal,
    /// The checks after the heal look again.
    Check,
    /// A timed step of the lease nemesis (`lease.rs`).
    Lease(super::lease::LeaseStep),
    /// The `commit-told` check looks again (`commit_told.rs`).
    CommitToldCheck,
    /// A step of the membership driver (`membership.rs`).
    Membership(super::membership::MembershipStep),
    /// A step of the forced-recovery scenario (`forced.rs`).
    Forced(super::forced::ForcedStep),
}

/// Who proposed what a node is being stepped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proposer {
    Client {
        client: usize,
        op_seq: u64,
        attempt: u32,
    },
    Probe {
        group: GroupId,
    },
}

/// One group on one node: the host's side of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostGroup {
    pub(crate) sm: ServiceMachine<Kv>,
    /// Last entry the state machine applied (or restored).
    pub(crate) applied: LogPosition,
    /// Bytes of every snapshot the node may ask chunks of.
    pub(crate) snapshot_bytes: BTreeMap<LogPosition, Bytes>,
    /// A snapshot being received from a leader.
    pub(crate) incoming: Option<(SnapshotMeta, Vec<u8>)>,
    /// Snapshots the node installed whole, each until its
    /// `PersistSnapshot` stores it. The layer hands that write out in its
    /// next persist batch, and the chunks of a newer snapshot may come
    /// first and start `incoming` over (seed 140 of 5 nodes, `--groups
    /// swarm`, once the snapshot bandwidth limit delayed chunks).
    pub(crate) installed: BTreeMap<LogPosition, Bytes>,
}

/// A read a node was asked for, not yet answered.
#[derive(Clone, Debug)]
pub(crate) struct HostRead {
    pub(crate) group: GroupId,
    pub(crate) client: Option<(usize, u64, u32)>,
    pub(crate) command: Bytes,
    pub(crate) asked_ns: u64,
    /// The highest commit index any running node of the group had when
    /// the read was asked: the read must reflect at least that much
    /// (`read-fresh`).
    pub(crate) committed_when_asked: concord::Index,
}

/// What a paused node's queue holds.
#[derive(Clone, Debug)]
pub(crate) enum Queued {
    Frame(Box<Frame>),
    Persisted(BatchId),
    Snapshotted {
        group: GroupId,
    },
    Request {
        client: usize,
        op_seq: u64,
        attempt: u32,
    },
    Probe {
        group: GroupId,
    },
}

/// A persist batch written to a node's log and not yet synced: the last
/// write of each group it holds.
#[derive(Clone, Debug)]
pub(crate) struct WalBatch {
    pub(crate) id: BatchId,
    pub(crate) writes: Vec<(GroupId, WriteId)>,
}

/// One simulated node.
pub(crate) struct Host {
    pub(crate) multi: Option<MultiNode>,
    pub(crate) incarnation: u64,
    /// The node's log, as each group's part of it (records tagged by group
    /// in one file: a crash loses every record not synced, and may tear
    /// the first of them, in every group it held).
    pub(crate) disks: BTreeMap<GroupId, Disk>,
    /// Batches written and not synced, in order.
    pub(crate) wal: VecDeque<WalBatch>,
    /// Batches the sync under way covers (`None`: no sync under way).
    pub(crate) syncing: Option<usize>,
    pub(crate) groups: BTreeMap<GroupId, HostGroup>,
    pub(crate) tick_period_ns: u64,
    pub(crate) paused: bool,
    pub(crate) paused_queue: VecDeque<Queued>,
    pub(crate) missed_ticks: u64,
    /// Bumped by every pause, so a stall's end resumes only its own.
    pub(crate) pause_generation: u64,
    /// The wake-queue work since the node's last flush (`wake-bound`).
    pub(crate) since_flush: FlushWindow,
    /// What the `snapshot-pace` check counts (`host.rs`).
    pub(crate) pace: PaceWindow,
    /// The layer's tick at which it last took a frame from each peer (as
    /// its node-level liveness counts it: a frame it did not refuse); a
    /// peer not heard from since the boot counts from tick 0, as the
    /// layer does. For the `stall-death` check.
    pub(crate) heard_tick: BTreeMap<NodeId, u64>,
    /// The newest incarnation heard from each peer: a frame of an older
    /// one was sent before that peer restarted and, as for the layer,
    /// is not hearing from it.
    pub(crate) heard_incarnation: BTreeMap<NodeId, u64>,
    pub(crate) reads: BTreeMap<u64, HostRead>,
    pub(crate) next_read_id: u64,
    /// What each group was told is durable at the crash: checked against
    /// the disk at the restart.
    pub(crate) promised: BTreeMap<GroupId, (Index, Option<Term>)>,
    /// Layer counters of earlier incarnations.
    pub(crate) totals: LayerTotals,
}

impl Host {
    /// Forgets what the node's running incarnation left (at a boot or a
    /// crash): no pause and its queue, no missed ticks, no flush window,
    /// nothing heard from its peers.
    pub(crate) fn clear_run(&mut self) {
        self.paused = false;
        self.paused_queue.clear();
        self.missed_ticks = 0;
        self.since_flush = FlushWindow::default();
        self.pace = PaceWindow::default();
        self.heard_tick.clear();
        self.heard_incarnation.clear();
    }
}

/// The `snapshot-pace` check's count for one node (`host.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PaceWindow {
    /// Ticks handed over since the last flush.
    pub(crate) ticks: u64,
    /// The largest excess of chunk bytes sent over the limit's allowance
    /// of any run of flushes ending at the last one (below zero: none).
    pub(crate) excess: i64,
    /// The largest chunk sent, in bytes.
    pub(crate) chunk_max: u64,
}

/// What a node's ticks did from the wake queues since its last flush:
/// the layer serves them, and judges election slots, on one tick per
/// flush at most, waking at most `wakes_per_tick_max` groups
/// (`wake-bound`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlushWindow {
    /// Ticks handed over since the flush.
    pub(crate) ticks: u64,
    /// Groups woken from the election and lead queues.
    pub(crate) queue_wakes: u64,
    /// Ticks that woke any group from the queues.
    pub(crate) serving_ticks: u64,
    /// Ticks that sent an election slot's group back to sleep.
    pub(crate) expiring_ticks: u64,
}

/// A client's operation in flight.
#[derive(Clone, Debug)]
pub(crate) struct ClientOp {
    pub(crate) group: GroupId,
    pub(crate) command: Bytes,
    /// `Some`: a get served without the log on this path.
    pub(crate) path: Option<ReadPath>,
    pub(crate) attempt: u32,
    /// The command was appended to a leader's log: it may take effect.
    pub(crate) accepted: bool,
    pub(crate) target: NodeId,
}

/// A client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Client {
    pub(crate) op_seq: u64,
    pub(crate) op: Option<ClientOp>,
}

/// An accepted proposal waiting for its entry to apply somewhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingOp {
    pub(crate) client: usize,
    pub(crate) op_seq: u64,
    pub(crate) term: Term,
}

/// The liveness probe of a group after the heal.
#[derive(Clone, Debug, Default)]
pub(crate) struct Probe {
    /// Entries it was accepted as: (index, term, when).
    pub(crate) accepted: Vec<(Index, Term, u64)>,
    /// The index it committed at.
    pub(crate) committed: Option<Index>,
    pub(crate) target: Option<NodeId>,
    pub(crate) tries: u64,
}

/// One group, cluster-wide.
pub(crate) struct GroupState {
    /// The nodes hosting the group, in id order: its drawn voters, then
    /// as membership changes make them (`membership.rs`).
    pub(crate) voters: Vec<NodeId>,
    /// The voters drawn: the configuration every node hosting the group
    /// from the start boots with (its log says what came after).
    pub(crate) initial: Vec<NodeId>,
    /// The nodes that joined later, with the voters of the moment they
    /// joined: they boot as an empty learner of those.
    pub(crate) joined: BTreeMap<NodeId, Vec<NodeId>>,
    pub(crate) safety: Safety,
    pub(crate) workload: KvWorkload,
    pub(crate) pending: BTreeMap<Index, PendingOp>,
    pub(crate) leader_hint: Option<NodeId>,
    /// Digest of the state machine snapshot taken at each index.
    pub(crate) snapshot_digests: BTreeMap<Index, u64>,
    pub(crate) probe: Probe,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Faults and workload.
    Chaos,
    /// Healed: waiting for every group to be led, to commit its probe
    /// everywhere, and for the clients to finish.
    Settling,
    /// Waiting for every group to sleep.
    Quiescing { since_ns: u64 },
    /// Every group sleeps: watching that nothing happens.
    Idle {
        since_ns: u64,
        steps: u64,
        items: u64,
    },
    /// Done.
    Done,
}

/// One multi-group run.
pub struct MultiSim {
    pub(crate) config: MultiSimConfig,
    pub(crate) drawn: Drawn,
    pub(crate) plan: FaultPlan,
    /// The rates in force: the plan's until the heal, calm after.
    pub(crate) rates: crate::faults::Rates,
    pub(crate) now_ns: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) groups: BTreeMap<GroupId, GroupState>,
    pub(crate) clients: Vec<Client>,
    pub(crate) net_rng: ChaCha8Rng,
    pub(crate) disk_rng: ChaCha8Rng,
    pub(crate) client_rng: ChaCha8Rng,
    pub(crate) nemesis_rng: ChaCha8Rng,
    /// Whether this seed's stalled hosts hand the ticks they missed back
    /// to back, flushing once after the last (as the tokio host does), and
    /// stall for a few ticks when their layer sees a peer die, return or
    /// restart (the wake work that stalls a real loop).
    pub(crate) stall_bursts: bool,
    /// Draws of the stalls a peer change sets off.
    pub(crate) stall_rng: ChaCha8Rng,
    /// Ticks handed over back to back (no flush since the one before).
    pub(crate) ticks_back_to_back: u64,
    /// Frames nodes took from a peer's earlier incarnation (sent before
    /// its restart, delayed past a frame of the new one).
    pub(crate) old_incarnation_frames: u64,
    /// `blocked[from] & (1 << to)`: frames from node index `from` to `to`
    /// are dropped.
    pub(crate) blocked: [u8; 8],
    /// Bumped by every partition, so a nemesis heal only undoes its own.
    pub(crate) partition_generation: u64,
    pub(crate) phase: Phase,
    pub(crate) heal_ns: u64,
    pub(crate) failure: Option<MultiFailure>,
    pub(crate) trace: TraceHash,
    pub(crate) faults: FaultCounts,
    pub(crate) events: u64,
    pub(crate) node_steps: u64,
    pub(crate) snapshots_taken: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) leaders_after_heal_ns: Option<u64>,
    pub(crate) liveness_after_heal_ns: Option<u64>,
    pub(crate) quiesced_after_ns: Option<u64>,
    pub(crate) electing_max: usize,
    /// Armed nemeses.
    pub(crate) crash_after_append: Option<u64>,
    pub(crate) crash_voter: Option<u64>,
    /// A crash a nemesis asked for at the end of the current step.
    pub(crate) crash_after_step: Option<(usize, u64)>,
    /// Sleeping leaders seen, by (node index, group): the term and last
    /// entry they slept at, and the followers their node took for alive.
    pub(crate) sleeping_leaders: BTreeMap<(usize, GroupId), (Term, LogPosition, Vec<NodeId>)>,
    /// The stale fault's answers of removed replicas (`network.rs`): the
    /// last acknowledgement each replica sent, by (node index, group), and
    /// those held back at the replica's removal, delivered when its node
    /// hosts the group again.
    pub(crate) stale_replicas: super::network::StaleReplicaAnswers,
    /// Frames carrying group items scheduled and not yet arrived: the
    /// idle window opens only once none is left (a late heartbeat answer
    /// is stepped by its sleeping leader, by design).
    pub(crate) group_frames_in_flight: u64,
    /// What live and deleted replicas acknowledged (`network.rs`).
    pub(crate) replica_acknowledgements: super::network::ReplicaAcknowledgements,
    pub(crate) timeline: Vec<(u64, Option<NodeId>, String)>,
    /// The step rules of every group (`rules.rs`), unless switched off.
    pub(crate) rules: Option<super::rules::SharedRules>,
    /// The lease nemeses (`lease.rs`).
    pub(crate) lease: super::lease::MultiLease,
    /// The followers owing a commit index (`commit_told.rs`).
    pub(crate) commit_told: super::commit_told::CommitTold,
    /// Membership changes and node replacement (`membership.rs`).
    pub(crate) membership: super::membership::MembershipFault,
    /// The forced-recovery scenario, in seeds that run it (`forced.rs`).
    pub(crate) forced: Option<super::forced::MultiForced>,
}

impl MultiSim {
    /// A run of `config` with the seed's own fault plan (or `plan`).
    pub fn new(config: MultiSimConfig, plan: Option<FaultPlan>) -> Result<MultiSim, String> {
        MultiSim::with_drawn(config, plan, None)
    }

    /// [`MultiSim::new`] with the seed's draws replaced by `drawn` (for
    /// the scenarios, which fix the groups and the layer's settings).
    pub fn with_drawn(
        config: MultiSimConfig,
        plan: Option<FaultPlan>,
        drawn: Option<Drawn>,
    ) -> Result<MultiSim, String> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let limits = PlanLimits {
            nodes: config.nodes,
            chaos_ns: config.chaos_ns,
            max_skew_ppm: config.max_skew_ppm,
        };
        let mut plan_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let generated = FaultPlan::generate(&mut plan_rng, config.faults, config.swarm, limits);
        let plan = plan.unwrap_or(generated);
        plan.validate(config.nodes)?;
        let mut draw_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let scenario = drawn.is_some();
        let mut drawn = drawn.unwrap_or_else(|| Drawn::draw(&config, &mut draw_rng));
        // Its own stream: the draws of seeds without it are unchanged.
        let forced = super::forced::MultiForced::draw(&config);
        if let Some(forced) = &forced {
            forced.adjust(&mut drawn);
        }
        if drawn.voters.len() != drawn.groups
            || drawn.voters.iter().any(|voters| {
                voters.is_empty()
                    || voters
                        .iter()
                        .any(|id| *id == 0 || *id as usize > config.nodes)
            })
        {
            return Err("every group needs voters among the cluster's nodes".to_string());
        }
        let net_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let disk_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let client_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let nemesis_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        // Drawn after every other stream, so the draws above are the
        // same as before stall bursts existed.
        let mut stall_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        let stall_bursts = config.faults.contains(crate::faults::FaultKind::Pause)
            && (!config.swarm || stall_rng.gen_bool(0.5));
        // Drawn after the stall bursts, for the same reason.
        #[allow(unused_mut)]
        let mut membership = super::membership::MembershipFault::draw(
            &config,
            &drawn.voters,
            ChaCha8Rng::seed_from_u64(rng.gen()),
        );
        // The snapshot bandwidth limit: its own stream, drawn after the
        // membership's, so the draws above are as before it existed. Not
        // for the scenarios, whose draws are their own.
        let mut pace_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        if config.swarm && !scenario {
            let groups = drawn.groups;
            drawn
                .layer
                .draw_snapshot_pace(&mut pace_rng, &mut drawn.compaction, groups);
        }
        // The rebalance's stall watch: its own stream, drawn last.
        let mut move_stall_rng = ChaCha8Rng::seed_from_u64(rng.gen());
        if let Some(rebalance) = membership.rebalance.as_mut() {
            rebalance.draw_move_stall(&mut move_stall_rng);
        }
        let mut hosts = Vec::with_capacity(config.nodes);
        for index in 0..config.nodes {
            let skew = plan.clock_skew_ppm.get(index).copied().unwrap_or(0);
            let period = (config.tick_ns as i128 * (1_000_000 + skew as i128) / 1_000_000) as u64;
            hosts.push(Host {
                multi: None,
                incarnation: 0,
                disks: BTreeMap::new(),
                wal: VecDeque::new(),
                syncing: None,
                groups: BTreeMap::new(),
                tick_period_ns: period.max(1),
                paused: false,
                paused_queue: VecDeque::new(),
                missed_ticks: 0,
                pause_generation: 0,
                since_flush: FlushWindow::default(),
                pace: PaceWindow::default(),
                heard_tick: BTreeMap::new(),
                heard_incarnation: BTreeMap::new(),
                reads: BTreeMap::new(),
                next_read_id: 0,
                promised: BTreeMap::new(),
                totals: LayerTotals::default(),
            });
        }
        let clients = config.clients;
        let mut groups = BTreeMap::new();
        for group in 1..=drawn.groups as GroupId {
            let voters: Vec<NodeId> = drawn.voters_of(group).iter().copied().collect();
            let workload = KvWorkload::new(
                KvWorkloadConfig {
                    keys: config.keys,
                    ..KvWorkloadConfig::default()
                },
                clients,
            );
            groups.insert(
                group,
                GroupState {
                    initial: voters.clone(),
                    joined: BTreeMap::new(),
                    voters,
                    safety: Safety::new(config.nodes),
                    workload,
                    pending: BTreeMap::new(),
                    leader_hint: None,
                    snapshot_digests: BTreeMap::new(),
                    probe: Probe::default(),
                },
            );
        }
        let skewed = plan
            .clock_skew_ppm
            .iter()
            .filter(|skew| **skew != 0)
            .count();
        let mut faults = FaultCounts::default();
        faults.add(crate::faults::FaultKind::Skew, skewed as u64);
        Ok(MultiSim {
            drawn,
            rates: plan.rates.clone(),
            plan,
            now_ns: 0,
            seq: 0,
            queue: BTreeMap::new(),
            hosts,
            groups,
            clients: vec![Client::default(); clients],
            net_rng,
            disk_rng,
            client_rng,
            nemesis_rng,
            stall_bursts,
            stall_rng,
            ticks_back_to_back: 0,
            old_incarnation_frames: 0,
            blocked: [0; 8],
            partition_generation: 0,
            phase: Phase::Chaos,
            heal_ns: 0,
            failure: None,
            trace: TraceHash::new(),
            faults,
            events: 0,
            node_steps: 0,
            snapshots_taken: 0,
            snapshots_installed: 0,
            leaders_after_heal_ns: None,
            liveness_after_heal_ns: None,
            quiesced_after_ns: None,
            electing_max: 0,
            crash_after_append: None,
            crash_voter: None,
            crash_after_step: None,
            sleeping_leaders: BTreeMap::new(),
            stale_replicas: Default::default(),
            replica_acknowledgements: Default::default(),
            group_frames_in_flight: 0,
            timeline: Vec::new(),
            rules: config
                .step_rules
                .then(|| super::rules::GroupRules::shared(config.nodes)),
            lease: super::lease::MultiLease::new(config.seed),
            commit_told: super::commit_told::CommitTold::default(),
            membership,
            forced,
            config,
        })
    }

    /// What the seed drew (groups, voters, the layer's settings).
    pub fn drawn(&self) -> &Drawn {
        &self.drawn
    }

    /// Schedules `event` `delay_ns` from now.
    pub(crate) fn schedule(&mut self, delay_ns: u64, event: Event) {
        self.seq += 1;
        self.queue
            .insert((self.now_ns.saturating_add(delay_ns), self.seq), event);
    }

    /// Records the first failed check (later ones are consequences).
    pub(crate) fn fail(
        &mut self,
        check: MultiCheck,
        node: Option<usize>,
        group: Option<GroupId>,
        message: String,
    ) {
        if self.failure.is_none() {
            self.failure = Some(MultiFailure {
                check,
                time_ns: self.now_ns,
                node: node.map(|index| index as NodeId + 1),
                group,
                message,
            });
        }
    }

    /// A line of the timeline, built only when one is recorded.
    pub(crate) fn note(&mut self, node: Option<usize>, text: impl FnOnce() -> String) {
        if self.config.timeline {
            self.timeline
                .push((self.now_ns, node.map(|index| index as NodeId + 1), text()));
        }
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> MultiReport {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_events();
        }));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            self.fail(MultiCheck::Raft(FailureKind::Panic), None, None, message);
        }
        self.report()
    }

    fn run_events(&mut self) {
        self.boot_all();
        for at in 0..self.plan.events.len() {
            let delay = self.plan.events[at].at_ns;
            self.schedule(delay, Event::Fault(at));
        }
        for client in 0..self.clients.len() {
            let delay = self
                .client_rng
                .gen_range(0..self.config.think_mean_ns.max(1));
            self.schedule(delay, Event::ClientNext { client });
        }
        let chaos = self.config.chaos_ns;
        self.schedule(chaos, Event::Heal);
        self.schedule(super::commit_told::CHECK_PERIOD_NS, Event::CommitToldCheck);
        self.schedule_membership();
        if let Some(at) = self.forced.as_ref().map(|forced| forced.lose_at_ns()) {
            self.schedule(at, Event::Forced(super::forced::ForcedStep::Lose));
        }
        while self.failure.is_none() && self.phase != Phase::Done {
            if !self.next_event(u64::MAX) {
                break;
            }
        }
        if self.failure.is_none() {
            self.final_checks();
        }
    }

    /// Starts every node.
    pub(crate) fn boot_all(&mut self) {
        for index in 0..self.hosts.len() {
            self.boot(index);
        }
    }

    /// Runs the next event if it is due by `until_ns`; false when none
    /// is (or a check failed).
    pub(crate) fn next_event(&mut self, until_ns: u64) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let due = self
            .queue
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= until_ns);
        if !due {
            return false;
        }
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return false;
        };
        self.now_ns = at;
        self.events += 1;
        if self.events > self.config.max_events {
            let message = format!("the run took more than {} events", self.config.max_events);
            self.fail(
                MultiCheck::Raft(FailureKind::EventBudget),
                None,
                None,
                message,
            );
            return false;
        }
        self.dispatch(event);
        true
    }

    /// Runs every event due by `until_ns`, then sets the clock there.
    pub(crate) fn advance_to(&mut self, until_ns: u64) {
        while self.next_event(until_ns) {}
        if self.failure.is_none() {
            self.now_ns = self.now_ns.max(until_ns);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Event::Deliver { frame } => self.on_deliver(frame),
            Event::Sync { node, incarnation } => self.on_sync(node, incarnation),
            Event::SnapshotSync {
                node,
                incarnation,
                group,
            } => self.on_snapshot_sync(node, incarnation, group),
            Event::Fault(index) => self.on_fault(index),
            Event::Restart { node } => self.restart(node),
            Event::ChurnRound { down_ns } => self.churn_round(down_ns),
            Event::HealNetwork { generation } => {
                if generation == self.partition_generation {
                    self.heal_network();
                }
            }
            Event::ClientNext { client } => self.client_next(client),
            Event::ClientArrive {
                client,
                op_seq,
                attempt,
                node,
            } => self.client_arrive(client, op_seq, attempt, node),
            Event::ClientRetry {
                client,
                op_seq,
                attempt,
                hint,
            } => self.client_retry(client, op_seq, attempt, hint),
            Event::ClientTimeout { client, op_seq } => self.client_timeout(client, op_seq),
            Event::ProbeTry { group } => self.probe_try(group),
            Event::StallEnd { node, generation } => {
                if self.hosts[node].pause_generation == generation {
                    self.resume(node);
                }
            }
            Event::Heal => self.heal(),
            Event::Check => self.check_after_heal(),
            Event::Lease(step) => self.lease_step(step),
            Event::CommitToldCheck => self.check_commit_told(),
            Event::Membership(step) => self.membership_step(step),
            Event::Forced(step) => self.forced_step(step),
        }
    }

    fn on_tick(&mut self, node: usize, incarnation: u64) {
        let host = &mut self.hosts[node];
        if host.multi.is_none() || host.incarnation != incarnation {
            return;
        }
        let period = host.tick_period_ns;
        self.schedule(period, Event::Tick { node, incarnation });
        if self.hosts[node].paused {
            self.hosts[node].missed_ticks += 1;
            return;
        }
        self.trace.word(0x7100_0000 | node as u64);
        let before = self.hosts[node]
            .multi
            .as_ref()
            .map(|multi| (multi.awake_count() as u64, *multi.stats()));
        self.step_node(node, concord::multi::MultiInput::Tick, None);
        if let Some((awake, stats)) = before {
            self.check_tick_work(node, awake, &stats);
        }
        self.after_tick(node);
    }

    /// What the run reports.
    fn report(&mut self) -> MultiReport {
        let mut layer = LayerTotals::default();
        for host in &self.hosts {
            layer.merge(&host.totals);
            if let Some(multi) = &host.multi {
                layer.add(multi.stats());
            }
        }
        let operations = self
            .groups
            .values()
            .map(|group| group.workload.history().len() as u64)
            .sum();
        MultiReport {
            config: self.config.clone(),
            drawn: self.drawn.clone(),
            plan: self.plan.clone(),
            failure: self.failure.clone(),
            trace_hash: self.trace.value(),
            events: self.events,
            node_steps: self.node_steps,
            simulated_ns: self.now_ns,
            operations,
            faults: self.faults,
            layer,
            snapshots_taken: self.snapshots_taken,
            snapshots_installed: self.snapshots_installed,
            leaders_after_heal_ns: self.leaders_after_heal_ns,
            leaders_bound_ns: self.leaders_bound_ns(),
            liveness_after_heal_ns: self.liveness_after_heal_ns,
            quiesced_after_ns: self.quiesced_after_ns,
            electing_max: self.electing_max,
            stall_bursts: self.stall_bursts,
            ticks_back_to_back: self.ticks_back_to_back,
            old_incarnation_frames: self.old_incarnation_frames,
            membership: self.membership.figures(),
            forced_recovery: self.forced.as_ref().map(|forced| forced.report.clone()),
            timeline: std::mem::take(&mut self.timeline),
        }
    }

    /// The set of groups node `index` hosts.
    pub(crate) fn groups_of(&self, index: usize) -> BTreeSet<GroupId> {
        let id = index as NodeId + 1;
        self.groups
            .iter()
            .filter(|(_, group)| group.voters.contains(&id))
            .map(|(group, _)| *group)
            .collect()
    }
}
