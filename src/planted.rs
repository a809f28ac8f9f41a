//! Deliberately planted protocol mistakes, for measuring how quickly the
//! simulator's *outside* checks catch them. They can be switched
//! on only with the `planted-bugs` feature, which no user of the library
//! needs, and even then only by calling the hidden `Node::plant_bugs` on
//! a node; without the feature the checks are constant `false` and
//! compile away.
//!
//! A field's name is the mistake's name in the simulator's one table of
//! planted mistakes, in kebab case (`figure_8_commit` is `concord-sim run
//! --bug figure-8-commit`); that table (`sim/src/bugs.rs`, printed by
//! `concord-sim bugs`) says what each breaks and which check must catch
//! it within how many seeds.
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
//!   (`election.rs`);
//! * a catch-up taken leaves the candidate's last entry at the
//!   catch-up's (`election.rs`).
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
    // Mistakes the simulator's step rules (`sim/src/observe/rules.rs`)
    // catch at the step that makes them; the outcome checks see them
    // rarely or never.
    /// A node that grants no pre-vote still moves to the higher term a
    /// pre-vote request names (as if it were a vote request), disrupting
    /// the leader it follows. Breaks no invariant (not in [`Self::any`]).
    pub pre_vote_moves_term: bool,
    /// A leader takes an append acceptance of an older term as if it
    /// were of its own: the follower's log matched an older leader's up
    /// to that index, not necessarily this one's.
    pub stale_acceptance_counted: bool,
    /// A follower commits up to the leader's commit index capped by its
    /// own last entry, not by the last entry of the append: a suffix the
    /// append did not vouch for commits.
    pub commit_past_append: bool,
    /// A leader refused with a hint probes next right after the hint's
    /// index, ignoring the hint's term: one probe per divergent entry run
    /// of the follower instead of per term. An inefficiency (not in
    /// [`Self::any`]).
    pub probe_ignores_hint_term: bool,
    /// A leader refused while probing steps back to right after the
    /// follower's match index, ignoring the hint: every entry since is
    /// sent again. An inefficiency (not in [`Self::any`]).
    pub probe_back_to_match: bool,
    /// A leader's heartbeat tells each follower its whole commit index,
    /// not capped at what the follower is known to hold: a follower
    /// commits whatever it holds up to there, possibly a suffix of an
    /// older term.
    pub heartbeat_commit_uncapped: bool,
    /// A follower that finds a conflict in an append truncates its log
    /// right after the append's `prev`, not at the first conflicting
    /// entry, and writes every entry of the append again. An
    /// inefficiency (not in [`Self::any`]).
    pub truncate_after_prev: bool,
    /// A leader counts its whole log toward a commit, not only its durable
    /// part: an entry commits before the leader's own copy is on disk.
    pub leader_counts_unpersisted: bool,
    /// A candidate grants a rival candidate's vote request of its own
    /// term, casting a second vote in one term (and so cannot count its
    /// own any more).
    pub candidate_grants_rival: bool,
    /// A read arriving at a leader while a confirmation round is out
    /// joins that round instead of the next: the round may have been sent
    /// before the read arrived, so its answers do not show that no newer
    /// leader existed when the read began.
    pub read_joins_sent_round: bool,
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

    // Leases and snapshots: each caught by its own nemesis of
    // the simulator (`lease`, `snapshot-conflict`).
    /// A leader counts its lease from when a quorum's answer to a
    /// heartbeat round arrived, not from when it sent the round: a round
    /// whose answers were held up (a paused leader, a slow network) grants
    /// a lease that outlives the followers' refusal to vote.
    pub lease_from_answer: bool,
    /// The lease ignores the declared clock drift bound: it lasts
    /// `lease_read_ticks + clock_drift_bound_ticks` ticks, as if clocks
    /// never drifted.
    pub lease_ignores_drift: bool,
    /// A leader keeps serving lease reads while it transfers its
    /// leadership (the lease is not voided when the transfer starts),
    /// though the target's election sets the voters' stickiness aside.
    pub lease_during_transfer: bool,
    /// A follower takes a snapshot whose last index its log reaches as one
    /// it holds already (it compares indices, not the term there) and
    /// acknowledges it without installing: the leader then has it commit
    /// its own, conflicting, entries.
    pub snapshot_held_by_index: bool,
    /// A follower installs a complete snapshot even when its commit index
    /// has passed the snapshot's last entry (a late copy of a transfer it
    /// finished), taking its commit index back.
    pub stale_snapshot_installed: bool,
    /// A liveness mistake, not a safety one: a follower whose log lacks
    /// the index a heartbeat's commit names (it lost entries it
    /// acknowledged) keeps quiet about it, so an idle leader goes on
    /// believing it holds them until the next write. Caught by the
    /// simulator's idle catch-up check; sets no assertion aside (not in
    /// [`Self::any`]).
    pub lost_entries_unreported: bool,
    /// A node that lost its storage (it started empty, or its host found
    /// it damaged) votes and campaigns at once, as if it remembered what
    /// it promised: with a lagging peer it can elect a leader that lacks
    /// entries the lost storage helped commit. Caught by the simulator's
    /// disk-loss fault.
    pub storage_loss_ignored: bool,

    // Leases, forwarded reads and catch-ups: each caught by
    // the simulator's aimed nemeses, per-read freshness check or step
    // rules (`sim/tests/bugs.rs`).
    /// A new leader serves lease reads before an entry of its own term is
    /// committed: its commit index may still lag entries an earlier
    /// leader committed, so the read is served at a stale index.
    pub lease_before_own_term_commit: bool,
    /// A node's vote hold after a restart lasts `lease_read_ticks`, not a
    /// minimum election timeout: the lease is what the hold protects, but
    /// the promise the node made before it crashed ran for the election
    /// timeout of its clock, past the lease by the drift allowance.
    pub restart_hold_lease_long: bool,
    /// A follower serves a follower read that arrives in the very tick
    /// its last read index came back from the leader at that index,
    /// without asking again: the index was confirmed before the read
    /// arrived.
    pub follower_read_index_reused: bool,
    /// A (pre-)candidate takes any catch-up that matches its log and
    /// holds no entry past its term, without asking whether it leaves the
    /// log more up to date: a late catch-up of an older term replaces its
    /// own newer entries.
    pub catch_up_unordered: bool,
    /// A leader takes an answer that names an earlier record of its
    /// sender (see [`Message::progress_id`](crate::Message::progress_id)):
    /// a delayed acknowledgement of a replica removed since, whose node
    /// was added back empty in the same term, counts for the new replica.
    pub earlier_replica_answers_taken: bool,
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
        pre_vote_moves_term: false,
        stale_acceptance_counted: false,
        commit_past_append: false,
        probe_ignores_hint_term: false,
        probe_back_to_match: false,
        heartbeat_commit_uncapped: false,
        truncate_after_prev: false,
        leader_counts_unpersisted: false,
        candidate_grants_rival: false,
        read_joins_sent_round: false,
        removed_node_campaigns: false,
        commit_notice_unchecked: false,
        owed_commit_forgotten: false,
        lease_from_answer: false,
        lease_ignores_drift: false,
        lease_during_transfer: false,
        snapshot_held_by_index: false,
        stale_snapshot_installed: false,
        lost_entries_unreported: false,
        storage_loss_ignored: false,
        lease_before_own_term_commit: false,
        restart_hold_lease_long: false,
        follower_read_index_reused: false,
        catch_up_unordered: false,
        earlier_replica_answers_taken: false,
    };

    /// Whether any safety mistake is on (the core's direct assertions are
    /// then set aside).
    pub fn any(&self) -> bool {
        self.figure_8_commit
            || self.vote_before_durable
            || self.read_index_without_round
            || self.follower_read_before_apply
            || self.joint_new_quorum_only
            || self.stale_acceptance_counted
            || self.commit_past_append
            || self.heartbeat_commit_uncapped
            || self.leader_counts_unpersisted
            || self.candidate_grants_rival
            || self.read_joins_sent_round
            || self.membership_on_commit
            || self.witness_campaigns
            || self.commit_notice_unchecked
            || self.lease_from_answer
            || self.lease_ignores_drift
            || self.lease_during_transfer
            || self.snapshot_held_by_index
            || self.stale_snapshot_installed
            || self.storage_loss_ignored
            || self.lease_before_own_term_commit
            || self.restart_hold_lease_long
            || self.follower_read_index_reused
            || self.catch_up_unordered
            || self.earlier_replica_answers_taken
    }
}
