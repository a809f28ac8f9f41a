//! Snapshots and log compaction (§7).
//!
//! **Taking a snapshot.** When the entries (or bytes) applied since the
//! last snapshot reach the configured threshold, or the host asks with
//! [`Input::RequestSnapshot`], the node emits [`Action::TakeSnapshot`]. The
//! host serializes its state machine, stores it durably and reports it with
//! [`Input::Snapshotted`]. Only then does the node move its log's base: the
//! entries the snapshot covers are released from memory, except for the
//! last `compaction_trailing_entries`, kept so that a follower a little
//! behind is caught up from the log. The base never passes the applied
//! index, nor the durable log.
//!
//! **Where the bytes come from.** The core never holds a snapshot's bytes,
//! so a snapshot of any size costs it a few words of memory: the host
//! reports its snapshot as a [`SnapshotMeta`] (position, size, checksum),
//! and the node asks the host for each chunk it sends with
//! [`Action::SendSnapshotChunk`], which the host fills from its stored
//! snapshot (a file read at an offset, typically). A follower hands each
//! chunk it receives to its host with [`Action::WriteSnapshotChunk`] (an
//! append to a file that need not be durable yet) and keeps only a
//! running checksum. After a restart the host reports the recovered
//! snapshot with [`Input::Snapshotted`]; until it does, followers behind
//! the log's base wait.
//!
//! **Sending a snapshot.** A follower whose next entry lies at or below the
//! leader's base is switched to the snapshot state and sent the snapshot
//! in chunks of at most `snapshot_chunk_bytes_max` bytes, each counted in
//! the follower's in-flight window, at most `snapshot_chunks_inflight_max`
//! of them unanswered. Every chunk names the snapshot (its
//! last position, size and [`checksum64`]) and its offset; the follower
//! answers with how many bytes it holds. A chunk that does not continue
//! what the follower holds (lost or reordered chunks, a follower restart, a
//! new leader or a newer snapshot) is answered with a rewind and the leader
//! resends from there; a duplicate is answered and ignored. A heartbeat
//! answer that finds the transfer where the previous one left it resends
//! from the last confirmed offset, so lost chunks and lost answers cannot
//! stall a transfer, while chunks of a transfer that is advancing are not
//! sent twice.
//!
//! **Installing a snapshot.** Once a follower has received every byte and
//! their checksum matches, it installs: its log's base becomes the snapshot's
//! last entry, the entries after it are kept if its log holds that entry
//! (same term at the same index) and dropped otherwise, the commit index
//! moves to the snapshot, and it emits [`Action::PersistSnapshot`] (making
//! the chunks written so far durable, under the usual [`WriteId`]
//! contract) then [`Action::RestoreSnapshot`].
//! It acknowledges the snapshot like an append, only once the write is
//! durable.
//!
//! [`Action::TakeSnapshot`]: crate::Action::TakeSnapshot
//! [`Action::SendSnapshotChunk`]: crate::Action::SendSnapshotChunk
//! [`Action::WriteSnapshotChunk`]: crate::Action::WriteSnapshotChunk
//! [`Action::PersistSnapshot`]: crate::Action::PersistSnapshot
//! [`Action::RestoreSnapshot`]: crate::Action::RestoreSnapshot
//! [`Input::RequestSnapshot`]: crate::Input::RequestSnapshot
//! [`Input::Snapshotted`]: crate::Input::Snapshotted
//! [`WriteId`]: crate::WriteId

use bytes::Bytes;

use crate::io::Action;
use crate::membership::Membership;
use crate::message::{Message, MessageBody, SnapshotChunk};
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::types::{Index, LogPosition, NodeId, Term};

/// Snapshots past this index are refused as malformed: no real log gets
/// near it, and installing one would let a hostile message push the log to
/// where its next index overflows.
const SNAPSHOT_INDEX_MAX: Index = u64::MAX / 2;

/// A snapshot of the replicated state: the state machine's state after
/// applying every entry up to `position`, and the cluster configuration in
/// force there.
///
/// Build one with [`Snapshot::new`] and
/// [`with_membership`](Self::with_membership).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The last entry the snapshot covers.
    pub position: LogPosition,
    /// The serialized state machine (with its client sessions).
    pub data: Bytes,
    /// The cluster configuration in force at `position`
    /// ([`Node::membership_at`]`(position.index)` when the snapshot was
    /// taken, or what the leader sent with it). `None` only for a snapshot
    /// stored before configurations traveled with snapshots; a host hands
    /// it back in [`Recovered::membership`](crate::Recovered::membership).
    pub membership: Option<Membership>,
}

impl Snapshot {
    /// A snapshot of the state after the entry at `position`, with no
    /// configuration yet (add it with [`with_membership`](Self::with_membership)).
    pub fn new(position: LogPosition, data: Bytes) -> Self {
        Snapshot {
            position,
            data,
            membership: None,
        }
    }

    /// This snapshot with `membership`, the configuration in force at its
    /// position (`None` leaves it unknown).
    pub fn with_membership(mut self, membership: Option<Membership>) -> Self {
        self.membership = membership;
        self
    }

    /// What the node is told of this snapshot (computes the checksum).
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            position: self.position,
            size_bytes: self.data.len() as u64,
            checksum: checksum64(&self.data),
        }
    }
}

/// A snapshot as the node knows it: where it ends, how long it is and its
/// [`checksum64`]. The bytes stay with the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The last entry the snapshot covers.
    pub position: LogPosition,
    /// Length of the serialized state machine, in bytes.
    pub size_bytes: u64,
    /// [`checksum64`] of those bytes.
    pub checksum: u64,
}

/// A snapshot chunk the node wants sent: the host reads `length_bytes`
/// bytes at `offset` of its stored snapshot `snapshot` and sends
/// [`into_message`](Self::into_message)`(bytes)` to `to`. Best effort, like
/// [`Action::Send`](crate::Action::Send): a host that cannot read the
/// chunk (the snapshot was replaced meanwhile) drops it, and the transfer
/// resumes from the follower's answer to a later heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunkToSend {
    /// Receiver.
    pub to: NodeId,
    /// The snapshot the chunk is cut from.
    pub snapshot: SnapshotMeta,
    /// Where the chunk starts in the snapshot, in bytes.
    pub offset: u64,
    /// Length of the chunk, in bytes (at most `snapshot_chunk_bytes_max`).
    pub length_bytes: u64,
    /// The message, its data left empty (boxed: an action stays small).
    message: Box<Message>,
}

impl SnapshotChunkToSend {
    /// The message to send, carrying `data`: the bytes
    /// `offset..offset + length_bytes` of the snapshot.
    ///
    /// # Panics
    ///
    /// When `data` is not `length_bytes` long: a broken host.
    pub fn into_message(self, data: Bytes) -> Message {
        assert_eq!(
            data.len() as u64,
            self.length_bytes,
            "snapshot chunk at offset {} of {:?} filled with the wrong length",
            self.offset,
            self.snapshot.position
        );
        let mut message = *self.message;
        if let MessageBody::InstallSnapshot(chunk) = &mut message.body {
            chunk.data = data;
        }
        message
    }

    /// [`into_message`](Self::into_message) for a host holding the whole
    /// snapshot in memory: cuts the chunk out of `snapshot` (shared, not
    /// copied).
    ///
    /// # Panics
    ///
    /// When `snapshot` is shorter than the chunk's end: not the snapshot
    /// the node asked for.
    pub fn cut_from(self, snapshot: &Bytes) -> Message {
        let start = self.offset as usize;
        let data = snapshot.slice(start..start + self.length_bytes as usize);
        self.into_message(data)
    }
}

/// CRC-64/XZ computed over bytes fed in pieces: [`checksum64`] of their
/// concatenation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum64 {
    state: u64,
}

impl Default for Checksum64 {
    fn default() -> Self {
        Checksum64 { state: !0 }
    }
}

impl Checksum64 {
    /// A checksum of no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.state = crate::crc64::update(self.state, bytes);
    }

    /// The checksum of every byte fed so far.
    pub fn finish(&self) -> u64 {
        !self.state
    }
}

/// The checksum snapshot transfers are verified with: CRC-64/XZ
/// (polynomial 0x42F0E1EBA9EA3693, reflected, initial value and final xor
/// all ones), eight bytes at a time. `checksum64(b"123456789") == 0x995DC9BBDF1939FA`.
pub fn checksum64(bytes: &[u8]) -> u64 {
    let mut checksum = Checksum64::new();
    checksum.update(bytes);
    checksum.finish()
}

/// A snapshot a follower is assembling from a leader's chunks.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    leader: NodeId,
    term: Term,
    position: LogPosition,
    size_bytes: u64,
    checksum: u64,
    /// Bytes `0..received_bytes` were handed to the host; never past
    /// `size_bytes` (itself at most `snapshot_bytes_max`).
    received_bytes: u64,
    /// Checksum of those bytes.
    received_checksum: Checksum64,
    /// The configuration in force at `position`, as the leader sent it.
    membership: Membership,
}

impl IncomingSnapshot {
    /// Feeds the transfer to a model checker's hash (see `state_hash.rs`).
    pub(crate) fn hash_state(&self, h: &mut crate::state_hash::StateHasher<'_>) {
        let IncomingSnapshot {
            leader,
            term,
            position,
            size_bytes,
            checksum,
            received_bytes,
            received_checksum,
            membership,
        } = self;
        h.id(*leader);
        h.u64(*term);
        h.position(*position);
        h.u64(*size_bytes);
        h.u64(*checksum);
        h.u64(*received_bytes);
        h.u64(received_checksum.finish());
        h.membership(membership);
    }
}

impl Node {
    /// Counts the bytes of entries `from..=to`, just applied, toward the
    /// compaction threshold.
    pub(crate) fn count_applied(&mut self, from: Index, to: Index) {
        if self.config.compaction_threshold_bytes.is_none() {
            return;
        }
        for index in from.max(self.snapshot_index + 1)..=to {
            if let Some(entry) = self.log.entry(index) {
                self.applied_since_snapshot_bytes += entry.size_bytes() as u64;
            }
        }
    }

    /// Asks the host for a snapshot when the policy (or the host itself)
    /// calls for one and none is outstanding.
    pub(crate) fn maybe_take_snapshot(&mut self, actions: &mut Vec<Action>) {
        if self.snapshot_requested {
            return;
        }
        let applied_since_entries = self.applied_index.saturating_sub(self.snapshot_index);
        if applied_since_entries == 0 {
            self.snapshot_request_explicit = false;
            return;
        }
        let due = self.snapshot_request_explicit
            || self
                .config
                .compaction_threshold_entries
                .is_some_and(|threshold| applied_since_entries >= threshold)
            || self
                .config
                .compaction_threshold_bytes
                .is_some_and(|threshold| self.applied_since_snapshot_bytes >= threshold);
        if due {
            self.snapshot_requested = true;
            self.snapshot_request_explicit = false;
            actions.push(Action::TakeSnapshot);
        }
    }

    /// The host reports a durable snapshot: keep it to serve followers and
    /// compact the log.
    pub(crate) fn handle_snapshotted(&mut self, snapshot: SnapshotMeta) {
        self.snapshot_requested = false;
        let position = snapshot.position;
        let held_index = self.snapshot.as_ref().map(|held| held.position.index);
        if held_index.is_some_and(|index| index >= position.index)
            || position.index < self.log.base().index
        {
            self.stats.snapshot_reports_stale += 1;
            return;
        }
        assert!(
            position.index <= self.applied_index,
            "host reported a snapshot at {}, past the applied index {}",
            position.index,
            self.applied_index
        );
        assert_eq!(
            self.log.term_at(position.index),
            Some(position.term),
            "host reported a snapshot at {position:?}, which is not in the log"
        );
        self.snapshot_membership = self
            .membership_at(position.index)
            .cloned()
            .expect("the configuration at an index in the log is known");
        self.snapshot = Some(snapshot);
        if position.index > self.snapshot_index {
            self.snapshot_index = position.index;
            self.applied_since_snapshot_bytes = 0;
            self.count_applied(position.index + 1, self.applied_index);
            self.stats.snapshots_taken += 1;
        }
        self.compact_log();
    }

    /// Releases the log up to the held snapshot, minus the trailing window.
    fn compact_log(&mut self) {
        let Some(held) = self.snapshot.as_ref() else {
            return;
        };
        let base = held
            .position
            .index
            .saturating_sub(self.config.compaction_trailing_entries);
        if base <= self.log.base().index {
            return;
        }
        assert!(
            base <= self.applied_index,
            "compacting to {base} past the applied index {}",
            self.applied_index
        );
        assert!(
            base <= self.persisted_index,
            "compacting to {base} past the durable log {}",
            self.persisted_index
        );
        self.log.compact_to(base);
        self.membership_compacted(base);
    }

    /// The size of the snapshot `held` as sent to `to`: a witness keeps no
    /// state machine, so it gets the position and the configuration only,
    /// as a snapshot of no bytes.
    fn snapshot_size_for(&self, to: NodeId, held: &SnapshotMeta) -> u64 {
        if self.membership.is_witness(to) {
            0
        } else {
            held.size_bytes
        }
    }

    /// Switches follower `to` to receiving the held snapshot and sends the
    /// first chunks. Returns false when there is no snapshot to send.
    pub(crate) fn start_snapshot_transfer(
        &mut self,
        to: NodeId,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(held) = self.snapshot else {
            return false;
        };
        let position = held.position;
        let size_bytes = self.snapshot_size_for(to, &held);
        let Some(progress) = self.progress.get_mut(&to) else {
            return false;
        };
        progress.become_snapshot(position, size_bytes);
        self.stats.snapshot_transfers_started += 1;
        // Forced, so that an empty snapshot is sent too.
        self.send_snapshot_chunks(to, true, actions);
        true
    }

    /// Sends follower `to` the next chunks of the held snapshot, up to its
    /// in-flight window. With `force_one`, sends one chunk even when every
    /// byte was sent (an empty one at the end), to draw an answer. Restarts
    /// the transfer if a newer snapshot replaced the one being sent.
    pub(crate) fn send_snapshot_chunks(
        &mut self,
        to: NodeId,
        force_one: bool,
        actions: &mut Vec<Action>,
    ) {
        let Some(held) = self.snapshot else {
            return;
        };
        let size_bytes = self.snapshot_size_for(to, &held);
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        debug_assert_eq!(progress.state, ProgressState::Snapshot);
        let progress_id_of_receiver = progress.id;
        let position = held.position;
        let checksum = if size_bytes == held.size_bytes {
            held.checksum
        } else {
            checksum64(&[])
        };
        if progress
            .snapshot
            .is_none_or(|transfer| transfer.position != position)
        {
            progress.become_snapshot(position, size_bytes);
            self.stats.snapshot_transfers_started += 1;
        }
        let chunk_bytes_max = self.config.snapshot_chunk_bytes_max as u64;
        let mut chunks = Vec::new();
        let mut force = force_one;
        let window = self
            .config
            .snapshot_chunks_inflight_max
            .min(self.config.inflight_messages_max);
        for _ in 0..window {
            if progress.is_paused() || progress.inflight.len() >= window {
                break;
            }
            let transfer = progress.snapshot.as_mut().expect("snapshot state");
            let start = transfer.sent_offset;
            if start >= size_bytes && !force {
                break;
            }
            force = false;
            let end = size_bytes.min(start + chunk_bytes_max);
            transfer.sent_offset = end;
            progress.inflight.add(end);
            chunks.push((start, end - start));
        }
        for (offset, length_bytes) in chunks {
            self.stats.snapshot_chunks_sent += 1;
            let message = Message {
                from: self.config.id,
                to,
                term: self.term,
                progress_id: progress_id_of_receiver,
                body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                    snapshot: position,
                    size_bytes,
                    checksum,
                    offset,
                    data: Bytes::new(),
                    membership: self.snapshot_membership.clone(),
                })),
            };
            actions.push(Action::SendSnapshotChunk(SnapshotChunkToSend {
                to,
                snapshot: held,
                offset,
                length_bytes,
                message: Box::new(message),
            }));
        }
    }

    /// Leader side of a chunk's answer.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        snapshot: LogPosition,
        next_offset: u64,
        rewind: bool,
        actions: &mut Vec<Action>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        if progress.state != ProgressState::Snapshot {
            // A late answer: the transfer is over.
            return;
        }
        if !progress.snapshot_progress(snapshot, next_offset, rewind) {
            if progress
                .snapshot
                .is_some_and(|transfer| transfer.position == snapshot)
            {
                self.stats.messages_index_out_of_range += 1;
            }
            return;
        }
        self.send_snapshot_chunks(from, false, actions);
    }

    /// Follower side of a chunk, in our current term from our leader.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        leader: NodeId,
        message_term: Term,
        chunk: SnapshotChunk,
        actions: &mut Vec<Action>,
    ) {
        let position = chunk.snapshot;
        let planted = self.planted();
        // The planted `snapshot_held_by_index` mistake takes a snapshot
        // its log reaches for one it holds; `stale_snapshot_installed`
        // forgets the check altogether.
        let held_here = if planted.snapshot_held_by_index {
            position.index <= self.log.last_index()
        } else {
            position.index <= self.log.commit_index()
        };
        if held_here && !planted.stale_snapshot_installed {
            // Everything it covers is committed here already (and so
            // matches the leader's log): acknowledge what we hold instead.
            self.incoming_snapshot = None;
            self.leader_match_index = self.leader_match_index.max(position.index);
            self.ack_owed = true;
            return;
        }
        let length = chunk.data.len() as u64;
        let well_formed = position.index <= SNAPSHOT_INDEX_MAX
            && position.term > 0
            && position.term <= message_term
            && chunk
                .offset
                .checked_add(length)
                .is_some_and(|end| end <= chunk.size_bytes)
            && chunk.membership.validate().is_ok();
        if !well_formed {
            self.stats.messages_malformed += 1;
            return;
        }
        if self.config.snapshot_bytes_max == 0 || chunk.size_bytes > self.config.snapshot_bytes_max
        {
            self.stats.snapshot_chunks_refused += 1;
            return;
        }
        let continues = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.leader == leader
                && incoming.term == message_term
                && incoming.position == position
                && incoming.size_bytes == chunk.size_bytes
                && incoming.checksum == chunk.checksum
                && incoming.membership == chunk.membership
        });
        if !continues {
            self.incoming_snapshot = None;
            if chunk.offset != 0 {
                self.stats.snapshot_chunks_refused += 1;
                self.answer_chunk(leader, position, 0, true, actions);
                return;
            }
            self.incoming_snapshot = Some(IncomingSnapshot {
                leader,
                term: message_term,
                position,
                size_bytes: chunk.size_bytes,
                checksum: chunk.checksum,
                received_bytes: 0,
                received_checksum: Checksum64::new(),
                membership: chunk.membership,
            });
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        let meta = SnapshotMeta {
            position,
            size_bytes: incoming.size_bytes,
            checksum: incoming.checksum,
        };
        let held = incoming.received_bytes;
        if chunk.offset > held {
            self.stats.snapshot_chunks_refused += 1;
            self.answer_chunk(leader, position, held, true, actions);
            return;
        }
        // The first chunk is written even when empty (an empty snapshot),
        // so that the host always starts a new incoming snapshot at offset
        // 0; after that only bytes not yet received are written, so the
        // host's writes are strictly appends.
        if chunk.offset + length > held || (held == 0 && chunk.offset == 0) {
            let new_bytes = chunk.data.slice((held - chunk.offset) as usize..);
            incoming.received_checksum.update(&new_bytes);
            incoming.received_bytes += new_bytes.len() as u64;
            actions.push(Action::WriteSnapshotChunk {
                snapshot: meta,
                offset: held,
                data: new_bytes,
            });
        }
        let held = incoming.received_bytes;
        assert!(held <= incoming.size_bytes);
        if held < incoming.size_bytes {
            self.answer_chunk(leader, position, held, false, actions);
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("set above");
        if incoming.received_checksum.finish() != incoming.checksum {
            self.stats.snapshot_checksum_mismatches += 1;
            self.answer_chunk(leader, position, 0, true, actions);
            return;
        }
        self.install_snapshot(meta, incoming.membership, actions);
        self.answer_chunk(leader, position, held, false, actions);
    }

    fn answer_chunk(
        &mut self,
        leader: NodeId,
        snapshot: LogPosition,
        next_offset: u64,
        rewind: bool,
        actions: &mut Vec<Action>,
    ) {
        let body = MessageBody::InstallSnapshotResponse {
            snapshot,
            next_offset,
            rewind,
        };
        self.send(leader, body, actions);
    }

    /// Replaces the log up to `snapshot` with the snapshot: asks the host
    /// to store it (acknowledged once durable) and to restore the state
    /// machine from it.
    fn install_snapshot(
        &mut self,
        snapshot: SnapshotMeta,
        membership: Membership,
        actions: &mut Vec<Action>,
    ) {
        let position = snapshot.position;
        let old_commit = self.log.commit_index();
        #[cfg(feature = "planted-bugs")]
        if position.index <= old_commit && self.planted().stale_snapshot_installed {
            self.install_stale_snapshot(snapshot, membership, actions);
            return;
        }
        assert!(position.index > old_commit);
        let keep_suffix = self.log.matches(position);
        if !keep_suffix {
            // Entries past our commit index may differ from the leader's:
            // stop counting them as durable and matching. In memory only:
            // on disk the snapshot write below replaces the whole log
            // (`discard_log`) in one write. Writing the truncation first,
            // as a write of its own, would let it become durable without
            // the snapshot, and a crash between the two would lose entries
            // this node acknowledged as durable, which a leader may have
            // counted toward a commit.
            self.truncate_log_after(old_commit);
            self.pending_truncate = None;
        }
        // Every earlier change goes to the host first, so the host's log is
        // the in-memory log when it executes the snapshot write.
        self.flush_persist(actions);
        self.log.install_snapshot(position, keep_suffix);
        self.membership_installed(position.index, membership.clone(), keep_suffix);
        self.emitted_index = self.log.last_index();
        self.leader_match_index = self.leader_match_index.max(position.index);
        self.persist_snapshot(snapshot, keep_suffix, &membership, actions);
        self.apply_emitted_index = position.index;
        if self.is_witness_node() {
            // Nothing to restore: a witness's snapshot only marks where its
            // log starts.
            self.applied_index = self.applied_index.max(position.index);
        } else {
            actions.push(Action::RestoreSnapshot { snapshot });
        }
        self.snapshot_installed(snapshot, membership);
        assert!(self.log.commit_index() >= position.index);
        assert_eq!(self.log.base(), position);
    }
}

impl Node {
    /// Hands the host the write of a received snapshot, in order after
    /// every earlier write: the log is dropped unless `keep_suffix`.
    fn persist_snapshot(
        &mut self,
        snapshot: SnapshotMeta,
        keep_suffix: bool,
        membership: &Membership,
        actions: &mut Vec<Action>,
    ) {
        let id = self.begin_write(self.log.last_index(), None);
        actions.push(Action::PersistSnapshot {
            id,
            snapshot,
            discard_log: !keep_suffix,
            membership: Box::new(membership.clone()),
        });
    }

    /// `snapshot`, with `membership` at its last entry, is this node's
    /// newest from now on.
    fn snapshot_installed(&mut self, snapshot: SnapshotMeta, membership: Membership) {
        self.snapshot = Some(snapshot);
        self.snapshot_membership = membership;
        self.snapshot_index = snapshot.position.index;
        self.applied_since_snapshot_bytes = 0;
        self.stats.snapshots_installed += 1;
    }
}

#[cfg(feature = "planted-bugs")]
impl Node {
    /// The planted `stale_snapshot_installed` mistake: installs a snapshot
    /// at or below the commit index as if it were new. The log restarts
    /// at the snapshot (its entries after it kept where the log holds the
    /// snapshot's last entry), the commit index goes back to it, and the
    /// state machine is restored to it.
    fn install_stale_snapshot(
        &mut self,
        snapshot: SnapshotMeta,
        membership: Membership,
        actions: &mut Vec<Action>,
    ) {
        let position = snapshot.position;
        let keep_suffix = self.log.matches(position);
        self.flush_persist(actions);
        self.log.install_stale_snapshot(position, keep_suffix);
        self.membership_installed(position.index, membership.clone(), keep_suffix);
        self.emitted_index = self.log.last_index();
        self.persist_snapshot(snapshot, keep_suffix, &membership, actions);
        // The state machine goes back to the snapshot, and so does what
        // counts as applied and durable in the log kept.
        self.apply_emitted_index = position.index;
        self.applied_index = self.applied_index.min(position.index);
        self.persisted_index = self.persisted_index.min(self.log.last_index());
        if !self.is_witness_node() {
            actions.push(Action::RestoreSnapshot { snapshot });
        }
        self.snapshot_installed(snapshot, membership);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum64_is_crc64_xz() {
        assert_eq!(checksum64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(checksum64(b""), 0);
        assert_ne!(checksum64(b"a"), checksum64(b"b"));
    }
}
