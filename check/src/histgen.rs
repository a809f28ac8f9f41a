//! Deterministic generator of large random histories that are linearizable
//! by construction, for tests and benchmarks of the checker.
//!
//! `clients` clients run against an atomic in-memory key-value store. Each
//! client thinks for an exponentially distributed time, calls an operation,
//! and returns after an exponentially distributed latency; the operation
//! takes effect at an instant drawn uniformly inside its interval, so the
//! recorded history is linearizable (the order of those instants is a
//! witness). Some operations fail (never applied) and some end with an
//! unknown outcome (applied at a random instant up to twice their latency
//! after the call, or never). Written values are short unique tokens
//! (`v12`, `a7`, `c3`), and a key longer than [`GenConfig::max_value_len`]
//! receives puts instead of appends, so states stay small.
//!
//! [`corrupt_stale_read`] turns one completed `get` into a stale read,
//! making the history non-linearizable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Op, Operation, Outcome, Output};

/// Parameters of [`generate`].
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Seed of the ChaCha RNG; same config ⇒ same history.
    pub seed: u64,
    /// Number of operations to produce.
    pub ops: usize,
    /// Number of keys (`k0`, `k1`, …), chosen uniformly.
    pub keys: usize,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Relative weight of `get`.
    pub w_get: u32,
    /// Relative weight of `put`.
    pub w_put: u32,
    /// Relative weight of `append`.
    pub w_append: u32,
    /// Relative weight of `cas`.
    pub w_cas: u32,
    /// Probability that an operation fails (`"ok": false`, not applied).
    pub p_failed: f64,
    /// Probability that an operation's outcome is unknown.
    pub p_unknown: f64,
    /// Mean think time between a return and the client's next call.
    pub mean_think: f64,
    /// Mean latency from call to return.
    pub mean_latency: f64,
    /// A key whose value is at least this long gets puts instead of appends.
    pub max_value_len: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 0,
            ops: 1000,
            keys: 1,
            clients: 10,
            w_get: 4,
            w_put: 2,
            w_append: 2,
            w_cas: 2,
            p_failed: 0.02,
            p_unknown: 0.01,
            mean_think: 50.0,
            mean_latency: 100.0,
            max_value_len: 24,
        }
    }
}

enum Ev {
    /// Client calls its next operation.
    Call(usize),
    /// Operation (index into `ops`) takes effect.
    Apply(usize),
    /// Operation returns to its client.
    Return(usize),
}

fn exp(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    (-u.ln() * mean).round().max(1.0) as u64
}

/// Generates a linearizable history as described in the module docs.
pub fn generate(cfg: &GenConfig) -> Vec<Operation> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let keys = cfg.keys.max(1);
    let clients = cfg.clients.max(1);
    let mut store: Vec<String> = vec![String::new(); keys];
    // Per-key history of values, for choosing plausible cas `from` values.
    let mut recent: Vec<Vec<String>> = vec![vec![String::new()]; keys];
    let mut ops: Vec<Operation> = Vec::with_capacity(cfg.ops);
    // For each op: applied? (decided at call time)
    let mut will_apply: Vec<bool> = Vec::with_capacity(cfg.ops);
    let mut key_of: Vec<usize> = Vec::with_capacity(cfg.ops);
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize, u8)>> = BinaryHeap::new();
    let mut seq: u64 = 0;
    let mut push = |heap: &mut BinaryHeap<_>, t: u64, ev: Ev| {
        let (idx, tag) = match ev {
            Ev::Call(c) => (c, 0u8),
            Ev::Apply(i) => (i, 1u8),
            Ev::Return(i) => (i, 2u8),
        };
        seq += 1;
        heap.push(Reverse((t, seq, idx, tag)));
    };
    for c in 0..clients {
        let t = exp(&mut rng, cfg.mean_think);
        push(&mut heap, t, Ev::Call(c));
    }
    let total_w = (cfg.w_get + cfg.w_put + cfg.w_append + cfg.w_cas).max(1);
    let mut token: u64 = 0;
    let mut called = 0usize;
    while let Some(Reverse((t, _, idx, tag))) = heap.pop() {
        match tag {
            0 => {
                if called >= cfg.ops {
                    continue;
                }
                called += 1;
                let client = idx;
                let k = rng.gen_range(0..keys);
                let mut pick = rng.gen_range(0..total_w);
                let op = if pick < cfg.w_get {
                    Op::Get
                } else {
                    pick -= cfg.w_get;
                    token += 1;
                    if pick < cfg.w_put {
                        Op::Put {
                            value: format!("v{token}"),
                        }
                    } else if pick - cfg.w_put < cfg.w_append {
                        if store[k].len() >= cfg.max_value_len {
                            Op::Put {
                                value: format!("v{token}"),
                            }
                        } else {
                            Op::Append {
                                value: format!("a{token}"),
                            }
                        }
                    } else {
                        let r = &recent[k];
                        let from = if rng.gen_bool(0.6) {
                            store[k].clone()
                        } else {
                            r[rng.gen_range(0..r.len())].clone()
                        };
                        Op::Cas {
                            from,
                            to: format!("c{token}"),
                        }
                    }
                };
                let i = ops.len();
                let latency = exp(&mut rng, cfg.mean_latency);
                let roll: f64 = rng.gen();
                let (outcome, apply) = if roll < cfg.p_failed {
                    (Outcome::Failed, false)
                } else if roll < cfg.p_failed + cfg.p_unknown {
                    (Outcome::Unknown, rng.gen_bool(0.5))
                } else {
                    (Outcome::Ok(Output::Done), true)
                };
                let unknown = outcome == Outcome::Unknown;
                let mut o = Operation::new(client as u64, format!("k{k}"), op, t);
                o.outcome = outcome;
                ops.push(o);
                will_apply.push(apply);
                key_of.push(k);
                if apply {
                    let span = if unknown { 2 * latency } else { latency };
                    let at = t + rng.gen_range(0..=span);
                    push(&mut heap, at, Ev::Apply(i));
                }
                push(&mut heap, t + latency, Ev::Return(i));
            }
            1 => {
                let k = key_of[idx];
                let cur = &mut store[k];
                let out = ops[idx].op.apply(cur);
                if !matches!(ops[idx].op, Op::Get) {
                    let r = &mut recent[k];
                    if r.last() != Some(cur) {
                        r.push(cur.clone());
                        if r.len() > 8 {
                            r.remove(0);
                        }
                    }
                }
                if ops[idx].outcome != Outcome::Unknown {
                    ops[idx].outcome = Outcome::Ok(out);
                }
            }
            _ => {
                let o = &mut ops[idx];
                match o.outcome {
                    Outcome::Unknown => {}
                    Outcome::Failed => o.ret = Some(t),
                    Outcome::Ok(_) => o.ret = Some(t),
                }
                if called < cfg.ops {
                    let next = t + exp(&mut rng, cfg.mean_think);
                    push(&mut heap, next, Ev::Call(o.client as usize));
                }
            }
        }
    }
    debug_assert!(will_apply.len() == ops.len());
    ops
}

/// `n` puts of distinct values (`v0`, `v1`, ...) to key `k`, every call
/// before every return, then a read of `v3`: linearizable for `n > 3`,
/// and the shape where the checker must not try every order of the puts.
pub fn concurrent_puts(n: u64) -> Vec<Operation> {
    let mut ops: Vec<Operation> = (0..n)
        .map(|i| {
            Operation::new(
                i,
                "k",
                Op::Put {
                    value: format!("v{i}"),
                },
                i,
            )
            .completed(1000 + i, Output::Done)
        })
        .collect();
    ops.push(Operation::new(n, "k", Op::Get, 2000).completed(2010, Output::Value("v3".into())));
    ops
}

/// Makes one completed `get` of `ops` read a stale value: a value that an
/// earlier completed `get` read before a completed `put` to the same key
/// overwrote it (the put returned before this get was called). With the
/// unique values written by [`generate`] this is never linearizable.
/// Candidates are taken from the second half of the history when possible;
/// `seed` picks among them. Returns the index of the changed operation, or
/// `None` if the history has no such pattern.
pub fn corrupt_stale_read(ops: &mut [Operation], seed: u64) -> Option<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Candidate = (index of the get to corrupt, stale value).
    let mut candidates: Vec<(usize, String)> = Vec::new();
    // Per key: the last completed get (value, return time).
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].call, i));
    for (pos, &gi) in order.iter().enumerate() {
        let g = &ops[gi];
        let Outcome::Ok(Output::Value(gv)) = &g.outcome else {
            continue;
        };
        // Find an earlier put on the same key that returned before g's
        // call, and an earlier completed get that returned before that
        // put was called and read something else.
        let mut found = None;
        for &pi in order[..pos].iter().rev().take(200) {
            let p = &ops[pi];
            if p.key != g.key || !matches!(p.op, Op::Put { .. }) {
                continue;
            }
            let (Outcome::Ok(_), Some(pret)) = (&p.outcome, p.ret) else {
                continue;
            };
            if pret >= g.call {
                continue;
            }
            for &oi in order[..pos].iter().rev().take(400) {
                let o = &ops[oi];
                if o.key != g.key {
                    continue;
                }
                if let (Outcome::Ok(Output::Value(ov)), Some(oret)) = (&o.outcome, o.ret) {
                    if oret < p.call && ov != gv {
                        found = Some(ov.clone());
                        break;
                    }
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(stale) = found {
            candidates.push((gi, stale));
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let half = candidates.len() / 2;
    let (i, stale) = candidates[rng.gen_range(half..candidates.len())].clone();
    ops[i].outcome = Outcome::Ok(Output::Value(stale));
    Some(i)
}
