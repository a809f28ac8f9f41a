//! The `codec` target: arbitrary bytes through every decoder behind
//! `concord::tokio::codec`: the handshake ([`Hello`], [`Welcome`]), peer
//! traffic ([`PeerFrame`], [`PeerReply`], [`Message`]), client traffic
//! ([`ClientRequest`], [`ClientResponse`], [`NodeStatus`]), the key-value
//! commands ([`KvOp`], [`KvResult`]) and the disk records ([`WalRecord`],
//! [`HardState`]).
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

use concord::tokio::codec;
use concord::tokio::kv::{KvOp, KvResult, KvStore, COMMAND_BYTES_MAX};
use concord::tokio::status::NodeStatus;
use concord::tokio::wal::WalRecord;
use concord::tokio::wire::{ClientRequest, ClientResponse, Hello, PeerFrame, PeerReply, Welcome};
use concord::{HardState, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{alloc, Violation};

const TARGET: &str = "codec";

/// The limit decodes run with: the runtime's default frame limit.
pub const DECODE_BYTES_MAX: usize = concord::tokio::frame::DEFAULT_MAX_FRAME_BYTES;

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
    round_trip::<KvOp>("KvOp", payload, COMMAND_BYTES_MAX.min(limit_bytes))?;
    round_trip::<KvResult>("KvResult", payload, limit_bytes)?;
    round_trip::<WalRecord>("WalRecord", payload, limit_bytes)?;
    round_trip::<HardState>("HardState", payload, 1024)?;
    // The key-value store's snapshot decoder (its own, larger limit).
    let decoded = alloc::checked(TARGET, "a KvStore snapshot", payload.len(), || {
        codec::decode_snapshot::<KvStore>(payload)
    })?;
    if let Ok(store) = decoded {
        let encoded = codec::encode(&store).map_err(|error| {
            Violation::new(
                TARGET,
                format!("a decoded KvStore does not encode again: {error}"),
            )
        })?;
        let again = codec::decode_snapshot::<KvStore>(&encoded).map_err(|error| {
            Violation::new(
                TARGET,
                format!("the re-encoding of a decoded KvStore does not decode: {error}"),
            )
        })?;
        if codec::encode(&again).ok() != Some(encoded) {
            return Err(Violation::new(TARGET, "a KvStore changed in a round trip"));
        }
    }
    Ok(())
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    run_payload(data, DECODE_BYTES_MAX)
}
