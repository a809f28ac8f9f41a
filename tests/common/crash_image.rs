//! Looking at a data directory as a crash would leave it: its segment
//! files with their bytes, a copy taken while it runs, and the zeros at the
//! end of a file.

use std::fs;
use std::path::{Path, PathBuf};

/// The segment files (`*.seg`) in `segment_dir`, oldest first, by name,
/// with their bytes.
pub fn segment_files(segment_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = fs::read_dir(segment_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    found.sort();
    found
}

/// Copies the data directory `from` to `to` as a crash would leave it:
/// every file with the bytes written so far (the lock file too, unlocked).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target: PathBuf = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// Bytes of zeros at the end of `bytes`.
pub fn zero_tail_bytes(bytes: &[u8]) -> usize {
    bytes.iter().rev().take_while(|byte| **byte == 0).count()
}
