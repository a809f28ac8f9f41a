//! The session table's promises, checked from outside: a reference model
//! of the table the module documentation of `concord::session` describes
//! (bounded, least recently used session evicted first, a duplicate
//! answered from the cache counts as a use), fed with the committed log in
//! order, against which every answer a client receives is compared.
//!
//! The model decodes requests itself, strictly, so it does not share a
//! decoding mistake with the table it judges. It is off in forced-recovery
//! runs (a recovery expires sessions and starts a new id epoch, which the
//! forced-recovery checks judge).

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::session::{ClientId, DecodeError, SequenceNumber, SessionResponse};
use concord::state_machine::StateMachine;
use concord::{EntryPayload, Index, Node};

use super::{FailureKind, Simulation};
use crate::config::SimConfig;
use crate::workload::Workload;

/// What the session table must have done with the committed entry at one
/// index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Not a client request (no-op, configuration, host entry).
    NotARequest,
    /// A session opened with this id.
    Registered(ClientId),
    /// A new command executed; the session's last use before it.
    Executed(Index),
    /// A retry answered from the cache; the session's last use before it.
    Cached(Index),
    /// Unknown session or older sequence number.
    Expired,
    /// Not decodable.
    Malformed,
}

#[derive(Clone, Copy, Debug)]
struct Session {
    last_seq: SequenceNumber,
    answered: bool,
    last_used: Index,
}

/// The reference table and the outcome of every committed index.
pub(super) struct SessionModel {
    capacity: usize,
    sessions: BTreeMap<ClientId, Session>,
    /// (last used index, client): least recently used first.
    by_last_use: BTreeSet<(Index, ClientId)>,
    /// `outcomes[i - 1]`: the outcome at committed index `i`.
    outcomes: Vec<Outcome>,
    /// Session evicted at each registration index that evicted one, with
    /// its last use.
    evicted: BTreeMap<ClientId, (Index, Index)>,
}

/// How full the session table of a seed may get: in about a quarter of
/// the seeds (with `SimConfig::session_pressure` on and a table that the
/// clients could not fill anyway) the table holds fewer sessions than
/// there are clients, drawn from its own random stream.
pub(super) fn draw_capacity(config: &SimConfig) -> usize {
    if !config.session_pressure || config.clients < 2 || config.max_sessions < config.clients {
        return config.max_sessions;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7365_7373_696f_6e73);
    rng.set_stream(37);
    if !rng.gen_bool(0.25) {
        return config.max_sessions;
    }
    rng.gen_range((config.clients / 2).max(1)..config.clients)
}

impl SessionModel {
    pub(super) fn new(capacity: usize) -> SessionModel {
        SessionModel {
            capacity: capacity.max(1),
            sessions: BTreeMap::new(),
            by_last_use: BTreeSet::new(),
            outcomes: Vec::new(),
            evicted: BTreeMap::new(),
        }
    }

    /// Sessions evicted so far.
    pub(super) fn evictions(&self) -> u64 {
        self.evicted.len() as u64
    }

    /// Indices judged so far.
    pub(super) fn judged(&self) -> Index {
        self.outcomes.len() as Index
    }

    /// Judges the committed entries after those already judged, up to
    /// `committed`, reading them from `node` (which just reported them
    /// committed, so it holds them). Stops at the first it does not hold.
    pub(super) fn catch_up(&mut self, node: &Node, committed: Index) {
        while self.judged() < committed {
            let index = self.judged() + 1;
            let Some(entry) = node.entry(index) else {
                return;
            };
            let outcome = match &entry.payload {
                EntryPayload::Command(bytes) => self.apply(index, bytes),
                _ => Outcome::NotARequest,
            };
            self.outcomes.push(outcome);
        }
    }

    /// The outcome at committed index `index`, if judged.
    pub(super) fn outcome(&self, index: Index) -> Option<Outcome> {
        let slot = index.checked_sub(1)?;
        self.outcomes.get(slot as usize).copied()
    }

    /// Where session `client` was evicted, and its last use then.
    pub(super) fn eviction(&self, client: ClientId) -> Option<(Index, Index)> {
        self.evicted.get(&client).copied()
    }

    /// The `count` least recently used sessions held, with their last use.
    pub(super) fn least_recent(&self, count: usize) -> Vec<(ClientId, Index)> {
        self.by_last_use
            .iter()
            .take(count)
            .map(|(used, client)| (*client, *used))
            .collect()
    }

    fn apply(&mut self, index: Index, bytes: &[u8]) -> Outcome {
        match bytes {
            [0] => self.register(index),
            [1, rest @ ..] if rest.len() >= 16 => {
                let client = u64::from_le_bytes(rest[..8].try_into().unwrap_or([0; 8]));
                let seq = u64::from_le_bytes(rest[8..16].try_into().unwrap_or([0; 8]));
                self.command(index, client, seq)
            }
            _ => Outcome::Malformed,
        }
    }

    fn register(&mut self, index: Index) -> Outcome {
        if self.sessions.len() >= self.capacity {
            if let Some(&(used, victim)) = self.by_last_use.iter().next() {
                self.by_last_use.remove(&(used, victim));
                self.sessions.remove(&victim);
                self.evicted.insert(victim, (index, used));
            }
        }
        // Without a forced recovery the id is the registration's index.
        let client = index;
        self.sessions.insert(
            client,
            Session {
                last_seq: 0,
                answered: false,
                last_used: index,
            },
        );
        self.by_last_use.insert((index, client));
        Outcome::Registered(client)
    }

    fn command(&mut self, index: Index, client: ClientId, seq: SequenceNumber) -> Outcome {
        let Some(session) = self.sessions.get_mut(&client) else {
            return Outcome::Expired;
        };
        let used = session.last_used;
        let outcome = if seq > session.last_seq {
            session.last_seq = seq;
            session.answered = true;
            Outcome::Executed(used)
        } else if seq == session.last_seq && session.answered {
            Outcome::Cached(used)
        } else {
            return Outcome::Expired;
        };
        self.by_last_use.remove(&(session.last_used, client));
        session.last_used = session.last_used.max(index);
        self.by_last_use.insert((session.last_used, client));
        outcome
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Judges the entries node `index` just reported committed (called
    /// right after the safety checker took them from it).
    pub(super) fn session_model_catch_up(&mut self, index: usize) {
        let (Some(model), Some(node)) =
            (self.session_model.as_mut(), self.hosts[index].node.as_ref())
        else {
            return;
        };
        model.catch_up(node, self.safety.committed_len());
    }

    /// Compares a client's answer from log index `index` with what the
    /// session table had to answer there. False (the run failed) when they
    /// differ: a session expired although the least-recently-used order
    /// keeps it, a session answered although that order evicted it, or
    /// any other answer the contract does not give.
    pub(super) fn judge_session_answer(
        &mut self,
        client: usize,
        response: &Result<SessionResponse, DecodeError>,
        index: Index,
    ) -> bool {
        let Some(model) = self.session_model.as_ref() else {
            return true;
        };
        let Some(outcome) = model.outcome(index) else {
            return true;
        };
        let agrees = match (outcome, response) {
            (Outcome::Registered(id), Ok(SessionResponse::Registered { client })) => id == *client,
            (Outcome::Executed(_) | Outcome::Cached(_), Ok(SessionResponse::Ok(_))) => true,
            (Outcome::Expired, Ok(SessionResponse::SessionExpired)) => true,
            (Outcome::Malformed, Ok(SessionResponse::Malformed)) => true,
            _ => false,
        };
        if agrees {
            return true;
        }
        let session = self.clients[client].session;
        let capacity = model.capacity;
        let (kind, message) = match (outcome, response, session) {
            (
                Outcome::Executed(used) | Outcome::Cached(used),
                Ok(SessionResponse::SessionExpired),
                Some(id),
            ) => (
                FailureKind::SessionLost,
                format!(
                    "client {client}'s session {id} expired at log index {index}, but the table ({capacity} sessions) evicts the least recently used session first and, by the committed log, session {id} (last used at index {used}) was still held there; the least recently used held now: {:?} (session, last use). A duplicate answered from the cache counts as a use (SessionTable::touch)",
                    model.least_recent(3),
                ),
            ),
            (Outcome::Expired, Ok(SessionResponse::Ok(_)), Some(id)) => (
                FailureKind::SessionLost,
                match model.eviction(id) {
                    Some((evicted_at, last_used)) => format!(
                        "client {client}'s session {id} was answered from log index {index}, but by the committed log the table ({capacity} sessions) evicted it at index {evicted_at} as the least recently used (last used at index {last_used}): the table kept it and evicted another in its place (SessionTable::register, touch)"
                    ),
                    None => format!(
                        "client {client}'s command on session {id} was executed or answered from the cache at log index {index}, but by the committed log its sequence number is below the session's last (or the session is unknown): it must be answered SessionExpired (SessionTable::admit)"
                    ),
                },
            ),
            _ => (
                FailureKind::SessionContract,
                format!(
                    "client {client} was answered {response:?} from log index {index}, but by the committed log the session table's answer there is {outcome:?} (concord::session)"
                ),
            ),
        };
        self.fail(kind, None, message);
        false
    }
}
