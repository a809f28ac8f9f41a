//! How many groups a node hosts: a 3-node loopback cluster in
//! this process, every node hosting every group, in one shared
//! write-ahead log on real files; quiescence on, 10 ms ticks. For each
//! count: the time until every group is led and asleep, resident memory
//! per group (its three replicas, since all three nodes run here), then
//! every node stopped and restarted from its data directory: the time to
//! recover and start the three nodes, and until every group is led again.
//!
//! ```text
//! cargo bench -p concord-bench --bench multi_group_scale
//! CONCORD_BENCH_GROUPS=10000,30000,100000 cargo bench -p concord-bench --bench multi_group_scale
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

fn start_all(
    root: &std::path::Path,
    options: NodeOptions,
    addrs: &BTreeMap<NodeId, String>,
) -> BTreeMap<NodeId, Arc<MultiServerHandle>> {
    NODES
        .iter()
        .map(|id| {
            let dir = root.join(format!("node-{id}"));
            (*id, Arc::new(start_node(*id, &dir, options, addrs)))
        })
        .collect()
}

async fn run(groups: GroupId) {
    let root = scratch::TempDir::new("multi-group-scale");
    let addrs = loopback_addrs(&scratch::free_ports(NODES.len()));
    let options = NodeOptions {
        groups,
        quiesce: true,
        tick: Duration::from_millis(10),
    };
    let limit = Duration::from_secs(900);
    let poll = Duration::from_millis(500);
    let rss_before = resident_bytes();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let handles = start_all(&root.0, options, &addrs);
    leaders(&handles, groups, poll, limit).await;
    let led = started.elapsed().as_secs_f64();
    let asleep = all_asleep(&handles, limit).await;
    let settled = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu_before).as_secs_f64();
    let rss = resident_bytes().saturating_sub(rss_before);
    println!(
        "{groups} groups per node x 3 nodes: led after {led:.1} s, asleep ({asleep}) after \
         {settled:.1} s, CPU {cpu:.1} s; resident {:.0} MiB = {:.0} bytes per group ({:.0} per \
         replica)",
        rss as f64 / (1 << 20) as f64,
        rss as f64 / groups as f64,
        rss as f64 / groups as f64 / NODES.len() as f64
    );
    let at = Instant::now();
    shutdown(handles).await;
    let stopped = at.elapsed().as_secs_f64();
    let at = Instant::now();
    let handles = start_all(&root.0, options, &addrs);
    let recovered = at.elapsed().as_secs_f64();
    leaders(&handles, groups, poll, limit).await;
    let led_again = at.elapsed().as_secs_f64();
    println!(
        "restart: stopped in {stopped:.1} s; three nodes recovered and started in {recovered:.1} \
         s; every group led again after {led_again:.1} s; resident now {:.0} MiB",
        resident_bytes() as f64 / (1 << 20) as f64
    );
    shutdown(handles).await;
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run
    // passes nothing and expects no work.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    // The servers' warnings (a loop falling behind its clock) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let counts = env_list("CONCORD_BENCH_GROUPS", &[10_000]);
    let runtime = runtime();
    for groups in counts {
        runtime.block_on(run(groups as GroupId));
    }
}
