//! Which service a data directory holds: `<data-dir>/service`, written on
//! a server's first start and checked on every later one. A server
//! restarted with another `--service` would read its log as another
//! service's requests (each refused, its state silently empty); it is
//! refused instead, naming both services.
//!
//! A data directory that holds anything but no service file was written
//! by a `concord-node` from before services: its key-value store kept
//! another format, which this one does not read. It is refused too,
//! rather than served as if empty.

use std::path::Path;

use concord_services::ServiceKind;

/// File name of the service inside a data directory.
pub const SERVICE_FILE_NAME: &str = "service";

/// Longest service file read (a name and a newline).
const SERVICE_FILE_BYTES_MAX: u64 = 64;

/// Why a data directory is not this server's.
#[derive(Debug, thiserror::Error)]
pub enum ServiceFileError {
    /// It holds another service's data.
    #[error(
        "the data directory {dir} holds a {found} cluster's data, but this server was started \
         with --service {expected}: start it with --service {found}, or give it another data \
         directory"
    )]
    OtherService {
        /// The directory.
        dir: String,
        /// The service its file names.
        found: String,
        /// The service asked for.
        expected: ServiceKind,
    },
    /// It was written by a build from before services.
    #[error(
        "the data directory {dir} holds data but no service file: it was written by a \
         concord-node from before services, whose key-value store kept another format, which \
         this one does not read; start this server on an empty data directory and copy the \
         data over with a client of each version"
    )]
    BeforeServices {
        /// The directory.
        dir: String,
    },
    /// The file could not be read or written.
    #[error("cannot {action} {path}: {error}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
}

impl ServiceFileError {
    /// Whether the directory is another's (not a failure of the disk).
    pub fn is_foreign(&self) -> bool {
        !matches!(self, ServiceFileError::Io { .. })
    }
}

/// Checks that `data_dir` holds `service`'s data, and claims a directory
/// that holds none yet (creating it if missing). The file is created
/// exclusively, so of two servers starting on one new directory only one
/// names its service; the other then finds that name.
pub fn claim(data_dir: &Path, service: ServiceKind) -> Result<(), ServiceFileError> {
    let path = data_dir.join(SERVICE_FILE_NAME);
    let io = |action, error| ServiceFileError::Io {
        action,
        path: path.display().to_string(),
        error,
    };
    let dir = || data_dir.display().to_string();
    if !path.exists() {
        match std::fs::read_dir(data_dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ServiceFileError::BeforeServices { dir: dir() });
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| io("create", e))?;
            }
            Err(error) => return Err(io("read", error)),
        }
        let created =
            crate::small_file::create_durably(data_dir, SERVICE_FILE_NAME, &format!("{service}\n"))
                .map_err(|(action, error)| io(action, error))?;
        if created {
            return Ok(());
        }
        // Another server claimed it first: check its name below.
    }
    let text = crate::small_file::read_bounded(&path, SERVICE_FILE_BYTES_MAX)
        .map_err(|e| io("read", e))?
        .ok_or_else(|| io("read", std::io::ErrorKind::NotFound.into()))?;
    let found = text.trim();
    if found == service.name() {
        Ok(())
    } else {
        Err(ServiceFileError::OtherService {
            dir: dir(),
            found: found.to_string(),
            expected: service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_once_and_refused_to_another_service() {
        let dir = std::env::temp_dir().join(format!("service-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        claim(&dir, ServiceKind::Chat).unwrap();
        claim(&dir, ServiceKind::Chat).unwrap();
        let error = claim(&dir, ServiceKind::Kv).unwrap_err();
        assert!(error.is_foreign());
        assert!(
            error.to_string().contains("holds a chat cluster's data")
                && error.to_string().contains("--service kv"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // An empty directory is claimed; one with data but no service
        // file was written before services.
        std::fs::create_dir_all(&dir).unwrap();
        claim(&dir, ServiceKind::Orders).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("wal-00000001.log"), b"x").unwrap();
        let error = claim(&dir, ServiceKind::Kv).unwrap_err();
        assert!(
            error.to_string().contains("from before services"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
