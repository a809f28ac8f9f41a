//! The one place where values become bytes and bytes become values.
//!
//! Everything the runtime puts on the wire or on disk is encoded here with
//! `serde` + `bincode` 2.x (standard configuration: little-endian, variable
//! length integers). Decoding is given untrusted bytes, so it refuses
//! trailing bytes and no length field can make it allocate more than a
//! small multiple of the input: a byte string or string is allocated only
//! once its length fits in 16 times the input's byte count, less what the
//! value decoded so far was charged (a 20-byte command announcing a
//! 60 MiB key allocates nothing of the kind). A sequence's first
//! allocation is capped by serde at 1 MiB, and grows only with the
//! elements actually decoded.
//!
//! Framing (length prefix, version byte, checksum) is layered on top of this
//! by the tokio runtime (`concord_tokio::frame` for the network,
//! `concord_tokio::wal` for the disk); the services crate puts its own
//! version byte in front of every request, response and snapshot.
//!
//! Built with the `codec` feature (which the runtime crate, `concord-tokio`,
//! turns on).

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Largest value [`decode`] will materialise: 64 MiB. Frames and records
/// are bounded well below this by their own limits.
pub const DECODE_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// bincode's standard configuration (little-endian, varints) decoding
/// at most `LIMIT_BYTES`.
type Limited<const LIMIT_BYTES: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT_BYTES>,
>;

fn limited<const LIMIT_BYTES: usize>() -> Limited<LIMIT_BYTES> {
    bincode::config::standard().with_limit::<LIMIT_BYTES>()
}

fn config() -> Limited<DECODE_LIMIT_BYTES> {
    limited()
}

/// Largest state machine snapshot [`decode_snapshot`] will materialise:
/// 1 GiB, the default `Config::snapshot_bytes_max` (a snapshot's bytes are
/// checksum-verified before they are decoded; the limit bounds what a
/// damaged or hostile length field can make it allocate).
pub const SNAPSHOT_DECODE_LIMIT_BYTES: usize = 1024 * 1024 * 1024;

fn snapshot_config() -> Limited<SNAPSHOT_DECODE_LIMIT_BYTES> {
    limited()
}

/// Why bytes could not be decoded (or, rarely, a value encoded).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Decode(String),
    /// The bytes hold a valid value followed by junk.
    #[error("{trailing} unexpected trailing bytes after the encoded value")]
    TrailingBytes {
        /// How many bytes were left over.
        trailing: usize,
    },
    /// The input is larger than the limit the caller allows.
    #[error("encoded value of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The value could not be encoded.
    #[error("could not encode: {0}")]
    Encode(String),
}

/// Encodes `value`, appending to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes `value` into a new vector.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes exactly one `T` from untrusted `bytes`, which must not be longer
/// than `limit_bytes` (itself capped at [`DECODE_LIMIT_BYTES`]).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit_bytes: usize) -> Result<T, CodecError> {
    decode_with(bytes, limit_bytes.min(DECODE_LIMIT_BYTES), config())
}

/// Decodes exactly one state machine snapshot `T` from `bytes`, at most
/// [`SNAPSHOT_DECODE_LIMIT_BYTES`] long (a state may be far larger than
/// any message).
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with(bytes, SNAPSHOT_DECODE_LIMIT_BYTES, snapshot_config())
}

/// Most bytes bincode charges a value per byte of its encoding (a `u128`
/// from a one-byte varint): what a decode may allocate per input byte.
const CHARGE_PER_BYTE_MAX: usize = 16;

/// The input, read front to back; what is left of it says how many bytes
/// were used.
struct Input<'a> {
    left: &'a [u8],
}

impl bincode::de::read::Reader for Input<'_> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let head = self.take_bytes_inner(out.len())?;
        out.copy_from_slice(head);
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.left.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.left = self.left.get(n..).unwrap_or_default();
    }
}

impl<'a> Input<'a> {
    #[inline]
    fn take_bytes_inner(&mut self, n: usize) -> Result<&'a [u8], bincode::error::DecodeError> {
        if n > self.left.len() {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: n - self.left.len(),
            });
        }
        let (head, tail) = self.left.split_at(n);
        self.left = tail;
        Ok(head)
    }
}

impl<'a> bincode::de::read::BorrowReader<'a> for Input<'a> {
    #[inline]
    fn take_bytes(&mut self, length: usize) -> Result<&'a [u8], bincode::error::DecodeError> {
        self.take_bytes_inner(length)
    }
}

/// Decodes one `T` from the front of untrusted `bytes` (at most
/// `limit_bytes` long, itself capped at [`DECODE_LIMIT_BYTES`]) and
/// returns it with the bytes after it: for a header whose contents say
/// how to read the rest.
pub fn decode_prefix<T: DeserializeOwned>(
    bytes: &[u8],
    limit_bytes: usize,
) -> Result<(T, &[u8]), CodecError> {
    decode_front(bytes, limit_bytes.min(DECODE_LIMIT_BYTES), config())
}

fn decode_with<T: DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    limit: usize,
    config: C,
) -> Result<T, CodecError> {
    let (value, rest) = decode_front(bytes, limit, config)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            trailing: rest.len(),
        });
    }
    Ok(value)
}

fn decode_front<T: DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    limit: usize,
    config: C,
) -> Result<(T, &[u8]), CodecError> {
    use bincode::de::{BorrowDecode, Decoder};
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let limit_bytes = bincode::config::Config::limit(&config).unwrap_or(usize::MAX);
    let mut decoder = bincode::de::DecoderImpl::new(Input { left: bytes }, config, ());
    // bincode charges against the configuration's limit, before reading
    // or allocating, the bytes of every string and byte string and the
    // in-memory size of every number (at most 16 bytes, for one input
    // byte or more). A valid value is thus charged at most 16 times its
    // encoding; charging all of the limit but that first leaves a length
    // field no more to allocate from.
    decoder
        .claim_bytes_read(
            limit_bytes.saturating_sub(bytes.len().saturating_mul(CHARGE_PER_BYTE_MAX)),
        )
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    let bincode::serde::BorrowCompat(value) =
        bincode::serde::BorrowCompat::<T>::borrow_decode(&mut decoder)
            .map_err(|e| CodecError::Decode(e.to_string()))?;
    let rest = decoder.reader().left;
    Ok((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, EntryPayload, Message, MessageBody};
    use bytes::Bytes;

    #[test]
    fn message_round_trips() {
        let message = Message {
            from: 1,
            to: 2,
            term: 7,
            progress_id: 0,
            body: MessageBody::AppendEntries {
                prev: crate::LogPosition::new(3, 6),
                entries: vec![Entry {
                    term: 7,
                    index: 4,
                    payload: EntryPayload::Command(Bytes::from_static(b"x")),
                }]
                .into(),
                leader_commit: 3,
            },
        };
        let bytes = encode(&message).unwrap();
        let back: Message = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(back, message);
    }

    /// `MessageBody::InstallSnapshot` once held the chunk's fields inline;
    /// boxing them into `SnapshotChunk` must not change a byte on the wire,
    /// so nodes of either build still talk. The old shape is mirrored
    /// here: seven variants before it, then the struct variant.
    #[test]
    fn a_boxed_snapshot_chunk_encodes_as_the_inline_variant_did() {
        use crate::{LogPosition, Membership, SnapshotChunk};
        use serde::Serialize;

        #[derive(Serialize)]
        #[allow(dead_code)]
        enum InlineBody {
            RequestVote,
            RequestVoteResponse,
            AppendEntries,
            AppendEntriesResponse,
            Heartbeat,
            HeartbeatResponse,
            TimeoutNow,
            InstallSnapshot {
                snapshot: LogPosition,
                size_bytes: u64,
                checksum: u64,
                offset: u64,
                data: Bytes,
                membership: Box<Membership>,
            },
        }
        #[derive(Serialize)]
        struct InlineMessage {
            from: u64,
            to: u64,
            term: u64,
            progress_id: u64,
            body: InlineBody,
        }

        let membership = Membership::new([1, 2, 3]);
        let data = Bytes::from_static(b"chunk of state");
        let boxed = Message {
            from: 1,
            to: 3,
            term: 9,
            progress_id: 4,
            body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                snapshot: LogPosition::new(700, 8),
                size_bytes: 4000,
                checksum: 0xfeed_beef,
                offset: 1024,
                data: data.clone(),
                membership: membership.clone(),
            })),
        };
        let inline = InlineMessage {
            from: 1,
            to: 3,
            term: 9,
            progress_id: 4,
            body: InlineBody::InstallSnapshot {
                snapshot: LogPosition::new(700, 8),
                size_bytes: 4000,
                checksum: 0xfeed_beef,
                offset: 1024,
                data,
                membership: Box::new(membership),
            },
        };
        let bytes = encode(&boxed).unwrap();
        assert_eq!(bytes, encode(&inline).unwrap());
        let back: Message = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(back, boxed);
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        let garbage = [0xffu8; 64];
        assert!(decode::<Message>(&garbage, 1 << 20).is_err());
        let mut bytes = encode(&7u64).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u64>(&bytes, 1 << 20),
            Err(CodecError::TrailingBytes { trailing: 1 })
        ));
        assert!(matches!(
            decode::<u64>(&bytes, 1),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_prefix_decodes_and_leaves_the_rest() {
        let mut bytes = encode(&("kv", 300u64)).unwrap();
        let header_bytes = bytes.len();
        bytes.extend_from_slice(&encode(&7u32).unwrap());
        let ((name, number), rest): ((String, u64), &[u8]) =
            decode_prefix(&bytes, 1 << 20).unwrap();
        assert_eq!((name.as_str(), number), ("kv", 300));
        assert_eq!(rest, &bytes[header_bytes..]);
        assert_eq!(decode::<u32>(rest, 1 << 20).unwrap(), 7);
        // A prefix cut short is an error, not a shorter value.
        assert!(decode_prefix::<(String, u64)>(&bytes[..header_bytes - 1], 1 << 20).is_err());
        assert!(matches!(
            decode_prefix::<(String, u64)>(&bytes, 2),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn huge_length_claims_do_not_allocate() {
        // A Vec length of ~2^62 followed by nothing.
        let bytes = [0xfdu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
        assert!(decode::<Vec<u64>>(&bytes, 1 << 20).is_err());
        // A byte string announcing 60 MiB in 6 bytes is refused by the
        // charge, before its buffer is allocated (an allocation followed
        // by a short read would fail as an unexpected end instead).
        let mut bytes = vec![0xfcu8];
        bytes.extend_from_slice(&(60u32 << 20).to_le_bytes());
        bytes.push(b'x');
        let error = decode::<Bytes>(&bytes, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("LimitExceeded"), "{error}");
        let error = decode::<String>(&bytes, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("LimitExceeded"), "{error}");
        // One just within what the input holds is read to its end.
        bytes[1..5].copy_from_slice(&2u32.to_le_bytes());
        let error = decode::<Bytes>(&bytes, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("UnexpectedEnd"), "{error}");
    }

    #[test]
    fn values_of_the_smallest_encodings_still_decode() {
        // Numbers charged at their size in memory, from one byte each.
        let zeros = vec![0u128; 1000];
        let back: Vec<u128> = decode(&encode(&zeros).unwrap(), 1 << 20).unwrap();
        assert_eq!(back, zeros);
        let mixed = (vec![0u64; 300], "s".repeat(300), vec![Some(0u32); 300], 'x');
        let back: (Vec<u64>, String, Vec<Option<u32>>, char) =
            decode(&encode(&mixed).unwrap(), 1 << 20).unwrap();
        assert_eq!(back, mixed);
        let back: (Vec<u64>, String, Vec<Option<u32>>, char) =
            decode_snapshot(&encode(&mixed).unwrap()).unwrap();
        assert_eq!(back, mixed);
    }
}
