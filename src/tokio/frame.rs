//! Frames on a byte stream: how one encoded message is delimited and
//! checked on the network.
//!
//! ```text
//! +-----------+---------+-------------+------------------+
//! | len: u32  | version | crc32c: u32 | payload (len B)  |
//! | LE        | u8 = 2  | LE, payload |                  |
//! +-----------+---------+-------------+------------------+
//! ```
//!
//! The reader checks the length against a maximum before allocating, the
//! version byte before looking at the payload, and the checksum before
//! decoding it. Any failure closes the connection: after a bad frame the
//! stream position can no longer be trusted.

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::codec::{self, CodecError};

/// The protocol version written in every frame. Version 2 wraps peer
/// messages in [`PeerFrame`](super::wire::PeerFrame) so a connection can
/// carry keepalives; version 3 adds the cluster configuration to
/// snapshot chunks; version 4 adds the leader's one-way commit notice
/// ([`MessageBody::CommitNotice`](crate::MessageBody::CommitNotice)),
/// which a version 3 peer could not decode.
pub const PROTOCOL_VERSION: u8 = 4;

/// Bytes of header before the payload.
pub const FRAME_HEADER_BYTES: usize = 9;

/// Default largest payload accepted: 16 MiB (an AppendEntries is at most
/// `append_bytes_max`, 1 MiB by default, plus overhead).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes of the frame received.
        got: usize,
        /// Bytes the frame should have had.
        expected: usize,
    },
    /// The length prefix exceeds the maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The version byte is not one this build speaks.
    #[error("unsupported protocol version {got} (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version received.
        got: u8,
    },
    /// The payload does not match its checksum.
    #[error("frame checksum mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the payload received.
        actual: u32,
    },
    /// The payload is not a valid encoding.
    #[error("undecodable frame payload: {0}")]
    Codec(#[from] CodecError),
}

/// Appends one frame holding `value` to `out`.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    codec::encode_into(value, out)?;
    let payload = &out[start + FRAME_HEADER_BYTES..];
    let len = payload.len();
    let crc = crc32c::crc32c(payload);
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    out[start + 4] = PROTOCOL_VERSION;
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads one frame's payload into `buf` (replacing its contents), checking
/// size, version and checksum. Returns [`FrameError::Closed`] on a clean end
/// of stream before the first header byte.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut got = 0;
    while got < FRAME_HEADER_BYTES {
        let n = match reader.read(&mut header[got..]).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify (most clients
            // do, at exit) reads as an UnexpectedEof error, not as 0
            // bytes. Frames carry their own length, so an end between two
            // frames cuts nothing short: it is a close like any other.
            // Inside a header or body it is still a truncated frame.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated {
                    got,
                    expected: FRAME_HEADER_BYTES,
                }
            });
        }
        got += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    if header[4] != PROTOCOL_VERSION {
        return Err(FrameError::Version { got: header[4] });
    }
    let expected = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        let n = reader.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                got: FRAME_HEADER_BYTES + got,
                expected: FRAME_HEADER_BYTES + len,
            });
        }
        got += n;
    }
    let actual = crc32c::crc32c(buf);
    if actual != expected {
        return Err(FrameError::Checksum { expected, actual });
    }
    Ok(())
}

/// Reads one frame and decodes its payload as `T`.
pub async fn read_value<T, R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame_bytes: usize,
) -> Result<T, FrameError>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    read_frame(reader, buf, max_frame_bytes).await?;
    Ok(codec::decode(buf, max_frame_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut out = Vec::new();
        encode_frame(&(5u64, "hello".to_string()), &mut out).unwrap();
        encode_frame(&7u32, &mut out).unwrap();
        run(async {
            let mut buf = Vec::new();
            let mut r: &[u8] = &out;
            let v: (u64, String) = read_value(&mut r, &mut buf, 1024).await.unwrap();
            assert_eq!(v, (5, "hello".to_string()));
            let w: u32 = read_value(&mut r, &mut buf, 1024).await.unwrap();
            assert_eq!(w, 7);
            assert!(matches!(
                read_frame(&mut r, &mut buf, 1024).await,
                Err(FrameError::Closed)
            ));

            let mut bad = out.clone();
            bad[FRAME_HEADER_BYTES] ^= 1;
            let mut r: &[u8] = &bad;
            assert!(matches!(
                read_frame(&mut r, &mut buf, 1024).await,
                Err(FrameError::Checksum { .. })
            ));

            let mut r: &[u8] = &out[..5];
            assert!(matches!(
                read_frame(&mut r, &mut buf, 1024).await,
                Err(FrameError::Truncated { .. })
            ));
            let mut r: &[u8] = &out[..FRAME_HEADER_BYTES + 2];
            assert!(matches!(
                read_frame(&mut r, &mut buf, 1024).await,
                Err(FrameError::Truncated { .. })
            ));
            let mut r: &[u8] = &out;
            assert!(matches!(
                read_frame(&mut r, &mut buf, 3).await,
                Err(FrameError::TooLarge { .. })
            ));

            let mut bad = out.clone();
            bad[4] = 9;
            let mut r: &[u8] = &bad;
            assert!(matches!(
                read_frame(&mut r, &mut buf, 1024).await,
                Err(FrameError::Version { got: 9 })
            ));
        });
    }
}
