//! The key-value search: the sweep of [`crate::sweep`] over one key of a
//! key-value store, with the register and unambiguous fast paths in
//! front. [`crate::linearizability`] is the public entry point;
//! [`crate::models::Kv`] decides its parts with [`decide_key`].
//!
//! Its [`Space`] (`KeySpace`) interns the key's values (states are `u32`,
//! the linearized set a `u128` window of 128 pending slots) and adds
//! rules of its own to the sweep's: which unknown operations are worth
//! applying before a completed one (U1-U5, `KeySpace::unknown_candidates`),
//! values no operation can observe any more merged into one state (R,
//! `KeySpace::retire_observer`) and configurations that can no longer
//! finish dropped (P, `Pins`). What it cannot do itself (a key with more
//! operations pending at once than its window, naming values its
//! abstraction merged) it hands to the generic search ([`crate::search`])
//! with the key-value model, spending from the same [`Budget`].

use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use super::{Kv, KvInput, KvState};
use crate::hash::FxHasher;
use crate::history::{Op, Operation, Outcome, Output};
use crate::limits::{Budget, CheckConfig, Limit};
use crate::sweep::{self, eager_reads, Ran, Space, Sweep, Window};
use crate::PartOutcome;

type FxBuild = BuildHasherDefault<FxHasher>;
type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
type FxHashSet<K> = HashSet<K, FxBuild>;

// ---------------------------------------------------------------------------
// Per-key model

/// The "any value no read can observe" state.
const OTHER: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// Read that returned this state.
    Get(u32),
    /// Write this state.
    Put(u32),
    /// Append token (index into `tokens`).
    Append(u32),
    /// Successful cas from → to.
    CasOk(u32, u32),
    /// Unsuccessful cas: state ≠ from.
    CasFail(u32),
    /// Unknown-outcome cas: from → to if the state is from, else nothing.
    CasMaybe(u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct COp {
    kind: Kind,
    call: u64,
    /// `None` = unknown outcome.
    ret: Option<u64>,
    /// Index in the checked history.
    orig: usize,
}

struct Model {
    /// Interned states: all prefixes of observed strings. Id = index.
    strings: Vec<String>,
    ids: FxHashMap<String, u32>,
    tokens: Vec<String>,
    /// Does the key have completed unsuccessful cas operations (the only
    /// observers that can tell `OTHER` apart from other values)?
    has_casfail: bool,
    token_ids: FxHashMap<String, u32>,
    /// Per token: can appending it ever lead to a non-`OTHER` state?
    token_live: Vec<bool>,
    trans: FxHashMap<(u32, u32), u32>,
    empty: u32,
    /// Per state: *dead* — no operation still to be linearized can tell it
    /// from `OTHER` (rule R in `KeySpace::retire_observer`), so it is
    /// replaced by `OTHER` wherever it arises.
    dead: Vec<bool>,
}

impl Model {
    fn state_of(&self, s: &str) -> u32 {
        self.ids.get(s).copied().unwrap_or(OTHER)
    }

    fn display(&self, s: u32) -> String {
        if s == OTHER {
            OTHER_SHOWN.to_string()
        } else {
            self.strings[s as usize].clone()
        }
    }

    #[inline]
    fn append(&mut self, s: u32, tok: u32) -> u32 {
        if s == OTHER || !self.token_live[tok as usize] {
            return OTHER;
        }
        if let Some(&t) = self.trans.get(&(s, tok)) {
            return t;
        }
        let mut joined =
            String::with_capacity(self.strings[s as usize].len() + self.tokens[tok as usize].len());
        joined.push_str(&self.strings[s as usize]);
        joined.push_str(&self.tokens[tok as usize]);
        let t = self.state_of(&joined);
        self.trans.insert((s, tok), t);
        t
    }

    /// Linearizes a completed operation in state `s`: the new state, or
    /// `None` if its recorded result is impossible in `s`.
    #[inline]
    fn apply(&mut self, k: Kind, s: u32) -> Option<u32> {
        let t = match k {
            Kind::Get(v) => (s == v).then_some(s),
            Kind::Put(v) => Some(v),
            Kind::Append(t) => Some(self.append(s, t)),
            Kind::CasOk(f, t) => (s == f).then_some(t),
            Kind::CasFail(f) => (s != f).then_some(s),
            Kind::CasMaybe(f, t) => Some(if s == f { t } else { s }),
        };
        t.map(|t| {
            if t != OTHER && self.dead[t as usize] {
                OTHER
            } else {
                t
            }
        })
    }

    /// Applies an unknown operation in state `s`: the new state, or `None`
    /// if it would not change the state (then applying it is pointless).
    #[inline]
    fn effect(&mut self, k: Kind, s: u32) -> Option<u32> {
        let t = self.apply(k, s)?;
        (t != s).then_some(t)
    }
}

/// Interns values and compiles the operations of one key (`idx` into
/// `ops`, any order). Drops operations without effect.
fn compile(ops: &[Operation], idx: &[usize]) -> (Model, Vec<COp>) {
    // Observed strings: values read by gets, and every cas `from`.
    let mut observed: Vec<&str> = Vec::new();
    for &i in idx {
        let o = &ops[i];
        match (&o.op, &o.outcome) {
            (_, Outcome::Failed) => {}
            (Op::Get, Outcome::Ok(Output::Value(v))) => observed.push(v),
            (Op::Cas { from, .. }, _) => observed.push(from),
            _ => {}
        }
    }
    observed.sort_unstable();
    observed.dedup();
    let mut model = Model {
        strings: Vec::new(),
        ids: FxHashMap::default(),
        tokens: Vec::new(),
        has_casfail: false,
        token_ids: FxHashMap::default(),
        token_live: Vec::new(),
        trans: FxHashMap::default(),
        empty: 0,
        dead: Vec::new(),
    };
    let intern = |m: &mut Model, s: &str| -> u32 {
        if let Some(&id) = m.ids.get(s) {
            return id;
        }
        let id = m.strings.len() as u32;
        m.strings.push(s.to_string());
        m.ids.insert(s.to_string(), id);
        id
    };
    model.empty = intern(&mut model, "");
    for s in &observed {
        // Longest first: once a prefix is known, all shorter ones are too.
        let ends: Vec<usize> = s
            .char_indices()
            .map(|(i, _)| i)
            .skip(1)
            .chain(std::iter::once(s.len()))
            .collect();
        for &e in ends.iter().rev() {
            if model.ids.contains_key(&s[..e]) {
                break;
            }
            intern(&mut model, &s[..e]);
        }
    }
    model.dead = vec![false; model.strings.len()];
    // Append tokens, and which are live: contained in an observed string.
    // A string `w` contains `t` iff the prefix of `w` ending where `t`
    // ends (interned, as a prefix at a character boundary) ends with `t`,
    // so it suffices to look at the suffixes of interned strings that have
    // the length of some token: linear in the interned strings, where
    // testing every token against every observed string was quadratic.
    for &i in idx {
        let o = &ops[i];
        if let (Op::Append { value }, false) = (&o.op, matches!(o.outcome, Outcome::Failed)) {
            if value.is_empty() && matches!(o.outcome, Outcome::Unknown) {
                continue;
            }
            if !model.token_ids.contains_key(value) {
                model
                    .token_ids
                    .insert(value.clone(), model.tokens.len() as u32);
                model.tokens.push(value.clone());
                model.token_live.push(value.is_empty());
            }
        }
    }
    let mut lens: Vec<usize> = model.tokens.iter().map(|t| t.len()).collect();
    lens.sort_unstable();
    lens.dedup();
    for y in &model.strings {
        for &l in &lens {
            if l == 0 || l > y.len() || !y.is_char_boundary(y.len() - l) {
                continue;
            }
            if let Some(&t) = model.token_ids.get(&y[y.len() - l..]) {
                model.token_live[t as usize] = true;
            }
        }
    }
    let mut compiled = Vec::with_capacity(idx.len());
    for &i in idx {
        let o = &ops[i];
        let unknown = matches!(o.outcome, Outcome::Unknown);
        let kind = match (&o.op, &o.outcome) {
            (_, Outcome::Failed) => continue,
            (Op::Get, Outcome::Ok(Output::Value(v))) => Kind::Get(model.state_of(v)),
            (Op::Get, _) => continue,
            (Op::Put { value }, _) => Kind::Put(model.state_of(value)),
            (Op::Append { value }, _) => {
                if value.is_empty() && unknown {
                    continue;
                }
                let t = model.token_ids[value];
                if unknown && !model.token_live[t as usize] {
                    // Always leads to `OTHER`: same effect as a put of an
                    // unobservable value.
                    Kind::Put(OTHER)
                } else {
                    Kind::Append(t)
                }
            }
            (Op::Cas { from, to }, out) => {
                let f = model.state_of(from);
                let t = model.state_of(to);
                match out {
                    Outcome::Ok(Output::Swapped(true)) => Kind::CasOk(f, t),
                    Outcome::Ok(_) => {
                        model.has_casfail = true;
                        Kind::CasFail(f)
                    }
                    _ => Kind::CasMaybe(f, t),
                }
            }
        };
        compiled.push(COp {
            kind,
            call: o.call,
            ret: if unknown { None } else { o.ret },
            orig: i,
        });
    }
    (model, compiled)
}

// ---------------------------------------------------------------------------
// Rule P: pinned sources

/// Most (observed state, token prefix) pairs rule P keeps; beyond it the
/// rule is off (it only prunes, so the verdict is the same without it).
const PIN_PAIRS_MAX: usize = 4_000_000;

/// Rule P (pinned sources), the bookkeeping behind `Pins::doomed`.
///
/// A state `w` that some completed get reads (or a successful cas compares
/// with) can only be current at an instant if it was produced: by a put
/// or cas writing a *token prefix* `u` of `w` (`w` is `u` followed by
/// append tokens of the key) and appends after it, or, with no write in
/// between, from a current state that is such a `u`. The writes of token
/// prefixes of `w` are its *sources*.
///
/// A configuration (state, linearized set) at some instant is *doomed*
/// when an observer of `w` is still to be linearized (called later, or
/// pending and not in the set), every source of `w` has been linearized
/// in it (returned, or pending and in the set; sources of unknown
/// outcome never count as used), and its state is not a token prefix of
/// `w`: whatever comes next, the key never holds `w` again, so the
/// observer can never be linearized. Dropping doomed configurations loses
/// no linearization. Appends are assumed always available (an
/// over-approximation, so the rule may keep a doomed configuration but
/// never drops a live one).
///
/// This is what a read naming a unique value buys: once the one put of
/// `p17` is linearized and overwritten, every configuration that did so
/// dies at once if a later get reads `p17` or `p17xy`, instead of living
/// on with every order of the other pending writes.
struct Pins {
    /// Off when the history has more token-prefix pairs than
    /// `PIN_PAIRS_MAX`.
    on: bool,
    /// Per state: its token prefixes (sorted state ids) if some completed
    /// operation observes it, else empty.
    tok_pre: Vec<Vec<u32>>,
    /// Per written value `u`: the observed states it is a token prefix of.
    sourced: FxHashMap<u32, Vec<u32>>,
    /// Per observed state: completed sources / observers not called yet.
    future_sources: Vec<u32>,
    future_observers: Vec<u32>,
    /// Per observed state: the slots of its pending sources / observers.
    pending_sources: Vec<u128>,
    pending_observers: Vec<u128>,
    /// Per observed state: some write of unknown outcome is a source, so
    /// it can always be produced again.
    unknown_source: Vec<bool>,
    /// States with no source left to call, of unknown outcome or not,
    /// whose observers have not all returned: the ones `doomed` looks at.
    watch: Vec<u32>,
    watched: Vec<bool>,
    /// Some configuration was dropped as doomed (then the search may stop
    /// at an earlier return than the exact one, see `check_key`).
    pruned: bool,
}

impl Pins {
    /// The bookkeeping for `ops` (compiled, in call order); `on` false
    /// gives a rule that drops nothing.
    fn new(model: &Model, ops: &[COp], on: bool) -> Pins {
        let n = if on { model.strings.len() } else { 0 };
        let mut pins = Pins {
            on,
            tok_pre: vec![Vec::new(); n],
            sourced: FxHashMap::default(),
            future_sources: vec![0; n],
            future_observers: vec![0; n],
            pending_sources: vec![0; n],
            pending_observers: vec![0; n],
            unknown_source: vec![false; n],
            watch: Vec::new(),
            watched: vec![false; n],
            pruned: false,
        };
        if !on {
            return pins;
        }
        let mut tok_lens: Vec<usize> = model
            .tokens
            .iter()
            .map(|t| t.len())
            .filter(|&l| l > 0)
            .collect();
        tok_lens.sort_unstable();
        tok_lens.dedup();
        let mut pairs = 0usize;
        for c in ops {
            let Some(w) = Self::needs(c) else { continue };
            pins.future_observers[w as usize] += 1;
            if pins.tok_pre[w as usize].is_empty() {
                let pre = token_prefixes(model, &tok_lens, w);
                pairs += pre.len();
                if pairs > PIN_PAIRS_MAX {
                    return Pins { on: false, ..pins };
                }
                for &u in &pre {
                    pins.sourced.entry(u).or_default().push(w);
                }
                pins.tok_pre[w as usize] = pre;
            }
        }
        for c in ops {
            let Some(u) = Self::writes(c.kind) else {
                continue;
            };
            let Some(ws) = pins.sourced.get(&u) else {
                continue;
            };
            for &w in ws {
                match c.ret {
                    Some(_) => pins.future_sources[w as usize] += 1,
                    None => pins.unknown_source[w as usize] = true,
                }
            }
        }
        for w in 0..n as u32 {
            pins.refresh(w);
        }
        pins
    }

    /// The state a completed operation needs to be linearized (a get's
    /// value, a successful cas's `from`), if it is not `OTHER`.
    fn needs(c: &COp) -> Option<u32> {
        c.ret?;
        match c.kind {
            Kind::Get(w) | Kind::CasOk(w, _) => (w != OTHER).then_some(w),
            _ => None,
        }
    }

    /// The value an operation may write other than by appending.
    fn writes(kind: Kind) -> Option<u32> {
        match kind {
            Kind::Put(u) | Kind::CasOk(_, u) | Kind::CasMaybe(_, u) => (u != OTHER).then_some(u),
            _ => None,
        }
    }

    /// The completed operation `c` was called into `slot`.
    fn on_call(&mut self, c: &COp, slot: usize) {
        if !self.on {
            return;
        }
        debug_assert!(c.ret.is_some(), "unknown operations take no slot");
        let bit = 1u128 << slot;
        if let Some(w) = Self::needs(c) {
            assert!(self.future_observers[w as usize] > 0, "counted observer");
            self.future_observers[w as usize] -= 1;
            self.pending_observers[w as usize] |= bit;
            self.refresh(w);
        }
        let Some(u) = Self::writes(c.kind) else {
            return;
        };
        let Some(ws) = self.sourced.get(&u) else {
            return;
        };
        for w in ws.clone() {
            assert!(self.future_sources[w as usize] > 0, "counted source");
            self.future_sources[w as usize] -= 1;
            self.pending_sources[w as usize] |= bit;
            self.refresh(w);
        }
    }

    /// The completed operation `c` in `slot` returned (and is linearized
    /// in every configuration).
    fn on_return(&mut self, c: &COp, slot: usize) {
        if !self.on {
            return;
        }
        let bit = 1u128 << slot;
        if let Some(w) = Self::needs(c) {
            self.pending_observers[w as usize] &= !bit;
            self.refresh(w);
        }
        let Some(u) = Self::writes(c.kind) else {
            return;
        };
        let Some(ws) = self.sourced.get(&u) else {
            return;
        };
        for w in ws.clone() {
            self.pending_sources[w as usize] &= !bit;
        }
    }

    /// Keeps `w` in the watch list iff no source of it is left to call
    /// and some observer of it has not returned.
    fn refresh(&mut self, w: u32) {
        let i = w as usize;
        let watch = !self.tok_pre[i].is_empty()
            && !self.unknown_source[i]
            && self.future_sources[i] == 0
            && (self.future_observers[i] > 0 || self.pending_observers[i] != 0);
        if watch != self.watched[i] {
            self.watched[i] = watch;
            if watch {
                self.watch.push(w);
            } else {
                self.watch.retain(|&x| x != w);
            }
        }
    }

    /// Rule P: can a configuration in `state` with the pending operations
    /// of `lin` linearized never linearize some observer still to come?
    fn doomed(&mut self, state: u32, lin: u128) -> bool {
        for &w in &self.watch {
            let i = w as usize;
            let waiting = self.future_observers[i] > 0 || self.pending_observers[i] & !lin != 0;
            if waiting
                && self.pending_sources[i] & !lin == 0
                && self.tok_pre[i].binary_search(&state).is_err()
            {
                self.pruned = true;
                return true;
            }
        }
        false
    }
}

/// The token prefixes of the observed state `w`, sorted: the states `u`
/// (prefixes of `w`, so interned) such that `w` is `u` followed by
/// non-empty append tokens of the key, `w` itself included.
fn token_prefixes(model: &Model, tok_lens: &[usize], w: u32) -> Vec<u32> {
    let ws = &model.strings[w as usize];
    let len = ws.len();
    // `tail[i]`: `ws[i..]` is a sequence of tokens.
    let mut tail = vec![false; len + 1];
    tail[len] = true;
    for i in (0..len).rev() {
        if !ws.is_char_boundary(i) {
            continue;
        }
        let rest = &ws[i..];
        tail[i] = tok_lens.iter().any(|&l| {
            l <= rest.len()
                && rest.is_char_boundary(l)
                && tail[i + l]
                && model.token_ids.contains_key(&rest[..l])
        });
    }
    let mut pre: Vec<u32> = (0..=len)
        .filter(|&i| tail[i])
        .map(|i| model.state_of(&ws[..i]))
        .collect();
    debug_assert!(pre.iter().all(|&u| u != OTHER), "prefixes are interned");
    pre.sort_unstable();
    pre.dedup();
    pre
}

// ---------------------------------------------------------------------------
// The search

/// A configuration of the key-value search: an interned state and the
/// window of 128 pending slots.
type Config = sweep::Config<u32, u128>;

#[derive(Clone, Copy)]
pub(crate) enum Init {
    /// The key starts empty.
    Empty,
}

struct Group {
    kind: Kind,
    /// Available unknown operations with this effect (compiled indices, in
    /// call order).
    members: Vec<u32>,
}

/// The key-value search's [`Space`]: one key's compiled operations, its
/// interned model, the groups of unknown operations and the rules that
/// pick which of them are worth applying (U1-U5), kill states (R) and
/// drop configurations that cannot finish (P).
struct KeySpace<'a> {
    model: Model,
    ops: &'a [COp],
    /// The pending completed operations, by rule S's kind (`class_of`).
    window: Window<u128, Kind>,
    /// Per completed operation: its slot while pending.
    slot_of: Vec<u8>,
    groups: Vec<Group>,
    group_of: FxHashMap<Kind, u32>,
    /// Groups of puts by value (not `OTHER`).
    put_group: FxHashMap<u32, u32>,
    /// Groups of cas by `to` value (not `OTHER`).
    cas_by_to: FxHashMap<u32, Vec<u32>>,
    /// Groups of appends by token.
    app_group: FxHashMap<u32, u32>,
    /// Put and append groups (always have an effect, except no-ops).
    uncond: Vec<u32>,
    /// Cas groups by `from` value.
    cas_by_from: FxHashMap<u32, Vec<u32>>,
    prefix_cache: FxHashMap<u32, Vec<u32>>,
    cand: Vec<u32>,
    targets: Vec<u32>,
    app_toks: Vec<u32>,
    any_unknown: bool,
    /// Per state: how many operations that observe it or a string it is a
    /// prefix of are still to return (an unknown cas never returns).
    obs_left: Vec<u32>,
    /// Distinct lengths of non-empty append tokens.
    tok_lens: Vec<usize>,
    /// Cache of `obs_prefixes`.
    obs_cache: FxHashMap<u32, Vec<u32>>,
    /// Per state: the tokens of unknown appends it ends with.
    ends_with: FxHashMap<u32, Vec<u32>>,
    /// Per token of an unknown append: how many live states end with it.
    tok_left: FxHashMap<u32, u32>,
    /// Tokens of unknown appends that now always lead to `OTHER`.
    dead_tok: FxHashSet<u32>,
    /// Per unknown operation (compiled index): its group.
    member_group: Vec<u32>,
    /// Some state died since the frontier was last remapped.
    remapped: bool,
    /// Some group was merged into the `Put(OTHER)` group since applied
    /// sets were last made canonical.
    regrouped: bool,
    /// Rule P.
    pins: Pins,
}

/// Checks one key: as a register in O(n log n) when it only has `get`s
/// and `put`s and no value is written twice (the common shape of the
/// simulator's histories, see `crate::unambiguous`); with appends
/// and compare-and-sets of unique values too, directly when
/// `crate::unambiguous_kv` decides it (the search then only writes
/// the report of a bad key); else by the search below; and where more
/// operations are pending at once than its window of 128, by the generic
/// search of `crate` with the key-value model (no such limit). All
/// give the same verdict.
pub(crate) fn check_key(
    ops: &[Operation],
    idx: &[usize],
    init: Init,
    budget: &mut Budget,
) -> PartOutcome {
    use crate::unambiguous_kv::{decide_kv, stuck_by_bisection, KvDecision};
    // Decided not linearizable directly: the stuck operation by bisection,
    // if every cut was decided directly too.
    let mut known_bad: Option<Option<usize>> = None;
    if budget.fast_path {
        if let Some(outcome) = register_fast_path(ops, idx) {
            return outcome;
        }
        match decide_kv(ops, idx) {
            Some(KvDecision::Linearizable) => return PartOutcome::Ok,
            Some(KvDecision::NotLinearizable) => known_bad = Some(stuck_by_bisection(ops, idx)),
            None => {}
        }
    }
    // For a key known to be bad the search only writes the report (where
    // it gets stuck, the values possible there), within a bounded budget
    // when bisection already found the stuck operation.
    let max_steps = budget.max_steps;
    if let Some(Some(_)) = known_bad {
        budget.max_steps = max_steps.min(budget.steps.saturating_add(REPORT_STEPS));
    }
    let outcome = match (search_key(ops, idx, init, budget), known_bad) {
        // Rule P stopped early, and bisection already has the exact
        // return: no cuts to search.
        ((PartOutcome::Fail { .. }, true), Some(Some(stuck))) => PartOutcome::Fail {
            stuck,
            states: values_before(ops, idx, stuck, init, budget),
        },
        ((PartOutcome::Fail { stuck, .. }, true), _) => {
            exact_failure(ops, idx, stuck, init, budget)
        }
        ((PartOutcome::Exhausted(Limit::PendingOperations(_)), _), _) => {
            generic_key(ops, idx, budget)
        }
        ((other, _), _) => other,
    };
    budget.max_steps = max_steps;
    let outcome = match (outcome, known_bad) {
        (PartOutcome::Exhausted(_), Some(Some(stuck))) => PartOutcome::Fail {
            stuck,
            states: Vec::new(),
        },
        (outcome, known_bad) => {
            debug_assert!(
                !(known_bad.is_some() && matches!(outcome, PartOutcome::Ok)),
                "the direct decision and the search disagree"
            );
            if let (PartOutcome::Fail { stuck, .. }, Some(Some(b))) = (&outcome, known_bad) {
                debug_assert_eq!(*stuck, b, "bisection and the search disagree");
            }
            outcome
        }
    };
    match outcome {
        PartOutcome::Fail {
            stuck,
            states: values,
        } if budget.values && values.iter().any(|v| v == OTHER_SHOWN) => {
            // Name the values the abstraction merged into one.
            let values = concrete_values(ops, idx, stuck).unwrap_or(values);
            PartOutcome::Fail {
                stuck,
                states: values,
            }
        }
        other => other,
    }
}

/// The failure of a key on which the search got stuck at the return of
/// `early` after rule P dropped configurations: not linearizable for
/// certain (rule P only drops configurations that cannot finish), but the
/// search without rule P, whose stuck operation the report names (and
/// the explanation and the other checkers expect), may get stuck at a
/// later return. That one is the first return after which the history cut
/// there (`cut_after_return`) is not linearizable: found by galloping
/// from `early` (no earlier cut fails, since the search survived those
/// returns) and bisection, each cut decided by the search with rule P.
/// If the budget runs out first, `early` is reported, without values.
fn exact_failure(
    ops: &[Operation],
    idx: &[usize],
    early: usize,
    init: Init,
    budget: &mut Budget,
) -> PartOutcome {
    use crate::unambiguous_kv::{cut_after_return, returns_in_order};
    let rets = returns_in_order(ops, idx);
    let first = rets
        .iter()
        .position(|r| r.2 == early)
        .expect("the search gets stuck at a return");
    let bad = |k: usize, budget: &mut Budget| -> Option<bool> {
        let cut = cut_after_return(ops, idx, rets[k]);
        let all: Vec<usize> = (0..cut.len()).collect();
        match search_key(&cut, &all, init, budget).0 {
            PartOutcome::Ok => Some(false),
            PartOutcome::Fail { .. } => Some(true),
            PartOutcome::Exhausted(_) => None,
        }
    };
    let inexact = PartOutcome::Fail {
        stuck: early,
        states: Vec::new(),
    };
    // The whole history fails: the last cut is bad.
    let (mut lo, mut hi) = (first, rets.len() - 1);
    let mut step = 1usize;
    while lo < hi {
        let probe = (first + step - 1).min(hi);
        match bad(probe, budget) {
            None => return inexact,
            Some(true) => hi = probe,
            Some(false) => lo = probe + 1,
        }
        if hi == probe {
            break;
        }
        step = step.saturating_mul(2);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match bad(mid, budget) {
            None => return inexact,
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
        }
    }
    let stuck = rets[lo].2;
    let values = values_before(ops, idx, stuck, init, budget);
    PartOutcome::Fail {
        stuck,
        states: values,
    }
}

/// The values the key could hold just before `stuck` returned, when the
/// report wants them: from the search without rule P (whose frontier
/// there is every state a valid order reaches), within `VALUES_STEPS`;
/// none if it runs out or stops elsewhere.
fn values_before(
    ops: &[Operation],
    idx: &[usize],
    stuck: usize,
    init: Init,
    budget: &mut Budget,
) -> Vec<String> {
    if !budget.values {
        return Vec::new();
    }
    let max_steps = budget.max_steps;
    budget.max_steps = max_steps.min(budget.steps.saturating_add(VALUES_STEPS));
    budget.pins = false;
    let outcome = search_key(ops, idx, init, budget).0;
    budget.pins = true;
    budget.max_steps = max_steps;
    match outcome {
        PartOutcome::Fail {
            stuck: s,
            states: values,
        } if s == stuck => values,
        _ => Vec::new(),
    }
}

/// Search steps the report of a key already decided not linearizable may
/// take before it falls back to the stuck operation found by bisection,
/// without the values possible there.
const REPORT_STEPS: u64 = 20_000_000;

/// Search steps the values before a return found with rule P may take
/// (`values_before`): without rule P the search may not finish at all.
const VALUES_STEPS: u64 = 2_000_000;

/// How the search's merged state is shown when no concrete values can be
/// computed.
const OTHER_SHOWN: &str = "<other>";

/// The register decision for a key with only `get`s and `put`s (failed
/// operations and `get`s of unknown outcome do not count), if no value is
/// written twice; `None` otherwise. A failure's possible values come from
/// the same decision, without a search.
fn register_fast_path(ops: &[Operation], idx: &[usize]) -> Option<PartOutcome> {
    use crate::unambiguous::{decide_register, RegOp, RegisterDecision};
    let mut rel: Vec<usize> = Vec::with_capacity(idx.len());
    for &i in idx {
        match (&ops[i].op, &ops[i].outcome) {
            (_, Outcome::Failed) | (Op::Get, Outcome::Unknown) => {}
            (Op::Get, _) | (Op::Put { .. }, _) => rel.push(i),
            _ => return None,
        }
    }
    // The order the search processes ties in.
    rel.sort_by_key(|&i| (ops[i].call, i));
    let mut ids: crate::hash::StrMap<'_, u32> = Default::default();
    let mut names: Vec<&str> = vec![""];
    ids.insert("", 0);
    let mut reg: Vec<RegOp> = Vec::with_capacity(rel.len());
    for &i in &rel {
        let o = &ops[i];
        let (write, value) = match (&o.op, &o.outcome) {
            (Op::Get, Outcome::Ok(Output::Value(v))) => (false, v.as_str()),
            (Op::Put { value }, _) => (true, value.as_str()),
            _ => return None,
        };
        let n = ids.len() as u32;
        let value = *ids.entry(value).or_insert_with(|| {
            names.push(value);
            n
        });
        reg.push(RegOp {
            write,
            value,
            call: o.call,
            ret: match o.outcome {
                Outcome::Ok(_) => o.ret,
                _ => None,
            },
        });
    }
    Some(match decide_register(&reg, 0)? {
        RegisterDecision::Linearizable => PartOutcome::Ok,
        RegisterDecision::Stuck { index, values } => PartOutcome::Fail {
            stuck: rel[index],
            states: values
                .iter()
                .map(|&v| names[v as usize].to_string())
                .collect(),
        },
    })
}

/// Decides the history of one key (every operation of `ops`) for the
/// key-value [`Model`](crate::Model): `None` if the search gave
/// up, else linearizable or the stuck operation and the values the key
/// could hold before its return.
pub(crate) fn decide_key(ops: &[Operation]) -> Option<Result<(), (usize, Vec<String>)>> {
    let idx: Vec<usize> = (0..ops.len()).collect();
    let cfg = CheckConfig::default();
    let mut budget = Budget::new(&cfg, cfg.max_memory_bytes, None);
    match check_key(ops, &idx, Init::Empty, &mut budget) {
        PartOutcome::Ok => Some(Ok(())),
        // The merged state is not a value: no values then.
        PartOutcome::Fail {
            stuck,
            states: values,
        } if values.iter().any(|v| v == OTHER_SHOWN) => Some(Err((stuck, Vec::new()))),
        PartOutcome::Fail {
            stuck,
            states: values,
        } => Some(Err((stuck, values))),
        PartOutcome::Exhausted(_) => None,
    }
}

/// The search on one key, and whether rule P dropped any configuration
/// (then a failure may be found at an earlier return than the exact one).
fn search_key(
    ops: &[Operation],
    idx: &[usize],
    init: Init,
    budget: &mut Budget,
) -> (PartOutcome, bool) {
    let mut pruned = false;
    let outcome = sweep_key(ops, idx, init, budget, &mut pruned);
    (outcome, pruned)
}

/// `search_key`, with whether rule P dropped a configuration in `pruned`
/// when it fails.
fn sweep_key(
    ops: &[Operation],
    idx: &[usize],
    init: Init,
    budget: &mut Budget,
    pruned: &mut bool,
) -> PartOutcome {
    let (model, mut cops) = compile(ops, idx);
    cops.sort_by_key(|c| (c.call, c.orig));
    let pins = Pins::new(&model, &cops, budget.pins);
    let events = sweep::events(cops.len(), |i| Some((cops[i].call, cops[i].ret)));
    let mut first = match init {
        Init::Empty => Config {
            state: model.empty,
            lin: 0,
            applied: Vec::new(),
            run: false,
        },
    };
    let mut space = KeySpace {
        model,
        ops: &cops,
        window: Window::new(0u128, 128, Kind::Put(OTHER)),
        slot_of: vec![0; cops.len()],
        groups: Vec::new(),
        group_of: FxHashMap::default(),
        put_group: FxHashMap::default(),
        cas_by_to: FxHashMap::default(),
        app_group: FxHashMap::default(),
        uncond: Vec::new(),
        cas_by_from: FxHashMap::default(),
        prefix_cache: FxHashMap::default(),
        cand: Vec::new(),
        targets: Vec::new(),
        app_toks: Vec::new(),
        any_unknown: false,
        obs_left: Vec::new(),
        tok_lens: Vec::new(),
        obs_cache: FxHashMap::default(),
        ends_with: FxHashMap::default(),
        tok_left: FxHashMap::default(),
        dead_tok: FxHashSet::default(),
        member_group: vec![0; cops.len()],
        remapped: false,
        regrouped: false,
        pins,
    };
    space.init_liveness();
    space.settle(std::slice::from_mut(&mut first));
    let mut sweep = Sweep::new(space, first);
    match sweep.run(&events, budget, None) {
        Ran::Done | Ran::Stopped => PartOutcome::Ok,
        Ran::Exhausted(limit) => PartOutcome::Exhausted(limit),
        Ran::Stuck(i) => {
            let mut values: Vec<String> = sweep
                .frontier
                .iter()
                .map(|c| c.state)
                .collect::<std::collections::BTreeSet<u32>>()
                .into_iter()
                .take(8)
                .map(|s| sweep.space.model.display(s))
                .collect();
            values.sort();
            *pruned = sweep.space.pins.pruned;
            PartOutcome::Fail {
                stuck: cops[i as usize].orig,
                states: values,
            }
        }
    }
}

/// Rule S's kind of the completed operation `i`: its kind, a written
/// value that died (rule R) replaced by `OTHER`. Writes of dead values
/// have the same effect in every state from then on (the model maps dead
/// states to `OTHER`), and dead states stay dead.
fn class_of(model: &Model, ops: &[COp], i: usize) -> Kind {
    let dead = |v: u32| v != OTHER && model.dead[v as usize];
    match ops[i].kind {
        Kind::Put(v) if dead(v) => Kind::Put(OTHER),
        Kind::CasOk(f, v) if dead(v) => Kind::CasOk(f, OTHER),
        k => k,
    }
}

impl Space for KeySpace<'_> {
    type State = u32;
    type Lin = u128;
    const PACED: bool = true;

    #[inline]
    fn state_heap_bytes(&self, _state: &u32) -> usize {
        0
    }

    fn call(&mut self, i: u32) -> Result<(), Limit> {
        let c = self.ops[i as usize];
        let Some(ret) = c.ret else {
            self.add_unknown(i);
            return Ok(());
        };
        let kind = class_of(&self.model, self.ops, i as usize);
        let slot = self
            .window
            .call(i, kind, ret as u128)
            .ok_or(Limit::PendingOperations(128))?;
        self.pins.on_call(&c, slot);
        self.slot_of[i as usize] = slot as u8;
        Ok(())
    }

    #[inline]
    fn slot_of(&self, i: u32) -> usize {
        self.slot_of[i as usize] as usize
    }

    #[inline]
    fn doomed(&mut self, c: &Config) -> bool {
        self.pins.doomed(c.state, c.lin)
    }

    // One call site, the sweep's closure loop: inlined there it saves a
    // call and a copy of the configuration per move (0.3-0.8 % of a
    // key's instructions, measured with callgrind).
    #[inline(always)]
    fn expand(&mut self, c: Config, offer: &mut impl FnMut(&mut Self, Config)) {
        let ops = self.ops;
        // The window's table as an array of its 128 slots: a slot from a
        // `u128`'s bits needs no bounds check.
        let slot_op: &[u32; 128] = self.window.slot_op[..]
            .try_into()
            .expect("a window of 128 slots");
        let mut avail = self.window.pending & !c.lin;
        // Rule E ([`eager_reads`]): gets and unsuccessful cas operations
        // that hold.
        let mut lin = c.lin;
        let state = c.state;
        if eager_reads(&avail, &mut lin, |j| match ops[slot_op[j] as usize].kind {
            Kind::Get(v) => v == state,
            Kind::CasFail(f) => f != state,
            _ => false,
        }) {
            let eager = Config {
                state,
                lin,
                applied: c.applied,
                run: false,
            };
            offer(self, eager);
            return;
        }
        let mut casfail_gate = false;
        self.targets.clear();
        self.app_toks.clear();
        while avail != 0 {
            let j = avail.trailing_zeros() as usize;
            avail &= avail - 1;
            let earlier: &[u128; 128] = self.window.earlier[..]
                .try_into()
                .expect("a window of 128 slots");
            if earlier[j] & !c.lin != 0 {
                // Rule S ([`Window::may_go`]): an identical operation that
                // returns earlier goes first.
                continue;
            }
            let slot_op: &[u32; 128] = self.window.slot_op[..]
                .try_into()
                .expect("a window of 128 slots");
            let kind = ops[slot_op[j] as usize].kind;
            match self.model.apply(kind, c.state) {
                Some(s2) => {
                    if let Kind::Append(tok) = kind {
                        self.app_toks.push(tok);
                    }
                    let next = Config {
                        state: s2,
                        lin: c.lin | (1u128 << j),
                        applied: c.applied.clone(),
                        run: false,
                    };
                    offer(self, next);
                }
                None => match kind {
                    Kind::Get(v) | Kind::CasOk(v, _) => self.targets.push(v),
                    _ => casfail_gate = true,
                },
            }
        }
        if self.any_unknown
            && (casfail_gate || !self.targets.is_empty() || !self.app_toks.is_empty())
        {
            self.unknown_candidates(c.state, casfail_gate);
            for ci in 0..self.cand.len() {
                let g = self.cand[ci] as usize;
                let group = &self.groups[g];
                let Some(&m) = group
                    .members
                    .iter()
                    .find(|m| c.applied.binary_search(m).is_err())
                else {
                    continue;
                };
                let kind = group.kind;
                if c.run && matches!(kind, Kind::Put(_)) {
                    // Rule U5: a put inside a run of unknowns makes the
                    // steps of the run before it pointless (nothing
                    // observes them); that run without them starts with
                    // the put and is explored from the run's start.
                    continue;
                }
                if let Some(s2) = self.model.effect(kind, c.state) {
                    let mut applied = c.applied.clone();
                    let pos = applied.binary_search(&m).unwrap_or_else(|p| p);
                    applied.insert(pos, m);
                    let next = Config {
                        state: s2,
                        lin: c.lin,
                        applied,
                        run: true,
                    };
                    offer(self, next);
                }
            }
        }
    }

    fn returned(&mut self, i: u32, frontier: &mut [Config]) -> bool {
        let c = self.ops[i as usize];
        let slot = self.slot_of(i);
        self.window.free(slot);
        self.pins.on_return(&c, slot);
        self.retire_observer(i);
        let remapped = self.remapped;
        if remapped {
            // Rule S after states died (rule R): pending writes of values
            // that died join the class of writes of `OTHER`.
            let (model, ops) = (&self.model, self.ops);
            self.window.rekind(|j| class_of(model, ops, j as usize));
        }
        self.settle(frontier);
        remapped
    }

    fn retire(&mut self, retired: &[u32]) {
        for g in &mut self.groups {
            g.members.retain(|m| retired.binary_search(m).is_err());
        }
    }
}

impl KeySpace<'_> {
    fn add_unknown(&mut self, i: u32) {
        self.any_unknown = true;
        let kind = match self.ops[i as usize].kind {
            // Rule R: a put of a dead value, or an append of a dead token,
            // is a put of `OTHER`.
            Kind::Put(v) if v != OTHER && self.model.dead[v as usize] => Kind::Put(OTHER),
            Kind::Append(t) if self.dead_tok.contains(&t) => Kind::Put(OTHER),
            k => k,
        };
        let g = self.group_for(kind);
        self.groups[g as usize].members.push(i);
        self.member_group[i as usize] = g;
    }

    /// The group of unknown operations with effect `kind`, created if new.
    fn group_for(&mut self, kind: Kind) -> u32 {
        match self.group_of.get(&kind) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                match kind {
                    Kind::Put(v) if v != OTHER => {
                        self.put_group.insert(v, g);
                    }
                    Kind::CasMaybe(_, t) if t != OTHER => {
                        self.cas_by_to.entry(t).or_default().push(g);
                    }
                    Kind::Append(tok) => {
                        self.app_group.insert(tok, g);
                    }
                    _ => {}
                }
                match kind {
                    Kind::CasMaybe(f, _) => self.cas_by_from.entry(f).or_default().push(g),
                    _ => self.uncond.push(g),
                }
                self.groups.push(Group {
                    kind,
                    members: Vec::new(),
                });
                self.group_of.insert(kind, g);
                g
            }
        }
    }

    /// The state an operation observes (a get's value, a cas's `from`).
    fn observes(kind: Kind) -> Option<u32> {
        match kind {
            Kind::Get(v) | Kind::CasOk(v, _) | Kind::CasFail(v) | Kind::CasMaybe(v, _) => {
                (v != OTHER).then_some(v)
            }
            Kind::Put(_) | Kind::Append(_) => None,
        }
    }

    /// Sets up the counts behind rule R (see `retire_observer`).
    fn init_liveness(&mut self) {
        let n = self.model.strings.len();
        self.obs_left = vec![0; n];
        self.tok_lens = self
            .model
            .tokens
            .iter()
            .map(|t| t.len())
            .filter(|&l| l > 0)
            .collect();
        self.tok_lens.sort_unstable();
        self.tok_lens.dedup();
        for i in 0..self.ops.len() {
            if let Some(w) = Self::observes(self.ops[i].kind) {
                for p in self.obs_prefixes(w) {
                    self.obs_left[p as usize] += 1;
                }
            }
        }
        let mut toks: Vec<u32> = self
            .ops
            .iter()
            .filter_map(|c| match (c.ret, c.kind) {
                (None, Kind::Append(t)) => Some(t),
                _ => None,
            })
            .collect();
        toks.sort_unstable();
        toks.dedup();
        if !toks.is_empty() {
            let mut lens: Vec<usize> = toks
                .iter()
                .map(|&t| self.model.tokens[t as usize].len())
                .collect();
            lens.sort_unstable();
            lens.dedup();
            for &t in &toks {
                self.tok_left.insert(t, 0);
            }
            for y in 0..n {
                let ys = &self.model.strings[y];
                for &l in &lens {
                    if l > ys.len() || !ys.is_char_boundary(ys.len() - l) {
                        continue;
                    }
                    let Some(&t) = self.model.token_ids.get(&ys[ys.len() - l..]) else {
                        continue;
                    };
                    if let Some(c) = self.tok_left.get_mut(&t) {
                        *c += 1;
                        self.ends_with.entry(y as u32).or_default().push(t);
                    }
                }
            }
            for &t in &toks {
                if self.tok_left[&t] == 0 {
                    self.dead_tok.insert(t);
                }
            }
        }
        for y in 0..n {
            if self.obs_left[y] == 0 {
                self.kill(y as u32);
            }
        }
    }

    /// Rule R, at the return of the completed operation `i` (after the
    /// closure that linearized it).
    ///
    /// A state `p` is *dead* once every operation that observes `p` or a
    /// string `p` is a prefix of (a get reading it, a cas comparing with
    /// it; an unknown cas never counts as returned) has returned. From then
    /// on every configuration that can finish the history from state `p`
    /// can finish it from `OTHER` and vice versa, with the same steps: for
    /// each operation still to be linearized, a get or successful cas fails
    /// in both (its value is neither `OTHER` nor, being live, `p`), an
    /// unsuccessful cas holds in both and changes nothing, a put gives the
    /// same state, and an append leads to `OTHER` from `OTHER` and, from
    /// `p`, to `OTHER` or an interned string with prefix `p`, which is dead
    /// as well (its observers observe a string with prefix `p`). Dead
    /// states stay dead, so by induction the two are indistinguishable for
    /// the rest of the history, and the search continues in the model that
    /// replaces dead states by `OTHER` (`Model::apply`; frontier in
    /// `settle`). That model is again one with an unobservable `OTHER`
    /// state, the setting of every other rule.
    ///
    /// In that model an unknown put of a dead value, and an unknown append
    /// of a token `t` no live state ends with (from a live state `x`,
    /// `x + t` is `OTHER` or dead; from `OTHER`, `OTHER`), set `OTHER`
    /// whatever the state: they are puts of `OTHER`, so their groups merge
    /// into that group and the applied sets are made canonical (`settle`).
    fn retire_observer(&mut self, i: u32) {
        let c = self.ops[i as usize];
        if c.ret.is_none() {
            return;
        }
        let Some(w) = Self::observes(c.kind) else {
            return;
        };
        for p in self.obs_prefixes(w) {
            let left = &mut self.obs_left[p as usize];
            *left -= 1;
            if *left == 0 {
                self.kill(p);
            }
        }
    }

    /// The states an observer of `w` keeps alive (rule R): `w` itself and
    /// every prefix `p` of `w` such that the rest of `w` after `p` starts
    /// with the token of some append (otherwise no sequence of appends
    /// leads from `p` to `w`, so `w` and its observers cannot tell `p`
    /// from `OTHER`).
    fn obs_prefixes(&mut self, w: u32) -> Vec<u32> {
        if let Some(p) = self.obs_cache.get(&w) {
            return p.clone();
        }
        let ws = &self.model.strings[w as usize];
        let mut p: Vec<u32> = vec![w];
        for (i, _) in ws.char_indices() {
            let rest = &ws[i..];
            let starts_with_token = self.tok_lens.iter().any(|&l| {
                l <= rest.len()
                    && rest.is_char_boundary(l)
                    && self.model.token_ids.contains_key(&rest[..l])
            });
            if starts_with_token {
                p.push(self.model.state_of(&ws[..i]));
            }
        }
        self.obs_cache.insert(w, p.clone());
        p
    }

    /// Marks state `p` dead (rule R).
    fn kill(&mut self, p: u32) {
        self.model.dead[p as usize] = true;
        self.remapped = true;
        if let Some(g) = self.put_group.remove(&p) {
            self.merge_into_other(g);
        }
        if let Some(ts) = self.ends_with.remove(&p) {
            for t in ts {
                let left = self.tok_left.get_mut(&t).expect("counted token");
                *left -= 1;
                if *left == 0 {
                    self.dead_tok.insert(t);
                    if let Some(g) = self.app_group.remove(&t) {
                        self.merge_into_other(g);
                    }
                }
            }
        }
    }

    /// Moves the members of group `g` (now a put of `OTHER`, rule R) into
    /// the `Put(OTHER)` group.
    fn merge_into_other(&mut self, g: u32) {
        let o = self.group_for(Kind::Put(OTHER));
        let kind = self.groups[g as usize].kind;
        self.group_of.remove(&kind);
        self.uncond.retain(|&x| x != g);
        let ms = std::mem::take(&mut self.groups[g as usize].members);
        for &m in &ms {
            self.member_group[m as usize] = o;
        }
        let om = &mut self.groups[o as usize].members;
        om.extend(ms);
        om.sort_unstable();
        self.regrouped = true;
    }

    /// Brings the frontier into the current model after states died or
    /// groups merged (rule R). Unknown operations of one group have the
    /// same effect and have all been called, so which of them a
    /// configuration has applied does not matter, only how many: the
    /// applied members of each group become its earliest ones.
    fn settle(&mut self, frontier: &mut [Config]) {
        if self.remapped {
            for c in frontier.iter_mut() {
                if c.state != OTHER && self.model.dead[c.state as usize] {
                    c.state = OTHER;
                }
            }
            self.remapped = false;
        }
        if self.regrouped {
            let mut counts: Vec<(u32, usize)> = Vec::new();
            for c in frontier.iter_mut() {
                if c.applied.is_empty() {
                    continue;
                }
                counts.clear();
                for &m in &c.applied {
                    let g = self.member_group[m as usize];
                    match counts.iter_mut().find(|(h, _)| *h == g) {
                        Some((_, k)) => *k += 1,
                        None => counts.push((g, 1)),
                    }
                }
                c.applied.clear();
                for &(g, k) in &counts {
                    c.applied
                        .extend_from_slice(&self.groups[g as usize].members[..k]);
                }
                c.applied.sort_unstable();
            }
            self.regrouped = false;
        }
    }

    /// Prefix states of state `t` (which is not `OTHER`), shortest first.
    fn prefixes(&mut self, t: u32) -> Vec<u32> {
        if let Some(p) = self.prefix_cache.get(&t) {
            return p.clone();
        }
        let st = &self.model.strings[t as usize];
        let p: Vec<u32> = st
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(st.len()))
            .map(|e| self.model.state_of(&st[..e]))
            .collect();
        self.prefix_cache.insert(t, p.clone());
        p
    }

    /// Fills `self.cand` with the unknown-operation groups worth applying in
    /// state `s`, given what the pending operations need: `self.targets`
    /// (values failing gets / cas need to see), `self.app_toks` (pending
    /// appends) and whether a failing unsuccessful cas needs the value to
    /// change.
    ///
    /// Why these rules lose no linearization. Take any valid order. Unknown
    /// operations placed after the last completed one are dropped (they may
    /// never take effect). Every other one sits in a *run* of unknowns right
    /// before some completed operation `o`, which is pending (called, not
    /// yet linearized) in every configuration along the run, so the run is
    /// explored in the closure that linearizes `o` if each of its steps is
    /// allowed while `o` is pending. Rewrite the order, each rewrite using
    /// fewer unknowns or moving one later, so it ends:
    ///
    /// * U1. If `o` is a put, or its result already holds in the state
    ///   before the run, the run is dropped (a put overwrites it; a
    ///   successful cas from that state gives the same state) or, for a
    ///   read-only `o`, moved after `o`. So runs precede only appends and
    ///   gets / cas that fail in the run's starting state.
    /// * U2. Before a get / successful cas of `v` (a *target*), cut the run
    ///   at its first state `v`. Steps before the run's last put are
    ///   overwritten: drop them; if the last put-like step is an unknown cas
    ///   from `f`, the steps before it must reach `f`, a target in turn. So
    ///   each step is a put of a prefix of a target, an unknown cas to a
    ///   prefix of a target (its `from` joins the targets), or an append
    ///   that keeps the state a prefix of a target. `o` fails in every
    ///   state of the run but the last.
    /// * Before a failing unsuccessful cas, a run of one step suffices: the
    ///   cas holds after it and changes nothing, so later steps move after
    ///   it. Any unknown with an effect may be that step.
    /// * Before an append, any unknown with an effect may be a step (the
    ///   run's final state is extended, intermediate ones matter), except:
    /// * U3. An unknown that sets `OTHER` whatever the state (a put of, or
    ///   an append of a token in, nothing any operation reads): in the
    ///   segment until the next put, the state is `OTHER`, so only
    ///   unsuccessful cas operations (and appends, unknowns without effect)
    ///   can be linearized there. Remove it and the unknowns applied in the
    ///   segment, and put it back right before the first unsuccessful cas
    ///   of the segment that then fails (or nowhere): the order stays
    ///   valid. So it is only applied before a failing unsuccessful cas.
    /// * U4. If the key has no unsuccessful cas, the same argument shows no
    ///   unknown step needs to lead to `OTHER` at all.
    /// * U5 (in `expand`). A put inside a run makes the run's earlier steps
    ///   pointless: puts are only applied as the first step of a run.
    ///
    /// Rule E (eager read-only operations) and U5 hold for every run, so
    /// the rewritten order is one the search explores.
    fn unknown_candidates(&mut self, s: u32, casfail_gate: bool) {
        self.cand.clear();
        if casfail_gate || !self.app_toks.is_empty() {
            let has_casfail = self.model.has_casfail;
            let cas_here: &[u32] = self.cas_by_from.get(&s).map_or(&[], |v| v.as_slice());
            for &g in self.uncond.iter().chain(cas_here) {
                let kind = self.groups[g as usize].kind;
                if !casfail_gate {
                    // Rule U3: an unknown that sets `OTHER` from any state
                    // only ever needs to go right before a failing
                    // unsuccessful cas.
                    if kind == Kind::Put(OTHER) {
                        continue;
                    }
                    // Rule U4: without unsuccessful cas operations nothing
                    // can use the value `OTHER`.
                    if !has_casfail && self.model.effect(kind, s) == Some(OTHER) {
                        continue;
                    }
                }
                self.cand.push(g);
            }
        }
        let mut ti = 0;
        while ti < self.targets.len() {
            let t = self.targets[ti];
            ti += 1;
            if t == OTHER {
                continue;
            }
            for p in self.prefixes(t) {
                if let Some(&g) = self.put_group.get(&p) {
                    self.cand.push(g);
                }
                if let Some(gs) = self.cas_by_to.get(&p) {
                    for &g in gs {
                        self.cand.push(g);
                        if let Kind::CasMaybe(f, _) = self.groups[g as usize].kind {
                            if !self.targets.contains(&f) {
                                self.targets.push(f);
                            }
                        }
                    }
                }
            }
            if !self.app_group.is_empty() && s != OTHER {
                let ts = &self.model.strings[t as usize];
                let ss = &self.model.strings[s as usize];
                if ts.len() > ss.len() && ts.starts_with(ss.as_str()) {
                    let rest = &ts[ss.len()..];
                    for (i, ch) in rest.char_indices() {
                        let tok = &rest[..i + ch.len_utf8()];
                        if let Some(&id) = self.model.token_ids.get(tok) {
                            if let Some(&g) = self.app_group.get(&id) {
                                self.cand.push(g);
                            }
                        }
                    }
                }
            }
        }
        if self.cand.len() > 1 {
            self.cand.sort_unstable();
            self.cand.dedup();
        }
    }
}

// ---------------------------------------------------------------------------
// The generic search with the key-value model, where this one cannot go

/// The key's operations as a typed history (for the generic search), and
/// the history index of each.
fn typed_key(ops: &[Operation], idx: &[usize]) -> Vec<crate::Op<KvInput, Output>> {
    let sub: Vec<Operation> = idx.iter().map(|&i| ops[i].clone()).collect();
    Kv::from_history(&sub)
}

/// The values the key could hold just before `stuck` returned, from the
/// generic search with the key-value model (concrete strings, where the
/// key-value search merges the values no later read observes).
fn concrete_values(ops: &[Operation], idx: &[usize], stuck: usize) -> Option<Vec<String>> {
    let typed = typed_key(ops, idx);
    let local: Vec<usize> = (0..typed.len()).collect();
    let at = idx.iter().position(|&i| i == stuck)?;
    let states = crate::search::raw_states_before(&Kv, &typed, &local, at, 2_000_000)?;
    Some(values_of(&ops[stuck].key, &states))
}

/// The distinct values of `key` in `states`, sorted.
fn values_of(key: &str, states: &[KvState]) -> Vec<String> {
    let mut values: Vec<String> = states
        .iter()
        .map(|s| s.get(key).cloned().unwrap_or_default())
        .collect();
    values.sort();
    values.dedup();
    values
}

/// The generic search on one key.
fn generic_key(ops: &[Operation], idx: &[usize], budget: &mut Budget) -> PartOutcome {
    let typed = typed_key(ops, idx);
    let local: Vec<usize> = (0..typed.len()).collect();
    // The same account: its steps, memory share and clock. The generic
    // search always starts with its depth-first passes here.
    let depth_first = std::mem::replace(&mut budget.depth_first, true);
    let r = crate::search::search_raw(&Kv, &typed, &local, budget);
    budget.depth_first = depth_first;
    match r {
        Ok(()) => PartOutcome::Ok,
        Err(Ok((stuck, states))) => PartOutcome::Fail {
            stuck: idx[stuck],
            states: values_of(&typed[stuck].input.key, &states),
        },
        Err(Err(limit)) => PartOutcome::Exhausted(limit),
    }
}
