//! # concord
//!
//! A deterministic, sans-IO Raft replica. Skeleton: the API is fixed, the
//! rules are being written.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod durability;
mod election;
mod io;
mod log;
mod message;
mod node;
mod progress;
pub mod quorum;
mod recovered;
mod replication;
pub mod session;
pub mod state_machine;
mod stats;
mod transfer;
mod types;

pub use config::{Config, ConfigError};
pub use io::{Action, Input, ProposeError};
pub use message::{AppendResponse, Message, MessageBody};
pub use node::{Node, Role};
pub use progress::{ProgressState, ProgressView};
pub use recovered::Recovered;
pub use stats::Statistics;
pub use types::{Entry, EntryPayload, HardState, Index, LogPosition, NodeId, Term, WriteId, ENTRY_OVERHEAD_BYTES};
