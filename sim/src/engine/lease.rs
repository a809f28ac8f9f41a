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
//! * **TransferRetried**: as TransferGivenUp, but once the leader gave the
//!   transfer up the host asks it again (to another caught-up voter when
//!   there is one), and that one is given up too before the strike: a
//!   lease that came back after a given-up transfer, or that counted a
//!   round from before it, is served in the window.
//! * **RestartAfterAnswer**: the leader is cut off from a minority of the
//!   followers (with one more vote they elect a leader); a few ticks short
//!   of their election timeout, the nemesis waits for another follower to
//!   answer the leader's heartbeat, crashes it right after (the answer
//!   goes out), restarts it one to three ticks later, and cuts the leader
//!   off from every server. The restarted follower must refuse votes for
//!   the rest of the election timeout it promised, or the minority's
//!   candidate wins inside the leader's lease.
//! * **ForwardedAnswerHeld** (reads forwarded by a follower, not leases):
//!   the leader's next read-index answer to a follower is held in the
//!   network for 3 to 15 ms while the leader commits a write (a host
//!   entry, in seeds with them; the clients' writes otherwise), then
//!   delivered; the nemesis reads at that follower throughout and right
//!   after the answer arrives, so a read served at an index confirmed
//!   before it arrived is served stale.
//!
//! Every scenario also reads on its own while it is armed (probe reads,
//! answered to no client, judged by `read-fresh` at the read itself; see
//! `fresh`): every millisecond at the leader it aims at on the lease path
//! (and at any newer leader once one is elected, whose first lease reads
//! come before or after an entry of its term commits), at the follower on
//! the follower path for ForwardedAnswerHeld.
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
use concord::{Action, Input, Message, MessageBody, NodeId, ReadPath, Role, Term, TransferOutcome};

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

/// How often an armed scenario reads on its own.
const PROBE_READ_NS: u64 = MS;

/// After a given-up transfer, how long until the host asks again.
const RETRY_DELAY_NS: u64 = 2 * MS;

/// How often the nemesis reads at a newly elected leader whose appends
/// it delays.
const NEW_LEADER_PROBE_NS: u64 = 200_000;

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
    /// Read on the scenario's path (probe reads, `fresh`).
    ProbeRead,
    /// Ask the leader for the transfer again (TransferRetried).
    Retry,
    /// Start waiting for the follower's heartbeat answer
    /// (RestartAfterAnswer).
    AwaitAnswerOf,
    /// Deliver the held read-index answer (ForwardedAnswerHeld).
    DeliverAnswer,
    /// The leader proposes a write while the answer is held
    /// (ForwardedAnswerHeld).
    Write,
    /// Read at the newly elected leader on the lease path.
    ProbeNewLeader,
    /// Deliver the vote requests held for the restarted follower
    /// (RestartAfterAnswer).
    ReleaseVotes,
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
    /// Waiting for the host to ask for the transfer again.
    AwaitRetry,
    /// Waiting for the cut-off minority to near its election timeout.
    AwaitMinority,
    /// Waiting for the follower's step that answers the leader's
    /// heartbeat.
    AwaitFollowerAnswer,
    /// Waiting for the leader's read-index answer to the follower.
    AwaitForwardAnswer,
    /// The answer is held; waiting to deliver it.
    HoldingAnswer,
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
    /// RestartAfterAnswer: the follower restarted; ForwardedAnswerHeld:
    /// the follower whose answer is held.
    follower: Option<usize>,
    /// TransferRetried: transfers still to ask for.
    retries_left: u8,
    /// The earliest undo scheduled for this arming.
    undo_ns: Option<u64>,
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
    /// A read-index answer held back (ForwardedAnswerHeld).
    held_answer: Option<u32>,
    /// A read command of the workload (the latest a client sent), for
    /// the probe reads.
    read_command: Option<bytes::Bytes>,
    /// Probe reads asked for.
    pub(super) probe_reads: u64,
    /// A probe read is scheduled.
    probe_scheduled: bool,
    /// A newly elected leader whose appends are delayed until the time
    /// given (its heartbeats are not).
    slow_appends: Option<(usize, u64)>,
    /// RestartAfterAnswer: vote requests to the restarted follower are
    /// held until the time given.
    votes_to_restarted: Option<(usize, u64)>,
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
            held_answer: None,
            read_command: None,
            probe_reads: 0,
            probe_scheduled: false,
            slow_appends: None,
            votes_to_restarted: None,
        }
    }

    /// Whether a step of node `index` must be shown to the nemesis.
    #[inline]
    pub(super) fn watches(&self, index: usize) -> bool {
        self.armed.is_some_and(|armed| {
            !matches!(armed.phase, Phase::Struck)
                && (armed.leader == index
                    || (armed.follower == Some(index) && armed.phase == Phase::AwaitFollowerAnswer))
        })
    }

    /// A client asked for `command`, a read: kept for the probe reads.
    #[inline]
    pub(super) fn note_read_command(&mut self, command: &bytes::Bytes) {
        if self.read_command.is_none() {
            self.read_command = Some(command.clone());
        }
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
    /// The transfer was given up and is to be asked for again.
    RetrySoon,
    /// The follower answered the leader's heartbeat: crash it now.
    CrashFollower,
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
            LeaseScenario::Transfer
            | LeaseScenario::TransferGivenUp
            | LeaseScenario::TransferRetried => Phase::AwaitTimeoutNow,
            LeaseScenario::RestartAfterAnswer => Phase::AwaitMinority,
            LeaseScenario::ForwardedAnswerHeld => Phase::AwaitForwardAnswer,
        };
        let transfers = matches!(
            scenario,
            LeaseScenario::Transfer
                | LeaseScenario::TransferGivenUp
                | LeaseScenario::TransferRetried
        );
        let mut target = None;
        let mut follower = None;
        let mut minority = Vec::new();
        if transfers {
            let candidates = self.transfer_candidates(leader);
            if candidates.is_empty() {
                return;
            }
            target = Some(candidates[self.lease.rng.gen_range(0..candidates.len())]);
        } else if scenario == LeaseScenario::RestartAfterAnswer {
            // The follower to restart, and a minority of the others (all
            // voters, up) cut off from the leader: with its vote they are
            // a majority.
            let mut voters = self.live_voters_but(leader);
            let majority = node.membership().voters.len() / 2 + 1;
            let cut = node.membership().voters.len() - majority;
            if voters.len() < cut + 1 || cut == 0 || !node.membership().voters_outgoing.is_empty() {
                return;
            }
            let pick = self.lease.rng.gen_range(0..voters.len());
            follower = Some(voters.remove(pick));
            minority = voters.into_iter().take(cut).collect();
        } else if scenario == LeaseScenario::ForwardedAnswerHeld {
            let me = node.id();
            let followers: Vec<usize> = (0..self.hosts.len())
                .filter(|index| {
                    let host = &self.hosts[*index];
                    !host.paused
                        && host.node.as_ref().is_some_and(|node| {
                            node.leader() == Some(me)
                                && node.role() == Role::Follower
                                && !node.is_witness_node()
                        })
                })
                .collect();
            if followers.is_empty() {
                return;
            }
            follower = Some(followers[self.lease.rng.gen_range(0..followers.len())]);
        }
        self.lease.armed = Some(Armed {
            scenario,
            length_ns,
            leader,
            term,
            incarnation,
            target,
            follower,
            retries_left: u8::from(scenario == LeaseScenario::TransferRetried),
            undo_ns: None,
            phase,
            armed_ns: self.now,
        });
        self.note(Some(leader), || format!("lease nemesis armed: {scenario}"));
        if !self.lease.probe_scheduled {
            self.lease.probe_scheduled = true;
            self.schedule(PROBE_READ_NS, Event::Lease(LeaseStep::ProbeRead));
        }
        if matches!(
            scenario,
            LeaseScenario::SkewAtBound | LeaseScenario::PauseAtExpiry
        ) {
            self.pin_clocks_at_bound(leader);
        }
        if !minority.is_empty() {
            for index in &minority {
                self.blocked[leader] |= 1 << index;
                self.blocked[*index] |= 1 << leader;
            }
            self.note(Some(leader), || {
                format!("lease: the leader cut off from the minority {minority:?} (node indices)")
            });
            self.network_changed();
            // A few ticks short of the minority's election timeout (they
            // heard the leader last about now).
            let timeout_ticks = u64::from(node_election_timeout_min(self, leader));
            let wait_ticks = timeout_ticks.saturating_sub(self.lease.rng.gen_range(2..=4));
            let wait_ns = wait_ticks * self.hosts[leader].tick_period_ns;
            self.schedule(wait_ns, Event::Lease(LeaseStep::AwaitAnswerOf));
            self.schedule_lease_undo(ARMED_MAX_NS);
        }
        if scenario == LeaseScenario::ForwardedAnswerHeld {
            self.schedule_lease_undo(ARMED_MAX_NS);
        }
        if let Some(target) = target {
            self.step(
                leader,
                Input::TransferLeadership(target as NodeId + 1),
                None,
            );
        }
    }

    /// The voters, besides node `leader`, the leader's progress finds
    /// caught up and recently active, not witnesses, up and running: the
    /// targets a transfer may be asked for.
    fn transfer_candidates(&self, leader: usize) -> Vec<usize> {
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return Vec::new();
        };
        let me = node.id();
        let last = node.last_index();
        let membership = node.membership();
        node.progress_all()
            .filter(|(id, view)| {
                *id != me
                    && membership.voters.contains(id)
                    && !membership.is_witness(*id)
                    && view.recently_active
                    && view.match_index == last
            })
            .map(|(id, _)| id as usize - 1)
            .filter(|index| {
                let peer = &self.hosts[*index];
                peer.node.is_some() && !peer.paused
            })
            .collect()
    }

    /// The voters of node `leader`'s configuration besides it that are up
    /// and not paused, by index.
    fn live_voters_but(&self, leader: usize) -> Vec<usize> {
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return Vec::new();
        };
        node.membership()
            .voters
            .iter()
            .map(|id| *id as usize - 1)
            .filter(|index| {
                *index != leader
                    && self
                        .hosts
                        .get(*index)
                        .is_some_and(|host| host.node.is_some() && !host.paused)
            })
            .collect()
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
        if index != armed.leader {
            // RestartAfterAnswer's follower: its answer to the leader.
            let answered = actions.iter().any(|action| {
                matches!(action, Action::Send { to, message }
                    if *to as usize == armed.leader + 1
                        && matches!(message.body, MessageBody::HeartbeatResponse { .. }))
            });
            if armed.phase == Phase::AwaitFollowerAnswer && answered {
                armed.phase = Phase::Struck;
                self.lease.armed = Some(armed);
                return LeaseStrike::CrashFollower;
            }
            return LeaseStrike::None;
        }
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
                if given_up && armed.retries_left > 0 {
                    armed.retries_left -= 1;
                    armed.phase = Phase::AwaitRetry;
                    self.lease.armed = Some(armed);
                    return LeaseStrike::RetrySoon;
                }
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
                self.schedule_lease_undo(pause_ns + armed.length_ns);
            }
            LeaseStrike::RetrySoon => {
                self.schedule(RETRY_DELAY_NS, Event::Lease(LeaseStep::Retry));
            }
            LeaseStrike::CrashFollower => {
                let Some(follower) = armed.follower else {
                    return;
                };
                let leader = armed.leader;
                let partition = Partition::Split {
                    side: vec![leader as NodeId + 1],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(Some(follower), || {
                    format!("lease: crashed right after answering the leader's heartbeat; network: {partition}")
                });
                self.network_changed();
                self.retarget_clients(leader);
                let ticks = self.lease.rng.gen_range(1..=3);
                let period_ns = self.hosts[follower].tick_period_ns;
                let down_ns = ticks * period_ns;
                // The candidates' vote requests to it arrive at a moment
                // of its hold drawn from its start to its end.
                let hold_ticks = u64::from(node_election_timeout_min(self, follower));
                let release_ns =
                    down_ns + self.lease.rng.gen_range(0..=hold_ticks) * period_ns + period_ns / 2;
                self.lease.votes_to_restarted = Some((follower, self.now + release_ns));
                self.schedule(release_ns, Event::Lease(LeaseStep::ReleaseVotes));
                self.nemesis_crash(follower, down_ns, false);
                self.schedule_lease_undo(armed.length_ns);
            }
            LeaseStrike::TimeoutNowSent => {
                let leader = armed.leader as NodeId + 1;
                let target = armed.target.map_or(0, |target| target as NodeId + 1);
                let from: Vec<NodeId> = match armed.scenario {
                    LeaseScenario::TransferGivenUp | LeaseScenario::TransferRetried => {
                        vec![target]
                    }
                    _ => (1..=self.hosts.len() as NodeId)
                        .filter(|id| *id != leader)
                        .collect(),
                };
                let partition = Partition::OneWay {
                    from,
                    to: vec![leader],
                };
                // A retried transfer's first target stays unheard too.
                let kept = if armed.scenario == LeaseScenario::TransferRetried {
                    self.blocked
                } else {
                    [0; 8]
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                for (row, kept) in self.blocked.iter_mut().zip(kept) {
                    *row |= kept;
                }
                self.note(Some(index), || {
                    format!("lease: TimeoutNow sent; network: {partition}")
                });
                self.network_changed();
                if armed.scenario == LeaseScenario::Transfer {
                    self.retarget_clients(index);
                    self.schedule_lease_undo(armed.length_ns);
                } else {
                    // Undone by the strike's own schedule, or here if the
                    // leader never gives up and confirms.
                    self.schedule_lease_undo(ARMED_MAX_NS);
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
                self.schedule_lease_undo(armed.length_ns);
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
            LeaseStep::Undo => {
                // An undo scheduled for an earlier arming is not this one's.
                if armed.undo_ns.is_some_and(|due| self.now >= due) {
                    self.lease_undo();
                }
            }
            LeaseStep::ProbeRead => self.lease_probe_reads(),
            LeaseStep::ReleaseVotes => {
                if self.lease.votes_to_restarted.take().is_some() {
                    self.release_held_votes();
                }
            }
            LeaseStep::ProbeNewLeader => {
                let newer = self.lease.slow_appends.map(|(index, _)| index);
                let leads = newer.and_then(|index| {
                    let node = self.hosts[index].node.as_ref()?;
                    (node.role() == Role::Leader).then_some(index)
                });
                if let (Some(index), Some(command)) = (leads, self.lease.read_command.clone()) {
                    self.lease.probe_reads += 1;
                    self.probe_read(index, ReadPath::Lease, command);
                }
            }
            LeaseStep::Retry => {
                if armed.phase != Phase::AwaitRetry {
                    return;
                }
                // Another caught-up voter if there is one, else the same.
                let candidates: Vec<usize> = self
                    .transfer_candidates(leader)
                    .into_iter()
                    .filter(|index| Some(*index) != armed.target)
                    .collect();
                let target = if candidates.is_empty() {
                    armed.target
                } else {
                    Some(candidates[self.lease.rng.gen_range(0..candidates.len())])
                };
                let Some(target) = target else {
                    return;
                };
                self.lease.armed = Some(Armed {
                    target: Some(target),
                    phase: Phase::AwaitTimeoutNow,
                    ..armed
                });
                self.note(Some(leader), || {
                    format!(
                        "lease: the transfer was given up; asked again, to n{}",
                        target + 1
                    )
                });
                self.step(
                    leader,
                    Input::TransferLeadership(target as NodeId + 1),
                    None,
                );
            }
            LeaseStep::AwaitAnswerOf => {
                if armed.phase == Phase::AwaitMinority {
                    self.lease.armed = Some(Armed {
                        phase: Phase::AwaitFollowerAnswer,
                        ..armed
                    });
                }
            }
            LeaseStep::DeliverAnswer => {
                if let Some(slot) = self.lease.held_answer.take() {
                    self.note(armed.follower, || {
                        "lease: the held read-index answer delivered".to_string()
                    });
                    self.schedule(
                        super::network::MESSAGE_DELAY_MIN_NS,
                        Event::Deliver { slot },
                    );
                    // Reads right behind it, in the tick it arrives in.
                    for step in 1..=4 {
                        let delay = super::network::MESSAGE_DELAY_MIN_NS + step * 100_000;
                        self.schedule(delay, Event::Lease(LeaseStep::ProbeRead));
                    }
                    self.lease.probe_scheduled = true;
                }
                let ticks = 3 * self.config.tick_ns;
                self.schedule_lease_undo(ticks);
            }
            LeaseStep::Write => {
                if let Some(node) = self.hosts[leader].node.as_ref() {
                    if node.role() == Role::Leader {
                        let id = node.id();
                        self.propose_address(leader, id);
                    }
                }
            }
        }
    }

    /// The scenario's own reads (`fresh`): at the leader it aims at and at
    /// any newer leader on the lease path, at the follower on the follower
    /// path for ForwardedAnswerHeld; then again in a millisecond while it
    /// is armed.
    fn lease_probe_reads(&mut self) {
        self.lease.probe_scheduled = false;
        let Some(armed) = self.lease.armed else {
            return;
        };
        if let Some(command) = self.lease.read_command.clone() {
            match (armed.scenario, armed.follower) {
                (LeaseScenario::ForwardedAnswerHeld, Some(follower)) => {
                    self.lease.probe_reads += 1;
                    self.probe_read(follower, ReadPath::Follower, command);
                }
                _ => {
                    if self.hosts[armed.leader].incarnation == armed.incarnation {
                        self.lease.probe_reads += 1;
                        self.probe_read(armed.leader, ReadPath::Lease, command.clone());
                    }
                    if let Some(newer) = self.current_leader().filter(|i| *i != armed.leader) {
                        self.lease.probe_reads += 1;
                        self.probe_read(newer, ReadPath::Lease, command);
                    }
                }
            }
        }
        if self.lease.armed.is_some() && !self.lease.probe_scheduled {
            self.lease.probe_scheduled = true;
            self.schedule(PROBE_READ_NS, Event::Lease(LeaseStep::ProbeRead));
        }
    }

    /// Schedules the undo of the armed scenario `delay_ns` from now (the
    /// earliest of those scheduled for one arming undoes it).
    fn schedule_lease_undo(&mut self, delay_ns: u64) {
        let due = self.now + delay_ns;
        if let Some(armed) = self.lease.armed.as_mut() {
            armed.undo_ns = Some(armed.undo_ns.map_or(due, |known| known.min(due)));
        }
        self.schedule(delay_ns, Event::Lease(LeaseStep::Undo));
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
        if armed.leader != index && self.lease.slow_appends.is_none() {
            // Its first lease reads: its appends (the entry of its term
            // among them) are delayed, its heartbeats are not, and the
            // nemesis reads at it meanwhile.
            let window_ns = self.lease.rng.gen_range(2 * MS..6 * MS);
            self.lease.slow_appends = Some((index, self.now + window_ns));
            self.note(Some(index), || {
                format!(
                    "lease: the new leader's appends delayed {} us, reads at it meanwhile",
                    window_ns / 1000
                )
            });
            let mut at = NEW_LEADER_PROBE_NS;
            while at < window_ns + NEW_LEADER_PROBE_NS {
                self.schedule(at, Event::Lease(LeaseStep::ProbeNewLeader));
                at += NEW_LEADER_PROBE_NS;
            }
        }
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

    /// Holds back `message` (from node `from` to node `to`) if the
    /// nemesis delays it: an append of a newly elected leader in its first
    /// milliseconds, a vote request of a transfer TransferGivenUp or
    /// TransferRetried watches, or the read-index answer
    /// ForwardedAnswerHeld waits for. Returns whether it was held.
    pub(super) fn lease_hold(&mut self, from: usize, to: usize, message: &Message) -> bool {
        if let Some((follower, until_ns)) = self.lease.votes_to_restarted {
            let vote = matches!(message.body, MessageBody::RequestVote { .. });
            if vote && to == follower && self.now < until_ns && self.lease.held.len() < HELD_MAX {
                let slot = self.messages.insert(message.clone());
                self.lease.held.push((slot, to));
                return true;
            }
        }
        if let Some((leader, until_ns)) = self.lease.slow_appends {
            if self.now >= until_ns {
                self.lease.slow_appends = None;
            } else if leader == from && matches!(message.body, MessageBody::AppendEntries { .. }) {
                let slot = self.messages.insert(message.clone());
                let delay = until_ns - self.now + super::network::MESSAGE_DELAY_MIN_NS;
                self.schedule(delay, Event::Deliver { slot });
                return true;
            }
        }
        let Some(armed) = self.lease.armed else {
            return false;
        };
        if armed.scenario == LeaseScenario::ForwardedAnswerHeld {
            let answer = armed.phase == Phase::AwaitForwardAnswer
                && from == armed.leader
                && Some(to) == armed.follower
                && matches!(
                    message.body,
                    MessageBody::ReadIndexResponse { index: Some(_), .. }
                );
            if !answer {
                return false;
            }
            let slot = self.messages.insert(message.clone());
            self.lease.held_answer = Some(slot);
            self.lease.armed = Some(Armed {
                phase: Phase::HoldingAnswer,
                ..armed
            });
            let hold_ns = self.lease.rng.gen_range(3 * MS..15 * MS);
            self.note(Some(from), || {
                format!(
                    "lease: a read-index answer to n{} held for {} us while a write commits",
                    to + 1,
                    hold_ns / 1000
                )
            });
            self.schedule(0, Event::Lease(LeaseStep::Write));
            self.schedule(hold_ns, Event::Lease(LeaseStep::DeliverAnswer));
            return true;
        }
        let retried = armed.scenario == LeaseScenario::TransferRetried;
        // A retried transfer holds both targets' campaigns.
        let phase_holds = matches!(
            armed.phase,
            Phase::AwaitGiveUp | Phase::AwaitConfirm { .. } | Phase::AwaitRetry
        ) || (retried && armed.phase == Phase::AwaitTimeoutNow);
        let watched = retried
            || (armed.scenario == LeaseScenario::TransferGivenUp && armed.target == Some(from));
        let holding = watched
            && phase_holds
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
        self.lease.votes_to_restarted = None;
        if self.lease.armed.take().is_some() {
            self.note(None, || format!("lease nemesis disarmed: {why}"));
        }
        self.lease_undo_clocks();
        self.release_held_votes();
        self.release_held_answer();
    }

    /// Delivers a held read-index answer, if any.
    fn release_held_answer(&mut self) {
        if let Some(slot) = self.lease.held_answer.take() {
            let delay = super::network::MESSAGE_DELAY_MIN_NS;
            self.schedule(delay, Event::Deliver { slot });
        }
    }

    /// Undoes a struck scenario: network healed, clocks back, the paused
    /// leader resumed, held messages delivered.
    fn lease_undo(&mut self) {
        self.lease.votes_to_restarted = None;
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
        self.release_held_answer();
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
        self.lease.slow_appends = None;
        self.lease.votes_to_restarted = None;
        self.lease_undo_clocks();
        self.release_held_votes();
        self.release_held_answer();
    }
}

/// Node `index`'s minimum election timeout, in its ticks (10 if it is
/// down).
fn node_election_timeout_min<S: StateMachine, W: Workload>(
    simulation: &Simulation<S, W>,
    index: usize,
) -> u32 {
    simulation.hosts[index]
        .node
        .as_ref()
        .map_or(10, |node| node.config().election_timeout_min_ticks)
}
