//! The key-value store with its keys on disk (`concord-node --service kv
//! --storage disk`): one group's store in a [`DiskEngine`], driven by the
//! runtime as a [`DurableStateMachine`]. It answers every request as the
//! in-memory store behind its session table does (the sharded store's
//! group, [`ShardMachine`](crate::sharded_kv::ShardMachine) in
//! [`GroupSessions`](concord::multi::sessions::GroupSessions)), byte for
//! byte, and differs in three things only:
//!
//! * its limits are the disk's: [`DISK_KEYS_MAX`] keys and
//!   [`DISK_STORE_BYTES_MAX`] bytes instead of the memory store's
//!   [`KEYS_MAX`](crate::kv::KEYS_MAX) and
//!   [`STORE_BYTES_MAX`](crate::kv::STORE_BYTES_MAX);
//! * a restart does not rebuild it: the engine holds the state and the
//!   applied index it reflects, and the log after that index is replayed;
//! * a snapshot is a stream of the engine's pairs from a point-in-time
//!   view, read on a thread of its own while applies go on, and a restore
//!   streams pairs into a new state beside the old one.
//!
//! ## What the engine holds
//!
//! Every row is in the engine's one key space, behind a one-byte tag, so
//! that a view streams all of it in one pass and a restore installs all
//! of it at once:
//!
//! ```text
//! 'd' key           the value of `key`
//! 's' client (BE)   one session: last sequence number, last use, response
//! 'm' "table"       id epoch, evictions, keys held, bytes held
//! ```
//!
//! A batch of committed entries is one atomic write of the engine: the
//! values it changed, the sessions it changed, the counters and the
//! applied index. The session table lives in memory too (bounded as the
//! group's table is) and is read back from its rows at open.
//!
//! ## The snapshot stream
//!
//! [`STREAM_MAGIC`] and the view's applied index (u64 LE), then frames:
//! each its rows' length (u32 LE), its packed length (u32 LE) and its rows
//! packed as one LZ4 block. The rows, frame after frame, are each row as
//! key length (u32 LE), value length (u32 LE), key, value, in key order;
//! then a key length of `u32::MAX` and the row count (u64 LE).
//!
//! The frames are packed because the stream is what a snapshot costs: a
//! file of it on every server, and its bytes sent to a follower that
//! catches up. The engine packs its own files; without packing, a stream
//! of values that compress would be several times the state on disk.
//! Values that do not compress cost a frame some 0.4% more.
//!
//! The runtime's snapshot file checksums the stream; a restore checks
//! every frame's lengths before it unpacks it, every row as it comes, and
//! the counters against the rows at the end.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;
use concord::durable::{DurableError, DurableStateMachine, StateRestore, StateView};
use concord::multi::sessions::SESSION_TAG;
use concord::multi::GroupId;
use concord::recovery::ForcedRecovery;
use concord::session::{ClientId, SessionRecord, SessionTable};
use concord::state_machine::RestoreError;
use concord::{Entry, EntryPayload, Index};

use crate::codec;
use crate::disk_engine::{
    DiskBatch, DiskEngine, DiskError, DiskIdentity, DiskOptions, DiskRestore, DiskState,
};
use crate::kv::{check_key, check_limits_of, check_value, Kv, KvRequest, KvResponse};
use crate::service::ServiceRequest;
use crate::sharded_kv::{misrouted, ShardMap};

/// Most keys the disk store holds; a write that would add more is
/// refused.
pub const DISK_KEYS_MAX: u64 = 1 << 32;
/// Most bytes of keys and values the disk store holds (1 TiB): past it a
/// write is refused, as the memory store refuses one past its limit.
pub const DISK_STORE_BYTES_MAX: u64 = 1 << 40;
/// First bytes of a disk store's snapshot stream (the `2`: its rows come
/// in packed frames; the unpacked stream of `1` is not read).
pub const STREAM_MAGIC: [u8; 8] = *b"CDKVSTR2";
/// Bytes of rows a view's thread packs into one frame, at least (a frame
/// ends after the row that reaches it); two frames are in flight at most.
pub const VIEW_CHUNK_BYTES: usize = 1 << 20;
/// Longest row a stream may carry: a key of the store is at most 1 KiB,
/// a value 4 MiB; a session's response is one answer, at most a
/// `get_many` of 64 such values.
const ROW_BYTES_MAX: usize = 300 << 20;

const TAG_DATA: u8 = b'd';
const TAG_SESSION: u8 = b's';
const TAG_META: u8 = b'm';
const META_KEY: &[u8] = b"mtable";
const META_BYTES: usize = 32;
const TRAILER_MARK: u32 = u32::MAX;
/// Most bytes of rows in one frame: a chunk one byte short of full, then
/// the longest row, then the trailer.
const FRAME_ROWS_BYTES_MAX: usize = VIEW_CHUNK_BYTES + 8 + ROW_BYTES_MAX + 12;
const HEADER_BYTES: usize = 16;
const FRAME_HEADER_BYTES: usize = 8;

/// Why a disk store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DiskKvError {
    /// The engine refused the directory (another owner, damage, in use).
    #[error(transparent)]
    Engine(#[from] DiskError),
    /// The rows the engine holds are not a disk store's.
    #[error("the key-value state in {dir} is damaged: {reason}")]
    Damaged {
        /// The state directory.
        dir: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The counters kept in the meta row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    epoch: u64,
    evictions: u64,
    keys: u64,
    bytes: u64,
}

impl Counters {
    fn encode(&self) -> [u8; META_BYTES] {
        let mut out = [0u8; META_BYTES];
        for (slot, value) in
            out.chunks_exact_mut(8)
                .zip([self.epoch, self.evictions, self.keys, self.bytes])
        {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Counters, String> {
        if bytes.len() != META_BYTES {
            return Err(format!(
                "its meta row has {} bytes, not {META_BYTES}",
                bytes.len()
            ));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Ok(Counters {
            epoch: word(0),
            evictions: word(1),
            keys: word(2),
            bytes: word(3),
        })
    }
}

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(1 + key.len());
    row.push(TAG_DATA);
    row.extend_from_slice(key);
    row
}

fn session_key(client: ClientId) -> [u8; 9] {
    let mut row = [TAG_SESSION; 9];
    row[1..].copy_from_slice(&client.to_be_bytes());
    row
}

fn encode_session(record: &SessionRecord<&Bytes>) -> Vec<u8> {
    let response = record.response.map(|r| &r[..]);
    let mut out = Vec::with_capacity(17 + response.map_or(0, <[u8]>::len));
    out.extend_from_slice(&record.last_seq.to_le_bytes());
    out.extend_from_slice(&record.last_used.to_le_bytes());
    match response {
        None => out.push(0),
        Some(response) => {
            out.push(1);
            out.extend_from_slice(response);
        }
    }
    out
}

fn decode_session(row: &[u8]) -> Result<SessionRecord<Bytes>, String> {
    if row.len() < 17 || row[16] > 1 || (row[16] == 0 && row.len() != 17) {
        return Err(format!("a session row of {} bytes is malformed", row.len()));
    }
    Ok(SessionRecord {
        last_seq: u64::from_le_bytes(row[0..8].try_into().unwrap()),
        last_used: u64::from_le_bytes(row[8..16].try_into().unwrap()),
        response: (row[16] == 1).then(|| Bytes::copy_from_slice(&row[17..])),
    })
}

fn client_of(row_key: &[u8]) -> Result<ClientId, String> {
    let id: [u8; 8] = row_key[1..]
        .try_into()
        .map_err(|_| format!("a session row's key has {} bytes, not 9", row_key.len()))?;
    Ok(ClientId::from_be_bytes(id))
}

/// One row of the state checked as a disk store's, adding to `seen`.
fn check_row(key: &[u8], value: &[u8], seen: &mut Counters) -> Result<(), String> {
    match key.first() {
        Some(&TAG_DATA) => {
            check_key(&key[1..])?;
            check_value(value)?;
            seen.keys += 1;
            seen.bytes += (key.len() - 1 + value.len()) as u64;
            Ok(())
        }
        Some(&TAG_SESSION) => {
            client_of(key)?;
            decode_session(value).map(|_| ())
        }
        Some(&TAG_META) if key == META_KEY => Counters::decode(value).map(|_| ()),
        _ => Err(format!(
            "a row with key {:?} is no disk store's",
            String::from_utf8_lossy(key)
        )),
    }
}

/// One group's key-value store on disk (see the [module
/// documentation](self)).
#[derive(Debug)]
pub struct DiskKv {
    engine: DiskEngine,
    state: Tables,
}

/// What a [`DiskKv`] keeps in memory beside its engine.
#[derive(Debug)]
struct Tables {
    store: Store,
    sessions: SessionTable<Bytes>,
    /// Sessions the batch being applied changed (scratch, empty between
    /// batches).
    touched: BTreeSet<ClientId>,
}

/// The store's own part: which keys are its, and what it holds.
#[derive(Debug)]
struct Store {
    map: ShardMap,
    group: GroupId,
    counters: Counters,
}

impl DiskKv {
    /// Opens (or creates) the store of `group` under `map` in `dir`, owned
    /// by `identity`; its session table holds at most `sessions_max`
    /// sessions and `session_bytes_max` bytes, as the group's in-memory
    /// table would.
    pub fn open(
        dir: impl AsRef<Path>,
        identity: DiskIdentity,
        options: DiskOptions,
        map: ShardMap,
        group: GroupId,
        sessions_max: usize,
        session_bytes_max: usize,
    ) -> Result<DiskKv, DiskKvError> {
        let engine = DiskEngine::open(dir, identity, options)?;
        let mut store = DiskKv {
            engine,
            state: Tables {
                store: Store {
                    map,
                    group,
                    counters: Counters::default(),
                },
                sessions: SessionTable::with_bytes_max(sessions_max, session_bytes_max),
                touched: BTreeSet::new(),
            },
        };
        store.load().map_err(|reason| DiskKvError::Damaged {
            dir: store.engine.dir().to_path_buf(),
            reason,
        })?;
        Ok(store)
    }

    /// The engine (for inspection and tests).
    pub fn engine(&self) -> &DiskEngine {
        &self.engine
    }

    /// Keys held.
    pub fn len(&self) -> u64 {
        self.state.store.counters.keys
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.state.store.counters.keys == 0
    }

    /// Reads the counters and the session table from the engine's rows.
    fn load(&mut self) -> Result<(), String> {
        let engine_error = |e: DiskError| e.to_string();
        let counters = match self.engine.get(META_KEY).map_err(engine_error)? {
            Some(row) => Counters::decode(&row)?,
            None if self.engine.applied_index() == 0 => Counters::default(),
            None => return Err("it has an applied index but no meta row".to_string()),
        };
        let mut sessions = SessionTable::with_bytes_max(
            self.state.sessions.capacity(),
            self.state.sessions.bytes_max(),
        );
        sessions.restore_counters(counters.epoch, counters.evictions);
        let view = self.engine.view().map_err(engine_error)?;
        for row in view.iter_from(&[TAG_SESSION]) {
            let (key, value) = row.map_err(engine_error)?;
            if key.first() != Some(&TAG_SESSION) {
                break;
            }
            sessions.restore_session(client_of(&key)?, decode_session(&value)?)?;
        }
        drop(view);
        self.state.sessions = sessions;
        self.state.store.counters = counters;
        Ok(())
    }

    /// Every row of the latest state, encoded as a stream's rows are.
    fn encode_rows(&self) -> Result<Vec<u8>, DiskError> {
        let view = self.engine.view()?;
        let mut out = Vec::new();
        for row in view.iter_from(&[]) {
            let (key, value) = row?;
            push_row(&mut out, &key, &value);
        }
        Ok(out)
    }
}

impl Store {
    fn value(batch: &DiskBatch<'_>, key: &[u8]) -> Result<Option<Bytes>, DiskError> {
        Ok(batch.get(&data_key(key))?.map(Bytes::from))
    }

    /// Writes `pairs` whole, or refuses them all past a limit.
    fn write_pairs(
        &mut self,
        batch: &mut DiskBatch<'_>,
        pairs: &[(Bytes, Bytes)],
    ) -> Result<Result<(), String>, DiskError> {
        let mut counters = self.counters;
        for (key, value) in pairs {
            match batch.get(&data_key(key))? {
                Some(old) => counters.bytes -= old.len() as u64,
                None => {
                    counters.keys += 1;
                    counters.bytes += key.len() as u64;
                }
            }
            counters.bytes += value.len() as u64;
        }
        if let Err(reason) = check_limits_of(
            counters.keys,
            DISK_KEYS_MAX,
            counters.bytes,
            DISK_STORE_BYTES_MAX,
        ) {
            return Ok(Err(reason));
        }
        for (key, value) in pairs {
            batch.put(&data_key(key), value);
        }
        self.counters = counters;
        Ok(Ok(()))
    }

    /// Executes one request of the store, as `Kv::apply` does.
    fn execute(
        &mut self,
        batch: &mut DiskBatch<'_>,
        request: KvRequest,
    ) -> Result<Result<KvResponse, String>, DiskError> {
        let values = |batch: &DiskBatch<'_>, keys: &[Bytes]| -> Result<KvResponse, DiskError> {
            let values = keys
                .iter()
                .map(|key| Self::value(batch, key))
                .collect::<Result<_, _>>()?;
            Ok(KvResponse::Values(values))
        };
        Ok(match request {
            KvRequest::Get { key } => Ok(values(batch, &[key])?),
            KvRequest::GetMany { keys } => Ok(values(batch, &keys)?),
            KvRequest::Put { key, value } => self
                .write_pairs(batch, &[(key, value)])?
                .map(|()| KvResponse::Written),
            KvRequest::PutMany { pairs } => self
                .write_pairs(batch, &pairs)?
                .map(|()| KvResponse::Written),
            KvRequest::Append { key, value } => {
                let mut new = Self::value(batch, &key)?
                    .map(|old| old.to_vec())
                    .unwrap_or_default();
                new.extend_from_slice(&value);
                match check_value(&new) {
                    Err(reason) => Err(reason),
                    Ok(()) => self
                        .write_pairs(batch, &[(key, Bytes::from(new))])?
                        .map(|()| KvResponse::Written),
                }
            }
            KvRequest::Cas { key, expected, new } => {
                if Self::value(batch, &key)? != expected {
                    Ok(KvResponse::Swapped(false))
                } else {
                    self.write_pairs(batch, &[(key, new)])?
                        .map(|()| KvResponse::Swapped(true))
                }
            }
        })
    }

    /// A command of the store (no session): the answer
    /// `ShardMachine::apply` gives.
    fn apply_store(
        &mut self,
        batch: &mut DiskBatch<'_>,
        command: &[u8],
    ) -> Result<Bytes, DiskError> {
        if let Some(refusal) = misrouted(&self.map, self.group, command) {
            return Ok(refusal);
        }
        let request = match codec::decode_request::<Kv>(command) {
            Err(error) => return Ok(codec::encode_answer::<Kv>(&Err(error.to_string()))),
            Ok((_, request)) => request,
        };
        if let Err(reason) = request.validate() {
            return Ok(codec::encode_answer::<Kv>(&Err(reason)));
        }
        let answer = self.execute(batch, request)?;
        Ok(codec::encode_answer::<Kv>(&answer))
    }
}

impl Tables {
    /// A command as `GroupSessions::apply` takes it: inside a session
    /// (tagged), or bare.
    fn apply_command(
        &mut self,
        batch: &mut DiskBatch<'_>,
        index: Index,
        command: &[u8],
    ) -> Result<Bytes, DiskError> {
        let Some((&SESSION_TAG, request)) = command.split_first() else {
            return self.store.apply_store(batch, command);
        };
        let mut changed = Vec::new();
        let store = &mut self.store;
        let outcome = self
            .sessions
            .apply_request(index, request, &mut changed, |command| {
                store.apply_store(batch, command)
            });
        self.touched.extend(changed);
        Ok(outcome?.response().encode())
    }

    fn apply_forced_recovery(&mut self, audit: &ForcedRecovery) {
        let expired = self.sessions.force_recovery(audit.commit_index_before);
        self.touched.extend(expired);
    }

    /// The rows of the sessions the batch changed, and the counters.
    fn write_sessions(&mut self, batch: &mut DiskBatch<'_>) {
        for client in std::mem::take(&mut self.touched) {
            match self.sessions.session(client) {
                Some(record) => batch.put(&session_key(client), &encode_session(&record)),
                None => batch.delete(&session_key(client)),
            }
        }
        let counters = &mut self.store.counters;
        counters.epoch = self.sessions.epoch();
        counters.evictions = self.sessions.evictions();
        batch.put(META_KEY, &counters.encode());
    }
}

fn push_row(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Appends one frame of `rows` (whole rows, or the trailer) to `out`.
fn push_frame(out: &mut Vec<u8>, rows: &[u8]) {
    assert!(!rows.is_empty() && rows.len() <= FRAME_ROWS_BYTES_MAX);
    let packed = lz4_flex::block::compress(rows);
    assert!(packed.len() <= lz4_flex::block::get_maximum_output_size(rows.len()));
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    out.extend_from_slice(&packed);
}

fn durable(error: DiskError) -> DurableError {
    match error {
        DiskError::Damaged { .. } => DurableError::Corrupt(error.to_string()),
        other => {
            let text = other.to_string();
            // RocksDB reports a full disk as an I/O error whose text is
            // the OS's (ENOSPC); the host tells the operator what to do
            // about that kind.
            let kind = if text.contains("No space left on device") {
                std::io::ErrorKind::StorageFull
            } else {
                std::io::ErrorKind::Other
            };
            DurableError::Io {
                context: "the key-value store's storage engine".to_string(),
                source: std::io::Error::new(kind, text),
            }
        }
    }
}

impl DurableStateMachine for DiskKv {
    type View = DiskKvView;
    type Restore = DiskKvRestore;

    fn durable_applied_index(&self) -> Index {
        self.engine.durable_applied_index()
    }

    fn applied_index(&self) -> Index {
        self.engine.applied_index()
    }

    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let first = self.applied_index() + 1;
        assert_eq!(
            entries[0].index, first,
            "entries are applied in order, without a gap"
        );
        assert_eq!(last.index, first + entries.len() as u64 - 1);
        let DiskKv { engine, state } = self;
        debug_assert!(state.touched.is_empty());
        let applied = engine.transact(last.index, |batch| {
            for entry in entries {
                let response = match &entry.payload {
                    EntryPayload::Command(command) => {
                        Some(state.apply_command(batch, entry.index, command)?)
                    }
                    EntryPayload::ForcedMembership(audit) => {
                        state.apply_forced_recovery(audit);
                        None
                    }
                    _ => None,
                };
                responses.push(response);
            }
            state.write_sessions(batch);
            Ok(())
        });
        // On failure the state is unknown and the host stops the group.
        state.touched.clear();
        applied.map_err(durable)
    }

    fn sync(&mut self) -> Result<(), DurableError> {
        self.engine.sync().map(|_| ()).map_err(durable)
    }

    fn view(&mut self) -> Result<DiskKvView, DurableError> {
        DiskKvView::start(self.engine.state())
    }

    fn begin_restore(&mut self, index: Index) -> Result<DiskKvRestore, DurableError> {
        Ok(DiskKvRestore {
            index,
            engine: Some(self.engine.restore_begin().map_err(durable)?),
            framed: Vec::new(),
            pending: Vec::new(),
            header: false,
            rows: 0,
            seen: Counters::default(),
            meta: None,
            ended: false,
            completed: false,
        })
    }

    fn finish_restore(&mut self, mut restore: DiskKvRestore) -> Result<(), DurableError> {
        assert!(
            restore.completed,
            "a restore is completed before it is finished"
        );
        let disk = restore
            .engine
            .take()
            .expect("a completed restore keeps its engine");
        disk.finish(&mut self.engine, restore.index)
            .map_err(durable)?;
        self.load().map_err(DurableError::Corrupt)
    }

    /// A read of the store, as `ShardMachine::query` answers it: from the
    /// latest applied state.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let Store { map, group, .. } = &self.state.store;
        let answer = match codec::decode_request::<Kv>(request) {
            Err(error) => Err(error.to_string()),
            Ok((_, request)) => match request.validate() {
                Err(reason) => request.is_read().then_some(Err(reason))?,
                Ok(()) => {
                    let keys = match &request {
                        KvRequest::Get { key } => std::slice::from_ref(key),
                        KvRequest::GetMany { keys } => &keys[..],
                        _ => return None,
                    };
                    let mut values = Vec::with_capacity(keys.len());
                    for key in keys {
                        match self.engine.get(&data_key(key)) {
                            Ok(value) => values.push(value.map(Bytes::from)),
                            // A read the disk fails is answered as such; the
                            // client may retry.
                            Err(error) => {
                                return Some(codec::encode_answer::<Kv>(&Err(format!(
                                    "the server cannot read its disk: {error}"
                                ))))
                            }
                        }
                    }
                    Ok(KvResponse::Values(values))
                }
            },
        };
        Some(misrouted(map, *group, request).unwrap_or_else(|| codec::encode_answer::<Kv>(&answer)))
    }

    fn canonical_state(&self) -> Bytes {
        Bytes::from(
            self.encode_rows()
                .unwrap_or_else(|error| format!("unreadable: {error}").into_bytes()),
        )
    }

    fn sessions(&self) -> Option<usize> {
        Some(self.state.sessions.len())
    }

    fn destroy(self) -> Result<(), DurableError> {
        self.engine.destroy().map_err(durable)
    }
}

/// A point-in-time view of a [`DiskKv`], streamed by a thread of its own
/// (see the [module documentation](self) for the stream).
#[derive(Debug)]
pub struct DiskKvView {
    index: Index,
    chunks: mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    at: usize,
    ended: bool,
}

impl DiskKvView {
    /// Starts the thread; returns once it holds the view, so the view is
    /// of the state as it is at the call.
    fn start(state: DiskState) -> Result<DiskKvView, DurableError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Index, String>>(1);
        let (chunks_tx, chunks_rx) = mpsc::sync_channel(2);
        std::thread::Builder::new()
            .name("concord-kv-view".to_string())
            .spawn(move || {
                let view = match state.view() {
                    Ok(view) => view,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.to_string()));
                        return;
                    }
                };
                let index = view.applied_index();
                let _ = ready_tx.send(Ok(index));
                // The view's index durable here, not on the loop: the
                // host compacts the log up to it only once the stream is
                // stored, and then finds it done.
                if let Err(error) = state.sync() {
                    let _ = chunks_tx.send(Err(error.to_string()));
                    return;
                }
                let mut header = Vec::with_capacity(HEADER_BYTES);
                header.extend_from_slice(&STREAM_MAGIC);
                header.extend_from_slice(&index.to_le_bytes());
                let mut out = Some(header);
                let mut rows_bytes = Vec::with_capacity(VIEW_CHUNK_BYTES + 64);
                let mut rows = 0u64;
                for row in view.iter_from(&[]) {
                    let (key, value) = match row {
                        Ok(row) => row,
                        Err(error) => {
                            let _ = chunks_tx.send(Err(error.to_string()));
                            return;
                        }
                    };
                    push_row(&mut rows_bytes, &key, &value);
                    rows += 1;
                    if rows_bytes.len() >= VIEW_CHUNK_BYTES {
                        let mut chunk = out.take().unwrap_or_default();
                        push_frame(&mut chunk, &rows_bytes);
                        rows_bytes.clear();
                        // The reader gave up: so does the stream.
                        if chunks_tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                }
                rows_bytes.extend_from_slice(&TRAILER_MARK.to_le_bytes());
                rows_bytes.extend_from_slice(&rows.to_le_bytes());
                let mut chunk = out.take().unwrap_or_default();
                push_frame(&mut chunk, &rows_bytes);
                let _ = chunks_tx.send(Ok(chunk));
            })
            .map_err(|source| DurableError::Io {
                context: "starting the thread that streams a view".to_string(),
                source,
            })?;
        let index = ready_rx
            .recv()
            .map_err(|_| DurableError::Corrupt("the view's thread ended before its view".into()))?
            .map_err(DurableError::Corrupt)?;
        Ok(DiskKvView {
            index,
            chunks: chunks_rx,
            chunk: Vec::new(),
            at: 0,
            ended: false,
        })
    }
}

impl StateView for DiskKvView {
    fn index(&self) -> Index {
        self.index
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError> {
        while self.at == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(reason)) => return Err(DurableError::Corrupt(reason)),
                Err(_) => self.ended = true,
            }
        }
        let count = buf.len().min(self.chunk.len() - self.at);
        buf[..count].copy_from_slice(&self.chunk[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}

/// A restore of a [`DiskKv`] under way: rows are checked as they come and
/// written into a new state beside the live one.
pub struct DiskKvRestore {
    index: Index,
    engine: Option<DiskRestore>,
    /// Bytes of the header or of a frame not whole yet.
    framed: Vec<u8>,
    /// Unpacked bytes of a row not whole yet.
    pending: Vec<u8>,
    header: bool,
    rows: u64,
    seen: Counters,
    meta: Option<Counters>,
    ended: bool,
    completed: bool,
}

impl std::fmt::Debug for DiskKvRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskKvRestore")
            .field("index", &self.index)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn refused(reason: impl Into<String>) -> DurableError {
    DurableError::Restore(RestoreError::new(format!(
        "disk key-value snapshot: {}",
        reason.into()
    )))
}

impl DiskKvRestore {
    /// Takes whole rows from the front of `bytes` (unpacked); returns how
    /// many bytes it used.
    fn take(&mut self, bytes: &[u8]) -> Result<usize, DurableError> {
        let mut at = 0;
        while !self.ended {
            let rest = &bytes[at..];
            if rest.len() < 4 {
                break;
            }
            let key_len = u32::from_le_bytes(rest[..4].try_into().unwrap());
            if key_len == TRAILER_MARK {
                if rest.len() < 12 {
                    break;
                }
                let count = u64::from_le_bytes(rest[4..12].try_into().unwrap());
                if count != self.rows {
                    return Err(refused(format!(
                        "its trailer counts {count} rows, but it holds {}",
                        self.rows
                    )));
                }
                self.ended = true;
                at += 12;
                break;
            }
            if rest.len() < 8 {
                break;
            }
            let key_len = key_len as usize;
            let value_len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            if key_len + value_len > ROW_BYTES_MAX {
                return Err(refused(format!(
                    "a row of {} bytes is longer than any a store writes",
                    key_len + value_len
                )));
            }
            if rest.len() < 8 + key_len + value_len {
                break;
            }
            let key = &rest[8..8 + key_len];
            let value = &rest[8 + key_len..8 + key_len + value_len];
            check_row(key, value, &mut self.seen).map_err(refused)?;
            if key == META_KEY {
                self.meta = Some(Counters::decode(value).map_err(refused)?);
            }
            self.engine
                .as_mut()
                .expect("a restore writes until completed")
                .push(key, value)
                .map_err(|e| match e {
                    DiskError::RestoreOutOfOrder { .. } => refused(e.to_string()),
                    other => durable(other),
                })?;
            self.rows += 1;
            at += 8 + key_len + value_len;
        }
        Ok(at)
    }
}

impl DiskKvRestore {
    /// Checks the stream's header at the front of `bytes`; returns how
    /// many bytes it used.
    fn take_header(&mut self, bytes: &[u8]) -> Result<usize, DurableError> {
        if bytes.len() < HEADER_BYTES {
            return Ok(0);
        }
        if bytes[..8] != STREAM_MAGIC {
            let reason = if bytes[..8] == *b"CDKVSTR1" {
                "it is an unpacked stream of an older concord: restart every server on one version"
            } else {
                "it does not start as a disk store's stream"
            };
            return Err(refused(reason));
        }
        let index = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        if index != self.index {
            return Err(refused(format!(
                "it was taken at index {index}, not at the snapshot's {}",
                self.index
            )));
        }
        self.header = true;
        Ok(HEADER_BYTES)
    }

    /// Unpacks the whole frames at the front of `bytes` into rows; returns
    /// how many bytes it used.
    fn take_frames(&mut self, bytes: &[u8]) -> Result<usize, DurableError> {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            if rest.len() < FRAME_HEADER_BYTES {
                return Ok(at);
            }
            if self.ended {
                return Err(refused("bytes follow its trailer"));
            }
            let rows_len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let packed_len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            if rows_len == 0 || rows_len > FRAME_ROWS_BYTES_MAX {
                return Err(refused(format!(
                    "a frame of {rows_len} bytes of rows is outside what a store writes (1 to {FRAME_ROWS_BYTES_MAX})"
                )));
            }
            if packed_len > lz4_flex::block::get_maximum_output_size(rows_len) {
                return Err(refused(format!(
                    "a frame packs {rows_len} bytes into {packed_len}, more than LZ4 ever does"
                )));
            }
            if rest.len() < FRAME_HEADER_BYTES + packed_len {
                return Ok(at);
            }
            let packed = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + packed_len];
            let rows = lz4_flex::block::decompress(packed, rows_len)
                .map_err(|e| refused(format!("a frame does not unpack: {e}")))?;
            if rows.len() != rows_len {
                return Err(refused(format!(
                    "a frame unpacks to {} bytes, not the {rows_len} it names",
                    rows.len()
                )));
            }
            self.take_rows(&rows)?;
            at += FRAME_HEADER_BYTES + packed_len;
        }
    }

    /// Parses unpacked rows, keeping a row cut by the frame's end for the
    /// next.
    fn take_rows(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        if self.ended {
            return Err(refused("bytes follow its trailer"));
        }
        // A row cut by the last frame waits in `pending`.
        let mut pending = std::mem::take(&mut self.pending);
        let taken = take_buffered(&mut pending, bytes, |rows| self.take(rows));
        self.pending = pending;
        taken?;
        if self.ended && !self.pending.is_empty() {
            return Err(refused("bytes follow its trailer"));
        }
        Ok(())
    }
}

/// Hands `parse` the bytes kept in `buffer` followed by `bytes` (without
/// a copy when nothing is kept), and keeps what it did not use: a row or
/// frame cut by the end of a write waits for the next.
fn take_buffered(
    buffer: &mut Vec<u8>,
    bytes: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<usize, DurableError>,
) -> Result<(), DurableError> {
    if buffer.is_empty() {
        let used = parse(bytes)?;
        buffer.extend_from_slice(&bytes[used..]);
    } else {
        buffer.extend_from_slice(bytes);
        let used = parse(buffer)?;
        buffer.drain(..used);
    }
    Ok(())
}

impl StateRestore for DiskKvRestore {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        let mut framed = std::mem::take(&mut self.framed);
        let taken = take_buffered(&mut framed, bytes, |stream| {
            let mut at = 0;
            if !self.header {
                at = self.take_header(stream)?;
                if at == 0 {
                    return Ok(0);
                }
            }
            Ok(at + self.take_frames(&stream[at..])?)
        });
        self.framed = framed;
        taken
    }

    fn complete(&mut self) -> Result<(), DurableError> {
        if !self.framed.is_empty() && self.ended {
            return Err(refused("bytes follow its trailer"));
        }
        if !self.ended || !self.pending.is_empty() || !self.framed.is_empty() {
            return Err(refused("it is cut short"));
        }
        let meta = match self.meta {
            Some(meta) => meta,
            None if self.rows == 0 => Counters::default(),
            None => return Err(refused("it has rows but no meta row")),
        };
        if (meta.keys, meta.bytes) != (self.seen.keys, self.seen.bytes) {
            return Err(refused(format!(
                "its meta row counts {} keys of {} bytes, but it holds {} keys of {} bytes",
                meta.keys, meta.bytes, self.seen.keys, self.seen.bytes
            )));
        }
        self.completed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use concord::durable::read_view;
    use concord::multi::sessions::{self, GroupSessions};
    use concord::session::SessionResponse;
    use concord::state_machine::{apply_entry, StateMachine};
    use concord::{LogPosition, Membership};

    use super::*;
    use crate::disk_engine::temp_dir::TempDir;
    use crate::sharded_kv::ShardMachine;

    const GROUP: GroupId = 1;
    /// Small, so that eviction by count and by bytes both happen.
    const SESSIONS_MAX: usize = 4;
    const SESSION_BYTES_MAX: usize = 600;

    fn map() -> ShardMap {
        ShardMap::new(2).unwrap()
    }

    fn open(dir: &Path, node: u64) -> Result<DiskKv, DiskKvError> {
        let identity = DiskIdentity {
            cluster_id: "test".to_string(),
            node_id: node,
            group_id: GROUP,
        };
        DiskKv::open(
            dir,
            identity,
            DiskOptions {
                // Durability only where a test syncs or a view does.
                sync_interval: None,
                ..DiskOptions::default()
            },
            map(),
            GROUP,
            SESSIONS_MAX,
            SESSION_BYTES_MAX,
        )
    }

    fn memory() -> GroupSessions<ShardMachine> {
        GroupSessions::with_limits(
            ShardMachine::new(map(), GROUP),
            SESSIONS_MAX,
            SESSION_BYTES_MAX,
        )
    }

    /// xorshift: the workload is the same on every run.
    struct Draw(u64);

    impl Draw {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn key(draw: &mut Draw) -> Bytes {
        // Keys of both groups: a third of the requests are misrouted.
        Bytes::from(format!("k{}", draw.below(12)))
    }

    fn request(draw: &mut Draw) -> KvRequest {
        let value = |draw: &mut Draw| {
            Bytes::from(vec![b'a' + draw.below(3) as u8; draw.below(40) as usize])
        };
        match draw.below(7) {
            0 => KvRequest::Get { key: key(draw) },
            1 => KvRequest::GetMany {
                keys: (0..1 + draw.below(3)).map(|_| key(draw)).collect(),
            },
            2 => KvRequest::Put {
                key: key(draw),
                value: value(draw),
            },
            3 => KvRequest::PutMany {
                pairs: (0..1 + draw.below(3))
                    .map(|i| (Bytes::from(format!("m{i}-{}", draw.below(2))), value(draw)))
                    .collect(),
            },
            4 => KvRequest::Append {
                key: key(draw),
                value: value(draw),
            },
            5 => KvRequest::Cas {
                key: key(draw),
                expected: (draw.below(2) == 0).then(|| value(draw)),
                new: value(draw),
            },
            // Invalid: an empty key.
            _ => KvRequest::Put {
                key: Bytes::new(),
                value: value(draw),
            },
        }
    }

    /// The next `count` entries from `index` on: registrations, commands
    /// in sessions (new, retried, stale, of unknown sessions), bare
    /// commands, junk, no-ops and a forced recovery now and then.
    fn entries(
        draw: &mut Draw,
        clients: &mut Vec<(u64, u64, bool)>,
        index: &mut Index,
        count: usize,
    ) -> Vec<Entry> {
        let mut out = Vec::new();
        for _ in 0..count {
            *index += 1;
            let command = |bytes: Bytes| EntryPayload::Command(bytes);
            let encoded =
                |draw: &mut Draw| codec::encode_request::<Kv>(draw.below(100), &request(draw));
            let payload = match draw.below(20) {
                0..=2 => {
                    // The registration's id is its index in epoch 0 or
                    // later: ask the table for it after applying.
                    clients.push((*index, 0, false));
                    command(sessions::encode_register())
                }
                3..=12 if !clients.is_empty() => {
                    let at = draw.below(clients.len() as u64) as usize;
                    let (client, seq, _) = &mut clients[at];
                    match draw.below(6) {
                        0 => {}                            // a retry of the last one
                        1 => *seq = seq.saturating_sub(1), // stale
                        _ => *seq += 1,
                    }
                    command(sessions::encode_command(*client, *seq, &encoded(draw)))
                }
                13 => command(sessions::encode_command(999_999, 1, &encoded(draw))),
                14..=16 => command(encoded(draw)),
                17 => command(Bytes::from_static(b"\x07junk")),
                18 if draw.below(8) == 0 => {
                    EntryPayload::ForcedMembership(Box::new(ForcedRecovery {
                        survivor: 1,
                        membership: Membership::new([1]),
                        previous: None,
                        last_before: LogPosition::new(*index - 1, 1),
                        commit_index_before: *index - 1 - draw.below(5).min(*index - 1),
                        term_before: 1,
                        reason: "test".to_string(),
                    }))
                }
                _ => EntryPayload::Noop,
            };
            out.push(Entry {
                term: 1,
                index: *index,
                payload,
            });
        }
        out
    }

    /// Applies `entries` to both stores in one batch; their answers must
    /// be the same bytes.
    fn apply_both(disk: &mut DiskKv, memory: &mut GroupSessions<ShardMachine>, entries: &[Entry]) {
        let mut answers = Vec::new();
        disk.apply_batch(entries, &mut answers).unwrap();
        assert_eq!(answers.len(), entries.len());
        for (entry, answer) in entries.iter().zip(answers) {
            let expected = apply_entry(memory, entry);
            assert_eq!(
                answer, expected,
                "entry {} ({:?})",
                entry.index, entry.payload
            );
        }
        assert_eq!(disk.sessions(), memory.sessions());
        assert_eq!(disk.applied_index(), entries.last().unwrap().index);
    }

    /// Registrations applied get the id of their index in the table's
    /// epoch (one that a forced recovery of the same batch changed is
    /// simply an unknown session).
    fn learn_ids(clients: &mut [(u64, u64, bool)], epoch: u64) {
        for (client, _, learned) in clients.iter_mut() {
            if !*learned {
                *client = concord::session::client_id(epoch, *client).unwrap();
                *learned = true;
            }
        }
    }

    #[test]
    fn answers_every_request_as_the_memory_store_does_across_restarts_and_restores() {
        let dir = TempDir::new("same");
        let mut disk = open(&dir.0, 1).unwrap();
        let mut memory = memory();
        let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
        let mut clients = Vec::new();
        let mut index = 0;
        let mut answered = 0;
        for round in 0..60 {
            let count = 1 + draw.below(12) as usize;
            let batch = entries(&mut draw, &mut clients, &mut index, count);
            apply_both(&mut disk, &mut memory, &batch);
            learn_ids(&mut clients, memory.table().epoch());
            answered += batch.len();
            // Reads outside the log answer alike too.
            for _ in 0..3 {
                let read = codec::encode_request::<Kv>(0, &request(&mut draw));
                assert_eq!(disk.query(&read), memory.query(&read));
            }
            if round % 10 == 9 {
                // A restart: the store opens where it was, sessions and all.
                disk.sync().unwrap();
                drop(disk);
                disk = open(&dir.0, 1).unwrap();
                assert_eq!(disk.applied_index(), index);
            }
        }
        assert!(answered > 300);
        assert!(
            memory.table().evictions() > 0,
            "the workload evicts sessions"
        );
        // A snapshot restored elsewhere goes on answering alike.
        let mut view = disk.view().unwrap();
        assert_eq!(view.index(), index);
        let stream = read_view(&mut view).unwrap();
        let other = TempDir::new("restored");
        let mut restored = open(&other.0, 2).unwrap();
        let mut restore = restored.begin_restore(index).unwrap();
        for chunk in stream.chunks(777) {
            restore.write(chunk).unwrap();
        }
        restore.complete().unwrap();
        restored.finish_restore(restore).unwrap();
        assert_eq!(restored.applied_index(), index);
        assert_eq!(restored.canonical_state(), disk.canonical_state());
        for _ in 0..20 {
            let batch = entries(&mut draw, &mut clients, &mut index, 8);
            let mut memory_copy = memory.clone();
            apply_both(&mut disk, &mut memory, &batch);
            apply_both(&mut restored, &mut memory_copy, &batch);
            learn_ids(&mut clients, memory.table().epoch());
        }
    }

    #[test]
    fn a_view_shows_its_index_whatever_is_applied_after_it() {
        let dir = TempDir::new("view");
        let mut disk = open(&dir.0, 1).unwrap();
        let mut memory = memory();
        let mut draw = Draw(7);
        let (mut clients, mut index) = (Vec::new(), 0);
        let batch = entries(&mut draw, &mut clients, &mut index, 40);
        apply_both(&mut disk, &mut memory, &batch);
        let before = disk.canonical_state();
        assert!(disk.durable_applied_index() < index, "nothing synced yet");
        let mut view = disk.view().unwrap();
        let at = index;
        for _ in 0..5 {
            let batch = entries(&mut draw, &mut clients, &mut index, 20);
            apply_both(&mut disk, &mut memory, &batch);
        }
        assert_ne!(disk.canonical_state(), before);
        let stream = read_view(&mut view).unwrap();
        // Its thread made its index durable, not the loop.
        assert!(disk.durable_applied_index() >= at);
        let other = TempDir::new("view-restored");
        let mut restored = open(&other.0, 2).unwrap();
        let mut restore = restored.begin_restore(at).unwrap();
        restore.write(&stream).unwrap();
        restore.complete().unwrap();
        restored.finish_restore(restore).unwrap();
        assert_eq!(restored.canonical_state(), before);
    }

    /// A store of 20 puts (of keys of both groups: those of the other are
    /// refused), its stream, index and keys held.
    fn stream_of_some_state(dir: &Path) -> (Vec<u8>, Index, u64) {
        let mut disk = open(dir, 1).unwrap();
        let put = |i: u64| Entry {
            term: 1,
            index: i,
            payload: EntryPayload::Command(codec::encode_request::<Kv>(
                i,
                &KvRequest::Put {
                    key: Bytes::from(format!("k{}", 2 * i)),
                    value: Bytes::from(vec![b'v'; 10]),
                },
            )),
        };
        let entries: Vec<Entry> = (1..=20).map(put).collect();
        disk.apply_batch(&entries, &mut Vec::new()).unwrap();
        assert!((1..20).contains(&disk.len()), "{} keys", disk.len());
        (
            read_view(&mut disk.view().unwrap()).unwrap(),
            20,
            disk.len(),
        )
    }

    /// The rows of a one-frame stream, unpacked.
    fn unpacked_rows(stream: &[u8]) -> Vec<u8> {
        let rows_len = u32::from_le_bytes(stream[16..20].try_into().unwrap()) as usize;
        let packed_len = u32::from_le_bytes(stream[20..24].try_into().unwrap()) as usize;
        assert_eq!(stream.len(), 24 + packed_len, "one frame");
        lz4_flex::block::decompress(&stream[24..], rows_len).unwrap()
    }

    /// `stream`'s header, then `rows` packed as one frame.
    fn packed(stream: &[u8], rows: &[u8]) -> Vec<u8> {
        let mut out = stream[..16].to_vec();
        push_frame(&mut out, rows);
        out
    }

    #[test]
    fn a_stream_in_many_frames_restores_whatever_its_writes_cut() {
        let dir = TempDir::new("frames-source");
        let mut disk = open(&dir.0, 1).unwrap();
        // Values that do not compress, past two frames' worth (half the
        // keys are the other group's, refused).
        let mut draw = Draw(7);
        let entries: Vec<Entry> = (1..=1500)
            .map(|i| {
                let value: Vec<u8> = (0..4096).map(|_| draw.below(256) as u8).collect();
                Entry {
                    term: 1,
                    index: i,
                    payload: EntryPayload::Command(codec::encode_request::<Kv>(
                        i,
                        &KvRequest::Put {
                            key: Bytes::from(format!("k{i}")),
                            value: Bytes::from(value),
                        },
                    )),
                }
            })
            .collect();
        disk.apply_batch(&entries, &mut Vec::new()).unwrap();
        let stream = read_view(&mut disk.view().unwrap()).unwrap();
        let mut frames = 0;
        let mut at = HEADER_BYTES;
        while at < stream.len() {
            frames += 1;
            at += 8 + u32::from_le_bytes(stream[at + 4..at + 8].try_into().unwrap()) as usize;
        }
        assert_eq!(at, stream.len());
        assert!(frames >= 3, "{frames} frames");
        for write_bytes in [1, 7, 4096, 1 << 20, stream.len()] {
            let target = TempDir::new("frames-target");
            let mut store = open(&target.0, 2).unwrap();
            let mut restore = store.begin_restore(1500).unwrap();
            for piece in stream.chunks(write_bytes) {
                restore.write(piece).unwrap();
            }
            restore.complete().unwrap();
            store.finish_restore(restore).unwrap();
            assert_eq!(store.len(), disk.len(), "writes of {write_bytes}");
            assert_eq!(store.canonical_state(), disk.canonical_state());
        }
    }

    #[test]
    fn a_damaged_or_cut_stream_is_refused_and_the_old_state_stays() {
        let dir = TempDir::new("source");
        let (stream, index, keys) = stream_of_some_state(&dir.0);
        let target = TempDir::new("target");
        let mut store = open(&target.0, 2).unwrap();
        let first = Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Command(codec::encode_request::<Kv>(
                1,
                &KvRequest::Put {
                    key: Bytes::from_static(b"kept"),
                    value: Bytes::from_static(b"old"),
                },
            )),
        };
        store.apply_batch(&[first], &mut Vec::new()).unwrap();
        let before = store.canonical_state();
        let rows = unpacked_rows(&stream);
        let mut wrong_index = stream.clone();
        wrong_index[8] ^= 1;
        let mut bad_magic = stream.clone();
        bad_magic[0] = b'X';
        let mut old_format = stream.clone();
        old_format[7] = b'1';
        let mut long_row = rows.clone();
        // The first row's key length: far past any row a store writes.
        long_row[..4].copy_from_slice(&u32::MAX.wrapping_sub(1).to_le_bytes());
        let long_row = packed(&stream, &long_row);
        let mut bad_count = rows.clone();
        let last = bad_count.len() - 1;
        bad_count[last - 7] ^= 1;
        let bad_count = packed(&stream, &bad_count);
        let mut junk_tail = stream.clone();
        junk_tail.push(0);
        let mut junk_frame = stream.clone();
        push_frame(&mut junk_frame, &[0; 4]);
        let mut rows_after = rows.clone();
        rows_after.push(0);
        let rows_after = packed(&stream, &rows_after);
        let mut huge_frame = stream.clone();
        huge_frame[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut overpacked = stream.clone();
        overpacked[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut damaged_frame = stream.clone();
        // The frame's first token: a match reaching before the frame.
        damaged_frame[24] = 0x0f;
        damaged_frame[25] = 0xff;
        let mut short_frame = stream.clone();
        let named = u32::from_le_bytes(short_frame[16..20].try_into().unwrap());
        short_frame[16..20].copy_from_slice(&(named + 1).to_le_bytes());
        let cases: Vec<(&str, &[u8], &str)> = vec![
            ("cut", &stream[..stream.len() - 5], "cut short"),
            ("cut in the header", &stream[..10], "cut short"),
            ("cut in a frame", &stream[..40], "cut short"),
            ("wrong index", &wrong_index, "taken at index"),
            ("magic", &bad_magic, "does not start"),
            ("unpacked stream", &old_format, "older concord"),
            ("long row", &long_row, "longer than"),
            ("count", &bad_count, "trailer counts"),
            ("junk after", &junk_tail, "follow its trailer"),
            ("a frame after", &junk_frame, "follow its trailer"),
            ("rows after", &rows_after, "follow its trailer"),
            ("huge frame", &huge_frame, "outside what a store writes"),
            ("overpacked", &overpacked, "more than LZ4"),
            ("damaged frame", &damaged_frame, "does not unpack"),
            ("frame shorter than named", &short_frame, "unpack"),
        ];
        for (name, bytes, reason) in cases {
            let mut restore = store.begin_restore(index).unwrap();
            let outcome = restore.write(bytes).and_then(|()| restore.complete());
            let error = outcome.expect_err(name).to_string();
            assert!(error.contains(reason), "{name}: {error}");
            drop(restore);
            assert_eq!(store.canonical_state(), before, "{name}");
        }
        // The whole stream restores.
        let mut restore = store.begin_restore(index).unwrap();
        restore.write(&stream).unwrap();
        restore.complete().unwrap();
        store.finish_restore(restore).unwrap();
        assert_eq!(store.len(), keys);
        assert_ne!(store.canonical_state(), before);
    }

    #[test]
    fn a_directory_of_another_node_is_refused() {
        let dir = TempDir::new("owner");
        drop(open(&dir.0, 1).unwrap());
        let error = open(&dir.0, 2).unwrap_err().to_string();
        assert!(error.contains('2') && error.contains('1'), "{error}");
    }

    #[test]
    fn destroy_leaves_nothing_and_a_new_store_starts_empty() {
        let dir = TempDir::new("destroy");
        let (_, index, _) = stream_of_some_state(&dir.0);
        let store = open(&dir.0, 1).unwrap();
        assert_eq!(store.applied_index(), index);
        store.destroy().unwrap();
        assert!(!dir.0.exists());
        let store = open(&dir.0, 1).unwrap();
        assert_eq!((store.applied_index(), store.len()), (0, 0));
    }

    #[test]
    fn sessions_are_answered_from_disk_after_a_restart() {
        let dir = TempDir::new("sessions");
        let mut disk = open(&dir.0, 1).unwrap();
        let register = Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Command(sessions::encode_register()),
        };
        let put = codec::encode_request::<Kv>(
            1,
            &KvRequest::Append {
                key: Bytes::from_static(b"k0"),
                value: Bytes::from_static(b"x"),
            },
        );
        let mut answers = Vec::new();
        disk.apply_batch(&[register], &mut answers).unwrap();
        let client = match SessionResponse::decode(answers[0].as_ref().unwrap()).unwrap() {
            SessionResponse::Registered { client } => client,
            other => panic!("{other:?}"),
        };
        let command = |index| Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(sessions::encode_command(client, 1, &put)),
        };
        disk.apply_batch(&[command(2)], &mut Vec::new()).unwrap();
        drop(disk);
        // Not synced: the process did not crash, so the engine's log kept
        // the batches; the retry is answered from the stored session.
        let mut disk = open(&dir.0, 1).unwrap();
        let mut answers = Vec::new();
        disk.apply_batch(&[command(3)], &mut answers).unwrap();
        let key = codec::encode_request::<Kv>(
            0,
            &KvRequest::Get {
                key: Bytes::from_static(b"k0"),
            },
        );
        let value = codec::decode_answer::<Kv>(&disk.query(&key).unwrap()).unwrap();
        assert_eq!(
            value,
            Ok(KvResponse::Values(vec![Some(Bytes::from_static(b"x"))]))
        );
        assert!(matches!(
            SessionResponse::decode(answers[0].as_ref().unwrap()).unwrap(),
            SessionResponse::Ok(_)
        ));
    }
}
