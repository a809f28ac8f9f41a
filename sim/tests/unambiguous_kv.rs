//! The direct decision for key-value keys with unambiguous writes
//! (`concord_sim::check::unambiguous_kv`) against brute force and the
//! search, on thousands of small random mixed histories (gets, puts,
//! appends, compare-and-sets; linearizable and not) and on hand-made
//! adversarial cases.

use concord_sim::check::brute;
use concord_sim::check::unambiguous_kv::{decide_kv, stuck_by_bisection, KvDecision};
use concord_sim::history::{Op, Operation, Outcome, Output};
use concord_sim::linearizability::{check_history_with, CheckConfig};
use concord_sim::models::Kv;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How tokens are spelled: `sep` ends each with `;` so that no token is a
/// suffix of another's concatenation; without it, `a1` and `a11` can make
/// a state ambiguous.
struct Spelling {
    sep: bool,
}

/// A random history of `n` operations on key `k`, linearizable by
/// construction (each takes effect at a random instant of its interval;
/// unknown ones maybe later or never), then with probability `p_corrupt`
/// one completed result changed.
fn generate(seed: u64, n: usize, p_corrupt: f64, sp: &Spelling) -> Vec<Operation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let span = (n as u64 * 3 / 2).max(4);
    let end = if sp.sep { ";" } else { "" };
    struct Planned {
        op: Op,
        call: u64,
        ret: u64,
        point: u64,
        fate: u8, // 0 completed, 1 unknown applied, 2 unknown not applied, 3 failed
    }
    // States the key went through, for plausible `from`s and stale reads.
    let mut seen: Vec<String> = vec![String::new()];
    let mut plan: Vec<Planned> = (0..n)
        .map(|k| {
            let call = rng.gen_range(0..span);
            let ret = call + rng.gen_range(0..12u64);
            let point = rng.gen_range(call * 4..=ret * 4 + 3);
            let fate = match rng.gen_range(0..20) {
                0 | 1 => 1,
                2 => 2,
                3 => 3,
                _ => 0,
            };
            let op = match rng.gen_range(0..8) {
                0..=2 => Op::Get,
                3 => Op::Put {
                    value: format!("p{k}{end}"),
                },
                4 | 5 => Op::Append {
                    value: format!("a{k}{end}"),
                },
                // `from` filled in when it runs.
                _ => Op::Cas {
                    from: String::new(),
                    to: format!("c{k}{end}"),
                },
            };
            Planned {
                op,
                call,
                ret,
                point,
                fate,
            }
        })
        .collect();
    for p in &mut plan {
        if p.fate == 1 && rng.gen_bool(0.5) {
            p.point = p.call * 4 + rng.gen_range(0..60);
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (plan[i].point, i));
    // Cas `from`s are chosen in call order, from what had been seen by
    // then (as a client would): the current state at the call is not
    // known here, so any state seen before, or a fresh string.
    let mut by_call: Vec<usize> = (0..n).collect();
    by_call.sort_by_key(|&i| (plan[i].call, i));
    let mut state = String::new();
    let mut outputs: Vec<Option<Output>> = vec![None; n];
    for &i in &order {
        if let Op::Cas { from, .. } = &mut plan[i].op {
            *from = match rng.gen_range(0..4) {
                0 | 1 => state.clone(),
                2 => seen[rng.gen_range(0..seen.len())].clone(),
                _ => format!("x{}", rng.gen_range(0..3)),
            };
        }
        if plan[i].fate >= 2 {
            continue;
        }
        let out = match &plan[i].op {
            Op::Get => Output::Value(state.clone()),
            Op::Put { value } => {
                state = value.clone();
                Output::Done
            }
            Op::Append { value } => {
                state.push_str(value);
                Output::Done
            }
            Op::Cas { from, to } => {
                if *from == state {
                    state = to.clone();
                    Output::Swapped(true)
                } else {
                    Output::Swapped(false)
                }
            }
        };
        if !matches!(plan[i].op, Op::Get) && !seen.contains(&state) {
            seen.push(state.clone());
        }
        outputs[i] = Some(out);
    }
    let mut ops: Vec<Operation> = plan
        .into_iter()
        .zip(outputs)
        .enumerate()
        .map(|(k, (p, out))| {
            let o = Operation::new(k as u64, "k", p.op, p.call);
            match (p.fate, out) {
                (0, Some(out)) => o.completed(p.ret, out),
                (3, _) => o.failed(p.ret),
                _ => o,
            }
        })
        .collect();
    if rng.gen_bool(p_corrupt) {
        let completed: Vec<usize> = (0..n)
            .filter(|&i| {
                matches!(
                    ops[i].outcome,
                    Outcome::Ok(Output::Value(_) | Output::Swapped(_))
                )
            })
            .collect();
        if !completed.is_empty() {
            let i = completed[rng.gen_range(0..completed.len())];
            let new = match &ops[i].outcome {
                Outcome::Ok(Output::Swapped(s)) => Output::Swapped(!s),
                Outcome::Ok(Output::Value(v)) => {
                    let mut other = seen[rng.gen_range(0..seen.len())].clone();
                    if other == *v {
                        other = format!("{v}a0{end}");
                    }
                    Output::Value(other)
                }
                _ => unreachable!(),
            };
            ops[i].outcome = Outcome::Ok(new);
        }
    }
    ops
}

fn show(ops: &[Operation]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, o)| format!("#{i} {o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn search_only() -> CheckConfig {
    CheckConfig {
        fast_path: false,
        shrink_steps: 100_000,
        ..CheckConfig::default()
    }
}

fn with_fast_path() -> CheckConfig {
    CheckConfig {
        shrink_steps: 100_000,
        ..CheckConfig::default()
    }
}

/// The direct decision (when it decides), the checker with it and the
/// search alone all agree with brute force, and the checker's stuck
/// operation is the search's. Returns (linearizable, decided directly).
fn agree(ops: &[Operation]) -> (bool, bool) {
    let expected = brute::linearizable(&Kv, &Kv::from_history(ops));
    let idx: Vec<usize> = (0..ops.len()).collect();
    let direct = decide_kv(ops, &idx);
    if let Some(d) = direct {
        assert_eq!(
            d == KvDecision::Linearizable,
            expected,
            "direct decision {d:?}, brute force {expected}\n{}",
            show(ops)
        );
    }
    let search = check_history_with(ops, &search_only());
    let got = check_history_with(ops, &with_fast_path());
    assert_eq!(search.is_ok(), expected, "search: {search}\n{}", show(ops));
    assert_eq!(got.is_ok(), expected, "checker: {got}\n{}", show(ops));
    assert_eq!(
        got.failure().map(|f| f.stuck_index),
        search.failure().map(|f| f.stuck_index),
        "the checker and the search disagree on the stuck operation\n{}",
        show(ops)
    );
    if direct == Some(KvDecision::NotLinearizable) {
        if let Some(b) = stuck_by_bisection(ops, &idx) {
            assert_eq!(
                Some(b),
                search.failure().map(|f| f.stuck_index),
                "bisection and the search disagree on the stuck operation\n{}",
                show(ops)
            );
        }
    }
    let register_only = ops
        .iter()
        .all(|o| matches!(o.op, Op::Get | Op::Put { .. }) || matches!(o.outcome, Outcome::Failed));
    if direct == Some(KvDecision::NotLinearizable) && !register_only {
        // The report is the search's (gets and puts alone go to the
        // register decision, whose values are its own).
        assert_eq!(
            got.failure().map(|f| f.possible_values.clone()),
            search.failure().map(|f| f.possible_values.clone()),
            "\n{}",
            show(ops)
        );
    }
    (expected, direct.is_some())
}

fn differential(seed0: u64, cases: u64, sp: &Spelling) -> (u64, u64) {
    let (mut yes, mut direct) = (0, 0);
    for seed in seed0..seed0 + cases {
        let n = 2 + (seed % 8) as usize;
        let (lin, d) = agree(&generate(seed, n, 0.6, sp));
        yes += u64::from(lin);
        direct += u64::from(d);
    }
    assert!(
        yes * 5 >= cases && (cases - yes) * 10 >= cases,
        "{yes} linearizable of {cases}: the generator is lopsided"
    );
    (yes, direct)
}

#[test]
fn agrees_with_brute_force_and_the_search_with_separated_tokens() {
    let cases = 4000;
    let (yes, direct) = differential(0, cases, &Spelling { sep: true });
    eprintln!("{yes} linearizable, {direct} decided directly of {cases}");
    // With separators nothing is ambiguous; only a failed compare-and-set
    // the built order leaves no room for goes to the search.
    assert!(
        direct * 10 >= cases * 9,
        "only {direct} of {cases} decided directly"
    );
}

#[test]
fn agrees_with_brute_force_and_the_search_with_bare_tokens() {
    let cases = 4000;
    let (yes, direct) = differential(100_000, cases, &Spelling { sep: false });
    eprintln!("{yes} linearizable, {direct} decided directly of {cases}");
    assert!(
        direct * 2 >= cases,
        "only {direct} of {cases} decided directly"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn any_seed_agrees(seed in any::<u64>(), n in 1usize..10, sep in any::<bool>()) {
        agree(&generate(seed, n, 0.5, &Spelling { sep }));
    }
}

// ---------------------------------------------------------------------------
// Adversarial cases.

fn get(c: u64, v: &str, call: u64, ret: u64) -> Operation {
    Operation::new(c, "k", Op::Get, call).completed(ret, Output::Value(v.into()))
}
fn put(c: u64, v: &str, call: u64, ret: u64) -> Operation {
    Operation::new(c, "k", Op::Put { value: v.into() }, call).completed(ret, Output::Done)
}
fn app(c: u64, v: &str, call: u64, ret: u64) -> Operation {
    Operation::new(c, "k", Op::Append { value: v.into() }, call).completed(ret, Output::Done)
}
fn app_unknown(c: u64, v: &str, call: u64) -> Operation {
    Operation::new(c, "k", Op::Append { value: v.into() }, call)
}
fn cas(c: u64, from: &str, to: &str, call: u64, ret: u64, swapped: bool) -> Operation {
    Operation::new(
        c,
        "k",
        Op::Cas {
            from: from.into(),
            to: to.into(),
        },
        call,
    )
    .completed(ret, Output::Swapped(swapped))
}

/// Decided directly with this verdict, and brute force and the checker
/// agree.
fn decided(ops: &[Operation], expected: KvDecision) {
    let idx: Vec<usize> = (0..ops.len()).collect();
    assert_eq!(decide_kv(ops, &idx), Some(expected), "\n{}", show(ops));
    agree(ops);
}

/// Left to the search, which agrees with brute force.
fn undecided(ops: &[Operation]) {
    let idx: Vec<usize> = (0..ops.len()).collect();
    assert_eq!(decide_kv(ops, &idx), None, "\n{}", show(ops));
    agree(ops);
}

#[test]
fn append_chain_read_in_order_is_linearizable() {
    decided(
        &[
            app(1, "a;", 0, 10),
            app(2, "b;", 5, 20),
            get(3, "a;", 11, 12),
            get(4, "a;b;", 21, 22),
        ],
        KvDecision::Linearizable,
    );
}

#[test]
fn stale_read_after_an_append_is_caught() {
    decided(
        &[
            put(1, "p;", 0, 1),
            app(2, "a;", 2, 3),
            get(3, "p;a;", 4, 5),
            get(4, "p;", 6, 7),
        ],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn append_whose_token_appears_twice_is_caught() {
    // One append cannot have produced both "p;a;" and "q;a;".
    decided(
        &[
            put(1, "p;", 0, 1),
            app(2, "a;", 0, 10),
            put(3, "q;", 0, 10),
            get(4, "p;a;", 2, 12),
            get(5, "q;a;", 2, 12),
        ],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn a_cas_chain_that_forks_is_caught() {
    // Two successful compare-and-sets from one state.
    decided(
        &[
            put(1, "p;", 0, 1),
            cas(2, "p;", "c1;", 2, 10, true),
            cas(3, "p;", "c2;", 2, 10, true),
        ],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn a_cas_cycle_is_caught() {
    decided(
        &[
            cas(1, "c1;", "c2;", 0, 10, true),
            cas(2, "c2;", "c1;", 0, 10, true),
        ],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn unknown_append_seen_later_took_effect() {
    decided(
        &[
            put(1, "p;", 0, 1),
            app_unknown(2, "a;", 2),
            app(3, "b;", 20, 21),
            get(4, "p;a;b;", 22, 23),
        ],
        KvDecision::Linearizable,
    );
    // Seen, but only after a read that its real-time order rules out.
    decided(
        &[
            put(1, "p;", 0, 1),
            app_unknown(2, "a;", 2),
            get(3, "p;", 30, 31),
            get(4, "p;a;", 22, 23),
        ],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn unobserved_append_overwritten_by_a_put() {
    decided(
        &[
            put(1, "p;", 0, 1),
            app(2, "a;", 2, 3),
            put(3, "q;", 4, 5),
            get(4, "q;", 6, 7),
        ],
        KvDecision::Linearizable,
    );
}

#[test]
fn failed_cas_needs_a_moment_without_its_from() {
    // "p;" current from 1 to 10 at least: a cas called at 3 and returned
    // at 5 saw it.
    decided(
        &[
            put(1, "p;", 0, 1),
            cas(2, "p;", "c1;", 3, 5, false),
            get(3, "p;", 9, 10),
        ],
        KvDecision::NotLinearizable,
    );
    // Concurrent with the put: it may come first.
    decided(
        &[
            put(1, "p;", 0, 4),
            cas(2, "p;", "c1;", 3, 5, false),
            get(3, "p;", 9, 10),
        ],
        KvDecision::Linearizable,
    );
    // Failed on the initial state while nothing else was written.
    decided(
        &[cas(1, "", "c1;", 0, 5, false), get(2, "", 6, 7)],
        KvDecision::NotLinearizable,
    );
}

#[test]
fn ambiguous_values_go_to_the_search() {
    // "xa1" could be the put of it or the append of "a1" to "x".
    undecided(&[
        put(1, "x", 0, 1),
        put(2, "xa1", 0, 3),
        app(3, "a1", 2, 4),
        get(4, "xa1", 5, 6),
    ]);
    // Two writes of one value.
    undecided(&[put(1, "v", 0, 1), put(2, "v", 2, 3), get(3, "v", 4, 5)]);
}
