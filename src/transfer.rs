//! Leadership transfer (thesis §3.10), used for priority election: a
//! leader hands leadership to the highest-priority node once that node is
//! healthy and caught up. The hand-over is an ordinary election started
//! early, so it cannot weaken safety.

use crate::io::Action;
use crate::message::MessageBody;
use crate::node::{Node, Role};
use crate::types::NodeId;

impl Node {
    /// The node that should lead when healthy: highest priority, then
    /// highest id. None when no priorities are configured.
    pub(crate) fn preferred_leader(&self) -> Option<NodeId> {
        self.membership
            .voters
            .iter()
            .map(|id| (self.config.priority_of(*id), *id))
            .max()
            .filter(|(priority, _)| *priority > 0)
            .map(|(_, id)| id)
    }

    /// Called on the leader's heartbeat: starts a transfer to the preferred
    /// node if it outranks this one and answered recently.
    pub(crate) fn maybe_transfer_to_preferred(&mut self, actions: &mut Vec<Action>) {
        if self.transfer_target.is_some() {
            return;
        }
        let Some(target) = self.preferred_leader() else {
            return;
        };
        // The preferred node outranks every other by (priority, id), so any
        // leader that is not it hands over, ties included.
        if target == self.config.id {
            return;
        }
        let Some(progress) = self.progress.get(&target) else {
            return;
        };
        if !progress.recent_active {
            return;
        }
        tracing::info!(
            node = self.config.id,
            term = self.term,
            target,
            "transferring leadership to preferred node"
        );
        self.transfer_target = Some(target);
        self.transfer_elapsed_ticks = 0;
        self.stats.transfers_started += 1;
        self.maybe_send_timeout_now(target, actions);
        if self.transfer_target.is_some() {
            self.send_append(target, false, actions);
        }
    }

    /// Tells the transfer target to campaign once its log is complete.
    pub(crate) fn maybe_send_timeout_now(&mut self, to: NodeId, actions: &mut Vec<Action>) {
        if self.transfer_target != Some(to) {
            return;
        }
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow, actions);
        }
    }

    /// Gives up a transfer that has not completed within an election
    /// timeout, so proposals are not refused forever.
    pub(crate) fn tick_transfer(&mut self) {
        if self.transfer_target.is_none() {
            return;
        }
        self.transfer_elapsed_ticks = self.transfer_elapsed_ticks.saturating_add(1);
        if self.transfer_elapsed_ticks >= self.config.election_timeout_min_ticks {
            self.transfer_target = None;
        }
    }

    /// The leader asked this follower to campaign now.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId, actions: &mut Vec<Action>) {
        if self.role != Role::Follower || self.leader != Some(from) || !self.may_campaign() {
            self.stats.messages_malformed += 1;
            return;
        }
        self.campaign(true, actions);
    }
}
