//! The catalog and the balancer at the size of a large cluster: 100
//! servers of 1,000,000 groups of 3 replicas, and a 101st server just
//! added. Printed once: the catalog's snapshot size with every group
//! assigned, and the moves one round plans. Timed (criterion): one
//! round's decision, `Balancer::plan` over every group, with no move in
//! flight and with 16 in flight.
//!
//! `cargo bench -p concord-bench --bench multi_balance`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use concord::multi::{
    BalanceLimits, Balancer, Catalog, CatalogCommand, GroupId, PlacementRule, ServerPlace,
    ServerState, CATALOG_ASSIGN_GROUPS_MAX,
};
use concord::NodeId;

const SERVERS: NodeId = 100;
const GROUPS: GroupId = 1_000_000;
const REPLICAS: NodeId = 3;

/// Group `g`'s voters: three consecutive servers from `g`'s.
fn voters_of(group: GroupId) -> BTreeSet<NodeId> {
    (0..REPLICAS).map(|i| (group + i) % SERVERS + 1).collect()
}

fn servers() -> BTreeMap<NodeId, ServerPlace> {
    (1..=SERVERS + 1)
        .map(|id| {
            let place = ServerPlace {
                state: ServerState::Up,
                zone: None,
            };
            (id, place)
        })
        .collect()
}

/// The catalog of the cluster with every group assigned; its snapshot's
/// size and how long it took to build and to snapshot.
fn catalog_figures() {
    let started = Instant::now();
    let mut catalog = Catalog::new();
    for id in 1..=SERVERS + 1 {
        let command = CatalogCommand::AddServer {
            id,
            addr: format!("10.0.{}.{}:7000", id / 256, id % 256),
        };
        catalog.apply(&command.encode()).expect("a server");
    }
    let mut by_server: BTreeMap<NodeId, Vec<(GroupId, BTreeSet<NodeId>)>> = BTreeMap::new();
    for group in 1..=GROUPS {
        let voters = voters_of(group);
        for id in &voters {
            by_server
                .entry(*id)
                .or_default()
                .push((group, voters.clone()));
        }
    }
    for (node, groups) in by_server {
        for chunk in groups.chunks(CATALOG_ASSIGN_GROUPS_MAX) {
            let command = CatalogCommand::Assign {
                node,
                groups: chunk.to_vec(),
            };
            catalog.apply(&command.encode()).expect("an assignment");
        }
    }
    let built = started.elapsed();
    let started = Instant::now();
    let snapshot = catalog.snapshot();
    eprintln!(
        "catalog of {} servers and {GROUPS} groups: snapshot {} bytes ({:.1} bytes per group), \
         built in {built:?}, snapshotted in {:?}",
        SERVERS + 1,
        snapshot.len(),
        snapshot.len() as f64 / GROUPS as f64,
        started.elapsed()
    );
}

fn balance(c: &mut Criterion) {
    catalog_figures();
    let servers = servers();
    let groups: BTreeMap<GroupId, BTreeSet<NodeId>> = (1..=GROUPS)
        .map(|group| (group, voters_of(group)))
        .collect();
    let balancer = Balancer::new(
        PlacementRule {
            replicas: REPLICAS as usize,
            spread_zones: false,
        },
        BalanceLimits::default(),
    )
    .expect("a valid rule");
    let first = balancer.plan(&servers, &groups, &[]).expect("a plan");
    eprintln!(
        "one round plans {} moves (limits {:?}), e.g. {:?}",
        first.len(),
        balancer.limits(),
        first.first()
    );
    assert!(!first.is_empty(), "the new server gets nothing");
    assert!(first.iter().all(|m| m.to == SERVERS + 1));
    let mut group = c.benchmark_group("multi_balance");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("plan_1m_groups_101_servers", |b| {
        b.iter(|| balancer.plan(&servers, &groups, &[]).expect("a plan"))
    });
    group.bench_function("plan_1m_groups_101_servers_in_flight", |b| {
        b.iter(|| balancer.plan(&servers, &groups, &first).expect("a plan"))
    });
    group.finish();
}

criterion_group!(benches, balance);
criterion_main!(benches);
