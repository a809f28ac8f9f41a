//! The split-vote nemesis ([`Fault::SplitVote`]): two candidates campaign
//! in the same term at the same instant, and every voter hears the first
//! one's request before the second one's, both before anyone can have
//! learned of a winner.
//!
//! Raft's election safety rests on each voter granting at most one vote
//! per term. Randomized timeouts make two simultaneous campaigns rare, and
//! rarer still the schedule that puts a voter's two grants to use: the
//! second request must reach a voter that already voted, while it still
//! knows no leader. The nemesis builds that schedule on purpose:
//!
//! * the leader crashes (so a campaign follows within an election
//!   timeout, and voters' leader leases run out); with lease reads on,
//!   the nemesis strikes only once no node leads (the second
//!   candidate's clock jump below is past the drift bound a lease
//!   stands on);
//! * the node whose timer fires first starts its campaign as usual; in the
//!   same step the host runs the timer of a second follower of the same
//!   term (the most up-to-date one, so voters may grant it) to expiry, as
//!   a clock that jumped forward would;
//! * for [`SPLIT_VOTE_WINDOW_NS`] the second candidate's messages take
//!   [`SPLIT_VOTE_LAG_NS`] longer, and the first candidate's messages other
//!   than its vote requests (and all it sends the second) take
//!   [`SPLIT_VOTE_HOLD_NS`] longer: a voter receives request one, then
//!   request two, then word of a leader; and the voters' fsyncs take
//!   [`SPLIT_VOTE_SYNC_NS`], so request two arrives while the vote for one
//!   is not durable yet (a grant is answered only once durable).
//!
//! A correct voter refuses the second request. One that grants it either
//! answers both (the election-safety check sees two leaders of one term)
//! or, as the core's grant waits for durability and is sent only to the
//! candidate voted for, replaces its pending answer to the first and
//! answers no one: the vote-answer check (`crate::promises`) sees a
//! durable vote never answered. All of it is network delay and clock drift: within
//! the fault model.

use concord::state_machine::StateMachine;
use concord::{Input, Message, MessageBody, NodeId, Role, Term};

use super::{format_time, Simulation};
use crate::faults::{
    SPLIT_VOTE_HOLD_NS, SPLIT_VOTE_LAG_NS, SPLIT_VOTE_SYNC_NS, SPLIT_VOTE_WINDOW_NS,
};
use crate::workload::Workload;

/// The network skew of a split vote under way.
#[derive(Clone, Copy, Debug)]
pub(super) struct SplitRoute {
    /// The node that campaigned first (node index).
    first: usize,
    /// Its rival (node index).
    second: usize,
    /// Messages sent before this virtual time are skewed.
    until_ns: u64,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// The extra delay of a message from node `from` to node `to` while a
    /// split vote is under way (0 otherwise).
    pub(super) fn split_vote_delay(&mut self, from: usize, to: usize, message: &Message) -> u64 {
        let Some(route) = self.split_route else {
            return 0;
        };
        if self.now >= route.until_ns || self.healed {
            self.split_route = None;
            return 0;
        }
        if from == route.second {
            return SPLIT_VOTE_LAG_NS;
        }
        if from != route.first {
            return 0;
        }
        let vote_request = matches!(message.body, MessageBody::RequestVote { .. });
        if to == route.second || !vote_request {
            SPLIT_VOTE_HOLD_NS
        } else {
            0
        }
    }

    /// With the planted `split_vote_grant_dropped` bug: whether a vote
    /// grant to the first candidate of a split vote under way is lost
    /// before it leaves the node.
    pub(super) fn split_vote_grant_lost(&self, to: NodeId, message: &Message) -> bool {
        self.config.bugs.split_vote_grant_dropped
            && self
                .split_route
                .is_some_and(|route| route.first + 1 == to as usize)
            && matches!(
                message.body,
                MessageBody::RequestVoteResponse {
                    pre_vote: false,
                    granted: true
                }
            )
    }

    /// The fsync latency of node `index` while a split vote is under way:
    /// a voter's disk is slow ([`SPLIT_VOTE_SYNC_NS`]), so the second
    /// request reaches it while its vote for the first is not durable yet.
    pub(super) fn split_vote_sync_ns(&self, index: usize, latency_ns: u64) -> u64 {
        match self.split_route {
            Some(route)
                if self.now < route.until_ns
                    && !self.healed
                    && index != route.first
                    && index != route.second =>
            {
                latency_ns.max(SPLIT_VOTE_SYNC_NS)
            }
            _ => latency_ns,
        }
    }

    /// Node `first` just started a campaign from `term`: skews the network
    /// for a split vote (before the campaign's requests go out).
    pub(super) fn split_vote_route(&mut self, first: usize, term: Term) -> Option<usize> {
        let second = self.split_vote_rival(first, term)?;
        self.split_route = Some(SplitRoute {
            first,
            second,
            until_ns: self.now + SPLIT_VOTE_WINDOW_NS,
        });
        self.trace
            .word(0x5b17 | ((first as u64) << 16) | ((second as u64) << 24));
        self.note(Some(first), || {
            format!(
                "nemesis: split vote, n{} campaigns in the same step; n{}'s requests arrive first, for {}",
                second + 1,
                first + 1,
                format_time(SPLIT_VOTE_WINDOW_NS)
            )
        });
        Some(second)
    }

    /// Runs the election timer of `second` to expiry: it starts its own
    /// campaign (at most `election_timeout_max_ticks` + 1 ticks; a node
    /// that may not campaign just counts them).
    pub(super) fn split_vote_campaign(&mut self, second: usize) {
        let Some(node) = self.hosts[second].node.as_ref() else {
            return;
        };
        let ticks = node.config().election_timeout_max_ticks + 1;
        for _ in 0..ticks {
            let still_follower = self.hosts[second]
                .node
                .as_ref()
                .is_some_and(|node| node.role() == Role::Follower);
            if !still_follower || self.failure.is_some() {
                return;
            }
            self.step(second, Input::Tick, None);
        }
    }

    /// The rival of a split vote: a running follower of `term` other than
    /// `first`, the one with the most up-to-date log (lowest id on a tie),
    /// so that voters may grant it.
    fn split_vote_rival(&self, first: usize, term: Term) -> Option<usize> {
        // The rival's clock jumps past the declared drift bound, which a
        // lease stands on: not while a leader (running or paused) may hold
        // one (found by the step rule `lease-promise`, `run --service
        // directory --nodes 5`, seed 620023).
        let lease_may_hold = self.hosts.iter().any(|host| {
            host.node.as_ref().is_some_and(|node| {
                node.role() == Role::Leader && node.config().lease_read_ticks > 0
            })
        });
        if lease_may_hold {
            return None;
        }
        (0..self.hosts.len())
            .filter(|index| *index != first && !self.hosts[*index].paused)
            .filter_map(|index| {
                let node = self.hosts[index].node.as_ref()?;
                let eligible = node.role() == Role::Follower
                    && node.term() == term
                    && node.membership().voters.contains(&node.id());
                eligible.then(|| {
                    let last = node.last_position();
                    ((last.term, last.index), std::cmp::Reverse(index))
                })
            })
            .max()
            .map(|(_, std::cmp::Reverse(index))| index)
    }
}
