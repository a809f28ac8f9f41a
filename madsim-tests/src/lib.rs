//! The one runtime's own code under madsim: the harness the madsim
//! suites share (`tests/`). Every suite runs the one runtime, the
//! multi-group host's loop: three of them (`madsim_cluster`,
//! `madsim_membership`, `madsim_stalled_links`) start their nodes with
//! `concord_tokio::cluster::start_node` (`serve_kv`: the key-value
//! store as group 1 beside the catalog, as `concord-node` without
//! `--groups` serves it; `madsim_user_machine` serves a state machine of
//! its own, `serve_machine`), `madsim_multi_group` runs the host of 64
//! groups directly. Each node's shared log is written inline on the page-cache
//! disk model (`NodeDisk`), which a kill cuts at its last sync: a
//! restart finds what was synced, perhaps a torn tail of what was not,
//! and starts with a larger incarnation. Peers talk over one TCP
//! connection each way and clients use the one-group or routing clients,
//! on madsim's simulated TCP. The faults (`run_faults`): nodes killed
//! and restarted, cut off, a link cut one way, a slow and a lossy
//! network, one at a time, each healed before the next; the stalled-links
//! suite also silences open connections, and the multi-group scenario
//! resets them (`concord_tokio::fault`).
//!
//! The harness gives the nodes' and clients' virtual addresses, the
//! rounds of faults, the wait for the clients, and the checks of the
//! history at the end. Only built with `RUSTFLAGS="--cfg madsim"`;
//! without it the crate is empty.
#![deny(missing_docs)]

#[cfg(madsim)]
mod harness;

#[cfg(madsim)]
pub use harness::*;

#[cfg(madsim)]
pub mod multi_scenario;
