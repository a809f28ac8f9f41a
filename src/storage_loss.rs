//! Servers that lose their storage: a replica that may have forgotten what
//! it promised does not vote until it holds that much again; a follower
//! whose committed log contradicts its leader's stops serving reads.
//!
//! Raft's safety rests on every voter remembering its votes and the
//! entries it acknowledged. A server whose disk was replaced comes back
//! empty; counted as a voter at once, it can elect, together with a
//! lagging peer, a leader that lacks entries the old disk helped commit,
//! and those entries vanish. So a replica that starts with empty storage
//! (or whose host found its storage damaged, or whose leader saw it lose
//! an entry it had acknowledged) recovers first
//! ([`StorageRecovery`]):
//!
//! 1. **Reports.** It asks every member of the newest configuration it
//!    knows what it holds ([`MessageBody::RecoveryQuery`]), until it has
//!    answers from `n - q + 1` voters (of each half of a joint
//!    configuration; `n` voters, majority `q`) that are not recovering
//!    themselves. Any majority that counted on the lost storage (to
//!    commit an entry, or to elect a leader in some term) shares a
//!    member with those answers, so the highest term and the most
//!    up-to-date log among them bound everything the replica may have
//!    promised.
//! 2. **Catching up.** It then votes only in a term past that term (in
//!    which it may already have voted), and only for a candidate whose log
//!    is at least as up to date as that log (the *floor*): such a log holds
//!    every entry the floor's holder holds that a majority committed
//!    (Raft's log comparison, §5.4.1). It campaigns once its own durable
//!    log reaches the floor. It follows a leader meanwhile and
//!    acknowledges what it really holds, to a leader of the floor's term
//!    or later only (an older one may be a leader its lost storage voted
//!    past; while it awaits reports it acknowledges nothing, and confirms
//!    no read round on the same terms). The
//!    recovery ends once its durable log reaches the floor and its term
//!    has passed the floor's term.
//!
//! A new cluster starts with every replica empty, so the same questions
//! find every voter's log empty: nothing was ever committed, and the
//! replicas vote at once. Every voter, not a majority: a voter that never
//! heard from the cluster (down since it was created) and one whose disk
//! was replaced are both empty, and together they could be a majority
//! that knows nothing of what the others committed. So a new cluster
//! elects its first leader once all its voters have started. A replica
//! joining a running cluster, or one started late, simply catches up
//! first.
//!
//! The answers say nothing of the cluster if the asker cannot reach
//! enough of it: a server that lost its disk while another voter is
//! unreachable stays out of elections until that voter answers. That is
//! the point: with one disk lost and one voter away, the voter left may be
//! the one that is behind.
//!
//! **Divergence.** An append whose entries contradict an entry this
//! follower has committed means that one of the two logs lost or changed
//! a committed entry: after more faults than Raft survives (a majority
//! that lost storage, a disk that lied about a sync, an operator's forced
//! recovery). The follower cannot tell which log is right, so it refuses
//! every read from then on and reports [`Action::LogDiverged`] once, with
//! the index and both terms.

use std::collections::BTreeMap;

use crate::io::Action;
use crate::membership::Membership;
use crate::message::{MessageBody, RecoveryReport};
use crate::node::{Node, Role};
use crate::quorum::majority;
use crate::read_index::ReadError;
use crate::types::{Index, LogPosition, NodeId, StorageRecovery, Term};

/// Most answers a recovery keeps (one per member of the configurations
/// it knows of; far more than any real configuration has).
const RECOVERY_REPORTS_MAX: usize = 1024;

/// What an [`Action::StorageRecovery`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageRecoveryEvent {
    /// Every voter of the configuration (this replica among them, if it is
    /// one) reported an empty log: a new cluster. The replica votes.
    NewCluster {
        /// The replicas that reported an empty log.
        empty: Vec<NodeId>,
    },
    /// Enough peers reported: the replica votes again once its durable
    /// log reaches `floor` and its term passes `term`.
    FloorLearned {
        /// The most up-to-date log reported.
        floor: LogPosition,
        /// The highest term reported.
        term: Term,
        /// The peers whose reports it learned it from.
        reporters: Vec<NodeId>,
    },
    /// The replica's durable log reached the floor and its term passed
    /// the floor's term: it votes again.
    Recovered {
        /// Its durable log's last position then.
        durable: LogPosition,
    },
    /// The leader said this replica acknowledged `acknowledged` as durable
    /// and its log lacks it: its storage lost what it promised (a write
    /// reported durable that was not). The replica starts recovering.
    AcknowledgedEntryLost {
        /// The entry acknowledged and lost.
        acknowledged: LogPosition,
        /// The leader that noticed.
        leader: NodeId,
    },
}

/// A follower's committed log found contradicting its leader's (see
/// [`Action::LogDiverged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The first index found in conflict.
    pub index: Index,
    /// The term of this node's committed entry there.
    pub local_term: Term,
    /// The term the leader's log has there.
    pub leader_term: Term,
    /// The leader.
    pub leader: NodeId,
}

/// A report received during a recovery.
#[derive(Clone, Debug)]
pub(crate) struct ReportSeen {
    pub(crate) recovering: bool,
    pub(crate) term: Term,
    pub(crate) last_log: LogPosition,
    pub(crate) configuration: LogPosition,
    pub(crate) membership: Membership,
}

/// The volatile side of a recovery: the questions asked and the answers.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecoveryQuestions {
    /// Echoed by answers to this recovery's questions.
    pub(crate) nonce: u64,
    /// Ticks since the questions were last sent.
    pub(crate) elapsed_ticks: u32,
    /// Answers, by sender (bounded by the members of the configurations
    /// known: a report from any other node is dropped).
    pub(crate) reports: BTreeMap<NodeId, ReportSeen>,
}

impl Node {
    /// Whether a recovery from lost storage lets this node vote (or grant
    /// a pre-vote) in `term` for a candidate whose last entry is
    /// `candidate_log`.
    pub(crate) fn recovery_allows_vote(&self, term: Term, candidate_log: LogPosition) -> bool {
        if self.planted().storage_loss_ignored {
            return true;
        }
        match self.recovery {
            StorageRecovery::None => true,
            StorageRecovery::AwaitingReports => false,
            StorageRecovery::CatchingUp {
                floor,
                term: floor_term,
            } => term > floor_term && candidate_log.is_up_to_date_with(&floor),
        }
    }

    /// Whether a recovery from lost storage lets this node campaign for
    /// `term` (its own vote, for its own durable log).
    pub(crate) fn recovery_allows_campaign(&self, term: Term) -> bool {
        self.recovery_allows_vote(term, self.durable_last_position())
    }

    /// Whether this node's log bounds what the cluster may have counted on
    /// it for: it lost no storage, or it holds its recovery's floor again
    /// (every entry a majority may have committed with its lost storage's
    /// acknowledgement, and its term is at least every term that storage
    /// may have voted in). Only then does its report count toward another
    /// node's recovery; it may still not vote in its floor's term.
    pub(crate) fn holds_what_it_promised(&self) -> bool {
        match self.recovery {
            StorageRecovery::None => true,
            StorageRecovery::AwaitingReports => false,
            StorageRecovery::CatchingUp { floor, .. } => {
                self.durable_last_position().is_up_to_date_with(&floor)
            }
        }
    }

    /// The last position of the durable log (its base when it holds no
    /// durable entry past it).
    pub(crate) fn durable_last_position(&self) -> LogPosition {
        let index = self.persisted_index.max(self.log.base().index);
        let term = self
            .log
            .term_at(index)
            .expect("the log holds its base and every durable entry");
        LogPosition::new(index, term)
    }

    /// Starts a recovery (at construction, or when a leader says this
    /// node lost an acknowledged entry): new questions, none answered.
    pub(crate) fn begin_storage_recovery(&mut self) {
        self.recovery = StorageRecovery::AwaitingReports;
        self.hard_state_dirty = true;
        self.recovery_questions = RecoveryQuestions {
            nonce: self.rng_nonce(),
            // Ask at the first tick.
            elapsed_ticks: u32::MAX,
            reports: BTreeMap::new(),
        };
    }

    fn rng_nonce(&mut self) -> u64 {
        use rand::Rng;
        self.rng.gen()
    }

    /// On every tick: asks again, every heartbeat interval, the members
    /// that have not answered yet, or answered that they recover too (they
    /// may have recovered since).
    pub(crate) fn tick_storage_recovery(&mut self, actions: &mut Vec<Action>) {
        if self.recovery != StorageRecovery::AwaitingReports {
            return;
        }
        let questions = &mut self.recovery_questions;
        questions.elapsed_ticks = questions.elapsed_ticks.saturating_add(1);
        if questions.elapsed_ticks < self.config.heartbeat_interval_ticks {
            return;
        }
        questions.elapsed_ticks = 0;
        // A configuration of one voter (this node) is decided without
        // anyone's answer.
        if self.decide_storage_recovery(actions) {
            return;
        }
        let nonce = self.recovery_questions.nonce;
        let (_, membership) = self.newest_known_membership();
        // The leader we follow too: a snapshot installed before the first
        // question may have brought an older configuration that names
        // only this node (a replica that moved away and back), and then
        // no member would be asked and the recovery would never end. The
        // leader's report names a configuration at least as new as the
        // one its snapshot carried, so the next decision counts it.
        let mut members = membership.members();
        members.extend(self.leader);
        let asked: Vec<NodeId> = members
            .into_iter()
            .filter(|id| {
                *id != self.config.id
                    && self
                        .recovery_questions
                        .reports
                        .get(id)
                        .is_none_or(|report| report.recovering)
            })
            .collect();
        for id in asked {
            self.stats.recovery_queries_sent += 1;
            self.send(id, MessageBody::RecoveryQuery { nonce }, actions);
        }
    }

    /// Any node answers a recovering node's question with what it holds,
    /// in any term (the message's term is ours; no term moves).
    pub(crate) fn handle_recovery_query(
        &mut self,
        from: NodeId,
        nonce: u64,
        actions: &mut Vec<Action>,
    ) {
        let report = RecoveryReport {
            nonce,
            recovering: !self.holds_what_it_promised(),
            last_log: self.log.last_position(),
            configuration: self.membership_position(),
            membership: self.membership.clone(),
        };
        self.send(from, MessageBody::RecoveryReport(Box::new(report)), actions);
    }

    /// An answer to one of our questions.
    pub(crate) fn handle_recovery_report(
        &mut self,
        from: NodeId,
        term: Term,
        report: RecoveryReport,
        actions: &mut Vec<Action>,
    ) {
        if self.recovery != StorageRecovery::AwaitingReports
            || report.nonce != self.recovery_questions.nonce
        {
            return;
        }
        if report.membership.validate().is_err()
            || report.configuration.index > report.last_log.index
        {
            self.stats.messages_malformed += 1;
            return;
        }
        // Only members of a configuration known here or reported to us
        // answer, and the leader we follow (so the answers kept are
        // bounded by those). The leader, because a learner that joined
        // empty may know only the voters of its joining, all gone since:
        // the leader's report names the configuration that holds them now.
        let member = self.is_known_node(from)
            || self.leader == Some(from)
            || self
                .recovery_questions
                .reports
                .values()
                .any(|seen| seen.membership.contains(from));
        if !member || self.recovery_questions.reports.len() >= RECOVERY_REPORTS_MAX {
            self.stats.messages_from_unknown_node += 1;
            return;
        }
        self.stats.recovery_reports_received += 1;
        self.recovery_questions.reports.insert(
            from,
            ReportSeen {
                recovering: report.recovering,
                term,
                last_log: report.last_log,
                configuration: report.configuration,
                membership: report.membership,
            },
        );
        self.decide_storage_recovery(actions);
    }

    /// The newest configuration known: ours, or one a report names at a
    /// later position (Raft's order: a later term first).
    fn newest_known_membership(&self) -> (LogPosition, Membership) {
        let mut newest = (self.membership_position(), &self.membership);
        for report in self.recovery_questions.reports.values() {
            let newer = report.configuration.is_up_to_date_with(&newest.0)
                && report.configuration != newest.0;
            if newer {
                newest = (report.configuration, &report.membership);
            }
        }
        (newest.0, newest.1.clone())
    }

    /// Decides the recovery if the answers allow: a new cluster (every
    /// voter's log empty), or a floor (enough answers, see
    /// [`enough_answers`]). Returns whether it was decided.
    fn decide_storage_recovery(&mut self, actions: &mut Vec<Action>) -> bool {
        debug_assert_eq!(self.recovery, StorageRecovery::AwaitingReports);
        let me = self.config.id;
        let (_, membership) = self.newest_known_membership();
        let reports = &self.recovery_questions.reports;
        let own_log_empty = self.log.last_position() == LogPosition::ZERO;
        let halves = [&membership.voters, &membership.voters_outgoing];
        let mut enough_trusted = true;
        let mut all_empty = own_log_empty;
        for half in halves.into_iter().filter(|half| !half.is_empty()) {
            enough_trusted &= enough_answers(half, me, reports);
            let empty = half
                .iter()
                .filter(|id| {
                    if **id == me {
                        own_log_empty
                    } else {
                        reports
                            .get(id)
                            .is_some_and(|r| r.last_log == LogPosition::ZERO)
                    }
                })
                .count();
            all_empty &= empty == half.len();
        }
        if all_empty {
            let empty = membership
                .voters
                .iter()
                .chain(&membership.voters_outgoing)
                .copied()
                .filter(|id| {
                    *id == me
                        || reports
                            .get(id)
                            .is_some_and(|r| r.last_log == LogPosition::ZERO)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            tracing::info!(
                node = me,
                "a new cluster: every voter started empty; voting"
            );
            self.end_storage_recovery();
            actions.push(Action::StorageRecovery(Box::new(
                StorageRecoveryEvent::NewCluster { empty },
            )));
            return true;
        }
        if !enough_trusted {
            return false;
        }
        // Every report counts toward the bounds (a recovering peer's log
        // and term are real too, and a higher bound is only more
        // careful); only trusted ones count toward "enough".
        let mut floor = LogPosition::ZERO;
        let mut floor_term = 0;
        for report in reports.values() {
            if report.last_log.is_up_to_date_with(&floor) {
                floor = report.last_log;
            }
            floor_term = floor_term.max(report.term);
        }
        let reporters = reports.keys().copied().collect();
        tracing::warn!(
            node = me,
            floor_index = floor.index,
            floor_term = floor.term,
            term = floor_term,
            "started without the storage the cluster may count on; \
             not voting until caught up"
        );
        self.recovery = StorageRecovery::CatchingUp {
            floor,
            term: floor_term,
        };
        self.hard_state_dirty = true;
        self.recovery_questions.reports.clear();
        actions.push(Action::StorageRecovery(Box::new(
            StorageRecoveryEvent::FloorLearned {
                floor,
                term: floor_term,
                reporters,
            },
        )));
        // The term it may have voted in: a vote in it must never come
        // from here again.
        if floor_term > self.term {
            self.become_follower(floor_term, None, actions);
        }
        self.maybe_finish_storage_recovery(actions);
        true
    }

    fn end_storage_recovery(&mut self) {
        self.recovery = StorageRecovery::None;
        self.hard_state_dirty = true;
        self.recovery_questions.reports.clear();
    }

    /// Ends a recovery that caught up: called after every step that may
    /// move the durable log or the term.
    pub(crate) fn maybe_finish_storage_recovery(&mut self, actions: &mut Vec<Action>) {
        let StorageRecovery::CatchingUp { floor, term } = self.recovery else {
            return;
        };
        let durable = self.durable_last_position();
        if self.term > term && durable.is_up_to_date_with(&floor) {
            tracing::info!(
                node = self.config.id,
                index = durable.index,
                term = durable.term,
                "caught up after lost storage; voting again"
            );
            self.end_storage_recovery();
            actions.push(Action::StorageRecovery(Box::new(
                StorageRecoveryEvent::Recovered { durable },
            )));
        }
    }

    /// Our leader says we acknowledged `acknowledged` as durable: if our
    /// log lacks it, our storage lost it.
    pub(crate) fn handle_acknowledged_entry_lost(
        &mut self,
        leader: NodeId,
        acknowledged: LogPosition,
        actions: &mut Vec<Action>,
    ) {
        let held = self.log.base().index >= acknowledged.index
            || self.log.term_at(acknowledged.index) == Some(acknowledged.term);
        if held || self.recovery == StorageRecovery::AwaitingReports {
            return;
        }
        tracing::error!(
            node = self.config.id,
            leader,
            index = acknowledged.index,
            term = acknowledged.term,
            "this server lost an entry it had acknowledged as durable; \
             not voting until it has caught up again"
        );
        self.begin_storage_recovery();
        actions.push(Action::StorageRecovery(Box::new(
            StorageRecoveryEvent::AcknowledgedEntryLost {
                acknowledged,
                leader,
            },
        )));
    }

    /// An append from `leader` contradicts our committed entry at `index`
    /// (ours has `local_term`, the leader's `leader_term`).
    pub(crate) fn note_divergence(
        &mut self,
        leader: NodeId,
        index: Index,
        leader_term: Term,
        actions: &mut Vec<Action>,
    ) {
        self.stats.append_conflicts_with_commit += 1;
        if self.divergence.is_some() {
            return;
        }
        let Some(local_term) = self.log.term_at(index) else {
            return;
        };
        debug_assert_ne!(local_term, leader_term);
        let divergence = Divergence {
            index,
            local_term,
            leader_term,
            leader,
        };
        tracing::error!(
            node = self.config.id,
            leader,
            index,
            local_term,
            leader_term,
            "committed log contradicts the leader's; serving no reads"
        );
        self.divergence = Some(divergence);
        self.refuse_every_read(ReadError::Diverged { index }, actions);
        actions.push(Action::LogDiverged(divergence));
    }

    /// This node's committed log was found contradicting its leader's
    /// (it serves no read since).
    pub fn divergence(&self) -> Option<Divergence> {
        self.divergence
    }

    /// Where this node stands in recovering from lost storage.
    pub fn storage_recovery(&self) -> StorageRecovery {
        self.recovery
    }

    /// While a recovery waits for reports: the members that answered, and
    /// how many answers the newest configuration known needs from members
    /// that are not recovering themselves (in its larger half, when
    /// joint; an answer from one that recovers too counts only within the
    /// minority that may have lost storage).
    pub fn recovery_reports(&self) -> (Vec<NodeId>, usize) {
        let (_, membership) = self.newest_known_membership();
        let needed = [&membership.voters, &membership.voters_outgoing]
            .into_iter()
            .filter(|half| !half.is_empty())
            .map(|half| half.len() - majority(half.len()) + 1)
            .max()
            .unwrap_or(0);
        let answered = self.recovery_questions.reports.keys().copied().collect();
        (answered, needed)
    }

    /// A recovering node campaigns only for a term it may vote in: it
    /// follows, or (caught up, its term at the floor's) pre-campaigns for
    /// the next term; an election in that term ends its recovery.
    #[inline]
    pub(crate) fn check_recovery_invariants(&self) {
        if self.recovery.is_recovering() && !self.planted().storage_loss_ignored {
            assert!(
                self.role == Role::Follower
                    || (self.role == Role::PreCandidate
                        && self.recovery_allows_campaign(self.term + 1)),
                "a node recovering from lost storage campaigned as {:?} in term {} ({:?})",
                self.role,
                self.term,
                self.recovery
            );
        }
    }
}

/// Whether the answers of `half`'s voters (other than `me`) bound what a
/// majority of them may have committed with `me`'s lost storage. Every
/// committed entry is on a majority M of the half, and Raft's safety
/// assumes that at most `f = n - q` of its `n` voters (majority `q`) lose
/// their storage at once: `me` among them, so at most `f - 1` others
/// (`f` if `me` is not a voter of this half). Answers from `a` voters, `r`
/// of them recovering themselves (perhaps lost, their logs perhaps
/// short), come from at least `a - min(r, f - 1)` voters that kept what
/// they promised; `f + 1` of those meet every such M in a voter that
/// holds the entry (`(f + 1) + (q - lost) > n - lost`). Counting the
/// recovering answers this way, rather than not at all, keeps a cluster
/// in which a fresh server and one whose disk was replaced start together
/// from waiting for each other for ever.
fn enough_answers(
    half: &std::collections::BTreeSet<NodeId>,
    me: NodeId,
    reports: &BTreeMap<NodeId, ReportSeen>,
) -> bool {
    let voters = half.len();
    let tolerated = voters - majority(voters);
    let others_tolerated = if half.contains(&me) {
        tolerated.saturating_sub(1)
    } else {
        tolerated
    };
    let (answered, recovering) = half
        .iter()
        .filter(|id| **id != me)
        .filter_map(|id| reports.get(id))
        .fold((0, 0), |(answered, recovering), report| {
            (answered + 1, recovering + usize::from(report.recovering))
        });
    answered - recovering.min(others_tolerated) > tolerated
}
