//! What the first bytes of a connection say about the other side, when a
//! handshake fails: a TLS record where a frame was expected (the server
//! runs TLS, this side does not), or a frame where a TLS record was
//! expected (the other way round). Both sides then name the mismatch
//! instead of reporting a truncated frame or a corrupt TLS message.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{FRAME_HEADER_BYTES, PROTOCOL_VERSION};

/// Bytes kept of the start of a connection: a frame header (a TLS record
/// header is shorter).
pub const FIRST_BYTES: usize = FRAME_HEADER_BYTES;

/// The first bytes read from a [`FirstBytes`] stream, readable after the
/// stream was handed on (to a TLS layer that failed, say).
#[derive(Clone, Debug, Default)]
pub struct Seen(Arc<Mutex<Vec<u8>>>);

impl Seen {
    /// A copy of what was read so far (at most [`FIRST_BYTES`]).
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stream that keeps a copy of the first [`FIRST_BYTES`] bytes read.
#[derive(Debug)]
pub struct FirstBytes<S> {
    inner: S,
    seen: Seen,
    /// Bytes copied so far: once full, reads pass through untouched.
    copied: usize,
}

impl<S> FirstBytes<S> {
    /// Wraps `inner`; `seen` gives the bytes read from it.
    pub fn new(inner: S) -> (FirstBytes<S>, Seen) {
        let seen = Seen::default();
        (
            FirstBytes {
                inner,
                seen: seen.clone(),
                copied: 0,
            },
            seen,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.copied < FIRST_BYTES {
            let new = &buf.filled()[before..];
            let take = new.len().min(FIRST_BYTES - self.copied);
            if take > 0 {
                self.seen
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&new[..take]);
                self.copied += take;
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Whether `first` starts like a TLS record: a content type (change
/// cipher spec, alert, handshake, application data) and a 3.x version.
/// A TLS server answers a plaintext handshake with an alert record.
pub fn is_tls_record(first: &[u8]) -> bool {
    matches!(first, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

/// Whether `first` starts like a TLS client's first record, a
/// handshake: what a plaintext server reads from a TLS client.
pub fn is_tls_client_hello(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, 0x00..=0x04, ..])
}

/// Whether `first` starts like a frame header of this protocol (a small
/// length, a version byte this or an earlier build writes): what a TLS
/// client reads from a plaintext server.
pub fn is_frame_header(first: &[u8]) -> bool {
    match first {
        [_, _, len_2, len_3, version, ..] => {
            // Handshake answers are small: below 64 KiB.
            *len_2 == 0 && *len_3 == 0 && (1..=PROTOCOL_VERSION).contains(version)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_and_frames_are_told_apart() {
        // A TLS 1.3 alert (decode_error), as rustls answers plaintext.
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        // The start of a ClientHello record.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        let mut frame = Vec::new();
        super::super::frame::encode_frame(
            &super::super::wire::Welcome::Refused {
                reason: "no".to_string(),
            },
            &mut frame,
        )
        .unwrap();
        assert!(is_tls_record(&alert) && !is_tls_client_hello(&alert));
        assert!(is_tls_record(&hello) && is_tls_client_hello(&hello));
        assert!(!is_frame_header(&alert) && !is_frame_header(&hello));
        assert!(is_frame_header(&frame) && !is_tls_record(&frame));
        assert!(!is_tls_record(&[0x15, 0x03]) && !is_frame_header(&frame[..4]));
    }

    #[test]
    fn the_first_bytes_are_kept_and_the_rest_passes_through() {
        use tokio::io::AsyncReadExt;
        let data: Vec<u8> = (0..40).collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let (mut stream, seen) = FirstBytes::new(&data[..]);
                let mut out = [0u8; 4];
                stream.read_exact(&mut out).await.unwrap();
                assert_eq!(seen.bytes(), vec![0, 1, 2, 3]);
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.unwrap();
                assert_eq!(rest, data[4..]);
                assert_eq!(seen.bytes(), data[..FIRST_BYTES]);
            });
    }
}
