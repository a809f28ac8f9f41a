//! What one put costs the key-value store's apply on each server, and the
//! map under it: the store keeps its keys in `imbl::OrdMap`, a persistent
//! B-tree whose copy is a clone of its root, so a snapshot is serialised
//! off the server's loop (docs/snapshots.md). Its inserts cost more than
//! the standard library's `BTreeMap`'s; both maps are measured here in the
//! same run, with the same keys and values.
//!
//! Each iteration applies 10,000 puts of 128-byte values over 100,000
//! keys (already present: an overwrite, the steady state of a store):
//!
//! * `service_put`: `ServiceMachine<Kv>::apply` of encoded put requests,
//!   what a server runs per committed put (decode, apply, encode the
//!   answer);
//! * `ordmap_insert` and `btreemap_insert`: the maps alone, the same
//!   keys and values.
//!
//! `cargo bench -p concord-bench --bench kv_apply`. On a shared machine compare
//! instruction counts (`valgrind --tool=callgrind`), not times.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use concord::state_machine::StateMachine;
use concord_services::codec::encode_request;
use concord_services::kv::{Kv, KvRequest};
use concord_services::ServiceMachine;

const KEYS: u64 = 100_000;
const PUTS: u64 = 10_000;
const VALUE_BYTES: usize = 128;

fn key(i: u64) -> Bytes {
    // Spread over the key space, as independent clients' keys are.
    Bytes::from(format!("key-{:08}", (i * 7_919) % KEYS))
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_BYTES])
}

fn puts(c: &mut Criterion) {
    let mut group = c.benchmark_group("kv_apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(PUTS));

    let commands: Vec<Bytes> = (0..PUTS)
        .map(|i| {
            let put = KvRequest::Put {
                key: key(i),
                value: value(),
            };
            encode_request::<Kv>(i + 1, &put)
        })
        .collect();
    group.bench_function("service_put", |b| {
        b.iter_batched_ref(
            || {
                let mut kv = ServiceMachine::<Kv>::new();
                for i in 0..KEYS {
                    let put = KvRequest::Put {
                        key: key(i),
                        value: value(),
                    };
                    kv.apply(i + 1, &encode_request::<Kv>(i + 1, &put));
                }
                kv
            },
            |kv| {
                for (i, command) in commands.iter().enumerate() {
                    std::hint::black_box(kv.apply(KEYS + 1 + i as u64, command));
                }
            },
            BatchSize::LargeInput,
        )
    });

    let pairs: Vec<(Bytes, Bytes)> = (0..PUTS).map(|i| (key(i), value())).collect();
    group.bench_function("ordmap_insert", |b| {
        b.iter_batched_ref(
            || {
                (0..KEYS)
                    .map(|i| (key(i), value()))
                    .collect::<imbl::OrdMap<_, _>>()
            },
            |map| {
                for (key, value) in &pairs {
                    std::hint::black_box(map.insert(key.clone(), value.clone()));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("btreemap_insert", |b| {
        b.iter_batched_ref(
            || {
                (0..KEYS)
                    .map(|i| (key(i), value()))
                    .collect::<BTreeMap<_, _>>()
            },
            |map| {
                for (key, value) in &pairs {
                    std::hint::black_box(map.insert(key.clone(), value.clone()));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, puts);
criterion_main!(benches);
