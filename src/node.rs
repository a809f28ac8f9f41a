//! The replica itself: its state, construction from recovered state, and the
//! dispatch of inputs to the rules in `election`, `replication`,
//! `durability` and `transfer`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, ConfigError};
use crate::io::{Action, Input};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::planted::PlantedBugs;
use crate::progress::{PeerMap, Progress, ProgressView};
use crate::recovered::Recovered;
use crate::snapshot::{IncomingSnapshot, SnapshotMeta};
use crate::stats::Statistics;
use crate::types::{Entry, EntryPayload, HardState, Index, LogPosition, NodeId, Term, WriteId};

/// The role a replica plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it could win an election, without changing term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Replicates its log to the others.
    Leader,
}

/// A write handed to the host and not yet reported durable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingWrite {
    pub(crate) id: WriteId,
    /// Last log index the durable log will hold once this write is done,
    /// lowered if the in-memory log is later truncated below it.
    pub(crate) last_index: Index,
    pub(crate) hard_state: Option<HardState>,
}

/// One Raft replica: a deterministic state machine driven by [`Input`]s and
/// answering with [`Action`]s.
///
/// # The host loop
///
/// ```
/// use bytes::Bytes;
/// use concord::{Action, Config, EntryPayload, Input, Node, Recovered, Role, Snapshot};
///
/// // A one-node cluster that snapshots every 2 applied entries.
/// let mut config = Config::new(1, [1]);
/// config.compaction_threshold_entries = Some(2);
/// config.compaction_trailing_entries = 0;
/// let mut node = Node::new(config, Recovered::default())?;
/// let mut actions = Vec::new();
/// let mut applied = Vec::new();
/// let mut stored_snapshot: Option<Snapshot> = None;
/// let mut durable_up_to = None;
/// for tick in 0..100u64 {
///     node.step(Input::Tick, &mut actions);
///     if node.role() == Role::Leader && tick % 10 == 0 && applied.len() < 5 {
///         node.step(Input::Propose(Bytes::from(format!("x = {tick}"))), &mut actions);
///     }
///     // Execute the actions in order. Writes may be done asynchronously
///     // and many fsyncs batched into one; sends are best effort.
///     while !actions.is_empty() {
///         for action in std::mem::take(&mut actions) {
///             match action {
///                 Action::Send { to, message } => { /* network.send(to, message) */ let _ = (to, message); }
///                 Action::Persist { id, .. } => {
///                     // disk.truncate_and_append(..); disk.store_hard_state(..); disk.sync();
///                     durable_up_to = Some(id);
///                 }
///                 Action::Apply { entries } => {
///                     for entry in entries {
///                         // A real host calls `state_machine::apply_entry`:
///                         // commands, and forced recoveries, reach the state
///                         // machine.
///                         if let EntryPayload::Command(command) = &entry.payload {
///                             applied.push(command.clone()); // state_machine.apply(command)
///                         }
///                         node.step(Input::Applied(entry.index), &mut actions);
///                     }
///                 }
///                 Action::TakeSnapshot => {
///                     // Serialize the state at the last applied entry and
///                     // store it durably; only then report it.
///                     let index = node.applied_index();
///                     let term = node.term_at(index).expect("applied entries are in the log");
///                     let bytes = Bytes::from(applied.concat());
///                     let snapshot = Snapshot::new(concord::LogPosition::new(index, term), bytes);
///                     node.step(Input::Snapshotted(snapshot.meta()), &mut actions);
///                     stored_snapshot = Some(snapshot); // keep it readable for followers
///                 }
///                 Action::SendSnapshotChunk(chunk) => {
///                     // Read the chunk from the stored snapshot and send it.
///                     // (From a file: read `chunk.length_bytes` at
///                     // `chunk.offset`, then `chunk.into_message(bytes)`.)
///                     let to = chunk.to;
///                     let message = chunk.cut_from(&stored_snapshot.as_ref().expect("reported").data);
///                     let _ = (to, message); // network.send(to, message)
///                 }
///                 // A follower receiving a snapshot: append each chunk to a
///                 // file, make it durable on PersistSnapshot (then report
///                 // Persisted like any write), load it on RestoreSnapshot
///                 // (then report Applied at its index).
///                 _ => {} // proposal outcomes, role changes
///             }
///         }
///         // Only now, after the sync, tell the node its writes are durable.
///         if let Some(id) = durable_up_to.take() {
///             node.step(Input::Persisted(id), &mut actions);
///         }
///     }
/// }
/// assert_eq!(applied.len(), 5);
/// // The log was compacted: entries under the latest snapshot are gone.
/// assert!(node.latest_snapshot_index() >= 4);
/// assert!(node.first_index() > 1);
/// # Ok::<(), concord::ConfigError>(())
/// ```
///
/// A clone is an independent replica in the same state (its log shares
/// the original's entries until either appends): what a model checker
/// needs to try several inputs from one state. Never run a clone and its
/// original as two members of one cluster: they are the same member.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) role: Role,
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) rng: ChaCha8Rng,

    // Timers, in ticks.
    pub(crate) election_elapsed_ticks: u32,
    pub(crate) heartbeat_elapsed_ticks: u32,
    pub(crate) randomized_election_timeout_ticks: u32,

    // Candidate state: votes received in the current (pre-)election.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    // Leader state.
    pub(crate) progress: PeerMap<Progress>,
    /// Ids given to progress records so far (see
    /// [`Message::progress_id`](crate::Message::progress_id)).
    pub(crate) progress_ids_issued: u64,
    /// Follower state: the term and the newest progress id heard from that
    /// term's leader, echoed in every answer.
    pub(crate) leader_progress_id: (Term, u64),
    pub(crate) transfer_target: Option<NodeId>,
    pub(crate) transfer_elapsed_ticks: u32,

    // Durability bookkeeping (see `durability.rs`).
    pub(crate) next_write_id: u64,
    pub(crate) writes: VecDeque<PendingWrite>,
    /// Highest index of the in-memory log known to be durable.
    pub(crate) persisted_index: Index,
    /// Hard state known to be durable.
    pub(crate) durable_hard_state: HardState,
    /// Highest index handed to the host in a `Persist`.
    pub(crate) emitted_index: Index,
    /// Truncation not yet handed to the host.
    pub(crate) pending_truncate: Option<Index>,
    pub(crate) hard_state_dirty: bool,

    // Follower acknowledgement state (see `durability.rs`).
    /// Highest index known to match the current leader's log this term.
    pub(crate) leader_match_index: Index,
    pub(crate) acked_index: Index,
    pub(crate) ack_owed: bool,
    /// A vote granted whose answer waits for the vote to be durable.
    pub(crate) pending_vote_grant: Option<(NodeId, Term)>,

    // Application.
    pub(crate) apply_emitted_index: Index,
    pub(crate) applied_index: Index,

    pub(crate) stats: Statistics,
    /// Reused buffer for quorum computations (no allocation per step).
    pub(crate) scratch_indices: Vec<Index>,
    /// Every member (voters and learners) but this node, in id order.
    pub(crate) peer_ids: Vec<NodeId>,
    /// The configuration in force (the latest of `memberships`), and the
    /// index of its entry.
    pub(crate) membership: Membership,
    pub(crate) membership_in_force_index: Index,
    /// Whether this node votes in `membership`.
    pub(crate) voter_here: bool,
    /// Every configuration this node still knows, by the index of its
    /// entry (the first at the log's base: the initial or snapshot one).
    pub(crate) memberships: BTreeMap<Index, Membership>,
    /// Every node that was a member of a configuration seen here.
    pub(crate) known_nodes: BTreeSet<NodeId>,
    /// The latest committed configuration entry a peer said does not name
    /// this node as a voter (`MessageBody::Removed`); volatile.
    pub(crate) removed_notice: Option<LogPosition>,
    /// Configurations appended but held back until they commit (planted
    /// mistake `membership_on_commit` only; always empty otherwise).
    pub(crate) deferred_memberships: BTreeMap<Index, Membership>,
    /// The persisted index the leader last ran the commit rule for.
    pub(crate) commit_checked_persisted_index: Index,

    // Snapshots (see `snapshot.rs`).
    /// The snapshot served to followers behind the log's base.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// The configuration in force at `snapshot`'s last entry, sent with it
    /// (meaningless while `snapshot` is `None`).
    pub(crate) snapshot_membership: Membership,
    /// Index of the latest snapshot known (taken, installed or recovered).
    pub(crate) snapshot_index: Index,
    /// A `TakeSnapshot` is outstanding.
    pub(crate) snapshot_requested: bool,
    /// The host asked for a snapshot.
    pub(crate) snapshot_request_explicit: bool,
    /// Bytes of the entries applied since the latest snapshot.
    pub(crate) applied_since_snapshot_bytes: u64,
    /// A snapshot being received from the leader.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Reads on every path (see `read_index.rs`).
    pub(crate) reads: crate::read_index::Reads,
    /// Ticks seen since this node started (its local clock).
    pub(crate) now_ticks: u64,
    /// Lease reads are on and this node has not yet seen a minimum
    /// election timeout pass since it started: it refuses votes, as it may
    /// have answered a leader's heartbeat just before a restart.
    pub(crate) vote_hold_after_start: bool,
    /// Where this node stands in recovering from lost storage (durable
    /// with the hard state; see `storage_loss.rs`).
    pub(crate) recovery: crate::types::StorageRecovery,
    /// The questions of a recovery waiting for reports, and the answers.
    pub(crate) recovery_questions: crate::storage_loss::RecoveryQuestions,
    /// Set once an append contradicted our committed log: no read is
    /// served from then on.
    pub(crate) divergence: Option<crate::storage_loss::Divergence>,
    /// Deliberate mistakes (feature `planted-bugs` only).
    #[cfg(feature = "planted-bugs")]
    pub(crate) planted: PlantedBugs,
}

impl Node {
    /// Builds a replica from its configuration and the state the host
    /// recovered from disk (`Recovered::default()` for a new node).
    ///
    /// The node starts as a follower with no known leader.
    pub fn new(config: Config, recovered: Recovered) -> Result<Node, ConfigError> {
        config.validate()?;
        // Mutation testing judges by the simulator alone (see the
        // `mutation-judge` note in `lib.rs`): a recovered state the node
        // would refuse is left for the simulator's outside checks to find.
        if !cfg!(feature = "mutation-judge") {
            validate_recovered(&recovered)?;
        }
        let last_index = recovered.base.index + recovered.entries.len() as Index;
        let commit = recovered.applied_index;
        let log = RaftLog::new(recovered.base, recovered.entries, commit);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut node = Node {
            role: Role::Follower,
            term: recovered.hard_state.term,
            voted_for: recovered.hard_state.voted_for,
            leader: None,
            log,
            rng,
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_timeout_ticks: 0,
            votes: BTreeMap::new(),
            progress: PeerMap::new(),
            progress_ids_issued: 0,
            leader_progress_id: (0, 0),
            transfer_target: None,
            transfer_elapsed_ticks: 0,
            next_write_id: 1,
            writes: VecDeque::new(),
            persisted_index: last_index,
            durable_hard_state: recovered.hard_state,
            emitted_index: last_index,
            pending_truncate: None,
            hard_state_dirty: false,
            leader_match_index: 0,
            acked_index: 0,
            ack_owed: false,
            pending_vote_grant: None,
            apply_emitted_index: recovered.applied_index,
            applied_index: recovered.applied_index,
            stats: Statistics::default(),
            scratch_indices: Vec::new(),
            commit_checked_persisted_index: 0,
            snapshot: None,
            snapshot_membership: Membership::default(),
            snapshot_index: recovered.base.index,
            snapshot_requested: false,
            snapshot_request_explicit: false,
            applied_since_snapshot_bytes: 0,
            incoming_snapshot: None,
            reads: crate::read_index::Reads::new(config.seed),
            now_ticks: 0,
            // A node that recovered no term never answered a heartbeat in
            // a way a lease counts: an answer counts toward a round only
            // once its term is durable (`handle_heartbeat`).
            vote_hold_after_start: config.lease_read_ticks > 0 && recovered.hard_state.term > 0,
            recovery: recovered.hard_state.recovery,
            recovery_questions: Default::default(),
            divergence: None,
            #[cfg(feature = "planted-bugs")]
            planted: PlantedBugs::NONE,
            peer_ids: Vec::new(),
            membership: Membership::default(),
            membership_in_force_index: 0,
            voter_here: false,
            memberships: BTreeMap::new(),
            known_nodes: BTreeSet::new(),
            removed_notice: None,
            deferred_memberships: BTreeMap::new(),
            config,
        };
        // The configuration stored with the snapshot, else the one the
        // node was built with (right while no configuration entry was
        // compacted away).
        let initial = recovered.membership.clone().unwrap_or_else(|| Membership {
            voters: node.config.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: node.config.learners.clone(),
            // A witness joining a running cluster lists itself alone.
            witnesses: node
                .config
                .witnesses
                .intersection(&node.config.voters)
                .copied()
                .collect(),
        });
        node.memberships.insert(recovered.base.index, initial);
        for index in recovered.base.index + 1..=last_index {
            let entry = node
                .log
                .entry(index)
                .expect("recovered entries are in memory");
            if let Some(membership) = entry.payload.membership() {
                node.memberships.insert(index, membership.clone());
            }
        }
        node.membership_changed();
        node.reset_randomized_election_timeout();
        // Empty storage may be storage that was lost (a replaced disk):
        // the node does not vote until it knows what it may have promised
        // (`storage_loss.rs`). A recovery that was under way when the node
        // stopped (or that its host started, having found its storage
        // damaged) goes on, asking anew if it was still asking. Nothing
        // is written for it now: an empty node's first write changes its
        // term (no leader or candidate is in term 0) and carries the
        // marker, and a recovery read back from disk is durable already.
        let empty = recovered.hard_state == HardState::default()
            && recovered.base == LogPosition::ZERO
            && last_index == 0;
        let asking = node.recovery == crate::types::StorageRecovery::AwaitingReports;
        if (empty && node.config.recover_empty_storage) || asking {
            node.begin_storage_recovery();
            node.hard_state_dirty = false;
            // Lost storage may have held a promise to a leader that still
            // serves lease reads counting on it; the term that made it
            // durable is gone, so hold votes as a restart with a term does.
            node.vote_hold_after_start = node.config.lease_read_ticks > 0;
        }
        Ok(node)
    }

    /// Feeds one input to the node and appends what the host must do to
    /// `actions`, in order. Never allocates `actions` itself, so a host can
    /// reuse one vector.
    ///
    /// # Panics
    ///
    /// Only on a broken host contract (reporting a write durable that was
    /// never asked for, or an applied index beyond what was handed out) or
    /// on a violated internal invariant. Malformed or hostile messages never
    /// panic; they are counted in [`Node::stats`].
    pub fn step(&mut self, input: Input, actions: &mut Vec<Action>) {
        match input {
            Input::Tick => self.tick(actions),
            Input::Receive(message) => self.receive(message, actions),
            Input::Propose(payload) => {
                self.propose(std::iter::once(EntryPayload::Command(payload)), 1, actions)
            }
            Input::ProposeBatch(payloads) => {
                let count = payloads.len();
                self.propose(
                    payloads.into_iter().map(EntryPayload::Command),
                    count,
                    actions,
                )
            }
            Input::ProposeHost(payload) => {
                self.propose(std::iter::once(EntryPayload::Host(payload)), 1, actions)
            }
            Input::Persisted(id) => self.handle_persisted(id),
            Input::Applied(index) => self.handle_applied(index),
            Input::RequestSnapshot => self.snapshot_request_explicit = true,
            Input::Snapshotted(snapshot) => self.handle_snapshotted(snapshot),
            Input::Read { id, path } => self.read(id, path, actions),
            Input::ChangeMembership(change) => self.change_membership(change, actions),
            Input::TransferLeadership(target) => self.transfer_leadership(target, actions),
        }
        self.after_step(actions);
        self.check_invariants();
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The vote cast in the current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }

    /// Current term and vote (possibly not durable yet).
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            recovery: self.recovery,
        }
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.log.commit_index()
    }

    /// Highest index handed out in an `Apply` action.
    pub fn apply_emitted_index(&self) -> Index {
        self.apply_emitted_index
    }

    /// Highest index the host reported applied.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// Highest index of the log known to be durable here.
    pub fn persisted_index(&self) -> Index {
        self.persisted_index
    }

    /// Index of the last log entry (durable or not).
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Index and term of the last log entry.
    pub fn last_position(&self) -> LogPosition {
        self.log.last_position()
    }

    /// First index held in memory (one past the log's base).
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// The position the in-memory log continues after: entries up to it
    /// were compacted away (or never held, after a snapshot was installed).
    pub fn log_base(&self) -> LogPosition {
        self.log.base()
    }

    /// Position of the snapshot this node holds to send to followers, if
    /// any.
    pub fn snapshot_position(&self) -> Option<LogPosition> {
        self.snapshot.as_ref().map(|held| held.position)
    }

    /// Index of the latest snapshot this node took, installed or recovered
    /// from (0 when none).
    pub fn latest_snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// Entries held in memory.
    pub fn log_len(&self) -> u64 {
        self.log.last_index() - self.log.base().index
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// Term of the entry at `index`, if known.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term_at(index)
    }

    /// Replication progress of follower `id` (leader only).
    pub fn progress(&self, id: NodeId) -> Option<ProgressView> {
        self.progress.get(&id).map(Progress::view)
    }

    /// Replication progress of every follower, by id (empty unless leader).
    pub fn progress_all(&self) -> impl Iterator<Item = (NodeId, ProgressView)> + '_ {
        self.progress
            .iter()
            .map(|(id, progress)| (*id, progress.view()))
    }

    /// Counters of what this node saw, including refused input.
    pub fn stats(&self) -> &Statistics {
        &self.stats
    }

    /// The node leadership is being handed to, if a transfer is under way.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer_target
    }

    /// Writes handed to the host and not yet reported durable.
    pub fn unpersisted_writes(&self) -> usize {
        self.writes.len()
    }

    /// Reads waiting here, on any path: for a confirmation round (and a
    /// follower's requests a leader confirms for it), for the leader's
    /// answer to a follower's request, or for the state machine to apply
    /// their index. A host that stops ticking a node (the multi-group
    /// layer's quiescence) must not while any wait: their retries and
    /// timeouts run on ticks.
    pub fn reads_pending(&self) -> usize {
        self.reads.pending()
    }

    /// Plants deliberate protocol mistakes in this node, and sets aside
    /// the core's own assertions that would report them directly (see
    /// `src/planted.rs`). For measuring the simulator only; never call it
    /// in a real deployment.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub fn plant_bugs(&mut self, bugs: PlantedBugs) {
        self.planted = bugs;
    }

    /// The planted mistakes (always none without the `planted-bugs`
    /// feature, so the checks compile away).
    #[inline]
    pub(crate) fn planted(&self) -> PlantedBugs {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            PlantedBugs::NONE
        }
    }

    pub(crate) fn reset_randomized_election_timeout(&mut self) {
        let min = self.config.election_timeout_min_ticks;
        let max = self.config.election_timeout_max_ticks;
        self.randomized_election_timeout_ticks = self.rng.gen_range(min..max);
    }

    /// Number of voters other than this node. Callers loop by index so
    /// they can call `&mut self` methods without copying the peer list.
    pub(crate) fn peer_count(&self) -> usize {
        self.peer_ids.len()
    }

    /// The `i`th peer in id order.
    pub(crate) fn peer(&self, i: usize) -> NodeId {
        self.peer_ids[i]
    }

    pub(crate) fn send(
        &self,
        to: NodeId,
        body: crate::message::MessageBody,
        actions: &mut Vec<Action>,
    ) {
        self.send_with_term(to, self.term, body, actions);
    }

    /// The id of this leader's record of `peer` (0 for none).
    pub(crate) fn progress_id_of(&self, peer: NodeId) -> u64 {
        self.progress.get(&peer).map_or(0, |progress| progress.id)
    }

    /// The progress id this follower's answers in `term` echo (0 for none
    /// heard from that term's leader).
    pub(crate) fn answer_progress_id(&self, term: Term) -> u64 {
        if self.leader_progress_id.0 == term {
            self.leader_progress_id.1
        } else {
            0
        }
    }

    pub(crate) fn send_with_term(
        &self,
        to: NodeId,
        term: Term,
        body: crate::message::MessageBody,
        actions: &mut Vec<Action>,
    ) {
        debug_assert_ne!(to, self.config.id);
        let progress_id = if self.role == Role::Leader {
            self.progress_id_of(to)
        } else {
            self.answer_progress_id(term)
        };
        let message = crate::message::Message {
            from: self.config.id,
            to,
            term,
            progress_id,
            body,
        };
        actions.push(Action::Send { to, message });
    }

    /// Invariants that must hold between steps. Cheap ones always; the
    /// whole-log ones in debug builds.
    // Out of line, like `after_step`: inlined into `step`, the two made it
    // too large for the register allocator, which then kept `self` on the
    // stack and reloaded it for every field (callgrind: 1 % more
    // instructions per step than with the calls).
    #[inline(never)]
    fn check_invariants(&self) {
        assert!(self.log.commit_index() <= self.log.last_index());
        assert!(self.persisted_index <= self.log.last_index());
        assert!(self.emitted_index <= self.log.last_index());
        assert!(self.apply_emitted_index <= self.log.commit_index());
        assert!(self.applied_index <= self.apply_emitted_index);
        assert!(self.durable_hard_state.term <= self.term);
        // The log's base moves past the applied index only by installing a
        // snapshot, whose restore is handed out at once.
        assert!(self.log.base().index <= self.apply_emitted_index);
        assert!(self.log.base().index <= self.snapshot_index);
        if let Some(held) = &self.snapshot {
            assert!(held.position.index <= self.snapshot_index);
            assert!(held.position.index <= self.log.commit_index());
        }
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.config.id));
                assert!(self.progress.len() == self.peer_ids.len());
            }
            _ => assert!(self.progress.is_empty()),
        }
        if let Some(vote) = self.voted_for {
            assert_ne!(vote, 0);
        }
        self.check_recovery_invariants();
        // The cached configuration is the latest known one. Release builds
        // check the index after each change of configuration
        // (`check_membership_index`); builds with debug assertions (the
        // tests and their simulated seeds) compare the index and the sets
        // on every step.
        if cfg!(debug_assertions) {
            self.check_membership_index();
        }
        debug_assert_eq!(
            Some(&self.membership),
            self.memberships.values().next_back()
        );
    }
}

fn validate_recovered(recovered: &Recovered) -> Result<(), ConfigError> {
    let invalid = |reason: String| Err(ConfigError::InvalidRecoveredState { reason });
    let mut previous = recovered.base;
    for entry in &recovered.entries {
        if entry.index != previous.index + 1 {
            return invalid(format!(
                "log entry {} follows entry {}; entries must be contiguous",
                entry.index, previous.index
            ));
        }
        if entry.term < previous.term {
            return invalid(format!(
                "log entry {} has term {} below the previous entry's term {}",
                entry.index, entry.term, previous.term
            ));
        }
        previous = entry.position();
    }
    if previous.term > recovered.hard_state.term {
        return invalid(format!(
            "last log term {} is above the stored term {}",
            previous.term, recovered.hard_state.term
        ));
    }
    // A vote may name any node: configurations change, and the entry that
    // made the candidate known here may since have been truncated. Only
    // node 0 ("nobody") is impossible.
    if recovered.hard_state.voted_for == Some(0) {
        return invalid("stored vote for node 0, which is reserved".to_string());
    }
    if let Some(membership) = &recovered.membership {
        if let Err(error) = membership.validate() {
            return invalid(format!(
                "the configuration stored with the snapshot at index {} is unusable: {error}",
                recovered.base.index
            ));
        }
    }
    if recovered.applied_index < recovered.base.index || recovered.applied_index > previous.index {
        return invalid(format!(
            "applied index {} is outside the log {}..={}",
            recovered.applied_index, recovered.base.index, previous.index
        ));
    }
    Ok(())
}
