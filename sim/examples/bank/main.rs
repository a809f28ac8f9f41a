//! A bank on concord, tested under the simulator with a model instead of
//! a hand-written judge (see `service.rs`).
//!
//! ```text
//! cargo run --release -p concord-sim --example bank                       # correct bank: every seed passes
//! cargo run --release -p concord-sim --example bank -- --planted-stale-read
//! cargo run --release -p concord-sim --example bank -- --planted-stale-read --invariants-only
//! cargo run --release -p concord-sim --example bank -- --seeds 0..500
//! ```
//!
//! `--planted-stale-read` makes the leader answer reads (balances and
//! totals) from its local state without the ReadIndex heartbeat round, so
//! a leader deposed without knowing it answers stale balances. The model
//! catches it; `--invariants-only` judges the same runs by "the total is
//! constant, no balance is negative", which a stale read never breaks.

// The bug planted for sim/tests/bank.rs's proptest is not run here.
#[allow(dead_code)]
mod service;

use concord_sim::check::workload::Checked;
use concord_sim::harness::Harness;
use service::config;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let planted = args.iter().any(|a| a == "--planted-stale-read");
    let invariants = args.iter().any(|a| a == "--invariants-only");
    let seeds = match args.iter().position(|a| a == "--seeds") {
        Some(i) => {
            let text = args.get(i + 1).map(String::as_str).unwrap_or("");
            let parsed = text
                .split_once("..")
                .and_then(|(a, b)| Some(a.parse::<u64>().ok()?..b.parse::<u64>().ok()?));
            match parsed {
                Some(range) if !range.is_empty() => range,
                _ => {
                    eprintln!("--seeds START..END, e.g. 0..100");
                    std::process::exit(2);
                }
            }
        }
        None => 0..100,
    };
    let harness = Harness::new(config(planted)).seeds(seeds.clone());
    let judge = if invariants {
        "invariants only"
    } else {
        "the bank model"
    };
    println!(
        "bank, {} seeds {}..{}, judged by {judge}",
        if planted {
            "with the planted stale read,"
        } else {
            "correct,"
        },
        seeds.start,
        seeds.end
    );
    let failure = if invariants {
        harness.first_failure(
            |_| service::BankSm::default(),
            |_| service::InvariantJudged::default(),
        )
    } else {
        harness.first_failure(
            |_| service::BankSm::default(),
            |config| Checked::new(service::ModelJudged::default(), config.clients),
        )
    };
    match failure {
        Ok(None) => println!("every seed passed"),
        Ok(Some(failure)) => {
            println!("{failure}");
            std::process::exit(1);
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    }
}
