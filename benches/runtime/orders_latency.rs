//! The orders experiment: latency of `place_order` against cluster size,
//! on real `concord-node --service orders` processes on loopback with
//! fsync on. For each size, `RUNS` fresh clusters; in each, `CLIENTS`
//! client tasks place `ORDERS` orders one after another (the first order
//! waits out the election and is not measured). Writes `latency.md` (p50,
//! p99 and mean per run and averaged) and `latency.svg` to `OUT`.
//!
//! ```text
//! cargo bench -p concord-bench --bench orders_latency
//! CONCORD_BENCH_SIZES=1,3,5,7 CONCORD_BENCH_CLIENTS=4 CONCORD_BENCH_ORDERS=200 \
//!     CONCORD_BENCH_RUNS=3 CONCORD_BENCH_ACKNOWLEDGE_ALL=1 \
//!     CONCORD_BENCH_OUT=orders-latency cargo bench -p concord-bench --bench orders_latency
//! ```
//!
//! `CONCORD_BENCH_ACKNOWLEDGE_ALL=1` acknowledges each order only once
//! every healthy server applied it (`concord-cli --acknowledge-all`),
//! measuring that option's cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use concord_node::latency::{svg, table, SizeResult, Stats};
use concord_services::orders::{Orders, OrdersRequest};
use concord_services::ServiceClient;
use concord_tokio::client::ClientConfig;

#[path = "support/node_cluster.rs"]
mod node_cluster;
use node_cluster::{env_list, env_u64, NodeCluster, CLUSTER};

/// Most servers and clients one run starts.
const SERVERS_MAX: usize = 7;
const CLIENTS_MAX: usize = 64;

fn client(servers: Vec<String>, acknowledge_all: bool) -> ServiceClient<Orders> {
    let mut client = ServiceClient::new(ClientConfig::new(servers, CLUSTER));
    client.set_acknowledge_all(acknowledge_all);
    client
}

fn place(customer: &str) -> OrdersRequest {
    OrdersRequest::PlaceOrder {
        customer: customer.to_string(),
    }
}

/// One run: a fresh cluster of `servers` processes; the latency of every
/// acknowledged order.
async fn run(
    servers: usize,
    clients: usize,
    orders: usize,
    acknowledge_all: bool,
) -> Vec<Duration> {
    let cluster = NodeCluster::start(servers, &["--service", "orders"]);
    client(cluster.servers.clone(), false)
        .call(place("warmup"))
        .await
        .expect("the cluster serves");
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut client = client(cluster.servers.clone(), acknowledge_all);
            tokio::spawn(async move {
                let customer = format!("customer-{c}");
                let mut mine = Vec::with_capacity(orders);
                for _ in 0..orders {
                    let started = Instant::now();
                    client.call(place(&customer)).await.expect("an order");
                    mine.push(started.elapsed());
                }
                mine
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a client task"));
    }
    latencies
}

fn main() {
    let sizes = env_list("CONCORD_BENCH_SIZES", &[1, 3, 5, 7]);
    let clients = env_u64("CONCORD_BENCH_CLIENTS", 4) as usize;
    let orders = env_u64("CONCORD_BENCH_ORDERS", 200) as usize;
    let runs = env_u64("CONCORD_BENCH_RUNS", 3) as usize;
    let acknowledge_all = env_u64("CONCORD_BENCH_ACKNOWLEDGE_ALL", 0) == 1;
    let out = PathBuf::from(
        std::env::var("CONCORD_BENCH_OUT").unwrap_or_else(|_| "orders-latency".to_string()),
    );
    assert!(
        !sizes.is_empty() && sizes.iter().all(|n| (1..=SERVERS_MAX).contains(n)),
        "CONCORD_BENCH_SIZES: 1 to {SERVERS_MAX} servers each"
    );
    assert!((1..=CLIENTS_MAX).contains(&clients) && orders > 0 && runs > 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for &servers in &sizes {
        let mut stats = Vec::new();
        for r in 1..=runs {
            let latencies = runtime.block_on(run(servers, clients, orders, acknowledge_all));
            let run_stats = Stats::of(&latencies).expect("orders measured");
            eprintln!(
                "{servers} servers, run {r}: p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms over {} orders",
                run_stats.p50_ms, run_stats.p99_ms, run_stats.mean_ms, run_stats.count
            );
            stats.push(run_stats);
        }
        results.push(SizeResult {
            servers,
            runs: stats,
        });
    }
    let mut text = table(&results, clients, orders);
    if acknowledge_all {
        text = format!(
            "Each order acknowledged only after every healthy server applied it (--acknowledge-all).\n\n{text}"
        );
    }
    std::fs::create_dir_all(&out).expect("create the output directory");
    std::fs::write(out.join("latency.md"), &text).expect("write latency.md");
    std::fs::write(out.join("latency.svg"), svg(&results)).expect("write latency.svg");
    println!("{text}");
    println!("wrote {}/latency.md and latency.svg", out.display());
}
