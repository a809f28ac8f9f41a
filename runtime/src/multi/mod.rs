//! Many Raft groups per server: the tokio host of
//! [`MultiNode`](concord::multi::MultiNode).
//!
//! | module | what |
//! | --- | --- |
//! | [`shared_log`] | one write-ahead log for every group of the node: records tagged by group, one sync per round, per-group compaction |
//! | [`record`] | the shared log's segment header and records |
//! | [`segment_files`] | the segment files behind a trait ([`DirSegments`](segment_files::DirSegments): real files) |
//! | [`snapshot_store`] | the groups' snapshot files behind a trait ([`DirSnapshots`](snapshot_store::DirSnapshots): one directory per group) |
//! | [`page_cache`] | a model of a disk behind a page cache, cut at any write, for crash tests |
//! | [`data_dir`] | a node's data directory: locked, identity checked, recovered in one call |
//! | [`log_sink`] | how the server loop writes: [`WalThread`](log_sink::WalThread) (group commit on a thread) or [`InlineLog`](log_sink::InlineLog) |
//! | [`host`] | the server loop: a `MultiNode`, a state machine per group, one log, one timer |
//! | [`groups_status`] | a server's status at any number of groups: a bounded summary, or one group |
//! | [`wire`] | peer frames and client requests naming their group |
//! | [`admin`] | membership requests of a group, and of a whole server (replace, drain) |
//! | [`tcp_sender`] | one connection per peer carrying every group's frames (TLS optional) |
//! | [`tcp_listener`] | the accepting side: peers' frames and clients' requests naming their group |
//! | [`mem_network`] | an in-process network of servers |
//! | [`routing_client`] | a client that sends each request to its group's leader: leader cache, redirects, bounded retries |
//! | [`session_client`] | writes applied exactly once: a session per group, a write whose answer was lost sent again |
//! | [`one_group_client`] | the client of a one-group cluster on this wire: given addresses, writes once, reads, a server's status |
//! | [`recovery`] | offline forced recovery of one group of a stopped server's data directory (unsafe; `concord-cli force-recover`) |
//! | [`upgrade`] | a single-group server's data directory turned into the shared log's, in place, crash-safe |
//! | `replay`, `pins` | recovery of every group; which segments each group still needs |
//!
//! ## Layout of a data directory
//!
//! ```text
//! <dir>/log/<number:020>.seg                           segments of the shared log
//! <dir>/groups/<group:020>/snapshot-<index>-<term>.snap  each group's newest snapshot
//! ```

pub mod admin;
pub mod data_dir;
pub mod groups_status;
pub mod host;
pub mod log_sink;
pub mod mem_network;
pub mod one_group_client;
pub mod page_cache;
mod pins;
pub mod record;
pub mod recovery;
mod replay;
pub mod routing_client;
pub mod segment_files;
pub mod session_client;
pub mod shared_connections;
pub mod shared_log;
pub mod snapshot_store;
pub mod tcp_listener;
pub mod tcp_sender;
pub mod upgrade;
pub mod wire;

pub use replay::{witness_role_conflict, MultiRecovery, RecoveredGroup};
