//! Log replication (§5.3): AppendEntries on both sides, heartbeats,
//! commitment by counting (§5.4.2), proposals, batching, pipelining and
//! flow control.

use crate::entries::Entries;
use crate::io::{Action, ProposeError};
use crate::message::{AppendResponse, MessageBody};
use crate::node::{Node, Role};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{joint_committed_index, majority, quorum_index};
use crate::types::{Entry, EntryPayload, Index, LogPosition, NodeId, StorageRecovery, Term};

impl Node {
    pub(crate) fn tick_leader(&mut self, actions: &mut Vec<Action>) {
        self.heartbeat_elapsed_ticks = self.heartbeat_elapsed_ticks.saturating_add(1);
        self.election_elapsed_ticks = self.election_elapsed_ticks.saturating_add(1);
        self.tick_transfer(actions);
        for progress in self.progress.values_mut() {
            progress.tick();
        }
        if self.election_elapsed_ticks >= self.config.election_timeout_min_ticks {
            self.election_elapsed_ticks = 0;
            if !self.check_quorum_active(actions) {
                return;
            }
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat(actions);
            self.maybe_transfer_to_preferred(actions);
        }
    }

    pub(crate) fn reset_progress(&mut self) {
        let next_index = self.log.last_index() + 1;
        let inflight_max = self.config.inflight_messages_max;
        let first_id = self.progress_ids_issued + 1;
        self.progress_ids_issued += self.peer_ids.len() as u64;
        self.progress = self
            .peer_ids
            .iter()
            .zip(first_id..)
            .map(|(id, progress_id)| (*id, Progress::new(progress_id, next_index, inflight_max)))
            .collect();
    }

    pub(crate) fn append_noop(&mut self) {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term,
            index,
            payload: EntryPayload::Noop,
        });
    }

    /// Appends client commands (or host entries) to the leader's log and
    /// replicates them.
    pub(crate) fn propose(
        &mut self,
        payloads: impl Iterator<Item = EntryPayload>,
        count: usize,
        actions: &mut Vec<Action>,
    ) {
        let refusal = if count == 0 {
            Some(ProposeError::Empty)
        } else if self.role != Role::Leader {
            Some(ProposeError::NotLeader {
                leader_hint: self.leader,
            })
        } else if let Some(error) = self.transfer_blocks_proposals() {
            Some(error)
        } else if self.log.last_index() - self.log.commit_index() + count as u64
            > self.config.uncommitted_entries_max
            || self.writes.len() >= self.config.unpersisted_writes_max
        {
            Some(ProposeError::Backpressure)
        } else {
            None
        };
        if let Some(error) = refusal {
            self.stats.proposals_refused += count as u64;
            actions.push(Action::ProposalRefused { count, error });
            return;
        }
        let first_index = self.log.last_index() + 1;
        let term = self.term;
        self.log.append_new(
            count,
            payloads.enumerate().map(|(offset, payload)| Entry {
                term,
                index: first_index + offset as Index,
                payload,
            }),
        );
        let last_index = self.log.last_index();
        assert_eq!(last_index + 1 - first_index, count as u64);
        self.stats.proposals_accepted += count as u64;
        actions.push(Action::ProposalAccepted {
            term: self.term,
            first_index,
            last_index,
        });
        self.broadcast_append(false, actions);
    }

    /// Sends whatever each follower is missing (pipelined up to the
    /// in-flight limit); with `send_if_empty`, at least a commit update.
    pub(crate) fn broadcast_append(&mut self, send_if_empty: bool, actions: &mut Vec<Action>) {
        for i in 0..self.peer_count() {
            let peer = self.peer(i);
            if self.send_append(peer, send_if_empty, actions) {
                self.send_append_pipelined(peer, actions);
            }
        }
    }

    /// Tells every follower that the commit index moved.
    ///
    /// A follower the leader streams to (replicate state) with nothing new
    /// to receive gets a one-way [`MessageBody::CommitNotice`], unless an
    /// append in flight to it carries entries past the new commit index.
    /// Then it is *owed* the commit: an answer after which no append in
    /// flight goes past the commit sends the notice
    /// ([`Self::send_owed_commit`]), unless an append (which carries the
    /// commit) went out first. Under a steady stream of proposals the next
    /// append always goes first, so a pipelined follower costs two
    /// messages per batch (append and answer) instead of three; it learns
    /// each commit with the next append, at most one batch later. A
    /// follower whose appends in flight end at or below the commit (it may
    /// hold them already, its answer on the way) is told at once, so
    /// one-at-a-time writes reach every follower's state machine as soon
    /// as before.
    ///
    /// Every other follower gets what [`Self::broadcast_append`] would send
    /// it (entries, or an empty append: a probe must be answered), and
    /// stays owed if nothing could be sent.
    pub(crate) fn broadcast_commit(&mut self, actions: &mut Vec<Action>) {
        let last_index = self.log.last_index();
        let forget_owed = self.planted().owed_commit_forgotten;
        for i in 0..self.peer_count() {
            let peer = self.peer(i);
            let Some(progress) = self.progress.get_mut(&peer) else {
                continue;
            };
            // Owed until told.
            progress.commit_owed = true;
            if progress.state == ProgressState::Replicate && progress.next_index > last_index {
                // Told now unless an append in flight goes past the commit;
                // then an answer releases it (or a heartbeat answer that
                // frees a slot of a full window).
                self.send_owed_commit(peer, actions);
            } else if self.send_append(peer, true, actions) {
                // An append carries the commit. None may go out (a probe or
                // the window is outstanding, or a snapshot is being sent):
                // then it stays owed.
                self.send_append_pipelined(peer, actions);
            }
            if forget_owed {
                // The planted mistake: what is held back is forgotten.
                if let Some(progress) = self.progress.get_mut(&peer) {
                    progress.commit_owed = false;
                }
            }
        }
    }

    /// Sends `to` the commit index [`Self::broadcast_commit`] left it owed,
    /// once no append in flight to it goes past the commit and nothing new
    /// is to be sent (an append would carry the commit).
    fn send_owed_commit(&mut self, to: NodeId, actions: &mut Vec<Action>) {
        let Some(progress) = self.progress.get(&to) else {
            return;
        };
        if progress.commit_owed
            && progress.state == ProgressState::Replicate
            && !progress.inflight.carries_past(self.log.commit_index())
            && progress.next_index > self.log.last_index()
        {
            self.send_commit_notice(to, actions);
        }
    }

    /// Tells `to` the commit index in a [`MessageBody::CommitNotice`]
    /// naming our last entry; `to` is no longer owed it.
    fn send_commit_notice(&mut self, to: NodeId, actions: &mut Vec<Action>) {
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.commit_owed = false;
        }
        let last = self.log.last_position();
        let commit = self.log.commit_index();
        self.send(to, MessageBody::CommitNotice { last, commit }, actions);
    }

    /// Keeps sending batches to `to` while it is in replicate state, has
    /// room in its in-flight window, and is missing entries.
    fn send_append_pipelined(&mut self, to: NodeId, actions: &mut Vec<Action>) {
        for _ in 0..self.config.inflight_messages_max {
            if !self.send_append(to, false, actions) {
                break;
            }
        }
    }

    /// Sends one AppendEntries to `to` unless flow control pauses it.
    /// Returns whether entries were sent and the log holds more past them,
    /// that is whether another call could send more: a batch that reaches
    /// our last entry ends a pipelined burst without one more call that
    /// would find nothing to cut.
    pub(crate) fn send_append(
        &mut self,
        to: NodeId,
        send_if_empty: bool,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if progress.state == ProgressState::Snapshot {
            self.send_snapshot_chunks(to, false, actions);
            return false;
        }
        if progress.is_paused() {
            return false;
        }
        if !send_if_empty && progress.next_index == self.log.last_index() + 1 {
            // Everything is sent: no batch to cut.
            return false;
        }
        let prev_index = progress.next_index - 1;
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // Below the compacted base: only the snapshot can help (nothing
            // to send meanwhile if this node holds none yet).
            self.start_snapshot_transfer(to, actions);
            return false;
        };
        let entries = self.log.entries_from(
            progress.next_index,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last_index = self.log.last_index();
        let progress = self.progress.get_mut(&to).expect("checked above");
        // The append carries the commit index.
        progress.commit_owed = false;
        let more_to_send = match entries.last() {
            Some(last) => {
                progress.sent_entries(last.index);
                last.index < last_index
            }
            None => {
                if progress.state == ProgressState::Probe {
                    progress.probe_sent = true;
                }
                false
            }
        };
        let body = MessageBody::AppendEntries {
            prev: LogPosition::new(prev_index, prev_term),
            entries,
            leader_commit: self.log.commit_index(),
        };
        self.send(to, body, actions);
        more_to_send
    }

    /// Sends every follower a heartbeat, numbered as the next read
    /// confirmation round.
    pub(crate) fn broadcast_heartbeat(&mut self, actions: &mut Vec<Action>) {
        let commit = self.log.commit_index();
        let read_round = self.next_read_round();
        for (&peer, progress) in &self.progress {
            // Never tell a follower to commit past what it is known to
            // hold: its log beyond its match index may differ from ours.
            let capped = if self.planted().heartbeat_commit_uncapped {
                // The planted mistake: the whole commit index.
                commit
            } else {
                commit.min(progress.match_index)
            };
            let body = MessageBody::Heartbeat {
                commit: capped,
                read_round,
            };
            self.send(peer, body, actions);
        }
    }

    /// Follower side of AppendEntries, in our current term from our leader.
    pub(crate) fn handle_append_entries(
        &mut self,
        leader: NodeId,
        message_term: Term,
        prev: LogPosition,
        entries: Entries,
        leader_commit: Index,
        actions: &mut Vec<Action>,
    ) {
        if self.take_append(leader, message_term, prev, entries, leader_commit, actions) {
            // Nothing new to wait for: answer this message now (it may be a
            // probe the leader is blocked on).
            self.ack_owed = true;
        }
    }

    /// Follower side of a [`MessageBody::CommitNotice`] from our leader of
    /// the current term: taken as an empty append after `last`, except
    /// that a notice our log matches is not answered (the leader learns
    /// nothing from the answer: it asked for none, and acknowledgements of
    /// newly durable entries go out as usual). One our log does not match
    /// is refused with a hint like any append, so a follower that lost
    /// entries the leader believes it holds is found out as quickly as by
    /// an empty append.
    pub(crate) fn handle_commit_notice(
        &mut self,
        leader: NodeId,
        message_term: Term,
        last: LogPosition,
        commit: Index,
        actions: &mut Vec<Action>,
    ) {
        if commit > last.index {
            // A leader's commit index never passes its last entry.
            self.stats.messages_malformed += 1;
            return;
        }
        if self.planted().commit_notice_unchecked {
            // The planted mistake: no log matching, so a divergent suffix
            // this follower still holds from an older leader commits.
            let commit = commit.min(self.log.last_index());
            if commit > self.log.commit_index() {
                self.log.commit_to(commit);
            }
            return;
        }
        self.take_append(leader, message_term, last, Entries::new(), commit, actions);
    }

    /// Takes an append (or a commit notice, as an append without entries):
    /// refuses it with a hint where `prev` does not match our log, else
    /// appends what is new and moves the commit index. Returns whether it
    /// was taken and holds nothing that is not durable here yet (an
    /// append's answer is then owed at once).
    fn take_append(
        &mut self,
        leader: NodeId,
        message_term: Term,
        prev: LogPosition,
        mut entries: Entries,
        leader_commit: Index,
        actions: &mut Vec<Action>,
    ) -> bool {
        if !entries_well_formed(prev, &entries, message_term) {
            self.stats.messages_malformed += 1;
            return false;
        }
        let commit = self.log.commit_index();
        // Entries at or below our commit index are already ours; check them
        // against our log where we still hold it, then skip them.
        let (prev, skip) = if prev.index < commit {
            let contradicts = |position: LogPosition| {
                self.log
                    .term_at(position.index)
                    .is_some_and(|term| term != position.term)
            };
            let conflict = std::iter::once(prev)
                .chain(
                    entries
                        .iter()
                        .take_while(|e| e.index <= commit)
                        .map(|e| e.position()),
                )
                .find(|position| contradicts(*position));
            if let Some(position) = conflict {
                self.note_divergence(leader, position.index, position.term, actions);
                return false;
            }
            let skip = entries.iter().take_while(|e| e.index <= commit).count();
            let commit_term = self
                .log
                .term_at(commit)
                .expect("the commit index is never below the log base");
            (LogPosition::new(commit, commit_term), skip)
        } else {
            (prev, 0)
        };
        // The message's entries become a run of the log (no entry is
        // copied).
        if skip > 0 {
            entries = entries.slice(skip..entries.len());
        }

        if !self.log.matches(prev) {
            if prev.index <= commit {
                // Our committed entry at prev differs from the leader's.
                self.note_divergence(leader, prev.index, prev.term, actions);
                return false;
            }
            if prev.index > self.log.last_index() {
                self.stats.messages_index_out_of_range += 1;
            }
            let hint = self.log.find_conflict_by_term(prev.index, prev.term);
            let response = AppendResponse::Rejected {
                rejected_index: prev.index,
                hint_index: hint.index,
                hint_term: hint.term,
            };
            self.send(
                leader,
                MessageBody::AppendEntriesResponse(response),
                actions,
            );
            return false;
        }

        let message_last = prev.index + entries.len() as Index;
        if !self.append_after_match(entries) {
            return false;
        }
        self.leader_match_index = self.leader_match_index.max(message_last);
        let new_commit = if self.planted().commit_past_append {
            // The planted mistake: capped by our log, not by the append.
            leader_commit.min(self.log.last_index())
        } else {
            leader_commit.min(message_last)
        };
        if new_commit > self.log.commit_index() {
            self.log.commit_to(new_commit);
        }
        message_last <= self.persisted_index
    }

    /// Appends what is new of `entries`, whose predecessor our log holds:
    /// from the first entry our log does not hold on, cutting our log
    /// there. Returns false, changing nothing, where that would cut a
    /// committed entry or too many writes are unpersisted.
    pub(crate) fn append_after_match(&mut self, mut entries: Entries) -> bool {
        let conflict = entries
            .iter()
            .position(|entry| !self.log.matches(entry.position()));
        if let Some(first_new) = conflict {
            let first_new_index = entries[first_new].index;
            if first_new_index <= self.log.commit_index() {
                self.stats.append_conflicts_with_commit += 1;
                return false;
            }
            if self.writes.len() >= self.config.unpersisted_writes_max {
                self.stats.appends_dropped_backpressure += 1;
                return false;
            }
            // The planted inefficiency cuts right after `prev` instead
            // (never below the commit index) and writes the whole append.
            let first_new =
                if self.planted().truncate_after_prev && first_new_index <= self.log.last_index() {
                    entries
                        .iter()
                        .position(|entry| entry.index > self.log.commit_index())
                        .unwrap_or(first_new)
                } else {
                    first_new
                };
            let first_new_index = entries[first_new].index;
            if first_new_index <= self.log.last_index() {
                self.stats.entries_truncated += self.log.last_index() - first_new_index + 1;
                self.truncate_log_after(first_new_index - 1);
            }
            if first_new > 0 {
                entries = entries.slice(first_new..entries.len());
            }
            for entry in entries.iter() {
                self.note_appended(entry);
            }
            self.log.append_run(entries);
        }
        true
    }

    /// Whether a recovery from lost storage lets this node's answers to a
    /// leader of `term` count (its acknowledgements toward a commit, its
    /// heartbeat answers toward a read round): not while it waits for
    /// reports, and only for a term at least its floor's term, which
    /// bounds every term the lost storage knew (a later election needed a
    /// voter among those that reported).
    pub(crate) fn recovery_lets_me_answer(&self, term: Term) -> bool {
        match self.recovery {
            StorageRecovery::AwaitingReports => false,
            StorageRecovery::CatchingUp {
                term: floor_term, ..
            } => term >= floor_term,
            _ => true,
        }
    }

    /// Sends the leader the highest index that both matches its log and is
    /// durable here, whenever that grows or a message is owed an answer.
    pub(crate) fn maybe_send_append_ack(&mut self, actions: &mut Vec<Action>) {
        let Some(leader) = self.leader else { return };
        if self.role != Role::Follower {
            return;
        }
        // A node that lost its storage may have voted in a later term than
        // this leader's and forgotten it: its acknowledgement would let an
        // older leader commit over a newer one's log (seed 5710002841 on
        // 3 nodes, chat: a replaced disk acknowledged a stale term-7
        // leader's entries after voting in term 8, and the term-9 leader
        // lacked them). The answer waits until the recovery bounds it.
        if !self.recovery_lets_me_answer(self.term) {
            return;
        }
        let durable_match = self.persisted_index.min(self.leader_match_index);
        if durable_match > self.acked_index || self.ack_owed {
            self.acked_index = self.acked_index.max(durable_match);
            self.ack_owed = false;
            let response = AppendResponse::Accepted {
                match_index: durable_match,
            };
            self.send(
                leader,
                MessageBody::AppendEntriesResponse(response),
                actions,
            );
        }
    }

    pub(crate) fn handle_heartbeat(
        &mut self,
        leader: NodeId,
        commit: Index,
        read_round: u64,
        actions: &mut Vec<Action>,
    ) {
        let last = self.log.last_position();
        if commit > last.index && !self.planted().lost_entries_unreported {
            // The leader caps a heartbeat's commit at the index we
            // acknowledged as durable: one past our last entry means we
            // lost entries we acknowledged (a disk that lost synced data,
            // a restore from a backup). Say so now, as the refusal of an
            // append after the entry at `commit`, with our last entry as
            // the hint: an idle leader would otherwise go on believing we
            // hold them until the next write (see `handle_append_response`
            // for how the leader confirms the loss before it believes it).
            let response = AppendResponse::Rejected {
                rejected_index: commit,
                hint_index: last.index,
                hint_term: last.term,
            };
            self.send(
                leader,
                MessageBody::AppendEntriesResponse(response),
                actions,
            );
        }
        let mut commit = commit.min(last.index);
        if self.recovery.is_recovering() && self.log.term_at(commit) != Some(self.term) {
            // The leader's cap may be what our lost storage acknowledged,
            // not what we hold now: only what matched its appends this
            // term is known to be its log. (Once the recovery ends our
            // term is past every term our lost storage knew, and so past
            // every leader that heard it.) An entry of this term is known
            // too: only this term's leader made one, and log matching
            // makes our log its log up to there. Without that, a follower
            // restarted during its recovery, whose leader has nothing new
            // to send, would never learn the commit of what it holds
            // (found by the simulator's `commit-told`).
            commit = commit.min(self.leader_match_index);
        }
        if commit > self.log.commit_index() {
            self.log.commit_to(commit);
        }
        // The answer confirms the leader's round (ReadIndex, and its lease:
        // a promise not to vote for another leader for an election
        // timeout, kept across a restart by the vote hold after a start).
        // A node that crashes before the term is durable may come back
        // with no term, and no hold: until the term is durable, the answer
        // confirms no round (found by the simulator's `vote-hold`).
        // Nor does a node recovering from lost storage confirm a leader of
        // a term its lost storage may have known a successor of: it may
        // have voted in a later term and forgotten it, and the majority
        // that elected the later leader would then answer an older one's
        // round (seed 5600004625 on 3 nodes, chat: a disk rolled back from
        // term 11 to 10 confirmed the term-10 leader's ReadIndex round,
        // which missed an entry committed in term 11).
        let read_round = if self.durable_hard_state.term == self.term
            && self.recovery_lets_me_answer(self.term)
        {
            read_round
        } else {
            0
        };
        self.send(
            leader,
            MessageBody::HeartbeatResponse { read_round },
            actions,
        );
    }

    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_round: u64,
        actions: &mut Vec<Action>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        if read_round > 0 {
            self.handle_read_round_ack(from, read_round, actions);
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        if progress.state == ProgressState::Snapshot {
            // Chunks or their answers may have been lost.
            let stalled = progress.snapshot_resume();
            self.send_snapshot_chunks(from, stalled, actions);
            return;
        }
        if progress.state == ProgressState::Replicate && progress.inflight.is_full() {
            progress.inflight.free_first();
        }
        // A follower denying an acknowledged entry, or one whose match the
        // leader is checking (probe state), is probed again even when
        // nothing new is to be sent, so the denial is confirmed (or
        // cleared) on an idle cluster too.
        if progress.match_index < last_index
            || progress.denials > 0
            || progress.state == ProgressState::Probe
        {
            self.send_append(from, true, actions);
        }
        // Freeing a slot of a full window may leave nothing in flight.
        self.send_owed_commit(from, actions);
    }

    /// Leader side of an AppendEntries answer.
    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        response: AppendResponse,
        actions: &mut Vec<Action>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last_index {
                    self.stats.messages_index_out_of_range += 1;
                    return;
                }
                // A follower that was paused missed any commit broadcast
                // sent meanwhile; it must hear the commit index now.
                let was_paused = progress.is_paused();
                let advanced = progress.maybe_update(match_index);
                // A probe answered at exactly the known match index also
                // shows where the logs agree: start streaming.
                let probe_confirmed =
                    progress.state == ProgressState::Probe && match_index == progress.match_index;
                if progress.state == ProgressState::Snapshot {
                    if self.log.term_at(progress.match_index).is_none() {
                        // Still behind the base: the transfer goes on.
                        if advanced && self.maybe_commit() {
                            self.broadcast_commit(actions);
                        }
                        return;
                    }
                    // The snapshot (or the log up to our base) is durable
                    // there: replicate from it.
                    progress.become_replicate();
                } else if !advanced && !probe_confirmed {
                    self.send_owed_commit(from, actions);
                    return;
                }
                if progress.state == ProgressState::Probe {
                    progress.become_replicate();
                }
                // An answer at or below the commit index cannot move it (the
                // other inputs of the commit rule ran it when they moved).
                let may_commit = progress.match_index > self.log.commit_index();
                if may_commit && self.maybe_commit() {
                    self.broadcast_commit(actions);
                } else if self.send_append(from, was_paused, actions) {
                    self.send_append_pipelined(from, actions);
                }
                self.send_owed_commit(from, actions);
                self.maybe_send_timeout_now(from, actions);
            }
            AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                if rejected_index > last_index || hint_index > rejected_index {
                    self.stats.messages_index_out_of_range += 1;
                    return;
                }
                let probe_from = if self.planted().probe_ignores_hint {
                    // The planted inefficiency: one entry back per refusal.
                    rejected_index.saturating_sub(1)
                } else if self.planted().probe_back_to_match {
                    // The planted inefficiency: back to the match index.
                    0
                } else if hint_term > 0 && !self.planted().probe_ignores_hint_term {
                    // (The planted `probe_ignores_hint_term` skips this.)
                    self.log.find_conflict_by_term(hint_index, hint_term).index
                } else {
                    hint_index
                };
                let progress = self.progress.get_mut(&from).expect("looked up above");
                if progress.is_denial(rejected_index) {
                    if progress.note_denial(self.config.election_timeout_min_ticks) {
                        let acknowledged_index = progress.match_index;
                        progress.forget_match(probe_from.min(acknowledged_index - 1));
                        self.stats.follower_log_regressions += 1;
                        actions.push(Action::FollowerLogRegressed {
                            follower: from,
                            acknowledged_index,
                            reported_last_index: hint_index,
                        });
                        // Its votes could lose what it acknowledged: it
                        // must recover before it votes again.
                        if let Some(term) = self.log.term_at(acknowledged_index) {
                            let acknowledged = LogPosition::new(acknowledged_index, term);
                            let body = MessageBody::AcknowledgedEntryLost { acknowledged };
                            self.send(from, body, actions);
                        }
                        self.send_append(from, true, actions);
                    }
                    // Otherwise stay paused until the next heartbeat answer
                    // probes again: probing at once would change nothing and
                    // could storm the follower.
                    return;
                }
                if progress.maybe_decrease_to(rejected_index, probe_from + 1) {
                    self.send_append(from, true, actions);
                } else if progress.state == ProgressState::Replicate
                    && (progress.commit_owed
                        || progress.inflight.carries_past(progress.match_index))
                {
                    // A refusal at or below the match index while streaming:
                    // an append overtook the one before it and was refused,
                    // so appends counted in flight may never be answered (a
                    // follower refuses every append after a gap). A notice
                    // goes now, owed or not: it names our last entry, so a
                    // follower without it refuses it with a hint past the
                    // match index and is probed back at once instead of at
                    // the next heartbeat; one that holds it commits.
                    self.send_commit_notice(from, actions);
                } else if progress.state == ProgressState::Replicate && rejected_index > 0 {
                    // A refusal at or below the match index with nothing
                    // past it in flight: a stale refusal, or the follower
                    // lost entries it acknowledged (it answers a heartbeat
                    // whose commit it does not hold so, see
                    // `handle_heartbeat`). Probe at the match index: the
                    // answer confirms the match (streaming resumes) or
                    // denies it, and denials are judged before the match
                    // is forgotten (`Progress::note_denial`). An idle
                    // follower costs one round trip for a stale refusal.
                    progress.become_probe();
                    self.send_append(from, true, actions);
                }
            }
        }
    }

    /// Advances the commit index to the highest entry of the current term
    /// that a quorum holds durably (the leader counting its own durable
    /// log only). Returns whether it advanced.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        debug_assert_eq!(self.role, Role::Leader);
        let mut scratch = std::mem::take(&mut self.scratch_indices);
        let me = self.config.id;
        let persisted_index = if self.planted().leader_counts_unpersisted {
            // The planted mistake: the whole log counts, durable or not.
            self.log.last_index()
        } else {
            self.persisted_index
        };
        let progress = &self.progress;
        let match_of = |id: NodeId| {
            if id == me {
                persisted_index
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        };
        // Learners never count; while joint, both halves must agree.
        static NO_VOTERS: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
        let outgoing = if self.planted().joint_new_quorum_only {
            // The planted mistake: the outgoing voters are forgotten.
            &NO_VOTERS
        } else {
            &self.membership.voters_outgoing
        };
        let membership = &self.membership;
        let quorum = if membership.voters_outgoing.is_empty()
            && membership.learners.is_empty()
            && progress.len() + 1 == membership.voters.len()
        {
            // The common case, a simple configuration of voters only with
            // this leader among them: the voters are exactly this node and
            // the peers it tracks, so their indices are read in one pass
            // over the progress map (no lookup per voter). The result is
            // the one `joint_committed_index` gives (debug builds, which
            // the tests and their simulated seeds run, compare the two on
            // every call; the commit below checks it by the voter sets).
            scratch.clear();
            scratch.push(persisted_index);
            scratch.extend(progress.values().map(|p| p.match_index));
            let quorum = quorum_index(&mut scratch);
            debug_assert_eq!(
                quorum,
                joint_committed_index(&membership.voters, outgoing, &mut scratch, match_of)
            );
            quorum
        } else {
            joint_committed_index(&membership.voters, outgoing, &mut scratch, match_of)
        };
        self.scratch_indices = scratch;
        // The planted Figure 8 mistake drops the current-term condition.
        let own_term = || self.log.term_at(quorum) == Some(self.term);
        if quorum > self.log.commit_index() && (own_term() || self.planted().figure_8_commit) {
            // The same fact by a second path: count the voters that hold
            // `quorum` durably (the leader by its own durable log).
            for voters in [&self.membership.voters, &self.membership.voters_outgoing] {
                if voters.is_empty() {
                    continue;
                }
                let holders = voters.iter().filter(|id| match_of(**id) >= quorum).count();
                assert!(
                    holders >= majority(voters.len()) || self.planted().any(),
                    "committing {quorum} held durably by only {holders} of {} voters",
                    voters.len()
                );
            }
            self.log.commit_to(quorum);
            return true;
        }
        false
    }
}

/// Checks an AppendEntries is internally consistent: entries contiguous
/// after `prev`, terms non-decreasing from `prev.term`, none above the
/// message's term.
pub(crate) fn entries_well_formed(
    prev: LogPosition,
    entries: &[Entry],
    message_term: Term,
) -> bool {
    let mut expected = prev;
    if prev.term > message_term {
        return false;
    }
    for entry in entries {
        if expected.index.checked_add(1) != Some(entry.index)
            || entry.term < expected.term
            || entry.term > message_term
        {
            return false;
        }
        // A configuration no leader can propose (no voters, node id 0, a
        // voter that is also a learner) would leave this node counting
        // votes among nobody once it takes effect: refuse it here, as an
        // InstallSnapshot carrying one is refused.
        if let Some(membership) = entry.payload.membership() {
            if membership.validate().is_err() {
                return false;
            }
        }
        expected = entry.position();
    }
    true
}
