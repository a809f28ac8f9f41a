//! Linearizability checker for key-value histories.
//!
//! [`check_history`] decides whether a [`history`](crate::history) of
//! `get` / `put` / `append` / `cas` operations is linearizable: whether every
//! completed operation can be given an instant between its call and its
//! return, and some unknown operations an instant after their call, such that
//! executing them one at a time in that order on a single atomic key-value
//! store gives exactly the recorded results.
//!
//! Keys are independent (P-compositionality): [`check_history_with`] checks
//! them one by one in sorted order, [`check_history_parallel`] on a bounded
//! pool of threads, with the same verdict. For one key the search is Lowe's
//! just-in-time linearization over configurations (model state, which
//! pending operations are linearized, which unknown operations applied),
//! with memoisation and a set of rules, each argued where it is
//! implemented, that keep it small: a compressed prefix, interned and
//! merged values, symmetry between identical operations, eager reads,
//! lazily applied unknown operations with dominance, dead values retired,
//! and sources pinned by what later reads name.
//!
//! **Budgets.** The search is exponential in the worst case. [`CheckConfig`]
//! bounds it by a deterministic step count (and optionally wall-clock time,
//! frontier size and a pace per return, [`Limit`]); a bound hit gives
//! [`CheckResult::Unknown`], which is *not* a pass.
//!
//! **Failures.** [`Failure`] names the key and the operation at whose
//! return the search got stuck, with a small sub-history that explains it:
//! every write that could have supplied what the stuck operation saw, plus
//! as few other operations as shrinking finds within
//! [`CheckConfig::shrink_steps`] ([`Failure::explained`] says whether it
//! did). It prints as JSON lines ([`Failure::to_jsonl`]) and as a timeline
//! ([`Failure::timeline`]).
//!
//! Every rule, the budgets' pace, and why the explanation keeps the
//! possible sources: the repository's `docs/checker-search.md`.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use crate::hash::FxHasher;
use crate::history::{to_jsonl, Op, Operation, Outcome, Output};
use crate::limits::{in_parallel, memory_share, Budget};
use crate::models::kv::search::{check_key, Init};
use crate::shrink::{shrink, SubHistories};
use crate::PartOutcome;

type FxBuild = BuildHasherDefault<FxHasher>;
type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub use crate::limits::{CheckConfig, Limit, STEPS_PER_RETURN_DEFAULT};

// ---------------------------------------------------------------------------
// Public API

/// The verdict of [`check_history`].
#[derive(Clone, Debug)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable.
    NotLinearizable(Box<Failure>),
    /// The search ran out of budget: the history may or may not be
    /// linearizable. This is **not** a pass.
    Unknown(Exhausted),
    /// An operation is malformed (see [`Operation::validate`]).
    Invalid {
        /// Index of the operation in the input.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl CheckResult {
    /// `true` only for [`CheckResult::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// The failure, if the history is not linearizable.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            CheckResult::NotLinearizable(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::NotLinearizable(fail) => write!(f, "{fail}"),
            CheckResult::Unknown(e) => write!(f, "{e}"),
            CheckResult::Invalid { index, message } => {
                write!(f, "invalid history: operation #{index}: {message}")
            }
        }
    }
}

/// Why a check gave up.
#[derive(Clone, Debug)]
pub struct Exhausted {
    /// The key being checked when the budget ran out.
    pub key: String,
    /// Which limit ran out, in words (`limit` as text).
    pub reason: String,
    /// Which limit ran out.
    pub limit: Limit,
    /// Search steps spent in total.
    pub steps: u64,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UNKNOWN (not a pass): linearizability check gave up on key {:?} after {} steps: {}",
            self.key, self.steps, self.reason
        )
    }
}

/// A non-linearizable history, explained.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The key whose sub-history is not linearizable.
    pub key: String,
    /// Index (in the checked history) of the operation at whose return no
    /// valid linearization remained.
    pub stuck_index: usize,
    /// That operation.
    pub stuck_op: Operation,
    /// Values the key could hold just before the stuck operation returned
    /// (at most 8; `<other>` stands for any value no read still to return
    /// could observe). Empty when the key was decided not linearizable
    /// without a search and the search could not name them within its
    /// report budget (20,000,000 steps).
    pub possible_values: Vec<String>,
    /// A small sub-history of the key, sorted by call time, that is itself
    /// not linearizable (from an empty key) and contains `stuck_op`. When
    /// `explained`, it also keeps every write that could have given the
    /// stuck operation a value it accepts, and is linearizable without the
    /// stuck operation: the others are consistent, the stuck one
    /// contradicts them.
    pub sub_history: Vec<Operation>,
    /// `true` if the sub-history was shown to be linearizable without the
    /// stuck operation (and then shrunk); `false` if no such sub-history
    /// was found within the shrink budget, in which case `sub_history` is
    /// everything of the key called before the stuck return (still not
    /// linearizable, but the operations other than the stuck one may be
    /// inconsistent among themselves too).
    pub explained: bool,
    /// `true` if shrinking ran to completion: removing any single operation
    /// other than the stuck one and the pinned writes breaks the property
    /// above. `false` if the shrink budget ran out first, or if the
    /// sub-history is not `explained`.
    pub minimal: bool,
}

impl Failure {
    /// The sub-history as JSON lines.
    pub fn to_jsonl(&self) -> String {
        to_jsonl(&self.sub_history)
    }

    /// The sub-history as a readable timeline, one operation per line, with
    /// its interval drawn to scale.
    pub fn timeline(&self) -> String {
        timeline(&self.sub_history, Some(&self.stuck_op))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "NOT LINEARIZABLE: key {:?}: no valid order once operation #{} returned: {}",
            self.key, self.stuck_index, self.stuck_op
        )?;
        writeln!(
            f,
            "values the key could hold just before: {:?}",
            self.possible_values
        )?;
        if self.explained {
            writeln!(
                f,
                "{} sub-history of {} operations that is not linearizable; without the \
                 stuck operation it is, and it keeps every write the stuck operation \
                 could have seen:",
                if self.minimal { "minimal" } else { "small" },
                self.sub_history.len(),
            )?;
        } else {
            writeln!(
                f,
                "unshrunk sub-history of {} operations (everything on the key called before \
                 the stuck return) that is not linearizable; no smaller sub-history that is \
                 linearizable without the stuck operation was found within the shrink budget, \
                 so the other operations may contradict each other as well:",
                self.sub_history.len(),
            )?;
        }
        write!(f, "{}", self.timeline())?;
        writeln!(f, "as JSON lines:")?;
        write!(f, "{}", self.to_jsonl())
    }
}

/// Renders operations as a timeline: one line per operation (sorted by call
/// time) with its interval drawn to scale; `[====]` completed, `[---->`
/// unknown outcome (may take effect any time after the call), `[xxxx]`
/// failed. The operation equal to `mark`, if any, is flagged.
pub fn timeline(ops: &[Operation], mark: Option<&Operation>) -> String {
    const WIDTH: usize = 48;
    let mut order: Vec<&Operation> = ops.iter().collect();
    order.sort_by_key(|o| (o.call, o.ret.unwrap_or(u64::MAX)));
    let lo = order.iter().map(|o| o.call).min().unwrap_or(0);
    let hi = order
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .max()
        .unwrap_or(lo)
        .max(lo + 1);
    let col = |t: u64| -> usize {
        (((t - lo) as u128 * (WIDTH as u128 - 1)) / (hi - lo) as u128) as usize
    };
    let mut out = String::new();
    out.push_str(&format!(
        "  time {lo} .. {hi}, one column = {:.1} time units\n",
        (hi - lo) as f64 / (WIDTH - 1) as f64
    ));
    for o in order {
        let a = col(o.call);
        let mut bar = vec![' '; WIDTH];
        match (o.ret, &o.outcome) {
            (Some(r), out) => {
                let b = col(r).max(a);
                let fill = if matches!(out, Outcome::Failed) {
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
            (None, _) => {
                for c in bar.iter_mut().skip(a) {
                    *c = '-';
                }
                bar[a] = '[';
                bar[WIDTH - 1] = '>';
            }
        }
        let bar: String = bar.into_iter().collect();
        let flag = if mark == Some(o) {
            "  <- stuck here"
        } else {
            ""
        };
        out.push_str(&format!("  |{bar}| {o}{flag}\n"));
    }
    out
}

/// Checks `ops` with the default [`CheckConfig`].
pub fn check_history(ops: &[Operation]) -> CheckResult {
    check_history_with(ops, &CheckConfig::default())
}

/// Checks `ops` with the given limits, one key after the other in sorted
/// order; [`CheckConfig::max_steps`] bounds the steps of all keys together.
pub fn check_history_with(ops: &[Operation], cfg: &CheckConfig) -> CheckResult {
    if let Some(invalid) = validate_all(ops) {
        return invalid;
    }
    let keys = split_by_key(ops);
    let deadline = cfg.time_limit.map(|d| Instant::now() + d);
    let mut budget = Budget::new(cfg, cfg.max_memory_bytes, deadline);
    let mut first_unknown: Option<Exhausted> = None;
    for (key, idx) in &keys {
        match check_key(ops, idx, Init::Empty, &mut budget) {
            PartOutcome::Ok => {}
            PartOutcome::Exhausted(limit) => {
                if first_unknown.is_none() {
                    first_unknown = Some(Exhausted {
                        key: key.to_string(),
                        reason: limit.to_string(),
                        limit,
                        steps: budget.steps,
                    });
                }
                // Keep looking for a definite failure in other keys, with
                // whatever budget is left.
                if budget.spent() {
                    break;
                }
            }
            PartOutcome::Fail {
                stuck,
                states: values,
            } => {
                return CheckResult::NotLinearizable(Box::new(explain(
                    ops, key, idx, stuck, values, cfg,
                )));
            }
        }
    }
    match first_unknown {
        Some(e) => CheckResult::Unknown(e),
        None => CheckResult::Ok,
    }
}

fn validate_all(ops: &[Operation]) -> Option<CheckResult> {
    for (i, op) in ops.iter().enumerate() {
        if let Err(message) = op.validate() {
            return Some(CheckResult::Invalid { index: i, message });
        }
    }
    None
}

/// The operations of each key (indices into `ops`), keys in sorted order.
fn split_by_key(ops: &[Operation]) -> Vec<(&str, Vec<usize>)> {
    let mut by_key: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(i);
    }
    let mut keys: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    keys
}

/// What became of one key in [`check_history_parallel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The key's sub-history is linearizable.
    Linearizable,
    /// The key's sub-history is not linearizable.
    NotLinearizable,
    /// The search ran into this limit on this key.
    GaveUp(Limit),
    /// Not checked: a key earlier in sorted order is already known not to
    /// be linearizable, and only the first such key is reported.
    Skipped,
}

impl fmt::Display for KeyVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyVerdict::Linearizable => write!(f, "linearizable"),
            KeyVerdict::NotLinearizable => write!(f, "NOT linearizable"),
            KeyVerdict::GaveUp(limit) => write!(f, "unknown: {limit}"),
            KeyVerdict::Skipped => write!(f, "not checked (an earlier key failed)"),
        }
    }
}

/// Statistics of one key's check.
#[derive(Clone, Debug)]
pub struct KeyStats {
    /// The key.
    pub key: String,
    /// Operations on the key (every outcome).
    pub ops: usize,
    /// Of those, completed (`"ok": true`).
    pub completed: usize,
    /// Of those, with unknown outcome.
    pub unknown: usize,
    /// Of those, failed (`"ok": false`).
    pub failed: usize,
    /// Search steps spent on the key (without explaining a failure).
    pub steps: u64,
    /// Wall-clock time spent on the key (without explaining a failure).
    pub elapsed: Duration,
    /// The verdict.
    pub verdict: KeyVerdict,
}

/// The result of [`check_history_parallel`]: the verdict and per-key
/// statistics.
#[derive(Clone, Debug)]
pub struct Report {
    /// The verdict, the same as [`check_history_with`] would give whatever
    /// the number of threads (unless a wall-clock limit is hit, which is
    /// never deterministic).
    pub result: CheckResult,
    /// One entry per key, in sorted key order.
    pub keys: Vec<KeyStats>,
}

/// Checks `ops` with keys checked in parallel on up to `threads` threads
/// (at least one): keys are independent (P-compositionality), so each key
/// is a separate search with its own [`CheckConfig::max_steps`] and
/// [`CheckConfig::max_frontier`]; the wall-clock limit is shared.
///
/// The result does not depend on `threads`: it reports the first key in
/// sorted order that is not linearizable (keys after it that are not
/// checked yet are skipped), else the first key whose check gave up, else
/// success. Per-key step limits make that deterministic; only
/// [`CheckConfig::time_limit`] depends on the machine.
pub fn check_history_parallel(ops: &[Operation], cfg: &CheckConfig, threads: usize) -> Report {
    let keys = split_by_key(ops);
    let stats_of = |key: &str, idx: &[usize]| KeyStats {
        key: key.to_string(),
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
        elapsed: Duration::ZERO,
        verdict: KeyVerdict::Skipped,
    };
    if let Some(invalid) = validate_all(ops) {
        return Report {
            result: invalid,
            keys: keys.iter().map(|(k, idx)| stats_of(k, idx)).collect(),
        };
    }
    let deadline = cfg.time_limit.map(|d| Instant::now() + d);
    let memory_bytes = memory_share(cfg, threads, keys.len());
    let checked = in_parallel(&keys, threads, |(key, idx)| {
        let mut stats = stats_of(key, idx);
        let mut budget = Budget::new(cfg, memory_bytes, deadline);
        let started = Instant::now();
        let outcome = check_key(ops, idx, Init::Empty, &mut budget);
        stats.elapsed = started.elapsed();
        stats.steps = budget.steps;
        stats.verdict = match &outcome {
            PartOutcome::Ok => KeyVerdict::Linearizable,
            PartOutcome::Fail { .. } => KeyVerdict::NotLinearizable,
            PartOutcome::Exhausted(limit) => KeyVerdict::GaveUp(limit.clone()),
        };
        let failed = matches!(outcome, PartOutcome::Fail { .. });
        ((stats, outcome), failed)
    });
    let mut done: Vec<(KeyStats, Option<PartOutcome>)> = checked
        .into_iter()
        .zip(&keys)
        .map(|(checked, (key, idx))| match checked {
            Some((stats, outcome)) => (stats, Some(outcome)),
            None => (stats_of(key, idx), None),
        })
        .collect();
    let mut result = CheckResult::Ok;
    for (i, (stats, outcome)) in done.iter_mut().enumerate() {
        match outcome.take() {
            Some(PartOutcome::Fail {
                stuck,
                states: values,
            }) => {
                let (key, idx) = &keys[i];
                result = CheckResult::NotLinearizable(Box::new(explain(
                    ops, key, idx, stuck, values, cfg,
                )));
                break;
            }
            Some(PartOutcome::Exhausted(limit)) if result.is_ok() => {
                result = CheckResult::Unknown(Exhausted {
                    key: stats.key.clone(),
                    reason: limit.to_string(),
                    limit,
                    steps: stats.steps,
                });
            }
            _ => {}
        }
    }
    Report {
        result,
        keys: done.into_iter().map(|d| d.0).collect(),
    }
}

// ---------------------------------------------------------------------------
// Explaining a failure

/// Checks the sub-history `idx` of `ops` from the empty key, spending
/// search steps from `left`: `None` if they ran out, `Some(Ok(()))` if it
/// is linearizable, `Some(Err(stuck))` if not, with the operation at whose
/// return the search got stuck.
fn run_sub(ops: &[Operation], idx: &[usize], left: &mut u64) -> Option<Result<(), usize>> {
    if *left == 0 {
        return None;
    }
    let mut b = Budget {
        max_frontier: 1_000_000,
        values: false,
        // The shrink budget bounds these.
        steps_per_return: 0,
        ..Budget::small(*left)
    };
    let r = check_key(ops, idx, Init::Empty, &mut b);
    *left = left.saturating_sub(b.steps + idx.len() as u64);
    match r {
        PartOutcome::Fail { stuck, .. } => Some(Err(stuck)),
        PartOutcome::Ok => Some(Ok(())),
        PartOutcome::Exhausted(_) => None,
    }
}

/// The key-value search's sub-histories of one key, for [`crate::shrink`].
struct KvSub<'a> {
    ops: &'a [Operation],
}

impl SubHistories for KvSub<'_> {
    fn run(&self, with: &[usize], left: &mut u64) -> Option<Result<(), usize>> {
        run_sub(self.ops, with, left)
    }

    fn read_only(&self, op: usize) -> bool {
        read_only(&self.ops[op])
    }
}

/// What the stuck operation needed to see.
enum Needs<'a> {
    /// This value (a get's result, a successful cas's `from`).
    Value(&'a str),
    /// Any value but this one (an unsuccessful cas's `from`).
    NotValue(&'a str),
    /// Nothing in particular (an operation that cannot get stuck).
    Nothing,
}

fn needs(o: &Operation) -> Needs<'_> {
    match (&o.op, &o.outcome) {
        (Op::Get, Outcome::Ok(Output::Value(v))) => Needs::Value(v),
        (Op::Cas { from, .. }, Outcome::Ok(Output::Swapped(true))) => Needs::Value(from),
        (Op::Cas { from, .. }, Outcome::Ok(Output::Swapped(false))) => Needs::NotValue(from),
        _ => Needs::Nothing,
    }
}

/// Is `w` a write that could give the key a state in which the stuck
/// operation (needing `need`) succeeds, alone or as one of a chain of
/// writes? `tokens` are the values appended on the key: a put or cas of
/// `p` counts for a needed `v` if `p == v` or `v` is `p` followed by
/// appended tokens; an append of `a` if `a` occurs in `v` followed by the
/// end or another token.
fn could_satisfy(need: &Needs<'_>, w: &Operation, tokens: &[&str]) -> bool {
    if matches!(
        w.outcome,
        Outcome::Failed | Outcome::Ok(Output::Swapped(false))
    ) {
        return false;
    }
    // Can `rest` be the tail `token ...` of a value built by appends? The
    // first token is checked exactly; the rest loosely (it starts with one).
    let continues =
        |rest: &str| rest.is_empty() || tokens.iter().any(|t| !t.is_empty() && rest.starts_with(t));
    let written = match &w.op {
        Op::Get => return false,
        Op::Put { value } => value,
        Op::Cas { to, .. } => to,
        Op::Append { value } => {
            return match need {
                Needs::Value(v) => {
                    value.is_empty()
                        || v.match_indices(value.as_str())
                            .any(|(i, _)| continues(&v[i + value.len()..]))
                }
                Needs::NotValue(_) => !value.is_empty(),
                Needs::Nothing => false,
            }
        }
    };
    match need {
        Needs::Value(v) => {
            written == v
                || (!written.is_empty()
                    && v.starts_with(written.as_str())
                    && continues(&v[written.len()..]))
                || (written.is_empty() && continues(v))
        }
        Needs::NotValue(f) => written != f,
        Needs::Nothing => false,
    }
}

/// Is `o` read-only (a get or an unsuccessful cas)? Removing a read-only
/// operation from a linearizable history leaves it linearizable.
fn read_only(o: &Operation) -> bool {
    matches!(
        (&o.op, &o.outcome),
        (Op::Get, _) | (Op::Cas { .. }, Outcome::Ok(Output::Swapped(false)))
    )
}

fn explain(
    ops: &[Operation],
    key: &str,
    key_idx: &[usize],
    stuck: usize,
    values: Vec<String>,
    cfg: &CheckConfig,
) -> Failure {
    let t = ops[stuck].ret.unwrap_or(ops[stuck].call);
    // Relevant operations called up to the stuck return, by call time,
    // without the stuck operation itself. The history restricted to them
    // and the stuck operation gets stuck at the same return, so it is
    // the fallback explanation.
    let mut prefix: Vec<usize> = key_idx
        .iter()
        .copied()
        .filter(|&i| {
            let o = &ops[i];
            i != stuck
                && o.call <= t
                && !matches!(o.outcome, Outcome::Failed)
                && !(matches!(o.op, Op::Get) && matches!(o.outcome, Outcome::Unknown))
        })
        .collect();
    prefix.sort_by_key(|&i| (ops[i].call, i));
    // The writes that could have let the stuck operation succeed are
    // pinned: shrinking never removes them (see "Failures" in the module
    // documentation).
    let need = needs(&ops[stuck]);
    let mut tokens: Vec<&str> = prefix
        .iter()
        .filter_map(|&i| match &ops[i].op {
            Op::Append { value } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    let (pinned, others): (Vec<usize>, Vec<usize>) = prefix
        .iter()
        .partition(|&&i| could_satisfy(&need, &ops[i], &tokens));
    let mut left = cfg.shrink_steps;
    let found = if cfg.shrink {
        shrink(&KvSub { ops }, &pinned, &others, stuck, &mut left)
    } else {
        None
    };
    let (mut rest, explained, minimal) = match found {
        Some((cur, minimal)) => (
            pinned.iter().chain(&cur).copied().collect::<Vec<usize>>(),
            true,
            minimal,
        ),
        None => (prefix, false, false),
    };
    rest.push(stuck);
    let mut sub: Vec<Operation> = rest.iter().map(|&i| ops[i].clone()).collect();
    sub.sort_by_key(|o| (o.call, o.ret.unwrap_or(u64::MAX)));
    Failure {
        key: key.to_string(),
        stuck_index: stuck,
        stuck_op: ops[stuck].clone(),
        possible_values: crate::search::shown(values),
        sub_history: sub,
        minimal,
        explained,
    }
}
