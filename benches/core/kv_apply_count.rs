//! The key-value store's apply of 10,000 puts over 100,000 present keys,
//! as `kv_apply`'s `service_put`, once, for counting instructions where
//! times are too noisy to compare two builds (a shared machine):
//!
//! ```sh
//! cargo build --profile bench -p concord-bench --example kv_apply_count
//! valgrind --tool=callgrind --toggle-collect='*apply_puts*' \
//!   target/release/examples/kv_apply_count
//! ```
//!
//! "Collected" is the instructions of the 10,000 applies alone (decode,
//! session-less apply, encoded answer), not the setup's.

use bytes::Bytes;
use concord::state_machine::StateMachine;
use concord_services::codec::encode_request;
use concord_services::kv::{Kv, KvRequest};
use concord_services::ServiceMachine;

const KEYS: u64 = 100_000;
const PUTS: u64 = 10_000;
const VALUE_BYTES: usize = 128;

fn put(i: u64) -> KvRequest {
    // Spread over the key space, as independent clients' keys are.
    KvRequest::Put {
        key: Bytes::from(format!("key-{:08}", (i * 7_919) % KEYS)),
        value: Bytes::from(vec![b'v'; VALUE_BYTES]),
    }
}

/// What callgrind counts (`--toggle-collect`).
#[inline(never)]
fn apply_puts(kv: &mut ServiceMachine<Kv>, commands: &[Bytes]) {
    for (i, command) in commands.iter().enumerate() {
        std::hint::black_box(kv.apply(KEYS + 1 + i as u64, command));
    }
}

fn main() {
    let mut kv = ServiceMachine::<Kv>::new();
    for i in 0..KEYS {
        kv.apply(i + 1, &encode_request::<Kv>(i + 1, &put(i)));
    }
    let commands: Vec<Bytes> = (0..PUTS)
        .map(|i| encode_request::<Kv>(i + 1, &put(i)))
        .collect();
    apply_puts(&mut kv, &commands);
    println!("applied {PUTS} puts over {KEYS} keys");
}
