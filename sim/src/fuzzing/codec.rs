//! The `codec` target: arbitrary bytes through every decoder behind
//! `concord::codec`: the handshake ([`Hello`], [`Welcome`]), peer traffic
//! ([`PeerFrame`], [`PeerReply`], [`Message`]), client traffic
//! ([`ClientRequest`], [`ClientResponse`], [`NodeStatus`]), the disk
//! records ([`WalRecord`], [`HardState`]), and every service's requests,
//! answers and snapshots (`concord_services::codec`).
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

use concord::{HardState, Message};
use concord_services::codec as services;
use concord_services::{Service, ServiceKind, ServiceVisitor};
use concord_tokio::codec;
use concord_tokio::status::NodeStatus;
use concord_tokio::wal::WalRecord;
use concord_tokio::wire::{ClientRequest, ClientResponse, Hello, PeerFrame, PeerReply, Welcome};
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

/// Decodes `payload` (at most `limit_bytes` long, as a frame reader would
/// pass it) as every wire and disk type, round-tripping what decodes.
pub fn run_payload(payload: &[u8], limit_bytes: usize) -> Result<(), Violation> {
    round_trip::<Hello>("Hello", payload, limit_bytes)?;
    round_trip::<Welcome>("Welcome", payload, limit_bytes)?;
    round_trip::<PeerFrame>("PeerFrame", payload, limit_bytes)?;
    round_trip::<PeerReply>("PeerReply", payload, limit_bytes)?;
    round_trip::<Message>("Message", payload, limit_bytes)?;
    round_trip::<ClientRequest>("ClientRequest", payload, limit_bytes)?;
    round_trip::<ClientResponse>("ClientResponse", payload, limit_bytes)?;
    round_trip::<NodeStatus>("NodeStatus", payload, limit_bytes)?;
    round_trip::<WalRecord>("WalRecord", payload, limit_bytes)?;
    round_trip::<HardState>("HardState", payload, 1024)?;
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
