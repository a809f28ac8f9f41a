//! Raft events of every group of a server, summed from the groups' own
//! counters ([`concord::Statistics`]): the core counts each where it
//! happens, the status query adds them up (one pass over the groups it
//! makes anyway), so the loop pays nothing per event.

use concord::Statistics;

/// Raft events of a server's groups since it started, every group summed
/// (those it stopped hosting included, so that no count goes down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftCounts {
    /// Elections (not pre-elections) started.
    pub elections_started: u64,
    /// Times a group became leader here.
    pub leader_elected: u64,
    /// Followers found, by a group leading here, holding less than they
    /// had acknowledged as durable (their disk lost synced data).
    pub follower_log_regressions: u64,
    /// Snapshots groups took of their state machines (reported durable
    /// and compacted to).
    pub snapshots_taken: u64,
    /// Snapshots groups received from a leader and installed.
    pub snapshots_installed: u64,
    /// Snapshot transfers to followers groups started as leader (or
    /// restarted from the first byte).
    pub snapshot_transfers_started: u64,
}

impl RaftCounts {
    /// Adds one group's counters.
    pub fn add(&mut self, stats: &Statistics) {
        self.elections_started += stats.elections_started;
        self.leader_elected += stats.leader_elected;
        self.follower_log_regressions += stats.follower_log_regressions;
        self.snapshots_taken += stats.snapshots_taken;
        self.snapshots_installed += stats.snapshots_installed;
        self.snapshot_transfers_started += stats.snapshot_transfers_started;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::cluster::{group_status, start_in_process_node, NodeSettings, GROUP};
    use crate::multi::host::{MultiServerHandle, MultiStatus};
    use crate::multi::mem_network::MemFrameNetwork;
    use crate::multi::page_cache::PageCacheDisk;
    use crate::multi::wire::GroupOp;
    use crate::null::NullStateMachine;
    use crate::wire::ClientResponse;

    /// Generous bound on anything the cluster must do.
    const DEADLINE: Duration = Duration::from_secs(30);

    async fn statuses(handles: &[MultiServerHandle]) -> Vec<MultiStatus> {
        let mut statuses = Vec::new();
        for handle in handles {
            statuses.push(handle.status(false).await.expect("running"));
        }
        statuses
    }

    fn leaderships(statuses: &[MultiStatus]) -> u64 {
        statuses.iter().map(|s| s.raft.leader_elected).sum()
    }

    /// The index in `handles` of the group's leader, once one leads.
    async fn leader(handles: &[MultiServerHandle], not: Option<usize>) -> usize {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            for (i, handle) in handles.iter().enumerate() {
                if Some(i) == not {
                    continue;
                }
                if group_status(handle)
                    .await
                    .is_some_and(|s| s.role == "Leader")
                {
                    return i;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A leader cut off from its followers' answers cannot commit a
    /// command; it steps down (CheckQuorum) and answers "unknown": the
    /// counter the metric reads moves by that one answer, and the
    /// election that follows elsewhere is counted there.
    #[test]
    fn a_leader_that_steps_down_counts_its_unknown_answer_and_elections_are_counted() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let network = MemFrameNetwork::new();
            let peers: BTreeMap<u64, String> =
                (1..=3u64).map(|id| (id, format!("mem:{id}"))).collect();
            let handles: Vec<MultiServerHandle> = (1..=3u64)
                .map(|id| {
                    let settings =
                        NodeSettings::new(id, format!("mem:{id}"), peers.clone(), "counts");
                    start_in_process_node(
                        settings,
                        || NullStateMachine,
                        PageCacheDisk::new(),
                        1,
                        &network,
                    )
                    .expect("a node starts")
                })
                .collect();
            let old = leader(&handles, None).await;
            let before = statuses(&handles).await;
            // The data group and the catalog each elected a leader, after
            // an election each.
            assert!(leaderships(&before) >= 2, "{:?}", before[old].raft);
            let started: u64 = before.iter().map(|s| s.raft.elections_started).sum();
            assert!(started >= leaderships(&before));
            assert_eq!(before[old].host.unknown_outcomes, 0);

            // Frames to the leader are dropped from now on.
            network.unregister(old as u64 + 1);
            let answer = handles[old]
                .call(GROUP, GroupOp::Command(Bytes::from_static(b"lost")))
                .await;
            assert_eq!(answer, ClientResponse::Unknown);
            let after = handles[old].status(false).await.expect("running");
            assert_eq!(after.host.unknown_outcomes, 1);

            // The others elect a new leader: one more leadership won, and
            // nothing is counted twice by the old leader.
            let new = leader(&handles, Some(old)).await;
            let now = statuses(&handles).await;
            assert!(now[new].raft.leader_elected > before[new].raft.leader_elected);
            assert!(now[new].raft.elections_started > before[new].raft.elections_started);
            assert_eq!(
                now[old].raft.leader_elected,
                before[old].raft.leader_elected
            );
            for handle in handles {
                let _ = handle.shutdown().await;
            }
        });
    }
}
