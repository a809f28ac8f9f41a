//! `commit-told`: a follower learns its group's commit index within a
//! bound once it holds the committed entry, whether by an append, a
//! coalesced heartbeat, a commit notice or a quiescence round.
//!
//! A leader commits an index; a follower that holds the entry there (the
//! leader's progress says so: the follower acknowledged it) must hear of
//! the commit, or it applies nothing, answers no read and stays behind
//! while its group sleeps. Appends and notices may be lost; heartbeats
//! (every `heartbeat_interval_ticks`, capped at what the follower holds)
//! and the quiescence round (a commit notice naming the leader's last
//! entry) repeat it. So every [`CHECK_PERIOD_NS`], for every group whose
//! leader (the member leading the highest term) has a follower that holds
//! an entry the leader committed (by the leader's progress) but has not
//! committed it: the pair is *owing*. A pair owing the same index or less
//! since its start, with the leader and the follower up, not paused, the
//! same incarnations, leading and following that term, not cut apart by
//! a partition (either way), and no change of the network's partitions,
//! for longer than [`MultiSim::commit_told_bound_ns`]
//! fails the run. The bound is many heartbeat intervals (one frame in
//! forty getting through is enough at the plan's loss rates), a liveness
//! timeout (a leader asleep hears the follower is back), the wake queues
//! (`wakes_per_tick_max` per tick), in ticks of the slowest clock, plus a
//! second for frames held back.

use std::collections::BTreeMap;

use concord::multi::GroupId;
use concord::{Index, NodeId, Role, Term};

use super::engine::{Event, MultiSim, Phase, MS};
use super::report::MultiCheck;

/// How often the pairs are looked at.
pub(crate) const CHECK_PERIOD_NS: u64 = 50 * MS;

/// Heartbeat intervals in the bound.
const HEARTBEATS_IN_BOUND: u64 = 40;

/// Leader and follower node indices, their incarnations and pause
/// generations, the leader's term, the partition generation.
type Circumstances = (usize, u64, u64, usize, u64, u64, Term, u64);

/// One owing pair's history: when it started owing under the
/// circumstances named (any change starts it afresh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owing {
    /// Leader and follower node indices, their incarnations and pause
    /// generations, the leader's term, the partition generation.
    circumstances: Circumstances,
    /// The commit index owed when it started.
    index: Index,
    since_ns: u64,
}

/// The owing pairs of a run, by (group, follower node index).
#[derive(Default)]
pub(crate) struct CommitTold {
    owing: BTreeMap<(GroupId, usize), Owing>,
    /// Pairs seen owing past a check period (for the report).
    pub(crate) late: u64,
}

impl MultiSim {
    /// How long a follower may go on owing a commit index.
    pub(crate) fn commit_told_bound_ns(&self, heartbeat_interval_ticks: u64) -> u64 {
        let layer = &self.drawn.layer;
        let groups = self.drawn.groups as u64;
        let ticks = HEARTBEATS_IN_BOUND
            * heartbeat_interval_ticks.max(u64::from(layer.liveness_interval_ticks))
            + u64::from(layer.liveness_timeout_ticks)
            + 2 * groups.div_ceil(layer.wakes_per_tick_max as u64);
        let slowest_ppm = 1_000_000 + self.config.max_skew_ppm.max(0) as u64;
        ticks * self.config.tick_ns * slowest_ppm / 1_000_000 + 1_000 * MS
    }

    /// Looks at every group (during the chaos and after the heal, until
    /// the run is done), then again in [`CHECK_PERIOD_NS`].
    pub(crate) fn check_commit_told(&mut self) {
        if self.phase == Phase::Done || self.failure.is_some() {
            return;
        }
        let now = self.now_ns;
        let mut owing_now: Vec<((GroupId, usize), Circumstances, Index, u64)> = Vec::new();
        for (&group, state) in &self.groups {
            let Some((leader, term)) = self.group_leader(group, &state.voters) else {
                continue;
            };
            let Some(leader_node) = self.hosts[leader]
                .multi
                .as_ref()
                .and_then(|m| m.group(group))
            else {
                continue;
            };
            let commit = leader_node.commit_index();
            let heartbeat_ticks = u64::from(leader_node.config().heartbeat_interval_ticks);
            for &voter in &state.voters {
                let follower = voter as usize - 1;
                if follower == leader {
                    continue;
                }
                let Some(progress) = leader_node.progress(voter) else {
                    continue;
                };
                let owed = commit.min(progress.match_index);
                let host = &self.hosts[follower];
                let Some(node) = host.multi.as_ref().and_then(|m| m.group(group)) else {
                    continue;
                };
                let follows = node.role() == Role::Follower
                    && node.term() == term
                    && node.leader() == Some(leader as NodeId + 1);
                // A partition that cuts the pair apart (either way: the
                // leader also stops sending to a peer it hears nothing
                // from) excuses the follower for as long as it lasts.
                if !follows
                    || node.commit_index() >= owed
                    || self.hosts[leader].paused
                    || host.paused
                    || self.cut(leader, follower)
                    || self.cut(follower, leader)
                {
                    continue;
                }
                let circumstances = (
                    leader,
                    self.hosts[leader].incarnation,
                    self.hosts[leader].pause_generation,
                    follower,
                    host.incarnation,
                    host.pause_generation,
                    term,
                    self.partition_generation,
                );
                owing_now.push(((group, follower), circumstances, owed, heartbeat_ticks));
            }
        }
        let mut owing = std::mem::take(&mut self.commit_told.owing);
        let mut kept = BTreeMap::new();
        let mut failure = None;
        for (key, circumstances, owed, heartbeat_ticks) in owing_now {
            let entry = match owing.remove(&key) {
                Some(known) if known.circumstances == circumstances && known.index <= owed => known,
                _ => Owing {
                    circumstances,
                    index: owed,
                    since_ns: now,
                },
            };
            if now - entry.since_ns >= CHECK_PERIOD_NS {
                self.commit_told.late += u64::from(now - entry.since_ns < 2 * CHECK_PERIOD_NS);
            }
            let bound = self.commit_told_bound_ns(heartbeat_ticks);
            if failure.is_none() && now - entry.since_ns > bound {
                let (group, follower) = key;
                failure = Some((
                    group,
                    follower,
                    format!(
                        "n{} holds index {} of group {group}, committed by its leader n{} in term {} {} ago, and has committed only up to {}: no append, heartbeat, commit notice or quiescence round told it within {} (leader and follower up, running and connected all along, no partition changed)",
                        follower + 1,
                        entry.index,
                        circumstances.0 + 1,
                        circumstances.6,
                        crate::engine::format_time(now - entry.since_ns),
                        self.hosts[follower]
                            .multi
                            .as_ref()
                            .and_then(|m| m.group(group))
                            .map_or(0, |node| node.commit_index()),
                        crate::engine::format_time(bound)
                    ),
                ));
            }
            kept.insert(key, entry);
        }
        owing.clear();
        self.commit_told.owing = kept;
        if let Some((group, follower, message)) = failure {
            self.fail(MultiCheck::CommitTold, Some(follower), Some(group), message);
            return;
        }
        self.schedule(CHECK_PERIOD_NS, Event::CommitToldCheck);
    }

    /// The member of `voters` leading the highest term of `group`, with
    /// that term.
    fn group_leader(&self, group: GroupId, voters: &[NodeId]) -> Option<(usize, Term)> {
        voters
            .iter()
            .filter_map(|voter| {
                let index = *voter as usize - 1;
                let node = self.hosts[index].multi.as_ref()?.group(group)?;
                (node.role() == Role::Leader).then_some((node.term(), index))
            })
            .max()
            .map(|(term, index)| (index, term))
    }
}
