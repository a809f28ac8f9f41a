//! The `frame` target: the transport's frame reader
//! ([`read_frame`]) on an arbitrary byte stream, read once as one
//! contiguous buffer and once delivered in arbitrary pieces (with spurious
//! `Pending`s in between), as TCP may deliver it.
//!
//! Input layout: `[k: u8][k % 16 + 1 split bytes][stream]`. Split byte `s`
//! delivers the next `s` bytes of the stream in one read (`0`: one
//! `Pending`, then one byte); the split bytes are used round-robin.
//!
//! Checked: no panic; reading stops at the first error, as the server
//! does; the frames and the error are exactly the same however the stream
//! is split; every frame read is at most the limit; every payload read is
//! also handed to every decoder of the [`codec`](super::codec) target.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use concord_tokio::frame::{read_frame, FrameError, FRAME_HEADER_BYTES};
use tokio::io::{AsyncRead, ReadBuf};

use super::Violation;

const TARGET: &str = "frame";

/// Largest frame payload the target reads: small enough that a hostile
/// length costs little per execution, large enough for real messages.
pub const FRAME_BYTES_MAX: usize = 64 * 1024;

/// Most frames read from one input (a stream of empty-payload frames is
/// 9 bytes each).
const FRAMES_PER_INPUT_MAX: usize = 4096;

/// Most polls of one `read_frame` call: every poll either makes progress
/// or is a single `Pending` between two that do.
const POLLS_PER_FRAME_MAX: usize = 2 * (FRAME_HEADER_BYTES + FRAME_BYTES_MAX) + 4;

/// What reading one frame gave: its payload, or the error (as text: the
/// errors carry no I/O source here, so equal text means equal error).
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Frame(Vec<u8>),
    Error(String),
}

/// A stream that hands out its bytes in the pieces the split bytes say.
struct SplitStream<'a> {
    data: &'a [u8],
    splits: &'a [u8],
    next: usize,
    just_pending: bool,
}

impl AsyncRead for SplitStream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.data.is_empty() || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let split = if self.splits.is_empty() {
            u8::MAX
        } else {
            self.splits[self.next % self.splits.len()]
        };
        if split == 0 && !self.just_pending {
            self.just_pending = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.just_pending = false;
        self.next += 1;
        let n = usize::from(split)
            .max(1)
            .min(buf.remaining())
            .min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

/// Polls `future` to completion with a no-op waker: the streams here never
/// wait for anything, a `Pending` only asks to be polled again.
fn block_on<F: Future>(future: F) -> Result<F::Output, Violation> {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..POLLS_PER_FRAME_MAX {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
    }
    Err(Violation::new(
        TARGET,
        format!("read_frame did not finish within {POLLS_PER_FRAME_MAX} polls"),
    ))
}

fn read_all<R: AsyncRead + Unpin>(mut reader: R) -> Result<Vec<Read>, Violation> {
    let mut reads = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..FRAMES_PER_INPUT_MAX {
        match block_on(read_frame(&mut reader, &mut buf, FRAME_BYTES_MAX))? {
            Ok(()) => {
                if buf.len() > FRAME_BYTES_MAX {
                    return Err(Violation::new(
                        TARGET,
                        format!(
                            "a frame of {} bytes was read with a limit of {FRAME_BYTES_MAX}",
                            buf.len()
                        ),
                    ));
                }
                reads.push(Read::Frame(buf.clone()));
            }
            Err(error) => {
                if let FrameError::Io(_) = error {
                    return Err(Violation::new(
                        TARGET,
                        format!("an in-memory stream gave an i/o error: {error}"),
                    ));
                }
                reads.push(Read::Error(error.to_string()));
                break;
            }
        }
    }
    Ok(reads)
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    let Some((&k, rest)) = data.split_first() else {
        return Ok(());
    };
    let split_len = (usize::from(k) % 16 + 1).min(rest.len());
    let (splits, stream) = rest.split_at(split_len);

    let whole = read_all(stream)?;
    let pieces = read_all(SplitStream {
        data: stream,
        splits,
        next: 0,
        just_pending: false,
    })?;
    if whole != pieces {
        return Err(Violation::new(
            TARGET,
            format!(
                "reading the stream whole gave {} results ending in {:?}, reading it in pieces \
                 {} ending in {:?}",
                whole.len(),
                whole.last(),
                pieces.len(),
                pieces.last()
            ),
        ));
    }
    for read in &whole {
        if let Read::Frame(payload) = read {
            super::codec::run_payload(payload, FRAME_BYTES_MAX)?;
        }
    }
    Ok(())
}
