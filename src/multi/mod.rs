//! Many Raft groups per node: [`MultiNode`] hosts any number of groups,
//! each an unchanged [`Node`](crate::Node) with its own id, membership,
//! log, snapshots and (host-side) state machine, and drives them as one
//! sans-IO, deterministic state machine, as a lone node is driven:
//! inputs in, actions out, no I/O, no clock, no threads.
//!
//! What the layer adds on top of the groups:
//!
//! * **Batching across groups.** Every message any group sends to a peer
//!   in one flush travels in one [`Frame`] to that peer; every durable
//!   write any group asks for in one flush goes in one [`PersistBatch`],
//!   made durable with one sync and reported with one
//!   [`MultiInput::Persisted`], which the layer hands to exactly the groups
//!   whose writes the reported batches held (`persist.rs`).
//! * **Coalesced heartbeats.** Heartbeats and their answers travel in a
//!   compact, exact form inside the frame: one exchange per node pair per
//!   tick covers every group in which one leads and the other follows.
//!   ReadIndex and lease rounds run per group on top, unchanged
//!   (`frame.rs`).
//! * **Quiescence.** A group whose followers hold and have applied
//!   everything stops ticking and heartbeating; anything for it wakes it.
//!   Idle groups cost no message and no step per tick; a tick's work
//!   grows with the awake groups only (`quiescence.rs`, `wake.rs`).
//! * **Node-level liveness.** A frame to every peer at least every
//!   `liveness_interval_ticks`, even when every group sleeps; a peer not
//!   heard from is taken for dead, and the sleeping groups it led elect
//!   new leaders a bounded number at a time (`liveness.rs`, `wake.rs`).
//! * **Lifecycle.** Groups are created and removed while the node runs
//!   (`lifecycle.rs`), as a replicated [`Catalog`] decides (`catalog.rs`).
//! * **Replacing a server.** [`ReplacePlan`] decides, from each group's
//!   configuration alone, the next change that moves it from a dead
//!   server to a new one, a bounded number of groups at a time
//!   (`replace.rs`).
//!
//! ## The host loop
//!
//! ```
//! use bytes::Bytes;
//! use concord::multi::{MultiAction, MultiConfig, MultiInput, MultiNode};
//! use concord::{Action, Config, Input, Recovered, Role};
//!
//! // One node hosting two one-voter groups, 7 and 8.
//! let mut multi = MultiNode::new(MultiConfig::new(1, []))?;
//! for group in [7, 8] {
//!     multi.create_group(group, Config::new(1, [1]), Recovered::default())?;
//! }
//! let mut out = Vec::new();
//! let mut applied = Vec::new();
//! for tick in 0..40 {
//!     multi.step(MultiInput::Tick, &mut out)?;
//!     if tick == 5 {
//!         for group in [7, 8] {
//!             assert_eq!(multi.group(group).unwrap().role(), Role::Leader);
//!             let input = Input::Propose(Bytes::from("x = 1"));
//!             multi.step(MultiInput::Group { group, input }, &mut out)?;
//!         }
//!     }
//!     // Execute everything, feeding completions back, then flush: the
//!     // frames and the one persist batch of this round come out.
//!     loop {
//!         multi.flush(&mut out);
//!         if out.is_empty() {
//!             break;
//!         }
//!         for action in std::mem::take(&mut out) {
//!             match action {
//!                 MultiAction::Send(frame) => { /* network.send(frame.to, frame) */ let _ = frame; }
//!                 MultiAction::Persist(batch) => {
//!                     // Write every group's records, fsync once, then:
//!                     multi.step(MultiInput::Persisted(batch.id), &mut out)?;
//!                 }
//!                 MultiAction::Group { group, action: Action::Apply { entries } } => {
//!                     let last = entries.last().map(|entry| entry.index).unwrap_or(0);
//!                     applied.push((group, entries.len()));
//!                     multi.step(MultiInput::Group { group, input: Input::Applied(last) }, &mut out)?;
//!                 }
//!                 MultiAction::Group { .. } => {} // reads, snapshots, role changes
//!             }
//!         }
//!     }
//! }
//! // Each group applied its no-op and the command, then went to sleep.
//! assert_eq!(multi.awake_count(), 0);
//! assert!(applied.iter().any(|(group, _)| *group == 7));
//! # Ok::<(), concord::multi::MultiError>(())
//! ```
//!
//! `docs/multi-group.md` explains the design and gives its figures.

mod balance;
mod catalog;
mod config;
mod frame;
mod group_table;
mod leader_balance;
mod lifecycle;
mod liveness;
mod move_stall;
mod multi_node;
mod observer;
mod outbox;
mod persist;
mod planted;
mod quiescence;
mod replace;
pub mod sessions;
mod snapshot_pace;
mod stats;
mod wake;

pub use balance::{
    BalanceError, BalanceLimits, Balancer, MoveLimits, PlacementRule, ReplicaMove, ServerPlace,
    ServerState, BALANCE_REPLICAS_MAX, BALANCE_SERVERS_MAX,
};
#[doc(hidden)]
pub use catalog::admit_move_planted;
pub use catalog::{
    admit_move, is_server_address, is_zone_name, Catalog, CatalogChange, CatalogCommand,
    CatalogError, CATALOG_ADDR_BYTES_MAX, CATALOG_ASSIGN_GROUPS_MAX, CATALOG_GROUP,
    CATALOG_SERVERS_MAX, CATALOG_VOTERS_MAX, CATALOG_ZONE_BYTES_MAX,
};
pub use config::{MultiConfig, MultiConfigError};
pub use frame::{
    Frame, GroupHeartbeat, GroupHeartbeatAnswer, GroupId, GroupMessage, QuiesceAnswer,
    QuiesceRequest, FRAME_ITEM_OVERHEAD_BYTES,
};
pub use leader_balance::LeaderTransfer;
pub use move_stall::{CatchUpMark, MoveStall, MOVES_WATCHED_MAX};
pub use multi_node::{GroupSleep, MultiAction, MultiError, MultiInput, MultiNode};
pub use observer::GroupStepObserver;
pub use persist::{BatchId, GroupWrite, PersistBatch};
#[doc(hidden)]
pub use planted::MultiPlantedBugs;
pub use replace::{
    ReplaceError, ReplaceGroup, ReplacePlan, ReplaceProgress, ReplaceRound, ReplaceStep,
    WaitReason, REPLACE_GROUPS_IN_FLIGHT_MAX,
};
pub use snapshot_pace::TransferWaiting;
pub use stats::MultiStats;
