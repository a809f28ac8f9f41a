//! Mixed operations on one hot key: puts of unique
//! values, appends of repeating suffixes, compare-and-sets, many clients.
//! The key-value search's rule P (a state whose every source write is used
//! can never come back, so a configuration that still owes a read of it is
//! dropped) and rule S over writes of dead values decide these where the
//! search without them ran out of configurations; small ones are compared
//! with the brute-force reference, stuck operation included.

#[path = "hot_key_gen/mod.rs"]
mod hot_key_gen;

use concord_check::brute;
use concord_check::history::{Op, Operation, Outcome, Output};
use concord_check::linearizability::{
    check_history, check_history_with, CheckConfig, CheckResult, Limit,
};
use concord_check::models::Kv;
use hot_key_gen::{generate, make_stale};

/// The limit the search without rule P exceeded on the history below.
const FRONTIER_MAX: usize = 100_000;

fn small_frontier() -> CheckConfig {
    CheckConfig {
        max_frontier: FRONTIER_MAX,
        ..CheckConfig::default()
    }
}

/// 1,000 operations, 32 clients, seed 3: before rule P the search gave up
/// with more than 100,000 configurations alive at one return
/// (`concord-sim check --max-configs 100000`: UNKNOWN after 0.15 CPU s);
/// with it, linearizable in about 0.1 s.
#[test]
fn hot_key_32_clients_is_decided_within_a_small_frontier() {
    let ops = generate(1_000, 32, 3);
    let result = check_history_with(&ops, &small_frontier());
    assert!(result.is_ok(), "{result}");
}

/// 1,000 operations, 64 clients, seed 1, the configuration limit at
/// 100,000: a search that ends UNKNOWN whatever it does. The pace limit
/// (`CheckConfig::max_steps_per_return`) stops it after 128,001 steps, at
/// the 14th return, naming itself; without it, the configuration limit
/// stops it after 328,518 steps. (5,000 operations at 64 clients: 4 to 6
/// CPU s instead of 70 to more than 300; benches/results.)
#[test]
fn hot_key_64_clients_gives_up_at_its_pace() {
    let ops = generate(1_000, 64, 1);
    let steps_of = |result: &CheckResult| match result {
        CheckResult::Unknown(exhausted) => exhausted.steps,
        other => panic!("expected UNKNOWN, got {other}"),
    };
    let paced = check_history_with(&ops, &small_frontier());
    let CheckResult::Unknown(exhausted) = &paced else {
        panic!("expected UNKNOWN, got {paced}");
    };
    let Limit::Pace {
        steps,
        returns,
        allowance,
        per_return,
    } = exhausted.limit
    else {
        panic!("expected the pace limit, got {paced}");
    };
    assert_eq!((allowance, per_return), (FRONTIER_MAX as u64, 2_000));
    assert_eq!(steps, allowance + per_return * returns + 1, "{paced}");
    assert!(
        paced.to_string().contains("--max-steps-per-return"),
        "{paced}"
    );
    let unpaced = check_history_with(
        &ops,
        &CheckConfig {
            max_steps_per_return: 0,
            ..small_frontier()
        },
    );
    assert!(
        steps_of(&paced) * 2 < steps_of(&unpaced),
        "{paced} / {unpaced}"
    );
}

/// The same history with one stale read: found, and the stuck operation
/// is the stale read itself (the search stops early when rule P drops
/// every configuration; the exact return is then found by cuts).
#[test]
fn hot_key_stale_read_is_found_at_the_read() {
    let mut ops = generate(1_000, 32, 3);
    let stale = make_stale(&mut ops).expect("a stale read can be planted");
    match check_history_with(&ops, &small_frontier()) {
        CheckResult::NotLinearizable(f) => assert_eq!(f.stuck_index, stale, "{f}"),
        other => panic!("expected not linearizable, got {other}"),
    }
}

/// The history cut just after the `k`-th return (in the order returns are
/// processed: time, call, index): operations called by then, those not
/// returned yet as writes of unknown outcome, pending reads dropped.
fn cut(ops: &[Operation], rets: &[(u64, u64, usize)], k: usize) -> Vec<Operation> {
    let (t, c, j) = rets[k];
    let mut out = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if o.call > t || o.outcome == Outcome::Failed {
            continue;
        }
        let returned = matches!(o.outcome, Outcome::Ok(_))
            && o.ret.is_some_and(|r| (r, o.call, i) <= (t, c, j));
        if returned {
            out.push(o.clone());
        } else if !matches!(o.op, Op::Get) && o.outcome != Outcome::Ok(Output::Swapped(false)) {
            let mut w = o.clone();
            w.ret = None;
            w.outcome = Outcome::Unknown;
            out.push(w);
        }
    }
    out
}

/// The brute-force reference's verdict.
fn reference(ops: &[Operation]) -> bool {
    brute::linearizable(&Kv, &Kv::from_history(ops))
}

/// The operation at whose return a search must get stuck: the first
/// return after which the cut history is not linearizable.
fn reference_stuck(ops: &[Operation]) -> usize {
    let mut rets: Vec<(u64, u64, usize)> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.outcome, Outcome::Ok(_)))
        .map(|(i, o)| (o.ret.expect("completed"), o.call, i))
        .collect();
    rets.sort_unstable();
    let k = (0..rets.len())
        .find(|&k| !reference(&cut(ops, &rets, k)))
        .expect("a history that is not linearizable has a bad cut");
    rets[k].2
}

/// Makes completed get `g` read `value` instead.
fn set_read(ops: &mut [Operation], g: usize, value: &str) {
    ops[g].outcome = Outcome::Ok(Output::Value(value.to_string()));
}

/// Small hot-key histories (6 to 11 operations, 2 to 5 clients), half of
/// them with one read changed to another value the history writes or
/// reads (a stale or impossible read), against the brute-force reference:
/// same verdict, and on failure the same stuck operation.
#[test]
fn small_hot_key_histories_agree_with_brute_force() {
    let mut counts = [0usize; 2];
    for seed in 0..600u64 {
        let n = 6 + (seed % 6) as usize;
        let clients = 2 + (seed % 4) as usize;
        let mut ops = generate(n, clients, seed);
        if seed % 2 == 1 {
            let reads: Vec<usize> = (0..ops.len())
                .filter(|&i| matches!(ops[i].outcome, Outcome::Ok(Output::Value(_))))
                .collect();
            let mut values: Vec<String> = ops
                .iter()
                .filter_map(|o| match (&o.op, &o.outcome) {
                    (Op::Put { value }, _) => Some(value.clone()),
                    (_, Outcome::Ok(Output::Value(v))) => Some(v.clone()),
                    _ => None,
                })
                .collect();
            values.sort();
            values.dedup();
            if !reads.is_empty() && !values.is_empty() {
                let g = reads[(seed as usize / 2) % reads.len()];
                let v = values[(seed as usize / 3) % values.len()].clone();
                set_read(&mut ops, g, &v);
            }
        }
        let expected = reference(&ops);
        counts[expected as usize] += 1;
        let got = check_history(&ops);
        assert_eq!(
            got.is_ok(),
            expected,
            "seed {seed}: checker says {got}, brute force says {expected}:\n{}",
            concord_check::history::to_jsonl(&ops)
        );
        if let CheckResult::NotLinearizable(f) = got {
            assert_eq!(
                f.stuck_index,
                reference_stuck(&ops),
                "seed {seed}: {f}\n{}",
                concord_check::history::to_jsonl(&ops)
            );
        }
    }
    // Both verdicts well represented.
    assert!(counts[0] > 60 && counts[1] > 200, "{counts:?}");
}
