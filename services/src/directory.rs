//! Directory: who is online where, and a cluster-wide sequence number.
//!
//! `connect(user, address)` records that `user` is reachable at `address`
//! (`ip:port`), replacing an earlier address; `disconnect(user)` forgets
//! it; `lookup(users)` answers many users in one request, all at one
//! instant; `next_sequence()` hands out 1, 2, 3, ...: unique, and strictly
//! increasing in real-time order, across leader changes (the counter is
//! replicated state, bumped by a log entry).
//!
//! Request layout (the session envelope of [`concord::session`] around
//! writes, bare for lookups): operation id (u64; chosen by the client,
//! used only by the simulator's exactly-once check), a tag byte (0
//! connect, 1 disconnect, 2 lookup, 3 next_sequence), then user names and
//! the address ([`crate::codec`] strings). Response: tag 0 + count +
//! optional addresses (lookup), 1 (done), 2 + u64 (a sequence number),
//! 3 + reason (refused, nothing changed).

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

use crate::codec::{DecodeError, Reader, SnapshotReader, Writer};

/// Most users one lookup asks about.
pub const LOOKUP_USERS_MAX: usize = 256;
/// Longest user name.
pub const USER_BYTES_MAX: usize = 256;
/// Most users connected at once; a connect that would add more is
/// refused.
pub const USERS_MAX: usize = 1 << 20;

const TAG_CONNECT: u8 = 0;
const TAG_DISCONNECT: u8 = 1;
const TAG_LOOKUP: u8 = 2;
const TAG_NEXT_SEQUENCE: u8 = 3;

const SNAPSHOT_VERSION: u8 = 1;

/// A request to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryRequest {
    /// `user` is reachable at `address` (`ip:port`).
    Connect {
        /// The user.
        user: String,
        /// Where: an IP address and port, e.g. `10.0.0.7:5000`.
        address: String,
    },
    /// `user` is gone.
    Disconnect {
        /// The user.
        user: String,
    },
    /// Where each of `users` is, at one instant.
    Lookup {
        /// The users, answered in this order.
        users: Vec<String>,
    },
    /// The next number of the cluster-wide sequence.
    NextSequence,
}

impl DirectoryRequest {
    /// Whether the request only reads (a lookup, served without a log
    /// entry).
    pub fn is_read(&self) -> bool {
        matches!(self, DirectoryRequest::Lookup { .. })
    }

    /// Checks the limits and formats; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let user_ok = |user: &str| -> Result<(), String> {
            if user.is_empty() || user.len() > USER_BYTES_MAX {
                return Err(format!(
                    "a user name has 1 to {USER_BYTES_MAX} bytes, not {}",
                    user.len()
                ));
            }
            Ok(())
        };
        match self {
            DirectoryRequest::Connect { user, address } => {
                user_ok(user)?;
                address.parse::<std::net::SocketAddr>().map_err(|_| {
                    format!("{address:?} is not an ip:port address like 10.0.0.7:5000")
                })?;
                Ok(())
            }
            DirectoryRequest::Disconnect { user } => user_ok(user),
            DirectoryRequest::Lookup { users } => {
                if users.is_empty() || users.len() > LOOKUP_USERS_MAX {
                    return Err(format!(
                        "a lookup asks about 1 to {LOOKUP_USERS_MAX} users, not {}",
                        users.len()
                    ));
                }
                users.iter().try_for_each(|user| user_ok(user))
            }
            DirectoryRequest::NextSequence => Ok(()),
        }
    }

    /// Encodes the request with operation id `op_id`.
    pub fn encode(&self, op_id: u64) -> Bytes {
        let mut writer = Writer::new();
        writer.u64(op_id);
        match self {
            DirectoryRequest::Connect { user, address } => {
                writer.u8(TAG_CONNECT).str(user).str(address);
            }
            DirectoryRequest::Disconnect { user } => {
                writer.u8(TAG_DISCONNECT).str(user);
            }
            DirectoryRequest::Lookup { users } => {
                writer.u8(TAG_LOOKUP).u32(users.len() as u32);
                for user in users {
                    writer.str(user);
                }
            }
            DirectoryRequest::NextSequence => {
                writer.u8(TAG_NEXT_SEQUENCE);
            }
        }
        writer.finish()
    }

    /// Decodes a request and its operation id.
    pub fn decode(bytes: &[u8]) -> Result<(u64, DirectoryRequest), DecodeError> {
        let mut reader = Reader::new(bytes);
        let op_id = reader.u64("operation id")?;
        let request = match reader.u8("request tag")? {
            TAG_CONNECT => DirectoryRequest::Connect {
                user: reader.str("user")?.to_string(),
                address: reader.str("address")?.to_string(),
            },
            TAG_DISCONNECT => DirectoryRequest::Disconnect {
                user: reader.str("user")?.to_string(),
            },
            TAG_LOOKUP => {
                let count = reader.count("user count", LOOKUP_USERS_MAX)?;
                let mut users = Vec::with_capacity(count);
                for _ in 0..count {
                    users.push(reader.str("user")?.to_string());
                }
                DirectoryRequest::Lookup { users }
            }
            TAG_NEXT_SEQUENCE => DirectoryRequest::NextSequence,
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "request",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok((op_id, request))
    }
}

/// The directory's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryResponse {
    /// Addresses of the users looked up, in order (`None`: not
    /// connected).
    Addresses(Vec<Option<String>>),
    /// The connect or disconnect was applied.
    Done,
    /// A number of the sequence.
    Sequence(u64),
    /// The request was refused and changed nothing.
    Refused(String),
}

impl DirectoryResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Bytes {
        let mut writer = Writer::new();
        match self {
            DirectoryResponse::Addresses(addresses) => {
                writer.u8(0).u32(addresses.len() as u32);
                for address in addresses {
                    writer.opt_str(address.as_deref());
                }
            }
            DirectoryResponse::Done => {
                writer.u8(1);
            }
            DirectoryResponse::Sequence(number) => {
                writer.u8(2).u64(*number);
            }
            DirectoryResponse::Refused(reason) => {
                writer.u8(3).str(reason);
            }
        }
        writer.finish()
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<DirectoryResponse, DecodeError> {
        let mut reader = Reader::new(bytes);
        let response = match reader.u8("response tag")? {
            0 => {
                let count = reader.count("address count", LOOKUP_USERS_MAX)?;
                let mut addresses = Vec::with_capacity(count);
                for _ in 0..count {
                    addresses.push(reader.opt_str("address")?.map(str::to_string));
                }
                DirectoryResponse::Addresses(addresses)
            }
            1 => DirectoryResponse::Done,
            2 => DirectoryResponse::Sequence(reader.u64("sequence")?),
            3 => DirectoryResponse::Refused(reader.str("reason")?.to_string()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "response",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok(response)
    }
}

/// The directory state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    users: BTreeMap<String, String>,
    /// The last sequence number handed out (0: none yet).
    sequence: u64,
    /// Planted bug: `next_sequence` is answered as a read, from this
    /// replica's counter, without a log entry.
    sequence_as_read: bool,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Directory::default()
    }

    /// A directory with a planted bug, for measuring the simulator's
    /// sequence check: `next_sequence` is served on the read path (no log
    /// entry) from whichever replica answers, as `last + 1` of its local
    /// counter, so two callers can get the same number and a lagging
    /// replica can hand out an old one. Used together with a client that
    /// sends `next_sequence` as a read.
    pub fn with_sequence_as_read() -> Self {
        Directory {
            sequence_as_read: true,
            ..Directory::default()
        }
    }

    /// Where `user` is.
    pub fn address(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// The last sequence number handed out.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    fn lookup(&self, users: &[String]) -> DirectoryResponse {
        DirectoryResponse::Addresses(
            users
                .iter()
                .map(|user| self.users.get(user).cloned())
                .collect(),
        )
    }

    fn execute(&mut self, request: DirectoryRequest) -> DirectoryResponse {
        if let Err(reason) = request.validate() {
            return DirectoryResponse::Refused(reason);
        }
        match request {
            DirectoryRequest::Connect { user, address } => {
                if !self.users.contains_key(&user) && self.users.len() >= USERS_MAX {
                    return DirectoryResponse::Refused(format!(
                        "the directory holds its limit of {USERS_MAX} users; disconnect some first"
                    ));
                }
                self.users.insert(user, address);
                DirectoryResponse::Done
            }
            DirectoryRequest::Disconnect { user } => {
                self.users.remove(&user);
                DirectoryResponse::Done
            }
            DirectoryRequest::Lookup { users } => self.lookup(&users),
            DirectoryRequest::NextSequence => match self.sequence.checked_add(1) {
                Some(next) => {
                    self.sequence = next;
                    DirectoryResponse::Sequence(next)
                }
                None => DirectoryResponse::Refused("the sequence is exhausted".to_string()),
            },
        }
    }
}

impl StateMachine for Directory {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
        match DirectoryRequest::decode(command) {
            Ok((_, request)) => self.execute(request).encode(),
            Err(error) => {
                DirectoryResponse::Refused(format!("malformed request: {error}")).encode()
            }
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let (_, request) = DirectoryRequest::decode(request).ok()?;
        match request {
            DirectoryRequest::Lookup { users } => Some(
                match (DirectoryRequest::Lookup {
                    users: users.clone(),
                })
                .validate()
                {
                    Ok(()) => self.lookup(&users),
                    Err(reason) => DirectoryResponse::Refused(reason),
                }
                .encode(),
            ),
            // The planted bug: a number from the local counter, nothing
            // replicated.
            DirectoryRequest::NextSequence if self.sequence_as_read => {
                Some(DirectoryResponse::Sequence(self.sequence + 1).encode())
            }
            _ => None,
        }
    }

    /// Layout: version byte, last sequence number (u64), user count
    /// (u64), then each user and address.
    fn snapshot(&self) -> Bytes {
        let mut writer = Writer::new();
        writer
            .u8(SNAPSHOT_VERSION)
            .u64(self.sequence)
            .u64(self.users.len() as u64);
        for (user, address) in &self.users {
            writer.str(user).str(address);
        }
        writer.finish()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut snapshot = SnapshotReader::open(snapshot, "directory", SNAPSHOT_VERSION)?;
        let sequence = snapshot
            .reader
            .u64("sequence")
            .map_err(|e| snapshot.error(e))?;
        let count = snapshot.count("user count", "users", USERS_MAX)?;
        let mut users = BTreeMap::new();
        for _ in 0..count {
            let user = snapshot.string("user")?;
            users.insert(user, snapshot.string("address")?);
        }
        snapshot.end()?;
        self.users = users;
        self.sequence = sequence;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(
        directory: &mut Directory,
        index: Index,
        request: DirectoryRequest,
    ) -> DirectoryResponse {
        DirectoryResponse::decode(&directory.apply(index, &request.encode(index))).unwrap()
    }

    fn lookup(users: &[&str]) -> DirectoryRequest {
        DirectoryRequest::Lookup {
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for request in [
            DirectoryRequest::Connect {
                user: "ann".into(),
                address: "10.0.0.1:5000".into(),
            },
            DirectoryRequest::Disconnect { user: "ann".into() },
            lookup(&["ann", "bob"]),
            DirectoryRequest::NextSequence,
        ] {
            let bytes = request.encode(9);
            assert_eq!(DirectoryRequest::decode(&bytes), Ok((9, request.clone())));
            for cut in 0..bytes.len() {
                assert!(DirectoryRequest::decode(&bytes[..cut]).is_err());
            }
        }
        for response in [
            DirectoryResponse::Addresses(vec![Some("10.0.0.1:1".into()), None]),
            DirectoryResponse::Done,
            DirectoryResponse::Sequence(u64::MAX),
            DirectoryResponse::Refused("why".into()),
        ] {
            assert_eq!(DirectoryResponse::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn connect_lookup_disconnect_and_sequence() {
        let mut directory = Directory::new();
        let connect = DirectoryRequest::Connect {
            user: "ann".into(),
            address: "10.0.0.1:5000".into(),
        };
        assert_eq!(apply(&mut directory, 1, connect), DirectoryResponse::Done);
        let expected = DirectoryResponse::Addresses(vec![Some("10.0.0.1:5000".into()), None]);
        let read = lookup(&["ann", "bob"]).encode(0);
        assert_eq!(
            DirectoryResponse::decode(&directory.query(&read).unwrap()).unwrap(),
            expected
        );
        assert_eq!(apply(&mut directory, 2, lookup(&["ann", "bob"])), expected);
        assert_eq!(
            apply(
                &mut directory,
                3,
                DirectoryRequest::Disconnect { user: "ann".into() }
            ),
            DirectoryResponse::Done
        );
        assert_eq!(
            apply(&mut directory, 4, lookup(&["ann"])),
            DirectoryResponse::Addresses(vec![None])
        );
        for expected in 1..=3 {
            assert_eq!(
                apply(&mut directory, 4 + expected, DirectoryRequest::NextSequence),
                DirectoryResponse::Sequence(expected)
            );
        }
        // next_sequence is a write: never answered as a read.
        assert!(directory
            .query(&DirectoryRequest::NextSequence.encode(0))
            .is_none());
    }

    #[test]
    fn invalid_requests_are_refused_and_change_nothing() {
        let mut directory = Directory::new();
        let before = directory.snapshot();
        for request in [
            DirectoryRequest::Connect {
                user: "ann".into(),
                address: "not an address".into(),
            },
            DirectoryRequest::Connect {
                user: "".into(),
                address: "10.0.0.1:1".into(),
            },
            DirectoryRequest::Lookup { users: vec![] },
        ] {
            assert!(matches!(
                apply(&mut directory, 1, request),
                DirectoryResponse::Refused(_)
            ));
        }
        assert!(matches!(
            DirectoryResponse::decode(&directory.apply(2, b"junk")).unwrap(),
            DirectoryResponse::Refused(_)
        ));
        assert_eq!(directory.snapshot(), before);
    }

    #[test]
    fn snapshot_keeps_users_and_the_sequence() {
        let mut directory = Directory::new();
        apply(
            &mut directory,
            1,
            DirectoryRequest::Connect {
                user: "ann".into(),
                address: "[::1]:7".into(),
            },
        );
        apply(&mut directory, 2, DirectoryRequest::NextSequence);
        let snapshot = directory.snapshot();
        let mut copy = Directory::new();
        copy.restore(&snapshot).unwrap();
        assert_eq!(copy, directory);
        assert_eq!(
            apply(&mut copy, 3, DirectoryRequest::NextSequence),
            DirectoryResponse::Sequence(2)
        );
        for cut in 0..snapshot.len() {
            assert!(Directory::new().restore(&snapshot[..cut]).is_err());
        }
    }

    #[test]
    fn the_planted_bug_answers_next_sequence_from_the_local_counter() {
        let directory = Directory::with_sequence_as_read();
        let read = DirectoryRequest::NextSequence.encode(0);
        let first = directory.query(&read).unwrap();
        // The same number twice: nothing was recorded.
        assert_eq!(directory.query(&read).unwrap(), first);
    }
}
