//! Outside checks of what a node promised, across its restarts.
//!
//! A node promises durable state in three ways the network can see: a
//! vote grant (it will not vote for anyone else in that term), winning an
//! election (its own vote, counted only once durable, so its term is
//! durable), and an append acknowledgement (it durably holds the entries
//! up to the acknowledged index). The checker watches those messages and
//! roles, and when the node restarts compares them with the state it
//! recovered from its disk:
//!
//! * term and vote never go back: after a grant to `c` in term `t` the
//!   node restarts in a term above `t`, or in `t` still voting for `c`;
//!   after leading term `t`, in a term of at least `t`;
//! * a restarted node holds every entry it acknowledged, unless a later
//!   leader legitimately overwrote it: an acknowledged entry is required
//!   after the restart only if the node still held it (same index and
//!   term, above its log's base) when it crashed, and its log was not cut
//!   below it since the acknowledgement. An entry a newer leader's append
//!   replaced may come back either way: the truncation may not have reached
//!   the disk, or a later leader may hand the same entry back in a write
//!   the crash loses (the node then holds it again at the crash, but the
//!   disk legitimately holds the newer leader's entries there). An entry
//!   compacted into a snapshot is the snapshot checks' business.
//!
//! And within one incarnation, a vote is answered: once a node's vote for
//! candidate `c` in term `t` is durable (every write it handed its host
//! is reported persisted) and it still votes for `c` in `t`, it has sent
//! `c` the grant. A voter that lets a second candidate's request replace
//! its pending answer to the first answers no one, and the first
//! candidate loses a vote it was given.
//!
//! Other messages (refusals, heartbeat answers) promise nothing durable,
//! so a term carried only by them may legitimately be lost in a crash.
//!
//! And one promise of a leader to its followers, about liveness: a
//! follower it streams to (replicate state) with no append in flight to it
//! has been told the commit index, up to what the follower holds (an
//! append's or heartbeat's commit, a commit notice, or a snapshot, which
//! holds committed entries only). A leader may hold a commit notice back
//! while appends past the commit are in flight, an answer releasing it;
//! one that never sends it leaves the follower applying nothing until the
//! next append or heartbeat.

use std::collections::BTreeMap;

use concord::{Index, LogPosition, Message, MessageBody, Node, NodeId, ProgressState, Role, Term};

use crate::engine::FailureKind;

type Violation = (FailureKind, String);

#[derive(Clone, Copy, Debug, Default)]
struct NodePromises {
    /// The latest vote grant sent: (term, candidate).
    vote: Option<(Term, NodeId)>,
    /// Highest term this node led.
    led: Term,
    /// The most recently acknowledged entry.
    acked_latest: Option<LogPosition>,
    /// The acknowledged entry with the highest index.
    acked_highest: Option<LogPosition>,
    /// Acknowledged entries still held when the node crashed.
    must_hold: [Option<LogPosition>; 2],
    /// The vote for another node held after the last step checked:
    /// (term, candidate).
    cast: Option<(Term, NodeId)>,
    /// The incarnation of the last step checked.
    cast_incarnation: u32,
    /// `cast` came from the disk at a restart: answered or not before the
    /// crash, it is not this incarnation's to answer.
    cast_recovered: bool,
    /// The node's storage was lost (the disk-loss fault) when this entry
    /// was committed: until its durable log holds it, the node grants no
    /// vote and no pre-vote to a candidate whose log lacks it.
    owed_after_loss: Option<LogPosition>,
}

/// The promises of every node of one run.
pub(crate) struct Promises {
    nodes: Vec<NodePromises>,
    /// For each node, the highest commit index it told each peer as
    /// leader, and in which term.
    commit_told: Vec<BTreeMap<NodeId, (Term, Index)>>,
}

impl Promises {
    pub(crate) fn new(nodes: usize) -> Promises {
        Promises {
            nodes: vec![NodePromises::default(); nodes],
            commit_told: vec![BTreeMap::new(); nodes],
        }
    }

    /// A host joined the run (a fresh node after a forced recovery).
    pub(crate) fn add_node(&mut self) {
        self.nodes.push(NodePromises::default());
        self.commit_told.push(BTreeMap::new());
    }

    /// Node `index` (in the state it is in) sends `message`.
    pub(crate) fn on_send(&mut self, index: usize, node: &Node, message: &Message) {
        if node.role() == Role::Leader {
            let told = match &message.body {
                MessageBody::AppendEntries { leader_commit, .. } => Some(*leader_commit),
                MessageBody::CommitNotice { commit, .. } => Some(*commit),
                MessageBody::Heartbeat { commit, .. } => Some(*commit),
                MessageBody::InstallSnapshot(chunk) => Some(chunk.snapshot.index),
                _ => None,
            };
            if let Some(commit) = told {
                let entry = self.commit_told[index]
                    .entry(message.to)
                    .or_insert((message.term, 0));
                if entry.0 != message.term {
                    *entry = (message.term, 0);
                }
                entry.1 = entry.1.max(commit);
            }
        }
        let promises = &mut self.nodes[index];
        match &message.body {
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => promises.vote = Some((message.term, message.to)),
            MessageBody::AppendEntriesResponse(concord::AppendResponse::Accepted {
                match_index,
            }) if *match_index > node.log_base().index => {
                let Some(term) = node.term_at(*match_index) else {
                    return;
                };
                let position = LogPosition::new(*match_index, term);
                promises.acked_latest = Some(position);
                if promises
                    .acked_highest
                    .is_none_or(|highest| highest.index <= position.index)
                {
                    promises.acked_highest = Some(position);
                }
            }
            _ => {}
        }
    }

    /// Node `index`, in incarnation `incarnation`, finished a step and
    /// executed its actions: a durable vote for another node must have
    /// been answered.
    #[inline]
    pub(crate) fn after_actions(
        &mut self,
        index: usize,
        incarnation: u32,
        node: &Node,
    ) -> Result<(), Violation> {
        if node.role() == Role::Leader {
            self.check_commit_told(index, node)?;
        }
        let promises = &mut self.nodes[index];
        let vote = node
            .voted_for()
            .filter(|candidate| *candidate != node.id())
            .map(|candidate| (node.term(), candidate));
        let restarted = promises.cast_incarnation != incarnation;
        if restarted || vote != promises.cast {
            promises.cast = vote;
            promises.cast_recovered = restarted;
            promises.cast_incarnation = incarnation;
        }
        match promises.cast {
            Some((term, candidate))
                if !promises.cast_recovered
                    && promises.vote != promises.cast
                    && node.unpersisted_writes() == 0 =>
            {
                Err((
                    FailureKind::VoteUnanswered,
                    format!(
                        "voted for n{candidate} in term {term}, the vote is durable (no write of the node waits for its fsync) and it still votes so, but it never sent n{candidate} the grant: a voter answers the candidate it voted for once the vote is durable"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Leader `index`: every follower it streams to with no append in
    /// flight to it was told the commit index up to what it holds.
    fn check_commit_told(&self, index: usize, node: &Node) -> Result<(), Violation> {
        let commit = node.commit_index();
        for (id, progress) in node.progress_all() {
            if progress.state != ProgressState::Replicate || progress.inflight_messages > 0 {
                continue;
            }
            let owed = commit.min(progress.match_index);
            let told = match self.commit_told[index].get(&id) {
                Some((term, told)) if *term == node.term() => *told,
                _ => 0,
            };
            if told < owed {
                return Err((
                    FailureKind::CommitUntold,
                    format!(
                        "leads term {} with commit index {commit}; n{id} holds up to {} and has no append in flight, yet the highest commit index it was told this term is {told}",
                        node.term(),
                        progress.match_index
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Node `index` became leader of `term`.
    pub(crate) fn on_leader(&mut self, index: usize, term: Term) {
        let promises = &mut self.nodes[index];
        promises.led = promises.led.max(term);
    }

    /// Node `index` writes a cut of its log after `after` (a newer
    /// leader's conflicting append, a candidate catch-up, or a snapshot
    /// that discards the log): an acknowledgement above `after` is
    /// superseded. What the node acknowledged was its log as it stood; a
    /// legitimate overwrite ends that promise, and an acknowledgement of
    /// the same position made after the cut starts a new one.
    pub(crate) fn on_truncate(&mut self, index: usize, after: Index) {
        let promises = &mut self.nodes[index];
        let kept = |position: Option<LogPosition>| position.filter(|p| p.index <= after);
        promises.acked_latest = kept(promises.acked_latest);
        promises.acked_highest = kept(promises.acked_highest);
    }

    /// Node `index` crashes in state `node`: which acknowledged entries it
    /// must still hold when it comes back.
    pub(crate) fn on_crash(&mut self, index: usize, node: &Node) {
        let promises = &mut self.nodes[index];
        let held = |position: Option<LogPosition>| {
            position.filter(|position| {
                position.index > node.log_base().index
                    && node.term_at(position.index) == Some(position.term)
            })
        };
        promises.must_hold = [held(promises.acked_latest), held(promises.acked_highest)];
    }

    /// Node `index`, crashed, lost synced entries on purpose (the idle
    /// catch-up check, `engine::catchup`): what it acknowledged is no
    /// longer promised.
    pub(crate) fn accept_entry_loss(&mut self, index: usize) {
        let promises = &mut self.nodes[index];
        promises.must_hold = [None, None];
        promises.acked_latest = None;
        promises.acked_highest = None;
    }

    /// The highest index node `index` acknowledged (and still promises).
    pub(crate) fn acknowledged_highest(&self, index: usize) -> Index {
        self.nodes[index]
            .acked_highest
            .map_or(0, |position| position.index)
    }

    /// Node `index`, crashed, lost its storage on purpose (the disk-loss
    /// fault, `engine::disk_loss`) while `committed` was the highest entry
    /// committed: nothing it promised survives, and it owes the cluster
    /// that entry before it votes again.
    pub(crate) fn accept_storage_loss(&mut self, index: usize, committed: Option<LogPosition>) {
        self.nodes[index] = NodePromises {
            owed_after_loss: committed,
            cast_incarnation: self.nodes[index].cast_incarnation,
            ..NodePromises::default()
        };
    }

    /// The entry node `index` owes the cluster since it lost its storage
    /// (see [`Promises::accept_storage_loss`]), until it holds it.
    pub(crate) fn owed_after_loss(&self, index: usize) -> Option<LogPosition> {
        self.nodes[index].owed_after_loss
    }

    /// Node `index` holds what it owed since its storage loss.
    pub(crate) fn loss_repaid(&mut self, index: usize) {
        self.nodes[index].owed_after_loss = None;
    }

    /// Node `index` restarted into state `node`.
    pub(crate) fn on_restart(&mut self, index: usize, node: &Node) -> Result<(), Violation> {
        let promises = &mut self.nodes[index];
        let term = node.term();
        if let Some((vote_term, candidate)) = promises.vote {
            if term < vote_term || (term == vote_term && node.voted_for() != Some(candidate)) {
                return Err((
                    FailureKind::HardStateRegressed,
                    format!(
                        "granted its vote to n{candidate} in term {vote_term}, but restarted in term {term} voting for {:?}",
                        node.voted_for()
                    ),
                ));
            }
        }
        if term < promises.led {
            return Err((
                FailureKind::HardStateRegressed,
                format!("led term {}, but restarted in term {term}", promises.led),
            ));
        }
        for position in promises.must_hold.into_iter().flatten() {
            let compacted = position.index <= node.log_base().index;
            if !compacted && node.term_at(position.index) != Some(position.term) {
                return Err((
                    FailureKind::AckedEntryNotRecovered,
                    format!(
                        "acknowledged entry {} (term {}) as durable and held it when it crashed, but restarted with {:?} there",
                        position.index,
                        position.term,
                        node.term_at(position.index)
                    ),
                ));
            }
        }
        promises.must_hold = [None, None];
        Ok(())
    }
}
