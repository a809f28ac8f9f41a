//! Leadership transfer (thesis §3.10): asked for by the host with
//! [`Input::TransferLeadership`](crate::Input::TransferLeadership), and
//! used for priority election (a leader hands leadership to the
//! highest-priority node once that node is healthy and caught up).
//!
//! The leader stops taking proposals and configuration changes, brings the
//! target's log up to its own, then sends it TimeoutNow; the target starts
//! an election at once (no pre-vote, and voters set their leader lease
//! aside for it). The hand-over is an ordinary election started early, so
//! it cannot weaken safety. If the target has not taken over within
//! `Config::transfer_timeout_ticks`, the leader gives up and serves again
//! ([`TransferOutcome::TimedOut`]), without leader leases for the rest of
//! its term: the target's campaign, which voters let past their
//! stickiness, may still be under way (see `read_index.rs`).

use thiserror::Error;

use crate::io::{Action, ProposeError};
use crate::message::MessageBody;
use crate::node::{Node, Role};
use crate::types::NodeId;

/// Why a leadership transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader hands leadership over.
    #[error("not the leader; ask {}", match leader_hint { Some(id) => format!("node {id}, probably the leader"), None => "the leader once one is elected".to_string() })]
    NotLeader {
        /// The leader as far as this node knows.
        leader_hint: Option<NodeId>,
    },
    /// The target already leads.
    #[error("node {target} is already the leader")]
    AlreadyLeader {
        /// The target.
        target: NodeId,
    },
    /// The target is not a voter of the configuration in force (a learner,
    /// a voter being removed, or not a member).
    #[error("node {target} is not a voter of the current configuration; only a voter can lead (add it, or promote the learner, first)")]
    NotVoter {
        /// The target.
        target: NodeId,
    },
    /// The target is a witness, which never leads.
    #[error("node {target} is a witness; a witness holds no state machine and never leads, so transfer to a full voter")]
    Witness {
        /// The target.
        target: NodeId,
    },
    /// Another transfer is under way.
    #[error("leadership is already being transferred to node {target}; wait until it completes or times out")]
    InProgress {
        /// The node leadership is moving to.
        target: NodeId,
    },
    /// The target has not answered the leader recently and does not hold
    /// the leader's whole log.
    #[error("node {target} has not answered the leader recently; check that it is up and reachable, then retry")]
    Unreachable {
        /// The target.
        target: NodeId,
    },
    /// The target's log is too far behind the leader's.
    #[error("node {target} is {lag_entries} entries behind the leader (at most {lag_entries_max} allowed); retry once it caught up")]
    NotCaughtUp {
        /// The target.
        target: NodeId,
        /// How far behind the leader's last index it is.
        lag_entries: u64,
        /// `Config::promote_lag_entries_max`.
        lag_entries_max: u64,
    },
}

/// What became of a leadership transfer, reported with
/// [`Action::Transfer`](crate::Action::Transfer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The transfer started: proposals are refused with
    /// [`ProposeError::TransferInProgress`](crate::ProposeError::TransferInProgress)
    /// until the target leads (this node then reports
    /// [`Action::RoleChanged`](crate::Action::RoleChanged) to follower) or
    /// the transfer times out.
    Started,
    /// The transfer was refused; nothing changed.
    Refused(TransferError),
    /// The target did not take over within `Config::transfer_timeout_ticks`:
    /// this node leads on and takes proposals again.
    TimedOut,
}

impl Node {
    /// Leader side of [`Input::TransferLeadership`](crate::Input::TransferLeadership).
    pub(crate) fn transfer_leadership(&mut self, target: NodeId, actions: &mut Vec<Action>) {
        let outcome = match self.transfer_refusal(target) {
            Err(error) => TransferOutcome::Refused(error),
            Ok(()) => {
                self.start_transfer(target, "as asked", actions);
                TransferOutcome::Started
            }
        };
        actions.push(Action::Transfer { target, outcome });
    }

    /// Why a transfer to `target` cannot start now, if it cannot.
    fn transfer_refusal(&self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if target == self.config.id {
            return Err(TransferError::AlreadyLeader { target });
        }
        if let Some(target) = self.transfer_target {
            return Err(TransferError::InProgress { target });
        }
        if !self.membership.voters.contains(&target) {
            return Err(TransferError::NotVoter { target });
        }
        if self.membership.is_witness(target) {
            return Err(TransferError::Witness { target });
        }
        let progress = self
            .progress
            .get(&target)
            .expect("the leader tracks every voter");
        let lag_entries = self.log.last_index().saturating_sub(progress.match_index);
        // Silence alone does not refuse a target that holds the whole
        // log: a group that slept (the multi-group layer sends nothing
        // while it sleeps) hears from nobody, and its followers are live.
        // Such a transfer sends TimeoutNow at once, and one to a target
        // that is really gone times out like any other.
        if !progress.recent_active && lag_entries > 0 {
            return Err(TransferError::Unreachable { target });
        }
        let lag_entries_max = self.config.promote_lag_entries_max;
        if lag_entries > lag_entries_max {
            return Err(TransferError::NotCaughtUp {
                target,
                lag_entries,
                lag_entries_max,
            });
        }
        Ok(())
    }

    /// Starts handing leadership to `target`: proposals are refused from
    /// now on, its log is brought up to ours, then it is told to campaign.
    /// `why` says why, for the log.
    fn start_transfer(&mut self, target: NodeId, why: &str, actions: &mut Vec<Action>) {
        tracing::info!(
            node = self.config.id,
            term = self.term,
            target,
            "transferring leadership {why}"
        );
        self.transfer_target = Some(target);
        self.transfer_elapsed_ticks = 0;
        self.suspend_lease();
        self.stats.transfers_started += 1;
        self.maybe_send_timeout_now(target, actions);
        if self.transfer_target.is_some() {
            self.send_append(target, false, actions);
        }
    }

    /// The refusal of a proposal while a transfer is under way.
    pub(crate) fn transfer_blocks_proposals(&self) -> Option<ProposeError> {
        self.transfer_target
            .map(|target| ProposeError::TransferInProgress { target })
    }

    /// The voter that should lead when healthy and caught up (the leader
    /// hands over to it by itself): highest
    /// [priority](crate::Config::priorities), then highest id. None when
    /// no voter has a priority. A leader balancer leaves such a group
    /// alone: a transfer elsewhere would be handed back.
    pub fn preferred_leader(&self) -> Option<NodeId> {
        self.membership
            .voters
            .iter()
            .filter(|id| !self.membership.is_witness(**id))
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
        self.start_transfer(target, "to preferred node", actions);
    }

    /// Tells the transfer target to campaign once its log is complete.
    // Inlined: every acknowledgement asks, and almost always no transfer
    // is under way.
    #[inline(always)]
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

    /// Gives up a transfer that has not completed within
    /// `transfer_timeout_ticks`, so proposals are not refused forever.
    pub(crate) fn tick_transfer(&mut self, actions: &mut Vec<Action>) {
        let Some(target) = self.transfer_target else {
            return;
        };
        self.transfer_elapsed_ticks = self.transfer_elapsed_ticks.saturating_add(1);
        if self.transfer_elapsed_ticks >= self.config.transfer_timeout_ticks() {
            tracing::info!(
                node = self.config.id,
                term = self.term,
                target,
                "leadership transfer timed out; leading on"
            );
            self.transfer_target = None;
            // The lease stays void for the rest of the term: see
            // `Node::suspend_lease`.
            actions.push(Action::Transfer {
                target,
                outcome: TransferOutcome::TimedOut,
            });
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
