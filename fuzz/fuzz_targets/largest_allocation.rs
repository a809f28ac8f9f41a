//! What the targets whose decoders take a length from their input share
//! (`codec`, `session`, `wal_recovery`, `legacy_upgrade`): the allocator that records the
//! largest allocation, so a target can check that no length field makes
//! a decoder allocate beyond what its input holds.
//!
//! Included by each such target with
//! `#[path = "largest_allocation.rs"] mod largest_allocation;`.

use concord_sim::fuzzing::alloc::LargestAllocation;
use concord_sim::fuzzing::Violation;

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs the target `run` on one input with the allocator installed; a
/// returned violation is turned into a panic, which libFuzzer reports as
/// a crash and saves.
pub fn check(data: &[u8], run: fn(&[u8]) -> Result<(), Violation>) {
    LargestAllocation::installed();
    if let Err(violation) = run(data) {
        panic!("{violation}");
    }
}
