//! A counting global allocator for measurements (cargo feature
//! `count-alloc`, off by default): it forwards every call to the system
//! allocator and counts the calls and the bytes asked for, so a benchmark
//! can divide them by the operations a server did. `concord-node` built
//! with the feature installs it and prints the counters to stderr on
//! `SIGUSR1` and at exit (`benches/runtime/cpu/breakdown.sh` reads them).
//!
//! Counting costs two relaxed atomic additions per call: a build with
//! the feature is for counting, not for timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting: install it with `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

/// The counters since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocCounts {
    /// Calls that handed out memory: `alloc`, `alloc_zeroed` and `realloc`.
    pub allocations: u64,
    /// Bytes those calls asked for (a `realloc` counts its new size).
    pub bytes: u64,
    /// Calls to `dealloc`.
    pub frees: u64,
}

impl AllocCounts {
    /// The counters now.
    pub fn now() -> AllocCounts {
        AllocCounts {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            bytes: BYTES.load(Ordering::Relaxed),
            frees: FREES.load(Ordering::Relaxed),
        }
    }

    /// The line `concord-node` prints, which the breakdown script parses:
    /// `count-alloc: allocations N bytes N frees N`.
    pub fn line(&self) -> String {
        format!(
            "count-alloc: allocations {} bytes {} frees {}",
            self.allocations, self.bytes, self.frees
        )
    }
}

fn note(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are this allocator's.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_counter() {
        let counts = AllocCounts {
            allocations: 3,
            bytes: 40,
            frees: 2,
        };
        assert_eq!(counts.line(), "count-alloc: allocations 3 bytes 40 frees 2");
    }

    #[test]
    fn counting_forwards_to_the_system_allocator() {
        let layout = Layout::from_size_align(64, 8).expect("layout");
        let before = AllocCounts::now();
        // SAFETY: a non-zero-sized layout; the pointer is freed with it.
        unsafe {
            let ptr = CountingAllocator.alloc(layout);
            assert!(!ptr.is_null());
            ptr.write_bytes(7, 64);
            assert_eq!(*ptr.add(63), 7);
            CountingAllocator.dealloc(ptr, layout);
        }
        let after = AllocCounts::now();
        assert!(after.allocations > before.allocations);
        assert!(after.bytes >= before.bytes + 64);
        assert!(after.frees > before.frees);
    }
}
