//! concord-sim: placeholder, being written.
#![deny(missing_docs)]
