//! Simulator speed: a 5-node cluster, 60 simulated seconds
//! of chaos (every fault allowed, swarm-drawn per seed), 8 clients each
//! issuing an operation every 100 ms of simulated time on average
//! (exponential think time), 10 ms ticks.
//!
//! Reports simulated seconds per wall second, node steps (`Node::step`
//! calls) per second and seeds per minute on one core, then lets criterion
//! time one seed.
//!
//! ```text
//! cargo bench -p concord-bench --bench sim
//! ```

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use concord_sim::{run_kv, SimConfig};

/// The allocator of the `concord-sim` binary (see `sim/src/main.rs`), so the
/// figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        nodes: 5,
        clients: 8,
        chaos_ns: 60_000_000_000,
        think_mean_ns: 100_000_000,
        tick_ns: 10_000_000,
        ..SimConfig::default()
    }
}

fn figures() {
    let seeds = 20;
    let started = Instant::now();
    let (mut simulated_ns, mut steps, mut events, mut operations, mut failures) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let report = run_kv(&config(seed), None).expect("valid configuration");
        simulated_ns += report.simulated_ns;
        steps += report.node_steps;
        events += report.events;
        operations += report.operations;
        failures += u64::from(!report.passed());
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "sim figures over {seeds} seeds (5 nodes, 60 s chaos, 8 clients, 100 ms think, 10 ms ticks), one core:\n  \
         {:.0} simulated seconds per wall second\n  {:.2} M node steps/s ({:.2} M engine events/s)\n  \
         {:.0} seeds per minute\n  {} operations checked, {} failures",
        simulated_ns as f64 / 1e9 / wall,
        steps as f64 / wall / 1e6,
        events as f64 / wall / 1e6,
        seeds as f64 / wall * 60.0,
        operations,
        failures
    );
}

fn bench(c: &mut Criterion) {
    figures();
    let steps = run_kv(&config(1), None)
        .expect("valid configuration")
        .node_steps;
    let mut group = c.benchmark_group("sim");
    group.sample_size(10);
    group.throughput(Throughput::Elements(steps));
    group.bench_function(
        "5 nodes, 60 s chaos, seed 1 (throughput = node steps)",
        |b| b.iter(|| run_kv(&config(1), None).expect("valid configuration")),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
