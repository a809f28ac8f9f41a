//! `read-fresh`: every read a node releases, on every path that skips
//! the log (ReadIndex, lease, follower), is served at an index at least
//! the highest index committed anywhere in the cluster when the read
//! arrived at the node, judged against the simulator's global view (the
//! highest commit index any node has reached so far).
//!
//! That is what each path promises: a lease read is served at its
//! leader's commit index while no other leader can exist, and that
//! leader's commit index covers everything committed before (it holds
//! every committed entry and has committed an entry of its own term,
//! after them); a ReadIndex read at the commit index of a round sent after
//! it arrived; a follower read at an index its leader confirmed after the
//! read arrived. A read below that index may miss a write acknowledged
//! before it began, whether or not a client ever reads the key again, so
//! the check fails the run at the read itself, not later in the history
//! checker (which sees only what clients did, and only when the values
//! differ).
//!
//! A forced recovery gives up committed entries on purpose (the lost
//! nodes' writes): the view starts afresh there.
//!
//! The lease nemeses (`lease`) ask for reads of their own as they strike
//! (probe reads: answered to no client, judged the same way), so every
//! window they open is read through.

use bytes::Bytes;

use concord::state_machine::StateMachine;
use concord::{Index, Input, ReadPath};

use super::host::PendingRead;
use super::{FailureKind, Simulation};
use crate::workload::Workload;

/// The highest commit index any node has reached.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Freshness {
    committed_max: Index,
}

impl Freshness {
    /// A node's commit index is `commit` after a step.
    #[inline]
    pub(super) fn note_commit(&mut self, commit: Index) {
        self.committed_max = self.committed_max.max(commit);
    }

    /// What a read arriving now must reflect.
    pub(super) fn committed(&self) -> Index {
        self.committed_max
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// A forced recovery gave committed entries up: the global view, and
    /// what every read waiting at a node must reflect, start afresh.
    pub(super) fn forget_commits_for_reads(&mut self) {
        self.fresh = Freshness::default();
        for host in &mut self.hosts {
            for read in host.reads.values_mut() {
                read.committed_when_asked = 0;
            }
        }
    }

    /// `read-fresh` for read `id` released by node `index` at `read_index`
    /// on `path`: false (and the run failed) if it is stale.
    pub(super) fn check_read_fresh(
        &mut self,
        index: usize,
        id: u64,
        read_index: Index,
        path: ReadPath,
        read: &PendingRead,
    ) -> bool {
        if !self.config.read_fresh || read_index >= read.committed_when_asked {
            return true;
        }
        let message = format!(
            "released read {id} ({path:?}{}) at index {read_index}, but index {} was already committed when it arrived: the read misses what the cluster had committed",
            if read.probe { ", a lease nemesis's read" } else { "" },
            read.committed_when_asked
        );
        self.fail(FailureKind::ReadFresh, Some(index), message);
        false
    }

    /// A read of the lease nemeses at node `index` on `path`: `command`
    /// (a workload read) is served and judged like a client's, answered
    /// to no one.
    pub(super) fn probe_read(&mut self, index: usize, path: ReadPath, command: Bytes) {
        let host = &self.hosts[index];
        if host.paused || host.node.is_none() {
            return;
        }
        let committed_when_asked = self.fresh.committed();
        let host = &mut self.hosts[index];
        host.next_read_id += 1;
        let id = host.next_read_id;
        host.reads.insert(
            id,
            PendingRead {
                client: 0,
                attempt: 0,
                command,
                committed_when_asked,
                probe: true,
            },
        );
        self.step(index, Input::Read { id, path }, None);
    }
}
