//! The clients: each runs one operation of the workload at a time over the
//! simulated network, with a session, timeouts, retries with backoff and
//! leader discovery, and reports every call and return to the workload.
//!
//! Like the real client (the one runtime's
//! `concord_tokio::multi::one_group_client::OneGroupClient`, whose
//! routing client avoids failing nodes the same way), a client learns
//! from failure: a server that did not answer an attempt in time, or refused a
//! follower read, is avoided for a while (half the client timeout,
//! doubling on each new failure up to [`AVOID_MAX_TIMEOUTS`] timeouts),
//! then probed again; an answer clears it. A server that knows it is no
//! longer a member refuses reads at once. The avoidance check: during a
//! stretch in which a server is dark to clients (crashed, paused, or for
//! follower reads removed and aware of it), a client sends it no more
//! attempts than [`avoidance_bound`] allows, outside the probes it makes
//! when every server is avoided.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::session::{self, ClientId, SessionResponse};
use concord::state_machine::StateMachine;
use concord::{Index, NodeId, ReadPath, Term};

use super::{format_time, Event, FailureKind, Simulation, MS};
use crate::config::SimConfig;
use crate::faults::exponential;
use crate::workload::{OpResult, TookEffect, Workload};

/// A server's answer to a client request.
#[derive(Clone, Debug)]
pub(super) enum Reply {
    Refused {
        hint: Option<NodeId>,
    },
    Response {
        bytes: Bytes,
        index: Index,
        term: Term,
        /// When it was sent (a forced recovery judges by it whether it
        /// speaks of the old cluster or the recovered one).
        sent_ns: u64,
    },
    Unknown,
    /// A read served without the log.
    Read {
        bytes: Bytes,
        path: ReadPath,
        /// The serving state machine's applied index.
        applied: Index,
    },
}

/// A client request or a reply in flight on the network.
pub(super) enum ClientMessage {
    Request {
        client: u32,
        attempt: u32,
        node: u8,
        payload: Bytes,
        read: Option<ReadPath>,
    },
    Reply {
        client: u32,
        attempt: u32,
        reply: Reply,
    },
}

/// The operation a client is running, across its attempts.
pub(super) struct ClientOp {
    pub(super) payload: Bytes,
    pub(super) command: Bytes,
    pub(super) register: bool,
    pub(super) call_ns: u64,
    pub(super) attempts: u32,
    pub(super) maybe_applied: bool,
    /// A read served without the log, on this path.
    pub(super) read: Option<ReadPath>,
    /// A session-contract probe, not a workload command.
    pub(super) probe: Option<Probe>,
    /// Which of the client's workload commands this is (0-based; 0 for
    /// registrations and probes), for [`Workload::took_effect`].
    pub(super) nth: u64,
}

/// A request that tests the session contract instead of running a
/// workload command: the answer is known in advance and nothing may be
/// executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// A request the session layer cannot decode (what is wrong with
    /// it): answered `Malformed`.
    Malformed(&'static str),
    /// Command `seq` of the client's session, below the last one the
    /// client saw answered: answered `SessionExpired`, never from the
    /// cache of a newer command (a pipelining client's late retry).
    Stale {
        /// The older sequence number.
        seq: u64,
    },
}

impl Probe {
    /// The only answer the session contract allows.
    fn expected(self) -> SessionResponse {
        match self {
            Probe::Malformed(_) => SessionResponse::Malformed,
            Probe::Stale { .. } => SessionResponse::SessionExpired,
        }
    }

    fn describe(self) -> String {
        match self {
            Probe::Malformed(what) => format!("a malformed request ({what})"),
            Probe::Stale { seq } => {
                format!("command #{seq} again after a newer one was answered")
            }
        }
    }
}

/// The session-contract probes of a seed (`SimConfig::client_probes`):
/// drawn in about half the seeds, from their own random stream so the
/// other draws of a seed stay as they were.
pub(super) struct ClientProbes {
    rng: ChaCha8Rng,
    /// The chance that a client's next operation is a probe.
    rate: f64,
    /// Probes answered as the contract promises.
    pub(super) answered: u64,
    /// The planted client bug `HostBugs::client_probes_well_formed`.
    well_formed: bool,
}

impl ClientProbes {
    /// `None` when probes are off, in a forced-recovery run (a recovery
    /// may take a session's last commands back, so an older number may
    /// be new again), or not drawn for this seed.
    pub(super) fn draw(config: &SimConfig, forced_recovery: bool) -> Option<ClientProbes> {
        if !config.client_probes || forced_recovery {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7072_6f62_6573_0001);
        rng.set_stream(31);
        if !rng.gen_bool(0.5) {
            return None;
        }
        let rate = rng.gen_range(0.02..0.2);
        Some(ClientProbes {
            rng,
            rate,
            answered: 0,
            well_formed: config.bugs.client_probes_well_formed,
        })
    }

    /// Whether the next operation is a probe, and if so which one and
    /// its payload. `last_ok_seq` is the newest sequence number of the
    /// session answered `Ok` to the client (0 for none).
    fn next(&mut self, session_id: ClientId, last_ok_seq: u64) -> Option<(Probe, Bytes)> {
        if !self.rng.gen_bool(self.rate) {
            return None;
        }
        let rng = &mut self.rng;
        let kind = rng.gen_range(0..5);
        let probe = match kind {
            0 if last_ok_seq >= 2 => {
                let seq = last_ok_seq - 1;
                // The bug: the newest answered number, a genuine retry.
                let sent = if self.well_formed { last_ok_seq } else { seq };
                let payload = session::encode_command(session_id, sent, &[]);
                return Some((Probe::Stale { seq }, payload));
            }
            1 => (Probe::Malformed("empty"), Bytes::new()),
            2 => {
                let len = rng.gen_range(1..=8);
                // The bug: no trailing bytes, a genuine registration.
                let len = if self.well_formed { 0 } else { len };
                (
                    Probe::Malformed("registration with trailing bytes"),
                    framed(rng, 0, len),
                )
            }
            3 => {
                let len = rng.gen_range(0..16);
                (
                    Probe::Malformed("command shorter than its header"),
                    framed(rng, 1, len),
                )
            }
            _ => {
                let tag = rng.gen_range(2..=255u8);
                let len = rng.gen_range(0..=16);
                (Probe::Malformed("unknown tag"), framed(rng, tag, len))
            }
        };
        Some(probe)
    }
}

/// `tag` followed by `len` random bytes.
fn framed(rng: &mut ChaCha8Rng, tag: u8, len: usize) -> Bytes {
    let mut payload = vec![tag];
    payload.extend((0..len).map(|_| rng.gen::<u8>()));
    Bytes::from(payload)
}

/// One client: its session, its idea of the leader, its current operation.
pub(super) struct Client {
    pub(super) session: Option<ClientId>,
    pub(super) seq: u64,
    /// Workload commands issued so far.
    pub(super) commands: u64,
    pub(super) leader: Option<NodeId>,
    pub(super) op: Option<ClientOp>,
    pub(super) attempt: u32,
    pub(super) last_target: NodeId,
    pub(super) done: bool,
    /// Registrations sent (every attempt): each may create a session.
    pub(super) registrations_sent: u64,
    /// The newest sequence number of the session answered `Ok` (0 for
    /// none): the session table has executed it, so every lower number
    /// is expired.
    pub(super) last_ok_seq: u64,
    /// Per server (index `id - 1`): not chosen before this time unless
    /// every server is avoided.
    pub(super) avoid_until_ns: Vec<u64>,
    /// Per server: the last avoidance period (0: none since it answered).
    pub(super) avoid_ns: Vec<u64>,
    /// Per server: since when, and how many attempts, this client sent it
    /// while it was dark to clients (the avoidance check).
    pub(super) dark_streak: Vec<Option<(u64, u64)>>,
}

impl Client {
    /// A client of `nodes` servers, with no session yet.
    pub(super) fn new(nodes: usize) -> Client {
        Client {
            session: None,
            seq: 0,
            commands: 0,
            leader: None,
            op: None,
            attempt: 0,
            last_target: 0,
            done: false,
            registrations_sent: 0,
            last_ok_seq: 0,
            avoid_until_ns: vec![0; nodes],
            avoid_ns: vec![0; nodes],
            dark_streak: vec![None; nodes],
        }
    }

    /// Makes room for `nodes` servers (a forced recovery adds fresh ones
    /// during the run).
    fn fit(&mut self, nodes: usize) {
        if self.avoid_ns.len() < nodes {
            self.avoid_until_ns.resize(nodes, 0);
            self.avoid_ns.resize(nodes, 0);
            self.dark_streak.resize(nodes, None);
        }
    }

    fn avoided(&self, id: NodeId, now_ns: u64) -> bool {
        self.avoid_until_ns
            .get(id as usize - 1)
            .is_some_and(|until| *until > now_ns)
    }
}

/// The longest avoidance of a failed server, in client timeouts (the real
/// client's 30 s over its 2 s request timeout).
pub(super) const AVOID_MAX_TIMEOUTS: u64 = 15;

/// Most attempts a client that learns from failure sends a server during
/// `dark_ns` of one dark stretch (from its first attempt in the stretch):
/// the first, then one probe per avoidance period, the periods doubling
/// from `avoid_min_ns` up to `avoid_max_ns`, and one of slack.
pub(super) fn avoidance_bound(dark_ns: u64, avoid_min_ns: u64, avoid_max_ns: u64) -> u64 {
    let periods = dark_ns as f64 / avoid_min_ns.max(1) as f64 + 1.0;
    2 + periods.log2().ceil() as u64 + dark_ns / avoid_max_ns.max(1)
}

/// What a client reports for an operation it abandons: unknown if any
/// attempt may have been applied, failed if none can have been.
pub(super) fn abandoned_result(maybe_applied: bool) -> OpResult<'static> {
    if maybe_applied {
        OpResult::Unknown
    } else {
        OpResult::Failed
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    pub(super) fn reply(&mut self, client: u32, attempt: u32, reply: Reply) {
        let Some(delay) = self.message_delay() else {
            return;
        };
        let slot = self.client_messages.insert(ClientMessage::Reply {
            client,
            attempt,
            reply,
        });
        self.schedule(delay, Event::ToClient { slot });
    }

    pub(super) fn client_wake(&mut self, client: usize) {
        if self.clients[client].op.is_some()
            || self.clients[client].done
            || self.healed && self.probe.satisfied
        {
            return;
        }
        let op = match self.clients[client].session {
            None => ClientOp {
                payload: session::encode_register(),
                command: Bytes::new(),
                register: true,
                call_ns: self.now,
                attempts: 0,
                maybe_applied: false,
                read: None,
                probe: None,
                nth: 0,
            },
            Some(session_id) => {
                let last_ok_seq = self.clients[client].last_ok_seq;
                if let Some((probe, payload)) = self
                    .probes
                    .as_mut()
                    .and_then(|probes| probes.next(session_id, last_ok_seq))
                {
                    self.note(None, || {
                        format!("client {client} probes the sessions: {}", probe.describe())
                    });
                    self.clients[client].op = Some(ClientOp {
                        payload,
                        command: Bytes::new(),
                        register: false,
                        call_ns: self.now,
                        attempts: 0,
                        maybe_applied: false,
                        read: None,
                        probe: Some(probe),
                        nth: 0,
                    });
                    self.client_send(client);
                    return;
                }
                let Some(command) =
                    self.workload
                        .next_command(client, self.now, &mut self.workload_rng)
                else {
                    self.clients[client].done = true;
                    return;
                };
                self.operations += 1;
                let read = if self.workload.is_read_only(&command) {
                    self.remember_read_probe(&command);
                    self.reads.pick(&mut self.client_rng)
                } else {
                    None
                };
                // A read sent without the log needs no session number.
                if read.is_none() {
                    self.clients[client].seq += 1;
                }
                let seq = self.clients[client].seq;
                let nth = self.clients[client].commands;
                self.clients[client].commands += 1;
                let payload = match read {
                    Some(_) => command.clone(),
                    None => {
                        // Where it takes effect is reported when a state
                        // machine first executes it.
                        self.effects.insert((session_id, seq), (client as u32, nth));
                        session::encode_command(session_id, seq, &command)
                    }
                };
                if self.timeline.is_some() {
                    let what = self.workload.describe(&command);
                    self.note(None, || format!("client {client} calls #{seq}: {what}"));
                }
                ClientOp {
                    payload,
                    command,
                    register: false,
                    call_ns: self.now,
                    attempts: 0,
                    maybe_applied: false,
                    read,
                    probe: None,
                    nth,
                }
            }
        };
        self.clients[client].op = Some(op);
        self.client_send(client);
    }

    pub(super) fn client_send(&mut self, client: usize) {
        let nodes = self.hosts.len() as NodeId;
        self.clients[client].fit(self.hosts.len());
        let follower_read = self.clients[client]
            .op
            .as_ref()
            .is_some_and(|op| op.read == Some(ReadPath::Follower));
        let (target, chosen) = match self.clients[client].leader {
            // A follower read goes to any server, spreading the load.
            Some(leader) if leader >= 1 && leader <= nodes && !follower_read => (leader, true),
            _ => self.client_pick(client),
        };
        if chosen && !self.check_dark_attempt(client, target, follower_read) {
            return;
        }
        let without_sessions = self.config.bugs.client_without_sessions;
        let state = &mut self.clients[client];
        state.last_target = target;
        state.attempt += 1;
        let attempt = state.attempt;
        let Some(op) = state.op.as_mut() else { return };
        op.attempts += 1;
        if op.register {
            state.registrations_sent += 1;
        }
        if without_sessions && !op.register && op.probe.is_none() && op.attempts > 1 {
            // The bug: a retry is sent as a new command.
            if let Some(session_id) = state.session {
                state.seq += 1;
                op.payload = session::encode_command(session_id, state.seq, &op.command);
            }
        }
        let payload = op.payload.clone();
        let read = op.read;
        self.schedule(
            self.config.client_timeout_ns,
            Event::ClientTimeout {
                client: client as u32,
                attempt,
            },
        );
        let Some(delay) = self.message_delay() else {
            return;
        };
        let slot = self.client_messages.insert(ClientMessage::Request {
            client: client as u32,
            attempt,
            node: (target - 1) as u8,
            payload,
            read,
        });
        self.schedule(delay, Event::ToNode { slot });
    }

    pub(super) fn client_timeout(&mut self, client: usize, attempt: u32) {
        let state = &mut self.clients[client];
        if state.attempt != attempt || state.op.is_none() {
            return;
        }
        if let Some(op) = state.op.as_mut() {
            op.maybe_applied = true;
        }
        state.leader = None;
        let target = state.last_target;
        self.client_failed(client, target);
        self.client_retry(client);
    }

    /// Ends the client's current operation if it has used all its attempts
    /// (or there is none). Returns whether there is nothing left to send.
    pub(super) fn client_out_of_attempts(&mut self, client: usize) -> bool {
        let Some(op) = self.clients[client].op.as_ref() else {
            return true;
        };
        if op.attempts < self.config.client_max_attempts {
            return false;
        }
        let result = abandoned_result(op.maybe_applied);
        self.client_done(client, result);
        true
    }

    /// Re-sends the current operation at once, or gives up after too many
    /// attempts.
    pub(super) fn client_retry(&mut self, client: usize) {
        if self.client_out_of_attempts(client) {
            return;
        }
        self.client_send(client);
    }

    pub(super) fn client_reply(&mut self, client: usize, attempt: u32, reply: Reply) {
        if self.clients[client].attempt != attempt || self.clients[client].op.is_none() {
            return;
        }
        let target = self.clients[client].last_target;
        match reply {
            Reply::Refused { hint } => {
                let follower_read = self.clients[client]
                    .op
                    .as_ref()
                    .is_some_and(|op| op.read == Some(ReadPath::Follower));
                if follower_read {
                    // It cannot serve reads now: avoided for a while.
                    self.client_failed(client, target);
                } else if target != 0 {
                    // It answered: however dark it was when the attempt
                    // went out (a paused server answers on resuming), the
                    // client has heard from it, so its dark stretch as
                    // this client sees it is over.
                    if let Some(streak) = self.clients[client]
                        .dark_streak
                        .get_mut(target as usize - 1)
                    {
                        *streak = None;
                    }
                }
                let now = self.now;
                let state = &mut self.clients[client];
                let redirect =
                    hint.filter(|hint| *hint != state.last_target && !state.avoided(*hint, now));
                state.leader = redirect;
                let backoff = if redirect.is_some() {
                    MS
                } else {
                    10 * MS + self.client_rng.gen_range(0..20 * MS)
                };
                self.client_retry_after_refusal(client, backoff);
            }
            Reply::Unknown => {
                self.client_answered(client, target);
                if let Some(op) = self.clients[client].op.as_mut() {
                    op.maybe_applied = true;
                }
                self.clients[client].leader = None;
                self.client_retry_after_refusal(client, 5 * MS);
            }
            Reply::Read {
                bytes,
                path,
                applied,
            } => {
                self.client_answered(client, target);
                self.operations_ok += 1;
                self.workload.served_by(client, path);
                if let Some(op) = self.clients[client].op.as_ref() {
                    if op.probe.is_none() && !op.register {
                        let nth = op.nth;
                        self.workload
                            .took_effect(client, nth, TookEffect::Read { applied });
                    }
                }
                self.client_done(client, OpResult::Ok(&bytes));
            }
            Reply::Response {
                bytes,
                index,
                term,
                sent_ns,
            } => {
                self.client_answered(client, target);
                let response = SessionResponse::decode(&bytes);
                if let Err(message) = decoding_is_strict(&bytes, &response, SessionResponse::decode)
                {
                    self.fail(FailureKind::SessionContract, None, message);
                    return;
                }
                let probe = self.clients[client].op.as_ref().and_then(|op| op.probe);
                if let Some(probe) = probe {
                    self.probe_answered(client, probe, &bytes, index);
                    return;
                }
                if !self.judge_session_answer(client, &response, index) {
                    return;
                }
                let register = self.clients[client]
                    .op
                    .as_ref()
                    .is_some_and(|op| op.register);
                match response {
                    Ok(SessionResponse::Registered { client: session_id }) if register => {
                        self.record_session(client, sent_ns, index, term);
                        self.clients[client].session = Some(session_id);
                        self.clients[client].seq = 0;
                        self.clients[client].last_ok_seq = 0;
                        self.clients[client].op = None;
                        self.note(None, || {
                            format!("client {client} registered session {session_id}")
                        });
                        self.schedule(
                            0,
                            Event::ClientWake {
                                client: client as u32,
                            },
                        );
                    }
                    Ok(SessionResponse::Ok(response)) if !register => {
                        self.clients[client].last_ok_seq = self.clients[client].seq;
                        self.record_ack(client, sent_ns, index, term);
                        self.operations_ok += 1;
                        self.client_done(client, OpResult::Ok(&response));
                    }
                    Ok(SessionResponse::SessionExpired) if !register => {
                        // A session is only ever forgotten by eviction, when
                        // the table is full. While fewer sessions can exist
                        // than it holds, "expired" means the table lost one
                        // (or no longer answers a retry from its cache).
                        let sessions_max: u64 =
                            self.clients.iter().map(|c| c.registrations_sent).sum();
                        if sessions_max <= self.config.max_sessions as u64
                            && !self.session_lost_by_recovery(client)
                        {
                            let message = format!(
                                "client {client}'s session expired, but at most {sessions_max} sessions were ever registered and the table holds {}",
                                self.config.max_sessions
                            );
                            self.fail(FailureKind::SessionLost, None, message);
                            return;
                        }
                        let maybe = self.clients[client]
                            .op
                            .as_ref()
                            .is_some_and(|op| op.maybe_applied);
                        self.clients[client].session = None;
                        self.note(None, || format!("client {client}: session expired"));
                        self.client_done(client, abandoned_result(maybe));
                    }
                    _ => {
                        let message = format!("client {client} got an unexpected response {response:?} at index {index}");
                        self.fail(FailureKind::StateMachineSafety, None, message);
                    }
                }
            }
        }
    }

    /// A probe's answer: the only one the session contract allows, or a
    /// failure.
    fn probe_answered(&mut self, client: usize, probe: Probe, bytes: &[u8], index: Index) {
        let expected = probe.expected();
        match SessionResponse::decode(bytes) {
            Ok(response) if response == expected => {
                if let Some(probes) = self.probes.as_mut() {
                    probes.answered += 1;
                }
                self.client_done(client, OpResult::Failed);
            }
            answer => {
                let message = format!(
                    "client {client} sent {} and was answered {answer:?} (bytes {bytes:?}) from log index {index}; the session contract answers it {expected:?} and executes nothing (concord::session: ClientRequest::decode, SessionTable::admit, SessionResponse::decode)",
                    probe.describe()
                );
                self.fail(FailureKind::SessionContract, None, message);
            }
        }
    }

    /// Closes the current attempt (late replies to it are ignored) and
    /// re-sends after `backoff_ns`, or gives up after too many attempts.
    pub(super) fn client_retry_after_refusal(&mut self, client: usize, backoff_ns: u64) {
        if self.client_out_of_attempts(client) {
            return;
        }
        self.clients[client].attempt += 1;
        let attempt = self.clients[client].attempt;
        self.schedule(
            backoff_ns,
            Event::ClientResend {
                client: client as u32,
                attempt,
            },
        );
    }

    /// The server for an attempt without a known leader (or a follower
    /// read): drawn at random, then redrawn among the servers the client
    /// does not avoid; when it avoids them all, the one whose avoidance
    /// ends first. Also whether it was chosen while another could have
    /// been (not such a last-resort probe).
    fn client_pick(&mut self, client: usize) -> (NodeId, bool) {
        let nodes = self.hosts.len() as NodeId;
        let drawn = self.client_rng.gen_range(1..=nodes);
        let now = self.now;
        let state = &self.clients[client];
        if !state.avoided(drawn, now) {
            return (drawn, true);
        }
        let open: Vec<NodeId> = (1..=nodes).filter(|id| !state.avoided(*id, now)).collect();
        if open.is_empty() {
            let earliest = (1..=nodes)
                .min_by_key(|id| state.avoid_until_ns[*id as usize - 1])
                .unwrap_or(drawn);
            return (earliest, false);
        }
        (open[self.client_rng.gen_range(0..open.len())], true)
    }

    /// Server `target` failed this client (no answer in time, or a
    /// refused follower read): avoided for twice as long as last time.
    fn client_failed(&mut self, client: usize, target: NodeId) {
        if target == 0 || self.config.bugs.client_forgets_failures {
            return;
        }
        let avoid_min_ns = (self.config.client_timeout_ns / 2).max(1);
        let avoid_max_ns = self.config.client_timeout_ns * AVOID_MAX_TIMEOUTS;
        let now = self.now;
        let nodes = self.hosts.len();
        let state = &mut self.clients[client];
        state.fit(nodes);
        let i = target as usize - 1;
        state.avoid_ns[i] = match state.avoid_ns[i] {
            0 => avoid_min_ns,
            last => (last * 2).min(avoid_max_ns),
        };
        state.avoid_until_ns[i] = now + state.avoid_ns[i];
    }

    /// Server `target` answered: no longer avoided (and any dark stretch
    /// of it, as this client saw it, is over).
    fn client_answered(&mut self, client: usize, target: NodeId) {
        if target == 0 {
            return;
        }
        let nodes = self.hosts.len();
        let state = &mut self.clients[client];
        state.fit(nodes);
        let i = target as usize - 1;
        state.avoid_ns[i] = 0;
        state.avoid_until_ns[i] = 0;
        state.dark_streak[i] = None;
    }

    /// The avoidance check, on an attempt about to go to `target`: while
    /// it is dark to clients the client's attempts to it stay within
    /// [`avoidance_bound`]. Returns false once the run has failed.
    fn check_dark_attempt(&mut self, client: usize, target: NodeId, follower_read: bool) -> bool {
        let i = target as usize - 1;
        let host = &self.hosts[i];
        let dark = match host.node.as_ref() {
            None => true,
            Some(_) if host.paused => true,
            Some(node) => follower_read && node.not_member_since().is_some(),
        };
        let now = self.now;
        if !dark {
            self.clients[client].dark_streak[i] = None;
            return true;
        }
        self.client_dark_attempts += 1;
        let (since, attempts) = self.clients[client].dark_streak[i].get_or_insert((now, 0));
        *attempts += 1;
        let (since, attempts) = (*since, *attempts);
        let avoid_min_ns = (self.config.client_timeout_ns / 2).max(1);
        let avoid_max_ns = self.config.client_timeout_ns * AVOID_MAX_TIMEOUTS;
        let bound = avoidance_bound(now - since, avoid_min_ns, avoid_max_ns);
        if attempts > bound {
            let message = format!(
                "client {client} sent attempt {attempts} to n{target} while it was dark to clients (crashed, paused, or refusing reads as a removed node) for {} since the client's first attempt there; learning from failure allows {bound} (a failed server is avoided, the period doubling from {} to {})",
                format_time(now - since),
                format_time(avoid_min_ns),
                format_time(avoid_max_ns),
            );
            self.fail(FailureKind::ClientAvoidance, Some(i), message);
            return false;
        }
        true
    }

    pub(super) fn client_done(&mut self, client: usize, result: OpResult<'_>) {
        let Some(op) = self.clients[client].op.take() else {
            return;
        };
        if op.register {
            // A registration that gave up: try again later.
        } else if let Some(probe) = op.probe {
            // Not a workload command: the workload never hears of it.
            self.note(None, || {
                format!("client {client}'s probe ({}) ends", probe.describe())
            });
        } else {
            let text = match result {
                OpResult::Ok(_) => "ok",
                OpResult::Failed => "failed",
                OpResult::Unknown => "unknown",
            };
            if self.timeline.is_some() {
                let seq = self.clients[client].seq;
                let call = op.call_ns;
                let what = self.workload.describe(&op.command);
                let text = match result {
                    OpResult::Ok(response) => format!("ok {:?}", String::from_utf8_lossy(response)),
                    _ => text.to_string(),
                };
                self.note(None, || {
                    format!(
                        "client {client} #{seq} {what} returns {text} (called at {})",
                        format_time(call)
                    )
                });
            }
            self.workload.complete(client, self.now, result);
            if self.failure.is_none() {
                if let Err(message) = self.workload.check_now(self.now) {
                    self.workload_failed(message);
                }
            }
        }
        let think = exponential(&mut self.client_rng, self.config.think_mean_ns);
        self.schedule(
            think,
            Event::ClientWake {
                client: client as u32,
            },
        );
    }
}

/// The response decoder is exact about the answers a client really gets:
/// an answer decodes to what encodes back to it, and the answers of fixed
/// size (a registration's 9 bytes, the 1-byte expired and malformed
/// answers) are refused with a byte more or a byte less, so a corrupted or
/// foreign answer is never taken for one of them. `response` is what
/// `decode` (in a run, [`SessionResponse::decode`]) made of `bytes`.
fn decoding_is_strict(
    bytes: &[u8],
    response: &Result<SessionResponse, session::DecodeError>,
    decode: impl Fn(&[u8]) -> Result<SessionResponse, session::DecodeError>,
) -> Result<(), String> {
    let Ok(decoded) = response else {
        return Ok(());
    };
    if decoded.encode().as_ref() != bytes {
        return Err(format!(
            "the answer {bytes:?} decoded to {decoded:?}, which encodes to {:?}: SessionResponse::decode must invert encode",
            decoded.encode()
        ));
    }
    if matches!(decoded, SessionResponse::Ok(_)) {
        return Ok(());
    }
    let longer: Vec<u8> = bytes.iter().copied().chain([0]).collect();
    let shorter = &bytes[..bytes.len() - 1];
    for other in [&longer[..], shorter] {
        if let Ok(wrong) = decode(other) {
            return Err(format!(
                "the answer {bytes:?} decodes to {decoded:?}, and {other:?}, one byte longer or shorter, decodes too (to {wrong:?}): fixed-size answers are refused at any other length"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decode = fn(&[u8]) -> Result<SessionResponse, session::DecodeError>;

    /// Decodes `bytes` with `decode` and judges that decoder on them.
    fn judge(bytes: &[u8], decode: Decode) -> Result<(), String> {
        decoding_is_strict(bytes, &decode(bytes), decode)
    }

    fn every_kind_of_answer() -> [Bytes; 5] {
        [
            SessionResponse::Registered {
                client: 0x0102_0304_0506_0708,
            }
            .encode(),
            SessionResponse::Ok(Bytes::from_static(b"value")).encode(),
            SessionResponse::Ok(Bytes::new()).encode(),
            SessionResponse::SessionExpired.encode(),
            SessionResponse::Malformed.encode(),
        ]
    }

    #[test]
    fn the_core_decoder_passes_on_every_kind_of_answer() {
        for bytes in every_kind_of_answer() {
            assert_eq!(judge(&bytes, SessionResponse::decode), Ok(()), "{bytes:?}");
        }
        // An answer that does not decode is not judged here.
        assert_eq!(judge(&[9, 9], SessionResponse::decode), Ok(()));
    }

    #[test]
    fn a_decoder_that_does_not_invert_encode_is_caught() {
        // Reads a registration's id in the wrong byte order.
        let swapped: Decode = |bytes| match SessionResponse::decode(bytes)? {
            SessionResponse::Registered { client } => Ok(SessionResponse::Registered {
                client: client.swap_bytes(),
            }),
            other => Ok(other),
        };
        let registration = &every_kind_of_answer()[0];
        let message = judge(registration, swapped).unwrap_err();
        assert!(
            message.contains("SessionResponse::decode must invert encode"),
            "{message}"
        );
        // The answers it does decode right pass.
        for bytes in &every_kind_of_answer()[1..] {
            assert_eq!(judge(bytes, swapped), Ok(()), "{bytes:?}");
        }
    }

    #[test]
    fn a_decoder_that_takes_a_fixed_size_answer_at_another_length_is_caught() {
        // Ignores bytes after a registration's id.
        let trailing_registration: Decode = |bytes| match bytes {
            [0, id @ ..] if id.len() > 8 => SessionResponse::decode(&bytes[..9]),
            _ => SessionResponse::decode(bytes),
        };
        // Takes any answer tagged 2 for "expired", whatever its length.
        let any_length_expired: Decode = |bytes| match bytes {
            [2, ..] => Ok(SessionResponse::SessionExpired),
            _ => SessionResponse::decode(bytes),
        };
        let [registration, _, _, expired, malformed] = every_kind_of_answer();
        for (bytes, decode) in [
            (&registration, trailing_registration),
            (&expired, any_length_expired),
        ] {
            let message = judge(bytes, decode).unwrap_err();
            assert!(
                message.contains("one byte longer or shorter, decodes too")
                    && message.contains("fixed-size answers are refused at any other length"),
                "{message}"
            );
        }
        // Each lax decoder is strict on the other answers, and passes there.
        assert_eq!(judge(&expired, trailing_registration), Ok(()));
        assert_eq!(judge(&malformed, any_length_expired), Ok(()));
        assert_eq!(judge(&registration, any_length_expired), Ok(()));
    }
}
