//! Nodes of an in-memory multi-group cluster, for the benches that drive
//! the layer in one thread (`multi_group_tick`, `multi_group_rounds`).

use concord::multi::{MultiConfig, MultiNode};
use concord::{Config, NodeId, Recovered};

/// Nodes 1..=`nodes`, each hosting groups 1..=`groups` with every node a
/// member; groups quiesce after `quiesce_after_idle_ticks` if given.
pub fn multi_nodes(
    nodes: u64,
    groups: u64,
    quiesce_after_idle_ticks: Option<u32>,
) -> Vec<MultiNode> {
    let ids: Vec<NodeId> = (1..=nodes).collect();
    ids.iter()
        .map(|&id| {
            let mut config = MultiConfig::new(id, ids.iter().copied());
            config.quiesce_after_idle_ticks = quiesce_after_idle_ticks;
            let mut multi = MultiNode::new(config).expect("valid");
            for group in 1..=groups {
                let mut group_config = Config::new(id, ids.iter().copied());
                group_config.seed = group * 7 + id;
                multi
                    .create_group(group, group_config, Recovered::default())
                    .expect("valid");
            }
            multi
        })
        .collect()
}
