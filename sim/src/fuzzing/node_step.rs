//! The `node_step` target: a cluster of 3 or 5 [`Node`]s, each with a tiny
//! deterministic host (an in-memory disk with explicit fsyncs, a state
//! machine that hashes the commands it applies, snapshots), driven by an
//! arbitrary schedule: ticks, proposals, deliveries (in any order, dropped
//! or duplicated), fsyncs, crashes that lose every unsynced write and
//! restarts from the durable state, reads, leadership transfers, snapshot
//! requests, membership changes, and hostile messages with arbitrary
//! terms, indices and bodies.
//!
//! The simulator's step observers (`sim/src/observe/`: the step rules
//! and the safety checker) judge every step, and the safety checker every
//! election and every applied entry, as in a simulated run: the rules of
//! `sim/README.md`, election safety, log matching on the committed
//! prefix, commit monotonicity, leader completeness, state machine
//! safety. Any panic (the core asserts its invariants), violation or
//! broken rule is a finding.
//!
//! Raft does not defend against a peer that lies, so a hostile message
//! that claims to come from a member switches the safety checks off for
//! the rest of the run (the input is then only checked for panics: bad
//! input is never a crash). So does a leader's message (AppendEntries,
//! Heartbeat, InstallSnapshot) from an id outside the cluster: the core
//! deliberately accepts those from strangers, which may be the leader of
//! a configuration it has not learned yet (see `accepts_sender` in
//! `src/election.rs`), so a lying stranger is a lying leader. Every other
//! message from a stranger keeps every check on.
//!
//! Input layout: `[cluster][seed]` then operations `[tag][args...]` until
//! the input ends (see [`Op`] tags in the code and [`encode_ops`]).

use std::collections::VecDeque;

use bytes::Bytes;
use concord::{
    checksum64, Action, AppendResponse, Config, Entry, EntryPayload, HardState, Input, LogPosition,
    Membership, MembershipChange, Message, MessageBody, Node, NodeId, ReadPath, Recovered, Role,
    SnapshotChunk, SnapshotMeta, WriteId,
};

use super::{Cursor, Violation};
use crate::observe::StepObserver;
use crate::rules::Rules;
use crate::safety::Safety;
use crate::trace::hash_bytes;

const TARGET: &str = "node_step";

/// Most operations run per input.
pub const OPS_MAX: usize = 4096;
/// Most messages in flight; a send beyond it is dropped (loss is legal).
const NETWORK_MAX: usize = 1024;
/// Most follow-up inputs (persisted, applied, snapshotted) one operation
/// may cause.
const FOLLOW_UPS_MAX: usize = 4096;
/// Ids that are never members: hostile messages from them must be ignored.
const OUTSIDER_IDS: [NodeId; 3] = [0, 7, 1 << 40];

/// One operation of a schedule, as the generator writes it.
#[derive(Clone, Debug)]
pub enum Op {
    /// Node `n` ticks once.
    Tick(u8),
    /// Every live node ticks once and every pending write becomes durable.
    TickAllAndSync,
    /// Node `n` is asked to append a command.
    Propose(u8, Vec<u8>),
    /// The message at this position of the network is delivered.
    Deliver(u16),
    /// The message is delivered and stays in the network (a duplicate).
    Duplicate(u16),
    /// The message is lost.
    Drop(u16),
    /// Node `n`'s oldest `count` pending writes become durable.
    Sync(u8, u8),
    /// Node `n` crashes: its unsynced writes are lost.
    Crash(u8),
    /// Node `n` restarts from its durable state.
    Restart(u8),
    /// Node `n` asks for a linearizable read on a path (0, 1, 2).
    Read(u8, u8),
    /// Node `n` is asked to hand leadership to node `m`.
    Transfer(u8, u8),
    /// Node `n` is asked to take a snapshot.
    RequestSnapshot(u8),
}

impl Op {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Tick(n) => out.extend_from_slice(&[0, *n]),
            Op::TickAllAndSync => out.push(3),
            Op::Propose(n, payload) => {
                out.extend_from_slice(&[4, *n, payload.len() as u8]);
                out.extend_from_slice(payload);
            }
            Op::Deliver(k) => {
                out.push(5);
                out.extend_from_slice(&k.to_le_bytes());
            }
            Op::Duplicate(k) => {
                out.push(8);
                out.extend_from_slice(&k.to_le_bytes());
            }
            Op::Drop(k) => {
                out.push(9);
                out.extend_from_slice(&k.to_le_bytes());
            }
            Op::Sync(n, count) => out.extend_from_slice(&[10, *n, *count]),
            Op::Crash(n) => out.extend_from_slice(&[11, *n]),
            Op::Restart(n) => out.extend_from_slice(&[12, *n]),
            Op::Read(n, path) => out.extend_from_slice(&[15, 0, *n, *path]),
            Op::Transfer(n, m) => out.extend_from_slice(&[15, 1, *n, *m]),
            Op::RequestSnapshot(n) => out.extend_from_slice(&[15, 2, *n]),
        }
    }
}

/// Encodes a schedule: `five` picks the 5-node cluster, `seed` the nodes'
/// election timer seeds.
pub fn encode_ops(five: bool, seed: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![u8::from(five), seed];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A durable write the host has been asked for and not yet synced.
enum Write {
    Log {
        id: WriteId,
        hard_state: Option<HardState>,
        truncate_after: Option<u64>,
        entries: Vec<Entry>,
    },
    Snapshot {
        id: WriteId,
        meta: SnapshotMeta,
        discard_log: bool,
        membership: Membership,
        /// The bytes received, taken when the node asked for the write (a
        /// new transfer may start before it is synced).
        data: Bytes,
    },
}

/// A stored snapshot: its description, the state machine's bytes, and the
/// configuration at its last entry.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Bytes,
    membership: Option<Membership>,
}

/// What survives a crash.
#[derive(Default)]
struct Durable {
    hard_state: HardState,
    /// The log, all entries ever kept (those at or below the snapshot are
    /// skipped on recovery).
    entries: Vec<Entry>,
    snapshot: Option<StoredSnapshot>,
}

impl Durable {
    fn truncate_after(&mut self, index: u64) {
        self.entries.retain(|e| e.index <= index);
    }

    fn append(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.truncate_after(entry.index.saturating_sub(1));
            self.entries.push(entry);
        }
    }

    fn base(&self) -> LogPosition {
        self.snapshot
            .as_ref()
            .map_or(LogPosition::ZERO, |s| s.meta.position)
    }
}

struct Host {
    id: NodeId,
    node: Option<Node>,
    durable: Durable,
    pending: VecDeque<Write>,
    /// The state machine: a hash of every command applied, in order.
    state: u64,
    applied: u64,
    /// The snapshot being received from a leader.
    receiving: Vec<u8>,
}

struct Cluster {
    hosts: Vec<Host>,
    voters: Vec<NodeId>,
    seed: u64,
    network: Vec<Message>,
    safety: Safety,
    /// The step rules (`crate::observe`), shown every step.
    rules: Rules,
    /// A member sent a lie: Raft's safety no longer applies.
    byzantine: bool,
    follow_ups: usize,
}

fn state_bytes(state: u64) -> Bytes {
    Bytes::copy_from_slice(&state.to_le_bytes())
}

fn violation(kind: crate::engine::FailureKind, message: String) -> Violation {
    Violation::new(TARGET, format!("{kind:?}: {message}"))
}

impl Cluster {
    fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, self.voters.iter().copied());
        config.election_timeout_min_ticks = 4;
        config.election_timeout_max_ticks = 8;
        config.heartbeat_interval_ticks = 1;
        config.append_entries_max = 4;
        config.inflight_messages_max = 8;
        config.uncommitted_entries_max = 64;
        config.snapshot_chunk_bytes_max = 3;
        config.compaction_trailing_entries = 1;
        config.seed = self.seed.wrapping_mul(31).wrapping_add(id);
        config
    }

    fn new(five: bool, seed: u64) -> Result<Self, Violation> {
        let n = if five { 5 } else { 3 };
        let voters: Vec<NodeId> = (1..=n).collect();
        let mut cluster = Cluster {
            hosts: Vec::new(),
            voters,
            seed,
            network: Vec::new(),
            safety: Safety::new(n as usize),
            rules: Rules::new(n as usize),
            byzantine: false,
            follow_ups: 0,
        };
        for id in 1..=n {
            let node = Node::new(cluster.config(id), Recovered::default())
                .map_err(|e| Violation::new(TARGET, format!("a fresh node is refused: {e}")))?;
            cluster.hosts.push(Host {
                id,
                node: Some(node),
                durable: Durable::default(),
                pending: VecDeque::new(),
                state: 0,
                applied: 0,
                receiving: Vec::new(),
            });
        }
        Ok(cluster)
    }

    fn check(
        &self,
        result: Result<(), (crate::engine::FailureKind, String)>,
    ) -> Result<(), Violation> {
        match result {
            Err((kind, message)) if !self.byzantine => Err(violation(kind, message)),
            _ => Ok(()),
        }
    }

    /// Steps node `i` with `input`, then every follow-up input its actions
    /// call for, checking safety after each step.
    fn step(&mut self, i: usize, input: Input) -> Result<(), Violation> {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            if self.follow_ups >= FOLLOW_UPS_MAX {
                return Ok(());
            }
            self.follow_ups += 1;
            let Some(node) = self.hosts[i].node.as_mut() else {
                return Ok(());
            };
            let mut actions = Vec::new();
            self.rules.before(i, node, &input);
            node.step(input, &mut actions);
            let node = self.hosts[i].node.as_ref().expect("stepped above");
            let result = self.safety.after(i, node, &actions);
            let result = result.and_then(|()| self.rules.after(i, node, &actions));
            self.check(result.map_err(|broken| (broken.kind, broken.message)))?;
            for action in actions {
                self.execute(i, action, &mut inputs)?;
            }
        }
        Ok(())
    }

    fn execute(
        &mut self,
        i: usize,
        action: Action,
        inputs: &mut VecDeque<Input>,
    ) -> Result<(), Violation> {
        match action {
            Action::Send { to, message } => self.send(to, message),
            Action::Persist {
                id,
                hard_state,
                truncate_after,
                entries,
            } => self.hosts[i].pending.push_back(Write::Log {
                id,
                hard_state,
                truncate_after,
                entries: entries.into_vec(),
            }),
            Action::Apply { entries } => {
                let mut last = None;
                for entry in &entries {
                    let host = &mut self.hosts[i];
                    let response = match &entry.payload {
                        EntryPayload::Command(command) => {
                            let mut bytes = host.state.to_le_bytes().to_vec();
                            bytes.extend_from_slice(command);
                            host.state = hash_bytes(&bytes);
                            host.state
                        }
                        _ => 0,
                    };
                    host.applied = entry.index;
                    last = Some(entry.index);
                    let response = (response != 0)
                        .then(|| bytes::Bytes::copy_from_slice(&response.to_le_bytes()));
                    let result =
                        self.safety
                            .on_apply(i, entry, response.as_ref())
                            .map_err(|error| match error {
                                crate::safety::ApplyError::Violation(violation) => violation,
                                crate::safety::ApplyError::Diverged { other, .. } => (
                                    crate::engine::FailureKind::StateMachineSafety,
                                    format!(
                                        "applying entry {} gave another response than on n{}",
                                        entry.index,
                                        other + 1
                                    ),
                                ),
                            });
                    self.check(result)?;
                }
                if let Some(index) = last {
                    inputs.push_back(Input::Applied(index));
                }
            }
            Action::TakeSnapshot => {
                let host = &mut self.hosts[i];
                let node = host.node.as_ref().expect("a live node asked");
                let index = host.applied;
                if let Some(term) = node.term_at(index) {
                    let data = state_bytes(host.state);
                    let meta = SnapshotMeta {
                        position: LogPosition::new(index, term),
                        size_bytes: data.len() as u64,
                        checksum: checksum64(&data),
                    };
                    // Stored durably at once: the host writes snapshots
                    // synchronously.
                    host.durable.snapshot = Some(StoredSnapshot {
                        meta,
                        data,
                        membership: node.membership_at(index).cloned(),
                    });
                    inputs.push_back(Input::Snapshotted(meta));
                }
            }
            Action::SendSnapshotChunk(chunk) => {
                if let Some(stored) = &self.hosts[i].durable.snapshot {
                    if stored.meta == chunk.snapshot {
                        let to = chunk.to;
                        let message = chunk.cut_from(&stored.data.clone());
                        self.send(to, message);
                    }
                }
            }
            Action::WriteSnapshotChunk { offset, data, .. } => {
                let receiving = &mut self.hosts[i].receiving;
                if offset == 0 {
                    receiving.clear();
                }
                if offset as usize == receiving.len() {
                    receiving.extend_from_slice(&data);
                } else if !self.byzantine {
                    return Err(Violation::new(
                        TARGET,
                        format!(
                            "a snapshot chunk at offset {offset} after {} bytes",
                            receiving.len()
                        ),
                    ));
                }
            }
            Action::PersistSnapshot {
                id,
                snapshot,
                discard_log,
                membership,
            } => {
                let data = Bytes::from(self.hosts[i].receiving.clone());
                self.hosts[i].pending.push_back(Write::Snapshot {
                    id,
                    meta: snapshot,
                    discard_log,
                    membership: *membership,
                    data,
                });
            }
            Action::RestoreSnapshot { snapshot } => {
                let host = &mut self.hosts[i];
                // The bytes of that snapshot: stored, or still being
                // stored.
                let stored = host
                    .durable
                    .snapshot
                    .as_ref()
                    .filter(|s| s.meta == snapshot)
                    .map(|s| s.data.clone());
                let pending = host.pending.iter().find_map(|write| match write {
                    Write::Snapshot { meta, data, .. } if *meta == snapshot => Some(data.clone()),
                    _ => None,
                });
                let data = stored
                    .or(pending)
                    .unwrap_or_else(|| Bytes::from(host.receiving.clone()));
                let mut state = [0u8; 8];
                if data.len() == 8 {
                    state.copy_from_slice(&data);
                }
                host.state = u64::from_le_bytes(state);
                host.applied = snapshot.position.index;
                inputs.push_back(Input::Applied(snapshot.position.index));
            }
            Action::RoleChanged { role, term } => {
                if role == Role::Leader {
                    let node = self.hosts[i].node.as_ref().expect("a live node changed");
                    let result = self.safety.on_leader(i, term, node);
                    self.check(result)?;
                }
            }
            Action::ProposalAccepted { .. }
            | Action::ProposalRefused { .. }
            | Action::FollowerLogRegressed { .. }
            | Action::StorageRecovery(_)
            | Action::LogDiverged(_)
            | Action::ReadReady { .. }
            | Action::ReadRefused { .. }
            | Action::Transfer { .. } => {}
        }
        Ok(())
    }

    fn send(&mut self, to: NodeId, message: Message) {
        if self.network.len() < NETWORK_MAX && self.hosts.iter().any(|h| h.id == to) {
            self.network.push(message);
        }
    }

    fn deliver(&mut self, message: Message) -> Result<(), Violation> {
        match self.hosts.iter().position(|h| h.id == message.to) {
            Some(i) => self.step(i, Input::Receive(message)),
            None => Ok(()),
        }
    }

    /// Makes node `i`'s oldest `count` pending writes durable and reports
    /// them.
    fn sync(&mut self, i: usize, count: usize) -> Result<(), Violation> {
        let host = &mut self.hosts[i];
        let mut last = None;
        for _ in 0..count {
            let Some(write) = host.pending.pop_front() else {
                break;
            };
            match write {
                Write::Log {
                    id,
                    hard_state,
                    truncate_after,
                    entries,
                } => {
                    if let Some(after) = truncate_after {
                        host.durable.truncate_after(after);
                    }
                    host.durable.append(entries);
                    if let Some(hard_state) = hard_state {
                        host.durable.hard_state = hard_state;
                    }
                    last = Some(id);
                }
                Write::Snapshot {
                    id,
                    meta,
                    discard_log,
                    membership,
                    data,
                } => {
                    let index = meta.position.index;
                    if discard_log {
                        host.durable.entries.clear();
                    } else {
                        host.durable.entries.retain(|e| e.index > index);
                    }
                    host.durable.snapshot = Some(StoredSnapshot {
                        meta,
                        data,
                        membership: Some(membership),
                    });
                    last = Some(id);
                }
            }
        }
        match last {
            Some(id) => self.step(i, Input::Persisted(id)),
            None => Ok(()),
        }
    }

    fn crash(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        host.node = None;
        host.pending.clear();
        host.receiving.clear();
    }

    fn restart(&mut self, i: usize) -> Result<(), Violation> {
        if self.hosts[i].node.is_some() {
            return Ok(());
        }
        let config = self.config(self.hosts[i].id);
        let host = &mut self.hosts[i];
        let base = host.durable.base();
        let snapshot = host.durable.snapshot.clone();
        let recovered = Recovered {
            hard_state: host.durable.hard_state,
            base,
            entries: host
                .durable
                .entries
                .iter()
                .filter(|e| e.index > base.index)
                .cloned()
                .collect(),
            applied_index: base.index,
            membership: snapshot.as_ref().and_then(|s| s.membership.clone()),
        };
        let node = match Node::new(config, recovered) {
            Ok(node) => node,
            Err(error) if !self.byzantine => {
                return Err(Violation::new(
                    TARGET,
                    format!(
                        "node {} cannot restart from its own durable state: {error}",
                        host.id
                    ),
                ))
            }
            Err(_) => return Ok(()),
        };
        host.node = Some(node);
        host.applied = base.index;
        host.state = snapshot.as_ref().map_or(0, |s| {
            let mut state = [0u8; 8];
            if s.data.len() == 8 {
                state.copy_from_slice(&s.data);
            }
            u64::from_le_bytes(state)
        });
        self.safety.on_restart(i);
        self.rules.on_restart(i);
        if let Some(snapshot) = snapshot {
            self.step(i, Input::Snapshotted(snapshot.meta))?;
        }
        Ok(())
    }

    fn node_index(&self, byte: u8) -> usize {
        usize::from(byte) % self.hosts.len()
    }
}

/// A message with arbitrary fields, read from the input.
fn hostile_message(cursor: &mut Cursor<'_>, from: NodeId, to: NodeId) -> Message {
    let small = |cursor: &mut Cursor<'_>| {
        let byte = cursor.u8();
        if byte >= 0xf0 {
            u64::MAX - u64::from(byte & 0x0f)
        } else {
            u64::from(byte)
        }
    };
    let term = small(cursor);
    let position = |cursor: &mut Cursor<'_>| {
        let index = small(cursor);
        LogPosition::new(index, small(cursor))
    };
    let body = match cursor.u8() % 15 {
        0 => MessageBody::RequestVote {
            pre_vote: cursor.u8() & 1 != 0,
            last_log: position(cursor),
            transfer: cursor.u8() & 1 != 0,
        },
        1 => MessageBody::RequestVoteResponse {
            pre_vote: cursor.u8() & 1 != 0,
            granted: cursor.u8() & 1 != 0,
        },
        2 | 3 => {
            let prev = position(cursor);
            let count = cursor.u8() % 4;
            let entries = (0..count)
                .map(|k| Entry {
                    term: small(cursor),
                    index: prev.index.wrapping_add(1 + u64::from(k)),
                    payload: match cursor.u8() % 3 {
                        0 => EntryPayload::Noop,
                        1 => EntryPayload::Command(Bytes::copy_from_slice(cursor.bytes(2))),
                        _ => EntryPayload::Membership(Box::new(Membership::new(
                            (1..=u64::from(cursor.u8() % 6)).collect::<Vec<_>>(),
                        ))),
                    },
                })
                .collect();
            MessageBody::AppendEntries {
                prev,
                entries,
                leader_commit: small(cursor),
            }
        }
        4 => MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
            match_index: small(cursor),
        }),
        5 => MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index: small(cursor),
            hint_index: small(cursor),
            hint_term: small(cursor),
        }),
        6 => MessageBody::Heartbeat {
            commit: small(cursor),
            read_round: small(cursor),
        },
        7 => MessageBody::HeartbeatResponse {
            read_round: small(cursor),
        },
        8 => MessageBody::TimeoutNow,
        9 => {
            let len = usize::from(cursor.u8() % 8);
            let data = Bytes::copy_from_slice(cursor.bytes(len));
            let checksum = if cursor.u8() & 1 == 0 {
                checksum64(&data)
            } else {
                small(cursor)
            };
            MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                snapshot: position(cursor),
                size_bytes: small(cursor),
                checksum,
                offset: small(cursor),
                data,
                membership: Membership::new((1..=u64::from(cursor.u8() % 6)).collect::<Vec<_>>()),
            }))
        }
        10 => MessageBody::Removed {
            configuration: position(cursor),
        },
        11 => MessageBody::ReadIndexRequest {
            request: small(cursor),
        },
        12 => MessageBody::ReadIndexResponse {
            request: small(cursor),
            index: (cursor.u8() & 1 != 0).then(|| small(cursor)),
        },
        13 => MessageBody::CommitNotice {
            last: position(cursor),
            commit: small(cursor),
        },
        _ => MessageBody::InstallSnapshotResponse {
            snapshot: position(cursor),
            next_offset: small(cursor),
            rewind: cursor.u8() & 1 != 0,
        },
    };
    Message {
        from,
        to,
        term,
        // Small, so that an answer often names the leader's record of its
        // sender (records are numbered from 1) and reaches its handler.
        progress_id: u64::from(cursor.u8() % 8),
        body,
    }
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    drive(data).map(|_| ())
}

/// Runs the target on one input and returns how many entries the cluster
/// committed (for tests that a schedule does real work).
pub fn committed_entries(data: &[u8]) -> Result<u64, Violation> {
    drive(data).map(|cluster| cluster.safety.committed_len())
}

fn drive(data: &[u8]) -> Result<Cluster, Violation> {
    let mut cursor = Cursor::new(data);
    let five = cursor.u8() & 1 != 0;
    let seed = u64::from(cursor.u8());
    let mut cluster = Cluster::new(five, seed)?;
    for _ in 0..OPS_MAX {
        if cursor.is_empty() {
            break;
        }
        let tag = cursor.u8() % 16;
        match tag {
            0..=2 => {
                let i = cluster.node_index(cursor.u8());
                cluster.step(i, Input::Tick)?;
            }
            3 => {
                for i in 0..cluster.hosts.len() {
                    cluster.step(i, Input::Tick)?;
                }
                for i in 0..cluster.hosts.len() {
                    cluster.sync(i, usize::MAX)?;
                }
            }
            4 => {
                let i = cluster.node_index(cursor.u8());
                let len = usize::from(cursor.u8() % 8);
                let payload = Bytes::copy_from_slice(cursor.bytes(len));
                cluster.step(i, Input::Propose(payload))?;
            }
            5..=9 => {
                let k = usize::from(cursor.u16());
                if !cluster.network.is_empty() {
                    let k = k % cluster.network.len();
                    match tag {
                        8 => {
                            let message = cluster.network[k].clone();
                            cluster.deliver(message)?;
                        }
                        9 => {
                            cluster.network.remove(k);
                        }
                        _ => {
                            let message = cluster.network.remove(k);
                            cluster.deliver(message)?;
                        }
                    }
                }
            }
            10 => {
                let i = cluster.node_index(cursor.u8());
                let count = usize::from(cursor.u8() % 4) + 1;
                cluster.sync(i, count)?;
            }
            11 => {
                let i = cluster.node_index(cursor.u8());
                cluster.crash(i);
            }
            12 => {
                let i = cluster.node_index(cursor.u8());
                cluster.restart(i)?;
            }
            13 | 14 => {
                let i = cluster.node_index(cursor.u8());
                let to = if cursor.u8() & 1 == 0 {
                    cluster.hosts[i].id
                } else {
                    cluster.hosts[cluster.node_index(cursor.u8())].id
                };
                let from = if tag == 13 {
                    OUTSIDER_IDS[usize::from(cursor.u8()) % OUTSIDER_IDS.len()]
                } else {
                    // A member lying: Raft assumes members do not.
                    cluster.byzantine = true;
                    cluster.hosts[cluster.node_index(cursor.u8())].id
                };
                let message = hostile_message(&mut cursor, from, to);
                if matches!(
                    message.body,
                    MessageBody::AppendEntries { .. }
                        | MessageBody::Heartbeat { .. }
                        | MessageBody::CommitNotice { .. }
                        | MessageBody::InstallSnapshot { .. }
                ) {
                    // Taken as a possibly newer leader's (see the module
                    // documentation): a lie here is a lying leader.
                    cluster.byzantine = true;
                }
                cluster.step(i, Input::Receive(message))?;
            }
            _ => {
                let sub = cursor.u8() % 4;
                let i = cluster.node_index(cursor.u8());
                let input = match sub {
                    0 => Input::Read {
                        id: u64::from(cursor.u8()),
                        path: match cursor.u8() % 3 {
                            0 => ReadPath::ReadIndex,
                            1 => ReadPath::Lease,
                            _ => ReadPath::Follower,
                        },
                    },
                    1 => Input::TransferLeadership(u64::from(cursor.u8() % 7)),
                    2 => Input::RequestSnapshot,
                    _ => {
                        let target = u64::from(cursor.u8() % 7);
                        Input::ChangeMembership(match cursor.u8() % 4 {
                            0 => MembershipChange::AddVoter(target),
                            1 => MembershipChange::AddLearner(target),
                            2 => MembershipChange::PromoteLearner(target),
                            _ => MembershipChange::Remove(target),
                        })
                    }
                };
                cluster.step(i, input)?;
            }
        }
    }
    Ok(cluster)
}

/// Recorded schedules for the seed corpus: elections, replication with
/// commits, crashes and restarts, a partitioned leader, snapshots sent to
/// a lagging follower, reads and transfers.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    // Quiet periods until someone leads, deliveries in order.
    let settle = |ops: &mut Vec<Op>, rounds: usize| {
        for _ in 0..rounds {
            ops.push(Op::TickAllAndSync);
            for _ in 0..16 {
                ops.push(Op::Deliver(0));
            }
        }
    };
    let mut ops = Vec::new();
    settle(&mut ops, 12);
    seeds.push(("elect".to_string(), encode_ops(false, 1, &ops)));
    // Only the leader accepts a proposal: offer each one to every node.
    for k in 0..3u8 {
        for n in 0..3u8 {
            ops.push(Op::Propose(n, vec![b'a' + k, 1, 2]));
        }
    }
    settle(&mut ops, 6);
    seeds.push((
        "elect-propose-commit".to_string(),
        encode_ops(false, 1, &ops),
    ));
    let mut crash = ops.clone();
    crash.push(Op::Crash(0));
    crash.push(Op::Crash(1));
    settle(&mut crash, 10);
    crash.push(Op::Restart(0));
    crash.push(Op::Restart(1));
    settle(&mut crash, 12);
    for k in 0..3u8 {
        for n in 0..3u8 {
            crash.push(Op::Propose(n, vec![b'x', k]));
        }
    }
    settle(&mut crash, 12);
    seeds.push(("crash-restart".to_string(), encode_ops(false, 1, &crash)));
    let mut lossy = ops.clone();
    for round in 0..20u16 {
        lossy.push(Op::Tick((round % 3) as u8));
        lossy.push(Op::Propose((round % 3) as u8, vec![round as u8]));
        lossy.push(Op::Drop(round % 3));
        lossy.push(Op::Duplicate(1));
        lossy.push(Op::Deliver(round * 7));
        lossy.push(Op::Sync((round % 3) as u8, 2));
    }
    settle(&mut lossy, 8);
    seeds.push(("lossy-reordered".to_string(), encode_ops(false, 2, &lossy)));
    let mut five = Vec::new();
    settle(&mut five, 14);
    for k in 0..5u8 {
        for n in 0..5u8 {
            five.push(Op::Propose(n, vec![k; 3]));
        }
    }
    settle(&mut five, 6);
    five.push(Op::Read(0, 0));
    five.push(Op::Read(1, 2));
    five.push(Op::Transfer(0, 2));
    settle(&mut five, 8);
    seeds.push(("five-read-transfer".to_string(), encode_ops(true, 3, &five)));
    // A follower down while the others commit and snapshot; it then
    // catches up by snapshot.
    let mut snap = Vec::new();
    settle(&mut snap, 12);
    snap.push(Op::Crash(2));
    settle(&mut snap, 12);
    for k in 0..6u8 {
        for n in 0..3u8 {
            snap.push(Op::Propose(n, vec![k]));
        }
        settle(&mut snap, 2);
    }
    for n in 0..3u8 {
        snap.push(Op::RequestSnapshot(n));
    }
    settle(&mut snap, 3);
    snap.push(Op::Restart(2));
    settle(&mut snap, 16);
    seeds.push(("snapshot-catch-up".to_string(), encode_ops(false, 4, &snap)));
    // Hostile messages from outsiders (13) and from a member (14), raw.
    let mut hostile = encode_ops(false, 5, &ops);
    hostile.extend_from_slice(&[13, 0, 0, 1, 200, 2, 0, 0xff, 0xff, 2, 1, 9, 1, 0, 3]);
    hostile.extend_from_slice(&[13, 1, 0, 2, 3, 0, 9, 1, 2, 3, 4, 0, 5, 1, 8, 0, 0, 3]);
    seeds.push(("hostile-outsider".to_string(), hostile.clone()));
    hostile.extend_from_slice(&[14, 1, 0, 0, 9, 2, 4, 3, 3, 1, 1, 0xab, 0xcd, 3]);
    seeds.push(("hostile-member".to_string(), hostile));
    seeds
}
