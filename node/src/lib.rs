//! The command lines of concord's binaries, `concord-node` (a server) and
//! `concord-cli` (a client), kept out of the `concord` library so that it
//! needs neither clap nor toml.
//!
//! [`server`] holds `concord-node`'s flags, its TOML config file and the
//! checked [`server::ServerSettings`] they merge into; [`service_file`]
//! which service a data directory holds; [`groups_file`] its group count;
//! [`multi_node`] a server of many groups (`--groups N`); [`multi_admin`] the
//! membership commands of such a cluster; [`client`] holds `concord-cli`'s
//! commands; [`parse`] the value rules both share; [`latency`] the
//! statistics of the orders latency experiment (a benchmark).
#![deny(missing_docs)]

pub mod client;
pub mod cluster_admin;
#[cfg(feature = "count-alloc")]
pub mod count_alloc;
#[cfg(feature = "disk")]
pub mod disk_groups;
pub mod group_roles;
pub mod groups_file;
pub mod groups_status_view;
pub mod latency;
pub mod multi_admin;
pub mod multi_node;
pub mod multi_service;
pub mod observability;
pub mod parse;
pub mod server;
pub mod service_file;
mod small_file;
pub mod status_watch;
