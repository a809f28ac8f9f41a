//! # concord
//!
//! A Raft replica as a pure, deterministic state machine: message in,
//! actions out. [`Node`] does no I/O, reads no clock, starts no threads and
//! draws randomness only from a PRNG seeded in its [`Config`]. The host
//! (the `concord-sim` simulator, the `concord-tokio` runtime, or your own)
//! owns time, the network and the disk, and drives the node through one
//! method, [`Node::step`].
//!
//! ## The contract in brief
//!
//! * The host feeds [`Input`]s to [`Node::step`] and executes the
//!   [`Action`]s it gets back in order: sends (best effort), writes
//!   ([`Action::Persist`]), entries to apply, snapshots to take or restore.
//! * **Durability is the core's job.** A message that promises durable
//!   state (a vote, an append acknowledgement) is emitted only after the
//!   host reported the write it rests on with [`Input::Persisted`]. The
//!   host executes `Persist` actions in order and reports an id once it and
//!   every earlier write are durable; it may batch many into one fsync.
//! * **Snapshots.** The node asks ([`Action::TakeSnapshot`]); the host
//!   stores the state and reports it ([`Input::Snapshotted`]); only then
//!   are log entries released. The node never holds snapshot bytes.
//! * **Membership** changes one at a time, through joint consensus
//!   ([`Input::ChangeMembership`]); witnesses vote but hold no state
//!   machine ([`Membership::witnesses`]). Losing a majority for good needs
//!   the unsafe [`plan_forced_recovery`], which loses writes.
//! * **Hostile input** (malformed, stale or forged messages) is ignored and
//!   counted in [`Statistics`], never a panic.
//!
//! ## Where to start
//!
//! * [`Node`]: its documentation has a complete, tested host loop.
//! * [`Config`]: timeouts, batching, flow control, compaction, PreVote,
//!   CheckQuorum, leases, witnesses.
//! * [`state_machine`] and [`session`]: applying entries, and exactly-once
//!   client commands.
//! * [`durable`]: a state machine that keeps its state on its own storage.
//! * [`multi`]: many Raft groups per node.
//! * [`recovery`]: forced recovery of a lone survivor.
//!
//! ## Design notes
//!
//! The repository's `docs/design.md` explains the core in depth: the
//! durability contract, snapshots and compaction, membership changes,
//! forced recovery, witnesses (what they buy and cost, how their logs stay
//! bounded, their formats) and what the core implements. The other guides
//! in `docs/` cover the runtime and operations, reads, snapshots on disk,
//! many groups per node, the simulator and the checker.
#![deny(missing_docs)]
// `unsafe` only in `entries` (segments written while shared; its
// comments argue the soundness, and Miri checks its tests).
#![deny(unsafe_code)]

// Mutation testing (`scripts/mutants.sh`) judges each mutant of
// the core by the simulator's *outside* checks alone, so the feature
// `mutation-judge` switches off every internal assertion of this crate.
// These definitions shadow the standard macros by textual scope: a
// `macro_rules!` in the crate root, above the `mod` items, takes
// precedence over the prelude's macro of the same name in every module
// declared below it. That is one switch in one place, no call site
// changes, and no assertion can be missed (a crate-local `invariant!`
// would need each of the core's sixty-odd call sites rewritten, and
// every new one written so).
// The condition stays type-checked inside `if false`, so the feature
// cannot rot, but it is never evaluated (assertions have no side
// effects). `expect`, indexing and arithmetic still panic as they would:
// those are failures of the code itself, not checks of it. Never enable
// this feature outside that measurement.
#[cfg(feature = "mutation-judge")]
macro_rules! assert {
    ($condition:expr $(, $($message:tt)*)?) => {
        if false {
            let _ = $condition;
        }
    };
}
#[cfg(feature = "mutation-judge")]
macro_rules! assert_eq {
    ($left:expr, $right:expr $(, $($message:tt)*)?) => {
        if false {
            let _ = $left == $right;
        }
    };
}
#[cfg(feature = "mutation-judge")]
macro_rules! assert_ne {
    ($left:expr, $right:expr $(, $($message:tt)*)?) => {
        if false {
            let _ = $left != $right;
        }
    };
}
#[cfg(feature = "mutation-judge")]
macro_rules! debug_assert {
    ($($arguments:tt)*) => {
        assert!($($arguments)*)
    };
}
#[cfg(feature = "mutation-judge")]
macro_rules! debug_assert_eq {
    ($($arguments:tt)*) => {
        assert_eq!($($arguments)*)
    };
}
#[cfg(feature = "mutation-judge")]
macro_rules! debug_assert_ne {
    ($($arguments:tt)*) => {
        assert_ne!($($arguments)*)
    };
}

#[cfg(feature = "codec")]
pub mod codec;
mod config;
mod crc64;
mod durability;
pub mod durable;
mod election;
mod entries;
mod io;
mod log;
mod membership;
mod message;
pub mod multi;
mod node;
mod planted;
mod progress;
pub mod quorum;
mod read_index;
mod recovered;
pub mod recovery;
mod replication;
pub mod session;
mod snapshot;
mod state_hash;
pub mod state_machine;
mod stats;
mod storage_loss;
mod transfer;
mod types;

pub use config::{Config, ConfigError};
pub use entries::Entries;
pub use io::{Action, Input, ProposeError};
pub use membership::{Membership, MembershipChange, MembershipError};
pub use message::{AppendResponse, Message, MessageBody, RecoveryReport, SnapshotChunk};
pub use node::{Node, Role};
#[doc(hidden)]
pub use planted::PlantedBugs;
pub use progress::{ProgressState, ProgressView};
pub use read_index::{ReadError, ReadPath};
pub use recovered::Recovered;
pub use recovery::{
    last_forced_recovery, plan_forced_recovery, ForcedRecovery, ForcedRecoveryPlan,
    ForcedRecoveryRequest, RecoveryError,
};
pub use snapshot::{checksum64, Checksum64, Snapshot, SnapshotChunkToSend, SnapshotMeta};
pub use stats::Statistics;
pub use storage_loss::{Divergence, StorageRecoveryEvent};
pub use transfer::{TransferError, TransferOutcome};
pub use types::{
    Entry, EntryPayload, HardState, Index, LogPosition, NodeId, StorageRecovery, Term, WriteId,
    ENTRY_OVERHEAD_BYTES,
};
