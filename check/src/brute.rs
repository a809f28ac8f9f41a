//! A brute-force linearizability checker for small histories: the
//! reference the search and the direct decisions are tested against.
//!
//! It tries every order straight from the definition: the next operation
//! may be any remaining one that no remaining completed operation
//! precedes (returned strictly before its call); a completed one must be
//! accepted by [`Model::step`]; an unknown one is either applied (to any
//! state [`Model::step_unknown`] gives) or dropped for good. The history is
//! linearizable when the completed operations run out. Exponential: keep
//! histories to a dozen operations.

use super::{Model, Op, Outcome};

/// Whether `ops` is linearizable with respect to `model`, by exhaustive
/// search. Failed operations are ignored; parts are not used (the whole
/// history is one object), so it also checks [`Model::part`].
pub fn linearizable<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>]) -> bool {
    let live: Vec<usize> = (0..ops.len())
        .filter(|&i| !matches!(ops[i].outcome, Outcome::Failed))
        .collect();
    let mut remaining: Vec<bool> = (0..ops.len()).map(|i| live.contains(&i)).collect();
    dfs(model, ops, &model.init(), &mut remaining)
}

/// Whether a completed operation remains: until none does, an order is
/// not finished.
fn completed_left<I, O>(ops: &[Op<I, O>], remaining: &[bool]) -> bool {
    (0..ops.len()).any(|i| remaining[i] && matches!(ops[i].outcome, Outcome::Ok(_)))
}

/// Whether remaining operation `x` may go next: no remaining completed
/// operation returned before its call.
fn may_go_next<I, O>(ops: &[Op<I, O>], remaining: &[bool], x: usize) -> bool {
    remaining[x]
        && !(0..ops.len()).any(|y| {
            y != x
                && remaining[y]
                && matches!(ops[y].outcome, Outcome::Ok(_))
                && ops[y].ret.is_some_and(|r| r < ops[x].call)
        })
}

fn dfs<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    state: &M::State,
    remaining: &mut [bool],
) -> bool {
    if !completed_left(ops, remaining) {
        return true;
    }
    for x in 0..ops.len() {
        if !may_go_next(ops, remaining, x) {
            continue;
        }
        remaining[x] = false;
        let found = match &ops[x].outcome {
            Outcome::Ok(out) => match model.step(state, &ops[x].input, out) {
                Some(next) => dfs(model, ops, &next, remaining),
                None => false,
            },
            // Leaving it out is never needed: the search ends when the
            // completed operations run out.
            Outcome::Unknown => model
                .step_unknown(state, &ops[x].input)
                .iter()
                .any(|next| dfs(model, ops, next, remaining)),
            Outcome::Failed => false,
        };
        remaining[x] = true;
        if found {
            return true;
        }
    }
    false
}

/// The states the object can be in just before operation `stuck`
/// returns, by exhaustive search: every state a valid order of the
/// operations called by then (all but `stuck`) can end in, where those
/// that returned strictly before it are completed and the others (those
/// returning at the same instant too) may or may not have taken effect. The
/// reference for [`super::Decision::Stuck`]'s states. Exponential, like
/// [`linearizable`]; `stuck` must have a return time.
pub fn states_before<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    stuck: usize,
) -> Vec<M::State> {
    let Some(t) = ops[stuck].ret else {
        return Vec::new();
    };
    // The history as of that instant.
    let cut: Vec<Op<M::Input, M::Output>> = ops
        .iter()
        .enumerate()
        .filter(|&(i, o)| i != stuck && o.call <= t && !matches!(o.outcome, Outcome::Failed))
        .map(|(_, o)| {
            let returned = o.ret.is_some_and(|r| r < t);
            match (&o.outcome, returned) {
                (Outcome::Ok(_), true) => o.clone(),
                _ => Op::unknown(o.client, o.input.clone(), o.call),
            }
        })
        .collect();
    let mut remaining = vec![true; cut.len()];
    let mut out: Vec<M::State> = Vec::new();
    ends(model, &cut, &model.init(), &mut remaining, &mut out);
    out
}

/// Collects into `out` every state a valid order of the remaining
/// operations can stop in once no completed one is left.
fn ends<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    state: &M::State,
    remaining: &mut [bool],
    out: &mut Vec<M::State>,
) {
    if !completed_left(ops, remaining) && !out.contains(state) {
        out.push(state.clone());
    }
    for x in 0..ops.len() {
        if !may_go_next(ops, remaining, x) {
            continue;
        }
        remaining[x] = false;
        match &ops[x].outcome {
            Outcome::Ok(o) => {
                if let Some(next) = model.step(state, &ops[x].input, o) {
                    ends(model, ops, &next, remaining, out);
                }
            }
            Outcome::Unknown => {
                for next in model.step_unknown(state, &ops[x].input) {
                    ends(model, ops, &next, remaining, out);
                }
            }
            Outcome::Failed => {}
        }
        remaining[x] = true;
    }
}
