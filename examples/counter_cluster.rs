//! The README's example: your own state machine replicated by three
//! concord servers in this process (TCP on 127.0.0.1:7101..7103, logs in
//! memory), written once through the log and read back linearizably.
//!
//! ```text
//! cargo run --example counter_cluster
//! ```
use std::collections::BTreeMap;

use bytes::Bytes;
use concord::session::WithSessions;
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Index, ReadPath};
use concord_tokio::client::{Client, ClientConfig};
use concord_tokio::cluster::{start_node, NodeSettings};
use concord_tokio::storage::{MemDisk, MemStorage};

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
        let machine = WithSessions::new(Counter::default(), 1024); // exactly-once writes
        nodes.push(start_node(settings, machine, MemStorage::new(MemDisk::new())).await?);
    }
    let mut client = Client::new(ClientConfig::new(peers.into_values().collect(), "demo"));
    client.write(Bytes::from("hello")).await?; // committed by a majority, applied once
    let total = client.read(Bytes::new(), ReadPath::ReadIndex).await?; // no log entry
    println!("counted {} bytes", String::from_utf8_lossy(&total));
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
