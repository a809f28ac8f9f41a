//! Many Raft groups per node under the simulator: every simulated node is
//! a [`concord::multi::MultiNode`] hosting the groups it is a voter of,
//! driven through the layer's public API as a real host drives it, under
//! the single-group simulator's fault model (`crate::faults`), with the
//! key-value store and its default workload (`crate::services::kv`) per group, and the
//! single-group checks per group plus the layer's own.
//!
//! ```text
//! cargo run --release -p concord-sim -- run --groups swarm --seeds 0..1000 --nodes 3
//! cargo run --release -p concord-sim -- run --groups 10000 --seeds 0..1 --nodes 3   # the scale run
//! cargo run --release -p concord-sim -- replay --groups swarm --seed 42 --nodes 3
//! cargo run --release -p concord-sim -- multi idle --groups 1000    # figures: idle cost
//! cargo run --release -p concord-sim -- multi storm --groups 10000  # figures: node-loss wake storm
//! ```
//!
//! ## A run
//!
//! * **Groups.** Each seed draws its number of groups (log-uniformly in
//!   1..=256 with `--groups swarm`), each group's voters (mostly three,
//!   sometimes one, two or every node), the layer's limits (liveness
//!   interval and timeout, quiescence after 1 to 8 idle ticks or never,
//!   and now and then tight wake, election, frame and batch limits), the
//!   Raft options (as the single-group simulator draws them), compaction
//!   (half the seeds snapshot every few entries), read paths, and which
//!   groups the clients work on (all, a quarter or a sixteenth of them,
//!   plus a share of operations to any group, which wakes sleeping ones).
//! * **Nodes.** One log per node for every group's writes: a persist batch
//!   is written, a sync covers every batch written when it starts, and
//!   `Persisted` names the last batch it covered; a crash loses every
//!   unsynced batch and may tear the records of the first. Each node's
//!   clock ticks at its own skewed rate; a paused node queues its input
//!   and is handed the ticks it missed first when it resumes. A restarted
//!   node recovers every group from its disk (log and snapshot).
//! * **Network.** One frame per peer per flush, lost, duplicated,
//!   reordered, delayed or held back as a whole; partitions cut frames.
//! * **Faults.** The plan is the single-group simulator's, drawn the same
//!   way; see `nemesis.rs` for what each fault means with many groups
//!   ("the leader" is the node leading the most groups).
//! * **Clients** run one operation at a time on one group and record it in
//!   that group's history; see `client.rs`.
//! * **Membership**: half the seeds change groups' members and replace
//!   a whole node under the faults; see `membership.rs`.
//! * **Forced recovery** (`--forced-recovery`): every node but one is
//!   lost for good and every group that lost its majority is forced onto
//!   the survivor; see `forced.rs`.
//! * **Checks**: see `checks.rs`.
//!
//! ## Scenarios
//!
//! `scenarios.rs` measures what idle groups cost, quiesced and not, and
//! the node-loss wake storm (`concord-sim multi idle|storm`).

mod checks;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod commit_told;
pub mod config;
mod engine;
pub mod forced;
mod host;
mod lease;
mod membership;
mod nemesis;
mod network;
mod rebalance;
pub mod report;
mod rules;
pub mod runner;
pub mod scenarios;

pub use config::{Drawn, GroupsChoice, LayerOptions, MultiBugs, MultiSimConfig, SWARM_GROUPS_MAX};
pub use engine::{MultiSim, IDLE_WINDOW_NS, QUIESCE_BOUND_NS};
pub use forced::{ForcedGroup, MultiForcedReport, MultiLostOperation};
pub use report::{LayerTotals, MembershipFigures, MultiCheck, MultiFailure, MultiReport};
pub use runner::{run_multi, run_multi_seeds, MultiSummary};
