//! The small files a data directory keeps beside the node's own data (the
//! service it serves, the number of groups it hosts): written once,
//! durably, and read back with a bound on their size.

use std::io::{Read, Write};
use std::path::Path;

/// Reads `path`, at most `bytes_max` bytes of it; `None` when it does not
/// exist.
pub(crate) fn read_bounded(path: &Path, bytes_max: u64) -> std::io::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut text = String::new();
    file.take(bytes_max).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Creates `data_dir/name` holding `text`, synced with its directory so
/// the name outlives a crash that keeps what is written after it.
/// `Ok(false)`: the file exists already (another server claimed it
/// first); the caller reads it. An error names what failed: `create`,
/// `write` or `sync the directory of`.
pub(crate) fn create_durably(
    data_dir: &Path,
    name: &str,
    text: &str,
) -> Result<bool, (&'static str, std::io::Error)> {
    let mut file = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(data_dir.join(name))
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(error) => return Err(("create", error)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| ("write", e))?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| ("sync the directory of", e))?;
    Ok(true)
}
