//! concord-tokio, the tokio runtime of concord, as quinn is to quinn-proto:
//! the sans-IO core is the `concord` crate, with no tokio in its tree; this
//! crate is the one runtime that hosts it for real: a server loop hosting
//! any number of Raft groups ([`multi::host`]; a cluster of one group is
//! group 1 beside the catalog, [`cluster::start_node`]), each running any
//! [`StateMachine`](concord::state_machine::StateMachine), over TCP, with
//! one shared write-ahead log, and its clients. The services that run on
//! it (the key-value store, ...) are the `concord-services` crate; the
//! binaries `concord-node` and `concord-cli` the `concord-node` crate.
//!
//! | module | what |
//! | --- | --- |
//! | [`cluster`] | a node of a one-group cluster from a few settings: [`start_node`](cluster::start_node), in process or over TCP |
//! | [`multi`] | the server loop, the shared log, the wire and the clients: many groups per server, one connection per peer, one timer |
//! | [`addresses`] | an address book shared by the listener and the peer links |
//! | [`codec`] | serde + bincode encoding, size-limited decoding of untrusted bytes (re-exported [`concord::codec`]) |
//! | [`frame`] | length-prefixed, versioned, CRC32C-checked frames on a stream |
//! | [`wire`] | the handshake, and the answers every client reads |
//! | [`sniff`] | the first bytes of a connection: naming a TLS/plaintext mismatch |
//! | [`transport`] | peer links: dialling, handshake, backoff, keepalives |
//! | [`listener`] | the accepting side: handshake checks, peer and client connections |
//! | [`identity`] | whose a data directory is (cluster, node, incarnation, format) and its lock |
//! | [`storage`] | storage errors; snapshot bytes read and received in chunks |
//! | [`wal`] | the record framing the shared log uses, and the reader of a single-group server's log ([`multi::upgrade`]) |
//! | [`snapshot_file`] | snapshot files: atomic writes, verified loads |
//! | [`client`] | what every client is configured with and how its calls fail |
//! | [`null`] | a state machine that does nothing (benchmarks of replication alone) |
//! | [`tls`] | mutual TLS (rustls, TLS 1.3): certificates naming node ids, loading from PEM files |
//! | [`status`] | a group's status as `concord-cli status` shows it |
//! | [`metrics`] | Prometheus metrics: names, recording hooks, the `/metrics` endpoint (feature `metrics`) |
//! | [`request_trace`] | following one request through every node's logs (`debug` events with `client`, `seq`, `index`) |
//! | [`fault`] | connection-level fault injection for tests: links that go silent, connections reset |
//! | [`loop_handle`] | the handle of a running server loop |
//!
//! The same source builds against madsim (`RUSTFLAGS="--cfg madsim"`): the
//! `tokio` dependency is `madsim-tokio`, which re-exports the simulator's
//! runtime there. Under madsim store on
//! [`NodeStorage::memory`](cluster::NodeStorage::memory): a data directory
//! needs OS threads and files.

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
pub mod request_trace;
pub mod snapshot_file;
pub mod sniff;
pub mod status;
pub mod storage;
pub mod tls;
pub mod transport;
pub mod wal;
pub mod wire;
