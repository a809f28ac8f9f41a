//! Running your own state machine and workload in the simulator.
//!
//! A replicated counter: every command adds a positive amount and answers
//! with the new total. Whatever the faults, two completed additions can
//! never see the same total, and every total must be a sum of amounts that
//! were really issued. The simulator adds sessions (exactly-once retries),
//! runs five nodes under crashes, partitions, disk loss and clock skew, and
//! checks Raft's safety properties and liveness; the workload checks the
//! counter's own invariant.
//!
//! ```text
//! cargo run --release -p concord-sim --example counter
//! ```

use std::collections::BTreeSet;

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord_sim::{OpResult, SimConfig, Simulation, Workload, WorkloadReport};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The state machine: a single u64.
#[derive(Default)]
struct Counter {
    total: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        let Ok(amount) = <[u8; 8]>::try_from(command) else {
            return Bytes::new(); // malformed: answer empty, change nothing
        };
        self.total += u64::from_le_bytes(amount);
        Bytes::copy_from_slice(&self.total.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.total.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bytes = <[u8; 8]>::try_from(snapshot).map_err(|_| RestoreError::new("want 8 bytes"))?;
        self.total = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// The workload: random additions; at the end, completed totals must be
/// distinct and no larger than the sum of everything issued.
#[derive(Default)]
struct Additions {
    issued_sum: u64,
    totals: BTreeSet<u64>,
    duplicate_total: Option<u64>,
    completed: u64,
}

impl Workload for Additions {
    fn next_command(
        &mut self,
        _client: usize,
        _now_ns: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<Bytes> {
        let amount: u64 = rng.gen_range(1..1000);
        self.issued_sum += amount;
        Some(Bytes::copy_from_slice(&amount.to_le_bytes()))
    }

    fn complete(&mut self, _client: usize, _now_ns: u64, result: OpResult<'_>) {
        if let OpResult::Ok(response) = result {
            self.completed += 1;
            let total = <[u8; 8]>::try_from(response)
                .map(u64::from_le_bytes)
                .unwrap_or(u64::MAX);
            if !self.totals.insert(total) {
                self.duplicate_total = Some(total);
            }
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let failure = match (self.duplicate_total, self.totals.last()) {
            (Some(total), _) => Some(format!("two additions both saw total {total}")),
            (None, Some(max)) if *max > self.issued_sum => Some(format!(
                "total {max} exceeds the {} ever added",
                self.issued_sum
            )),
            _ => None,
        };
        WorkloadReport {
            operations_checked: self.completed,
            failure,
        }
    }
}

fn main() {
    let mut failures = 0;
    for seed in 0..20 {
        let config = SimConfig {
            seed,
            nodes: 5,
            clients: 4,
            ..SimConfig::default()
        };
        let simulation =
            match Simulation::new(config, None, |_| Counter::default(), Additions::default()) {
                Ok(simulation) => simulation,
                Err(error) => {
                    eprintln!("bad configuration: {error}");
                    std::process::exit(2);
                }
            };
        let (report, workload) = simulation.run_with_workload();
        println!(
            "seed {seed:>2}: {:>5} additions completed, faults {:<60} hash {:016x} {}",
            workload.completed,
            report.plan.enabled().to_string(),
            report.trace_hash,
            match &report.failure {
                None => "ok".to_string(),
                Some(failure) => format!("FAILED: {failure}"),
            }
        );
        if !report.passed() {
            failures += 1;
            // Re-running `Simulation::new` with this seed and configuration
            // replays the run exactly (set `timeline: true` to see it).
            println!("  reproduce: seed {seed}, {:?}", report.config.bugs);
        }
    }
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
