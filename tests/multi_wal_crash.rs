//! The shared write-ahead log of many groups (`runtime/src/multi/`) under
//! crashes at every write boundary, tested like the core: random
//! multi-group workloads (appends, truncations, new terms and votes,
//! snapshots taken and received, forced snapshots, groups removed and new
//! ones created, segment roll-overs and deletions) on a model of a disk behind a page cache. Each run blows the
//! disk's fuse after a random number of operations (the process dies
//! there), keeps only what was synced plus perhaps a torn prefix of the
//! rest (and zeros or garbage after it), reopens the log, and checks that
//! every group recovered exactly the state after some prefix of the
//! records written that holds every record reported durable: nothing
//! acknowledged is lost, nothing never written appears, no group gets
//! another's records, a removed group stays removed. Recovery never
//! mistakes a torn tail for lost durable data: the durable marker it
//! reads after each crash never claims more than survived.
//!
//! With the `planted-bugs` feature, `planted_delete_needed_segment` makes
//! the log delete a segment some group still needs; the last test measures
//! how many cases the property needs to catch it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::multi::GroupId;
mod common;
use common::wal::group_entry_write;

use concord::{Entry, EntryPayload, HardState, Index, LogPosition, Snapshot, Term};
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::shared_log::{MultiWalOptions, SharedLog, WalWrite};
use concord_tokio::multi::MultiRecovery;

/// One group as the records written so far make it (no compaction: the
/// whole log, entries at or below a received snapshot replaced by the
/// snapshot's last entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ModelGroup {
    hard_state: HardState,
    /// The newest snapshot stored (its file).
    snapshot: LogPosition,
    /// Index -> (term, payload); payload `None` for a snapshot's last entry.
    log: BTreeMap<Index, (Term, Option<Bytes>)>,
}

/// What recovery must give back for a group.
type View = (HardState, LogPosition, Vec<Entry>);

impl ModelGroup {
    fn last(&self) -> Index {
        self.log.keys().next_back().copied().unwrap_or(0)
    }

    fn term_at(&self, index: Index) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.log.get(&index).map(|(term, _)| *term)
    }

    /// The recovered state this model stands for: the snapshot, and the
    /// entries after it if the log holds its last entry (log matching).
    fn view(&self) -> View {
        let base = self.snapshot;
        let holds = self.term_at(base.index) == Some(base.term);
        let entries = if holds {
            self.log
                .range(base.index + 1..)
                .map(|(index, (term, payload))| Entry {
                    term: *term,
                    index: *index,
                    payload: EntryPayload::Command(payload.clone().expect("entries after a base")),
                })
                .collect()
        } else {
            Vec::new()
        };
        (self.hard_state, base, entries)
    }

    fn from_view(view: &View) -> ModelGroup {
        let (hard_state, base, entries) = view;
        let mut log = BTreeMap::new();
        if base.index > 0 {
            log.insert(base.index, (base.term, None));
        }
        for entry in entries {
            let EntryPayload::Command(bytes) = &entry.payload else {
                panic!("only commands are written")
            };
            log.insert(entry.index, (entry.term, Some(bytes.clone())));
        }
        ModelGroup {
            hard_state: *hard_state,
            snapshot: *base,
            log,
        }
    }
}

/// One change the log makes durable, in the order it reaches the disk.
#[derive(Clone, Debug)]
enum Event {
    HardState(GroupId, HardState),
    Truncate(GroupId, Index),
    Append(GroupId, Vec<Entry>),
    /// A snapshot file stored (its position becomes the group's base).
    SnapshotFile(GroupId, LogPosition),
    /// The record of a snapshot: with `discard`, the log is dropped.
    SnapshotRecord(GroupId, LogPosition, bool),
    /// The group was removed: nothing of it is recovered any more.
    Removed(GroupId),
}

fn apply(groups: &mut BTreeMap<GroupId, ModelGroup>, event: &Event) {
    match event {
        Event::HardState(group, hard_state) => {
            groups.entry(*group).or_default().hard_state = *hard_state
        }
        Event::Truncate(group, after) => {
            let group = groups.entry(*group).or_default();
            group.log.retain(|index, _| *index <= *after);
        }
        Event::Append(group, entries) => {
            let group = groups.entry(*group).or_default();
            let first = entries[0].index;
            group.log.retain(|index, _| *index < first);
            for entry in entries {
                let EntryPayload::Command(bytes) = &entry.payload else {
                    unreachable!()
                };
                group
                    .log
                    .insert(entry.index, (entry.term, Some(bytes.clone())));
            }
        }
        Event::SnapshotFile(group, position) => {
            groups.entry(*group).or_default().snapshot = *position
        }
        Event::SnapshotRecord(group, position, discard) => {
            if *discard {
                let group = groups.entry(*group).or_default();
                group.log.clear();
                group.log.insert(position.index, (position.term, None));
            }
        }
        Event::Removed(group) => {
            groups.remove(group);
        }
    }
}

fn views(groups: &BTreeMap<GroupId, ModelGroup>) -> BTreeMap<GroupId, View> {
    groups
        .iter()
        .map(|(id, group)| (*id, group.view()))
        .filter(|(_, view)| *view != ModelGroup::default().view())
        .collect()
}

fn recovered_views(recovery: &MultiRecovery) -> BTreeMap<GroupId, View> {
    recovery
        .groups
        .iter()
        .map(|(id, group)| {
            let r = &group.recovered;
            assert_eq!(r.applied_index, r.base.index);
            assert_eq!(
                group.snapshot.as_ref().map(|s| s.meta().position),
                (r.base.index > 0).then_some(r.base),
                "group {id}: the snapshot handed back is the base"
            );
            (*id, (r.hard_state, r.base, r.entries.clone()))
        })
        .filter(|(_, view)| *view != ModelGroup::default().view())
        .collect()
}

/// The generator's idea of one group: the state written so far and how
/// far it is committed (only ever durable entries).
#[derive(Clone, Debug, Default)]
struct Driver {
    committed: Index,
}

/// Settings of one case, drawn from its seed.
#[derive(Debug)]
struct Case {
    seed: u64,
    groups: u64,
    rounds: usize,
    crashes: usize,
    options: MultiWalOptions,
}

impl Case {
    fn draw(seed: u64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Case {
            seed,
            groups: rng.gen_range(1..=6),
            rounds: rng.gen_range(20..=120),
            crashes: rng.gen_range(1..=4),
            options: MultiWalOptions {
                segment_bytes_max: rng.gen_range(200..=3000),
                sync: true,
                segments_max: rng.gen_range(1..=4),
                ..MultiWalOptions::default()
            },
        }
    }
}

/// What one case found.
#[derive(Debug, Default)]
struct Outcome {
    crashes: u64,
    segments_deleted: u64,
    forced_snapshots: u64,
    torn_bytes: u64,
    /// Groups removed (a removal lost in a crash and written again counts
    /// again).
    removals: u64,
    /// Reopenings that found a durable marker.
    markers_found: u64,
}

/// Runs one case; `Err` describes a violation.
fn run_case(case: &Case) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 0x5eed);
    let disk = PageCacheDisk::new();
    let open = |disk: &PageCacheDisk| {
        SharedLog::open(disk.clone(), disk.clone(), case.options.clone())
            .map_err(|e| format!("recovery refused: {e}"))
    };
    let (mut log, recovery) = open(&disk)?;
    if !recovery.groups.is_empty() {
        return Err("a new disk recovered groups".to_string());
    }
    let mut outcome = Outcome::default();
    // The state every record up to the epoch's start gives, the events
    // since, and how many of them were reported durable.
    let mut base: BTreeMap<GroupId, ModelGroup> = BTreeMap::new();
    let mut drivers: BTreeMap<GroupId, Driver> = (1..=case.groups)
        .map(|g| (g * 10, Driver::default()))
        .collect();
    let mut forced: Vec<GroupId> = Vec::new();
    let mut serial = 0u64;
    // Groups removed (never written again: ids are not reused), and the
    // next id a new group gets.
    let mut removed: BTreeSet<GroupId> = BTreeSet::new();
    let mut next_group = (case.groups + 1) * 10;
    for epoch in 0..=case.crashes {
        let last_epoch = epoch == case.crashes;
        if !last_epoch {
            disk.set_fuse(rng.gen_range(1..=case.rounds as u64 * 3));
        }
        let mut written = base.clone();
        let mut events: Vec<Event> = Vec::new();
        let mut acked = 0usize;
        let mut crashed = false;
        for round in 0..case.rounds {
            let mut writes = Vec::new();
            let mut files = Vec::new();
            let mut records = Vec::new();
            if round == 0 {
                // A removal a crash lost is made again, as a host would
                // (it learns the removal from the catalog again).
                for group in removed.iter().filter(|g| base.contains_key(*g)) {
                    outcome.removals += 1;
                    records.push(Event::Removed(*group));
                    apply(&mut written, records.last().unwrap());
                    writes.push(WalWrite::Remove { group: *group });
                }
            }
            let mut groups: Vec<GroupId> = drivers.keys().copied().collect();
            let mut in_round = 0;
            while in_round == 0 || (in_round < 6 && rng.gen_bool(0.5)) {
                in_round += 1;
                let group = groups[rng.gen_range(0..groups.len())];
                if groups.len() > 1 && rng.gen_bool(0.03) {
                    // The group leaves this node; a new one arrives.
                    groups.retain(|g| *g != group);
                    drivers.remove(&group);
                    forced.retain(|g| *g != group);
                    removed.insert(group);
                    drivers.insert(next_group, Driver::default());
                    next_group += 10;
                    outcome.removals += 1;
                    records.push(Event::Removed(group));
                    apply(&mut written, records.last().unwrap());
                    writes.push(WalWrite::Remove { group });
                    continue;
                }
                let force = forced.contains(&group);
                let state = written.entry(group).or_default().clone();
                let driver = drivers.get_mut(&group).expect("driven");
                let floor = driver.committed.max(state.snapshot.index);
                let choice = if force { 90 } else { rng.gen_range(0..100) };
                if choice < 60 {
                    // A log write: perhaps a new term, perhaps a
                    // truncation, then entries.
                    let mut hard_state = None;
                    let mut term = state.hard_state.term.max(1);
                    if state.hard_state.term == 0 || rng.gen_bool(0.15) {
                        term = state.hard_state.term + 1;
                        hard_state = Some(HardState::new(term, Some(rng.gen_range(1..=3))));
                    }
                    let last = state.last().max(state.snapshot.index);
                    let mut truncate_after = None;
                    if last > floor && rng.gen_bool(0.2) {
                        truncate_after = Some(rng.gen_range(floor..=last));
                    }
                    let top = truncate_after.unwrap_or(last);
                    let first = if top > floor && rng.gen_bool(0.2) {
                        rng.gen_range(floor + 1..=top)
                    } else {
                        top + 1
                    };
                    let count = rng.gen_range(0..=4u64);
                    let entries: Vec<Entry> = (first..first + count)
                        .map(|index| {
                            serial += 1;
                            Entry {
                                term,
                                index,
                                payload: EntryPayload::Command(Bytes::from(format!(
                                    "g{group} i{index} t{term} #{serial}"
                                ))),
                            }
                        })
                        .collect();
                    if let Some(hard_state) = hard_state {
                        records.push(Event::HardState(group, hard_state));
                        apply(&mut written, records.last().unwrap());
                    }
                    if let Some(after) = truncate_after {
                        records.push(Event::Truncate(group, after));
                        apply(&mut written, records.last().unwrap());
                    }
                    if !entries.is_empty() {
                        records.push(Event::Append(group, entries.clone()));
                        apply(&mut written, records.last().unwrap());
                    }
                    writes.push(WalWrite::Log {
                        group,
                        hard_state,
                        truncate_after,
                        entries: entries.into(),
                    });
                } else if choice < 75 && state.hard_state.term > 0 {
                    // A received snapshot, past the stored one.
                    let index =
                        rng.gen_range(floor.max(state.snapshot.index) + 1..=state.last() + 3);
                    let held = state.term_at(index);
                    let (term, discard) = match held {
                        Some(term) if index <= floor || rng.gen_bool(0.5) => (term, false),
                        _ if index <= floor => continue,
                        _ => (state.hard_state.term, true),
                    };
                    let position = LogPosition::new(index, term);
                    let snapshot =
                        Snapshot::new(position, Bytes::from(format!("received {group} {index}")));
                    files.push(Event::SnapshotFile(group, position));
                    records.push(Event::SnapshotRecord(group, position, discard));
                    apply(&mut written, files.last().unwrap());
                    apply(&mut written, records.last().unwrap());
                    writes.push(WalWrite::Installed {
                        group,
                        snapshot,
                        discard_log: discard,
                    });
                } else if driver.committed > state.snapshot.index {
                    // The group's own snapshot at its committed index.
                    let index = driver.committed;
                    let term = state.term_at(index).expect("committed entries are held");
                    let position = LogPosition::new(index, term);
                    let snapshot =
                        Snapshot::new(position, Bytes::from(format!("taken {group} {index}")));
                    files.push(Event::SnapshotFile(group, position));
                    records.push(Event::SnapshotRecord(group, position, false));
                    apply(&mut written, files.last().unwrap());
                    writes.push(WalWrite::Taken { group, snapshot });
                    forced.retain(|g| *g != group);
                }
            }
            // Files reach the disk before any record of the round.
            events.extend(files);
            events.extend(records);
            match log.write(writes) {
                Ok(round) => {
                    acked = events.len();
                    for group in round.force_snapshot {
                        outcome.forced_snapshots += 1;
                        if !forced.contains(&group) {
                            forced.push(group);
                        }
                    }
                    // Everything written is durable: some of it commits.
                    for (group, driver) in drivers.iter_mut() {
                        if let Some(state) = written.get(group) {
                            if rng.gen_bool(0.5) {
                                driver.committed = driver.committed.max(state.last());
                            }
                        }
                    }
                }
                Err(_) if disk.blown() => {
                    crashed = true;
                    break;
                }
                Err(e) => return Err(format!("the log failed without a crash: {e}")),
            }
        }
        if !crashed && last_epoch {
            // A clean stop: everything written is durable.
            assert_eq!(acked, events.len());
        }
        outcome.segments_deleted += log.stats().segments_deleted;
        drop(log);
        outcome.crashes += u64::from(crashed);
        disk.crash(rng.gen());
        if std::env::var("DEBUG").is_ok() {
            println!("epoch {epoch}: acked {acked} of {} events", events.len());
            for (i, e) in events.iter().enumerate() {
                println!("  ev {i}: {e:?}");
            }
            dump(&disk);
        }
        let (reopened, recovery) = open(&disk)?;
        log = reopened;
        outcome.torn_bytes += recovery.torn_bytes_truncated;
        outcome.markers_found += u64::from(recovery.durable_marker.is_some());
        if let Some(group) = recovery.removed.iter().find(|g| !removed.contains(g)) {
            return Err(format!(
                "epoch {epoch}: group {group} is recovered as removed but never was"
            ));
        }
        let found = recovered_views(&recovery);
        // Some prefix of the records, holding every acknowledged one.
        let mut state = base.clone();
        for event in &events[..acked] {
            apply(&mut state, event);
        }
        let mut matched = views(&state) == found;
        for event in &events[acked..] {
            if matched {
                break;
            }
            apply(&mut state, event);
            matched = views(&state) == found;
        }
        if !matched {
            let mut durable = base.clone();
            for event in &events[..acked] {
                apply(&mut durable, event);
            }
            return Err(format!(
                "epoch {epoch}: recovered state is no prefix of the {} records written holding \
                 the {acked} reported durable\nrecovered: {found:?}\ndurable: {:?}",
                events.len(),
                views(&durable)
            ));
        }
        base = found
            .iter()
            .map(|(id, view)| (*id, ModelGroup::from_view(view)))
            .collect();
        forced.clear();
    }
    Ok(outcome)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_group_recovers_a_prefix_holding_everything_acknowledged(seed in any::<u64>()) {
        let case = Case::draw(seed);
        if let Err(violation) = run_case(&case) {
            prop_assert!(false, "seed {seed} ({case:?}): {violation}");
        }
    }
}

/// Fixed seeds: the runs crash, tear, delete segments and force
/// snapshots, so the property above is not passing vacuously.
#[test]
fn fixed_seeds_crash_tear_compact_and_force_snapshots() {
    let mut total = Outcome::default();
    for seed in 0..64 {
        let case = Case::draw(seed);
        let outcome = run_case(&case).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.crashes += outcome.crashes;
        total.segments_deleted += outcome.segments_deleted;
        total.forced_snapshots += outcome.forced_snapshots;
        total.torn_bytes += outcome.torn_bytes;
        total.removals += outcome.removals;
        total.markers_found += outcome.markers_found;
    }
    assert!(total.crashes >= 20, "{total:?}");
    assert!(total.removals >= 20, "{total:?}");
    assert!(total.markers_found >= 40, "{total:?}");
    assert!(total.segments_deleted >= 20, "{total:?}");
    assert!(total.forced_snapshots >= 5, "{total:?}");
    assert!(total.torn_bytes > 0, "{total:?}");
}

/// The planted mistake (deleting a segment a group still needs) is caught
/// by the property: here the first 64 fixed seeds, which all pass without
/// it (above), are run with it planted.
#[cfg(feature = "planted-bugs")]
#[test]
fn deleting_a_needed_segment_is_caught_within_the_first_cases() {
    let caught = cases_catching(|options| options.planted_delete_needed_segment = true);
    assert_caught("planted mistake", &caught, 4, 16);
}

/// The planted marker mistake (the durable marker written before the
/// sync it describes, so a crash may keep a marker that claims bytes the
/// disk lost) is caught by the property too: recovery refuses a torn tail
/// as lost durable data. The same 64 fixed seeds. Rarer than the planted
/// deletion: a case catches it only when its fuse blows at the sync right
/// after a marker write and the crash keeps that marker but not every
/// byte it claims (measured: seeds 10, 15, 25, 41 and 63 of 0..64, since
/// a snapshot's store is five operations of the disk, not one; seeds 0,
/// 28 and 32 before).
#[cfg(feature = "planted-bugs")]
#[test]
fn a_marker_written_before_its_sync_is_caught_within_the_first_cases() {
    let caught = cases_catching(|options| options.planted_marker_before_sync = true);
    assert_caught("planted marker mistake", &caught, 16, 4);
}

/// The fixed seeds 0..64 whose case fails with the mistake `plant` plants.
#[cfg(feature = "planted-bugs")]
fn cases_catching(plant: impl Fn(&mut MultiWalOptions)) -> Vec<u64> {
    let mut caught = Vec::new();
    for seed in 0..64 {
        let mut case = Case::draw(seed);
        plant(&mut case.options);
        if run_case(&case).is_err() {
            caught.push(seed);
        }
    }
    caught
}

/// A planted mistake must be caught within the first `first_within`
/// cases and by at least `at_least` of the 64.
#[cfg(feature = "planted-bugs")]
fn assert_caught(mistake: &str, caught: &[u64], first_within: u64, at_least: usize) {
    println!(
        "{mistake} caught by {} of 64 cases: {caught:?}",
        caught.len()
    );
    assert!(
        caught.first().is_some_and(|first| *first < first_within),
        "the first catch must come within {first_within} cases: {caught:?}"
    );
    assert!(
        caught.len() >= at_least,
        "caught by {} of 64 cases",
        caught.len()
    );
}

/// A crash that keeps the previous durable marker (naming the segment
/// before the current one) and a restart that then deletes that segment:
/// the reopened log must move the marker to its current segment first, or
/// the next crash finds the marked segment gone and refuses to start.
/// Seed 7504915599314613843 failed so before the fix.
#[test]
fn a_restart_moves_the_marker_before_deleting_its_segment() {
    let seed = 7_504_915_599_314_613_843;
    if let Err(violation) = run_case(&Case::draw(seed)) {
        panic!("seed {seed}: {violation}");
    }
}

/// Replays the seed a failure printed, with every record written and on
/// disk at each crash when `DEBUG` is set:
/// `SEED=<seed> DEBUG=1 cargo test -p concord-tests --test multi_wal_crash replay_seed -- --ignored --nocapture`.
#[test]
#[ignore = "replays the seed in $SEED"]
fn replay_seed() {
    let seed: u64 = std::env::var("SEED")
        .expect("set SEED to the seed to replay")
        .parse()
        .expect("SEED is a u64");
    let case = Case::draw(seed);
    println!("{case:?}");
    if let Err(violation) = run_case(&case) {
        panic!("seed {seed}: {violation}");
    }
}

fn dump(disk: &PageCacheDisk) {
    use concord_tokio::multi::record::GroupRecord;
    for (number, bytes) in disk.segment_bytes() {
        println!("segment {number}: {} bytes", bytes.len());
        let mut at = 16;
        while at + 12 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 || at + 12 + len > bytes.len() {
                break;
            }
            match concord_tokio::codec::decode::<GroupRecord>(
                &bytes[at + 12..at + 12 + len],
                1 << 20,
            ) {
                Ok(r) => println!("  @{at} {r:?}"),
                Err(_) => {
                    println!("  @{at} junk");
                    break;
                }
            }
            at += 12 + len;
        }
    }
}

/// Two groups' records in one segment, synced; returns the disk.
fn two_groups_written() -> PageCacheDisk {
    let disk = PageCacheDisk::new();
    let (mut log, _) =
        SharedLog::open(disk.clone(), disk.clone(), MultiWalOptions::default()).unwrap();
    for round in 1..=3u64 {
        let writes = [7u64, 8].map(|group| WalWrite::Log {
            group,
            hard_state: (round == 1).then_some(HardState {
                term: 1,
                voted_for: None,
                ..Default::default()
            }),
            truncate_after: None,
            entries: vec![Entry {
                term: 1,
                index: round,
                payload: EntryPayload::Command(Bytes::from(format!("g{group} {round}"))),
            }]
            .into(),
        });
        log.write(writes).unwrap();
    }
    disk
}

#[test]
fn damage_inside_the_log_refuses_to_start_naming_file_and_offset() {
    let disk = two_groups_written();
    let (number, mut bytes) = disk.segment_bytes().into_iter().next().unwrap();
    // A byte in the middle of the first record's payload: records follow.
    bytes[16 + 14] ^= 0x40;
    disk.overwrite_segment(number, bytes);
    let error = SharedLog::open(disk.clone(), disk, MultiWalOptions::default()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("segment 1")
            && text.contains("offset 16")
            && text.contains("valid record follows"),
        "{text}"
    );
}

#[test]
fn a_record_that_does_not_fit_its_group_names_the_group() {
    use concord_tokio::multi::record::{encode_record, GroupRecord};
    let disk = two_groups_written();
    let (number, mut bytes) = disk.segment_bytes().into_iter().next().unwrap();
    let offset = bytes.len();
    // Group 8 jumps from index 3 to 9: a gap, well formed and checksummed.
    let entry = Entry {
        term: 1,
        index: 9,
        payload: EntryPayload::Command(Bytes::from_static(b"late")),
    };
    encode_record(
        &GroupRecord::Append {
            group: 8,
            entries: vec![entry],
        },
        &mut bytes,
    )
    .unwrap();
    disk.overwrite_segment(number, bytes);
    let error = SharedLog::open(disk.clone(), disk, MultiWalOptions::default()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("group 8")
            && text.contains(&format!("offset {offset}"))
            && text.contains("gap"),
        "{text}"
    );
}

#[test]
fn a_torn_or_zero_filled_tail_is_cut_and_the_log_stays_writable() {
    for tail in [vec![0u8; 4096], vec![0xAB; 7]] {
        let disk = two_groups_written();
        let (number, mut bytes) = disk.segment_bytes().into_iter().next().unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&tail);
        disk.overwrite_segment(number, bytes);
        let (mut log, recovery) =
            SharedLog::open(disk.clone(), disk.clone(), MultiWalOptions::default()).unwrap();
        assert_eq!(recovery.torn_bytes_truncated, tail.len() as u64);
        assert_eq!(disk.segment_bytes()[&number].len(), good);
        for group in [7, 8] {
            assert_eq!(recovery.groups[&group].recovered.entries.len(), 3);
        }
        log.write([WalWrite::Log {
            group: 7,
            hard_state: None,
            truncate_after: None,
            entries: vec![Entry {
                term: 1,
                index: 4,
                payload: EntryPayload::Command(Bytes::from_static(b"after")),
            }]
            .into(),
        }])
        .unwrap();
        drop(log);
        let (_, recovery) =
            SharedLog::open(disk.clone(), disk, MultiWalOptions::default()).unwrap();
        assert_eq!(recovery.groups[&7].recovered.entries.len(), 4);
    }
}

/// Fsynced bytes lost (a disk that dropped acknowledged writes) are not
/// a torn tail: recovery refuses, naming the segment, where its readable
/// part ends and how far the durable marker says it was synced. With
/// `accept_data_loss` it cuts, deletes the marker first, and the log
/// stays usable.
#[test]
fn synced_bytes_lost_are_refused_unless_the_loss_is_accepted() {
    use concord_tokio::multi::record::DurableMarker;
    let disk = two_groups_written();
    let marker = DurableMarker::decode(&disk.marker_bytes().expect("a marker")).unwrap();
    let (number, bytes) = disk.segment_bytes().into_iter().next().unwrap();
    assert_eq!(marker.segment, number);
    assert_eq!(marker.offset_bytes, bytes.len() as u64);
    // The last 5 synced bytes are gone: the last record is cut short.
    disk.overwrite_segment(number, bytes[..bytes.len() - 5].to_vec());
    let error = SharedLog::open(disk.clone(), disk.clone(), MultiWalOptions::default())
        .expect_err("lost synced bytes must be refused");
    let text = error.to_string();
    assert!(
        text.contains("lost data it had made durable")
            && text.contains("segment 1")
            && text.contains(&format!("up to byte offset {}", bytes.len()))
            && text.contains("extends past the end"),
        "{text}"
    );
    // Refusing changed nothing.
    assert_eq!(
        disk.segment_bytes()[&number].len(),
        bytes.len() - 5,
        "a refused recovery cuts nothing"
    );
    let options = MultiWalOptions {
        accept_data_loss: true,
        ..MultiWalOptions::default()
    };
    let (log, recovery) = SharedLog::open(disk.clone(), disk.clone(), options).unwrap();
    assert!(recovery.lost_durable_bytes >= 5, "{recovery:?}");
    // Group 8's third entry was the last record: cut with it.
    assert_eq!(recovery.groups[&8].recovered.entries.len(), 2);
    assert_eq!(recovery.groups[&7].recovered.entries.len(), 3);
    // The over-claiming marker went; the one the reopened log writes
    // claims no more than the cut segment holds.
    if let Some(bytes) = disk.marker_bytes() {
        let marker = DurableMarker::decode(&bytes).unwrap();
        let held = disk.segment_bytes()[&marker.segment].len() as u64;
        assert!(marker.offset_bytes <= held, "{marker:?} over {held} bytes");
    }
    drop(log);
    let (_, recovery) = SharedLog::open(disk.clone(), disk, MultiWalOptions::default()).unwrap();
    assert_eq!(recovery.groups[&8].recovered.entries.len(), 2);
}

/// The segment the marker names is gone (a file deleted by hand): refused.
/// A damaged marker is ignored (recovery falls back to the torn-tail
/// rule), since it is evidence, not data.
#[test]
fn a_missing_marked_segment_is_refused_a_damaged_marker_ignored() {
    let disk = PageCacheDisk::new();
    let options = MultiWalOptions {
        segment_bytes_max: 200,
        segments_max: 64,
        ..MultiWalOptions::default()
    };
    let (mut log, _) = SharedLog::open(disk.clone(), disk.clone(), options.clone()).unwrap();
    for index in 1..=20u64 {
        log.write([group_entry_write(5, index, b'x', 40)]).unwrap();
    }
    drop(log);
    let segments = disk.segment_bytes();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let (&last, _) = segments.iter().next_back().unwrap();
    let marker = disk.marker_bytes().unwrap();
    disk.overwrite_marker(Some({
        let mut damaged = marker.clone();
        damaged[13] ^= 0x10;
        damaged
    }));
    let (_, recovery) = SharedLog::open(disk.clone(), disk.clone(), options.clone()).unwrap();
    assert!(recovery.durable_marker.is_none());
    assert_eq!(recovery.groups[&5].recovered.entries.len(), 20);
    // Reopening wrote no marker (no sync): put the good one back.
    disk.overwrite_marker(Some(marker));
    disk.delete_segment(last);
    let error = SharedLog::open(disk.clone(), disk, options).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("lost data it had made durable")
            && text.contains(&format!("segment {last}"))
            && text.contains("is missing"),
        "{text}"
    );
}

/// What recovery gave back, in a form two recoveries can be compared by.
fn recovered_view(recovery: &MultiRecovery) -> Vec<(GroupId, HardState, LogPosition, Vec<Entry>)> {
    recovery
        .groups
        .iter()
        .map(|(group, g)| {
            (
                *group,
                g.recovered.hard_state,
                g.recovered.base,
                g.recovered.entries.clone(),
            )
        })
        .collect()
}

/// The premise of the simulator's `rot` fault: wherever the page-cache
/// disk rots synced bytes (a segment older than the newest, or the newest
/// before its durable marker), recovery refuses the log naming the
/// damaged file, whatever the workload left there; put back, the bytes
/// recover as before. If some place were not refused, the sweep's check
/// would fail a correct run.
#[test]
fn rotted_synced_bytes_are_refused_naming_the_file_wherever_they_are() {
    let mut rots = 0;
    let mut segments_damaged = BTreeSet::new();
    for seed in 0..300u64 {
        let disk = PageCacheDisk::new();
        let options = MultiWalOptions {
            segment_bytes_max: 512,
            segments_max: 8,
            ..MultiWalOptions::default()
        };
        let (mut log, _) = SharedLog::open(disk.clone(), disk.clone(), options.clone()).unwrap();
        let rounds = 2 + seed % 40;
        for round in 1..=rounds {
            let writes = [7u64, 8].map(|group| group_entry_write(group, round, group as u8, 24));
            log.write(writes).unwrap();
        }
        drop(log);
        disk.crash(seed);
        let (_, whole) = SharedLog::open(disk.clone(), disk.clone(), options.clone()).unwrap();
        let before = recovered_view(&whole);
        disk.rot_at_next_crash();
        disk.crash(seed + 1_000);
        let Some(rot) = disk.take_rot() else {
            continue;
        };
        rots += 1;
        segments_damaged.insert(rot.segment);
        let file = format!("page-cache disk segment {}", rot.segment);
        let refusal = match SharedLog::open(disk.clone(), disk.clone(), options.clone()) {
            Ok(_) => panic!("seed {seed}: started on rotted bytes {rot:?}"),
            Err(e) => e.to_string(),
        };
        assert!(refusal.contains(&file), "seed {seed}: {refusal}");
        disk.repair(&rot);
        let (_, repaired) = SharedLog::open(disk.clone(), disk, options).unwrap();
        assert_eq!(recovered_view(&repaired), before, "seed {seed}");
    }
    // The fault strikes most runs, in more than one segment.
    assert!(rots > 250, "{rots} rots of 300");
    assert!(segments_damaged.len() > 3, "{segments_damaged:?}");
}
