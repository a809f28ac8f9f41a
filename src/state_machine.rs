//! The replicated state machine a host applies committed commands to.
//!
//! Raft agrees on a sequence of opaque commands; a [`StateMachine`] gives
//! them meaning. Every replica applies the same commands in the same order,
//! so every replica's state machine must compute the same state and the same
//! responses: `apply` must be a pure function of the state and the command
//! (no clock, no randomness, no iteration over hash maps with random order).
//!
//! ```
//! use bytes::Bytes;
//! use concord::state_machine::{RestoreError, StateMachine};
//!
//! /// Counts the bytes of every command applied.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
//!         self.0 += command.len() as u64;
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn snapshot(&self) -> Bytes {
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
//!         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| RestoreError::new("want 8 bytes"))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! let mut counter = Counter::default();
//! counter.apply(1, b"abc");
//! let snapshot = counter.snapshot();
//! let mut copy = Counter::default();
//! copy.restore(&snapshot).unwrap();
//! assert_eq!(copy.0, 3);
//! ```

use bytes::Bytes;
use thiserror::Error;

use crate::recovery::ForcedRecovery;
use crate::types::{Entry, EntryPayload, Index};

/// A deterministic state machine fed with the commands of committed log
/// entries.
///
/// The host calls [`apply`](StateMachine::apply) for every
/// [`EntryPayload::Command`] of an
/// [`Action::Apply`](crate::Action::Apply), in log order, then reports
/// [`Input::Applied`](crate::Input::Applied). `Noop` entries carry no
/// command and are not passed to the state machine; a
/// [`EntryPayload::ForcedMembership`]
/// entry is passed to
/// [`apply_forced_recovery`](StateMachine::apply_forced_recovery), in its
/// place in the log order. [`apply_entry`] does both.
pub trait StateMachine {
    /// Applies the command committed at `index` and returns the response
    /// for the client that proposed it.
    ///
    /// Must be deterministic: the same state and command give the same new
    /// state and response on every replica. A command the state machine
    /// cannot parse must still be handled deterministically (typically by
    /// answering with an error response and leaving the state unchanged),
    /// never by panicking.
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes;

    /// Serializes the whole state. Restoring it on a fresh instance must
    /// give a state machine that behaves identically from then on.
    ///
    /// The bytes need not be canonical (a `HashMap` may be written in
    /// its iteration order), but then [`canonical_state`] must be
    /// overridden: replicas are compared by it, never by these bytes.
    ///
    /// [`canonical_state`]: StateMachine::canonical_state
    fn snapshot(&self) -> Bytes;

    /// The state in a canonical form, for comparing replicas: two state
    /// machines that applied the same commands (or restored the same
    /// snapshot) must return the same bytes, whatever order their
    /// containers iterate in; different states should give different
    /// bytes. Never stored or sent; a checker (the simulator) compares
    /// the replicas' canonical states after snapshots and at the end of a
    /// run, and a fresh instance restored from each snapshot with the
    /// state it was taken from.
    ///
    /// The default is [`snapshot`](StateMachine::snapshot), which is right
    /// when the snapshot is canonical (ordered containers such as a
    /// `BTreeMap`, or entries sorted before writing). A state machine
    /// whose snapshot iterates a `HashMap` or `HashSet` must override this,
    /// for example by writing the same entries sorted by key.
    fn canonical_state(&self) -> Bytes {
        self.snapshot()
    }

    /// Replaces the whole state with a snapshot taken by
    /// [`snapshot`](StateMachine::snapshot).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;

    /// Answers a read-only request from the current state, without a log
    /// entry: called for a read the node released with
    /// [`Action::ReadReady`](crate::Action::ReadReady). Returns `None` when
    /// `request` is not a read this state machine can answer that way (the
    /// default, for state machines that serve every request through the
    /// log); the host then proposes it instead.
    ///
    /// Must not change the state, and must answer what
    /// [`apply`](StateMachine::apply) would for the same request at this
    /// state.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let _ = request;
        None
    }

    /// Client sessions this state machine remembers, if it keeps any (the
    /// session layer, [`crate::session::WithSessions`], does): a count the
    /// tokio runtime exports as a metric. The default is `None`.
    fn sessions(&self) -> Option<usize> {
        None
    }

    /// Learns that the cluster was rebuilt by a forced recovery whose entry
    /// is committed at `index` (see [`crate::recovery`]): state the lost
    /// servers may have handed out above `audit.commit_index_before` (ids,
    /// numbers derived from log indices) is not the survivor's, and a state
    /// machine that gives clients such things must stop honouring them and
    /// must not hand them out again. Called at the entry's place in the log
    /// order, on every replica, so it must be deterministic like
    /// [`apply`](StateMachine::apply). The default does nothing.
    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        let _ = (index, audit);
    }

    /// A point-in-time copy of the state, to serialise later on another
    /// thread: the host calls it on its loop instead of
    /// [`snapshot`](StateMachine::snapshot), and the copy's function, run
    /// off the loop, must return exactly the bytes `snapshot` returns at
    /// the time of this call, whatever is applied afterwards. Worth it
    /// only when the copy costs far less than serialising: a clone of a
    /// persistent or `Arc`-shared structure (what the key-value service's
    /// store does), never a deep copy of a large state. The default is
    /// `None`: the host serialises on its loop, a pause that grows with
    /// the state.
    fn snapshot_source(&self) -> Option<SnapshotSource> {
        None
    }
}

/// What [`StateMachine::snapshot_source`] hands out: serialises the state
/// as it was when taken, on whatever thread calls it.
pub type SnapshotSource = Box<dyn FnOnce() -> Bytes + Send>;

/// Applies one committed entry to `state_machine` the way every host must:
/// a command through [`StateMachine::apply`] (its response returned), a
/// forced recovery through [`StateMachine::apply_forced_recovery`]; other
/// entries (no-ops, membership changes, host records) do not reach the
/// state machine. Returns `None` for every entry that is not a command.
pub fn apply_entry<S: StateMachine + ?Sized>(
    state_machine: &mut S,
    entry: &Entry,
) -> Option<Bytes> {
    match &entry.payload {
        EntryPayload::Command(command) => Some(state_machine.apply(entry.index, command)),
        EntryPayload::ForcedMembership(audit) => {
            state_machine.apply_forced_recovery(entry.index, audit);
            None
        }
        _ => None,
    }
}

impl<S: StateMachine + ?Sized> StateMachine for Box<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        (**self).apply(index, command)
    }

    fn snapshot(&self) -> Bytes {
        (**self).snapshot()
    }

    fn canonical_state(&self) -> Bytes {
        (**self).canonical_state()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        (**self).restore(snapshot)
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        (**self).query(request)
    }

    fn sessions(&self) -> Option<usize> {
        (**self).sessions()
    }

    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        (**self).apply_forced_recovery(index, audit)
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        (**self).snapshot_source()
    }
}

/// A snapshot could not be restored (truncated, corrupt, or of another
/// version).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("cannot restore the state machine from this snapshot: {reason}")]
pub struct RestoreError {
    /// What is wrong with the snapshot.
    pub reason: String,
}

impl RestoreError {
    /// Builds an error with a human-readable reason.
    pub fn new(reason: impl Into<String>) -> Self {
        RestoreError {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Concat(Vec<u8>);

    impl StateMachine for Concat {
        fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
            self.0.extend_from_slice(command);
            Bytes::copy_from_slice(&self.0)
        }
        fn snapshot(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0)
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
            self.0 = snapshot.to_vec();
            Ok(())
        }
    }

    #[test]
    fn boxed_state_machine_forwards_every_call() {
        let mut boxed: Box<dyn StateMachine> = Box::new(Concat::default());
        assert_eq!(&boxed.apply(1, b"ab")[..], b"ab");
        assert_eq!(&boxed.apply(2, b"c")[..], b"abc");
        assert_eq!(boxed.canonical_state(), boxed.snapshot());
        let snapshot = boxed.snapshot();
        let mut other: Box<dyn StateMachine> = Box::new(Concat::default());
        other.restore(&snapshot).unwrap();
        assert_eq!(&other.apply(3, b"d")[..], b"abcd");
    }

    #[test]
    fn restore_error_names_the_reason() {
        let error = RestoreError::new("truncated");
        assert!(error.to_string().contains("truncated"));
    }
}
