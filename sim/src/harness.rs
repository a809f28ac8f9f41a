//! Testing your own service from `#[test]`: a range of seeds of your
//! simulation in a few lines, a failure printed with its seed, the one
//! command that replays it from `cargo test`, and its timeline; and a
//! proptest strategy that shrinks the fault plan and your workload's
//! parameters together.
//!
//! ```no_run
//! use concord_sim::harness::Harness;
//! use concord_services::{kv::Kv, ServiceMachine};
//! use concord_sim::services::kv::{KvWorkload, KvWorkloadConfig};
//! use concord_sim::SimConfig;
//!
//! #[test]
//! fn kv_survives_the_faults() {
//!     Harness::new(SimConfig { nodes: 3, ..SimConfig::default() })
//!         .seeds(0..50)
//!         .run(|_| ServiceMachine::<Kv>::new(), |config| {
//!             KvWorkload::new(KvWorkloadConfig::default(), config.clients)
//!         });
//! }
//! ```
//!
//! A failing seed panics with, for example:
//!
//! ```text
//! seed 7 failed: linearizability at 4.211s: NOT LINEARIZABLE ...
//! replay it: CONCORD_SIM_SEED=7 cargo test -p bank --test kv kv_survives_the_faults -- --exact --include-ignored --nocapture
//! timeline of seed 7 (last 300 of 5120 events; all of them when replayed):
//! ...
//! ```
//!
//! Environment variables the harness honours: `CONCORD_SIM_SEED=N` runs
//! seed `N` alone and prints its whole timeline even when it passes;
//! `CONCORD_SIM_SEEDS=A..B` runs that range instead of the test's own
//! (a longer sweep without editing the test).

use std::fmt;
use std::ops::Range;

use concord::state_machine::StateMachine;
use concord::NodeId;
#[cfg(feature = "proptest")]
use proptest::prelude::*;

use crate::engine::{format_time, RunReport, Simulation};
use crate::faults::FaultPlan;
use crate::workload::Workload;
use crate::SimConfig;

/// The variable that picks one seed to run (and replay in full).
pub const SEED_VAR: &str = "CONCORD_SIM_SEED";
/// The variable that replaces the test's seed range (`A..B`).
pub const SEEDS_VAR: &str = "CONCORD_SIM_SEEDS";

/// Timeline lines printed with a failure (the last ones).
const TIMELINE_TAIL: usize = 300;

/// Runs seeds of a simulation; see the module documentation.
#[derive(Clone, Debug)]
pub struct Harness {
    base: SimConfig,
    seeds: Range<u64>,
}

/// A seed that failed: what, how to replay it, and its timeline.
#[derive(Clone, Debug)]
pub struct SeedFailure {
    /// The seed.
    pub seed: u64,
    /// The run, replayed with its timeline recorded.
    pub report: RunReport,
    /// The command that replays it from `cargo test`.
    pub replay: String,
    /// Whether the whole timeline is printed (else the last lines).
    pub full_timeline: bool,
}

impl fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = self
            .report
            .failure
            .as_ref()
            .map_or("(no failure)".to_string(), |x| x.to_string());
        writeln!(f, "seed {} failed: {failure}", self.seed)?;
        // Only the test's own command: `concord-sim replay` would run the
        // built-in workload and state machine, not the test's.
        writeln!(f, "replay it: {}", self.replay)?;
        write_timeline(f, &self.report, self.full_timeline)
    }
}

fn write_timeline(f: &mut impl fmt::Write, report: &RunReport, full: bool) -> fmt::Result {
    let all = &report.timeline;
    let start = if full {
        0
    } else {
        all.len().saturating_sub(TIMELINE_TAIL)
    };
    if start > 0 {
        writeln!(
            f,
            "timeline of seed {} (last {} of {} events; all of them when replayed):",
            report.config.seed,
            all.len() - start,
            all.len()
        )?;
    } else {
        writeln!(
            f,
            "timeline of seed {} ({} events):",
            report.config.seed,
            all.len()
        )?;
    }
    for e in &all[start..] {
        let node = e.node.map_or("   ".to_string(), |n| format!("n{n}"));
        writeln!(f, "  {:>12} {node} {}", format_time(e.time_ns), e.text)?;
    }
    Ok(())
}

/// The `cargo test` command that runs the current test with `seed` alone:
/// its package, its test target (`--test NAME` for an integration test,
/// `--lib` for a unit test of the library), its name, and
/// `--include-ignored`, so that it runs an `#[ignore]`d test too (and any
/// other the same way).
pub fn replay_command(seed: u64) -> String {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "<package>".to_string());
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_string)
        .unwrap_or_else(|| "<test name>".to_string());
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| test_target(&package, &exe))
        .map(|target| format!(" {target}"))
        .unwrap_or_default();
    format!(
        "{SEED_VAR}={seed} cargo test -p {package}{target} {test} -- --exact --include-ignored --nocapture"
    )
}

/// The `cargo test` target flag of the test binary `exe` of `package`:
/// cargo names it `<target>-<16 hex digits>`, the library's target being
/// the package's name with `_` for `-`.
fn test_target(package: &str, exe: &std::path::Path) -> Option<String> {
    let stem = exe.file_stem()?.to_str()?;
    let (name, hash) = stem.rsplit_once('-')?;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if name == package.replace('-', "_") {
        Some("--lib".to_string())
    } else {
        Some(format!("--test {name}"))
    }
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("{SEEDS_VAR}={text:?}: write START..END"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{SEEDS_VAR}={text:?}: bad start"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{SEEDS_VAR}={text:?}: bad end"))?;
    if b <= a {
        return Err(format!("{SEEDS_VAR}={text:?} is empty"));
    }
    Ok(a..b)
}

impl Harness {
    /// Seeds `0..100` of `base` (its `seed` is replaced by each seed).
    pub fn new(base: SimConfig) -> Self {
        Harness {
            base,
            seeds: 0..100,
        }
    }

    /// The seeds to run.
    pub fn seeds(mut self, seeds: Range<u64>) -> Self {
        self.seeds = seeds;
        self
    }

    /// The seeds a run covers: the one `CONCORD_SIM_SEED` names, else the
    /// range `CONCORD_SIM_SEEDS` names, else the harness's own; and
    /// whether one seed was picked.
    pub fn seeds_to_run(&self) -> Result<(Range<u64>, bool), String> {
        if let Ok(seed) = std::env::var(SEED_VAR) {
            let seed: u64 = seed
                .trim()
                .parse()
                .map_err(|_| format!("{SEED_VAR}={seed:?} is not a seed"))?;
            return Ok((seed..seed + 1, true));
        }
        if let Ok(range) = std::env::var(SEEDS_VAR) {
            return Ok((parse_range(&range)?, false));
        }
        Ok((self.seeds.clone(), false))
    }

    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            ..self.base.clone()
        }
    }

    /// Runs `seed` (with `plan` if given, else the seed's own faults).
    pub fn run_seed<S, W>(
        &self,
        seed: u64,
        plan: Option<FaultPlan>,
        timeline: bool,
        make_sm: impl Fn(NodeId) -> S + Clone + 'static,
        make_workload: &impl Fn(&SimConfig) -> W,
    ) -> Result<RunReport, String>
    where
        S: StateMachine + 'static,
        W: Workload,
    {
        let mut config = self.config(seed);
        config.timeline = timeline;
        let workload = make_workload(&config);
        Ok(Simulation::new(config, plan, make_sm, workload)?.run())
    }

    /// Runs the seeds; the first failure, replayed with its timeline.
    pub fn first_failure<S, W>(
        &self,
        make_sm: impl Fn(NodeId) -> S + Clone + 'static,
        make_workload: impl Fn(&SimConfig) -> W,
    ) -> Result<Option<SeedFailure>, String>
    where
        S: StateMachine + 'static,
        W: Workload,
    {
        let (seeds, picked) = self.seeds_to_run()?;
        for seed in seeds {
            let report = self.run_seed(seed, None, picked, make_sm.clone(), &make_workload)?;
            if picked && report.passed() {
                let mut text = String::new();
                let _ = write_timeline(&mut text, &report, true);
                println!("seed {seed} passed\n{text}");
            }
            if !report.passed() {
                let report = if picked {
                    report
                } else {
                    self.run_seed(seed, None, true, make_sm.clone(), &make_workload)?
                };
                return Ok(Some(SeedFailure {
                    seed,
                    report,
                    replay: replay_command(seed),
                    full_timeline: picked,
                }));
            }
        }
        Ok(None)
    }

    /// Runs the seeds and panics at the first failure with its seed, the
    /// command that replays it and its timeline.
    pub fn run<S, W>(
        &self,
        make_sm: impl Fn(NodeId) -> S + Clone + 'static,
        make_workload: impl Fn(&SimConfig) -> W,
    ) where
        S: StateMachine + 'static,
        W: Workload,
    {
        match self.first_failure(make_sm, make_workload) {
            Ok(None) => {}
            Ok(Some(failure)) => panic!("{failure}"),
            Err(message) => panic!("bad harness configuration: {message}"),
        }
    }

    /// One proptest case (feature `proptest`): the run of `scenario` (its
    /// seed, fault plan and workload parameters), a test failure with the
    /// replay data if it fails. Use it with [`scenario`] so that proptest shrinks the fault
    /// plan and the workload together.
    #[cfg(feature = "proptest")]
    pub fn check_scenario<S, W, P: fmt::Debug>(
        &self,
        scenario: &Scenario<P>,
        make_sm: impl Fn(NodeId) -> S + Clone + 'static,
        make_workload: impl Fn(&SimConfig, &P) -> W,
    ) -> Result<(), TestCaseError>
    where
        S: StateMachine + 'static,
        W: Workload,
    {
        let make = |config: &SimConfig| make_workload(config, &scenario.workload);
        let report = self
            .run_seed(
                scenario.seed,
                Some(scenario.plan.clone()),
                false,
                make_sm,
                &make,
            )
            .map_err(TestCaseError::fail)?;
        match &report.failure {
            None => Ok(()),
            Some(failure) => Err(TestCaseError::fail(format!(
                "{failure}\nworkload: {:?}\nfault plan ({} events; to replay it, read it with serde_json into a FaultPlan and run Harness::check_scenario on this seed, plan and workload):\n{}",
                scenario.workload,
                scenario.plan.events.len(),
                serde_json::to_string(&scenario.plan).unwrap_or_default()
            ))),
        }
    }
}

/// A seed, a fault plan and a workload's parameters, generated together.
#[derive(Clone, Debug)]
pub struct Scenario<P> {
    /// The seed (network, disk and client randomness).
    pub seed: u64,
    /// The faults.
    pub plan: FaultPlan,
    /// The workload's parameters.
    pub workload: P,
}

/// Scenarios for a cluster of `nodes`, with at most `max_faults` timed
/// faults in the first `chaos_ns`, and workload parameters from
/// `workload`. On failure proptest shrinks both: fewer and milder faults,
/// and a smaller workload (as far as `workload`'s own strategy shrinks).
/// Feature `proptest`.
#[cfg(feature = "proptest")]
pub fn scenario<P: Strategy>(
    nodes: usize,
    chaos_ns: u64,
    max_faults: usize,
    workload: P,
) -> impl Strategy<Value = Scenario<P::Value>> {
    (
        any::<u64>(),
        crate::strategy::fault_plan(nodes, chaos_ns, max_faults),
        workload,
    )
        .prop_map(|(seed, plan, workload)| Scenario {
            seed,
            plan,
            workload,
        })
}
