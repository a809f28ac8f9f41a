//! Starts a local 3-node concord key-value cluster in one process: three
//! servers on 127.0.0.1:7001..7003, each with a temporary data directory
//! (removed on exit), the same server code as `concord-node --service kv`
//! (whose `local-cluster` subcommand runs them as processes instead).
//!
//! ```text
//! cargo run --release --example local_cluster
//! # in another terminal:
//! cargo run --release -p concord-node --bin concord-cli -- \
//!     --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 kv put greeting hello
//! ```
//!
//! Optional argument: the first port (default 7001). Ctrl-C stops it.

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord_cli_output;

use std::collections::BTreeMap;
use std::time::Duration;

use concord_services::kv::Kv;

use concord_services::{KvClient, ServiceMachine};
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let first_port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("{arg:?} is not a port number"))?,
        None => 7001,
    };
    let peers: BTreeMap<u64, String> = (1..=3u64)
        .map(|id| (id, format!("127.0.0.1:{}", first_port + id as u16 - 1)))
        .collect();
    let base = std::env::temp_dir().join(format!("concord-local-cluster-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut nodes = Vec::new();
        for (&id, addr) in &peers {
            let dir = base.join(format!("node-{id}"));
            let settings = NodeSettings::new(id, addr.clone(), peers.clone(), "concord");
            let storage = NodeStorage::dir(&dir);
            nodes.push(start_node(settings, ServiceMachine::<Kv>::new, storage).await?);
            println!("node {id} listening on {addr}, data in {}", dir.display());
        }
        let servers: Vec<String> = peers.values().cloned().collect();
        let mut client = KvClient::new(ClientConfig::new(servers.clone(), "concord"));
        client.put("hello", "world").await?;
        println!("\ncluster is up (a test put succeeded via {}).", client.leader().unwrap_or("?"));
        println!("try:\n  cargo run --release -p concord-node --bin concord-cli -- --servers {} kv put greeting hello", servers.join(","));
        println!("  cargo run --release -p concord-node --bin concord-cli -- --servers {} kv get greeting", servers.join(","));
        println!("  cargo run --release -p concord-node --bin concord-cli -- --servers {} status", servers.join(","));
        println!("Ctrl-C stops the cluster and removes {}.", base.display());
        tokio::signal::ctrl_c().await?;
        for node in nodes {
            let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    let _ = std::fs::remove_dir_all(&base);
    result
}
