//! Leader election: timers, PreVote (thesis §9.6), vote granting (§5.2,
//! §5.4.1), CheckQuorum, and the role transitions.

use crate::io::Action;
use crate::message::{Message, MessageBody};
use crate::node::{Node, Role};
use crate::quorum::{joint_tally, majority, VoteResult};
use crate::types::{LogPosition, NodeId, Term};

/// Terms above this are refused as malformed: no real cluster gets near
/// it, and accepting one would let a hostile message push the term to where
/// the next election overflows.
pub(crate) const TERM_MAX: Term = u64::MAX / 2;

impl Node {
    pub(crate) fn tick(&mut self, actions: &mut Vec<Action>) {
        self.tick_reads(actions);
        self.tick_storage_recovery(actions);
        match self.role {
            Role::Leader => self.tick_leader(actions),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(actions),
        }
    }

    fn tick_election(&mut self, actions: &mut Vec<Action>) {
        self.election_elapsed_ticks = self.election_elapsed_ticks.saturating_add(1);
        // (The planted `restart_hold_lease_long` ends the hold at the
        // lease's length.)
        let hold_ticks = if self.planted().restart_hold_lease_long {
            self.config.lease_read_ticks
        } else {
            self.config.election_timeout_min_ticks
        };
        if self.election_elapsed_ticks >= hold_ticks {
            self.vote_hold_after_start = false;
        }
        // The election timeout only keeps voters from disrupting a leader
        // they have not heard from yet (safety never depends on it). The
        // only voter of a cluster has no one to wait for or to disrupt, so
        // a follower that is the only voter campaigns at its first tick: a
        // restarted one-node cluster serves again at once. A candidate
        // still waits a full timeout before trying again.
        // Only voters campaign: a learner, or a node removed from the
        // configuration, waits to be told what happens.
        if !self.may_campaign() {
            return;
        }
        let sole_voter = self.role == Role::Follower
            && !self.membership.is_joint()
            && self.membership.voters.len() == 1
            && self.membership.voters.contains(&self.config.id);
        if sole_voter || self.election_elapsed_ticks >= self.randomized_election_timeout_ticks {
            self.campaign(false, actions);
        }
    }

    /// True while this node believes a leader is alive: it is the leader,
    /// or it heard from one within the minimum election timeout. Votes that
    /// would depose that leader are refused meanwhile, so a node that was
    /// partitioned away cannot disrupt a healthy cluster when it returns.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.role == Role::Leader
            || ((self.leader.is_some() || self.vote_hold_after_start)
                && self.election_elapsed_ticks < self.config.election_timeout_min_ticks)
    }

    /// Starts an election: a pre-election first when PreVote is on, unless
    /// the leader asked for this election (leadership transfer).
    pub(crate) fn campaign(&mut self, transfer: bool, actions: &mut Vec<Action>) {
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate(actions);
        } else {
            self.become_candidate(transfer, actions);
        }
    }

    /// Moves to a new, higher term. The vote is cleared and the new hard
    /// state must be persisted before anything is promised in this term.
    pub(crate) fn set_term(&mut self, term: Term) {
        assert!(
            term > self.term,
            "term must only increase: {} -> {term}",
            self.term
        );
        self.term = term;
        self.voted_for = None;
        self.hard_state_dirty = true;
        self.leader = None;
        self.leader_match_index = 0;
        self.acked_index = 0;
        self.ack_owed = false;
        self.pending_vote_grant = None;
        // A transfer from an older term's leader will not be continued.
        self.incoming_snapshot = None;
    }

    /// Records the leader of the current term. A node never follows two
    /// leaders in one term; callers have already refused such a message.
    pub(crate) fn set_leader(&mut self, leader: NodeId) {
        assert!(
            self.leader.is_none() || self.leader == Some(leader) || self.planted().any(),
            "two leaders in term {}: {:?} and {leader}",
            self.term,
            self.leader
        );
        self.leader = Some(leader);
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed_ticks = 0;
        self.heartbeat_elapsed_ticks = 0;
        self.reset_randomized_election_timeout();
    }

    fn announce_role(&mut self, previous: (Role, Term), actions: &mut Vec<Action>) {
        if previous != (self.role, self.term) {
            tracing::debug!(node = self.config.id, role = ?self.role, term = self.term, "role changed");
            actions.push(Action::RoleChanged {
                role: self.role,
                term: self.term,
            });
        }
    }

    pub(crate) fn become_follower(
        &mut self,
        term: Term,
        leader: Option<NodeId>,
        actions: &mut Vec<Action>,
    ) {
        let previous = (self.role, self.term);
        if term > self.term {
            self.set_term(term);
        }
        assert_eq!(term, self.term);
        self.role = Role::Follower;
        match leader {
            Some(leader) => self.set_leader(leader),
            // A leader stepping down in its own term (CheckQuorum) must stop
            // naming itself: clients would be redirected back to it, and it
            // would keep refusing votes as if a leader were alive.
            None if self.leader == Some(self.config.id) => self.leader = None,
            None => {}
        }
        self.progress.clear();
        self.votes.clear();
        self.transfer_target = None;
        self.reset_election_timer();
        self.abandon_unconfirmed_reads(actions);
        self.announce_role(previous, actions);
    }

    fn become_pre_candidate(&mut self, actions: &mut Vec<Action>) {
        let previous = (self.role, self.term);
        self.role = Role::PreCandidate;
        self.leader = None;
        self.stats.pre_elections_started += 1;
        // Asks for votes in the term a real election would run in.
        self.canvass(previous, self.term + 1, false, actions);
    }

    pub(crate) fn become_candidate(&mut self, transfer: bool, actions: &mut Vec<Action>) {
        let previous = (self.role, self.term);
        self.set_term(self.term + 1);
        self.voted_for = Some(self.config.id);
        self.role = Role::Candidate;
        self.stats.elections_started += 1;
        self.canvass(previous, self.term, transfer, actions);
    }

    /// Runs a (pre-)election as the role just taken (`previous` is what
    /// it was): our own vote counted, a fresh timer, a `RequestVote` in
    /// `term` to every other voter, a pre-vote unless `term` is ours.
    fn canvass(
        &mut self,
        previous: (Role, Term),
        term: Term,
        transfer: bool,
        actions: &mut Vec<Action>,
    ) {
        self.progress.clear();
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        self.reset_election_timer();
        self.abandon_unconfirmed_reads(actions);
        self.announce_role(previous, actions);
        let last_log = self.log.last_position();
        let pre_vote = term != self.term;
        for i in 0..self.peer_count() {
            let peer = self.peer(i);
            if !self.membership.is_voter(peer) {
                continue;
            }
            let body = MessageBody::RequestVote {
                pre_vote,
                last_log,
                transfer,
            };
            self.send_with_term(peer, term, body, actions);
        }
        self.poll_election(actions);
    }

    pub(crate) fn become_leader(&mut self, actions: &mut Vec<Action>) {
        assert_eq!(self.role, Role::Candidate);
        assert!(
            !(self.is_witness_node() || self.membership.is_witness(self.config.id))
                || self.planted().any(),
            "a witness never campaigns, so it never wins"
        );
        let previous = (self.role, self.term);
        self.role = Role::Leader;
        self.set_leader(self.config.id);
        self.votes.clear();
        self.reset_election_timer();
        self.transfer_target = None;
        self.reset_progress();
        self.reads.reset_rounds();
        self.stats.leader_elected += 1;
        tracing::info!(node = self.config.id, term = self.term, "became leader");
        self.announce_role(previous, actions);
        // A leader may only commit entries of its own term by counting
        // (Figure 8); appending one at once commits everything before it.
        self.append_noop();
        self.broadcast_append(true, actions);
    }

    /// Whether this candidate's own vote may be counted: only once the
    /// vote for itself is durable, or a restart could let it vote again in
    /// the same term for someone else.
    fn own_vote_durable(&self) -> bool {
        self.durable_hard_state.term == self.term
            && self.durable_hard_state.voted_for == Some(self.config.id)
    }

    /// Counts votes and moves on when the election is decided.
    pub(crate) fn poll_election(&mut self, actions: &mut Vec<Action>) {
        let me = self.config.id;
        let own_counts = match self.role {
            Role::PreCandidate => true,
            Role::Candidate => self.own_vote_durable(),
            Role::Follower | Role::Leader => return,
        };
        // Decided by the configuration in force, with a majority of both
        // halves while it is joint.
        let votes = &self.votes;
        let vote_of = |id: NodeId| match votes.get(&id) {
            Some(true) if id == me && !own_counts => None,
            vote => vote.copied(),
        };
        let result = joint_tally(
            &self.membership.voters,
            &self.membership.voters_outgoing,
            vote_of,
        );
        match result {
            VoteResult::Won if self.role == Role::PreCandidate => {
                self.become_candidate(false, actions)
            }
            // A majority of others may grant before our own vote is
            // durable; leading waits for it all the same. A leader whose
            // term is not durable could crash, come back in the previous
            // term, be elected again in the same term by the same voters,
            // and write a different entry at an index and term its first
            // incarnation already replicated.
            VoteResult::Won if !own_counts => {}
            VoteResult::Won => self.become_leader(actions),
            VoteResult::Lost => self.become_follower(self.term, None, actions),
            VoteResult::Pending => {}
        }
    }

    /// Handles RequestVote once the message term is at least ours.
    pub(crate) fn handle_request_vote(
        &mut self,
        message: &Message,
        pre_vote: bool,
        last_log: LogPosition,
        actions: &mut Vec<Action>,
    ) {
        let candidate = message.from;
        // The planted mistake: a candidate votes for a rival too.
        let rival = self.planted().candidate_grants_rival
            && !pre_vote
            && self.role == Role::Candidate
            && self.voted_for == Some(self.config.id);
        // A node holding its votes (a promise to a leader that may still
        // serve lease reads: after a restart, or carried into a newer term
        // an answer told it of) refuses a first vote in its own term too,
        // unless a leadership transfer asks for it.
        let transfer = matches!(
            message.body,
            MessageBody::RequestVote { transfer: true, .. }
        );
        let held = !pre_vote && !transfer && self.vote_hold_after_start && self.in_leader_lease();
        let can_vote = self.voted_for == Some(candidate)
            || (self.voted_for.is_none() && self.leader.is_none() && !held)
            || (pre_vote && message.term > self.term)
            || rival;
        let up_to_date = last_log.is_up_to_date_with(&self.log.last_position());
        // A node recovering from lost storage may have voted in this term
        // already, or acknowledged entries the candidate lacks.
        self.maybe_finish_storage_recovery(actions);
        let recovered = self.recovery_allows_vote(message.term, last_log);
        if can_vote && up_to_date && !recovered {
            self.stats.votes_refused_recovering += 1;
        }
        let granted = can_vote && up_to_date && recovered;
        if granted && !pre_vote {
            debug_assert_eq!(message.term, self.term);
            if self.voted_for.is_none() || rival {
                self.voted_for = Some(candidate);
                self.hard_state_dirty = true;
            }
            self.election_elapsed_ticks = 0;
            if self.planted().vote_before_durable {
                // The planted mistake: answer before the vote is durable.
                let body = MessageBody::RequestVoteResponse {
                    pre_vote: false,
                    granted: true,
                };
                self.send(candidate, body, actions);
                return;
            }
            // Answered from `after_step` once the vote is durable.
            self.pending_vote_grant = Some((candidate, self.term));
            return;
        }
        // A granted pre-vote echoes the term asked about; a refusal carries
        // our own term so a candidate behind us learns it.
        let term = if granted { message.term } else { self.term };
        let body = MessageBody::RequestVoteResponse { pre_vote, granted };
        self.send_with_term(candidate, term, body, actions);
        // Only for a candidate our configuration lets lead: one it drops
        // would merely campaign longer with our entries.
        if !up_to_date && !self.may_campaign() && self.membership.is_voter(candidate) {
            self.send_candidate_catch_up(candidate, last_log, actions);
        }
    }

    /// Refusing `candidate` for a log behind ours while we can never lead
    /// ourselves: hand it the entries it may lack, so that a voter able
    /// to lead can become as up to date as we are. We send from the
    /// candidate's last index, or from our commit index if that is lower
    /// (what we know committed is what the candidate most likely shares),
    /// one append's worth; the candidate checks the rest.
    fn send_candidate_catch_up(
        &mut self,
        candidate: NodeId,
        last_log: LogPosition,
        actions: &mut Vec<Action>,
    ) {
        // Where that was compacted away here, from our base: a candidate
        // holding the base entry can still take the rest.
        let from = last_log
            .index
            .min(self.log.commit_index())
            .max(self.log.base().index);
        let Some(prev_term) = self.log.term_at(from) else {
            return;
        };
        let entries = self.log.entries_from(
            from + 1,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        if entries.is_empty() {
            return;
        }
        self.stats.candidate_catch_ups_sent += 1;
        let prev = LogPosition::new(from, prev_term);
        self.send(
            candidate,
            MessageBody::CandidateCatchUp { prev, entries },
            actions,
        );
    }

    /// A refusing peer that cannot lead sent us the entries it holds after
    /// `prev`. Taken while we campaign, only where `prev` matches our log
    /// and the entries leave our log strictly more up to date (§5.4.1).
    /// Then they are a prefix of the log of the leader that wrote the
    /// last of them (log matching), every entry of ours they replace has
    /// a lower term than that leader's and is absent from its log, so no
    /// leader committed it (a committed entry is in every later leader's
    /// log), and no newer leader's entry is replaced (our log holds none
    /// newer than theirs). It is what that leader would have sent us;
    /// only the term stays ours. The election under way ends; the next
    /// one asks with the new log.
    pub(crate) fn handle_candidate_catch_up(
        &mut self,
        message_term: Term,
        prev: LogPosition,
        entries: crate::entries::Entries,
        actions: &mut Vec<Action>,
    ) {
        if !matches!(self.role, Role::PreCandidate | Role::Candidate) {
            return;
        }
        let Some(last) = entries.last().map(|entry| entry.position()) else {
            return;
        };
        if !crate::replication::entries_well_formed(prev, &entries, message_term) {
            self.stats.messages_malformed += 1;
            return;
        }
        // Entries of a term past ours wait until the sender's refusal, or
        // a leader, has brought us to that term: a log never holds an
        // entry newer than its node's term (our own entries, if we lead
        // this term, must come after them).
        let ours = self.log.last_position();
        // (The planted `catch_up_unordered` leaves the order out.)
        let newer =
            (last.is_up_to_date_with(&ours) && last != ours) || self.planted().catch_up_unordered;
        if !newer || last.term > self.term || !self.log.matches(prev) {
            return;
        }
        if self.append_after_match(entries) {
            self.stats.candidate_catch_ups_taken += 1;
            debug_assert!(self.planted().any() || self.log.last_position() == last);
            // The votes so far judged the old log (and may count under a
            // configuration the new entries replace), and the sender
            // refused us in this term: campaign afresh at the next
            // timeout, asking with the new log.
            self.become_follower(self.term, None, actions);
        }
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        message: &Message,
        pre_vote: bool,
        granted: bool,
        actions: &mut Vec<Action>,
    ) {
        let current = match (self.role, pre_vote) {
            (Role::PreCandidate, true) => !granted || message.term == self.term + 1,
            (Role::Candidate, false) => message.term == self.term,
            _ => false,
        };
        if !current {
            return;
        }
        self.votes.entry(message.from).or_insert(granted);
        self.poll_election(actions);
    }

    /// Sends the vote grant once the vote is durable.
    pub(crate) fn maybe_send_vote_grant(&mut self, actions: &mut Vec<Action>) {
        let Some((candidate, term)) = self.pending_vote_grant else {
            return;
        };
        if term != self.term || self.voted_for != Some(candidate) {
            self.pending_vote_grant = None;
            return;
        }
        if self.durable_hard_state == self.hard_state() {
            self.pending_vote_grant = None;
            let body = MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            };
            self.send(candidate, body, actions);
        }
    }

    /// CheckQuorum: run once per minimum election timeout on the leader.
    /// Returns false if the leader stepped down.
    pub(crate) fn check_quorum_active(&mut self, actions: &mut Vec<Action>) -> bool {
        let me = self.config.id;
        let progress = &self.progress;
        let is_active = |id: NodeId| id == me || progress.get(&id).is_some_and(|p| p.recent_active);
        let active_in = |voters: &std::collections::BTreeSet<NodeId>| {
            voters.is_empty()
                || voters.iter().filter(|id| is_active(**id)).count() >= majority(voters.len())
        };
        let quorum_active =
            active_in(&self.membership.voters) && active_in(&self.membership.voters_outgoing);
        let active = self.progress.values().filter(|p| p.recent_active).count() + 1;
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        // A leader outside its own configuration checks even without
        // CheckQuorum: it can commit nothing without those voters, and
        // once they commit the configuration, elect a leader of their own
        // and compact away every entry naming this node, they drop its
        // messages unanswered (it is a stranger to them), so no higher
        // term would ever reach it. Stepping down is always safe.
        let must_check = self.config.check_quorum || !self.is_voter_here();
        if must_check && !quorum_active {
            tracing::info!(
                node = self.config.id,
                term = self.term,
                active,
                "lost contact with a quorum; stepping down"
            );
            self.stats.check_quorum_step_downs += 1;
            self.become_follower(self.term, None, actions);
            return false;
        }
        true
    }

    /// Dispatches a message from another replica.
    pub(crate) fn receive(&mut self, message: Message, actions: &mut Vec<Action>) {
        if message.to != self.config.id {
            self.stats.messages_misaddressed += 1;
            return;
        }
        if message.from == self.config.id || message.from == 0 {
            self.stats.messages_from_unknown_node += 1;
            return;
        }
        // A removed node asking for votes is told so, whatever its term,
        // known or not (after a restart it may be named by no configuration
        // here): it cannot win, and moving to its term would depose our
        // leader for nothing (thesis §4.2.3).
        if let MessageBody::RequestVote { last_log, .. } = message.body {
            if self.is_removed_candidate(message.from, last_log) {
                self.stats.vote_requests_from_removed += 1;
                let configuration = self.membership_position();
                self.send(
                    message.from,
                    MessageBody::Removed { configuration },
                    actions,
                );
                return;
            }
        }
        if !self.accepts_sender(&message) {
            self.stats.messages_from_unknown_node += 1;
            return;
        }
        if message.term > TERM_MAX {
            self.stats.messages_malformed += 1;
            return;
        }
        if let MessageBody::Removed { configuration } = message.body {
            // About configurations, not terms: taken from any term.
            self.handle_removed(configuration, actions);
            return;
        }
        if let MessageBody::CandidateCatchUp { prev, entries } = message.body {
            // About logs, not terms: judged by the entries alone, from any
            // term, and moves no term.
            self.handle_candidate_catch_up(message.term, prev, entries, actions);
            return;
        }
        // About storage, not terms: answered and taken in any term, moving
        // none (a recovering node must learn the terms, not follow them).
        match message.body {
            MessageBody::RecoveryQuery { nonce } => {
                self.handle_recovery_query(message.from, nonce, actions);
                return;
            }
            MessageBody::RecoveryReport(report) => {
                self.handle_recovery_report(message.from, message.term, *report, actions);
                return;
            }
            _ => {}
        }
        if message.term > self.term && self.is_answer_from_removed(&message) {
            self.stats.answers_from_removed += 1;
            return;
        }
        if message.term > self.term {
            match message.body {
                MessageBody::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    let lease_applies = pre_vote || self.config.check_quorum;
                    if lease_applies && !transfer && self.in_leader_lease() {
                        return;
                    }
                    if !pre_vote || self.planted().pre_vote_moves_term {
                        // (With the planted mistake, a pre-vote moves the
                        // term too.)
                        self.become_follower(message.term, None, actions);
                    }
                }
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::CommitNotice { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::AcknowledgedEntryLost { .. }
                | MessageBody::TimeoutNow => {
                    self.become_follower(message.term, Some(message.from), actions);
                }
                MessageBody::RequestVoteResponse { .. }
                | MessageBody::AppendEntriesResponse(_)
                | MessageBody::InstallSnapshotResponse { .. }
                | MessageBody::HeartbeatResponse { .. }
                | MessageBody::ReadIndexRequest { .. }
                | MessageBody::ReadIndexResponse { .. } => {
                    // A follower that promised its leader not to vote for
                    // another (its leader lease) keeps the promise in the
                    // newer term: an answer names a term, not a leader, and
                    // the leader may still lead and serve lease reads on
                    // the promise (found by the simulator's `vote-hold`).
                    let promised = self.config.lease_read_ticks > 0
                        && self.role == Role::Follower
                        && self.in_leader_lease();
                    self.become_follower(message.term, None, actions);
                    self.vote_hold_after_start |= promised;
                }
                MessageBody::Removed { .. }
                | MessageBody::CandidateCatchUp { .. }
                | MessageBody::RecoveryQuery { .. }
                | MessageBody::RecoveryReport(_) => {
                    unreachable!("handled above")
                }
            }
        } else if message.term < self.term
            && !(self.planted().stale_acceptance_counted
                && matches!(
                    message.body,
                    MessageBody::AppendEntriesResponse(
                        crate::message::AppendResponse::Accepted { .. }
                    )
                ))
        {
            // (The planted mistake takes an older term's acceptance.)
            self.stats.messages_stale_term += 1;
            match message.body {
                // A deposed leader learns the newer term from the answer.
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::CommitNotice { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    let body = MessageBody::HeartbeatResponse { read_round: 0 };
                    self.send(message.from, body, actions);
                }
                // A candidate behind our term learns it from the refusal
                // (§5.1). Without the answer a candidate whose requests
                // always arrive stale (the only voters that could help
                // are ahead, and one is a witness that never campaigns)
                // can campaign forever below a term nobody else raises.
                MessageBody::RequestVote { pre_vote, .. } => {
                    let body = MessageBody::RequestVoteResponse {
                        pre_vote,
                        granted: false,
                    };
                    self.send(message.from, body, actions);
                }
                _ => {}
            }
            return;
        }
        match message.body {
            MessageBody::RequestVote {
                pre_vote, last_log, ..
            } => self.handle_request_vote(&message, pre_vote, last_log, actions),
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(&message, pre_vote, granted, actions)
            }
            MessageBody::AppendEntries {
                prev,
                entries,
                leader_commit,
            } => {
                if self.accept_leader(message.from, (message.term, message.progress_id), actions) {
                    self.handle_append_entries(
                        message.from,
                        message.term,
                        prev,
                        entries,
                        leader_commit,
                        actions,
                    );
                }
            }
            MessageBody::AppendEntriesResponse(response) => {
                if self.answers_current_record(&message) {
                    self.handle_append_response(message.from, response, actions)
                }
            }
            MessageBody::Heartbeat { commit, read_round } => {
                if self.accept_leader(message.from, (message.term, message.progress_id), actions) {
                    self.handle_heartbeat(message.from, commit, read_round, actions);
                }
            }
            MessageBody::HeartbeatResponse { read_round } => {
                if self.answers_current_record(&message) {
                    self.handle_heartbeat_response(message.from, read_round, actions)
                }
            }
            MessageBody::CommitNotice { last, commit } => {
                if self.accept_leader(message.from, (message.term, message.progress_id), actions) {
                    self.handle_commit_notice(message.from, message.term, last, commit, actions);
                }
            }
            MessageBody::ReadIndexRequest { request } => {
                self.handle_read_index_request(message.from, request, actions)
            }
            MessageBody::ReadIndexResponse { request, index } => {
                self.handle_read_index_response(message.from, request, index, actions)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(message.from, actions),
            MessageBody::AcknowledgedEntryLost { acknowledged } => {
                if self.accept_leader(message.from, (message.term, message.progress_id), actions) {
                    self.handle_acknowledged_entry_lost(message.from, acknowledged, actions);
                }
            }
            MessageBody::InstallSnapshot(chunk) => {
                if self.accept_leader(message.from, (message.term, message.progress_id), actions) {
                    self.handle_snapshot_chunk(message.from, message.term, *chunk, actions);
                }
            }
            MessageBody::InstallSnapshotResponse {
                snapshot,
                next_offset,
                rewind,
            } => {
                if self.answers_current_record(&message) {
                    self.handle_snapshot_response(
                        message.from,
                        snapshot,
                        next_offset,
                        rewind,
                        actions,
                    )
                }
            }
            MessageBody::Removed { .. }
            | MessageBody::CandidateCatchUp { .. }
            | MessageBody::RecoveryQuery { .. }
            | MessageBody::RecoveryReport(_) => {
                unreachable!("handled above")
            }
        }
    }

    /// Whether a message from `message.from` is taken at all. From a node
    /// some configuration here names (or that leads our current term):
    /// always. From any other node only leader traffic (AppendEntries,
    /// Heartbeat, CommitNotice, InstallSnapshot) and vote requests from a
    /// candidate whose log is at least as up to date as ours, and only
    /// while this node does not vote (a learner, or a node just built to
    /// join) or has no live leader.
    ///
    /// That much is what joining needs: a new node is built knowing the
    /// voters of the moment, and a lagging voter knows only the
    /// configurations in its log (or its snapshot), so either may be sent
    /// entries by a leader, or asked for its vote by a candidate, named
    /// only by a configuration it has not received yet; refusing them
    /// would leave it behind forever, or leave a configuration that needs
    /// its vote without a leader. It is safe because Raft's safety never
    /// rests on who sends: entries are accepted only where they match our
    /// log (log matching), commitment and elections still count only the
    /// voters of each node's configuration, a stale term is answered, not
    /// followed, and a vote is granted at most once per term, durably, to
    /// a log at least as up to date as ours, whoever asks. What knowing the
    /// sender buys is containment of strays (a misconfigured or removed
    /// node): while we vote and follow a live leader, such a node cannot
    /// move our term or replace our leader, and a stray whose log is behind
    /// ours cannot move our term at all. Everything else from an unknown
    /// node is refused: answers (a leader tracks only its configuration's
    /// members) and TimeoutNow.
    fn accepts_sender(&self, message: &Message) -> bool {
        // The leader first: a follower hears mostly from it, and the
        // comparison is cheaper than the lookup.
        if self.leader == Some(message.from) || self.is_known_node(message.from) {
            return true;
        }
        let may_be_newer = match &message.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::CommitNotice { .. }
            | MessageBody::InstallSnapshot { .. } => true,
            MessageBody::RequestVote { last_log, .. } => {
                last_log.is_up_to_date_with(&self.log.last_position())
            }
            // A question from a recovering node, and an answer to our own
            // (its nonce is checked): a recovering node asks the members
            // of the newest configuration it hears of, which may name
            // nodes the asked one's log does not yet (or its own log does
            // not). The answer only tells what we hold.
            MessageBody::RecoveryQuery { .. } | MessageBody::RecoveryReport(_) => return true,
            _ => false,
        };
        may_be_newer && (!self.is_voter_here() || !self.in_leader_lease())
    }

    /// Whether `message` answers a request of ours but comes from a node
    /// our committed configuration no longer names (neither voter nor
    /// learner): a removed node, whose term may have run ahead in
    /// elections it could not win, answering a request delayed from before
    /// its removal. Its term would depose our leader for nothing, so the
    /// answer is dropped, as if lost. Liveness does not need it: a newer
    /// term that matters reaches us through the configuration's members.
    /// Requests (appends, votes) are still heard: their sender may hold a
    /// newer configuration that names it.
    fn is_answer_from_removed(&self, message: &Message) -> bool {
        let answer = matches!(
            message.body,
            MessageBody::RequestVoteResponse { .. }
                | MessageBody::AppendEntriesResponse(_)
                | MessageBody::InstallSnapshotResponse { .. }
                | MessageBody::HeartbeatResponse { .. }
                | MessageBody::ReadIndexResponse { .. }
        );
        answer
            && !self.membership.contains(message.from)
            && self.log.commit_index() >= self.membership_index()
    }

    /// A message only a leader sends arrived in our term from `from`.
    /// Returns whether `from` is (now) our leader; refuses a second leader
    /// in one term, which correct peers never produce.
    // Inlined: every append and commit notice asks, almost always from
    // the follower's known leader; the rest is a call of its own.
    #[inline]
    /// `named`: the message's term and progress id.
    fn accept_leader(
        &mut self,
        from: NodeId,
        named: (Term, u64),
        actions: &mut Vec<Action>,
    ) -> bool {
        let accepted = if self.role == Role::Follower && self.leader == Some(from) {
            self.election_elapsed_ticks = 0;
            true
        } else {
            self.accept_new_leader(from, actions)
        };
        if accepted {
            self.note_leader_progress_id(named.0, named.1);
        }
        accepted
    }

    /// Keeps the newest progress id our leader named in `term`, which
    /// every answer echoes. The newest, not the last: a delayed message
    /// the leader sent to an earlier replica here names an older record,
    /// and an answer naming it would be dropped.
    fn note_leader_progress_id(&mut self, term: Term, progress_id: u64) {
        debug_assert_eq!(term, self.term, "taken only from our leader");
        let (known_term, known_id) = self.leader_progress_id;
        if known_term != term || progress_id > known_id {
            self.leader_progress_id = (term, progress_id);
        }
    }

    /// Whether `message`, a follower's answer to this leader's append,
    /// heartbeat or snapshot chunk, names the record this leader keeps of
    /// its sender. An answer naming another is of an earlier replica of
    /// that node (removed, and added back in this term under a new
    /// record): what it acknowledges, the replica here now may not hold.
    fn answers_current_record(&mut self, message: &Message) -> bool {
        if self.role != Role::Leader || self.planted().earlier_replica_answers_taken {
            return true;
        }
        let Some(progress) = self.progress.get(&message.from) else {
            return true;
        };
        if progress.id == message.progress_id {
            return true;
        }
        self.stats.answers_from_earlier_replica += 1;
        false
    }

    /// [`Self::accept_leader`] where `from` is not yet known as our leader
    /// (or we are not a follower).
    #[inline(never)]
    fn accept_new_leader(&mut self, from: NodeId, actions: &mut Vec<Action>) -> bool {
        if self.role == Role::Leader || self.leader.is_some_and(|leader| leader != from) {
            self.stats.messages_malformed += 1;
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from), actions);
        }
        self.set_leader(from);
        self.election_elapsed_ticks = 0;
        true
    }
}
