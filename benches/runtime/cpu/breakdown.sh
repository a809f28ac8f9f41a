#!/bin/sh
# Where the server CPU of one committed put goes, on a
# 3-node `concord-node` cluster on loopback with fsync on. Runs
# `benches/runtime/cpu_breakdown.rs` twice:
#
#   1. servers built with feature `count-alloc`: allocations and bytes
#      allocated per put (the counting costs CPU, so nothing else is
#      taken from this build);
#   2. servers built without it: CPU and context switches per put;
#   3. the same build with a 50 ms tick: `strace -c -f` per put by system
#      call, then a `perf record` of the leader and one follower, split
#      by stage with benches/runtime/cpu/stages.py.
#
# Both builds keep line tables (CARGO_PROFILE_BENCH_DEBUG=line-tables-only)
# so perf can name inlined functions; debug info does not change the
# machine code. Needs strace and perf (run as root, or with
# kernel.perf_event_paranoid <= 1 and ptrace allowed).
#
#   benches/runtime/cpu/breakdown.sh                      # 1, 64 and 256 clients
#   CONCORD_BENCH_CLIENTS=64 CONCORD_BENCH_SECS=5 benches/runtime/cpu/breakdown.sh
#
# Output: the two runs' lines, then a stage table per client count;
# strace summaries and perf data under $CONCORD_BENCH_OUT (default
# target/cpu-breakdown of the workspace).
set -eu
cd "$(dirname "$0")/../../.."
root=$(pwd)
out=${CONCORD_BENCH_OUT:-$root/target/cpu-breakdown}
case $out in /*) ;; *) out=$root/$out ;; esac
mkdir -p "$out/perf"
export CONCORD_BENCH_OUT="$out"
export CARGO_PROFILE_BENCH_DEBUG=line-tables-only
clients=${CONCORD_BENCH_CLIENTS:-1,64,256}
export CONCORD_BENCH_CLIENTS="$clients"

echo "== allocations (servers built with --features count-alloc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
CONCORD_BENCH_ALLOC=1 nice -n 19 cargo bench -q -p concord-bench --features count-alloc \
    --bench cpu_breakdown

echo "== CPU and context switches; load: $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 19 cargo bench -q -p concord-bench --bench cpu_breakdown

# strace and perf slow the servers: a 50 ms tick (election timeouts 5x
# the default) keeps a stalled leader leading through those windows.
echo "== system calls and profile (tick 50 ms); load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$out"/perf/*.data "$out"/perf/window-*.txt
CONCORD_BENCH_TICK_MS=${CONCORD_BENCH_TICK_MS:-50} CONCORD_BENCH_STRACE=1 \
    CONCORD_BENCH_PERF_DIR="$out/perf" nice -n 19 cargo bench -q -p concord-bench \
    --bench cpu_breakdown

echo "== perf profile by stage; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $(echo "$clients" | tr ',' ' '); do
    nice -n 19 python3 benches/runtime/cpu/stages.py "$out/perf" "$n"
done
