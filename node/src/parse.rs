//! Value parsers shared by the command line (as clap value parsers) and
//! the config file: one rule per kind of value, so a flag and a config key
//! accept exactly the same text and refuse it with the same reason.

use std::collections::BTreeMap;

use concord::NodeId;

/// Longest cluster name a server accepts (the handshake carries it).
pub const CLUSTER_ID_BYTES_MAX: usize = 128;

/// A node id: a positive integer (0 is reserved).
pub fn node_id(value: &str) -> Result<NodeId, String> {
    match value.parse::<NodeId>() {
        Ok(0) => Err("0 is reserved; node ids are 1 or more".to_string()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{value:?} is not a node id (a positive integer)")),
    }
}

/// A `host:port` socket address, kept as the text given.
pub fn addr(value: &str) -> Result<String, String> {
    value
        .parse::<std::net::SocketAddr>()
        .map(|_| value.to_string())
        .map_err(|_| format!("{value:?} is not a host:port address like 127.0.0.1:7001"))
}

/// Every node of a cluster as `id=host:port`, comma separated.
pub fn peers(value: &str) -> Result<Peers, String> {
    let mut map = Peers::default();
    for item in value.split(',').filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not of the form id=host:port"))?;
        map.insert(id, address)
            .map_err(|e| format!("{e} (in {item:?})"))?;
    }
    Ok(map)
}

/// A cluster's name: 1 to [`CLUSTER_ID_BYTES_MAX`] bytes.
pub fn cluster_id(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > CLUSTER_ID_BYTES_MAX {
        return Err(format!("give a name of 1 to {CLUSTER_ID_BYTES_MAX} bytes"));
    }
    Ok(value.to_string())
}

/// The nodes of a cluster and their addresses, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<NodeId, String>);

impl Peers {
    /// Adds node `id` (text, checked) at `address` (checked); a node
    /// listed twice is refused.
    pub fn insert(&mut self, id: &str, address: &str) -> Result<(), String> {
        let id = node_id(id)?;
        let address = addr(address)?;
        if address.ends_with(":0") {
            return Err(format!(
                "node {id} at {address}: port 0 cannot be dialled; give the port it listens on"
            ));
        }
        if let Some((other, _)) = self.0.iter().find(|(_, a)| **a == address) {
            return Err(format!(
                "nodes {other} and {id} are both at {address}; every node needs its own address"
            ));
        }
        if self.0.insert(id, address).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_with_the_reason() {
        let parsed = peers("1=127.0.0.1:7001,2=127.0.0.1:7002").unwrap();
        assert_eq!(parsed.0.len(), 2);
        assert_eq!(parsed.0[&2], "127.0.0.1:7002");
        assert!(peers("2:127.0.0.1:2")
            .unwrap_err()
            .contains("is not of the form id=host:port"));
        assert!(peers("0=127.0.0.1:2")
            .unwrap_err()
            .contains("0 is reserved"));
        assert!(peers("1=127.0.0.1:2,1=127.0.0.1:3")
            .unwrap_err()
            .contains("node 1 is listed twice"));
        assert!(peers("1=nowhere").unwrap_err().contains("host:port"));
        assert_eq!(
            peers("1=127.0.0.1:7,2=127.0.0.1:7").unwrap_err(),
            "nodes 1 and 2 are both at 127.0.0.1:7; every node needs its own address (in \"2=127.0.0.1:7\")"
        );
        assert!(peers("1=127.0.0.1:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn ids_and_cluster_names_are_bounded() {
        assert_eq!(node_id("7"), Ok(7));
        assert!(node_id("0").unwrap_err().contains("reserved"));
        assert!(node_id("-1").unwrap_err().contains("not a node id"));
        assert!(cluster_id("").is_err());
        assert!(cluster_id(&"x".repeat(CLUSTER_ID_BYTES_MAX + 1)).is_err());
        assert_eq!(cluster_id("demo"), Ok("demo".to_string()));
    }
}
