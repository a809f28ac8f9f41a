//! Exactly-once client sessions for every group of a multi-group host.
//!
//! [`GroupSessions`] wraps each group's state machine with the session
//! layer of [`crate::session`] ([`WithSessions`]): a client registers a
//! session through the group's log, numbers its commands, and a retry of
//! a command whose answer was lost is answered from the group's cache
//! instead of being applied again.
//!
//! ## One session per (client, group), opened lazily
//!
//! A client opens a session in a group the first time it writes there
//! (one registration entry in that group's log) and keeps one per group
//! it uses. The alternative, one cluster-wide id carried to every group,
//! was rejected: a group that has never seen an id could not tell a new
//! client from one whose session it evicted, so a late retry after an
//! eviction would be applied twice, unless every group agreed on which
//! ids exist, which needs a cross-group registration (a catalog write per
//! client) that one group alone cannot decide. Per-group sessions keep
//! everything inside one group's log: the id is the registration's index
//! in that group (unique there, never reused), an id the group does not
//! hold is known to be expired, and the table is replicated, snapshotted
//! and recovered with the group like any state. What it costs: one more
//! round trip the first time a client writes to a group.
//!
//! ## Bounds, per group
//!
//! At most [`GROUP_SESSIONS_MAX`] sessions and [`GROUP_SESSION_BYTES_MAX`]
//! bytes (each session counted as
//! [`SESSION_ENTRY_BYTES`](crate::session::SESSION_ENTRY_BYTES) plus its
//! cached response: [`SessionTable::bytes`]) per group. Past either, the
//! session least recently used, by the log index of its last command, is
//! evicted: expiry is decided by the log alone, so every replica evicts
//! the same sessions at the same index, whatever its clock. A client
//! whose session was evicted is answered
//! [`SessionResponse::SessionExpired`](crate::session::SessionResponse::SessionExpired)
//! and nothing is applied.
//!
//! ## Bytes
//!
//! A command of a session travels as [`SESSION_TAG`] followed by the
//! session layer's request ([`session::encode_command`]) and is answered
//! with a [`SessionResponse`](crate::session::SessionResponse), encoded. Bytes that do not start with
//! [`SESSION_TAG`] are the group's own commands without a session, applied
//! as they are and answered by the wrapped state machine: the entries of
//! logs written before sessions existed (and clients of that time) keep
//! their meaning. Every service command starts with the service codec's
//! version byte (1), never [`SESSION_TAG`].
//!
//! A snapshot is [`SNAPSHOT_MAGIC`] then the session layer's snapshot
//! (table, then the wrapped machine's). A snapshot without the magic is
//! one of the wrapped machine alone, written before sessions existed: it
//! is restored with an empty table.

use bytes::{BufMut, Bytes, BytesMut};

use crate::recovery::ForcedRecovery;
use crate::session::{self, ClientId, SequenceNumber, SessionTable, WithSessions};
use crate::state_machine::{RestoreError, SnapshotSource, StateMachine};
use crate::types::Index;

/// Most sessions one group holds.
pub const GROUP_SESSIONS_MAX: usize = 1_024;

/// Most bytes of sessions one group holds, as [`SessionTable::bytes`]
/// counts them (a response alone larger is kept for its one session).
pub const GROUP_SESSION_BYTES_MAX: usize = 256 * 1024;

/// First byte of a command sent inside a session.
pub const SESSION_TAG: u8 = 0xC5;

/// First bytes of a [`GroupSessions`] snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"\xC5cgsess1";

/// A registration request, as a client sends it to a group.
pub fn encode_register() -> Bytes {
    wrap(&session::encode_register())
}

/// `command` as number `seq` of session `client`, as a client sends it to
/// the group that registered `client`.
pub fn encode_command(client: ClientId, seq: SequenceNumber, command: &[u8]) -> Bytes {
    wrap(&session::encode_command(client, seq, command))
}

fn wrap(request: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(1 + request.len());
    buffer.put_u8(SESSION_TAG);
    buffer.put_slice(request);
    buffer.freeze()
}

/// A group's state machine `S` behind its session table (see the
/// [module documentation](self)).
#[derive(Clone, Debug)]
pub struct GroupSessions<S> {
    sessions: WithSessions<S>,
}

impl<S: StateMachine> GroupSessions<S> {
    /// `inner` with an empty table of [`GROUP_SESSIONS_MAX`] sessions and
    /// [`GROUP_SESSION_BYTES_MAX`] bytes.
    pub fn new(inner: S) -> Self {
        GroupSessions::with_limits(inner, GROUP_SESSIONS_MAX, GROUP_SESSION_BYTES_MAX)
    }

    /// `inner` with an empty table of at most `sessions_max` sessions and
    /// `bytes_max` bytes.
    pub fn with_limits(inner: S, sessions_max: usize, bytes_max: usize) -> Self {
        GroupSessions {
            sessions: WithSessions::with_limits(inner, sessions_max, bytes_max),
        }
    }

    /// The wrapped state machine.
    pub fn inner(&self) -> &S {
        self.sessions.inner()
    }

    /// The group's session table.
    pub fn table(&self) -> &SessionTable<Bytes> {
        self.sessions.sessions()
    }
}

/// A group's snapshot: the magic, then the session layer's `sessions`.
fn encode_snapshot(sessions: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(SNAPSHOT_MAGIC.len() + sessions.len());
    buffer.put_slice(&SNAPSHOT_MAGIC);
    buffer.put_slice(sessions);
    buffer.freeze()
}

impl<S: StateMachine> StateMachine for GroupSessions<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match command.split_first() {
            Some((&SESSION_TAG, request)) => self.sessions.apply(index, request),
            _ => self.sessions.inner_mut().apply(index, command),
        }
    }

    /// Reads need no session: the wrapped machine's request, as it is.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.sessions.query(request)
    }

    fn sessions(&self) -> Option<usize> {
        Some(self.table().len())
    }

    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        self.sessions.apply_forced_recovery(index, audit);
    }

    fn snapshot(&self) -> Bytes {
        encode_snapshot(&self.sessions.snapshot())
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        let sessions = self.sessions.snapshot_source()?;
        Some(Box::new(move || encode_snapshot(&sessions())))
    }

    fn canonical_state(&self) -> Bytes {
        encode_snapshot(&self.sessions.canonical_state())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        match snapshot.strip_prefix(&SNAPSHOT_MAGIC[..]) {
            Some(sessions) => self.sessions.restore(sessions),
            None => {
                // Written before sessions: the wrapped machine's alone, so
                // an empty table in the session layer's version 0 layout
                // (no sessions, no evictions) goes in front.
                let mut legacy = Vec::with_capacity(16 + snapshot.len());
                legacy.extend_from_slice(&[0u8; 16]);
                legacy.extend_from_slice(snapshot);
                self.sessions.restore(&legacy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionResponse;

    /// Appends every command to one list; answers the list's length.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Appender(Vec<Bytes>);

    impl StateMachine for Appender {
        fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
            self.0.push(Bytes::copy_from_slice(command));
            Bytes::copy_from_slice(&(self.0.len() as u64).to_le_bytes())
        }
        fn query(&self, _request: &[u8]) -> Option<Bytes> {
            Some(Bytes::copy_from_slice(&(self.0.len() as u64).to_le_bytes()))
        }
        fn snapshot(&self) -> Bytes {
            let mut out = BytesMut::new();
            for command in &self.0 {
                out.put_u8(command.len() as u8);
                out.put_slice(command);
            }
            out.freeze()
        }
        fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), RestoreError> {
            let mut commands = Vec::new();
            while let Some((&length, rest)) = snapshot.split_first() {
                if rest.len() < length as usize {
                    return Err(RestoreError::new("truncated"));
                }
                commands.push(Bytes::copy_from_slice(&rest[..length as usize]));
                snapshot = &rest[length as usize..];
            }
            self.0 = commands;
            Ok(())
        }
    }

    fn response(bytes: &[u8]) -> SessionResponse {
        SessionResponse::decode(bytes).expect("a session response")
    }

    fn register<S: StateMachine>(machine: &mut GroupSessions<S>, index: Index) -> ClientId {
        match response(&machine.apply(index, &encode_register())) {
            SessionResponse::Registered { client } => client,
            other => panic!("not registered: {other:?}"),
        }
    }

    #[test]
    fn a_retried_command_is_applied_once_and_answered_again() {
        let mut machine = GroupSessions::new(Appender::default());
        let client = register(&mut machine, 1);
        let command = encode_command(client, 1, b"token-1");
        let first = machine.apply(2, &command);
        assert_eq!(
            response(&first),
            SessionResponse::Ok(Bytes::copy_from_slice(&1u64.to_le_bytes()))
        );
        // The same command committed again (a retry after a lost answer).
        assert_eq!(machine.apply(3, &command), first);
        assert_eq!(machine.inner().0, vec![Bytes::from_static(b"token-1")]);
        // The next number is applied; a late copy of the first is refused.
        machine.apply(4, &encode_command(client, 2, b"token-2"));
        assert_eq!(
            response(&machine.apply(5, &command)),
            SessionResponse::SessionExpired
        );
        assert_eq!(machine.inner().0.len(), 2);
        assert_eq!(machine.sessions(), Some(1));
    }

    /// An [`Appender`] that copies itself for off-loop snapshots.
    #[derive(Clone, Debug, Default)]
    struct CopyingAppender(Appender);

    impl StateMachine for CopyingAppender {
        fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
            self.0.apply(index, command)
        }
        fn snapshot(&self) -> Bytes {
            self.0.snapshot()
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
            self.0.restore(snapshot)
        }
        fn snapshot_source(&self) -> Option<SnapshotSource> {
            let copy = self.0.clone();
            Some(Box::new(move || copy.snapshot()))
        }
    }

    #[test]
    fn a_snapshot_source_is_the_snapshot_at_the_time_sessions_included() {
        // Without one below, the layers offer none (the host serialises on
        // its loop).
        assert!(GroupSessions::new(Appender::default())
            .snapshot_source()
            .is_none());
        let mut machine = GroupSessions::new(CopyingAppender::default());
        let mut index = 0;
        let mut clients = Vec::new();
        for _ in 0..5 {
            index += 1;
            clients.push(register(&mut machine, index));
        }
        for (seq, client) in clients.iter().enumerate() {
            index += 1;
            machine.apply(
                index,
                &encode_command(*client, 1, format!("c{seq}").as_bytes()),
            );
        }
        let at_source = machine.snapshot();
        let source = machine
            .snapshot_source()
            .expect("the wrapped machine copies itself");
        // Later registrations, commands and their cached answers change
        // the table and the wrapped state, not the copy.
        for _ in 0..3 {
            index += 1;
            clients.push(register(&mut machine, index));
        }
        for client in &clients {
            index += 1;
            machine.apply(index, &encode_command(*client, 2, b"later"));
        }
        assert_ne!(machine.snapshot(), at_source);
        assert_eq!(source(), at_source);
    }

    #[test]
    fn commands_without_a_session_are_the_wrapped_machines() {
        let mut machine = GroupSessions::new(Appender::default());
        // An entry of a log written before sessions: applied as it is, and
        // answered by the wrapped machine, twice if committed twice.
        let old = b"\x01old command";
        assert_eq!(
            machine.apply(1, old),
            Bytes::copy_from_slice(&1u64.to_le_bytes())
        );
        assert_eq!(
            machine.apply(2, old),
            Bytes::copy_from_slice(&2u64.to_le_bytes())
        );
        assert_eq!(machine.inner().0.len(), 2);
        // A tagged request the session layer cannot read is not applied.
        assert_eq!(
            response(&machine.apply(3, &[SESSION_TAG, 9, 9])),
            SessionResponse::Malformed
        );
        assert_eq!(
            response(&machine.apply(4, &[SESSION_TAG])),
            SessionResponse::Malformed
        );
        assert_eq!(machine.inner().0.len(), 2);
        assert_eq!(
            machine.query(b"len"),
            Some(Bytes::copy_from_slice(&2u64.to_le_bytes()))
        );
    }

    #[test]
    fn an_unknown_or_evicted_session_is_expired_by_the_log_alone() {
        let mut machine = GroupSessions::with_limits(Appender::default(), 2, usize::MAX);
        assert_eq!(
            response(&machine.apply(1, &encode_command(77, 1, b"x"))),
            SessionResponse::SessionExpired
        );
        let a = register(&mut machine, 2);
        let b = register(&mut machine, 3);
        machine.apply(4, &encode_command(a, 1, b"a1"));
        // b is the least recently used by log index: a third registration
        // evicts it, on every replica applying this log.
        let c = register(&mut machine, 5);
        assert!(!machine.table().contains(b));
        assert!(machine.table().contains(a) && machine.table().contains(c));
        assert_eq!(
            response(&machine.apply(6, &encode_command(b, 1, b"b1"))),
            SessionResponse::SessionExpired
        );
        assert_eq!(machine.inner().0, vec![Bytes::from_static(b"a1")]);
        let replay = || {
            let mut replica = GroupSessions::with_limits(Appender::default(), 2, usize::MAX);
            for (index, command) in [
                (1, encode_command(77, 1, b"x")),
                (2, encode_register()),
                (3, encode_register()),
                (4, encode_command(a, 1, b"a1")),
                (5, encode_register()),
                (6, encode_command(b, 1, b"b1")),
            ] {
                replica.apply(index, &command);
            }
            replica.snapshot()
        };
        assert_eq!(replay(), machine.snapshot());
    }

    #[test]
    fn the_table_stays_within_its_sessions_and_bytes() {
        let mut machine = GroupSessions::new(Appender::default());
        let mut index = 0;
        for round in 0..3 * GROUP_SESSIONS_MAX {
            index += 1;
            let client = register(&mut machine, index);
            index += 1;
            let big = vec![b'x'; round % 200];
            machine.apply(index, &encode_command(client, 1, &big));
            assert!(machine.table().len() <= GROUP_SESSIONS_MAX);
            assert!(machine.table().bytes() <= GROUP_SESSION_BYTES_MAX);
        }
        assert_eq!(machine.table().len(), GROUP_SESSIONS_MAX);
        assert!(machine.table().evictions() >= 2 * GROUP_SESSIONS_MAX as u64);
    }

    #[test]
    fn snapshots_round_trip_and_old_ones_restore_with_no_sessions() {
        let mut machine = GroupSessions::new(Appender::default());
        let client = register(&mut machine, 1);
        let command = encode_command(client, 1, b"once");
        machine.apply(2, &command);
        let snapshot = machine.snapshot();
        assert_eq!(snapshot[..8], SNAPSHOT_MAGIC);
        let mut restored = GroupSessions::new(Appender::default());
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.table(), machine.table());
        assert_eq!(restored.inner(), machine.inner());
        assert_eq!(restored.snapshot(), snapshot);
        // The cache came along: the retry is not applied again.
        assert_eq!(restored.apply(3, &command), machine.apply(3, &command));
        assert_eq!(restored.inner().0.len(), 1);

        // A snapshot of the machine alone, from before sessions.
        let mut old = Appender::default();
        old.apply(1, b"before");
        let mut upgraded = GroupSessions::new(Appender::default());
        upgraded.restore(&old.snapshot()).unwrap();
        assert_eq!(upgraded.inner(), &old);
        assert!(upgraded.table().is_empty());

        // A cut in the table part is refused and changes nothing.
        for length in SNAPSHOT_MAGIC.len()..SNAPSHOT_MAGIC.len() + 20 {
            let mut target = GroupSessions::new(Appender::default());
            assert!(target.restore(&snapshot[..length]).is_err(), "{length}");
            assert!(target.table().is_empty());
        }
    }

    /// Bytes of a group's session table per session, and per group at
    /// its bound (the figure of docs/sharded-store.md is
    /// `services/tests/session_table_bytes.rs`, with the real store).
    #[test]
    fn session_table_bytes() {
        // Each session's cached answer is the Appender's, 8 bytes (a
        // sharded kv write's, "written", is 3).
        let written = [1u8, 0, 0];
        for sessions in [0usize, 1, 16, 256, GROUP_SESSIONS_MAX] {
            let mut machine = GroupSessions::new(Appender::default());
            for client in 0..sessions as u64 {
                let id = register(&mut machine, 2 * client + 1);
                machine.apply(2 * client + 2, &encode_command(id, 1, &written));
            }
            let table = machine.table();
            let snapshot_bytes = machine.snapshot().len() - machine.inner().snapshot().len();
            println!(
                "sessions {:>5}: table {:>7} bytes counted, {:>7} bytes in a snapshot",
                table.len(),
                table.bytes(),
                snapshot_bytes
            );
            assert_eq!(table.len(), sessions);
            assert!(table.bytes() <= GROUP_SESSION_BYTES_MAX);
        }
    }
}
