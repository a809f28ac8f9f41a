//! Idle catch-up: a follower whose log went back while the
//! cluster is idle is repaired by the leader without waiting for a write.
//!
//! After the calm phases, on the calm cluster and once its leader is idle
//! (`Simulation::leader_idle`: every judged voter holds the leader's whole
//! log, acknowledged), one follower crashes and its disk loses its last
//! one to three *synced* entries: what a node restarted with
//! `--accept-wal-data-loss` after a damaged disk, or restored from an
//! older backup, looks like. Those are entries it acknowledged, which the
//! leader counts as held there. It restarts at once and nothing is
//! written. Within [`catch_up_bound_heartbeats`] of the leader's heartbeat
//! intervals from the restart, the follower's log must hold the leader's
//! last entry again and the leader must stream to it (replicate) with
//! that entry as its match index; and the leader must have reported the
//! loss ([`concord::Action::FollowerLogRegressed`]) for this follower at
//! most once (not at all when an append the network still held gave the
//! follower its entries back first). Then the rejoin check runs.
//!
//! The follower is a full voter other than the leader (not a witness),
//! drawn by a hash of the seed (no random stream moves), in a simple
//! configuration where the other voters form a quorum without it (the
//! entries it loses stay committed on a quorum). The number of entries
//! lost is capped so that the leader's log still holds the entry after
//! the follower's new last one (a catch-up by snapshot transfer is not
//! what this bounds). A seed with no such follower skips the check; a
//! leader never idle, or lost meanwhile, leaves it unjudged
//! (`Efficiency::calm_unjudged`), as in the other calm phases.
//!
//! What the checks relax, and only for this follower while the check
//! runs: the promise checker forgets the entries it acknowledged
//! (`Promises::accept_entry_loss`), and a reported regression of its log
//! is expected instead of failing the run
//! (`FailureKind::AcknowledgedEntriesLost`).

use concord::state_machine::StateMachine;
use concord::{Index, NodeId, ProgressState, Role, Term};

use super::checks::{judged_voters, CALM_IDLE_POLL_NS, CALM_IDLE_WAIT_MAX_NS};
use super::{format_time, Event, FailureKind, Simulation, MS};
use crate::workload::Workload;

/// Heartbeat intervals the repair may take on top of the leader's minimum
/// election timeout: the leader believes a follower lost acknowledged
/// entries only after its denials went on for a minimum election timeout
/// (`concord`'s `Progress::note_denial`), and the restarted follower
/// first hears a heartbeat (one interval), answers it (it says then that
/// it lacks the heartbeat's commit), is probed, denies, and after the
/// forgetting is probed back, appended to and acknowledges (a few round
/// trips of a calm network, far below an interval).
pub(super) const CATCH_UP_SLACK_HEARTBEATS: u64 = 4;

/// How often the check looks whether the follower caught up.
const CATCH_UP_POLL_NS: u64 = MS;

/// The bound, in heartbeat intervals, for a leader with minimum election
/// timeout `election_timeout_min_ticks` and heartbeat interval
/// `heartbeat_interval_ticks`: the election timeout rounded up to whole
/// intervals, plus [`CATCH_UP_SLACK_HEARTBEATS`] (7 at the core's
/// defaults, 10 and 2 ticks; 9 at the tokio runtime's, 15 and 3).
pub(crate) fn catch_up_bound_heartbeats(
    election_timeout_min_ticks: u32,
    heartbeat_interval_ticks: u32,
) -> u64 {
    let interval = u64::from(heartbeat_interval_ticks.max(1));
    u64::from(election_timeout_min_ticks).div_ceil(interval) + CATCH_UP_SLACK_HEARTBEATS
}

/// The check under way.
pub(super) struct CatchUpCheck {
    leader: usize,
    term: Term,
    /// Set once the follower crashed: it, its new last index, and when it
    /// restarted.
    follower: Option<(usize, Index, u64)>,
    /// Time waited so far for an idle leader.
    idle_wait_ns: u64,
    /// Regressions of the follower's log the leader reported.
    regressions_reported: u32,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Starts the check after the calm phases, led by `leader` in `term`
    /// (or goes on to the rejoin check when it does not apply).
    pub(super) fn start_catch_up_check(&mut self, leader: usize, term: Term) {
        self.catch_up = Some(CatchUpCheck {
            leader,
            term,
            follower: None,
            idle_wait_ns: 0,
            regressions_reported: 0,
        });
        self.catch_up_crash_when_idle();
    }

    fn leads(&self, leader: usize, term: Term) -> bool {
        self.hosts[leader]
            .node
            .as_ref()
            .is_some_and(|node| node.role() == Role::Leader && node.term() == term)
    }

    /// Ends the check (unjudged when `judged` is false) and starts the
    /// rejoin check.
    fn end_catch_up_check(&mut self, judged: bool) {
        let Some(check) = self.catch_up.take() else {
            return;
        };
        if !judged {
            self.budgets.calm_unjudged();
        }
        if self.leads(check.leader, check.term) {
            self.start_rejoin_check(check.leader, check.term);
        } else {
            self.finished = true;
        }
    }

    /// The follower to crash, and how many entries it loses.
    fn catch_up_victim(&self, leader: usize) -> Option<(usize, Index)> {
        let node = self.hosts[leader].node.as_ref()?;
        let membership = node.membership();
        if membership.is_joint() {
            return None;
        }
        let voters = judged_voters(membership);
        let quorum = voters.len() / 2 + 1;
        if voters.len() < 3 || voters.len() - 1 < quorum {
            return None;
        }
        let candidates: Vec<usize> = voters
            .iter()
            .filter(|id| **id != node.id() && !membership.is_witness(**id))
            .map(|id| *id as usize - 1)
            .filter(|index| self.hosts[*index].node.is_some() && !self.is_lost(*index))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let hash = self.config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let follower = candidates[(hash >> 40) as usize % candidates.len()];
        let disk = &self.hosts[follower].disk;
        let durable_entries = disk.last_index() - disk.base_index();
        // The leader must still hold the entry after the follower's new
        // last one.
        let leader_first = node.first_index();
        let above_leader_base = (disk.last_index() + 1).saturating_sub(leader_first);
        let wanted = 1 + (hash >> 20) % 3;
        let lost = wanted.min(durable_entries).min(above_leader_base);
        (lost > 0).then_some((follower, lost))
    }

    /// Waits for an idle leader, then crashes the follower, takes its
    /// synced tail and restarts it.
    pub(super) fn catch_up_crash_when_idle(&mut self) {
        let Some(check) = self.catch_up.as_ref() else {
            return;
        };
        let (leader, term) = (check.leader, check.term);
        if !self.leads(leader, term) {
            self.end_catch_up_check(false);
            return;
        }
        if !self.leader_idle(leader, false) {
            let Some(check) = self.catch_up.as_mut() else {
                return;
            };
            check.idle_wait_ns += CALM_IDLE_POLL_NS;
            if check.idle_wait_ns > CALM_IDLE_WAIT_MAX_NS {
                self.note(Some(leader), || {
                    "idle catch-up unjudged: the leader never became idle".to_string()
                });
                self.end_catch_up_check(false);
            } else {
                self.schedule(CALM_IDLE_POLL_NS, Event::CatchUpStart);
            }
            return;
        }
        let Some((follower, lost)) = self.catch_up_victim(leader) else {
            self.end_catch_up_check(true);
            return;
        };
        self.crash(follower);
        let new_last = self.hosts[follower].disk.lose_synced_tail(lost);
        self.promises.accept_entry_loss(follower);
        self.note(Some(follower), || {
            format!(
                "idle catch-up: the disk lost its last {lost} synced entries; the log now ends at {new_last}"
            )
        });
        self.restart(follower);
        if self.failure.is_some() {
            return;
        }
        let now = self.now;
        if let Some(check) = self.catch_up.as_mut() {
            check.follower = Some((follower, new_last, now));
        }
        self.schedule(CATCH_UP_POLL_NS, Event::CatchUpPoll);
    }

    /// Whether a regression of `follower`'s log reported by the leader
    /// `reporter` is the one this check caused (then it is counted, not
    /// failed).
    pub(super) fn catch_up_expects_regression(
        &mut self,
        reporter: usize,
        follower: NodeId,
    ) -> bool {
        let Some(check) = self.catch_up.as_mut() else {
            return false;
        };
        match check.follower {
            Some((index, _, _)) if index as NodeId + 1 == follower && reporter == check.leader => {
                check.regressions_reported += 1;
                true
            }
            _ => false,
        }
    }

    /// Looks whether the follower caught up; fails once the bound passed.
    pub(super) fn catch_up_poll(&mut self) {
        let Some(check) = self.catch_up.as_ref() else {
            return;
        };
        let (leader, term) = (check.leader, check.term);
        let Some((follower, new_last, restarted_ns)) = check.follower else {
            return;
        };
        let regressions = check.regressions_reported;
        if !self.leads(leader, term) {
            self.note(Some(leader), || {
                "idle catch-up unjudged: the leader lost its leadership".to_string()
            });
            self.end_catch_up_check(false);
            return;
        }
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return;
        };
        let config = node.config();
        let bound_heartbeats = catch_up_bound_heartbeats(
            config.election_timeout_min_ticks,
            config.heartbeat_interval_ticks,
        );
        let interval_ns =
            u64::from(config.heartbeat_interval_ticks.max(1)) * self.hosts[leader].tick_period_ns;
        let bound_ns = bound_heartbeats * interval_ns;
        let last = node.last_index();
        let last_term = node.term_at(last);
        let id = follower as NodeId + 1;
        let streaming = node
            .progress(id)
            .is_some_and(|p| p.state == ProgressState::Replicate && p.match_index == last);
        let holds = self.hosts[follower]
            .node
            .as_ref()
            .is_some_and(|f| f.last_index() >= last && f.term_at(last) == last_term);
        let elapsed_ns = self.now - restarted_ns;
        if streaming && holds {
            // None is fine: an append the network still held (delayed or
            // duplicated) may have given the follower its lost entries
            // back before the leader saw any denial.
            if regressions > 1 {
                let message = format!(
                    "idle catch-up: n{} caught up after losing synced entries past {new_last}, but the leader reported the regression of its log {regressions} times, not at most once",
                    follower + 1
                );
                self.fail(FailureKind::IdleCatchUp, Some(leader), message);
                return;
            }
            self.budgets
                .idle_catch_up(elapsed_ns * 100 / interval_ns.max(1));
            self.note(Some(follower), || {
                format!(
                    "idle catch-up: holds the leader's last entry {last} again, {} after its restart",
                    format_time(elapsed_ns)
                )
            });
            self.end_catch_up_check(true);
            return;
        }
        if elapsed_ns > bound_ns {
            let (match_index, state) = node
                .progress(id)
                .map(|p| (p.match_index, format!("{:?}", p.state)))
                .unwrap_or((0, "none".to_string()));
            let follower_last = self.hosts[follower]
                .node
                .as_ref()
                .map_or(0, |f| f.last_index());
            let message = format!(
                "idle catch-up: n{} lost its synced entries past {new_last} and restarted; {} later ({bound_heartbeats} heartbeat intervals of {}) on an idle cluster it holds up to {follower_last} of the leader's {last}, and the leader's progress for it is {state} at match {match_index} ({regressions} regressions reported)",
                follower + 1,
                format_time(elapsed_ns),
                format_time(interval_ns)
            );
            self.fail(FailureKind::IdleCatchUp, Some(leader), message);
            return;
        }
        self.schedule(CATCH_UP_POLL_NS, Event::CatchUpPoll);
    }
}
