//! The durable state a host reads back from disk when a node restarts.

use crate::types::{Entry, HardState, Index, LogPosition};

/// Everything the host found on disk for this node. A brand-new node uses
/// `Recovered::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last durable term and vote.
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
}
