//! `node_step`: see `concord_sim::fuzzing::node_step` for the input layout and what is
//! checked. A returned violation is turned into a panic, which libFuzzer
//! reports as a crash and saves.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = concord_sim::fuzzing::node_step::run(data) {
        panic!("{violation}");
    }
});
