//! The harness the madsim suites share (`tests/`: the single-group
//! cluster, membership, stalled links, and the multi-group host): the
//! nodes' and clients' virtual addresses, the rounds of faults, one at a
//! time, each healed before the next, the wait for the clients, and the
//! checks of the history at the end. Only built with
//! `RUSTFLAGS="--cfg madsim"`; without it the crate is empty.
#![deny(missing_docs)]

#[cfg(madsim)]
mod harness;

#[cfg(madsim)]
pub use harness::*;
