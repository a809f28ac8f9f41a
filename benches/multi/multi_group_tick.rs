//! Cost of the multi-group layer per tick with 10,000 groups on each of
//! 3 nodes, in memory, driven in one thread: every group quiesced, and
//! every group awake (quiescence off). One iteration is one tick of the
//! whole cluster: each node's tick and flush, every frame delivered and
//! answered, every persist batch reported durable at once.
//!
//! `cargo bench -p concord-bench --bench multi_group_tick`. On a shared machine
//! compare instruction counts (`valgrind --tool=callgrind`), not times.

use std::collections::VecDeque;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use concord::multi::{MultiAction, MultiInput, MultiNode};
use concord::{Action, Input};

mod in_memory;
use in_memory::multi_nodes;

const NODES: u64 = 3;
const GROUPS: u64 = 10_000;

struct Cluster {
    nodes: Vec<MultiNode>,
}

impl Cluster {
    fn new(quiesce: bool) -> Cluster {
        let nodes = multi_nodes(NODES, GROUPS, quiesce.then_some(4));
        Cluster { nodes }
    }

    /// One tick of every node, and everything it sets off.
    fn tick(&mut self) {
        let mut work: VecDeque<(usize, MultiInput)> = (0..self.nodes.len())
            .map(|at| (at, MultiInput::Tick))
            .collect();
        let mut out = Vec::new();
        while let Some((at, input)) = work.pop_front() {
            self.nodes[at].step(input, &mut out).expect("valid input");
            loop {
                if out.is_empty() {
                    self.nodes[at].flush(&mut out);
                    if out.is_empty() {
                        break;
                    }
                }
                for action in std::mem::take(&mut out) {
                    match action {
                        MultiAction::Send(frame) => {
                            work.push_back(((frame.to - 1) as usize, MultiInput::Receive(frame)))
                        }
                        MultiAction::Persist(batch) => {
                            self.nodes[at]
                                .step(MultiInput::Persisted(batch.id), &mut out)
                                .expect("known batch");
                        }
                        MultiAction::Group {
                            group,
                            action: Action::Apply { entries },
                        } => {
                            let last = entries.last().expect("non-empty").index;
                            let input = Input::Applied(last);
                            self.nodes[at]
                                .step(MultiInput::Group { group, input }, &mut out)
                                .expect("hosted");
                        }
                        MultiAction::Group { .. } => {}
                    }
                }
            }
        }
    }

    fn settle(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.tick();
        }
    }
}

fn per_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("multi_group_tick_10k");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (name, quiesce) in [("quiesced", true), ("awake", false)] {
        let mut cluster = Cluster::new(quiesce);
        cluster.settle(300);
        if quiesce {
            assert!(cluster.nodes.iter().all(|node| node.awake_count() == 0));
        }
        group.bench_function(name, |b| b.iter(|| cluster.tick()));
    }
    group.finish();
}

criterion_group!(benches, per_tick);
criterion_main!(benches);
