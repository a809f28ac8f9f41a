//! Benchmarks of the linearizability checker on generated histories, with
//! peak heap memory measured by a counting global allocator.
//!
//! Run: `cargo bench -p concord-sim --bench checker`. Set
//! `CHECKER_BENCH_ONLY=<substring>` to run only matching cases, and
//! `CHECKER_BENCH_P_UNKNOWN` / `CHECKER_BENCH_P_FAILED` to change the share
//! of operations with unknown / failed outcomes (defaults 0 and 0.02).
//!
//! With unknown outcomes (`CHECKER_BENCH_P_UNKNOWN=0.01`) every case takes
//! about as long as without (the single-key 100k case took minutes before
//! the checker merged unknown writes of values nothing can observe any
//! more); the default still leaves unknowns out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concord_sim::histgen::{generate, GenConfig};
use concord_sim::linearizability::{check_history, CheckResult};
use criterion::{criterion_group, BenchmarkId, Criterion};

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let d = new_size - layout.size();
                let now = LIVE.fetch_add(d, Ordering::Relaxed) + d;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Case {
    name: &'static str,
    ops: usize,
    keys: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "100k_ops_100_keys",
        ops: 100_000,
        keys: 100,
    },
    Case {
        name: "1_key_10k_ops",
        ops: 10_000,
        keys: 1,
    },
    Case {
        name: "1_key_20k_ops",
        ops: 20_000,
        keys: 1,
    },
    Case {
        name: "1_key_100k_ops",
        ops: 100_000,
        keys: 1,
    },
];

fn history(c: &Case) -> Vec<concord_sim::history::Operation> {
    generate(&GenConfig {
        seed: 1,
        ops: c.ops,
        keys: c.keys,
        clients: 10,
        p_unknown: env_f64("CHECKER_BENCH_P_UNKNOWN", 0.0),
        p_failed: env_f64("CHECKER_BENCH_P_FAILED", 0.02),
        ..GenConfig::default()
    })
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn selected(c: &Case) -> bool {
    match std::env::var("CHECKER_BENCH_ONLY") {
        Ok(f) => c.name.contains(&f),
        Err(_) => true,
    }
}

/// One timed run per case, with the peak heap used by the check alone
/// (the history itself excluded).
fn report_memory() {
    println!(
        "checker: one run per case (10 clients; {}% failed, {}% unknown outcomes)",
        env_f64("CHECKER_BENCH_P_FAILED", 0.02) * 100.0,
        env_f64("CHECKER_BENCH_P_UNKNOWN", 0.0) * 100.0
    );
    for c in CASES.iter().filter(|c| selected(c)) {
        let h = history(c);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        let r = check_history(&h);
        let dt = t.elapsed();
        let peak = PEAK.load(Ordering::Relaxed) - base;
        let verdict = match &r {
            CheckResult::Ok => "linearizable".to_string(),
            other => format!("UNEXPECTED: {other}"),
        };
        println!(
            "  {:<20} {:>7} ops  {:>9.3} s  peak heap {:>9.2} MiB  {verdict}",
            c.name,
            h.len(),
            dt.as_secs_f64(),
            peak as f64 / (1024.0 * 1024.0)
        );
        assert!(r.is_ok(), "{} did not check as linearizable", c.name);
    }
}

fn bench_checker(crit: &mut Criterion) {
    let mut g = crit.benchmark_group("checker");
    g.sample_size(10);
    for c in CASES.iter().filter(|c| selected(c)) {
        let h = history(c);
        let t = if c.ops >= 100_000 && c.keys == 1 {
            20
        } else {
            5
        };
        g.measurement_time(Duration::from_secs(t));
        g.warm_up_time(Duration::from_millis(500));
        g.bench_with_input(BenchmarkId::from_parameter(c.name), &h, |b, h| {
            b.iter(|| check_history(h))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_checker);

fn main() {
    report_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
