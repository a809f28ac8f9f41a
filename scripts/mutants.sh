#!/usr/bin/env bash
# Mutation testing of the core's safety code, judged by the simulator alone
# The configuration is `.cargo/mutants.toml`; the judge
# is `tests/mutation_judge.rs`; see sim/mutation/README.md.
#
# Usage: scripts/mutants.sh [--shard K/N] [--output DIR] [cargo-mutants options...]
#
#   --shard K/N   run only shard K of N (K counts from 0), so a run can be
#                 split across machines or CI jobs; the shards' outcomes
#                 are merged by sim/mutation/report.py
#   --output DIR  where mutants.out/ goes (default sim/mutation/out/all or
#                 sim/mutation/out/shard-K-of-N, ignored by git)
#
# Anything else is passed to cargo-mutants, e.g. `--list`, `--jobs 2`,
# `--sharding round-robin`, `--shuffle`, `-F REGEX`. Run it under `nice`
# on a shared machine: every mutant is a build and a seed sweep.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
    scripts/install-mutants.sh
fi

shard=""
output=""
passthrough=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --shard)
            shard="${2:?--shard needs K/N}"
            shift 2
            ;;
        --shard=*)
            shard="${1#--shard=}"
            shift
            ;;
        --output)
            output="${2:?--output needs a directory}"
            shift 2
            ;;
        --output=*)
            output="${1#--output=}"
            shift
            ;;
        *)
            passthrough+=("$1")
            shift
            ;;
    esac
done

shard_args=()
if [[ -n "$shard" ]]; then
    if [[ ! "$shard" =~ ^[0-9]+/[0-9]+$ ]]; then
        echo "--shard $shard: expected K/N, e.g. 0/4" >&2
        exit 2
    fi
    shard_args=(--shard "$shard")
    output="${output:-sim/mutation/out/shard-${shard%/*}-of-${shard#*/}}"
fi
output="${output:-sim/mutation/out/all}"
mkdir -p "$output"

# One sweep thread per mutant: parallelism comes from cargo-mutants' own
# `--jobs` or from shards, each with its own build directory.
export CONCORD_JUDGE_JOBS="${CONCORD_JUDGE_JOBS:-1}"
exec cargo mutants --output "$output" "${shard_args[@]}" "${passthrough[@]}"
