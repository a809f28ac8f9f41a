//! The fault plan, applied to a multi-group cluster. The plan is the
//! single-group simulator's ([`FaultPlan`](crate::faults::FaultPlan),
//! drawn the same way from the seed); each fault means here:
//!
//! | fault | in a multi-group run |
//! | --- | --- |
//! | crash, restart, pause, resume, partition (split, one-way, bridge), heal | the same, for the node or the links (a frame is cut as a whole) |
//! | loss, duplicate, reorder, delay, stale | per frame |
//! | fsync, torn | per sync of a node's log (one for every group's writes); a crash tears the first unsynced batch's records |
//! | skew | per node's clock (every group on it) |
//! | pause, in a seed with stall bursts (`MultiSim::stall_bursts`) | the missed ticks come back to back, one flush after the last; a node also stalls 2 to 40 ticks, half the time, when its layer sees a peer die, return or restart |
//! | crash or isolate "the leader", with a minority | the node leading the most groups (the node-loss wake storm) |
//! | crash the leader after it appends | the next node that appends a client's command as leader crashes before that step's writes and sends leave it |
//! | leader churn | the node leading the most groups is deposed (crashed, or cut off) `rounds` times in a row |
//! | crash the voter | the next node to write a vote for another node crashes before that write is synced |
//! | split vote | the node leading the most groups crashes: every group it led elects at once |
//! | forged sender | the node leading the most groups is handed a frame claiming to come from itself, from node 0, or from a node outside the cluster, with a heartbeat a few terms ahead for a group it leads: refused, no group changes |
//! | malformed | a node is handed a frame addressed to another node, or one with more items than `frame_items_max`, or one for a group it does not host: refused or dropped and counted, no group changes |
//! | lease | aimed at the node leading the most sleeping groups: see `lease.rs` |

use concord::multi::{Frame, GroupHeartbeat, GroupId, MultiInput};
use concord::{HardState, Index, NodeId, Role, Term};
use rand::Rng;

use crate::faults::{Fault, FaultKind, ForgedSender, Partition, FORGED_OUTSIDE_ID};

use super::engine::{Event, MultiSim, MS};
use super::report::MultiCheck;

/// What a group looks like from outside, to tell that a refused frame
/// changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Looks {
    role: Role,
    term: Term,
    hard_state: HardState,
    commit: Index,
    last: Index,
}

impl MultiSim {
    /// The plan's `at`th fault is due.
    pub(crate) fn on_fault(&mut self, at: usize) {
        if self.phase != super::engine::Phase::Chaos {
            return;
        }
        let fault = self.plan.events[at].fault.clone();
        self.trace.word(0xfa17_0000 | at as u64);
        self.note(None, || format!("fault: {fault}"));
        match fault.clone() {
            Fault::Crash { node } => self.crash(node as usize - 1),
            Fault::Restart { node } => self.restart(node as usize - 1),
            Fault::Pause { node } => self.pause(node as usize - 1),
            Fault::Resume { node } => self.resume(node as usize - 1),
            Fault::Partition(partition) => self.partition(&partition),
            Fault::HealNetwork => self.heal_network(),
            Fault::CrashLeader { down_ns } | Fault::SplitVote { down_ns } => {
                if matches!(fault, Fault::SplitVote { .. }) {
                    self.faults.add(FaultKind::SplitVote, 1);
                }
                if let Some(index) = self.top_leader() {
                    self.crash(index);
                    self.schedule(down_ns, Event::Restart { node: index });
                }
            }
            Fault::IsolateLeader { length_ns } => {
                if let Some(index) = self.top_leader() {
                    self.isolate(vec![index as NodeId + 1], length_ns);
                }
            }
            Fault::IsolateLeaderWithMinority { length_ns } => {
                if let Some(index) = self.top_leader() {
                    let nodes = self.hosts.len();
                    let minority = (nodes - 1) / 2;
                    let side: Vec<NodeId> = (0..minority.max(1))
                        .map(|offset| ((index + offset) % nodes) as NodeId + 1)
                        .collect();
                    self.isolate(side, length_ns);
                }
            }
            Fault::CrashLeaderAfterAppend { down_ns } => {
                self.crash_after_append = Some(down_ns);
            }
            Fault::LeaderChurn {
                rounds,
                depose_within_ns,
                down_ns,
            } => {
                // Depose the node leading the most groups, round after
                // round: each round a crash or a cut, then the next round
                // after the deposed node is back.
                let mut at = 0;
                for _ in 0..rounds {
                    at += self.nemesis_rng.gen_range(0..depose_within_ns.max(1));
                    self.schedule(at, Event::ChurnRound { down_ns });
                    at += down_ns;
                }
            }
            Fault::CrashVoter { down_ns } => self.crash_voter = Some(down_ns),
            Fault::Forge {
                sender,
                terms_ahead,
            } => self.forge(sender, terms_ahead),
            Fault::Malformed { message, pick } => self.malformed(message as u32, pick),
            Fault::Lease {
                scenario,
                length_ns,
            } => self.lease_fault(scenario, length_ns),
            // Not drawn for multi-group runs (`MultiSimConfig::from_sim`);
            // a plan given by hand that holds one is noted and skipped.
            Fault::SnapshotConflict { .. } | Fault::DiskLoss { .. } => {
                self.note(None, || {
                    format!("{fault}: not a multi-group fault, skipped")
                });
            }
        }
    }

    /// One round of leader churn: the node leading the most groups is
    /// crashed (or cut off) for the round's downtime.
    pub(crate) fn churn_round(&mut self, down_ns: u64) {
        if self.phase != super::engine::Phase::Chaos {
            return;
        }
        let Some(index) = self.top_leader() else {
            return;
        };
        self.faults.add(FaultKind::Churn, 1);
        let down_ns = down_ns.max(MS);
        if self.nemesis_rng.gen_bool(0.5) {
            self.note(Some(index), || "churn: deposed by a crash".to_string());
            self.crash(index);
            self.schedule(down_ns, Event::Restart { node: index });
        } else {
            self.note(Some(index), || "churn: deposed by a cut".to_string());
            self.isolate(vec![index as NodeId + 1], down_ns);
        }
    }

    fn isolate(&mut self, side: Vec<NodeId>, length_ns: u64) {
        if side.len() >= self.hosts.len() {
            return;
        }
        self.partition(&Partition::Split { side });
        let generation = self.partition_generation;
        self.schedule(length_ns, Event::HealNetwork { generation });
    }

    /// What every group on node `index` looks like.
    fn looks(&self, index: usize) -> Vec<(GroupId, Looks)> {
        let Some(multi) = &self.hosts[index].multi else {
            return Vec::new();
        };
        multi
            .groups()
            .map(|(group, node)| {
                (
                    group,
                    Looks {
                        role: node.role(),
                        term: node.term(),
                        hard_state: node.hard_state(),
                        commit: node.commit_index(),
                        last: node.last_index(),
                    },
                )
            })
            .collect()
    }

    /// Hands node `index` `frame` directly (not through the network) and
    /// checks it changed no group and moved the counter `counted` names
    /// by one (`refused`: `frames_refused`, else `items_unknown_group`).
    fn hand_bad_frame(&mut self, index: usize, frame: Frame, refused: bool, what: &str) {
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        if self.hosts[index].paused {
            return;
        }
        let before_stats = *multi.stats();
        let before = self.looks(index);
        self.step_node(index, MultiInput::Receive(frame), None);
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let after_stats = *multi.stats();
        let (counter, moved) = if refused {
            (
                "frames_refused",
                after_stats.frames_refused - before_stats.frames_refused,
            )
        } else {
            (
                "items_unknown_group",
                after_stats.items_unknown_group - before_stats.items_unknown_group,
            )
        };
        if moved == 0 {
            let message = format!("{what}: `{counter}` did not move");
            self.fail(MultiCheck::FrameRefusal, Some(index), None, message);
            return;
        }
        if refused && after_stats.frames_received != before_stats.frames_received {
            let message = format!("{what}: the frame was taken (frames_received moved)");
            self.fail(MultiCheck::FrameRefusal, Some(index), None, message);
            return;
        }
        let after = self.looks(index);
        if let Some(((group, was), (_, is))) = before
            .iter()
            .zip(after.iter())
            .find(|((_, was), (_, is))| was != is)
        {
            let message = format!("{what}: group {group} changed from {was:?} to {is:?}");
            self.fail(MultiCheck::FrameRefusal, Some(index), Some(*group), message);
        }
    }

    /// The node leading the most groups is handed a heartbeat from a
    /// forged sender, `terms_ahead` terms ahead, for a group it leads.
    fn forge(&mut self, sender: ForgedSender, terms_ahead: u64) {
        let Some(index) = self.top_leader() else {
            return;
        };
        let me = index as NodeId + 1;
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let Some((group, term, commit)) = multi
            .groups()
            .find(|(_, node)| node.role() == Role::Leader)
            .map(|(group, node)| (group, node.term(), node.commit_index()))
        else {
            return;
        };
        let from = match sender {
            ForgedSender::Itself => me,
            ForgedSender::Zero => 0,
            ForgedSender::Outside => FORGED_OUTSIDE_ID,
        };
        let mut frame = Frame::new(from, me, 1);
        frame.heartbeats.push(GroupHeartbeat {
            group,
            term: term + terms_ahead,
            progress_id: 0,
            commit,
            read_round: 0,
        });
        self.faults.add(FaultKind::Forge, 1);
        let what =
            format!("a heartbeat for group {group} from {sender}, {terms_ahead} terms ahead");
        self.hand_bad_frame(index, frame, true, &what);
    }

    /// A node is handed a malformed frame: misaddressed, too large, or
    /// for a group it does not host.
    fn malformed(&mut self, kind: u32, pick: u32) {
        let nodes = self.hosts.len();
        let index = pick as usize % nodes;
        let me = index as NodeId + 1;
        let peer = if nodes > 1 {
            ((index + 1) % nodes) as NodeId + 1
        } else {
            // A lone node has no peer: a frame "from" a stranger is
            // refused for that reason alone.
            FORGED_OUTSIDE_ID
        };
        let heartbeat = |group| GroupHeartbeat {
            group,
            term: 1,
            progress_id: 0,
            commit: 0,
            read_round: 0,
        };
        self.faults.add(FaultKind::Malformed, 1);
        match kind % 3 {
            0 => {
                // Addressed to another node.
                let mut frame = Frame::new(peer, me + 100, 1);
                frame.heartbeats.push(heartbeat(1));
                self.hand_bad_frame(index, frame, true, "a frame addressed to another node");
            }
            1 => {
                // More items than any frame may carry.
                let max = self.drawn.layer.frame_items_max.min(100_000);
                let mut frame = Frame::new(peer, me, 1);
                for _ in 0..=max {
                    frame.heartbeats.push(heartbeat(1));
                }
                self.hand_bad_frame(index, frame, true, "a frame with too many items");
            }
            _ => {
                // An item for a group no node hosts, in a frame from a
                // peer that could have sent it (up, not cut off, taken
                // for alive): the frame itself must not tell the node
                // anything about the peer it does not know.
                let Some(multi) = &self.hosts[index].multi else {
                    return;
                };
                let sender = peer as usize - 1;
                let plausible = peer != FORGED_OUTSIDE_ID
                    && multi.peer_alive(peer) == Some(true)
                    && self.hosts[sender].multi.is_some()
                    && !self.cut(sender, index);
                if !plausible {
                    return;
                }
                let mut frame = Frame::new(peer, me, self.peer_incarnation(peer));
                frame.heartbeats.push(heartbeat(u64::MAX / 2));
                self.hand_bad_frame(index, frame, false, "a frame for a group no node hosts");
            }
        }
    }

    /// The incarnation node `id` runs in now (a frame with another one
    /// would tell the receiver it restarted).
    fn peer_incarnation(&self, id: NodeId) -> u64 {
        self.hosts[id as usize - 1].incarnation
    }
}
