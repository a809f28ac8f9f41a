#!/bin/sh
# Concord against etcd 3.4 on writes, side by side in one
# run (benches/peers/vs_etcd.rs; its header says what is measured and how).
# Installs etcd from Debian's `etcd-server` package if it is missing (root
# or sudo), then runs the benchmark. Not part of `cargo test` or CI.
#
#   benches/peers/etcd/compare.sh                       # 10 s per cell, 1,16,64,256 clients, 2 rounds
#   CONCORD_BENCH_SECS=5 CONCORD_BENCH_CLIENTS=64 benches/peers/etcd/compare.sh
#   CONCORD_BENCH_SERVER_THREADS=0 benches/peers/etcd/compare.sh   # each system's default threads
#
# Results: the table on stdout, and vs_etcd.csv plus three SVG plots in
# target/bench-results/ (or $CONCORD_BENCH_OUT).
set -eu
cd "$(dirname "$0")/../../.."
sh benches/peers/etcd/setup.sh
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p concord-bench --bench vs_etcd
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
