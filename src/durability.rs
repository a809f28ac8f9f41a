//! The durability contract: what the node has handed to the host to write,
//! what the host has reported durable, and holding back every promise (a
//! vote grant, an append acknowledgement, the leader's own count toward
//! commit) until the write it depends on is durable.

use crate::io::Action;
use crate::node::{Node, PendingWrite, Role};
use crate::types::{HardState, Index, WriteId};

impl Node {
    /// The host reports every write up to `id` durable.
    pub(crate) fn handle_persisted(&mut self, id: WriteId) {
        assert!(
            id.0 < self.next_write_id,
            "host reported write {} durable, but only writes up to {} were requested",
            id.0,
            self.next_write_id - 1
        );
        while let Some(write) = self.writes.front().copied() {
            if write.id > id {
                break;
            }
            self.writes.pop_front();
            // Writes are durable in order, so the latest one describes the
            // durable log exactly (its last index was lowered if the
            // in-memory log was truncated below it since).
            self.persisted_index = write.last_index;
            if let Some(hard_state) = write.hard_state {
                assert!(hard_state.term >= self.durable_hard_state.term || self.planted().any());
                self.durable_hard_state = hard_state;
            }
        }
        assert!(self.persisted_index <= self.log.last_index());
    }

    /// The host's state machine applied everything up to `index`.
    pub(crate) fn handle_applied(&mut self, index: Index) {
        assert!(
            index <= self.apply_emitted_index,
            "host reported index {index} applied, but only entries up to {} were handed out",
            self.apply_emitted_index
        );
        if index > self.applied_index {
            self.count_applied(self.applied_index + 1, index);
            self.applied_index = index;
        }
    }

    /// Drops log entries after `index`, and forgets that they were durable:
    /// the write that removes them from disk is yet to come.
    pub(crate) fn truncate_log_after(&mut self, index: Index) {
        self.log.truncate_after(index);
        self.membership_truncated(index);
        self.persisted_index = self.persisted_index.min(index);
        // Only a candidate's catch-up cuts below what it matched of a
        // leader's log; an acknowledgement must not claim the lost part.
        self.leader_match_index = self.leader_match_index.min(index);
        for write in &mut self.writes {
            write.last_index = write.last_index.min(index);
        }
        if index < self.emitted_index {
            self.pending_truncate = Some(
                self.pending_truncate
                    .map_or(index, |pending| pending.min(index)),
            );
            self.emitted_index = index;
        }
    }

    /// Work that depends on the state after any input: promises whose
    /// writes became durable, the write for this step's changes, and
    /// newly applicable entries.
    // Out of line on purpose: see `Node::check_invariants`.
    #[inline(never)]
    pub(crate) fn after_step(&mut self, actions: &mut Vec<Action>) {
        match self.role {
            // Acknowledgements run the commit rule as they arrive; here only
            // the leader's own log becoming durable can move the commit.
            Role::Leader if self.persisted_index != self.commit_checked_persisted_index => {
                self.commit_checked_persisted_index = self.persisted_index;
                if self.maybe_commit() {
                    self.broadcast_commit(actions);
                }
            }
            Role::Leader => {}
            Role::Candidate => self.poll_election(actions),
            Role::Follower => self.maybe_send_append_ack(actions),
            Role::PreCandidate => {}
        }
        self.advance_membership(actions);
        if self.recovery.is_recovering() {
            self.maybe_finish_storage_recovery(actions);
        }
        self.maybe_send_vote_grant(actions);
        if !self.reads.unconfirmed.is_empty() {
            self.release_confirmed_reads(actions);
        }
        if !self.reads.awaiting_apply.is_empty() {
            self.release_applied_reads(actions);
        }
        // Checked here first: most steps write nothing, and the check is
        // cheaper than the call.
        if self.persist_pending() {
            self.flush_persist(actions);
        }
        self.emit_apply(actions);
        self.maybe_take_snapshot(actions);
    }

    /// Whether anything changed since the last write.
    #[inline]
    fn persist_pending(&self) -> bool {
        self.pending_truncate.is_some()
            || self.emitted_index != self.log.last_index()
            || self.hard_state_dirty
    }

    /// Hands every change since the last write to the host as one write.
    // Inlined: `after_step`, its caller on every step that writes, has
    // saved the registers this needs already.
    #[inline(always)]
    pub(crate) fn flush_persist(&mut self, actions: &mut Vec<Action>) {
        if !self.persist_pending() {
            return;
        }
        let last_index = self.log.last_index();
        let entries = self.log.slice(self.emitted_index + 1, last_index);
        let hard_state = self.hard_state_dirty.then(|| self.hard_state());
        let id = self.begin_write(last_index, hard_state);
        actions.push(Action::Persist {
            id,
            hard_state,
            truncate_after: self.pending_truncate.take(),
            entries,
        });
        self.emitted_index = last_index;
        self.hard_state_dirty = false;
    }

    /// A new write's id, the write (the log up to `last_index`, and
    /// `hard_state` if it changed) awaited until the host reports it
    /// durable.
    #[inline(always)]
    pub(crate) fn begin_write(
        &mut self,
        last_index: Index,
        hard_state: Option<HardState>,
    ) -> WriteId {
        let id = WriteId(self.next_write_id);
        self.next_write_id += 1;
        self.writes.push_back(PendingWrite {
            id,
            last_index,
            hard_state,
        });
        id
    }

    /// Hands out committed entries that are durable here, in bounded
    /// batches.
    fn emit_apply(&mut self, actions: &mut Vec<Action>) {
        let ready = self.log.commit_index().min(self.persisted_index);
        // Most steps have nothing new to hand out: return before the
        // witness lookup.
        if ready <= self.apply_emitted_index {
            return;
        }
        if self.is_witness_node() {
            // A witness has no state machine: its entries count as applied
            // once committed and durable here (which is what lets it
            // compact them away, see `membership.rs`).
            self.apply_emitted_index = ready;
            self.handle_applied(ready);
            return;
        }
        while self.apply_emitted_index < ready {
            let batch_max = self.config.apply_batch_entries_max as Index;
            let to = ready.min(self.apply_emitted_index + batch_max);
            let entries = self.log.slice(self.apply_emitted_index + 1, to);
            actions.push(Action::Apply { entries });
            self.apply_emitted_index = to;
        }
    }
}
