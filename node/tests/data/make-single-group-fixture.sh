#!/usr/bin/env bash
# Writes node/tests/data/single-group-v2/: the data directories of a
# three-server key-value cluster of today's single-group `concord-node`
# (no --groups: write-ahead log format 2, snapshot format 2), for the
# upgrade to the one runtime to be tested against data its
# users really have. Run once, from the repository's root, with the
# binaries of the commit README.md names; the result is committed.
#
#   cargo build -p concord-node --bins
#   node/tests/data/make-single-group-fixture.sh target/debug
#
# What it writes (node/tests/operator_mistakes.rs derives the same list
# from these rules and reads every key back):
#   small-0 .. small-59   value-<i>, each its own concord-cli run
#   large                 10,000 bytes of 'x'
#   small-7               then overwritten with "seven-again"
#   log                   appended "a", "b", "c" in three runs
# Snapshots every 32 applied entries with 8 trailing, so each directory
# holds a snapshot file and a log that starts past index 1.
set -euo pipefail
bin=${1:?usage: make-single-group-fixture.sh <directory of concord-node and concord-cli>}
out=node/tests/data/single-group-v2
[ -e "$out" ] && { echo "$out exists; remove it first" >&2; exit 1; }
mkdir -p "$out"
ports=(7411 7412 7413)
peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
pids=()
for id in 1 2 3; do
  "$bin/concord-node" --id "$id" --listen "127.0.0.1:${ports[$((id - 1))]}" --peers "$peers" \
    --data-dir "$out/node-$id" --cluster-id fixture-v2 \
    --snapshot-every-entries 32 --compaction-trailing-entries 8 \
    2> "$out/node-$id.log" &
  pids+=($!)
done
cli=("$bin/concord-cli" --servers "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" --cluster-id fixture-v2)
for i in $(seq 0 59); do "${cli[@]}" kv put "small-$i" "value-$i"; done
"${cli[@]}" kv put large "$(head -c 10000 /dev/zero | tr '\0' x)"
"${cli[@]}" kv put small-7 seven-again
for s in a b c; do "${cli[@]}" kv append log "$s"; done
# Every server applied everything before it stops.
sleep 2
kill -TERM "${pids[@]}"
wait "${pids[@]}" || true
rm -f "$out"/node-*.log
du -sh "$out"/*
