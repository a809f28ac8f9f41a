//! Following one client request through the logs of every node.
//!
//! A write is named by its session's `(client, seq)` (see
//! [`concord::session`]), which travels inside the entry, and by its log
//! index once the leader accepted it; both are fields of the server's
//! events at `debug` level:
//!
//! | event | where | fields |
//! | --- | --- | --- |
//! | `proposed`, in span `propose` | leader | `index`, `term`, `client`, `seq` |
//! | `committed`, in span `commit` | every node | `first`, `last` (an index range) |
//! | `applied`, in span `apply` | every node | span: `index`, `term`, `client`, `seq` |
//! | `answered`, in span `apply` | leader | `outcome` |
//! | `read started` / `read refused` | the node serving it | `read`, `path` |
//! | `read served`, in span `read` | the node serving it | `read`, `path` |
//!
//! The spans `propose`, `commit`, `apply` and `read` (target
//! `concord_tokio::server`, level `debug`) are short: each ends with the
//! step it names, so a tracing layer that exports spans (`concord-node
//! --otlp-endpoint`, feature `otel`) sends them as they happen; the
//! long-lived `node` span around them is not exported.
//!
//! So `RUST_LOG=concord_tokio::server=debug concord-node --log-format
//! json ...` on every node, then a filter on `client` and `seq` (or on
//! `index`), shows the request's way from proposal to every replica's
//! apply. Registrations show `register = true` instead of a `seq`.
//!
//! The entry's bytes are decoded only when the event is enabled, so at the
//! default `info` level this costs one check per entry.

use concord::session::{ClientId, ClientRequest, SequenceNumber};

/// The session fields of a command: `(client, seq)`, `None` for a
/// registration or a command outside the session layer.
pub fn session_of(command: &[u8]) -> Option<(ClientId, SequenceNumber)> {
    match ClientRequest::decode(command) {
        Ok(ClientRequest::Command { client, seq, .. }) => Some((client, seq)),
        _ => None,
    }
}

/// Whether a command is a session registration.
pub fn is_registration(command: &[u8]) -> bool {
    matches!(ClientRequest::decode(command), Ok(ClientRequest::Register))
}

/// [`session_of`] for a command of a group of the one runtime, which
/// carries the session layer's request behind
/// [`SESSION_TAG`](concord::multi::sessions::SESSION_TAG).
pub fn session_of_tagged(command: &[u8]) -> Option<(ClientId, SequenceNumber)> {
    match command.split_first() {
        Some((&concord::multi::sessions::SESSION_TAG, request)) => session_of(request),
        _ => None,
    }
}

/// [`is_registration`] for a command of a group of the one runtime.
pub fn is_registration_tagged(command: &[u8]) -> bool {
    match command.split_first() {
        Some((&concord::multi::sessions::SESSION_TAG, request)) => is_registration(request),
        _ => false,
    }
}

/// Whether the server's request events are enabled (decoding entries is
/// skipped otherwise).
pub fn enabled() -> bool {
    tracing::enabled!(target: "concord_tokio::server", tracing::Level::DEBUG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::session::{encode_command, encode_register};

    #[test]
    fn session_fields_come_from_the_command() {
        assert_eq!(session_of(&encode_command(7, 3, b"put")), Some((7, 3)));
        assert_eq!(session_of(&encode_register()), None);
        assert!(is_registration(&encode_register()));
        assert!(!is_registration(&encode_command(7, 3, b"put")));
        assert_eq!(session_of(b""), None);
        assert_eq!(session_of(b"\xffjunk"), None);
    }
}
