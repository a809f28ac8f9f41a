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
/// ([`MessageBody::CommitNotice`](concord::MessageBody::CommitNotice)),
/// which a version 3 peer could not decode; version 5 adds the cluster's
/// incarnation to the peer handshake
/// ([`HelloRole::Peer`](super::wire::HelloRole::Peer)); version 6 adds
/// the leader's record of the follower to every message
/// ([`Message::progress_id`](concord::Message::progress_id)); version 7
/// numbers every peer frame
/// ([`MultiPeerFrame::Frame`](super::multi::wire::MultiPeerFrame::Frame)),
/// so a receiver can tell frames that arrive out of order.
pub const PROTOCOL_VERSION: u8 = 7;

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
    /// Nothing arrived between two frames for the idle timeout.
    #[error("nothing received for {timeout:?} (idle connection)")]
    Idle {
        /// The idle timeout.
        timeout: std::time::Duration,
    },
    /// A frame was begun but not finished within the frame timeout.
    #[error("a frame was begun but not finished within {timeout:?}")]
    Slow {
        /// The frame timeout.
        timeout: std::time::Duration,
    },
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

/// Payload bytes a frame buffer first makes room for, however long the
/// frame announces itself: room beyond it is made only as bytes arrive
/// (doubling what arrived), so a header announcing 16 MiB followed by
/// nothing costs this much, not 16 MiB.
pub const FRAME_READ_FIRST_BYTES: usize = 16 * 1024;

/// Capacity a [`FrameBuffer`] keeps free of its [`FrameBudget`]: every
/// connection may hold this much without taking from the node's budget,
/// so small requests never wait on it.
pub const FRAME_BUFFER_FREE_BYTES: usize = 64 * 1024;

/// Bytes a connection's [`FrameBuffer`] (one made by
/// [`FrameBuffer::with_budget`]) asks the stream for at once when it needs
/// a header or the small rest of a frame: one read system call then
/// usually brings a whole request, and whatever follows it (the next
/// pipelined frame) waits in the buffer for the next read. A short read
/// also tells tokio the socket is drained, so no read ends in
/// `EWOULDBLOCK`. A fixed amount per connection, like a socket buffer,
/// outside the [`FrameBudget`]; a frame's payload beyond it is read
/// straight into the payload buffer, never ahead.
pub const FRAME_READ_AHEAD_BYTES: usize = 4 * 1024;

/// A node-wide limit on the bytes that connections' frame buffers hold
/// beyond [`FRAME_BUFFER_FREE_BYTES`] each. A buffer that must grow past
/// what is left waits for other connections to give bytes back (a
/// finished frame, a closed connection), within its frame's timeout.
#[derive(Debug)]
pub struct FrameBudget {
    semaphore: tokio::sync::Semaphore,
    bytes_max: usize,
}

impl FrameBudget {
    /// A budget of `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> Self {
        assert!(bytes_max <= tokio::sync::Semaphore::MAX_PERMITS);
        FrameBudget {
            semaphore: tokio::sync::Semaphore::new(bytes_max),
            bytes_max,
        }
    }

    /// The budget's size.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes of the budget not held by any buffer right now.
    pub fn available_bytes(&self) -> usize {
        self.semaphore.available_permits()
    }

    async fn take(&self, bytes: usize) {
        let mut left = bytes;
        while left > 0 {
            let step = left.min(u32::MAX as usize);
            // The semaphore is never closed.
            let permit = self
                .semaphore
                .acquire_many(step as u32)
                .await
                .expect("the frame budget's semaphore is never closed");
            permit.forget();
            left -= step;
        }
    }

    fn give(&self, bytes: usize) {
        if bytes > 0 {
            self.semaphore.add_permits(bytes);
        }
        debug_assert!(self.available_bytes() <= self.bytes_max);
    }
}

/// One connection's receive buffer: it grows with the bytes received, and
/// what it holds beyond [`FRAME_BUFFER_FREE_BYTES`] is taken from a
/// node-wide [`FrameBudget`] (if it has one) and given back when it
/// shrinks or is dropped.
///
/// One made by [`with_budget`](Self::with_budget) also reads ahead (see
/// [`FRAME_READ_AHEAD_BYTES`]): it belongs to one connection for the
/// connection's life, since it may hold the beginning of the next frame.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    budget: Option<std::sync::Arc<FrameBudget>>,
    /// Bytes taken from `budget`: the capacity beyond the free share.
    charged_bytes: usize,
    /// Read ahead: `ahead[ahead_start..ahead_end]` arrived past the last
    /// frame and is not consumed yet. Empty (and never allocated) when
    /// the buffer does not read ahead.
    ahead: Vec<u8>,
    ahead_start: usize,
    ahead_end: usize,
    reads_ahead: bool,
}

impl FrameBuffer {
    /// A buffer charging `budget` for what it holds beyond its free share.
    pub fn with_budget(budget: std::sync::Arc<FrameBudget>) -> Self {
        FrameBuffer {
            bytes: Vec::new(),
            budget: Some(budget),
            charged_bytes: 0,
            ahead: Vec::new(),
            ahead_start: 0,
            ahead_end: 0,
            reads_ahead: true,
        }
    }

    /// Charges `budget` instead of the current one from now on (a
    /// connection that turned out to be a peer's), keeping what was read
    /// ahead: the payload buffer is emptied and its charge given back.
    pub fn move_to_budget(&mut self, budget: std::sync::Arc<FrameBudget>) {
        self.shrink_to(0);
        if let Some(old) = self.budget.take() {
            old.give(self.charged_bytes);
        }
        self.charged_bytes = 0;
        self.budget = Some(budget);
        self.settle();
    }

    /// Bytes read ahead and not yet consumed.
    fn ahead_len(&self) -> usize {
        self.ahead_end - self.ahead_start
    }

    /// Moves up to `out.len()` read-ahead bytes into `out`; how many.
    fn take_ahead(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.ahead_len());
        out[..n].copy_from_slice(&self.ahead[self.ahead_start..self.ahead_start + n]);
        self.ahead_start += n;
        n
    }

    /// Forgets what was read ahead (after an error the stream's position
    /// cannot be trusted; the connection is closed).
    fn drop_ahead(&mut self) {
        self.ahead_start = 0;
        self.ahead_end = 0;
    }

    /// Reads once from `reader` into the (empty) read-ahead space; how
    /// many bytes arrived (0: end of stream).
    async fn read_ahead<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        reader: &mut R,
    ) -> std::io::Result<usize> {
        debug_assert_eq!(self.ahead_len(), 0);
        if self.ahead.len() < FRAME_READ_AHEAD_BYTES {
            self.ahead.resize(FRAME_READ_AHEAD_BYTES, 0);
        }
        self.ahead_start = 0;
        self.ahead_end = 0;
        let n = reader.read(&mut self.ahead).await?;
        self.ahead_end = n;
        Ok(n)
    }

    /// The payload of the last frame read.
    pub fn payload(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes held (the buffer's capacity).
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Lets go of all but `keep_bytes` of capacity (a client connection
    /// between requests keeps no more than a small request needs).
    pub fn shrink_to(&mut self, keep_bytes: usize) {
        if self.bytes.capacity() > keep_bytes {
            self.bytes.clear();
            self.bytes.shrink_to(keep_bytes);
            self.settle();
        }
    }

    /// Makes room for at least `extra_bytes` more, charging the budget
    /// first (waiting while it has too little left).
    async fn grow(&mut self, extra_bytes: usize) {
        let wanted = self.bytes.len() + extra_bytes;
        if wanted <= self.bytes.capacity() {
            return;
        }
        if let Some(budget) = &self.budget {
            let charge = wanted.saturating_sub(FRAME_BUFFER_FREE_BYTES);
            if charge > self.charged_bytes {
                budget.take(charge - self.charged_bytes).await;
                self.charged_bytes = charge;
            }
        }
        self.bytes.reserve_exact(extra_bytes);
        self.settle();
    }

    /// Brings the charge in line with the capacity actually held (an
    /// allocator may give more than asked; a shrink gives some back).
    fn settle(&mut self) {
        let Some(budget) = &self.budget else { return };
        let charge = self
            .bytes
            .capacity()
            .saturating_sub(FRAME_BUFFER_FREE_BYTES);
        if charge < self.charged_bytes {
            budget.give(self.charged_bytes - charge);
            self.charged_bytes = charge;
        } else if charge > self.charged_bytes {
            // Over by the allocator's rounding only: taken without waiting,
            // as much of it as is left.
            self.charged_bytes += budget.semaphore.forget_permits(charge - self.charged_bytes);
        }
    }
}

impl Drop for FrameBuffer {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.charged_bytes);
        }
    }
}

/// How long a connection may take, for [`read_frame_timed`].
#[derive(Clone, Copy, Debug)]
pub struct FrameTimeouts {
    /// Most time between frames: until the first byte of the next header.
    pub idle: std::time::Duration,
    /// Most time from a frame's first byte to its last.
    pub frame: std::time::Duration,
}

/// Reads one frame's payload into `buf` (replacing its contents), checking
/// size, version and checksum. Returns [`FrameError::Closed`] on a clean end
/// of stream before the first header byte. The buffer grows with the bytes
/// received, never to an announced length ahead of them.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    // No read ahead: the caller keeps only the payload between calls.
    let mut frame_buffer = FrameBuffer {
        bytes: std::mem::take(buf),
        budget: None,
        charged_bytes: 0,
        ahead: Vec::new(),
        ahead_start: 0,
        ahead_end: 0,
        reads_ahead: false,
    };
    let result = read_frame_into(reader, &mut frame_buffer, max_frame_bytes, None).await;
    *buf = std::mem::take(&mut frame_buffer.bytes);
    result
}

/// [`read_frame`] into a [`FrameBuffer`], which reads ahead: frames
/// that arrived together are read with one system call. No timeouts.
pub async fn read_frame_buffered<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    read_frame_into(reader, buf, max_frame_bytes, None).await
}

/// [`read_frame`] into a budgeted buffer, within `timeouts`: nothing for
/// `timeouts.idle` is [`FrameError::Idle`], a frame begun but not finished
/// within `timeouts.frame` is [`FrameError::Slow`].
pub async fn read_frame_timed<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    max_frame_bytes: usize,
    timeouts: FrameTimeouts,
) -> Result<(), FrameError> {
    read_frame_into(reader, buf, max_frame_bytes, Some(timeouts)).await
}

async fn within<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    on_timeout: impl FnOnce() -> FrameError,
    f: F,
) -> Result<F::Output, FrameError> {
    match deadline {
        None => Ok(f.await),
        // `timeout`, not `timeout_at`: madsim's tokio has only the former,
        // and the adapter must build under `--cfg madsim` too.
        Some(deadline) => {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::timeout(left, f)
                .await
                .map_err(|_| on_timeout())
        }
    }
}

async fn read_frame_into<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    max_frame_bytes: usize,
    timeouts: Option<FrameTimeouts>,
) -> Result<(), FrameError> {
    let result = read_frame_once(reader, buf, max_frame_bytes, timeouts).await;
    if result.is_err() {
        buf.drop_ahead();
    }
    result
}

/// Reads into `header[got..]`, from what was read ahead if there is any,
/// else with one read (ahead, when the buffer reads ahead).
async fn read_header_part<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    header: &mut [u8],
) -> std::io::Result<usize> {
    if !buf.reads_ahead {
        return reader.read(header).await;
    }
    if buf.ahead_len() == 0 && buf.read_ahead(reader).await? == 0 {
        return Ok(0);
    }
    Ok(buf.take_ahead(header))
}

async fn read_frame_once<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    max_frame_bytes: usize,
    timeouts: Option<FrameTimeouts>,
) -> Result<(), FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut got = 0;
    let idle_deadline = timeouts.map(|t| tokio::time::Instant::now() + t.idle);
    let mut frame_deadline = None;
    let slow = |t: Option<FrameTimeouts>| {
        move || FrameError::Slow {
            timeout: t.map(|t| t.frame).unwrap_or_default(),
        }
    };
    while got < FRAME_HEADER_BYTES {
        let read = read_header_part(reader, buf, &mut header[got..]);
        let read = if got == 0 {
            within(
                idle_deadline,
                || FrameError::Idle {
                    timeout: timeouts.map(|t| t.idle).unwrap_or_default(),
                },
                read,
            )
            .await?
        } else {
            within(frame_deadline, slow(timeouts), read).await?
        };
        let n = match read {
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
        if got == 0 {
            frame_deadline = timeouts.map(|t| tokio::time::Instant::now() + t.frame);
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
    buf.bytes.clear();
    while buf.bytes.len() < len {
        let got = buf.bytes.len();
        if buf.bytes.capacity() == got {
            // Room for as much again as arrived (at least the first
            // share): the buffer is at most about twice what the other
            // side actually sent.
            let extra = (len - got).min(got.max(FRAME_READ_FIRST_BYTES));
            within(frame_deadline, slow(timeouts), buf.grow(extra)).await?;
        }
        let room = (len - got).min(buf.bytes.capacity() - got);
        debug_assert!(room > 0);
        if buf.reads_ahead {
            // The small rest of a frame is read ahead (with whatever
            // follows it); a large one straight into the payload.
            if buf.ahead_len() == 0 && room < FRAME_READ_AHEAD_BYTES {
                let read = within(frame_deadline, slow(timeouts), buf.read_ahead(reader)).await?;
                if read? == 0 {
                    return Err(FrameError::Truncated {
                        got: FRAME_HEADER_BYTES + got,
                        expected: FRAME_HEADER_BYTES + len,
                    });
                }
            }
            if buf.ahead_len() > 0 {
                let n = room.min(buf.ahead_len());
                let start = buf.ahead_start;
                buf.bytes.extend_from_slice(&buf.ahead[start..start + n]);
                buf.ahead_start += n;
                continue;
            }
        }
        buf.bytes.resize(got + room, 0);
        let read = within(
            frame_deadline,
            slow(timeouts),
            reader.read(&mut buf.bytes[got..]),
        )
        .await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                buf.bytes.truncate(got);
                return Err(e.into());
            }
            Err(e) => {
                buf.bytes.truncate(got);
                return Err(e);
            }
        };
        buf.bytes.truncate(got + n);
        if n == 0 {
            return Err(FrameError::Truncated {
                got: FRAME_HEADER_BYTES + got,
                expected: FRAME_HEADER_BYTES + len,
            });
        }
    }
    debug_assert_eq!(buf.bytes.len(), len);
    let actual = crc32c::crc32c(&buf.bytes);
    if actual != expected {
        return Err(FrameError::Checksum { expected, actual });
    }
    Ok(())
}

/// Reads one frame within `timeouts` into a budgeted buffer and decodes
/// its payload as `T`.
pub async fn read_value_timed<T, R>(
    reader: &mut R,
    buf: &mut FrameBuffer,
    max_frame_bytes: usize,
    timeouts: FrameTimeouts,
) -> Result<T, FrameError>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    read_frame_timed(reader, buf, max_frame_bytes, timeouts).await?;
    Ok(codec::decode(buf.payload(), max_frame_bytes)?)
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
            .enable_time()
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

    fn header(len: u32) -> Vec<u8> {
        let mut h = len.to_le_bytes().to_vec();
        h.push(PROTOCOL_VERSION);
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }

    #[test]
    fn a_buffer_grows_with_the_bytes_received_not_the_announced_length() {
        let mut input = header(16 * 1024 * 1024 - 1);
        input.extend_from_slice(&[7u8; 1024]);
        run(async {
            let mut buf = Vec::new();
            let mut r: &[u8] = &input;
            let got = read_frame(&mut r, &mut buf, DEFAULT_MAX_FRAME_BYTES).await;
            assert!(
                matches!(got, Err(FrameError::Truncated { got, .. }) if got == FRAME_HEADER_BYTES + 1024)
            );
            assert!(
                buf.capacity() <= FRAME_READ_FIRST_BYTES,
                "{}",
                buf.capacity()
            );
        });
        // A frame that does arrive whole is read whole, whatever its size,
        // with the buffer at most twice the payload.
        let payload = vec![3u8; 3 * 1024 * 1024 + 5];
        let mut out = Vec::new();
        encode_frame(&payload, &mut out).unwrap();
        run(async {
            let mut buf = Vec::new();
            let mut r: &[u8] = &out;
            let back: Vec<u8> = read_value(&mut r, &mut buf, DEFAULT_MAX_FRAME_BYTES)
                .await
                .unwrap();
            assert_eq!(back, payload);
            assert!(
                buf.capacity() <= 2 * buf.len(),
                "{} for {}",
                buf.capacity(),
                buf.len()
            );
        });
    }

    #[test]
    fn a_budgeted_buffer_takes_from_the_budget_and_gives_it_back() {
        let budget = std::sync::Arc::new(FrameBudget::new(1024 * 1024));
        let payload = vec![9u8; 600 * 1024];
        let mut out = Vec::new();
        encode_frame(&payload, &mut out).unwrap();
        let timeouts = FrameTimeouts {
            idle: std::time::Duration::from_secs(60),
            frame: std::time::Duration::from_millis(300),
        };
        run(async {
            let mut first = FrameBuffer::with_budget(budget.clone());
            let mut r: &[u8] = &out;
            let back: Vec<u8> =
                read_value_timed(&mut r, &mut first, DEFAULT_MAX_FRAME_BYTES, timeouts)
                    .await
                    .unwrap();
            assert_eq!(back, payload);
            let held = budget.bytes_max() - budget.available_bytes();
            assert_eq!(held, first.capacity_bytes() - FRAME_BUFFER_FREE_BYTES);
            // A second connection's frame of the same size does not fit in
            // what is left: it waits, and gives up at its frame timeout.
            let mut second = FrameBuffer::with_budget(budget.clone());
            let mut r: &[u8] = &out;
            let got =
                read_frame_timed(&mut r, &mut second, DEFAULT_MAX_FRAME_BYTES, timeouts).await;
            assert!(matches!(got, Err(FrameError::Slow { .. })), "{got:?}");
            // Once the first lets go, the second's frame fits.
            first.shrink_to(0);
            assert!(budget.available_bytes() >= budget.bytes_max() - (second.capacity_bytes()));
            let mut r: &[u8] = &out;
            read_frame_timed(&mut r, &mut second, DEFAULT_MAX_FRAME_BYTES, timeouts)
                .await
                .unwrap();
            drop(second);
            drop(first);
            assert_eq!(budget.available_bytes(), budget.bytes_max());
        });
    }

    /// A stream that hands out `chunks` one per read (less if the reader
    /// asks for less), counting the reads that returned bytes.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl tokio::io::AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(out.remaining());
                out.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
                self.reads += 1;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_connection_buffer_reads_pipelined_frames_in_one_read() {
        let timeouts = FrameTimeouts {
            idle: std::time::Duration::from_secs(60),
            frame: std::time::Duration::from_secs(60),
        };
        let mut out = Vec::new();
        encode_frame(&(1u64, "first".to_string()), &mut out).unwrap();
        encode_frame(&(2u64, "second".to_string()), &mut out).unwrap();
        let third_at = out.len();
        encode_frame(&(3u64, "x".repeat(300)), &mut out).unwrap();
        // A large frame after them: read straight into the payload.
        let large = vec![5u8; 3 * FRAME_READ_AHEAD_BYTES];
        encode_frame(&large, &mut out).unwrap();
        let budget = std::sync::Arc::new(FrameBudget::new(1024 * 1024));
        run(async {
            // The first chunk holds two frames and 3 bytes of the third.
            let mut stream = Chunks {
                chunks: [out[..third_at + 3].to_vec(), out[third_at + 3..].to_vec()].into(),
                reads: 0,
            };
            let mut buf = FrameBuffer::with_budget(budget.clone());
            for expected in [
                (1, "first".to_string()),
                (2, "second".to_string()),
                (3, "x".repeat(300)),
            ] {
                let got: (u64, String) = read_value_timed(&mut stream, &mut buf, 1 << 20, timeouts)
                    .await
                    .unwrap();
                assert_eq!(got, expected);
            }
            // Two frames from one read; the third's header from the first
            // read and the second.
            assert_eq!(stream.reads, 2);
            let back: Vec<u8> = read_value_timed(&mut stream, &mut buf, 1 << 20, timeouts)
                .await
                .unwrap();
            assert_eq!(back, large);
            assert!(matches!(
                read_frame_timed(&mut stream, &mut buf, 1 << 20, timeouts).await,
                Err(FrameError::Closed)
            ));
        });
        drop(budget);
    }

    #[test]
    fn a_buffer_moved_to_another_budget_keeps_what_it_read_ahead() {
        let timeouts = FrameTimeouts {
            idle: std::time::Duration::from_secs(60),
            frame: std::time::Duration::from_secs(60),
        };
        let clients = std::sync::Arc::new(FrameBudget::new(1024 * 1024));
        let peers = std::sync::Arc::new(FrameBudget::new(1024 * 1024));
        let mut out = Vec::new();
        encode_frame(&"hello".to_string(), &mut out).unwrap();
        encode_frame(&vec![1u8; 100 * 1024], &mut out).unwrap();
        encode_frame(&7u32, &mut out).unwrap();
        run(async {
            let mut stream = Chunks {
                chunks: [out.clone()].into(),
                reads: 0,
            };
            let mut buf = FrameBuffer::with_budget(clients.clone());
            let hello: String = read_value_timed(&mut stream, &mut buf, 1 << 20, timeouts)
                .await
                .unwrap();
            assert_eq!(hello, "hello");
            buf.move_to_budget(peers.clone());
            assert_eq!(clients.available_bytes(), clients.bytes_max());
            let big: Vec<u8> = read_value_timed(&mut stream, &mut buf, 1 << 20, timeouts)
                .await
                .unwrap();
            assert_eq!(big, vec![1u8; 100 * 1024]);
            assert!(peers.available_bytes() < peers.bytes_max());
            assert_eq!(clients.available_bytes(), clients.bytes_max());
            let seven: u32 = read_value_timed(&mut stream, &mut buf, 1 << 20, timeouts)
                .await
                .unwrap();
            assert_eq!(seven, 7);
            drop(buf);
            assert_eq!(peers.available_bytes(), peers.bytes_max());
        });
    }

    #[test]
    fn a_silent_connection_is_idle_and_a_stalled_frame_is_slow() {
        let timeouts = FrameTimeouts {
            idle: std::time::Duration::from_millis(100),
            frame: std::time::Duration::from_millis(100),
        };
        run(async {
            let (mut near, far) = tokio::io::duplex(1024);
            let mut buf = FrameBuffer::default();
            let got = read_frame_timed(&mut near, &mut buf, 1024, timeouts).await;
            assert!(matches!(got, Err(FrameError::Idle { .. })), "{got:?}");
            let (mut near, mut far2) = tokio::io::duplex(1024);
            use tokio::io::AsyncWriteExt;
            far2.write_all(&header(100)).await.unwrap();
            far2.write_all(&[1u8; 10]).await.unwrap();
            let got = read_frame_timed(&mut near, &mut buf, 1024, timeouts).await;
            assert!(matches!(got, Err(FrameError::Slow { .. })), "{got:?}");
            drop(far);
        });
    }
}
