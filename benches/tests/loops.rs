//! The benchmark loops must commit every proposal, exactly once and in
//! order, on every node; the raft-rs loop must take as many hops per locked
//! round as concord's, or the comparison would not be like for like.

use concord_bench::concord_loop::{
    BenchCluster, Cell, Cluster, CompactingCluster, Mode, COMPACTION_EVERY_ENTRIES,
};

const PROPOSALS: u64 = 2_000;

/// Runs every cell on a fresh cluster of `C` and checks every node applied
/// every proposal once, in order.
fn commits_every_proposal_in_every_cell<C: BenchCluster>() {
    for cell in Cell::ALL {
        let mut cluster = C::default();
        cluster.run(cell, PROPOSALS);
        cluster.verify_applied(PROPOSALS);
        assert_eq!(
            cluster.applied_counts(),
            [PROPOSALS; 3],
            "{} {}",
            C::NAME,
            cell.name()
        );
    }
}

/// Hops taken by 100 locked rounds of one proposal each.
fn hops_for_100_locked_rounds<C: BenchCluster>() -> u64 {
    let mut cluster = C::default();
    let before = cluster.hop_count();
    let cell = Cell {
        mode: Mode::Lock,
        batch: 1,
    };
    cluster.run(cell, 100);
    cluster.verify_applied(100);
    cluster.hop_count() - before
}

#[test]
fn concord_loop_commits_every_proposal_in_every_cell() {
    commits_every_proposal_in_every_cell::<Cluster>();
}

#[test]
fn concord_locked_round_takes_four_hops() {
    // Leader sends, followers persist and ack, leader commits and sends the
    // commit, followers apply.
    assert_eq!(hops_for_100_locked_rounds::<Cluster>(), 400);
}

#[cfg(feature = "raft-rs")]
mod raft_rs {
    use concord_bench::raft_loop::{BatchAppend, OneMessage, RaftCluster, Separate};

    #[test]
    fn raft_loop_commits_every_proposal_in_every_cell_on_every_path() {
        super::commits_every_proposal_in_every_cell::<RaftCluster<Separate>>();
        super::commits_every_proposal_in_every_cell::<RaftCluster<OneMessage>>();
        super::commits_every_proposal_in_every_cell::<RaftCluster<BatchAppend>>();
    }

    #[test]
    fn raft_locked_round_takes_four_hops_on_every_path() {
        assert_eq!(
            super::hops_for_100_locked_rounds::<RaftCluster<Separate>>(),
            400
        );
        assert_eq!(
            super::hops_for_100_locked_rounds::<RaftCluster<OneMessage>>(),
            400
        );
        assert_eq!(
            super::hops_for_100_locked_rounds::<RaftCluster<BatchAppend>>(),
            400
        );
    }
}

#[test]
fn concord_loop_with_compaction_commits_every_proposal_and_compacts() {
    // Enough proposals for several snapshots per node (the check in
    // `verify_applied` asserts they were taken).
    let proposals = 3 * COMPACTION_EVERY_ENTRIES + 17;
    for cell in Cell::ALL {
        let mut cluster = CompactingCluster::default();
        cluster.run(cell, proposals);
        cluster.verify_applied(proposals);
        assert_eq!(cluster.applied_counts(), [proposals; 3], "{}", cell.name());
    }
}
