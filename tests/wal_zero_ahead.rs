//! The single-group write-ahead log (`FileStorage`) fills zeros ahead of
//! its segment's records (so that a sync overwrites space the file already
//! has, without a journal commit for its size): the zeros are cut when the
//! storage stops and before the next segment is created, and a log that
//! stopped without cutting them (a crash; here, a copy of its directory
//! taken while it runs) recovers every entry with only the zeros cut.
mod common;

use std::path::Path;

use common::crash_image::{copy_dir, segment_files, zero_tail_bytes};
use common::wal::{entry, one_entry_write, reported_until};
use common::TempDir;
use concord::Entry;
use concord_tokio::multi::segment_files::ZERO_AHEAD_BYTES_MIN;
use concord_tokio::storage::Storage;
use concord_tokio::wal::{self, FileStorage, WalOptions};

/// Entries `from..=to` of term 1.
fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(1, i, &format!("v{i}"))).collect()
}

/// Opens `dir`, checks it recovers `expect_len` entries, starts it and
/// writes `entries`, one write and one batch each, waiting until each is
/// durable before submitting the next. Returns the running storage.
fn running(
    dir: &Path,
    options: &WalOptions,
    expect_len: usize,
    entries: Vec<Entry>,
) -> FileStorage {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    assert_eq!(storage.recover().unwrap().entries.len(), expect_len);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    for (i, e) in entries.into_iter().enumerate() {
        // The term is set by the first write of a new log only.
        let mut write = one_entry_write(i, e);
        if expect_len > 0 {
            write.hard_state = None;
        }
        let id = write.id;
        storage.submit(write);
        reported_until(&mut rx, id);
    }
    storage
}

/// The segment files of the data directory `dir`, oldest first, by name,
/// with their bytes.
fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    segment_files(&dir.join("wal"))
}

#[test]
fn zeros_ahead_of_the_records_are_cut_when_the_storage_is_dropped() {
    let dir = TempDir::new("wal-zero-ahead-drop");
    let options = WalOptions::default();
    let storage = running(&dir.0, &options, 0, entries(1, 20));
    let written = segments(&dir.0);
    assert_eq!(written.len(), 1);
    let (_, bytes) = &written[0];
    // Running: the file holds zeros past its records.
    assert!(
        bytes.len() as u64 >= ZERO_AHEAD_BYTES_MIN,
        "{} bytes",
        bytes.len()
    );
    assert!(zero_tail_bytes(bytes) as u64 >= ZERO_AHEAD_BYTES_MIN - 20 * 100);
    drop(storage);
    let cut = segments(&dir.0);
    assert_eq!(zero_tail_bytes(&cut[0].1), 0, "dropped: the zeros are cut");
    assert!(cut[0].1.len() < bytes.len());
    assert_eq!(&bytes[..cut[0].1.len()], &cut[0].1[..]);
    let report = wal::recover_dir(&dir.0, &options).unwrap();
    assert_eq!(report.torn_tails, 0);
    assert_eq!(report.torn_bytes_truncated, 0);
    assert_eq!(report.recovered.entries, entries(1, 20));
}

#[test]
fn a_crash_image_recovers_every_entry_cuts_only_zeros_and_stays_writable() {
    let dir = TempDir::new("wal-zero-ahead-crash");
    let image = TempDir::new("wal-zero-ahead-crash-image");
    let options = WalOptions::default();
    assert!(options.sync, "the durable marker is written");
    let storage = running(&dir.0, &options, 0, entries(1, 30));
    copy_dir(&dir.0, &image.0);
    drop(storage);
    let image_segment = segments(&image.0).pop().unwrap().1;
    let zeros = zero_tail_bytes(&image_segment) as u64;
    assert!(zeros >= ZERO_AHEAD_BYTES_MIN - 30 * 100, "{zeros} zeros");
    // The durable marker names where the records end, not the file's
    // length with the zeros: otherwise recovery would refuse with
    // durable data lost.
    let report = wal::recover_dir(&image.0, &options).unwrap();
    let marker = report.durable_marker.expect("a marker was written");
    assert_eq!(marker.last_index, 30);
    assert_eq!(
        marker.offset_bytes,
        image_segment.len() as u64 - report.torn_bytes_truncated
    );
    assert_eq!(report.lost_durable_bytes, 0);
    // At most the last record's trailing zero bytes are not cut: they
    // belong to it.
    let cut = report.torn_bytes_truncated;
    assert_eq!(report.torn_tails, 1);
    assert!(
        cut <= zeros && cut + 16 >= zeros,
        "cut {cut} of {zeros} zeros"
    );
    assert_eq!(report.recovered.entries, entries(1, 30));
    // Writable again, and what it writes survives.
    drop(running(&image.0, &options, 30, entries(31, 33)));
    let last = wal::recover_dir(&image.0, &options).unwrap();
    assert_eq!(last.torn_bytes_truncated, 0);
    assert_eq!(last.recovered.entries, entries(1, 33));
}

#[test]
fn with_tiny_segments_only_the_last_one_ever_ends_in_zeros() {
    let dir = TempDir::new("wal-zero-ahead-roll");
    let image = TempDir::new("wal-zero-ahead-roll-image");
    let options = WalOptions {
        segment_bytes_max: 200,
        ..WalOptions::default()
    };
    let storage = running(&dir.0, &options, 0, entries(1, 60));
    copy_dir(&dir.0, &image.0);
    drop(storage);
    let files = segments(&image.0);
    assert!(files.len() >= 4, "{} segments", files.len());
    let (last, rest) = files.split_last().unwrap();
    for (name, bytes) in rest {
        // Cut before the next was created: its length is its records'.
        assert!(
            (bytes.len() as u64) < options.segment_bytes_max + 200,
            "{name}: {} bytes",
            bytes.len()
        );
        assert_eq!(zero_tail_bytes(bytes), 0, "{name} ends in zeros");
    }
    assert!(zero_tail_bytes(&last.1) as u64 >= ZERO_AHEAD_BYTES_MIN - 200);
    // Recovery would refuse a zero tail in a segment that is not the last.
    let report = wal::recover_dir(&image.0, &options).unwrap();
    assert_eq!(report.recovered.entries, entries(1, 60));
    assert_eq!(report.segments, files.len());
}
