//! Seeded random fault runs of the in-test cluster, checking Raft's safety
//! properties after every step. The full simulator lives in `concord-sim`;
//! this is the core's own smoke screen, small enough to run on every test.
mod common;

use std::collections::BTreeMap;

use common::Cluster;
use concord::{Index, Input, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs one seed; returns the number of commands committed.
fn run(seed: u64, voters: &[u64], steps: usize) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let configs = voters
        .iter()
        .map(|id| {
            let mut config = common::config(*id, voters);
            config.seed = seed * 100 + id;
            config.pre_vote = rng.gen_bool(0.7);
            config.check_quorum = rng.gen_bool(0.7);
            config.append_entries_max = rng.gen_range(1..8);
            config.inflight_messages_max = rng.gen_range(1..6);
            config
        })
        .collect();
    let mut c = Cluster::with_configs(configs);
    // Nodes sync by hand so crashes can lose unsynced writes.
    c.auto_sync.clear();
    let mut committed: BTreeMap<Index, bytes::Bytes> = BTreeMap::new();
    let mut next_command = 0u64;
    let mut crashed: Vec<u64> = Vec::new();
    for _ in 0..steps {
        let roll = rng.gen_range(0..100);
        let ids = c.ids();
        let id = ids[rng.gen_range(0..ids.len())];
        match roll {
            0..=29 => c.tick(id),
            30..=59 => {
                if !c.network.is_empty() {
                    // Reordering: deliver a random one of the first few.
                    let pick = rng.gen_range(0..c.network.len().min(4));
                    let message = c.network.remove(pick).expect("index in range");
                    if rng.gen_bool(0.05) {
                        // lost
                    } else {
                        if rng.gen_bool(0.03) {
                            c.network.push_back(message.clone()); // duplicated
                        }
                        if c.nodes.contains_key(&message.to) {
                            c.step(message.to, Input::Receive(message));
                        }
                    }
                }
            }
            60..=74 => c.sync(id),
            75..=84 => {
                if c.node(id).role() == Role::Leader {
                    next_command += 1;
                    c.propose(id, &format!("cmd{next_command}"));
                }
            }
            85..=87 => {
                if crashed.len() < voters.len() / 2 && voters.len() > 1 {
                    c.crash(id);
                    crashed.push(id);
                }
            }
            88..=91 => {
                if let Some(id) = crashed.pop() {
                    c.restart(id);
                }
            }
            92..=94 => {
                let a = voters[rng.gen_range(0..voters.len())];
                let b = voters[rng.gen_range(0..voters.len())];
                if a != b {
                    c.partition(&[a], &[b]);
                }
            }
            _ => c.heal(),
        }
        check_safety(&c, &mut committed);
    }
    // Heal everything and check liveness: a final command commits everywhere.
    for id in crashed.drain(..) {
        c.restart(id);
    }
    c.heal();
    c.auto_sync = c.ids().into_iter().collect();
    for id in c.ids() {
        c.sync(id);
    }
    for _ in 0..400 {
        c.tick_all(1);
        if let Some(leader) = c.leader() {
            if c.node(leader).commit_index() == c.node(leader).last_index()
                && c.node(leader).term_at(c.node(leader).commit_index())
                    == Some(c.node(leader).term())
            {
                break;
            }
        }
    }
    let leader = c
        .leader()
        .unwrap_or_else(|| panic!("seed {seed}: no leader after healing"));
    c.propose(leader, "final");
    c.tick_all(30);
    check_safety(&c, &mut committed);
    for id in c.ids() {
        let applied = c.applied_strings(id);
        assert_eq!(
            applied.last().map(String::as_str),
            Some("final"),
            "seed {seed}: node {id} did not apply the final command"
        );
    }
    committed.len()
}

fn check_safety(c: &Cluster, committed: &mut BTreeMap<Index, bytes::Bytes>) {
    c.assert_election_safety();
    // State machine safety: every node applied the same command at each index.
    for id in c.ids() {
        for (index, command) in &c.applied[&id] {
            let previous = committed.entry(*index).or_insert_with(|| command.clone());
            assert_eq!(
                previous, command,
                "node {id} applied a different command at {index}"
            );
        }
    }
    // Leader completeness: a leader holds every command ever committed.
    for node in c.nodes.values() {
        if node.role() == Role::Leader {
            for (index, command) in committed.iter() {
                let entry = node
                    .entry(*index)
                    .unwrap_or_else(|| panic!("leader {} misses committed {index}", node.id()));
                assert_eq!(
                    entry.payload,
                    concord::EntryPayload::Command(command.clone())
                );
            }
        }
    }
}

/// The seeds run on every core (each is a cluster of its own, so the
/// verdicts are the same in any order).
#[test]
fn random_faults_preserve_safety_and_recover() {
    const SEEDS: u64 = 300;
    let next_seed = std::sync::atomic::AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut committed = 0;
                    loop {
                        let seed = next_seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= SEEDS {
                            break committed;
                        }
                        let voters: &[u64] = match seed % 3 {
                            0 => &[1],
                            1 => &[1, 2, 3],
                            _ => &[1, 2, 3, 4, 5],
                        };
                        committed += run(seed, voters, 3000);
                    }
                })
            })
            .collect();
        // A seed's failure fails the test with its own message.
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .sum()
    });
    assert!(
        total > 1000,
        "too few commands committed ({total}): the runs are not exercising replication"
    );
}
