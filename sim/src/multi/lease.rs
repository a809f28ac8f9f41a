//! The lease nemeses in a multi-group run ([`Fault::Lease`](crate::faults::Fault::Lease)):
//! the single-group simulator's scenarios (`crate::engine`'s `lease`),
//! aimed at a node and the groups it leads rather than at one group's
//! leader, and with the layer's own hazard added: a leader that sleeps
//! (quiesced, its node not ticked) and wakes while another node may have
//! won an election in its group.
//!
//! The node aimed at is the one leading the most sleeping groups (the
//! node leading the most groups if none sleeps). Each scenario, undone
//! `length_ns` after it strikes (or at the heal):
//!
//! | scenario | in a multi-group run |
//! | --- | --- |
//! | Isolate, ForwardedAnswerHeld | the node is cut off from every other node; its followers take it for dead, wake its groups to elect, and clients go to the new leaders, while the nemesis reads at it (its sleeping groups wake for the reads) |
//! | SkewAtBound | the clocks at the edge of the declared drift bound (the node's slowest, the others' fastest), then as Isolate |
//! | PauseAtExpiry | the node is cut off and stalled for one to three ticks short of a minimum election timeout; it resumes with its missed ticks back to back, then the reads |
//! | Transfer, TransferGivenUp, TransferRetried | the node is asked to hand up to four groups it leads to a caught-up voter; for the last two the targets' nodes go unheard (one way), so the transfers are given up, and TransferRetried asks again after the first give-up |
//! | RestartAfterAnswer | the node is cut off from a minority of the other nodes; once another node sends it a frame with heartbeat answers, that node crashes right after and restarts one to three ticks later, and the node aimed at is cut off from every other |
//!
//! Throughout, every millisecond, the nemesis reads on the lease path in
//! up to four of the groups the node led when the scenario armed (probe
//! reads, answered to no client, judged by `read-fresh` at the read),
//! and the step rules judge every group's steps (`lease-promise`,
//! `vote-hold`: `rules.rs`).

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::multi::{GroupId, GroupSleep, MultiInput};
use concord::{Input, NodeId, ReadPath, Role};

use crate::faults::{FaultKind, LeaseScenario, Partition};

use super::engine::{Event, HostRead, MultiSim, MS};

/// How often an armed scenario reads on its own.
const PROBE_READ_NS: u64 = MS;

/// Groups a scenario aims at (transfers asked, groups read).
const GROUPS_AIMED_MAX: usize = 4;

/// Timed steps of a multi-group lease scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseStep {
    /// Read in the aimed groups.
    ProbeRead,
    /// Ask the transfers again (TransferRetried).
    Retry,
    /// Undo everything.
    Undo,
}

/// An armed scenario.
#[derive(Clone, Debug)]
struct Armed {
    /// The node aimed at.
    node: usize,
    incarnation: u64,
    /// The groups it led when the scenario armed.
    groups: Vec<GroupId>,
    /// RestartAfterAnswer: the node to crash once it answers.
    follower: Option<usize>,
    /// Probe reads so far (which group is read next).
    reads: u64,
    /// When this arming is undone (an undo scheduled for an earlier one
    /// is not this one's).
    undo_ns: u64,
}

/// The lease nemeses of one multi-group run.
pub(crate) struct MultiLease {
    /// Its own stream, so that the other draws of a seed stay as they were.
    rng: ChaCha8Rng,
    armed: Option<Armed>,
    /// Tick periods before the clocks were set at the drift bound.
    pinned: Option<Vec<u64>>,
    /// A read command of the workload (the first a client sent).
    read_command: Option<Bytes>,
    /// Probe reads asked for.
    pub(crate) probe_reads: u64,
    /// A probe read is scheduled.
    probe_scheduled: bool,
}

impl MultiLease {
    pub(crate) fn new(seed: u64) -> MultiLease {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d6c_6561_7365_0061);
        rng.set_stream(61);
        MultiLease {
            rng,
            armed: None,
            pinned: None,
            read_command: None,
            probe_reads: 0,
            probe_scheduled: false,
        }
    }

    /// A client asked for `command`, a read: kept for the probe reads.
    pub(crate) fn note_read_command(&mut self, command: &Bytes) {
        if self.read_command.is_none() {
            self.read_command = Some(command.clone());
        }
    }

    /// RestartAfterAnswer waits for node `from` to send node `to` a frame
    /// with heartbeat answers: whether this is it.
    pub(crate) fn awaits_answer(&self, from: usize, to: usize) -> bool {
        self.armed
            .as_ref()
            .is_some_and(|armed| armed.follower == Some(from) && armed.node == to)
    }
}

impl MultiSim {
    /// The node leading the most sleeping groups (the most groups if none
    /// sleeps; ties to the lowest id), if any leads.
    fn lease_aim(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (index, host) in self.hosts.iter().enumerate() {
            let Some(multi) = &host.multi else { continue };
            if host.paused {
                continue;
            }
            let sleeping = multi
                .groups()
                .filter(|(group, node)| {
                    node.role() == Role::Leader
                        && multi.sleep_state(*group) == Some(GroupSleep::Leading)
                })
                .count();
            if sleeping > 0 && best.is_none_or(|(_, most)| sleeping > most) {
                best = Some((index, sleeping));
            }
        }
        best.map(|(index, _)| index).or_else(|| self.top_leader())
    }

    /// Arms (and strikes) a lease scenario.
    pub(crate) fn lease_fault(&mut self, scenario: LeaseScenario, length_ns: u64) {
        if self.lease.armed.is_some() {
            self.note(None, || format!("lease nemesis busy, skipped: {scenario}"));
            return;
        }
        let Some(node) = self.lease_aim() else {
            return;
        };
        let Some(multi) = &self.hosts[node].multi else {
            return;
        };
        let groups: Vec<GroupId> = multi
            .groups()
            .filter(|(_, group_node)| group_node.role() == Role::Leader)
            .map(|(group, _)| group)
            .collect();
        if groups.is_empty() {
            return;
        }
        let start = self.lease.rng.gen_range(0..groups.len());
        let aimed: Vec<GroupId> = groups
            .iter()
            .cycle()
            .skip(start)
            .take(GROUPS_AIMED_MAX.min(groups.len()))
            .copied()
            .collect();
        let incarnation = self.hosts[node].incarnation;
        self.faults.add(FaultKind::Lease, 1);
        self.note(Some(node), || {
            format!("lease nemesis: {scenario}, groups {aimed:?}")
        });
        let mut follower = None;
        match scenario {
            LeaseScenario::Isolate | LeaseScenario::ForwardedAnswerHeld => self.lease_cut_off(node),
            LeaseScenario::SkewAtBound => {
                self.lease_pin_clocks(node);
                self.lease_cut_off(node);
            }
            LeaseScenario::PauseAtExpiry => {
                self.lease_cut_off(node);
                let timeout_ticks = self.lease_election_timeout_ticks(node, &aimed);
                let ticks = timeout_ticks
                    .saturating_sub(self.lease.rng.gen_range(1..=3))
                    .max(1);
                let stall_ns = ticks * self.hosts[node].tick_period_ns;
                self.pause(node);
                let generation = self.hosts[node].pause_generation;
                self.note(Some(node), || format!("lease: stalled for {ticks} ticks"));
                self.schedule(stall_ns, Event::StallEnd { node, generation });
            }
            LeaseScenario::Transfer
            | LeaseScenario::TransferGivenUp
            | LeaseScenario::TransferRetried => {
                let targets = self.lease_transfer(node, &aimed);
                if scenario != LeaseScenario::Transfer {
                    for target in targets {
                        self.blocked[target] |= 1 << node;
                    }
                    self.partition_generation += 1;
                }
                if scenario == LeaseScenario::TransferRetried {
                    let timeout_ticks = self.lease_election_timeout_ticks(node, &aimed);
                    let retry_ns = (2 * timeout_ticks + 2) * self.hosts[node].tick_period_ns;
                    self.schedule(retry_ns, Event::Lease(LeaseStep::Retry));
                }
            }
            LeaseScenario::RestartAfterAnswer => {
                let nodes = self.hosts.len();
                let others: Vec<usize> = (0..nodes)
                    .filter(|other| *other != node && self.hosts[*other].multi.is_some())
                    .collect();
                let cut = nodes - (nodes / 2 + 1);
                if others.len() < cut + 1 || cut == 0 {
                    return;
                }
                let pick = self.lease.rng.gen_range(0..others.len());
                follower = Some(others[pick]);
                let minority: Vec<usize> = others
                    .iter()
                    .copied()
                    .filter(|other| Some(*other) != follower)
                    .take(cut)
                    .collect();
                for other in &minority {
                    self.blocked[node] |= 1 << other;
                    self.blocked[*other] |= 1 << node;
                }
                self.partition_generation += 1;
                self.note(Some(node), || {
                    format!("lease: cut off from the minority {minority:?} (node indices)")
                });
            }
        }
        self.lease.armed = Some(Armed {
            node,
            incarnation,
            groups: aimed,
            follower,
            reads: 0,
            undo_ns: self.now_ns + length_ns,
        });
        if !self.lease.probe_scheduled {
            self.lease.probe_scheduled = true;
            self.schedule(PROBE_READ_NS, Event::Lease(LeaseStep::ProbeRead));
        }
        self.schedule(length_ns, Event::Lease(LeaseStep::Undo));
    }

    /// The minimum election timeout of the first of `groups` on `node`.
    fn lease_election_timeout_ticks(&self, node: usize, groups: &[GroupId]) -> u64 {
        groups
            .first()
            .and_then(|group| self.hosts[node].multi.as_ref()?.group(*group))
            .map_or(10, |group_node| {
                u64::from(group_node.config().election_timeout_min_ticks)
            })
    }

    /// Node `node` is cut off from every other node.
    fn lease_cut_off(&mut self, node: usize) {
        let partition = Partition::Split {
            side: vec![node as NodeId + 1],
        };
        self.blocked = partition.blocked_matrix(self.hosts.len());
        self.partition_generation += 1;
        self.note(Some(node), || format!("lease: {partition}"));
    }

    /// Every clock at the edge of the declared drift bound: node `node`'s
    /// slowest, the others' fastest.
    fn lease_pin_clocks(&mut self, node: usize) {
        if self.lease.pinned.is_some() {
            return;
        }
        let rho = self.config.max_skew_ppm.clamp(0, 899_999) as u64;
        let tick_ns = self.config.tick_ns;
        let slow = tick_ns * (1_000_000 + rho) / 1_000_000;
        let fast = (tick_ns * (1_000_000 - rho) / 1_000_000).max(1);
        self.lease.pinned = Some(self.hosts.iter().map(|host| host.tick_period_ns).collect());
        for (index, host) in self.hosts.iter_mut().enumerate() {
            host.tick_period_ns = if index == node { slow } else { fast };
        }
    }

    /// Asks node `node` to hand each of `groups` it still leads to a
    /// caught-up voter; the target nodes, by index.
    fn lease_transfer(&mut self, node: usize, groups: &[GroupId]) -> Vec<usize> {
        let mut targets = Vec::new();
        for &group in groups {
            let Some(group_node) = self.hosts[node]
                .multi
                .as_ref()
                .and_then(|multi| multi.group(group))
            else {
                continue;
            };
            if group_node.role() != Role::Leader {
                continue;
            }
            let (me, last) = (group_node.id(), group_node.last_index());
            let membership = group_node.membership();
            let candidates: Vec<NodeId> = group_node
                .progress_all()
                .filter(|(id, view)| {
                    *id != me
                        && membership.voters.contains(id)
                        && !membership.is_witness(*id)
                        && view.recently_active
                        && view.match_index == last
                })
                .map(|(id, _)| id)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let target = candidates[self.lease.rng.gen_range(0..candidates.len())];
            targets.push(target as usize - 1);
            let input = MultiInput::Group {
                group,
                input: Input::TransferLeadership(target),
            };
            self.step_node(node, input, None);
            if self.failure.is_some() {
                break;
            }
        }
        targets
    }

    /// A frame with heartbeat answers went from `from` to `to`: if
    /// RestartAfterAnswer waited for it, `from` crashes right after its
    /// step and restarts one to three ticks later, and `to` is cut off.
    pub(crate) fn lease_on_answer_frame(&mut self, from: usize, to: usize) {
        if !self.lease.awaits_answer(from, to) {
            return;
        }
        if let Some(armed) = self.lease.armed.as_mut() {
            armed.follower = None;
        }
        let ticks = self.lease.rng.gen_range(1..=3);
        let down_ns = (ticks * self.hosts[from].tick_period_ns).max(1);
        self.note(Some(from), || {
            "lease: crashes right after answering the leader's heartbeats".to_string()
        });
        self.crash_after_step = Some((from, down_ns));
        self.lease_cut_off(to);
    }

    /// A timed step of the armed scenario.
    pub(crate) fn lease_step(&mut self, step: LeaseStep) {
        if step == LeaseStep::ProbeRead {
            self.lease.probe_scheduled = false;
        }
        if self.phase != super::engine::Phase::Chaos {
            return;
        }
        let Some(armed) = self.lease.armed.clone() else {
            return;
        };
        match step {
            LeaseStep::ProbeRead => {
                self.lease_probe_read(&armed);
                if let Some(armed) = self.lease.armed.as_mut() {
                    armed.reads += 1;
                }
                if self.lease.armed.is_some() && !self.lease.probe_scheduled {
                    self.lease.probe_scheduled = true;
                    self.schedule(PROBE_READ_NS, Event::Lease(LeaseStep::ProbeRead));
                }
            }
            LeaseStep::Retry => {
                if self.hosts[armed.node].incarnation == armed.incarnation {
                    self.note(Some(armed.node), || {
                        "lease: the transfers asked again".to_string()
                    });
                    let targets = self.lease_transfer(armed.node, &armed.groups);
                    for target in targets {
                        self.blocked[target] |= 1 << armed.node;
                    }
                }
            }
            LeaseStep::Undo => {
                if self.now_ns >= armed.undo_ns {
                    self.lease_undo();
                }
            }
        }
    }

    /// A lease read in the next of the aimed groups, at the aimed node.
    fn lease_probe_read(&mut self, armed: &Armed) {
        let Some(command) = self.lease.read_command.clone() else {
            return;
        };
        let host = &self.hosts[armed.node];
        if host.incarnation != armed.incarnation || host.multi.is_none() || armed.groups.is_empty()
        {
            return;
        }
        let group = armed.groups[armed.reads as usize % armed.groups.len()];
        let committed_when_asked = self.committed_anywhere(group);
        if self.hosts[armed.node].paused || !self.hosts_group(armed.node, group) {
            return;
        }
        let host = &mut self.hosts[armed.node];
        host.next_read_id += 1;
        let id = host.next_read_id;
        host.reads.insert(
            id,
            HostRead {
                group,
                client: None,
                command,
                asked_ns: self.now_ns,
                committed_when_asked,
            },
        );
        self.lease.probe_reads += 1;
        let input = MultiInput::Group {
            group,
            input: Input::Read {
                id,
                path: ReadPath::Lease,
            },
        };
        self.step_node(armed.node, input, None);
    }

    /// Undoes the armed scenario: the network healed, the clocks back.
    pub(crate) fn lease_undo(&mut self) {
        if self.lease.armed.take().is_none() {
            return;
        }
        self.note(None, || "lease: undone, network healed".to_string());
        self.lease_unpin_clocks();
        self.heal_network();
    }

    /// The clocks back at their own rates.
    fn lease_unpin_clocks(&mut self) {
        if let Some(periods) = self.lease.pinned.take() {
            for (host, period) in self.hosts.iter_mut().zip(periods) {
                host.tick_period_ns = period;
            }
        }
    }

    /// Everything stops at the heal.
    pub(crate) fn lease_heal(&mut self) {
        self.lease.armed = None;
        self.lease.pinned = None;
    }
}
