//! The `legacy_upgrade` target: the legacy reader of a single-group
//! server's data directory, as the one runtime still runs it once, to
//! upgrade such a directory to its shared log
//! ([`upgrade_single_group`]). The target writes an old-format directory
//! with the legacy encoders (real `WalRecord`s in `wal/` segments, the
//! `hardstate` file, a snapshot file carrying an address book), damages
//! it as the input says, and upgrades it. Because the target wrote the
//! real records itself, it knows exactly what the upgrade may keep.
//!
//! Input layout (every field one byte unless said; see the code):
//! `[flags][record count]` then per record `[kind][args...]` (appends of
//! 1-3 entries, possibly overlapping the end of the log; truncations), an
//! optional snapshot, then up to [`MUTATIONS_MAX`] damage operations until
//! the input ends: xor a byte, cut a segment short, append or overwrite
//! raw bytes, replace the hard-state file, write a durable marker (valid
//! or raw), write a raw snapshot file, delete a segment.
//!
//! Checked: no panic; the upgrade either refuses or upgrades (a
//! directory of old data is never taken for a new one); once upgraded,
//! upgrading again does nothing, and the new shared log opens and holds
//! for the group exactly what the upgrade reported (hard state, snapshot
//! position, entry count, last index), its entries contiguous after its
//! base, no more than were written, every one the conversion
//! ([`convert_entry`]) of an entry written at that index; with no damage
//! but garbage appended to the last segment, the upgrade must succeed
//! and keep exactly the log and hard state written (a torn tail loses
//! nothing real); and the upgrade never asks for more memory at once
//! than [`allocation_bound_bytes`](super::alloc::allocation_bound_bytes)
//! of the directory's bytes (when
//! [`LargestAllocation`](super::alloc::LargestAllocation) is installed).
//! A checksum cannot tell a forged record from a real one, so when the
//! input's raw bytes leave a valid record that the target did not write,
//! only the structural checks apply.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use concord::multi::GroupId;
use concord::{Entry, EntryPayload, HardState, LogPosition, Membership, Snapshot};
use concord_tokio::addresses::{wrap_snapshot, AddressBook};
use concord_tokio::multi::segment_files::DirSegments;
use concord_tokio::multi::shared_log::{MultiWalOptions, SharedLog};
use concord_tokio::multi::snapshot_store::DirSnapshots;
use concord_tokio::multi::upgrade::{
    convert_entry, upgrade_single_group, UpgradeOptions, UpgradeOutcome,
};
use concord_tokio::snapshot_file::{snapshot_file_name, write_snapshot_file, SNAPSHOT_DIR_NAME};
// The legacy format's writer, kept for the upgrade's tests and this
// target: the one runtime only reads it.
use concord_tokio::wal::{
    encode_record, segment_header, segment_name, write_hard_state, DurableMarker, WalRecord,
    CHECKSUM_SALT, MARKER_FILE_NAME, RECORD_HEADER_BYTES,
};

use super::{alloc, Cursor, Violation};

const TARGET: &str = "legacy_upgrade";

/// The group the old log becomes.
const GROUP: GroupId = 1;

/// Most real records written per input.
const RECORDS_MAX: usize = 16;
/// Most segments the records are spread over.
const SEGMENTS_MAX: usize = 4;
/// Most damage operations per input.
pub const MUTATIONS_MAX: usize = 16;

/// Makes each directory name unique within the process (the replay test
/// runs targets on several threads).
static DIRS: AtomicU64 = AtomicU64::new(0);

/// A scratch data directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, Violation> {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("concord-fuzz-legacy-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        for sub in ["wal", SNAPSHOT_DIR_NAME] {
            fs::create_dir_all(path.join(sub)).map_err(|e| {
                Violation::new(TARGET, format!("cannot create a scratch directory: {e}"))
            })?;
        }
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Violation + '_ {
    move |e| Violation::new(TARGET, format!("{context}: {e}"))
}

/// What the target wrote: the records and the log they rebuild.
struct Written {
    /// Every record's encoding (header and payload), as a forged record
    /// is one whose bytes are none of these.
    records: BTreeSet<Vec<u8>>,
    /// Every entry written at each index.
    entries: BTreeMap<u64, Vec<Entry>>,
    /// How many entries were written in all.
    entries_total: usize,
    /// The log the records rebuild, in order.
    log: Vec<Entry>,
    /// The snapshot written, if any.
    snapshot: Option<LogPosition>,
}

impl Written {
    fn apply(&mut self, record: &WalRecord) {
        match record {
            WalRecord::Append { entries } => {
                for entry in entries {
                    self.log.truncate(entry.index as usize - 1);
                    self.log.push(entry.clone());
                    self.entries
                        .entry(entry.index)
                        .or_default()
                        .push(entry.clone());
                    self.entries_total += 1;
                }
            }
            WalRecord::Truncate { after } => self.log.truncate(*after as usize),
            WalRecord::Snapshot { .. } => {}
        }
    }

    /// The entries recovery must return with nothing damaged.
    fn expected(&self) -> &[Entry] {
        let base = self.snapshot.map_or(0, |p| p.index) as usize;
        &self.log[base.min(self.log.len())..]
    }
}

/// Builds the real records from the input.
fn real_records(cursor: &mut Cursor<'_>, written: &mut Written) -> Vec<(WalRecord, bool)> {
    let count = usize::from(cursor.u8()) % RECORDS_MAX + 1;
    let mut term = 1;
    let mut records = Vec::with_capacity(count + 1);
    for _ in 0..count {
        let kind = cursor.u8();
        let last = written.log.len() as u64;
        let record = if kind % 4 == 3 && last > 0 {
            WalRecord::Truncate {
                after: u64::from(cursor.u8()) % (last + 1),
            }
        } else {
            // Start at the end of the log or overlap its last entries, as
            // a follower overwriting a conflicting suffix does.
            let back = u64::from(cursor.u8()) % (last.min(2) + 1);
            let first = last + 1 - back;
            term += u64::from(cursor.u8() % 2);
            let n = u64::from(cursor.u8() % 3) + 1;
            let entries = (first..first + n)
                .map(|index| {
                    let len = usize::from(cursor.u8() % 8);
                    Entry {
                        term,
                        index,
                        payload: if len == 0 {
                            EntryPayload::Noop
                        } else {
                            EntryPayload::Command(Bytes::copy_from_slice(cursor.bytes(len)))
                        },
                    }
                })
                .collect();
            WalRecord::Append { entries }
        };
        written.apply(&record);
        let new_segment = kind & 0x80 != 0;
        records.push((record, new_segment));
    }
    records
}

/// Offsets of every record in `bytes` that passes its length check and
/// checksum, with its bytes.
fn valid_records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        let field = |k: usize| {
            u32::from_le_bytes([
                bytes[at + k],
                bytes[at + k + 1],
                bytes[at + k + 2],
                bytes[at + k + 3],
            ])
        };
        let len_bytes = &bytes[at..at + 4];
        let len = field(0) as usize;
        let end = at + RECORD_HEADER_BYTES + len;
        if len > 0
            && end <= bytes.len()
            && crc32c::crc32c(len_bytes) ^ CHECKSUM_SALT == field(4)
            && crc32c::crc32c_append(
                crc32c::crc32c(len_bytes),
                &bytes[at + RECORD_HEADER_BYTES..end],
            ) ^ CHECKSUM_SALT
                == field(8)
        {
            found.push(&bytes[at..end]);
        }
        at += 1;
    }
    found
}

/// Bytes of every file under `dir`.
fn directory_bytes(dir: &std::path::Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len() as usize,
            Err(_) => 0,
        })
        .sum()
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    let mut cursor = Cursor::new(data);
    let flags = cursor.u8();
    let accept_data_loss = flags & 1 != 0;
    let mut written = Written {
        records: BTreeSet::new(),
        entries: BTreeMap::new(),
        entries_total: 0,
        log: Vec::new(),
        snapshot: None,
    };
    let mut records = real_records(&mut cursor, &mut written);
    let max_term = written.log.iter().map(|e| e.term).max().unwrap_or(0);

    let scratch = ScratchDir::new()?;
    let dir = &scratch.0;
    let wal_dir = dir.join("wal");
    let snapshot_dir = dir.join(SNAPSHOT_DIR_NAME);

    // A snapshot of the log's prefix: its file, then its record.
    if flags & 2 != 0 && !written.log.is_empty() {
        let index = u64::from(cursor.u8()) % written.log.len() as u64 + 1;
        let position = written.log[index as usize - 1].position();
        // A single-group server's snapshot leads with its address book.
        let mut book = AddressBook::new();
        book.insert(2, "127.0.0.1:7002".to_string());
        let data = wrap_snapshot(&book, format!("state at {index}").as_bytes())
            .map_err(|e| Violation::new(TARGET, format!("wrapping a snapshot: {e}")))?;
        write_snapshot_file(
            &snapshot_dir,
            &Snapshot::new(position, data).with_membership(Some(Membership::new([1, 2, 3]))),
        )
        .map_err(|e| Violation::new(TARGET, format!("writing a snapshot file: {e}")))?;
        written.snapshot = Some(position);
        records.push((
            WalRecord::Snapshot {
                position,
                discard_log: false,
            },
            false,
        ));
    }
    write_hard_state(dir, &HardState::new(max_term, Some(1)))
        .map_err(|e| Violation::new(TARGET, format!("writing the hard state: {e}")))?;

    // The segments, as the writer lays them out.
    let mut segments: Vec<Vec<u8>> = vec![segment_header().to_vec()];
    for (record, new_segment) in &records {
        let mut bytes = Vec::new();
        encode_record(record, &mut bytes)
            .map_err(|e| Violation::new(TARGET, format!("encoding a record: {e}")))?;
        segments
            .last_mut()
            .expect("one segment")
            .extend_from_slice(&bytes);
        written.records.insert(bytes);
        if *new_segment && segments.len() < SEGMENTS_MAX {
            segments.push(segment_header().to_vec());
        }
    }

    let last_segment_bytes = segments.last().map_or(0, Vec::len);

    // The damage.
    let mut damaged = false;
    let mut raw_snapshot = false;
    let mut deleted = BTreeSet::new();
    let mut mutations = 0;
    while !cursor.is_empty() && mutations < MUTATIONS_MAX {
        mutations += 1;
        let op = cursor.u8() % 8;
        let s = usize::from(cursor.u8()) % segments.len();
        let last_segment = s + 1 == segments.len();
        match op {
            0 => {
                let at = usize::from(cursor.u16());
                let mask = cursor.u8();
                let segment = &mut segments[s];
                if !segment.is_empty() && mask != 0 {
                    let at = at % segment.len();
                    segment[at] ^= mask;
                    damaged = true;
                }
            }
            1 => {
                let at = usize::from(cursor.u16());
                let segment = &mut segments[s];
                if at < segment.len() {
                    segment.truncate(at);
                    damaged = true;
                }
            }
            2 => {
                let len = usize::from(cursor.u8());
                let bytes = cursor.bytes(len);
                segments[s].extend_from_slice(bytes);
                damaged |= !last_segment && !bytes.is_empty();
            }
            3 => {
                let at = usize::from(cursor.u16());
                let len = usize::from(cursor.u8());
                let bytes = cursor.bytes(len);
                let segment = &mut segments[s];
                if !segment.is_empty() && !bytes.is_empty() {
                    let at = at % segment.len();
                    let end = (at + bytes.len()).min(segment.len());
                    segment[at..end].copy_from_slice(&bytes[..end - at]);
                    damaged = true;
                }
            }
            4 => {
                let len = usize::from(cursor.u8());
                fs::write(dir.join("hardstate"), cursor.bytes(len))
                    .map_err(io("writing the hard state"))?;
                damaged = true;
            }
            5 => {
                let bytes = if cursor.u8() & 1 == 0 {
                    DurableMarker {
                        segment: s as u64 + 1,
                        offset_bytes: u64::from(cursor.u16()),
                        last_index: u64::from(cursor.u8()),
                    }
                    .encode()
                    .to_vec()
                } else {
                    let len = usize::from(cursor.u8());
                    cursor.bytes(len).to_vec()
                };
                fs::write(wal_dir.join(MARKER_FILE_NAME), bytes)
                    .map_err(io("writing the marker"))?;
                damaged = true;
            }
            6 => {
                let position = LogPosition::new(u64::from(cursor.u8()), u64::from(cursor.u8()));
                let len = usize::from(cursor.u16() % 512);
                fs::write(
                    snapshot_dir.join(snapshot_file_name(position)),
                    cursor.bytes(len),
                )
                .map_err(io("writing a snapshot file"))?;
                raw_snapshot = true;
                damaged = true;
            }
            _ => {
                deleted.insert(s);
                damaged = true;
            }
        }
    }
    // A copy of a real record in garbage appended to the last segment
    // makes the garbage before it corruption instead of a torn tail.
    if let Some(last) = segments.last() {
        if !valid_records(&last[last_segment_bytes.min(last.len())..]).is_empty() {
            damaged = true;
        }
    }
    let mut forged = false;
    for (i, segment) in segments.iter().enumerate() {
        if deleted.contains(&i) {
            continue;
        }
        forged |= valid_records(segment)
            .iter()
            .any(|record| !written.records.contains(*record));
        fs::write(wal_dir.join(segment_name(i as u64 + 1)), segment)
            .map_err(io("writing a segment"))?;
    }

    let options = UpgradeOptions {
        accept_data_loss,
        ..UpgradeOptions::default()
    };
    // The upgrade reads whole files; nothing in them may make it allocate
    // beyond their bytes.
    let files_bytes = directory_bytes(dir);
    let first = alloc::checked(TARGET, "the upgrade", files_bytes, || {
        upgrade_single_group(dir, GROUP, &options)
    })?;
    let upgraded = match first {
        Ok(UpgradeOutcome::Upgraded(upgraded)) => upgraded,
        Ok(other) => {
            return Err(Violation::new(
                TARGET,
                format!("a directory of a single-group server was not upgraded: {other:?}"),
            ))
        }
        Err(error) => {
            if !damaged && !forged {
                return Err(Violation::new(
                    TARGET,
                    format!("the upgrade refused a log whose only damage is a torn tail: {error}"),
                ));
            }
            return Ok(());
        }
    };
    let again = upgrade_single_group(dir, GROUP, &options).map_err(|error| {
        Violation::new(
            TARGET,
            format!("a directory upgraded once refuses to start again: {error}"),
        )
    })?;
    if again != UpgradeOutcome::NotNeeded {
        return Err(Violation::new(
            TARGET,
            format!("a directory upgraded once is upgraded again: {again:?}"),
        ));
    }
    let opened = DirSegments::new(dir.join("log")).and_then(|segments| {
        let snapshots = DirSnapshots::new(dir.join("groups"))?;
        SharedLog::open(segments, snapshots, MultiWalOptions::default())
    });
    let (_, recovery) = opened.map_err(|error| {
        Violation::new(
            TARGET,
            format!("the upgraded directory's shared log does not open: {error}"),
        )
    })?;
    let recovered = recovery
        .groups
        .get(&GROUP)
        .map(|found| found.recovered.clone())
        .unwrap_or_default();
    let base = recovered.base;
    let summary = (
        recovered.hard_state,
        base,
        recovered.entries.len() as u64,
        recovered.entries.last().map_or(base.index, |e| e.index),
    );
    let reported = (
        upgraded.hard_state,
        upgraded.snapshot,
        upgraded.entries,
        upgraded.last_index,
    );
    if summary != reported {
        return Err(Violation::new(
            TARGET,
            format!(
                "the upgrade reported (hard state, snapshot, entries, last index) {reported:?} \
                 but the shared log holds {summary:?}"
            ),
        ));
    }
    for (k, entry) in recovered.entries.iter().enumerate() {
        if entry.index != base.index + 1 + k as u64 {
            return Err(Violation::new(
                TARGET,
                format!(
                    "upgraded entry {k} has index {} after a base at index {}",
                    entry.index, base.index
                ),
            ));
        }
    }
    if !raw_snapshot && base != written.snapshot.unwrap_or(LogPosition::ZERO) {
        return Err(Violation::new(
            TARGET,
            format!(
                "upgraded with a base of {base:?}, but the only snapshot written is {:?}",
                written.snapshot
            ),
        ));
    }
    if !forged {
        if recovered.entries.len() > written.entries_total {
            return Err(Violation::new(
                TARGET,
                format!(
                    "upgraded {} entries but only {} were ever written",
                    recovered.entries.len(),
                    written.entries_total
                ),
            ));
        }
        for entry in &recovered.entries {
            let real = written
                .entries
                .get(&entry.index)
                .is_some_and(|at| at.iter().any(|w| convert_entry(w) == *entry));
            if !real {
                return Err(Violation::new(
                    TARGET,
                    format!("upgraded {entry:?}, which was never written at that index"),
                ));
            }
        }
        let expected: Vec<Entry> = written.expected().iter().map(convert_entry).collect();
        if !damaged && recovered.entries != expected {
            return Err(Violation::new(
                TARGET,
                format!(
                    "with only a torn tail, the upgrade kept {} entries ending at {:?} instead \
                     of the {} written ending at {:?}",
                    recovered.entries.len(),
                    recovered.entries.last().map(Entry::position),
                    expected.len(),
                    expected.last().map(Entry::position),
                ),
            ));
        }
        if !damaged && recovered.hard_state != HardState::new(max_term, Some(1)) {
            return Err(Violation::new(
                TARGET,
                format!(
                    "the upgrade changed the hard state to {:?}",
                    recovered.hard_state
                ),
            ));
        }
    }
    Ok(())
}

/// Real data directories for the seed corpus: logs of several shapes,
/// undamaged, with a torn tail, and with a few kinds of damage.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    // flags, record count - 1, then per record: kind, back, term step,
    // entry count - 1, and per entry a payload length and payload.
    let mut log = vec![0u8, 5];
    for i in 0..6u8 {
        let kind = if i == 2 { 0x80 } else { 0 };
        log.extend_from_slice(&[kind, 0, i % 2, 1, 3, b'a' + i, b'b', b'c', 0]);
    }
    seeds.push(("log-two-segments".to_string(), log.clone()));
    let mut snapshot = log.clone();
    snapshot[0] = 2;
    snapshot.push(3); // snapshot at index 4
    seeds.push(("log-snapshot".to_string(), snapshot.clone()));
    let mut torn = log.clone();
    torn.extend_from_slice(&[2, 1, 6, 9, 0, 0, 0, 1, 2]); // append 6 raw bytes to the last segment
    seeds.push(("log-torn-tail".to_string(), torn));
    let mut flipped = snapshot.clone();
    flipped.extend_from_slice(&[0, 0, 40, 0, 0x10]); // xor a byte of segment 1
    seeds.push(("log-flipped-byte".to_string(), flipped));
    let mut cut = log.clone();
    cut.extend_from_slice(&[1, 0, 30, 0]); // cut segment 1 at byte 30
    seeds.push(("log-cut-first-segment".to_string(), cut));
    let mut marker = log.clone();
    marker.extend_from_slice(&[5, 1, 0, 0xff, 0x00, 12]); // a marker past the data
    seeds.push(("log-marker-past-end".to_string(), marker));
    let mut marker_loss = log.clone();
    marker_loss[0] = 1; // accept data loss
    marker_loss.extend_from_slice(&[1, 1, 20, 0, 5, 1, 0, 0x80, 0x00, 12]);
    seeds.push(("log-accepted-loss".to_string(), marker_loss));
    let mut truncate = vec![0u8, 3];
    truncate.extend_from_slice(&[0, 0, 1, 2, 1, b'x', 1, b'y', 1, b'z']);
    truncate.extend_from_slice(&[3, 1]); // truncate after 1
    truncate.extend_from_slice(&[0, 0, 1, 0, 2, b'p', b'q']);
    truncate.extend_from_slice(&[0, 1, 0, 1, 0, 0]); // overlap the last entry
    seeds.push(("log-truncate-overwrite".to_string(), truncate));
    let mut hard_state = log.clone();
    hard_state.extend_from_slice(&[4, 0, 3, 1, 2, 3]);
    seeds.push(("log-bad-hardstate".to_string(), hard_state));
    let mut raw_snapshot = log;
    raw_snapshot.extend_from_slice(&[
        6, 0, 9, 1, 8, 0, b'C', b'N', b'C', b'D', b'S', b'N', b'A', b'P',
    ]);
    seeds.push(("log-raw-snapshot".to_string(), raw_snapshot.clone()));
    // A record whose checksums hold but whose entry announces 60 MiB in a
    // few bytes, appended to the last segment: recovery must not allocate
    // what it announces.
    let mut record = Vec::new();
    encode_record(
        &WalRecord::Append {
            entries: vec![Entry {
                term: 1,
                index: 7,
                payload: EntryPayload::Command(Bytes::from_static(b"hostile")),
            }],
        },
        &mut record,
    )
    .expect("encodes");
    let payload =
        super::corpus::inflate_length(&record[RECORD_HEADER_BYTES..], b"hostile", 60 << 20);
    let len_bytes = (payload.len() as u32).to_le_bytes();
    let mut forged = len_bytes.to_vec();
    forged.extend_from_slice(&(crc32c::crc32c(&len_bytes) ^ CHECKSUM_SALT).to_le_bytes());
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &payload) ^ CHECKSUM_SALT;
    forged.extend_from_slice(&checksum.to_le_bytes());
    forged.extend_from_slice(&payload);
    let mut hostile = raw_snapshot;
    hostile.truncate(hostile.len() - 14);
    hostile.extend_from_slice(&[2, 1, forged.len() as u8]);
    hostile.extend_from_slice(&forged);
    seeds.push(("log-hostile-length".to_string(), hostile));
    seeds
}
