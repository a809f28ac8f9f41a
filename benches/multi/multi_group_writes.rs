//! Aggregate writes per second of a 3-node loopback cluster hosting 1,024
//! groups, with 1, 16, 64 and 256 of them active: one closed-loop
//! client per active group writing 64-byte commands through the group's
//! leader. Every node keeps all its groups in one shared write-ahead log
//! on real files, synced (fsync on), and talks to each peer over one TCP
//! connection. Prints writes/s and the shared logs' syncs per second per
//! node, which must not grow with the number of active groups (one sync
//! per round of the log, for all groups), and the process's CPU time per
//! write (all three nodes, their logs' threads and the clients), the part
//! of it outside the logs' threads (the nodes' loops and the clients, on
//! the one runtime thread unless `CONCORD_BENCH_THREADS` says otherwise),
//! and the logs' threads' CPU in cores (their syncs). Then one group with 64
//! clients, against 64 groups with one each: the ratio says what
//! sharding costs (goal: at least 1.0).
//!
//! ```text
//! cargo bench -p concord-bench --bench multi_group_writes
//! CONCORD_BENCH_SECS=10 CONCORD_BENCH_ACTIVE=1,16,64,256 CONCORD_BENCH_GROUPS=1024 \
//!   cargo bench -p concord-bench --bench multi_group_writes
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::GroupId;
use concord::NodeId;
use concord_tokio::multi::host::MultiServerHandle;
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::wire::ClientResponse;

#[path = "../../tests/common/scratch.rs"]
mod scratch;

mod multi_common;
use multi_common::*;

const COMMAND_BYTES: usize = 64;

/// Counters summed over every node: what one write costs in syncs,
/// frames and steps of the groups' nodes.
#[derive(Clone, Copy, Default)]
struct Counters {
    syncs: u64,
    frames_sent: u64,
    node_steps: u64,
}

impl Counters {
    async fn read(handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>) -> Counters {
        let mut sum = Counters::default();
        for handle in handles.values() {
            let status = handle.status(false).await.unwrap();
            sum.syncs += status.log.syncs;
            sum.frames_sent += status.layer.frames_sent;
            sum.node_steps += status.layer.node_steps;
        }
        sum
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            syncs: self.syncs - before.syncs,
            frames_sent: self.frames_sent - before.frames_sent,
            node_steps: self.node_steps - before.node_steps,
        }
    }
}

/// Writes/s of closed-loop clients, `clients_per_group` on each group of
/// `chosen`, over `secs` after a warm-up; prints a line with the syncs.
async fn measure(
    handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>,
    led: &BTreeMap<GroupId, NodeId>,
    chosen: &[GroupId],
    clients_per_group: usize,
    secs: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for &group in chosen {
        for _ in 0..clients_per_group {
            let mut target = led[&group];
            let (handles, stop, done) = (handles.clone(), stop.clone(), done.clone());
            clients.push(tokio::spawn(async move {
                let command = Bytes::from(vec![b'x'; COMMAND_BYTES]);
                while !stop.load(Ordering::Relaxed) {
                    match handles[&target]
                        .call(group, GroupOp::Command(command.clone()))
                        .await
                    {
                        ClientResponse::Done(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientResponse::NotLeader {
                            leader_hint: Some(hint),
                            ..
                        } => target = hint,
                        _ => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            }));
        }
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (writes_before, syncs_before, at) = (
        done.load(Ordering::Relaxed),
        Counters::read(handles).await,
        Instant::now(),
    );
    let (cpu_before, log_cpu_before) = (process_cpu(), log_threads_cpu());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = at.elapsed().as_secs_f64();
    let writes = done.load(Ordering::Relaxed) - writes_before;
    let cpu = process_cpu() - cpu_before;
    let log_cpu = log_threads_cpu() - log_cpu_before;
    let counters = Counters::read(handles).await.since(syncs_before);
    let syncs = counters.syncs;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let per_second = writes as f64 / elapsed;
    println!(
        "{:>13} x {clients_per_group:>7} | {per_second:>8.0} | {:>16.0} | {:>15.2} | {:>16.2} | {:>15.2} | {:>13.1} | {:>18.1} | {:>15.2}",
        chosen.len(),
        syncs as f64 / elapsed / NODES.len() as f64,
        writes as f64 / (syncs as f64 / NODES.len() as f64).max(1.0),
        counters.frames_sent as f64 / writes.max(1) as f64,
        counters.node_steps as f64 / writes.max(1) as f64,
        cpu.as_secs_f64() * 1e6 / writes.max(1) as f64,
        cpu.saturating_sub(log_cpu).as_secs_f64() * 1e6 / writes.max(1) as f64,
        log_cpu.as_secs_f64() / elapsed,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    per_second
}

async fn run(
    groups: GroupId,
    active_counts: &[usize],
    one_group_clients: usize,
    secs: u64,
    root: &Path,
) {
    let addrs = loopback_addrs(&scratch::free_ports(NODES.len()));
    let options = NodeOptions {
        groups,
        quiesce: true,
        tick: Duration::from_millis(10),
    };
    let handles: BTreeMap<NodeId, Arc<MultiServerHandle>> = NODES
        .iter()
        .map(|id| {
            let dir: PathBuf = root.join(format!("node-{id}"));
            (*id, Arc::new(start_node(*id, &dir, options, &addrs)))
        })
        .collect();
    let started = Instant::now();
    let led = leaders(
        &handles,
        groups,
        Duration::from_millis(50),
        Duration::from_secs(120),
    )
    .await;
    println!(
        "{groups} groups on 3 nodes led after {:.1} s (fsync on, one shared log per node)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "active groups x clients | writes/s | syncs/s per node | writes per sync | frames per write \
         | steps per write | CPU µs per write | of it, not the logs | logs' cores"
    );
    let mut by_active = BTreeMap::new();
    for &active in active_counts {
        // Active groups spread over the id space.
        let stride = (groups as usize / active.max(1)).max(1) as u64;
        let chosen: Vec<GroupId> = (0..active as u64)
            .map(|k| 1 + (k * stride) % groups)
            .collect();
        let writes = measure(&handles, &led, &chosen, 1, secs).await;
        by_active.insert(active, writes);
    }
    // Sharding's cost: as many clients on one group as there were
    // active groups, one each.
    if one_group_clients > 0 {
        let one = measure(&handles, &led, &[1], one_group_clients, secs).await;
        if let Some(many) = by_active.get(&one_group_clients) {
            println!(
                "{one_group_clients} groups x 1 client / 1 group x {one_group_clients} clients: \
                 {:.2}",
                many / one
            );
        }
    }
    shutdown(handles).await;
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run
    // passes nothing and expects no work.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let groups = env_u64("CONCORD_BENCH_GROUPS", 1024);
    let active = env_list("CONCORD_BENCH_ACTIVE", &[1, 16, 64, 256]);
    let one_group_clients = env_u64("CONCORD_BENCH_ONE_GROUP_CLIENTS", 64) as usize;
    let secs = env_u64("CONCORD_BENCH_SECS", 5);
    let root = scratch::TempDir::new("multi-group-writes");
    runtime().block_on(run(groups, &active, one_group_clients, secs, &root.0));
}
