//! One explored state: the real nodes, each with its host (disk, state
//! machine, snapshot buffer), the network between them, the budgets of
//! the scope spent so far and the ghost state of the checks; and the
//! steps that lead from one state to the next.
//!
//! A host here is a real host in miniature, driving the node through its
//! public API only: writes wait in a queue until a `Sync` step makes the
//! oldest durable and reports it with `Input::Persisted`; a crash drops
//! the queue and rebuilds the node with `Node::new` from exactly what is
//! durable; committed entries are applied (and `Input::Applied`
//! reported) as soon as the node hands them out; snapshots are stored
//! durably when taken, sent in chunks read from the stored snapshot, and
//! received into a buffer that a `PersistSnapshot` write makes durable.

use std::cell::Cell;
use std::collections::VecDeque;
use std::hash::Hasher;
use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use concord::{
    Action, AppendResponse, Config, Entries, Entry, EntryPayload, HardState, Index, Input,
    LogPosition, Membership, MembershipChange, Message, MessageBody, Node, NodeId, ReadPath,
    Recovered, Role, Snapshot, SnapshotMeta, WriteId,
};

use super::checks::{logs_match, Ghost, GhostRead, Property, ReadOutcome, Violation};
use super::fingerprint::{message_fingerprint, Fingerprint, Fingerprinter, Renamed};
use super::reach::Sighting;
use super::scope::{Loss, Scope};
use crate::observe::StepObserver;
use crate::rules::Rules;

/// Minimum election timeout of every explored node. The range holds one
/// value (maximum = minimum + 1), so the timeout PRNG decides nothing and
/// a follower leaves its leader's lease exactly when its own timer fires.
pub(crate) const ELECTION_TIMEOUT_MIN_TICKS: u32 = 2;

/// Ticks a `Fire` step may take before it gives up: a follower's timer
/// fires after at most the (single-valued) election timeout, a leader's
/// after one heartbeat interval.
const FIRE_TICKS_MAX: u32 = ELECTION_TIMEOUT_MIN_TICKS + 2;

/// Most actions one step may make the host execute (each `Apply` answered
/// with `Applied` may draw more): far above what a scope of a few entries
/// produces, so reaching it means a loop.
const STEP_ACTIONS_MAX: usize = 10_000;

/// A move from one state to the next. Nodes are numbered from 0 (node id
/// minus one); messages by their place in the network, which is ordered
/// by message fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Advance the node's clock, tick by tick, until its timer fires (it
    /// emits anything): a follower's or candidate's election timeout, a
    /// leader's heartbeat (and every second one CheckQuorum).
    Fire(u8),
    /// The host makes the node's oldest pending write durable and reports
    /// it (`Input::Persisted`).
    Sync(u8),
    /// The node crashes (pending writes lost) and restarts from its disk.
    Restart(u8),
    /// A client proposes a command at the node (a leader).
    Propose(u8),
    /// A client reads at the node: ReadIndex at a leader, a follower read
    /// at a follower that knows its leader.
    Read(u8),
    /// The host asks the node for a snapshot (`Input::RequestSnapshot`).
    Snapshot(u8),
    /// The leader (first) is asked to remove the node (second) from the
    /// voters.
    Remove(u8, u8),
    /// Deliver the message (reordering: any message may go next).
    Deliver(u16),
    /// Deliver a copy of the message and keep it in flight.
    Duplicate(u16),
    /// Lose the message.
    Drop(u16),
}

/// A message in flight, with the fingerprint that orders the network.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    pub(crate) fingerprint: u64,
    pub(crate) message: Message,
}

/// A snapshot as the host stores it.
#[derive(Clone, Debug)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Bytes,
    pub(crate) membership: Option<Membership>,
}

/// A write the node asked for, not yet durable.
#[derive(Clone, Debug)]
pub(crate) enum Write {
    Log {
        id: WriteId,
        hard_state: Option<HardState>,
        truncate_after: Option<Index>,
        entries: Entries,
    },
    Snapshot {
        id: WriteId,
        snapshot: StoredSnapshot,
        discard_log: bool,
    },
}

impl Write {
    fn id(&self) -> WriteId {
        match self {
            Write::Log { id, .. } | Write::Snapshot { id, .. } => *id,
        }
    }
}

/// A node's disk: what is durable, and the writes queued before a sync.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    pub(crate) hard_state: HardState,
    /// The position the durable log continues after (the snapshot's).
    pub(crate) base: LogPosition,
    /// Durable entries after `base`, contiguous.
    pub(crate) entries: Vec<Entry>,
    pub(crate) snapshot: Option<StoredSnapshot>,
    pub(crate) pending: VecDeque<Write>,
}

impl Disk {
    fn last_index(&self) -> Index {
        self.base.index + self.entries.len() as Index
    }

    /// Whether the durable state holds the entry at `position` (under the
    /// snapshot counts: a snapshot is taken of committed entries only,
    /// which the checks verify separately).
    pub(crate) fn holds(&self, position: LogPosition) -> bool {
        if position.index < self.base.index {
            return true;
        }
        if position.index == self.base.index {
            return position.index == 0 || self.base.term == position.term;
        }
        self.entries
            .get((position.index - self.base.index - 1) as usize)
            .is_some_and(|entry| entry.term == position.term)
    }

    /// Makes `write` durable.
    fn store(&mut self, write: Write) {
        match write {
            Write::Log {
                hard_state,
                truncate_after,
                entries,
                ..
            } => {
                if let Some(after) = truncate_after {
                    assert!(
                        after >= self.base.index,
                        "the node truncated its durable log below its snapshot"
                    );
                    self.entries.truncate((after - self.base.index) as usize);
                }
                if let Some(first) = entries.first() {
                    assert_eq!(
                        first.index,
                        self.last_index() + 1,
                        "a write that does not continue the durable log"
                    );
                }
                self.entries.extend(entries.iter().cloned());
                if let Some(hard_state) = hard_state {
                    self.hard_state = hard_state;
                }
            }
            Write::Snapshot {
                snapshot,
                discard_log,
                ..
            } => {
                let position = snapshot.meta.position;
                if discard_log {
                    self.entries.clear();
                } else {
                    self.entries.retain(|entry| entry.index > position.index);
                    if self
                        .entries
                        .first()
                        .is_some_and(|first| first.index != position.index + 1)
                    {
                        self.entries.clear();
                    }
                }
                self.base = position;
                self.snapshot = Some(snapshot);
            }
        }
    }

    /// What a restarted host reads back.
    fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            base: self.base,
            entries: self.entries.clone(),
            applied_index: self.base.index,
            membership: self
                .snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.membership.clone()),
        }
    }
}

/// The host's state machine (the commands applied, in order) and the
/// snapshot being received.
#[derive(Clone, Debug, Default)]
pub(crate) struct Host {
    pub(crate) commands: Vec<Bytes>,
    pub(crate) applied_index: Index,
    pub(crate) incoming: Option<(SnapshotMeta, Vec<u8>)>,
}

/// One node and its host.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) node: Node,
    pub(crate) disk: Disk,
    pub(crate) host: Host,
    /// Starts so far (0 for the first), which seeds the node's config.
    pub(crate) incarnation: u32,
    /// Timer firings of this node so far (for `Scope::timeouts_per_node`).
    pub(crate) fired: u32,
}

/// Budgets of the scope spent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Used {
    pub(crate) crashes: u32,
    pub(crate) proposals: u32,
    pub(crate) duplicates: u32,
    pub(crate) reads: u32,
    pub(crate) timeouts: u32,
    pub(crate) membership: bool,
    pub(crate) snapshot: bool,
}

/// One state of the explored system.
#[derive(Clone, Debug)]
pub struct World {
    pub(crate) slots: Vec<Slot>,
    /// Messages in flight, ordered by fingerprint.
    pub(crate) network: Vec<InFlight>,
    pub(crate) used: Used,
    pub(crate) ghost: Ghost,
    /// A send found the network full with loss off: the state is outside
    /// the scope and is not explored further.
    pub(crate) overflowed: bool,
    /// The step rules' memory of this state's history (`crate::observe`).
    /// Not part of the fingerprint: two states the search merges may
    /// differ in it, so a rule broken only on the path dropped may go
    /// unseen; a rule reported broken is broken on the path reported.
    pub(crate) rules: Rules,
}

/// What a step did, for a replay's printout.
#[derive(Debug, Default)]
pub struct StepLog {
    /// One line per message sent, write queued, entry applied, role taken.
    pub lines: Vec<String>,
}

/// The configuration of node `id` in its `incarnation`-th start.
pub(crate) fn node_config(scope: &Scope, id: NodeId, incarnation: u32) -> Config {
    let mut config = Config::new(id, 1..=scope.nodes as NodeId);
    config.election_timeout_min_ticks = ELECTION_TIMEOUT_MIN_TICKS;
    config.election_timeout_max_ticks = ELECTION_TIMEOUT_MIN_TICKS + 1;
    config.heartbeat_interval_ticks = 1;
    config.pre_vote = scope.pre_vote;
    config.check_quorum = scope.check_quorum;
    config.append_entries_max = scope.append_entries_max as usize;
    // A fresh seed per start, as `Config::seed` asks; the same for every
    // node's n-th start, so that nodes differ only by their ids (symmetry).
    config.seed = u64::from(incarnation);
    config.compaction_threshold_entries = None;
    config.compaction_trailing_entries = 0;
    config.snapshot_chunk_bytes_max = scope.snapshot_chunk_bytes as usize;
    // The model's disks are never lost (a crash keeps what was synced), so
    // an empty log is a new cluster's: the recovery from lost storage would
    // only add a round of questions to every state before the first
    // election. The simulator's `disk-loss` fault covers that recovery.
    config.recover_empty_storage = false;
    config
}

fn start_node(
    scope: &Scope,
    id: NodeId,
    incarnation: u32,
    recovered: Recovered,
) -> Result<Node, Violation> {
    let config = node_config(scope, id, incarnation);
    #[allow(unused_mut)]
    let mut node = Node::new(config, recovered).map_err(|error| {
        Violation::new(
            Property::CorePanic,
            format!("n{id} refused to start from its disk: {error}"),
        )
    })?;
    #[cfg(feature = "planted-bugs")]
    if scope.bugs.any() {
        node.plant_bugs(scope.bugs.core_bugs());
    }
    Ok(node)
}

/// The state machine's snapshot: each command, length first.
fn encode_commands(commands: &[Bytes]) -> Bytes {
    let mut data = Vec::new();
    for command in commands {
        data.extend_from_slice(&(command.len() as u32).to_le_bytes());
        data.extend_from_slice(command);
    }
    Bytes::from(data)
}

fn decode_commands(data: &[u8]) -> Option<Vec<Bytes>> {
    let mut commands = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (length, tail) = rest.split_at_checked(4)?;
        let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
        let (command, tail) = tail.split_at_checked(length)?;
        commands.push(Bytes::copy_from_slice(command));
        rest = tail;
    }
    Some(commands)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

fn payload_text(payload: &EntryPayload) -> String {
    match payload {
        EntryPayload::Noop => "noop".to_string(),
        EntryPayload::Command(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        EntryPayload::Membership(membership) => format!(
            "config voters {:?}{}",
            membership.voters,
            if membership.is_joint() {
                format!(" joint with {:?}", membership.voters_outgoing)
            } else {
                String::new()
            }
        ),
        other => format!("{other:?}"),
    }
}

fn entries_text(entries: &[Entry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|entry| {
            format!(
                "{}/t{} {}",
                entry.index,
                entry.term,
                payload_text(&entry.payload)
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A message in a line.
pub fn describe_message(message: &Message) -> String {
    let body = match &message.body {
        MessageBody::RequestVote {
            pre_vote,
            last_log,
            transfer,
        } => format!(
            "{}RequestVote last {}/t{}{}",
            if *pre_vote { "Pre" } else { "" },
            last_log.index,
            last_log.term,
            if *transfer { " (transfer)" } else { "" }
        ),
        MessageBody::RequestVoteResponse { pre_vote, granted } => format!(
            "{}Vote {}",
            if *pre_vote { "Pre" } else { "" },
            if *granted { "granted" } else { "refused" }
        ),
        MessageBody::AppendEntries {
            prev,
            entries,
            leader_commit,
        } => format!(
            "AppendEntries prev {}/t{} {} commit {leader_commit}",
            prev.index,
            prev.term,
            entries_text(entries)
        ),
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => {
            format!("AppendAccepted match {match_index}")
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) => format!("AppendRejected at {rejected_index} hint {hint_index}/t{hint_term}"),
        MessageBody::Heartbeat { commit, read_round } => {
            format!("Heartbeat commit {commit} round {read_round}")
        }
        MessageBody::HeartbeatResponse { read_round } => {
            format!("HeartbeatResponse round {read_round}")
        }
        MessageBody::TimeoutNow => "TimeoutNow".to_string(),
        MessageBody::InstallSnapshot(chunk) => format!(
            "InstallSnapshot {}/t{} bytes {}..{} of {}",
            chunk.snapshot.index,
            chunk.snapshot.term,
            chunk.offset,
            chunk.offset + chunk.data.len() as u64,
            chunk.size_bytes
        ),
        MessageBody::Removed { configuration } => format!(
            "Removed (configuration at {}/t{})",
            configuration.index, configuration.term
        ),
        MessageBody::ReadIndexRequest { request } => format!("ReadIndexRequest {request}"),
        MessageBody::ReadIndexResponse { request, index } => {
            format!("ReadIndexResponse {request} index {index:?}")
        }
        MessageBody::InstallSnapshotResponse {
            snapshot,
            next_offset,
            rewind,
        } => format!(
            "InstallSnapshotResponse {}/t{} next {next_offset}{}",
            snapshot.index,
            snapshot.term,
            if *rewind { " rewind" } else { "" }
        ),
        MessageBody::CommitNotice { last, commit } => {
            format!(
                "CommitNotice last {}/t{} commit {commit}",
                last.index, last.term
            )
        }
        MessageBody::CandidateCatchUp { prev, entries } => format!(
            "CandidateCatchUp prev {}/t{} {}",
            prev.index,
            prev.term,
            entries_text(entries)
        ),
        MessageBody::RecoveryQuery { nonce } => format!("RecoveryQuery {nonce:x}"),
        MessageBody::RecoveryReport(report) => format!(
            "RecoveryReport {:x}{} last {}/t{}",
            report.nonce,
            if report.recovering {
                " (recovering)"
            } else {
                ""
            },
            report.last_log.index,
            report.last_log.term
        ),
        MessageBody::AcknowledgedEntryLost { acknowledged } => format!(
            "AcknowledgedEntryLost {}/t{}",
            acknowledged.index, acknowledged.term
        ),
    };
    format!(
        "n{}->n{} t{} {body}",
        message.from, message.to, message.term
    )
}

thread_local! {
    /// Whether this thread is inside [`guarded`], where a panic is a
    /// finding, not a crash of the explorer.
    static IN_CORE: Cell<bool> = const { Cell::new(false) };
}

/// Installs a panic hook that stays silent for panics of the core inside
/// the explorer's guard (each is reported as a violation, and a search meets
/// thousands) and prints every other panic as the default hook does: a
/// panic of the explorer itself must not go unseen.
pub fn quiet_core_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_CORE.with(Cell::get) {
            previous(info);
        }
    }));
}

/// Runs `f` on the node, turning a panic into a violation.
fn guarded<T>(id: NodeId, f: impl FnOnce() -> T) -> Result<T, Violation> {
    let outer = IN_CORE.with(|flag| flag.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    IN_CORE.with(|flag| flag.set(outer));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "(no message)".to_string());
        Violation::new(Property::CorePanic, format!("n{id} panicked: {message}"))
    })
}

/// Steps node `id` with `input` under the step observers
/// (`crate::observe`: the step rules), appending its actions to `actions`;
/// a panic or a broken rule is a violation.
fn observed(
    rules: Option<&mut Rules>,
    id: NodeId,
    node: &mut Node,
    input: Input,
    actions: &mut Vec<Action>,
) -> Result<(), Violation> {
    let Some(rules) = rules else {
        return guarded(id, || node.step(input, actions));
    };
    let index = (id - 1) as usize;
    let start = actions.len();
    rules.before(index, node, &input);
    guarded(id, || node.step(input, actions))?;
    rules
        .after(index, node, &actions[start..])
        .map_err(|broken| Violation::new(Property::StepRule, format!("n{id}: {broken}")))
}

impl World {
    /// The initial state: every node new, every disk empty.
    pub fn initial(scope: &Scope) -> Result<World, Violation> {
        let mut slots = Vec::with_capacity(scope.nodes);
        for index in 0..scope.nodes {
            let id = index as NodeId + 1;
            slots.push(Slot {
                node: start_node(scope, id, 0, Recovered::default())?,
                disk: Disk::default(),
                host: Host::default(),
                incarnation: 0,
                fired: 0,
            });
        }
        Ok(World {
            slots,
            network: Vec::new(),
            used: Used::default(),
            ghost: Ghost::default(),
            overflowed: false,
            rules: Rules::new(scope.nodes),
        })
    }

    /// What this state shows of the scope's reach (see `reach.rs`).
    pub(crate) fn sighting(&self) -> Sighting {
        let mut sighting = Sighting {
            crashes: self.used.crashes,
            overflowed: self.overflowed,
            ..Sighting::default()
        };
        for slot in &self.slots {
            let node = &slot.node;
            sighting.leader_now |= node.role() == Role::Leader;
            sighting.committed_entries_max =
                sighting.committed_entries_max.max(node.commit_index());
            sighting.term_max = sighting.term_max.max(node.term());
        }
        for term in self.ghost.leaders.keys() {
            sighting.leader_terms_mask |= Sighting::leader_term_bit(*term);
        }
        let commands = self
            .ghost
            .committed
            .iter()
            .filter(|committed| matches!(committed.entry.payload, EntryPayload::Command(_)))
            .count();
        sighting.committed_commands = u32::try_from(commands).expect("a scope commits few entries");
        sighting
    }

    /// Whether the search goes on from this state: every term within the
    /// scope, nothing overflowed.
    pub(crate) fn in_scope(&self, scope: &Scope) -> bool {
        !self.overflowed
            && self
                .slots
                .iter()
                .all(|slot| slot.node.term() <= scope.max_term)
    }

    /// The steps the scope allows from here, in a fixed order. Some may
    /// turn out to change nothing (a timer that never fires); `apply` then
    /// says so.
    pub(crate) fn steps(&self, scope: &Scope, steps: &mut Vec<Step>) {
        steps.clear();
        for (index, slot) in self.slots.iter().enumerate() {
            let i = index as u8;
            let node = &slot.node;
            if (scope.timeouts == 0 || self.used.timeouts < scope.timeouts)
                && (scope.timeouts_per_node == 0 || slot.fired < scope.timeouts_per_node)
            {
                steps.push(Step::Fire(i));
            }
            if !slot.disk.pending.is_empty() {
                steps.push(Step::Sync(i));
            }
            if self.used.crashes < scope.crashes {
                steps.push(Step::Restart(i));
            }
            let leader = node.role() == Role::Leader;
            if leader && self.used.proposals < scope.proposals {
                steps.push(Step::Propose(i));
            }
            let follower_with_leader = node.role() == Role::Follower && node.leader().is_some();
            if (leader || follower_with_leader) && self.used.reads < scope.reads {
                steps.push(Step::Read(i));
            }
            if scope.snapshot
                && !self.used.snapshot
                && node.applied_index() > node.latest_snapshot_index()
            {
                steps.push(Step::Snapshot(i));
            }
            if scope.membership && !self.used.membership && leader {
                for target in 0..self.slots.len() as u8 {
                    steps.push(Step::Remove(i, target));
                }
            }
        }
        for (k, in_flight) in self.network.iter().enumerate() {
            // Equal messages (equal fingerprints, adjacent) lead to equal
            // states: only the first is tried.
            if k > 0 && self.network[k - 1].fingerprint == in_flight.fingerprint {
                continue;
            }
            let k = k as u16;
            steps.push(Step::Deliver(k));
            if self.used.duplicates < scope.duplicates {
                steps.push(Step::Duplicate(k));
            }
            if scope.loss == Loss::On {
                steps.push(Step::Drop(k));
            }
        }
    }

    /// A step in a line, as of this state (before it is taken).
    pub fn describe_step(&self, step: Step) -> String {
        let message = |k: u16| {
            self.network.get(k as usize).map_or_else(
                || format!("#{k} (not in flight)"),
                |m| describe_message(&m.message),
            )
        };
        match step {
            Step::Fire(i) => format!("fire n{}: its timer fires", i + 1),
            Step::Sync(i) => format!("sync n{}: its oldest pending write is durable", i + 1),
            Step::Restart(i) => format!("crash n{} and restart it from its disk", i + 1),
            Step::Propose(i) => format!("propose p{} at n{}", self.used.proposals + 1, i + 1),
            Step::Read(i) => format!("read r{} at n{}", self.used.reads + 1, i + 1),
            Step::Snapshot(i) => format!("snapshot n{}", i + 1),
            Step::Remove(i, target) => format!("n{} is asked to remove n{}", i + 1, target + 1),
            Step::Deliver(k) => format!("deliver {}", message(k)),
            Step::Duplicate(k) => format!("duplicate {}", message(k)),
            Step::Drop(k) => format!("lose {}", message(k)),
        }
    }

    /// Takes `step`. Returns `Ok(false)` when the step changes nothing and
    /// is not a move (a timer that does not fire within its bound);
    /// `Err` with the first property violated (the state is then not
    /// meaningful any more).
    pub(crate) fn apply(
        &mut self,
        scope: &Scope,
        step: Step,
        mut log: Option<&mut StepLog>,
    ) -> Result<bool, Violation> {
        let commits_before: Vec<Index> = self
            .slots
            .iter()
            .map(|slot| slot.node.commit_index())
            .collect();
        let mut restarted = None;
        let mut actions = Vec::new();
        let target = match step {
            Step::Fire(i) => {
                let i = i as usize;
                let id = i as NodeId + 1;
                let node = &mut self.slots[i].node;
                for _ in 0..FIRE_TICKS_MAX {
                    observed(
                        scope.step_rules.then_some(&mut self.rules),
                        id,
                        node,
                        Input::Tick,
                        &mut actions,
                    )?;
                    if !actions.is_empty() {
                        break;
                    }
                }
                if actions.is_empty() {
                    return Ok(false);
                }
                // Counted only where bounded: an unbounded count would
                // split states that behave alike.
                if scope.timeouts > 0 {
                    self.used.timeouts += 1;
                }
                if scope.timeouts_per_node > 0 {
                    self.slots[i].fired += 1;
                }
                i
            }
            Step::Sync(i) => {
                let i = i as usize;
                self.sync_oldest(scope, i, &mut actions, None)?;
                i
            }
            Step::Restart(i) => {
                let i = i as usize;
                let id = i as NodeId + 1;
                let slot = &mut self.slots[i];
                slot.disk.pending.clear();
                slot.incarnation += 1;
                let recovered = slot.disk.recovered();
                slot.node = guarded(id, || start_node(scope, id, slot.incarnation, recovered))??;
                self.rules.on_restart(i);
                slot.host = Host::default();
                slot.host.applied_index = slot.disk.base.index;
                if let Some(snapshot) = &slot.disk.snapshot {
                    slot.host.commands = decode_commands(&snapshot.data).ok_or_else(|| {
                        Violation::new(
                            Property::StateMachineSafety,
                            format!("n{id}'s stored snapshot does not decode"),
                        )
                    })?;
                    let meta = snapshot.meta;
                    let node = &mut slot.node;
                    observed(
                        scope.step_rules.then_some(&mut self.rules),
                        id,
                        node,
                        Input::Snapshotted(meta),
                        &mut actions,
                    )?;
                }
                self.used.crashes += 1;
                restarted = Some(i);
                i
            }
            Step::Propose(i) => {
                let i = i as usize;
                self.used.proposals += 1;
                let payload = Bytes::from(format!("p{}", self.used.proposals));
                let node = &mut self.slots[i].node;
                observed(
                    scope.step_rules.then_some(&mut self.rules),
                    i as NodeId + 1,
                    node,
                    Input::Propose(payload),
                    &mut actions,
                )?;
                i
            }
            Step::Read(i) => {
                let i = i as usize;
                let id = i as NodeId + 1;
                self.used.reads += 1;
                let read = u64::from(self.used.reads);
                let node = &mut self.slots[i].node;
                let path = if node.role() == Role::Leader {
                    ReadPath::ReadIndex
                } else {
                    ReadPath::Follower
                };
                self.ghost.reads.push(GhostRead {
                    node: id,
                    id: read,
                    committed_before: self.ghost.committed.len() as Index,
                    outcome: ReadOutcome::Pending,
                });
                observed(
                    scope.step_rules.then_some(&mut self.rules),
                    id,
                    node,
                    Input::Read { id: read, path },
                    &mut actions,
                )?;
                i
            }
            Step::Snapshot(i) => {
                let i = i as usize;
                self.used.snapshot = true;
                let node = &mut self.slots[i].node;
                observed(
                    scope.step_rules.then_some(&mut self.rules),
                    i as NodeId + 1,
                    node,
                    Input::RequestSnapshot,
                    &mut actions,
                )?;
                i
            }
            Step::Remove(i, target) => {
                let i = i as usize;
                self.used.membership = true;
                let change = MembershipChange::Remove(NodeId::from(target) + 1);
                let node = &mut self.slots[i].node;
                observed(
                    scope.step_rules.then_some(&mut self.rules),
                    i as NodeId + 1,
                    node,
                    Input::ChangeMembership(change),
                    &mut actions,
                )?;
                i
            }
            Step::Deliver(k) | Step::Duplicate(k) | Step::Drop(k) => {
                let k = k as usize;
                let message = if matches!(step, Step::Duplicate(_)) {
                    self.used.duplicates += 1;
                    self.network[k].message.clone()
                } else {
                    self.network.remove(k).message
                };
                if matches!(step, Step::Drop(_)) {
                    return Ok(true);
                }
                let i = (message.to - 1) as usize;
                let node = &mut self.slots[i].node;
                observed(
                    scope.step_rules.then_some(&mut self.rules),
                    message.to,
                    node,
                    Input::Receive(message),
                    &mut actions,
                )?;
                i
            }
        };
        self.execute(scope, target, actions, log.as_deref_mut())?;
        self.check(&commits_before, restarted)?;
        self.discard_stale(scope, log.as_deref_mut());
        if let Some(log) = log {
            let node = &self.slots[target].node;
            log.lines.push(format!(
                "n{}: {} term {} commit {} last {}/t{} durable {}",
                target + 1,
                role_name(node.role()),
                node.term(),
                node.commit_index(),
                node.last_index(),
                node.last_position().term,
                self.slots[target].disk.last_index()
            ));
        }
        Ok(true)
    }

    /// Takes out of the network the messages that can no longer change
    /// anything (and, with `Scope::stale_lost`, every message of a term
    /// below its receiver's durable term).
    ///
    /// A node's term never falls below its durable term (it only rises
    /// while the node runs, and a restart reads it back), and a message of
    /// a lower term than the receiver's is ignored, save for requests,
    /// which are answered with the receiver's term (AppendEntries,
    /// Heartbeat, CommitNotice, InstallSnapshot, RequestVote), and
    /// `Removed` and `CandidateCatchUp`, which are taken from any term. So every other message
    /// whose term is below its receiver's durable term is ignored whenever
    /// it arrives. So is an answer of exactly that term (a vote, an append
    /// or heartbeat or snapshot answer) to a node that is not, in that
    /// term, the candidate or the leader it answers: such a node never
    /// becomes one in that term (campaigning raises the term). Delivering
    /// such a message changes nothing, now or later, which is what losing
    /// it does; keeping it would only split one state into many that
    /// differ by which inert messages are in flight. (Debug builds deliver
    /// each one to a copy of its receiver and assert that nothing
    /// changes.)
    fn discard_stale(&mut self, scope: &Scope, log: Option<&mut StepLog>) {
        let slots = &self.slots;
        let mut discarded = Vec::new();
        self.network.retain(|in_flight| {
            let message = &in_flight.message;
            let Some(receiver) = slots.get((message.to as usize).wrapping_sub(1)) else {
                return true;
            };
            let durable_term = receiver.disk.hard_state.term;
            if message.term > durable_term {
                return true;
            }
            let node = &receiver.node;
            let inert = if message.term < durable_term {
                !matches!(
                    message.body,
                    MessageBody::AppendEntries { .. }
                        | MessageBody::Heartbeat { .. }
                        | MessageBody::CommitNotice { .. }
                        | MessageBody::InstallSnapshot(_)
                        | MessageBody::RequestVote { .. }
                        | MessageBody::Removed { .. }
                        | MessageBody::CandidateCatchUp { .. }
                        | MessageBody::RecoveryQuery { .. }
                        | MessageBody::RecoveryReport(_)
                        | MessageBody::AcknowledgedEntryLost { .. }
                )
            } else {
                // Of the receiver's durable term, which it stays in (or
                // returns to after a restart) until its term rises:
                // answers only a candidate (votes) or a leader (the rest)
                // of that term acts on. A node that is neither in this
                // term never becomes either in it (campaigning raises the
                // term), except a candidate becoming leader.
                let same_term = node.term() == message.term;
                match message.body {
                    MessageBody::RequestVoteResponse {
                        pre_vote: false, ..
                    } => !(same_term && node.role() == Role::Candidate),
                    MessageBody::AppendEntriesResponse(_)
                    | MessageBody::HeartbeatResponse { .. }
                    | MessageBody::InstallSnapshotResponse { .. } => {
                        !(same_term && matches!(node.role(), Role::Candidate | Role::Leader))
                    }
                    _ => false,
                }
            };
            if message.term == durable_term && !inert {
                return true;
            }
            if inert && cfg!(debug_assertions) {
                assert_inert(&receiver.node, message);
            }
            if inert || scope.stale_lost {
                discarded.push(describe_message(message));
                return false;
            }
            true
        });
        if let Some(log) = log {
            for message in discarded {
                log.lines.push(format!("  stale, lost: {message}"));
            }
        }
    }

    /// The host of node `i` makes its oldest pending write durable and
    /// reports it.
    fn sync_oldest(
        &mut self,
        scope: &Scope,
        i: usize,
        actions: &mut Vec<Action>,
        log: Option<&mut StepLog>,
    ) -> Result<(), Violation> {
        let slot = &mut self.slots[i];
        let write = slot
            .disk
            .pending
            .pop_front()
            .expect("synced with a write pending");
        let id = write.id();
        slot.disk.store(write);
        if let Some(log) = log {
            log.lines.push(format!("  write w{} durable", id.0));
        }
        let node = &mut slot.node;
        observed(
            scope.step_rules.then_some(&mut self.rules),
            i as NodeId + 1,
            node,
            Input::Persisted(id),
            actions,
        )
    }

    /// The host of node `i` executes `actions` (and what they draw).
    fn execute(
        &mut self,
        scope: &Scope,
        i: usize,
        actions: Vec<Action>,
        mut log: Option<&mut StepLog>,
    ) -> Result<(), Violation> {
        let id = i as NodeId + 1;
        let mut queue: VecDeque<Action> = actions.into();
        let mut executed = 0usize;
        loop {
            let Some(action) = queue.pop_front() else {
                // A host that syncs at once makes each write durable once
                // the node's step that asked for it is done (the actions
                // of one step are executed before the node hears of the
                // sync, as a real host that runs them in order would),
                // and hears what the node does in answer.
                if !scope.sync_at_once || self.slots[i].disk.pending.is_empty() {
                    break;
                }
                let mut more = Vec::new();
                self.sync_oldest(scope, i, &mut more, log.as_deref_mut())?;
                queue.extend(more);
                continue;
            };
            executed += 1;
            assert!(
                executed <= STEP_ACTIONS_MAX,
                "n{id}: more than {STEP_ACTIONS_MAX} actions in one step"
            );
            let mut more = Vec::new();
            match action {
                Action::Send { message, .. } => {
                    self.check_promise(i, &message)?;
                    if let Some(log) = log.as_deref_mut() {
                        log.lines
                            .push(format!("  send {}", describe_message(&message)));
                    }
                    self.send(scope, message);
                }
                Action::Persist {
                    id: write,
                    hard_state,
                    truncate_after,
                    entries,
                } => {
                    if let Some(log) = log.as_deref_mut() {
                        log.lines.push(format!(
                            "  write w{} (pending):{}{}{}",
                            write.0,
                            hard_state.map_or(String::new(), |hs| format!(
                                " term {} vote {:?}",
                                hs.term, hs.voted_for
                            )),
                            truncate_after
                                .map_or(String::new(), |at| format!(" truncate after {at}")),
                            if entries.is_empty() {
                                String::new()
                            } else {
                                format!(" append {}", entries_text(&entries))
                            }
                        ));
                    }
                    self.slots[i].disk.pending.push_back(Write::Log {
                        id: write,
                        hard_state,
                        truncate_after,
                        entries,
                    });
                }
                Action::Apply { entries } => {
                    // The node's commit index moved within this step, and
                    // `check` records that only after it: record it now,
                    // so the entries are judged against every commit.
                    self.ghost.commit_moved(&self.slots[i].node, 0)?;
                    let slot = &mut self.slots[i];
                    let mut last = slot.host.applied_index;
                    for entry in entries.iter() {
                        self.ghost.applied(id, entry)?;
                        if entry.index != last + 1 {
                            return Err(Violation::new(
                                Property::StateMachineSafety,
                                format!(
                                    "n{id} is handed entry {} to apply after entry {last}",
                                    entry.index
                                ),
                            ));
                        }
                        if let EntryPayload::Command(command) = &entry.payload {
                            slot.host.commands.push(command.clone());
                        }
                        last = entry.index;
                    }
                    slot.host.applied_index = last;
                    if let Some(log) = log.as_deref_mut() {
                        log.lines
                            .push(format!("  apply {}", entries_text(&entries)));
                    }
                    let node = &mut slot.node;
                    observed(
                        scope.step_rules.then_some(&mut self.rules),
                        id,
                        node,
                        Input::Applied(last),
                        &mut more,
                    )?;
                }
                Action::TakeSnapshot => {
                    let slot = &mut self.slots[i];
                    let index = slot.node.applied_index();
                    let term = slot
                        .node
                        .term_at(index)
                        .expect("applied entries are in the log");
                    let data = encode_commands(&slot.host.commands);
                    let membership = slot.node.membership_at(index).cloned();
                    let snapshot = Snapshot::new(LogPosition::new(index, term), data.clone())
                        .with_membership(membership.clone());
                    let meta = snapshot.meta();
                    slot.disk.entries.retain(|entry| entry.index > index);
                    slot.disk.base = meta.position;
                    slot.disk.snapshot = Some(StoredSnapshot {
                        meta,
                        data,
                        membership,
                    });
                    if let Some(log) = log.as_deref_mut() {
                        log.lines
                            .push(format!("  snapshot taken at {index}/t{term} (durable)"));
                    }
                    let node = &mut slot.node;
                    observed(
                        scope.step_rules.then_some(&mut self.rules),
                        id,
                        node,
                        Input::Snapshotted(meta),
                        &mut more,
                    )?;
                }
                Action::SendSnapshotChunk(chunk) => {
                    let stored = self.slots[i].disk.snapshot.as_ref();
                    if let Some(stored) = stored.filter(|stored| stored.meta == chunk.snapshot) {
                        let message = chunk.cut_from(&stored.data);
                        if let Some(log) = log.as_deref_mut() {
                            log.lines
                                .push(format!("  send {}", describe_message(&message)));
                        }
                        self.send(scope, message);
                    }
                }
                Action::WriteSnapshotChunk {
                    snapshot,
                    offset,
                    data,
                } => {
                    let host = &mut self.slots[i].host;
                    if offset == 0 {
                        host.incoming = Some((snapshot, data.to_vec()));
                    } else {
                        let (meta, bytes) = host
                            .incoming
                            .as_mut()
                            .expect("a chunk past offset 0 continues a snapshot");
                        assert_eq!(*meta, snapshot, "a chunk of another snapshot");
                        assert_eq!(bytes.len() as u64, offset, "a chunk that leaves a gap");
                        bytes.extend_from_slice(&data);
                    }
                }
                Action::PersistSnapshot {
                    id: write,
                    snapshot,
                    discard_log,
                    membership,
                } => {
                    let (meta, bytes) = self.slots[i]
                        .host
                        .incoming
                        .clone()
                        .expect("a snapshot persisted was received");
                    assert_eq!(meta, snapshot, "persisting another snapshot than received");
                    if let Some(log) = log.as_deref_mut() {
                        log.lines.push(format!(
                            "  write w{} (pending): snapshot {}/t{}{}",
                            write.0,
                            meta.position.index,
                            meta.position.term,
                            if discard_log { ", discard the log" } else { "" }
                        ));
                    }
                    self.slots[i].disk.pending.push_back(Write::Snapshot {
                        id: write,
                        snapshot: StoredSnapshot {
                            meta,
                            data: Bytes::from(bytes),
                            membership: Some(*membership),
                        },
                        discard_log,
                    });
                }
                Action::RestoreSnapshot { snapshot } => {
                    let slot = &mut self.slots[i];
                    let (meta, bytes) = slot
                        .host
                        .incoming
                        .take()
                        .expect("a snapshot restored was received");
                    assert_eq!(meta, snapshot, "restoring another snapshot than received");
                    let commands = decode_commands(&bytes).ok_or_else(|| {
                        Violation::new(
                            Property::StateMachineSafety,
                            format!("n{id} received a snapshot that does not decode"),
                        )
                    })?;
                    let index = snapshot.position.index;
                    let expected: Vec<Bytes> = self
                        .ghost
                        .committed
                        .iter()
                        .take(index as usize)
                        .filter_map(|committed| match &committed.entry.payload {
                            EntryPayload::Command(command) => Some(command.clone()),
                            _ => None,
                        })
                        .collect();
                    if (self.ghost.committed.len() as Index) < index || commands != expected {
                        return Err(Violation::new(
                            Property::StateMachineSafety,
                            format!(
                                "n{id} restores a snapshot at {index} holding {commands:?}, but the committed prefix holds {expected:?}"
                            ),
                        ));
                    }
                    slot.host.commands = commands;
                    slot.host.applied_index = index;
                    if let Some(log) = log.as_deref_mut() {
                        log.lines.push(format!("  restore snapshot at {index}"));
                    }
                    let node = &mut slot.node;
                    observed(
                        scope.step_rules.then_some(&mut self.rules),
                        id,
                        node,
                        Input::Applied(index),
                        &mut more,
                    )?;
                }
                Action::ReadReady {
                    id: read, index, ..
                } => {
                    let applied = self.slots[i].host.applied_index;
                    let Some(ghost) = self.ghost.reads.iter_mut().find(|r| r.id == read) else {
                        return Err(Violation::new(
                            Property::ReadSafety,
                            format!("n{id} serves read r{read}, which was never issued"),
                        ));
                    };
                    if ghost.outcome != ReadOutcome::Pending || ghost.node != id {
                        return Err(Violation::new(
                            Property::ReadSafety,
                            format!(
                                "n{id} serves read r{read}, issued at n{} and already {:?}",
                                ghost.node, ghost.outcome
                            ),
                        ));
                    }
                    if applied < index || applied < ghost.committed_before {
                        return Err(Violation::new(
                            Property::ReadSafety,
                            format!(
                                "n{id} serves read r{read} from a state machine at index {applied}, but {} entries were committed before the read started (read index {index})",
                                ghost.committed_before
                            ),
                        ));
                    }
                    ghost.outcome = ReadOutcome::Served;
                    if let Some(log) = log.as_deref_mut() {
                        log.lines
                            .push(format!("  read r{read} served at index {applied}"));
                    }
                }
                Action::ReadRefused { id: read, error } => {
                    if let Some(ghost) = self.ghost.reads.iter_mut().find(|r| r.id == read) {
                        ghost.outcome = ReadOutcome::Refused;
                    }
                    if let Some(log) = log.as_deref_mut() {
                        log.lines.push(format!("  read r{read} refused: {error}"));
                    }
                }
                Action::RoleChanged { role, term } => {
                    if let Some(log) = log.as_deref_mut() {
                        log.lines
                            .push(format!("  n{id} is {} of term {term}", role_name(role)));
                    }
                    if role == Role::Leader {
                        self.ghost.leader(id, term)?;
                    }
                }
                Action::FollowerLogRegressed {
                    follower,
                    acknowledged_index,
                    reported_last_index,
                } => {
                    return Err(Violation::new(
                        Property::Durability,
                        format!(
                            "leader n{id} found n{follower} holding only up to {reported_last_index} after it acknowledged {acknowledged_index} as durable"
                        ),
                    ));
                }
                // The explorer's disks lose nothing they synced, so no
                // node recovers lost storage, and no committed entry is
                // ever contradicted.
                Action::LogDiverged(divergence) => {
                    return Err(Violation::new(
                        Property::Durability,
                        format!("n{id} found its committed log contradicted: {divergence:?}"),
                    ));
                }
                Action::StorageRecovery(_) => {}
                Action::ProposalAccepted { .. }
                | Action::ProposalRefused { .. }
                | Action::Transfer { .. } => {}
            }
            queue.extend(more);
        }
        Ok(())
    }

    /// A message that promises durable state is sent only once that state
    /// is on the sender's disk.
    fn check_promise(&self, i: usize, message: &Message) -> Result<(), Violation> {
        let slot = &self.slots[i];
        let id = i as NodeId + 1;
        match &message.body {
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                let durable = slot.disk.hard_state;
                if durable.term != message.term || durable.voted_for != Some(message.to) {
                    return Err(Violation::new(
                        Property::Durability,
                        format!(
                            "n{id} grants its vote in term {} to n{} while its disk holds term {} vote {:?}",
                            message.term, message.to, durable.term, durable.voted_for
                        ),
                    ));
                }
            }
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index })
                if *match_index > 0 =>
            {
                let term = slot.node.term_at(*match_index);
                let held = match term {
                    Some(term) => slot.disk.holds(LogPosition::new(*match_index, term)),
                    None => slot.disk.base.index >= *match_index,
                };
                if !held {
                    return Err(Violation::new(
                        Property::Durability,
                        format!(
                            "n{id} acknowledges entry {match_index} (term {term:?}) while its disk holds entries up to {}",
                            slot.disk.last_index()
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Puts a message in flight.
    fn send(&mut self, scope: &Scope, message: Message) {
        if self.network.len() >= scope.network_max {
            if scope.loss != Loss::On {
                self.overflowed = true;
            }
            return;
        }
        let fingerprint = message_fingerprint(&message);
        let at = self
            .network
            .partition_point(|in_flight| in_flight.fingerprint <= fingerprint);
        self.network.insert(
            at,
            InFlight {
                fingerprint,
                message,
            },
        );
    }

    /// The properties, after a step.
    fn check(
        &mut self,
        commits_before: &[Index],
        restarted: Option<usize>,
    ) -> Result<(), Violation> {
        for (i, slot) in self.slots.iter().enumerate() {
            let node = &slot.node;
            let from = if restarted == Some(i) {
                0
            } else {
                commits_before[i]
            };
            if node.commit_index() != from {
                self.ghost.commit_moved(node, from)?;
            }
            if node.role() == Role::Leader {
                self.ghost.leader(node.id(), node.term())?;
                self.ghost.leader_complete(node)?;
                if node.commit_index() > from && restarted != Some(i) {
                    self.commit_durable(node)?;
                }
            }
        }
        for (a, first) in self.slots.iter().enumerate() {
            for second in &self.slots[a + 1..] {
                logs_match(&first.node, &second.node)?;
            }
        }
        Ok(())
    }

    /// A leader's new commit index is on the disks of a majority of its
    /// configuration (of both halves while joint).
    fn commit_durable(&self, leader: &Node) -> Result<(), Violation> {
        let commit = leader.commit_index();
        let Some(term) = leader.term_at(commit) else {
            return Ok(());
        };
        let position = LogPosition::new(commit, term);
        let membership = leader.membership();
        for voters in [&membership.voters, &membership.voters_outgoing] {
            if voters.is_empty() {
                continue;
            }
            let holders: Vec<NodeId> = voters
                .iter()
                .copied()
                .filter(|id| {
                    self.slots
                        .get((*id - 1) as usize)
                        .is_some_and(|slot| slot.disk.holds(position))
                })
                .collect();
            if holders.len() < voters.len() / 2 + 1 {
                return Err(Violation::new(
                    Property::Durability,
                    format!(
                        "leader n{} commits entry {commit} (term {term}) held durably by {holders:?} only, of voters {voters:?}",
                        leader.id()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The state's fingerprint: with symmetry, the least over the renamings
    /// of nodes that look alike, so states that differ only by node names
    /// share one.
    pub(crate) fn fingerprint(&self, scope: &Scope) -> Fingerprint {
        let n = self.slots.len();
        if !scope.symmetry || n == 1 {
            let identity: Vec<usize> = (0..n).collect();
            return self.hash_renamed(&identity);
        }
        // A key of each slot that no renaming changes (every id hashed as
        // 0): renamings need only put slots in key order, trying every
        // order among equal keys.
        let keys: Vec<u64> = self
            .slots
            .iter()
            .map(|slot| {
                let mut state = Fingerprinter::new();
                hash_slot(slot, &|_| 0, &mut state);
                state.finish128() as u64
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| keys[*i]);
        let mut best: Option<Fingerprint> = None;
        let mut visit = |order: &[usize]| {
            // `order[j]` is the slot that goes to place `j`.
            let mut renaming = vec![0usize; n];
            for (place, slot) in order.iter().enumerate() {
                renaming[*slot] = place;
            }
            let value = self.hash_renamed(&renaming);
            best = Some(best.map_or(value, |best| best.min(value)));
        };
        permute_ties(&mut order, &keys, 0, &mut visit);
        best.expect("at least one order")
    }

    /// The hash of the state with slot `i` moved to place `renaming[i]`
    /// (and node id `i + 1` renamed `renaming[i] + 1` everywhere).
    fn hash_renamed(&self, renaming: &[usize]) -> Fingerprint {
        let rename = |id: NodeId| -> NodeId {
            match renaming.get((id as usize).wrapping_sub(1)) {
                Some(place) => *place as NodeId + 1,
                None => id,
            }
        };
        let mut state = Fingerprinter::new();
        let mut by_place: Vec<usize> = vec![0; renaming.len()];
        for (slot, place) in renaming.iter().enumerate() {
            by_place[*place] = slot;
        }
        for slot in by_place {
            hash_slot(&self.slots[slot], &rename, &mut state);
        }
        let mut messages: Vec<u64> = self
            .network
            .iter()
            .map(|in_flight| {
                super::fingerprint::message_fingerprint_renamed(&in_flight.message, &rename)
            })
            .collect();
        messages.sort_unstable();
        state.write_u64(messages.len() as u64);
        for message in messages {
            state.write_u64(message);
        }
        let Used {
            crashes,
            proposals,
            duplicates,
            reads,
            timeouts,
            membership,
            snapshot,
        } = self.used;
        for word in [crashes, proposals, duplicates, reads, timeouts] {
            state.write_u64(u64::from(word));
        }
        state.write_u64(u64::from(membership));
        state.write_u64(u64::from(snapshot));
        state.write_u64(u64::from(self.overflowed));
        let mut h = Renamed {
            state: &mut state,
            rename: &rename,
        };
        h.u64(self.ghost.leaders.len() as u64);
        for (term, leader) in &self.ghost.leaders {
            h.u64(*term);
            h.id(*leader);
        }
        h.u64(self.ghost.committed.len() as u64);
        for committed in &self.ghost.committed {
            h.entry(&committed.entry);
            h.u64(committed.commit_term);
        }
        h.u64(self.ghost.reads.len() as u64);
        for read in &self.ghost.reads {
            h.id(read.node);
            h.u64(read.id);
            h.u64(read.committed_before);
            h.u64(read.outcome as u64);
        }
        state.finish128()
    }
}

/// Every order of `order[from..]` that keeps it sorted by key: each run
/// of equal keys in every order, one run after another.
fn permute_ties(order: &mut [usize], keys: &[u64], from: usize, visit: &mut impl FnMut(&[usize])) {
    if from >= order.len() {
        visit(order);
        return;
    }
    let key = keys[order[from]];
    let end = from
        + order[from..]
            .iter()
            .take_while(|slot| keys[**slot] == key)
            .count();
    permute_run(order, keys, from, end, visit);
}

/// Every order of `order[at..end]` (the rest of one run of equal keys),
/// each followed by every order of the runs after it.
fn permute_run(
    order: &mut [usize],
    keys: &[u64],
    at: usize,
    end: usize,
    visit: &mut impl FnMut(&[usize]),
) {
    if at + 1 >= end {
        permute_ties(order, keys, end, visit);
        return;
    }
    for swap in at..end {
        order.swap(at, swap);
        permute_run(order, keys, at + 1, end, visit);
        order.swap(at, swap);
    }
}

/// Delivers `message` to a copy of `node` and panics unless that changes
/// nothing: no action, the same state.
fn assert_inert(node: &Node, message: &Message) {
    let hash = |node: &Node| {
        let mut state = Fingerprinter::new();
        node.hash_state(|id| id, &mut state);
        state.finish128()
    };
    let mut copy = node.clone();
    let mut actions = Vec::new();
    copy.step(Input::Receive(message.clone()), &mut actions);
    assert!(
        actions.is_empty() && hash(&copy) == hash(node),
        "a stale message changed its receiver: {} gave {actions:?}",
        describe_message(message)
    );
}

/// One slot's node, disk and host, ids renamed.
fn hash_slot(slot: &Slot, rename: &dyn Fn(NodeId) -> NodeId, state: &mut Fingerprinter) {
    slot.node.hash_state(rename, state);
    let mut h = Renamed { state, rename };
    h.u64(u64::from(slot.incarnation));
    h.u64(u64::from(slot.fired));
    let disk = &slot.disk;
    h.hard_state(disk.hard_state);
    h.position(disk.base);
    h.u64(disk.entries.len() as u64);
    for entry in &disk.entries {
        h.entry(entry);
    }
    let hash_snapshot = |h: &mut Renamed<'_, Fingerprinter>, snapshot: &StoredSnapshot| {
        h.position(snapshot.meta.position);
        h.u64(snapshot.meta.size_bytes);
        h.u64(snapshot.meta.checksum);
        h.bytes(&snapshot.data);
        h.bool(snapshot.membership.is_some());
        if let Some(membership) = &snapshot.membership {
            h.membership(membership);
        }
    };
    h.bool(disk.snapshot.is_some());
    if let Some(snapshot) = &disk.snapshot {
        hash_snapshot(&mut h, snapshot);
    }
    // The pending writes are exactly the node's writes not yet reported
    // durable, in the same order, under the same ids: the node hashes
    // their ids (relative to its next one), so here they are left out.
    h.u64(disk.pending.len() as u64);
    for write in &disk.pending {
        match write {
            Write::Log {
                id: _,
                hard_state,
                truncate_after,
                entries,
            } => {
                h.u64(0);
                h.bool(hard_state.is_some());
                if let Some(hard_state) = hard_state {
                    h.hard_state(*hard_state);
                }
                h.u64(truncate_after.map_or(u64::MAX, |at| at));
                h.u64(entries.len() as u64);
                for entry in entries.iter() {
                    h.entry(entry);
                }
            }
            Write::Snapshot {
                id: _,
                snapshot,
                discard_log,
            } => {
                h.u64(1);
                hash_snapshot(&mut h, snapshot);
                h.bool(*discard_log);
            }
        }
    }
    let host = &slot.host;
    h.u64(host.commands.len() as u64);
    for command in &host.commands {
        h.bytes(command);
    }
    h.u64(host.applied_index);
    h.bool(host.incoming.is_some());
    if let Some((meta, bytes)) = &host.incoming {
        h.position(meta.position);
        h.u64(meta.size_bytes);
        h.u64(meta.checksum);
        h.bytes(bytes);
    }
}
