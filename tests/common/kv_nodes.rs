//! Nodes of the key-value service in this process, on the one runtime:
//! loopback addresses and a simulated disk in memory. Included by path
//! where a test has no `common`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use concord_services::kv::Kv;
use concord_services::ServiceMachine;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage, RunningNode, StartError};
use concord_tokio::multi::page_cache::PageCacheDisk;

/// Nodes 1, 2, ... at the loopback `ports`, in order.
pub fn loopback_peers(ports: &[u16]) -> BTreeMap<u64, String> {
    (1..)
        .zip(ports)
        .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
        .collect()
}

/// Starts a node of the key-value service with `settings`, on a new disk
/// in memory.
pub async fn start_kv_node(settings: NodeSettings) -> Result<RunningNode, StartError> {
    start_kv_node_on(settings, NodeStorage::memory(PageCacheDisk::new(), 1)).await
}

/// Starts a node of the key-value service with `settings` on `storage`
/// (give the same disk or directory back to restart it).
pub async fn start_kv_node_on(
    settings: NodeSettings,
    storage: NodeStorage,
) -> Result<RunningNode, StartError> {
    start_node(settings, ServiceMachine::<Kv>::new, storage).await
}
