//! The linearization search for any [`Model`]: depth-first passes that
//! look for one valid order, then the sweep of [`crate::sweep`] with the
//! model's states.
//!
//! The sweep ([`crate::sweep`], shared with the key-value search) keeps
//! every configuration alive at each return and so decides any history
//! within its budget. Before it, depth-first passes look for one valid
//! order only: first, when the caller has a witness (`hints`, where each
//! operation took effect in the system's own order), that order
//! (`Pass::Hinted`); then one with unknown operations taking effect in
//! call order (`Pass::Ordered`: the applied set is one number, a
//! subset-sum table instead of a tree of subsets); then any order
//! (`Pass::Free`). They only ever find an order the search built, so a
//! wrong witness costs its steps and nothing else; when they give up the
//! sweep runs. Both use the same moves (`Search`, the sweep's
//! `Space`): eager reads, the symmetry rule, unknown operations
//! available from their call on, applied at most once, among identical
//! ones the earliest called first. The linearized set is a bitset as wide
//! as the part's largest number of pending operations: no pending limit.
//! Both spend their limits through the one `Budget` of `limits`.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use super::memory::{table_peak_bytes, vec_peak_bytes};
use super::{describe_op, timeline, Model, ModelFailure, Op, Outcome, PartOutcome};
use crate::hash::Fx;
use crate::limits::{Budget, CheckConfig, Limit};
use crate::shrink::{shrink, SubHistories};
use crate::sweep::{self, applied_bytes, eager_reads, Bits, Slots, Space, Sweep, Window};

type FxBuild = BuildHasherDefault<Fx>;
type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
type FxHashSet<K> = HashSet<K, FxBuild>;

/// A configuration of the generic search: a model state and a bitset as
/// wide as the part's most pending operations.
type Config<S> = sweep::Config<S, Bits>;

/// The heap bytes of `c`: its bitset, its applied list and what its
/// state holds (its inline size is counted where it is stored).
fn config_heap_bytes<M: Model>(model: &M, c: &Config<M::State>) -> usize {
    c.lin.heap_bytes() + applied_bytes(&c.applied) + model.state_heap_bytes(&c.state)
}

/// One operation of the part, prepared.
struct POp<'a, M: Model> {
    input: &'a M::Input,
    output: Option<&'a M::Output>,
    /// Index in the checked history.
    orig: usize,
    /// Symmetry class: same input and output (completed) or same input
    /// (unknown).
    kind: u32,
    read_only: bool,
}

impl<M: Model> POp<'_, M> {
    /// Whether this is a read-only completed operation that holds in
    /// `state` ([`eager_reads`]).
    #[inline]
    fn read_holds(&self, model: &M, state: &M::State) -> bool {
        self.read_only
            && self
                .output
                .is_some_and(|out| model.step(state, self.input, out).is_some())
    }
}

struct Group {
    /// Members in call order (indices into the part's operations).
    members: Vec<u32>,
    /// Members before this one are retired (applied everywhere).
    start: usize,
}

/// The generic search's [`Space`]: one part's operations, the model, and
/// the groups of identical unknown operations.
struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<POp<'a, M>>,
    /// Per operation: when it returns (`2 × ret + 1`, as in
    /// [`sweep::events`]; unknown ones never).
    rets: Vec<u128>,
    /// The pending completed operations, by kind (rule S).
    window: Window<Bits, u32>,
    /// Per completed operation: its slot while pending.
    slot_of: Vec<u32>,
    groups: Vec<Group>,
    group_of_kind: FxHashMap<u32, u32>,
    /// Per operation: its group (unknown operations).
    group_of_op: Vec<u32>,
    /// The unknown operations called so far, in call order.
    unknown_order: Vec<u32>,
    /// The configuration the part starts in.
    first: Config<M::State>,
    /// The moves of the configuration being expanded (`Space::expand`).
    moves: Vec<Config<M::State>>,
}

/// The events of a part ([`sweep::events`]), by part-local index; failed
/// operations take no part.
fn events<I, O>(ops: &[Op<I, O>], idx: &[usize]) -> Vec<(u128, u32)> {
    sweep::events(idx.len(), |j| {
        let o = &ops[idx[j]];
        match (&o.outcome, o.ret) {
            (Outcome::Failed, _) => None,
            (Outcome::Ok(_), Some(r)) => Some((o.call, Some(r))),
            _ => Some((o.call, None)),
        }
    })
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Op<M::Input, M::Output>], idx: &[usize]) -> Self {
        let mut kinds: FxHashMap<(&M::Input, Option<&M::Output>), u32> = FxHashMap::default();
        let mut pops = Vec::with_capacity(idx.len());
        for &i in idx {
            let o = &ops[i];
            let output = o.output();
            let n = kinds.len() as u32;
            let kind = *kinds.entry((&o.input, output)).or_insert(n);
            pops.push(POp {
                input: &o.input,
                output,
                orig: i,
                kind,
                read_only: output.is_some_and(|out| model.read_only(&o.input, out)),
            });
        }
        // The widest the pending set gets.
        let mut pending = 0usize;
        let mut widest = 0usize;
        for (t, _) in events(ops, idx) {
            if t % 2 == 0 {
                // Only completed operations take a slot; an unknown one
                // counts too here, which only overestimates.
                pending += 1;
                widest = widest.max(pending);
            } else {
                pending -= 1;
            }
        }
        let words = widest.div_ceil(64).max(1);
        let rets = idx
            .iter()
            .map(|&i| match (&ops[i].outcome, ops[i].ret) {
                (Outcome::Ok(_), Some(r)) => 2 * r as u128 + 1,
                _ => u128::MAX,
            })
            .collect();
        Search {
            model,
            group_of_op: vec![u32::MAX; pops.len()],
            unknown_order: Vec::new(),
            slot_of: vec![u32::MAX; pops.len()],
            ops: pops,
            rets,
            window: Window::new(Bits::new(words), words * 64, 0),
            groups: Vec::new(),
            group_of_kind: FxHashMap::default(),
            first: Config {
                state: model.init(),
                lin: Bits::new(words),
                applied: Vec::new(),
                run: false,
            },
            moves: Vec::new(),
        }
    }

    /// The completed operation `j` is called: it takes the lowest free
    /// slot, linked to the pending operations of its kind (rule S).
    fn call_completed(&mut self, j: u32) -> Result<(), Limit> {
        let kind = self.ops[j as usize].kind;
        let Some(slot) = self.window.call(j, kind, self.rets[j as usize]) else {
            // Cannot happen: the width was computed from the same events.
            return Err(Limit::PendingOperations(self.first.lin.0.len() * 64));
        };
        self.slot_of[j as usize] = slot as u32;
        Ok(())
    }

    fn add_unknown(&mut self, j: u32) {
        let kind = self.ops[j as usize].kind;
        let next = self.groups.len() as u32;
        let g = *self.group_of_kind.entry(kind).or_insert(next);
        if g == next {
            self.groups.push(Group {
                members: Vec::new(),
                start: 0,
            });
        }
        self.groups[g as usize].members.push(j);
        self.group_of_op[j as usize] = g;
        self.unknown_order.push(j);
    }

    /// The ordered pass's successors of `c` by one unknown operation: its
    /// `applied` is one number, how many unknown operations (in call
    /// order) are decided; any undecided one may take effect, deciding
    /// every one called before it as never taking effect. Configurations
    /// then forget which ones took effect, so that equal states merge.
    fn ordered_unknown_successors(&self, c: &Config<M::State>, out: &mut Vec<Config<M::State>>) {
        let decided = c.applied.first().map_or(0, |&n| n as usize);
        assert!(
            decided <= self.unknown_order.len(),
            "decided only called ones"
        );
        for (k, &m) in self.unknown_order.iter().enumerate().skip(decided) {
            let input = self.ops[m as usize].input;
            for s2 in self.model.step_unknown(&c.state, input) {
                if s2 != c.state {
                    out.push(Config {
                        state: s2,
                        lin: c.lin.clone(),
                        applied: vec![k as u32 + 1],
                        run: false,
                    });
                }
            }
        }
    }

    /// The hinted pass's successors of `c` by one unknown operation: its
    /// `applied` is one number `n`, how many of the hinted ones
    /// (`hinted`, in the order of their keys) have taken effect; only the
    /// next one may, once called (`called`), in each state it may lead
    /// to (an unchanged state too: it still counts as taken effect).
    fn hinted_unknown_successors(
        &self,
        c: &Config<M::State>,
        hinted: &[u32],
        called: impl Fn(u32) -> bool,
        out: &mut Vec<Config<M::State>>,
    ) {
        let n = c.applied.first().map_or(0, |&n| n as usize);
        let Some(&m) = hinted.get(n) else {
            return;
        };
        if !called(m) {
            return;
        }
        for s2 in self
            .model
            .step_unknown(&c.state, self.ops[m as usize].input)
        {
            out.push(Config {
                state: s2,
                lin: c.lin.clone(),
                applied: vec![n as u32 + 1],
                run: false,
            });
        }
    }

    /// The configurations `c` leads to by applying one unknown operation:
    /// of each group of identical ones, the earliest called not applied
    /// yet, in each state it may lead to that differs from `c`'s.
    fn unknown_successors(&self, c: &Config<M::State>, out: &mut Vec<Config<M::State>>) {
        if self.groups.is_empty() {
            return;
        }
        let mut counts: FxHashMap<u32, usize> = FxHashMap::default();
        for &m in &c.applied {
            *counts.entry(self.group_of_op[m as usize]).or_default() += 1;
        }
        for (g, group) in self.groups.iter().enumerate() {
            let n = counts.get(&(g as u32)).copied().unwrap_or(0);
            let Some(&m) = group.members.get(group.start + n) else {
                continue;
            };
            let input = self.ops[m as usize].input;
            for s2 in self.model.step_unknown(&c.state, input) {
                if s2 == c.state {
                    continue;
                }
                let mut applied = c.applied.clone();
                let at = applied.partition_point(|&x| x < m);
                applied.insert(at, m);
                out.push(Config {
                    state: s2,
                    lin: c.lin.clone(),
                    applied,
                    run: false,
                });
            }
        }
    }

    /// Applies one event (as the sweep does, without the configurations).
    fn apply_event(&mut self, (t, j): (u128, u32)) {
        let completed = self.ops[j as usize].output.is_some();
        if t % 2 == 1 {
            self.window.free(self.slot_of[j as usize] as usize);
        } else if completed {
            self.call_completed(j)
                .expect("the width was computed from these events");
        } else {
            self.add_unknown(j);
        }
    }

    /// Undoes [`Search::apply_event`] of the last event applied. Every
    /// event after it is undone already, so the slots are as they were
    /// then: a call frees the slot it took, a return takes its slot back
    /// and relinks its operation to the pending ones of its kind, which
    /// all return later (those returning earlier already have).
    fn undo_event(&mut self, (t, j): (u128, u32)) {
        let completed = self.ops[j as usize].output.is_some();
        let slot = self.slot_of[j as usize] as usize;
        if t % 2 == 1 {
            let kind = self.ops[j as usize].kind;
            self.window.occupy(slot, j, kind, self.rets[j as usize]);
            debug_assert!(
                self.window.earlier[slot].ones().next().is_none(),
                "nothing of its kind returning earlier is pending"
            );
        } else if completed {
            self.window.free(slot);
        } else {
            let g = self.group_of_op[j as usize] as usize;
            let popped = self.groups[g].members.pop();
            assert_eq!(popped, Some(j), "unknown calls are undone last first");
            let popped = self.unknown_order.pop();
            assert_eq!(popped, Some(j), "unknown calls are undone last first");
        }
    }

    /// `c` with the completed operation in pending slot `p` linearized,
    /// if it may go next (not linearized yet, every pending operation of
    /// its kind that returns earlier is, not read-only) and the model
    /// accepts it; with the index of that operation in the part.
    fn linearized(&self, c: &Config<M::State>, p: usize) -> Option<(usize, Config<M::State>)> {
        self.linearized_as(c, p, true)
    }

    /// [`Search::linearized`], with the symmetry rule (rule S)
    /// or, `symmetric` false, without it: any pending operation may go
    /// next, whatever its kind's return order (more orders, each still
    /// valid).
    fn linearized_as(
        &self,
        c: &Config<M::State>,
        p: usize,
        symmetric: bool,
    ) -> Option<(usize, Config<M::State>)> {
        if c.lin.has(p) || symmetric && !self.window.may_go(p, &c.lin) {
            return None;
        }
        let j = self.window.slot_op[p] as usize;
        let op = &self.ops[j];
        if op.read_only {
            return None;
        }
        let state = self.model.step(&c.state, op.input, op.output?)?;
        let mut lin = c.lin.clone();
        lin.add(p);
        let applied = c.applied.clone();
        Some((
            j,
            Config {
                state,
                lin,
                applied,
                run: false,
            },
        ))
    }
}

impl<M: Model> Space for Search<'_, M> {
    type State = M::State;
    type Lin = Bits;
    // The generic search runs after the depth-first passes gave up, on
    // the parts that need it whole; the pace limit is the key-value
    // search's guard against a key that would fill the budget.
    const PACED: bool = false;

    fn state_heap_bytes(&self, state: &M::State) -> usize {
        self.model.state_heap_bytes(state)
    }

    fn call(&mut self, j: u32) -> Result<(), Limit> {
        if self.ops[j as usize].output.is_some() {
            self.call_completed(j)
        } else {
            self.add_unknown(j);
            Ok(())
        }
    }

    fn slot_of(&self, j: u32) -> usize {
        self.slot_of[j as usize] as usize
    }

    fn expand(&mut self, c: Config<M::State>, offer: &mut impl FnMut(&mut Self, Config<M::State>)) {
        let mut lin = c.lin.clone();
        let (model, ops, slot_op, state) = (self.model, &self.ops, &self.window.slot_op, &c.state);
        if eager_reads(&self.window.pending, &mut lin, |p| {
            ops[slot_op[p] as usize].read_holds(model, state)
        }) {
            let eager = Config {
                state: c.state,
                lin,
                applied: c.applied,
                run: false,
            };
            offer(self, eager);
            return;
        }
        // (A read-only one does not hold here, else it was linearized
        // above.)
        // The moves are gathered first (offering one needs the whole
        // space), in a buffer kept between expansions.
        let mut moves = std::mem::take(&mut self.moves);
        moves.clear();
        self.window.pending.each(|p| {
            if let Some((_, c2)) = self.linearized(&c, p) {
                moves.push(c2);
            }
        });
        self.unknown_successors(&c, &mut moves);
        for c2 in moves.drain(..) {
            offer(self, c2);
        }
        self.moves = moves;
    }

    fn returned(&mut self, j: u32, _frontier: &mut [Config<M::State>]) -> bool {
        self.window.free(self.slot_of[j as usize] as usize);
        false
    }

    fn retire(&mut self, retired: &[u32]) {
        // Members are applied earliest first, so the retired ones are a
        // prefix of each group.
        for &m in retired {
            let g = self.group_of_op[m as usize] as usize;
            self.groups[g].start += 1;
        }
    }
}

/// The distinct states of `frontier`, in frontier order.
fn raw_states<S: Clone + Eq + std::hash::Hash>(frontier: &[Config<S>]) -> Vec<S> {
    let mut seen: FxHashSet<&S> = FxHashSet::default();
    let mut out: Vec<S> = Vec::new();
    for c in frontier {
        if seen.insert(&c.state) {
            out.push(c.state.clone());
        }
    }
    out
}

/// How far to run: to the end, or to just before the return of one
/// operation (index into the history).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    End,
    Before(usize),
}

enum Ran<S> {
    Done,
    Stopped(Vec<S>),
    Stuck { stuck: usize, states: Vec<S> },
    Exhausted(Limit),
}

fn run<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut Budget,
    until: Until,
) -> Ran<M::State> {
    let search = Search::new(model, ops, idx);
    let first = search.first.clone();
    let until = match until {
        Until::End => None,
        Until::Before(i) => idx.iter().position(|&k| k == i).map(|j| j as u32),
    };
    let mut sweep = Sweep::new(search, first);
    match sweep.run(&events(ops, idx), budget, until) {
        sweep::Ran::Done => Ran::Done,
        sweep::Ran::Stopped => Ran::Stopped(raw_states(&sweep.frontier)),
        sweep::Ran::Stuck(j) => Ran::Stuck {
            stuck: sweep.space.ops[j as usize].orig,
            states: raw_states(&sweep.frontier),
        },
        sweep::Ran::Exhausted(limit) => Ran::Exhausted(limit),
    }
}

/// Which orders a depth-first pass tries.
#[derive(Clone, Copy)]
enum Pass<'h> {
    /// Only the witness's: unknown operations with a key take effect in
    /// key order, each one (those without never), and every step tries
    /// the operations in key order first, with no symmetry rule
    /// (`hints[i]`: the key of operation `i` of the history).
    Hinted(&'h [Option<u64>]),
    /// Unknown operations take effect in call order only
    /// ([`Search::ordered_unknown_successors`]).
    Ordered,
    /// Every order, up to the search's rules.
    Free,
}

/// What the depth-first pass found.
enum Depth<S> {
    /// A linearization.
    Found,
    /// None exists: every configuration was visited. Where the search
    /// got stuck and the states just before, as the sweep reports them.
    Stuck { stuck: usize, states: Vec<S> },
    /// It ran out of its steps or memory: nothing is known.
    GaveUp,
}

/// One node of the depth-first pass: a configuration at a level (the
/// number of returns passed).
type Node<S> = (u32, Config<S>);

/// A successor of a depth-first node and the order it is tried in:
/// (witness key, return), smallest first.
type Successor<S> = ((u128, u128), Config<S>);

/// The depth-first pass: the same configurations, transitions and rules
/// as the sweep (eager reads, symmetry, unknown operations earliest first
/// among identical ones), explored depth first instead of one return at
/// a time, completed operations tried before unknown ones are applied, and
/// each (level, configuration) visited once. Why: the sweep keeps every
/// configuration alive at each return, and operations of unknown outcome,
/// which may take effect at any later instant or never, multiply them
/// (a bank history of 317 operations, 36 of them unknown, took 34 s),
/// while one valid order is usually found at once by trying the completed
/// operations first and backtracking (the idea of Wing & Gong's search
/// with Lowe's memoisation, as in porcupine). When it visits everything
/// without finding one, the deepest level it reached is where the sweep
/// gets stuck, and the configurations there are the sweep's (up to the
/// sweep's dominance rule, which drops none of their states). At most
/// `max_steps` steps, `max_visited` configurations and `memory_bytes_max`
/// bytes (counted as the sweep counts them); beyond, it gives up.
///
/// `pass`: which orders it tries ([`Pass`]); in the ordered and hinted
/// passes only `Found` means anything (the caller treats `Stuck` as
/// giving up).
#[allow(clippy::too_many_arguments)]
fn depth_first<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut Budget,
    max_steps: u64,
    max_visited: usize,
    memory_bytes_max: u64,
    pass: Pass<'_>,
) -> Result<Depth<M::State>, Limit> {
    let mut s = Search::new(model, ops, idx);
    let ev = events(ops, idx);
    // The hinted pass: each operation's key (part-local), the unknown
    // operations with one in key order, and when each is called.
    let keys: Vec<u64> = match pass {
        Pass::Hinted(hints) => idx
            .iter()
            .map(|&i| hints.get(i).copied().flatten().unwrap_or(u64::MAX))
            .collect(),
        _ => Vec::new(),
    };
    let mut hinted: Vec<u32> = Vec::new();
    let mut call_event: Vec<usize> = Vec::new();
    if let Pass::Hinted(_) = pass {
        call_event = vec![usize::MAX; idx.len()];
        for (e, &(t, j)) in ev.iter().enumerate() {
            if t % 2 == 0 {
                call_event[j as usize] = e;
                if s.ops[j as usize].output.is_none() && keys[j as usize] != u64::MAX {
                    hinted.push(j);
                }
            }
        }
        hinted.sort_by_key(|&j| (keys[j as usize], call_event[j as usize]));
    }
    // Level k: every event before the k-th return applied.
    let returns: Vec<usize> = (0..ev.len()).filter(|&e| ev[e].0 % 2 == 1).collect();
    let levels = returns.len();
    let mut applied_events = 0usize;
    let mut visited: FxHashSet<Node<M::State>> = FxHashSet::default();
    let mut stack: Vec<Node<M::State>> = vec![(0, s.first.clone())];
    let mut deepest = 0usize;
    let mut deepest_states: Vec<M::State> = Vec::new();
    let mut deepest_seen: FxHashSet<M::State> = FxHashSet::default();
    let mut steps = 0u64;
    let mut successors: Vec<Successor<M::State>> = Vec::new();
    let node_bytes = std::mem::size_of::<Node<M::State>>();
    let state_bytes = std::mem::size_of::<M::State>();
    // The heap of the configurations in `visited`, `stack` and
    // `deepest_states`; their inline sizes are counted from capacities.
    let mut heap_bytes = config_heap_bytes(model, &stack[0].1);
    while let Some((level, mut c)) = stack.pop() {
        let popped_bytes = config_heap_bytes(model, &c);
        assert!(heap_bytes >= popped_bytes, "counted when pushed");
        heap_bytes -= popped_bytes;
        let level = level as usize;
        if level == levels {
            return Ok(Depth::Found);
        }
        budget.step()?;
        steps += 1;
        if steps > max_steps || visited.len() > max_visited {
            return Ok(Depth::GaveUp);
        }
        let held_bytes = heap_bytes
            + table_peak_bytes(visited.len(), visited.capacity(), node_bytes)
            + vec_peak_bytes(stack.len(), stack.capacity(), node_bytes)
            + vec_peak_bytes(deepest_states.len(), deepest_states.capacity(), state_bytes)
            + table_peak_bytes(deepest_seen.len(), deepest_seen.capacity(), state_bytes);
        if budget
            .memory(held_bytes, memory_bytes_max, visited.len() + stack.len())
            .is_err()
        {
            return Ok(Depth::GaveUp);
        }
        // Bring the pending set to this level, forward or back.
        let want = returns[level];
        while applied_events < want {
            s.apply_event(ev[applied_events]);
            applied_events += 1;
        }
        while applied_events > want {
            applied_events -= 1;
            s.undo_event(ev[applied_events]);
        }
        let target = s.slot_of[ev[want].1 as usize] as usize;
        let state = &c.state;
        eager_reads(&s.window.pending, &mut c.lin, |p| {
            s.ops[s.window.slot_op[p] as usize].read_holds(model, state)
        });
        let copy = c.clone();
        let copy_bytes = config_heap_bytes(model, &copy);
        if !visited.insert((level as u32, copy)) {
            continue;
        }
        heap_bytes += copy_bytes;
        if level > deepest {
            deepest = level;
            heap_bytes -= 2 * deepest_states
                .iter()
                .map(|s| model.state_heap_bytes(s))
                .sum::<usize>();
            deepest_states.clear();
            deepest_seen.clear();
        }
        // A set beside the list: a linear `contains` made each step cost
        // as many comparisons as the deepest level had states (seconds
        // per thousand steps on a history with dozens of unknown
        // operations).
        if level == deepest && deepest_seen.insert(c.state.clone()) {
            let state = c.state.clone();
            heap_bytes += 2 * model.state_heap_bytes(&state);
            deepest_states.push(state);
        }
        if c.lin.has(target) {
            c.lin.remove(target);
            heap_bytes += config_heap_bytes(model, &c);
            stack.push(((level + 1) as u32, c));
            continue;
        }
        // Completed operations, earliest return first, then unknown ones;
        // pushed in reverse so that the first is tried first. The hinted
        // pass tries them all in the order of their keys.
        successors.clear();
        let hinted_pass = matches!(pass, Pass::Hinted(_));
        for p in s.window.pending.ones() {
            if let Some((j, c2)) = s.linearized_as(&c, p, !hinted_pass) {
                let first = if hinted_pass { keys[j] as u128 } else { 0 };
                successors.push(((first, s.rets[j]), c2));
            }
        }
        let mut unknown: Vec<Config<M::State>> = Vec::new();
        match pass {
            Pass::Hinted(_) => {
                let called = |m: u32| call_event[m as usize] < applied_events;
                s.hinted_unknown_successors(&c, &hinted, called, &mut unknown);
                let n = c.applied.first().map_or(0, |&n| n as usize);
                for c2 in unknown.drain(..) {
                    let key = keys[hinted[n] as usize] as u128;
                    successors.push(((key, u128::MAX), c2));
                }
            }
            Pass::Ordered => s.ordered_unknown_successors(&c, &mut unknown),
            Pass::Free => s.unknown_successors(&c, &mut unknown),
        }
        successors.sort_by_key(|x| x.0);
        for c2 in unknown.into_iter().rev() {
            heap_bytes += config_heap_bytes(model, &c2);
            stack.push((level as u32, c2));
        }
        for (_, c2) in successors.drain(..).rev() {
            heap_bytes += config_heap_bytes(model, &c2);
            stack.push((level as u32, c2));
        }
    }
    let stuck = s.ops[ev[returns[deepest]].1 as usize].orig;
    Ok(Depth::Stuck {
        stuck,
        states: deepest_states,
    })
}

/// The depth-first pass's share of a part's budget: at least 1,000,000
/// steps, or 256 per operation, at most half of what is left (the sweep
/// gets the rest when it gives up).
fn depth_first_steps(ops: usize, budget: &Budget) -> u64 {
    (ops as u64)
        .saturating_mul(256)
        .max(1_000_000)
        .min(budget.max_steps.saturating_sub(budget.steps) / 2)
}

/// The hinted pass's share of a part's budget: 64 steps per operation
/// (a right witness needs about 3), at least 10,000, at most a quarter of
/// what is left: a wrong witness costs little.
fn hinted_steps(ops: usize, budget: &Budget) -> u64 {
    (ops as u64)
        .saturating_mul(64)
        .max(10_000)
        .min(budget.max_steps.saturating_sub(budget.steps) / 4)
}

/// Checks one part: the hinted pass if `hints` name an order, the
/// ordered and then the complete depth-first pass, then the sweep if
/// those gave up.
fn search_part<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut Budget,
    hints: &[Option<u64>],
) -> Ran<M::State> {
    if !budget.depth_first {
        return run(model, ops, idx, budget, Until::End);
    }
    let visited = budget.max_frontier.saturating_mul(4);
    // Half the memory: a pass that fills it gives up to the sweep, which
    // keeps one return's configurations instead of every level's, and
    // starts once this pass's memory is freed.
    let memory_bytes = (budget.memory_bytes_max / 2).max(1);
    // The witness's order first, when there is one, then the ordered
    // pass (it finds the orders of most histories with many unknown
    // operations in a fraction of the others' steps): a `Found` is an
    // order this search built and the model accepted, as in any pass;
    // anything else is forgotten (a wrong witness only costs its steps).
    let hinted = idx
        .iter()
        .any(|&i| hints.get(i).is_some_and(|h| h.is_some()));
    let first = hinted.then_some(Pass::Hinted(hints));
    for pass in first.into_iter().chain([Pass::Ordered]) {
        let steps = match pass {
            Pass::Hinted(_) => hinted_steps(idx.len(), budget),
            _ => depth_first_steps(idx.len(), budget),
        };
        match depth_first(model, ops, idx, budget, steps, visited, memory_bytes, pass) {
            Err(limit) => return Ran::Exhausted(limit),
            Ok(Depth::Found) => return Ran::Done,
            Ok(Depth::Stuck { .. } | Depth::GaveUp) => {}
        }
    }
    let steps = depth_first_steps(idx.len(), budget);
    let pass = Pass::Free;
    match depth_first(model, ops, idx, budget, steps, visited, memory_bytes, pass) {
        Err(limit) => Ran::Exhausted(limit),
        Ok(Depth::Found) => Ran::Done,
        Ok(Depth::Stuck { stuck, states }) => Ran::Stuck { stuck, states },
        Ok(Depth::GaveUp) => run(model, ops, idx, budget, Until::End),
    }
}

/// Checks one part with the search, trying first the order `hints`
/// name (empty: none; see [`super::check_hinted`]).
pub(crate) fn check_part<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut Budget,
    hints: &[Option<u64>],
) -> PartOutcome {
    match search_part(model, ops, idx, budget, hints) {
        Ran::Done | Ran::Stopped(_) => PartOutcome::Ok,
        Ran::Stuck { stuck, states } => PartOutcome::Fail {
            stuck,
            states: describe_states(model, &states),
        },
        Ran::Exhausted(limit) => PartOutcome::Exhausted(limit),
    }
}

/// States described, sorted, at most 8 and a count of the rest.
pub(crate) fn describe_states<M: Model>(model: &M, states: &[M::State]) -> Vec<String> {
    shown(states.iter().map(|s| model.describe_state(s)).collect())
}

/// States (or a key's values) in words as a report shows them: sorted,
/// distinct, at most 8 and a count of the rest. Both searches' failures
/// go through it.
pub(crate) fn shown(mut states: Vec<String>) -> Vec<String> {
    states.sort();
    states.dedup();
    let n = states.len();
    if n > 8 {
        states.truncate(8);
        states.push(format!("... ({} more)", n - 8));
    }
    states
}

/// The states the object could be in just before the return of `stuck`
/// (an index into `ops`), from a search of at most `steps` steps; `None`
/// if that was not enough.
pub(crate) fn raw_states_before<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    stuck: usize,
    steps: u64,
) -> Option<Vec<M::State>> {
    let mut budget = Budget::small(steps);
    match run(model, ops, idx, &mut budget, Until::Before(stuck)) {
        Ran::Stopped(states) | Ran::Stuck { states, .. } if !states.is_empty() => Some(states),
        _ => None,
    }
}

/// [`raw_states_before`], described.
pub(crate) fn states_before<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    stuck: usize,
    steps: u64,
) -> Vec<String> {
    match raw_states_before(model, ops, idx, stuck, steps) {
        Some(states) => describe_states(model, &states),
        None => vec!["(not computed within the search budget)".to_string()],
    }
}

/// Where a search stopped short of linearizing everything: the stuck
/// operation and the states just before its return, or the limit it hit.
pub(crate) type Stuck<S> = Result<(usize, Vec<S>), Limit>;

/// Runs the search on one part with an explicit budget: `Ok(())` if
/// linearizable, else where it got stuck or the limit it reached.
pub(crate) fn search_raw<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut Budget,
) -> Result<(), Stuck<M::State>> {
    match search_part(model, ops, idx, budget, &[]) {
        Ran::Done | Ran::Stopped(_) => Ok(()),
        Ran::Stuck { stuck, states } => Err(Ok((stuck, states))),
        Ran::Exhausted(limit) => Err(Err(limit)),
    }
}

/// Checks the sub-history `idx`: `None` if `left` steps ran out,
/// `Some(Ok)` if linearizable, `Some(Err(stuck))` if not.
fn run_sub<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    left: &mut u64,
) -> Option<Result<(), usize>> {
    if *left == 0 {
        return None;
    }
    let mut budget = Budget::small(*left);
    let mut direct = false;
    let r = super::check_part(model, ops, idx, &mut budget, &mut direct, false, &[]);
    *left = left.saturating_sub(budget.steps + idx.len() as u64);
    match r {
        PartOutcome::Ok => Some(Ok(())),
        PartOutcome::Fail { stuck, .. } => Some(Err(stuck)),
        PartOutcome::Exhausted(_) => None,
    }
}

/// The generic search's sub-histories, for [`crate::shrink`]. With
/// `sources`, an explanation must also be linearizable with the stuck
/// operation taking effect at any instant ([`relaxed_holds`]): then the
/// sub-history keeps the operations that produced what the stuck one saw,
/// and is not linearizable only because of when that happened.
struct GenericSub<'a, M: Model> {
    model: &'a M,
    ops: &'a [Op<M::Input, M::Output>],
    sources: bool,
}

impl<M: Model> SubHistories for GenericSub<'_, M> {
    fn run(&self, with: &[usize], left: &mut u64) -> Option<Result<(), usize>> {
        let mut sorted = with.to_vec();
        sorted.sort_unstable();
        run_sub(self.model, self.ops, &sorted, left)
    }

    fn read_only(&self, op: usize) -> bool {
        let o = &self.ops[op];
        o.output()
            .is_some_and(|out| self.model.read_only(&o.input, out))
    }

    fn also_explains(&self, with: &[usize], stuck: usize, left: &mut u64) -> Option<bool> {
        if !self.sources {
            return Some(true);
        }
        let mut sorted = with.to_vec();
        sorted.sort_unstable();
        relaxed_holds(self.model, self.ops, &sorted, stuck, left)
    }
}

/// Whether the sub-history `with` plus the stuck operation, its interval
/// stretched over the whole sub-history, is linearizable: whether some
/// state these operations lead to accepts what the stuck operation saw.
/// A stale read passes with the writes that produced the old value; alone
/// (from the initial state) it does not.
fn relaxed_holds<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    with: &[usize],
    stuck: usize,
    left: &mut u64,
) -> Option<bool> {
    let mut local: Vec<Op<M::Input, M::Output>> = with.iter().map(|&i| ops[i].clone()).collect();
    let last = local
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .chain(ops[stuck].ret)
        .max()
        .unwrap_or(0);
    let mut relaxed = ops[stuck].clone();
    relaxed.call = 0;
    if relaxed.ret.is_some() {
        relaxed.ret = Some(last.saturating_add(1));
    }
    local.push(relaxed);
    let idx: Vec<usize> = (0..local.len()).collect();
    Some(run_sub(model, &local, &idx, left)?.is_ok())
}

/// Explains a failure: the stuck operation with the operations pinned by
/// [`Model::pins`] and as few others as delta debugging finds within the
/// shrink budget, such that without the stuck operation the sub-history
/// is linearizable and with it not.
pub(crate) fn explain<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    part: &str,
    idx: &[usize],
    stuck: usize,
    states: Vec<String>,
    cfg: &CheckConfig,
) -> ModelFailure {
    let t = ops[stuck].ret.unwrap_or(ops[stuck].call);
    let mut prefix: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| i != stuck && ops[i].call <= t && !matches!(ops[i].outcome, Outcome::Failed))
        .collect();
    prefix.sort_by_key(|&i| (ops[i].call, i));
    let stuck_out = ops[stuck].output();
    let (pinned, others): (Vec<usize>, Vec<usize>) = prefix.iter().partition(|&&i| {
        stuck_out.is_some_and(|out| model.pins(&ops[stuck].input, out, &ops[i].input))
    });
    let mut left = cfg.shrink_steps;
    let mut found: Option<Vec<usize>> = None;
    if cfg.shrink {
        // First keeping what the stuck operation saw; a read of a value
        // no operation before it produced has no such sub-history.
        for sources in [true, false] {
            let search = GenericSub {
                model,
                ops,
                sources,
            };
            found = shrink(&search, &pinned, &others, stuck, &mut left).map(|(rest, _)| rest);
            if found.is_some() || left == 0 {
                break;
            }
        }
    }
    let (mut sub, explained) = match found {
        Some(rest) => (
            pinned.iter().chain(&rest).copied().collect::<Vec<_>>(),
            true,
        ),
        None => (prefix, false),
    };
    sub.push(stuck);
    sub.sort_by_key(|&i| (ops[i].call, ops[i].ret.unwrap_or(u64::MAX), i));
    ModelFailure {
        model: model.name(),
        part: part.to_string(),
        stuck_index: stuck,
        stuck: describe_op(model, &ops[stuck]),
        possible_states: states,
        timeline: timeline(model, ops, &sub, Some(stuck)),
        sub_history: sub,
        explained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::counting;
    use crate::models::{Counter, CounterInput as In, CounterOutput as Out};
    use crate::{check_hinted, check_with, Verdict};

    /// The counter with reads that are not `read_only`: the search places
    /// them like writes, so a hint steers them too.
    struct CounterNoEagerReads;

    impl Model for CounterNoEagerReads {
        type State = i64;
        type Input = In;
        type Output = Out;
        fn name(&self) -> String {
            "counter".into()
        }
        fn init(&self) -> i64 {
            0
        }
        fn step(&self, s: &i64, i: &In, o: &Out) -> Option<i64> {
            Counter.step(s, i, o)
        }
        fn step_unknown(&self, s: &i64, i: &In) -> Vec<i64> {
            Counter.step_unknown(s, i)
        }
    }

    /// Both counters' verdicts with `hints`, and without.
    fn verdicts(ops: &[Op<In, Out>], hints: &[Option<u64>]) -> Vec<Verdict> {
        let cfg = CheckConfig::default();
        vec![
            check_hinted(&Counter, ops, hints, &cfg),
            check_hinted(&CounterNoEagerReads, ops, hints, &cfg),
            check_with(&CounterNoEagerReads, ops, &cfg),
        ]
    }

    #[test]
    fn a_wrong_witness_never_turns_a_failure_into_a_pass() {
        // A stale read: add 1 returns before the read of 0 is called. The
        // witness puts the read first, as a service that served it from
        // an old state would report it.
        let stale = vec![
            Op::ok(1, In::Add(1), 0, 10, Out::Done),
            Op::ok(2, In::Read, 20, 30, Out::Value(0)),
        ];
        for verdict in verdicts(&stale, &[Some(4), Some(2)]) {
            let failure = verdict.failure().expect("not linearizable");
            assert_eq!(failure.stuck_index, 1, "{failure}");
        }
        // An add of unknown outcome seen, then unseen: no order fits,
        // whatever the witness says (here: applied between the two reads
        // in the reverse of their real-time order).
        let flicker = vec![
            Op::unknown(1, In::Add(5), 0),
            Op::ok(2, In::Read, 10, 20, Out::Value(5)),
            Op::ok(3, In::Read, 30, 40, Out::Value(0)),
        ];
        for hints in [
            vec![Some(4), Some(6), Some(2)],
            vec![None, Some(6), Some(2)],
            vec![Some(0), Some(1), Some(2)],
        ] {
            for verdict in verdicts(&flicker, &hints) {
                let failure = verdict.failure().expect("not linearizable");
                assert_eq!(failure.stuck_index, 2, "{hints:?}: {failure}");
            }
        }
    }

    #[test]
    fn a_wrong_witness_never_turns_a_pass_into_a_failure() {
        // The add of unknown outcome took effect (the read saw it), but the
        // witness says it did not, and puts the reads in the wrong order.
        let seen = vec![
            Op::unknown(1, In::Add(5), 0),
            Op::ok(2, In::Read, 10, 20, Out::Value(0)),
            Op::ok(3, In::Read, 30, 40, Out::Value(5)),
        ];
        for hints in [
            vec![None, Some(7), Some(3)],
            vec![Some(9), Some(2), Some(1)],
        ] {
            for verdict in verdicts(&seen, &hints) {
                assert!(verdict.is_ok(), "{hints:?}: {verdict}");
            }
        }
    }

    #[test]
    fn a_right_witness_decides_in_a_few_steps_per_operation() {
        // 40 adds of unknown outcome, each 1 << k so that every subset
        // makes a different total, then a read of the total of those with
        // an odd k: the ordered pass would try subsets in call order; the
        // witness names the odd ones.
        let mut ops: Vec<Op<In, Out>> = (0..40)
            .map(|k| Op::unknown(k, In::Add(1 << k), k))
            .collect();
        let total: i64 = (0..40).filter(|k| k % 2 == 1).map(|k| 1i64 << k).sum();
        ops.push(Op::ok(40, In::Read, 100, 110, Out::Value(total)));
        let mut hints: Vec<Option<u64>> = (0..40).map(|k| (k % 2 == 1).then_some(k)).collect();
        hints.push(Some(100));
        let cfg = CheckConfig {
            max_steps: 20_000,
            ..CheckConfig::default()
        };
        let idx: Vec<usize> = (0..ops.len()).collect();
        let mut budget = Budget::new(&cfg, cfg.max_memory_bytes, None);
        assert!(matches!(
            check_part(&CounterNoEagerReads, &ops, &idx, &mut budget, &hints),
            PartOutcome::Ok
        ));
        assert!(budget.steps < 200, "{} steps", budget.steps);
        // Without it, the same limits give up.
        let verdict = check_with(&CounterNoEagerReads, &ops, &cfg);
        assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict}");
    }
    use crate::history::{Op as KvOp, Operation, Output};
    use crate::models::{Kv, KvState};

    /// The bytes a clone of `c` asks the allocator for, and in how many
    /// allocations.
    fn asked_by_clone<S: Clone>(c: &Config<S>) -> (usize, usize, Config<S>) {
        let before = counting::asked();
        let copy = c.clone();
        let after = counting::asked();
        (after.0 - before.0, after.1 - before.1, copy)
    }

    #[test]
    fn config_accounting_matches_what_a_config_allocates() {
        let mut state = KvState::new();
        state.insert("k".to_string(), "v3".to_string());
        let words = 2000usize.div_ceil(64);
        let mut lin = Bits::new(words);
        lin.add(7);
        for (state, applied) in [
            (state.clone(), vec![]),
            (state, vec![1u32, 5, 9]),
            (
                (0..40)
                    .map(|i| (format!("key{i}"), format!("value-{i:04}")))
                    .collect(),
                vec![2],
            ),
        ] {
            let c = Config {
                state,
                lin: lin.clone(),
                applied,
                run: false,
            };
            let (asked, allocs, copy) = asked_by_clone(&c);
            let counted = config_heap_bytes(&Kv, &copy);
            // At least what was asked plus the allocator's header, at most
            // its rounding and a B-tree's emptier nodes.
            assert!(
                counted >= asked + 8 * allocs,
                "counted {counted} < asked {asked} in {allocs} allocations"
            );
            assert!(
                counted <= asked * 2 + 32 * allocs,
                "counted {counted} far over asked {asked} in {allocs} allocations"
            );
        }
        // One configuration of the history below: a key, a value, a
        // bitset of 32 words; its inline size is stored in the tables (a
        // map's 24 bytes, a boxed slice's 16, a list's 24 and a flag,
        // padded to 8).
        assert_eq!(std::mem::size_of::<Config<KvState>>(), 72);
    }

    /// 2,000 puts of five repeating values, all concurrent, then a read of
    /// the initial value: not linearizable, but deciding it needs every
    /// order of the puts up to symmetry, far beyond any memory.
    fn concurrent_puts_and_a_stale_read(puts: u64) -> Vec<Operation> {
        let mut ops: Vec<Operation> = (0..puts)
            .map(|i| Operation {
                client: i,
                key: "k".to_string(),
                op: KvOp::Put {
                    value: format!("v{}", i % 5),
                },
                call: i,
                ret: Some(puts + i),
                outcome: crate::history::Outcome::Ok(Output::Done),
            })
            .collect();
        ops.push(Operation {
            client: puts,
            key: "k".to_string(),
            op: KvOp::Get,
            call: 3 * puts,
            ret: Some(3 * puts + 1),
            outcome: crate::history::Outcome::Ok(Output::Value(String::new())),
        });
        ops
    }

    #[test]
    fn search_gives_up_at_the_memory_bound() {
        const MEMORY_BYTES: u64 = 64 << 20;
        let history = concurrent_puts_and_a_stale_read(2000);
        let typed = Kv::from_history(&history);
        let idx: Vec<usize> = (0..typed.len()).collect();
        let cfg = CheckConfig {
            max_memory_bytes: MEMORY_BYTES,
            ..CheckConfig::default()
        };
        let mut budget = Budget::new(&cfg, cfg.max_memory_bytes, None);
        let outcome = check_part(&Kv, &typed, &idx, &mut budget, &[]);
        let PartOutcome::Exhausted(Limit::Memory { bytes_max, configs }) = outcome else {
            panic!("expected the memory bound");
        };
        assert_eq!(bytes_max, MEMORY_BYTES);
        assert!(configs > 10_000, "{configs} configurations");
        assert!(budget.memory_bytes_peak <= MEMORY_BYTES);
        assert!(
            budget.memory_bytes_peak > MEMORY_BYTES / 2,
            "filled only {} bytes",
            budget.memory_bytes_peak
        );

        // The same through the key-value checker, which hands keys with
        // more than 128 operations pending to this search: an unknown
        // verdict that names the bound and what to do.
        let result = crate::linearizability::check_history_with(&history, &cfg);
        let crate::linearizability::CheckResult::Unknown(exhausted) = &result else {
            panic!("expected UNKNOWN, got {result}");
        };
        assert!(matches!(exhausted.limit, Limit::Memory { .. }));
        let text = result.to_string();
        assert!(text.starts_with("UNKNOWN"), "{text}");
        assert!(text.contains("memory bound of 64.0 MiB"), "{text}");
        assert!(text.contains("split the history"), "{text}");
    }
}
