//! The README's example: your own state machine replicated by three
//! concord servers in this process (TCP on 127.0.0.1:7101..7103, logs on
//! a simulated disk in memory), written once through the log and read
//! back linearizably.
//!
//! ```text
//! cargo run --example counter_cluster
//! ```
use std::collections::BTreeMap;

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Index, ReadPath};
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage};
use concord_tokio::multi::one_group_client::OneGroupClient;
use concord_tokio::multi::page_cache::PageCacheDisk;

/// Counts the bytes of every command applied.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
        self.0 += command.len() as u64;
        Bytes::from(self.0.to_string())
    }
    fn query(&self, _request: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(self.0.to_string()))
    }
    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let bytes = bytes
            .try_into()
            .map_err(|_| RestoreError::new("not 8 bytes"))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", 7100 + id)))
        .collect();
    let mut nodes = Vec::new();
    for (&id, addr) in &peers {
        let settings = NodeSettings::new(id, addr.clone(), peers.clone(), "demo");
        let disk = NodeStorage::memory(PageCacheDisk::new(), 1); // or NodeStorage::dir(path)
        nodes.push(start_node(settings, Counter::default, disk).await?);
    }
    let servers = peers.into_values().collect();
    let mut client = OneGroupClient::new(ClientConfig::new(servers, "demo")); // exactly once
    client.write(Bytes::from("hello")).await?; // committed by a majority, applied once
    let total = client.read(Bytes::new(), ReadPath::ReadIndex).await?; // no log entry
    println!("counted {} bytes", String::from_utf8_lossy(&total));
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
