//! # concord
//!
//! A Raft replica as a pure, deterministic state machine: message in,
//! actions out. [`Node`] does no I/O, reads no clock, starts no threads and
//! draws randomness only from a PRNG seeded in its [`Config`]. The host
//! (the `concord-sim` simulator, the tokio runtime, or your own) owns time,
//! the network and the disk, and drives the node through one method,
//! [`Node::step`].
//!
//! ## The host loop
//!
//! ```
//! use bytes::Bytes;
//! use concord::{Action, Config, EntryPayload, Input, Node, Recovered, Role, Snapshot};
//!
//! // A one-node cluster that snapshots every 2 applied entries.
//! let mut config = Config::new(1, [1]);
//! config.compaction_threshold_entries = Some(2);
//! config.compaction_trailing_entries = 0;
//! let mut node = Node::new(config, Recovered::default())?;
//! let mut actions = Vec::new();
//! let mut applied = Vec::new();
//! let mut stored_snapshot: Option<Snapshot> = None;
//! let mut durable_up_to = None;
//! for tick in 0..100u64 {
//!     node.step(Input::Tick, &mut actions);
//!     if node.role() == Role::Leader && tick % 10 == 0 && applied.len() < 5 {
//!         node.step(Input::Propose(Bytes::from(format!("x = {tick}"))), &mut actions);
//!     }
//!     // Execute the actions in order. Writes may be done asynchronously
//!     // and many fsyncs batched into one; sends are best effort.
//!     while !actions.is_empty() {
//!         for action in std::mem::take(&mut actions) {
//!             match action {
//!                 Action::Send { to, message } => { /* network.send(to, message) */ let _ = (to, message); }
//!                 Action::Persist { id, .. } => {
//!                     // disk.truncate_and_append(..); disk.store_hard_state(..); disk.sync();
//!                     durable_up_to = Some(id);
//!                 }
//!                 Action::Apply { entries } => {
//!                     for entry in entries {
//!                         // A real host calls `state_machine::apply_entry`:
//!                         // commands, and forced recoveries, reach the state
//!                         // machine.
//!                         if let EntryPayload::Command(command) = &entry.payload {
//!                             applied.push(command.clone()); // state_machine.apply(command)
//!                         }
//!                         node.step(Input::Applied(entry.index), &mut actions);
//!                     }
//!                 }
//!                 Action::TakeSnapshot => {
//!                     // Serialize the state at the last applied entry and
//!                     // store it durably; only then report it.
//!                     let index = node.applied_index();
//!                     let term = node.term_at(index).expect("applied entries are in the log");
//!                     let bytes = Bytes::from(applied.concat());
//!                     let snapshot = Snapshot::new(concord::LogPosition::new(index, term), bytes);
//!                     node.step(Input::Snapshotted(snapshot.meta()), &mut actions);
//!                     stored_snapshot = Some(snapshot); // keep it readable for followers
//!                 }
//!                 Action::SendSnapshotChunk(chunk) => {
//!                     // Read the chunk from the stored snapshot and send it.
//!                     // (From a file: read `chunk.length_bytes` at
//!                     // `chunk.offset`, then `chunk.into_message(bytes)`.)
//!                     let to = chunk.to;
//!                     let message = chunk.cut_from(&stored_snapshot.as_ref().expect("reported").data);
//!                     let _ = (to, message); // network.send(to, message)
//!                 }
//!                 // A follower receiving a snapshot: append each chunk to a
//!                 // file, make it durable on PersistSnapshot (then report
//!                 // Persisted like any write), load it on RestoreSnapshot
//!                 // (then report Applied at its index).
//!                 _ => {} // proposal outcomes, role changes
//!             }
//!         }
//!         // Only now, after the sync, tell the node its writes are durable.
//!         if let Some(id) = durable_up_to.take() {
//!             node.step(Input::Persisted(id), &mut actions);
//!         }
//!     }
//! }
//! assert_eq!(applied.len(), 5);
//! // The log was compacted: entries under the latest snapshot are gone.
//! assert!(node.latest_snapshot_index() >= 4);
//! assert!(node.first_index() > 1);
//! # Ok::<(), concord::ConfigError>(())
//! ```
//!
//! ## The durability contract
//!
//! Every promise a replica makes rests on state it must not lose: a vote
//! grant on its stored term and vote, an append acknowledgement on its
//! stored log, and a leader counts its own log toward a commit only once
//! that log is stored. concord enforces this itself. Each
//! [`Action::Persist`] carries a [`WriteId`]; a message that promises
//! durable state is emitted only after the host has reported that write
//! with [`Input::Persisted`]. The host therefore never has to reason about
//! which send must wait for which write: it may run writes on another
//! thread and group many into one fsync, as long as it executes `Persist`
//! actions in order and reports an id only once it and every earlier write
//! are durable.
//!
//! ## Snapshots and compaction
//!
//! With a compaction policy in [`Config`] (or on
//! [`Input::RequestSnapshot`]) the node asks for a snapshot with
//! [`Action::TakeSnapshot`]. The host serializes its state machine, stores
//! it durably and reports it with [`Input::Snapshotted`]`(`[`SnapshotMeta`]`)`
//! (position, size, [`checksum64`]); only then does the node release the
//! log entries it covers (keeping `compaction_trailing_entries`). The node
//! never holds snapshot bytes: to a follower behind its log it sends the
//! snapshot in chunks the host reads for it
//! ([`Action::SendSnapshotChunk`]); a follower hands each chunk to its host
//! ([`Action::WriteSnapshotChunk`]), checks the checksum as they arrive,
//! then has the host make the snapshot durable with
//! [`Action::PersistSnapshot`] under the same [`WriteId`] contract and
//! restore its state machine with [`Action::RestoreSnapshot`]. After a
//! restart the host recovers with [`Recovered::base`] at its stored
//! snapshot and reports it with [`Input::Snapshotted`]. A host that never
//! snapshots just leaves the policy off (the default).
//!
//! ## Membership changes
//!
//! Propose a change at the leader with
//! [`Input::ChangeMembership`]`(`[`MembershipChange`]`)`: add a voter, a
//! learner or a witness, promote a caught-up learner, demote a voter to a
//! learner, remove a member. A change of the voters passes through a joint
//! configuration C_old,new (decisions need a majority of both), which the
//! leader leaves on its own once it commits, unless
//! [`Config::auto_leave_joint`] is off: the host then proposes
//! [`MembershipChange::LeaveJoint`] itself. One change is in flight at a
//! time; a refused change says why in a [`MembershipError`].
//!
//! ## Forced recovery (unsafe)
//!
//! When a majority of the voters is lost for good, no quorum can commit a
//! membership change. [`plan_forced_recovery`] rewrites one survivor's
//! durable state to make it the only voter (see [`recovery`]): a raised
//! term and a configuration entry carrying an audit record
//! ([`ForcedRecovery`], shown by [`Node::last_forced_recovery`]). It
//! **loses** every acknowledged write the survivor never received, and it
//! is the only path that bypasses the membership-change rules. The tokio
//! runtime's offline command is `concord-cli force-recover`.
//!
//! ## Witnesses
//!
//! A witness is a voter that stores the log and votes on it — in elections
//! and toward commitment, like any voter — but holds no state machine: it
//! never applies an entry, never takes or restores a snapshot of the state
//! machine, never serves a read and never leads (it does not campaign, not
//! even a pre-vote, and a leadership transfer to it is refused with
//! [`TransferError::Witness`]). It lets a deployment over two data centers
//! keep a quorum when either fails, with a cheap third site: a full voter
//! in each data center and a witness in the third form a three-voter
//! cluster that survives the loss of any one site.
//!
//! Which voters are witnesses is part of the configuration
//! ([`Membership::witnesses`]); add one with [`MembershipChange::AddWitness`]
//! (through a joint configuration) or list it in [`Config::witnesses`] from
//! the start. A witness's own server is built with its id in
//! `Config::witnesses`, which makes that node a witness whatever
//! configuration it later sees ([`Node::is_witness_node`]).
//!
//! **What a witness adds: availability, with Raft's safety unchanged.**
//! Its vote completes a quorum, so the cluster elects leaders and commits
//! while a minority of the voters (witnesses counted) is down. Every
//! committed entry is on a majority, and each member of that majority —
//! witnesses included — refuses to elect a candidate whose log lacks it;
//! a witness keeps its last entry's position durable for exactly that.
//!
//! **What a witness does not add: durability of the data.** A witness's
//! copy of a committed entry can never be handed on: it never leads, and
//! it compacts what it knows committed. (What it does hand on is its log
//! past that, to a candidate it refuses for being behind
//! ([`MessageBody::CandidateCatchUp`]): otherwise a cluster whose newest
//! entries live only on witnesses and learners could elect nobody.) An
//! entry committed by a leader with
//! witnesses' acknowledgements only is held by exactly one full voter,
//! the leader. If that voter's disk is then lost for good, no full voter
//! holds the entry, the witnesses refuse to elect any full voter that
//! lacks it, and the cluster stays safe but cannot elect a leader until
//! that disk is restored. So a witness buys the availability of a third
//! replica but the durability of two: the data is only as durable as the
//! full voters' disks. Validation keeps the full voters a majority of
//! every voter set (each half of a joint configuration,
//! [`MembershipError::NoFullVoterQuorum`]): every quorum then holds a full
//! voter, and the cluster stays live with every witness down.
//!
//! **How a witness's log stays bounded.** A witness counts its entries as
//! applied once they are committed and durable, and compacts them with the
//! ordinary policy ([`Config::compaction_threshold_entries`],
//! [`Config::compaction_threshold_bytes`]): on [`Action::TakeSnapshot`]
//! its host stores a snapshot without state-machine data at
//! [`Node::applied_index`] (no bytes, or only the host's own records — the
//! tokio runtime keeps its address book there — with
//! [`Node::membership_at`] as usual), and restores no state machine from
//! it on restart.
//! Dropping committed entries is safe for a witness because of its log it
//! needs only the position of its last entry (for the election
//! restriction), the term at the index an append continues from (the base
//! or a later entry, as for any compacted log) and the configuration in
//! force — never a committed payload, which it neither applies nor sends.
//! A leader sends a witness that is behind its log's base a snapshot of no
//! bytes (position and configuration only), which the witness stores
//! without restoring anything.
//!
//! **Wire and disk formats.** A configuration without witnesses encodes
//! exactly as before witnesses existed, so stored logs, snapshots and
//! messages read back unchanged; witnesses follow a reserved id 0 in the
//! learners sequence ([`Membership::witnesses`]). An older build would
//! read that 0 as a learner, which its validation of snapshots and
//! recovered configurations refuses; do not mix in builds without witness
//! support once a configuration names a witness.
//!
//! ## What is in the box
//!
//! * Elections with randomised timeouts, PreVote (thesis §9.6) and
//!   CheckQuorum; priority election through leadership transfer.
//! * Replication with batching (entries and bytes per message), pipelining
//!   (optimistic next index while replicating, probing after a rejection),
//!   bounded in-flight messages per follower, and fast backtracking by
//!   term.
//! * Commitment by counting only entries of the current term (Figure 8),
//!   with a no-op entry appended on election.
//! * Membership changes ([`Membership`], [`Input::ChangeMembership`]):
//!   configurations in the log, in force when appended, joint consensus
//!   with automatic (or explicit) leave, learners, demotion, witnesses,
//!   one change at a time; the
//!   configuration at a snapshot's last entry travels with the snapshot.
//! * Log compaction by snapshots, and chunked, flow-controlled, resumable,
//!   checksummed ([`checksum64`]) snapshot transfer to far-behind
//!   followers.
//! * Invariants asserted in the code (terms and commit indices never go
//!   back, committed entries are never truncated, one leader per term), and
//!   every malformed, stale or hostile message ignored and counted in
//!   [`Statistics`] — never a panic.
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
#[cfg(feature = "planted-bugs")]
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
