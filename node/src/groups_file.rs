//! How many groups a data directory's cluster has: `<data-dir>/group-count`,
//! written on a server's first start (`--groups N`, 1 without the flag)
//! and checked on every later start. The group count decides which
//! group each key belongs to, so a server restarted with another count
//! would look for keys in the wrong groups: it is refused, naming the
//! `--groups` to give.
//!
//! A directory without the file is new, or a single-group server's of
//! before the one runtime (or a server of one group's, written before
//! the file was kept for one group): a server of one group claims it
//! (and upgrades a single-group server's data,
//! `concord_tokio::multi::upgrade`); a server of more groups refuses
//! data it finds there.

use std::path::Path;

use crate::service_file::SERVICE_FILE_NAME;

/// File name of the group count inside a data directory.
pub const GROUPS_FILE_NAME: &str = "group-count";

/// Longest groups file read.
const GROUPS_FILE_BYTES_MAX: u64 = 32;

/// Why a data directory is not this server's.
#[derive(Debug, thiserror::Error)]
pub enum GroupsFileError {
    /// It holds a cluster of another group count.
    #[error(
        "the data directory {dir} holds a cluster of {found} groups, but this server was \
         started with --groups {expected}: start it with --groups {found} (every server and \
         client of a cluster gives the same count), or give it another data directory"
    )]
    OtherCount {
        /// The directory.
        dir: String,
        /// The count its file names.
        found: u64,
        /// The count asked for.
        expected: u64,
    },
    /// It holds a single-group server's data.
    #[error(
        "the data directory {dir} holds a single-group server's data, but this server was \
         started with --groups {expected}: start it without --groups (its data is then \
         upgraded to one group of the shared log), or give it another (empty) data directory"
    )]
    SingleGroup {
        /// The directory.
        dir: String,
        /// The count asked for.
        expected: u64,
    },
    /// The file is not a count.
    #[error("{path} does not hold a group count ({text:?}); it was damaged: restore it")]
    Damaged {
        /// The file.
        path: String,
        /// What it holds.
        text: String,
    },
    /// The file could not be read or written.
    #[error("cannot {action} {path}: {error}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
}

impl GroupsFileError {
    /// Whether the directory is another's (not a failure of the disk).
    pub fn is_foreign(&self) -> bool {
        !matches!(self, GroupsFileError::Io { .. })
    }
}

/// The group count `data_dir` records (`None`: no file).
pub fn recorded(data_dir: &Path) -> Result<Option<u64>, GroupsFileError> {
    let path = data_dir.join(GROUPS_FILE_NAME);
    let io = |action, error| GroupsFileError::Io {
        action,
        path: path.display().to_string(),
        error,
    };
    let Some(text) =
        crate::small_file::read_bounded(&path, GROUPS_FILE_BYTES_MAX).map_err(|e| io("read", e))?
    else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(count) if count >= 1 => Ok(Some(count)),
        _ => Err(GroupsFileError::Damaged {
            path: path.display().to_string(),
            text,
        }),
    }
}

/// Checks that `data_dir` holds a cluster of `groups` groups; a
/// multi-group server (`groups` > 1) claims a directory that holds
/// nothing but its service file, writing the count.
pub fn claim(data_dir: &Path, groups: u64) -> Result<(), GroupsFileError> {
    let dir = || data_dir.display().to_string();
    match recorded(data_dir)? {
        Some(found) if found == groups => return Ok(()),
        Some(found) => {
            return Err(GroupsFileError::OtherCount {
                dir: dir(),
                found,
                expected: groups,
            })
        }
        None => {}
    }
    let path = data_dir.join(GROUPS_FILE_NAME);
    let io = |action, error| GroupsFileError::Io {
        action,
        path: path.display().to_string(),
        error,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io("create the directory of", e))?;
    let entries = std::fs::read_dir(data_dir).map_err(|e| io("read the directory of", e))?;
    // A single-group server's data is one group's: it is claimed by a
    // server of one group, which upgrades it in place when it starts
    // (`concord_tokio::multi::upgrade`), and by no other.
    if groups > 1 {
        for entry in entries {
            let entry = entry.map_err(|e| io("read the directory of", e))?;
            if entry.file_name() != SERVICE_FILE_NAME {
                return Err(GroupsFileError::SingleGroup {
                    dir: dir(),
                    expected: groups,
                });
            }
        }
    }
    let created =
        crate::small_file::create_durably(data_dir, GROUPS_FILE_NAME, &format!("{groups}\n"))
            .map_err(|(action, error)| io(action, error))?;
    if !created {
        // Another server claimed it first: check its count.
        return claim(data_dir, groups);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_group_count() {
        let dir = std::env::temp_dir().join(format!("groups-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A server of one group claims a new directory too.
        claim(&dir, 1).unwrap();
        assert_eq!(recorded(&dir).unwrap(), Some(1));
        assert!(claim(&dir, 8)
            .unwrap_err()
            .to_string()
            .contains("--groups 1"));
        std::fs::remove_file(dir.join(GROUPS_FILE_NAME)).unwrap();
        // A multi-group server claims it (next to the service file).
        std::fs::write(dir.join(SERVICE_FILE_NAME), b"kv\n").unwrap();
        claim(&dir, 8).unwrap();
        claim(&dir, 8).unwrap();
        assert_eq!(recorded(&dir).unwrap(), Some(8));
        for other in [1, 16] {
            let error = claim(&dir, other).unwrap_err();
            assert!(error.is_foreign());
            let message = error.to_string();
            assert!(
                message.contains("holds a cluster of 8 groups")
                    && message.contains("start it with --groups 8"),
                "{message}"
            );
        }
        std::fs::write(dir.join(GROUPS_FILE_NAME), b"many\n").unwrap();
        assert!(matches!(
            claim(&dir, 8),
            Err(GroupsFileError::Damaged { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        // A single-group server's data is claimed by a server of one
        // group only.
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        let error = claim(&dir, 4).unwrap_err();
        assert!(
            error.to_string().contains("single-group server's data")
                && error.to_string().contains("without --groups"),
            "{error}"
        );
        claim(&dir, 1).unwrap();
        assert_eq!(recorded(&dir).unwrap(), Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
