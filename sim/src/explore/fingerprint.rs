//! Fingerprints: a 128-bit hash of a state, the same on every platform and
//! run (no random seed), and the hashing of the host-side parts of a
//! state (messages, disks, entries) under a renaming of node ids, to match
//! the core's `Node::hash_state`.

use std::hash::Hasher;

use concord::{
    AppendResponse, Entry, EntryPayload, HardState, LogPosition, Membership, Message, MessageBody,
    NodeId,
};

/// A 128-bit fingerprint.
pub type Fingerprint = u128;

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const K3: u64 = 0x1656_67b1_9e37_79f9;
const K4: u64 = 0x27d4_eb2f_1656_67c5;

/// Folded 64×64→128-bit multiply: every input bit reaches the output.
#[inline]
fn fold(x: u64, k: u64) -> u64 {
    let product = u128::from(x) * u128::from(k);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Two independent 64-bit lanes over the same words, each a chain of
/// folded multiplies. Deterministic: no per-process key. Collisions matter
/// only as a state wrongly taken for one seen before; at 2^-128 per pair
/// that stays negligible for any state count a machine can hold.
#[derive(Clone, Debug)]
pub struct Fingerprinter {
    a: u64,
    b: u64,
    words: u64,
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter {
            a: K3,
            b: K4,
            words: 0,
        }
    }
}

impl Fingerprinter {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The 128-bit result.
    pub fn finish128(&self) -> Fingerprint {
        let a = fold(self.a ^ self.words, K2);
        let b = fold(self.b ^ self.words.rotate_left(32), K1);
        let a = fold(a ^ (b >> 29), K1);
        let b = fold(b ^ (a >> 31), K2);
        (u128::from(a) << 64) | u128::from(b)
    }
}

impl Hasher for Fingerprinter {
    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.a = fold(self.a ^ word, K1);
        self.b = fold(self.b ^ word.rotate_left(23) ^ K4, K2);
        self.words = self.words.wrapping_add(1);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length in the top byte keeps "ab" and "ab\0" apart.
            word[7] ^= rest.len() as u8;
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn finish(&self) -> u64 {
        self.finish128() as u64
    }
}

/// Hashing of host-side values with every node id renamed.
pub struct Renamed<'a, H: Hasher> {
    /// Where the words go.
    pub state: &'a mut H,
    /// The renaming.
    pub rename: &'a dyn Fn(NodeId) -> NodeId,
}

impl<H: Hasher> Renamed<'_, H> {
    /// A word.
    pub fn u64(&mut self, value: u64) {
        self.state.write_u64(value);
    }

    /// A flag.
    pub fn bool(&mut self, value: bool) {
        self.state.write_u64(u64::from(value));
    }

    /// Bytes, with their length.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.state.write(bytes);
    }

    /// A node id, renamed.
    pub fn id(&mut self, id: NodeId) {
        let renamed = (self.rename)(id);
        self.u64(renamed);
    }

    /// A log position.
    pub fn position(&mut self, position: LogPosition) {
        self.u64(position.index);
        self.u64(position.term);
    }

    /// A term and vote.
    pub fn hard_state(&mut self, hard_state: HardState) {
        self.u64(hard_state.term);
        match hard_state.voted_for {
            None => self.u64(0),
            Some(id) => {
                self.u64(1);
                self.id(id);
            }
        }
    }

    /// A set of ids, renamed then sorted.
    pub fn ids<'i>(&mut self, ids: impl IntoIterator<Item = &'i NodeId>) {
        let mut renamed: Vec<NodeId> = ids.into_iter().map(|id| (self.rename)(*id)).collect();
        renamed.sort_unstable();
        self.u64(renamed.len() as u64);
        for id in renamed {
            self.u64(id);
        }
    }

    /// A configuration.
    pub fn membership(&mut self, membership: &Membership) {
        self.ids(&membership.voters);
        self.ids(&membership.voters_outgoing);
        self.ids(&membership.learners);
        self.ids(&membership.witnesses);
    }

    /// An entry's payload.
    pub fn payload(&mut self, payload: &EntryPayload) {
        match payload {
            EntryPayload::Noop => self.u64(0),
            EntryPayload::Command(bytes) => {
                self.u64(1);
                self.bytes(bytes);
            }
            EntryPayload::Membership(membership) => {
                self.u64(2);
                self.membership(membership);
            }
            EntryPayload::Host(bytes) => {
                self.u64(3);
                self.bytes(bytes);
            }
            EntryPayload::ForcedMembership(forced) => {
                // Never made by the explorer; hashed whole all the same.
                self.u64(4);
                self.id(forced.survivor);
                self.membership(&forced.membership);
                self.bytes(forced.reason.as_bytes());
                self.position(forced.last_before);
            }
            _ => self.u64(5),
        }
    }

    /// An entry.
    pub fn entry(&mut self, entry: &Entry) {
        self.u64(entry.term);
        self.u64(entry.index);
        self.payload(&entry.payload);
    }

    /// A message, every field.
    pub fn message(&mut self, message: &Message) {
        self.id(message.from);
        self.id(message.to);
        self.u64(message.term);
        match &message.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log,
                transfer,
            } => {
                self.u64(1);
                self.bool(*pre_vote);
                self.position(*last_log);
                self.bool(*transfer);
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.u64(2);
                self.bool(*pre_vote);
                self.bool(*granted);
            }
            MessageBody::AppendEntries {
                prev,
                entries,
                leader_commit,
            } => {
                self.u64(3);
                self.position(*prev);
                self.u64(entries.len() as u64);
                for entry in entries.iter() {
                    self.entry(entry);
                }
                self.u64(*leader_commit);
            }
            MessageBody::AppendEntriesResponse(response) => {
                self.u64(4);
                match response {
                    AppendResponse::Accepted { match_index } => {
                        self.u64(0);
                        self.u64(*match_index);
                    }
                    AppendResponse::Rejected {
                        rejected_index,
                        hint_index,
                        hint_term,
                    } => {
                        self.u64(1);
                        self.u64(*rejected_index);
                        self.u64(*hint_index);
                        self.u64(*hint_term);
                    }
                }
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.u64(5);
                self.u64(*commit);
                self.u64(*read_round);
            }
            MessageBody::HeartbeatResponse { read_round } => {
                self.u64(6);
                self.u64(*read_round);
            }
            MessageBody::TimeoutNow => self.u64(7),
            MessageBody::InstallSnapshot(chunk) => {
                self.u64(8);
                self.position(chunk.snapshot);
                self.u64(chunk.size_bytes);
                self.u64(chunk.checksum);
                self.u64(chunk.offset);
                self.bytes(&chunk.data);
                self.membership(&chunk.membership);
            }
            MessageBody::Removed { configuration } => {
                self.u64(9);
                self.position(*configuration);
            }
            MessageBody::ReadIndexRequest { request } => {
                self.u64(10);
                self.u64(*request);
            }
            MessageBody::ReadIndexResponse { request, index } => {
                self.u64(11);
                self.u64(*request);
                match index {
                    None => self.u64(0),
                    Some(index) => {
                        self.u64(1);
                        self.u64(*index);
                    }
                }
            }
            MessageBody::InstallSnapshotResponse {
                snapshot,
                next_offset,
                rewind,
            } => {
                self.u64(12);
                self.position(*snapshot);
                self.u64(*next_offset);
                self.bool(*rewind);
            }
            MessageBody::CommitNotice { last, commit } => {
                self.u64(13);
                self.position(*last);
                self.u64(*commit);
            }
            MessageBody::CandidateCatchUp { prev, entries } => {
                self.u64(14);
                self.position(*prev);
                self.u64(entries.len() as u64);
                for entry in entries.iter() {
                    self.entry(entry);
                }
            }
            MessageBody::RecoveryQuery { nonce } => {
                self.u64(15);
                self.u64(*nonce);
            }
            MessageBody::RecoveryReport(report) => {
                self.u64(16);
                self.u64(report.nonce);
                self.bool(report.recovering);
                self.position(report.last_log);
                self.position(report.configuration);
                self.membership(&report.membership);
            }
            MessageBody::AcknowledgedEntryLost { acknowledged } => {
                self.u64(17);
                self.position(*acknowledged);
            }
        }
    }
}

/// A message's own fingerprint, ids as they are: how the network orders
/// its messages and how a saved trace names the one delivered.
pub fn message_fingerprint(message: &Message) -> u64 {
    let mut state = Fingerprinter::new();
    Renamed {
        state: &mut state,
        rename: &|id| id,
    }
    .message(message);
    state.finish128() as u64
}

/// A message's fingerprint with its ids renamed.
pub fn message_fingerprint_renamed(message: &Message, rename: &dyn Fn(NodeId) -> NodeId) -> u64 {
    let mut state = Fingerprinter::new();
    Renamed {
        state: &mut state,
        rename,
    }
    .message(message);
    state.finish128() as u64
}
