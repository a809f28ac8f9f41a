//! `read-forwarded`: a follower serves a forwarded read only at an index
//! its leader confirmed *after the read arrived*.
//!
//! A follower read is sent on to the leader in a `ReadIndexRequest`; the
//! leader answers with an index confirmed by a heartbeat round sent after
//! the request arrived. That answer covers the reads that arrived at the
//! follower before the request left, never one that arrived later: a
//! write may have committed between the leader's confirmation and such a
//! read's arrival. So, tracked from outside per node and incarnation
//! (steps numbered in order): each follower read that arrived while the
//! node was not leading, each request the node sent, each index answer
//! it took; when a forwarded read is released, some request sent at or
//! after the read's step must have been answered, and the read's index
//! must be at least that answer's.

use std::collections::{BTreeMap, VecDeque};

use concord::{Action, Index, MessageBody, ReadPath};

/// Requests and answers remembered per node (a read waits for one
/// request at most an election timeout, and requests go out one at a
/// time, so a read's covering request is among the last few).
const REQUESTS_REMEMBERED_MAX: usize = 64;

/// Forwarded reads tracked per node (the core bounds reads pending far
/// below this; the oldest is dropped past it).
const READS_TRACKED_MAX: usize = 4096;

/// One node's forwarded reads, requests and answers, in its current
/// incarnation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forwarded {
    /// Steps taken (the order of arrivals and sends).
    step: u64,
    /// Follower reads that arrived while not leading: id -> step.
    reads: BTreeMap<u64, u64>,
    /// Requests sent: (request, step).
    requests: VecDeque<(u64, u64)>,
    /// Index answers taken: (request, index).
    answers: VecDeque<(u64, Index)>,
}

impl Forwarded {
    /// Forgets everything (a restart).
    pub(crate) fn clear(&mut self) {
        *self = Forwarded::default();
    }

    /// A step begins: a follower read arriving at a node not leading is
    /// tracked; an index answer is noted.
    pub(crate) fn on_input(
        &mut self,
        leading: bool,
        read: Option<(u64, ReadPath)>,
        answer: Option<(u64, Option<Index>)>,
    ) {
        self.step += 1;
        if let Some((id, ReadPath::Follower)) = read {
            if !leading {
                if self.reads.len() >= READS_TRACKED_MAX {
                    self.reads.pop_first();
                }
                self.reads.insert(id, self.step);
            }
        }
        if let Some((request, Some(index))) = answer {
            if self.requests.iter().any(|(sent, _)| *sent == request) {
                if self.answers.len() >= REQUESTS_REMEMBERED_MAX {
                    self.answers.pop_front();
                }
                self.answers.push_back((request, index));
            }
        }
    }

    /// The step's actions: requests sent, reads refused or released.
    /// Returns what is wrong with a released read, if anything.
    pub(crate) fn on_actions(&mut self, actions: &[Action]) -> Option<String> {
        for action in actions {
            match action {
                Action::Send { message, .. } => {
                    if let MessageBody::ReadIndexRequest { request } = message.body {
                        if self.requests.len() >= REQUESTS_REMEMBERED_MAX {
                            self.requests.pop_front();
                        }
                        self.requests.push_back((request, self.step));
                    }
                }
                Action::ReadRefused { id, .. } => {
                    self.reads.remove(id);
                }
                Action::ReadReady {
                    id,
                    index,
                    path: ReadPath::Follower,
                } => {
                    let Some(arrived) = self.reads.remove(id) else {
                        continue;
                    };
                    let covering = self
                        .requests
                        .iter()
                        .filter(|(_, sent)| *sent >= arrived)
                        .filter_map(|(request, _)| {
                            self.answers
                                .iter()
                                .find(|(answered, _)| answered == request)
                                .map(|(_, answer)| (*request, *answer))
                        })
                        .min_by_key(|(_, answer)| *answer);
                    match covering {
                        Some((_, answer)) if *index >= answer => {}
                        _ => {
                            return Some(format!(
                                "served follower read {id} at index {index}, but no request sent at or after the read arrived (step {arrived} of this incarnation) was answered with an index at most that (requests sent at steps: {:?}; answers: {:?})",
                                self.requests, self.answers
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }
}
