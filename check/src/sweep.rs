//! The sweep: Lowe's just-in-time linearization search, written once for
//! every space of configurations the checker searches.
//!
//! Call and return events of one part are swept in time order (a call at
//! time `t` before a return at `t`: touching intervals are concurrent). A
//! configuration is (state, which pending completed operations are
//! linearized, which operations of unknown outcome have been applied). At
//! the return of operation `o`, every configuration that has not
//! linearized `o` yet is extended, one operation at a time, until `o` is
//! linearized (`Sweep::closure`); configurations where that is
//! impossible die. If none survives the history is not linearizable and
//! `o` is where it got stuck.
//!
//! What a state is and which moves a configuration has are the
//! `Space`'s: the generic search's (`crate::search`, any [`Model`],
//! states as the model's values) and the key-value search's
//! (`crate::models::kv::search`, interned values of one key, with its
//! own rules about which unknown operations are worth applying and which
//! configurations can no longer finish). The rules every space shares are
//! here:
//!
//! * **Memoisation and dominance** (rule D): within a closure, a
//!   configuration is dropped when one with the same state and
//!   linearized set and a subset of its applied unknowns was seen
//!   (`Closure::explore`); between returns, the same on the frontier
//!   (`keep_undominated`). Hash tables with a fixed-seed hasher: no
//!   iteration order reaches the result.
//! * **Symmetry** (rule S, `link_same_kind`): pending completed
//!   operations of one kind are linearized in the order they return.
//! * **Eager reads** (rule E, `eager_reads`): a pending read-only
//!   operation that holds in a configuration's state is linearized at
//!   once.
//! * **Retiring** (`retire_common`): an unknown operation applied in
//!   every configuration of the frontier is applied for good.
//! * **One budget**: steps, configurations, memory, the clock and the
//!   pace, from `crate::limits`.
//!
//! [`Model`]: crate::Model

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash};

use crate::hash::FxHasher;
use crate::limits::{is_subset, Budget, Limit};
use crate::memory::{alloc_bytes, table_peak_bytes, vec_peak_bytes};

type FxBuild = BuildHasherDefault<FxHasher>;
type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
type FxHashSet<K> = HashSet<K, FxBuild>;

/// A set of the slots of pending completed operations: [`Bits`] (any
/// width) and `u128` (a window of 128), for the rules every space
/// applies to them.
pub(crate) trait Slots: Clone + Eq + Hash {
    /// Puts slot `i` in the set.
    fn add(&mut self, i: usize);
    /// Takes slot `i` out of the set.
    fn remove(&mut self, i: usize);
    /// Whether slot `i` is in the set.
    fn has(&self, i: usize) -> bool;
    /// Empties the set.
    fn empty(&mut self);
    /// Calls `f` with each slot in the set, lowest first.
    fn each(&self, f: impl FnMut(usize));
    /// Whether every slot of this set is in `other`.
    fn subset_of(&self, other: &Self) -> bool;
    /// The lowest slot below `width` not in the set.
    fn first_free(&self, width: usize) -> Option<usize>;
    /// The heap the set holds.
    fn heap_bytes(&self) -> usize;
}

/// A fixed-width bitset over the slots of pending operations.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Bits(pub(crate) Box<[u64]>);

impl Bits {
    /// An empty set of `words` × 64 slots.
    pub(crate) fn new(words: usize) -> Bits {
        Bits(vec![0; words].into_boxed_slice())
    }

    /// The slots in the set, lowest first.
    pub(crate) fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }
}

impl Slots for Bits {
    #[inline]
    fn add(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    #[inline]
    fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    #[inline]
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn empty(&mut self) {
        self.0.fill(0);
    }
    fn each(&self, f: impl FnMut(usize)) {
        self.ones().for_each(f);
    }
    #[inline]
    fn subset_of(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
    fn first_free(&self, width: usize) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, &w)| w != u64::MAX)
            .map(|(i, &w)| i * 64 + (!w).trailing_zeros() as usize)
            .filter(|&s| s < width)
    }
    fn heap_bytes(&self) -> usize {
        alloc_bytes(std::mem::size_of_val::<[u64]>(&self.0))
    }
}

impl Slots for u128 {
    #[inline]
    fn add(&mut self, i: usize) {
        *self |= 1u128 << i;
    }
    #[inline]
    fn remove(&mut self, i: usize) {
        *self &= !(1u128 << i);
    }
    #[inline]
    fn has(&self, i: usize) -> bool {
        *self >> i & 1 == 1
    }
    #[inline]
    fn empty(&mut self) {
        *self = 0;
    }
    #[inline]
    fn each(&self, mut f: impl FnMut(usize)) {
        let mut bits = *self;
        while bits != 0 {
            f(bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
    #[inline]
    fn subset_of(&self, other: &u128) -> bool {
        self & !other == 0
    }
    #[inline]
    fn first_free(&self, width: usize) -> Option<usize> {
        let s = (!*self).trailing_zeros() as usize;
        (s < width.min(128)).then_some(s)
    }
    #[inline]
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Eager reads (rule E): puts into `lin` every slot of `pending` not in
/// it yet whose operation is read-only and holds in the configuration's
/// state (`holds`); whether there was one.
///
/// A read-only operation changes no state, so linearizing it now instead
/// of at any later point where it also holds leaves every state of the
/// order unchanged: the configuration with it linearized is equivalent to
/// the one without, and the search keeps only the former, without
/// branching.
#[inline]
pub(crate) fn eager_reads<S: Slots>(
    pending: &S,
    lin: &mut S,
    mut holds: impl FnMut(usize) -> bool,
) -> bool {
    let mut any = false;
    pending.each(|p| {
        if !lin.has(p) && holds(p) {
            lin.add(p);
            any = true;
        }
    });
    any
}

/// The symmetry rule (rule S), when the completed operation in `slot` is
/// called: records in `earlier` which pending operations of its kind
/// (`same_kind`) return before it (`returns_first`: by return time, then
/// index, the order returns are processed in) and which after.
///
/// Two pending completed operations `a` and `b` of the same kind (same
/// input and output: the same precondition and effect in every state),
/// `a` returning first, are interchangeable: in any valid order that
/// places `b` before `a`, swapping them gives a valid order with the same
/// states (`a` moves earlier but not before its call, both being pending;
/// `b` moves later but not past `a`'s old position, which is before `a`'s
/// return and so before `b`'s). So operations of one kind are linearized
/// in return order only: `n` concurrent identical writes give `n + 1`
/// configurations instead of `2^n`. The returning operation is the
/// earliest-returning pending one of its kind, so the rule never blocks
/// it.
#[inline]
pub(crate) fn link_same_kind<S: Slots>(
    earlier: &mut [S],
    pending: &S,
    slot: usize,
    mut same_kind: impl FnMut(usize) -> bool,
    mut returns_first: impl FnMut(usize) -> bool,
) {
    earlier[slot].empty();
    pending.each(|t| {
        if t == slot || !same_kind(t) {
            return;
        }
        if returns_first(t) {
            earlier[slot].add(t);
        } else {
            earlier[t].add(slot);
        }
    });
}

/// The symmetry rule when the operation in `slot` has returned: forgets
/// it.
#[inline]
pub(crate) fn unlink_same_kind<S: Slots>(earlier: &mut [S], pending: &S, slot: usize) {
    pending.each(|t| earlier[t].remove(slot));
    earlier[slot].empty();
}

/// The pending completed operations of a sweep, each in a slot, and the
/// symmetry rule's relation between them. `K` is a space's kind of an
/// operation (rule S links operations of one kind).
pub(crate) struct Window<L, K> {
    /// The occupied slots.
    pub(crate) pending: L,
    /// How many slots there are.
    width: usize,
    /// Which operation occupies each slot.
    pub(crate) slot_op: Vec<u32>,
    /// Per slot: its operation's kind and its place in the order of
    /// returns (return time, then index).
    slot_kind: Vec<(K, (u128, u32))>,
    /// Per slot: the pending slots of the same kind that return earlier.
    pub(crate) earlier: Vec<L>,
}

impl<L: Slots, K: Copy + Eq> Window<L, K> {
    /// `width` slots, none occupied (`empty`: an empty set; `kind`: any
    /// kind, to fill the table).
    pub(crate) fn new(empty: L, width: usize, kind: K) -> Self {
        Window {
            pending: empty.clone(),
            width,
            slot_op: vec![0; width],
            slot_kind: vec![(kind, (0, 0)); width],
            earlier: vec![empty; width],
        }
    }

    /// The completed operation `j`, of kind `kind`, returning at `ret`,
    /// is called: the lowest free slot it now occupies, or `None` if
    /// every slot is.
    pub(crate) fn call(&mut self, j: u32, kind: K, ret: u128) -> Option<usize> {
        let slot = self.pending.first_free(self.width)?;
        self.occupy(slot, j, kind, ret);
        Some(slot)
    }

    /// Puts `j` in `slot` (free) and links it to the pending operations of
    /// its kind.
    pub(crate) fn occupy(&mut self, slot: usize, j: u32, kind: K, ret: u128) {
        debug_assert!(!self.pending.has(slot), "slot {slot} is free");
        self.slot_op[slot] = j;
        self.slot_kind[slot] = (kind, (ret, j));
        self.pending.add(slot);
        self.link(slot);
    }

    fn link(&mut self, slot: usize) {
        let (kind, order) = self.slot_kind[slot];
        let slot_kind = &self.slot_kind;
        link_same_kind(
            &mut self.earlier,
            &self.pending,
            slot,
            |t| slot_kind[t].0 == kind,
            |t| slot_kind[t].1 < order,
        );
    }

    /// The operation in `slot` returned (or its call is undone): frees
    /// the slot.
    pub(crate) fn free(&mut self, slot: usize) {
        debug_assert!(self.pending.has(slot), "slot {slot} is occupied");
        unlink_same_kind(&mut self.earlier, &self.pending, slot);
        self.pending.remove(slot);
    }

    /// Whether the operation in `slot` may be linearized after `lin`:
    /// every pending one of its kind that returns earlier is (rule S).
    #[inline]
    pub(crate) fn may_go(&self, slot: usize, lin: &L) -> bool {
        self.earlier[slot].subset_of(lin)
    }

    /// The kind of each pending operation is now `kind_of(its
    /// operation)`: where one changed, the relation is rebuilt for every
    /// pending slot. Sound when two unlinearized pending operations of a
    /// new kind have the same effect and precondition for the rest of the
    /// history (the argument of [`link_same_kind`]); configurations that
    /// already linearized a later-returning one stay as they are, rule S
    /// only ever holds back an operation while an earlier-returning one
    /// of its kind is unlinearized, never the earliest.
    pub(crate) fn rekind(&mut self, mut kind_of: impl FnMut(u32) -> K) {
        let mut changed = false;
        let (slot_op, slot_kind) = (&self.slot_op, &mut self.slot_kind);
        self.pending.each(|s| {
            let kind = kind_of(slot_op[s]);
            changed |= kind != slot_kind[s].0;
            slot_kind[s].0 = kind;
        });
        if !changed {
            return;
        }
        let pending = self.pending.clone();
        self.pending.empty();
        let mut slots = Vec::new();
        pending.each(|s| slots.push(s));
        for s in slots {
            self.pending.add(s);
            self.link(s);
        }
        debug_assert!(self.pending == pending, "relinked every pending slot");
    }
}

/// A configuration of the sweep.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Config<S, L> {
    /// The state the order so far leads to.
    pub(crate) state: S,
    /// The pending completed operations it linearized (slots).
    pub(crate) lin: L,
    /// Unknown operations applied (a space's indices, sorted), minus
    /// those applied in every configuration (retired).
    pub(crate) applied: Vec<u32>,
    /// Reached by applying an unknown operation, inside a run of
    /// unknowns no completed operation has interrupted yet: a space may
    /// restrict the moves of such a configuration, so it does not
    /// dominate one that is not.
    pub(crate) run: bool,
}

/// The rules both searches apply to a configuration's applied unknown
/// operations.
pub(crate) trait Applied {
    /// The applied unknown operations, sorted.
    fn applied(&self) -> &[u32];
    /// The same, to change.
    fn applied_mut(&mut self) -> &mut Vec<u32>;
}

impl<S, L> Applied for Config<S, L> {
    fn applied(&self) -> &[u32] {
        &self.applied
    }
    fn applied_mut(&mut self) -> &mut Vec<u32> {
        &mut self.applied
    }
}

/// Retires the unknown operations applied in every one of `configs` (a
/// whole frontier): every later configuration descends from one of
/// these, so none can apply them again. Takes them out of each applied
/// list and returns them, sorted (empty if there are none).
pub(crate) fn retire_common<C: Applied>(configs: &mut [C]) -> Vec<u32> {
    if configs.iter().any(|c| c.applied().is_empty()) {
        return Vec::new();
    }
    let mut common = configs[0].applied().to_vec();
    for c in &configs[1..] {
        common.retain(|m| c.applied().binary_search(m).is_ok());
        if common.is_empty() {
            break;
        }
    }
    if !common.is_empty() {
        for c in configs.iter_mut() {
            c.applied_mut().retain(|m| common.binary_search(m).is_err());
        }
    }
    common
}

/// Dominance: appends to `kept` those of `configs` that no configuration
/// kept before them in their run dominates. Runs are maximal sequences of
/// `configs` that `same` (equal state and linearized set) joins, each
/// sorted by applied length, then applied list. With equal state and
/// linearized set, a configuration whose applied unknowns contain
/// another's can do nothing the other cannot (the unknowns still
/// available to it are a subset), so it is dropped.
pub(crate) fn keep_undominated<C: Applied>(
    configs: impl IntoIterator<Item = C>,
    same: impl Fn(&C, &C) -> bool,
    kept: &mut Vec<C>,
) {
    let mut run_start = kept.len();
    for c in configs {
        if run_start < kept.len() && !same(&kept[run_start], &c) {
            run_start = kept.len();
        }
        let dominated = kept[run_start..]
            .iter()
            .any(|k| is_subset(k.applied(), c.applied()));
        if !dominated {
            kept.push(c);
        }
    }
}

/// The heap an applied list holds.
pub(crate) fn applied_bytes(applied: &Vec<u32>) -> usize {
    alloc_bytes(applied.capacity() * std::mem::size_of::<u32>())
}

/// What one search brings to the sweep: its states, its operations and
/// their moves. Operations are numbered `0..n` in the space's own order;
/// the sweep learns of them through [`events`].
pub(crate) trait Space {
    /// A state of the object (or key) searched.
    type State: Clone + Eq + Hash;
    /// A set of slots of pending completed operations.
    type Lin: Slots;
    /// Whether the pace limit ([`Budget::pace`]) applies.
    const PACED: bool;

    /// The heap `state` holds.
    fn state_heap_bytes(&self, state: &Self::State) -> usize;

    /// Operation `j` is called: a completed one takes a slot, an unknown
    /// one becomes available. `Err` if it cannot be taken in.
    fn call(&mut self, j: u32) -> Result<(), Limit>;

    /// The slot of the pending completed operation `j`.
    fn slot_of(&self, j: u32) -> usize;

    /// Whether `c` can no longer finish the history (a space's own
    /// pruning rule; none by default).
    #[inline]
    fn doomed(&mut self, _c: &Config<Self::State, Self::Lin>) -> bool {
        false
    }

    /// Offers each configuration `c` (which has not linearized the
    /// returning operation) leads to in one move: `offer(self, next)`.
    fn expand(
        &mut self,
        c: Config<Self::State, Self::Lin>,
        offer: &mut impl FnMut(&mut Self, Config<Self::State, Self::Lin>),
    ) where
        Self: Sized;

    /// The completed operation `j` returned, every configuration of the
    /// frontier having linearized it (its bit is cleared): frees its slot
    /// and brings the frontier up to date. Whether configurations of the
    /// frontier may now be equal (then the sweep deduplicates them).
    fn returned(&mut self, j: u32, frontier: &mut [Config<Self::State, Self::Lin>]) -> bool;

    /// The unknown operations `retired` (sorted) are applied in every
    /// configuration for good: none is available any more.
    fn retire(&mut self, retired: &[u32]);
}

/// The events of a part: (time, index), a call of operation `j` at `2 ×
/// call` and its return (if it completed) at `2 × return + 1`, so that a
/// call at `t` sorts before a return at `t`; sorted. `times(j)`: the
/// call and return of `j`, `None` for an operation that takes no part.
pub(crate) fn events(
    n: usize,
    times: impl Fn(usize) -> Option<(u64, Option<u64>)>,
) -> Vec<(u128, u32)> {
    let mut ev: Vec<(u128, u32)> = Vec::with_capacity(n * 2);
    for j in 0..n {
        let Some((call, ret)) = times(j) else {
            continue;
        };
        ev.push((2 * call as u128, j as u32));
        if let Some(r) = ret {
            ev.push((2 * r as u128 + 1, j as u32));
        }
    }
    ev.sort_unstable();
    ev
}

/// How a sweep ended.
pub(crate) enum Ran {
    /// Every return passed: linearizable.
    Done,
    /// Stopped just before the return of the operation asked for; the
    /// frontier holds the configurations there.
    Stopped,
    /// No configuration linearizes operation `stuck` (the space's index):
    /// not linearizable. The frontier holds the configurations just
    /// before its return.
    Stuck(u32),
    /// A limit was reached: nothing is known.
    Exhausted(Limit),
}

/// A configuration seen in a closure, under its (state, linearized set):
/// its applied unknowns and `run` flag.
type Seen = (Vec<u32>, bool);

type Cfg<P> = Config<<P as Space>::State, <P as Space>::Lin>;
type Key<P> = (<P as Space>::State, <P as Space>::Lin);

/// The sweep over one part: its space and frontier, and a closure's
/// collections (kept between returns so that they are allocated once).
pub(crate) struct Sweep<P: Space> {
    /// The search's space.
    pub(crate) space: P,
    /// The configurations alive after the last return passed.
    pub(crate) frontier: Vec<Cfg<P>>,
    closure: Closure<P>,
}

/// What one closure holds besides the frontier.
struct Closure<P: Space> {
    /// The configurations that linearized the returning operation (with
    /// its bit cleared): the next frontier.
    next: Vec<Cfg<P>>,
    next_set: FxHashSet<Cfg<P>>,
    /// Configurations seen, by (state, lin), with applied unknowns or
    /// inside a run: their applied sets and `run` flags (rule D).
    visited: FxHashMap<Key<P>, Vec<Seen>>,
    /// Configurations seen with no applied unknowns and not inside a run
    /// (the common case, and the one that dominates every other with its
    /// state and linearized set), kept apart so that they cost no
    /// allocation.
    visited_plain: FxHashSet<Key<P>>,
    visited_len: usize,
    /// Configurations to expand.
    stack: Vec<Cfg<P>>,
    /// The slot of the returning operation.
    slot: usize,
    /// The heap bytes of the configurations held, for the memory bound;
    /// inline sizes are counted from the collections' capacities by
    /// `Sweep::held_bytes`.
    heap_bytes: usize,
}

/// The heap a copy of `c`'s state and linearized set holds.
#[inline]
fn key_heap_bytes<P: Space>(space: &P, c: &Cfg<P>) -> usize {
    space.state_heap_bytes(&c.state) + c.lin.heap_bytes()
}

/// The heap `c` holds.
#[inline]
fn config_heap_bytes<P: Space>(space: &P, c: &Cfg<P>) -> usize {
    key_heap_bytes(space, c) + applied_bytes(&c.applied)
}

impl<P: Space> Closure<P> {
    /// Takes in a configuration a move led to: the next frontier's if it
    /// linearized the returning operation, else one to expand.
    #[inline]
    fn offer(&mut self, space: &mut P, c: Cfg<P>) {
        if c.lin.has(self.slot) {
            self.finish(space, c);
        } else {
            self.explore(space, c);
        }
    }

    /// `c` linearized the returning operation: it goes to the next
    /// frontier with that bit forgotten, unless the space finds it doomed
    /// (judged before the bit is cleared).
    fn finish(&mut self, space: &mut P, mut c: Cfg<P>) {
        debug_assert!(
            c.lin.has(self.slot),
            "the returning operation is linearized"
        );
        if space.doomed(&c) {
            return;
        }
        c.lin.remove(self.slot);
        if !self.next_set.contains(&c) {
            self.heap_bytes += 2 * config_heap_bytes(space, &c);
            self.next_set.insert(c.clone());
            self.next.push(c);
        }
    }

    /// Queues `c` for expansion unless a configuration seen already
    /// dominates it (rule D): same state, same linearized operations, a
    /// subset of its applied unknowns, and not inside a run unless `c` is.
    /// Everything reachable from `c` is then reachable from that one (up
    /// to swapping interchangeable unknowns).
    fn explore(&mut self, space: &mut P, c: Cfg<P>) {
        if space.doomed(&c) {
            return;
        }
        let Config {
            state,
            lin,
            applied,
            run,
        } = c;
        let key = (state, lin);
        if self.visited_plain.contains(&key) {
            return;
        }
        let c = Config {
            state: key.0.clone(),
            lin: key.1.clone(),
            applied,
            run,
        };
        let key_bytes = key_heap_bytes(space, &c);
        let c_bytes = key_bytes + applied_bytes(&c.applied);
        if c.applied.is_empty() && !c.run {
            // Only a plain configuration dominates a plain one.
            self.heap_bytes += key_bytes + c_bytes;
            self.visited_plain.insert(key);
            self.visited_len += 1;
            self.stack.push(c);
            return;
        }
        let seen = match self.visited.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.heap_bytes += key_bytes;
                e.insert(Vec::new())
            }
        };
        if seen
            .iter()
            .any(|(a, run)| (!*run || c.run) && is_subset(a, &c.applied))
        {
            return;
        }
        // A list of seen sets grows by doubling: two slots per entry.
        self.heap_bytes += c_bytes + applied_bytes(&c.applied) + 2 * std::mem::size_of::<Seen>();
        seen.push((c.applied.clone(), c.run));
        self.visited_len += 1;
        self.stack.push(c);
    }
}

impl<P: Space> Sweep<P> {
    /// A sweep of `space` from the one configuration `init`.
    pub(crate) fn new(space: P, init: Cfg<P>) -> Self {
        Sweep {
            space,
            frontier: vec![init],
            closure: Closure {
                next: Vec::new(),
                next_set: FxHashSet::default(),
                visited: FxHashMap::default(),
                visited_plain: FxHashSet::default(),
                visited_len: 0,
                stack: Vec::new(),
                slot: 0,
                heap_bytes: 0,
            },
        }
    }

    /// Sweeps `events` ([`events`]) within `budget`, up to just before
    /// the return of operation `until` if given.
    pub(crate) fn run(
        &mut self,
        events: &[(u128, u32)],
        budget: &mut Budget,
        until: Option<u32>,
    ) -> Ran {
        budget.start_sweep();
        for &(t, j) in events {
            if t % 2 == 0 {
                if let Err(limit) = self.space.call(j) {
                    return Ran::Exhausted(limit);
                }
                continue;
            }
            if until == Some(j) {
                return Ran::Stopped;
            }
            let slot = self.space.slot_of(j);
            budget.sweep_returns += 1;
            match self.closure(slot, budget) {
                Err(limit) => return Ran::Exhausted(limit),
                Ok(false) => return Ran::Stuck(j),
                Ok(true) => {}
            }
            let merged = self.space.returned(j, &mut self.frontier);
            self.prune(merged);
        }
        Ran::Done
    }

    /// The bytes the configurations of the current closure take: the
    /// collections' slots (at their peak by the next insertion) and each
    /// configuration's heap.
    fn held_bytes(&self) -> usize {
        let config = std::mem::size_of::<Cfg<P>>();
        let key = std::mem::size_of::<Key<P>>();
        let seen = std::mem::size_of::<(Key<P>, Vec<Seen>)>();
        let cl = &self.closure;
        cl.heap_bytes
            + vec_peak_bytes(self.frontier.len(), self.frontier.capacity(), config)
            + vec_peak_bytes(cl.next.len(), cl.next.capacity(), config)
            + vec_peak_bytes(cl.stack.len(), cl.stack.capacity(), config)
            + table_peak_bytes(cl.next_set.len(), cl.next_set.capacity(), config)
            + table_peak_bytes(cl.visited_plain.len(), cl.visited_plain.capacity(), key)
            + table_peak_bytes(cl.visited.len(), cl.visited.capacity(), seen)
    }

    /// Extends the frontier until the operation in `slot` is linearized
    /// in every configuration. `Ok(false)`: none survives (the frontier
    /// stays as it was, for the report).
    fn closure(&mut self, slot: usize, budget: &mut Budget) -> Result<bool, Limit> {
        let (space, cl) = (&mut self.space, &mut self.closure);
        cl.next.clear();
        cl.next_set.clear();
        cl.visited.clear();
        cl.visited_plain.clear();
        cl.visited_len = 0;
        cl.stack.clear();
        cl.slot = slot;
        cl.heap_bytes = self
            .frontier
            .iter()
            .map(|c| config_heap_bytes(space, c))
            .sum();
        for c in &self.frontier {
            cl.offer(space, c.clone());
        }
        while let Some(c) = self.closure.stack.pop() {
            let popped_bytes = config_heap_bytes(&self.space, &c);
            let cl = &mut self.closure;
            assert!(cl.heap_bytes >= popped_bytes, "counted when pushed");
            cl.heap_bytes -= popped_bytes;
            budget.step()?;
            if cl.visited_len + cl.next.len() > budget.max_frontier {
                return Err(Limit::Configurations(budget.max_frontier));
            }
            if P::PACED {
                budget.pace()?;
            }
            budget.memory(
                self.held_bytes(),
                budget.memory_bytes_max,
                self.closure.visited_len + self.closure.next.len() + self.frontier.len(),
            )?;
            let cl = &mut self.closure;
            self.space.expand(c, &mut |space, c2| cl.offer(space, c2));
        }
        let cl = &mut self.closure;
        if cl.next.is_empty() {
            return Ok(false);
        }
        std::mem::swap(&mut self.frontier, &mut cl.next);
        cl.next.clear();
        Ok(true)
    }

    /// Between returns: retires the unknown operations applied in every
    /// configuration ([`retire_common`]) and drops dominated
    /// configurations ([`keep_undominated`]); `merged`: configurations
    /// may also be equal.
    fn prune(&mut self, merged: bool) {
        let common = retire_common(&mut self.frontier);
        if !common.is_empty() {
            self.space.retire(&common);
        }
        if self.frontier.iter().all(|c| c.applied.is_empty()) {
            if merged {
                let mut seen: FxHashSet<Key<P>> = FxHashSet::default();
                self.frontier
                    .retain(|c| seen.insert((c.state.clone(), c.lin.clone())));
            }
            return;
        }
        // Group by (state, lin) in order of first appearance, each group
        // by applied length then list.
        let mut group_of: FxHashMap<Key<P>, usize> = FxHashMap::default();
        let mut grouped: Vec<Vec<Cfg<P>>> = Vec::new();
        for c in self.frontier.drain(..) {
            let n = grouped.len();
            let g = *group_of
                .entry((c.state.clone(), c.lin.clone()))
                .or_insert(n);
            if g == n {
                grouped.push(Vec::new());
            }
            grouped[g].push(c);
        }
        for mut configs in grouped {
            configs.sort_by(|a, b| {
                (a.applied.len(), &a.applied, a.run).cmp(&(b.applied.len(), &b.applied, b.run))
            });
            keep_undominated(configs, |_, _| true, &mut self.frontier);
        }
    }
}
