//! Writes a seeded history of mixed operations on one hot key (puts,
//! appends, compare-and-sets), as JSON lines for `concord-sim check`:
//!
//! ```text
//! cargo run --release -p concord-check --example hot_key_history -- \
//!     --ops 5000 --clients 64 --seed 1 --out h.jsonl [--stale]
//! /usr/bin/time -v target/release/concord-sim check h.jsonl
//! ```
//!
//! `clients` clients run against one atomic register holding a string.
//! Each has one operation in flight: it thinks for an exponentially
//! distributed time, calls a get, put, append or compare-and-set on key
//! `k`, and returns after an exponentially distributed latency; the
//! operation takes effect at an instant drawn uniformly inside its
//! interval, so the history is linearizable (the order of those instants
//! is a witness). Puts and successful compare-and-sets write unique
//! values (`p17`, `c18`), but appends draw their suffix from three
//! letters, so a read of `p17xyx` does not name the one append that made
//! it: this is what sends the key to the search. A value longer than
//! `MAX_VALUE_LEN` gets a put instead of an append, so states stay short.
//! About 1% of the operations end with an unknown outcome (no return;
//! applied at a random instant up to twice their latency after the call,
//! or never) and 1% fail (never applied).
//!
//! `--stale` makes one late completed get read the value of a put that a
//! later put overwrote before the get was called: puts write values no
//! other write produces, so the result is not linearizable.

use concord_check::history::to_jsonl;

#[path = "../tests/hot_key_gen/mod.rs"]
mod hot_key_gen;

use hot_key_gen::{generate, make_stale};

/// Most operations a history may have (the checker's inputs stay sane).
const OPS_MAX: usize = 10_000_000;
/// Most clients.
const CLIENTS_MAX: usize = 100_000;

struct Args {
    ops: usize,
    clients: usize,
    seed: u64,
    stale: bool,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ops: 5_000,
        clients: 32,
        seed: 1,
        stale: false,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stale" {
            args.stale = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--ops" => args.ops = number()? as usize,
            "--clients" => args.clients = number()? as usize,
            "--seed" => args.seed = number()?,
            "--out" => args.out = Some(value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.ops == 0 || args.ops > OPS_MAX || args.clients == 0 || args.clients > CLIENTS_MAX {
        return Err(format!(
            "--ops in 1..={OPS_MAX} and --clients in 1..={CLIENTS_MAX}"
        ));
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hot_key_history: {e}");
            std::process::exit(3);
        }
    };
    let mut ops = generate(args.ops, args.clients, args.seed);
    if args.stale {
        let g = make_stale(&mut ops).expect("a history of puts and gets has a stale read");
        eprintln!("stale read: operation {g} (line {})", g + 1);
    }
    let text = to_jsonl(&ops);
    match &args.out {
        Some(path) => std::fs::write(path, text).expect("write the history"),
        None => print!("{text}"),
    }
}
