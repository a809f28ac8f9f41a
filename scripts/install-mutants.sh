#!/usr/bin/env bash
# Installs cargo-mutants, the mutation-testing driver used by
# scripts/mutants.sh. `--locked` builds it with the
# dependency versions its authors tested, so the install is reproducible.
# Set CARGO_MUTANTS_VERSION to pin a version; by default the latest.
set -euo pipefail

if cargo mutants --version >/dev/null 2>&1 && [[ -z "${CARGO_MUTANTS_VERSION:-}" ]]; then
    echo "cargo-mutants already installed: $(cargo mutants --version)"
    exit 0
fi

version_args=()
if [[ -n "${CARGO_MUTANTS_VERSION:-}" ]]; then
    version_args=(--version "$CARGO_MUTANTS_VERSION")
fi
cargo install --locked cargo-mutants "${version_args[@]}"
cargo mutants --version
