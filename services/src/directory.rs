//! Directory: who is online where, and a cluster-wide sequence number.
//!
//! `connect(user, address)` records that `user` is reachable at `address`
//! (`ip:port`), replacing an earlier address; `disconnect(user)` forgets
//! it; `lookup(users)` answers many users in one request, all at one
//! instant; `next_sequence()` hands out 1, 2, 3, ...: unique, and strictly
//! increasing in real-time order, across leader changes (the counter is
//! replicated state, bumped by a log entry).
//!
//! On many groups (`--groups N`, [`crate::sharded`]) `connect` and
//! `disconnect` run in the user's group, a `lookup` must name users of one
//! group (refused otherwise: it answers at one instant, which one group's
//! log gives; users given a shared hash tag, `{team7}.ann`, are in one),
//! and `next_sequence` runs on group 1 alone: the sequence is one counter
//! for the cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::{one_to, Applied, Outcome, Service, ServiceRequest};
#[cfg(feature = "cli")]
use crate::service::{Out, Printed};

/// Most users one lookup asks about.
pub const LOOKUP_USERS_MAX: usize = 256;
/// Longest user name.
pub const USER_BYTES_MAX: usize = 256;
/// Most users connected at once; a connect that would add more is
/// refused.
pub const USERS_MAX: usize = 1 << 20;

/// A request to the directory (and its command line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
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
    /// Where each of `users` is, at one instant; prints `user=address`
    /// or `user offline` for each.
    Lookup {
        /// The users, answered in this order.
        #[cfg_attr(feature = "cli", arg(required = true))]
        users: Vec<String>,
    },
    /// The next number of the cluster-wide sequence; prints it.
    NextSequence,
}

impl ServiceRequest for DirectoryRequest {
    fn is_read(&self) -> bool {
        matches!(self, DirectoryRequest::Lookup { .. })
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            DirectoryRequest::Connect { user, address } => {
                check_user(user)?;
                address.parse::<std::net::SocketAddr>().map_err(|_| {
                    format!("{address:?} is not an ip:port address like 10.0.0.7:5000")
                })?;
                Ok(())
            }
            DirectoryRequest::Disconnect { user } => check_user(user),
            DirectoryRequest::Lookup { users } => {
                one_to(
                    "a lookup asks about",
                    users.len(),
                    LOOKUP_USERS_MAX,
                    "users",
                )?;
                users.iter().try_for_each(|user| check_user(user))
            }
            DirectoryRequest::NextSequence => Ok(()),
        }
    }
}

/// The directory's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryResponse {
    /// Addresses of the users looked up, in order (`None`: not
    /// connected).
    Addresses(Vec<Option<String>>),
    /// The connect or disconnect was applied.
    Done,
    /// A number of the sequence.
    Sequence(u64),
}

/// Users and their addresses, and the sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    users: BTreeMap<String, String>,
    /// The last sequence number handed out (0: none yet).
    sequence: u64,
}

impl Directory {
    /// Answers a read; with `planted`, the service's planted mistake
    /// (`crate::planted`): `next_sequence` is served as a read, `last + 1`
    /// of this replica's counter with nothing recorded, so two callers can
    /// get the same number, and a lagging replica an old one (with a
    /// client that sends `next_sequence` as a read).
    pub(crate) fn read_as(
        &self,
        request: &DirectoryRequest,
        planted: bool,
    ) -> Option<Outcome<Self>> {
        match request {
            DirectoryRequest::Lookup { users } => Some(Ok(self.lookup(users))),
            DirectoryRequest::NextSequence if planted => {
                Some(Ok(DirectoryResponse::Sequence(self.sequence + 1)))
            }
            _ => None,
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
}

fn check_user(user: &str) -> Result<(), String> {
    one_to("a user name has", user.len(), USER_BYTES_MAX, "bytes")
}

impl Service for Directory {
    /// Users by name; a lookup must name users of one group; the
    /// sequence is one counter, on group 1.
    fn placement(request: &DirectoryRequest) -> crate::sharded::Placement<'_> {
        use crate::sharded::Placement;
        match request {
            DirectoryRequest::Connect { user, .. } | DirectoryRequest::Disconnect { user } => {
                Placement::Key(user.as_bytes())
            }
            DirectoryRequest::Lookup { users } => Placement::Keys {
                what: "lookup",
                keys: users.iter().map(|u| u.as_bytes()).collect(),
            },
            DirectoryRequest::NextSequence => Placement::First {
                why: "the cluster-wide sequence is one counter",
            },
        }
    }

    type Request = DirectoryRequest;
    type Response = DirectoryResponse;

    fn apply(
        &mut self,
        request: DirectoryRequest,
        _at: Applied,
    ) -> Result<DirectoryResponse, String> {
        match request {
            DirectoryRequest::Connect { user, address } => {
                if !self.users.contains_key(&user) && self.users.len() >= USERS_MAX {
                    return Err(format!(
                        "the directory holds its limit of {USERS_MAX} users; disconnect some first"
                    ));
                }
                self.users.insert(user, address);
                Ok(DirectoryResponse::Done)
            }
            DirectoryRequest::Disconnect { user } => {
                self.users.remove(&user);
                Ok(DirectoryResponse::Done)
            }
            DirectoryRequest::Lookup { users } => Ok(self.lookup(&users)),
            DirectoryRequest::NextSequence => {
                self.sequence = self
                    .sequence
                    .checked_add(1)
                    .ok_or("the sequence is exhausted")?;
                Ok(DirectoryResponse::Sequence(self.sequence))
            }
        }
    }

    fn read(&self, request: &DirectoryRequest) -> Option<Outcome<Self>> {
        self.read_as(request, false)
    }

    fn check_restored(&self) -> Result<(), String> {
        crate::service::at_most("users", self.users.len(), USERS_MAX)
    }

    #[cfg(feature = "cli")]
    type Command = DirectoryRequest;

    #[cfg(feature = "cli")]
    fn show(request: &Self::Request, response: Self::Response, out: &mut Out) -> Printed {
        match (request, response) {
            (DirectoryRequest::Lookup { users }, DirectoryResponse::Addresses(addresses)) => {
                for (user, address) in users.iter().zip(addresses) {
                    match address {
                        Some(address) => writeln!(out, "{user}={address}")?,
                        None => writeln!(out, "{user} offline")?,
                    }
                }
            }
            (_, DirectoryResponse::Sequence(number)) => writeln!(out, "{number}")?,
            _ => {}
        }
        Ok(crate::Shown::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{testing, ServiceMachine};
    use concord::state_machine::StateMachine;

    fn connect(user: &str, address: &str) -> DirectoryRequest {
        DirectoryRequest::Connect {
            user: user.into(),
            address: address.into(),
        }
    }

    fn lookup(users: &[&str]) -> DirectoryRequest {
        DirectoryRequest::Lookup {
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn connect_lookup_disconnect_and_sequence() {
        let mut directory = ServiceMachine::<Directory>::new();
        let connect = connect("ann", "10.0.0.1:5000");
        let mut apply = |index, request| testing::apply(&mut directory, index, &request);
        assert_eq!(apply(1, connect), Ok(DirectoryResponse::Done));
        let expected = Ok(DirectoryResponse::Addresses(vec![
            Some("10.0.0.1:5000".into()),
            None,
        ]));
        assert_eq!(apply(2, lookup(&["ann", "bob"])), expected);
        let disconnect = DirectoryRequest::Disconnect { user: "ann".into() };
        assert_eq!(apply(3, disconnect), Ok(DirectoryResponse::Done));
        assert_eq!(
            apply(4, lookup(&["ann"])),
            Ok(DirectoryResponse::Addresses(vec![None]))
        );
        for expected in 1..=3 {
            assert_eq!(
                apply(4 + expected, DirectoryRequest::NextSequence),
                Ok(DirectoryResponse::Sequence(expected))
            );
        }
        assert_eq!(
            testing::query(&directory, &lookup(&["ann"])),
            Some(Ok(DirectoryResponse::Addresses(vec![None])))
        );
        // next_sequence is a write: never answered as a read.
        assert_eq!(
            testing::query(&directory, &DirectoryRequest::NextSequence),
            None
        );
    }

    #[test]
    fn invalid_requests_are_refused_and_change_nothing() {
        let mut directory = ServiceMachine::<Directory>::new();
        let before = directory.snapshot();
        for request in [
            connect("ann", "not an address"),
            connect("", "10.0.0.1:1"),
            lookup(&[]),
        ] {
            assert!(testing::apply(&mut directory, 1, &request).is_err());
        }
        assert_eq!(directory.snapshot(), before);
    }

    #[test]
    fn snapshot_keeps_users_and_the_sequence() {
        let mut directory = ServiceMachine::<Directory>::new();
        let connect = connect("ann", "[::1]:7");
        testing::apply(&mut directory, 1, &connect).unwrap();
        testing::apply(&mut directory, 2, &DirectoryRequest::NextSequence).unwrap();
        let mut copy = testing::restored_copy(&directory);
        assert_eq!(
            testing::apply(&mut copy, 3, &DirectoryRequest::NextSequence),
            Ok(DirectoryResponse::Sequence(2))
        );
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_bug_answers_next_sequence_from_the_local_counter() {
        let directory = ServiceMachine::<Directory>::with_planted_bug();
        let first = testing::query(&directory, &DirectoryRequest::NextSequence);
        assert_eq!(first, Some(Ok(DirectoryResponse::Sequence(1))));
        // The same number twice: nothing was recorded.
        assert_eq!(
            testing::query(&directory, &DirectoryRequest::NextSequence),
            first
        );
    }
}
