//! The services under the simulator (`run --service ...`): each passes
//! its own invariants over a range of seeds, and each service's planted
//! bug is caught by its invariant within a stated number of seeds.

use concord_sim::history::Operation;
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

/// Seeds the orders service's planted bug (an order numbered with its log
/// index) must be caught within. Measured: every one of seeds 0..20
/// catches it, on 3 and on 5 nodes.
const ORDERS_BUG_SEEDS: u64 = 3;

/// Seeds the chat service's planted bug (`fetch` served as a read from
/// the answering replica's state, marking nothing delivered) must be
/// caught within. Measured with `run --service chat --seeds 0..20
/// --bug service-bug` on 3 and on 5 nodes: seeds 1, 6, 7, 8, 10, 12, 14 and
/// 16..20 catch it (11 of 20, first at seed 1), by the delivered-once
/// check; in the others every read goes through the log, where fetch is
/// applied (and marks) properly.
const CHAT_BUG_SEEDS: u64 = 10;

fn config(service: Service, seed: u64, nodes: usize, bug: bool) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        service,
        service_bug: bug,
        ..SimConfig::default()
    }
}

/// What one service's planted-bug test expects.
struct PlantedBug {
    service: Service,
    /// The bug, as the panic message names it when no seed catches it.
    what: &'static str,
    /// The seeds (from 0) within which the bug must be caught.
    bug_seeds: u64,
    /// The seeds (from 0) that must pass without the bug.
    clean_seeds: u64,
    /// The check that must catch it; the failure text must contain one of
    /// `signs`.
    check: &'static str,
    signs: &'static [&'static str],
    /// The operations the clean seeds must do at least, on each cluster
    /// size: proof that the workload ran.
    min_operations: u64,
}

impl PlantedBug {
    /// On 3 and on 5 nodes: the bug is caught within `bug_seeds` seeds by
    /// a service-invariant failure that names the service and the check,
    /// and the first `clean_seeds` seeds pass without the bug, doing more
    /// than `min_operations` operations between them.
    fn assert_caught(&self) {
        let name = self.service.name();
        for nodes in [3, 5] {
            let caught = (0..self.bug_seeds).find_map(|seed| {
                let report = run_kv(&config(self.service, seed, nodes, true), None).unwrap();
                report.failure.map(|failure| (seed, failure))
            });
            let (seed, failure) = caught.unwrap_or_else(|| {
                panic!(
                    "{} was not caught within {} seeds on {nodes} nodes",
                    self.what, self.bug_seeds
                )
            });
            assert_eq!(
                failure.kind,
                FailureKind::ServiceInvariant,
                "seed {seed}: {failure}"
            );
            let text = failure.to_string();
            assert!(
                text.contains(&format!("service {name}")),
                "seed {seed}: the failure does not name its service: {text}"
            );
            assert!(
                self.signs.iter().any(|sign| text.contains(sign)),
                "seed {seed} failed, but not by the {} check: {text}",
                self.check
            );
            let mut operations = 0;
            for seed in 0..self.clean_seeds {
                let report = run_kv(&config(self.service, seed, nodes, false), None).unwrap();
                assert!(
                    report.passed(),
                    "{name}: seed {seed} on {nodes} nodes fails without the bug: {:?}",
                    report.failure
                );
                operations += report.operations;
            }
            assert!(
                operations > self.min_operations,
                "{name}: only {operations} operations in {} seeds on {nodes} nodes",
                self.clean_seeds
            );
        }
    }
}

/// `service` at `seed` on five nodes passes, a second run has the same
/// trace hash and the replay command names the service; the history of
/// the first run.
fn passes_and_replays(service: Service, seed: u64) -> Vec<Operation> {
    let (first, history) = run_kv_with_history(&config(service, seed, 5, false), None).unwrap();
    assert!(first.passed(), "{:?}", first.failure);
    let again = run_kv(&config(service, seed, 5, false), None).unwrap();
    assert_eq!(first.trace_hash, again.trace_hash);
    let replay = first.config.replay_command();
    assert!(
        replay.contains(&format!("--service {}", service.name())),
        "{replay}"
    );
    history
}

#[test]
fn strict_kv_planted_split_put_many_is_caught_by_the_atomicity_check() {
    PlantedBug {
        service: Service::Kv,
        what: "the split put_many",
        bug_seeds: KV_BUG_SEEDS,
        clean_seeds: KV_BUG_SEEDS,
        check: "atomicity",
        signs: &["put_many atomicity"],
        min_operations: 0,
    }
    .assert_caught();
}

#[test]
fn strict_kv_records_multi_key_operations_and_replays_identically() {
    let history = passes_and_replays(Service::Kv, 3);
    // Group keys are in the key-level history: put_many and get_many ran.
    let group_ops = history.iter().filter(|op| op.key.starts_with('g')).count();
    assert!(group_ops > 50, "only {group_ops} group-key operations");
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

#[test]
fn directory_planted_sequence_from_a_local_counter_is_caught_by_the_sequence_check() {
    PlantedBug {
        service: Service::Directory,
        what: "the local sequence counter",
        bug_seeds: DIRECTORY_BUG_SEEDS,
        clean_seeds: DIRECTORY_BUG_SEEDS,
        check: "sequence",
        signs: &["handed out twice", "sequence went back"],
        min_operations: 0,
    }
    .assert_caught();
}

#[test]
fn directory_records_per_user_history_and_replays_identically() {
    let history = passes_and_replays(Service::Directory, 4);
    let users: std::collections::BTreeSet<&str> =
        history.iter().map(|op| op.key.as_str()).collect();
    assert!(users.len() >= 4, "only users {users:?} in the history");
}

#[test]
fn orders_planted_log_index_numbers_are_caught_by_the_gap_free_check() {
    PlantedBug {
        service: Service::Orders,
        what: "log-index order numbers",
        bug_seeds: ORDERS_BUG_SEEDS,
        clean_seeds: ORDERS_BUG_SEEDS * 3,
        check: "gap-free",
        signs: &["gap"],
        min_operations: 500,
    }
    .assert_caught();
}

#[test]
fn chat_planted_fetch_as_read_is_caught_by_the_delivered_once_check() {
    PlantedBug {
        service: Service::Chat,
        what: "fetch served as a read",
        bug_seeds: CHAT_BUG_SEEDS,
        clean_seeds: CHAT_BUG_SEEDS,
        check: "delivered-once",
        signs: &["delivered twice"],
        min_operations: 500,
    }
    .assert_caught();
}

#[test]
fn chat_replays_identically_and_names_its_service() {
    passes_and_replays(Service::Chat, 2);
}
