//! The accounting check: what a node reports to its operator agrees with
//! what it did. Operators read [`Node::stats`] and
//! [`Action::RoleChanged`]; a counter that moves wrongly or an
//! announcement that is missing is a real bug no safety check sees.
//!
//! After every step of a node (`check_step`):
//!
//! * no [`Statistics`] counter goes down (a restart starts a new node from
//!   zero, and the check compares within one step, so within one
//!   incarnation);
//! * the node's `RoleChanged` announcements are exactly its changes of
//!   (role, term): each names a pair different from the one before it, the
//!   last names the pair the node ends the step with, and a step that moves
//!   the pair announces it;
//! * the counters whose events the host sees from outside match them
//!   exactly: `elections_started` and `leader_elected` (announcements of
//!   Candidate and Leader: every election moves the term, every win the
//!   role), `follower_log_regressions` (`FollowerLogRegressed` actions),
//!   `proposals_accepted` / `proposals_refused` (the entries of
//!   `ProposalAccepted`, the count of `ProposalRefused`), `reads_refused`
//!   (`ReadRefused`), `snapshots_installed` (`RestoreSnapshot`, except on
//!   a witness, which restores nothing), `snapshots_taken` (a `Snapshotted`
//!   report that moved the node's snapshot index) and `entries_truncated`
//!   (the entries a `Persist` with `truncate_after` cuts from the log the
//!   node held before the step).
//!
//! Not exact, so checked to be monotonic and to move where their event
//! surely happened: `pre_elections_started` (moves with every announcement
//! of PreCandidate; a pre-candidate whose pre-election times out starts
//! another without a change of role or term, so nothing announces that
//! one) and `check_quorum_step_downs` (moves when a leader becomes a
//! follower of its own term on a tick, still a voter). Only monotonic: the
//! counters of
//! refused input, whose events the host does not see in an ordinary run;
//! the malformed-message fault (`crate::faults::Malformed`) hands nodes
//! such input and checks those with [`check_refusal`].
//!
//! A leader's commit index moves only in a step whose input is evidence
//! of replication: its own write reported durable, or a follower's answer.
//!
//! Also the compaction policy by bytes ([`AppliedBytes`]): a node asks for
//! a snapshot only when the entries or the bytes it applied since its
//! latest snapshot reach their threshold, the bytes measured as the core
//! does ([`Entry::size_bytes`] of each applied entry).
//!
//! Each check compares a few integers per step: no allocation unless it
//! fails.

use std::collections::VecDeque;

use concord::{
    Action, AppendResponse, Entry, Index, Input, LogPosition, Message, MessageBody, Node, NodeId,
    ProgressState, ProgressView, ProposeError, Role, Statistics, Term,
};

use super::FailureKind;
use crate::faults::MalformedMessage as Malformed;

/// One list of the counters of [`Statistics`] gives their number
/// (`COUNTERS`), their names (`NAMES`) and [`counters`], whose pattern
/// names every field: a counter added to [`Statistics`] must be added to
/// the list, and the names cannot drift from the values.
macro_rules! statistics_counters {
    ($($field:ident),* $(,)?) => {
        /// Number of counters in [`Statistics`].
        const COUNTERS: usize = [$(stringify!($field)),*].len();

        /// The names of the counters, in the order of [`counters`].
        const NAMES: [&str; COUNTERS] = [$(stringify!($field)),*];

        /// Every counter of `stats`, in the order of [`NAMES`], on the
        /// stack.
        fn counters(stats: &Statistics) -> [u64; COUNTERS] {
            let Statistics { $($field),* } = *stats;
            [$($field),*]
        }
    };
}

statistics_counters!(
    messages_from_unknown_node,
    vote_requests_from_removed,
    candidate_catch_ups_sent,
    candidate_catch_ups_taken,
    removed_notices_received,
    answers_from_removed,
    answers_from_earlier_replica,
    messages_misaddressed,
    messages_stale_term,
    messages_malformed,
    messages_index_out_of_range,
    append_conflicts_with_commit,
    appends_dropped_backpressure,
    elections_started,
    pre_elections_started,
    leader_elected,
    check_quorum_step_downs,
    transfers_started,
    proposals_accepted,
    proposals_refused,
    entries_truncated,
    follower_log_regressions,
    snapshots_taken,
    snapshot_reports_stale,
    snapshot_transfers_started,
    snapshot_chunks_sent,
    snapshot_chunks_refused,
    snapshot_checksum_mismatches,
    snapshots_installed,
    reads_read_index,
    reads_lease,
    reads_follower,
    reads_refused,
    recovery_queries_sent,
    recovery_reports_received,
    votes_refused_recovering,
);

/// What the check needs of a node from before its step: a copy of a few
/// hundred bytes, no allocation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Before {
    stats: Statistics,
    unpersisted_writes: usize,
    role: Role,
    term: Term,
    last_index: Index,
    snapshot_index: Index,
    vote: Option<NodeId>,
    commit: Index,
    /// Recovering from lost storage (not voting yet).
    recovering: bool,
}

impl Before {
    /// The counters before the step.
    pub(super) fn stats(&self) -> &Statistics {
        &self.stats
    }

    /// The role and term before the step.
    pub(super) fn role_term(&self) -> (Role, Term) {
        (self.role, self.term)
    }

    pub(super) fn of(node: &Node) -> Before {
        Before {
            stats: *node.stats(),
            unpersisted_writes: node.unpersisted_writes(),
            role: node.role(),
            term: node.term(),
            last_index: node.last_index(),
            snapshot_index: node.latest_snapshot_index(),
            vote: node.voted_for(),
            commit: node.commit_index(),
            recovering: node.storage_recovery().is_recovering(),
        }
    }
}

/// What kind of input a step had, as the checks need to know it. Built
/// once per step, before the input moves into the node.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StepInput {
    /// A `Tick`.
    pub(super) tick: bool,
    /// A `Snapshotted` report.
    pub(super) snapshotted: bool,
    /// A `Propose`, `ProposeBatch` or `ProposeHost`.
    pub(super) proposal: bool,
    /// Evidence that may commit: a `Persisted` report or a follower's
    /// answer (to an append, a heartbeat or a snapshot).
    pub(super) commit_evidence: bool,
    /// The `prev` of a delivered `AppendEntries`.
    pub(super) append_prev: Option<LogPosition>,
}

impl StepInput {
    pub(super) fn of(input: &Input) -> StepInput {
        let mut kind = StepInput::default();
        match input {
            Input::Tick => kind.tick = true,
            Input::Snapshotted(_) => kind.snapshotted = true,
            Input::Propose(_) | Input::ProposeBatch(_) | Input::ProposeHost(_) => {
                kind.proposal = true
            }
            Input::Persisted(_) => kind.commit_evidence = true,
            Input::Receive(message) => match &message.body {
                MessageBody::AppendEntries { prev, .. } => kind.append_prev = Some(*prev),
                MessageBody::AppendEntriesResponse(_)
                | MessageBody::HeartbeatResponse { .. }
                | MessageBody::InstallSnapshotResponse { .. } => kind.commit_evidence = true,
                _ => {}
            },
            _ => {}
        }
        kind
    }
}

/// Checks one step of `node` (which began as `before`, with an input of
/// kind `input`) against the `actions` it emitted. Returns whether the step
/// asked for a snapshot.
pub(super) fn check_step(
    before: &Before,
    node: &Node,
    actions: &[Action],
    input: StepInput,
) -> Result<bool, String> {
    let StepInput {
        tick,
        snapshotted,
        proposal,
        commit_evidence,
        ..
    } = input;
    let after = node.stats();
    if after != &before.stats {
        check_monotonic(&before.stats, after)?;
    }
    let seen = tally(before, actions)?;
    let now = (node.role(), node.term());
    if seen.last != now {
        return Err(format!(
            "ended the step as {:?} in term {} (it began as {:?} in term {}) but its last Action::RoleChanged named {:?} in term {}: every change of role or term must be announced, naming the new role and term (Node::announce_role)",
            now.0, now.1, before.role, before.term, seen.last.0, seen.last.1
        ));
    }
    let b = &before.stats;
    let truncated = seen
        .truncate_after
        .map_or(0, |at| before.last_index.saturating_sub(at));
    let taken = u64::from(snapshotted && node.latest_snapshot_index() > before.snapshot_index);
    // Plain comparisons on the hot path; the message is built only on a
    // mismatch.
    macro_rules! exact {
        ($field:ident, $expected:expr, $source:expr) => {
            if after.$field.wrapping_sub(b.$field) != $expected {
                return Err(count_mismatch(
                    stringify!($field),
                    b.$field,
                    after.$field,
                    $expected,
                    $source,
                ));
            }
        };
    }
    exact!(
        elections_started,
        seen.candidates,
        "Action::RoleChanged to Candidate"
    );
    exact!(
        leader_elected,
        seen.leaders,
        "Action::RoleChanged to Leader"
    );
    exact!(
        follower_log_regressions,
        seen.regressions,
        "Action::FollowerLogRegressed"
    );
    exact!(
        proposals_accepted,
        seen.accepted,
        "entries of Action::ProposalAccepted"
    );
    exact!(
        proposals_refused,
        seen.refused,
        "count of Action::ProposalRefused"
    );
    exact!(reads_refused, seen.reads_refused, "Action::ReadRefused");
    exact!(
        recovery_queries_sent,
        seen.recovery_queries,
        "Action::Send of MessageBody::RecoveryQuery"
    );
    exact!(
        entries_truncated,
        truncated,
        "entries cut by the Persist's truncate_after from the log held before the step"
    );
    exact!(
        snapshots_taken,
        taken,
        "Snapshotted reports that moved the snapshot index"
    );
    if proposal {
        check_backpressure(before, node, &seen)?;
    }
    check_commit_evidence(
        (before.role, before.term, before.commit),
        (now.0, now.1, node.commit_index()),
        commit_evidence,
    )?;
    // Counted at least once when they surely happened (a pre-campaign
    // repeated without a change of role is announced by nothing, so the
    // converse is not checked).
    if seen.pre_candidates > 0 && after.pre_elections_started == b.pre_elections_started {
        return Err(count_mismatch(
            "pre_elections_started",
            b.pre_elections_started,
            after.pre_elections_started,
            seen.pre_candidates,
            "Action::RoleChanged to PreCandidate",
        ));
    }
    // A leader that becomes a follower of its own term on a tick, still a
    // voter, stepped down by CheckQuorum: nothing else on a tick moves a
    // leader out of its role without a new term (its commit index, and so
    // a committed removal, moves only on acknowledgements and fsyncs).
    if tick
        && before.role == Role::Leader
        && now == (Role::Follower, before.term)
        && node.membership().is_voter(node.id())
        && after.check_quorum_step_downs == b.check_quorum_step_downs
    {
        return Err(count_mismatch(
            "check_quorum_step_downs",
            b.check_quorum_step_downs,
            after.check_quorum_step_downs,
            1,
            "a leader that became a follower of its own term on a tick",
        ));
    }
    // A witness restores nothing: it installs a snapshot without handing
    // its host one.
    if !node.is_witness_node() {
        exact!(
            snapshots_installed,
            seen.restores,
            "Action::RestoreSnapshot"
        );
    }
    Ok(seen.take_snapshot)
}

/// Backpressure, from outside: a proposal is accepted only within both
/// limits (`uncommitted_entries_max` entries past the commit index, fewer
/// than `unpersisted_writes_max` writes outstanding), and refused for
/// backpressure only when one of them demands it. A proposal is the whole
/// of its step's input, so the node's state before the step is the state
/// it was judged in. Membership changes are not held back (a change may be
/// what restores a stuck cluster's progress), so only proposals of
/// commands and host entries are judged.
fn check_backpressure(before: &Before, node: &Node, seen: &Tally) -> Result<(), String> {
    let config = node.config();
    let backlog = Backlog {
        uncommitted: before.last_index.saturating_sub(before.commit),
        unpersisted_writes: before.unpersisted_writes,
        uncommitted_entries_max: config.uncommitted_entries_max,
        unpersisted_writes_max: config.unpersisted_writes_max,
    };
    judge_backpressure(&backlog, seen.accepted_batch, seen.backpressure_batch)
}

/// A leader's backlog when a proposal reached it, and its two limits.
#[derive(Clone, Copy, Debug)]
struct Backlog {
    /// Entries past the commit index.
    uncommitted: u64,
    /// Writes not yet reported durable.
    unpersisted_writes: usize,
    /// `Config::uncommitted_entries_max`.
    uncommitted_entries_max: u64,
    /// `Config::unpersisted_writes_max`.
    unpersisted_writes_max: usize,
}

/// The rule of [`check_backpressure`] on plain values: `accepted` entries
/// of a `ProposalAccepted` (if any) must fit within both limits, and
/// `refused` entries of a `ProposalRefused` for backpressure (if any) must
/// not.
fn judge_backpressure(
    backlog: &Backlog,
    accepted: Option<u64>,
    refused: Option<u64>,
) -> Result<(), String> {
    let &Backlog {
        uncommitted,
        unpersisted_writes,
        uncommitted_entries_max,
        unpersisted_writes_max,
    } = backlog;
    let over = |count: u64| {
        uncommitted + count > uncommitted_entries_max
            || unpersisted_writes >= unpersisted_writes_max
    };
    match (accepted, refused) {
        (Some(count), _) if over(count) => Err(format!(
            "accepted {count} proposals with {uncommitted} entries uncommitted (uncommitted_entries_max {uncommitted_entries_max}) and {unpersisted_writes} writes outstanding (unpersisted_writes_max {unpersisted_writes_max}): a proposal past either limit must be refused for backpressure"
        )),
        (_, Some(count)) if !over(count) => Err(format!(
            "refused {count} proposals for backpressure with {uncommitted} entries uncommitted (uncommitted_entries_max {uncommitted_entries_max}) and {unpersisted_writes} writes outstanding (unpersisted_writes_max {unpersisted_writes_max}): neither limit demands it"
        )),
        _ => Ok(()),
    }
}

/// A leader learns that an entry is committed only from evidence: its own
/// write becoming durable or a follower's answer ([`StepInput`]'s
/// `commit_evidence`). Nothing else (a tick, a proposal, a configuration
/// change) may move its commit. `before` and `after` are the node's
/// (role, term, commit index) around the step; a node that was not leader
/// of one term throughout the step is not judged.
fn check_commit_evidence(
    before: (Role, Term, Index),
    after: (Role, Term, Index),
    commit_evidence: bool,
) -> Result<(), String> {
    let (role, term, commit_before) = before;
    let commit = after.2;
    if commit > commit_before
        && !commit_evidence
        && role == Role::Leader
        && (after.0, after.1) == (Role::Leader, term)
    {
        return Err(format!(
            "as leader of term {term} raised its commit index from {commit_before} to {commit} in a step whose input was neither an fsync report nor a follower's answer: a leader commits on evidence only"
        ));
    }
    Ok(())
}

#[cold]
fn count_mismatch(name: &str, was: u64, is: u64, expected: u64, source: &str) -> String {
    format!(
        "Statistics::{name} went from {was} to {is} in one step, but the step's actions show {expected} ({source}): the counter must count exactly its events"
    )
}

fn check_monotonic(before: &Statistics, after: &Statistics) -> Result<(), String> {
    let (before, after) = (counters(before), counters(after));
    if before.iter().zip(&after).all(|(was, is)| is >= was) {
        return Ok(());
    }
    for ((name, was), is) in NAMES.into_iter().zip(before).zip(after) {
        if is < was {
            return Err(format!(
                "Statistics::{name} went down from {was} to {is} within one incarnation: a counter never decreases"
            ));
        }
    }
    Ok(())
}

/// What one step's actions show.
struct Tally {
    last: (Role, Term),
    pre_candidates: u64,
    candidates: u64,
    leaders: u64,
    regressions: u64,
    accepted: u64,
    refused: u64,
    reads_refused: u64,
    recovery_queries: u64,
    /// Entries of the step's `ProposalAccepted`, if any.
    accepted_batch: Option<u64>,
    /// Entries of the step's `ProposalRefused` for backpressure, if any.
    backpressure_batch: Option<u64>,
    restores: u64,
    truncate_after: Option<Index>,
    take_snapshot: bool,
}

fn tally(before: &Before, actions: &[Action]) -> Result<Tally, String> {
    let mut seen = Tally {
        last: (before.role, before.term),
        pre_candidates: 0,
        candidates: 0,
        leaders: 0,
        regressions: 0,
        accepted: 0,
        refused: 0,
        reads_refused: 0,
        recovery_queries: 0,
        accepted_batch: None,
        backpressure_batch: None,
        restores: 0,
        truncate_after: None,
        take_snapshot: false,
    };
    for action in actions {
        match action {
            Action::RoleChanged { role, term } => {
                if (*role, *term) == seen.last {
                    return Err(format!(
                        "announced Action::RoleChanged to {role:?} in term {term}, which it already was: an announcement must name a change"
                    ));
                }
                seen.last = (*role, *term);
                match role {
                    Role::PreCandidate => seen.pre_candidates += 1,
                    Role::Candidate => seen.candidates += 1,
                    Role::Leader => seen.leaders += 1,
                    _ => {}
                }
            }
            Action::FollowerLogRegressed { .. } => seen.regressions += 1,
            Action::ProposalAccepted {
                first_index,
                last_index,
                ..
            } => {
                seen.accepted += last_index + 1 - first_index;
                seen.accepted_batch = Some(last_index + 1 - first_index);
            }
            Action::ProposalRefused { count, error } => {
                seen.refused += *count as u64;
                if matches!(error, ProposeError::Backpressure) {
                    seen.backpressure_batch = Some(*count as u64);
                }
            }
            Action::ReadRefused { .. } => seen.reads_refused += 1,
            Action::Send {
                message:
                    Message {
                        body: MessageBody::RecoveryQuery { .. },
                        ..
                    },
                ..
            } => seen.recovery_queries += 1,
            Action::RestoreSnapshot { .. } => seen.restores += 1,
            Action::TakeSnapshot => seen.take_snapshot = true,
            Action::Persist {
                truncate_after: Some(at),
                ..
            } => {
                seen.truncate_after = Some(seen.truncate_after.map_or(*at, |seen| seen.min(*at)));
            }
            _ => {}
        }
    }
    Ok(seen)
}

/// The counter a malformed message must move, by exactly one, or none.
pub(super) fn refusal_counter(kind: Malformed) -> Option<&'static str> {
    match kind {
        Malformed::LeaderHearsLeader
        | Malformed::TermBeyondMax
        | Malformed::EntriesNotContiguous
        | Malformed::EntryTermAboveMessage => Some("messages_malformed"),
        Malformed::AcceptedBeyondLog | Malformed::RejectedBeyondLog | Malformed::PrevBeyondLog => {
            Some("messages_index_out_of_range")
        }
        Malformed::PrevAtLastMismatched
        | Malformed::PreVoteInOwnTerm
        | Malformed::AnswerFromRemovedSameTerm
        | Malformed::ProbeAnsweredAtMatch
        | Malformed::DuplicateAcknowledgement
        | Malformed::ProbeRefusedWithHint
        | Malformed::AppendBelowBase => None,
        Malformed::AnswerFromRemoved => Some("answers_from_removed"),
        Malformed::ContradictsCommit | Malformed::EntryContradictsCommit => {
            Some("append_conflicts_with_commit")
        }
        Malformed::StaleVoteRequest => Some("messages_stale_term"),
        Malformed::SecondLeader => Some("messages_malformed"),
        Malformed::VoteFromRemoved => Some("vote_requests_from_removed"),
        Malformed::Misaddressed => Some("messages_misaddressed"),
    }
}

/// Whether a malformed message of `kind` may be answered: a follower
/// answers an append it cannot place with a refusal, and a removed
/// candidate is told so. Every other kind is refused silently.
fn answered(kind: Malformed) -> bool {
    matches!(
        kind,
        Malformed::PrevBeyondLog
            | Malformed::PrevAtLastMismatched
            | Malformed::VoteFromRemoved
            | Malformed::ContradictsCommit
            | Malformed::StaleVoteRequest
            | Malformed::PreVoteInOwnTerm
            | Malformed::AppendBelowBase
    )
}

/// The one answer a refused message of `kind` must get, where its rule
/// names one: a vote or pre-vote request the node may not grant is
/// refused, and the refusal carries the node's own term so a candidate
/// behind it learns that term (§5.1). `term`: the node's term.
fn required_answer(kind: Malformed, handed: &Message, term: Term) -> Option<Message> {
    match (kind, &handed.body) {
        (
            Malformed::StaleVoteRequest | Malformed::PreVoteInOwnTerm,
            MessageBody::RequestVote { pre_vote, .. },
        ) => Some(Message {
            from: handed.to,
            to: handed.from,
            term,
            // Not judged: an answer echoes the record its sender's leader
            // keeps of it (`Message::progress_id`), whoever it answers.
            progress_id: 0,
            body: MessageBody::RequestVoteResponse {
                pre_vote: *pre_vote,
                granted: false,
            },
        }),
        _ => None,
    }
}

/// The first counter that did not move as one refused input should move
/// it: by exactly 1 for `expected`, by 0 for every other counter. Returns
/// its name, value before and after, and the expected move.
pub(super) fn counted_only_in(
    before: &Statistics,
    after: &Statistics,
    expected: Option<&str>,
) -> Option<(&'static str, u64, u64, u64)> {
    NAMES
        .into_iter()
        .zip(counters(before))
        .zip(counters(after))
        .map(|((name, was), is)| (name, was, is, u64::from(Some(name) == expected)))
        .find(|&(_, was, is, delta)| is.wrapping_sub(was) != delta)
}

/// Checks the step of a node handed one malformed message of `kind`: the
/// counter the message promises to move went up by exactly one, every
/// other counter stayed, term, vote, role, commit and log stayed, and the
/// node did nothing but (for the kinds that are answered) send one
/// message, the one [`required_answer`] names where it names one.
/// `handed`: the message the node was handed.
pub(super) fn check_refusal(
    kind: Malformed,
    handed: &Message,
    before: &Before,
    node: &Node,
    actions: &[Action],
) -> Result<(), String> {
    let expected = refusal_counter(kind);
    // A contradicted commit is a divergence: reported once, and every
    // read waiting is refused (counted in reads_refused) from then on.
    let diverges = matches!(
        kind,
        Malformed::ContradictsCommit | Malformed::EntryContradictsCommit
    );
    let refused_reads = actions
        .iter()
        .filter(|action| matches!(action, Action::ReadRefused { .. }))
        .count() as u64;
    let diverged_reports = actions
        .iter()
        .filter(|action| matches!(action, Action::LogDiverged(_)))
        .count();
    let mut stats_before = before.stats;
    if diverges {
        stats_before.reads_refused += refused_reads;
        if node.divergence().is_none() || diverged_reports > 1 {
            return Err(format!(
                "handed {kind}, the node reported {diverged_reports} Action::LogDiverged and holds divergence {:?}: a committed entry contradicted by its leader must leave it diverged, reported once",
                node.divergence()
            ));
        }
    }
    if let Some((name, was, is, delta)) = counted_only_in(&stats_before, node.stats(), expected) {
        return Err(format!(
            "handed {kind}, Statistics::{name} went from {was} to {is}; it must move by exactly {delta} ({}) (see the docs of concord::Statistics)",
            match expected {
                Some(counter) => format!("only {counter} counts this input"),
                None => "this input is counted nowhere".to_string(),
            }
        ));
    }
    let state_before = (
        before.role,
        before.term,
        before.vote,
        before.commit,
        before.last_index,
    );
    let state_after = (
        node.role(),
        node.term(),
        node.voted_for(),
        node.commit_index(),
        node.last_index(),
    );
    if state_before != state_after {
        return Err(format!(
            "handed {kind}, (role, term, vote, commit, last index) went from {state_before:?} to {state_after:?}: a refused message must change nothing"
        ));
    }
    let sends = actions
        .iter()
        .filter(|action| matches!(action, Action::Send { .. }))
        .count();
    let reports = if diverges {
        refused_reads as usize + diverged_reports
    } else {
        0
    };
    // A vote request is where a recovery from lost storage that has
    // caught up ends (the node must know before it answers whether it may
    // vote again): the step then also reports the end and writes the hard
    // state it marked, with term and vote unchanged (checked above).
    let recovery_ended = before.recovering
        && !node.storage_recovery().is_recovering()
        && matches!(
            kind,
            Malformed::StaleVoteRequest | Malformed::PreVoteInOwnTerm
        );
    let recovery_actions = if recovery_ended {
        let ended = actions
            .iter()
            .filter(|action| matches!(action, Action::StorageRecovery(_)))
            .count();
        let hard_state = actions
            .iter()
            .filter(|action| {
                matches!(action, Action::Persist { hard_state: Some(hard), truncate_after: None, entries, .. }
                    if entries.is_empty() && hard.term == node.term() && hard.voted_for == node.voted_for())
            })
            .count();
        if ended != 1 || hard_state > 1 {
            return Err(format!(
                "handed {kind}, the node ended its storage recovery with {ended} Action::StorageRecovery and {hard_state} hard-state write(s) {:?}; the end is reported once and written at most once",
                actions.iter().take(3).collect::<Vec<_>>()
            ));
        }
        ended + hard_state
    } else {
        0
    };
    let allowed_sends = usize::from(answered(kind));
    if actions.len() != sends + reports + recovery_actions || sends > allowed_sends {
        return Err(format!(
            "handed {kind}, the node emitted {} action(s) {:?}; it may at most send {allowed_sends} answer",
            actions.len(),
            actions.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if let Some(answer) = required_answer(kind, handed, before.term) {
        let answered = actions.iter().any(
            |action| matches!(action, Action::Send { to, message } if *to == answer.to && *message == Message { progress_id: message.progress_id, ..answer.clone() }),
        );
        if !answered {
            return Err(format!(
                "handed {kind}, the node emitted {:?}; it must answer with exactly {answer:?}",
                actions.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// Checks a leader's step on one of the acknowledgement kinds
/// ([`Malformed::is_acknowledgement`]): no counter moves
/// (`miscount`, from [`counted_only_in`]), and the follower's progress
/// goes from `before` to `after` as the kind's rule says (a snapshot
/// transfer started by the step is counted by the caller). A probe answered
/// where the logs already agree starts streaming (else the leader keeps
/// probing one append at a time, a round trip each); a late duplicate to
/// a streaming follower changes nothing and sends nothing (else every
/// duplicate is one more append on the wire); a refused probe with a hint
/// of unknown term is probed next right after the hint. `sends`: the
/// messages the leader's step sent.
pub(super) fn check_acknowledgement(
    kind: Malformed,
    handed: &Message,
    before: &ProgressView,
    after: Option<ProgressView>,
    miscount: Option<(&'static str, u64, u64, u64)>,
    sends: u64,
) -> Result<(), (FailureKind, String)> {
    if let Some((name, was, is, delta)) = miscount {
        return Err((
            FailureKind::NodeReport,
            format!(
                "handed {kind}, Statistics::{name} went from {was} to {is}; it must move by exactly {delta} (an acknowledgement within the log is counted nowhere)"
            ),
        ));
    }
    let Some(after) = after else {
        return Err((
            FailureKind::NodeReport,
            format!("handed {kind}, the leader dropped the follower's progress"),
        ));
    };
    let wrong = match kind {
        Malformed::ProbeAnsweredAtMatch => (after.state == ProgressState::Probe
            || after.match_index != before.match_index)
            .then_some(
                "must start streaming to it (the replicate state, or the snapshot state when the entry after the match is compacted away; the match index kept)",
            ),
        Malformed::ProbeRefusedWithHint => {
            let MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_index,
                hint_index,
                ..
            }) = handed.body
            else {
                unreachable!("the kind is a refusal")
            };
            let next = rejected_index
                .min(hint_index + 1)
                .max(before.match_index + 1);
            (after.state != ProgressState::Probe
                || after.match_index != before.match_index
                || after.next_index != next)
                .then_some("must probe next right after the hint (next index = hint + 1, within the match and the refused probe)")
        }
        _ => ((before.match_index, before.next_index, before.state)
            != (after.match_index, after.next_index, after.state)
            || sends > 0)
            .then_some("must do nothing: send nothing and keep its match, next index and state"),
    };
    match wrong {
        Some(rule) => Err((
            FailureKind::Efficiency,
            format!(
                "handed {kind}, the leader moved the follower's progress from {before:?} to {after:?} and sent {sends} message(s); it {rule}"
            ),
        )),
        None => Ok(()),
    }
}

/// The host's own count of the bytes its node applied since the node's
/// latest snapshot, by [`Entry::size_bytes`]: the sizes of the entries the
/// host was handed to apply and that the node has not yet folded into a
/// snapshot, oldest first. Holds at most the entries applied since the
/// latest snapshot (the entry threshold bounds them), so its buffer stops
/// growing early in a run.
#[derive(Debug, Default)]
pub(super) struct AppliedBytes {
    sizes: VecDeque<(Index, u64)>,
}

impl AppliedBytes {
    /// The host was handed `entries` to apply.
    pub(super) fn note_apply(&mut self, entries: &[Entry]) {
        for entry in entries {
            if self
                .sizes
                .back()
                .is_some_and(|(index, _)| *index >= entry.index)
            {
                // Re-applied after a restart: start the count again.
                self.sizes.clear();
            }
            self.sizes
                .push_back((entry.index, entry.size_bytes() as u64));
        }
    }

    /// A new incarnation: its node counts from zero again.
    pub(super) fn clear(&mut self) {
        self.sizes.clear();
    }

    /// Bytes applied in `snapshot_index + 1..=applied_index`; drops what
    /// the snapshot covers.
    fn since(&mut self, snapshot_index: Index, applied_index: Index) -> u64 {
        while self
            .sizes
            .front()
            .is_some_and(|(index, _)| *index <= snapshot_index)
        {
            self.sizes.pop_front();
        }
        self.sizes
            .iter()
            .take_while(|(index, _)| *index <= applied_index)
            .map(|(_, size)| size)
            .sum()
    }

    /// Checks a step that emitted `TakeSnapshot`: the entries or the bytes
    /// applied since the node's latest snapshot reached their threshold.
    /// (A request the policy calls for may be held while one is
    /// outstanding or while the log is busy, so only "not before" is
    /// exact.)
    pub(super) fn check_request(
        &mut self,
        node: &Node,
        threshold_entries: Option<u64>,
        threshold_bytes: u64,
    ) -> Result<(), String> {
        let snapshot_index = node.latest_snapshot_index();
        let applied = node.applied_index();
        let entries = applied.saturating_sub(snapshot_index);
        if threshold_entries.is_some_and(|threshold| entries >= threshold) {
            return Ok(());
        }
        let bytes = self.since(snapshot_index, applied);
        if bytes >= threshold_bytes {
            return Ok(());
        }
        Err(format!(
            "asked for a snapshot with {entries} entries ({bytes} bytes by Entry::size_bytes) applied since its snapshot at index {snapshot_index} (applied index {applied}): below both thresholds ({threshold_entries:?} entries, {threshold_bytes} bytes); the compaction policy must count each applied entry once (Node::handle_applied, count_applied)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord::{Message, WriteId};

    fn receive(body: MessageBody) -> Input {
        Input::Receive(Message {
            from: 2,
            to: 1,
            term: 3,
            progress_id: 0,
            body,
        })
    }

    /// Only a `Persisted` report and a follower's answer count as
    /// evidence; a tick, a proposal, a heartbeat or an append do not.
    #[test]
    fn only_fsync_reports_and_follower_answers_are_commit_evidence() {
        let evidence = |input: &Input| StepInput::of(input).commit_evidence;
        assert!(evidence(&Input::Persisted(WriteId(7))));
        assert!(evidence(&receive(MessageBody::HeartbeatResponse {
            read_round: 0
        })));
        assert!(!evidence(&Input::Tick));
        assert!(!evidence(&Input::Propose(Bytes::from_static(b"x"))));
        assert!(!evidence(&Input::ProposeHost(Bytes::from_static(b"x"))));
        assert!(!evidence(&Input::Applied(4)));
        assert!(!evidence(&receive(MessageBody::Heartbeat {
            commit: 4,
            read_round: 0
        })));
    }

    /// A leader of term 3 whose commit index moves from 4 to 6 on a tick
    /// is caught; the same move on evidence passes.
    #[test]
    fn a_leader_committing_without_evidence_is_caught() {
        let before = (Role::Leader, 3, 4);
        let after = (Role::Leader, 3, 6);
        let tick = StepInput::of(&Input::Tick).commit_evidence;
        let message = check_commit_evidence(before, after, tick).unwrap_err();
        assert!(
            message.contains("from 4 to 6")
                && message.contains("a leader commits on evidence only"),
            "{message}"
        );
        let fsync = StepInput::of(&Input::Persisted(WriteId(9))).commit_evidence;
        assert_eq!(check_commit_evidence(before, after, fsync), Ok(()));
        // Not a leader of one term throughout, or the commit did not move:
        // not judged.
        for (before, after) in [
            ((Role::Follower, 3, 4), (Role::Follower, 3, 6)),
            ((Role::Candidate, 3, 4), (Role::Leader, 3, 6)),
            ((Role::Leader, 3, 4), (Role::Follower, 4, 6)),
            ((Role::Leader, 3, 4), (Role::Leader, 3, 4)),
        ] {
            assert_eq!(check_commit_evidence(before, after, false), Ok(()));
        }
    }

    /// A leader 8 entries behind its commit with 2 writes outstanding,
    /// limits 10 entries and 3 writes.
    fn backlog() -> Backlog {
        Backlog {
            uncommitted: 8,
            unpersisted_writes: 2,
            uncommitted_entries_max: 10,
            unpersisted_writes_max: 3,
        }
    }

    #[test]
    fn a_proposal_accepted_past_a_limit_is_caught() {
        // 3 more entries would leave 11 uncommitted.
        let message = judge_backpressure(&backlog(), Some(3), None).unwrap_err();
        assert!(
            message.contains("accepted 3 proposals")
                && message.contains("must be refused for backpressure"),
            "{message}"
        );
        // One entry fits the entries, but the writes are at their limit.
        let full = Backlog {
            unpersisted_writes: 3,
            ..backlog()
        };
        let message = judge_backpressure(&full, Some(1), None).unwrap_err();
        assert!(
            message.contains("3 writes outstanding (unpersisted_writes_max 3)"),
            "{message}"
        );
        // Within both limits: accepted rightly.
        assert_eq!(judge_backpressure(&backlog(), Some(2), None), Ok(()));
        assert_eq!(judge_backpressure(&backlog(), None, None), Ok(()));
    }

    #[test]
    fn a_proposal_refused_within_both_limits_is_caught() {
        let message = judge_backpressure(&backlog(), None, Some(2)).unwrap_err();
        assert!(
            message.contains("refused 2 proposals for backpressure")
                && message.contains("neither limit demands it"),
            "{message}"
        );
        // Past the entries limit, or at the writes limit: refused rightly.
        assert_eq!(judge_backpressure(&backlog(), None, Some(3)), Ok(()));
        let full = Backlog {
            unpersisted_writes: 3,
            ..backlog()
        };
        assert_eq!(judge_backpressure(&full, None, Some(1)), Ok(()));
    }

    /// A vote request the node may not grant gets exactly one refusal in
    /// the node's own term.
    #[test]
    fn a_refused_vote_request_is_answered_with_the_nodes_term() {
        let handed = Message {
            from: 2,
            to: 1,
            term: 4,
            progress_id: 0,
            body: MessageBody::RequestVote {
                pre_vote: false,
                last_log: LogPosition::ZERO,
                transfer: false,
            },
        };
        let answer =
            required_answer(Malformed::StaleVoteRequest, &handed, 5).expect("a rule names it");
        assert_eq!((answer.from, answer.to, answer.term), (1, 2, 5));
        assert_eq!(
            answer.body,
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: false
            }
        );
        // Kinds refused silently name no answer.
        assert_eq!(required_answer(Malformed::SecondLeader, &handed, 5), None);
    }

    fn ack() -> Message {
        Message {
            from: 2,
            to: 1,
            term: 3,
            progress_id: 0,
            body: MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: 7 }),
        }
    }

    fn view(match_index: Index, next_index: Index, state: ProgressState) -> ProgressView {
        ProgressView {
            progress_id: 1,
            match_index,
            next_index,
            state,
            inflight_messages: 0,
            recently_active: true,
            log_regressions: 0,
            snapshot_acked_bytes: 0,
        }
    }

    /// A probe answered at the known match must start streaming (or a
    /// snapshot transfer); staying in the probe state is an efficiency
    /// failure, a moved counter a node-report one.
    #[test]
    fn a_probe_answered_at_the_match_starts_streaming() {
        let kind = Malformed::ProbeAnsweredAtMatch;
        let before = view(7, 9, ProgressState::Probe);
        let stays = check_acknowledgement(kind, &ack(), &before, Some(before), None, 0);
        let (failure, message) = stays.unwrap_err();
        assert_eq!(failure, FailureKind::Efficiency);
        assert!(message.contains("must start streaming"), "{message}");
        let streams = view(7, 8, ProgressState::Replicate);
        assert_eq!(
            check_acknowledgement(kind, &ack(), &before, Some(streams), None, 0),
            Ok(())
        );
        let snapshot = view(7, 30, ProgressState::Snapshot);
        assert_eq!(
            check_acknowledgement(kind, &ack(), &before, Some(snapshot), None, 0),
            Ok(())
        );
        let counted = Some(("messages_malformed", 0, 1, 0));
        let (failure, _) =
            check_acknowledgement(kind, &ack(), &before, Some(streams), counted, 0).unwrap_err();
        assert_eq!(failure, FailureKind::NodeReport);
    }

    /// A duplicate acknowledgement to a streaming follower changes nothing
    /// and sends nothing.
    #[test]
    fn a_duplicate_acknowledgement_changes_nothing() {
        let kind = Malformed::DuplicateAcknowledgement;
        let before = view(7, 12, ProgressState::Replicate);
        assert_eq!(
            check_acknowledgement(kind, &ack(), &before, Some(before), None, 0),
            Ok(())
        );
        let (failure, message) =
            check_acknowledgement(kind, &ack(), &before, Some(before), None, 1).unwrap_err();
        assert_eq!(failure, FailureKind::Efficiency);
        assert!(message.contains("must do nothing"), "{message}");
        let rewound = view(7, 8, ProgressState::Replicate);
        assert!(check_acknowledgement(kind, &ack(), &before, Some(rewound), None, 0).is_err());
    }

    /// A refused probe with a hint of unknown term moves the next probe
    /// to right after the hint: one entry lower, or back to the match, is
    /// caught.
    #[test]
    fn a_refused_probe_moves_next_to_right_after_the_hint() {
        let kind = Malformed::ProbeRefusedWithHint;
        let handed = Message {
            body: MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_index: 9,
                hint_index: 8,
                hint_term: 0,
            }),
            ..ack()
        };
        let before = view(2, 10, ProgressState::Probe);
        let right = view(2, 9, ProgressState::Probe);
        assert_eq!(
            check_acknowledgement(kind, &handed, &before, Some(right), None, 0),
            Ok(())
        );
        for wrong in [
            view(2, 8, ProgressState::Probe),
            view(2, 3, ProgressState::Probe),
            view(2, 10, ProgressState::Probe),
        ] {
            let (failure, message) =
                check_acknowledgement(kind, &handed, &before, Some(wrong), None, 0).unwrap_err();
            assert_eq!(failure, FailureKind::Efficiency);
            assert!(message.contains("right after the hint"), "{message}");
        }
    }
}
