#!/bin/sh
# Before/after CPU per committed put of two concord-node builds in one
# sitting: runs benches/runtime/cpu_breakdown.rs (plain windows only) on a
# fresh 3-node cluster of each build in turn, alternating which goes
# first each round, so load from elsewhere on the machine hits both.
#
#   benches/runtime/cpu/ab.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
#   CONCORD_BENCH_CLIENTS=64,256 CONCORD_BENCH_SECS=10 benches/runtime/cpu/ab.sh before/concord-node target/release/concord-node 2
#
# Copy the "before" binary out of target/ before building the "after"
# (cargo overwrites target/release/concord-node).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY [ROUNDS]" >&2; exit 2; }
cd "$(dirname "$0")/../../.."
root=$(pwd)
abs() { case $1 in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
before=$(abs "$1")
after=$(abs "$2")
rounds=${3:-2}
export CONCORD_BENCH_CLIENTS=${CONCORD_BENCH_CLIENTS:-64,256}
export CARGO_PROFILE_BENCH_DEBUG=line-tables-only
# CONCORD_BENCH_HARNESS=path: an already built cpu_breakdown executable
# (the load generator), instead of building it here.
harness=${CONCORD_BENCH_HARNESS:-}
if [ -z "$harness" ]; then
    nice -n 19 cargo bench -q -p concord-bench --bench cpu_breakdown --no-run
fi
run_bench() {
    if [ -n "$harness" ]; then
        (cd benches && nice -n 19 "$(abs "$harness")")
    else
        nice -n 19 cargo bench -q -p concord-bench --bench cpu_breakdown
    fi
}
round=1
while [ "$round" -le "$rounds" ]; do
    if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
    for which in $order; do
        if [ "$which" = before ]; then bin=$before; else bin=$after; fi
        echo "== round $round: $which ($bin); load: $(cut -d' ' -f1-3 /proc/loadavg)"
        CONCORD_BENCH_NODE_BIN="$bin" run_bench | grep -E '^(plain|LEADERSHIP)'
    done
    round=$((round + 1))
done
