//! The `wal_recovery` target: the one runtime's shared write-ahead log
//! ([`SharedLog::open`]) recovering from segment files, a durable marker
//! and snapshot files that the input makes, whole or damaged.
//!
//! The segments and the marker live on a [`PageCacheDisk`] (recovery
//! reads them through the same
//! [`SegmentFiles`](concord_tokio::multi::segment_files::SegmentFiles)
//! trait as real files); the snapshots are real files in a scratch directory
//! ([`DirSnapshots`]), since their format is a file's.
//!
//! Input layout (every field one byte unless said; see [`Layout`], which
//! writes it):
//!
//! * `[flags]`: bit 0 accepts data loss;
//! * `[segment count]` (modulo [`SEGMENTS_MAX`] + 1), then per segment
//!   `[number][mode]` and either, for a raw segment (mode bit 0 clear),
//!   `[len: u16][file bytes]`, or, for a framed one, `[record count]`
//!   and per record `[len: u16][payload]`: the target writes the segment
//!   header and frames each payload with checksums that hold, so a
//!   mutated payload reaches the record decoder and the replay rules
//!   instead of failing its checksum; mode bit 1 then appends
//!   `[len][raw bytes]` after the records (a torn tail, or worse);
//! * `[marker kind]`: none, a valid marker `[segment][offset: u16]`, or
//!   raw bytes `[len][bytes]`;
//! * `[snapshot count]` (modulo [`SNAPSHOTS_MAX`] + 1), then per snapshot
//!   `[group][kind][index][term]` and either a real snapshot `[len][data]`
//!   stored by [`DirSnapshots`], or raw file bytes `[len: u16][bytes]`
//!   under that position's file name;
//! * `[pick]`: which recovered group the continuation check appends to
//!   (modulo their count plus one: the last is a new group).
//!
//! Checked: no panic; recovery never asks for more memory at once than
//! [`allocation_bound_bytes`](super::alloc::allocation_bound_bytes) of
//! the files' bytes (when
//! [`LargestAllocation`](super::alloc::LargestAllocation) is installed);
//! and when recovery succeeds, every group it returns holds:
//!
//! * entries contiguous after its base, the last one's term at most the
//!   hard state's, its applied index at its base, a base at index 0 only
//!   as the zero position;
//! * nothing made up: every entry is one that a whole, decodable record
//!   of that group in the input holds at that index, the hard state is
//!   the default or one a record of the group holds, the base is zero or
//!   the position of a snapshot file of the group, and a snapshot reader
//!   is handed out exactly when there is a base;
//! * no group both recovered and removed;
//!
//! and the recovered log keeps working: one more entry appended to a
//! group and the log opened again gives back every group that has
//! durable state as it was, plus that entry, with nothing left to
//! truncate, and no removed group (though a removal's record may have
//! been compacted away).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use concord::multi::GroupId;
use concord::{Entry, EntryPayload, HardState, LogPosition, Membership, Snapshot};
use concord_tokio::codec;
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::record::{
    frame_payload, record_payload_at, segment_header, DurableMarker, GroupRecord,
    RECORD_HEADER_BYTES,
};
use concord_tokio::multi::shared_log::{MultiWalOptions, SharedLog, WalWrite};
use concord_tokio::multi::snapshot_store::{DirSnapshots, SnapshotStore};
use concord_tokio::multi::MultiRecovery;
use concord_tokio::snapshot_file::snapshot_file_name;

use super::{alloc, Cursor, Violation};

const TARGET: &str = "wal_recovery";

/// Most segment files per input.
pub const SEGMENTS_MAX: usize = 8;
/// Most snapshot files per input.
pub const SNAPSHOTS_MAX: usize = 4;
/// Most framed records per segment.
const RECORDS_PER_SEGMENT_MAX: usize = 128;
/// The limit records are decoded with when the target looks for what
/// the input holds: far above any record here.
const RECORD_DECODE_BYTES_MAX: usize = 64 << 20;

/// Makes each scratch directory's name unique within the process (the
/// replay test runs targets on several threads).
static DIRS: AtomicU64 = AtomicU64::new(0);

/// A scratch directory for snapshot files, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, Violation> {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "concord-fuzz-shared-log-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| {
            Violation::new(TARGET, format!("cannot create a scratch directory: {e}"))
        })?;
        Ok(ScratchDir(path))
    }

    fn snapshots(&self) -> Result<DirSnapshots, Violation> {
        DirSnapshots::new(self.0.join("groups"))
            .map_err(|e| Violation::new(TARGET, format!("opening the snapshot store: {e}")))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One segment of a [`Layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentInput {
    /// The file's bytes as they are.
    Raw(Vec<u8>),
    /// A segment header, each payload framed as a record, then `tail`.
    Framed {
        /// The records' payloads.
        payloads: Vec<Vec<u8>>,
        /// Raw bytes after the records.
        tail: Vec<u8>,
    },
}

/// The durable marker of a [`Layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerInput {
    /// No marker file.
    None,
    /// A valid marker.
    Valid {
        /// The segment it names.
        segment: u8,
        /// Bytes of it said durable.
        offset_bytes: u16,
    },
    /// The marker file's bytes.
    Raw(Vec<u8>),
}

/// One snapshot file of a [`Layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInput {
    /// The group it is of.
    pub group: u8,
    /// Its last entry.
    pub index: u8,
    /// That entry's term.
    pub term: u8,
    /// A real snapshot of these bytes (`false`), or a file of these
    /// bytes under the snapshot's name (`true`).
    pub raw: bool,
    /// The state, or the file's bytes.
    pub bytes: Vec<u8>,
}

/// The files an input makes (see the [module documentation](self)), for
/// writing seeds: [`Layout::encode`] gives the input that makes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Recovery accepts lost durable data.
    pub accept_data_loss: bool,
    /// The segments, by number.
    pub segments: Vec<(u8, SegmentInput)>,
    /// The durable marker.
    pub marker: MarkerInput,
    /// The snapshot files.
    pub snapshots: Vec<SnapshotInput>,
}

fn push_u16_len(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("a field of the layout holds at most 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn push_u8_len(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("a short field of the layout holds 255 bytes");
    out.push(len);
    out.extend_from_slice(bytes);
}

impl Layout {
    /// The input that makes these files.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.segments.len() <= SEGMENTS_MAX && self.snapshots.len() <= SNAPSHOTS_MAX);
        let mut out = vec![u8::from(self.accept_data_loss), self.segments.len() as u8];
        for (number, segment) in &self.segments {
            out.push(*number);
            match segment {
                SegmentInput::Raw(bytes) => {
                    out.push(0);
                    push_u16_len(&mut out, bytes);
                }
                SegmentInput::Framed { payloads, tail } => {
                    assert!(payloads.len() <= RECORDS_PER_SEGMENT_MAX);
                    out.push(if tail.is_empty() { 1 } else { 3 });
                    out.push(payloads.len() as u8);
                    for payload in payloads {
                        push_u16_len(&mut out, payload);
                    }
                    if !tail.is_empty() {
                        push_u8_len(&mut out, tail);
                    }
                }
            }
        }
        match &self.marker {
            MarkerInput::None => out.push(0),
            MarkerInput::Valid {
                segment,
                offset_bytes,
            } => {
                out.push(1);
                out.push(*segment);
                out.extend_from_slice(&offset_bytes.to_le_bytes());
            }
            MarkerInput::Raw(bytes) => {
                out.push(2);
                push_u8_len(&mut out, bytes);
            }
        }
        out.push(self.snapshots.len() as u8);
        for snapshot in &self.snapshots {
            out.extend_from_slice(&[
                snapshot.group,
                u8::from(snapshot.raw),
                snapshot.index,
                snapshot.term,
            ]);
            if snapshot.raw {
                push_u16_len(&mut out, &snapshot.bytes);
            } else {
                push_u8_len(&mut out, &snapshot.bytes);
            }
        }
        out
    }

    /// The layout of a real log: every segment framed (its records'
    /// payloads, and whatever follows the last whole record as its
    /// tail), or raw, as `raw` says; the marker's bytes as they are; the
    /// snapshots given.
    pub fn of_disk(disk: &PageCacheDisk, raw: bool, snapshots: Vec<SnapshotInput>) -> Layout {
        let segments = disk
            .segment_bytes()
            .into_iter()
            .map(|(number, bytes)| {
                let number = u8::try_from(number).expect("a seed's log has few segments");
                if raw {
                    return (number, SegmentInput::Raw(bytes));
                }
                let mut payloads = Vec::new();
                let mut at = segment_header().len().min(bytes.len());
                while let Some(payload) = record_payload_at(&bytes, at) {
                    at += RECORD_HEADER_BYTES + payload.len();
                    payloads.push(payload.to_vec());
                }
                let tail = bytes[at..].to_vec();
                (number, SegmentInput::Framed { payloads, tail })
            })
            .collect();
        let marker = disk
            .marker_bytes()
            .map_or(MarkerInput::None, MarkerInput::Raw);
        Layout {
            accept_data_loss: false,
            segments,
            marker,
            snapshots,
        }
    }
}

/// What the input holds that recovery may give back: every entry and
/// hard state of every whole record that decodes, and every snapshot
/// position.
#[derive(Default)]
struct Provenance {
    entries: BTreeMap<(GroupId, u64), Vec<Entry>>,
    hard_states: BTreeMap<GroupId, Vec<HardState>>,
    snapshots: BTreeMap<GroupId, BTreeSet<LogPosition>>,
}

impl Provenance {
    /// Notes every record framed anywhere in `bytes`: recovery reads
    /// records only at record boundaries, so this is a superset.
    fn note_segment(&mut self, bytes: &[u8]) {
        for at in 0..bytes.len() {
            let Some(payload) = record_payload_at(bytes, at) else {
                continue;
            };
            match codec::decode::<GroupRecord>(payload, RECORD_DECODE_BYTES_MAX) {
                Ok(GroupRecord::Append { group, entries }) => {
                    for entry in entries {
                        self.entries
                            .entry((group, entry.index))
                            .or_default()
                            .push(entry);
                    }
                }
                Ok(GroupRecord::HardState { group, hard_state }) => {
                    self.hard_states.entry(group).or_default().push(hard_state);
                }
                _ => {}
            }
        }
    }
}

/// The files built from the input.
struct Built {
    disk: PageCacheDisk,
    scratch: ScratchDir,
    accept_data_loss: bool,
    provenance: Provenance,
    files_bytes: usize,
    pick: u8,
}

fn build(data: &[u8]) -> Result<Built, Violation> {
    let mut cursor = Cursor::new(data);
    let accept_data_loss = cursor.u8() & 1 != 0;
    let disk = PageCacheDisk::new();
    let mut provenance = Provenance::default();
    let mut files_bytes = 0;
    let segments = usize::from(cursor.u8()) % (SEGMENTS_MAX + 1);
    for _ in 0..segments {
        let number = u64::from(cursor.u8());
        let mode = cursor.u8();
        let bytes = if mode & 1 == 0 {
            let len = usize::from(cursor.u16());
            cursor.bytes(len).to_vec()
        } else {
            let mut bytes = segment_header().to_vec();
            let records = usize::from(cursor.u8()) % (RECORDS_PER_SEGMENT_MAX + 1);
            for _ in 0..records {
                let len = usize::from(cursor.u16());
                let payload = cursor.bytes(len);
                if !payload.is_empty() {
                    frame_payload(payload, &mut bytes)
                        .map_err(|e| Violation::new(TARGET, format!("framing a record: {e}")))?;
                }
            }
            if mode & 2 != 0 {
                let len = usize::from(cursor.u8());
                bytes.extend_from_slice(cursor.bytes(len));
            }
            bytes
        };
        provenance.note_segment(&bytes);
        files_bytes += bytes.len();
        disk.overwrite_segment(number, bytes);
    }
    let marker = match cursor.u8() % 3 {
        0 => None,
        1 => Some(
            DurableMarker {
                segment: u64::from(cursor.u8()),
                offset_bytes: u64::from(cursor.u16()),
            }
            .encode()
            .to_vec(),
        ),
        _ => {
            let len = usize::from(cursor.u8());
            Some(cursor.bytes(len).to_vec())
        }
    };
    files_bytes += marker.as_ref().map_or(0, Vec::len);
    disk.overwrite_marker(marker);

    let scratch = ScratchDir::new()?;
    let mut store = scratch.snapshots()?;
    let snapshots = usize::from(cursor.u8()) % (SNAPSHOTS_MAX + 1);
    for _ in 0..snapshots {
        let group = GroupId::from(cursor.u8());
        let raw = cursor.u8() & 1 != 0;
        let position = LogPosition::new(u64::from(cursor.u8()), u64::from(cursor.u8()));
        if raw {
            let len = usize::from(cursor.u16());
            let bytes = cursor.bytes(len);
            let dir = scratch.0.join("groups").join(format!("{group:020}"));
            fs::create_dir_all(&dir)
                .and_then(|()| fs::write(dir.join(snapshot_file_name(position)), bytes))
                .map_err(|e| Violation::new(TARGET, format!("writing a snapshot file: {e}")))?;
            files_bytes += bytes.len();
        } else {
            let len = usize::from(cursor.u8());
            let state = Bytes::copy_from_slice(cursor.bytes(len));
            files_bytes += state.len();
            let snapshot =
                Snapshot::new(position, state).with_membership(Some(Membership::new([1, 2, 3])));
            store
                .store(group, &snapshot)
                .map_err(|e| Violation::new(TARGET, format!("storing a snapshot: {e}")))?;
        }
        provenance
            .snapshots
            .entry(group)
            .or_default()
            .insert(position);
    }
    Ok(Built {
        disk,
        scratch,
        accept_data_loss,
        provenance,
        files_bytes,
        pick: cursor.u8(),
    })
}

fn check_group(
    group: GroupId,
    found: &concord_tokio::multi::RecoveredGroup,
    provenance: &Provenance,
) -> Result<(), Violation> {
    let fail = |message: String| Err(Violation::new(TARGET, format!("group {group}: {message}")));
    let recovered = &found.recovered;
    let base = recovered.base;
    for (k, entry) in recovered.entries.iter().enumerate() {
        if entry.index != base.index + 1 + k as u64 {
            return fail(format!(
                "recovered entry {k} has index {} after a base at index {}",
                entry.index, base.index
            ));
        }
        let real = provenance
            .entries
            .get(&(group, entry.index))
            .is_some_and(|held| held.contains(entry));
        if !real {
            return fail(format!(
                "recovered {entry:?}, which no record of the group holds at that index"
            ));
        }
    }
    if let Some(last) = recovered.entries.last() {
        if last.term > recovered.hard_state.term {
            return fail(format!(
                "the last entry's term {} is above the hard state's {}",
                last.term, recovered.hard_state.term
            ));
        }
    }
    let hard_state = recovered.hard_state;
    if hard_state != HardState::default()
        && !provenance
            .hard_states
            .get(&group)
            .is_some_and(|held| held.contains(&hard_state))
    {
        return fail(format!(
            "recovered the hard state {hard_state:?}, which no record of the group holds"
        ));
    }
    if base != LogPosition::ZERO
        && !provenance
            .snapshots
            .get(&group)
            .is_some_and(|held| held.contains(&base))
    {
        return fail(format!(
            "recovered a base of {base:?}, which is no snapshot file of the group"
        ));
    }
    if base.index == 0 && base != LogPosition::ZERO {
        return fail(format!(
            "recovered a base of {base:?}: no entry has index 0"
        ));
    }
    if recovered.applied_index != base.index {
        return fail(format!(
            "recovered an applied index of {} with a base at {}",
            recovered.applied_index, base.index
        ));
    }
    match &found.snapshot {
        Some(reader) if reader.meta().position != base => fail(format!(
            "handed a snapshot at {:?} with a base of {base:?}",
            reader.meta().position
        )),
        None if base != LogPosition::ZERO => fail(format!(
            "recovered a base of {base:?} without a snapshot to restore"
        )),
        _ => Ok(()),
    }
}

/// What the target found, for tests of the seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Recovery refused the files.
    Refused,
    /// Recovery returned this many groups holding this many entries in
    /// all.
    Recovered {
        /// Groups recovered.
        groups: usize,
        /// Their entries.
        entries: usize,
    },
}

fn options(accept_data_loss: bool) -> MultiWalOptions {
    MultiWalOptions {
        accept_data_loss,
        // Small segments: the continuation check's write may start one.
        segment_bytes_max: 4096,
        ..MultiWalOptions::default()
    }
}

/// Runs the target on one input and says what recovery did.
pub fn outcome(data: &[u8]) -> Result<Outcome, Violation> {
    let built = build(data)?;
    let store = built.scratch.snapshots()?;
    let opened = alloc::checked(TARGET, "recovery", built.files_bytes, || {
        SharedLog::open(built.disk.clone(), store, options(built.accept_data_loss))
    })?;
    let Ok((mut log, first)) = opened else {
        return Ok(Outcome::Refused);
    };
    for (group, found) in &first.groups {
        check_group(*group, found, &built.provenance)?;
        if first.removed.contains(group) {
            return Err(Violation::new(
                TARGET,
                format!("group {group} is both recovered and removed"),
            ));
        }
    }
    let outcome = Outcome::Recovered {
        groups: first.groups.len(),
        entries: first
            .groups
            .values()
            .map(|found| found.recovered.entries.len())
            .sum(),
    };

    // The log keeps working: one entry more for a group, or a new one.
    let pick = usize::from(built.pick) % (first.groups.len() + 1);
    let group = first.groups.keys().nth(pick).copied().unwrap_or_else(|| {
        (1..)
            .find(|g| !first.groups.contains_key(g) && !first.removed.contains(g))
            .expect("a free id")
    });
    let (hard_state, last) =
        first
            .groups
            .get(&group)
            .map_or((HardState::default(), LogPosition::ZERO), |found| {
                let recovered = &found.recovered;
                let last = recovered
                    .entries
                    .last()
                    .map_or(recovered.base, Entry::position);
                (recovered.hard_state, last)
            });
    let term = hard_state.term.max(last.term).max(1);
    let new_hard_state = HardState { term, ..hard_state };
    let entry = Entry {
        term,
        index: last.index + 1,
        payload: EntryPayload::Command(Bytes::from_static(b"after recovery")),
    };
    log.write([WalWrite::Log {
        group,
        hard_state: (new_hard_state != hard_state).then_some(new_hard_state),
        truncate_after: None,
        entries: vec![entry.clone()].into(),
    }])
    .map_err(|e| {
        Violation::new(
            TARGET,
            format!("a recovered log refuses to append to group {group}: {e}"),
        )
    })?;
    drop(log);

    let store = built.scratch.snapshots()?;
    let (_, again) = SharedLog::open(built.disk.clone(), store, options(built.accept_data_loss))
        .map_err(|e| {
            Violation::new(
                TARGET,
                format!("a log that recovered and was written to does not recover again: {e}"),
            )
        })?;
    check_reopened(&first, &again, group, new_hard_state, &entry)?;
    Ok(outcome)
}

fn check_reopened(
    first: &MultiRecovery,
    again: &MultiRecovery,
    written: GroupId,
    hard_state: HardState,
    entry: &Entry,
) -> Result<(), Violation> {
    let fail = |message: String| Err(Violation::new(TARGET, message));
    if again.torn_bytes_truncated != 0 {
        return fail(format!(
            "the second recovery cut {} more bytes",
            again.torn_bytes_truncated
        ));
    }
    // A removal's record pins no segment and may be compacted away with
    // the group's other records; no removal may appear, and no removed
    // group come back.
    if !again.removed.is_subset(&first.removed) {
        return fail(format!(
            "the removed groups changed from {:?} to {:?}",
            first.removed, again.removed
        ));
    }
    if let Some(back) = first.removed.iter().find(|g| again.groups.contains_key(g)) {
        return fail(format!("removed group {back} is recovered again"));
    }
    // A group recovered with nothing (its only records, say a truncation,
    // pinned no segment, which compaction then deleted) is one that is
    // absent: both start from `Recovered::default()`.
    let durable = |recovery: &MultiRecovery| -> BTreeMap<GroupId, concord::Recovered> {
        recovery
            .groups
            .iter()
            .filter(|(_, found)| found.recovered != concord::Recovered::default())
            .map(|(group, found)| (*group, found.recovered.clone()))
            .collect()
    };
    let mut expected = durable(first);
    let mine = expected.entry(written).or_default();
    mine.hard_state = hard_state;
    mine.entries.push(entry.clone());
    let got = durable(again);
    if got != expected {
        let differ: BTreeSet<GroupId> = expected
            .keys()
            .chain(got.keys())
            .filter(|g| expected.get(g) != got.get(g))
            .copied()
            .collect();
        let show = |recovered: Option<&concord::Recovered>| {
            recovered.map(|r| {
                (
                    r.hard_state.term,
                    r.base,
                    r.entries.len(),
                    r.entries.last().map(Entry::position),
                )
            })
        };
        let shown: Vec<String> = differ
            .iter()
            .map(|g| {
                format!(
                    "group {g}: expected (term, base, entries, last) {:?}, got {:?}",
                    show(expected.get(g)),
                    show(got.get(g))
                )
            })
            .collect();
        return fail(format!(
            "opened again after one append to group {written}, groups differ from the first \
             recovery's: {}",
            shown.join("; ")
        ));
    }
    Ok(())
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    outcome(data).map(|_| ())
}

/// A real shared log of three groups written by [`SharedLog`] on a
/// [`PageCacheDisk`]: eight rounds of two entries per group over small
/// segments, two hard states, an overwritten suffix of group 2; with
/// `compacted`, group 1 snapshots and group 3 is removed. The snapshots
/// on the disk come back as real snapshot inputs.
fn real_log(compacted: bool) -> (PageCacheDisk, Vec<SnapshotInput>) {
    let disk = PageCacheDisk::new();
    let options = MultiWalOptions {
        segment_bytes_max: 300,
        segments_max: 3,
        ..MultiWalOptions::default()
    };
    let (mut log, recovery) =
        SharedLog::open(disk.clone(), disk.clone(), options).expect("an empty disk opens");
    assert!(recovery.groups.is_empty());
    let mut last: BTreeMap<GroupId, u64> = BTreeMap::new();
    for round in 0..8u64 {
        let term = if round < 4 { 1 } else { 2 };
        let mut writes = Vec::new();
        for group in 1..=3 {
            let end = last.entry(group).or_default();
            let truncate_after = (group == 2 && round == 5).then(|| *end - 1);
            let first = truncate_after.unwrap_or(*end) + 1;
            let entries: Vec<Entry> = (first..first + 2)
                .map(|index| Entry {
                    term,
                    index,
                    payload: EntryPayload::Command(Bytes::from(format!("g{group} r{round}"))),
                })
                .collect();
            *end = first + 1;
            writes.push(WalWrite::Log {
                group,
                hard_state: (round % 4 == 0).then(|| HardState::new(term, Some(1))),
                truncate_after,
                entries: entries.into(),
            });
        }
        if compacted && round == 6 {
            let position = LogPosition::new(last[&1], term);
            writes.push(WalWrite::Taken {
                group: 1,
                snapshot: Snapshot::new(position, Bytes::from_static(b"group 1 state"))
                    .with_membership(Some(Membership::new([1, 2, 3]))),
            });
        }
        if compacted && round == 7 {
            writes.push(WalWrite::Remove { group: 3 });
        }
        log.write(writes).expect("the page-cache disk writes");
    }
    drop(log);
    let mut store = disk.clone();
    let mut snapshots = Vec::new();
    for group in store.groups().expect("groups") {
        if let Some(reader) = store.newest(group).expect("a snapshot") {
            let position = reader.meta().position;
            snapshots.push(SnapshotInput {
                group: u8::try_from(group).expect("a small group"),
                index: u8::try_from(position.index).expect("a small index"),
                term: u8::try_from(position.term).expect("a small term"),
                raw: false,
                bytes: reader.read_verified().expect("readable").to_vec(),
            });
        }
    }
    assert!(disk.segment_bytes().len() <= SEGMENTS_MAX);
    (disk, snapshots)
}

/// A framed payload: `record` encoded as the log encodes its records.
fn payload(record: &GroupRecord) -> Vec<u8> {
    codec::encode(record).expect("a record encodes")
}

/// The segment's framed records (a seed layout's last segment).
fn last_framed(layout: &mut Layout) -> &mut Vec<Vec<u8>> {
    match layout.segments.last_mut() {
        Some((_, SegmentInput::Framed { payloads, .. })) => payloads,
        _ => panic!("a framed layout"),
    }
}

/// Real shared logs for the seed corpus, whole and damaged, named after
/// what they hold; see [`outcome`] for what each recovers to (the
/// corpus test checks the notable ones).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let (disk, snapshots) = real_log(true);
    let framed = Layout::of_disk(&disk, false, snapshots.clone());
    let raw = Layout::of_disk(&disk, true, snapshots.clone());
    let (plain_disk, plain_snapshots) = real_log(false);
    let plain = Layout::of_disk(&plain_disk, false, plain_snapshots);
    let mut seeds = vec![
        ("log-framed".to_string(), framed.clone()),
        ("log-raw".to_string(), raw.clone()),
        ("log-plain".to_string(), plain.clone()),
        (
            "empty".to_string(),
            Layout {
                accept_data_loss: false,
                segments: Vec::new(),
                marker: MarkerInput::None,
                snapshots: Vec::new(),
            },
        ),
    ];
    let (last_number, last_bytes) = disk
        .segment_bytes()
        .into_iter()
        .next_back()
        .expect("segments");
    let last_number = last_number as u8;

    // A record torn in the middle.
    let mut torn = framed.clone();
    if let Some((_, SegmentInput::Framed { tail, .. })) = torn.segments.last_mut() {
        let mut record = Vec::new();
        frame_payload(b"the beginning of a record", &mut record).expect("frames");
        tail.extend_from_slice(&record[..RECORD_HEADER_BYTES + 4]);
    }
    seeds.push(("log-torn-tail".to_string(), torn));
    // Space filled ahead with zeros.
    let mut zeros = raw.clone();
    if let Some((_, SegmentInput::Raw(bytes))) = zeros.segments.last_mut() {
        bytes.extend_from_slice(&[0u8; 512]);
    }
    seeds.push(("log-zero-tail".to_string(), zeros));
    // A flipped byte in the first segment, records after it.
    let mut flipped = raw.clone();
    if let Some((_, SegmentInput::Raw(bytes))) = flipped.segments.first_mut() {
        bytes[40] ^= 0x10;
    }
    seeds.push(("log-flipped-byte".to_string(), flipped));
    // The marker claims more than the last segment holds.
    let mut marker = framed.clone();
    marker.marker = MarkerInput::Valid {
        segment: last_number,
        offset_bytes: last_bytes.len() as u16 + 100,
    };
    seeds.push(("log-marker-past-end".to_string(), marker.clone()));
    marker.accept_data_loss = true;
    seeds.push(("log-accepted-loss".to_string(), marker));
    let mut garbage_marker = framed.clone();
    garbage_marker.marker = MarkerInput::Raw(b"CNCDMMRK garbage".to_vec());
    seeds.push(("log-garbage-marker".to_string(), garbage_marker));
    // A segment in the middle is gone.
    let mut missing = framed.clone();
    missing.segments.remove(1);
    seeds.push(("log-missing-segment".to_string(), missing));
    // Records that pass their checksums but do not fit: a gap in group
    // 1's indices, a term above group 2's hard state, bytes that do not
    // decode.
    let mut gap = framed.clone();
    last_framed(&mut gap).push(payload(&GroupRecord::Append {
        group: 1,
        entries: vec![Entry {
            term: 2,
            index: 40,
            payload: EntryPayload::Noop,
        }],
    }));
    seeds.push(("log-forged-gap".to_string(), gap));
    let mut term = plain.clone();
    last_framed(&mut term).push(payload(&GroupRecord::Append {
        group: 2,
        entries: vec![Entry {
            term: 9,
            index: 16,
            payload: EntryPayload::Noop,
        }],
    }));
    seeds.push(("log-forged-term".to_string(), term));
    let mut undecodable = framed.clone();
    last_framed(&mut undecodable).push(vec![0xff; 5]);
    seeds.push(("log-undecodable-record".to_string(), undecodable));
    // A record whose command announces 60 MiB in a few bytes: recovery
    // must not allocate what it announces.
    let mut hostile = plain.clone();
    let announcing = payload(&GroupRecord::Append {
        group: 2,
        entries: vec![Entry {
            term: 2,
            index: 16,
            payload: EntryPayload::Command(Bytes::from_static(b"hostile")),
        }],
    });
    last_framed(&mut hostile).push(super::corpus::inflate_length(
        &announcing,
        b"hostile",
        60 << 20,
    ));
    seeds.push(("log-hostile-length".to_string(), hostile));
    // Snapshot files: one of garbage, newer than the real one; one of a
    // group with records but no snapshot record, at an entry it holds.
    let mut raw_snapshot = framed.clone();
    raw_snapshot.snapshots.push(SnapshotInput {
        group: 1,
        index: 30,
        term: 2,
        raw: true,
        bytes: b"CNCDSNAP not a snapshot".to_vec(),
    });
    seeds.push(("log-garbage-snapshot".to_string(), raw_snapshot));
    let mut unrecorded = plain;
    unrecorded.snapshots.push(SnapshotInput {
        group: 2,
        index: 9,
        term: 2,
        raw: false,
        bytes: b"group 2 state".to_vec(),
    });
    seeds.push(("log-unrecorded-snapshot".to_string(), unrecorded));
    let mut seeds: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, layout)| (name, layout.encode()))
        .collect();
    // The continuation check on the second group, and on a new one.
    let mut second = framed.encode();
    second.push(1);
    seeds.push(("log-framed-append-second-group".to_string(), second));
    let mut new_group = framed.encode();
    new_group.push(2);
    seeds.push(("log-framed-append-new-group".to_string(), new_group));
    seeds
}
