//! The `session` target: the decoders of `concord::session` (client
//! requests, session responses, the session table's snapshot) and the
//! key-value store's commands, reads and snapshots
//! (`concord_services::kv`, behind the session layer as every server runs
//! it) on arbitrary bytes.
//!
//! Input layout: the whole input is decoded as a request, a response, a
//! read and a snapshot of the key-value state machine; then it is cut into
//! requests `[len: u8][len bytes]...` that are applied in order, at
//! indices 1, 2, ..., to a key-value state machine with a small session
//! table (so that eviction happens).
//!
//! Checked: no panic; whatever decodes encodes back to the same bytes
//! (requests and responses have one encoding each); every response the
//! state machine gives decodes; applying the same requests to a second
//! state machine gives the same responses (determinism); a snapshot
//! restores to a state whose snapshot is the same bytes and which answers
//! the next request as the original does; no decoder, restore or command
//! asks for more memory at once than
//! [`allocation_bound_bytes`](super::alloc::allocation_bound_bytes) of its
//! input (when [`LargestAllocation`](super::alloc::LargestAllocation) is
//! installed).

use bytes::Bytes;
use concord::session::{
    encode_command, encode_register, ClientRequest, SessionResponse, WithSessions,
};
use concord::state_machine::StateMachine;
use concord_services::kv::Kv;
use concord_services::ServiceMachine;

use super::{alloc, Violation};

const TARGET: &str = "session";

/// Sessions the applying state machine keeps: small, so that a short input
/// fills the table and evicts.
pub const SESSIONS_MAX: usize = 4;

/// Most requests applied per input.
const REQUESTS_MAX: usize = 256;

/// The state machine under test: the key-value store behind sessions.
type Machine = WithSessions<ServiceMachine<Kv>>;

fn machine() -> Machine {
    WithSessions::new(ServiceMachine::new(), SESSIONS_MAX)
}

fn check_decoders(bytes: &[u8]) -> Result<(), Violation> {
    match ClientRequest::decode(bytes) {
        Ok(ClientRequest::Register) => {
            if encode_register() != bytes {
                return Err(Violation::new(
                    TARGET,
                    format!("{bytes:?} decodes as a registration but is not its encoding"),
                ));
            }
        }
        Ok(ClientRequest::Command {
            client,
            seq,
            command,
        }) => {
            if encode_command(client, seq, command) != bytes {
                return Err(Violation::new(
                    TARGET,
                    format!("{bytes:?} decodes as a command of client {client} seq {seq} but is not its encoding"),
                ));
            }
        }
        Err(_) => {}
    }
    if let Ok(response) = SessionResponse::decode(bytes) {
        if response.encode() != bytes {
            return Err(Violation::new(
                TARGET,
                format!("{bytes:?} decodes as {response:?}, which encodes differently"),
            ));
        }
    }
    let mut state = machine();
    alloc::checked(TARGET, "a key-value read", bytes.len(), || {
        state.query(bytes)
    })?;
    let restored = alloc::checked(TARGET, "a session table restore", bytes.len(), || {
        state.restore(bytes)
    })?;
    if restored.is_ok() {
        let snapshot = state.snapshot();
        let mut again = machine();
        again.restore(&snapshot).map_err(|error| {
            Violation::new(
                TARGET,
                format!("the snapshot of a restored state does not restore: {error}"),
            )
        })?;
        if again.snapshot() != snapshot {
            return Err(Violation::new(
                TARGET,
                "a restored snapshot's state snapshots to different bytes",
            ));
        }
        let _ = state.query(bytes);
    }
    Ok(())
}

fn requests(data: &[u8]) -> Vec<&[u8]> {
    let mut requests = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        if requests.len() == REQUESTS_MAX {
            break;
        }
        let len = usize::from(len).min(tail.len());
        let (request, tail) = tail.split_at(len);
        requests.push(request);
        rest = tail;
    }
    requests
}

fn apply_checked(machine: &mut Machine, index: u64, request: &[u8]) -> Result<Bytes, Violation> {
    let response = alloc::checked(TARGET, "a command", request.len(), || {
        machine.apply(index, request)
    })?;
    if let Err(error) = SessionResponse::decode(&response) {
        return Err(Violation::new(
            TARGET,
            format!("the response to request {index} does not decode: {error}"),
        ));
    }
    Ok(response)
}

/// Runs the target on one input (see the [module documentation](self)).
pub fn run(data: &[u8]) -> Result<(), Violation> {
    check_decoders(data)?;
    let requests = requests(data);
    let mut first = machine();
    let mut second = machine();
    let halfway = requests.len() / 2;
    let mut snapshot_halfway = None;
    for (i, request) in requests.iter().enumerate() {
        check_decoders(request)?;
        let index = i as u64 + 1;
        let a = apply_checked(&mut first, index, request)?;
        let b = apply_checked(&mut second, index, request)?;
        if a != b {
            return Err(Violation::new(
                TARGET,
                format!("request {index} got two different responses from two replicas"),
            ));
        }
        if i + 1 == halfway {
            snapshot_halfway = Some((index, first.snapshot()));
        }
    }
    // A replica restored from the snapshot taken halfway catches up by
    // applying the rest and must end in the same state.
    if let Some((at, snapshot)) = snapshot_halfway {
        let mut restored = machine();
        restored.restore(&snapshot).map_err(|error| {
            Violation::new(
                TARGET,
                format!("a snapshot taken after request {at} does not restore: {error}"),
            )
        })?;
        for (i, request) in requests.iter().enumerate().skip(at as usize) {
            let index = i as u64 + 1;
            apply_checked(&mut restored, index, request)?;
        }
        if restored.snapshot() != first.snapshot() {
            return Err(Violation::new(
                TARGET,
                format!(
                    "a replica restored from the snapshot after request {at} ends in a \
                     different state than the one that applied every request"
                ),
            ));
        }
    }
    Ok(())
}
