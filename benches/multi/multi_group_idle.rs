//! Idle groups and a node loss on a 3-node loopback cluster in this
//! process: each node hosts every group (10,000 by default),
//! in one shared write-ahead log on real files, one TCP connection per
//! peer, 10 ms ticks.
//!
//! 1. **Idle.** Once every group is led (and, with quiescence, asleep),
//!    the process's CPU time (user + system, `/proc/self/stat`) over a
//!    fixed window, per group per second; and resident memory per group
//!    (`VmRSS` after the start minus before it). Both figures cover the
//!    group's three replicas, since all three nodes run here.
//! 2. **Wake storm** (quiesced run only). The node leading the most
//!    groups is stopped; the time until the two others lead every group,
//!    and the process's CPU time meanwhile.
//!
//! ```text
//! cargo bench -p concord-bench --bench multi_group_idle
//! CONCORD_BENCH_QUIESCE=0 cargo bench -p concord-bench --bench multi_group_idle
//! CONCORD_BENCH_GROUPS=10000 CONCORD_BENCH_SECS=20 cargo bench -p concord-bench --bench multi_group_idle
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::multi::GroupId;
use concord::NodeId;
use concord_tokio::multi::host::MultiServerHandle;

#[path = "../../tests/common/scratch.rs"]
mod scratch;

mod multi_common;
use multi_common::*;

async fn run(groups: GroupId, quiesce: bool, secs: u64) {
    let root = scratch::TempDir::new("multi-group-idle");
    let addrs = loopback_addrs(&scratch::free_ports(NODES.len()));
    let options = NodeOptions {
        groups,
        quiesce,
        tick: Duration::from_millis(10),
    };
    let rss_before = resident_bytes();
    let started = Instant::now();
    let mut handles: BTreeMap<NodeId, Arc<MultiServerHandle>> = NODES
        .iter()
        .map(|id| {
            let dir = root.0.join(format!("node-{id}"));
            (*id, Arc::new(start_node(*id, &dir, options, &addrs)))
        })
        .collect();
    let led = leaders(
        &handles,
        groups,
        Duration::from_millis(200),
        Duration::from_secs(600),
    )
    .await;
    let led_secs = started.elapsed().as_secs_f64();
    if quiesce {
        assert!(
            all_asleep(&handles, Duration::from_secs(300)).await,
            "groups still awake after 300 s"
        );
    } else {
        // Unquiesced groups never sleep: let the start's work settle.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let settled_secs = started.elapsed().as_secs_f64();
    let rss = resident_bytes().saturating_sub(rss_before);
    println!(
        "{groups} groups x 3 nodes, quiescence {}: led after {led_secs:.1} s, settled after \
         {settled_secs:.1} s; resident memory {:.1} MiB = {:.0} bytes per group ({:.0} per replica)",
        if quiesce { "on" } else { "off" },
        rss as f64 / (1 << 20) as f64,
        rss as f64 / groups as f64,
        rss as f64 / groups as f64 / NODES.len() as f64,
    );
    let counts_before = layer_counts(&handles).await;
    let cpu_before = process_cpu();
    let at = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let window = at.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu_before).as_secs_f64();
    let counts = layer_counts(&handles).await;
    let delta: Vec<u64> = counts
        .iter()
        .zip(counts_before)
        .map(|(a, b)| a - b)
        .collect();
    println!(
        "in the window, summed over the nodes: {} group ticks, {} wakes ({} to elect), {} peers \
         taken for dead, {} frames sent",
        delta[0], delta[1], delta[2], delta[3], delta[4]
    );
    let awake = groups_awake(&handles).await;
    let micros_per_group = cpu * 1e6 / window / groups as f64;
    println!(
        "idle window {window:.1} s: process CPU {cpu:.2} s = {micros_per_group:.2} us per group per \
         second ({:.2} per replica); groups awake at its end: {awake}",
        micros_per_group / NODES.len() as f64
    );
    if quiesce && env_u64("CONCORD_BENCH_STORM", 1) != 0 {
        // The node leading the most groups goes away.
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for leader in led.values() {
            *counts.entry(*leader).or_default() += 1;
        }
        let (victim, orphans) = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(id, n)| (*id, *n))
            .unwrap();
        let cpu_before = process_cpu();
        let at = Instant::now();
        let victim_handle = handles.remove(&victim).unwrap();
        if let Ok(handle) = Arc::try_unwrap(victim_handle) {
            handle.shutdown().await.unwrap();
        }
        let mut reported = Instant::now();
        while groups_led(&handles).await < groups as usize {
            assert!(
                at.elapsed() < Duration::from_secs(600),
                "groups still leaderless 600 s after the stop"
            );
            if reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                println!(
                    "  after {:.0} s: {} of {groups} groups led, {} awake",
                    at.elapsed().as_secs_f64(),
                    groups_led(&handles).await,
                    groups_awake(&handles).await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        leaders(
            &handles,
            groups,
            Duration::from_millis(20),
            Duration::from_secs(600),
        )
        .await;
        let storm = at.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu_before).as_secs_f64();
        println!(
            "wake storm: node {victim} (leader of {orphans} groups) stopped; every group led by \
             the two others after {storm:.2} s; process CPU meanwhile {cpu:.2} s ({:.0}% of one \
             core)",
            cpu / storm * 100.0
        );
    }
    shutdown(handles).await;
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run
    // passes nothing and expects no work.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let groups = env_u64("CONCORD_BENCH_GROUPS", 10_000);
    let quiesce = env_u64("CONCORD_BENCH_QUIESCE", 1) != 0;
    let secs = env_u64("CONCORD_BENCH_SECS", 10);
    runtime().block_on(run(groups, quiesce, secs));
}
