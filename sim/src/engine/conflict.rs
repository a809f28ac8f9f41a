//! The snapshot-conflict nemesis
//! ([`Fault::SnapshotConflict`](crate::faults::Fault::SnapshotConflict)):
//! a follower holding an uncommitted suffix of an older term receives a
//! snapshot whose entries disagree with that suffix, its chunks
//! interleaved with appends and, sometimes, a change of leader.
//!
//! Random faults rarely build this: the follower must take entries no
//! majority holds, stay away while a new leader commits other entries at
//! those indices *and* compacts past them, then come back. The nemesis
//! builds it in three phases:
//!
//! 1. **Feed** (`feed_ns`): the leader and one follower are cut off from
//!    the others and the follower's answers from the leader: the leader
//!    keeps appending client commands (and its own entries) and sends them
//!    to the follower alone, which stores them; nothing commits. On 3 or 4
//!    nodes the others are no majority, so the leader also crashes right
//!    after its first append of the phase reaches the follower, losing
//!    the entry it had not synced (else it could be re-elected with it).
//! 2. **Diverge**: the follower (and, on 5 or more nodes, the old leader)
//!    is cut off; the others elect a leader that commits other entries and
//!    compacts its log past the follower's commit index (polled every
//!    10 ms, given up after 3 s).
//! 3. **Transfer**: the network heals; the new leader finds the follower's
//!    log conflicting below its log's base and sends the snapshot. With
//!    `late_chunks`, a second copy of every chunk of the transfer reaches
//!    the follower `late_ns` later, in order (a complete stale transfer,
//!    after appends moved the follower's commit index past it); with
//!    `depose`, the sending leader is cut off right after its first chunk,
//!    and the next leader, of a new term, starts the transfer again.
//!
//! A correct follower discards its conflicting suffix when it installs the
//! snapshot (the snapshot's last entry is not in its log) and ignores a
//! snapshot its commit index already covers. Everything is partitions,
//! message delays and duplicates, and a crash: within the fault model.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Index, Message, MessageBody, Role};

use super::{Event, Simulation, MS};
use crate::faults::Partition;
use crate::workload::Workload;

/// The poll period of the Diverge phase.
const POLL_NS: u64 = 10 * MS;

/// The Diverge phase gives up after this long.
const DIVERGE_MAX_NS: u64 = 3_000 * MS;

/// The Transfer phase ends after this long.
const TRANSFER_MAX_NS: u64 = 2_000 * MS;

/// How long the leader sending the snapshot stays cut off with `depose`.
const DEPOSE_NS: u64 = 300 * MS;

/// Most late chunk copies of one transfer.
const LATE_CHUNKS_MAX: u32 = 256;

/// Timed steps of the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConflictStep {
    /// The Feed phase ends.
    Divert,
    /// The Diverge phase polls the new leader's log base.
    Poll,
    /// The Transfer phase ends.
    End,
    /// Cut off the leader that sent the first chunk.
    Depose,
}

impl ConflictStep {
    pub(super) fn code(self) -> u64 {
        self as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Feed,
    Diverge { since_ns: u64, commit: Index },
    Transfer,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    leader: usize,
    follower: usize,
    incarnation: u32,
    phase: Phase,
    late_chunks: bool,
    late_ns: u64,
    depose: bool,
    /// The leader that sent the first chunk, once it did (with `depose`).
    deposed: Option<usize>,
    late_sent: u32,
    /// The old leader crashed after its first append of the Feed phase
    /// (on 3 or 4 nodes).
    crashed: bool,
}

/// The snapshot-conflict nemesis of one run.
pub(super) struct ConflictNemesis {
    /// Its own stream, so that the other draws of a seed stay as they were.
    rng: ChaCha8Rng,
    active: Option<Active>,
}

impl ConflictNemesis {
    pub(super) fn new(seed: u64) -> ConflictNemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x736e_6170_0000_0036);
        rng.set_stream(43);
        ConflictNemesis { rng, active: None }
    }

    /// Whether a step of node `index` must be shown to the nemesis: the
    /// old leader's, in the Feed phase on a cluster too small to elect
    /// without it.
    #[inline]
    pub(super) fn watches(&self, index: usize, nodes: usize) -> bool {
        nodes < 5
            && self.active.is_some_and(|active| {
                active.leader == index && active.phase == Phase::Feed && !active.crashed
            })
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Starts the nemesis (unless one is under way or no leader rules).
    pub(super) fn conflict_fault(
        &mut self,
        feed_ns: u64,
        late_chunks: bool,
        late_ns: u64,
        depose: bool,
    ) {
        if self.conflict.active.is_some() {
            self.note(None, || "snapshot conflict busy, skipped".to_string());
            return;
        }
        let Some(leader) = self.current_leader() else {
            return;
        };
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return;
        };
        let me = node.id();
        let membership = node.membership().clone();
        let followers: Vec<usize> = membership
            .voters
            .iter()
            .chain(membership.learners.iter())
            .filter(|id| **id != me && !membership.is_witness(**id))
            .map(|id| *id as usize - 1)
            .filter(|index| {
                self.hosts.get(*index).is_some_and(|host| {
                    host.node
                        .as_ref()
                        .is_some_and(|node| node.role() == Role::Follower)
                        && !host.paused
                })
            })
            .collect();
        if followers.is_empty() {
            return;
        }
        let follower = followers[self.conflict.rng.gen_range(0..followers.len())];
        self.conflict.active = Some(Active {
            leader,
            follower,
            incarnation: self.hosts[leader].incarnation,
            phase: Phase::Feed,
            late_chunks,
            late_ns,
            depose,
            deposed: None,
            late_sent: 0,
            crashed: false,
        });
        // Everything to or from the leader or the follower is lost, but
        // for the leader's messages to the follower.
        let nodes = self.hosts.len();
        let mut blocked = [0u8; 8];
        for (from, row) in blocked.iter_mut().enumerate().take(nodes) {
            for to in 0..nodes.min(8) {
                let touches = [from, to].iter().any(|i| *i == leader || *i == follower);
                if from != to && touches && !(from == leader && to == follower) {
                    *row |= 1 << to;
                }
            }
        }
        self.blocked = blocked;
        self.note(Some(leader), || {
            format!(
                "snapshot conflict: feeding n{} alone, for {} ms",
                follower + 1,
                feed_ns / MS
            )
        });
        self.network_changed();
        self.schedule(feed_ns, Event::Conflict(ConflictStep::Divert));
    }

    /// Shown a step of the old leader in the Feed phase on 3 or 4 nodes:
    /// whether it must crash now that its actions ran (it appended).
    pub(super) fn conflict_crash_after(&mut self, index: usize, appended: bool) -> bool {
        let Some(active) = self.conflict.active.as_mut() else {
            return false;
        };
        let leads = self.hosts[index]
            .node
            .as_ref()
            .is_some_and(|node| node.role() == Role::Leader);
        if !appended || !leads || self.hosts[index].incarnation != active.incarnation {
            return false;
        }
        active.crashed = true;
        true
    }

    /// A timed step of the nemesis.
    pub(super) fn conflict_step(&mut self, step: ConflictStep) {
        let Some(mut active) = self.conflict.active else {
            return;
        };
        if self.healed {
            self.conflict.active = None;
            return;
        }
        match step {
            ConflictStep::Divert => {
                if active.phase != Phase::Feed {
                    return;
                }
                let nodes = self.hosts.len();
                let mut side = vec![active.follower as concord::NodeId + 1];
                if nodes >= 5 {
                    side.push(active.leader as concord::NodeId + 1);
                }
                // Each of `side` alone: cut off from everyone.
                let mut blocked = [0u8; 8];
                for (from, row) in blocked.iter_mut().enumerate().take(nodes) {
                    for to in 0..nodes.min(8) {
                        let cut = [from, to]
                            .iter()
                            .any(|i| side.contains(&(*i as concord::NodeId + 1)));
                        if from != to && cut {
                            *row |= 1 << to;
                        }
                    }
                }
                self.blocked = blocked;
                let commit = self.hosts[active.follower]
                    .node
                    .as_ref()
                    .map_or(0, |node| node.commit_index());
                active.phase = Phase::Diverge {
                    since_ns: self.now,
                    commit,
                };
                self.conflict.active = Some(active);
                self.note(None, || {
                    format!("snapshot conflict: {side:?} cut off; waiting for a leader compacting past {commit}")
                });
                self.network_changed();
                self.schedule(POLL_NS, Event::Conflict(ConflictStep::Poll));
            }
            ConflictStep::Poll => {
                let Phase::Diverge { since_ns, commit } = active.phase else {
                    return;
                };
                let compacted = self.current_leader().is_some_and(|leader| {
                    leader != active.follower
                        && self.hosts[leader]
                            .node
                            .as_ref()
                            .is_some_and(|node| node.log_base().index > commit)
                });
                if compacted {
                    active.phase = Phase::Transfer;
                    self.conflict.active = Some(active);
                    self.blocked = [0; 8];
                    self.note(None, || {
                        "snapshot conflict: network healed, the follower rejoins".to_string()
                    });
                    self.network_changed();
                    self.schedule(TRANSFER_MAX_NS, Event::Conflict(ConflictStep::End));
                } else if self.now >= since_ns + DIVERGE_MAX_NS {
                    self.conflict.active = None;
                    self.blocked = [0; 8];
                    self.note(None, || {
                        "snapshot conflict: no leader compacted in time; network healed".to_string()
                    });
                    self.network_changed();
                } else {
                    self.schedule(POLL_NS, Event::Conflict(ConflictStep::Poll));
                }
            }
            ConflictStep::End => {
                if active.phase == Phase::Transfer {
                    self.conflict.active = None;
                }
            }
            ConflictStep::Depose => {
                let Some(sender) = active.deposed.filter(|_| active.phase == Phase::Transfer)
                else {
                    return;
                };
                let partition = Partition::Split {
                    side: vec![sender as concord::NodeId + 1],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(Some(sender), || {
                    format!(
                        "snapshot conflict: the sender of the first chunk is cut off, {partition}"
                    )
                });
                self.network_changed();
                self.schedule(DEPOSE_NS, Event::DelayedHealNetwork);
            }
        }
    }

    /// A message node `from` just handed the network (and scheduled, if
    /// not lost): in the Transfer phase, a chunk to the follower gets its
    /// late copy, and the first one may cut its sender off.
    pub(super) fn conflict_on_send(&mut self, from: usize, message: &Message) {
        let Some(mut active) = self.conflict.active else {
            return;
        };
        if active.phase != Phase::Transfer
            || message.to as usize != active.follower + 1
            || !matches!(message.body, MessageBody::InstallSnapshot(_))
        {
            return;
        }
        if active.late_chunks && active.late_sent < LATE_CHUNKS_MAX {
            // In sending order: each copy a millisecond after the one
            // before, whatever base delays the originals drew.
            let delay = active.late_ns + u64::from(active.late_sent) * MS;
            active.late_sent += 1;
            let slot = self.messages.insert(message.clone());
            self.schedule(delay, Event::Deliver { slot });
        }
        if active.depose && active.deposed.is_none() {
            // Once the first chunks have arrived.
            active.deposed = Some(from);
            self.schedule(2 * MS, Event::Conflict(ConflictStep::Depose));
        }
        self.conflict.active = Some(active);
    }

    /// Everything stops at the heal.
    pub(super) fn conflict_heal(&mut self) {
        self.conflict.active = None;
    }
}
