//! Recovery of the write-ahead log (`runtime/src/wal.rs`): torn tails are
//! truncated, corruption and lost durable data are loud.
mod common;

use common::wal::{entry, one_entry_write, reported_until, write_and_wait};
use common::TempDir;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord::{Entry, HardState, WriteId};
use concord_tokio::storage::{PersistRequest, Storage, StorageError};
use concord_tokio::wal::{self, DurableMarker, FileStorage, WalOptions, WalRecord};

/// Opens `dir`, checks the recovered log has `expect_len` entries, writes
/// `entries` (one write each, the first also setting the term) and waits
/// until all are durable.
fn append(dir: &Path, options: &WalOptions, expect_len: usize, entries: Vec<Entry>) {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    assert_eq!(storage.recover().unwrap().entries.len(), expect_len);
    let writes = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| one_entry_write(i, e));
    write_and_wait(&mut storage, writes.collect());
}

fn entries(term: u64, from: u64, to: u64) -> Vec<Entry> {
    (from..=to)
        .map(|i| entry(term, i, &format!("v{i}")))
        .collect()
}

/// Segment files of the data directory, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// A new log (default options) of entries 1 to 20 of term 1: its
/// directory, options and newest segment.
fn twenty_entries(label: &str) -> (TempDir, WalOptions, PathBuf) {
    let dir = TempDir::new(label);
    let options = WalOptions::default();
    append(&dir.0, &options, 0, entries(1, 1, 20));
    let segment = segments(&dir.0).pop().unwrap();
    (dir, options, segment)
}

/// Segments of at most 200 bytes: a few entries each.
fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 200,
        ..WalOptions::default()
    }
}

fn recovered_entries(dir: &Path, options: &WalOptions) -> Vec<Entry> {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    storage.recover().unwrap().entries
}

#[test]
fn zero_filled_tail_of_4096_bytes_is_truncated_and_every_entry_survives() {
    let (dir, options, segment) = twenty_entries("zero-tail");
    let good_bytes = std::fs::metadata(&segment).unwrap().len();
    append_bytes(&segment, &[0u8; 4096]);
    assert_eq!(recovered_entries(&dir.0, &options), entries(1, 1, 20));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_bytes);
    // The log is writable again after the truncation.
    append(&dir.0, &options, 20, entries(1, 21, 22));
    assert_eq!(recovered_entries(&dir.0, &options), entries(1, 1, 22));
}

/// Opens `dir` and submits `writes`, waiting until the last is durable.
fn write(dir: &Path, options: &WalOptions, writes: Vec<PersistRequest>) {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    storage.recover().unwrap();
    write_and_wait(&mut storage, writes);
}

/// `(offset, bytes)` of every record of a segment, read by the documented
/// format (segment header, then `[len][checksum][payload]` records).
fn record_spans(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut spans = Vec::new();
    let mut at = wal::SEGMENT_HEADER_BYTES;
    while at + wal::RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let total = wal::RECORD_HEADER_BYTES + len;
        assert!(
            len > 0 && at + total <= bytes.len(),
            "test helper reads only intact segments"
        );
        spans.push((at, total));
        at += total;
    }
    assert_eq!(at, bytes.len());
    spans
}

fn encoded(record: &WalRecord) -> Vec<u8> {
    let mut out = Vec::new();
    wal::encode_record(record, &mut out).unwrap();
    out
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join("wal").join(wal::MARKER_FILE_NAME)
}

fn read_marker(dir: &Path) -> DurableMarker {
    wal::read_durable_marker(&dir.join("wal")).expect("a valid durable marker")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn cut(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Log output captured from the current thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Runs `f` with its log output (INFO and up) captured.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

/// The log line (captured) that contains `needle`.
fn line_with<'a>(logs: &'a str, needle: &str) -> &'a str {
    logs.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line contains {needle:?}:\n{logs}"))
}

#[test]
fn partially_zero_filled_final_record_is_a_torn_tail() {
    let (dir, options, segment) = twenty_entries("partial-zero");
    let good_bytes = file_len(&segment);
    // A record whose write never completed (so never reported durable):
    // its header made it, the second half of its payload is zeros, and
    // the filesystem left zero blocks after it.
    let mut record = encoded(&WalRecord::Append {
        entries: entries(1, 21, 21),
    });
    let half = record.len() / 2;
    record[half..].fill(0);
    record.extend_from_slice(&[0u8; 1000]);
    append_bytes(&segment, &record);

    let report = wal::recover_dir(&dir.0, &options).unwrap();
    assert_eq!(report.recovered.entries, entries(1, 1, 20));
    assert_eq!(report.torn_tails, 1);
    assert_eq!(report.torn_bytes_truncated, record.len() as u64);
    assert_eq!(file_len(&segment), good_bytes);
    assert_eq!(report.lost_durable_bytes, 0);
}

#[test]
fn zero_length_record_header_is_never_accepted() {
    let options = WalOptions::default();
    let next = encoded(&WalRecord::Append {
        entries: entries(1, 21, 21),
    });
    // A zero-length header with a checksum that is right for an empty
    // payload under this format's own checksum rule, and an all-zero one.
    let empty_checksum = crc32c::crc32c(&[0u8; 4]) ^ wal::CHECKSUM_SALT;
    let mut salted_empty = vec![0u8; 4];
    salted_empty.extend_from_slice(&empty_checksum.to_le_bytes());
    salted_empty.extend_from_slice(&empty_checksum.to_le_bytes());
    assert_eq!(salted_empty.len(), wal::RECORD_HEADER_BYTES);
    for header in [vec![0u8; wal::RECORD_HEADER_BYTES], salted_empty] {
        // Followed by a valid record: not an empty record to skip, not a
        // torn tail, but damage inside the log.
        let dir = TempDir::new("zero-len");
        append(&dir.0, &options, 0, entries(1, 1, 20));
        let segment = segments(&dir.0).pop().unwrap();
        let at = file_len(&segment);
        append_bytes(&segment, &header);
        append_bytes(&segment, &next);
        match wal::recover_dir(&dir.0, &options).unwrap_err() {
            StorageError::Corrupt {
                file,
                offset,
                reason,
            } => {
                assert!(file.ends_with(&wal::segment_name(1)), "{file}");
                assert_eq!(offset, at);
                assert!(reason.contains("length 0"), "{reason}");
            }
            other => panic!("expected corruption, got {other}"),
        }

        // At the very end: a torn tail, dropped, never replayed as a record.
        let dir = TempDir::new("zero-len-end");
        append(&dir.0, &options, 0, entries(1, 1, 20));
        let segment = segments(&dir.0).pop().unwrap();
        let records = record_spans(&segment).len() as u64;
        append_bytes(&segment, &header);
        let report = wal::recover_dir(&dir.0, &options).unwrap();
        assert_eq!(report.records, records);
        assert_eq!(report.torn_bytes_truncated, wal::RECORD_HEADER_BYTES as u64);
        assert_eq!(report.recovered.entries, entries(1, 1, 20));
    }
}

#[test]
fn torn_final_record_beyond_the_durable_marker_is_truncated_with_a_warning() {
    let (dir, options, segment) = twenty_entries("torn-unmarked");
    let marker = read_marker(&dir.0);
    assert_eq!(marker.offset_bytes, file_len(&segment));
    assert_eq!(marker.last_index, 20);
    // A write that was in flight (not yet fsynced, so not reported and not
    // in the marker) when the process died, cut in half.
    let record = encoded(&WalRecord::Append {
        entries: entries(1, 21, 21),
    });
    let at = file_len(&segment);
    append_bytes(&segment, &record[..record.len() / 2]);

    let (report, logs) = with_logs(|| wal::recover_dir(&dir.0, &options).unwrap());
    assert_eq!(report.recovered.entries, entries(1, 1, 20));
    assert_eq!(report.torn_tails, 1);
    assert_eq!(report.torn_bytes_truncated, (record.len() / 2) as u64);
    assert_eq!(report.durable_marker, Some(marker));
    assert_eq!(file_len(&segment), at);
    let line = line_with(&logs, "torn tail");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&wal::segment_name(1)), "{line}");
    assert!(line.contains(&format!("offset={at}")), "{line}");
    assert!(
        line.contains(&format!("bytes={}", record.len() / 2)),
        "{line}"
    );
}

/// Writes entries 1..=20 (one record each) and cuts the last record in
/// half; returns the segment, the cut record's offset and the full size.
fn cut_a_durable_final_record(dir: &Path) -> (PathBuf, u64, u64) {
    append(dir, &WalOptions::default(), 0, entries(1, 1, 20));
    let segment = segments(dir).pop().unwrap();
    let full = file_len(&segment);
    let (at, bytes) = *record_spans(&segment).last().unwrap();
    let marker = read_marker(dir);
    assert_eq!(
        marker,
        DurableMarker {
            segment: 1,
            offset_bytes: full,
            last_index: 20
        }
    );
    cut(&segment, (at + bytes / 2) as u64);
    (segment, at as u64, full)
}

#[test]
fn torn_final_record_covered_by_the_durable_marker_refuses_to_start() {
    let dir = TempDir::new("torn-marked");
    let (segment, at, full) = cut_a_durable_final_record(&dir.0);
    let cut_len = file_len(&segment);
    let error = FileStorage::open(&dir.0, WalOptions::default()).unwrap_err();
    match &error {
        StorageError::DurableDataLost {
            file,
            offset,
            durable_offset,
            durable_index,
            lost_bytes,
            ..
        } => {
            assert_eq!(Path::new(file), segment);
            assert_eq!(*offset, at);
            assert_eq!(*durable_offset, full);
            assert_eq!(*durable_index, 20);
            assert_eq!(*lost_bytes, full - at);
        }
        other => panic!("expected DurableDataLost, got {other}"),
    }
    let message = error.to_string();
    for needle in [
        segment.display().to_string(),
        format!("offset {at}"),
        format!("offset {full}"),
        "log index 20".to_string(),
        "fsynced".to_string(),
        "acknowledged".to_string(),
        "--accept-wal-data-loss".to_string(),
    ] {
        assert!(message.contains(&needle), "{needle:?} not in: {message}");
    }
    // Refusing changes nothing on disk.
    assert_eq!(file_len(&segment), cut_len);
    assert!(marker_path(&dir.0).exists());
}

#[test]
fn accept_data_loss_truncates_covered_damage_and_reports_the_loss() {
    let dir = TempDir::new("accept-loss");
    let (segment, at, full) = cut_a_durable_final_record(&dir.0);
    let options = WalOptions {
        accept_data_loss: true,
        ..WalOptions::default()
    };
    let (report, logs) = with_logs(|| wal::recover_dir(&dir.0, &options).unwrap());
    assert_eq!(report.recovered.entries, entries(1, 1, 19));
    assert_eq!(report.lost_durable_entries, 1);
    assert_eq!(report.lost_durable_bytes, full - at);
    assert_eq!(report.torn_tails, 1);
    assert_eq!(file_len(&segment), at);
    let line = line_with(&logs, "ACCEPTING DATA LOSS");
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("lost_entries=1"), "{line}");
    assert!(
        line.contains(&format!("lost_bytes={}", full - at)),
        "{line}"
    );
    // The over-claiming marker is gone: a normal start works, and the
    // next durable write records a fresh one.
    assert!(!marker_path(&dir.0).exists());
    append(
        &dir.0,
        &WalOptions::default(),
        19,
        vec![entry(1, 20, "again")],
    );
    assert_eq!(read_marker(&dir.0).last_index, 20);
    assert_eq!(read_marker(&dir.0).offset_bytes, file_len(&segment));
    let recovered = recovered_entries(&dir.0, &WalOptions::default());
    assert_eq!(recovered.len(), 20);
    assert_eq!(recovered[19], entry(1, 20, "again"));
}

#[test]
fn mid_log_corruption_is_an_error_naming_file_and_offset() {
    // In the last segment, with valid records after the damage; the escape
    // hatch does not cover it.
    let dir = TempDir::new("mid-corrupt");
    append(&dir.0, &WalOptions::default(), 0, entries(1, 1, 20));
    let segment = segments(&dir.0).pop().unwrap();
    let (at, _) = record_spans(&segment)[10];
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at + wal::RECORD_HEADER_BYTES + 1] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    for accept_data_loss in [false, true] {
        let options = WalOptions {
            accept_data_loss,
            ..WalOptions::default()
        };
        let error = FileStorage::open(&dir.0, options).unwrap_err();
        match &error {
            StorageError::Corrupt { file, offset, .. } => {
                assert_eq!(Path::new(file), segment);
                assert_eq!(*offset, at as u64);
            }
            other => panic!("expected corruption, got {other}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&wal::segment_name(1)) && message.contains(&format!("offset {at}")),
            "{message}"
        );
    }
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing truncated");

    // A torn record at the end of a segment that is not the last.
    let dir = TempDir::new("mid-segment");
    let options = WalOptions {
        segment_bytes_max: 300,
        ..WalOptions::default()
    };
    append_each(&dir.0, &options, entries(1, 1, 40));
    let all = segments(&dir.0);
    assert!(all.len() >= 3, "{all:?}");
    let (at, bytes) = *record_spans(&all[0]).last().unwrap();
    cut(&all[0], (at + bytes / 2) as u64);
    match FileStorage::open(&dir.0, options).unwrap_err() {
        StorageError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!(Path::new(&file), all[0]);
            assert_eq!(offset, at as u64);
            assert!(reason.contains("not the last"), "{reason}");
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn damaged_durable_marker_is_ignored_with_a_warning() {
    for damage in ["flip", "short"] {
        let dir = TempDir::new("bad-marker");
        let (segment, at, _) = cut_a_durable_final_record(&dir.0);
        let marker = marker_path(&dir.0);
        let mut bytes = std::fs::read(&marker).unwrap();
        assert_eq!(bytes.len(), wal::MARKER_BYTES);
        match damage {
            "flip" => bytes[20] ^= 1,
            _ => bytes.truncate(3),
        }
        std::fs::write(&marker, &bytes).unwrap();
        let (report, logs) =
            with_logs(|| wal::recover_dir(&dir.0, &WalOptions::default()).unwrap());
        // Without evidence the cut record is a torn tail.
        assert_eq!(report.durable_marker, None);
        assert_eq!(report.recovered.entries, entries(1, 1, 19));
        assert_eq!(file_len(&segment), at);
        let line = line_with(&logs, "damaged durable marker");
        assert!(line.contains("WARN"), "{line}");
    }
}

/// Like [`append`] but waits for each entry before submitting the next, so
/// every entry is its own group commit (and segments roll between them).
fn append_each(dir: &Path, options: &WalOptions, entries: Vec<Entry>) {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    storage.recover().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    for (i, e) in entries.into_iter().enumerate() {
        let write = one_entry_write(i, e);
        let id = write.id;
        storage.submit(write);
        assert_eq!(reported_until(&mut rx, id), [id], "unexpected completions");
    }
    storage.shutdown();
}

/// Writes one request and waits for it (its own group commit).
fn write_one(dir: &Path, options: &WalOptions, request: PersistRequest) {
    write(dir, options, vec![request]);
}

fn append_request(entries: Vec<Entry>) -> PersistRequest {
    PersistRequest {
        id: WriteId(1),
        hard_state: None,
        truncate_after: None,
        entries: entries.into(),
    }
}

/// A new log of [`small_segments`]: entries 1 to `first` of term 1 in one
/// write, then one entry a write until a roll-over leaves a new,
/// header-only segment. Its directory, options and last index.
fn rolled_over(label: &str, first: u64) -> (TempDir, WalOptions, u64) {
    let dir = TempDir::new(label);
    let options = small_segments();
    append(&dir.0, &options, 0, entries(1, 1, first));
    let header_only =
        |dir: &Path| file_len(segments(dir).last().unwrap()) == wal::SEGMENT_HEADER_BYTES as u64;
    let mut index = first;
    while segments(&dir.0).len() < 2 || !header_only(&dir.0) {
        index += 1;
        write_one(&dir.0, &options, append_request(entries(1, index, index)));
        assert!(index < 100, "no roll-over");
    }
    (dir, options, index)
}

#[test]
fn durable_marker_follows_segment_roll_over_and_truncate_records() {
    let (dir, options, index) = rolled_over("marker-roll", 3);
    let all = segments(&dir.0);
    assert!(all.len() >= 2);
    // The marker still names the previous segment, at its full length: the
    // new one holds nothing durable yet.
    let marker = read_marker(&dir.0);
    let previous = &all[all.len() - 2];
    assert_eq!(
        previous.file_name().unwrap().to_str().unwrap(),
        wal::segment_name(marker.segment)
    );
    assert_eq!(marker.offset_bytes, file_len(previous));
    assert_eq!(marker.last_index, index);

    // A truncate record plus a replacement entry: the first durable batch
    // in the new segment moves the marker there, with the shorter log.
    write_one(
        &dir.0,
        &options,
        PersistRequest {
            id: WriteId(1),
            hard_state: Some(HardState {
                term: 2,
                voted_for: None,
                ..Default::default()
            }),
            truncate_after: Some(2),
            entries: vec![entry(2, 3, "new")].into(),
        },
    );
    let newest = segments(&dir.0).pop().unwrap();
    let marker = read_marker(&dir.0);
    assert_eq!(
        newest.file_name().unwrap().to_str().unwrap(),
        wal::segment_name(marker.segment)
    );
    assert_eq!(marker.offset_bytes, file_len(&newest));
    assert_eq!(marker.last_index, 3);
    let recovered = recovered_entries(&dir.0, &options);
    assert_eq!(recovered.len(), 3);
    assert_eq!(recovered[2], entry(2, 3, "new"));

    // The marker is checked across segments too: cutting the record it
    // covers in the newest segment refuses with its index.
    let (at, bytes) = *record_spans(&newest).last().unwrap();
    cut(&newest, (at + bytes / 2) as u64);
    match FileStorage::open(&dir.0, options.clone()).unwrap_err() {
        StorageError::DurableDataLost {
            file,
            durable_index,
            ..
        } => {
            assert_eq!(Path::new(&file), newest);
            assert_eq!(durable_index, 3);
        }
        other => panic!("expected DurableDataLost, got {other}"),
    }
}

#[test]
fn missing_or_short_marked_segment_refuses_to_start() {
    let options = WalOptions {
        segment_bytes_max: 300,
        ..WalOptions::default()
    };
    // The newest segments deleted, the marked one among them.
    let dir = TempDir::new("marked-missing");
    append_each(&dir.0, &options, entries(1, 1, 40));
    let marker = read_marker(&dir.0);
    let all = segments(&dir.0);
    assert!(all.len() >= 3);
    for path in &all[all.len() - 2..] {
        std::fs::remove_file(path).unwrap();
    }
    match FileStorage::open(&dir.0, options.clone()).unwrap_err() {
        StorageError::DurableDataLost {
            file,
            reason,
            durable_offset,
            ..
        } => {
            assert!(file.ends_with(&wal::segment_name(marker.segment)), "{file}");
            assert!(reason.contains("missing"), "{reason}");
            assert_eq!(durable_offset, marker.offset_bytes);
        }
        other => panic!("expected DurableDataLost, got {other}"),
    }

    // The marked segment cut at a record boundary: every record left is
    // valid, but the file is shorter than what was durable.
    let dir = TempDir::new("marked-short");
    append(&dir.0, &WalOptions::default(), 0, entries(1, 1, 20));
    let segment = segments(&dir.0).pop().unwrap();
    let (at, _) = *record_spans(&segment).last().unwrap();
    cut(&segment, at as u64);
    match FileStorage::open(&dir.0, WalOptions::default()).unwrap_err() {
        StorageError::DurableDataLost { offset, reason, .. } => {
            assert_eq!(offset, at as u64);
            assert!(reason.contains("holds only"), "{reason}");
        }
        other => panic!("expected DurableDataLost, got {other}"),
    }
}

#[test]
fn zero_filled_segment_after_roll_over_is_a_torn_tail() {
    let (dir, options, index) = rolled_over("zero-segment", 1);
    // Power loss left the new segment's header as a zero block.
    let newest = segments(&dir.0).pop().unwrap();
    std::fs::write(&newest, [0u8; 4096]).unwrap();
    let report = wal::recover_dir(&dir.0, &options).unwrap();
    assert_eq!(report.recovered.entries.len() as u64, index);
    assert_eq!(report.torn_bytes_truncated, 4096);
    assert_eq!(file_len(&newest), 0);
    // The writer gives the empty segment its header back and goes on.
    write_one(
        &dir.0,
        &options,
        append_request(entries(1, index + 1, index + 1)),
    );
    assert_eq!(recovered_entries(&dir.0, &options).len() as u64, index + 1);
}

#[test]
fn old_format_or_unknown_version_is_refused_with_a_clear_error() {
    // The unversioned format: [len][crc32c(payload)][payload].
    let dir = TempDir::new("old-format");
    std::fs::create_dir_all(dir.0.join("wal")).unwrap();
    let payload = b"\x01\x01\x01\x02\x01a";
    let mut old = (payload.len() as u32).to_le_bytes().to_vec();
    old.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    old.extend_from_slice(payload);
    let segment = dir.0.join("wal").join(wal::segment_name(1));
    std::fs::write(&segment, &old).unwrap();
    let error = FileStorage::open(&dir.0, WalOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StorageError::UnsupportedFormat { file, .. } if Path::new(file) == segment),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("older than format version 2"), "{message}");
    assert_eq!(std::fs::read(&segment).unwrap(), old, "left untouched");

    // The right magic, another version.
    let mut header = wal::segment_header().to_vec();
    header[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&segment, &header).unwrap();
    let message = FileStorage::open(&dir.0, WalOptions::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("format version 3"), "{message}");
    assert!(message.contains(&wal::segment_name(1)), "{message}");
}

#[test]
fn large_garbage_tail_is_a_torn_tail_found_in_linear_time() {
    let (dir, options, segment) = twenty_entries("garbage-tail");
    let good_bytes = file_len(&segment);
    // 8 MiB in which every fourth position reads as a plausible 1 MiB
    // record: checking each one's payload checksum would take terabytes of
    // CRC; the length check rejects each in constant time.
    let garbage: Vec<u8> = [0x00, 0x00, 0x10, 0x00]
        .iter()
        .copied()
        .cycle()
        .take(8 << 20)
        .collect();
    append_bytes(&segment, &garbage);
    let started = Instant::now();
    let report = wal::recover_dir(&dir.0, &options).unwrap();
    // A scan that checksummed every plausible record would take hours; the
    // bound is that far apart from the linear scan's fraction of a second so
    // that a loaded machine (this took 12 s at load 10 on 2 cores, beside a
    // cold build) cannot fail it.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "recovery took {:?}",
        started.elapsed()
    );
    assert_eq!(report.recovered.entries, entries(1, 1, 20));
    assert_eq!(report.torn_bytes_truncated, garbage.len() as u64);
    assert_eq!(file_len(&segment), good_bytes);
}

/// `concord-cli force-recover`'s library function on a data directory:
/// refuses a directory without a log and an empty log, prints the plan and
/// writes nothing without the confirmation, writes the raised term and the
/// forced entry durably with it, and writes nothing more when run again.
#[test]
fn force_recover_writes_the_forced_configuration_once_and_only_when_confirmed() {
    use concord_tokio::recovery::{
        force_recover, ForceRecoverError, ForceRecoverOptions, ForceRecoverOutcome,
    };
    let tmp = TempDir::new("force-recover");
    let mut options = ForceRecoverOptions {
        data_dir: tmp.0.join("missing"),
        node_id: 2,
        voters: Default::default(),
        reason: "two disks lost".to_string(),
        confirmed: false,
    };
    let mut out = Vec::new();
    assert!(matches!(
        force_recover(&options, &mut out),
        Err(ForceRecoverError::NoLog { .. })
    ));
    options.data_dir = tmp.0.join("empty");
    drop(FileStorage::open(&options.data_dir, WalOptions::default()).unwrap());
    assert!(matches!(
        force_recover(&options, &mut out),
        Err(ForceRecoverError::EmptyLog { .. })
    ));

    options.data_dir = tmp.0.join("node-2");
    append(
        &options.data_dir,
        &WalOptions::default(),
        0,
        entries(3, 1, 5),
    );
    let mut plan_text = Vec::new();
    assert!(matches!(
        force_recover(&options, &mut plan_text),
        Err(ForceRecoverError::NotConfirmed)
    ));
    let plan_text = String::from_utf8(plan_text).unwrap();
    assert!(plan_text.contains("MAY BE LOST"), "{plan_text}");
    assert_eq!(
        recovered_entries(&options.data_dir, &WalOptions::default()).len(),
        5
    );

    options.confirmed = true;
    let outcome = force_recover(&options, &mut out).unwrap();
    let ForceRecoverOutcome::Recovered(plan) = outcome else {
        panic!("expected a recovery, got {outcome:?}");
    };
    assert_eq!(plan.entry.index, 6);
    let mut storage = FileStorage::open(&options.data_dir, WalOptions::default()).unwrap();
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.hard_state, plan.hard_state);
    assert_eq!(recovered.hard_state.term, 4);
    assert_eq!(recovered.entries.last(), Some(&plan.entry));
    let (_, audit) = concord::last_forced_recovery(recovered.entries.iter()).unwrap();
    assert_eq!(audit.reason, "two disks lost");
    drop(storage);

    assert_eq!(
        force_recover(&options, &mut out).unwrap(),
        ForceRecoverOutcome::AlreadyRecovered { index: 6, term: 4 }
    );
    assert_eq!(
        recovered_entries(&options.data_dir, &WalOptions::default()).len(),
        6
    );
}
