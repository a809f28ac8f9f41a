//! `legacy_upgrade`: see `concord_sim::fuzzing::legacy_upgrade` for the input layout and what is
//! checked. A returned violation is turned into a panic, which libFuzzer
//! reports as a crash and saves.
#![no_main]

#[path = "largest_allocation.rs"]
mod largest_allocation;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    largest_allocation::check(data, concord_sim::fuzzing::legacy_upgrade::run);
});
