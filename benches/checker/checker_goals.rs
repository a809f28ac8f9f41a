//! The checker's speed goals, one timed run per case, with
//! porcupine side by side where it is available and finishes.
//!
//! ```text
//! cargo bench -p concord-bench --bench checker_goals
//! CHECKER_GOALS_ONLY=1m /usr/bin/time -v cargo bench -p concord-bench --bench checker_goals
//! PORCUPINE_BIN=$PWD/benches/checker/porcupine/porcupine-register cargo bench -p concord-bench --bench checker_goals
//! ```
//!
//! Histories come from `concord_sim::histgen` (linearizable by
//! construction, 2% failed and 1% unknown outcomes), one key. *Register*
//! histories have gets and puts only, every put writing its own value, as
//! the simulator's workloads do. *Mixed* ones add appends and
//! compare-and-sets, every write still unique. The checker decides both
//! without a search (`check::unambiguous`, `check::unambiguous_kv`) unless
//! a mixed history does not fit that decision, which then goes to the
//! key-value search. Each line gives the wall-clock time of the check alone and the
//! peak heap it allocated (the history excluded); `/usr/bin/time -v` gives
//! the process's peak RSS. With `PORCUPINE_BIN` set (a build of
//! `benches/checker/porcupine/main.go`), porcupine checks the same register
//! history, given `PORCUPINE_TIMEOUT_S` seconds (default 60).

use std::time::{Duration, Instant};

use concord_sim::check::typed::to_jsonl;
use concord_sim::check::{check_with, Op as TOp, Outcome as TOutcome, Verdict};
use concord_sim::histgen::{corrupt_stale_read, generate, GenConfig};
use concord_sim::history::{Op, Operation, Outcome, Output};
use concord_sim::linearizability::{check_history_with, CheckConfig, CheckResult};
use concord_sim::models::{Register, RegisterInput, RegisterOutput};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::peak_bytes_during;

struct Case {
    name: &'static str,
    ops: usize,
    clients: usize,
    /// Gets and puts only (else appends and compare-and-sets too).
    register: bool,
    /// One read made stale.
    stale: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "5k_register_32_clients",
        ops: 5_000,
        clients: 32,
        register: true,
        stale: false,
    },
    Case {
        name: "5k_register_64_clients",
        ops: 5_000,
        clients: 64,
        register: true,
        stale: false,
    },
    Case {
        name: "5k_register_64_clients_stale",
        ops: 5_000,
        clients: 64,
        register: true,
        stale: true,
    },
    Case {
        name: "100k_register_100_clients",
        ops: 100_000,
        clients: 100,
        register: true,
        stale: false,
    },
    Case {
        name: "1m_register_1000_clients",
        ops: 1_000_000,
        clients: 1000,
        register: true,
        stale: false,
    },
    Case {
        name: "1m_register_1000_clients_stale",
        ops: 1_000_000,
        clients: 1000,
        register: true,
        stale: true,
    },
    Case {
        name: "5k_mixed_16_clients",
        ops: 5_000,
        clients: 16,
        register: false,
        stale: false,
    },
    Case {
        name: "5k_mixed_32_clients",
        ops: 5_000,
        clients: 32,
        register: false,
        stale: false,
    },
    Case {
        name: "5k_mixed_64_clients",
        ops: 5_000,
        clients: 64,
        register: false,
        stale: false,
    },
    Case {
        name: "1m_mixed_1000_clients",
        ops: 1_000_000,
        clients: 1000,
        register: false,
        stale: false,
    },
];

fn history(c: &Case) -> Vec<Operation> {
    let mut h = generate(&GenConfig {
        seed: 1,
        ops: c.ops,
        keys: 1,
        clients: c.clients,
        w_append: if c.register { 0 } else { 2 },
        w_cas: if c.register { 0 } else { 2 },
        p_unknown: 0.01,
        p_failed: 0.02,
        ..GenConfig::default()
    });
    if c.stale {
        corrupt_stale_read(&mut h, 7).expect("a read to make stale");
    }
    h
}

/// The register history of a gets-and-puts key-value history.
fn as_register(h: &[Operation]) -> Vec<TOp<RegisterInput, RegisterOutput>> {
    h.iter()
        .map(|o| {
            let input = match &o.op {
                Op::Get => RegisterInput::Read,
                Op::Put { value } => RegisterInput::Write(value.clone()),
                other => panic!("not a register operation: {other:?}"),
            };
            TOp {
                client: o.client,
                input,
                call: o.call,
                ret: o.ret,
                outcome: match &o.outcome {
                    Outcome::Ok(Output::Value(v)) => TOutcome::Ok(RegisterOutput::Value(v.clone())),
                    Outcome::Ok(_) => TOutcome::Ok(RegisterOutput::Done),
                    Outcome::Failed => TOutcome::Failed,
                    Outcome::Unknown => TOutcome::Unknown,
                },
            }
        })
        .collect()
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, f64) {
    let t = Instant::now();
    let (r, peak) = peak_bytes_during(f);
    let dt = t.elapsed();
    (r, dt, peak as f64 / (1024.0 * 1024.0))
}

fn porcupine(c: &Case, reg: &[TOp<RegisterInput, RegisterOutput>]) -> Option<String> {
    let bin = std::env::var("PORCUPINE_BIN").ok()?;
    let timeout: f64 = std::env::var("PORCUPINE_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60.0);
    let path = std::env::temp_dir().join(format!("checker_goals_{}.jsonl", c.name));
    std::fs::write(&path, to_jsonl(&Register::default(), reg)).ok()?;
    let out = std::process::Command::new(bin)
        .arg(&path)
        .arg(timeout.to_string())
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let only = std::env::var("CHECKER_GOALS_ONLY").ok();
    // `cargo bench` passes --bench; nothing else is accepted.
    let cfg = CheckConfig {
        time_limit: Some(Duration::from_secs(120)),
        ..CheckConfig::default()
    };
    println!("checker goals: one run per case, one key, 2% failed and 1% unknown outcomes");
    for c in CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|f| c.name.contains(f)))
    {
        let h = history(c);
        let expect_ok = !c.stale;
        let (r, dt, peak) = measure(|| check_history_with(&h, &cfg));
        let verdict = match &r {
            CheckResult::Ok => "linearizable".to_string(),
            CheckResult::NotLinearizable(_) => "NOT linearizable (explained)".to_string(),
            CheckResult::Unknown(e) => format!("gave up: {}", e.reason),
            CheckResult::Invalid { message, .. } => format!("invalid: {message}"),
        };
        println!(
            "  {:<32} {:>8} ops  kv checker      {:>9.3} s  peak heap {:>8.1} MiB  {verdict}",
            c.name,
            h.len(),
            dt.as_secs_f64(),
            peak
        );
        match &r {
            CheckResult::Ok => assert!(expect_ok, "{}: a stale read passed", c.name),
            CheckResult::NotLinearizable(_) => assert!(!expect_ok, "{}: wrong verdict", c.name),
            _ => {}
        }
        if !c.register {
            continue;
        }
        let reg = as_register(&h);
        let (v, dt, peak) = measure(|| check_with(&Register::default(), &reg, &cfg));
        println!(
            "  {:<32} {:>8} ops  register model  {:>9.3} s  peak heap {:>8.1} MiB  {}",
            c.name,
            reg.len(),
            dt.as_secs_f64(),
            peak,
            match &v {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(_) => "NOT linearizable (explained)".to_string(),
                other => other.to_string(),
            }
        );
        assert_eq!(v.is_ok(), expect_ok, "{}", c.name);
        if let Some(line) = porcupine(c, &reg) {
            println!("  {:<32} {:>8} ops  {line}", c.name, reg.len());
        }
    }
    if std::env::var("PORCUPINE_BIN").is_err() {
        println!("(porcupine not run: set PORCUPINE_BIN, see benches/checker/porcupine/main.go)");
    }
}
