//! The services under the simulator (`run --service ...`): each passes
//! its own invariants over a range of seeds, and each service's planted
//! bug is caught by its invariant within a stated number of seeds.

use concord_sim::services::Service;
use concord_sim::{run_kv, run_kv_with_history, FailureKind, SimConfig};

/// Seeds the strict key-value store's planted bug (a `put_many` applied as
/// two entries) must be caught within. Measured on 3 and 5 nodes: seeds 1,
/// 6, 7, 8, 10, 12 and 14..20 of 0..20 catch it; the others draw a read mix
/// that sends every read through the log (e.g. seed 0: `reads log:1`),
/// where the deferred half is applied before the read, so nothing can see
/// the split.
const KV_BUG_SEEDS: u64 = 10;

/// Seeds the directory's planted bug (`next_sequence` served as a read
/// from a replica's own counter) must be caught within. Measured on 3 and
/// 5 nodes: the same 12 seeds of 0..20 as for kv catch it; in the others
/// every read goes through the log, which applies `next_sequence` properly.
const DIRECTORY_BUG_SEEDS: u64 = 10;

fn kv(seed: u64, nodes: usize, bug: bool) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        service: Service::Kv,
        service_bug: bug,
        ..SimConfig::default()
    }
}

#[test]
fn strict_kv_planted_split_put_many_is_caught_by_the_atomicity_check() {
    for nodes in [3, 5] {
        let caught = (0..KV_BUG_SEEDS).find_map(|seed| {
            let report = run_kv(&kv(seed, nodes, true), None).unwrap();
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) = caught.unwrap_or_else(|| {
            panic!("the split put_many was not caught within {KV_BUG_SEEDS} seeds on {nodes} nodes")
        });
        assert_eq!(
            failure.kind,
            FailureKind::ServiceInvariant,
            "seed {seed}: {failure}"
        );
        assert!(
            failure.to_string().contains("service kv"),
            "seed {seed}: the failure does not name its service: {failure}"
        );
        assert!(
            failure.to_string().contains("put_many atomicity"),
            "seed {seed} failed, but not by the atomicity check: {failure}"
        );
        // The same seeds pass without the bug.
        for seed in 0..KV_BUG_SEEDS {
            let report = run_kv(&kv(seed, nodes, false), None).unwrap();
            assert!(
                report.passed(),
                "seed {seed} on {nodes} nodes fails without the bug: {:?}",
                report.failure
            );
        }
    }
}

#[test]
fn strict_kv_records_multi_key_operations_and_replays_identically() {
    let (first, history) = run_kv_with_history(&kv(3, 5, false), None).unwrap();
    assert!(first.passed(), "{:?}", first.failure);
    // Group keys are in the key-level history: put_many and get_many ran.
    let group_ops = history.iter().filter(|op| op.key.starts_with('g')).count();
    assert!(group_ops > 50, "only {group_ops} group-key operations");
    let again = run_kv(&kv(3, 5, false), None).unwrap();
    assert_eq!(first.trace_hash, again.trace_hash);
    assert!(first.config.replay_command().contains("--service kv"));
}

#[test]
fn a_service_bug_without_a_service_is_refused() {
    let config = SimConfig {
        service_bug: true,
        ..SimConfig::default()
    };
    let error = run_kv(&config, None).unwrap_err();
    assert!(error.contains("--service"), "{error}");
}

fn directory(seed: u64, nodes: usize, bug: bool) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        service: Service::Directory,
        service_bug: bug,
        ..SimConfig::default()
    }
}

#[test]
fn directory_planted_sequence_from_a_local_counter_is_caught_by_the_sequence_check() {
    for nodes in [3, 5] {
        let caught = (0..DIRECTORY_BUG_SEEDS).find_map(|seed| {
            let report = run_kv(&directory(seed, nodes, true), None).unwrap();
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) = caught.unwrap_or_else(|| {
            panic!(
                "the local sequence counter was not caught within {DIRECTORY_BUG_SEEDS} seeds on {nodes} nodes"
            )
        });
        assert_eq!(failure.kind, FailureKind::ServiceInvariant);
        let text = failure.to_string();
        assert!(text.contains("service directory"), "{text}");
        assert!(
            text.contains("handed out twice") || text.contains("sequence went back"),
            "seed {seed} failed, but not by the sequence check: {text}"
        );
        for seed in 0..DIRECTORY_BUG_SEEDS {
            let report = run_kv(&directory(seed, nodes, false), None).unwrap();
            assert!(
                report.passed(),
                "seed {seed} on {nodes} nodes fails without the bug: {:?}",
                report.failure
            );
        }
    }
}

#[test]
fn directory_records_per_user_history_and_replays_identically() {
    let (first, history) = run_kv_with_history(&directory(4, 5, false), None).unwrap();
    assert!(first.passed(), "{:?}", first.failure);
    let users: std::collections::BTreeSet<&str> =
        history.iter().map(|op| op.key.as_str()).collect();
    assert!(users.len() >= 4, "only users {users:?} in the history");
    let again = run_kv(&directory(4, 5, false), None).unwrap();
    assert_eq!(first.trace_hash, again.trace_hash);
    assert!(first
        .config
        .replay_command()
        .contains("--service directory"));
}

/// Seeds the orders service's planted bug (an order numbered with its log
/// index) must be caught within. Measured: every one of seeds 0..20
/// catches it, on 3 and on 5 nodes.
const ORDERS_BUG_SEEDS: u64 = 3;

fn orders(seed: u64, nodes: usize, bug: bool) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        service: Service::Orders,
        service_bug: bug,
        ..SimConfig::default()
    }
}

#[test]
fn orders_planted_log_index_numbers_are_caught_by_the_gap_free_check() {
    for nodes in [3, 5] {
        let caught = (0..ORDERS_BUG_SEEDS).find_map(|seed| {
            let report = run_kv(&orders(seed, nodes, true), None).unwrap();
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) = caught.unwrap_or_else(|| {
            panic!("log-index order numbers were not caught within {ORDERS_BUG_SEEDS} seeds on {nodes} nodes")
        });
        assert_eq!(failure.kind, FailureKind::ServiceInvariant);
        let text = failure.to_string();
        assert!(text.contains("service orders"), "{text}");
        assert!(
            text.contains("gap"),
            "seed {seed} failed, but not by the gap-free check: {text}"
        );
        let mut operations = 0;
        for seed in 0..ORDERS_BUG_SEEDS * 3 {
            let report = run_kv(&orders(seed, nodes, false), None).unwrap();
            assert!(
                report.passed(),
                "seed {seed} on {nodes} nodes fails without the bug: {:?}",
                report.failure
            );
            operations += report.operations;
        }
        assert!(
            operations > 500,
            "only {operations} operations in {} seeds",
            ORDERS_BUG_SEEDS * 3
        );
    }
}

/// Seeds the chat service's planted bug (`fetch` served as a read from
/// the answering replica's state, marking nothing delivered) must be
/// caught within. Measured with `run --service chat --seeds 0..20
/// --bug-service` on 3 and on 5 nodes: seeds 1, 6, 7, 8, 10, 12, 14 and
/// 16..20 catch it (11 of 20, first at seed 1), by the delivered-once
/// check; in the others every read goes through the log, where fetch is
/// applied (and marks) properly.
const CHAT_BUG_SEEDS: u64 = 10;

fn chat(seed: u64, nodes: usize, bug: bool) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        service: Service::Chat,
        service_bug: bug,
        ..SimConfig::default()
    }
}

#[test]
fn chat_planted_fetch_as_read_is_caught_by_the_delivered_once_check() {
    for nodes in [3, 5] {
        let caught = (0..CHAT_BUG_SEEDS).find_map(|seed| {
            let report = run_kv(&chat(seed, nodes, true), None).unwrap();
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) = caught.unwrap_or_else(|| {
            panic!(
                "fetch served as a read was not caught within {CHAT_BUG_SEEDS} seeds on {nodes} nodes"
            )
        });
        assert_eq!(failure.kind, FailureKind::ServiceInvariant, "{failure}");
        let text = failure.to_string();
        assert!(text.contains("service chat"), "{text}");
        assert!(
            text.contains("delivered twice"),
            "seed {seed} failed, but not by the delivered-once check: {text}"
        );
        let mut operations = 0;
        for seed in 0..CHAT_BUG_SEEDS {
            let report = run_kv(&chat(seed, nodes, false), None).unwrap();
            assert!(
                report.passed(),
                "seed {seed} on {nodes} nodes fails without the bug: {:?}",
                report.failure
            );
            operations += report.operations;
        }
        assert!(
            operations > 500,
            "only {operations} operations in {CHAT_BUG_SEEDS} seeds"
        );
    }
}

#[test]
fn chat_replays_identically_and_names_its_service() {
    let first = run_kv(&chat(2, 5, false), None).unwrap();
    assert!(first.passed(), "{:?}", first.failure);
    let again = run_kv(&chat(2, 5, false), None).unwrap();
    assert_eq!(first.trace_hash, again.trace_hash);
    assert!(first.config.replay_command().contains("--service chat"));
}
