//! A seeded generator of mixed operations on one hot key, shared by
//! `check/examples/hot_key_history.rs` (which writes them as JSON lines
//! for `concord-sim check`) and the checker's tests.
//!
//! `clients` clients run against one atomic register holding a string.
//! Each has one operation in flight: it thinks for an exponentially
//! distributed time, calls a get, put, append or compare-and-set on key
//! `k`, and returns after an exponentially distributed latency; the
//! operation takes effect at an instant drawn uniformly inside its
//! interval, so the history is linearizable (the order of those instants
//! is a witness). Puts and successful compare-and-sets write unique
//! values (`p17`, `c18`), but appends draw their suffix from three
//! letters, so a read of `p17xyx` does not name the one append that made
//! it: this is what sends the key to the search. A value longer than
//! `MAX_VALUE_LEN` gets a put instead of an append, so states stay short.
//! About 1% of the operations end with an unknown outcome (no return;
//! applied at a random instant up to twice their latency after the call,
//! or never) and 1% fail (never applied).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use concord_check::history::{Op, Operation, Outcome, Output};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The append suffixes: few, so that they repeat.
const SUFFIXES: [&str; 3] = ["x", "y", "z"];
/// A value at least this long gets a put instead of an append.
const MAX_VALUE_LEN: usize = 10;
/// Mean think time between a return and the next call.
const THINK_MEAN_TICKS: f64 = 50.0;
/// Mean latency from call to return.
const LATENCY_MEAN_TICKS: f64 = 100.0;
/// Probabilities of an unknown and of a failed outcome.
const UNKNOWN_P: f64 = 0.01;
const FAILED_P: f64 = 0.01;
fn exp_ticks(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    (-u.ln() * mean).round().max(1.0) as u64
}

/// The next request, given the register's current value and a few recent
/// ones (for compare-and-sets that fail).
fn draw_op(rng: &mut ChaCha8Rng, n: usize, current: &str, recent: &[String]) -> Op {
    let roll = rng.gen_range(0..100u32);
    if roll < 40 {
        Op::Get
    } else if roll < 55 || (roll < 85 && current.len() >= MAX_VALUE_LEN) {
        Op::Put {
            value: format!("p{n}"),
        }
    } else if roll < 85 {
        Op::Append {
            value: SUFFIXES[rng.gen_range(0..SUFFIXES.len())].to_string(),
        }
    } else {
        let from = if rng.gen_bool(0.6) || recent.is_empty() {
            current.to_string()
        } else {
            recent[rng.gen_range(0..recent.len())].clone()
        };
        Op::Cas {
            from,
            to: format!("c{n}"),
        }
    }
}

/// A linearizable history as described in the module docs.
pub fn generate(ops_n: usize, clients: usize, seed: u64) -> Vec<Operation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut value = String::new();
    let mut recent: Vec<String> = Vec::new();
    let mut ops: Vec<Operation> = Vec::with_capacity(ops_n);
    // (time, sequence, operation or client, 0 call / 1 apply / 2 return):
    // the sequence number breaks ties in the order events were scheduled.
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize, u8)>> = BinaryHeap::new();
    let mut seq: u64 = 0;
    for c in 0..clients {
        seq += 1;
        heap.push(Reverse((exp_ticks(&mut rng, THINK_MEAN_TICKS), seq, c, 0)));
    }
    while let Some(Reverse((t, _, idx, tag))) = heap.pop() {
        match tag {
            0 if ops.len() < ops_n => {
                let op = draw_op(&mut rng, ops.len(), &value, &recent);
                let latency = exp_ticks(&mut rng, LATENCY_MEAN_TICKS);
                let roll: f64 = rng.gen();
                let mut o = Operation::new(idx as u64, "k", op, t);
                let apply_within = if roll < FAILED_P {
                    o.outcome = Outcome::Failed;
                    None
                } else if roll < FAILED_P + UNKNOWN_P {
                    rng.gen_bool(0.5).then_some(2 * latency)
                } else {
                    o.outcome = Outcome::Ok(Output::Done);
                    Some(latency)
                };
                let i = ops.len();
                ops.push(o);
                if let Some(span) = apply_within {
                    seq += 1;
                    heap.push(Reverse((t + rng.gen_range(0..=span), seq, i, 1)));
                }
                seq += 1;
                heap.push(Reverse((t + latency, seq, i, 2)));
            }
            0 => {}
            1 => {
                let out = ops[idx].op.apply(&mut value);
                if !matches!(ops[idx].op, Op::Get) && recent.last() != Some(&value) {
                    recent.push(value.clone());
                    if recent.len() > 8 {
                        recent.remove(0);
                    }
                }
                if ops[idx].outcome != Outcome::Unknown {
                    ops[idx].outcome = Outcome::Ok(out);
                }
            }
            _ => {
                let o = &mut ops[idx];
                if o.outcome != Outcome::Unknown {
                    o.ret = Some(t);
                }
                seq += 1;
                let next = t + exp_ticks(&mut rng, THINK_MEAN_TICKS);
                heap.push(Reverse((next, seq, o.client as usize, 0)));
            }
        }
    }
    ops
}

/// Makes the latest completed get that can be made stale read the value of
/// a completed put `a` overwritten by a completed put `b` with
/// `ret(a) < call(b)` and `ret(b) < call(get)`: `a` precedes `b` precedes
/// the get, and only `a` ever writes its value (no write produces a value
/// ending in a digit but a put or a compare-and-set of exactly it), so no
/// order lets the get see it. Returns the index of the get.
pub fn make_stale(ops: &mut [Operation]) -> Option<usize> {
    let completed_put =
        |o: &Operation| matches!(o.op, Op::Put { .. }) && matches!(o.outcome, Outcome::Ok(_));
    let get_i = (0..ops.len()).rev().find(|&g| {
        matches!(ops[g].outcome, Outcome::Ok(Output::Value(_))) && ops[g].call > ops[0].call
    })?;
    let call = ops[get_i].call;
    // `b`: the latest completed put returned before the get's call; `a`:
    // the latest completed put returned before `b`'s call.
    let b = (0..ops.len())
        .filter(|&i| completed_put(&ops[i]) && ops[i].ret < Some(call))
        .max_by_key(|&i| ops[i].ret)?;
    let b_call = ops[b].call;
    let a = (0..ops.len())
        .filter(|&i| completed_put(&ops[i]) && ops[i].ret < Some(b_call))
        .max_by_key(|&i| ops[i].ret)?;
    let Op::Put { value } = &ops[a].op else {
        unreachable!("a is a put")
    };
    ops[get_i].outcome = Outcome::Ok(Output::Value(value.clone()));
    Some(get_i)
}
