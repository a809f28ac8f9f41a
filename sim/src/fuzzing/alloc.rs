//! What a decoder asks the allocator for: a binary that installs
//! [`LargestAllocation`] as its global allocator (the corpus replay test
//! does; a cargo-fuzz target may) lets the targets check that no length
//! field makes a decoder allocate beyond what its input could hold.
//!
//! Without the allocator installed, [`largest_during`] measures nothing
//! and the targets skip the check.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Violation;

/// The system allocator, noting on each thread the largest single
/// allocation (or reallocation) asked for while [`largest_during`] runs
/// there.
#[derive(Debug, Default)]
pub struct LargestAllocation;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The largest allocation of the watched closure on this thread;
    /// `None` when nothing is watched. Const-initialised, without a
    /// destructor: the allocator may touch it at any time.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(bytes: usize) {
    let _ = LARGEST.try_with(|largest| {
        if let Some(seen) = largest.get() {
            largest.set(Some(seen.max(bytes)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only a thread-local `Cell` and allocates nothing.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

impl LargestAllocation {
    /// Called once by a binary that installed the allocator, so the
    /// targets know their measurements mean something.
    pub fn installed() {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` and returns its result with the largest single allocation it
/// asked for on this thread, or `None` when [`LargestAllocation`] is not
/// the installed allocator.
pub fn largest_during<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let outer = LARGEST.with(|largest| largest.replace(Some(0)));
    let result = f();
    let seen = LARGEST.with(|largest| largest.replace(outer));
    if let (Some(outer), Some(seen)) = (outer, seen) {
        // A nested watch leaves the outer one's maximum intact.
        note(outer.max(seen));
    }
    (result, seen.filter(|_| INSTALLED.load(Ordering::Relaxed)))
}

/// Most bytes a decoder may ask for at once for an input of
/// `input_bytes`: serde's first allocation for a sequence (at most 1 MiB,
/// whatever length it announces) plus room proportional to the input
/// (a decoded value may take several times its encoding in memory: an
/// entry of a few bytes on the wire is tens of bytes in a vector).
pub fn allocation_bound_bytes(input_bytes: usize) -> usize {
    (1 << 20) + 64 * 1024 + 32 * input_bytes
}

/// Runs `decode` on an input of `input_bytes` and fails if it asked for
/// more than [`allocation_bound_bytes`] at once.
pub fn checked<R>(
    target: &'static str,
    what: &str,
    input_bytes: usize,
    decode: impl FnOnce() -> R,
) -> Result<R, Violation> {
    let (result, largest) = largest_during(decode);
    let bound = allocation_bound_bytes(input_bytes);
    match largest {
        Some(largest) if largest > bound => Err(Violation::new(
            target,
            format!(
                "{what} asked for {largest} bytes at once from an input of {input_bytes} bytes \
                 (at most {bound}): a length field was trusted before the bytes it announces"
            ),
        )),
        _ => Ok(result),
    }
}
