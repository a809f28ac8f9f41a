//! Key-value keys with unambiguous writes (gets, puts, appends and
//! compare-and-sets), decided without a search when they can be.
//!
//! The register decision of [`super::unambiguous`] rests on each read
//! naming the one write it saw. With appends and compare-and-sets the same
//! holds of every *state* of the key when writes are unambiguous: no two
//! writes write the same value or token, none writes `""`, and every
//! string an operation observed has exactly one write that could have
//! produced it (a put or a compare-and-set writing exactly it, or an
//! append whose token ends it). Then:
//!
//! * Each observed state (a value a get read, a successful
//!   compare-and-set's `from`, and, recursively, what an observed append
//!   result was before its token) names its producer, and the producer
//!   names the state before it: an append's result minus its token, a
//!   compare-and-set's `from`; a put starts afresh. A state is current
//!   during one stretch of any linearization, since only its producer
//!   makes it and it runs once.
//! * A read-modify-write (an append or successful compare-and-set) is the
//!   last operation of its predecessor's stretch and the first of its
//!   own. States linked by them form *chains* that no write and no get of
//!   another state can enter: contiguous blocks of any linearization,
//!   whose inner order is fixed (producer, the reads of its state in any
//!   order, the next producer, ...). Only a compare-and-set that failed
//!   may sit inside another chain.
//! * Blocks are ordered like the register's clusters: block `A` may come
//!   before `B` iff every call of `A` is at or before every return of `B`
//!   (`hi(A) <= lo(B)`). Two blocks that can come neither way round, a
//!   chain whose own fixed order contradicts real time, or the initial
//!   state's chain not fitting first, mean no linearization exists.
//!   Otherwise sorting the blocks by their zones (as in the register
//!   decision) gives an order that respects real time.
//! * Writes whose result nobody observed are blocks of one operation if
//!   they completed (a put, an append: their predecessor is free), the
//!   tail of their `from`'s chain if they are successful
//!   compare-and-sets, and left out if their outcome is unknown (they
//!   may never have taken effect).
//! * A compare-and-set that failed needs a state other than its `from` at
//!   some instant of its interval: it is put at the first place of the
//!   built order where that holds and real time allows. It cannot be
//!   placed at all when its `from` was current before its call (its
//!   producer or a read of it returned by then, or it is the initial
//!   state) and still after its return (a read of it or its consumer was
//!   called after): then no linearization exists.
//!
//! "Linearizable" is only answered with the built order replayed on real
//! strings and checked against real time; "not linearizable" only for one
//! of the contradictions above, each of which holds of every
//! linearization. Anything else (an ambiguous value, a failed
//! compare-and-set the built order leaves no room for) answers `None`,
//! and the caller falls back to the search. Everything is
//! O(n log n) plus the lengths of the strings involved.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hash::StrMap;
use crate::history::{Op, Operation, Outcome, Output};

/// What [`decide_kv`] found about the operations of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvDecision {
    /// Linearizable: an order was built, replayed and checked against
    /// real time.
    Linearizable,
    /// Not linearizable: the history contains a contradiction that every
    /// order runs into.
    NotLinearizable,
}

const NONE: u32 = u32::MAX;
const INF: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Append,
    Cas,
}

/// An operation that may write.
struct Write<'a> {
    kind: Kind,
    /// Index into the caller's operations.
    op: u32,
    /// A compare-and-set's expected value.
    from: &'a str,
    /// Completed (else unknown outcome).
    ok: bool,
    /// The observed state it produces, or `NONE`.
    produces: u32,
    /// A completed successful compare-and-set whose result nobody
    /// observed: the last operation of its `from`'s chain.
    tail: bool,
}

/// An observed state.
struct State {
    /// The write producing it, `NONE` for the initial `""`.
    producer: u32,
    /// The write consuming it (the next link of its chain), `NONE` if none.
    consumer: u32,
}

/// Why the analysis stopped early.
enum Stop {
    /// The writes are not unambiguous: leave it to the search.
    Ambiguous,
    /// No linearization exists.
    Impossible,
}

/// A contiguous block of any linearization.
struct Block {
    /// Its operations in order, as a range of `Decider::seq_ops`.
    start: u32,
    end: u32,
    /// Earliest return, latest call.
    lo: u64,
    hi: u64,
}

struct Decider<'a> {
    ops: &'a [Operation],
    writes: Vec<Write<'a>>,
    /// Written value or token → write.
    values: StrMap<'a, u32>,
    /// Distinct byte lengths of append tokens, ascending.
    tok_lens: Vec<usize>,
    /// Observed state → id (`NONE` while being resolved).
    ids: StrMap<'a, u32>,
    states: Vec<State>,
}

fn call_of(o: &Operation) -> u64 {
    o.call
}

fn ret_of(o: &Operation) -> u64 {
    match o.outcome {
        Outcome::Ok(_) => o.ret.unwrap_or(INF),
        _ => INF,
    }
}

/// Decides the operations `idx` of `ops`, all on one key, if their writes
/// are unambiguous (see the module docs); `None` leaves them to the
/// search.
pub fn decide_kv(ops: &[Operation], idx: &[usize]) -> Option<KvDecision> {
    match Decider::run(ops, idx) {
        Ok(true) => Some(KvDecision::Linearizable),
        Ok(false) => None,
        Err(Stop::Impossible) => Some(KvDecision::NotLinearizable),
        Err(Stop::Ambiguous) => None,
    }
}

/// A valid order of `blocks`: block `A` may come before `B` iff
/// `hi(A) <= lo(B)`. Any block that may come before every other one can be
/// taken first without losing a valid order of the rest (put it first in
/// any valid order of all of them: still valid), so a greedy choice never
/// fails where an order exists, and failing means none does. Among the
/// blocks that may come next, the one whose first operation was called
/// earliest is taken: the key then changes as early as real time allows,
/// which leaves the most room for failed compare-and-sets.
fn order_blocks(blocks: &[Block], seq_ops: &[u32], ops: &[Operation]) -> Result<Vec<u32>, Stop> {
    let n = blocks.len();
    let first = |b: usize| seq_ops[blocks[b].start as usize];
    let start = |b: usize| call_of(&ops[first(b) as usize]);
    let mut by_lo: BinaryHeap<Reverse<(u64, u32)>> =
        (0..n).map(|b| Reverse((blocks[b].lo, b as u32))).collect();
    let mut by_hi: Vec<u32> = (0..n as u32).collect();
    by_hi.sort_unstable_by_key(|&b| blocks[b as usize].hi);
    let mut next_hi = 0usize;
    // Blocks whose latest call is at or before every other block's
    // earliest return, by (first call, first operation).
    let mut ready: BinaryHeap<Reverse<(u64, u32, u32)>> = BinaryHeap::new();
    let mut taken = vec![false; n];
    let mut order: Vec<u32> = Vec::with_capacity(n);
    while order.len() < n {
        let clean = |h: &mut BinaryHeap<Reverse<(u64, u32)>>, taken: &[bool]| {
            while h.peek().is_some_and(|Reverse((_, b))| taken[*b as usize]) {
                h.pop();
            }
        };
        clean(&mut by_lo, &taken);
        let Some(&Reverse((m1, arg))) = by_lo.peek() else {
            break;
        };
        // The second earliest return: the bound for the block holding the
        // earliest one.
        by_lo.pop();
        clean(&mut by_lo, &taken);
        let m2 = by_lo.peek().map_or(INF, |Reverse((lo, _))| *lo);
        by_lo.push(Reverse((m1, arg)));
        while next_hi < n && blocks[by_hi[next_hi] as usize].hi <= m1 {
            let b = by_hi[next_hi] as usize;
            ready.push(Reverse((start(b), first(b), b as u32)));
            next_hi += 1;
        }
        while ready
            .peek()
            .is_some_and(|Reverse((_, _, b))| taken[*b as usize])
        {
            ready.pop();
        }
        let special = (blocks[arg as usize].hi <= m2)
            .then(|| (start(arg as usize), first(arg as usize), arg));
        let pick = match (ready.peek().map(|r| r.0), special) {
            (Some(r), Some(s)) => r.min(s),
            (Some(r), None) => r,
            (None, Some(s)) => s,
            // No block may come first: no order exists.
            (None, None) => return Err(Stop::Impossible),
        };
        taken[pick.2 as usize] = true;
        order.push(pick.2);
    }
    Ok(order)
}

/// The operation at whose return the search gets stuck on a key that is
/// not linearizable, found by bisection over return events with the
/// direct decision of [`decide_kv`]: the history cut just
/// after a return (operations called by then; those not returned yet
/// become writes of unknown outcome, or are dropped if they only read) is
/// linearizable for every return before that one and for none after.
/// `None` if some cut is not decided directly, or the whole is
/// linearizable. Returns an index into `ops`.
pub fn stuck_by_bisection(ops: &[Operation], idx: &[usize]) -> Option<usize> {
    let rets = returns_in_order(ops, idx);
    let bad_after = |k: usize| -> Option<bool> {
        let cut = cut_after_return(ops, idx, rets[k]);
        let all: Vec<usize> = (0..cut.len()).collect();
        decide_kv(&cut, &all).map(|d| d == KvDecision::NotLinearizable)
    };
    if rets.is_empty() || !bad_after(rets.len() - 1)? {
        return None;
    }
    let (mut lo, mut hi) = (0usize, rets.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if bad_after(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(rets[lo].2)
}

/// A return event: (return time, call time, index into the operations),
/// ordered as the search processes returns.
pub(crate) type ReturnEvent = (u64, u64, usize);

/// The returns of the completed operations of `idx`, in the order the
/// search processes them.
pub(crate) fn returns_in_order(ops: &[Operation], idx: &[usize]) -> Vec<ReturnEvent> {
    let mut rets: Vec<ReturnEvent> = idx
        .iter()
        .filter(|&&i| matches!(ops[i].outcome, Outcome::Ok(_)))
        .filter_map(|&i| ops[i].ret.map(|r| (r, ops[i].call, i)))
        .collect();
    rets.sort_unstable();
    rets
}

/// The history of `idx` cut just after the return `at`: the operations
/// called by then, those not returned yet turned into writes of unknown
/// outcome (dropped if they only read). It is linearizable iff the search
/// of the whole history still has a configuration after processing `at`
/// (a pending write may or may not have been linearized by then, a
/// pending read changes nothing).
pub(crate) fn cut_after_return(
    ops: &[Operation],
    idx: &[usize],
    at: ReturnEvent,
) -> Vec<Operation> {
    let (t, c, j) = at;
    idx.iter()
        .filter_map(|&i| {
            let o = &ops[i];
            // Calls at the return's time come before it.
            if o.call > t || matches!(o.outcome, Outcome::Failed) {
                return None;
            }
            let returned = matches!(o.outcome, Outcome::Ok(_))
                && o.ret.is_some_and(|r| (r, o.call, i) <= (t, c, j));
            if returned {
                return Some(o.clone());
            }
            match (&o.op, &o.outcome) {
                (Op::Get, _) | (Op::Cas { .. }, Outcome::Ok(Output::Swapped(false))) => None,
                _ => Some(Operation {
                    ret: None,
                    outcome: Outcome::Unknown,
                    ..o.clone()
                }),
            }
        })
        .collect()
}

impl<'a> Decider<'a> {
    /// `Ok(true)`: linearizable; `Ok(false)`: undecided.
    fn run(ops: &'a [Operation], idx: &[usize]) -> Result<bool, Stop> {
        let mut d = Decider {
            ops,
            writes: Vec::new(),
            values: StrMap::default(),
            tok_lens: Vec::new(),
            ids: StrMap::default(),
            states: Vec::new(),
        };
        let mut gets: Vec<u32> = Vec::new();
        let mut failed_cas: Vec<u32> = Vec::new();
        for &i in idx {
            let o = &ops[i];
            let ok = matches!(o.outcome, Outcome::Ok(_));
            let (kind, value, from) = match (&o.op, &o.outcome) {
                (_, Outcome::Failed) | (Op::Get, Outcome::Unknown) => continue,
                (Op::Get, _) => {
                    gets.push(i as u32);
                    continue;
                }
                (Op::Cas { .. }, Outcome::Ok(Output::Swapped(false))) => {
                    failed_cas.push(i as u32);
                    continue;
                }
                (Op::Put { value }, _) => (Kind::Put, value.as_str(), ""),
                (Op::Append { value }, _) => (Kind::Append, value.as_str(), ""),
                (Op::Cas { from, to }, _) => {
                    if from == to {
                        return Err(Stop::Ambiguous);
                    }
                    (Kind::Cas, to.as_str(), from.as_str())
                }
            };
            if value.is_empty() {
                return Err(Stop::Ambiguous);
            }
            let w = d.writes.len() as u32;
            if d.values.insert(value, w).is_some() {
                return Err(Stop::Ambiguous);
            }
            if kind == Kind::Append && !d.tok_lens.contains(&value.len()) {
                d.tok_lens.push(value.len());
            }
            d.writes.push(Write {
                kind,
                op: i as u32,
                from,
                ok,
                produces: NONE,
                tail: false,
            });
        }
        d.tok_lens.sort_unstable();
        // The initial state.
        d.ids.insert("", 0);
        d.states.push(State {
            producer: NONE,
            consumer: NONE,
        });
        // Observations: what gets read, what successful compare-and-sets
        // found.
        let mut read_state: Vec<u32> = Vec::with_capacity(gets.len());
        for &g in &gets {
            let Outcome::Ok(Output::Value(v)) = &ops[g as usize].outcome else {
                return Err(Stop::Ambiguous);
            };
            read_state.push(d.resolve(v.as_str())?);
        }
        for w in 0..d.writes.len() {
            let wr = &d.writes[w];
            if wr.kind == Kind::Cas && wr.ok {
                let from = wr.from;
                d.resolve(from)?;
            }
        }
        // Successful compare-and-sets whose result nobody saw end their
        // `from`'s chain.
        for w in 0..d.writes.len() {
            let wr = &d.writes[w];
            if wr.kind == Kind::Cas && wr.ok && wr.produces == NONE {
                let s = d.ids[wr.from] as usize;
                if d.states[s].consumer != NONE {
                    return Err(Stop::Impossible);
                }
                d.states[s].consumer = w as u32;
                d.writes[w].tail = true;
            }
        }
        d.order(&gets, &read_state, &failed_cas)
    }

    /// The write producing `s` and the state before it (`None` for a put).
    fn producer(&self, s: &'a str) -> Result<(u32, Option<&'a str>), Stop> {
        let mut found: Option<(u32, Option<&'a str>)> = None;
        if let Some(&w) = self.values.get(s) {
            let wr = &self.writes[w as usize];
            found = Some((
                w,
                match wr.kind {
                    Kind::Put => None,
                    Kind::Append => Some(""),
                    Kind::Cas => Some(wr.from),
                },
            ));
        }
        for &l in &self.tok_lens {
            if l >= s.len() {
                break;
            }
            let cut = s.len() - l;
            if !s.is_char_boundary(cut) {
                continue;
            }
            if let Some(&w) = self.values.get(&s[cut..]) {
                if self.writes[w as usize].kind == Kind::Append {
                    if found.is_some() {
                        return Err(Stop::Ambiguous);
                    }
                    found = Some((w, Some(&s[..cut])));
                }
            }
        }
        // A non-empty string no write can produce was never current.
        found.ok_or(Stop::Impossible)
    }

    /// The id of observed state `s`, resolving its producers and
    /// predecessors (iteratively: chains may be long).
    fn resolve(&mut self, s: &'a str) -> Result<u32, Stop> {
        match self.ids.get(s) {
            Some(&NONE) => return Err(Stop::Impossible),
            Some(&id) => return Ok(id),
            None => {}
        }
        // Strings waiting for their predecessor, with their producer.
        let mut stack: Vec<(&'a str, u32)> = Vec::new();
        let mut cur = s;
        let mut pred_id;
        loop {
            let (w, pred) = self.producer(cur)?;
            self.ids.insert(cur, NONE);
            match pred {
                None => {
                    pred_id = NONE;
                    stack.push((cur, w));
                    break;
                }
                Some(p) => match self.ids.get(p) {
                    // A cycle of compare-and-sets: each needs the other
                    // to have run first.
                    Some(&NONE) => return Err(Stop::Impossible),
                    Some(&id) => {
                        pred_id = id;
                        stack.push((cur, w));
                        break;
                    }
                    None => {
                        stack.push((cur, w));
                        cur = p;
                    }
                },
            }
        }
        while let Some((t, w)) = stack.pop() {
            let id = self.states.len() as u32;
            self.states.push(State {
                producer: w,
                consumer: NONE,
            });
            self.ids.insert(t, id);
            let wr = &mut self.writes[w as usize];
            // An append that would have to produce two observed states.
            if wr.produces != NONE {
                return Err(Stop::Impossible);
            }
            wr.produces = id;
            if pred_id != NONE {
                // Two read-modify-writes that both found this state.
                if self.states[pred_id as usize].consumer != NONE {
                    return Err(Stop::Impossible);
                }
                self.states[pred_id as usize].consumer = w;
            }
            pred_id = id;
        }
        Ok(pred_id)
    }

    /// Builds the blocks, checks them, orders them, places the failed
    /// compare-and-sets and replays the result.
    fn order(&self, gets: &[u32], read_state: &[u32], failed_cas: &[u32]) -> Result<bool, Stop> {
        let ops = self.ops;
        // Reads grouped by state, each group by call.
        let mut reads: Vec<(u32, u64, u32)> = gets
            .iter()
            .zip(read_state)
            .map(|(&g, &s)| (s, call_of(&ops[g as usize]), g))
            .collect();
        reads.sort_unstable();
        let mut first_read: Vec<u32> = vec![0; self.states.len() + 1];
        for &(s, _, _) in &reads {
            first_read[s as usize + 1] += 1;
        }
        for s in 0..self.states.len() {
            first_read[s + 1] += first_read[s];
        }
        let mut seq_ops: Vec<u32> = Vec::with_capacity(ops.len());
        let mut blocks: Vec<Block> = Vec::new();
        let mut init_block: Option<Block> = None;
        let mut covered = 0usize;
        // Chains, from their heads: the initial state and put results.
        for head in 0..self.states.len() {
            let st = &self.states[head];
            if st.producer != NONE && self.writes[st.producer as usize].kind != Kind::Put {
                continue;
            }
            let start = seq_ops.len() as u32;
            // Latest call so far; the initial state is before everything.
            let mut running: u64 = 0;
            let (mut lo, mut hi) = (INF, 0u64);
            let mut s = head as u32;
            let mut take = |op: u32, running: &mut u64, group_max: Option<&mut u64>| {
                let o = &ops[op as usize];
                let (c, r) = (call_of(o), ret_of(o));
                if r < *running {
                    return Err(Stop::Impossible);
                }
                lo = lo.min(r);
                hi = hi.max(c);
                match group_max {
                    Some(m) => *m = (*m).max(c),
                    None => *running = (*running).max(c),
                }
                Ok(())
            };
            loop {
                covered += 1;
                let state = &self.states[s as usize];
                if state.producer != NONE {
                    let op = self.writes[state.producer as usize].op;
                    take(op, &mut running, None)?;
                    seq_ops.push(op);
                }
                let mut group_max = running;
                for &(_, _, g) in
                    &reads[first_read[s as usize] as usize..first_read[s as usize + 1] as usize]
                {
                    take(g, &mut running, Some(&mut group_max))?;
                    seq_ops.push(g);
                }
                running = group_max;
                let c = state.consumer;
                if c == NONE {
                    break;
                }
                let wr = &self.writes[c as usize];
                if wr.tail {
                    take(wr.op, &mut running, None)?;
                    seq_ops.push(wr.op);
                    break;
                }
                s = wr.produces;
            }
            let end = seq_ops.len() as u32;
            let block = Block { start, end, lo, hi };
            if head == 0 {
                init_block = Some(block);
            } else {
                blocks.push(block);
            }
        }
        debug_assert_eq!(covered, self.states.len(), "every state is in a chain");
        // Completed writes nobody observed: blocks of one.
        for wr in &self.writes {
            if wr.ok && wr.produces == NONE && !wr.tail {
                let o = &ops[wr.op as usize];
                let start = seq_ops.len() as u32;
                seq_ops.push(wr.op);
                blocks.push(Block {
                    start,
                    end: start + 1,
                    lo: ret_of(o),
                    hi: call_of(o),
                });
            }
        }
        // The initial chain comes first.
        if let Some(ib) = &init_block {
            if blocks.iter().any(|b| b.lo < ib.hi) {
                return Err(Stop::Impossible);
            }
        }
        let order = order_blocks(&blocks, &seq_ops, ops)?;
        let mut seq: Vec<u32> = Vec::with_capacity(seq_ops.len() + failed_cas.len());
        for b in init_block
            .iter()
            .chain(order.iter().map(|&k| &blocks[k as usize]))
        {
            seq.extend_from_slice(&seq_ops[b.start as usize..b.end as usize]);
        }
        let mut read_zone: Vec<(u64, u64)> = vec![(INF, 0); self.states.len()];
        for &(s, c, g) in &reads {
            let z = &mut read_zone[s as usize];
            z.0 = z.0.min(ret_of(&ops[g as usize]));
            z.1 = z.1.max(c);
        }
        self.place_and_replay(seq, failed_cas, &read_zone)
    }

    /// Places each failed compare-and-set at the first position of `seq`
    /// where real time allows it and the key does not hold its `from`,
    /// then replays everything. `reads` as in [`Decider::pinned_from`].
    fn place_and_replay(
        &self,
        seq: Vec<u32>,
        failed_cas: &[u32],
        reads: &[(u64, u64)],
    ) -> Result<bool, Stop> {
        let ops = self.ops;
        let m = seq.len();
        // prefix_call[p]: latest call among seq[..p]; suffix_ret[p]:
        // earliest return among seq[p..].
        let mut prefix_call = vec![0u64; m + 1];
        for p in 0..m {
            prefix_call[p + 1] = prefix_call[p].max(call_of(&ops[seq[p] as usize]));
        }
        let mut suffix_ret = vec![INF; m + 1];
        for p in (0..m).rev() {
            suffix_ret[p] = suffix_ret[p + 1].min(ret_of(&ops[seq[p] as usize]));
        }
        // The state at each position, as the id of the failed
        // compare-and-set `from` it equals (`NONE`: none of them).
        let mut from_id: StrMap<'_, u32> = StrMap::default();
        for &f in failed_cas {
            if let Op::Cas { from, .. } = &ops[f as usize].op {
                let n = from_id.len() as u32;
                from_id.entry(from.as_str()).or_insert(n);
            }
        }
        let mut at: Vec<u32> = Vec::with_capacity(m + 1);
        if !failed_cas.is_empty() {
            let mut state = String::new();
            at.push(from_id.get("").copied().unwrap_or(NONE));
            for &i in &seq {
                match &ops[i as usize].op {
                    Op::Put { value } => value.clone_into(&mut state),
                    Op::Append { value } => state.push_str(value),
                    Op::Cas { to, .. } => to.clone_into(&mut state),
                    Op::Get => {}
                }
                at.push(from_id.get(state.as_str()).copied().unwrap_or(NONE));
            }
        }
        // next_other[p]: the first position after p whose state differs.
        let mut next_other = vec![m + 1; at.len()];
        for p in (0..at.len().saturating_sub(1)).rev() {
            next_other[p] = if at[p + 1] != at[p] {
                p + 1
            } else {
                next_other[p + 1]
            };
        }
        // In call order, each at or after the place of every failed
        // compare-and-set that returned before its call (real time among
        // themselves; at one place they go in call order).
        let mut by_call: Vec<u32> = failed_cas.to_vec();
        by_call.sort_unstable_by_key(|&f| (call_of(&ops[f as usize]), f));
        let mut returned: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        let mut floor = 0usize;
        let mut placed: Vec<(usize, u64, u32)> = Vec::with_capacity(failed_cas.len());
        for &f in &by_call {
            let o = &ops[f as usize];
            let Op::Cas { from, .. } = &o.op else {
                unreachable!("failed compare-and-sets only")
            };
            if self.pinned_from(o, from, reads) {
                return Err(Stop::Impossible);
            }
            let (c, r) = (call_of(o), ret_of(o));
            while let Some(&Reverse((ret, pos))) = returned.peek() {
                if ret >= c {
                    break;
                }
                floor = floor.max(pos);
                returned.pop();
            }
            let p_lo = suffix_ret.partition_point(|&x| x < c).max(floor);
            let p_hi = prefix_call.partition_point(|&x| x <= r);
            if p_lo >= p_hi {
                return Ok(false);
            }
            let f_id = from_id[from.as_str()];
            let pos = if at[p_lo] != f_id {
                p_lo
            } else if next_other[p_lo] < p_hi {
                next_other[p_lo]
            } else {
                return Ok(false);
            };
            placed.push((pos, c, f));
            returned.push(Reverse((r, pos)));
        }
        placed.sort_unstable();
        let mut full: Vec<u32> = Vec::with_capacity(m + placed.len());
        let mut k = 0;
        for (p, &i) in seq.iter().enumerate() {
            while k < placed.len() && placed[k].0 == p {
                full.push(placed[k].2);
                k += 1;
            }
            full.push(i);
        }
        full.extend(placed[k..].iter().map(|x| x.2));
        Ok(self.replay(&full))
    }

    /// Whether failed compare-and-set `o`'s `from` is current throughout
    /// its interval in every linearization: current before its call (the
    /// initial state, or its producer or a read of it returned by then)
    /// and still after its return (a read of it or its consumer was called
    /// after). `reads[s]` is (earliest return, latest call) of state `s`'s
    /// reads.
    fn pinned_from(&self, o: &Operation, from: &str, reads: &[(u64, u64)]) -> bool {
        let Some(&s) = self.ids.get(from) else {
            return false;
        };
        let (c, r) = (call_of(o), ret_of(o));
        let st = &self.states[s as usize];
        let before = st.producer == NONE
            || ret_of(&self.ops[self.writes[st.producer as usize].op as usize]) < c
            || reads[s as usize].0 < c;
        let after = (st.consumer != NONE
            && call_of(&self.ops[self.writes[st.consumer as usize].op as usize]) > r)
            || reads[s as usize].1 > r;
        before && after
    }

    /// Replays `full` from `""`: every completed operation's result holds
    /// and no operation comes after one called after it returned.
    fn replay(&self, full: &[u32]) -> bool {
        let mut state = String::new();
        let mut latest_call = 0u64;
        for &i in full {
            let o = &self.ops[i as usize];
            if ret_of(o) < latest_call {
                return false;
            }
            latest_call = latest_call.max(call_of(o));
            match (&o.op, &o.outcome) {
                (Op::Get, Outcome::Ok(Output::Value(v))) => {
                    if *v != state {
                        return false;
                    }
                }
                (Op::Put { value }, _) => value.clone_into(&mut state),
                (Op::Append { value }, _) => state.push_str(value),
                (Op::Cas { from, .. }, Outcome::Ok(Output::Swapped(false))) => {
                    if *from == state {
                        return false;
                    }
                }
                (Op::Cas { from, to }, _) => {
                    if *from != state {
                        return false;
                    }
                    to.clone_into(&mut state);
                }
                _ => return false,
            }
        }
        true
    }
}
