//! Snapshots in storage (`runtime/src/snapshot_file.rs`, `runtime/src/wal.rs`,
//! `MemStorage`): snapshot files round trip and are written atomically,
//! damage is a startup error naming the file, the WAL segments a snapshot
//! covers are deleted and recovery continues after the snapshot, and a
//! snapshot installed from a leader with `discard_log` leaves exactly the
//! log the core expects after a restart.
mod common;

use common::TempDir;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::{Entry, EntryPayload, HardState, LogPosition, Membership, Snapshot, WriteId};
use concord_tokio::snapshot_file::{self, SNAPSHOT_DIR_NAME, SNAPSHOT_HEADER_BYTES};
use concord_tokio::storage::{
    MemDisk, MemStorage, PersistRequest, SnapshotReader, SnapshotWrite, Storage, StorageError,
};
use concord_tokio::wal::{self, FileStorage, WalOptions};

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::from(format!("command {index} of term {term}"))),
    }
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot::new(
        LogPosition::new(index, term),
        Bytes::from(format!("state after {index}").repeat(10)),
    )
}

fn indices(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

/// One write to run against a storage.
enum Write {
    Log(PersistRequest),
    Snapshot(SnapshotWrite),
    /// A snapshot received from a leader: written into the storage's sink
    /// in chunks, then stored.
    Installed(WriteId, Snapshot, bool),
}

/// The snapshot a reader reads, verified.
fn read_back(reader: Option<SnapshotReader>) -> Option<Snapshot> {
    reader.map(|reader| Snapshot::new(reader.meta().position, reader.read_verified().unwrap()))
}

fn append(id: u64, term: u64, from: u64, to: u64) -> Write {
    Write::Log(PersistRequest {
        id: WriteId(id),
        hard_state: Some(HardState {
            term,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: None,
        entries: (from..=to).map(|i| entry(term, i)).collect(),
    })
}

/// Runs `writes` on `storage` (started here), one at a time (so each
/// goes into its own group commit and segments roll between them), and
/// waits until the last log write and every own snapshot are reported
/// durable.
fn run(storage: &mut dyn Storage, writes: Vec<Write>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut last_id = None;
    let mut taken = 0;
    let mut reported = None;
    for write in writes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while reported != last_id {
            assert!(Instant::now() < deadline, "storage did not report in time");
            match rx.try_recv() {
                Ok(Ok(id)) => reported = Some(id),
                Ok(Err(e)) => panic!("storage failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_micros(100)),
            }
        }
        match write {
            Write::Log(request) => {
                last_id = Some(request.id);
                storage.submit(request);
            }
            Write::Snapshot(SnapshotWrite::Taken { snapshot, .. }) => {
                taken += 1;
                storage.submit_snapshot(SnapshotWrite::Taken {
                    snapshot,
                    stored: stored_tx.clone(),
                });
            }
            Write::Snapshot(write) => {
                if let SnapshotWrite::Installed { id, .. } = &write {
                    last_id = Some(*id);
                }
                storage.submit_snapshot(write);
            }
            Write::Installed(id, snapshot, discard_log) => {
                let mut sink = storage.receive_snapshot(snapshot.meta()).unwrap();
                let half = snapshot.data.len() / 2;
                sink.write(0, &snapshot.data[..half]).unwrap();
                sink.write(half as u64, &snapshot.data[half..]).unwrap();
                let (received, reader) = sink.finish();
                assert_eq!(reader.read_verified().unwrap(), snapshot.data);
                last_id = Some(id);
                storage.submit_snapshot(SnapshotWrite::Installed {
                    id,
                    received,
                    discard_log,
                    membership: snapshot
                        .membership
                        .clone()
                        .unwrap_or_else(|| concord::Membership::new([1])),
                });
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stored = 0;
    while reported != last_id || stored < taken {
        assert!(Instant::now() < deadline, "storage did not report in time");
        match rx.try_recv() {
            Ok(Ok(id)) => reported = Some(id),
            Ok(Err(e)) => panic!("storage failed: {e}"),
            Err(_) => match stored_rx.try_recv() {
                Ok(_) => stored += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            },
        }
    }
    storage.shutdown();
}

fn taken(index: u64, term: u64) -> Write {
    let (stored, _) = tokio::sync::mpsc::unbounded_channel();
    Write::Snapshot(SnapshotWrite::Taken {
        snapshot: snapshot(index, term),
        stored,
    })
}

fn installed(id: u64, index: u64, term: u64, discard_log: bool) -> Write {
    Write::Installed(WriteId(id), snapshot(index, term), discard_log)
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 600,
        ..WalOptions::default()
    }
}

/// Writes 1 to `last`, write `i` appending entry `i` of term 1.
fn one_entry_writes(last: u64) -> Vec<Write> {
    (1..=last).map(|i| append(i, 1, i, i)).collect()
}

/// Small segments in the new directory `dir`, holding entries 1 to
/// `last` of term 1 (one a write) and a snapshot taken at `taken_at`;
/// returns the options.
fn compacted_small_segments(dir: &TempDir, last: u64, taken_at: u64) -> WalOptions {
    let options = small_segments();
    let mut writes = one_entry_writes(last);
    writes.push(taken(taken_at, 1));
    write_fresh(dir, &options, writes);
    options
}

/// Opens the WAL of the new directory `dir` (nothing to recover).
fn opened_empty(dir: &TempDir, options: &WalOptions) -> FileStorage {
    let mut storage = FileStorage::open(&dir.0, options.clone()).unwrap();
    storage.recover().unwrap();
    storage
}

/// A new directory whose WAL (default options) ran `writes` and was
/// closed; the directory and the options.
fn written(label: &str, writes: Vec<Write>) -> (TempDir, WalOptions) {
    let dir = TempDir::new(label);
    let options = WalOptions::default();
    write_fresh(&dir, &options, writes);
    (dir, options)
}

/// Runs `writes` on the WAL of the new directory `dir`, then closes it.
fn write_fresh(dir: &TempDir, options: &WalOptions, writes: Vec<Write>) {
    run(&mut opened_empty(dir, options), writes);
}

/// Reopens `dir`, whose log holds nothing after its snapshot, and runs
/// `write` (a node continuing after the snapshot); returns the snapshot's
/// position as recovered.
fn continue_after_snapshot(dir: &TempDir, options: &WalOptions, write: Write) -> LogPosition {
    let (mut storage, recovered, _) = reopen(&dir.0, options);
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    run(&mut storage, vec![write]);
    recovered.base
}

/// Reopened, `dir`'s log starts after the snapshot at `base` (index,
/// term) and holds the entries `entries` (index, term).
fn assert_log_after(dir: &TempDir, options: &WalOptions, base: (u64, u64), entries: &[(u64, u64)]) {
    let (_, recovered, _) = reopen(&dir.0, options);
    assert_eq!(recovered.base, LogPosition::new(base.0, base.1));
    assert_eq!(indices(&recovered.entries), entries);
}

/// Opens `dir`, returning its recovered state and snapshot.
fn reopen(dir: &Path, options: &WalOptions) -> (FileStorage, concord::Recovered, Option<Snapshot>) {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    let recovered = storage.recover().unwrap();
    let snapshot = read_back(storage.recovered_snapshot());
    (storage, recovered, snapshot)
}

fn segment_numbers(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    numbers.sort();
    numbers
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
fn corrupt_snapshot_is_a_startup_error_naming_the_file() {
    let (dir, options) = written("corrupt", vec![append(1, 1, 1, 10), taken(8, 1)]);
    let path = dir
        .0
        .join(SNAPSHOT_DIR_NAME)
        .join(snapshot_file::snapshot_file_name(LogPosition::new(8, 1)));
    // Flip one byte of the data; then cut the file short.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[SNAPSHOT_HEADER_BYTES + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let check = |what: &str| match FileStorage::open(&dir.0, options.clone()).unwrap_err() {
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
fn segments_below_the_snapshot_are_deleted_and_recovery_continues_after_it() {
    let dir = TempDir::new("segments");
    let options = compacted_small_segments(&dir, 100, 80);
    let segments = segment_numbers(&dir.0);
    assert!(segments[0] > 1, "covered segments deleted: {segments:?}");
    assert!(
        segments.windows(2).all(|w| w[1] == w[0] + 1),
        "remaining segments are contiguous: {segments:?}"
    );
    // What remains holds every entry above the snapshot, and the durable
    // marker names a segment that still exists.
    let marker = wal::read_durable_marker(&dir.0.join("wal")).expect("a marker");
    assert!(segments.contains(&marker.segment));
    let report = wal::recover_dir(&dir.0, &options).unwrap();
    assert!(report.segment_max_indices.values().any(|max| *max > 80));
    let (mut storage, recovered, recovered_snapshot) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(80, 1));
    assert_eq!(recovered.applied_index, 80);
    assert_eq!(recovered_snapshot, Some(snapshot(80, 1)));
    assert_eq!(
        indices(&recovered.entries),
        (81..=100).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    // The log continues, a newer snapshot replaces the older file, and a
    // restart still finds everything.
    let mut writes: Vec<Write> = (101..=150).map(|i| append(i, 1, i, i)).collect();
    writes.push(taken(140, 1));
    run(&mut storage, writes);
    drop(storage);
    let files = snapshot_file::list_snapshot_files(&dir.0.join(SNAPSHOT_DIR_NAME)).unwrap();
    assert_eq!(files.len(), 1, "only the newest snapshot file is kept");
    let (_, recovered, recovered_snapshot) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(140, 1));
    assert_eq!(recovered_snapshot, Some(snapshot(140, 1)));
    assert_eq!(
        indices(&recovered.entries),
        (141..=150).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    assert!(segment_numbers(&dir.0)[0] > segments[0]);
}

#[test]
fn installed_snapshot_with_discard_log_is_honoured_across_restart() {
    // Entries 1..=10 of term 1, then a snapshot at (15, 2) whose last
    // entry this log does not hold: everything goes; then the leader's
    // entries after it.
    let (dir, options) = written(
        "discard",
        vec![
            append(1, 1, 1, 10),
            installed(2, 15, 2, true),
            append(3, 2, 16, 17),
        ],
    );
    let (mut storage, recovered, recovered_snapshot) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(15, 2));
    assert_eq!(recovered_snapshot, Some(snapshot(15, 2)));
    assert_eq!(indices(&recovered.entries), vec![(16, 2), (17, 2)]);
    // Discarding a log that reached past the snapshot: entries 18..=20 of
    // term 2 are dropped by an install at (19, 3).
    run(
        &mut storage,
        vec![append(1, 2, 18, 20), installed(2, 19, 3, true)],
    );
    drop(storage);
    let (_, recovered, _) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(19, 3));
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
}

#[test]
fn installed_snapshot_matching_the_log_keeps_the_entries_after_it() {
    let (dir, options) = written("keep", vec![append(1, 1, 1, 10), installed(2, 6, 1, false)]);
    assert_log_after(&dir, &options, (6, 1), &[(7, 1), (8, 1), (9, 1), (10, 1)]);
}

#[test]
fn snapshot_file_without_its_log_record_keeps_only_a_matching_log() {
    // A crash after a snapshot file is durable and before the record naming
    // it is: the log after the snapshot is kept only if it holds the
    // snapshot's last entry.
    for (term, expect_kept) in [(1, true), (2, false)] {
        let (dir, options) = written("no-record", vec![append(1, 2, 1, 10)]);
        snapshot_file::write_snapshot_file(&dir.0.join(SNAPSHOT_DIR_NAME), &snapshot(8, term * 2))
            .unwrap();
        let report = wal::recover_dir(&dir.0, &options).unwrap();
        assert_eq!(report.recovered.base, LogPosition::new(8, term * 2));
        if expect_kept {
            assert_eq!(indices(&report.recovered.entries), vec![(9, 2), (10, 2)]);
            assert_eq!(report.entries_dropped_after_snapshot, 0);
            continue;
        }
        assert!(report.recovered.entries.is_empty());
        assert_eq!(report.entries_dropped_after_snapshot, 2);
        // The node continues after the snapshot; the entries it appends
        // survive the next restart (the divergent entry 8 still in the
        // segment must not make recovery drop them again).
        let base = continue_after_snapshot(&dir, &options, append(1, 4, 9, 11));
        assert_eq!(base, LogPosition::new(8, 4));
        assert_log_after(&dir, &options, (8, 4), &[(9, 4), (10, 4), (11, 4)]);
    }
}

#[test]
fn log_continuing_after_a_snapshot_past_its_end_survives_restarts() {
    // The log ends below the snapshot (it lost its tail, or the snapshot
    // came from a leader): the node continues after the snapshot, and the
    // next restart still finds those entries.
    let (dir, options) = written("past-end", vec![append(1, 1, 1, 5)]);
    snapshot_file::write_snapshot_file(&dir.0.join(SNAPSHOT_DIR_NAME), &snapshot(9, 1)).unwrap();
    let base = continue_after_snapshot(&dir, &options, append(1, 1, 10, 12));
    assert_eq!(base, LogPosition::new(9, 1));
    for _ in 0..2 {
        assert_log_after(&dir, &options, (9, 1), &[(10, 1), (11, 1), (12, 1)]);
    }
}

#[test]
fn log_records_naming_a_missing_snapshot_file_are_an_error() {
    let (dir, options) = written("missing-file", vec![append(1, 1, 1, 10), taken(8, 1)]);
    std::fs::remove_dir_all(dir.0.join(SNAPSHOT_DIR_NAME)).unwrap();
    match FileStorage::open(&dir.0, options).unwrap_err() {
        StorageError::Corrupt { reason, .. } => {
            assert!(reason.contains("snapshot file is missing"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn deleted_segments_without_a_snapshot_are_an_error() {
    let dir = TempDir::new("no-snapshot");
    let options = compacted_small_segments(&dir, 60, 50);
    assert!(segment_numbers(&dir.0)[0] > 1);
    std::fs::remove_dir_all(dir.0.join(SNAPSHOT_DIR_NAME)).unwrap();
    let error = FileStorage::open(&dir.0, options).unwrap_err().to_string();
    assert!(error.contains("are missing and no snapshot"), "{error}");
}

#[test]
fn mem_storage_has_the_same_snapshot_semantics() {
    let disk = MemDisk::new();
    let mut storage = MemStorage::new(disk.clone());
    storage.recover().unwrap();
    run(
        &mut storage,
        vec![
            append(1, 1, 1, 10),
            taken(6, 1),
            installed(2, 15, 2, true),
            append(3, 2, 16, 17),
        ],
    );
    let mut storage = MemStorage::new(disk.clone());
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.base, LogPosition::new(15, 2));
    assert_eq!(recovered.applied_index, 15);
    assert_eq!(
        read_back(storage.recovered_snapshot()),
        Some(snapshot(15, 2))
    );
    assert_eq!(indices(&recovered.entries), vec![(16, 2), (17, 2)]);
    // An older own snapshot never replaces a newer one.
    run(&mut storage, vec![taken(12, 2), append(4, 2, 18, 18)]);
    let mut storage = MemStorage::new(disk);
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.base, LogPosition::new(15, 2));
    assert_eq!(indices(&recovered.entries), vec![(16, 2), (17, 2), (18, 2)]);
}

#[test]
fn crash_midway_through_deleting_covered_segments_recovers_the_same_log() {
    // Segments are deleted oldest first; a crash after deleting some of the
    // covered ones leaves a later first segment whose replay starts without
    // knowing where the log ended before it.
    let dir = TempDir::new("partial-delete");
    let options = small_segments();
    let mut storage = opened_empty(&dir, &options);
    let mut writes = one_entry_writes(60);
    // A truncation and rewrite inside what the snapshot will cover.
    writes.push(Write::Log(PersistRequest {
        id: WriteId(61),
        hard_state: Some(HardState {
            term: 2,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: Some(30),
        entries: (31..=40).map(|i| entry(2, i)).collect(),
    }));
    writes.extend((62..=90).map(|id| append(id, 2, id - 21, id - 21)));
    run(&mut storage, writes);
    drop(storage);
    // The snapshot file is durable (its record and the deletions were not).
    snapshot_file::write_snapshot_file(&dir.0.join(SNAPSHOT_DIR_NAME), &snapshot(50, 2)).unwrap();
    let full = wal::recover_dir(&dir.0, &options).unwrap();
    assert_eq!(full.recovered.base, LogPosition::new(50, 2));
    let expected = indices(&full.recovered.entries);
    assert_eq!(expected, (51..=69).map(|i| (i, 2)).collect::<Vec<_>>());
    // Delete covered segments one by one, oldest first, as the writer does.
    for (number, max) in &full.segment_max_indices {
        if *max > 50 {
            break;
        }
        std::fs::remove_file(dir.0.join("wal").join(wal::segment_name(*number))).unwrap();
        let report = wal::recover_dir(&dir.0, &options).unwrap();
        assert_eq!(
            indices(&report.recovered.entries),
            expected,
            "after deleting segment {number}"
        );
    }
    assert!(segment_numbers(&dir.0)[0] > 1);
}

#[test]
fn snapshot_received_half_way_is_removed_at_startup_and_the_old_one_kept() {
    let dir = TempDir::new("half-received");
    let options = WalOptions::default();
    {
        let mut storage = opened_empty(&dir, &options);
        run(&mut storage, vec![append(1, 1, 1, 10), taken(8, 1)]);
        // A crash while a newer snapshot from the leader is half received.
        let newer = snapshot(30, 2);
        let mut sink = storage.receive_snapshot(newer.meta()).unwrap();
        sink.write(0, &newer.data[..10]).unwrap();
        // A transfer abandoned while the process runs removes its file...
        let abandoned = storage.receive_snapshot(snapshot(40, 2).meta()).unwrap();
        drop(abandoned);
        // ...a crash runs no destructor.
        std::mem::forget(sink);
        storage.shutdown();
    }
    let snapshot_dir = dir.0.join(SNAPSHOT_DIR_NAME);
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
    assert_eq!(leftovers(&snapshot_dir), 1, "the partial file is there");
    let (_, recovered, recovered_snapshot) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(8, 1));
    assert_eq!(recovered_snapshot, Some(snapshot(8, 1)));
    assert_eq!(leftovers(&snapshot_dir), 0, "the partial file is removed");
}

#[test]
fn a_served_snapshot_stays_readable_after_a_newer_one_replaced_its_file() {
    let dir = TempDir::new("served-after-replace");
    let mut storage = FileStorage::open(&dir.0, WalOptions::default()).unwrap();
    storage.recover().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let log = |id: u64, from: u64, to: u64| PersistRequest {
        id: WriteId(id),
        hard_state: None,
        truncate_after: None,
        entries: (from..=to).map(|i| entry(1, i)).collect(),
    };
    storage.submit(log(1, 1, 20));
    let mut take = |index: u64| {
        storage.submit_snapshot(SnapshotWrite::Taken {
            snapshot: snapshot(index, 1),
            stored: stored_tx.clone(),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reader) = stored_rx.try_recv() {
                return reader;
            }
            assert!(Instant::now() < deadline, "storage did not report in time");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let older = take(10);
    let newer = take(20);
    assert_eq!(newer.meta().position, LogPosition::new(20, 1));
    // The older file is deleted once the newer one is durable, but a
    // transfer of it still in progress reads on through its open file.
    let older_file = dir
        .0
        .join(SNAPSHOT_DIR_NAME)
        .join(snapshot_file::snapshot_file_name(LogPosition::new(10, 1)));
    assert!(!older_file.exists());
    let expected = snapshot(10, 1).data;
    assert_eq!(older.read_chunk(3, 5).unwrap(), expected.slice(3..8));
    assert_eq!(older.read_verified().unwrap(), expected);
    assert!(
        older.read_chunk(3, expected.len() as u64).is_err(),
        "past the end"
    );
    storage.shutdown();
}

#[test]
fn the_configuration_is_stored_with_the_snapshot_and_recovered() {
    let dir = TempDir::new("membership");
    let options = WalOptions::default();
    let mut membership = Membership::new([1, 2]);
    membership.voters_outgoing = [1, 2, 3].into();
    membership.learners.insert(4);
    let mut storage = opened_empty(&dir, &options);
    let (stored, _) = tokio::sync::mpsc::unbounded_channel();
    run(
        &mut storage,
        vec![
            append(1, 1, 1, 10),
            Write::Snapshot(SnapshotWrite::Taken {
                snapshot: snapshot(8, 1).with_membership(Some(membership.clone())),
                stored,
            }),
        ],
    );
    drop(storage);
    let (mut storage, recovered, _) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(8, 1));
    assert_eq!(recovered.membership.as_ref(), Some(&membership));
    // A snapshot installed from a leader stores the configuration the
    // leader sent (here by `run`: the snapshot's own, else voter 1).
    run(&mut storage, vec![installed(2, 15, 2, true)]);
    drop(storage);
    let (_, recovered, _) = reopen(&dir.0, &options);
    assert_eq!(recovered.base, LogPosition::new(15, 2));
    assert_eq!(recovered.membership, Some(Membership::new([1])));
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
    let check = crc32c::crc32c(&v1[..44]) ^ concord_tokio::wal::CHECKSUM_SALT;
    v1[44..48].copy_from_slice(&check.to_le_bytes());
    std::fs::write(&path, &v1).unwrap();
    let read = snapshot_file::read_snapshot_file(&path).unwrap();
    assert_eq!(read, original);
    assert_eq!(read.membership, None);
}
