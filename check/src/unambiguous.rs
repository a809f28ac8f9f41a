//! Registers with unambiguous histories, decided in O(n log n).
//!
//! When every write writes a value no other write writes (and none writes
//! the initial value), each read names the one write it read from: the
//! read-mapping of Gibbons & Korach. The history then splits into
//! *clusters*, one per value: its write and the reads that saw it. In any
//! linearization a cluster is a contiguous block (nothing is written
//! between a value's write and its last read, since no later write brings
//! the value back), starting with its write. Whether blocks can be placed
//! in time is decided by their *zones* (the characterisation used by
//! Gibbons & Korach and by Golab, Li & Shah's atomicity checks):
//!
//! * `lo` = the earliest return in the cluster, `hi` = the latest call.
//!   If `lo < hi` the value must be current during all of `[lo, hi]` (its
//!   write is placed before `lo`, its last read after `hi`): a *forward*
//!   zone. Otherwise the whole cluster can sit at any one instant of
//!   `[hi, lo]`: a *backward* zone.
//! * The history is linearizable iff every read's write is called before
//!   the read returns, no two forward zones overlap, and no backward zone
//!   lies inside a forward zone (it would have to be placed while another
//!   value is current).
//!
//! Times are doubled (call `2t`, return `2t + 1`) so that a call and a
//! return never tie and touching intervals stay concurrent; the initial
//! value is written by a virtual write that returns before every call.
//! A write of unknown outcome that nobody read is left out (it may never
//! have taken effect); one that was read is a write that never returns.
//!
//! When the history is not linearizable, the operation at whose return the
//! search would get stuck is found by bisection over return events: the
//! history cut just after a return (operations not returned yet become
//! writes of unknown outcome, reads not returned yet are dropped) is
//! linearizable for every return before that one and for none after.
//!
//! The values the register could hold just before that return come from
//! the same zones, in linear time: with a virtual read placed at that
//! instant, value `v`'s block must come last, which the zone rules allow
//! iff `v`'s earliest return is after the latest call of every other
//! cluster that has a zone (or `v`'s cluster has returned nothing yet: an
//! unread write still pending may take effect last). So the reports of
//! histories of a million operations cost no search either.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::hash::Fx;

/// One operation of a register, as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct RegOp {
    /// A write (else a read).
    pub write: bool,
    /// The value written or read (interned).
    pub value: u32,
    /// Call time.
    pub call: u64,
    /// Return time; `None` for a write of unknown outcome. Reads always
    /// have one (reads of unknown outcome are left out by the caller).
    pub ret: Option<u64>,
}

/// What [`decide_register`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterDecision {
    /// The history is linearizable.
    Linearizable,
    /// It is not.
    Stuck {
        /// Index (into the operations) of the operation at whose return
        /// no valid order is left: the earliest such return.
        index: usize,
        /// The values (as the caller interned them, sorted) the register
        /// could hold at the instant of that return, just before anything
        /// returns then, given everything called by then. Never empty:
        /// the history up to there is linearizable.
        values: Vec<u32>,
    },
}

const NONE: u32 = u32::MAX;

/// An operation with its value made dense and its times doubled and
/// shifted by 2 (so that the virtual initial write is `(0, 1)`).
struct Dense {
    write: bool,
    value: u32,
    call: u128,
    /// `u128::MAX` for a write of unknown outcome.
    ret: u128,
}

/// Which part of the history a test looks at: operations called before
/// `calls_before` (a shifted, doubled time), with their returns counted
/// when their return event (unshifted doubled time, index) is at most
/// `returns_through`.
#[derive(Clone, Copy)]
struct Cut {
    calls_before: u128,
    returns_through: (u128, usize),
}

impl Cut {
    const ALL: Cut = Cut {
        calls_before: u128::MAX,
        returns_through: (u128::MAX, usize::MAX),
    };
}

/// Per value: earliest return, latest call, whether a read saw it, and
/// whether anything of it is in the cut.
#[derive(Clone, Copy)]
struct Cluster {
    lo: u128,
    hi: u128,
    read: bool,
    present: bool,
}

const EMPTY: Cluster = Cluster {
    lo: u128::MAX,
    hi: 0,
    read: false,
    present: false,
};

struct Register {
    ops: Vec<Dense>,
    /// Per dense value: the operation writing it, or `NONE`.
    writer: Vec<u32>,
    /// The dense value of the initial value.
    init: u32,
    /// Dense value → the caller's value.
    original: Vec<u32>,
}

/// Decides a register history: `None` if it is ambiguous (two writes of
/// one value, or a write of `init`), else whether it is linearizable and,
/// if not, where it gets stuck and the values possible just before.
pub fn decide_register(ops: &[RegOp], init: u32) -> Option<RegisterDecision> {
    let reg = Register::new(ops, init)?;
    let mut clusters = vec![EMPTY; reg.original.len()];
    if reg.zones_ok(Cut::ALL, &mut clusters) {
        return Some(RegisterDecision::Linearizable);
    }
    // Return events in the order the search processes them.
    let mut rets: Vec<(u128, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.ret.map(|r| (2 * r as u128 + 1, i)))
        .collect();
    rets.sort_unstable();
    // Cut after the last return = the whole history: not linearizable,
    // so there is a return (reads always have one).
    assert!(
        !rets.is_empty(),
        "a history without returns is linearizable"
    );
    let cut_after = |k: usize| Cut {
        // Calls at the return's time are before it (calls sort first).
        calls_before: rets[k].0 + 2,
        returns_through: rets[k],
    };
    // Smallest k such that the cut after return k is not linearizable.
    let (mut lo, mut hi) = (0usize, rets.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if reg.zones_ok(cut_after(mid), &mut clusters) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    // Just before the instant of return `lo`: everything called by then,
    // only the returns of earlier instants counted (whatever order the
    // caller gives returns at one instant). Linearizable: it is cut
    // `lo - 1` with fewer returns and more calls of writes no returned
    // read saw.
    let before = Cut {
        calls_before: rets[lo].0 + 2,
        returns_through: (rets[lo].0 - 1, usize::MAX),
    };
    let values = reg.values_at(before, &mut clusters);
    assert!(
        !values.is_empty(),
        "the history before the stuck return is linearizable"
    );
    Some(RegisterDecision::Stuck {
        index: rets[lo].1,
        values,
    })
}

impl Register {
    fn new(ops: &[RegOp], init: u32) -> Option<Register> {
        let mut dense: HashMap<u32, u32, BuildHasherDefault<Fx>> = HashMap::default();
        let mut original: Vec<u32> = Vec::new();
        let mut intern = |v: u32| -> u32 {
            let n = original.len() as u32;
            *dense.entry(v).or_insert_with(|| {
                original.push(v);
                n
            })
        };
        let init = intern(init);
        let mut out: Vec<Dense> = Vec::with_capacity(ops.len());
        for o in ops {
            out.push(Dense {
                write: o.write,
                value: intern(o.value),
                call: 2 * o.call as u128 + 2,
                ret: o.ret.map_or(u128::MAX, |r| 2 * r as u128 + 3),
            });
        }
        let mut writer = vec![NONE; original.len()];
        for (i, o) in out.iter().enumerate() {
            if o.write {
                if o.value == init || writer[o.value as usize] != NONE {
                    return None;
                }
                writer[o.value as usize] = i as u32;
            }
        }
        Some(Register {
            ops: out,
            writer,
            init,
            original,
        })
    }

    /// Fills `clusters` for the cut: `false` if a read in it saw a value
    /// nobody wrote or whose write was not called before the read returned.
    fn fill(&self, cut: Cut, clusters: &mut [Cluster]) -> bool {
        clusters.fill(EMPTY);
        clusters[self.init as usize] = Cluster {
            lo: 1,
            hi: 0,
            read: false,
            present: true,
        };
        for (i, o) in self.ops.iter().enumerate() {
            if o.call >= cut.calls_before {
                continue;
            }
            // The return as of the cut (unshifted event time for the
            // comparison with the cut's return event).
            let ret =
                (o.ret != u128::MAX && (o.ret - 2, i) <= cut.returns_through).then_some(o.ret);
            let c = &mut clusters[o.value as usize];
            if o.write {
                c.lo = c.lo.min(ret.unwrap_or(u128::MAX));
                c.hi = c.hi.max(o.call);
                c.present = true;
                continue;
            }
            // A read not returned by the cut may still be placed later.
            let Some(ret) = ret else { continue };
            if o.value != self.init {
                let w = self.writer[o.value as usize];
                if w == NONE {
                    return false;
                }
                let wo = &self.ops[w as usize];
                if wo.call >= cut.calls_before || wo.call > ret {
                    // Read from a write not called yet.
                    return false;
                }
            }
            c.lo = c.lo.min(ret);
            c.hi = c.hi.max(o.call);
            c.read = true;
            c.present = true;
        }
        true
    }

    /// Whether a cluster takes part in the zone test: the initial value
    /// only if read, a write that never returns only if read.
    fn zoned(&self, v: usize, c: &Cluster) -> bool {
        c.present && (c.read || (v as u32 != self.init && c.lo != u128::MAX))
    }

    /// The zone test on the cut.
    fn zones_ok(&self, cut: Cut, clusters: &mut [Cluster]) -> bool {
        if !self.fill(cut, clusters) {
            return false;
        }
        let mut forward: Vec<(u128, u128)> = Vec::new();
        let mut backward: Vec<(u128, u128)> = Vec::new();
        for (v, c) in clusters.iter().enumerate() {
            if !self.zoned(v, c) {
                continue;
            }
            if c.lo < c.hi {
                forward.push((c.lo, c.hi));
            } else {
                backward.push((c.hi, c.lo));
            }
        }
        forward.sort_unstable();
        for w in forward.windows(2) {
            if w[1].0 < w[0].1 {
                return false;
            }
        }
        for &(c, d) in &backward {
            // The forward zone starting last before c is the only one that
            // can contain [c, d]: forward zones are disjoint.
            let k = forward.partition_point(|f| f.0 < c);
            if k > 0 && forward[k - 1].1 > d {
                return false;
            }
        }
        true
    }

    /// The values the register can hold at the end of a linearizable cut
    /// (the caller's values, sorted).
    fn values_at(&self, cut: Cut, clusters: &mut [Cluster]) -> Vec<u32> {
        let ok = self.fill(cut, clusters);
        debug_assert!(ok, "the cut is linearizable");
        // The two latest calls among clusters with a zone, with their
        // values, so that "every other cluster" is one comparison.
        let mut top: [(u128, usize); 2] = [(0, usize::MAX); 2];
        for (v, c) in clusters.iter().enumerate() {
            if !self.zoned(v, c) {
                continue;
            }
            if c.hi > top[0].0 {
                top[1] = top[0];
                top[0] = (c.hi, v);
            } else if c.hi > top[1].0 {
                top[1] = (c.hi, v);
            }
        }
        let mut values: Vec<u32> = clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.present)
            .filter(|&(v, c)| {
                let latest_other = if top[0].1 == v { top[1].0 } else { top[0].0 };
                // Nothing of it returned yet (an unread write still
                // pending): it may take effect last. Else its block must
                // start by its earliest return, after every other
                // cluster's calls.
                c.lo == u128::MAX || c.lo > latest_other
            })
            .map(|(v, _)| self.original[v])
            .collect();
        values.sort_unstable();
        values
    }
}
