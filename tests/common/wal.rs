//! Writes for the shared write-ahead log
//! ([`SharedLog`](concord_tokio::multi::shared_log::SharedLog)) from a
//! test.

use bytes::Bytes;
use concord::{Entry, EntryPayload, HardState};
use concord_tokio::multi::shared_log::WalWrite;

/// A shared-log write of one entry of `group` at `index` (term 1) whose
/// command is `payload_bytes` bytes of `byte`; the group's first entry
/// also sets its term.
pub fn group_entry_write(group: u64, index: u64, byte: u8, payload_bytes: usize) -> WalWrite {
    WalWrite::Log {
        group,
        hard_state: (index == 1).then_some(HardState {
            term: 1,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: None,
        entries: vec![Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(Bytes::from(vec![byte; payload_bytes])),
        }]
        .into(),
    }
}
