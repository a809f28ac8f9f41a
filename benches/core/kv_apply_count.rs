//! The key-value store's apply of 10,000 puts over 100,000 present keys,
//! as `kv_apply`'s `service_put`, once, for counting instructions where
//! times are too noisy to compare two builds (a shared machine):
//!
//! ```sh
//! cargo build --profile bench -p concord-bench --example kv_apply_count
//! valgrind --tool=callgrind --toggle-collect='*apply_puts*' \
//!   target/release/examples/kv_apply_count
//! valgrind --tool=callgrind --toggle-collect='*apply_session_puts*' \
//!   target/release/examples/kv_apply_count sessions
//! ```
//!
//! "Collected" is the instructions of the 10,000 applies alone, not the
//! setup's. Without an argument: the store's apply (decode, apply,
//! encoded answer), no sessions. With `sessions`: what a server applies,
//! the store behind the exactly-once session layer
//! (`service_state_machine`), the puts spread round robin over 64
//! registered clients, one command number after another for each.

use bytes::Bytes;
use concord::session::{encode_command, encode_register};
use concord::state_machine::StateMachine;
use concord_services::codec::encode_request;
use concord_services::kv::{Kv, KvRequest};
use concord_services::{service_state_machine, ServiceMachine};

const KEYS: u64 = 100_000;
const PUTS: u64 = 10_000;
const VALUE_BYTES: usize = 128;
const CLIENTS: u64 = 64;

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

/// What callgrind counts with `sessions` (`--toggle-collect`).
#[inline(never)]
fn apply_session_puts(machine: &mut impl StateMachine, first_index: u64, commands: &[Bytes]) {
    for (i, command) in commands.iter().enumerate() {
        std::hint::black_box(machine.apply(first_index + i as u64, command));
    }
}

fn main() {
    let sessions = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("sessions") => true,
        Some(other) => {
            eprintln!("kv_apply_count: unknown argument {other:?} (none, or `sessions`)");
            std::process::exit(2);
        }
    };
    if !sessions {
        let mut kv = ServiceMachine::<Kv>::new();
        for i in 0..KEYS {
            kv.apply(i + 1, &encode_request::<Kv>(i + 1, &put(i)));
        }
        let commands: Vec<Bytes> = (0..PUTS)
            .map(|i| encode_request::<Kv>(i + 1, &put(i)))
            .collect();
        apply_puts(&mut kv, &commands);
        println!("applied {PUTS} puts over {KEYS} keys");
        return;
    }
    let mut machine = service_state_machine::<Kv>();
    // The clients register at indexes 1..=64: their ids are those indexes.
    for index in 1..=CLIENTS {
        machine.apply(index, &encode_register());
    }
    let mut index = CLIENTS;
    let mut seqs = [0u64; CLIENTS as usize];
    let mut command_of = |i: u64| {
        let client = i % CLIENTS;
        seqs[client as usize] += 1;
        let request = encode_request::<Kv>(i + 1, &put(i));
        encode_command(client + 1, seqs[client as usize], &request)
    };
    let preload: Vec<Bytes> = (0..KEYS).map(&mut command_of).collect();
    for command in &preload {
        index += 1;
        machine.apply(index, command);
    }
    let commands: Vec<Bytes> = (0..PUTS).map(&mut command_of).collect();
    apply_session_puts(&mut machine, index + 1, &commands);
    // Every put was executed, none refused as an expired session.
    for (client, &seq) in seqs.iter().enumerate() {
        let session = machine.sessions().session(client as u64 + 1);
        assert_eq!(
            session.map(|s| s.last_seq),
            Some(seq),
            "client {client} executed every command"
        );
    }
    println!("applied {PUTS} puts over {KEYS} keys through {CLIENTS} sessions");
}
