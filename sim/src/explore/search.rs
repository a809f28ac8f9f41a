//! Breadth-first search over the states of a scope, level by level, on
//! several threads, with a result independent of the thread count.
//!
//! **What is stored.** Per state seen, its 128-bit fingerprint (in one
//! set); per state still to expand, an 8-byte record: its parent's place
//! in the level above and the step from there. States themselves are not
//! kept: a level is expanded in fixed chunks, and each chunk's states are
//! rebuilt by replaying the recorded steps from the initial state down the
//! tree (a depth-first walk that clones a state only where the tree
//! branches). Rebuilding costs about one step per state of the levels
//! above, far less than expanding a level (a dozen steps per state), and
//! it keeps memory at some 30 bytes per distinct state instead of the
//! kilobytes a cluster of nodes takes.
//!
//! **Determinism.** Chunks have a fixed size and their results are merged
//! in chunk order on one thread: the order in which successors are first
//! seen, hence every count, the states kept and the path reported, are the
//! same with any number of threads.
//!
//! **Shortest traces.** Every edge of level d to d + 1 is checked before
//! any of level d + 2, so the first violation found (in merge order) is
//! at the least depth: its path is a shortest one.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::checks::Violation;
use super::fingerprint::Fingerprint;
use super::reach::{Reached, Sighting};
use super::scope::Scope;
use super::world::{Step, World};

/// States of a level expanded by one task (fixed, so that results do not
/// depend on the thread count).
const CHUNK_STATES: usize = 256;

/// Chunks merged before a progress report is considered.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A recorded state still to expand: where it came from.
#[derive(Clone, Copy, Debug)]
struct Record {
    parent: u32,
    step: Step,
}

/// One successor found by a worker.
struct Successor {
    fingerprint: Fingerprint,
    parent: u32,
    step: Step,
    expand: bool,
    in_scope: bool,
    sighting: Sighting,
    violation: Option<Box<Violation>>,
}

/// A pass-through hasher for fingerprints, which are uniform already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FingerprintSet = HashSet<Fingerprint, BuildHasherDefault<PassThrough>>;

/// How the search went so far (for progress reports) or in the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Transitions taken and checked (every successor of every state
    /// expanded, seen before or not).
    pub explored: u64,
    /// Distinct states (the initial one included).
    pub distinct: u64,
    /// Distinct states found outside the scope (a term above the bound, a
    /// full network without loss): checked, not expanded.
    pub out_of_scope: u64,
    /// Distinct states at the depth bound, in scope, not expanded.
    pub at_depth_bound: u64,
    /// Deepest level holding a state.
    pub depth: u32,
    /// New distinct states at each depth.
    pub levels: Vec<u64>,
}

/// A violation and the shortest path to it.
#[derive(Clone, Debug)]
pub struct Found {
    /// What was violated.
    pub violation: Violation,
    /// The steps from the initial state; the last one violates.
    pub steps: Vec<Step>,
}

/// The result of a search.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Counts.
    pub counts: Counts,
    /// The first violation, at the least depth.
    pub found: Option<Found>,
    /// Every state of the scope was explored (no depth bound reached, no
    /// violation stopped the search).
    pub complete: bool,
    /// What the distinct states reached (leaders, commits, crashes,
    /// terms): whether a clean result proves anything.
    pub reached: Reached,
    /// Wall-clock time of the search (reporting only: nothing depends on
    /// it).
    pub wall: Duration,
}

/// A progress report while the search runs.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The level being expanded.
    pub level: u32,
    /// States of that level.
    pub frontier: u64,
    /// States of that level expanded so far.
    pub expanded: u64,
    /// Counts so far.
    pub counts: Counts,
    /// Wall-clock time so far.
    pub elapsed: Duration,
}

struct Search<'a> {
    scope: &'a Scope,
    initial: World,
    levels: Vec<Vec<Record>>,
}

impl Search<'_> {
    /// Calls `visit(place, state)` for the states `range` of `level`, in
    /// order, rebuilding them from the initial state.
    fn regenerate(&self, level: usize, range: Range<usize>, visit: &mut dyn FnMut(usize, &World)) {
        if range.is_empty() {
            return;
        }
        if level == 0 {
            debug_assert_eq!(range, 0..1);
            visit(0, &self.initial);
            return;
        }
        let records = &self.levels[level];
        let parents =
            records[range.start].parent as usize..records[range.end - 1].parent as usize + 1;
        let mut cursor = range.start;
        self.regenerate(level - 1, parents, &mut |parent, world| {
            while cursor < range.end && records[cursor].parent as usize == parent {
                let mut child = world.clone();
                let taken = child.apply(self.scope, records[cursor].step, None);
                assert!(
                    matches!(taken, Ok(true)),
                    "replaying a recorded step gave {taken:?}: the core or the host is not deterministic"
                );
                visit(cursor, &child);
                cursor += 1;
            }
        });
    }

    /// The successors of the states `range` of `level`.
    fn expand(&self, level: usize, range: Range<usize>) -> Vec<Successor> {
        let mut successors = Vec::new();
        let mut steps = Vec::new();
        let next_depth = level as u32 + 1;
        self.regenerate(level, range, &mut |place, world| {
            world.steps(self.scope, &mut steps);
            for step in &steps {
                let mut child = world.clone();
                match child.apply(self.scope, *step, None) {
                    Ok(false) => {}
                    Ok(true) => {
                        let in_scope = child.in_scope(self.scope);
                        successors.push(Successor {
                            fingerprint: child.fingerprint(self.scope),
                            parent: place as u32,
                            step: *step,
                            expand: in_scope && next_depth < self.scope.depth,
                            in_scope,
                            sighting: child.sighting(),
                            violation: None,
                        });
                    }
                    Err(violation) => successors.push(Successor {
                        fingerprint: 0,
                        parent: place as u32,
                        step: *step,
                        expand: false,
                        in_scope: false,
                        sighting: Sighting::default(),
                        violation: Some(Box::new(violation)),
                    }),
                }
            }
        });
        successors
    }

    /// The steps from the initial state to `place` of `level`.
    fn path(&self, level: usize, mut place: usize) -> Vec<Step> {
        let mut steps = Vec::with_capacity(level);
        for depth in (1..=level).rev() {
            let record = self.levels[depth][place];
            steps.push(record.step);
            place = record.parent as usize;
        }
        steps.reverse();
        steps
    }
}

/// Explores every state of `scope` breadth first on `threads` threads,
/// stopping at the first violation. `progress` is called about once a
/// second.
pub fn search(
    scope: &Scope,
    threads: usize,
    progress: &dyn Fn(&Progress),
) -> Result<Outcome, String> {
    scope.validate()?;
    let started = Instant::now();
    let threads = threads.max(1);
    let initial = World::initial(scope).map_err(|violation| violation.to_string())?;
    let mut visited = FingerprintSet::default();
    visited.insert(initial.fingerprint(scope));
    // Counted once per distinct state, in merge order: the same with any
    // number of threads.
    let mut reached = Reached::default();
    reached.add(&initial.sighting());
    let mut search = Search {
        scope,
        initial,
        levels: vec![vec![Record {
            parent: u32::MAX,
            step: Step::Fire(0),
        }]],
    };
    let mut counts = Counts {
        distinct: 1,
        levels: vec![1],
        ..Counts::default()
    };
    let mut found = None;
    let mut last_report = Instant::now();
    loop {
        let level = search.levels.len() - 1;
        let frontier = search.levels[level].len();
        if frontier == 0 {
            break;
        }
        let chunks = frontier.div_ceil(CHUNK_STATES);
        let next_claim = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let mut next: Vec<Record> = Vec::new();
        let mut new_states = 0u64;
        let (sender, receiver) = mpsc::channel::<(usize, Vec<Successor>)>();
        let search_ref = &search;
        std::thread::scope(|threads_scope| {
            for _ in 0..threads {
                let sender = sender.clone();
                let next_claim = &next_claim;
                let stop = &stop;
                threads_scope.spawn(move || loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let chunk = next_claim.fetch_add(1, Ordering::Relaxed);
                    if chunk >= chunks {
                        return;
                    }
                    let start = chunk * CHUNK_STATES;
                    let range = start..(start + CHUNK_STATES).min(frontier);
                    let successors = search_ref.expand(level, range);
                    if sender.send((chunk, successors)).is_err() {
                        return;
                    }
                });
            }
            drop(sender);
            // Merge in chunk order, whatever order the chunks finish in.
            let mut waiting: BTreeMap<usize, Vec<Successor>> = BTreeMap::new();
            let mut merged = 0usize;
            'merge: while merged < chunks {
                let Ok((chunk, successors)) = receiver.recv() else {
                    break;
                };
                waiting.insert(chunk, successors);
                while let Some(successors) = waiting.remove(&merged) {
                    for successor in successors {
                        counts.explored += 1;
                        if let Some(violation) = successor.violation {
                            let mut steps = search_ref.path(level, successor.parent as usize);
                            steps.push(successor.step);
                            found = Some(Found {
                                violation: *violation,
                                steps,
                            });
                            stop.store(true, Ordering::Relaxed);
                            break 'merge;
                        }
                        if visited.insert(successor.fingerprint) {
                            counts.distinct += 1;
                            reached.add(&successor.sighting);
                            new_states += 1;
                            if successor.expand {
                                next.push(Record {
                                    parent: successor.parent,
                                    step: successor.step,
                                });
                            } else if successor.in_scope {
                                counts.at_depth_bound += 1;
                            } else {
                                counts.out_of_scope += 1;
                            }
                        }
                    }
                    merged += 1;
                    if last_report.elapsed() >= PROGRESS_EVERY {
                        last_report = Instant::now();
                        progress(&Progress {
                            level: level as u32,
                            frontier: frontier as u64,
                            expanded: ((merged * CHUNK_STATES).min(frontier)) as u64,
                            counts: counts.clone(),
                            elapsed: started.elapsed(),
                        });
                    }
                }
            }
            // Unblock workers still sending: their results are not needed.
            stop.store(true, Ordering::Relaxed);
            drop(receiver);
        });
        if new_states > 0 {
            counts.depth = level as u32 + 1;
            counts.levels.push(new_states);
        }
        if found.is_some() {
            break;
        }
        search.levels.push(next);
    }
    let complete = found.is_none() && counts.at_depth_bound == 0;
    Ok(Outcome {
        counts,
        found,
        complete,
        reached,
        wall: started.elapsed(),
    })
}
