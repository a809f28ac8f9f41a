#!/usr/bin/env bash
# Installs cargo-fuzz (the `cargo fuzz` subcommand) from crates.io with its
# locked dependency versions. No nightly toolchain is needed: `fuzz/run.sh`
# runs every target with `-s none` (no sanitizer), which builds on stable.
set -euo pipefail

if cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz already installed: $(cargo fuzz --version)"
    exit 0
fi
cargo install --locked cargo-fuzz
cargo fuzz --version
