//! Deliberately planted protocol mistakes, for measuring how quickly the
//! simulator's *outside* checks catch them (issue 9). They can be switched
//! on only with the `planted-bugs` feature, which no user of the library
//! needs, and even then only by calling the hidden `Node::plant_bugs` on
//! a node; without the feature the checks are constant `false` and
//! compile away.
//!
//! While any planted bug is on, the core's own assertions that would
//! report the mistake directly are set aside for that node, so that a
//! catch can only come from outside the core (the simulator's checks):
//!
//! * the leader's second-path recount of the voters holding a newly
//!   committed index (`replication.rs`);
//! * the "two leaders in one term" assertion of `set_leader`
//!   (`election.rs`), whose caller already refuses a second leader;
//! * the hard state's term never going back when the host reports a write
//!   durable (`durability.rs`);
//! * "a witness never wins an election" in `become_leader`
//!   (`election.rs`).
//!
//! Recovery validation (`Node::new`) runs before the bugs are planted and
//! stays on: neither bug can produce a recovered state it refuses (a vote
//! and the entries after it travel in one ordered write).

/// The planted mistakes. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PlantedBugs {
    /// Raft's Figure 8 mistake: a leader commits an entry of an earlier
    /// term by counting the replicas that hold it.
    pub figure_8_commit: bool,
    /// A vote grant is sent before the vote (the hard state) is durable.
    pub vote_before_durable: bool,
    /// A leader serves ReadIndex reads without waiting for a heartbeat
    /// round to confirm it still leads.
    pub read_index_without_round: bool,
    /// A follower serves a follower read as soon as its leader answers,
    /// before its state machine has applied the read index.
    pub follower_read_before_apply: bool,
    /// During a joint configuration the leader commits with a majority of
    /// the new voters alone, forgetting the outgoing ones.
    pub joint_new_quorum_only: bool,
    /// A configuration takes effect when its entry commits instead of
    /// when it is appended.
    pub membership_on_commit: bool,
    /// A witness campaigns like a full voter (and so may lead, with no
    /// state machine behind it).
    pub witness_campaigns: bool,
    /// An inefficiency, not a safety mistake: a leader whose append is
    /// refused ignores the follower's hint and backs up one entry per
    /// refusal, one probe round trip per entry instead of per term. Only
    /// the simulator's efficiency budgets can catch it; it breaks no
    /// invariant, so it sets no assertion aside (not in [`Self::any`]).
    pub probe_ignores_hint: bool,
    /// A liveness mistake, not a safety one: a node removed from the
    /// voters keeps campaigning (it ignores both its own configuration and
    /// the peers' [`MessageBody::Removed`](crate::MessageBody::Removed)
    /// notices), disrupting the cluster that removed it with elections.
    /// Caught by the simulator's stability checks under the final
    /// configuration; sets no assertion aside (not in [`Self::any`]).
    pub removed_node_campaigns: bool,
    /// A follower takes a commit notice without checking that its log
    /// holds the leader's last entry, committing (up to its own last
    /// entry) whatever it holds there, even a suffix no leader of its term
    /// sent it.
    pub commit_notice_unchecked: bool,
    /// A liveness mistake, not a safety one: a leader that holds back a
    /// commit notice while appends are in flight to a follower forgets
    /// it, so the follower hears the commit only from the next append or
    /// heartbeat. Caught by the simulator's `commit-untold` check (a
    /// follower with no append in flight has been told the commit up to
    /// what it holds); sets no assertion aside (not in [`Self::any`]).
    pub owed_commit_forgotten: bool,
    /// A liveness mistake, not a safety one: a follower whose log lacks
    /// the index a heartbeat's commit names (it lost entries it
    /// acknowledged) keeps quiet about it, so an idle leader goes on
    /// believing it holds them until the next write. Caught by the
    /// simulator's idle catch-up check; sets no assertion aside (not in
    /// [`Self::any`]).
    pub lost_entries_unreported: bool,
}

impl PlantedBugs {
    /// No bug.
    pub const NONE: PlantedBugs = PlantedBugs {
        figure_8_commit: false,
        vote_before_durable: false,
        read_index_without_round: false,
        follower_read_before_apply: false,
        joint_new_quorum_only: false,
        membership_on_commit: false,
        witness_campaigns: false,
        probe_ignores_hint: false,
        removed_node_campaigns: false,
        commit_notice_unchecked: false,
        owed_commit_forgotten: false,
        lost_entries_unreported: false,
    };

    /// Whether any safety mistake is on (the core's direct assertions are
    /// then set aside).
    pub fn any(&self) -> bool {
        self.figure_8_commit
            || self.vote_before_durable
            || self.read_index_without_round
            || self.follower_read_before_apply
            || self.joint_new_quorum_only
            || self.membership_on_commit
            || self.witness_campaigns
            || self.commit_notice_unchecked
    }
}
