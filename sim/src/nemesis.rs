//! Protocol-aware nemeses: faults aimed at Raft's weak moments rather
//! than at random times. A scheduled [`Fault`] arms one; the engine then
//! shows it each node step (the state before, [`Observed`], and the node
//! after) and strikes when the nemesis says so ([`Strike`]).
//!
//! Every strike stays within the fault model: a crash loses exactly the
//! writes the node had not synced (the simulated disk decides which), and
//! a cut-off leader is a network partition.
//!
//! * **Crash the leader after it appended** ([`Fault::CrashLeaderAfterAppend`]):
//!   the next leader step that appends entries (its election no-op or a
//!   client's command) is its last: the node dies before that step's
//!   sends and writes happen, so no majority holds the new entries.
//! * **Leader churn** ([`Fault::LeaderChurn`]): each new leader is deposed
//!   within an election timeout of its election (crashed or cut off), or
//!   cut off at once with its election no-op (which it keeps on its disk
//!   alone), or at once when its commit index moves while later entries of its log
//!   are not yet on a majority; then every node holding unsynced writes
//!   crashes with it (one power loss), so the followers lose the tail
//!   they had not synced. Several rounds in a row leave logs that diverge
//!   in several terms: the shape of Raft's Figure 8.
//! * **Crash the voter** ([`Fault::CrashVoter`]): the next node to vote for
//!   another crashes after handing the vote to its disk and before the
//!   vote's fsync completes, and comes back quickly, in time to vote again.
//! * **Split vote** ([`Fault::SplitVote`]): the leader crashes; the next
//!   node to start a campaign gets a rival in the same step (the engine
//!   runs a second follower's election timer to expiry), and the network
//!   hands every voter the first candidate's request first and the
//!   second's soon after, before a winner is known (`engine::split`). A
//!   voter that grants both makes two leaders of one term.
//!
//! The leader cut off with a minority and the long message delays need
//! no state here (see the engine's `apply_fault` and `message_delay`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::{Index, Node, NodeId, Role, Term};

use crate::faults::Fault;

/// A node's state as the nemeses look at it, before and after a step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed {
    role: Role,
    term: Term,
    last_index: Index,
    commit: Index,
    vote: Option<(Term, NodeId)>,
}

/// What the nemeses look at in `node`.
pub(crate) fn observe(node: &Node) -> Observed {
    Observed {
        role: node.role(),
        term: node.term(),
        last_index: node.last_index(),
        commit: node.commit_index(),
        vote: node.voted_for().map(|vote| (node.term(), vote)),
    }
}

/// What the engine must do to the node it just stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Nothing.
    None,
    /// Crash the node before this step's actions run, and restart it
    /// `down_ns` later. With `power_loss`, every other node holding
    /// unsynced writes crashes at the same instant (and restarts as late).
    CrashNow {
        /// Downtime.
        down_ns: u64,
        /// Crash the nodes with unsynced writes too.
        power_loss: bool,
    },
    /// Cut the node off from every other node before this step's sends
    /// go out (its writes still happen); the network heals `length_ns`
    /// later.
    IsolateNow {
        /// How long the partition lasts.
        length_ns: u64,
    },
    /// Crash the node once this step's actions ran (its writes are on the
    /// disk, not synced), and restart it `down_ns` later.
    CrashAfterActions {
        /// Downtime.
        down_ns: u64,
    },
    /// The node just started a campaign in `term` (a pre-campaign with
    /// PreVote, the term it was in): start a rival campaign from another
    /// follower of that term in the same step (a split vote).
    SplitVote {
        /// The term the campaigning node was in before this step.
        term: Term,
    },
}

/// How to depose a leader whose churn timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Depose {
    /// Crash it for this long.
    Crash(u64),
    /// Cut it off from every other node for this long.
    Isolate(u64),
}

#[derive(Clone, Copy, Debug)]
struct Churn {
    rounds_left: u32,
    depose_within_ns: u64,
    down_ns: u64,
}

/// The armed nemeses of one run.
pub(crate) struct Nemesis {
    /// Its own stream, so that nemeses draw nothing from the others.
    rng: ChaCha8Rng,
    crash_after_append: Option<u64>,
    churn: Option<Churn>,
    crash_voter: Option<u64>,
    split_vote: bool,
}

impl Nemesis {
    pub(crate) fn new(seed: u64) -> Nemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(7);
        Nemesis {
            rng,
            crash_after_append: None,
            churn: None,
            crash_voter: None,
            split_vote: false,
        }
    }

    /// Whether any nemesis watches node steps (cheap; checked per step).
    pub(crate) fn watching(&self) -> bool {
        self.crash_after_append.is_some()
            || self.churn.is_some()
            || self.crash_voter.is_some()
            || self.split_vote
    }

    /// Arms the nemesis `fault` names. Returns whether it was one of
    /// them. A churn armed while a leader rules returns that leader's
    /// depose delay through [`Nemesis::on_leader`] as usual: the engine
    /// calls it for the current leader.
    pub(crate) fn arm(&mut self, fault: &Fault) -> bool {
        match *fault {
            Fault::CrashLeaderAfterAppend { down_ns } => self.crash_after_append = Some(down_ns),
            Fault::LeaderChurn {
                rounds,
                depose_within_ns,
                down_ns,
            } => {
                self.churn = (rounds > 0).then_some(Churn {
                    rounds_left: rounds,
                    depose_within_ns: depose_within_ns.max(1),
                    down_ns,
                })
            }
            Fault::CrashVoter { down_ns } => self.crash_voter = Some(down_ns),
            Fault::SplitVote { .. } => self.split_vote = true,
            _ => return false,
        }
        true
    }

    /// Everything stops at the heal.
    pub(crate) fn disarm(&mut self) {
        self.crash_after_append = None;
        self.churn = None;
        self.crash_voter = None;
        self.split_vote = false;
    }

    /// A node became leader: with churn on, how long until it is deposed.
    pub(crate) fn on_leader(&mut self) -> Option<u64> {
        let churn = self.churn?;
        Some(self.rng.gen_range(0..churn.depose_within_ns))
    }

    /// The churn timer of a leader fired (it still leads): how to depose
    /// it, using up one round.
    pub(crate) fn depose(&mut self) -> Option<Depose> {
        let churn = self.churn.as_mut()?;
        churn.rounds_left -= 1;
        let down_ns = churn.down_ns;
        if churn.rounds_left == 0 {
            self.churn = None;
        }
        Some(if self.rng.gen_bool(0.5) {
            Depose::Crash(down_ns)
        } else {
            Depose::Isolate(down_ns)
        })
    }

    /// Judges one step of `node`, which was in state `before`.
    pub(crate) fn after_step(&mut self, node: &Node, before: Observed) -> Strike {
        let after = observe(node);
        let leader = after.role == Role::Leader;
        let appended = after.last_index > before.last_index;
        if leader && appended {
            if let Some(down_ns) = self.crash_after_append.take() {
                return Strike::CrashNow {
                    down_ns,
                    power_loss: false,
                };
            }
        }
        let elected = before.role != Role::Leader;
        if leader && appended && elected {
            // A new leader's no-op: three times in four it stays on the leader
            // alone (a conflicting entry of a new term, kept on its disk).
            if let Some(churn) = self.churn.as_mut() {
                if self.rng.gen_bool(0.75) {
                    let length_ns = churn.down_ns;
                    churn.rounds_left -= 1;
                    if churn.rounds_left == 0 {
                        self.churn = None;
                    }
                    return Strike::IsolateNow { length_ns };
                }
            }
        }
        let committed = after.commit > before.commit;
        if leader && committed && after.last_index > after.commit {
            if let Some(churn) = self.churn.as_mut() {
                churn.rounds_left -= 1;
                let down_ns = churn.down_ns;
                if churn.rounds_left == 0 {
                    self.churn = None;
                }
                return Strike::CrashNow {
                    down_ns,
                    power_loss: true,
                };
            }
        }
        if let (Some(down_ns), Some((_, candidate))) = (self.crash_voter, after.vote) {
            if after.vote != before.vote && candidate != node.id() {
                self.crash_voter = None;
                return Strike::CrashAfterActions { down_ns };
            }
        }
        let campaigning = matches!(after.role, Role::PreCandidate | Role::Candidate);
        if self.split_vote && before.role == Role::Follower && campaigning {
            self.split_vote = false;
            return Strike::SplitVote { term: before.term };
        }
        Strike::None
    }
}
