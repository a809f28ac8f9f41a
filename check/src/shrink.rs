//! Shrinking a failure to the operations that explain it, for both
//! searches (the generic one, [`crate::search`], and the key-value one,
//! [`crate::linearizability`]): the stuck operation, the operations
//! pinned because they could have let it succeed, and as few others as
//! possible such that without the stuck operation the sub-history is
//! linearizable and with it not.
//!
//! Windows of the latest other operations (8, 32, 128, ...) are tried
//! first, so that a failure late in a long history is explained without
//! checking the whole history many times; the first window that explains
//! the failure is then cut down by delta debugging on complements. Every
//! check spends from one step budget.

/// What shrinking asks of a search: checking sub-histories.
pub(crate) trait SubHistories {
    /// Checks the sub-history `with` (indices into the history),
    /// spending search steps from `left`: `None` if they ran out,
    /// `Some(Err(stuck))` if it is not linearizable.
    fn run(&self, with: &[usize], left: &mut u64) -> Option<Result<(), usize>>;

    /// Whether operation `op` is read-only: leaving it out of a
    /// linearizable history leaves it linearizable.
    fn read_only(&self, op: usize) -> bool;

    /// A further condition on `with`, linearizable without `stuck`, to
    /// explain `stuck`'s failure (none by default).
    fn also_explains(&self, _with: &[usize], _stuck: usize, _left: &mut u64) -> Option<bool> {
        Some(true)
    }
}

/// Whether `pinned ∪ rest` is linearizable, meets
/// [`SubHistories::also_explains`], and is not linearizable with `stuck`.
/// `None` if the budget ran out.
pub(crate) fn explains<S: SubHistories + ?Sized>(
    search: &S,
    pinned: &[usize],
    rest: &[usize],
    stuck: usize,
    left: &mut u64,
) -> Option<bool> {
    let mut with: Vec<usize> = pinned.iter().chain(rest).copied().collect();
    if search.run(&with, left)?.is_err() {
        return Some(false);
    }
    explained_with(search, &mut with, stuck, left)
}

/// [`explains`] for `with`, known linearizable.
fn explained_with<S: SubHistories + ?Sized>(
    search: &S,
    with: &mut Vec<usize>,
    stuck: usize,
    left: &mut u64,
) -> Option<bool> {
    if !search.also_explains(with, stuck, left)? {
        return Some(false);
    }
    with.push(stuck);
    let failed = search.run(with, left)?.is_err();
    with.pop();
    Some(failed)
}

/// The operations of `others` that explain `stuck` with `pinned` (see the
/// [module documentation](self)), and whether no single chunk of them
/// can be left out (`false` when the budget ran out first). `None` if no
/// window explains it within `left` steps.
pub(crate) fn shrink<S: SubHistories + ?Sized>(
    search: &S,
    pinned: &[usize],
    others: &[usize],
    stuck: usize,
    left: &mut u64,
) -> Option<(Vec<usize>, bool)> {
    let mut window = 8usize;
    loop {
        let w = window.min(others.len());
        if let Some(start) =
            start_from_window(search, pinned, &others[others.len() - w..], stuck, left)
        {
            return Some(delta_debug(search, pinned, start, stuck, left));
        }
        if w == others.len() || *left == 0 {
            return None;
        }
        window = window.saturating_mul(4);
    }
}

/// `window` without the reads that cannot be linearized in it (they need
/// an operation from before it), if that explains `stuck` with `pinned`.
fn start_from_window<S: SubHistories + ?Sized>(
    search: &S,
    pinned: &[usize],
    window: &[usize],
    stuck: usize,
    left: &mut u64,
) -> Option<Vec<usize>> {
    let mut kept = window.to_vec();
    loop {
        let mut with: Vec<usize> = pinned.iter().chain(&kept).copied().collect();
        match search.run(&with, left)? {
            Ok(()) => return explained_with(search, &mut with, stuck, left)?.then_some(kept),
            Err(also_stuck) => {
                let at = kept.iter().position(|&op| op == also_stuck)?;
                if !search.read_only(also_stuck) {
                    return None;
                }
                kept.remove(at);
            }
        }
    }
}

/// Delta debugging on complements: removes chunks of `cur` while
/// [`explains`] holds. Returns the result and whether it is 1-minimal
/// (`false` when the budget ran out first).
fn delta_debug<S: SubHistories + ?Sized>(
    search: &S,
    pinned: &[usize],
    mut cur: Vec<usize>,
    stuck: usize,
    left: &mut u64,
) -> (Vec<usize>, bool) {
    let mut chunks = 2usize;
    loop {
        if cur.is_empty() {
            return (cur, true);
        }
        if *left == 0 {
            return (cur, false);
        }
        let chunks_now = chunks.min(cur.len());
        let chunk = cur.len().div_ceil(chunks_now);
        let mut reduced = false;
        let mut lo = 0;
        while lo < cur.len() {
            let hi = (lo + chunk).min(cur.len());
            let candidate: Vec<usize> = cur[..lo].iter().chain(&cur[hi..]).copied().collect();
            if explains(search, pinned, &candidate, stuck, left) == Some(true) {
                cur = candidate;
                chunks = (chunks_now - 1).max(2);
                reduced = true;
                break;
            }
            if *left == 0 {
                return (cur, false);
            }
            lo = hi;
        }
        if !reduced {
            if chunks_now >= cur.len() {
                return (cur, true);
            }
            chunks = (chunks_now * 2).min(cur.len());
        }
    }
}
