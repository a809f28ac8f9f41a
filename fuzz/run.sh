#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a given time each, one
# after the other, on the stable toolchain, and prints libFuzzer's final
# statistics per target.
#
#   fuzz/run.sh <seconds-per-target> [target...]
#
# Needs cargo-fuzz (scripts/install-fuzz.sh). `-s none` builds without a
# sanitizer: sanitizers need a nightly compiler, coverage-guided fuzzing
# does not. `-a` keeps debug assertions on, so the core's invariant
# assertions fire as crashes. Inputs that find new coverage go to
# fuzz/work/<target>/ (not committed); the committed seed corpus
# fuzz/corpus/<target>/ is only read. A crash is saved under
# fuzz/artifacts/<target>/; minimise it with
#   cargo fuzz tmin -s none -a <target> <file>
# and, once fixed, copy it into fuzz/corpus/<target>/ so that the replay
# test (sim/tests/fuzz_corpus.rs) checks it on every `cargo test`.
set -euo pipefail

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 <seconds-per-target> [target...]" >&2
    exit 2
fi
seconds=$1
shift
cd "$(dirname "$0")"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(frame codec wal_recovery legacy_upgrade session node_step)
fi

# wal_recovery (its snapshot files) and legacy_upgrade write and fsync a
# scratch directory per input in the temporary directory: on a
# RAM-backed one they run many times faster.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "logs"
    log="logs/$target-$(date -u +%Y%m%dT%H%M%S).log"
    echo "== $target: ${seconds}s (log: fuzz/$log)"
    if cargo fuzz run -s none -a "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH or error (see fuzz/$log and fuzz/artifacts/$target/)"
        status=1
    fi
    # libFuzzer's last status line (`#N DONE cov: .. ft: ..`) and its
    # final statistics.
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    echo "== $target: $result"
done
exit $status
