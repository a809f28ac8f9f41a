//! The promises a leader lease stands on, kept from outside
//! (`lease-promise`, `vote-hold`).
//!
//! A follower that takes a message from the leader of its term (an
//! append, a heartbeat, a commit notice, a snapshot chunk) refuses, for
//! `election_timeout_min_ticks` of its own clock from then, to vote for
//! anyone else (CheckQuorum's stickiness), also across a restart (the
//! core's vote hold after a start). That is a *promise*: here it is the
//! follower's latest leader, that leader's term, and the tick of the
//! follower's own clock the promise runs to. A leader that gave up its
//! lease's basis by starting a leadership transfer in that term (whose
//! election voters let past their stickiness) has no promise of that
//! term to count on: such promises are *void*.
//!
//! * `vote-hold`, at every step of every node: while the leader it
//!   promised still leads the promise's term (a leader that stepped down
//!   or crashed serves no lease of that term any more), a node votes (for
//!   another node, or for itself as it campaigns) in a later term than its
//!   promise, or for another node in the promise's term, only once its
//!   own clock has reached the promise's end, or if the promise is void.
//!   The votes of a leadership transfer's election pass (a vote request
//!   marked as a transfer's, the candidate's own vote as it takes
//!   `TimeoutNow`), as the core lets them: a transferring leader voided
//!   its own promises, and whoever elected a transferring leader of a
//!   later term is judged where it voted. A promise is carried across a
//!   restart only if the node recovered the promise's term: a heartbeat
//!   answer confirms a leader's round only once its term is durable, so a
//!   node that lost the term gave no promise any lease counted. A node
//!   whose storage was lost starts again in term 0 and may follow an
//!   older leader before it learns its own past; the promise of the later
//!   term it made before the loss is kept beside the new one and judged
//!   too (the core's hold after such a start runs on from the older
//!   leader's message).
//! * `lease-promise`, at every lease read a leader serves: when the read
//!   arrived, a quorum of each half of the configuration (the leader
//!   itself counting) held a promise to this leader in this term that is
//!   not void and still has, counted in the promiser's own ticks, at least
//!   as many ticks to run as the lease the leader served it under has in
//!   the leader's ticks. A leader that is not a voter of a one-voter
//!   configuration (it removed itself) has no backing at all: a lone voter
//!   campaigns at its first tick.
//!
//! Why `lease-promise` holds for a correct core with clocks within the
//! declared bound: the lease is at most `lease_read_ticks` of the leader's
//! ticks after it sent a round a quorum answered, and each answering
//! follower took that round after it was sent, so its promise ran from
//! later. Over the lease's span tick counts drift apart by less than
//! `clock_drift_bound_ticks` (`ReadOptions::apply` derives the bound that
//! way), and `lease_read_ticks + clock_drift_bound_ticks <
//! election_timeout_min_ticks` leaves one more tick for the two clocks'
//! phases: the promise's remaining ticks never fall below the lease's.
//! Clocks are counted where the host counts them: a node's ticks in the
//! single-group simulator (a paused node gets its missed ticks before
//! anything else, a crashed one none), the layer's clock of the node in
//! the multi-group one (a sleeping group's node is not ticked; its
//! promise runs on the clock of the process that holds it).

use std::collections::BTreeSet;

use concord::{Node, NodeId, Role, Term};

/// Transfers remembered (by leader term): older ones no longer matter.
const TRANSFER_TERMS_MAX: usize = 256;

/// A follower's promise not to vote for another leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Promise {
    pub(crate) term: Term,
    pub(crate) leader: NodeId,
    /// The promiser's clock tick from which it may vote again.
    pub(crate) end_ticks: u64,
}

/// The leaders that started a transfer, by term: their promises are
/// void.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transfers {
    started: BTreeSet<(Term, NodeId)>,
}

impl Transfers {
    /// Notes a transfer started by `leader` in `term`.
    pub(crate) fn note(&mut self, term: Term, leader: NodeId) {
        if self.started.insert((term, leader)) && self.started.len() > TRANSFER_TERMS_MAX {
            self.started.pop_first();
        }
    }

    /// Whether `leader` started a transfer in `term`.
    pub(crate) fn started(&self, term: Term, leader: NodeId) -> bool {
        self.started.contains(&(term, leader))
    }
}

/// Whether the step just taken by `node` started a leadership transfer
/// (as leader): it names a transfer target, or sent `TimeoutNow`.
pub(crate) fn transfer_started(node: &Node, actions: &[concord::Action]) -> bool {
    node.role() == Role::Leader
        && (node.transfer_target().is_some()
            || actions.iter().any(|action| {
                matches!(action, concord::Action::Send { message, .. }
                    if matches!(message.body, concord::MessageBody::TimeoutNow))
            }))
}

/// `vote-hold`: the vote `node` ended its step with (`before` its vote
/// before it), judged against `promise` at the node's clock `clock_ticks`.
/// Returns what is wrong, if anything.
pub(crate) fn check_vote_hold(
    node: &Node,
    before: (Term, Option<NodeId>),
    transfer_vote: bool,
    promise: Option<Promise>,
    transfers: &Transfers,
    clock_ticks: u64,
    leads: impl Fn(NodeId, Term) -> bool,
) -> Option<String> {
    let (term, vote) = (node.term(), node.voted_for());
    let candidate = vote?;
    if (term, vote) == before || transfer_vote || node.config().lease_read_ticks == 0 {
        return None;
    }
    let promise = promise?;
    let breaks = term > promise.term || (term == promise.term && candidate != promise.leader);
    if !breaks || clock_ticks >= promise.end_ticks {
        return None;
    }
    if transfers.started(promise.term, promise.leader)
        || sole_voter(node)
        || !leads(promise.leader, promise.term)
    {
        return None;
    }
    Some(format!(
        "voted for n{candidate} in term {term} at tick {clock_ticks} of its clock, but it promised the leader n{} of term {}, which still leads that term, not to vote for another leader before tick {} (it took a message from that leader {} ticks of election timeout before; that leader started no transfer in its term)",
        promise.leader,
        promise.term,
        promise.end_ticks,
        node.config().election_timeout_min_ticks
    ))
}

/// The only voter of its configuration (its lease and votes concern no
/// one else).
fn sole_voter(node: &Node) -> bool {
    let membership = node.membership();
    membership.voters_outgoing.is_empty()
        && membership.voters.len() == 1
        && membership.voters.contains(&node.id())
}

/// What one voter contributes to a leader's lease: its promise to that
/// leader and the ticks left on it, by its own clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backing {
    pub(crate) id: NodeId,
    /// Ticks left on its promise to this leader in this term (0: none).
    pub(crate) left_ticks: u64,
}

/// `lease-promise`: whether the promises `backing` (one per voter but the
/// leader) back a lease with `lease_left_ticks` ticks to run, under the
/// configuration halves `halves`, for the leader `me`. Returns what is
/// wrong, if anything.
pub(crate) fn check_lease_backed(
    me: NodeId,
    halves: [&BTreeSet<NodeId>; 2],
    backing: &[Backing],
    lease_left_ticks: u64,
) -> Option<String> {
    for voters in halves {
        if voters.is_empty() {
            continue;
        }
        let backed = voters
            .iter()
            .filter(|id| {
                **id == me
                    || backing
                        .iter()
                        .any(|b| b.id == **id && b.left_ticks >= lease_left_ticks)
            })
            .count();
        if backed <= voters.len() / 2 {
            let promises: Vec<String> = backing
                .iter()
                .map(|b| format!("n{}: {} ticks", b.id, b.left_ticks))
                .collect();
            return Some(format!(
                "served it under a lease with {lease_left_ticks} ticks to run, but only {backed} of the voters {voters:?} (the leader counting) had promised it, by their own clocks, not to vote for another leader for that long (promises left: {})",
                promises.join(", ")
            ));
        }
    }
    None
}
