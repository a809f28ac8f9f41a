//! The hosts: each owns one core `Node` with its simulated disk and state
//! machine (wrapped in client sessions), boots it from what the disk
//! recovered, steps it, and executes the actions it asks for (persist,
//! sync, send, apply, snapshot). Crashes, restarts and pauses of a host
//! live here too.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::Rng;

use concord::session::{ClientId, ClientRequest, SessionOutcome, SessionTable};
use concord::state_machine::StateMachine;
use concord::{
    checksum64, Action, Config, Entry, EntryPayload, Index, Input, LogPosition, Message,
    MessageBody, Node, NodeId, ProposeError, ReadError, ReadPath, Recovered, Role, Snapshot,
    SnapshotMeta, Term,
};

use super::accessors;
use super::accounting::{self, AppliedBytes};
use super::book::{wrap_snapshot, Book};
use super::campaign;
use super::client::Reply;
use super::disk_loss;
use super::hints;
use super::lease;
use super::ondisk::OnDisk;
use super::replica::{Note, Replica};
use super::{Event, FailureKind, Simulation, MS, PAUSED_QUEUE_MAX};
use crate::disk::{Disk, Record};
use crate::faults::{FaultKind, Partition};
use crate::nemesis::{self, Strike};
use crate::observe::StepObserver;
use crate::safety::ApplyError;
use crate::trace::hash_bytes;
use crate::workload::{TookEffect, Workload};

/// How long an fsync takes when the plan draws no slow ones (and on the
/// calm disk after the heal: `crate::budgets` derives its calm bounds
/// from this).
pub(crate) const CALM_FSYNC_NS: u64 = 50_000;

/// Adds the chunk at `offset` of `snapshot` to the snapshot being
/// received, `incoming` (a chunk at offset 0 starts it over); what is
/// wrong if the chunk does not continue it.
pub(crate) fn receive_snapshot_chunk(
    incoming: &mut Option<(SnapshotMeta, Vec<u8>)>,
    snapshot: SnapshotMeta,
    offset: u64,
    data: &[u8],
) -> Result<(), String> {
    if offset == 0 {
        *incoming = Some((snapshot, Vec::new()));
    }
    match incoming.as_mut() {
        Some((meta, bytes)) if *meta == snapshot && bytes.len() as u64 == offset => {
            bytes.extend_from_slice(data);
            Ok(())
        }
        _ => Err(format!(
            "a snapshot chunk at offset {offset} of {:?} does not continue the snapshot being received",
            snapshot.position
        )),
    }
}

/// The bytes of `snapshot`, taken from what was received (`incoming`),
/// verified again as the host holds them: the same snapshot, whole, its
/// checksum right; what is wrong if not.
pub(crate) fn received_snapshot(
    incoming: Option<(SnapshotMeta, Vec<u8>)>,
    snapshot: &SnapshotMeta,
) -> Result<Bytes, String> {
    match incoming {
        Some((meta, bytes))
            if meta == *snapshot
                && bytes.len() as u64 == meta.size_bytes
                && checksum64(&bytes) == meta.checksum =>
        {
            Ok(Bytes::from(bytes))
        }
        _ => Err(format!(
            "asked to store the snapshot at {:?} without having received it whole",
            snapshot.position
        )),
    }
}

/// The node a client whose read was refused with `error` tries next, if
/// the refusal names one.
pub(crate) fn read_refusal_hint(error: &ReadError) -> Option<NodeId> {
    match error {
        ReadError::NotLeader { leader_hint } | ReadError::LeadershipLost { leader_hint } => {
            *leader_hint
        }
        ReadError::TransferInProgress { target } => Some(*target),
        _ => None,
    }
}

/// How long one fsync takes under `rates`: drawn from 20 µs up to the
/// plan's `fsync_max_ns` (a fault past a millisecond, counted in
/// `faults`), or [`CALM_FSYNC_NS`] when the plan draws no slow ones.
pub(crate) fn fsync_latency_ns(
    rates: &crate::faults::Rates,
    rng: &mut rand_chacha::ChaCha8Rng,
    faults: &mut super::FaultCounts,
) -> u64 {
    if rates.fsync_max_ns > 0 {
        let latency = rng.gen_range(20_000..rates.fsync_max_ns.max(20_001));
        if latency > MS {
            faults.add(FaultKind::Fsync, 1);
        }
        latency
    } else {
        CALM_FSYNC_NS
    }
}

/// A client request a host proposed to its node and has not answered
/// yet, by the log index it was proposed at.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    pub(super) client: u32,
    pub(super) attempt: u32,
    pub(super) term: Term,
}

/// What a host is handed: an input for its node, or a client's request
/// (queued while the host is paused).
pub(super) enum HostInput {
    Node(Input),
    Request {
        client: u32,
        attempt: u32,
        payload: Bytes,
        /// A read served without the log, on this path; `None`: propose.
        read: Option<ReadPath>,
    },
    /// An on-disk state machine's restore was completed off the loop:
    /// finish it on the loop (`ondisk`).
    FinishRestore,
}

/// A client's read handed to the node and not answered yet.
#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    pub(super) client: u32,
    pub(super) attempt: u32,
    /// The workload's command (a read), answered by `StateMachine::query`.
    pub(super) command: Bytes,
    /// The highest index committed anywhere when it arrived (`fresh`).
    pub(super) committed_when_asked: Index,
    /// A read of the lease nemeses, answered to no client (`fresh`).
    pub(super) probe: bool,
}

/// Who proposed a command, so its result can be routed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proposer {
    Client {
        client: u32,
        attempt: u32,
    },
    Probe,
    /// A write of the latency phase after the quiet period (`checks`).
    Latency,
}

/// One simulated server: a core [`Node`] (none while crashed), its state
/// machine, its disk, and the host-side bookkeeping around them.
pub(super) struct Host<S> {
    pub(super) id: NodeId,
    /// The heartbeat cadence from outside: (term, ticks the node has led
    /// that term since it became leader or last sent a heartbeat).
    pub(super) heartbeat_ticks: (Term, u32),
    /// The ids this incarnation's node surely knows (bit `id` set; ids
    /// from 64 on are never set, so never picked), seen
    /// from outside: every member of each configuration found in force
    /// after one of its steps, with the index of the configuration last
    /// looked at. A node knows every member of each configuration it had
    /// in force since it started and forgets none before a restart, so
    /// this is a subset of what it knows (a configuration in force only
    /// inside one step is missed).
    pub(super) known_ids: (Index, u64),
    /// The node's campaign, tallied from outside (`campaign.rs`).
    pub(super) campaign: campaign::Campaign,
    pub(super) node: Option<Node>,
    pub(super) sm: Replica<S>,
    /// An on-disk state machine's work under way (`ondisk`).
    pub(super) ondisk: OnDisk,
    pub(super) disk: Disk,
    pub(super) incarnation: u32,
    pub(super) paused: bool,
    pub(super) paused_queue: VecDeque<HostInput>,
    /// Ticks that passed while paused, delivered first on resume (a real
    /// host reads a monotonic clock; leases depend on it).
    pub(super) missed_ticks: u32,
    pub(super) pending: BTreeMap<Index, Pending>,
    /// Reads handed to the node, by read id; lost in a crash.
    pub(super) reads: BTreeMap<u64, PendingRead>,
    pub(super) next_read_id: u64,
    pub(super) tick_period_ns: u64,
    pub(super) last_vote: Option<(Term, NodeId)>,
    pub(super) last_commit_seen: Index,
    /// Operation ids executed by this incarnation's state machine.
    pub(super) executed: BTreeSet<u64>,
    /// The last entry the state machine applied (or the snapshot it was
    /// restored from).
    pub(super) applied_position: LogPosition,
    /// A snapshot was asked for and not yet reported to the node.
    pub(super) snapshot_outstanding: bool,
    /// A copy of the state machine taken for a snapshot and not yet
    /// serialised (`snapshot_copy`); lost in a crash.
    pub(super) pending_copy: Option<super::snapshot_copy::PendingCopy>,
    /// The bytes of the snapshots reported to the node (or installed from
    /// a leader), by position, for `SendSnapshotChunk`. Pruned below the
    /// node's held snapshot, so it holds one or two; lost in a crash.
    pub(super) snapshot_bytes: BTreeMap<LogPosition, Bytes>,
    /// The snapshot being received from a leader (`WriteSnapshotChunk`),
    /// volatile: lost in a crash.
    pub(super) incoming_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Times this host was paused (a pause stretches its CheckQuorum bound).
    pub(super) pauses: u32,
    /// (term, commit index) at the last step this node ended as leader.
    pub(super) leader_commit_seen: Option<(Term, Index)>,
    /// The address book built from the Host entries applied and the
    /// snapshots restored (`book`); rebuilt at every boot.
    pub(super) book: Book,
    /// The host's own count of the bytes applied since the node's latest
    /// snapshot (`accounting`), kept when a byte threshold is configured.
    pub(super) applied_bytes: AppliedBytes,
    /// Set from a loss of the node's storage (the disk-loss fault) until
    /// the node reports its recovery done (`disk_loss`).
    pub(super) storage_loss: Option<disk_loss::StorageLoss>,
    /// The last storage loss's term bound and acknowledged index, kept
    /// after the recovery: a leader of a term up to that bound may still
    /// report the loss late (a paused leader's queued answers).
    pub(super) past_storage_loss: Option<(concord::Term, concord::Index)>,
    /// The newest configuration any running node knew when this node's
    /// storage was lost (the node itself among them), by configuration
    /// index and term: what an operator tells the replaced server when
    /// no member is running at its restart (`current_members_into`).
    pub(super) members_at_loss: Option<(concord::Index, concord::Term, concord::Membership)>,
}

impl<S> Host<S> {
    /// A host that has never run: empty disk, no node yet.
    pub(super) fn fresh(id: NodeId, sm: Replica<S>, tick_period_ns: u64) -> Host<S> {
        Host {
            id,
            node: None,
            sm,
            ondisk: OnDisk::default(),
            disk: Disk::default(),
            incarnation: 0,
            paused: false,
            paused_queue: VecDeque::new(),
            missed_ticks: 0,
            reads: BTreeMap::new(),
            next_read_id: 0,
            pending: BTreeMap::new(),
            tick_period_ns,
            last_vote: None,
            last_commit_seen: 0,
            executed: BTreeSet::new(),
            applied_position: LogPosition::ZERO,
            snapshot_outstanding: false,
            pending_copy: None,
            snapshot_bytes: BTreeMap::new(),
            incoming_snapshot: None,
            pauses: 0,
            leader_commit_seen: None,
            book: Default::default(),
            applied_bytes: AppliedBytes::default(),
            storage_loss: None,
            past_storage_loss: None,
            members_at_loss: None,
            heartbeat_ticks: (0, 0),
            known_ids: (Index::MAX, 0),
            campaign: Default::default(),
        }
    }

    /// Keeps `snapshot`'s bytes for the node's chunk requests and returns
    /// what the node is told of it.
    pub(super) fn keep_snapshot_bytes(&mut self, snapshot: Snapshot) -> SnapshotMeta {
        let meta = snapshot.meta();
        self.snapshot_bytes.insert(snapshot.position, snapshot.data);
        meta
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    pub(super) fn node_config(&self, index: usize) -> Config {
        let id = index as NodeId + 1;
        let mut config = Config::new(id, self.initial_voters(index));
        let incarnation = self.hosts[index].incarnation as u64;
        config.seed =
            self.node_seeds[index].wrapping_add(incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.node_options.apply(&mut config, self.config.nodes);
        self.compaction.apply(&mut config);
        self.reads.apply(
            &mut config,
            self.config.max_skew_ppm,
            self.config.lease_skew_beyond_bound,
        );
        let churn_start_small = self.churn.as_ref().is_some_and(|churn| churn.start_small);
        if let Some(churn) = &self.churn {
            config.priorities.clear();
            config.auto_leave_joint = churn.auto_leave;
            if churn.start_small {
                config.voters = [1].into();
                if self.witness != Some(index) && id != 1 {
                    config.learners = [id].into();
                }
            } else if churn.spare == Some(index) {
                config.learners = [id].into();
            }
        }
        if let Some((voters, learners)) = self.fresh_initial_membership(index) {
            // Priorities name the original nodes, most of them lost.
            config.priorities.clear();
            config.voters = voters;
            config.learners = learners;
        }
        if let Some(witness) = self.witness {
            let witness_id = witness as NodeId + 1;
            // A witness never leads, so it is never the preferred leader.
            config.priorities.remove(&witness_id);
            // The witness itself always knows it is one; the others list it
            // among their voters when it is one of them. (A spare lists the
            // leader's voters of the moment less itself, which need not
            // keep the full voters a majority with the witness among them:
            // it then leaves the witness out, until the configuration in
            // its log replaces the list.)
            let voters = config.voters.len();
            // One witness among n voters leaves n - 1 full voters, a
            // majority when n - 1 >= n / 2 + 1.
            let keeps_majority = voters > voters / 2 + 1;
            if witness == index || (config.voters.contains(&witness_id) && keeps_majority) {
                config.witnesses.insert(witness_id);
            }
            if churn_start_small && witness != index {
                config.witnesses.clear();
            }
        }
        if self.hosts[index].storage_loss.is_some() {
            self.current_members_into(index, &mut config);
        }
        config
    }

    /// Starts (or restarts) node `index` from its disk.
    pub(super) fn boot(&mut self, index: usize) -> Result<(), String> {
        let recovered = match self.hosts[index].disk.recover() {
            Ok(recovered) => recovered,
            Err(error) => {
                self.fail(
                    FailureKind::HostContract,
                    Some(index),
                    format!("disk recovery: {}", error.0),
                );
                return Ok(());
            }
        };
        self.boot_from(index, recovered)
    }

    /// Starts node `index` from `recovered` (what its disk holds, or, for
    /// a forced recovery's survivor, that with the plan's writes on top).
    pub(super) fn boot_from(
        &mut self,
        index: usize,
        mut recovered: Recovered,
    ) -> Result<(), String> {
        let config = self.node_config(index);
        let base = recovered.base;
        let recovered_entries = recovered.entries.len() as Index;
        let (applied_from, book_records) = self.trusted_applied(index, &mut recovered);
        match Node::new(config, recovered) {
            #[allow(unused_mut)]
            Ok(mut node) => {
                #[cfg(feature = "planted-bugs")]
                if self.config.core_bugs != crate::CoreBugs::NONE {
                    node.plant_bugs(self.config.core_bugs);
                }
                if node.is_witness_node() {
                    self.note(Some(index), || "built as a witness".to_string());
                }
                let snapshot = self.hosts[index].disk.snapshot().cloned();
                let booted = if self.durable.is_some() {
                    let last = base.index + recovered_entries;
                    self.boot_durable(index, node.is_witness_node(), snapshot.as_ref(), base, last)
                } else {
                    self.boot_in_memory(index, &node, snapshot.as_ref(), base)
                };
                let Some((sm, book)) = booted else {
                    return Ok(());
                };
                let host = &mut self.hosts[index];
                host.last_vote = node.voted_for().map(|vote| (node.term(), vote));
                host.known_ids = (Index::MAX, 0);
                note_known_ids(&mut host.known_ids, &node);
                host.node = Some(node);
                host.sm = sm;
                host.book = book;
                host.last_commit_seen = 0;
                host.executed.clear();
                host.applied_position = applied_from;
                host.snapshot_outstanding = false;
                host.pending_copy = None;
                host.snapshot_bytes.clear();
                host.incoming_snapshot = None;
                host.applied_bytes.clear();
                host.ondisk = OnDisk::default();
                for (entry_index, record) in book_records {
                    self.apply_host_entry(index, entry_index, &record);
                }
                if self.failure.is_some() {
                    return Ok(());
                }
                self.safety.on_restart(index);
                self.rules.on_restart(index);
                if let Some(node) = self.hosts[index].node.as_ref() {
                    if let Err((kind, message)) = self.promises.on_restart(index, node) {
                        self.fail(kind, Some(index), message);
                        return Ok(());
                    }
                }
                self.check_forced_durable(index);
                if self.failure.is_some() {
                    return Ok(());
                }
                if let Some(snapshot) = snapshot {
                    if !self.hosts[index]
                        .node
                        .as_ref()
                        .is_some_and(Node::is_witness_node)
                    {
                        self.check_book(index, applied_from.index, "restoring its stored snapshot");
                        if self.failure.is_some() {
                            return Ok(());
                        }
                    }
                    // Hand the node the snapshot to serve to followers.
                    let meta = self.hosts[index].keep_snapshot_bytes(snapshot);
                    self.step(index, Input::Snapshotted(meta), None);
                }
                let phase = self
                    .disk_rng
                    .gen_range(0..self.hosts[index].tick_period_ns.max(1));
                let incarnation = self.hosts[index].incarnation;
                self.schedule(
                    phase,
                    Event::Tick {
                        node: index as u8,
                        incarnation,
                    },
                );
                Ok(())
            }
            Err(error) => {
                self.fail(
                    FailureKind::Recovery,
                    Some(index),
                    format!("node refused its recovered state: {error}"),
                );
                Ok(())
            }
        }
    }

    /// Node `index`'s in-memory state machine at a boot: restored from the
    /// stored `snapshot` (the log's base `base`), with the book it
    /// carries; `None` after a failure.
    fn boot_in_memory(
        &mut self,
        index: usize,
        node: &Node,
        snapshot: Option<&Snapshot>,
        base: LogPosition,
    ) -> Option<(Replica<S>, Book)> {
        let id = self.hosts[index].id;
        let mut sm = self.new_replica(index, id);
        let mut book = Book::new();
        match snapshot {
            // A witness's snapshots hold no state machine.
            Some(_) if node.is_witness_node() => {}
            Some(snapshot) => {
                let state = match self.unwrap_host_snapshot(&snapshot.data) {
                    Ok((stored, state)) => {
                        book = stored;
                        state
                    }
                    Err(error) => {
                        self.fail(
                            FailureKind::Recovery,
                            Some(index),
                            format!("reading the stored snapshot: {error}"),
                        );
                        return None;
                    }
                };
                if let Err(error) = sm.tapped_mut().restore(&state) {
                    self.fail(
                        FailureKind::Recovery,
                        Some(index),
                        format!("restoring the stored snapshot: {error}"),
                    );
                    return None;
                }
            }
            None if base.index > 0 => {
                self.fail(
                    FailureKind::Recovery,
                    Some(index),
                    format!("the log continues after {base:?} but no snapshot is stored"),
                );
                return None;
            }
            None => {}
        }
        Some((sm, book))
    }

    /// Hands an input to a node's host: dropped if it is down, queued if it
    /// is paused.
    pub(super) fn deliver(&mut self, index: usize, input: HostInput) {
        let host = &mut self.hosts[index];
        if host.node.is_none() {
            return;
        }
        if host.paused {
            // A stalled process's socket buffers fill up: past a bound,
            // further network input is dropped (the protocol must cope
            // with loss). Local completions (`Persisted`) always queue.
            let local = matches!(
                input,
                HostInput::Node(Input::Persisted(_)) | HostInput::FinishRestore
            );
            if local || host.paused_queue.len() < PAUSED_QUEUE_MAX {
                host.paused_queue.push_back(input);
            }
            return;
        }
        self.host_input(index, input);
    }

    pub(super) fn host_input(&mut self, index: usize, input: HostInput) {
        match input {
            HostInput::Node(input) => self.step(index, input, None),
            HostInput::FinishRestore => self.finish_restore(index),
            HostInput::Request {
                client,
                attempt,
                payload,
                read: None,
            } => self.step(
                index,
                Input::Propose(payload),
                Some(Proposer::Client { client, attempt }),
            ),
            HostInput::Request {
                client,
                attempt,
                payload,
                read: Some(path),
            } => {
                // A node out of the configuration applies nothing more:
                // like the real server it sends the reader on at once.
                if let Some(node) = self.hosts[index].node.as_ref() {
                    if node.not_member_since().is_some() {
                        let hint = node.leader().filter(|l| *l != node.id());
                        self.reads_refused_not_member += 1;
                        self.note(Some(index), || {
                            "refuses a read: not a member any more".to_string()
                        });
                        self.reply(client, attempt, Reply::Refused { hint });
                        return;
                    }
                }
                // A read carries the workload's command, not a session
                // request: reads need no exactly-once.
                self.lease.note_read_command(&payload);
                let committed_when_asked = self.fresh.committed();
                let host = &mut self.hosts[index];
                host.next_read_id += 1;
                let id = host.next_read_id;
                host.reads.insert(
                    id,
                    PendingRead {
                        client,
                        attempt,
                        command: payload,
                        committed_when_asked,
                        probe: false,
                    },
                );
                self.step(index, Input::Read { id, path }, None);
            }
        }
    }

    /// Steps node `index` with `input`, executing its actions and any
    /// inputs they lead to (`Applied`, or `Persisted` with the ack bug).
    pub(super) fn step(&mut self, index: usize, input: Input, proposer: Option<Proposer>) {
        // Taken out of an `Option`, not with `mem::take`: putting it back
        // then drops a `None`, not an empty `VecDeque` (which costs a
        // slice split and a loop per step). A nested step finds `None`
        // and starts an empty queue.
        let mut work = self.work.take().unwrap_or_default();
        let mut actions = std::mem::take(&mut self.actions);
        // The first input is handed straight to `step_once` when nothing
        // else waits (the common case): same order, and a large `Input` is
        // not copied into and out of an `Option` or the queue on every step.
        let mut going = if work.is_empty() {
            self.step_once(index, input, proposer, &mut work, &mut actions)
        } else {
            work.push_back((input, proposer));
            true
        };
        while going {
            let Some((input, proposer)) = work.pop_front() else {
                break;
            };
            going = self.step_once(index, input, proposer, &mut work, &mut actions);
        }
        self.work = Some(work);
        self.actions = actions;
    }

    /// One input of [`Simulation::step`]: steps the node, runs the checks
    /// and executes the actions. False when the step must stop here (the
    /// node is down or crashed, or a check failed); `work` is then empty.
    fn step_once(
        &mut self,
        index: usize,
        input: Input,
        proposer: Option<Proposer>,
        work: &mut VecDeque<(Input, Option<Proposer>)>,
        actions: &mut Vec<Action>,
    ) -> bool {
        // The lease and snapshot-conflict nemeses (`lease`, `conflict`).
        let lease_watch = self.lease.watches(index);
        let heard_answer = lease_watch
            && matches!(&input, Input::Receive(message) if self.lease_answer_counts(message));
        let conflict_last = if self.conflict.watches(index, self.hosts.len()) {
            self.hosts[index].node.as_ref().map(Node::last_index)
        } else {
            None
        };
        let host = &mut self.hosts[index];
        let Some(node) = host.node.as_mut() else {
            // The node is down: what was queued for it is lost with it,
            // never stepped into the next node this engine steps.
            work.clear();
            return false;
        };
        let kind = accounting::StepInput::of(&input);
        let vote_answer = match &input {
            Input::Receive(message) => campaign::VoteAnswer::of(message),
            _ => None,
        };
        if kind.snapshotted {
            host.snapshot_outstanding = false;
        }
        let before = self.nemesis.watching().then(|| nemesis::observe(node));
        let reported = accounting::Before::of(node);
        let step_rules = self.config.step_rules;
        if step_rules {
            self.rules.before(index, node, &input);
        }
        self.budgets.step_started(node.last_index());
        node.step(input, actions);
        if self.config.bugs.role_announcement_dropped {
            // The planted host bug: a leader's announcement is lost on its
            // way to the host's checks.
            if let Some(at) = actions.iter().position(|action| {
                matches!(
                    action,
                    Action::RoleChanged {
                        role: Role::Leader,
                        ..
                    }
                )
            }) {
                actions.remove(at);
            }
        }
        let report =
            accounting::check_step(&reported, node, actions, kind).and_then(|asked_snapshot| {
                match node.config().compaction_threshold_bytes {
                    Some(threshold_bytes) if asked_snapshot && !node.is_witness_node() => {
                        host.applied_bytes.check_request(
                            node,
                            node.config().compaction_threshold_entries,
                            threshold_bytes,
                        )
                    }
                    _ => Ok(()),
                }
            });
        let report = report.and_then(|()| {
            let (was, is) = (reported.stats(), node.stats());
            let facts = accessors::StepFacts::of(
                host.id,
                actions,
                is.snapshots_taken != was.snapshots_taken
                    || is.snapshots_installed != was.snapshots_installed,
                is.transfers_started != was.transfers_started,
            );
            accessors::check(&accessors::Readings::of(node), &facts)
        });
        note_known_ids(&mut host.known_ids, node);
        let cadence = check_heartbeat_cadence(
            &mut host.heartbeat_ticks,
            reported.role_term(),
            node,
            actions,
            kind.tick,
        );
        let hint = kind
            .append_prev
            .map_or(Ok(()), |prev| hints::check(node, prev, actions));
        let concession = campaign::check(
            &mut host.campaign,
            reported.role_term(),
            node,
            vote_answer,
            actions,
        );
        let stability = cadence.and(concession).and_then(|()| {
            campaign::check_sole_voter(reported.role_term(), node, kind.tick, actions)
        });
        let rule = if step_rules {
            self.rules.after(index, node, actions)
        } else {
            Ok(())
        };
        if let Err(message) = report {
            self.fail(FailureKind::NodeReport, Some(index), message);
        } else if let Err(message) = hint {
            self.fail(FailureKind::Efficiency, Some(index), message);
        } else if let Err(message) = stability {
            self.fail(FailureKind::Stability, Some(index), message);
        } else if let Err(broken) = rule {
            self.fail(broken.kind, Some(index), broken.message);
        }
        let host = &mut self.hosts[index];
        let Some(node) = host.node.as_mut() else {
            return false;
        };
        if let Some(held) = node.snapshot_position() {
            // The node never asks for the bytes of an older snapshot.
            // Keys are ordered by index, so only a map whose first key
            // is below the held snapshot has anything to drop (this
            // runs at every step, a `retain` walk each time is not free).
            let stale = host
                .snapshot_bytes
                .first_key_value()
                .is_some_and(|(position, _)| position.index < held.index);
            if stale {
                host.snapshot_bytes
                    .retain(|position, _| position.index >= held.index);
            }
        }
        self.node_steps += 1;
        self.after_step(index, actions);
        let strike = match before {
            Some(before) if !self.healed && self.failure.is_none() => {
                self.judge_step(index, before)
            }
            _ => Strike::None,
        };
        if let Strike::CrashNow {
            down_ns,
            power_loss,
        } = strike
        {
            // The process dies before it sends or writes anything of
            // this step; only a role change is still checked.
            actions.retain(|action| matches!(action, Action::RoleChanged { .. }));
            for action in actions.drain(..) {
                self.execute(index, action, proposer, work);
            }
            work.clear();
            self.nemesis_crash(index, down_ns, power_loss);
            return false;
        }
        if let Strike::IsolateNow { length_ns } = strike {
            let partition = Partition::Split {
                side: vec![index as NodeId + 1],
            };
            self.blocked = partition.blocked_matrix(self.hosts.len());
            self.note(None, || {
                format!("nemesis: the new leader is cut off at once, {partition}")
            });
            self.schedule(length_ns, Event::DelayedHealNetwork);
            self.network_changed();
        }
        let split_rival = match strike {
            Strike::SplitVote { term } => self.split_vote_route(index, term),
            _ => None,
        };
        let lease_strike = if lease_watch && !self.healed && self.failure.is_none() {
            self.lease_after_step(index, heard_answer, actions)
        } else {
            lease::LeaseStrike::None
        };
        let conflict_crash = conflict_last.is_some_and(|last| {
            let appended = self.hosts[index]
                .node
                .as_ref()
                .is_some_and(|node| node.last_index() > last);
            !self.healed && self.conflict_crash_after(index, appended)
        });
        for action in actions.drain(..) {
            self.execute(index, action, proposer, work);
        }
        if lease_strike != lease::LeaseStrike::None {
            self.lease_strike(index, lease_strike);
        }
        if conflict_crash && self.failure.is_none() {
            // The leader dies with the entry it just sent the follower
            // unsynced; it comes back once the Feed phase is over.
            work.clear();
            self.note(Some(index), || {
                "snapshot conflict: the leader crashes after feeding the follower".to_string()
            });
            self.nemesis_crash(index, 20 * MS, false);
            return false;
        }
        self.check_log_bound(index);
        self.check_vote_answered(index);
        if let Some(rival) = split_rival {
            self.split_vote_campaign(rival);
        }
        if let Strike::CrashAfterActions { down_ns } = strike {
            work.clear();
            self.nemesis_crash(index, down_ns, false);
            return false;
        }
        if self.failure.is_some() {
            work.clear();
            return false;
        }
        true
    }

    /// A durable vote for another node was answered (`crate::promises`).
    fn check_vote_answered(&mut self, index: usize) {
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref() else {
            return;
        };
        if let Err((kind, message)) = self.promises.after_actions(index, host.incarnation, node) {
            self.fail(kind, Some(index), message);
        }
    }

    /// Checks run after every node step, before its actions execute.
    pub(super) fn after_step(&mut self, index: usize, actions: &[Action]) {
        let Some(node) = self.hosts[index].node.as_ref() else {
            return;
        };
        self.fresh.note_commit(node.commit_index());
        if let Err(broken) = self.safety.after(index, node, actions) {
            self.fail(broken.kind, Some(index), broken.message);
            return;
        }
        self.session_model_catch_up(index);
        if self.latency.is_some() {
            self.check_latency_commit(index);
        }
        if self.calm.is_some() {
            self.check_backlog_commit(index);
        }
        if self.churn.is_some() || self.forced.is_some() {
            if let Err(message) = self.check_commit_quorum(index) {
                self.fail(FailureKind::CommitWithoutQuorum, Some(index), message);
                return;
            }
        }
        let Some(node) = self.hosts[index].node.as_ref() else {
            return;
        };
        if self.timeline.is_some() {
            let commit = node.commit_index();
            let vote = node.voted_for().map(|vote| (node.term(), vote));
            let host = &mut self.hosts[index];
            let commit_changed = commit != host.last_commit_seen;
            let vote_changed = vote.is_some() && vote != host.last_vote;
            host.last_commit_seen = commit;
            host.last_vote = vote;
            if vote_changed {
                if let Some((term, candidate)) = vote {
                    self.note(Some(index), || {
                        format!("votes for n{candidate} in term {term}")
                    });
                }
            }
            if commit_changed {
                self.note(Some(index), || format!("commit index {commit}"));
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        index: usize,
        action: Action,
        proposer: Option<Proposer>,
        work: &mut VecDeque<(Input, Option<Proposer>)>,
    ) {
        match action {
            Action::Send { to, message } => self.send(index, to, message),
            Action::SendSnapshotChunk(chunk) => {
                let position = chunk.snapshot.position;
                let Some(bytes) = self.hosts[index].snapshot_bytes.get(&position) else {
                    self.fail(
                        FailureKind::HostContract,
                        Some(index),
                        format!("asked to send a chunk of the snapshot at {position:?}, which it was never given"),
                    );
                    return;
                };
                let bytes = bytes.clone();
                let to = chunk.to;
                self.send(index, to, chunk.cut_from(&bytes));
            }
            Action::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
            } => {
                let incoming = &mut self.hosts[index].incoming_snapshot;
                if let Err(message) = receive_snapshot_chunk(incoming, snapshot, offset, &data) {
                    self.fail(FailureKind::HostContract, Some(index), message);
                }
            }
            Action::Persist {
                id,
                hard_state,
                truncate_after,
                entries,
            } => {
                if let Some(after) = truncate_after {
                    self.promises.on_truncate(index, after);
                }
                self.hosts[index].disk.write(Record {
                    id,
                    hard_state,
                    truncate_after,
                    // The disk model tears and garbles records: its own copy.
                    entries: entries.into_vec(),
                    snapshot: None,
                });
                if self.hosts[index].disk.syncing_through.is_none() {
                    self.start_sync(index);
                }
                if self.config.bugs.persisted_before_sync {
                    work.push_back((Input::Persisted(id), None));
                }
            }
            Action::Apply { entries } => {
                let Some(last) = entries.last().map(|entry| entry.index) else {
                    return;
                };
                if self.witness == Some(index) {
                    let message = format!("the witness was handed entries up to {last} to apply");
                    self.fail(FailureKind::WitnessServed, Some(index), message);
                    return;
                }
                if self.durable.is_some() {
                    self.apply_durable_action(index, entries.into_vec(), work);
                    return;
                }
                let host = &mut self.hosts[index];
                host.applied_position = entries.last().map(Entry::position).unwrap_or_default();
                if host
                    .node
                    .as_ref()
                    .is_some_and(|node| node.config().compaction_threshold_bytes.is_some())
                {
                    host.applied_bytes.note_apply(&entries);
                }
                for entry in &entries {
                    self.apply_entry(index, entry);
                    if self.failure.is_some() {
                        return;
                    }
                }
                work.push_back((Input::Applied(last), None));
            }
            Action::ProposalAccepted {
                term, first_index, ..
            } => match proposer {
                Some(Proposer::Client { client, attempt }) => {
                    self.hosts[index].pending.insert(
                        first_index,
                        Pending {
                            client,
                            attempt,
                            term,
                        },
                    );
                }
                Some(Proposer::Probe) => {
                    self.probe.accepted.push((term, first_index));
                    self.note(Some(index), || {
                        format!("liveness probe accepted at index {first_index} term {term}")
                    });
                }
                Some(Proposer::Latency) => self.latency_write_accepted(first_index),
                None => {}
            },
            Action::ProposalRefused { error, .. } => {
                if let Some(Proposer::Client { client, attempt }) = proposer {
                    let hint = match error {
                        ProposeError::NotLeader { leader_hint } => leader_hint,
                        ProposeError::TransferInProgress { target } => Some(target),
                        _ => Some(index as NodeId + 1),
                    };
                    self.reply(client, attempt, Reply::Refused { hint });
                }
            }
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                reported_last_index,
            } => {
                if self.catch_up_expects_regression(index, follower)
                    || self.storage_loss_expects_regression(index, follower, acknowledged_index)
                {
                    return;
                }
                self.fail(
                    FailureKind::AcknowledgedEntriesLost,
                    Some(index),
                    format!(
                        "node {follower} acknowledged index {acknowledged_index} as durable but now holds only up to {reported_last_index}"
                    ),
                );
            }
            Action::LogDiverged(divergence) => {
                // The simulated disks lose nothing without telling their
                // node, and at most a minority at once: no committed
                // entry is ever contradicted.
                self.fail(
                    FailureKind::LogMatching,
                    Some(index),
                    format!("found its committed log contradicted by its leader: {divergence:?}"),
                );
            }
            Action::StorageRecovery(event) => self.note_storage_recovery(index, *event),
            Action::TakeSnapshot => self.take_snapshot(index, work),
            Action::PersistSnapshot {
                id,
                snapshot,
                discard_log,
                membership,
            } => {
                let incoming = self.hosts[index].incoming_snapshot.take();
                let received = match received_snapshot(incoming, &snapshot) {
                    Ok(received) => received,
                    Err(message) => {
                        self.fail(FailureKind::HostContract, Some(index), message);
                        return;
                    }
                };
                if discard_log {
                    self.promises.on_truncate(index, snapshot.position.index);
                }
                let snapshot =
                    Snapshot::new(snapshot.position, received).with_membership(Some(*membership));
                self.hosts[index].keep_snapshot_bytes(snapshot.clone());
                self.hosts[index].disk.write(Record {
                    id,
                    hard_state: None,
                    truncate_after: None,
                    entries: Vec::new(),
                    snapshot: Some((snapshot, discard_log)),
                });
                if self.hosts[index].disk.syncing_through.is_none() {
                    self.start_sync(index);
                }
                if self.config.bugs.persisted_before_sync {
                    work.push_back((Input::Persisted(id), None));
                }
            }
            Action::RestoreSnapshot { snapshot } => {
                let position = snapshot.position;
                if self.witness == Some(index) {
                    let message =
                        format!("the witness was asked to restore the snapshot at {position:?}");
                    self.fail(FailureKind::WitnessServed, Some(index), message);
                    return;
                }
                let Some(bytes) = self.hosts[index].snapshot_bytes.get(&position).cloned() else {
                    self.fail(
                        FailureKind::HostContract,
                        Some(index),
                        format!(
                            "asked to restore the snapshot at {position:?}, which it does not hold"
                        ),
                    );
                    return;
                };
                let (book, state) = match self.unwrap_host_snapshot(&bytes) {
                    Ok(parts) => parts,
                    Err(error) => {
                        let message = format!("the snapshot at {position:?}: {error}");
                        self.fail(FailureKind::HostContract, Some(index), message);
                        return;
                    }
                };
                if self.durable.is_some() {
                    self.snapshots.installed += 1;
                    self.reply_unknown_up_to(index, position.index);
                    self.note(Some(index), || {
                        format!(
                            "restores from a snapshot at index {} term {} (streamed into its state machine)",
                            position.index, position.term
                        )
                    });
                    self.restore_durable(index, position, book, state);
                    return;
                }
                let host = &mut self.hosts[index];
                host.book = book;
                if let Err(error) = host.sm.tapped_mut().restore(&state) {
                    self.fail(
                        FailureKind::StateMachineSafety,
                        Some(index),
                        format!("restoring the snapshot at {position:?}: {error}"),
                    );
                    return;
                }
                host.applied_position = position;
                self.snapshots.installed += 1;
                self.reply_unknown_up_to(index, position.index);
                self.note(Some(index), || {
                    format!(
                        "restored from a snapshot at index {} term {}",
                        position.index, position.term
                    )
                });
                self.check_book(index, position.index, "restoring a leader's snapshot");
                if self.failure.is_some() {
                    return;
                }
                work.push_back((Input::Applied(position.index), None));
            }
            Action::ReadReady {
                id,
                index: read_index,
                path,
            } => {
                self.serve_read(index, id, read_index, path);
            }
            Action::ReadRefused { id, error } => {
                if self.calm_read_answered(index, id, Err(&error)) {
                    return;
                }
                let Some(read) = self.hosts[index].reads.remove(&id) else {
                    let message =
                        format!("the node refused read {id}, which it was never asked for");
                    self.fail(FailureKind::HostContract, Some(index), message);
                    return;
                };
                let hint = read_refusal_hint(&error);
                self.note(Some(index), || format!("refuses read {id}: {error}"));
                if !read.probe {
                    self.reply(read.client, read.attempt, Reply::Refused { hint });
                }
            }
            Action::Transfer { target, outcome } => {
                self.note(Some(index), || {
                    format!("leadership transfer to n{target}: {outcome:?}")
                });
            }
            Action::RoleChanged { role, term } => {
                self.trace
                    .word(0xabcd_0000 | ((index as u64) << 8) | role_code(role));
                self.note(Some(index), || format!("becomes {role:?} in term {term}"));
                if role == Role::Leader {
                    let witness_in_log = self.hosts[index]
                        .node
                        .as_ref()
                        .is_some_and(|node| node.membership().is_witness(node.id()));
                    if self.witness == Some(index) || witness_in_log {
                        let message = format!("a witness became leader in term {term}");
                        self.fail(FailureKind::WitnessServed, Some(index), message);
                        return;
                    }
                    self.promises.on_leader(index, term);
                    if let Some(node) = self.hosts[index].node.as_ref() {
                        if let Err((kind, message)) = self.safety.on_leader(index, term, node) {
                            self.fail(kind, Some(index), message);
                        }
                    }
                    if !self.healed {
                        if let Some(delay) = self.nemesis.on_leader() {
                            self.schedule_depose(index, term, delay);
                        }
                        self.lease_on_new_leader(index);
                    }
                } else {
                    let pending = std::mem::take(&mut self.hosts[index].pending);
                    for (_, pending) in pending {
                        self.reply(pending.client, pending.attempt, Reply::Unknown);
                    }
                }
            }
        }
    }

    /// Entries up to `up_to` are covered by a snapshot restored: they are
    /// never applied here, and their clients learn nothing.
    fn reply_unknown_up_to(&mut self, index: usize, up_to: Index) {
        let covered: Vec<Index> = self.hosts[index]
            .pending
            .range(..=up_to)
            .map(|(i, _)| *i)
            .collect();
        for entry_index in covered {
            if let Some(pending) = self.hosts[index].pending.remove(&entry_index) {
                self.reply(pending.client, pending.attempt, Reply::Unknown);
            }
        }
    }

    /// The node asked for a snapshot: serialize the state machine (with its
    /// sessions), compare it with any other node's snapshot at the same
    /// index, write the snapshot file and sync it after a disk latency. An
    /// on-disk state machine's snapshot is a view, read later (`ondisk`).
    pub(super) fn take_snapshot(
        &mut self,
        index: usize,
        work: &mut VecDeque<(Input, Option<Proposer>)>,
    ) {
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let witness = node.is_witness_node();
        if self.durable.is_some() && !witness {
            self.take_snapshot_durable(index);
            return;
        }
        let position = if self.config.bugs.snapshot_past_applied {
            let commit = node.commit_index();
            LogPosition::new(commit, node.term_at(commit).unwrap_or(0))
        } else if witness {
            // A witness's entries count as applied inside the node (its
            // host is never handed them).
            let applied = node.applied_index();
            LogPosition::new(applied, node.term_at(applied).unwrap_or(0))
        } else {
            host.applied_position
        };
        let membership = node.membership_at(position.index).cloned();
        if witness {
            // A witness's snapshot only marks where its log starts: no state.
            let snapshot = Snapshot::new(position, Bytes::new()).with_membership(membership);
            self.write_own_snapshot(index, snapshot, work);
            return;
        }
        if self.take_snapshot_from_copy(index, position, membership.clone()) {
            return;
        }
        let state = self.hosts[index].sm.live().snapshot();
        let taken = self.state_taken(index);
        let book = self.hosts[index].book.clone();
        if let Some(snapshot) =
            self.judged_own_snapshot(index, position, membership, state, &taken, &book)
        {
            self.write_own_snapshot(index, snapshot, work);
        }
    }

    /// Node `index`'s own snapshot at `position`, of the state machine's
    /// bytes `state` (of the state `taken`, with `book`, the host's book
    /// then), judged and written to its snapshot file, synced after a disk
    /// latency and only then reported to the node (`ondisk`: when its view
    /// was read).
    pub(super) fn store_own_snapshot(
        &mut self,
        index: usize,
        position: LogPosition,
        membership: Option<concord::Membership>,
        state: Bytes,
        taken: &super::states::Taken,
        book: &Book,
    ) {
        let Some(snapshot) =
            self.judged_own_snapshot(index, position, membership, state, taken, book)
        else {
            return;
        };
        let mut work = VecDeque::new();
        self.write_own_snapshot(index, snapshot, &mut work);
        // With the planted early report, the node hears of it at once.
        while let Some((input, _)) = work.pop_front() {
            self.deliver(index, HostInput::Node(input));
        }
    }

    /// The snapshot of `state` at `position`, judged by its canonical state
    /// (`states`), with the book in front when host entries are on; `None`
    /// after a failure.
    fn judged_own_snapshot(
        &mut self,
        index: usize,
        position: LogPosition,
        membership: Option<concord::Membership>,
        state: Bytes,
        taken: &super::states::Taken,
        book: &Book,
    ) -> Option<Snapshot> {
        // Judged by the canonical state, never by these bytes.
        let canonical = self.judge_snapshot(index, position.index, &state, taken, book)?;
        self.trace.word(position.index);
        self.trace.word(hash_bytes(&canonical));
        let data = if self.host_entries.is_some() {
            // The book travels in front of the state machine's bytes.
            let book = if self.config.bugs.host_book_dropped_from_snapshots {
                Book::new()
            } else {
                book.clone()
            };
            wrap_snapshot(&book, &state)
        } else {
            state
        };
        Some(Snapshot::new(position, data).with_membership(membership))
    }

    /// Writes node `index`'s own `snapshot` to its snapshot file and syncs
    /// it after a disk latency (`Event::SnapshotSync` reports it).
    fn write_own_snapshot(
        &mut self,
        index: usize,
        snapshot: Snapshot,
        work: &mut VecDeque<(Input, Option<Proposer>)>,
    ) {
        let position = snapshot.position;
        self.note(Some(index), || {
            format!(
                "snapshot at index {} term {} ({} bytes)",
                position.index,
                position.term,
                snapshot.data.len()
            )
        });
        self.snapshots.taken += 1;
        self.hosts[index].disk.write_snapshot(snapshot.clone());
        self.spent.fsyncs += 1;
        self.hosts[index].snapshot_outstanding = true;
        if self.config.bugs.snapshot_reported_before_sync {
            self.hosts[index].disk.drop_log_under(position);
            let meta = self.hosts[index].keep_snapshot_bytes(snapshot);
            work.push_back((Input::Snapshotted(meta), None));
        }
        let latency = self
            .disk_rng
            .gen_range(20_000..self.rates.fsync_max_ns.max(200_001));
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            latency,
            Event::SnapshotSync {
                node: index as u8,
                incarnation,
            },
        );
    }

    /// The in-memory log stays within the compaction policy: when no
    /// snapshot is outstanding, fewer than the threshold of entries were
    /// applied since the latest snapshot, and the log holds at most those,
    /// the trailing window and the entries not yet applied.
    pub(super) fn check_log_bound(&mut self, index: usize) {
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let trailing = self.compaction.trailing_entries;
        let snapshot_index = node.latest_snapshot_index();
        let base = node.log_base().index;
        let mut violation = None;
        if base + trailing < snapshot_index {
            violation = Some(format!(
                "log base {base} trails the snapshot at {snapshot_index} by more than {trailing}"
            ));
        } else if !host.snapshot_outstanding {
            let threshold = self.compaction.threshold_entries;
            let applied = node.applied_index().max(snapshot_index);
            let unapplied = node.last_index() - applied;
            let bound = threshold - 1 + trailing + unapplied;
            if applied - snapshot_index >= threshold || node.log_len() > bound {
                violation = Some(format!(
                    "holds {} entries (base {base}, applied {applied}, snapshot {snapshot_index}), more than the bound {bound}",
                    node.log_len()
                ));
            }
        }
        if let Some(message) = violation {
            self.fail(FailureKind::LogBound, Some(index), message);
        }
    }

    /// Applies `entry` to node `index`'s in-memory state machine, then
    /// judges it ([`Simulation::after_apply`]).
    pub(super) fn apply_entry(&mut self, index: usize, entry: &Entry) {
        let sm = self.hosts[index].sm.tapped_mut();
        let response = concord::state_machine::apply_entry(sm, entry);
        let note = sm.take_notes().next();
        self.after_apply(index, entry, response, note);
    }

    /// Node `index`'s state machine applied `entry` and answered
    /// `response`, and `note` says what its session layer did: the
    /// session checks, exactly-once, the host's own records (a Host entry
    /// goes to the book), the trace, state machine safety, and the
    /// client's answer.
    pub(super) fn after_apply(
        &mut self,
        index: usize,
        entry: &Entry,
        response: Option<Bytes>,
        note: Option<Note>,
    ) {
        let response = match &entry.payload {
            EntryPayload::Command(bytes) => {
                let Some(Note::Command { outcome, table }) = note else {
                    let message = format!(
                        "the command at index {} went past the session layer",
                        entry.index
                    );
                    self.fail(FailureKind::HostContract, Some(index), message);
                    return;
                };
                if let Err(message) = table {
                    self.fail(FailureKind::SessionContract, Some(index), message);
                    return;
                }
                let host = &mut self.hosts[index];
                if let SessionOutcome::Executed(_) = &outcome {
                    if let Ok(ClientRequest::Command {
                        command,
                        client: session_id,
                        seq,
                    }) = ClientRequest::decode(bytes)
                    {
                        if let Some((client, nth)) = self.effects.remove(&(session_id, seq)) {
                            self.workload.took_effect(
                                client as usize,
                                nth,
                                TookEffect::Entry { index: entry.index },
                            );
                        }
                        if let Some(id) = self.workload.command_id(command) {
                            if !host.executed.insert(id) {
                                let message = format!(
                                    "operation {id:#x} executed a second time at index {} (term {})",
                                    entry.index, entry.term
                                );
                                self.fail(FailureKind::ExactlyOnce, Some(index), message);
                                return;
                            }
                        }
                    }
                }
                response
            }
            // The session layer expires the sessions the lost servers may
            // share ids with, and starts a new id epoch.
            EntryPayload::ForcedMembership(audit) => {
                let Some(Note::Forced {
                    epoch_before,
                    epoch_after: epoch,
                }) = note
                else {
                    let message = format!(
                        "the forced recovery at index {} went past the session layer",
                        entry.index
                    );
                    self.fail(FailureKind::HostContract, Some(index), message);
                    return;
                };
                if let Err(message) = check_epoch_step(entry.index, epoch_before, epoch) {
                    self.fail(FailureKind::SessionContract, Some(index), message);
                    return;
                }
                self.note(Some(index), || {
                    format!(
                        "applied the forced recovery at index {}: sessions registered above index {} expire; session id epoch {epoch}",
                        entry.index, audit.commit_index_before,
                    )
                });
                None
            }
            // The host's own records go to its book, never to the state
            // machine.
            EntryPayload::Host(bytes) => {
                self.apply_host_entry(index, entry.index, bytes);
                if self.failure.is_some() {
                    return;
                }
                None
            }
            _ => None,
        };
        // The trace covers what the state machine answered: a response
        // that differs run to run (a clock, a global counter) changes
        // the hash.
        let response_hash = response.as_ref().map_or(0, |bytes| hash_bytes(bytes));
        self.trace.word(entry.index);
        self.trace.word(response_hash);
        match self.safety.on_apply(index, entry, response.as_ref()) {
            Ok(()) => {}
            Err(ApplyError::Violation((kind, message))) => {
                self.fail(kind, Some(index), message);
                return;
            }
            Err(ApplyError::Diverged {
                other,
                other_response,
            }) => {
                let command = match &entry.payload {
                    EntryPayload::Command(bytes) => describe_request(&self.workload, bytes),
                    other => format!("{other:?}"),
                };
                let message = format!(
                    "applying entry {} (term {}, {command}) gave n{} the response {} but n{} the response {} (non-deterministic state machine: a clock, randomness, global state or HashMap order in apply?)",
                    entry.index,
                    entry.term,
                    other + 1,
                    show_response(other_response.as_ref()),
                    index + 1,
                    show_response(response.as_ref()),
                );
                self.fail(FailureKind::StateMachineSafety, Some(index), message);
                return;
            }
        }
        if let Some(pending) = self.hosts[index].pending.remove(&entry.index) {
            let reply = match response {
                Some(bytes) if pending.term == entry.term => Reply::Response {
                    bytes,
                    index: entry.index,
                    term: entry.term,
                    sent_ns: self.now,
                },
                _ => Reply::Unknown,
            };
            self.reply(pending.client, pending.attempt, reply);
        }
        if let Some((index_probe, _)) = self.probe.committed {
            if entry.index >= index_probe {
                self.check_probe_applied();
            }
        }
    }

    pub(super) fn start_sync(&mut self, index: usize) {
        let Some(last) = self.hosts[index].disk.last_written() else {
            return;
        };
        let latency = fsync_latency_ns(&self.rates, &mut self.disk_rng, &mut self.faults);
        let latency = self.split_vote_sync_ns(index, latency);
        self.spent.fsyncs += 1;
        self.hosts[index].disk.syncing_through = Some(last);
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            latency,
            Event::DiskSync {
                node: index as u8,
                incarnation,
            },
        );
    }

    pub(super) fn crash(&mut self, index: usize) {
        if self.hosts[index].node.is_none() {
            return;
        }
        if let Some(node) = self.hosts[index].node.as_ref() {
            self.promises.on_crash(index, node);
        }
        let tear = self.rates.torn > 0.0 && self.disk_rng.gen_bool(self.rates.torn);
        if self.durable.is_some() {
            self.crash_durable(index, tear);
        }
        let host = &mut self.hosts[index];
        let torn = host.disk.crash(tear);
        host.node = None;
        host.incarnation += 1;
        host.paused = false;
        host.paused_queue.clear();
        host.missed_ticks = 0;
        host.pending.clear();
        host.reads.clear();
        if torn {
            self.faults.add(FaultKind::Torn, 1);
        }
        self.note(Some(index), || {
            format!("CRASH{}", if torn { " (torn final record)" } else { "" })
        });
    }

    pub(super) fn restart(&mut self, index: usize) {
        // A node lost for good never comes back (`forced`).
        if self.hosts[index].node.is_some() || self.is_lost(index) {
            return;
        }
        if self.is_unstarted_spare(index) {
            if !self.healed {
                return;
            }
            self.churn
                .as_mut()
                .expect("a spare is churn's")
                .spare_started = true;
        }
        self.note(Some(index), || "restart".to_string());
        if let Err(message) = self.boot(index) {
            self.fail(FailureKind::Recovery, Some(index), message);
        }
    }

    /// The node released a read: answer it from the state machine, after
    /// checking the contract (its index is applied here).
    fn serve_read(&mut self, index: usize, id: u64, read_index: Index, path: ReadPath) {
        if self.calm_read_answered(index, id, Ok(read_index)) {
            return;
        }
        let Some(read) = self.hosts[index].reads.remove(&id) else {
            let message = format!("the node released read {id}, which it was never asked for");
            self.fail(FailureKind::HostContract, Some(index), message);
            return;
        };
        if !self.check_read_fresh(index, id, read_index, path, &read) {
            return;
        }
        // An on-disk state machine may stand past what its node was told
        // (a restart's durable image): the answer reflects its own index.
        let applied = match self.hosts[index].sm.durable() {
            Some(sm) => sm.applied_index(),
            None => self.hosts[index].applied_position.index,
        };
        if applied < read_index {
            let message = format!(
                "read {id} ({path:?}) released at read index {read_index}, but the state machine has applied only up to {applied}"
            );
            self.fail(FailureKind::HostContract, Some(index), message);
            return;
        }
        let Some(bytes) = self.hosts[index].sm.live().query(&read.command) else {
            let message = format!("the state machine cannot answer read {id} without the log");
            self.fail(FailureKind::HostContract, Some(index), message);
            return;
        };
        // Reads need no session: the session layer answers them with the
        // wrapped state machine's own answer, untouched.
        let inner = self.hosts[index].sm.live().inner().query(&read.command);
        if let Err(message) = check_read_passes_through(id, &bytes, inner.as_ref()) {
            self.fail(FailureKind::SessionContract, Some(index), message);
            return;
        }
        self.reads_served[path as usize] += 1;
        self.trace
            .word(0x7ead_0000 | ((index as u64) << 8) | path as u64);
        self.note(Some(index), || {
            format!("serves read {id} ({path:?}) at read index {read_index}, applied {applied}")
        });
        if !read.probe {
            self.reply(
                read.client,
                read.attempt,
                Reply::Read {
                    bytes,
                    path,
                    applied,
                },
            );
        }
    }

    pub(super) fn resume(&mut self, index: usize) {
        if !self.hosts[index].paused {
            return;
        }
        self.hosts[index].paused = false;
        let queued = self.hosts[index].paused_queue.len();
        let missed = std::mem::take(&mut self.hosts[index].missed_ticks);
        self.note(Some(index), || {
            format!("resumed ({queued} queued inputs, {missed} ticks missed)")
        });
        // The ticks the stall missed come before anything that waited:
        // a leader must see its lease expire before it serves a read.
        for _ in 0..missed {
            if self.hosts[index].node.is_none() || self.failure.is_some() {
                return;
            }
            self.step(index, Input::Tick, None);
        }
        while let Some(input) = self.hosts[index].paused_queue.pop_front() {
            if self.hosts[index].node.is_none()
                || self.hosts[index].paused
                || self.failure.is_some()
            {
                break;
            }
            self.host_input(index, input);
        }
    }
}

/// A role as a small number for the trace hash.
fn role_code(role: Role) -> u64 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

/// Adds the members of `node`'s configuration in force to `known`
/// ([`Host::known_ids`]) when it is not the one last looked at: a few
/// lookups per configuration change, nothing per step.
#[inline]
fn note_known_ids(known: &mut (Index, u64), node: &Node) {
    let configuration = node.membership_index();
    if configuration == known.0 {
        return;
    }
    let bits = node
        .membership()
        .members()
        .into_iter()
        .filter(|id| *id < 64)
        .fold(0, |bits, id| bits | 1 << id);
    *known = (configuration, known.1 | bits);
}

/// The heartbeat cadence, from outside: a leader that keeps its role and
/// term through a tick has sent a heartbeat (to every follower) within
/// the last `heartbeat_interval_ticks` ticks of that term, counting from
/// its election. Followers' election timers rely on it; a heartbeat late
/// by a tick is a step towards a needless election. `watch` is the host's
/// (term, ticks since the last heartbeat or the election); a heartbeat
/// sent for a read round counts too, which only makes the rule laxer.
#[inline]
fn check_heartbeat_cadence(
    watch: &mut (Term, u32),
    before: (Role, Term),
    node: &Node,
    actions: &[Action],
    tick: bool,
) -> Result<(), String> {
    if node.role() != Role::Leader {
        // What `judge_heartbeat_cadence` does for a non-leader, without
        // its two walks of the actions and a look at the progress map.
        *watch = (node.term(), 0);
        return Ok(());
    }
    let after = Cadence {
        role: node.role(),
        term: node.term(),
        followers: node.progress_all().next().is_some(),
        heartbeat_interval_ticks: node.config().heartbeat_interval_ticks,
    };
    judge_heartbeat_cadence(watch, before, after, actions, tick)
}

/// What the heartbeat cadence rule reads of a node after its step.
#[derive(Clone, Copy, Debug)]
struct Cadence {
    role: Role,
    term: Term,
    /// The node tracks at least one follower's progress.
    followers: bool,
    /// `Config::heartbeat_interval_ticks`.
    heartbeat_interval_ticks: u32,
}

/// The rule of [`check_heartbeat_cadence`] on plain values: `after` is the
/// node after a step that began as `before` and emitted `actions`.
fn judge_heartbeat_cadence(
    watch: &mut (Term, u32),
    before: (Role, Term),
    after: Cadence,
    actions: &[Action],
    tick: bool,
) -> Result<(), String> {
    let term = after.term;
    let elected = actions.iter().any(|action| {
        matches!(
            action,
            Action::RoleChanged {
                role: Role::Leader,
                ..
            }
        )
    });
    let heartbeat = actions.iter().any(|action| {
        matches!(
            action,
            Action::Send {
                message: Message {
                    body: MessageBody::Heartbeat { .. },
                    ..
                },
                ..
            }
        )
    });
    // A leader with no one to heartbeat (a one-voter configuration) starts
    // counting when its first follower appears.
    if elected || heartbeat || after.role != Role::Leader || watch.0 != term || !after.followers {
        *watch = (term, 0);
        return Ok(());
    }
    if !tick || before != (Role::Leader, term) {
        return Ok(());
    }
    watch.1 += 1;
    let interval = after.heartbeat_interval_ticks;
    if watch.1 >= interval {
        return Err(format!(
            "led term {term} for {} ticks without sending a heartbeat (heartbeat_interval_ticks {interval}): a leader heartbeats every interval",
            watch.1
        ));
    }
    Ok(())
}

/// The session table's public accessors after one applied command, against
/// what the host knows: the capacity it asked for, the outcome it was
/// handed, the log index it applied at. `len()`/`is_empty()` agree, id 0
/// (index 0 holds no entry) is never held, a registration holds its new
/// session under an id made of the table's epoch and the entry's index and
/// no longer holds the session it evicted, and `evictions()` counts exactly
/// the evictions outcomes name.
// Comparing `len()` with zero against `is_empty()` is the point here.
#[allow(clippy::len_zero)]
pub(super) fn check_session_table(
    table: &impl TableAccessors,
    capacity: usize,
    index: Index,
    outcome: &SessionOutcome,
    evictions_before: u64,
) -> Result<(), String> {
    if table.capacity() != capacity || table.is_empty() != (table.len() == 0) || table.contains(0) {
        return Err(format!(
            "after applying index {index} the session table answers capacity() {} (the host asked for {capacity}), len() {}, is_empty() {}, contains(0) {}",
            table.capacity(),
            table.len(),
            table.is_empty(),
            table.contains(0)
        ));
    }
    let evicted = match outcome {
        SessionOutcome::Registered { client, evicted } => {
            let parts = concord::session::client_id_parts(*client);
            if parts != (table.epoch(), index) || !table.contains(*client) {
                return Err(format!(
                    "registered session {client} at index {index} in id epoch {}, but client_id_parts says {parts:?} and contains() {}: a session id is its epoch and its registration's index, held once registered",
                    table.epoch(),
                    table.contains(*client)
                ));
            }
            if let Some(old) = evicted {
                if table.contains(*old) {
                    return Err(format!(
                        "registering session {client} at index {index} evicted session {old}, yet contains({old}) still holds"
                    ));
                }
            }
            u64::from(evicted.is_some())
        }
        _ => 0,
    };
    if table.evictions().wrapping_sub(evictions_before) != evicted {
        return Err(format!(
            "applying index {index} moved evictions() from {evictions_before} to {}, but the outcome names {evicted} eviction(s)",
            table.evictions()
        ));
    }
    Ok(())
}

/// The session table's accessors that [`check_session_table`] reads: the
/// core's [`SessionTable`](concord::session::SessionTable) in a run, a
/// table that lies in the tests.
pub(super) trait TableAccessors {
    fn capacity(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool;
    fn contains(&self, client: ClientId) -> bool;
    fn epoch(&self) -> u64;
    fn evictions(&self) -> u64;
}

impl<R> TableAccessors for SessionTable<R> {
    fn capacity(&self) -> usize {
        SessionTable::capacity(self)
    }

    fn len(&self) -> usize {
        SessionTable::len(self)
    }

    fn is_empty(&self) -> bool {
        SessionTable::is_empty(self)
    }

    fn contains(&self, client: ClientId) -> bool {
        SessionTable::contains(self, client)
    }

    fn epoch(&self) -> u64 {
        SessionTable::epoch(self)
    }

    fn evictions(&self) -> u64 {
        SessionTable::evictions(self)
    }
}

/// Applying the forced recovery at `index` moved the session table's
/// `epoch()` from `before` to `after`: every applied forced recovery
/// starts the next id epoch, exactly one up.
fn check_epoch_step(index: Index, before: u64, after: u64) -> Result<(), String> {
    if after != before + 1 {
        return Err(format!(
            "applied the forced recovery at index {index}, but the session table's epoch() went from {before} to {after}: every applied forced recovery starts the next id epoch"
        ));
    }
    Ok(())
}

/// Reads need no session: the session layer (`WithSessions::query`)
/// answers read `id` with `answer`, which must be the wrapped state
/// machine's own answer `inner`, untouched.
fn check_read_passes_through(id: u64, answer: &Bytes, inner: Option<&Bytes>) -> Result<(), String> {
    if inner != Some(answer) {
        return Err(format!(
            "read {id}: the session layer (WithSessions::query) answered {answer:?}, the state machine it wraps {inner:?}; a read passes through unchanged"
        ));
    }
    Ok(())
}

/// A client request as the workload describes its command (a session
/// registration or an undecodable request as such).
fn describe_request<W: Workload>(workload: &W, request: &[u8]) -> String {
    match ClientRequest::decode(request) {
        Ok(ClientRequest::Command {
            client,
            seq,
            command,
        }) => format!(
            "command {} of session {client} #{seq}",
            workload.describe(command)
        ),
        Ok(other) => format!("{other:?}"),
        Err(_) => format!("an undecodable request of {} bytes", request.len()),
    }
}

/// A state machine's response (as the session layer encodes it), readable:
/// the session answer with the state machine's bytes escaped, at most 96
/// of them.
pub(crate) fn show_response(response: Option<&Bytes>) -> String {
    let Some(bytes) = response else {
        return "none".to_string();
    };
    match concord::session::SessionResponse::decode(bytes) {
        Ok(concord::session::SessionResponse::Ok(inner)) => format!("Ok({})", show_bytes(&inner)),
        Ok(other) => format!("{other:?}"),
        Err(_) => show_bytes(bytes),
    }
}

/// Bytes as an escaped string literal, cut at 96 bytes.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 96;
    let shown: String = bytes[..bytes.len().min(SHOWN_MAX)]
        .iter()
        .flat_map(|byte| std::ascii::escape_default(*byte))
        .map(char::from)
        .collect();
    if bytes.len() > SHOWN_MAX {
        format!("b\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("b\"{shown}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::session::{client_id, WithSessions};

    /// A leader of term 5 with followers, heartbeating every 3 ticks.
    fn leader() -> Cadence {
        Cadence {
            role: Role::Leader,
            term: 5,
            followers: true,
            heartbeat_interval_ticks: 3,
        }
    }

    fn heartbeat() -> Action {
        Action::Send {
            to: 2,
            message: Message {
                from: 1,
                to: 2,
                term: 5,
                progress_id: 0,
                body: MessageBody::Heartbeat {
                    commit: 0,
                    read_round: 0,
                },
            },
        }
    }

    /// Elected in term 5, then `ticks` ticks; the leader heartbeats on
    /// the ticks `heartbeats` says. The first failure, with its tick.
    fn lead(ticks: u32, heartbeats: impl Fn(u32) -> bool) -> Option<(u32, String)> {
        let mut watch = (4, 7);
        let elected = [Action::RoleChanged {
            role: Role::Leader,
            term: 5,
        }];
        let before = (Role::Candidate, 5);
        judge_heartbeat_cadence(&mut watch, before, leader(), &elected, false).unwrap();
        assert_eq!(watch, (5, 0), "an election starts the count");
        for tick in 1..=ticks {
            // A step that is not a tick never counts.
            judge_heartbeat_cadence(&mut watch, (Role::Leader, 5), leader(), &[], false).unwrap();
            let actions = if heartbeats(tick) {
                vec![heartbeat()]
            } else {
                Vec::new()
            };
            let step =
                judge_heartbeat_cadence(&mut watch, (Role::Leader, 5), leader(), &actions, true);
            if let Err(message) = step {
                return Some((tick, message));
            }
        }
        None
    }

    #[test]
    fn a_leader_heartbeating_every_interval_passes() {
        assert_eq!(lead(30, |tick| tick % 3 == 0), None);
    }

    #[test]
    fn a_heartbeat_late_by_one_tick_is_caught() {
        let (tick, message) = lead(30, |tick| tick % 4 == 0).expect("a late heartbeat passed");
        assert_eq!(tick, 3);
        assert!(
            message.contains("led term 5 for 3 ticks without sending a heartbeat")
                && message.contains("a leader heartbeats every interval"),
            "{message}"
        );
        // A leader that stops heartbeating after a while is caught too.
        let (tick, _) = lead(30, |tick| tick % 3 == 0 && tick < 12).expect("silence passed");
        assert_eq!(tick, 12);
    }

    #[test]
    fn a_leader_without_followers_or_a_follower_is_not_held_to_the_cadence() {
        for after in [
            Cadence {
                followers: false,
                ..leader()
            },
            Cadence {
                role: Role::Follower,
                ..leader()
            },
        ] {
            let mut watch = (5, 0);
            for _ in 0..10 {
                assert_eq!(
                    judge_heartbeat_cadence(&mut watch, (after.role, 5), after, &[], true),
                    Ok(())
                );
            }
        }
    }

    /// A table that answers what it is built with.
    #[derive(Clone, Debug)]
    struct Table {
        capacity: usize,
        len: usize,
        is_empty: bool,
        held: BTreeSet<ClientId>,
        epoch: u64,
        evictions: u64,
    }

    impl TableAccessors for Table {
        fn capacity(&self) -> usize {
            self.capacity
        }
        fn len(&self) -> usize {
            self.len
        }
        fn is_empty(&self) -> bool {
            self.is_empty
        }
        fn contains(&self, client: ClientId) -> bool {
            self.held.contains(&client)
        }
        fn epoch(&self) -> u64 {
            self.epoch
        }
        fn evictions(&self) -> u64 {
            self.evictions
        }
    }

    /// The core's table agrees with every outcome it gives, across
    /// registrations, an eviction and a forced recovery.
    #[test]
    fn the_core_session_table_passes() {
        let mut table = SessionTable::<Bytes>::new(2);
        let mut evictions_before = 0;
        for index in [5, 6, 7, 9] {
            if index == 9 {
                let before = table.epoch();
                table.force_recovery(8);
                assert_eq!(check_epoch_step(8, before, table.epoch()), Ok(()));
            }
            let (client, evicted) = table.register(index).expect("an id that fits");
            let outcome = SessionOutcome::Registered { client, evicted };
            let checked = check_session_table(&table, 2, index, &outcome, evictions_before);
            assert_eq!(checked, Ok(()), "index {index}");
            evictions_before = table.evictions();
        }
        assert_eq!(
            table.evictions(),
            2,
            "the third and fourth registrations evict"
        );
        assert_eq!(table.epoch(), 1);
        let executed = SessionOutcome::Executed(Bytes::from_static(b"ok"));
        let checked = check_session_table(&table, 2, 10, &executed, evictions_before);
        assert_eq!(checked, Ok(()));
    }

    /// What a table of capacity 2 answers after registering session 6 at
    /// index 6, evicting session 5: honest.
    fn registered() -> (Table, SessionOutcome) {
        let client = client_id(0, 6).unwrap();
        let table = Table {
            capacity: 2,
            len: 2,
            is_empty: false,
            held: [client_id(0, 4).unwrap(), client].into(),
            epoch: 0,
            evictions: 1,
        };
        let outcome = SessionOutcome::Registered {
            client,
            evicted: Some(client_id(0, 5).unwrap()),
        };
        (table, outcome)
    }

    #[test]
    fn each_lying_session_table_accessor_is_caught() {
        let (honest, outcome) = registered();
        assert_eq!(check_session_table(&honest, 2, 6, &outcome, 0), Ok(()));
        type Lie = fn(&mut Table);
        let lies: [(&str, Lie); 7] = [
            ("capacity() 3 (the host asked for 2)", |t| t.capacity = 3),
            ("is_empty() true", |t| t.is_empty = true),
            ("len() 0, is_empty() false", |t| t.len = 0),
            ("contains(0) true", |t| {
                t.held.insert(0);
            }),
            (
                "a session id is its epoch and its registration's index",
                |t| {
                    t.held.remove(&6);
                },
            ),
            (
                "a session id is its epoch and its registration's index",
                |t| t.epoch = 1,
            ),
            ("still holds", |t| {
                t.held.insert(5);
            }),
        ];
        for (rule, lie) in lies {
            let mut table = honest.clone();
            lie(&mut table);
            let message = check_session_table(&table, 2, 6, &outcome, 0).unwrap_err();
            assert!(message.contains(rule), "{rule}: {message}");
        }
        // evictions() must count exactly the evictions outcomes name.
        for (evictions, outcome) in [
            (0, outcome.clone()),
            (2, outcome),
            (1, SessionOutcome::Executed(Bytes::new())),
        ] {
            let table = Table {
                evictions,
                ..honest.clone()
            };
            let message = check_session_table(&table, 2, 6, &outcome, 0).unwrap_err();
            assert!(message.contains("eviction(s)"), "{message}");
        }
    }

    #[test]
    fn a_forced_recovery_moves_the_epoch_by_exactly_one() {
        assert_eq!(check_epoch_step(9, 2, 3), Ok(()));
        for after in [2, 4, 0] {
            let message = check_epoch_step(9, 2, after).unwrap_err();
            assert!(
                message.contains(&format!("epoch() went from 2 to {after}"))
                    && message.contains("every applied forced recovery starts the next id epoch"),
                "{message}"
            );
        }
    }

    /// The session layer over the kv state machine answers a read as the
    /// state machine does; an answer changed on the way (as a session
    /// layer answering every read with empty bytes would) is caught.
    #[test]
    fn a_read_answered_differently_by_the_session_layer_is_caught() {
        use concord_services::codec::encode_request;
        use concord_services::kv::{Kv, KvRequest};
        let mut sm = WithSessions::new(concord_services::ServiceMachine::<Kv>::new(), 4);
        let SessionOutcome::Registered { client, .. } =
            sm.apply_request(1, &concord::session::encode_register())
        else {
            panic!("registration refused");
        };
        let key = Bytes::from_static(b"k");
        let value = Bytes::from_static(b"v");
        let put = encode_request::<Kv>(
            7,
            &KvRequest::Put {
                key: key.clone(),
                value,
            },
        );
        sm.apply_request(2, &concord::session::encode_command(client, 1, &put));
        let get = encode_request::<Kv>(8, &KvRequest::Get { key });
        let answer = sm.query(&get).expect("a get is a read");
        let inner = sm.inner().query(&get);
        assert_eq!(
            check_read_passes_through(3, &answer, inner.as_ref()),
            Ok(())
        );
        for wrong in [Bytes::new(), Bytes::from_static(b"\x01other")] {
            let message = check_read_passes_through(3, &wrong, inner.as_ref()).unwrap_err();
            assert!(
                message.contains("read 3: the session layer (WithSessions::query) answered")
                    && message.contains("a read passes through unchanged"),
                "{message}"
            );
        }
        // The state machine cannot answer it, the session layer does.
        let message = check_read_passes_through(3, &answer, None).unwrap_err();
        assert!(
            message.contains("the state machine it wraps None"),
            "{message}"
        );
    }
}
