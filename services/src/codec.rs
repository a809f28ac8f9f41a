//! The bytes of every service's requests, answers and snapshots: a
//! version byte, then serde values encoded with bincode by
//! [`concord::codec`], whose decoding refuses trailing bytes and never
//! allocates from a length field more than the input can hold.
//!
//! ```text
//! request   [CODEC_VERSION] bincode(service name, operation id) bincode(S::Request)
//! answer    [CODEC_VERSION] bincode(Result<S::Response, String>)
//! snapshot  [CODEC_VERSION] bincode(service name) bincode(S)
//! ```
//!
//! The operation id is the client's name for one logical operation; only
//! the simulator looks at it (its exactly-once check). The service name
//! makes a request sent to a server of another service an error that says
//! so, instead of bytes that happen to decode as something else. A
//! request, answer or snapshot of another codec version is refused with
//! both versions named.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use concord::codec::{self, CodecError};

use crate::service::Service;

/// The version this build writes and reads. Version 1: the layout above.
pub const CODEC_VERSION: u8 = 1;

/// Largest encoded request: 4 MiB (a client refuses to send a larger one,
/// a server to decode it).
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest encoded answer a client decodes: a request's limit, plus room
/// for what an answer adds around the values it carries.
pub const RESPONSE_BYTES_MAX: usize = REQUEST_BYTES_MAX + 64 * 1024;

/// Longest service name (a request's and a snapshot's header carry it).
pub const SERVICE_NAME_BYTES_MAX: usize = 32;

/// Most bytes a header (name and operation id) takes: what the header
/// decoder is given to look at, so it never reads into the body.
const HEADER_BYTES_MAX: usize = 1 + SERVICE_NAME_BYTES_MAX + 9;

/// Why bytes are not a request, answer or snapshot of this service.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServiceCodecError {
    /// No bytes at all.
    #[error("empty {what}")]
    Empty {
        /// "request", "answer" or "snapshot".
        what: &'static str,
    },
    /// Written by a build speaking another version.
    #[error(
        "{what} in service codec version {found}, but this build speaks version \
         {CODEC_VERSION}: run clients and servers of one version"
    )]
    Version {
        /// "request", "answer" or "snapshot".
        what: &'static str,
        /// The version byte found.
        found: u8,
    },
    /// Meant for another service.
    #[error("a {what} of the {found} service reached a {expected} server or client: check --service and the command")]
    Service {
        /// "request" or "snapshot".
        what: &'static str,
        /// The service named in the bytes.
        found: String,
        /// This side's service.
        expected: &'static str,
    },
    /// Not a valid encoding.
    #[error("malformed {what}: {error}")]
    Malformed {
        /// "request", "answer" or "snapshot".
        what: &'static str,
        /// What the decoder found wrong.
        error: CodecError,
    },
}

/// The first allocation of an encoded answer: a put's answer, a failed
/// compare-and-set's or a short read's fits without a second.
const ANSWER_BYTES_INITIAL: usize = 64;

#[derive(Serialize)]
struct HeaderRef<'a> {
    service: &'a str,
    op_id: u64,
}

#[derive(Deserialize)]
struct Header {
    service: String,
    op_id: u64,
}

/// The bytes after the version byte, once it is checked.
fn body<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a [u8], ServiceCodecError> {
    match bytes.split_first() {
        None => Err(ServiceCodecError::Empty { what }),
        Some((&CODEC_VERSION, body)) => Ok(body),
        Some((&found, _)) => Err(ServiceCodecError::Version { what, found }),
    }
}

fn malformed(what: &'static str) -> impl Fn(CodecError) -> ServiceCodecError {
    move |error| ServiceCodecError::Malformed { what, error }
}

/// Reads the header at the front of `body` (only its first bytes are
/// looked at) and returns it with the bytes after it.
fn header<'a, T: serde::de::DeserializeOwned>(
    body: &'a [u8],
    what: &'static str,
) -> Result<(T, &'a [u8]), ServiceCodecError> {
    let window = &body[..body.len().min(HEADER_BYTES_MAX)];
    let (header, rest) =
        codec::decode_prefix::<T>(window, HEADER_BYTES_MAX).map_err(malformed(what))?;
    let used = window.len() - rest.len();
    Ok((header, &body[used..]))
}

fn check_service<S: Service>(found: String, what: &'static str) -> Result<(), ServiceCodecError> {
    if found == S::NAME {
        Ok(())
    } else {
        Err(ServiceCodecError::Service {
            what,
            found,
            expected: S::NAME,
        })
    }
}

/// Encodes `request` of service `S` as operation `op_id`.
pub fn encode_request<S: Service>(op_id: u64, request: &S::Request) -> Bytes {
    debug_assert!(S::NAME.len() <= SERVICE_NAME_BYTES_MAX);
    let mut out = vec![CODEC_VERSION];
    let header = HeaderRef {
        service: S::NAME,
        op_id,
    };
    // Strings, integers, byte strings and enums of them always encode.
    codec::encode_into(&header, &mut out).expect("a request header encodes");
    codec::encode_into(request, &mut out).expect("a request encodes");
    Bytes::from(out)
}

/// Decodes a request of service `S` and its operation id, from untrusted
/// bytes.
pub fn decode_request<S: Service>(bytes: &[u8]) -> Result<(u64, S::Request), ServiceCodecError> {
    const WHAT: &str = "request";
    if bytes.len() > REQUEST_BYTES_MAX {
        return Err(ServiceCodecError::Malformed {
            what: WHAT,
            error: CodecError::TooLarge {
                len: bytes.len(),
                limit: REQUEST_BYTES_MAX,
            },
        });
    }
    let body = body(bytes, WHAT)?;
    // Another service's name, or bytes that do not decode: the general
    // path says which.
    let (op_id, rest) = match request_header_of::<S>(body) {
        Some(found) => found,
        None => request_header::<S>(body)?,
    };
    let request = codec::decode(rest, REQUEST_BYTES_MAX).map_err(malformed(WHAT))?;
    Ok((op_id, request))
}

/// A request's header decoded whole (the service's name into a
/// `String`): its operation id and the bytes after it, or why not.
fn request_header<S: Service>(body: &[u8]) -> Result<(u64, &[u8]), ServiceCodecError> {
    let (header, rest) = header::<Header>(body, "request")?;
    check_service::<S>(header.service, "request")?;
    Ok((header.op_id, rest))
}

/// [`request_header`] without decoding the name, when it is `S`'s: the
/// name's length is read as the codec writes a string's, and its bytes
/// are compared in place. Decoding it into a `String` only to compare
/// it cost an allocation per applied command on every server. `None`
/// for anything else.
fn request_header_of<S: Service>(body: &[u8]) -> Option<(u64, &[u8])> {
    let name = S::NAME.as_bytes();
    let (length, after_length) = header::<u64>(body, "request").ok()?;
    if length != name.len() as u64 {
        return None;
    }
    let after_name = after_length.strip_prefix(name)?;
    header::<u64>(after_name, "request").ok()
}

/// The operation id of an encoded request of any service, if it has a
/// readable header (the simulator's exactly-once check).
pub fn request_op_id(bytes: &[u8]) -> Option<u64> {
    let (header, _) = header::<Header>(body(bytes, "request").ok()?, "request").ok()?;
    Some(header.op_id)
}

/// Encodes an answer of service `S`: the response, or why the request was
/// refused.
pub fn encode_answer<S: Service>(answer: &Result<S::Response, String>) -> Bytes {
    // Room for a small answer without growing (most are a few bytes).
    let mut out = Vec::with_capacity(ANSWER_BYTES_INITIAL);
    out.push(CODEC_VERSION);
    codec::encode_into(answer, &mut out).expect("an answer encodes");
    Bytes::from(out)
}

/// Decodes an answer of service `S` from untrusted bytes.
pub fn decode_answer<S: Service>(
    bytes: &[u8],
) -> Result<Result<S::Response, String>, ServiceCodecError> {
    const WHAT: &str = "answer";
    codec::decode(body(bytes, WHAT)?, RESPONSE_BYTES_MAX).map_err(malformed(WHAT))
}

/// Encodes the whole state of service `S` for a snapshot.
pub fn encode_snapshot<S: Service>(state: &S) -> Bytes {
    let mut out = vec![CODEC_VERSION];
    codec::encode_into(S::NAME, &mut out).expect("a service name encodes");
    // Ordered maps of strings, byte strings and integers always encode;
    // an empty snapshot in its place would silently drop the state.
    codec::encode_into(state, &mut out).expect("a service's state encodes");
    Bytes::from(out)
}

/// Decodes a snapshot of service `S` (up to
/// [`concord::codec::SNAPSHOT_DECODE_LIMIT_BYTES`]).
pub fn decode_snapshot<S: Service>(bytes: &[u8]) -> Result<S, ServiceCodecError> {
    const WHAT: &str = "snapshot";
    let (service, rest) = header::<String>(body(bytes, WHAT)?, WHAT)?;
    check_service::<S>(service, WHAT)?;
    codec::decode_snapshot(rest).map_err(malformed(WHAT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Directory, DirectoryRequest};
    use crate::kv::{Kv, KvRequest};
    use crate::service::Named;

    fn put(key: &str) -> KvRequest {
        KvRequest::Put {
            key: Bytes::from(key.to_string()),
            value: Bytes::from_static(b"v"),
        }
    }

    #[test]
    fn a_header_read_in_place_is_the_header_decoded_whole() {
        for op_id in [0, 1, 250, 251, 65_535, u64::MAX] {
            let bytes = encode_request::<Kv>(op_id, &put("k"));
            let body = body(&bytes, "request").unwrap();
            let in_place = request_header_of::<Kv>(body).expect("a kv request's own name");
            assert_eq!(in_place, request_header::<Kv>(body).unwrap());
            assert_eq!(in_place.0, op_id);
            assert_eq!(decode_request::<Kv>(&bytes).unwrap(), (op_id, put("k")));
        }
    }

    #[test]
    fn a_request_of_another_service_is_refused_naming_it() {
        let request = DirectoryRequest::Connect {
            user: "u".to_string(),
            address: "127.0.0.1:1".to_string(),
        };
        let bytes = encode_request::<Directory>(7, &request);
        match decode_request::<Kv>(&bytes) {
            Err(ServiceCodecError::Service {
                found, expected, ..
            }) => {
                assert_eq!((found.as_str(), expected), (Directory::NAME, Kv::NAME));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_header_cut_short_is_malformed_at_every_length() {
        let bytes = encode_request::<Kv>(300, &put("k"));
        // The version byte, the name, then the two-byte operation id.
        for cut in 1..Kv::NAME.len() + 4 {
            assert!(
                matches!(
                    decode_request::<Kv>(&bytes[..cut]),
                    Err(ServiceCodecError::Malformed { .. })
                ),
                "cut at {cut}"
            );
        }
    }
}
