//! Proptest strategies over fault plans, so that users can property-test
//! their own state machines under the simulator's faults, with proptest's
//! shrinking (removing fault events, lowering rates) on failure.
//!
//! ```no_run
//! use concord_sim::strategy::fault_plan;
//! use concord_services::{kv::Kv, ServiceMachine};
//! use concord_sim::services::kv::{KvWorkload, KvWorkloadConfig};
//! use concord_sim::{SimConfig, Simulation};
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(16))]
//!     #[test]
//!     fn kv_survives_any_fault_plan(seed in any::<u64>(), plan in fault_plan(3, 3_000_000_000, 12)) {
//!         let config = SimConfig { seed, nodes: 3, chaos_ns: 3_000_000_000, ..SimConfig::default() };
//!         let workload = KvWorkload::new(KvWorkloadConfig::default(), config.clients);
//!         let report = Simulation::new(config, Some(plan), |_| ServiceMachine::<Kv>::new(), workload)
//!             .expect("valid configuration")
//!             .run();
//!         prop_assert!(report.passed(), "{:?}", report.failure);
//!     }
//! }
//! ```

use proptest::collection::vec;
use proptest::prelude::*;

use concord::NodeId;

use crate::faults::{Fault, FaultPlan, Partition, Rates, TimedFault};

fn subset(nodes: usize) -> impl Strategy<Value = Vec<NodeId>> {
    let full: u16 = (1u16 << nodes) - 1;
    (1u16..full.max(2)).prop_map(move |mask| {
        (0..nodes)
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| bit as NodeId + 1)
            .collect()
    })
}

/// One fault of any kind on a cluster of `nodes` (1 to 7) nodes.
pub fn fault(nodes: usize) -> impl Strategy<Value = Fault> {
    let nodes = nodes.clamp(1, 7);
    let node = 1..=nodes as NodeId;
    let rest = |side: &[NodeId], nodes: usize| -> Vec<NodeId> {
        (1..=nodes as NodeId)
            .filter(|id| !side.contains(id))
            .collect()
    };
    prop_oneof![
        3 => node.clone().prop_map(|node| Fault::Crash { node }),
        3 => node.clone().prop_map(|node| Fault::Restart { node }),
        2 => node.clone().prop_map(|node| Fault::Pause { node }),
        2 => node.clone().prop_map(|node| Fault::Resume { node }),
        2 => subset(nodes).prop_map(|side| Fault::Partition(Partition::Split { side })),
        1 => subset(nodes).prop_map(move |from| {
            let to = rest(&from, nodes);
            Fault::Partition(Partition::OneWay { from, to })
        }),
        1 => (subset(nodes), node).prop_map(move |(left, bridge)| {
            let left: Vec<NodeId> = left.into_iter().filter(|id| *id != bridge).collect();
            let right: Vec<NodeId> = rest(&left, nodes).into_iter().filter(|id| *id != bridge).collect();
            Fault::Partition(Partition::Bridge { left, bridge, right })
        }),
        3 => Just(Fault::HealNetwork),
        2 => (1_000_000u64..3_000_000_000).prop_map(|down_ns| Fault::CrashLeader { down_ns }),
        2 => (1_000_000u64..3_000_000_000).prop_map(|length_ns| Fault::IsolateLeader { length_ns }),
    ]
}

/// Per-message and per-write fault rates; shrinks towards no faults.
pub fn rates() -> impl Strategy<Value = Rates> {
    (
        0.0..0.2f64,
        0.0..0.1f64,
        0.0..0.3f64,
        0.0..0.05f64,
        0.0..1.0f64,
        0u64..40_000_000,
        1_000_000u64..30_000_000,
    )
        .prop_map(
            |(loss, duplicate, reorder, tail, torn, fsync_max_ns, reorder_max_ns)| Rates {
                loss,
                duplicate,
                reorder,
                reorder_max_ns,
                tail,
                tail_mean_ns: 100_000_000,
                fsync_max_ns,
                torn,
                stale: 0.0,
                stale_max_ns: 0,
            },
        )
}

/// A whole fault plan: rates, clock skews of up to ±20%, and up to
/// `max_events` timed faults in `0..chaos_ns`. Shrinking removes events,
/// lowers rates and skews.
pub fn fault_plan(
    nodes: usize,
    chaos_ns: u64,
    max_events: usize,
) -> impl Strategy<Value = FaultPlan> {
    let nodes = nodes.clamp(1, 7);
    let chaos_ns = chaos_ns.max(1);
    let event = (0..chaos_ns, fault(nodes)).prop_map(|(at_ns, fault)| TimedFault { at_ns, fault });
    (
        rates(),
        vec(-200_000i64..200_000, nodes),
        vec(event, 0..=max_events),
    )
        .prop_map(|(rates, clock_skew_ppm, mut events)| {
            events.sort_by_key(|event| event.at_ns);
            FaultPlan {
                rates,
                clock_skew_ppm,
                events,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn generated_plans_are_valid() {
        let mut runner = TestRunner::deterministic();
        for nodes in [1, 3, 5, 7] {
            let strategy = fault_plan(nodes, 5_000_000_000, 20);
            for _ in 0..50 {
                let plan = strategy
                    .new_tree(&mut runner)
                    .map(|tree| tree.current())
                    .unwrap();
                plan.validate(nodes).unwrap();
                assert!(plan
                    .events
                    .windows(2)
                    .all(|pair| pair[0].at_ns <= pair[1].at_ns));
            }
        }
    }
}
