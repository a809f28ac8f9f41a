//! Recovery of the shared write-ahead log (`runtime/src/multi/replay.rs`)
//! in the cases a crash never draws, so that `tests/multi_wal_crash.rs`'s
//! property does not reach them: a record header of length zero, a torn
//! tail's warning, corruption that accepting data loss does not cover, a
//! torn record in a segment that is not the last, a marked segment cut at
//! a record boundary, an unknown format version and megabytes of garbage
//! after the last record. On a [`PageCacheDisk`], which keeps segments as
//! the log wrote them.
//!
//! (These were the single-group log's tests, whose writer is gone with
//! the single-group server; the shared log frames its records the
//! same way and follows the same rules.)
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wal::group_entry_write;
use concord::{Entry, EntryPayload};
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::record::{encode_record, DurableMarker, GroupRecord};
use concord_tokio::multi::shared_log::{MultiWalOptions, SharedLog};
use concord_tokio::multi::MultiRecovery;
use concord_tokio::storage::StorageError;

/// The group every test writes.
const GROUP: u64 = 7;

/// Bytes of a segment header.
const SEGMENT_HEADER_BYTES: usize = 16;

/// Bytes of a record header: `[len: u32][len_check: u32][checksum: u32]`.
const RECORD_HEADER_BYTES: usize = 12;

/// What the framing xors every checksum with; checked against a record
/// the log wrote in [`zero_length_record_header_is_never_accepted`].
const CHECKSUM_SALT: u32 = 0x5EED_C0DE;

/// Opens the log on `disk`.
fn open(
    disk: &PageCacheDisk,
    options: &MultiWalOptions,
) -> Result<(SharedLog<PageCacheDisk, PageCacheDisk>, MultiRecovery), StorageError> {
    SharedLog::open(disk.clone(), disk.clone(), options.clone())
}

/// Writes entries `from..=to` of [`GROUP`], one round each.
fn write_entries(log: &mut SharedLog<PageCacheDisk, PageCacheDisk>, from: u64, to: u64) {
    for index in from..=to {
        log.write([group_entry_write(GROUP, index, b'v', 20)])
            .unwrap();
    }
}

/// A new log of entries 1 to 20, closed.
fn twenty_entries(options: &MultiWalOptions) -> PageCacheDisk {
    let disk = PageCacheDisk::new();
    let (mut log, _) = open(&disk, options).unwrap();
    write_entries(&mut log, 1, 20);
    disk
}

/// Entries of [`GROUP`] recovered from `disk`.
fn recovered_len(recovery: &MultiRecovery) -> usize {
    recovery.groups[&GROUP].recovered.entries.len()
}

/// The newest segment: its number and bytes.
fn last_segment(disk: &PageCacheDisk) -> (u64, Vec<u8>) {
    disk.segment_bytes().into_iter().next_back().unwrap()
}

/// `(offset, bytes)` of every record of a segment, by the documented
/// framing.
fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let total = RECORD_HEADER_BYTES + len;
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

/// Entry 21 of [`GROUP`] as a record, framed.
fn record_21() -> Vec<u8> {
    let mut out = Vec::new();
    let entry = Entry {
        term: 1,
        index: 21,
        payload: EntryPayload::Command(vec![b'v'; 20].into()),
    };
    encode_record(
        &GroupRecord::Append {
            group: GROUP,
            entries: vec![entry],
        },
        &mut out,
    )
    .unwrap();
    out
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
fn zero_length_record_header_is_never_accepted() {
    let options = MultiWalOptions::default();
    let next = record_21();
    // The salt is the one the log writes with.
    let len_check = u32::from_le_bytes(next[4..8].try_into().unwrap());
    assert_eq!(len_check, crc32c::crc32c(&next[..4]) ^ CHECKSUM_SALT);
    // A zero-length header with checks that are right for an empty
    // payload under the framing's own rule, and an all-zero one.
    let empty_checksum = crc32c::crc32c(&[0u8; 4]) ^ CHECKSUM_SALT;
    let mut salted_empty = vec![0u8; 4];
    salted_empty.extend_from_slice(&empty_checksum.to_le_bytes());
    salted_empty.extend_from_slice(&empty_checksum.to_le_bytes());
    assert_eq!(salted_empty.len(), RECORD_HEADER_BYTES);
    for header in [vec![0u8; RECORD_HEADER_BYTES], salted_empty] {
        // Followed by a valid record: not an empty record to skip, not a
        // torn tail, but damage inside the log.
        let disk = twenty_entries(&options);
        let (number, mut bytes) = last_segment(&disk);
        let at = bytes.len();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&next);
        disk.overwrite_segment(number, bytes);
        match open(&disk, &options).unwrap_err() {
            StorageError::Corrupt {
                file,
                offset,
                reason,
            } => {
                assert!(file.contains(&format!("segment {number}")), "{file}");
                assert_eq!(offset, at as u64);
                assert!(reason.contains("length 0"), "{reason}");
                assert!(reason.contains("valid record follows"), "{reason}");
            }
            other => panic!("expected corruption, got {other}"),
        }

        // At the very end: a torn tail, dropped, never replayed as a
        // record.
        let disk = twenty_entries(&options);
        let (number, mut bytes) = last_segment(&disk);
        let records = record_spans(&bytes).len() as u64;
        bytes.extend_from_slice(&header);
        disk.overwrite_segment(number, bytes);
        let (_, recovery) = open(&disk, &options).unwrap();
        assert_eq!(recovery.records, records);
        assert_eq!(recovery.torn_bytes_truncated, RECORD_HEADER_BYTES as u64);
        assert_eq!(recovered_len(&recovery), 20);
    }
}

#[test]
fn torn_final_record_beyond_the_durable_marker_is_cut_with_a_warning() {
    let options = MultiWalOptions::default();
    let disk = twenty_entries(&options);
    let (number, mut bytes) = last_segment(&disk);
    let marker = DurableMarker::decode(&disk.marker_bytes().unwrap()).unwrap();
    assert_eq!(marker.offset_bytes, bytes.len() as u64);
    // A write that was in flight (not synced, so not reported and not in
    // the marker) when the process died, cut in half.
    let record = record_21();
    let at = bytes.len();
    bytes.extend_from_slice(&record[..record.len() / 2]);
    disk.overwrite_segment(number, bytes);
    let ((_, recovery), logs) = with_logs(|| open(&disk, &options).unwrap());
    assert_eq!(recovered_len(&recovery), 20);
    assert_eq!(recovery.torn_bytes_truncated, (record.len() / 2) as u64);
    assert_eq!(recovery.durable_marker, Some(marker));
    assert_eq!(disk.segment_bytes()[&number].len(), at);
    let line = line_with(&logs, "torn tail");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("segment {number}")), "{line}");
    assert!(line.contains(&format!("offset={at}")), "{line}");
    assert!(
        line.contains(&format!("bytes={}", record.len() / 2)),
        "{line}"
    );
}

#[test]
fn mid_log_corruption_is_refused_even_accepting_data_loss_and_nothing_is_cut() {
    // In the last segment, with valid records after the damage: not a
    // loss the escape hatch covers.
    let disk = twenty_entries(&MultiWalOptions::default());
    let (number, mut bytes) = last_segment(&disk);
    let (at, _) = record_spans(&bytes)[10];
    bytes[at + RECORD_HEADER_BYTES + 1] ^= 0x10;
    disk.overwrite_segment(number, bytes.clone());
    for accept_data_loss in [false, true] {
        let options = MultiWalOptions {
            accept_data_loss,
            ..MultiWalOptions::default()
        };
        match open(&disk, &options).unwrap_err() {
            StorageError::Corrupt { file, offset, .. } => {
                assert!(file.contains(&format!("segment {number}")), "{file}");
                assert_eq!(offset, at as u64);
            }
            other => panic!("expected corruption, got {other}"),
        }
    }
    assert_eq!(disk.segment_bytes()[&number], bytes, "nothing cut");

    // A torn record at the end of a segment that is not the last.
    let options = MultiWalOptions {
        segment_bytes_max: 300,
        segments_max: 1_000,
        ..MultiWalOptions::default()
    };
    let disk = PageCacheDisk::new();
    let (mut log, _) = open(&disk, &options).unwrap();
    write_entries(&mut log, 1, 40);
    drop(log);
    let segments = disk.segment_bytes();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let (&first, bytes) = segments.iter().next().unwrap();
    let (at, len) = *record_spans(bytes).last().unwrap();
    disk.overwrite_segment(first, bytes[..at + len / 2].to_vec());
    match open(&disk, &options).unwrap_err() {
        StorageError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert!(file.contains(&format!("segment {first}")), "{file}");
            assert_eq!(offset, at as u64);
            assert!(reason.contains("not the last"), "{reason}");
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn a_marked_segment_cut_at_a_record_boundary_refuses_to_start() {
    // Every record left is valid, but the segment is shorter than what
    // was synced.
    let options = MultiWalOptions::default();
    let disk = twenty_entries(&options);
    let (number, bytes) = last_segment(&disk);
    let (at, _) = *record_spans(&bytes).last().unwrap();
    disk.overwrite_segment(number, bytes[..at].to_vec());
    match open(&disk, &options).unwrap_err() {
        StorageError::SharedLogDataLost {
            offset,
            reason,
            durable_offset,
            lost_bytes,
            ..
        } => {
            assert_eq!(offset, at as u64);
            assert_eq!(durable_offset, bytes.len() as u64);
            assert_eq!(lost_bytes, (bytes.len() - at) as u64);
            assert!(reason.contains("holds only"), "{reason}");
        }
        other => panic!("expected lost durable data, got {other}"),
    }
    assert_eq!(disk.segment_bytes()[&number].len(), at, "nothing cut");
}

#[test]
fn an_unknown_format_version_is_refused_naming_it() {
    let options = MultiWalOptions::default();
    let disk = twenty_entries(&options);
    let (number, mut bytes) = last_segment(&disk);
    // The right magic, another version (its checksum recomputed).
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let check = crc32c::crc32c(&bytes[..12]) ^ CHECKSUM_SALT;
    bytes[12..16].copy_from_slice(&check.to_le_bytes());
    disk.overwrite_segment(number, bytes.clone());
    let error = open(&disk, &options).unwrap_err();
    assert!(
        matches!(error, StorageError::UnsupportedFormat { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("version 2"), "{message}");
    assert!(message.contains(&format!("segment {number}")), "{message}");
    assert_eq!(disk.segment_bytes()[&number], bytes, "left untouched");
}

#[test]
fn large_garbage_tail_is_a_torn_tail_found_in_linear_time() {
    let options = MultiWalOptions::default();
    let disk = twenty_entries(&options);
    let (number, mut bytes) = last_segment(&disk);
    let good = bytes.len();
    // 8 MiB in which every fourth position reads as a plausible 1 MiB
    // record: checking each one's payload checksum would take terabytes
    // of CRC; the length check rejects each in constant time.
    let garbage: Vec<u8> = [0x00, 0x00, 0x10, 0x00]
        .iter()
        .copied()
        .cycle()
        .take(8 << 20)
        .collect();
    bytes.extend_from_slice(&garbage);
    disk.overwrite_segment(number, bytes);
    let started = Instant::now();
    let (_, recovery) = open(&disk, &options).unwrap();
    // A scan that checksummed every plausible record would take hours;
    // the bound is that far from the linear scan's fraction of a second
    // so that a loaded machine cannot fail it.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "recovery took {:?}",
        started.elapsed()
    );
    assert_eq!(recovered_len(&recovery), 20);
    assert_eq!(recovery.torn_bytes_truncated, garbage.len() as u64);
    assert_eq!(disk.segment_bytes()[&number].len(), good);
}
