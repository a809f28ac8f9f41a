//! The direct decision for key-value keys with unambiguous writes
//! (`concord_check::unambiguous_kv`) against brute force and the
//! search, on thousands of small random mixed histories (gets, puts,
//! appends, compare-and-sets; linearizable and not) and on hand-made
//! adversarial cases.

use concord_check::brute;
use concord_check::history::{Op, Operation, Outcome, Output};
use concord_check::linearizability::{check_history_with, CheckConfig};
use concord_check::models::Kv;
use concord_check::unambiguous_kv::{decide_kv, stuck_by_bisection, KvDecision};
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
        let out = plan[i].op.apply(&mut state);
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

/// Checks `cases` generated histories from seed `seed0` with [`agree`];
/// how many of them the direct decision decided.
fn differential(seed0: u64, cases: u64, sp: &Spelling) -> u64 {
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
    eprintln!("{yes} linearizable, {direct} decided directly of {cases}");
    direct
}

#[test]
fn agrees_with_brute_force_and_the_search_with_separated_tokens() {
    let cases = 4000;
    let direct = differential(0, cases, &Spelling { sep: true });
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
    let direct = differential(100_000, cases, &Spelling { sep: false });
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

/// A hand-made history on key `k`, written one operation after another,
/// separated by commas; operation `i` (from 1) is client `i`'s:
/// `get V C..R` (read V), `put V C..R`, `app V C..R` (append V),
/// `cas F T C..R ok|fail`; `C..` without a return is still unknown. `""`
/// is the empty value.
fn history(text: &str) -> Vec<Operation> {
    let value = |v: &str| {
        if v == "\"\"" {
            String::new()
        } else {
            v.to_string()
        }
    };
    text.split(',')
        .enumerate()
        .map(|(i, spelled)| {
            let words: Vec<&str> = spelled.split_whitespace().collect();
            let (verb, args) = words.split_first().expect("an operation");
            let at = args
                .iter()
                .position(|w| w.contains(".."))
                .unwrap_or_else(|| panic!("no call..ret in {spelled:?}"));
            let (call, ret) = args[at].split_once("..").unwrap();
            let call: u64 = call.parse().expect("a call time");
            let ret: Option<u64> = (!ret.is_empty()).then(|| ret.parse().expect("a return time"));
            let (op, output) = match (*verb, &args[..at]) {
                ("get", [v]) => (Op::Get, Output::Value(value(v))),
                ("put", [v]) => (Op::Put { value: value(v) }, Output::Done),
                ("app", [v]) => (Op::Append { value: value(v) }, Output::Done),
                ("cas", [from, to]) => (
                    Op::Cas {
                        from: value(from),
                        to: value(to),
                    },
                    Output::Swapped(match args.get(at + 1) {
                        Some(&"ok") => true,
                        Some(&"fail") => false,
                        _ => panic!("no ok or fail after {spelled:?}"),
                    }),
                ),
                _ => panic!("cannot read {spelled:?}"),
            };
            let operation = Operation::new(i as u64 + 1, "k", op, call);
            match ret {
                Some(ret) => operation.completed(ret, output),
                None => operation,
            }
        })
        .collect()
}

#[test]
fn adversarial_cases_are_decided_as_expected() {
    use KvDecision::{Linearizable, NotLinearizable};
    // What the direct decision must say (`None`: left to the search);
    // brute force, the search and the checker must agree either way.
    let cases = [
        (
            "an append chain read in order is linearizable",
            "app a; 0..10, app b; 5..20, get a; 11..12, get a;b; 21..22",
            Some(Linearizable),
        ),
        (
            "a stale read after an append is caught",
            "put p; 0..1, app a; 2..3, get p;a; 4..5, get p; 6..7",
            Some(NotLinearizable),
        ),
        (
            "one append cannot have produced both p;a; and q;a;",
            "put p; 0..1, app a; 0..10, put q; 0..10, get p;a; 2..12, get q;a; 2..12",
            Some(NotLinearizable),
        ),
        (
            "two successful compare-and-sets from one state are caught",
            "put p; 0..1, cas p; c1; 2..10 ok, cas p; c2; 2..10 ok",
            Some(NotLinearizable),
        ),
        (
            "a cas cycle is caught",
            "cas c1; c2; 0..10 ok, cas c2; c1; 0..10 ok",
            Some(NotLinearizable),
        ),
        (
            "an unknown append seen later took effect",
            "put p; 0..1, app a; 2.., app b; 20..21, get p;a;b; 22..23",
            Some(Linearizable),
        ),
        (
            "an unknown append seen only after a read its real-time order rules out",
            "put p; 0..1, app a; 2.., get p; 30..31, get p;a; 22..23",
            Some(NotLinearizable),
        ),
        (
            "an unobserved append overwritten by a put",
            "put p; 0..1, app a; 2..3, put q; 4..5, get q; 6..7",
            Some(Linearizable),
        ),
        (
            "p; current from 1 to 10: a failed cas called at 3, returned at 5, saw it",
            "put p; 0..1, cas p; c1; 3..5 fail, get p; 9..10",
            Some(NotLinearizable),
        ),
        (
            "a failed cas concurrent with the put may come first",
            "put p; 0..4, cas p; c1; 3..5 fail, get p; 9..10",
            Some(Linearizable),
        ),
        (
            "a failed cas on the initial state while nothing else was written",
            r#"cas "" c1; 0..5 fail, get "" 6..7"#,
            Some(NotLinearizable),
        ),
        (
            "xa1 could be the put of it or the append of a1 to x: left to the search",
            "put x 0..1, put xa1 0..3, app a1 2..4, get xa1 5..6",
            None,
        ),
        (
            "two writes of one value are left to the search",
            "put v 0..1, put v 2..3, get v 4..5",
            None,
        ),
    ];
    for (name, text, expected) in cases {
        let ops = history(text);
        let idx: Vec<usize> = (0..ops.len()).collect();
        assert_eq!(decide_kv(&ops, &idx), expected, "{name}\n{}", show(&ops));
        agree(&ops);
    }
}

#[test]
fn the_history_notation_reads_what_it_says() {
    let ops = history(r#"get "" 0..1, put p; 2..3, app a; 4.., cas p; c1; 5..6 ok"#);
    let expected = vec![
        Operation::new(1, "k", Op::Get, 0).completed(1, Output::Value(String::new())),
        Operation::new(2, "k", Op::Put { value: "p;".into() }, 2).completed(3, Output::Done),
        Operation::new(3, "k", Op::Append { value: "a;".into() }, 4),
        Operation::new(
            4,
            "k",
            Op::Cas {
                from: "p;".into(),
                to: "c1;".into(),
            },
            5,
        )
        .completed(6, Output::Swapped(true)),
    ];
    assert_eq!(ops, expected);
}
