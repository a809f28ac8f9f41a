//! The durable state a host reads back from disk when a node restarts.

use crate::membership::Membership;
use crate::types::{Entry, HardState, Index, LogPosition};

/// Everything the host found on disk for this node. A brand-new node uses
/// `Recovered::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last durable term and vote, and the recovery from lost storage
    /// under way, if any. A host that finds its storage damaged (synced
    /// data gone: a checksum that fails before the end, a durable marker
    /// past what is left) may still start the node on what is left, if it
    /// first stores [`StorageRecovery::AwaitingReports`] here durably: the
    /// node then recovers as if its storage were empty (see
    /// [`StorageRecovery`]).
    ///
    /// [`StorageRecovery`]: crate::StorageRecovery
    /// [`StorageRecovery::AwaitingReports`]: crate::StorageRecovery::AwaitingReports
    pub hard_state: HardState,
    /// The last entry covered by the state machine's snapshot (ZERO when
    /// there is none). The log continues after it.
    pub base: LogPosition,
    /// Durable log entries, contiguous from `base.index + 1`.
    pub entries: Vec<Entry>,
    /// Index up to which the host's recovered state machine has applied.
    /// Entries up to here are not handed out again in `Apply`. At least
    /// `base.index`, at most the last entry's index.
    pub applied_index: Index,
    /// The cluster configuration in force at `base`, stored with the
    /// snapshot (see [`Snapshot::membership`](crate::Snapshot::membership)).
    /// `None` when there is no snapshot or it was stored without one: the
    /// node then starts from `Config::voters` and `Config::learners`, which
    /// is right only if no configuration entry was compacted away.
    /// Configuration entries in `entries` take effect over it, in order.
    pub membership: Option<Membership>,
}
