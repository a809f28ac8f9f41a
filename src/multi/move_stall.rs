//! When a replica move has stalled: its target is up, but has not come
//! any closer to the leader's log for a stated time.
//!
//! A move's target joins its group as a learner and catches up before it
//! is promoted ([`ReplacePlan::move_step`](super::ReplacePlan::move_step)).
//! A target that is drained or retired is undone at once; one that stays
//! up but never catches up (its process hung, its disk full, a network
//! path to it cut one way) would hold the move, its group and a share of
//! the move limits forever. A balancer watches each move's target while
//! it learns and undoes the move once the target's mark
//! ([`CatchUpMark`]) has not risen for `stall_after_ns` of the caller's
//! clock; the balancer then plans again.
//!
//! A snapshot transfer raises the mark through its confirmed bytes, so a
//! large snapshot sent slowly under a bandwidth limit is not a stall as
//! long as its chunks arrive. A transfer that starts over (a newer
//! snapshot) does not raise it: only reaching further does.
//!
//! Sans-IO: time is the caller's, in nanoseconds of any monotonic clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MultiPlantedBugs, ReplicaMove};
use crate::{Index, ProgressView};

/// Most moves one watch follows. Moves in flight are bounded by the
/// catalog's limits (a few per server); past this the watch follows no
/// more and none of the extra moves stalls.
pub const MOVES_WATCHED_MAX: usize = 65_536;

/// How far a learning target got, as its group's leader sees it. Marks
/// compare by match index, then by confirmed snapshot bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatchUpMark {
    /// The target's match index.
    pub match_index: Index,
    /// Bytes of the snapshot being sent that the target confirmed (0
    /// outside a transfer).
    pub snapshot_acked_bytes: u64,
}

impl CatchUpMark {
    /// The mark of a follower's progress record.
    pub fn of(progress: &ProgressView) -> CatchUpMark {
        CatchUpMark {
            match_index: progress.match_index,
            snapshot_acked_bytes: progress.snapshot_acked_bytes,
        }
    }
}

/// One watched move: the highest mark seen and when it was first seen.
#[derive(Clone, Copy, Debug)]
struct Watched {
    best: Option<CatchUpMark>,
    since_ns: u64,
}

/// Watches moves whose targets learn; says which stalled.
#[derive(Clone, Debug)]
pub struct MoveStall {
    stall_after_ns: u64,
    watched: BTreeMap<ReplicaMove, Watched>,
    planted: MultiPlantedBugs,
}

impl MoveStall {
    /// A watch that calls a move stalled after `stall_after_ns` without
    /// its target's mark rising; 0 never calls one stalled.
    pub fn new(stall_after_ns: u64) -> MoveStall {
        MoveStall {
            stall_after_ns,
            watched: BTreeMap::new(),
            planted: MultiPlantedBugs::NONE,
        }
    }

    /// Plants deliberate mistakes (feature `planted-bugs`; the
    /// simulator's table of planted mistakes).
    #[doc(hidden)]
    pub fn plant_bugs(&mut self, bugs: MultiPlantedBugs) {
        self.planted = bugs;
    }

    fn planted(&self) -> MultiPlantedBugs {
        self.planted.in_force()
    }

    /// The time without progress after which a move stalls (0: never).
    pub fn stall_after_ns(&self) -> u64 {
        self.stall_after_ns
    }

    /// Notes move `m` at `now_ns`, its target still learning, with the
    /// target's mark at its group's leader (`None`: the leader holds no
    /// record of it yet, which is no progress) and whether the leader
    /// counts it caught up (within the promote bound). Returns whether
    /// the move stalled: not caught up, and no mark higher than every
    /// earlier one, for `stall_after_ns`. A move first seen now starts
    /// its clock now; so does one whose target is caught up (its
    /// promotion waits on the group, not on the target).
    pub fn observe(
        &mut self,
        m: ReplicaMove,
        mark: Option<CatchUpMark>,
        caught_up: bool,
        now_ns: u64,
    ) -> bool {
        if self.stall_after_ns == 0 {
            return false;
        }
        if caught_up {
            self.watched.remove(&m);
            return false;
        }
        if !self.watched.contains_key(&m) && self.watched.len() >= MOVES_WATCHED_MAX {
            return false;
        }
        let equal_counts = self.planted().move_stall_equal_mark_progress;
        let watched = self.watched.entry(m).or_insert(Watched {
            best: mark,
            since_ns: now_ns,
        });
        if mark > watched.best || (equal_counts && mark == watched.best) {
            watched.best = mark;
            watched.since_ns = now_ns;
        }
        debug_assert!(watched.best >= mark);
        now_ns.saturating_sub(watched.since_ns) >= self.stall_after_ns
    }

    /// Stops watching move `m` (its target is a voter, or it ended).
    pub fn forget(&mut self, m: &ReplicaMove) {
        self.watched.remove(m);
    }

    /// Keeps only the moves `under_way` names (those ended are dropped).
    pub fn retain_under_way(&mut self, under_way: &[ReplicaMove]) {
        self.watched.retain(|m, _| under_way.contains(m));
    }

    /// Moves watched now.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn mark(match_index: Index, snapshot_acked_bytes: u64) -> Option<CatchUpMark> {
        Some(CatchUpMark {
            match_index,
            snapshot_acked_bytes,
        })
    }

    const M: ReplicaMove = ReplicaMove {
        group: 7,
        from: 1,
        to: 4,
    };

    #[test]
    fn a_target_that_never_answers_stalls_after_the_stated_time() {
        let mut watch = MoveStall::new(5 * SECOND_NS);
        assert!(!watch.observe(M, None, false, 0));
        assert!(!watch.observe(M, None, false, 5 * SECOND_NS - 1));
        assert!(watch.observe(M, None, false, 5 * SECOND_NS));
    }

    #[test]
    fn a_caught_up_target_waiting_for_its_promotion_never_stalls() {
        let mut watch = MoveStall::new(5 * SECOND_NS);
        assert!(!watch.observe(M, mark(40, 0), false, 0));
        // Caught up on an idle group: the mark has nowhere to rise.
        assert!(!watch.observe(M, mark(40, 0), true, 4 * SECOND_NS));
        assert!(!watch.observe(M, mark(40, 0), true, 60 * SECOND_NS));
        // Behind again (the group took writes): its clock starts now.
        assert!(!watch.observe(M, mark(40, 0), false, 61 * SECOND_NS));
        assert!(!watch.observe(M, mark(40, 0), false, 66 * SECOND_NS - 1));
        assert!(watch.observe(M, mark(40, 0), false, 66 * SECOND_NS));
    }

    #[test]
    fn a_rising_mark_restarts_the_clock() {
        let mut watch = MoveStall::new(5 * SECOND_NS);
        assert!(!watch.observe(M, mark(0, 0), false, 0));
        // Snapshot bytes confirmed: progress, though the match stands.
        assert!(!watch.observe(M, mark(0, 4096), false, 4 * SECOND_NS));
        assert!(!watch.observe(M, mark(0, 4096), false, 8 * SECOND_NS));
        // The snapshot installed: the match index rises.
        assert!(!watch.observe(M, mark(120, 0), false, 9 * SECOND_NS));
        assert!(!watch.observe(M, mark(120, 0), false, 13 * SECOND_NS));
        assert!(watch.observe(M, mark(120, 0), false, 14 * SECOND_NS));
    }

    #[test]
    fn a_transfer_that_starts_over_is_no_progress() {
        let mut watch = MoveStall::new(5 * SECOND_NS);
        assert!(!watch.observe(M, mark(10, 8192), false, 0));
        // A newer snapshot: its bytes start again at 0, then climb back
        // to where the old one stood. Nothing got further.
        assert!(!watch.observe(M, mark(10, 0), false, 2 * SECOND_NS));
        assert!(!watch.observe(M, mark(10, 8192), false, 4 * SECOND_NS));
        assert!(watch.observe(M, mark(10, 8192), false, 5 * SECOND_NS));
        // Further than ever: the clock starts over.
        assert!(!watch.observe(M, mark(10, 8193), false, 6 * SECOND_NS));
    }

    #[test]
    fn zero_never_stalls_and_ended_moves_are_dropped() {
        let mut never = MoveStall::new(0);
        assert!(!never.observe(M, None, false, 0));
        assert!(!never.observe(M, None, false, u64::MAX));
        assert_eq!(never.watched(), 0);

        let mut watch = MoveStall::new(SECOND_NS);
        let other = ReplicaMove { group: 8, ..M };
        watch.observe(M, None, false, 0);
        watch.observe(other, None, false, 0);
        watch.retain_under_way(&[other]);
        assert_eq!(watch.watched(), 1);
        // M again is a new move: its clock starts now.
        assert!(!watch.observe(M, None, false, 10 * SECOND_NS));
        watch.forget(&M);
        assert!(!watch.observe(M, None, false, 20 * SECOND_NS));
    }
}
