//! The figure of docs/sharded-store.md, "What a session table costs": the
//! bytes of one group's session table of the sharded key-value store as
//! a server runs it (`GroupSessions<ShardMachine>`), with each session
//! having written once (its cached answer is the store's "written").
//!
//! ```text
//! cargo test -p concord-services --test session_table_bytes -- --nocapture
//! ```

use bytes::Bytes;
use concord::multi::sessions::{self, GroupSessions, GROUP_SESSIONS_MAX, GROUP_SESSION_BYTES_MAX};
use concord::session::SessionResponse;
use concord::state_machine::StateMachine;
use concord_services::codec;
use concord_services::kv::{Kv, KvRequest};
use concord_services::sharded_kv::{ShardMachine, ShardMap};

#[test]
fn session_table_bytes_per_group() {
    let map = ShardMap::new(1).unwrap();
    let put = codec::encode_request::<Kv>(
        1,
        &KvRequest::Put {
            key: Bytes::from_static(b"key"),
            value: Bytes::from_static(b"value"),
        },
    );
    println!("| sessions | bytes counted | bytes in the snapshot (table only) |");
    for sessions in [
        0u64,
        1,
        16,
        256,
        GROUP_SESSIONS_MAX as u64,
        4 * GROUP_SESSIONS_MAX as u64,
    ] {
        let mut group = GroupSessions::new(ShardMachine::new(map, 1));
        let empty_store = group.inner().snapshot().len();
        for i in 0..sessions {
            let registered = group.apply(2 * i + 1, &sessions::encode_register());
            let Ok(SessionResponse::Registered { client }) = SessionResponse::decode(&registered)
            else {
                panic!("not registered");
            };
            let answer = group.apply(2 * i + 2, &sessions::encode_command(client, 1, &put));
            assert!(matches!(
                SessionResponse::decode(&answer),
                Ok(SessionResponse::Ok(_))
            ));
        }
        let table = group.table();
        let table_snapshot = group.snapshot().len() - group.inner().snapshot().len();
        println!(
            "| {:>5} | {:>7} | {:>7} |",
            sessions,
            table.bytes(),
            table_snapshot
        );
        assert_eq!(table.len() as u64, sessions.min(GROUP_SESSIONS_MAX as u64));
        assert!(table.bytes() <= GROUP_SESSION_BYTES_MAX);
        assert!(empty_store > 0);
    }
}
