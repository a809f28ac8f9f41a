//! Shrinking a failing run's fault plan by delta debugging.
//!
//! Starting from the plan a failing seed drew, [`shrink`] removes timed
//! fault events (ddmin: halves, quarters, ... then single events) and then
//! lowers the per-message rates and clock skews, keeping each change only
//! if the run still fails with the same [`FailureKind`](crate::FailureKind). The seed stays the
//! same, so the network, disk, client and workload draws come from the
//! same random streams.

use crate::config::SimConfig;
use crate::engine::{Failure, RunReport};
use crate::faults::{FaultPlan, TimedFault};
use crate::runner::run_kv;

/// The outcome of [`shrink`].
#[derive(Clone, Debug)]
pub struct ShrinkResult {
    /// The plan the seed drew (or the one given).
    pub original: FaultPlan,
    /// The smallest plan found that still fails the same way.
    pub minimal: FaultPlan,
    /// The failure of the minimal plan.
    pub failure: Failure,
    /// Runs spent.
    pub runs: u64,
}

/// Shrinks the fault plan of a failing run. Returns `Ok(None)` when the run
/// does not fail. At most `max_runs` runs are spent.
pub fn shrink(
    config: &SimConfig,
    plan: Option<FaultPlan>,
    max_runs: u64,
) -> Result<Option<ShrinkResult>, String> {
    shrink_with(config, plan, max_runs, &|config, plan| {
        run_kv(config, Some(plan.clone()))
    })
}

/// [`shrink`] with a custom runner (e.g. a user's own state machine and
/// workload built with [`crate::Simulation`]).
pub fn shrink_with(
    config: &SimConfig,
    plan: Option<FaultPlan>,
    max_runs: u64,
    run: &dyn Fn(&SimConfig, &FaultPlan) -> Result<RunReport, String>,
) -> Result<Option<ShrinkResult>, String> {
    let config = SimConfig {
        timeline: false,
        ..config.clone()
    };
    let original = match plan {
        Some(plan) => plan,
        None => crate::engine::plan_for(&config),
    };
    let first = run(&config, &original)?;
    let Some(failure) = first.failure else {
        return Ok(None);
    };
    let kind = failure.kind;
    let mut state = Shrinker {
        config,
        run,
        runs: 1,
        max_runs,
        kind,
        best: original.clone(),
        failure,
    };

    state.ddmin_events();
    state.lower_rates();
    state.ddmin_events();
    Ok(Some(ShrinkResult {
        original,
        minimal: state.best,
        failure: state.failure,
        runs: state.runs,
    }))
}

struct Shrinker<'a> {
    config: SimConfig,
    run: &'a dyn Fn(&SimConfig, &FaultPlan) -> Result<RunReport, String>,
    runs: u64,
    max_runs: u64,
    kind: crate::engine::FailureKind,
    best: FaultPlan,
    failure: Failure,
}

impl Shrinker<'_> {
    /// Tries `candidate`; adopts it if it fails the same way.
    fn try_plan(&mut self, candidate: FaultPlan) -> bool {
        if self.runs >= self.max_runs {
            return false;
        }
        self.runs += 1;
        match (self.run)(&self.config, &candidate) {
            Ok(report) => match report.failure {
                Some(failure) if failure.kind == self.kind => {
                    self.best = candidate;
                    self.failure = failure;
                    true
                }
                _ => false,
            },
            Err(_) => false,
        }
    }

    fn ddmin_events(&mut self) {
        let mut chunks = 2usize;
        while !self.best.events.is_empty() && self.runs < self.max_runs {
            let events = self.best.events.clone();
            let length = events.len();
            let chunks_now = chunks.min(length);
            let size = length.div_ceil(chunks_now);
            let mut reduced = false;
            // Try removing each chunk (keeping the complement).
            for start in (0..length).step_by(size) {
                let end = (start + size).min(length);
                let complement: Vec<TimedFault> = events[..start]
                    .iter()
                    .chain(events[end..].iter())
                    .cloned()
                    .collect();
                let candidate = FaultPlan {
                    events: complement,
                    ..self.best.clone()
                };
                if self.try_plan(candidate) {
                    chunks = (chunks_now - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                if chunks_now >= length {
                    break;
                }
                chunks = (chunks_now * 2).min(length);
            }
        }
    }

    fn lower_rates(&mut self) {
        type Field = fn(&mut FaultPlan) -> &mut f64;
        let fields: [Field; 6] = [
            |plan| &mut plan.rates.loss,
            |plan| &mut plan.rates.duplicate,
            |plan| &mut plan.rates.reorder,
            |plan| &mut plan.rates.tail,
            |plan| &mut plan.rates.torn,
            |plan| &mut plan.rates.stale,
        ];
        for field in fields {
            let mut candidate = self.best.clone();
            if *field(&mut candidate) == 0.0 {
                continue;
            }
            *field(&mut candidate) = 0.0;
            if self.try_plan(candidate) {
                continue;
            }
            for _ in 0..3 {
                let mut candidate = self.best.clone();
                *field(&mut candidate) /= 2.0;
                if !self.try_plan(candidate) {
                    break;
                }
            }
        }
        if self.best.rates.fsync_max_ns > 0 {
            let mut candidate = self.best.clone();
            candidate.rates.fsync_max_ns = 0;
            self.try_plan(candidate);
        }
        if self.best.clock_skew_ppm.iter().any(|skew| *skew != 0) {
            let mut candidate = self.best.clone();
            candidate
                .clock_skew_ppm
                .iter_mut()
                .for_each(|skew| *skew = 0);
            if !self.try_plan(candidate) {
                for node in 0..self.best.clock_skew_ppm.len() {
                    if self.best.clock_skew_ppm[node] != 0 {
                        let mut candidate = self.best.clone();
                        candidate.clock_skew_ppm[node] = 0;
                        self.try_plan(candidate);
                    }
                }
            }
        }
    }
}
