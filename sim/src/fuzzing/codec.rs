//! The `codec` target: arbitrary bytes through every decoder the one
//! runtime runs on bytes it did not make:
//!
//! * the handshake ([`Hello`], [`Welcome`], [`PeerReply`]);
//! * peer traffic ([`MultiPeerFrame`]: every group's messages for a peer
//!   in one [`Frame`](concord::multi::Frame));
//! * client traffic ([`GroupRequest`], [`ClientResponse`],
//!   [`StatusAnswer`], [`AdminAnswer`]), and [`ClientRequest`], which the
//!   listener decodes only to tell a single-group client's request from
//!   garbage (and answer it with the group count);
//! * the disk: the shared log's records ([`GroupRecord`]) and durable
//!   marker ([`DurableMarker`]), the data directory's identity file
//!   ([`identity::decode`]);
//! * the catalog's commands ([`CatalogCommand`], group 0's log entries);
//! * what the legacy reader decodes when it upgrades a single-group
//!   server's directory ([`WalRecord`], [`HardState`], [`HostRecord`]);
//! * every service's requests, answers and snapshots
//!   (`concord_services::codec`).
//!
//! Input layout: the whole input is the payload, decoded as every type.
//!
//! Checked: no panic; every value that decodes survives a round trip: it
//! encodes, and its encoding decodes back to an equal value; and no decode
//! asks for more memory at once than
//! [`allocation_bound_bytes`](super::alloc::allocation_bound_bytes) of the
//! input (when [`LargestAllocation`](super::alloc::LargestAllocation) is
//! installed): a length field never outruns the bytes behind it.

use std::fmt::Debug;

use concord::multi::CatalogCommand;
use concord::HardState;
use concord_services::codec as services;
use concord_services::{Service, ServiceKind, ServiceVisitor};
use concord_tokio::addresses::HostRecord;
use concord_tokio::codec;
use concord_tokio::identity::{self, DataDirIdentity};
use concord_tokio::multi::admin::AdminAnswer;
use concord_tokio::multi::groups_status::{StatusAnswer, STATUS_ANSWER_BYTES_MAX};
use concord_tokio::multi::record::{DurableMarker, GroupRecord};
use concord_tokio::multi::wire::{GroupRequest, MultiPeerFrame};
// The legacy format, read only to upgrade a single-group directory.
use concord_tokio::wal::WalRecord;
use concord_tokio::wire::{ClientRequest, ClientResponse, Hello, PeerReply, Welcome};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{alloc, Violation};

const TARGET: &str = "codec";

/// The limit decodes run with: the runtime's default frame limit.
pub const DECODE_BYTES_MAX: usize = concord_tokio::frame::DEFAULT_MAX_FRAME_BYTES;

fn round_trip<T>(name: &str, bytes: &[u8], limit_bytes: usize) -> Result<(), Violation>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let decoded = alloc::checked(TARGET, name, bytes.len(), || {
        codec::decode::<T>(bytes, limit_bytes)
    })?;
    let Ok(value) = decoded else {
        return Ok(());
    };
    let encoded = codec::encode(&value).map_err(|error| {
        Violation::new(
            TARGET,
            format!("a decoded {name} does not encode again: {error}"),
        )
    })?;
    let again = codec::decode::<T>(&encoded, limit_bytes.max(encoded.len())).map_err(|error| {
        Violation::new(
            TARGET,
            format!("the re-encoding of a decoded {name} does not decode: {error}"),
        )
    })?;
    if again != value {
        return Err(Violation::new(
            TARGET,
            format!("a {name} changed in a round trip: {value:?} became {again:?}"),
        ));
    }
    Ok(())
}

/// A round trip through a type's own decoder and encoder (not the
/// codec's): what decodes encodes to bytes that decode to it again.
fn own_round_trip<T, E>(
    name: &str,
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Result<(), Violation>
where
    T: PartialEq + Debug,
{
    let decoded = alloc::checked(TARGET, name, bytes.len(), || decode(bytes))?;
    let Ok(value) = decoded else {
        return Ok(());
    };
    match decode(&encode(&value)) {
        Ok(again) if again == value => Ok(()),
        Ok(again) => Err(Violation::new(
            TARGET,
            format!("a {name} changed in a round trip: {value:?} became {again:?}"),
        )),
        Err(_) => Err(Violation::new(
            TARGET,
            format!("the re-encoding of a decoded {name} does not decode"),
        )),
    }
}

/// Decodes `payload` (at most `limit_bytes` long, as a frame reader would
/// pass it) as every wire and disk type, round-tripping what decodes.
pub fn run_payload(payload: &[u8], limit_bytes: usize) -> Result<(), Violation> {
    round_trip::<Hello>("Hello", payload, limit_bytes)?;
    round_trip::<Welcome>("Welcome", payload, limit_bytes)?;
    round_trip::<PeerReply>("PeerReply", payload, limit_bytes)?;
    round_trip::<MultiPeerFrame>("MultiPeerFrame", payload, limit_bytes)?;
    round_trip::<GroupRequest>("GroupRequest", payload, limit_bytes)?;
    round_trip::<ClientRequest>("ClientRequest", payload, limit_bytes)?;
    round_trip::<ClientResponse>("ClientResponse", payload, limit_bytes)?;
    round_trip::<StatusAnswer>("StatusAnswer", payload, STATUS_ANSWER_BYTES_MAX)?;
    own_round_trip("AdminAnswer", payload, AdminAnswer::decode, |answer| {
        answer.encode().to_vec()
    })?;
    round_trip::<GroupRecord>("GroupRecord", payload, limit_bytes)?;
    own_round_trip("DurableMarker", payload, DurableMarker::decode, |marker| {
        marker.encode().to_vec()
    })?;
    round_trip::<DataDirIdentity>("DataDirIdentity", payload, limit_bytes)?;
    own_round_trip("identity file", payload, identity::decode, |identity| {
        identity::encode(identity).expect("a decoded identity encodes")
    })?;
    own_round_trip(
        "CatalogCommand",
        payload,
        CatalogCommand::decode,
        |command| command.encode().to_vec(),
    )?;
    round_trip::<WalRecord>("legacy WalRecord", payload, limit_bytes)?;
    round_trip::<HardState>("legacy HardState", payload, 1024)?;
    own_round_trip("legacy HostRecord", payload, HostRecord::decode, |record| {
        record
            .encode()
            .expect("a decoded host record encodes")
            .to_vec()
    })?;
    for &kind in ServiceKind::ALL {
        kind.visit(ServiceDecoders { payload })?;
    }
    Ok(())
}

/// One service's request, answer and snapshot decoders on a payload.
struct ServiceDecoders<'a> {
    payload: &'a [u8],
}

impl ServiceVisitor for ServiceDecoders<'_> {
    type Output = Result<(), Violation>;

    fn visit<S: Service>(self) -> Result<(), Violation> {
        let payload = self.payload;
        let changed = |what: &str| {
            Violation::new(
                TARGET,
                format!("a {} {what} changed in a round trip", S::NAME),
            )
        };
        let what = format!("a {} request", S::NAME);
        let request = alloc::checked(TARGET, &what, payload.len(), || {
            services::decode_request::<S>(payload)
        })?;
        if let Ok((op_id, request)) = request {
            let again =
                services::decode_request::<S>(&services::encode_request::<S>(op_id, &request));
            if again.ok() != Some((op_id, request)) {
                return Err(changed("request"));
            }
        }
        let what = format!("a {} answer", S::NAME);
        let answer = alloc::checked(TARGET, &what, payload.len(), || {
            services::decode_answer::<S>(payload)
        })?;
        if let Ok(answer) = answer {
            let again = services::decode_answer::<S>(&services::encode_answer::<S>(&answer));
            if again.ok() != Some(answer) {
                return Err(changed("answer"));
            }
        }
        // The snapshot decoder has its own, larger limit.
        let what = format!("a {} snapshot", S::NAME);
        let state = alloc::checked(TARGET, &what, payload.len(), || {
            services::decode_snapshot::<S>(payload)
        })?;
        if let Ok(state) = state {
            let encoded = services::encode_snapshot(&state);
            let again = services::decode_snapshot::<S>(&encoded).map_err(|error| {
                Violation::new(
                    TARGET,
                    format!("the re-encoding of a decoded {what} does not decode: {error}"),
                )
            })?;
            if services::encode_snapshot(&again) != encoded {
                return Err(changed("snapshot"));
            }
        }
        Ok(())
    }
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    run_payload(data, DECODE_BYTES_MAX)
}
