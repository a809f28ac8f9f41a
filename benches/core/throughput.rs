//! Throughput of concord alone: a 3-node cluster in memory, driven in one
//! thread, committing 200,000 proposals of 128 bytes in four cells (`lock`
//! or `pipe` feeding, batches of 1 or 64), each cell with compaction off
//! and then on (`-compaction`: a snapshot every 10,000 entries). Criterion
//! reports elements (= entries applied on all three nodes) per second.
//!
//! The loop lives in `benches/src/concord_loop.rs`, shared with the
//! side-by-side comparison against raft-rs:
//! `cargo bench -p concord-bench --features raft-rs --bench compare`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[allow(dead_code)] // the comparison uses parts of the loop this bench does not
#[path = "../src/concord_loop.rs"]
mod concord_loop;

use concord_loop::{Cell, Cluster, CompactingCluster, PROPOSALS};

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("concord");
    group.throughput(Throughput::Elements(PROPOSALS));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    // Each cell twice, side by side: compaction off (no thresholds, as
    // `Config::new` gives) and on (a snapshot every 10,000 entries).
    for cell in Cell::ALL {
        group.bench_function(BenchmarkId::new(cell.mode.name(), cell.batch), |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| concord_loop::run_once::<Cluster>(cell, PROPOSALS))
                    .sum()
            })
        });
        group.bench_function(
            BenchmarkId::new(format!("{}-compaction", cell.mode.name()), cell.batch),
            |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| concord_loop::run_once::<CompactingCluster>(cell, PROPOSALS))
                        .sum()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
