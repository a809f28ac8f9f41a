//! Writes to a multi-group cluster that are applied exactly once, even
//! when their answers are lost: a [`RoutingClient`] with a client session
//! in every group it writes to (see [`concord::multi::sessions`] for the
//! groups' side and why one session per group).
//!
//! The first write to a group registers a session there (one entry of
//! that group's log); then each write carries the session's id and its
//! next sequence number. A write whose answer was lost (the connection
//! broke after it was sent, no answer in time, the leader changed while
//! it was in flight: [`RoutingError::Unknown`]) is sent again with the
//! same number, up to [`SessionConfig::retries_max`] times: the group
//! applies it at most once and answers every copy with the one outcome.
//!
//! The outcome stays unknown only when
//!
//! * the group no longer holds the session when a retry arrives
//!   ([`SessionError::Expired`]): the group evicted it (it holds a bounded
//!   number, the least recently used go first), so it cannot tell whether
//!   the first copy was applied; or
//! * no copy is answered within the retries
//!   ([`SessionError::Unanswered`]): the cluster is unreachable or has no
//!   leader for that long.
//!
//! A write answered "session expired" on its first copy was certainly not
//! applied: the client opens a new session and sends it again.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use concord::multi::sessions;
use concord::multi::GroupId;
use concord::session::{ClientId, SequenceNumber, SessionResponse};

use super::routing_client::{RoutingClient, RoutingError};
use super::wire::GroupOp;

/// Options of a [`SessionClient`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Most times a write whose outcome is unknown is sent again (and a
    /// registration whose answer was lost).
    pub retries_max: u32,
    /// Wait before the first retry, doubled after each up to
    /// `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest wait between retries.
    pub retry_backoff_max: Duration,
    /// Most groups a session is kept open in; past it the lowest group's
    /// is forgotten here (the group evicts it in time) and opened again on
    /// the next write there.
    pub sessions_max: usize,
    /// Most sessions opened in one group for one write whose new session
    /// was evicted before the write reached it (a group whose table other
    /// clients churn faster than this client writes).
    pub registrations_per_write_max: u32,
    /// Planted mistake for the madsim sweep (`--bug
    /// retry-without-session`): a write whose answer was lost is sent
    /// again under a fresh sequence number, so the group applies it
    /// again if the lost copy was applied.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_retry_without_session: bool,
}

impl SessionConfig {
    /// Whether the planted retry mistake is on.
    fn retry_without_session(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_retry_without_session
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }
}

impl Default for SessionConfig {
    /// 16 retries, 10 ms to 1 s apart; sessions in up to 100,000 groups;
    /// 3 registrations per write.
    fn default() -> Self {
        SessionConfig {
            retries_max: 16,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_secs(1),
            sessions_max: 100_000,
            registrations_per_write_max: 3,
            #[cfg(feature = "planted-bugs")]
            planted_retry_without_session: false,
        }
    }
}

/// Why a write through a [`SessionClient`] did not get its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The write (or the registration before it) was certainly not
    /// applied: see the routing error.
    #[error(transparent)]
    Routing(RoutingError),
    /// A retry of the write found the group without the session: the
    /// group evicted it, so whether the write was applied is unknown.
    #[error(
        "group {group}: outcome unknown: the write's answer was lost and by the time it was \
         sent again the group had expired session {client} (it keeps {} sessions, the least \
         recently used go first); read the data to learn whether it was applied",
        sessions::GROUP_SESSIONS_MAX
    )]
    Expired {
        /// The group.
        group: GroupId,
        /// The expired session.
        client: ClientId,
    },
    /// No copy of the write was answered: the outcome is unknown.
    #[error(
        "group {group}: outcome unknown: write {seq} of session {client} was sent {sends} \
         times and no answer came back (last: {last}); the session is kept, so the group \
         applies it at most once"
    )]
    Unanswered {
        /// The group.
        group: GroupId,
        /// The session.
        client: ClientId,
        /// The write's sequence number.
        seq: SequenceNumber,
        /// Copies sent.
        sends: u32,
        /// What the last copy met.
        last: String,
    },
    /// The group answered something that is no session answer (a server
    /// without sessions), or refused the request as malformed; nothing
    /// was applied.
    #[error("group {group}: {reason}")]
    Answer {
        /// The group.
        group: GroupId,
        /// What was wrong.
        reason: String,
    },
}

impl SessionError {
    /// Whether the write may have been applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            SessionError::Expired { .. } | SessionError::Unanswered { .. }
        )
    }
}

/// Counters of a [`SessionClient`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions opened (registrations answered).
    pub registrations: u64,
    /// Writes answered.
    pub writes: u64,
    /// Copies of writes sent again after their outcome was unknown.
    pub retries: u64,
    /// Sessions found expired by a write's first copy and opened again.
    pub reopened: u64,
}

/// A session open in one group.
#[derive(Clone, Copy, Debug)]
struct Open {
    client: ClientId,
    /// The last sequence number used (sent at least once).
    last_seq: SequenceNumber,
}

/// A [`RoutingClient`] whose writes carry a session (see the
/// [module documentation](self)).
pub struct SessionClient {
    routing: RoutingClient,
    config: SessionConfig,
    sessions: BTreeMap<GroupId, Open>,
    stats: SessionStats,
}

/// What one write attempt under one session ended with.
enum Outcome {
    Done(Bytes),
    /// The session is gone and the write certainly was not applied.
    Reopen,
}

impl SessionClient {
    /// Writes with sessions over `routing`.
    pub fn new(routing: RoutingClient, config: SessionConfig) -> Self {
        SessionClient {
            routing,
            config,
            sessions: BTreeMap::new(),
            stats: SessionStats::default(),
        }
    }

    /// The routing client underneath.
    pub fn routing(&self) -> &RoutingClient {
        &self.routing
    }

    /// The routing client underneath, to send a request to one node
    /// ([`RoutingClient::call_node`]) or teach it one.
    pub fn routing_mut(&mut self) -> &mut RoutingClient {
        &mut self.routing
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The session open in `group`, if any.
    pub fn session(&self, group: GroupId) -> Option<ClientId> {
        self.sessions.get(&group).map(|open| open.client)
    }

    /// Sends `op` as it is (a read: retried freely, it changes nothing).
    pub async fn call(&mut self, group: GroupId, op: GroupOp) -> Result<Bytes, RoutingError> {
        self.routing.call(group, op).await
    }

    /// Sends `command` to `group` inside the client's session there
    /// (opened first if needed); the group's state machine's answer. Sent
    /// again with the same sequence number while its outcome is unknown.
    pub async fn command(&mut self, group: GroupId, command: &[u8]) -> Result<Bytes, SessionError> {
        for _ in 0..self.config.registrations_per_write_max {
            match self.command_once(group, command).await? {
                Outcome::Done(answer) => {
                    self.stats.writes += 1;
                    return Ok(answer);
                }
                Outcome::Reopen => self.stats.reopened += 1,
            }
        }
        Err(SessionError::Answer {
            group,
            reason: format!(
                "the write was not applied: {} sessions opened for it were each expired before \
                 it reached them (the group's table of {} sessions turns over faster than this \
                 client writes); try again",
                self.config.registrations_per_write_max,
                sessions::GROUP_SESSIONS_MAX
            ),
        })
    }

    async fn command_once(
        &mut self,
        group: GroupId,
        command: &[u8],
    ) -> Result<Outcome, SessionError> {
        let client = self.open(group).await?;
        let open = self.sessions.get_mut(&group).expect("opened above");
        // The number is used up by the first copy, answered or not: a
        // later write reusing it would be answered this one's response.
        open.last_seq += 1;
        let seq = open.last_seq;
        let mut seq = seq;
        let mut request = sessions::encode_command(client, seq, command);
        let mut maybe_applied = false;
        let mut backoff = self.config.retry_backoff;
        let mut last = String::new();
        for send in 1..=self.config.retries_max.saturating_add(1) {
            if send > 1 {
                self.stats.retries += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.retry_backoff_max);
                if maybe_applied && self.config.retry_without_session() {
                    // The planted mistake: the retry is a new write.
                    let open = self.sessions.get_mut(&group).expect("opened above");
                    open.last_seq += 1;
                    seq = open.last_seq;
                    request = sessions::encode_command(client, seq, command);
                }
            }
            let answer = match self
                .routing
                .call(group, GroupOp::Command(request.clone()))
                .await
            {
                Ok(answer) => answer,
                Err(RoutingError::Unknown { reason, .. }) => {
                    maybe_applied = true;
                    last = reason;
                    continue;
                }
                Err(error @ RoutingError::Exhausted { .. }) if maybe_applied => {
                    last = error.to_string();
                    continue;
                }
                Err(error) if !maybe_applied => return Err(SessionError::Routing(error)),
                Err(error) => {
                    return Err(SessionError::Unanswered {
                        group,
                        client,
                        seq,
                        sends: send,
                        last: error.to_string(),
                    })
                }
            };
            return match SessionResponse::decode(&answer) {
                Ok(SessionResponse::Ok(response)) => Ok(Outcome::Done(response)),
                Ok(SessionResponse::SessionExpired) => {
                    self.sessions.remove(&group);
                    if maybe_applied {
                        Err(SessionError::Expired { group, client })
                    } else {
                        Ok(Outcome::Reopen)
                    }
                }
                other => Err(SessionError::Answer {
                    group,
                    reason: format!(
                        "{}the answer to a write is no session answer ({other:?}); are the \
                         servers older than this client?",
                        if maybe_applied {
                            "outcome unknown: "
                        } else {
                            ""
                        }
                    ),
                }),
            };
        }
        Err(SessionError::Unanswered {
            group,
            client,
            seq,
            sends: self.config.retries_max.saturating_add(1),
            last,
        })
    }

    /// The session open in `group`, registered now if there is none.
    async fn open(&mut self, group: GroupId) -> Result<ClientId, SessionError> {
        if let Some(open) = self.sessions.get(&group) {
            return Ok(open.client);
        }
        let mut backoff = self.config.retry_backoff;
        let mut last = String::new();
        for send in 1..=self.config.retries_max.saturating_add(1) {
            if send > 1 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.retry_backoff_max);
            }
            // A registration whose answer was lost is sent again: the one
            // opened by the lost copy is never used and expires in turn.
            let answer = match self
                .routing
                .call(group, GroupOp::Command(sessions::encode_register()))
                .await
            {
                Ok(answer) => answer,
                Err(RoutingError::Unknown { reason, .. }) => {
                    last = reason;
                    continue;
                }
                Err(error) => return Err(SessionError::Routing(error)),
            };
            return match SessionResponse::decode(&answer) {
                Ok(SessionResponse::Registered { client }) => {
                    self.stats.registrations += 1;
                    if self.sessions.len() >= self.config.sessions_max.max(1) {
                        self.sessions.pop_first();
                    }
                    self.sessions.insert(
                        group,
                        Open {
                            client,
                            last_seq: 0,
                        },
                    );
                    Ok(client)
                }
                other => Err(SessionError::Answer {
                    group,
                    reason: format!(
                        "cannot open a session: the group answered {other:?}; are the servers \
                         older than this client?"
                    ),
                }),
            };
        }
        Err(SessionError::Routing(RoutingError::Exhausted {
            group,
            attempts: self.config.retries_max.saturating_add(1),
            last: format!("no answer to a session registration: {last}"),
        }))
    }
}
