//! Recovery of the write-ahead log (`src/tokio/wal.rs`): torn tails are
//! truncated, corruption and lost durable data are loud.
#![cfg(feature = "tokio")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::tokio::storage::{PersistRequest, Storage};
use concord::tokio::wal::{FileStorage, WalOptions};
use concord::{Entry, EntryPayload, HardState, WriteId};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "concord-wal-recovery-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry(term: u64, index: u64, payload: &str) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::from(payload.to_string())),
    }
}

/// Opens `dir`, checks the recovered log has `expect_len` entries, writes
/// `entries` (one write each, the first also setting the term) and waits
/// until all are durable.
fn append(dir: &Path, options: &WalOptions, expect_len: usize, entries: Vec<Entry>) {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    assert_eq!(storage.recover().unwrap().entries.len(), expect_len);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    let count = entries.len() as u64;
    for (i, e) in entries.into_iter().enumerate() {
        storage.submit(PersistRequest {
            id: WriteId(i as u64 + 1),
            hard_state: (i == 0).then_some(HardState {
                term: e.term,
                voted_for: None,
            }),
            truncate_after: None,
            entries: vec![e],
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "WAL did not report in time");
        match rx.try_recv() {
            Ok(Ok(id)) if id == WriteId(count) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("storage failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    storage.shutdown();
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

fn recovered_entries(dir: &Path, options: &WalOptions) -> Vec<Entry> {
    let mut storage = FileStorage::open(dir, options.clone()).unwrap();
    storage.recover().unwrap().entries
}

#[test]
fn zero_filled_tail_of_4096_bytes_is_truncated_and_every_entry_survives() {
    let dir = TempDir::new("zero-tail");
    let options = WalOptions::default();
    append(&dir.0, &options, 0, entries(1, 1, 20));
    let segment = segments(&dir.0).pop().unwrap();
    let good_bytes = std::fs::metadata(&segment).unwrap().len();
    append_bytes(&segment, &[0u8; 4096]);
    assert_eq!(recovered_entries(&dir.0, &options), entries(1, 1, 20));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_bytes);
    // The log is writable again after the truncation.
    append(&dir.0, &options, 20, entries(1, 21, 22));
    assert_eq!(recovered_entries(&dir.0, &options), entries(1, 1, 22));
}
