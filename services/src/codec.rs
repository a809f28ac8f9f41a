//! The byte layout every service's requests and responses share: integers
//! little-endian, strings as a u32 length then UTF-8, and a reader that
//! checks every length against what is left and against a limit before it
//! allocates, so a malformed or hostile command is an error, never a panic
//! or a huge allocation.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Longest string (key, value, user name, address) any service accepts.
pub const STRING_BYTES_MAX: usize = 64 * 1024;

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes end before the field does.
    #[error("truncated: {field} needs {needed} more bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// A string is not UTF-8.
    #[error("{field} is not UTF-8")]
    NotUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A length or count is above its limit.
    #[error("{field} is {actual}, above the limit of {limit}")]
    TooLarge {
        /// The field being read.
        field: &'static str,
        /// The value found.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// A tag byte names no known variant.
    #[error("unknown {field} tag {tag}")]
    UnknownTag {
        /// The field being read.
        field: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// Bytes are left over after the message.
    #[error("{left} bytes left over after the message")]
    TrailingBytes {
        /// Bytes left over.
        left: usize,
    },
}

/// Builds a message.
#[derive(Debug, Default)]
pub struct Writer {
    buffer: BytesMut,
}

impl Writer {
    /// An empty message.
    pub fn new() -> Self {
        Writer::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buffer.put_u8(value);
        self
    }

    /// Appends a u32, little-endian.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.buffer.put_u32_le(value);
        self
    }

    /// Appends a u64, little-endian.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buffer.put_u64_le(value);
        self
    }

    /// Appends a string: u32 length, then its bytes.
    ///
    /// The caller keeps strings within [`STRING_BYTES_MAX`]; the reader
    /// refuses longer ones.
    pub fn str(&mut self, value: &str) -> &mut Self {
        debug_assert!(value.len() <= u32::MAX as usize);
        self.buffer.put_u32_le(value.len() as u32);
        self.buffer.put_slice(value.as_bytes());
        self
    }

    /// Appends an optional string: a presence byte, then the string.
    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.u8(1).str(value),
            None => self.u8(0),
        }
    }

    /// The message.
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.buffer).freeze()
    }
}

/// Reads a message, checking every length.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, field: &'static str, length: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < length {
            return Err(DecodeError::Truncated {
                field,
                needed: length,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(length);
        self.rest = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    /// Reads a u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let bytes = self.take(field, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Reads a u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let bytes = self.take(field, 8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// Reads a count of items, refusing more than `limit`.
    pub fn count(&mut self, field: &'static str, limit: usize) -> Result<usize, DecodeError> {
        let count = self.u32(field)? as usize;
        if count > limit {
            return Err(DecodeError::TooLarge {
                field,
                actual: count,
                limit,
            });
        }
        Ok(count)
    }

    /// Reads a string of at most [`STRING_BYTES_MAX`] bytes, borrowed.
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let length = self.u32(field)? as usize;
        if length > STRING_BYTES_MAX {
            return Err(DecodeError::TooLarge {
                field,
                actual: length,
                limit: STRING_BYTES_MAX,
            });
        }
        std::str::from_utf8(self.take(field, length)?).map_err(|_| DecodeError::NotUtf8 { field })
    }

    /// Reads an optional string written by [`Writer::opt_str`].
    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.str(field)?)),
            tag => Err(DecodeError::UnknownTag { field, tag }),
        }
    }

    /// Checks that the whole message was read.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                left: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_an_error() {
        let bytes = Writer::new()
            .u8(7)
            .u32(9)
            .u64(u64::MAX)
            .str("héllo")
            .opt_str(None)
            .opt_str(Some("x"))
            .finish();
        let read = |bytes: &[u8]| -> Result<(), DecodeError> {
            let mut reader = Reader::new(bytes);
            assert_eq!(reader.u8("a")?, 7);
            assert_eq!(reader.u32("b")?, 9);
            assert_eq!(reader.u64("c")?, u64::MAX);
            assert_eq!(reader.str("d")?, "héllo");
            assert_eq!(reader.opt_str("e")?, None);
            assert_eq!(reader.opt_str("f")?, Some("x"));
            reader.end()
        };
        assert_eq!(read(&bytes), Ok(()));
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(read(&longer), Err(DecodeError::TrailingBytes { left: 1 }));
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let huge = Writer::new().u32(u32::MAX).finish();
        assert!(matches!(
            Reader::new(&huge).str("key"),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            Reader::new(&huge).count("pairs", 64),
            Err(DecodeError::TooLarge { .. })
        ));
        let bad_utf8 = Writer::new().u32(1).u8(0xff).finish();
        assert_eq!(
            Reader::new(&bad_utf8).str("key"),
            Err(DecodeError::NotUtf8 { field: "key" })
        );
    }
}

/// Reads a service's snapshot: checks its version byte and every count
/// against the service's limit, and names the service in every error.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    /// The fields after the version byte.
    pub reader: Reader<'a>,
    service: &'static str,
}

impl<'a> SnapshotReader<'a> {
    /// Opens `snapshot` of `service`, refusing a version other than
    /// `version` (the one this build writes).
    pub fn open(
        snapshot: &'a [u8],
        service: &'static str,
        version: u8,
    ) -> Result<Self, concord::state_machine::RestoreError> {
        let mut opened = SnapshotReader {
            reader: Reader::new(snapshot),
            service,
        };
        let found = opened.reader.u8("version").map_err(|e| opened.error(e))?;
        if found != version {
            return Err(concord::state_machine::RestoreError::new(format!(
                "{service} snapshot version {found}, this build reads {version}"
            )));
        }
        Ok(opened)
    }

    /// The error for `error`, naming the service.
    pub fn error(&self, error: DecodeError) -> concord::state_machine::RestoreError {
        concord::state_machine::RestoreError::new(format!("{} snapshot: {error}", self.service))
    }

    /// Reads a u64 count of `what`, refusing more than `limit`.
    pub fn count(
        &mut self,
        field: &'static str,
        what: &str,
        limit: usize,
    ) -> Result<usize, concord::state_machine::RestoreError> {
        let count = self.reader.u64(field).map_err(|e| self.error(e))?;
        if count > limit as u64 {
            return Err(concord::state_machine::RestoreError::new(format!(
                "{} snapshot holds {count} {what}, above the limit of {limit}",
                self.service
            )));
        }
        Ok(count as usize)
    }

    /// Reads a string, naming the service in the error.
    pub fn string(
        &mut self,
        field: &'static str,
    ) -> Result<String, concord::state_machine::RestoreError> {
        match self.reader.str(field) {
            Ok(value) => Ok(value.to_string()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Checks that the whole snapshot was read.
    pub fn end(&self) -> Result<(), concord::state_machine::RestoreError> {
        self.reader.end().map_err(|e| self.error(e))
    }
}
