//! The benchmark loops must commit every proposal, exactly once and in
//! order, on every node; the raft-rs loop must take as many hops per locked
//! round as concord's, or the comparison would not be like for like.

use concord_bench::concord_loop::{Cell, Cluster, Mode};

const PROPOSALS: u64 = 2_000;

#[test]
fn concord_loop_commits_every_proposal_in_every_cell() {
    for cell in Cell::ALL {
        let mut cluster = Cluster::new();
        cluster.run(cell, PROPOSALS);
        cluster.verify(PROPOSALS);
        assert_eq!(cluster.applied(), [PROPOSALS; 3], "{}", cell.name());
    }
}

#[test]
fn concord_locked_round_takes_four_hops() {
    // Leader sends, followers persist and ack, leader commits and sends the
    // commit, followers apply.
    let mut cluster = Cluster::new();
    let before = cluster.hops();
    cluster.run(
        Cell {
            mode: Mode::Lock,
            batch: 1,
        },
        100,
    );
    cluster.verify(100);
    assert_eq!(cluster.hops() - before, 400);
}

#[cfg(feature = "raft-rs")]
mod raft_rs {
    use concord_bench::concord_loop::{Cell, Mode};
    use concord_bench::raft_loop::RaftCluster;

    use super::PROPOSALS;

    #[test]
    fn raft_loop_commits_every_proposal_in_every_cell() {
        for cell in Cell::ALL {
            let mut cluster = RaftCluster::new();
            cluster.run(cell, PROPOSALS);
            cluster.verify(PROPOSALS);
            assert_eq!(cluster.applied(), [PROPOSALS; 3], "{}", cell.name());
        }
    }

    #[test]
    fn raft_locked_round_takes_four_hops() {
        let mut cluster = RaftCluster::new();
        let before = cluster.hops();
        cluster.run(
            Cell {
                mode: Mode::Lock,
                batch: 1,
            },
            100,
        );
        cluster.verify(100);
        assert_eq!(cluster.hops() - before, 400);
    }
}
