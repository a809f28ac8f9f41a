//! Writes the fuzz targets' seed corpus (real encoded data, see
//! `concord_sim::fuzzing::corpus`) to `<dir>/<target>/<name>` (default
//! dir: `fuzz/corpus`, relative to the current directory):
//!
//! ```sh
//! cargo run -p concord-sim --example fuzz_seed_corpus -- fuzz/corpus
//! ```
//!
//! Files are named after what they hold; an existing file of the same
//! name is overwritten, other files (inputs the fuzzers found) are kept.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".to_string()),
    );
    for target in concord_sim::fuzzing::TARGETS {
        let seeds = concord_sim::fuzzing::corpus::seeds(target);
        assert!(!seeds.is_empty(), "target {target} has no seed inputs");
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for (name, bytes) in &seeds {
            // A seed must be handled by its own target: a generator bug
            // or a real bug, either way not something to commit.
            if let Some(Err(violation)) = concord_sim::fuzzing::run(target, bytes) {
                panic!("seed {target}/{name}: {violation}");
            }
            std::fs::write(target_dir.join(name), bytes)?;
        }
        println!(
            "{target}: {} seed files in {}",
            seeds.len(),
            target_dir.display()
        );
    }
    Ok(())
}
