//! The late catch-up nemesis: a voter that cannot lead (a witness) hands
//! a candidate whose log is behind its own the entries it may lack
//! ([`concord::MessageBody::CandidateCatchUp`]); a candidate takes them
//! only where they leave its log more up to date by Raft's order (the
//! last entry's term first, then its index). The schedule that tests that
//! order is a catch-up arriving *late*: computed while the candidate was
//! behind, delivered after its log moved on to entries of a newer term, so
//! that the catch-up's entries are of an older term than the candidate's
//! last and, often, reach a higher index (a longer log of an older term).
//! Random delays make that rare; this nemesis makes it likely.
//!
//! In seeds whose network duplicates or holds messages back (the plan's
//! `duplicate` or `stale` rate above 0: a late copy is within that fault
//! model), a copy of every catch-up sent is kept (the newest few). Whenever
//! a node asks for votes (a pre-vote or a vote request goes out from it),
//! every kept catch-up to it whose last entry is of an older term than the
//! node's last entry is delivered to it again, at once (each at most
//! [`LATE_COPIES_MAX`] times, at as many campaigns). The step rule
//! `catch-up-order` (`crate::rules`) then judges whether it was taken.

use std::collections::VecDeque;

use concord::state_machine::StateMachine;
use concord::{LogPosition, Message, MessageBody};

use super::network::MESSAGE_DELAY_MIN_NS;
use super::{Event, Simulation};
use crate::workload::Workload;

/// Catch-ups kept for late delivery.
const KEPT_MAX: usize = 16;

/// Late copies of one catch-up delivered at most.
const LATE_COPIES_MAX: u8 = 4;

/// The kept catch-ups of one run.
#[derive(Default)]
pub(super) struct LateCatchUps {
    /// On in this seed.
    on: bool,
    /// (receiver index, the catch-up's last entry, copies delivered, the
    /// message).
    kept: VecDeque<(usize, LogPosition, u8, Message)>,
    /// Late copies delivered.
    pub(super) delivered: u64,
}

impl LateCatchUps {
    /// The nemesis of a seed whose plan's rates are `rates`.
    pub(super) fn new(rates: &crate::faults::Rates) -> LateCatchUps {
        LateCatchUps {
            on: rates.duplicate > 0.0 || rates.stale > 0.0,
            ..LateCatchUps::default()
        }
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Node `index` sends `message` to node index `target`: a catch-up is
    /// kept; a vote request brings back the kept catch-ups of an older
    /// term to its sender.
    pub(super) fn late_catch_up_on_send(&mut self, index: usize, target: usize, message: &Message) {
        if !self.late_catch_ups.on || self.healed {
            return;
        }
        match &message.body {
            MessageBody::CandidateCatchUp { entries, .. } => {
                let Some(last) = entries.last().map(|entry| entry.position()) else {
                    return;
                };
                let kept = &mut self.late_catch_ups.kept;
                if kept.len() == KEPT_MAX {
                    kept.pop_front();
                }
                kept.push_back((target, last, 0, message.clone()));
            }
            MessageBody::RequestVote { .. } => {
                let Some(own_last) = self.hosts[index]
                    .node
                    .as_ref()
                    .map(|node| node.last_position())
                else {
                    return;
                };
                let mut kept = std::mem::take(&mut self.late_catch_ups.kept);
                for (to, last, copies, late) in kept.iter_mut() {
                    if *to == index && last.term < own_last.term && *copies < LATE_COPIES_MAX {
                        *copies += 1;
                        self.late_catch_ups.delivered += 1;
                        let last = *last;
                        self.note(Some(index), || {
                            format!("late catch-up up to {last:?} delivered again (own last entry {own_last:?})")
                        });
                        let slot = self.messages.insert(late.clone());
                        self.schedule(MESSAGE_DELAY_MIN_NS, Event::Deliver { slot });
                    }
                }
                self.late_catch_ups.kept = kept;
            }
            _ => {}
        }
    }
}
