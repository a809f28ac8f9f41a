//! Nodes of the key-value service in this process: loopback addresses
//! and in-memory storage. Included by path where a test has no `common`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use concord_services::kv::Kv;
use concord_services::service_state_machine;
use concord_tokio::cluster::single_group::{start_node, RunningNode};
use concord_tokio::cluster::NodeSettings;
use concord_tokio::server::ServerError;
use concord_tokio::storage::{MemDisk, MemStorage};

/// Nodes 1, 2, ... at the loopback `ports`, in order.
pub fn loopback_peers(ports: &[u16]) -> BTreeMap<u64, String> {
    (1..)
        .zip(ports)
        .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
        .collect()
}

/// Starts a node of the key-value service with `settings`, on in-memory
/// storage.
pub async fn start_kv_node(settings: NodeSettings) -> Result<RunningNode, ServerError> {
    start_node(
        settings,
        service_state_machine::<Kv>(),
        MemStorage::new(MemDisk::new()),
    )
    .await
}
