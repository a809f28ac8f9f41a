//! The judge of mutation testing (`scripts/mutants.sh`): a sweep
//! of the simulator over seeds 0..2000 on 5 nodes, the run of
//! `concord-sim run --seeds 0..2000 --nodes 5 --strict-budgets`, that
//! fails at the first failing seed. cargo-mutants builds each mutant of the core with the
//! `mutation-judge` feature, which switches off the core's own assertions
//! and recovery validation, and runs only this test: a mutant counts as
//! killed only if the simulator's outside checks (safety, linearizability,
//! liveness, a panic of the code itself, the step budget) catch it.
//!
//! It lives in the core's own package so that the mutated package is the
//! tested one (cargo-mutants runs its unmutated baseline on the mutated
//! package's tests) and so that a mutant's build does not compile the
//! tokio runtime, which concord-sim's own tests need. Compiled only with
//! the feature, so it never runs in normal CI (and there it would judge
//! nothing: the core's assertions are on).
//!
//! Environment, for the measurement's own tuning:
//! * `CONCORD_JUDGE_SEEDS`: how many seeds (default 2000);
//! * `CONCORD_JUDGE_JOBS`: worker threads (default 1: cargo-mutants runs
//!   mutants side by side with `--jobs` instead);
//! * `CONCORD_JUDGE_HANG_S`: wall-clock seconds one seed may run before it
//!   counts as hung, which kills the mutant (default 60).
#![cfg(feature = "mutation-judge")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use std::io::Write;
use std::time::Duration;

use concord_sim::watchdog::SeedWatch;
use concord_sim::{run_kv, SimConfig};

/// Seeds run first, in this order: the ones that killed the most mutants
/// of a calibration run (see `sim/mutation/README.md`), so that a mutant
/// the simulator catches is usually caught by the first few seeds. Every
/// other seed of the range follows in increasing order; the set of seeds,
/// and so each verdict, does not depend on this order.
const FIRST_SEEDS: &str = include_str!("../sim/mutation/seed-order.txt");

/// The seeds to run, in the order to run them.
fn seed_order(count: u64) -> Vec<u64> {
    let mut order: Vec<u64> = FIRST_SEEDS
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.parse().expect("seed-order.txt holds one seed a line"))
        .filter(|seed| *seed < count)
        .collect();
    let mut listed = vec![false; count as usize];
    order.retain(|seed| !std::mem::replace(&mut listed[*seed as usize], true));
    order.extend((0..count).filter(|seed| !listed[*seed as usize]));
    order
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn simulator_catches_the_mutant() {
    let count = env_number("CONCORD_JUDGE_SEEDS", 2000);
    let jobs = env_number("CONCORD_JUDGE_JOBS", 1).clamp(1, 64) as usize;
    let hang_limit = Duration::from_secs(env_number("CONCORD_JUDGE_HANG_S", 60).max(1));
    let order = seed_order(count);
    // A mutant's panics are caught by the simulator and reported as
    // failures; printing each one would only bury the verdict.
    std::panic::set_hook(Box::new(|_| {}));

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // (position in the order, failure description) of the earliest
    // failure found; workers run ahead of each other, so the first to be
    // found is not always the first in the order.
    let first: Mutex<Option<(usize, String)>> = Mutex::new(None);
    let watch = SeedWatch::new(jobs);
    std::thread::scope(|scope| {
        // A loop inside one step never returns to the simulator: the seed
        // is named as `run` names it (`--hang-after-s`), and the process
        // exits, its worker being stuck.
        scope.spawn(|| {
            if let Some((seed, elapsed)) = watch.watch(hang_limit) {
                let position = order.iter().position(|s| *s == seed).unwrap_or(0);
                // Straight to the file descriptor: libtest's capture of
                // `println!` would be lost when the process exits below.
                let _ = writeln!(
                    std::io::stderr(),
                    "mutation_judge: killed after {} seeds by seed {seed}: hung: still running after {:.1} s of wall-clock time\n  replay: {}",
                    position + 1,
                    elapsed.as_secs_f64(),
                    SimConfig { seed, nodes: 5, strict_budgets: true, ..SimConfig::default() }.replay_command()
                );
                std::process::exit(101);
            }
        });
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                let (next, stop, first, order, watch) = (&next, &stop, &first, &order, &watch);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let position = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = order.get(position) else {
                            break;
                        };
                        // Strict: a mutant that only makes the protocol
                        // chattier or slower is killed by the expectations
                        // (clean on the correct core over 0..2000).
                        let config = SimConfig {
                            seed,
                            nodes: 5,
                            strict_budgets: true,
                            ..SimConfig::default()
                        };
                        watch.start(worker, seed);
                        let result = run_kv(&config, None);
                        watch.finish(worker);
                        let verdict = match result {
                            Ok(report) if report.passed() => None,
                            Ok(report) => Some(format!(
                                "{:?}\n  replay: {}",
                                report.failure,
                                report.config.replay_command()
                            )),
                            Err(message) => {
                                Some(format!("the simulation did not start: {message}"))
                            }
                        };
                        if let Some(description) = verdict {
                            stop.store(true, Ordering::Relaxed);
                            let mut first = first.lock().unwrap_or_else(|e| e.into_inner());
                            if first.as_ref().is_none_or(|(p, _)| position < *p) {
                                *first = Some((position, format!("seed {seed}: {description}")));
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        watch.stop();
    });
    let first = first.into_inner().unwrap_or_else(|e| e.into_inner());
    // Back to the default hook, so that the verdict below is printed.
    drop(std::panic::take_hook());
    if let Some((position, description)) = first {
        // One grep-able line per kill: `sim/mutation/report.py` reads it
        // back from cargo-mutants' logs (and calibrates seed-order.txt).
        panic!(
            "mutation_judge: killed after {} seeds by {description}",
            position + 1
        );
    }
    println!("mutation_judge: all {count} seeds passed");
}
