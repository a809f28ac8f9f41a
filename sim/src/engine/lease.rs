//! The lease nemeses ([`Fault::Lease`](crate::faults::Fault::Lease)):
//! schedules aimed at the moments a leader lease is most likely to be
//! wrong, which random faults reach rarely.
//!
//! A lease read is served by a leader from its own state, without a round
//! trip, because a quorum answered a heartbeat round it sent recently and
//! each of those followers refuses to vote for anyone else for an
//! election timeout of its own clock after the heartbeat arrived. A
//! stale lease read needs a new leader elected and a write acknowledged
//! by it while the old leader still believes its lease, and a client that
//! reads at the old leader after that write. Each scenario arranges that:
//!
//! * **Isolate**: at the leader's first step that takes a heartbeat
//!   answer (a lease just renewed), and shortly after (so the other
//!   answers of the round arrive), the leader is cut off from every other
//!   server; clients still reach it.
//! * **SkewAtBound**: every clock runs at the edge of the declared drift
//!   bound, the leader's slowest (`tick × (1 + ρ)`) and every other
//!   node's fastest (`tick × (1 − ρ)`, ρ = `--max-skew-ppm`), the worst
//!   case the bound the nodes declare (`ReadOptions::apply`) must cover;
//!   then as Isolate.
//! * **PauseAtExpiry**: the clocks are set at the drift bound as in
//!   SkewAtBound; the leader is paused right after a step that sends a
//!   heartbeat round, so the round's answers queue up behind the pause; a
//!   few milliseconds later it is cut off from the other servers; it
//!   resumes one to three ticks short of a minimum election timeout (past
//!   its lease, before its CheckQuorum would depose it), seeing its missed
//!   ticks first, then the answers, then the clients' reads that queued
//!   meanwhile.
//! * **Transfer**: the host asks the leader to hand leadership to a
//!   caught-up voter; from the step that sends the target TimeoutNow on,
//!   the leader hears no other server (its own messages still go out),
//!   so it never learns that the target won; clients still reach it.
//! * **TransferGivenUp**: as Transfer, but only the target goes unheard
//!   (and the target's vote requests, which set the voters' stickiness
//!   aside, are held back): the leader gives the transfer up, leads on and
//!   a quorum answers a new heartbeat round; then the leader is cut off,
//!   and the target's held vote requests are delivered.
//!
//! In each, as the leader is cut off, half the clients waiting on it give
//! up at once and retry at a random server (a client may time out at any
//! moment), so writes reach the new leader while the others keep reading
//! at the old one. Everything is undone (network healed, clocks back to
//! their rates) `length_ns` after the strike, or at the heal.
//!
//! All of it is within the fault model: partitions, message delays,
//! clock rates within the declared bound, a process pause after which the
//! host delivers the ticks it missed before anything else (the contract
//! of `Config::lease_read_ticks`), and a host asking for a transfer.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Action, Input, Message, MessageBody, NodeId, Role, Term, TransferOutcome};

use super::{Event, Simulation, MS};
use crate::faults::{LeaseScenario, Partition};
use crate::workload::Workload;

/// How long an armed scenario waits for its moment before it gives up.
const ARMED_MAX_NS: u64 = 2_000 * MS;

/// After the trigger, how long until the strike: the other answers of the
/// same heartbeat round arrive meanwhile (base delays are under 1 ms).
const STRIKE_DELAY_NS: u64 = 1_500_000;

/// How long after a pause the paused leader is cut off: its heartbeat
/// round's answers have arrived (and queued) by then.
const PAUSE_CUT_DELAY_NS: u64 = 3 * MS;

/// Most vote requests held back at once.
const HELD_MAX: usize = 64;

/// Timed steps of a lease scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseStep {
    /// Cut the leader off and send clients elsewhere (and, after a given-up
    /// transfer, deliver the held vote requests).
    Strike,
    /// Cut the paused leader off from the other servers.
    CutPaused,
    /// Resume the paused leader.
    Resume,
    /// Undo everything.
    Undo,
}

impl LeaseStep {
    pub(super) fn code(self) -> u64 {
        self as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a step of the leader that takes a heartbeat answer.
    AwaitAnswer,
    /// Waiting for a step of the leader that sends a heartbeat round.
    AwaitRound,
    /// Waiting for the leader to send the target TimeoutNow.
    AwaitTimeoutNow,
    /// Waiting for the leader to give the transfer up.
    AwaitGiveUp,
    /// Waiting for an answer to a heartbeat round sent after the give-up
    /// (the first such round, and those after it).
    AwaitConfirm { round_min: Option<u64> },
    /// Struck; waiting for the undo.
    Struck,
}

#[derive(Clone, Copy, Debug)]
struct Armed {
    scenario: LeaseScenario,
    length_ns: u64,
    leader: usize,
    term: Term,
    incarnation: u32,
    target: Option<usize>,
    phase: Phase,
    armed_ns: u64,
}

/// The lease nemeses of one run.
pub(super) struct LeaseNemesis {
    /// Its own stream, so that the other draws of a seed stay as they were.
    rng: ChaCha8Rng,
    armed: Option<Armed>,
    /// Tick periods before the clocks were set at the drift bound.
    pinned: Option<Vec<u64>>,
    /// Vote requests held back (message slots), with their receivers.
    held: Vec<(u32, usize)>,
}

impl LeaseNemesis {
    pub(super) fn new(seed: u64) -> LeaseNemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c65_6173_6500_0036);
        rng.set_stream(41);
        LeaseNemesis {
            rng,
            armed: None,
            pinned: None,
            held: Vec::new(),
        }
    }

    /// Whether a step of node `index` must be shown to the nemesis.
    #[inline]
    pub(super) fn watches(&self, index: usize) -> bool {
        self.armed
            .is_some_and(|armed| armed.leader == index && !matches!(armed.phase, Phase::Struck))
    }
}

/// What the step just taken calls for, once its actions ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseStrike {
    None,
    /// Strike after [`STRIKE_DELAY_NS`].
    StrikeSoon,
    /// Pause the leader now.
    Pause,
    /// The target was sent TimeoutNow: cut the leader off as the scenario
    /// says.
    TimeoutNowSent,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Arms (or, for the transfers, starts) a lease scenario.
    pub(super) fn lease_fault(&mut self, scenario: LeaseScenario, length_ns: u64) {
        if self.lease.armed.is_some() {
            self.note(None, || format!("lease nemesis busy, skipped: {scenario}"));
            return;
        }
        let Some(leader) = self.current_leader() else {
            return;
        };
        let host = &self.hosts[leader];
        if host.paused {
            return;
        }
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let term = node.term();
        let incarnation = host.incarnation;
        let phase = match scenario {
            LeaseScenario::Isolate | LeaseScenario::SkewAtBound => Phase::AwaitAnswer,
            LeaseScenario::PauseAtExpiry => Phase::AwaitRound,
            LeaseScenario::Transfer | LeaseScenario::TransferGivenUp => Phase::AwaitTimeoutNow,
        };
        let target = match scenario {
            LeaseScenario::Transfer | LeaseScenario::TransferGivenUp => {
                let me = node.id();
                let last = node.last_index();
                let membership = node.membership();
                let candidates: Vec<NodeId> = node
                    .progress_all()
                    .filter(|(id, view)| {
                        *id != me
                            && membership.voters.contains(id)
                            && !membership.is_witness(*id)
                            && view.recently_active
                            && view.match_index == last
                    })
                    .map(|(id, _)| id)
                    .filter(|id| {
                        let peer = &self.hosts[*id as usize - 1];
                        peer.node.is_some() && !peer.paused
                    })
                    .collect();
                if candidates.is_empty() {
                    return;
                }
                let pick = self.lease.rng.gen_range(0..candidates.len());
                Some(candidates[pick] as usize - 1)
            }
            _ => None,
        };
        self.lease.armed = Some(Armed {
            scenario,
            length_ns,
            leader,
            term,
            incarnation,
            target,
            phase,
            armed_ns: self.now,
        });
        self.note(Some(leader), || format!("lease nemesis armed: {scenario}"));
        if matches!(
            scenario,
            LeaseScenario::SkewAtBound | LeaseScenario::PauseAtExpiry
        ) {
            self.pin_clocks_at_bound(leader);
        }
        if let Some(target) = target {
            self.step(
                leader,
                Input::TransferLeadership(target as NodeId + 1),
                None,
            );
        }
    }

    /// The clocks at the edge of the declared drift bound: the leader's
    /// slowest, every other node's fastest.
    fn pin_clocks_at_bound(&mut self, leader: usize) {
        if self.lease.pinned.is_some() {
            return;
        }
        let rho = self.config.max_skew_ppm.clamp(0, 899_999) as u64;
        let tick_ns = self.config.tick_ns;
        let slow = tick_ns * (1_000_000 + rho) / 1_000_000;
        let fast = (tick_ns * (1_000_000 - rho) / 1_000_000).max(1);
        let periods = self.hosts.iter().map(|host| host.tick_period_ns).collect();
        self.lease.pinned = Some(periods);
        for (index, host) in self.hosts.iter_mut().enumerate() {
            host.tick_period_ns = if index == leader { slow } else { fast };
        }
        // A cut-off leader's CheckQuorum deadline counts its ticks: set
        // again at the new rates.
        self.network_changed();
        self.note(Some(leader), || {
            format!("lease: clocks at the drift bound, the leader's tick {slow} ns, the others' {fast} ns")
        });
    }

    /// Shown a step of the armed leader (`heard_answer`: it took a
    /// heartbeat answer; `actions`: what it emitted): what to do once the
    /// actions ran.
    pub(super) fn lease_after_step(
        &mut self,
        index: usize,
        heard_answer: bool,
        actions: &[Action],
    ) -> LeaseStrike {
        let Some(mut armed) = self.lease.armed else {
            return LeaseStrike::None;
        };
        let host = &self.hosts[index];
        let leads = host.incarnation == armed.incarnation
            && host
                .node
                .as_ref()
                .is_some_and(|node| node.role() == Role::Leader && node.term() == armed.term);
        if !leads || self.now > armed.armed_ns + ARMED_MAX_NS {
            self.lease_disarm("the leader is gone, or its moment never came");
            return LeaseStrike::None;
        }
        let rounds_sent = || {
            actions.iter().filter_map(|action| match action {
                Action::Send {
                    message:
                        Message {
                            body: MessageBody::Heartbeat { read_round, .. },
                            ..
                        },
                    ..
                } if *read_round > 0 => Some(*read_round),
                _ => None,
            })
        };
        let confirming = matches!(armed.phase, Phase::AwaitConfirm { .. });
        let strike = match armed.phase {
            Phase::AwaitAnswer if heard_answer => {
                armed.phase = Phase::Struck;
                LeaseStrike::StrikeSoon
            }
            Phase::AwaitRound if rounds_sent().next().is_some() => {
                armed.phase = Phase::Struck;
                LeaseStrike::Pause
            }
            Phase::AwaitTimeoutNow => {
                let refused = actions.iter().any(|action| {
                    matches!(
                        action,
                        Action::Transfer {
                            outcome: TransferOutcome::Refused(_),
                            ..
                        }
                    )
                });
                if refused {
                    self.lease_disarm("the transfer was refused");
                    return LeaseStrike::None;
                }
                let target = armed.target.map(|target| target as NodeId + 1);
                let timeout_now = actions.iter().any(|action| {
                    matches!(action, Action::Send { to, message } if Some(*to) == target
                        && matches!(message.body, MessageBody::TimeoutNow))
                });
                if !timeout_now {
                    LeaseStrike::None
                } else {
                    armed.phase = match armed.scenario {
                        LeaseScenario::TransferGivenUp => Phase::AwaitGiveUp,
                        _ => Phase::Struck,
                    };
                    LeaseStrike::TimeoutNowSent
                }
            }
            Phase::AwaitGiveUp => {
                let given_up = actions.iter().any(|action| {
                    matches!(
                        action,
                        Action::Transfer {
                            outcome: TransferOutcome::TimedOut,
                            ..
                        }
                    )
                });
                if given_up {
                    // A round sent in this very step may have gone out
                    // before the give-up, and grant no lease: only rounds
                    // of later steps count.
                    armed.phase = Phase::AwaitConfirm { round_min: None };
                }
                LeaseStrike::None
            }
            Phase::AwaitConfirm { round_min } => {
                if heard_answer && round_min.is_some() {
                    armed.phase = Phase::Struck;
                    LeaseStrike::StrikeSoon
                } else {
                    LeaseStrike::None
                }
            }
            _ => LeaseStrike::None,
        };
        if let (true, Phase::AwaitConfirm { round_min: None }) = (confirming, armed.phase) {
            if let Some(round) = rounds_sent().min() {
                armed.phase = Phase::AwaitConfirm {
                    round_min: Some(round),
                };
            }
        }
        self.lease.armed = Some(armed);
        strike
    }

    /// Whether the heartbeat answer `message` (to the armed leader) is one
    /// the scenario waits for: after a given-up transfer, only answers to
    /// rounds sent after the give-up count.
    pub(super) fn lease_answer_counts(&self, message: &Message) -> bool {
        let Some(armed) = self.lease.armed else {
            return false;
        };
        let MessageBody::HeartbeatResponse { read_round } = message.body else {
            return false;
        };
        match armed.phase {
            Phase::AwaitConfirm { round_min } => round_min.is_some_and(|min| read_round >= min),
            _ => true,
        }
    }

    /// Carries out what [`Simulation::lease_after_step`] decided, once the
    /// step's actions ran.
    pub(super) fn lease_strike(&mut self, index: usize, strike: LeaseStrike) {
        let Some(armed) = self.lease.armed else {
            return;
        };
        match strike {
            LeaseStrike::None => {}
            LeaseStrike::StrikeSoon => {
                self.schedule(STRIKE_DELAY_NS, Event::Lease(LeaseStep::Strike));
            }
            LeaseStrike::Pause => {
                // Resumed around the end of its lease: past the lease, and
                // short of a minimum election timeout (so that its
                // CheckQuorum may not yet have deposed it when it takes the
                // answers).
                let Some(config) = self.hosts[index]
                    .node
                    .as_ref()
                    .map(|node| node.config().clone())
                else {
                    return;
                };
                // The later it resumes, the longer a lease counted from the
                // answers lasts past the followers' refusal to vote; one
                // to three ticks short of a minimum election timeout.
                let min = u64::from(config.election_timeout_min_ticks).max(4);
                let ticks = min - self.lease.rng.gen_range(1..=3);
                let host = &mut self.hosts[index];
                let pause_ns = ticks * host.tick_period_ns;
                host.paused = true;
                host.pauses += 1;
                self.note(Some(index), || {
                    format!(
                        "lease: paused right after sending a heartbeat round, for {ticks} ticks"
                    )
                });
                self.retarget_clients(index);
                self.schedule(PAUSE_CUT_DELAY_NS, Event::Lease(LeaseStep::CutPaused));
                self.schedule(pause_ns, Event::Lease(LeaseStep::Resume));
                self.schedule(pause_ns + armed.length_ns, Event::Lease(LeaseStep::Undo));
            }
            LeaseStrike::TimeoutNowSent => {
                let leader = armed.leader as NodeId + 1;
                let target = armed.target.map_or(0, |target| target as NodeId + 1);
                let from: Vec<NodeId> = match armed.scenario {
                    LeaseScenario::TransferGivenUp => vec![target],
                    _ => (1..=self.hosts.len() as NodeId)
                        .filter(|id| *id != leader)
                        .collect(),
                };
                let partition = Partition::OneWay {
                    from,
                    to: vec![leader],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(Some(index), || {
                    format!("lease: TimeoutNow sent; network: {partition}")
                });
                self.network_changed();
                if armed.scenario == LeaseScenario::Transfer {
                    self.retarget_clients(index);
                    self.schedule(armed.length_ns, Event::Lease(LeaseStep::Undo));
                } else {
                    // Undone by the strike's own schedule, or here if the
                    // leader never gives up and confirms.
                    self.schedule(ARMED_MAX_NS, Event::Lease(LeaseStep::Undo));
                }
            }
        }
    }

    /// A timed step of the armed scenario.
    pub(super) fn lease_step(&mut self, step: LeaseStep) {
        let Some(armed) = self.lease.armed else {
            return;
        };
        if self.healed {
            return;
        }
        let leader = armed.leader;
        match step {
            LeaseStep::Strike => {
                if self.hosts[leader].incarnation != armed.incarnation
                    || self.hosts[leader].node.is_none()
                {
                    self.lease_disarm("the leader crashed before the strike");
                    return;
                }
                let partition = Partition::Split {
                    side: vec![leader as NodeId + 1],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(Some(leader), || {
                    format!("lease: {}; network: {partition}", armed.scenario)
                });
                self.network_changed();
                self.retarget_clients(leader);
                self.release_held_votes();
                self.schedule(armed.length_ns, Event::Lease(LeaseStep::Undo));
            }
            LeaseStep::CutPaused => {
                let partition = Partition::Split {
                    side: vec![leader as NodeId + 1],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(Some(leader), || format!("lease: network: {partition}"));
                self.network_changed();
            }
            LeaseStep::Resume => {
                if self.hosts[leader].incarnation == armed.incarnation {
                    self.note(Some(leader), || "lease: resumed".to_string());
                    self.resume(leader);
                }
            }
            LeaseStep::Undo => self.lease_undo(),
        }
    }

    /// Half the clients waiting on node `index` give up and retry at a
    /// random server; half of those that believe it leads forget it.
    fn retarget_clients(&mut self, index: usize) {
        let id = index as NodeId + 1;
        for client in 0..self.clients.len() {
            let state = &self.clients[client];
            let waiting =
                state.op.as_ref().is_some_and(|op| !op.register) && state.last_target == id;
            let believes = state.op.is_none() && state.leader == Some(id);
            if !(waiting || believes) || !self.lease.rng.gen_bool(0.5) {
                continue;
            }
            if waiting {
                let attempt = self.clients[client].attempt;
                self.client_timeout(client, attempt);
            } else {
                self.clients[client].leader = None;
            }
        }
    }

    /// Node `index` just became leader: while a struck scenario keeps the
    /// old leader cut off, half the clients waiting on the old leader give
    /// up on it and retry at the new one (as clients that time out and
    /// find the leader would), and half of those that believe the old
    /// leader leads learn of the new one, so that writes reach the new
    /// leader while the old one may still serve reads.
    pub(super) fn lease_on_new_leader(&mut self, index: usize) {
        let Some(armed) = self.lease.armed else {
            return;
        };
        if armed.phase != Phase::Struck || armed.leader == index {
            return;
        }
        let (old, new) = (armed.leader as NodeId + 1, index as NodeId + 1);
        for client in 0..self.clients.len() {
            let state = &self.clients[client];
            let waiting =
                state.op.as_ref().is_some_and(|op| !op.register) && state.last_target == old;
            let believes = state.op.is_none() && state.leader == Some(old);
            if !(waiting || believes) || !self.lease.rng.gen_bool(0.5) {
                continue;
            }
            self.clients[client].leader = Some(new);
            if waiting {
                if let Some(op) = self.clients[client].op.as_mut() {
                    op.maybe_applied = true;
                }
                self.client_retry(client);
            }
        }
    }

    /// Holds back `message` (from node `from` to node `to`) if it is a
    /// vote request of a transfer the armed TransferGivenUp scenario
    /// watches. Returns whether it was held.
    pub(super) fn lease_hold(&mut self, from: usize, to: usize, message: &Message) -> bool {
        let Some(armed) = self.lease.armed else {
            return false;
        };
        let holding = armed.scenario == LeaseScenario::TransferGivenUp
            && armed.target == Some(from)
            && matches!(armed.phase, Phase::AwaitGiveUp | Phase::AwaitConfirm { .. })
            && matches!(
                message.body,
                MessageBody::RequestVote {
                    pre_vote: false,
                    transfer: true,
                    ..
                }
            );
        if !holding || self.lease.held.len() >= HELD_MAX {
            return false;
        }
        let slot = self.messages.insert(message.clone());
        self.lease.held.push((slot, to));
        true
    }

    /// Delivers the held vote requests (within a base delay).
    fn release_held_votes(&mut self) {
        let held = std::mem::take(&mut self.lease.held);
        if !held.is_empty() {
            self.note(None, || {
                format!(
                    "lease: {} held transfer vote requests delivered",
                    held.len()
                )
            });
        }
        for (slot, _) in held {
            let delay = super::network::MESSAGE_DELAY_MIN_NS;
            self.schedule(delay, Event::Deliver { slot });
        }
    }

    fn lease_disarm(&mut self, why: &str) {
        if self.lease.armed.take().is_some() {
            self.note(None, || format!("lease nemesis disarmed: {why}"));
        }
        self.lease_undo_clocks();
        self.release_held_votes();
    }

    /// Undoes a struck scenario: network healed, clocks back, the paused
    /// leader resumed, held messages delivered.
    fn lease_undo(&mut self) {
        let Some(armed) = self.lease.armed.take() else {
            return;
        };
        if self.hosts[armed.leader].incarnation == armed.incarnation
            && self.hosts[armed.leader].paused
            && armed.scenario == LeaseScenario::PauseAtExpiry
        {
            self.resume(armed.leader);
        }
        self.release_held_votes();
        self.lease_undo_clocks();
        self.blocked = [0; 8];
        self.note(None, || "lease: undone, network healed".to_string());
        self.network_changed();
    }

    /// The clocks back at their own rates.
    pub(super) fn lease_undo_clocks(&mut self) {
        if let Some(periods) = self.lease.pinned.take() {
            for (host, period) in self.hosts.iter_mut().zip(periods) {
                host.tick_period_ns = period;
            }
            self.network_changed();
        }
    }

    /// Everything stops at the heal.
    pub(super) fn lease_heal(&mut self) {
        self.lease.armed = None;
        self.lease_undo_clocks();
        self.release_held_votes();
    }
}
