//! The limits of a check ([`CheckConfig`], [`Limit`]), the one search
//! [`Budget`] that spends them, and the thread pool parts are checked on:
//! shared by the generic search ([`crate::check`], [`crate::search`]) and
//! the key-value search ([`crate::linearizability`]).

use std::fmt;
use std::time::{Duration, Instant};

/// Limits of one check. The defaults suit histories of up to a few hundred
/// thousand operations with tens of clients.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Maximum number of search steps (configurations expanded) over the
    /// whole history; deterministic. When exceeded the result is
    /// [`CheckResult::Unknown`](crate::linearizability::CheckResult::Unknown).
    pub max_steps: u64,
    /// Maximum number of configurations alive at one point of one key;
    /// exceeding it gives [`CheckResult::Unknown`](crate::linearizability::CheckResult::Unknown). A count, not a memory
    /// bound: a configuration takes from about 100 bytes (the key-value
    /// sweep) to several KB (the generic search, whose configurations hold
    /// a model state and a bitset of the pending operations); the memory
    /// bound is [`CheckConfig::max_memory_bytes`].
    pub max_frontier: usize,
    /// Most bytes the search's configurations may take at once (counted,
    /// not measured: the visited sets, frontiers and stacks with each
    /// configuration's heap, see [`crate::memory`]), shared by the
    /// threads of [`check_history_parallel`](crate::linearizability::check_history_parallel) and
    /// [`crate::check_parallel`]: each of `n` threads searching at
    /// once gets `1/n` of it. Reaching it gives [`Limit::Memory`], an
    /// unknown verdict. Default [`crate::memory::MEMORY_BYTES_DEFAULT`]
    /// (1 GiB) on every machine; the command line defaults to a quarter of
    /// the machine's memory.
    pub max_memory_bytes: u64,
    /// Optional wall-clock limit (not deterministic: the same history may
    /// pass on a fast machine and be `Unknown` on a slow one).
    pub time_limit: Option<Duration>,
    /// Whether to shrink the sub-history reported on failure.
    pub shrink: bool,
    /// Step budget for computing and shrinking that sub-history; when it
    /// runs out the best sub-history found so far is reported.
    pub shrink_steps: u64,
    /// Decide keys whose writes all write distinct values without a
    /// search: `get`s and `put`s as registers, and with `append`s and
    /// `cas`es too where `check::unambiguous_kv` can, in O(n log n) (same
    /// verdict as the search; off only to compare the two).
    pub fast_path: bool,
    /// Look for one valid order depth first before the return-by-return
    /// search of [`crate::search`] (same verdict and stuck
    /// operation; off only to compare the two).
    pub depth_first: bool,
    /// The key-value search's pace limit: a key's search gives up
    /// ([`Limit::Pace`]) once it has taken more steps than `max_frontier`
    /// (one full closure's worth) plus this many per return it has
    /// passed. A search that outruns its history like that is one whose
    /// closures hover just under the configuration limit return after
    /// return, and ends UNKNOWN anyway, at a far higher cost; searches
    /// that decide take a few hundred steps per return (at most 1,000 on
    /// the hot-key histories of `docs/checker.md`). 0: no pace limit.
    pub max_steps_per_return: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_steps: 2_000_000_000,
            max_frontier: 4_000_000,
            max_memory_bytes: crate::memory::MEMORY_BYTES_DEFAULT,
            time_limit: None,
            shrink: true,
            shrink_steps: 50_000_000,
            fast_path: true,
            depth_first: true,
            max_steps_per_return: STEPS_PER_RETURN_DEFAULT,
        }
    }
}

/// [`CheckConfig::max_steps_per_return`] by default.
pub const STEPS_PER_RETURN_DEFAULT: u64 = 2_000;

/// A limit of the search that a check ran into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`CheckConfig::max_steps`] search steps (deterministic).
    Steps(u64),
    /// [`CheckConfig::max_frontier`] configurations alive at one point of
    /// one key (a count; the bound in bytes is [`Limit::Memory`]).
    Configurations(usize),
    /// [`CheckConfig::max_memory_bytes`] (this thread's share of it) taken
    /// by the search's configurations (deterministic: counted, not
    /// measured).
    Memory {
        /// The bound that was reached, in bytes.
        bytes_max: u64,
        /// Configurations the search held when it stopped.
        configs: u64,
    },
    /// [`CheckConfig::time_limit`] of wall-clock time.
    Time(Duration),
    /// More operations pending at once on one key than the search can
    /// represent (a fixed limit of 128).
    PendingOperations(usize),
    /// The key-value search's pace limit
    /// ([`CheckConfig::max_steps_per_return`]): more steps than
    /// `allowance` plus `per_return` for each return passed.
    Pace {
        /// Steps the key's search had taken.
        steps: u64,
        /// Returns it had passed.
        returns: u64,
        /// Steps allowed before any return ([`CheckConfig::max_frontier`]).
        allowance: u64,
        /// Steps allowed per return.
        per_return: u64,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Steps(n) => write!(f, "step limit of {n} search steps reached"),
            Limit::Configurations(n) => write!(
                f,
                "configuration limit reached: more than {n} configurations alive at one point"
            ),
            Limit::Memory { bytes_max, configs } => write!(
                f,
                "gave up at the memory bound of {} (--max-memory, CheckConfig::max_memory_bytes) \
                 after {configs} configurations; \
                 split the history (fewer concurrent operations per key) or check fewer \
                 operations at once: the search grows exponentially with the operations \
                 pending at once, so a larger bound rarely decides it",
                crate::memory::show_bytes(*bytes_max)
            ),
            Limit::Time(d) => write!(f, "time limit of {:.3} s reached", d.as_secs_f64()),
            Limit::PendingOperations(n) => write!(
                f,
                "more than {n} operations pending at once on one key (the search's fixed limit)"
            ),
            Limit::Pace {
                steps,
                returns,
                allowance,
                per_return,
            } => write!(
                f,
                "pace limit reached: {steps} search steps after {returns} returns, more than \
                 {allowance} plus {per_return} per return (--max-steps-per-return, \
                 CheckConfig::max_steps_per_return); the search grows faster than the \
                 history, as it does when too many operations are pending at once on a key: \
                 split the history or check fewer operations at once"
            ),
        }
    }
}

/// The limits of one part's (one key's) search and what it has spent:
/// one type for every pass of the generic search and for the key-value
/// search, so that a key handed from one to the other spends from the
/// same account.
pub(crate) struct Budget {
    /// Steps spent.
    pub(crate) steps: u64,
    /// The most bytes the search held, as counted for the memory bound.
    pub(crate) memory_bytes_peak: u64,
    pub(crate) max_steps: u64,
    pub(crate) max_frontier: usize,
    /// This part's share of [`CheckConfig::max_memory_bytes`].
    pub(crate) memory_bytes_max: u64,
    pub(crate) deadline: Option<Instant>,
    /// The wall-clock limit behind `deadline`, to name it.
    pub(crate) time_limit: Option<Duration>,
    /// [`CheckConfig::depth_first`].
    pub(crate) depth_first: bool,
    /// [`CheckConfig::fast_path`]: whether keys may be decided without a
    /// search.
    pub(crate) fast_path: bool,
    /// Whether a failure needs the values possible before the stuck
    /// return (the sub-checks of an explanation need only the stuck
    /// operation).
    pub(crate) values: bool,
    /// Whether the key-value search drops doomed configurations (its rule
    /// P); off only to find the exact values before a stuck return.
    pub(crate) pins: bool,
    /// [`CheckConfig::max_steps_per_return`].
    pub(crate) steps_per_return: u64,
    /// The pace limit's count of the current sweep: `steps` when it
    /// started, and the returns it has passed.
    pub(crate) sweep_start: u64,
    pub(crate) sweep_returns: u64,
}

impl Budget {
    /// The limits of `cfg` for one part, which may take `memory_bytes_max`
    /// (its thread's share of `cfg.max_memory_bytes`), the wall clock's
    /// ending at `deadline`.
    pub(crate) fn new(
        cfg: &CheckConfig,
        memory_bytes_max: u64,
        deadline: Option<Instant>,
    ) -> Budget {
        assert!(memory_bytes_max > 0, "a search needs some memory");
        Budget {
            steps: 0,
            memory_bytes_peak: 0,
            max_steps: cfg.max_steps,
            max_frontier: cfg.max_frontier,
            memory_bytes_max,
            deadline,
            time_limit: cfg.time_limit,
            depth_first: cfg.depth_first,
            fast_path: cfg.fast_path,
            values: true,
            pins: true,
            steps_per_return: cfg.max_steps_per_return,
            sweep_start: 0,
            sweep_returns: 0,
        }
    }

    /// The budget of the small searches that explain a failure and find
    /// the states before a stuck return: `steps` steps, 200,000
    /// configurations, [`SMALL_MEMORY_BYTES_MAX`], no clock, no pace.
    pub(crate) fn small(steps: u64) -> Budget {
        Budget {
            steps: 0,
            memory_bytes_peak: 0,
            max_steps: steps,
            max_frontier: 200_000,
            memory_bytes_max: SMALL_MEMORY_BYTES_MAX,
            deadline: None,
            time_limit: None,
            depth_first: true,
            fast_path: true,
            values: true,
            pins: true,
            steps_per_return: 0,
            sweep_start: 0,
            sweep_returns: 0,
        }
    }

    /// Records that the search holds `bytes` in `configs` configurations:
    /// `Err(Limit::Memory)` if that passed `bytes_max`.
    #[inline]
    pub(crate) fn memory(
        &mut self,
        bytes: usize,
        bytes_max: u64,
        configs: usize,
    ) -> Result<(), Limit> {
        let bytes = bytes as u64;
        if bytes > bytes_max {
            return Err(Limit::Memory {
                bytes_max,
                configs: configs as u64,
            });
        }
        self.memory_bytes_peak = self.memory_bytes_peak.max(bytes);
        Ok(())
    }

    /// Spends one step: the step limit once passed, and every 4,096
    /// steps the wall clock.
    #[inline]
    pub(crate) fn step(&mut self) -> Result<(), Limit> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(Limit::Steps(self.max_steps));
        }
        if self.steps.is_multiple_of(4096) {
            if let Some(d) = self.deadline {
                if Instant::now() >= d {
                    return Err(Limit::Time(self.time_limit.unwrap_or_default()));
                }
            }
        }
        Ok(())
    }

    /// Starts a sweep for the pace limit.
    pub(crate) fn start_sweep(&mut self) {
        self.sweep_start = self.steps;
        self.sweep_returns = 0;
    }

    /// The pace limit ([`CheckConfig::max_steps_per_return`]), if the
    /// current sweep has passed it.
    #[inline]
    pub(crate) fn pace(&self) -> Result<(), Limit> {
        if self.steps_per_return == 0 {
            return Ok(());
        }
        let steps = self.steps - self.sweep_start;
        let allowance = self.max_frontier as u64;
        let allowed =
            allowance.saturating_add(self.steps_per_return.saturating_mul(self.sweep_returns));
        if steps > allowed {
            return Err(Limit::Pace {
                steps,
                returns: self.sweep_returns,
                allowance,
                per_return: self.steps_per_return,
            });
        }
        Ok(())
    }

    /// Whether the steps or the wall clock have run out.
    pub(crate) fn spent(&self) -> bool {
        self.steps >= self.max_steps || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The memory bound of the small searches that explain a failure and
/// find the states before a stuck return (each runs alone, after the
/// check proper has freed its memory).
pub(crate) const SMALL_MEMORY_BYTES_MAX: u64 = 256 << 20;

/// Each part's share of [`CheckConfig::max_memory_bytes`] when `parts`
/// are checked on up to `threads` threads (as [`in_parallel`] runs them):
/// the threads search at once, so each gets an equal share, and the bound
/// holds for the whole check. The share, unlike the thread count, can
/// change a verdict, but only to or from [`Limit::Memory`].
pub(crate) fn memory_share(cfg: &CheckConfig, threads: usize, parts: usize) -> u64 {
    let workers = threads.max(1).min(parts.max(1)) as u64;
    (cfg.max_memory_bytes / workers).max(1)
}

/// Runs `check` on each of `parts` on up to `threads` threads (at least
/// one), each thread taking the next part no thread has taken. `check`
/// returns its result and whether the part failed; once one has, the
/// parts after the earliest failed one that are not started yet are
/// skipped (`None`). The results in the order of `parts`.
pub(crate) fn in_parallel<P: Sync, R: Send>(
    parts: &[P],
    threads: usize,
    check: impl Fn(&P) -> (R, bool) + Sync,
) -> Vec<Option<R>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let first_fail = AtomicUsize::new(usize::MAX);
    let workers = threads.max(1).min(parts.len().max(1));
    let mut done: Vec<(usize, Option<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(part) = parts.get(i) else {
                            break;
                        };
                        if i > first_fail.load(Ordering::Relaxed) {
                            mine.push((i, None));
                            continue;
                        }
                        let (result, failed) = check(part);
                        if failed {
                            first_fail.fetch_min(i, Ordering::Relaxed);
                        }
                        mine.push((i, Some(result)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checker thread panicked"))
            .collect()
    });
    done.sort_unstable_by_key(|d| d.0);
    done.into_iter().map(|d| d.1).collect()
}

/// Is the sorted `a` a subset of the sorted `b`?
pub(crate) fn is_subset(a: &[u32], b: &[u32]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
        j += 1;
    }
    true
}
