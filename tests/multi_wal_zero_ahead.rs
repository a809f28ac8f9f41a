//! The shared log's segment files on a real directory fill zeros ahead of
//! their records (so that a sync overwrites space the file already has,
//! without a journal commit for its size): the zeros are cut when the log
//! is dropped and before the next segment is created, and a log that
//! stopped without cutting them (a crash; here, a copy of its directory
//! taken while it runs) recovers every record with only the zeros cut.

use std::path::Path;

use concord_tokio::multi::data_dir::{open_data_dir, DirLog};
use concord_tokio::multi::segment_files::ZERO_AHEAD_BYTES_MIN;
use concord_tokio::multi::shared_log::MultiWalOptions;

mod common;
use common::crash_image::{copy_dir, segment_files, zero_tail_bytes};
use common::wal::group_entry_write;
use common::TempDir;

/// Writes entries `first..first + count` of `group` (term 1), one round
/// each.
fn write_entries(log: &mut DirLog, group: u64, first: u64, count: u64) {
    for index in first..first + count {
        log.write([group_entry_write(group, index, b'v', 200)])
            .unwrap();
    }
}

/// The segment files of the data directory `dir`, oldest first, by name,
/// with their bytes.
fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    segment_files(&dir.join("log"))
}

#[test]
fn zeros_ahead_of_the_records_are_cut_when_the_log_is_dropped() {
    let dir = TempDir::new("zero-ahead-drop");
    let mut opened = open_data_dir(&dir.0, MultiWalOptions::default()).unwrap();
    write_entries(&mut opened.log, 7, 1, 20);
    let written = segments(&dir.0);
    assert_eq!(written.len(), 1);
    let (_, bytes) = &written[0];
    // Running: the file holds zeros past its records.
    assert!(bytes.len() as u64 >= ZERO_AHEAD_BYTES_MIN);
    assert!(zero_tail_bytes(bytes) as u64 >= ZERO_AHEAD_BYTES_MIN - 20 * 300);
    drop(opened);
    let cut = segments(&dir.0);
    assert_eq!(zero_tail_bytes(&cut[0].1), 0, "dropped: the zeros are cut");
    assert_eq!(&bytes[..cut[0].1.len()], &cut[0].1[..]);
    let reopened = open_data_dir(&dir.0, MultiWalOptions::default()).unwrap();
    assert_eq!(reopened.recovery.torn_bytes_truncated, 0);
    assert_eq!(reopened.recovery.groups[&7].recovered.entries.len(), 20);
}

#[test]
fn a_log_stopped_without_cutting_recovers_every_record_and_cuts_only_zeros() {
    let dir = TempDir::new("zero-ahead-crash");
    let image = TempDir::new("zero-ahead-crash-image");
    let mut opened = open_data_dir(&dir.0, MultiWalOptions::default()).unwrap();
    write_entries(&mut opened.log, 7, 1, 30);
    write_entries(&mut opened.log, 8, 1, 5);
    copy_dir(&dir.0, &image.0);
    drop(opened);
    let zeros = zero_tail_bytes(&segments(&image.0)[0].1) as u64;
    assert!(zeros > 0);
    let mut reopened = open_data_dir(&image.0, MultiWalOptions::default()).unwrap();
    // At most the last record's trailing zero bytes are not cut: they
    // belong to it.
    let cut = reopened.recovery.torn_bytes_truncated;
    assert!(
        cut <= zeros && cut + 8 >= zeros,
        "cut {cut} of {zeros} zeros"
    );
    assert_eq!(reopened.recovery.groups[&7].recovered.entries.len(), 30);
    assert_eq!(reopened.recovery.groups[&8].recovered.entries.len(), 5);
    // Writable again, and what it writes survives.
    write_entries(&mut reopened.log, 8, 6, 3);
    drop(reopened);
    let last = open_data_dir(&image.0, MultiWalOptions::default()).unwrap();
    assert_eq!(last.recovery.torn_bytes_truncated, 0);
    assert_eq!(last.recovery.groups[&8].recovered.entries.len(), 8);
}

#[test]
fn only_the_last_segment_ever_ends_in_zeros() {
    let dir = TempDir::new("zero-ahead-roll");
    let image = TempDir::new("zero-ahead-roll-image");
    let options = MultiWalOptions {
        segment_bytes_max: 4096,
        segments_max: 1_000,
        ..MultiWalOptions::default()
    };
    let mut opened = open_data_dir(&dir.0, options.clone()).unwrap();
    write_entries(&mut opened.log, 7, 1, 100);
    copy_dir(&dir.0, &image.0);
    drop(opened);
    let files = segments(&image.0);
    assert!(files.len() >= 4, "{} segments", files.len());
    let (last, rest) = files.split_last().unwrap();
    for (name, bytes) in rest {
        // Cut before the next was created; its length is its records'.
        assert!(
            (bytes.len() as u64) < options.segment_bytes_max + 1024,
            "{name}: {} bytes",
            bytes.len()
        );
    }
    assert!(zero_tail_bytes(&last.1) > 0);
    // Recovery would refuse a zero tail in a segment that is not the last.
    let reopened = open_data_dir(&image.0, options).unwrap();
    assert_eq!(reopened.recovery.groups[&7].recovered.entries.len(), 100);
}
