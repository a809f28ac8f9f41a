//! `codec`: see `concord_sim::fuzzing::codec` for the input layout and what is
//! checked. A returned violation is turned into a panic, which libFuzzer
//! reports as a crash and saves.
#![no_main]

use concord_sim::fuzzing::alloc::LargestAllocation;
use libfuzzer_sys::fuzz_target;

// Lets the target check that no length field makes a decoder allocate
// beyond what its input holds.
#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

fuzz_target!(|data: &[u8]| {
    LargestAllocation::installed();
    if let Err(violation) = concord_sim::fuzzing::codec::run(data) {
        panic!("{violation}");
    }
});
