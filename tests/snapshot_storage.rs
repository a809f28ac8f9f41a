//! Snapshots in storage: snapshot files (`runtime/src/snapshot_file.rs`)
//! round trip, are written atomically and check their configuration; and
//! in a data directory of the shared write-ahead log (`open_data_dir`:
//! the log in `log/`, each group's snapshots in `groups/<group>/`) a
//! damaged or missing snapshot is a startup error naming it, a snapshot
//! being served stays readable after a newer one replaced its file, the
//! configuration is stored with a snapshot and recovered, and a snapshot
//! received half way is removed at the next start.
//!
//! (The single-group log's own snapshot tests, of its file and memory
//! storages, went with it. Installs with and without the log, a
//! snapshot file whose record a crash lost, a log continuing past a
//! snapshot and a crash between deleting covered segments are drawn by
//! `tests/multi_wal_crash.rs`'s crash property on the shared log.)
mod common;

use common::wal::group_entry_write;
use common::TempDir;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use concord::multi::GroupId;
use concord::{LogPosition, Membership, Snapshot};
use concord_tokio::multi::data_dir::{open_data_dir, DataDir};
use concord_tokio::multi::shared_log::{MultiWalOptions, WalWrite};
use concord_tokio::multi::snapshot_store::SnapshotIntake;
use concord_tokio::snapshot_file::{self, SNAPSHOT_HEADER_BYTES};
use concord_tokio::storage::{SnapshotReader, StorageError};

/// What the snapshot files' checks are xored with (the version 1 test
/// fails if it is not).
const CHECKSUM_SALT: u32 = 0x5EED_C0DE;

/// The group every data-directory test writes.
const GROUP: GroupId = 7;

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot::new(
        LogPosition::new(index, term),
        Bytes::from(format!("state after {index}").repeat(10)),
    )
}

/// The snapshot a reader reads, verified.
fn read_back(reader: Option<SnapshotReader>) -> Option<Snapshot> {
    reader.map(|reader| Snapshot::new(reader.meta().position, reader.read_verified().unwrap()))
}

/// Opens the data directory `dir` (default options).
fn open(dir: &Path) -> Result<DataDir, StorageError> {
    open_data_dir(dir, MultiWalOptions::default())
}

/// Writes entries `from..=to` of [`GROUP`] (term 1), one round each.
fn append(opened: &mut DataDir, from: u64, to: u64) {
    for index in from..=to {
        opened
            .log
            .write([group_entry_write(GROUP, index, b'v', 20)])
            .unwrap();
    }
}

/// Stores `snapshot` as [`GROUP`]'s own; its reader once durable.
fn take(opened: &mut DataDir, snapshot: Snapshot) -> SnapshotReader {
    let outcome = opened
        .log
        .write([WalWrite::Taken {
            group: GROUP,
            snapshot,
        }])
        .unwrap();
    let (group, reader) = outcome.taken.into_iter().next().expect("stored");
    assert_eq!(group, GROUP);
    reader
}

/// [`GROUP`]'s snapshot directory in the data directory `dir`.
fn group_dir(dir: &Path) -> PathBuf {
    dir.join("groups").join(format!("{GROUP:020}"))
}

/// A data directory holding entries 1 to 10 of [`GROUP`] and its snapshot
/// at 8, closed; the path of the snapshot file.
fn snapshotted(dir: &TempDir) -> PathBuf {
    let mut opened = open(&dir.0).unwrap();
    append(&mut opened, 1, 10);
    take(&mut opened, snapshot(8, 1));
    drop(opened);
    group_dir(&dir.0).join(snapshot_file::snapshot_file_name(LogPosition::new(8, 1)))
}

#[test]
fn snapshot_file_round_trips_and_names_its_position() {
    let dir = TempDir::new("round-trip");
    let original = snapshot(42, 7);
    let path = snapshot_file::write_snapshot_file(&dir.0, &original).unwrap();
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        snapshot_file::snapshot_file_name(original.position)
    );
    // Header, data, then the configuration trailer (here `None`: one
    // byte, its length and its check).
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (SNAPSHOT_HEADER_BYTES + original.data.len() + 1 + 8) as u64
    );
    assert_eq!(snapshot_file::read_snapshot_file(&path).unwrap(), original);
    // An empty state machine is a valid snapshot too.
    let empty = Snapshot::new(LogPosition::new(3, 1), Bytes::new());
    let path = snapshot_file::write_snapshot_file(&dir.0, &empty).unwrap();
    assert_eq!(snapshot_file::read_snapshot_file(&path).unwrap(), empty);
    assert_eq!(
        read_back(snapshot_file::load_newest_snapshot(&dir.0).unwrap()),
        Some(original)
    );
}

#[test]
fn torn_temporary_snapshot_file_is_ignored_and_removed() {
    let dir = TempDir::new("torn-tmp");
    let older = snapshot(10, 1);
    snapshot_file::write_snapshot_file(&dir.0, &older).unwrap();
    // A crash in the middle of writing a newer one leaves its temp file.
    let newer = snapshot(20, 1);
    let tmp = dir.0.join(format!(
        "{}.tmp",
        snapshot_file::snapshot_file_name(newer.position)
    ));
    std::fs::write(&tmp, &snapshot_file::snapshot_header(&newer)[..30]).unwrap();
    assert_eq!(
        read_back(snapshot_file::load_newest_snapshot(&dir.0).unwrap()),
        Some(older)
    );
    assert!(!tmp.exists(), "the torn temp file is removed");
}

#[test]
fn a_damaged_or_unusable_stored_configuration_is_a_startup_error() {
    let dir = TempDir::new("membership-corrupt");
    let original = snapshot(42, 7).with_membership(Some(Membership::new([1, 2, 3])));
    let path = snapshot_file::write_snapshot_file(&dir.0, &original).unwrap();
    assert_eq!(snapshot_file::read_snapshot_file(&path).unwrap(), original);
    let bytes = std::fs::read(&path).unwrap();
    let trailer_start = SNAPSHOT_HEADER_BYTES + original.data.len();
    let reason = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        match snapshot_file::read_snapshot_file(&path).unwrap_err() {
            StorageError::CorruptSnapshot { reason, .. } => reason,
            other => panic!("expected CorruptSnapshot, got {other}"),
        }
    };
    // A flipped byte of the encoded configuration fails its check.
    let mut flipped = bytes.clone();
    flipped[trailer_start + 2] ^= 0x01;
    assert!(reason(&flipped).contains("checksum"));
    // A length no file holds.
    let mut long = bytes.clone();
    let length_at = bytes.len() - 8;
    long[length_at..length_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(reason(&long).contains("cannot hold"));
    // A well-formed but unusable configuration (no voter).
    let empty = snapshot(42, 7).with_membership(Some(Membership::default()));
    let path_empty = snapshot_file::write_snapshot_file(&dir.0, &empty).unwrap();
    assert_eq!(path_empty, path);
    match snapshot_file::read_snapshot_file(&path).unwrap_err() {
        StorageError::CorruptSnapshot { reason, .. } => assert!(reason.contains("unusable")),
        other => panic!("expected CorruptSnapshot, got {other}"),
    }
}

#[test]
fn a_version_1_snapshot_file_is_read_without_a_configuration() {
    let dir = TempDir::new("membership-v1");
    let original = snapshot(42, 7);
    let path = snapshot_file::write_snapshot_file(&dir.0, &original).unwrap();
    // A version 1 file: the same header naming version 1 (its check
    // recomputed), the data, no trailer.
    let bytes = std::fs::read(&path).unwrap();
    let mut v1 = bytes[..SNAPSHOT_HEADER_BYTES + original.data.len()].to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let check = crc32c::crc32c(&v1[..44]) ^ CHECKSUM_SALT;
    v1[44..48].copy_from_slice(&check.to_le_bytes());
    std::fs::write(&path, &v1).unwrap();
    let read = snapshot_file::read_snapshot_file(&path).unwrap();
    assert_eq!(read, original);
    assert_eq!(read.membership, None);
}

#[test]
fn a_corrupt_snapshot_is_a_startup_error_naming_the_file() {
    let dir = TempDir::new("corrupt");
    let path = snapshotted(&dir);
    // Flip one byte of the data; then cut the file short.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[SNAPSHOT_HEADER_BYTES + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let check = |what: &str| match open(&dir.0).map(|_| ()).unwrap_err() {
        StorageError::CorruptSnapshot { file, reason } => {
            assert_eq!(file, path.display().to_string(), "{what}");
            let message = StorageError::CorruptSnapshot {
                file: file.clone(),
                reason: reason.clone(),
            }
            .to_string();
            assert!(message.contains(&file), "{what}: {message}");
            reason
        }
        other => panic!("{what}: expected CorruptSnapshot, got {other}"),
    };
    assert!(check("flipped byte").contains("checksum"));
    std::fs::write(&path, &bytes[..SNAPSHOT_HEADER_BYTES + 2]).unwrap();
    assert!(check("cut short").contains("too short"));
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(check("trailer cut short").contains("configuration"));
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert!(check("cut in the header").contains("header"));
}

#[test]
fn log_records_naming_a_missing_snapshot_file_are_an_error() {
    // The group's snapshot file gone, its record still in the log.
    let dir = TempDir::new("missing-file");
    snapshotted(&dir);
    std::fs::remove_dir_all(group_dir(&dir.0)).unwrap();
    match open(&dir.0).map(|_| ()).unwrap_err() {
        StorageError::Corrupt { reason, .. } => {
            assert!(reason.contains(&format!("group {GROUP}")), "{reason}");
            assert!(reason.contains("snapshot"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }

    // The same with the segments the snapshot covered deleted: the log
    // no longer holds what the snapshot held.
    let dir = TempDir::new("missing-file-compacted");
    let options = MultiWalOptions {
        segment_bytes_max: 600,
        segments_max: 2,
        ..MultiWalOptions::default()
    };
    let mut opened = open_data_dir(&dir.0, options.clone()).unwrap();
    append(&mut opened, 1, 60);
    take(&mut opened, snapshot(50, 1));
    append(&mut opened, 61, 90);
    drop(opened);
    let first_segment = std::fs::read_dir(dir.0.join("log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".seg")?.parse::<u64>().ok()
        })
        .min()
        .unwrap();
    assert!(first_segment > 1, "covered segments deleted");
    let reopened = open_data_dir(&dir.0, options.clone()).unwrap();
    assert_eq!(
        reopened.recovery.groups[&GROUP].recovered.base,
        LogPosition::new(50, 1)
    );
    drop(reopened);
    std::fs::remove_dir_all(group_dir(&dir.0)).unwrap();
    match open_data_dir(&dir.0, options).map(|_| ()).unwrap_err() {
        StorageError::Corrupt { reason, .. } => {
            assert!(reason.contains(&format!("group {GROUP}")), "{reason}")
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_served_snapshot_stays_readable_after_a_newer_one_replaced_its_file() {
    let dir = TempDir::new("served-after-replace");
    let mut opened = open(&dir.0).unwrap();
    append(&mut opened, 1, 20);
    let older = take(&mut opened, snapshot(10, 1));
    let newer = take(&mut opened, snapshot(20, 1));
    assert_eq!(newer.meta().position, LogPosition::new(20, 1));
    // The older file is deleted once the newer one is durable, but a
    // transfer of it still in progress reads on through its open file.
    let older_file =
        group_dir(&dir.0).join(snapshot_file::snapshot_file_name(LogPosition::new(10, 1)));
    assert!(!older_file.exists());
    let files = snapshot_file::list_snapshot_files(&group_dir(&dir.0)).unwrap();
    assert_eq!(files.len(), 1, "only the newest snapshot file is kept");
    let expected = snapshot(10, 1).data;
    assert_eq!(older.read_chunk(3, 5).unwrap(), expected.slice(3..8));
    assert_eq!(older.read_verified().unwrap(), expected);
    assert!(
        older.read_chunk(3, expected.len() as u64).is_err(),
        "past the end"
    );
    drop(opened);
    let reopened = open(&dir.0).unwrap();
    let group = &reopened.recovery.groups[&GROUP];
    assert_eq!(group.recovered.base, LogPosition::new(20, 1));
    assert!(group.recovered.entries.is_empty());
}

#[test]
fn the_configuration_is_stored_with_the_snapshot_and_recovered() {
    let dir = TempDir::new("membership");
    let mut membership = Membership::new([1, 2]);
    membership.voters_outgoing = [1, 2, 3].into();
    membership.learners.insert(4);
    let mut opened = open(&dir.0).unwrap();
    append(&mut opened, 1, 10);
    take(
        &mut opened,
        snapshot(8, 1).with_membership(Some(membership.clone())),
    );
    drop(opened);
    let mut opened = open(&dir.0).unwrap();
    let recovered = &opened.recovery.groups[&GROUP].recovered;
    assert_eq!(recovered.base, LogPosition::new(8, 1));
    assert_eq!(recovered.membership.as_ref(), Some(&membership));
    // A snapshot installed from a leader stores the configuration the
    // leader sent.
    opened
        .log
        .write([WalWrite::Installed {
            group: GROUP,
            snapshot: snapshot(15, 2).with_membership(Some(Membership::new([1]))),
            discard_log: true,
        }])
        .unwrap();
    drop(opened);
    let opened = open(&dir.0).unwrap();
    let group = &opened.recovery.groups[&GROUP];
    assert_eq!(group.recovered.base, LogPosition::new(15, 2));
    assert_eq!(group.recovered.membership, Some(Membership::new([1])));
    let stored = group.snapshot.clone().expect("a snapshot");
    assert_eq!(stored.membership(), Some(&Membership::new([1])));
    assert_eq!(read_back(Some(stored)), Some(snapshot(15, 2)));
}

#[test]
fn a_snapshot_received_half_way_is_removed_at_startup_and_the_old_one_kept() {
    let dir = TempDir::new("half-received");
    snapshotted(&dir);
    let intake = SnapshotIntake::files(dir.0.join("groups"));
    // A crash while a newer snapshot from the leader is half received.
    let newer = snapshot(30, 2);
    let mut sink = intake.sink(GROUP, newer.meta(), 0).unwrap();
    sink.write(0, &newer.data[..10]).unwrap();
    // A transfer abandoned while the process runs removes its file...
    let abandoned = intake.sink(GROUP, snapshot(40, 2).meta(), 0).unwrap();
    drop(abandoned);
    // ...a crash runs no destructor.
    std::mem::forget(sink);
    let leftovers = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    };
    assert_eq!(
        leftovers(&group_dir(&dir.0)),
        1,
        "the partial file is there"
    );
    let opened = open(&dir.0).unwrap();
    let group = &opened.recovery.groups[&GROUP];
    assert_eq!(group.recovered.base, LogPosition::new(8, 1));
    assert_eq!(read_back(group.snapshot.clone()), Some(snapshot(8, 1)));
    assert_eq!(
        leftovers(&group_dir(&dir.0)),
        0,
        "the partial file is removed"
    );
}
