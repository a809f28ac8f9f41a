#!/usr/bin/env python3
"""Splits the perf profiles of benches/runtime/cpu/breakdown.sh by stage.

Usage: stages.py PERF_DIR CLIENTS

Reads PERF_DIR/{leader,follower}-CLIENTS.data (perf record --call-graph
dwarf) and PERF_DIR/window-CLIENTS.txt (puts and each process's CPU
microseconds in the profiled window, from benches/runtime/cpu_breakdown.rs),
runs `perf script` on each profile and assigns every sample, by the
functions on its stack, to the first stage of STAGES whose rule matches.
Prints per process and stage: the share of samples, and microseconds
of that process's CPU per committed put (share x CPU / puts).
"""

import subprocess
import sys
from collections import Counter

# (stage, rule): a rule takes (thread name, the stack's frames joined
# leaf first by ";", kernel frames marked "[k]", and the same with every
# frame's generic arguments removed) and says whether the
# sample belongs to the stage. The first rule that matches wins, so the
# specific come first. A sample is charged to the stage that caused it by
# its user-space frames (the kernel's work in a `sendto` -- on loopback
# including the receiver's TCP processing in softirq -- belongs to the
# stage that sent).


def has(s, *parts):
    return any(p in s for p in parts)


def in_loop(s):
    """Whether the raw stack `s` runs in the server loop's task."""
    return has(s, "server::Server<", "server::start::{async_block", "server::{impl#2}::run")


def in_listener(s):
    return has(s, "listener::handle", "listener::serve_for")


STAGES = [
    # Time right after a thread is switched back in: the scheduler's cost
    # of a wake-up (on this VM the timer interrupt that samples is held
    # until the switch is done).
    ("wake-ups: switching threads in", lambda c, s, b: s.startswith("[k]finish_task_switch")),
    ("WAL: fdatasync", lambda c, s, b: c.startswith("concord-wal") and has(b, "fdatasync", "sync_data")),
    ("WAL: encode, write, marker, notify", lambda c, s, b: c.startswith("concord-wal")),
    ("replication receive (peer connection: read, decode)", lambda c, s, b: in_listener(s) and "wire::PeerFrame" in s),
    ("reply: encode, write", lambda c, s, b: in_listener(s) and has(b, "write_value", "poll_write", "encode_frame")),
    ("client decode", lambda c, s, b: in_listener(s) and has(b, "codec::decode", "deserialize", "bincode")),
    ("client: hand-off to the loop and back (mpsc, oneshot)", lambda c, s, b: in_listener(s) and has(b, "mpsc::", "oneshot::")),
    ("client read (frames, timers)", lambda c, s, b: in_listener(s)),
    ("replication send (peer connection: encode, write)", lambda c, s, b: has(b, "PeerSender", "pump_until_broken", "read_replies") or "transport::Messages>" in s and not in_loop(s)),
    ("reply: hand-off (oneshot, from apply)", lambda c, s, b: in_loop(s) and "oneshot::Sender" in b),
    ("apply", lambda c, s, b: in_loop(s) and has(b, "apply_entry", "concord_services::", "SessionTable", "WithSessions", "StateMachine")),
    ("replication send (loop: queue to peer)", lambda c, s, b: in_loop(s) and has(s, "TcpTransport as concord_tokio::transport::Transport>::send", "TcpTransport>::send", "TcpTransport::send")),
    ("WAL: hand-off from the loop", lambda c, s, b: in_loop(s) and has(s, "FileStorage as concord_tokio::storage::Storage>::submit", "FileStorage::submit")),
    ("propose", lambda c, s, b: in_loop(s) and has(b, "flush_proposals", "::propose")),
    ("loop: Raft core step (acks, commit, persisted)", lambda c, s, b: in_loop(s) and has(b, "Node::step", "concord::node::", "concord::durability", "concord::replication", "handle_event")),
    ("loop: event hand-off (mpsc), other", lambda c, s, b: in_loop(s)),
    ("runtime: poll, park, epoll, timers", lambda c, s, b: has(b, "tokio::runtime", "epoll_wait", "concord_node::run", "block_on")),
]
OTHER = "other"


def samples(data):
    """Yields (comm, period, frames leaf first) for each sample of `data`."""
    text = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,period,ip,sym,dso", "--inline"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    comm, period, frames = None, 1, []
    for line in text.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, period, frames
            comm, period, frames = None, 1, []
            continue
        if not line[0].isspace():
            words = line.split()
            comm = words[0]
            period = int(words[-1]) if words[-1].isdigit() else 1
            for w in words[1:]:
                if w.isdigit():
                    period = int(w)
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        kernel = "[kernel.kallsyms]" in rest
        sym = rest.rsplit(" (", 1)[0]
        frames.append(("[k]" if kernel else "") + sym)
    if comm is not None:
        yield comm, period, frames


def bare(frame):
    """A frame without its generic arguments (`a::b<T>::c` -> `a::b::c`)."""
    out, depth = [], 0
    for ch in frame:
        if ch == "<":
            depth += 1
        elif ch == ">" and depth > 0:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def stage_of(comm, frames):
    joined = ";".join(frames)
    bare_joined = ";".join(bare(f) for f in frames)
    for name, rule in STAGES:
        if rule(comm, joined, bare_joined):
            return name
    return OTHER


def window(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, value = line.split()
            values[key] = float(value)
    return values


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: stages.py PERF_DIR CLIENTS")
    directory, clients = sys.argv[1], sys.argv[2]
    w = window(f"{directory}/window-{clients}.txt")
    puts = max(w["puts"], 1)
    print(f"clients {clients}: {int(w['puts'])} puts in the profiled window, load {w['load']:.2f}")
    table = {}
    for role in ("leader", "follower"):
        weights = Counter()
        for comm, period, frames in samples(f"{directory}/{role}-{clients}.data"):
            weights[stage_of(comm, frames)] += period
        total = sum(weights.values()) or 1
        cpu_per_put = w[f"{role}_cpu_us"] / puts
        table[role] = {s: (n / total, n / total * cpu_per_put) for s, n in weights.items()}
        table[role]["(all)"] = (1.0, cpu_per_put)
    names = [s for s, _ in STAGES] + [OTHER, "(all)"]
    print(f"| stage | leader % | leader µs/put | follower % | follower µs/put |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        cells = []
        for role in ("leader", "follower"):
            share, us = table[role].get(name, (0.0, 0.0))
            cells += [f"{share * 100:.1f}", f"{us:.2f}"]
        if any(c not in ("0.0", "0.00") for c in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")
    print()


if __name__ == "__main__":
    main()
