//! # concord-services
//!
//! Services built on concord, each a deterministic state machine with
//! snapshot/restore, a request codec, a typed client and a command-line
//! client, sharing one small framework:
//!
//! | module | what |
//! | --- | --- |
//! | [`chat`] | chat: accounts (glob listing), messages queued until fetched, each delivered once |
//! | `chat_client` (feature `runtime`) | the typed chat client |
//! | [`codec`] | the byte layout of every request and response, bounded decoding |
//! | [`kv`] | strict key-value store: `get`, `get_many`, `put`, atomic `put_many` |
//! | `runtime` (feature `runtime`) | server startup from flags, a client with leader discovery, retries and exactly-once sessions |
//! | `kv_client` (feature `runtime`) | the typed key-value client |
//! | [`directory`] | directory: user → ip:port (batched lookup), connect, disconnect, a cluster-wide sequence |
//! | `directory_client` (feature `runtime`) | the typed directory client |
//! | [`orders`] | orders: per-customer order numbers, gap-free; last order readable at any server |
//! | `orders_client` (feature `runtime`) | the typed orders client |
//! | `latency` (feature `runtime`) | the orders experiment's statistics, table and plot |
//!
//! The simulator (`concord-sim run --service kv|directory|orders|chat`) depends on this crate
//! without the `runtime` feature and runs the same state machines under
//! its faults; the binary `concord-services` runs them for real.
#![deny(missing_docs)]

pub mod chat;
#[cfg(feature = "runtime")]
pub mod chat_client;
pub mod codec;
pub mod directory;
#[cfg(feature = "runtime")]
pub mod directory_client;
pub mod kv;
#[cfg(feature = "runtime")]
pub mod kv_client;
#[cfg(feature = "runtime")]
pub mod latency;
pub mod orders;
#[cfg(feature = "runtime")]
pub mod orders_client;
#[cfg(feature = "runtime")]
pub mod runtime;
