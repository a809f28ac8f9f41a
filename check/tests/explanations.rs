//! A failure's explanation keeps the operations that made a read stale,
//! whatever the model: a model of the user's own that does not implement
//! `pins` gets the writes named, not "a sub-history of 1 operations" (the
//! lone read, not linearizable only because the initial state differs).

use concord_check::{check, Model, Op, Verdict};

/// A register of the user's own: `Some(v)` writes `v`, `None` reads.
/// Only the methods `Model` requires.
struct Cell;

impl Model for Cell {
    type State = u32;
    type Input = Option<u32>;
    type Output = u32;

    fn name(&self) -> String {
        "cell".into()
    }
    fn init(&self) -> u32 {
        0
    }
    fn step(&self, state: &u32, input: &Option<u32>, output: &u32) -> Option<u32> {
        match input {
            Some(v) => Some(*v),
            None => (output == state).then_some(*state),
        }
    }
    fn step_unknown(&self, state: &u32, input: &Option<u32>) -> Vec<u32> {
        vec![input.unwrap_or(*state)]
    }
}

fn write(client: u64, v: u32, call: u64, ret: u64) -> Op<Option<u32>, u32> {
    Op::ok(client, Some(v), call, ret, 0)
}

fn read(client: u64, v: u32, call: u64, ret: u64) -> Op<Option<u32>, u32> {
    Op::ok(client, None, call, ret, v)
}

#[test]
fn a_stale_read_is_explained_with_the_writes_that_made_it_stale() {
    // Writes of 1 to 6 one after another, each read back; then a write of
    // 7 and, after it returned, a read of 6: stale.
    let mut ops = Vec::new();
    for v in 1..=6u32 {
        let t = u64::from(v) * 100;
        ops.push(write(1, v, t, t + 10));
        ops.push(read(2, v, t + 20, t + 30));
    }
    let stale_source = ops.len() - 2;
    ops.push(write(1, 7, 700, 710));
    let overwrite = ops.len() - 1;
    ops.push(read(2, 6, 720, 730));
    let stuck = ops.len() - 1;

    let verdict = check(&Cell, &ops);
    let Verdict::NotLinearizable(failure) = &verdict else {
        panic!("expected a failure, got {verdict}");
    };
    assert_eq!(failure.stuck_index, stuck);
    assert!(failure.explained, "{failure}");
    // The write of 6 (what the read saw) and the write of 7 (what made it
    // stale) are kept, and little else.
    assert!(
        failure.sub_history.contains(&stale_source),
        "the write the read saw: {failure}"
    );
    assert!(
        failure.sub_history.contains(&overwrite),
        "the write that made it stale: {failure}"
    );
    assert_eq!(failure.sub_history.len(), 3, "{failure}");
    // And the sub-history printed is itself not linearizable.
    let sub: Vec<Op<Option<u32>, u32>> = failure
        .sub_history
        .iter()
        .map(|&i| ops[i].clone())
        .collect();
    assert!(!check(&Cell, &sub).is_ok());
}

#[test]
fn a_read_of_a_value_never_written_is_still_explained() {
    // No operation produced 9: the explanation cannot keep its source and
    // falls back to the smallest sub-history that fails.
    let ops = vec![write(1, 1, 0, 10), read(2, 1, 20, 30), read(2, 9, 40, 50)];
    let verdict = check(&Cell, &ops);
    let Verdict::NotLinearizable(failure) = &verdict else {
        panic!("expected a failure, got {verdict}");
    };
    assert_eq!(failure.stuck_index, 2);
    assert!(failure.explained, "{failure}");
    assert_eq!(failure.sub_history, vec![2], "{failure}");
}
