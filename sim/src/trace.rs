//! The trace hash: a fingerprint of every event of a run.
//!
//! Two runs of one seed (and one configuration) must produce the same
//! sequence of events, so the same hash; any divergence (a `HashMap`
//! iteration, a wall-clock read, a thread race) changes it.

/// Prints the trace hash of a replayed run and of a second run of the
/// same seed (`replay`), saying whether they agree; whether they do.
pub fn print_trace_hashes(first: u64, again: u64) -> bool {
    let same = again == first;
    println!("trace hash: {first:016x}");
    println!(
        "trace hash of a second run: {again:016x} ({})",
        if same {
            "same: the run is deterministic"
        } else {
            "DIFFERENT: non-determinism"
        }
    );
    same
}

/// Prints the verdict of a replayed run (`replay`): `FAILED:` with the
/// failure and the command that replays it, or `passed`; whether it
/// passed.
pub fn print_verdict(
    failure: Option<&impl std::fmt::Display>,
    replay_command: impl FnOnce() -> String,
) -> bool {
    match failure {
        Some(failure) => {
            println!("FAILED: {failure}");
            println!("replay: {}", replay_command());
            false
        }
        None => {
            println!("passed");
            true
        }
    }
}

/// An FNV-1a-style hash folded over 64-bit words (one multiply per word,
/// so hashing every event costs almost nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(OFFSET_BASIS)
    }
}

impl TraceHash {
    /// A fresh hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one word into the hash.
    #[inline]
    pub fn word(&mut self, word: u64) {
        // Fold the word in two halves so that high bits also spread.
        self.0 = (self.0 ^ (word & 0xffff_ffff)).wrapping_mul(PRIME);
        self.0 = (self.0 ^ (word >> 32)).wrapping_mul(PRIME);
    }

    /// Folds bytes into the hash (FNV-1a over the bytes).
    pub fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(PRIME);
        }
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// FNV-1a of a byte string, as used to fingerprint log payloads and
/// state-machine responses.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash = TraceHash::new();
    hash.word(bytes.len() as u64);
    hash.bytes(bytes);
    hash.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matters() {
        let mut a = TraceHash::new();
        a.word(1);
        a.word(2);
        let mut b = TraceHash::new();
        b.word(2);
        b.word(1);
        assert_ne!(a.value(), b.value());
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ba"));
        assert_eq!(hash_bytes(b"ab"), hash_bytes(b"ab"));
    }
}
