//! # concord-check
//!
//! Linearizability of histories of any data type, given its model: the
//! history checker of concord's simulator as a crate of its own, for
//! histories recorded by any system (see the README). It depends on
//! neither concord nor its simulator or runtime.
//!
//!
//! A [`Model`] describes the sequential object a service claims to be: a
//! state, a step that accepts or refuses an operation's input and output,
//! an optional partition of operations into independent parts, and words
//! for reports. [`check`] decides whether a history of typed operations
//! ([`Op`]) is linearizable with respect to it: whether every completed
//! operation can be given an instant between its call and its return, and
//! some operations of unknown outcome an instant after their call, such that
//! applying them one at a time from [`Model::init`] accepts every recorded
//! output.
//!
//! Built-in models live in [`crate::models`]: a register, a
//! compare-and-set register, the key-value store of [`crate::history`]
//! (checked by [`crate::linearizability`], its fast path), a set, a FIFO
//! queue, a counter and a bank.
//!
//! # How a history is decided
//!
//! 1. Operations are split into parts by [`Model::part`]; parts are checked
//!    independently (P-compositionality), on a pool of threads by
//!    [`check_parallel`]; the verdict does not depend on the pool.
//! 2. For each part, [`Model::decide`] may decide it directly. The register
//!    models do when the part is *unambiguous* (every write writes a value
//!    no other write writes): in O(n log n) time ([`unambiguous`]); the
//!    key-value model too for keys with appends and compare-and-sets whose
//!    observed states each name one write ([`unambiguous_kv`]).
//! 3. Otherwise the search decides it: Lowe's just-in-time
//!    linearization, written once in [`sweep`] (configurations memoised,
//!    identical pending operations linearized in return order, read-only
//!    operations linearized eagerly, unknown operations applied lazily, at
//!    most once, earliest first among identical ones, dominated
//!    configurations dropped) over a space of states: any model's
//!    ([`search`], with no limit on how many operations are pending at
//!    once, after depth-first passes that try a witness's order if the
//!    caller has one, [`check_hinted`], and orders with unknown operations
//!    taking effect in call order), or one key's interned values with
//!    rules of its own (the key-value model's search).
//!
//! Time: operation A precedes B when A's return is strictly before B's
//! call; touching intervals are concurrent, as in [`crate::history`].
//!
//! # Failures
//!
//! A non-linearizable part is explained like the key-value checker's
//! ([`ModelFailure`]): the operation at whose return no linearization was
//! left, the states the object could be in just before, and a small
//! sub-history that is not linearizable but is without that operation,
//! and in which that operation would pass at some instant (so it keeps
//! what produced the value the operation saw, whatever the model),
//! keeping too every operation [`Model::pins`] names as a possible source
//! of what the stuck operation saw.

#![deny(missing_docs)]

pub mod brute;
pub mod cli;
mod hash;
pub mod histgen;
pub mod history;
pub mod jepsen;
mod limits;
pub mod linearizability;
pub mod memory;
pub mod models;
pub mod report;
pub mod search;
pub mod shell;
mod shrink;
pub mod sweep;
pub mod typed;
pub mod unambiguous;
pub mod unambiguous_kv;

use std::fmt;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub use limits::{CheckConfig, Limit};
pub use shell::{main_with, run_with};

/// A sequential specification of a data type.
///
/// `step` and `step_unknown` must be pure functions of their arguments
/// (the search calls them in any order, many times). The state must
/// compare equal exactly when the object behaves the same from then on:
/// equal states are merged by the search.
pub trait Model: Sync {
    /// The object's state.
    type State: Clone + Eq + Hash + Debug + Send;
    /// What a client asks for.
    type Input: Clone + Eq + Hash + Debug + Send + Sync;
    /// What a completed operation answered.
    type Output: Clone + Eq + Hash + Debug + Send + Sync;

    /// A short name (`register`, `queue`, ...).
    fn name(&self) -> String;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies a completed operation: the state after it, or `None` if
    /// the object cannot answer `output` to `input` in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Applies an operation whose answer is not known: every state it may
    /// lead to when it takes effect in `state` (one per answer the object
    /// could have given). Empty if it cannot take effect in `state`.
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// The independent part of the history an operation belongs to, if
    /// the model is a product of independent objects (the keys of a
    /// key-value store, the elements of a set). `None` puts every
    /// operation in one part. Operations of different parts must never
    /// change or observe each other's state.
    fn part(&self, _input: &Self::Input) -> Option<String> {
        None
    }

    /// Whether the completed operation never changes the state when
    /// accepted (a read). The search then linearizes it as soon as it
    /// holds, without branching.
    fn read_only(&self, _input: &Self::Input, _output: &Self::Output) -> bool {
        false
    }

    /// Whether operation `other` could have given the object a state in
    /// which the stuck operation (`stuck_input`, `stuck_output`) is
    /// accepted: a failure's explanation never drops such operations.
    /// The default pins nothing; the explanation then still keeps
    /// operations that produced what the stuck one saw (it shrinks only
    /// to sub-histories in which the stuck operation passes at some
    /// instant), found by trial, which costs more shrink steps.
    fn pins(
        &self,
        _stuck_input: &Self::Input,
        _stuck_output: &Self::Output,
        _other: &Self::Input,
    ) -> bool {
        false
    }

    /// Decides one part directly when the model knows a faster way, e.g.
    /// for unambiguous histories; `None` leaves it to the search. The
    /// verdict and the stuck operation must be the search's.
    fn decide(&self, _ops: &[&Op<Self::Input, Self::Output>]) -> Option<Decision<Self::State>> {
        None
    }

    /// An input in words, for reports.
    fn describe_input(&self, input: &Self::Input) -> String {
        format!("{input:?}")
    }

    /// An output in words, for reports.
    fn describe_output(&self, output: &Self::Output) -> String {
        format!("{output:?}")
    }

    /// A state in words, for reports.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }

    /// The heap bytes `state` holds beyond `size_of::<Self::State>()`
    /// (its strings', vectors', trees' allocations, see
    /// [`memory`]), for the search's memory bound. The default, 0, is
    /// right only for states that do not allocate: a model whose states
    /// do must count them, or the bound undercounts.
    fn state_heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }
}

/// What [`Model::decide`] found about a part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<S> {
    /// The part is linearizable.
    Linearizable,
    /// The part is not linearizable.
    Stuck {
        /// The operation (index into the slice handed to `decide`) at
        /// whose return the search gets stuck: the earliest return after
        /// which no valid order is left.
        index: usize,
        /// States the object could be in just before that return, for
        /// the report; empty if the model cannot tell cheaply (a bounded
        /// search then finds some).
        states: Vec<S>,
    },
}

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<O> {
    /// Completed with this output; it took effect once between call and
    /// return.
    Ok(O),
    /// Definitely not applied.
    Failed,
    /// Unknown: applied at some instant after the call, or never.
    Unknown,
}

/// One operation of a typed history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op<I, O> {
    /// The issuing client (informational).
    pub client: u64,
    /// What the client asked for.
    pub input: I,
    /// Time of the call.
    pub call: u64,
    /// Time of the return; `None` when the outcome is unknown (or a failed
    /// operation's return time was not recorded).
    pub ret: Option<u64>,
    /// What became of it.
    pub outcome: Outcome<O>,
}

impl<I, O> Op<I, O> {
    /// A completed operation.
    pub fn ok(client: u64, input: I, call: u64, ret: u64, output: O) -> Self {
        Op {
            client,
            input,
            call,
            ret: Some(ret),
            outcome: Outcome::Ok(output),
        }
    }

    /// An operation of unknown outcome.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Op {
            client,
            input,
            call,
            ret: None,
            outcome: Outcome::Unknown,
        }
    }

    /// A failed operation (definitely not applied).
    pub fn failed(client: u64, input: I, call: u64, ret: Option<u64>) -> Self {
        Op {
            client,
            input,
            call,
            ret,
            outcome: Outcome::Failed,
        }
    }

    /// The output, if the operation completed.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Ok(o) => Some(o),
            _ => None,
        }
    }

    /// Checks times and outcome agree: `call <= ret`, a completed
    /// operation has a return time, an unknown one has none.
    pub fn validate(&self) -> Result<(), String> {
        crate::history::check_times(self.call, self.ret)?;
        match (&self.outcome, self.ret) {
            (Outcome::Ok(_), None) => Err("a completed operation needs a return time".into()),
            (Outcome::Unknown, Some(_)) => {
                Err("an operation with unknown outcome has no return time".into())
            }
            _ => Ok(()),
        }
    }
}

/// An operation in words: `c3 Write("a") => Done [10, 20]`.
pub fn describe_op<M: Model>(model: &M, op: &Op<M::Input, M::Output>) -> String {
    let outcome = match &op.outcome {
        Outcome::Ok(o) => model.describe_output(o),
        Outcome::Failed => "failed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
    };
    let ret = op.ret.map_or("?".to_string(), |r| r.to_string());
    format!(
        "c{} {} => {} [{}, {}]",
        op.client,
        model.describe_input(&op.input),
        outcome,
        op.call,
        ret
    )
}

/// The verdict of [`check`].
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The history is linearizable.
    Linearizable,
    /// It is not; explained.
    NotLinearizable(Box<ModelFailure>),
    /// The search ran out of budget: **not** a pass.
    Unknown {
        /// The part being checked.
        part: String,
        /// The limit reached.
        limit: Limit,
        /// Search steps spent on that part.
        steps: u64,
    },
    /// An operation is malformed.
    Invalid {
        /// Its index in the history.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

impl Verdict {
    /// `true` only for [`Verdict::Linearizable`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The failure, if not linearizable.
    pub fn failure(&self) -> Option<&ModelFailure> {
        match self {
            Verdict::NotLinearizable(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable(fail) => write!(f, "{fail}"),
            Verdict::Unknown { part, limit, steps } => write!(
                f,
                "UNKNOWN (not a pass): linearizability check gave up on part {part:?} after {steps} steps: {limit}"
            ),
            Verdict::Invalid { index, message } => {
                write!(f, "invalid history: operation #{index}: {message}")
            }
        }
    }
}

/// A non-linearizable history, explained.
#[derive(Clone, Debug)]
pub struct ModelFailure {
    /// The model's name.
    pub model: String,
    /// The part that is not linearizable (`""` when the model has one).
    pub part: String,
    /// Index (in the checked history) of the operation at whose return no
    /// valid order was left.
    pub stuck_index: usize,
    /// That operation, in words.
    pub stuck: String,
    /// States the object could be in just before that return (at most 8).
    pub possible_states: Vec<String>,
    /// Indices (into the checked history) of a small sub-history that is
    /// not linearizable and contains the stuck operation, by call time.
    pub sub_history: Vec<usize>,
    /// The sub-history in words, one operation per line, with a timeline.
    pub timeline: String,
    /// `true` if the sub-history is linearizable without the stuck
    /// operation (and was shrunk), `false` if it is everything of the part
    /// called before the stuck return.
    pub explained: bool,
}

impl fmt::Display for ModelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = if self.part.is_empty() {
            String::new()
        } else {
            format!(" part {:?}:", self.part)
        };
        writeln!(
            f,
            "NOT LINEARIZABLE ({} model):{part} no valid order once operation #{} returned: {}",
            self.model, self.stuck_index, self.stuck
        )?;
        writeln!(
            f,
            "states the {} could be in just before: {}",
            self.model,
            self.possible_states.join(", ")
        )?;
        if self.explained {
            writeln!(
                f,
                "sub-history of {} operations that is not linearizable; without the stuck \
                 operation it is:",
                self.sub_history.len()
            )?;
        } else {
            writeln!(
                f,
                "unshrunk sub-history of {} operations (everything of the part called before \
                 the stuck return) that is not linearizable:",
                self.sub_history.len()
            )?;
        }
        write!(f, "{}", self.timeline)
    }
}

/// Statistics of one part's check.
#[derive(Clone, Debug)]
pub struct PartStats {
    /// The part (`""` when the model has one).
    pub part: String,
    /// Operations in it (every outcome).
    pub ops: usize,
    /// Of those, completed.
    pub completed: usize,
    /// Of those, unknown.
    pub unknown: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Search steps (0 when decided directly).
    pub steps: u64,
    /// Whether [`Model::decide`] decided it (no search).
    pub decided_directly: bool,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// Verdict of the part in words.
    pub verdict: String,
}

/// The result of [`check_parallel`].
#[derive(Clone, Debug)]
pub struct ModelReport {
    /// The verdict (independent of the number of threads, unless a
    /// wall-clock limit is hit).
    pub verdict: Verdict,
    /// One entry per part, parts in sorted order.
    pub parts: Vec<PartStats>,
}

/// Checks `ops` against `model` with the default [`CheckConfig`].
pub fn check<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>]) -> Verdict {
    check_parallel(model, ops, &CheckConfig::default(), 1).verdict
}

/// Checks `ops` against `model` with the given limits.
pub fn check_with<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    cfg: &CheckConfig,
) -> Verdict {
    check_parallel(model, ops, cfg, 1).verdict
}

/// The operations of each part (indices into `ops`), parts sorted.
fn split_parts<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>]) -> Vec<(String, Vec<usize>)> {
    let mut keyed: Vec<(Option<String>, usize)> = ops
        .iter()
        .enumerate()
        .map(|(i, o)| (model.part(&o.input), i))
        .collect();
    keyed.sort();
    let mut parts: Vec<(String, Vec<usize>)> = Vec::new();
    let mut last: Option<Option<String>> = None;
    for (k, i) in keyed {
        if last.as_ref() != Some(&k) {
            parts.push((k.clone().unwrap_or_default(), Vec::new()));
            last = Some(k);
        }
        parts.last_mut().expect("pushed").1.push(i);
    }
    parts
}

/// What the check of one part (of the generic search, or one key of the
/// key-value search) found.
pub(crate) enum PartOutcome {
    Ok,
    /// Stuck at the return of this operation (index into the history),
    /// with the states (the key-value search: the key's values) the
    /// object could be in just before, in words.
    Fail {
        stuck: usize,
        states: Vec<String>,
    },
    Exhausted(Limit),
}

/// Checks one part (`idx` into `ops`): the model's own decision if it has
/// one, else the search. `want_states`: a failure reports the states
/// before the stuck return (the sub-checks of a failure's explanation
/// need only the stuck operation).
pub(crate) fn check_part<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    budget: &mut limits::Budget,
    direct: &mut bool,
    want_states: bool,
    hints: &[Option<u64>],
) -> PartOutcome {
    let sub: Vec<&Op<M::Input, M::Output>> = idx.iter().map(|&i| &ops[i]).collect();
    if let Some(d) = model.decide(&sub) {
        *direct = true;
        return match d {
            Decision::Linearizable => PartOutcome::Ok,
            Decision::Stuck { index, states } => {
                assert!(
                    index < idx.len(),
                    "decide named an operation it was not given"
                );
                let stuck = idx[index];
                let states = if !want_states {
                    Vec::new()
                } else if states.is_empty() {
                    // From a bounded search of the history up to there.
                    search::states_before(model, ops, idx, stuck, STATES_SEARCH_STEPS)
                } else {
                    search::describe_states(model, &states)
                };
                PartOutcome::Fail { stuck, states }
            }
        };
    }
    search::check_part(model, ops, idx, budget, hints)
}

/// The search steps spent finding the states before a stuck return that
/// [`Model::decide`] did not give.
const STATES_SEARCH_STEPS: u64 = 200_000;

/// Checks `ops` against `model`, parts in parallel on up to `threads`
/// threads (at least one). Each part has its own step and frontier
/// limits; the wall-clock limit is shared, and so is the memory bound
/// ([`CheckConfig::max_memory_bytes`], an equal share per thread). The verdict names the first
/// part in sorted order that is not linearizable, else the first that
/// gave up, else success.
pub fn check_parallel<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    cfg: &CheckConfig,
    threads: usize,
) -> ModelReport {
    check_parallel_hinted(model, ops, &[], cfg, threads)
}

/// Checks `ops` against `model` with the given limits, trying first the
/// order a witness names: `hints[i]` is where operation `i` took effect in
/// the system's own order (e.g. its log index, as the simulator's
/// `TookEffect::order_key` gives), `None` where not known; an operation of
/// unknown outcome without one is tried as never having taken effect. An
/// empty `hints` is no witness. The simulator's `check::workload::Checked`
/// passes what it saw.
///
/// Hints only steer: the search first tries the completed operations and
/// the hinted unknown ones in key order (a few steps per operation when
/// the witness is right: the subset-sum over which unknown operations took
/// effect is then one path), and accepts only an order it built itself,
/// each operation placed between its call and return and accepted by the
/// model. When that order does not hold, the witness is forgotten and the
/// search runs as [`check_with`] does; a wrong witness (a service that
/// reports one order and answers by another) never turns a failure into
/// a pass, it only costs that first try's steps.
///
/// # Panics
///
/// If `hints` is neither empty nor as long as `ops`.
pub fn check_hinted<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    hints: &[Option<u64>],
    cfg: &CheckConfig,
) -> Verdict {
    check_parallel_hinted(model, ops, hints, cfg, 1).verdict
}

/// [`check_parallel`] with a witness's hints ([`check_hinted`]).
///
/// # Panics
///
/// If `hints` is neither empty nor as long as `ops`.
pub fn check_parallel_hinted<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    hints: &[Option<u64>],
    cfg: &CheckConfig,
    threads: usize,
) -> ModelReport {
    assert!(
        hints.is_empty() || hints.len() == ops.len(),
        "{} hints for {} operations",
        hints.len(),
        ops.len()
    );
    let parts = split_parts(model, ops);
    let stats_of = |part: &str, idx: &[usize]| PartStats {
        part: part.to_string(),
        ops: idx.len(),
        completed: idx
            .iter()
            .filter(|&&i| matches!(ops[i].outcome, Outcome::Ok(_)))
            .count(),
        unknown: idx
            .iter()
            .filter(|&&i| matches!(ops[i].outcome, Outcome::Unknown))
            .count(),
        failed: idx
            .iter()
            .filter(|&&i| matches!(ops[i].outcome, Outcome::Failed))
            .count(),
        steps: 0,
        decided_directly: false,
        elapsed: Duration::ZERO,
        verdict: "not checked (an earlier part failed)".to_string(),
    };
    for (i, op) in ops.iter().enumerate() {
        if let Err(message) = op.validate() {
            return ModelReport {
                verdict: Verdict::Invalid { index: i, message },
                parts: parts.iter().map(|(p, idx)| stats_of(p, idx)).collect(),
            };
        }
    }
    let deadline = cfg.time_limit.map(|d| Instant::now() + d);
    let memory_bytes = limits::memory_share(cfg, threads, parts.len());
    let checked = limits::in_parallel(&parts, threads, |(part, idx)| {
        let mut stats = stats_of(part, idx);
        let mut budget = limits::Budget::new(cfg, memory_bytes, deadline);
        let started = Instant::now();
        let mut direct = false;
        let outcome = check_part(model, ops, idx, &mut budget, &mut direct, true, hints);
        stats.elapsed = started.elapsed();
        stats.steps = budget.steps;
        stats.decided_directly = direct;
        stats.verdict = match &outcome {
            PartOutcome::Ok => "linearizable".to_string(),
            PartOutcome::Fail { .. } => "NOT linearizable".to_string(),
            PartOutcome::Exhausted(limit) => format!("unknown: {limit}"),
        };
        let failed = matches!(outcome, PartOutcome::Fail { .. });
        ((stats, outcome), failed)
    });
    let mut done: Vec<(PartStats, Option<PartOutcome>)> = checked
        .into_iter()
        .zip(&parts)
        .map(|(checked, (part, idx))| match checked {
            Some((stats, outcome)) => (stats, Some(outcome)),
            None => (stats_of(part, idx), None),
        })
        .collect();
    let mut verdict = Verdict::Linearizable;
    for (i, (stats, outcome)) in done.iter_mut().enumerate() {
        match outcome.take() {
            Some(PartOutcome::Fail { stuck, states }) => {
                let (part, idx) = &parts[i];
                verdict = Verdict::NotLinearizable(Box::new(search::explain(
                    model, ops, part, idx, stuck, states, cfg,
                )));
                break;
            }
            Some(PartOutcome::Exhausted(limit)) if verdict.is_ok() => {
                verdict = Verdict::Unknown {
                    part: stats.part.clone(),
                    limit,
                    steps: stats.steps,
                };
            }
            _ => {}
        }
    }
    ModelReport {
        verdict,
        parts: done.into_iter().map(|d| d.0).collect(),
    }
}

/// Renders operations of a typed history as a timeline, one line per
/// operation sorted by call time, `[====]` completed, `[---->` unknown,
/// `[xxxx]` failed; the operation with index `mark` is flagged.
pub fn timeline<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    idx: &[usize],
    mark: Option<usize>,
) -> String {
    const WIDTH: usize = 48;
    let mut order: Vec<usize> = idx.to_vec();
    order.sort_by_key(|&i| (ops[i].call, ops[i].ret.unwrap_or(u64::MAX), i));
    let lo = order.iter().map(|&i| ops[i].call).min().unwrap_or(0);
    let hi = order
        .iter()
        .map(|&i| ops[i].ret.unwrap_or(ops[i].call))
        .max()
        .unwrap_or(lo)
        .max(lo + 1);
    let col = |t: u64| -> usize {
        (((t.saturating_sub(lo)) as u128 * (WIDTH as u128 - 1)) / (hi - lo) as u128) as usize
    };
    let mut out = format!(
        "  time {lo} .. {hi}, one column = {:.1} time units\n",
        (hi - lo) as f64 / (WIDTH - 1) as f64
    );
    for i in order {
        let o = &ops[i];
        let a = col(o.call).min(WIDTH - 1);
        let mut bar = vec![' '; WIDTH];
        match o.ret {
            Some(r) => {
                let b = col(r).clamp(a, WIDTH - 1);
                let fill = if matches!(o.outcome, Outcome::Failed) {
                    'x'
                } else {
                    '='
                };
                for c in bar.iter_mut().take(b + 1).skip(a) {
                    *c = fill;
                }
                bar[a] = '[';
                if b > a {
                    bar[b] = ']';
                }
            }
            None => {
                for c in bar.iter_mut().skip(a) {
                    *c = '-';
                }
                bar[a] = '[';
                bar[WIDTH - 1] = '>';
            }
        }
        let bar: String = bar.into_iter().collect();
        let flag = if mark == Some(i) {
            "  <- stuck here"
        } else {
            ""
        };
        out.push_str(&format!("  |{bar}| #{i} {}{flag}\n", describe_op(model, o)));
    }
    out
}
