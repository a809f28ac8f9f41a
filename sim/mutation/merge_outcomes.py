#!/usr/bin/env python3
"""Merges the outcome lists of several pieces of a mutation run of one core.

A run is done in pieces (stopped and continued, survivors judged again by
a later simulator, mutants killed by hand with a check added since). Each
piece is a directory holding cargo-mutants' `caught.txt`, `missed.txt`,
`timeout.txt` and `unviable.txt` (any may be missing), or a TSV of kills
made by hand (`name<TAB>first seed<TAB>seeds failing<TAB>simulator commit`, under a
header row starting with `name`).

A mutant's verdict over all pieces: killed if any piece killed it (a later
simulator only adds checks, so a kill stands); else unviable if a piece
could not build it; else timeout or survived as its last piece says.

Usage:
    merge_outcomes.py --all ALL.txt --out DIR PIECE [PIECE ...]

ALL.txt lists every mutant of the core (`scripts/mutants.sh --list`).
Writes DIR/{caught,missed,timeout,unviable,untested}.txt and prints a
per-file table in Markdown.
"""

import argparse
import collections
import os
import sys

KINDS = ("caught", "missed", "timeout", "unviable")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_piece(path):
    """Yields (name, kind) of one piece, in its order."""
    if os.path.isdir(path):
        for kind in KINDS:
            file = os.path.join(path, kind + ".txt")
            if os.path.exists(file):
                for name in read_lines(file):
                    yield name, kind
    else:
        for line in read_lines(path):
            name = line.split("\t")[0]
            if name != "name":  # the header row
                yield name, "caught"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", required=True, help="every mutant, one per line")
    parser.add_argument("--out", required=True, help="directory for the merged lists")
    parser.add_argument("pieces", nargs="+")
    args = parser.parse_args()

    every = read_lines(args.all)
    known = set(every)
    verdict = {}
    for piece in args.pieces:
        for name, kind in read_piece(piece):
            if name not in known:
                sys.exit(f"{piece}: {name!r} is not a mutant of this core")
            was = verdict.get(name)
            if was == "caught" or (was == "unviable" and kind != "caught"):
                continue
            verdict[name] = kind

    os.makedirs(args.out, exist_ok=True)
    for kind in KINDS + ("untested",):
        names = sorted(
            name for name in every if verdict.get(name, "untested") == kind
        )
        with open(os.path.join(args.out, kind + ".txt"), "w", encoding="utf-8") as f:
            f.writelines(name + "\n" for name in names)

    per_file = collections.defaultdict(collections.Counter)
    for name in every:
        per_file[name.split(":")[0]][verdict.get(name, "untested")] += 1
    print("| file | killed | survived | timeout | unviable | untested | killed of judged |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    total = collections.Counter()
    for file in sorted(per_file):
        c = per_file[file]
        total.update(c)
        print(row(file, c))
    print(row("**all**", total))


def row(label, c):
    judged = c["caught"] + c["missed"] + c["timeout"]
    score = f"{100 * c['caught'] / judged:.0f} %" if judged else "-"
    return (
        f"| {label} | {c['caught']} | {c['missed']} | {c['timeout']} | "
        f"{c['unviable']} | {c['untested']} | {score} |"
    )


if __name__ == "__main__":
    main()
