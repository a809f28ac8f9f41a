mod common;
use common::Cluster;
use concord::Role;

#[test]
fn three_nodes_replicate() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    assert_eq!(c.node(1).role(), Role::Leader);
    for i in 0..10 {
        c.propose(1, &format!("c{i}"));
        c.deliver_all();
    }
    c.tick_all(5);
    for id in [1, 2, 3] {
        assert_eq!(c.applied_strings(id).len(), 10, "node {id}");
    }
}
