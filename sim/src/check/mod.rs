//! The history checker ([`concord_check`], all re-exported here: models,
//! the search, the command line) and [`workload`], which runs a model's
//! workload in the simulator and checks its history.
//!
//! The checker is its own crate so that checking another system's history
//! does not build the simulator; this module keeps the paths
//! (`concord_sim::check::...`) that simulator users already have.

pub use concord_check::*;

pub mod workload;
