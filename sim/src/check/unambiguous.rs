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
//! writes of unknown outcome, reads of unknown outcome are dropped) is
//! linearizable for every return before that one and for none after.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::search::Fx;
use super::Decision;

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

const NONE: u32 = u32::MAX;

/// Decides a register history: `None` if it is ambiguous (two writes of
/// one value, or a write of `init`), else linearizable or the index (into
/// `ops`) of the operation at whose return no valid order is left.
pub fn decide_register(ops: &[RegOp], init: u32) -> Option<Decision> {
    let mut writer: HashMap<u32, u32, BuildHasherDefault<Fx>> = HashMap::default();
    for (i, o) in ops.iter().enumerate() {
        if o.write && (o.value == init || writer.insert(o.value, i as u32).is_some()) {
            return None;
        }
    }
    let writer_of = |v: u32| writer.get(&v).copied().unwrap_or(NONE);
    let all: Vec<usize> = (0..ops.len()).collect();
    if zones_ok(ops, &all, None, init, &writer_of) {
        return Some(Decision::Linearizable);
    }
    // Return events in the order the search processes them.
    let mut rets: Vec<(u128, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.ret.map(|r| (2 * r as u128 + 1, i)))
        .collect();
    rets.sort_unstable();
    // Smallest k such that the cut after return k is not linearizable.
    let (mut lo, mut hi) = (0usize, rets.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if zones_ok(ops, &all, Some(rets[mid]), init, &writer_of) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(Decision::Stuck(rets.get(lo).map_or(0, |r| r.1)))
}

/// The zone test on `ops`, cut after the return event `cut` if given.
fn zones_ok(
    ops: &[RegOp],
    all: &[usize],
    cut: Option<(u128, usize)>,
    init: u32,
    writer_of: &dyn Fn(u32) -> u32,
) -> bool {
    // Shifted by 2 so that the virtual initial write is (0, 1).
    let call_t = |o: &RegOp| 2 * o.call as u128 + 2;
    // Return time as of the cut: `None` if not returned by then.
    let ret_t = |i: usize, o: &RegOp| -> Option<u128> {
        let r = 2 * o.ret? as u128 + 3;
        match cut {
            Some((t, j)) if (r - 2, i) > (t, j) => None,
            _ => Some(r),
        }
    };
    let included = |o: &RegOp| match cut {
        // Called before the cut's return (never at the same time: calls
        // are even, returns odd).
        Some((t, _)) => call_t(o) < t + 2,
        None => true,
    };
    // Per value: (lo = min return, hi = max call, read seen).
    let mut clusters: HashMap<u32, (u128, u128, bool), BuildHasherDefault<Fx>> = HashMap::default();
    clusters.insert(init, (1, 0, false));
    for &i in all {
        let o = &ops[i];
        if !included(o) {
            continue;
        }
        let r = ret_t(i, o);
        if !o.write {
            let Some(r) = r else {
                // A read not returned by the cut may still be placed later.
                continue;
            };
            let w = writer_of(o.value);
            if o.value != init {
                if w == NONE {
                    return false;
                }
                let wo = &ops[w as usize];
                if !included(wo) || call_t(wo) > r {
                    // Read from a write not called yet.
                    return false;
                }
            }
            let e = clusters.entry(o.value).or_insert((u128::MAX, 0, false));
            e.0 = e.0.min(r);
            e.1 = e.1.max(call_t(o));
            e.2 = true;
        } else {
            let e = clusters.entry(o.value).or_insert((u128::MAX, 0, false));
            e.0 = e.0.min(r.unwrap_or(u128::MAX));
            e.1 = e.1.max(call_t(o));
        }
    }
    let mut forward: Vec<(u128, u128)> = Vec::new();
    let mut backward: Vec<(u128, u128)> = Vec::new();
    for (&v, &(lo, hi, read)) in &clusters {
        if v == init && !read {
            continue;
        }
        if lo == u128::MAX {
            // A write that never returns and that nobody read (before
            // the cut): it may never take effect.
            if !read {
                continue;
            }
        }
        if lo < hi {
            forward.push((lo, hi));
        } else {
            backward.push((hi, lo));
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
