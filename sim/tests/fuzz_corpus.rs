//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same functions the cargo-fuzz targets call (`concord_sim::fuzzing`), so
//! every crash once found and added there is checked on every `cargo
//! test`, on the stable toolchain, without libFuzzer. A missing or empty
//! corpus directory fails: the test cannot pass by finding nothing.
//!
//! The test binary's allocator notes the largest allocation of each
//! decode, so the targets also check that no length field makes a decoder
//! allocate beyond what its input holds (the `hostile-length-*` seeds
//! announce 60 MiB in a few bytes).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use concord_sim::fuzzing;
use concord_sim::fuzzing::alloc::LargestAllocation;

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Feeds every file of the target's corpus to the target; fails naming
/// each file that panics or violates a property.
fn replay(target: &str) {
    LargestAllocation::installed();
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} holds no inputs",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            fuzzing::run(target, &data).expect("a known target")
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => failures.push(format!("{}: {violation}", file.display())),
            Err(_) => failures.push(format!("{}: panicked (message above)", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} corpus inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn frame_corpus_replays() {
    replay("frame");
}

#[test]
fn codec_corpus_replays() {
    replay("codec");
}

#[test]
fn wal_recovery_corpus_replays() {
    replay("wal_recovery");
}

#[test]
fn legacy_upgrade_corpus_replays() {
    replay("legacy_upgrade");
}

#[test]
fn session_corpus_replays() {
    replay("session");
}

#[test]
fn node_step_corpus_replays() {
    replay("node_step");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for target in fuzzing::TARGETS {
        assert!(
            fuzz_dir
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
        assert!(
            corpus_dir(target).is_dir(),
            "fuzz/corpus/{target} is missing"
        );
    }
    assert!(fuzzing::run("no-such-target", b"").is_none());
}

/// The committed seed files are the generator's current output
/// (`cargo run -p concord-sim --example fuzz_seed_corpus -- fuzz/corpus`).
#[test]
fn committed_seeds_match_the_generator() {
    for target in fuzzing::TARGETS {
        let seeds = fuzzing::corpus::seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, bytes) in seeds {
            let path = corpus_dir(target).join(&name);
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "seed {} is not committed ({e}); run the generator",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "seed {} differs from the generator's output; run the generator",
                path.display()
            );
        }
    }
}

/// The recorded schedules do real work: they elect, commit, survive
/// crashes and catch a follower up, rather than idling.
#[test]
fn node_step_seeds_commit_entries() {
    let seeds = fuzzing::corpus::seeds("node_step");
    let committed = |name: &str| {
        let (_, bytes) = seeds
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seed {name}"));
        let n = fuzzing::node_step::committed_entries(bytes).expect("a seed passes its checks");
        eprintln!("{name}: {n} entries committed");
        n
    };
    // A leader's no-op entry, then three proposals.
    assert!(committed("elect") >= 1, "no leader elected");
    assert!(committed("elect-propose-commit") >= 4);
    assert!(committed("crash-restart") >= 8);
    assert!(committed("five-read-transfer") >= 6);
    assert!(committed("snapshot-catch-up") >= 7);
}

/// The shared-log seeds are real logs that recover, and their damaged
/// copies are refused or recovered as the shared log's rules say: the
/// target sees what a server would.
#[test]
fn wal_recovery_seeds_recover_or_refuse_as_the_rules_say() {
    use fuzzing::wal_recovery::{outcome, Outcome};
    let seeds = fuzzing::corpus::seeds("wal_recovery");
    let outcome_of = |name: &str| {
        let (_, bytes) = seeds
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seed {name}"));
        let found = outcome(bytes).expect("a seed passes its checks");
        eprintln!("{name}: {found:?}");
        found
    };
    // Three groups of 16 entries, but group 2 overwrote its entry 10 and
    // holds 15; compacted, group 1's snapshot at 14 leaves it 2 entries
    // and group 3 is removed.
    let whole = outcome_of("log-framed");
    assert_eq!(
        whole,
        Outcome::Recovered {
            groups: 2,
            entries: 17
        }
    );
    assert_eq!(outcome_of("log-raw"), whole);
    assert_eq!(
        outcome_of("log-plain"),
        Outcome::Recovered {
            groups: 3,
            entries: 47
        }
    );
    // A torn tail loses nothing real; an undecodable marker is ignored.
    assert_eq!(outcome_of("log-torn-tail"), whole);
    assert_eq!(outcome_of("log-zero-tail"), whole);
    assert_eq!(outcome_of("log-garbage-marker"), whole);
    // Damage before valid records, lost synced data, a missing segment
    // and records that pass their checksums but do not fit are refused.
    for refused in [
        "log-flipped-byte",
        "log-marker-past-end",
        "log-missing-segment",
        "log-forged-gap",
        "log-forged-term",
        "log-undecodable-record",
        "log-hostile-length",
    ] {
        assert_eq!(outcome_of(refused), Outcome::Refused, "{refused}");
    }
    // Unless the loss is accepted.
    assert!(matches!(
        outcome_of("log-accepted-loss"),
        Outcome::Recovered { groups: 2, .. }
    ));
    assert!(matches!(
        outcome_of("empty"),
        Outcome::Recovered { groups: 0, .. }
    ));
}

/// The allocation check itself catches a decoder that trusts a length
/// field: allocating what a hostile seed announces is a violation.
#[test]
fn an_allocation_from_an_announced_length_is_caught() {
    LargestAllocation::installed();
    let announced = 60usize << 20;
    let caught = fuzzing::alloc::checked("codec", "a trusting decoder", 12, || {
        std::hint::black_box(vec![0u8; announced]).len()
    });
    let message = caught
        .expect_err("a 60 MiB allocation from 12 bytes")
        .to_string();
    assert!(message.contains("a length field was trusted"), "{message}");
    let fine = fuzzing::alloc::checked("codec", "a careful decoder", 12, || {
        std::hint::black_box(vec![0u8; 12]).len()
    });
    assert_eq!(fine, Ok(12));
    // Every hostile seed is in the corpus the replays above run.
    for target in ["codec", "session", "wal_recovery", "legacy_upgrade"] {
        let hostile = fuzzing::corpus::seeds(target)
            .into_iter()
            .filter(|(name, _)| name.contains("hostile-length"))
            .count();
        let needed = if target.ends_with("upgrade") || target.starts_with("wal") {
            1
        } else {
            3
        };
        assert!(
            hostile >= needed,
            "{target} has {hostile} hostile-length seeds"
        );
    }
}
