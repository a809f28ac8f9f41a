//! concord-sim: placeholder, being written.
#![deny(missing_docs)]
pub mod histgen;
pub mod history;
pub mod linearizability;
