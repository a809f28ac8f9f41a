//! concord-tokio, the tokio runtime of concord, as quinn is to quinn-proto:
//! the sans-IO core is the `concord` crate, with no tokio in its tree; this
//! crate is a real server that hosts one [`Node`](concord::Node) and any
//! [`StateMachine`](concord::state_machine::StateMachine) over TCP with its
//! state in a write-ahead log, and a client. The services that run on it
//! (the key-value store, ...) are the `concord-services` crate; the
//! binaries `concord-node` and `concord-cli` the `concord-node` crate.
//!
//! | module | what |
//! | --- | --- |
//! | [`addresses`] | the replicated address book: where every member listens, through the log and snapshots |
//! | [`codec`] | serde + bincode encoding, size-limited decoding of untrusted bytes (re-exported [`concord::codec`]) |
//! | [`frame`] | length-prefixed, versioned, CRC32C-checked frames on a stream |
//! | [`wire`] | handshake, client requests and responses |
//! | [`sniff`] | the first bytes of a connection: naming a TLS/plaintext mismatch |
//! | [`transport`] | the [`Transport`](transport::Transport) trait; TCP and in-memory implementations |
//! | [`listener`] | the accepting side: handshake checks, peer and client connections |
//! | [`identity`] | whose a data directory is (cluster, node, incarnation, format) and its lock |
//! | [`storage`] | the [`Storage`](storage::Storage) trait; in-memory implementation |
//! | [`wal`] | the on-disk write-ahead log with group commit ([`FileStorage`](wal::FileStorage)) |
//! | [`snapshot_file`] | snapshot files: atomic writes, verified loads |
//! | [`server`] | the server loop |
//! | [`client`] | [`Client`](client::Client): leader discovery, redirects, retries, exactly-once writes |
//! | [`null`] | a state machine that does nothing (benchmarks of replication alone) |
//! | [`tls`] | mutual TLS (rustls, TLS 1.3): certificates naming node ids, loading from PEM files |
//! | [`status`] | status/metrics snapshot |
//! | [`metrics`] | Prometheus metrics: names, recording hooks, the `/metrics` endpoint (feature `metrics`) |
//! | [`request_trace`] | following one request through every node's logs (`debug` events with `client`, `seq`, `index`) |
//! | [`recovery`] | offline forced recovery of a stopped server's data directory (unsafe; `concord-cli force-recover`) |
//! | [`cluster`] | wiring helpers: a TCP node from a few settings |
//! | [`fault`] | connection-level fault injection for tests: links that go silent |
//! | [`multi`] | many groups per server: one shared write-ahead log, one connection per peer, one timer |
//!
//! The same source builds against madsim (`RUSTFLAGS="--cfg madsim"`): the
//! `tokio` dependency is `madsim-tokio`, which re-exports the simulator's
//! runtime there. Under madsim use [`MemStorage`](storage::MemStorage): the
//! file WAL needs OS threads and files.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addresses;
pub mod client;
pub mod cluster;
pub use concord::codec;
pub mod fault;
pub mod frame;
pub mod identity;
pub mod listener;
pub mod loop_handle;
pub mod metrics;
pub mod multi;
pub mod null;
pub mod recovery;
pub mod request_trace;
pub mod server;
pub mod snapshot_file;
pub mod sniff;
pub mod status;
pub mod storage;
pub mod tls;
pub mod transport;
pub mod wal;
pub mod wire;
