//! Step-level rules: for every input a node takes, which parts of its
//! state the step may change, and under which condition.
//!
//! The outcome checks (`crate::safety`, linearizability, liveness) see a
//! mistake only once it has done harm, which for many mistakes takes a
//! rare schedule. The step that went wrong is visible much earlier: a
//! pre-vote request moved a term, a stale answer moved a follower's
//! progress, an append committed past what it carried. These rules judge
//! every step of every node, on every seed, from the node's public
//! accessors before and after the step, the input and the actions.
//!
//! The rules, one per [`Rule`], are tabled in `sim/README.md` (section
//! "Step rules": the rule, the input it judges, what may change and when;
//! a test keeps the table listing every rule).
//!
//! Every rule compares a few integers per step (the progress of a
//! leader's followers is copied into a buffer kept between steps); the
//! log rules walk only the entries the step wrote. The checks are
//! sound for a correct core on any schedule: each is the protocol's own
//! rule, seen from outside (see `sim/tests/bugs.rs` for the planted
//! mistakes only they catch).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

mod forwarded;
mod promises;

use forwarded::Forwarded;
use promises::{Backing, Promise, Transfers};

use crate::engine::FailureKind;
use crate::observe::{self, StepObserver};

use concord::{
    Action, AppendResponse, Entries, EntryPayload, Index, Input, LogPosition, Membership,
    MessageBody, Node, NodeId, ProgressState, ProgressView, ReadPath, Role, StorageRecovery, Term,
};

/// One rule of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `term-monotonic`.
    TermMonotonic,
    /// `term-source`.
    TermSource,
    /// `pre-vote-inert`.
    PreVoteInert,
    /// `vote-once`.
    VoteOnce,
    /// `vote-source`.
    VoteSource,
    /// `log-writers`.
    LogWriters,
    /// `log-append-matches`.
    LogAppendMatches,
    /// `log-terms`.
    LogTerms,
    /// `snapshot-install`.
    SnapshotInstall,
    /// `compaction`.
    Compaction,
    /// `commit-monotonic`.
    CommitMonotonic,
    /// `commit-follower`.
    CommitFollower,
    /// `commit-leader`.
    CommitLeader,
    /// `progress-answer`.
    ProgressAnswer,
    /// `probe-per-term`.
    ProbePerTerm,
    /// `config-in-log`.
    ConfigInLog,
    /// `read-rounds`.
    ReadRounds,
    /// `read-index`.
    ReadIndex,
    /// `lease`.
    Lease,
    /// `lease-promise`.
    LeasePromise,
    /// `vote-hold`.
    VoteHold,
    /// `read-forwarded`.
    ReadForwarded,
    /// `catch-up-order`.
    CatchUpOrder,
}

impl Rule {
    /// Every rule, in the order of the table.
    pub const ALL: [Rule; 23] = [
        Rule::TermMonotonic,
        Rule::TermSource,
        Rule::PreVoteInert,
        Rule::VoteOnce,
        Rule::VoteSource,
        Rule::LogWriters,
        Rule::LogAppendMatches,
        Rule::LogTerms,
        Rule::SnapshotInstall,
        Rule::Compaction,
        Rule::CommitMonotonic,
        Rule::CommitFollower,
        Rule::CommitLeader,
        Rule::ProgressAnswer,
        Rule::ProbePerTerm,
        Rule::ConfigInLog,
        Rule::ReadRounds,
        Rule::ReadIndex,
        Rule::Lease,
        Rule::LeasePromise,
        Rule::VoteHold,
        Rule::ReadForwarded,
        Rule::CatchUpOrder,
    ];

    /// The rule's name in the table and in failures.
    pub fn name(self) -> &'static str {
        match self {
            Rule::TermMonotonic => "term-monotonic",
            Rule::TermSource => "term-source",
            Rule::PreVoteInert => "pre-vote-inert",
            Rule::VoteOnce => "vote-once",
            Rule::VoteSource => "vote-source",
            Rule::LogWriters => "log-writers",
            Rule::LogAppendMatches => "log-append-matches",
            Rule::LogTerms => "log-terms",
            Rule::SnapshotInstall => "snapshot-install",
            Rule::Compaction => "compaction",
            Rule::CommitMonotonic => "commit-monotonic",
            Rule::CommitFollower => "commit-follower",
            Rule::CommitLeader => "commit-leader",
            Rule::ProgressAnswer => "progress-answer",
            Rule::ProbePerTerm => "probe-per-term",
            Rule::ConfigInLog => "config-in-log",
            Rule::ReadRounds => "read-rounds",
            Rule::ReadIndex => "read-index",
            Rule::Lease => "lease",
            Rule::LeasePromise => "lease-promise",
            Rule::VoteHold => "vote-hold",
            Rule::ReadForwarded => "read-forwarded",
            Rule::CatchUpOrder => "catch-up-order",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken rule: which, and what the step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Broken {
    pub(crate) rule: Rule,
    pub(crate) detail: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.detail)
    }
}

fn broken(rule: Rule, detail: String) -> Result<(), Broken> {
    Err(Broken { rule, detail })
}

/// What a step's input was, as the rules need it. Built before the input
/// moves into the node; an append keeps its entries (shared, not copied).
#[derive(Clone, Debug)]
pub(crate) enum Seen {
    Tick,
    Persisted,
    Applied,
    Snapshotted(LogPosition),
    /// A proposal of commands or host records.
    Proposal,
    Read {
        id: u64,
        path: ReadPath,
    },
    /// A membership change, a transfer, a snapshot request.
    Other,
    Message {
        from: NodeId,
        term: Term,
        body: Body,
    },
}

/// The parts of a message body the rules read.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    VoteRequest {
        pre_vote: bool,
        last_log: LogPosition,
        /// Asked for by a leadership transfer (`vote-hold` lets it pass).
        transfer: bool,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    Append {
        prev: LogPosition,
        entries: Entries,
        leader_commit: Index,
    },
    Accepted {
        match_index: Index,
        /// The leader's record it names (`Message::progress_id`).
        progress_id: u64,
    },
    Rejected {
        rejected_index: Index,
        hint_index: Index,
        hint_term: Term,
        /// The leader's record it names (`Message::progress_id`).
        progress_id: u64,
    },
    Heartbeat {
        commit: Index,
    },
    HeartbeatResponse {
        round: u64,
    },
    CommitNotice {
        last: LogPosition,
        commit: Index,
    },
    Snapshot {
        position: LogPosition,
    },
    Removed,
    CatchUp {
        prev: LogPosition,
        entries: Entries,
    },
    /// An answer to a recovering node's question (`src/storage_loss.rs`).
    RecoveryReport,
    /// A leader's answer to a forwarded read.
    ReadIndexResponse {
        request: u64,
        index: Option<Index>,
    },
    /// Snapshot answers, `TimeoutNow`, read-index requests.
    Other(&'static str),
}

impl Seen {
    pub(crate) fn of(input: &Input) -> Seen {
        match input {
            Input::Tick => Seen::Tick,
            Input::Persisted(_) => Seen::Persisted,
            Input::Applied(_) => Seen::Applied,
            Input::Snapshotted(meta) => Seen::Snapshotted(meta.position),
            Input::Propose(_) | Input::ProposeBatch(_) | Input::ProposeHost(_) => Seen::Proposal,
            Input::Read { id, path } => Seen::Read {
                id: *id,
                path: *path,
            },
            Input::RequestSnapshot | Input::ChangeMembership(_) | Input::TransferLeadership(_) => {
                Seen::Other
            }
            Input::Receive(message) => Seen::Message {
                from: message.from,
                term: message.term,
                body: match &message.body {
                    MessageBody::RequestVote {
                        pre_vote,
                        last_log,
                        transfer,
                    } => Body::VoteRequest {
                        pre_vote: *pre_vote,
                        last_log: *last_log,
                        transfer: *transfer,
                    },
                    MessageBody::RequestVoteResponse { pre_vote, granted } => Body::VoteResponse {
                        pre_vote: *pre_vote,
                        granted: *granted,
                    },
                    MessageBody::AppendEntries {
                        prev,
                        entries,
                        leader_commit,
                    } => Body::Append {
                        prev: *prev,
                        entries: entries.clone(),
                        leader_commit: *leader_commit,
                    },
                    MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                        match_index,
                    }) => Body::Accepted {
                        match_index: *match_index,
                        progress_id: message.progress_id,
                    },
                    MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                        rejected_index,
                        hint_index,
                        hint_term,
                    }) => Body::Rejected {
                        rejected_index: *rejected_index,
                        hint_index: *hint_index,
                        hint_term: *hint_term,
                        progress_id: message.progress_id,
                    },
                    MessageBody::Heartbeat { commit, .. } => Body::Heartbeat { commit: *commit },
                    MessageBody::HeartbeatResponse { read_round } => {
                        Body::HeartbeatResponse { round: *read_round }
                    }
                    MessageBody::CommitNotice { last, commit } => Body::CommitNotice {
                        last: *last,
                        commit: *commit,
                    },
                    MessageBody::InstallSnapshot(chunk) => Body::Snapshot {
                        position: chunk.snapshot,
                    },
                    MessageBody::Removed { .. } => Body::Removed,
                    MessageBody::CandidateCatchUp { prev, entries } => Body::CatchUp {
                        prev: *prev,
                        entries: entries.clone(),
                    },
                    MessageBody::TimeoutNow => Body::Other("TimeoutNow"),
                    MessageBody::InstallSnapshotResponse { .. } => {
                        Body::Other("InstallSnapshotResponse")
                    }
                    MessageBody::ReadIndexRequest { .. } => Body::Other("ReadIndexRequest"),
                    MessageBody::RecoveryQuery { .. } => Body::Other("RecoveryQuery"),
                    MessageBody::RecoveryReport(_) => Body::RecoveryReport,
                    MessageBody::AcknowledgedEntryLost { .. } => {
                        Body::Other("AcknowledgedEntryLost")
                    }
                    MessageBody::ReadIndexResponse { request, index } => Body::ReadIndexResponse {
                        request: *request,
                        index: *index,
                    },
                },
            },
        }
    }

    /// The message's sender and term, if the input is a message.
    fn message(&self) -> Option<(NodeId, Term, &Body)> {
        match self {
            Seen::Message { from, term, body } => Some((*from, *term, body)),
            _ => None,
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Tick => f.write_str("a tick"),
            Seen::Persisted => f.write_str("an fsync report (Persisted)"),
            Seen::Applied => f.write_str("an Applied report"),
            Seen::Snapshotted(position) => write!(f, "Snapshotted at {position:?}"),
            Seen::Proposal => f.write_str("a proposal"),
            Seen::Read { id, path } => write!(f, "read {id} ({path:?})"),
            Seen::Other => f.write_str("a host request"),
            Seen::Message { from, term, body } => {
                let what = match body {
                    Body::VoteRequest {
                        pre_vote, last_log, ..
                    } => format!(
                        "{} request (last log {last_log:?})",
                        if *pre_vote { "a pre-vote" } else { "a vote" }
                    ),
                    Body::VoteResponse { pre_vote, granted } => format!(
                        "a {}vote answer (granted {granted})",
                        if *pre_vote { "pre-" } else { "" }
                    ),
                    Body::Append {
                        prev,
                        entries,
                        leader_commit,
                    } => format!(
                        "an append after {prev:?} with {} entries, commit {leader_commit}",
                        entries.len()
                    ),
                    Body::Accepted {
                        match_index,
                        progress_id,
                    } => {
                        format!("an append acceptance (match {match_index}, record {progress_id})")
                    }
                    Body::Rejected {
                        rejected_index,
                        hint_index,
                        hint_term,
                        progress_id,
                    } => format!(
                        "an append refusal (rejected {rejected_index}, hint {hint_index} term {hint_term}, record {progress_id})"
                    ),
                    Body::Heartbeat { commit } => format!("a heartbeat (commit {commit})"),
                    Body::HeartbeatResponse { round } => {
                        format!("a heartbeat answer (round {round})")
                    }
                    Body::CommitNotice { last, commit } => {
                        format!("a commit notice (last {last:?}, commit {commit})")
                    }
                    Body::Snapshot { position } => format!("a snapshot chunk of {position:?}"),
                    Body::Removed => "a Removed notice".to_string(),
                    Body::CatchUp { prev, entries } => format!(
                        "a candidate catch-up after {prev:?} with {} entries",
                        entries.len()
                    ),
                    Body::RecoveryReport => "a RecoveryReport".to_string(),
                    Body::ReadIndexResponse { request, index } => {
                        format!("a read-index answer to request {request} (index {index:?})")
                    }
                    Body::Other(name) => format!("a {name}"),
                };
                write!(f, "{what} from n{from} in term {term}")
            }
        }
    }
}

/// A node's state before a step, as the rules read it.
#[derive(Clone, Debug)]
struct Before {
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    last: LogPosition,
    base: LogPosition,
    commit: Index,
    membership_index: Index,
    /// A leader's followers, by id (empty unless leader); the buffer is
    /// kept between steps.
    progress: Vec<(NodeId, ProgressView)>,
    /// Terms of the node's log at the indices an append carries (for
    /// `log-append-matches`), `None` where the log held no entry; the
    /// buffer is kept between steps.
    append_terms: Vec<Option<Term>>,
}

impl Default for Before {
    fn default() -> Self {
        Before {
            role: Role::Follower,
            term: 0,
            vote: None,
            leader: None,
            last: LogPosition::ZERO,
            base: LogPosition::ZERO,
            commit: 0,
            membership_index: 0,
            progress: Vec::new(),
            append_terms: Vec::new(),
        }
    }
}

/// A read that arrived at a leader, as the read rules track it.
#[derive(Clone, Debug)]
struct TrackedRead {
    /// The commit index when it arrived.
    commit: Index,
    /// The first round sent after it arrived.
    round: u64,
    /// A lease held (by the host's count) when it arrived.
    lease: bool,
    /// A quorum answered `round` or later (by the host's count).
    confirmed: bool,
    /// For a lease read: why, when it arrived, the voters' promises did
    /// not back the lease (`lease-promise`), if they did not.
    unbacked: Option<String>,
}

/// What the rules keep of one node between steps.
#[derive(Clone, Debug, Default)]
struct NodeRules {
    before: Before,
    /// The highest index this node accepted in an append answer, by the
    /// term the answer names, for the newest [`ACKED_TERMS_MAX`] terms
    /// (kept across restarts: an acknowledged entry is durable, though
    /// the term it was acknowledged in may not be, so a node may come
    /// back in an older term and hear that term's leader again).
    acked: BTreeMap<Term, Index>,
    /// Ticks stepped in this incarnation (the node's clock).
    ticks: u64,
    /// As leader: the term, and the tick each round of it was sent at,
    /// from `rounds_first` on.
    rounds_term: Term,
    rounds_first: u64,
    rounds_sent_ticks: VecDeque<u64>,
    /// As leader: the highest round each follower answered in
    /// `rounds_term`.
    rounds_answered: BTreeMap<NodeId, u64>,
    /// Reads that arrived while leading, by read id; lost at a restart.
    reads: BTreeMap<u64, TrackedRead>,
    /// The highest term of the recovery reports this incarnation heard
    /// (a node recovering from lost storage moves to the highest term its
    /// peers report, `src/storage_loss.rs`).
    reported_term_max: Term,
    /// The node's clock as the promise rules count it: its ticks in this
    /// incarnation, or the clock its host gave at its last step
    /// ([`Rules::set_clock`]).
    clock_ticks: u64,
    /// Its promise not to vote for another leader (`vote-hold`), kept
    /// across restarts.
    promise: Option<Promise>,
    /// A promise of a later term than its own, set aside when a message
    /// of an older leader made a new one: only a node whose storage was
    /// lost goes back in term, and the core's hold after such a start
    /// still keeps the earlier promise (the new leader's message restarts
    /// the hold; it does not end it).
    carried: Option<Promise>,
    /// Its forwarded reads, requests and answers (`read-forwarded`).
    forwarded: Forwarded,
    /// The term it leads after its last step, if it leads (none once it
    /// crashed).
    leading_term: Option<Term>,
    /// It restarted and has not stepped since.
    restarted: bool,
    /// It lost its storage and has not stepped since: the promises it made
    /// were durable when made, so they outlive the term it lost.
    storage_lost: bool,
}

/// Rounds remembered per leader, as the core remembers them.
const ROUNDS_REMEMBERED_MAX: usize = 4096;

/// Terms whose acknowledgements are remembered per node; a heartbeat of
/// an older term is not judged.
const ACKED_TERMS_MAX: usize = 256;

/// The rules' state for every node of a run (of one group, in the
/// multi-group simulator).
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    nodes: Vec<NodeRules>,
    /// The leaders that started a transfer, by term (`lease-promise`,
    /// `vote-hold`).
    transfers: Transfers,
    /// The nodes' clocks are given by the host ([`Rules::set_clock`])
    /// rather than counted from the ticks each node takes.
    host_clocks: bool,
    /// The input of the step under way, between
    /// [`StepObserver::before`] and [`StepObserver::after`].
    seen: Option<Seen>,
}

impl StepObserver for Rules {
    #[inline]
    fn before(&mut self, index: usize, node: &Node, input: &Input) {
        let seen = Seen::of(input);
        self.read_before(index, node, &seen);
        self.seen = Some(seen);
    }

    #[inline]
    fn after(
        &mut self,
        index: usize,
        node: &Node,
        actions: &[Action],
    ) -> Result<(), observe::Broken> {
        let Some(seen) = self.seen.take() else {
            return Ok(());
        };
        self.check(index, node, &seen, actions)
            .map_err(|broken| observe::Broken {
                kind: FailureKind::StepRule,
                message: broken.to_string(),
            })
    }
}

impl Rules {
    pub(crate) fn new(nodes: usize) -> Rules {
        Rules {
            nodes: vec![NodeRules::default(); nodes],
            transfers: Transfers::default(),
            host_clocks: false,
            seen: None,
        }
    }

    /// Rules whose nodes' clocks the host gives ([`Rules::set_clock`]):
    /// the multi-group simulator, where a group's node is not ticked while
    /// it sleeps but the process holding its promises keeps time.
    pub(crate) fn with_host_clocks(nodes: usize) -> Rules {
        Rules {
            host_clocks: true,
            ..Rules::new(nodes)
        }
    }

    /// Node `index`'s clock now reads `clock_ticks` (with host clocks).
    pub(crate) fn set_clock(&mut self, index: usize, clock_ticks: u64) {
        if self.host_clocks {
            self.nodes[index].clock_ticks = clock_ticks;
        }
    }

    /// A host joined the run (a fresh node after a forced recovery).
    pub(crate) fn add_node(&mut self) {
        self.nodes.push(NodeRules::default());
    }

    /// Node `index` restarted: its clock and reads start afresh; its
    /// promise runs on for the ticks it had left (the time it was down
    /// does not count: its clock did not run).
    pub(crate) fn on_restart(&mut self, index: usize) {
        let rules = &mut self.nodes[index];
        let clock = rules.clock_ticks;
        for promise in [&mut rules.promise, &mut rules.carried]
            .into_iter()
            .flatten()
        {
            promise.end_ticks = promise.end_ticks.saturating_sub(clock);
        }
        rules.clock_ticks = 0;
        rules.restarted = true;
        rules.leading_term = None;
        rules.forwarded.clear();
        rules.ticks = 0;
        rules.reads.clear();
        rules.rounds_term = 0;
        rules.rounds_sent_ticks.clear();
        rules.rounds_answered.clear();
        rules.reported_term_max = 0;
    }

    /// Node `index` left the group (its replica and records deleted) or
    /// joins it afresh, empty: nothing the earlier replica promised,
    /// acknowledged or read binds it. Its clock keeps running.
    pub(crate) fn forget_node(&mut self, index: usize) {
        let clock_ticks = self.nodes[index].clock_ticks;
        self.nodes[index] = NodeRules {
            clock_ticks,
            ..NodeRules::default()
        };
    }

    /// Node `index` lost its storage (the disk-loss fault): what it
    /// acknowledged is gone with it.
    pub(crate) fn on_storage_loss(&mut self, index: usize) {
        self.nodes[index].acked.clear();
        self.nodes[index].storage_lost = true;
    }

    /// Reads node `index` before a step with input `seen`.
    fn read_before(&mut self, index: usize, node: &Node, seen: &Seen) {
        let before = &mut self.nodes[index].before;
        before.role = node.role();
        before.term = node.term();
        before.vote = node.voted_for();
        before.leader = node.leader();
        before.last = node.last_position();
        before.base = node.log_base();
        before.commit = node.commit_index();
        before.membership_index = node.membership_index();
        before.progress.clear();
        if before.role == Role::Leader {
            before.progress.extend(node.progress_all());
        }
        before.append_terms.clear();
        if let Seen::Message {
            body: Body::Append { entries, .. } | Body::CatchUp { entries, .. },
            ..
        } = seen
        {
            before
                .append_terms
                .extend(entries.iter().map(|entry| node.term_at(entry.index)));
        }
    }

    /// Checks the step of node `index` that took `seen` and emitted
    /// `actions`, now that `node` is in its state after the step.
    fn check(
        &mut self,
        index: usize,
        node: &Node,
        seen: &Seen,
        actions: &[Action],
    ) -> Result<(), Broken> {
        let host_clocks = self.host_clocks;
        let rules = &mut self.nodes[index];
        let storage_lost = std::mem::take(&mut rules.storage_lost);
        if std::mem::take(&mut rules.restarted) {
            // A promise of a term the node did not recover was never
            // counted: a heartbeat answer confirms a round only once its
            // term is durable. (The core holds its votes after a restart
            // only if it recovered a term, or if it recovers from lost
            // storage.) A node whose disk was lost did make its term
            // durable: the promise stands.
            if !storage_lost {
                let term = rules.before.term;
                for promise in [&mut rules.promise, &mut rules.carried] {
                    if promise.is_some_and(|promise| promise.term > term) {
                        *promise = None;
                    }
                }
            }
        }
        if matches!(seen, Seen::Tick) {
            rules.ticks += 1;
            if !host_clocks {
                rules.clock_ticks = rules.ticks;
            }
        }
        if let Seen::Message {
            term,
            body: Body::RecoveryReport,
            ..
        } = seen
        {
            rules.reported_term_max = rules.reported_term_max.max(*term);
        }
        let before = &rules.before;
        check_term_and_vote(before, node, seen, rules.reported_term_max)?;
        let written = check_log(before, node, seen, actions)?;
        check_commit(before, node, seen, &rules.acked)?;
        if before.role == Role::Leader && (node.role(), node.term()) == (Role::Leader, before.term)
        {
            check_progress(before, node, seen, actions)?;
        }
        check_configuration(before, node, seen, written)?;
        let vote_before = (before.term, before.vote);
        rules.note_acks(actions);
        rules.leading_term = (node.role() == Role::Leader).then_some(node.term());
        let (promises_held, clock_ticks) = ([rules.promise, rules.carried], rules.clock_ticks);
        let nodes = &self.nodes;
        let leads = |leader: NodeId, term: Term| {
            nodes
                .get((leader as usize).wrapping_sub(1))
                .is_some_and(|rules| rules.leading_term == Some(term))
        };
        // A leadership transfer's election passes every promise (the
        // voters grant its requests inside their leader lease, and its
        // candidate campaigns on `TimeoutNow`): the transferring leader
        // voided its own promises, and a promise to an older leader is
        // judged at the voters that elected the transferring one.
        let transfer_vote = matches!(
            seen.message(),
            Some((
                _,
                _,
                Body::VoteRequest { transfer: true, .. } | Body::Other("TimeoutNow")
            ))
        );
        for promise in promises_held.into_iter().flatten() {
            if let Some(detail) = promises::check_vote_hold(
                node,
                vote_before,
                transfer_vote,
                Some(promise),
                &self.transfers,
                clock_ticks,
                leads,
            ) {
                return broken(Rule::VoteHold, detail);
            }
        }
        let rules = &mut self.nodes[index];
        rules.note_promise(node, seen);
        let leading_before = rules.before.role == Role::Leader;
        let read = match seen {
            Seen::Read { id, path } => Some((*id, *path)),
            _ => None,
        };
        let answer = match seen.message() {
            Some((_, _, Body::ReadIndexResponse { request, index })) => Some((*request, *index)),
            _ => None,
        };
        rules.forwarded.on_input(leading_before, read, answer);
        if let Some(detail) = rules.forwarded.on_actions(actions) {
            return broken(Rule::ReadForwarded, detail);
        }
        if promises::transfer_started(node, actions) {
            self.transfers.note(node.term(), node.id());
        }
        let unbacked = match seen {
            Seen::Read {
                path: ReadPath::Lease,
                ..
            } => self.lease_unbacked(index, node),
            _ => None,
        };
        self.nodes[index].check_reads(node, seen, actions, unbacked)
    }

    /// `lease-promise` for a lease read arriving at node `index` in this
    /// step: why the voters' promises do not back the lease it holds by
    /// the host's count, if they do not (`None` too when it holds no
    /// lease: the `lease` rule judges that).
    fn lease_unbacked(&self, index: usize, node: &Node) -> Option<String> {
        let rules = &self.nodes[index];
        let (term, me) = (node.term(), node.id());
        let before = &rules.before;
        if before.role != Role::Leader || before.term != term || rules.rounds_term != term {
            return None;
        }
        let membership = node
            .membership_at(before.membership_index)
            .unwrap_or(node.membership());
        if sole_voter_of(membership, me) {
            return None;
        }
        let lease_left_ticks = rules.lease_left_ticks(node)?;
        if !membership.is_joint()
            && membership.voters.len() == 1
            && !membership.voters.contains(&me)
        {
            return Some(format!(
                "served it under a lease with {lease_left_ticks} ticks to run in term {term}, leading a configuration whose only voter, n{}, is another node: a lone voter campaigns at its first tick and promises no one anything",
                membership.voters.first().copied().unwrap_or(0)
            ));
        }
        if self.transfers.started(term, me) {
            return Some(format!(
                "served it under a lease with {lease_left_ticks} ticks to run in term {term}, in which it started a leadership transfer: the transfer's election sets every voter's promise aside"
            ));
        }
        let backing: Vec<Backing> = membership
            .voters
            .iter()
            .chain(membership.voters_outgoing.iter())
            .filter(|id| **id != me)
            .map(|id| {
                let left_ticks = self
                    .nodes
                    .get((*id as usize).wrapping_sub(1))
                    .and_then(|voter| {
                        [voter.promise, voter.carried]
                            .into_iter()
                            .flatten()
                            .filter(|promise| promise.term == term && promise.leader == me)
                            .map(|promise| promise.end_ticks.saturating_sub(voter.clock_ticks))
                            .max()
                    })
                    .unwrap_or(0);
                Backing {
                    id: *id,
                    left_ticks,
                }
            })
            .collect();
        promises::check_lease_backed(
            me,
            [&membership.voters, &membership.voters_outgoing],
            &backing,
            lease_left_ticks,
        )
    }
}

/// `term-monotonic`, `term-source`, `pre-vote-inert`, `vote-once`,
/// `vote-source`.
fn check_term_and_vote(
    before: &Before,
    node: &Node,
    seen: &Seen,
    reported_term_max: Term,
) -> Result<(), Broken> {
    let (term, vote, role) = (node.term(), node.voted_for(), node.role());
    let me = node.id();
    if term < before.term {
        return broken(
            Rule::TermMonotonic,
            format!("the term went from {} to {term} on {seen}", before.term),
        );
    }
    let message = seen.message();
    if let Some((_, _, Body::VoteRequest { pre_vote: true, .. })) = message {
        let was = (
            before.role,
            before.term,
            before.vote,
            before.last,
            before.commit,
        );
        let is = (role, term, vote, node.last_position(), node.commit_index());
        if was != is {
            return broken(
                Rule::PreVoteInert,
                format!(
                    "on {seen}, (role, term, vote, last entry, commit) went from {was:?} to {is:?}: a pre-vote request changes nothing but may be answered"
                ),
            );
        }
        return Ok(());
    }
    let campaigned = matches!(role, Role::Candidate | Role::Leader) && vote == Some(me);
    if term > before.term {
        let from_message = message.is_some_and(|(_, message_term, body)| {
            let moves = !matches!(
                body,
                Body::Removed
                    | Body::VoteResponse {
                        pre_vote: true,
                        granted: true
                    }
            );
            moves
                && message_term > before.term
                && (term == message_term
                    || (campaigned
                        && term == message_term + 1
                        && matches!(body, Body::Other("TimeoutNow"))))
        });
        // An election starts on a tick (a timeout), a won pre-vote, or a
        // TimeoutNow from the leader of the node's term (or of a newer
        // term, which it then follows).
        let starts = match message {
            None => matches!(seen, Seen::Tick),
            Some((
                _,
                _,
                Body::VoteResponse {
                    pre_vote: true,
                    granted: true,
                },
            )) => true,
            Some((from, message_term, Body::Other("TimeoutNow"))) => {
                message_term > before.term || before.leader == Some(from)
            }
            Some(_) => false,
        };
        let election = campaigned && term == before.term + 1 && starts;
        // A node recovering from lost storage, told enough, moves to the
        // highest term it was told (it may have voted in any term up to
        // it before it lost its storage).
        let recovery = matches!(message, Some((_, _, Body::RecoveryReport)))
            && term <= reported_term_max
            && vote.is_none()
            && role == Role::Follower;
        if !from_message && !election && !recovery {
            return broken(
                Rule::TermSource,
                format!(
                    "the term went from {} to {term} (ending as {role:?} voting for {vote:?}) on {seen}: a term rises only to a message's higher term, or by one when the node campaigns on a tick, a won pre-vote or a TimeoutNow from its leader",
                    before.term
                ),
            );
        }
    }
    if term == before.term && before.vote.is_some() && vote != before.vote {
        return broken(
            Rule::VoteOnce,
            format!(
                "the vote of term {term} went from {:?} to {vote:?} on {seen}: a vote once cast stands for the whole term",
                before.vote
            ),
        );
    }
    let Some(candidate) = vote else {
        return Ok(());
    };
    if (term, vote) == (before.term, before.vote) {
        return Ok(());
    }
    let valid = if candidate == me {
        campaigned
    } else {
        matches!(
            message,
            Some((
                from,
                message_term,
                Body::VoteRequest {
                    pre_vote: false,
                    last_log,
                    ..
                },
            ))
                if from == candidate && message_term == term && last_log.is_up_to_date_with(&before.last)
        )
    };
    if !valid {
        return broken(
            Rule::VoteSource,
            format!(
                "ended term {term} as {role:?} voting for n{candidate} (it began in term {} voting for {:?}, last entry {:?}) on {seen}: a node votes for itself only when it campaigns, for another only on that node's vote request of the term whose log is at least as up to date",
                before.term, before.vote, before.last
            ),
        );
    }
    Ok(())
}

/// The part of the log a step wrote: `from..=last` (empty when `from >
/// last`), with the term of the entry before `from`.
#[derive(Clone, Copy, Debug)]
struct Written {
    from: Index,
    previous_term: Term,
    /// A snapshot was installed (the whole log after the base is new).
    installed: bool,
    /// A truncation cut the log after this index.
    truncated_after: Option<Index>,
}

/// `log-writers`, `log-append-matches`, `log-terms`, `snapshot-install`,
/// `compaction`. Returns what the step wrote.
fn check_log(
    before: &Before,
    node: &Node,
    seen: &Seen,
    actions: &[Action],
) -> Result<Written, Broken> {
    let mut truncated_after: Option<Index> = None;
    let mut installed = None;
    for action in actions {
        match action {
            Action::Persist {
                truncate_after: Some(at),
                ..
            } => truncated_after = Some(truncated_after.map_or(*at, |seen| seen.min(*at))),
            Action::PersistSnapshot { snapshot, .. } => installed = Some(snapshot.position),
            _ => {}
        }
    }
    let (last, base, term) = (node.last_position(), node.log_base(), node.term());
    let term_of = |index: Index| {
        if index == base.index {
            Some(base.term)
        } else {
            node.term_at(index)
        }
    };
    if let Some(position) = installed {
        if base != position || node.commit_index() < position.index {
            return Err(Broken {
                rule: Rule::SnapshotInstall,
                detail: format!(
                    "installed the snapshot at {position:?} on {seen} but ended with base {base:?} and commit index {}: the log continues from the snapshot, which is committed",
                    node.commit_index()
                ),
            });
        }
    }
    if let Seen::Snapshotted(position) = seen {
        let was = (before.term, before.vote, before.commit, before.last);
        let is = (term, node.voted_for(), node.commit_index(), last);
        if base.index > position.index.max(before.base.index)
            || base.index < before.base.index
            || was != is
        {
            return Err(Broken {
                rule: Rule::Compaction,
                detail: format!(
                    "on {seen}, the base went from {:?} to {base:?} and (term, vote, commit, last entry) from {was:?} to {is:?}: compaction moves the base up to the snapshot at most and changes nothing else",
                    before.base
                ),
            });
        }
    }
    let from = match (installed, truncated_after) {
        (Some(position), _) => position.index + 1,
        (None, Some(at)) => at + 1,
        (None, None) => before.last.index + 1,
    };
    let written = Written {
        from,
        previous_term: if installed.is_some() {
            base.term
        } else {
            term_of(from - 1).unwrap_or(0)
        },
        installed: installed.is_some(),
        truncated_after,
    };
    let wrote = last.index >= from || truncated_after.is_some() || installed.is_some();
    if !wrote {
        return Ok(written);
    }
    // log-writers
    let leader_traffic = seen.message().filter(|(from_node, message_term, body)| {
        matches!(body, Body::Append { .. } | Body::Snapshot { .. })
            && *message_term == term
            && node.leader() == Some(*from_node)
    });
    // A (pre-)candidate takes a refusing peer's newer entries only if
    // they leave its log strictly more up to date.
    let catch_up = seen.message().filter(|(_, _, body)| {
        matches!(body, Body::CatchUp { .. })
            && matches!(before.role, Role::PreCandidate | Role::Candidate)
    });
    match node.role() {
        Role::Follower if leader_traffic.is_some() => {}
        // It ends its election: a follower of the same term, no leader.
        Role::Follower if catch_up.is_some() => {
            let newer = (last.term, last.index) > (before.last.term, before.last.index);
            if !newer {
                return Err(Broken {
                    rule: Rule::CatchUpOrder,
                    detail: format!(
                        "as {:?} of term {} took {seen}, moving its last entry from {:?} to {last:?}: a catch-up is taken only where it leaves the log more up to date by Raft's order (the last entry's term first, then its index)",
                        before.role, before.term, before.last
                    ),
                });
            }
            if installed.is_some() || term != before.term || node.leader().is_some() {
                return Err(Broken {
                    rule: Rule::LogWriters,
                    detail: format!(
                        "as {:?} of term {} took {seen}, moving its last entry from {:?} to {last:?} and ending in term {term} (leader {:?}): a candidate takes a catch-up only where it leaves its log more up to date, without a snapshot or a new term",
                        before.role,
                        before.term,
                        before.last,
                        node.leader()
                    ),
                });
            }
        }
        Role::Leader if installed.is_none() && truncated_after.is_none() => {
            for index in from..=last.index {
                let Some(entry) = node.entry(index) else {
                    continue;
                };
                let own_kind = match entry.payload {
                    EntryPayload::Command(_) | EntryPayload::Host(_) => {
                        matches!(seen, Seen::Proposal)
                    }
                    _ => true,
                };
                if entry.term != term || !own_kind {
                    return Err(Broken {
                        rule: Rule::LogWriters,
                        detail: format!(
                            "as leader of term {term} wrote entry {index} of term {} ({}) on {seen}: a leader appends entries of its own term, commands and host records only on a proposal",
                            entry.term,
                            payload_kind(&entry.payload)
                        ),
                    });
                }
            }
        }
        role => {
            return Err(Broken {
                rule: Rule::LogWriters,
                detail: format!(
                    "ended as {role:?} of term {term} (leader {:?}) after writing its log from index {from} (truncated after {truncated_after:?}, snapshot installed {installed:?}) on {seen}: a follower's log changes only on an append or snapshot from its leader of the term, a leader's only by appending",
                    node.leader()
                ),
            });
        }
    }
    // log-terms
    let mut previous = written.previous_term;
    for index in from..=last.index {
        let Some(entry_term) = node.term_at(index) else {
            break;
        };
        if entry_term < previous || entry_term > term {
            return Err(Broken {
                rule: if installed.is_some() {
                    Rule::SnapshotInstall
                } else {
                    Rule::LogTerms
                },
                detail: format!(
                    "after {seen}, entry {index} has term {entry_term}, after term {previous} (node term {term}, base {base:?}): terms along a log never decrease and never pass the node's term"
                ),
            });
        }
        previous = entry_term;
    }
    // log-append-matches
    if let Some((_, _, Body::Append { prev, entries, .. } | Body::CatchUp { prev, entries })) =
        leader_traffic.or(catch_up)
    {
        if installed.is_none() {
            check_append_matches(before, node, seen, *prev, entries, &written)?;
        }
    }
    Ok(written)
}

fn payload_kind(payload: &EntryPayload) -> &'static str {
    match payload {
        EntryPayload::Noop => "a no-op",
        EntryPayload::Command(_) => "a command",
        EntryPayload::Host(_) => "a host record",
        EntryPayload::ForcedMembership(_) => "a forced configuration",
        _ => "a configuration",
    }
}

/// `log-append-matches`, for a follower's step on an append that wrote
/// its log.
fn check_append_matches(
    before: &Before,
    node: &Node,
    seen: &Seen,
    prev: LogPosition,
    entries: &Entries,
    written: &Written,
) -> Result<(), Broken> {
    let last = node.last_index();
    let message_term = |index: Index| -> Option<Term> {
        let offset = index.checked_sub(prev.index + 1)?;
        entries.get(offset as usize).map(|entry| entry.term)
    };
    for index in written.from..=last {
        if message_term(index) != node.term_at(index) {
            return broken(
                Rule::LogAppendMatches,
                format!(
                    "wrote entry {index} of term {:?} on {seen}, which carries term {:?} there: a follower writes exactly the append's entries",
                    node.term_at(index),
                    message_term(index)
                ),
            );
        }
    }
    let Some(at) = written.truncated_after else {
        return Ok(());
    };
    let before_term = |index: Index| -> Option<Term> {
        let offset = index.checked_sub(prev.index + 1)?;
        before.append_terms.get(offset as usize).copied().flatten()
    };
    let conflicts = message_term(at + 1).is_some()
        && before_term(at + 1).is_some()
        && before_term(at + 1) != message_term(at + 1);
    let agreed_below = (prev.index + 1..=at)
        .all(|index| before_term(index).is_none_or(|t| Some(t) == message_term(index)));
    if at < before.commit || !conflicts || !agreed_below {
        return broken(
            Rule::LogAppendMatches,
            format!(
                "truncated its log after index {at} (commit index {}, entry {} of term {:?}) on {seen}, which carries term {:?} there: a follower cuts its log only above the commit index, at the first entry that conflicts with the append",
                before.commit,
                at + 1,
                before_term(at + 1),
                message_term(at + 1)
            ),
        );
    }
    Ok(())
}

/// `commit-monotonic`, `commit-follower`, `commit-leader`.
fn check_commit(
    before: &Before,
    node: &Node,
    seen: &Seen,
    acked: &BTreeMap<Term, Index>,
) -> Result<(), Broken> {
    let (commit, term, role) = (node.commit_index(), node.term(), node.role());
    if commit < before.commit || commit > node.last_index() {
        return broken(
            Rule::CommitMonotonic,
            format!(
                "the commit index went from {} to {commit} (last index {}) on {seen}",
                before.commit,
                node.last_index()
            ),
        );
    }
    if commit == before.commit {
        return Ok(());
    }
    if before.role == Role::Leader && before.term == term && role != Role::Leader {
        // A leader that committed and then stepped down in the same step
        // (its new configuration, now committed, names it no voter): its
        // progress is gone, so only the evidence is judged.
        let evidence = matches!(seen, Seen::Persisted)
            || matches!(
                seen.message(),
                Some((
                    _,
                    _,
                    Body::Accepted { .. }
                        | Body::HeartbeatResponse { .. }
                        | Body::Other("InstallSnapshotResponse")
                ))
            );
        if evidence && node.term_at(commit) == Some(term) {
            return Ok(());
        }
        return broken(
            Rule::CommitLeader,
            format!(
                "as leader of term {term} moved the commit index from {} to {commit} on {seen} and stepped down: a leader commits entries of its own term, on an fsync report or a follower's answer",
                before.commit
            ),
        );
    }
    if role == Role::Leader {
        if before.role != Role::Leader || before.term != term {
            return broken(
                Rule::CommitLeader,
                format!(
                    "became leader of term {term} and moved the commit index from {} to {commit} in one step ({seen}): a new leader commits only once its own entry is held by a quorum",
                    before.commit
                ),
            );
        }
        return check_leader_commit(before, node, seen);
    }
    // A follower (or a deposed leader following now).
    let message = seen.message().filter(|(from, message_term, _)| {
        *message_term == term && node.leader() == Some(*from) && role == Role::Follower
    });
    let limit = match message {
        Some((
            _,
            _,
            Body::Append {
                prev,
                entries,
                leader_commit,
            },
        )) => Some((
            (*leader_commit).min(prev.index + entries.len() as Index),
            "the append's commit and its last entry",
        )),
        Some((_, _, Body::CommitNotice { last, commit })) => {
            let holds = node.term_at(last.index) == Some(last.term) || node.log_base() == *last;
            holds.then_some((*commit, "the notice's commit (its last entry held)"))
        }
        Some((_, _, Body::Heartbeat { commit })) => {
            let forgotten = acked.len() == ACKED_TERMS_MAX
                && acked
                    .first_key_value()
                    .is_some_and(|(oldest, _)| term < *oldest);
            let acknowledged = if forgotten {
                Index::MAX
            } else {
                acked.get(&term).copied().unwrap_or(0)
            };
            // A node recovering from lost storage (or restarted while it
            // recovers) may hold entries of the term it has not
            // acknowledged yet: an entry of the leader's term is the
            // leader's (log matching), so the heartbeat's commit covers
            // it up to there (`handle_heartbeat`).
            let own_term_held = (*commit).min(node.last_index());
            let own_term = node.storage_recovery().is_recovering()
                && holds_entry_of_term(node, own_term_held, term);
            Some(if own_term {
                (
                    own_term_held,
                    "the heartbeat's commit and the entries of the leader's term this recovering node holds",
                )
            } else {
                (
                    (*commit).min(acknowledged.max(before.commit)),
                    "the heartbeat's commit and the entries this node acknowledged to the leader of the term",
                )
            })
        }
        Some((_, _, Body::Snapshot { position })) => {
            Some((position.index, "the snapshot's last entry"))
        }
        _ => None,
    };
    match limit {
        Some((limit, _)) if commit <= limit => Ok(()),
        Some((limit, what)) => broken(
            Rule::CommitFollower,
            format!(
                "as {role:?} of term {term} moved the commit index from {} to {commit} on {seen}, past {limit} ({what})",
                before.commit
            ),
        ),
        None => broken(
            Rule::CommitFollower,
            format!(
                "as {role:?} of term {term} (leader {:?}) moved the commit index from {} to {commit} on {seen}: a follower commits only on an append, commit notice, heartbeat or snapshot from the leader of its term",
                node.leader(),
                before.commit
            ),
        ),
    }
}

/// Whether `node` holds an entry of `term` at `index`.
fn holds_entry_of_term(node: &Node, index: Index, term: Term) -> bool {
    node.term_at(index) == Some(term)
}

/// `commit-leader` for a leader of one term throughout the step whose
/// commit index moved.
fn check_leader_commit(before: &Before, node: &Node, seen: &Seen) -> Result<(), Broken> {
    let (commit, term) = (node.commit_index(), node.term());
    if node.term_at(commit) != Some(term) {
        return broken(
            Rule::CommitLeader,
            format!(
                "as leader of term {term} moved the commit index from {} to {commit}, an entry of term {:?}, on {seen}: a leader commits by counting only entries of its own term",
                before.commit,
                node.term_at(commit)
            ),
        );
    }
    let me = node.id();
    let held = |id: NodeId| {
        if id == me {
            node.persisted_index()
        } else {
            node.progress(id).map_or(0, |progress| progress.match_index)
        }
    };
    let quorum_holds = |membership: &Membership| {
        [&membership.voters, &membership.voters_outgoing]
            .into_iter()
            .filter(|voters| !voters.is_empty())
            .all(|voters| {
                voters.iter().filter(|id| held(**id) >= commit).count() > voters.len() / 2
            })
    };
    // The configuration in force before the step or after it (a leader
    // leaving a joint configuration appends the new one after counting).
    let earlier = node.membership_at(before.membership_index);
    if quorum_holds(node.membership()) || earlier.is_some_and(quorum_holds) {
        return Ok(());
    }
    let holders: Vec<String> = node
        .membership()
        .voters
        .iter()
        .chain(node.membership().voters_outgoing.iter())
        .map(|id| format!("n{id}: {}", held(*id)))
        .collect();
    broken(
        Rule::CommitLeader,
        format!(
            "as leader of term {term} moved the commit index from {} to {commit} on {seen}, but the durable indices it knows ({}, the leader's own its durable log) put no majority of {:?} at {commit}",
            before.commit,
            holders.join(", "),
            node.membership()
        ),
    )
}

/// `progress-answer`, `probe-per-term`, for a leader of one term
/// throughout the step.
fn check_progress(
    before: &Before,
    node: &Node,
    seen: &Seen,
    actions: &[Action],
) -> Result<(), Broken> {
    let term = node.term();
    let message = seen.message();
    for (id, was) in &before.progress {
        let Some(is) = node.progress(*id) else {
            continue;
        };
        if is.match_index > was.match_index {
            let answered = matches!(
                message,
                Some((from, message_term, Body::Accepted { match_index, progress_id }))
                    if from == *id
                        && message_term == term
                        && *match_index == is.match_index
                        && *progress_id == was.progress_id
            );
            if !answered {
                return broken(
                    Rule::ProgressAnswer,
                    format!(
                        "as leader of term {term} moved n{id}'s match index from {} to {} on {seen}: a follower's match index rises only on its acceptance of the leader's term, naming the leader's record of it ({}), to the index it names",
                        was.match_index, is.match_index, was.progress_id
                    ),
                );
            }
        } else if is.match_index < was.match_index {
            let reported = actions.iter().any(|action| {
                matches!(action, Action::FollowerLogRegressed { follower, .. } if follower == id)
            });
            if !reported {
                return broken(
                    Rule::ProgressAnswer,
                    format!(
                        "as leader of term {term} lowered n{id}'s match index from {} to {} on {seen} without reporting FollowerLogRegressed",
                        was.match_index, is.match_index
                    ),
                );
            }
        }
        if let Some((
            from,
            message_term,
            Body::Rejected {
                rejected_index,
                hint_index,
                hint_term,
                progress_id,
            },
        )) = message
        {
            // A refusal naming another record is an earlier replica's on
            // that node (removed and added back under a new record): the
            // leader drops it, so it moves no probe.
            if from == *id && message_term == term && *progress_id == was.progress_id {
                check_probe(
                    node,
                    seen,
                    was,
                    &is,
                    *rejected_index,
                    *hint_index,
                    *hint_term,
                )?;
            }
        }
    }
    Ok(())
}

/// `probe-per-term`: `was` and `is` are the refusing follower's progress
/// around the step.
fn check_probe(
    node: &Node,
    seen: &Seen,
    was: &ProgressView,
    is: &ProgressView,
    rejected_index: Index,
    hint_index: Index,
    hint_term: Term,
) -> Result<(), Broken> {
    let answers_probe = was.state == ProgressState::Probe
        && rejected_index + 1 == was.next_index
        && hint_index <= rejected_index
        && rejected_index <= node.last_index();
    let denial = was.match_index > 0
        && rejected_index == was.match_index
        && was.next_index == was.match_index + 1;
    if !answers_probe
        || denial
        || is.state != ProgressState::Probe
        || is.match_index != was.match_index
    {
        return Ok(());
    }
    let conflict = if hint_term > 0 {
        crate::engine::last_at_or_below(node, LogPosition::new(hint_index, hint_term)).0
    } else {
        hint_index
    };
    let expected = rejected_index.min(conflict + 1).max(was.match_index + 1);
    if is.next_index != expected {
        return broken(
            Rule::ProbePerTerm,
            format!(
                "as leader of term {} probes next at index {} (was {}) after {seen}; its log (base {:?}, last {:?}) puts the last entry at or below the hint with a term at most {hint_term} at {conflict}, so the next probe is at {expected}: one probe per divergent term",
                node.term(),
                is.next_index,
                was.next_index,
                node.log_base(),
                node.last_position()
            ),
        );
    }
    Ok(())
}

/// `config-in-log`.
fn check_configuration(
    before: &Before,
    node: &Node,
    seen: &Seen,
    written: Written,
) -> Result<(), Broken> {
    let index = node.membership_index();
    if index == before.membership_index || written.installed || matches!(seen, Seen::Snapshotted(_))
    {
        return Ok(());
    }
    let wrote_it = index >= written.from
        && index <= node.last_index()
        && node
            .entry(index)
            .is_some_and(|entry| entry.payload.membership().is_some());
    let truncated_it = written
        .truncated_after
        .is_some_and(|at| before.membership_index > at && index <= at);
    if wrote_it || truncated_it {
        return Ok(());
    }
    broken(
        Rule::ConfigInLog,
        format!(
            "the configuration in force moved from the entry at {} to the one at {index} on {seen}, which wrote from index {} (truncated after {:?}): a configuration takes effect when its entry is written, and only then",
            before.membership_index, written.from, written.truncated_after
        ),
    )
}

impl NodeRules {
    /// A follower that took a message from the leader of its term
    /// promises not to vote for another leader for an election timeout of
    /// its clock (`vote-hold`, `lease-promise`).
    fn note_promise(&mut self, node: &Node, seen: &Seen) {
        let Some((from, term, body)) = seen.message() else {
            return;
        };
        let leader_traffic = matches!(
            body,
            Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::CommitNotice { .. }
                | Body::Snapshot { .. }
        );
        // A node recovering from lost storage answers no leader of a term
        // it may have passed (while it waits for reports, or below the
        // highest term reported to it): no lease counts such a promise,
        // so it binds nothing (seed 9280234874 on 5 nodes).
        let answer_counts = match node.storage_recovery() {
            StorageRecovery::AwaitingReports => false,
            StorageRecovery::CatchingUp {
                term: reported_term,
                ..
            } => term >= reported_term,
            _ => true,
        };
        if leader_traffic
            && answer_counts
            && node.role() == Role::Follower
            && node.term() == term
            && node.leader() == Some(from)
        {
            let timeout_ticks = u64::from(node.config().election_timeout_min_ticks);
            if let Some(held) = self.promise.filter(|held| {
                held.term > term
                    && held.end_ticks > self.clock_ticks
                    && self.carried.is_none_or(|carried| held.term >= carried.term)
            }) {
                self.carried = Some(held);
            }
            if self.carried.is_some_and(|carried| carried.term <= term) {
                self.carried = None;
            }
            self.promise = Some(Promise {
                term,
                leader: from,
                end_ticks: self.clock_ticks + timeout_ticks,
            });
        }
    }

    /// Notes the acknowledgements the node sent.
    fn note_acks(&mut self, actions: &[Action]) {
        for action in actions {
            if let Action::Send { message, .. } = action {
                if let MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                    match_index,
                }) = message.body
                {
                    let acked = self.acked.entry(message.term).or_insert(0);
                    *acked = (*acked).max(match_index);
                    if self.acked.len() > ACKED_TERMS_MAX {
                        self.acked.pop_first();
                    }
                }
            }
        }
    }

    /// `read-rounds`, `read-index`, `lease`.
    fn check_reads(
        &mut self,
        node: &Node,
        seen: &Seen,
        actions: &[Action],
        unbacked: Option<String>,
    ) -> Result<(), Broken> {
        let leading = node.role() == Role::Leader;
        let term = node.term();
        // A new term of leadership starts its rounds afresh (the core
        // numbers them from 1 in every term).
        if leading && self.rounds_term != term {
            self.rounds_term = term;
            self.rounds_first = 1;
            self.rounds_sent_ticks.clear();
            self.rounds_answered.clear();
        }
        let was_leading = self.before.role == Role::Leader && self.before.term == term;
        // Answers of this term count before the step's own sends.
        if let Some((from, message_term, Body::HeartbeatResponse { round })) = seen.message() {
            if was_leading && message_term == term && *round > 0 {
                let answered = self.rounds_answered.entry(from).or_insert(0);
                *answered = (*answered).max(*round);
            }
        }
        let next_round = self.rounds_first + self.rounds_sent_ticks.len() as u64;
        if let Seen::Read { id, path } = seen {
            // A follower read at the leader is confirmed as a ReadIndex
            // one is.
            if was_leading {
                // A one-voter leader's rounds send nothing to see: its
                // lease is not judged.
                let sole = node
                    .membership_at(self.before.membership_index)
                    .is_some_and(|membership| sole_voter_of(membership, node.id()));
                let lease = *path == ReadPath::Lease && (sole || self.lease_holds(node));
                self.reads.insert(
                    *id,
                    TrackedRead {
                        commit: self.before.commit,
                        round: next_round,
                        lease,
                        confirmed: false,
                        unbacked,
                    },
                );
            }
        }
        if leading {
            let mut sent_round = None;
            for action in actions {
                let Action::Send { message, .. } = action else {
                    continue;
                };
                let MessageBody::Heartbeat { read_round, .. } = message.body else {
                    continue;
                };
                if sent_round == Some(read_round) {
                    continue;
                }
                let expected = self.rounds_first + self.rounds_sent_ticks.len() as u64;
                // Rounds a sole voter consumed without a message are not
                // seen: later ones may skip ahead, never back.
                if read_round < expected {
                    return broken(
                        Rule::ReadRounds,
                        format!(
                            "as leader of term {term} sent a heartbeat of round {read_round} on {seen}, after round {} of this term: every heartbeat broadcast is a new round",
                            expected - 1
                        ),
                    );
                }
                for _ in expected..read_round {
                    self.push_round(u64::MAX);
                }
                self.push_round(self.ticks);
                sent_round = Some(read_round);
            }
            self.confirm_reads(node);
        }
        for action in actions {
            let (id, index, path) = match action {
                Action::ReadReady { id, index, path } => (id, index, path),
                Action::ReadRefused { id, .. } => {
                    self.reads.remove(id);
                    continue;
                }
                _ => continue,
            };
            let Some(read) = self.reads.remove(id) else {
                continue;
            };
            if *index < read.commit {
                return broken(
                    Rule::ReadIndex,
                    format!(
                        "released read {id} ({path:?}) at index {index}, below the commit index {} it arrived at",
                        read.commit
                    ),
                );
            }
            let sole = sole_voter(node);
            match path {
                ReadPath::Lease if !read.lease && !sole => {
                    return broken(
                        Rule::Lease,
                        format!(
                            "served read {id} under its lease at index {index}, but when it arrived no quorum of {:?} had answered a round sent within the last {} ticks (answers by round: {:?})",
                            node.membership(),
                            node.config().lease_read_ticks,
                            self.rounds_answered
                        ),
                    );
                }
                ReadPath::Lease if !sole => {
                    if let Some(detail) = read.unbacked {
                        return broken(
                            Rule::LeasePromise,
                            format!("served read {id} under its lease at index {index}: {detail}"),
                        );
                    }
                }
                ReadPath::ReadIndex | ReadPath::Follower if !read.confirmed && !sole => {
                    return broken(
                        Rule::ReadIndex,
                        format!(
                            "released read {id} at index {index} on the ReadIndex path, but no quorum of {:?} answered round {} (the first sent after it arrived) or later (answers: {:?})",
                            node.membership(),
                            read.round,
                            self.rounds_answered
                        ),
                    );
                }
                _ => {}
            }
        }
        if !leading && !self.reads.is_empty() {
            // Reads not confirmed by now never will be (the core refuses
            // them); confirmed ones wait for their index to apply.
            self.reads.retain(|_, read| read.confirmed || read.lease);
        }
        Ok(())
    }

    fn push_round(&mut self, tick: u64) {
        if self.rounds_sent_ticks.len() == ROUNDS_REMEMBERED_MAX {
            self.rounds_sent_ticks.pop_front();
            self.rounds_first += 1;
        }
        self.rounds_sent_ticks.push_back(tick);
    }

    /// The highest round a quorum of each half of `membership` answered,
    /// the leader counting the latest round it sent.
    fn confirmed_round(&self, node: &Node, membership: &Membership) -> u64 {
        let latest = (self.rounds_first + self.rounds_sent_ticks.len() as u64).saturating_sub(1);
        let round_of = |id: NodeId| {
            if id == node.id() {
                latest
            } else {
                self.rounds_answered.get(&id).copied().unwrap_or(0)
            }
        };
        [&membership.voters, &membership.voters_outgoing]
            .into_iter()
            .filter(|voters| !voters.is_empty())
            .map(|voters| {
                let mut rounds: Vec<u64> = voters.iter().map(|id| round_of(*id)).collect();
                rounds.sort_unstable_by(|a, b| b.cmp(a));
                rounds[voters.len() / 2]
            })
            .min()
            .unwrap_or(0)
    }

    /// Marks the tracked reads whose round a quorum answered, under the
    /// configuration in force before or after the step.
    fn confirm_reads(&mut self, node: &Node) {
        if self.reads.values().all(|read| read.confirmed) {
            return;
        }
        let earlier = node.membership_at(self.before.membership_index);
        let sole = sole_voter_of(node.membership(), node.id())
            || earlier.is_some_and(|membership| sole_voter_of(membership, node.id()));
        // A one-voter leader confirms a read as it can serve it.
        let mut confirmed = if sole {
            u64::MAX
        } else {
            self.confirmed_round(node, node.membership())
        };
        if let Some(earlier) = earlier {
            confirmed = confirmed.max(self.confirmed_round(node, earlier));
        }
        for read in self.reads.values_mut() {
            if read.round <= confirmed {
                read.confirmed = true;
            }
        }
    }

    /// Whether, by the host's count, a quorum answered a round sent less
    /// than `lease_read_ticks` ticks ago (a bound the core's own lease
    /// never exceeds: it also waits for rounds after a transfer).
    fn lease_holds(&self, node: &Node) -> bool {
        self.lease_left_ticks(node).is_some()
    }

    /// The ticks the lease has to run by the host's count (the leader's
    /// ticks until `lease_read_ticks` after the newest round a quorum
    /// answered was sent), if it holds.
    fn lease_left_ticks(&self, node: &Node) -> Option<u64> {
        let lease_ticks = u64::from(node.config().lease_read_ticks);
        if lease_ticks == 0 {
            return None;
        }
        let membership = node
            .membership_at(self.before.membership_index)
            .unwrap_or(node.membership());
        let round = self.confirmed_round(node, membership);
        let offset = round.checked_sub(self.rounds_first)?;
        match self.rounds_sent_ticks.get(offset as usize) {
            Some(&sent) if sent != u64::MAX && self.ticks < sent + lease_ticks => {
                Some(sent + lease_ticks - self.ticks)
            }
            _ => None,
        }
    }
}

fn sole_voter(node: &Node) -> bool {
    sole_voter_of(node.membership(), node.id())
}

/// Whether `id` is the only voter of `membership`.
fn sole_voter_of(membership: &Membership, id: NodeId) -> bool {
    membership.voters_outgoing.is_empty()
        && membership.voters.len() == 1
        && membership.voters.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in the simulator's README names every rule, once.
    #[test]
    fn the_readme_table_lists_every_rule() {
        let readme = include_str!("../../README.md");
        for rule in Rule::ALL {
            let row = format!("| `{}` |", rule.name());
            assert_eq!(
                readme.lines().filter(|line| line.starts_with(&row)).count(),
                1,
                "sim/README.md's table of step rules must have one row for {rule}"
            );
        }
    }

    /// Names are unique.
    #[test]
    fn rule_names_are_unique() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|rule| rule.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
    }
}
