//! Fuzz targets: one function per target, called both by the cargo-fuzz
//! targets in `fuzz/fuzz_targets/` and by the stable corpus replay test
//! (`sim/tests/fuzz_corpus.rs`), so an input that once crashed a target is
//! checked again by every `cargo test` run once it is in
//! `fuzz/corpus/<target>/`.
//!
//! This module is for fuzzing, not for users of the simulator. It lives
//! here (behind the default `fuzzing` feature) rather than in `fuzz/`
//! because `fuzz/` is outside the workspace and needs libFuzzer, while the
//! replay test must build with the stable workspace; and rather than in the
//! core because [`node_step`] reuses the simulator's own safety checker,
//! which is private to this crate.
//!
//! Every function takes arbitrary bytes. A panic (in the code under test or
//! in the target's own assertions) or a returned [`Violation`] is a finding;
//! `Ok(())` means the input was handled correctly, whether it was accepted
//! or refused.
//!
//! | target | what it feeds |
//! | --- | --- |
//! | [`frame`] | the transport frame reader, on whole streams and on arbitrary splits of them |
//! | [`codec`] | every handshake, peer frame, client request/answer, disk record and catalog command the one runtime decodes |
//! | [`wal_recovery`] | damaged shared-log segments, durable markers and snapshot files to the shared log's recovery |
//! | [`legacy_upgrade`] | damaged single-group data directories to the upgrade's legacy reader |
//! | [`session`] | the session request/response/snapshot decoders and the key-value commands |
//! | [`node_step`] | a cluster of `Node`s driven by an arbitrary schedule, safety-checked after every step |

use std::fmt;

pub mod alloc;
pub mod codec;
pub mod corpus;
pub mod frame;
pub mod legacy_upgrade;
pub mod node_step;
pub mod session;
pub mod wal_recovery;

/// A property a target checks did not hold for an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The target that found it.
    pub target: &'static str,
    /// What went wrong, for a person reading the fuzzer's output.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(target: &'static str, message: impl Into<String>) -> Self {
        Violation {
            target,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fuzz target {}: {}", self.target, self.message)
    }
}

impl std::error::Error for Violation {}

/// Names of every target, as used for `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 6] = [
    "frame",
    "codec",
    "wal_recovery",
    "legacy_upgrade",
    "session",
    "node_step",
];

/// Runs target `name` on `data`; `None` when there is no such target.
pub fn run(name: &str, data: &[u8]) -> Option<Result<(), Violation>> {
    Some(match name {
        "frame" => frame::run(data),
        "codec" => codec::run(data),
        "wal_recovery" => wal_recovery::run(data),
        "legacy_upgrade" => legacy_upgrade::run(data),
        "session" => session::run(data),
        "node_step" => node_step::run(data),
        _ => return None,
    })
}

/// Reads a target's input field by field: what is missing reads as zero
/// (so every input, however short, is a valid schedule), and the layout is
/// trivial to write from a generator (one byte per `u8`, little-endian
/// integers).
pub(crate) struct Cursor<'a> {
    input: arbitrary::Unstructured<'a>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor {
            input: arbitrary::Unstructured::new(data),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// The next byte, 0 once the input is used up.
    pub(crate) fn u8(&mut self) -> u8 {
        let mut byte = [0u8; 1];
        // `fill_buffer` copies what is left and zero-fills the rest.
        self.input
            .fill_buffer(&mut byte)
            .expect("fill_buffer never fails");
        byte[0]
    }

    /// The next two bytes, little-endian.
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next `n` bytes, fewer if the input ends first.
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.input.len());
        self.input.bytes(n).expect("n is at most the length left")
    }
}
