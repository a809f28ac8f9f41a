#!/usr/bin/env python3
"""Summarizes one or more cargo-mutants output directories (the shards of a
run of scripts/mutants.sh) into the markdown report sim/mutation/REPORT.md.

Usage:
    sim/mutation/report.py [--write-seed-order FILE] [--heading TEXT] OUT_DIR...

Each OUT_DIR holds a `mutants.out/` (or is one). The report counts, per
mutated file, the mutants killed (caught), survived (missed), timed out and
unviable, from `outcomes.json`, which cargo-mutants rewrites after every
mutant, so a run still in progress can be reported on; it lists every
survivor and timeout, and measures the cost of a mutant (build and judge
phases) and how many seeds the judge needed to kill one (the judge's
"mutation_judge: killed after N seeds by seed S" line in each log).

--write-seed-order writes the seeds that killed the most mutants, most
first, one a line: the order the judge runs first (sim/mutation/seed-order.txt).
It only changes how fast a mutant is killed, never whether.
"""

import argparse
import collections
import json
import os
import re
import statistics
import sys

KILL_LINE = re.compile(r"mutation_judge: killed after (\d+) seeds by seed (\d+): (.*)")
OUTCOMES = ["CaughtMutant", "MissedMutant", "Timeout", "Unviable"]
LABEL = {
    "CaughtMutant": "killed",
    "MissedMutant": "survived",
    "Timeout": "timeout",
    "Unviable": "unviable",
}


def mutants_out(directory):
    """The mutants.out directory of a cargo-mutants --output directory."""
    nested = os.path.join(directory, "mutants.out")
    return nested if os.path.isdir(nested) else directory


def load(directory):
    """(mutants in the shard, outcomes of tested mutants, baseline) of one shard."""
    out = mutants_out(directory)
    with open(os.path.join(out, "mutants.json")) as f:
        listed = json.load(f)
    path = os.path.join(out, "outcomes.json")
    outcomes, baseline = [], None
    if os.path.exists(path):
        with open(path) as f:
            lab = json.load(f)
        for outcome in lab["outcomes"]:
            scenario = outcome["scenario"]
            if scenario == "Baseline":
                baseline = outcome
            else:
                outcome["log_text"] = read_log(out, outcome.get("log_path"))
                outcomes.append(outcome)
    return listed, outcomes, baseline


def read_log(out, log_path):
    if not log_path:
        return ""
    for candidate in (os.path.join(out, log_path), os.path.join(os.path.dirname(out), log_path)):
        if os.path.exists(candidate):
            with open(candidate, errors="replace") as f:
                return f.read()
    return ""


def phase_seconds(outcome, phase):
    return sum(p["duration"] for p in outcome["phase_results"] if p["phase"] == phase)


def kill_of(outcome):
    """(seeds run, killing seed, failure) from the judge's log line, if any."""
    match = KILL_LINE.search(outcome["log_text"])
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3).strip()


def failure_kind(text):
    match = re.match(r"Some\(Failure \{ kind: (\w+)", text)
    return match.group(1) if match else text[:40]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--write-seed-order")
    parser.add_argument("--heading", default="")
    args = parser.parse_args()

    listed_total = 0
    outcomes = []
    baselines = []
    shards = []
    for directory in args.dirs:
        listed, tested, baseline = load(directory)
        listed_total += len(listed)
        outcomes += tested
        if baseline:
            baselines.append(baseline)
        shards.append((directory, len(listed), len(tested)))

    per_file = collections.OrderedDict()
    for outcome in sorted(outcomes, key=lambda o: o["scenario"]["Mutant"]["file"]):
        mutant = outcome["scenario"]["Mutant"]
        counts = per_file.setdefault(mutant["file"], collections.Counter())
        counts[outcome["summary"]] += 1

    lines = []
    emit = lines.append
    if args.heading:
        emit(args.heading.rstrip() + "\n")
    emit("## Shards\n")
    emit("| output directory | mutants in shard | tested so far |")
    emit("| --- | ---: | ---: |")
    for directory, listed, tested in shards:
        emit(f"| `{directory}` | {listed} | {tested} |")
    emit(f"\n{len(outcomes)} of {listed_total} mutants tested.\n")

    emit("## Scores per file\n")
    emit("Score = killed / (killed + survived + timeout): a mutant that hangs the")
    emit("simulator is not counted as killed (the step budget would not catch a")
    emit("loop inside one step). Unviable mutants do not build.\n")
    emit("| file | killed | survived | timeout | unviable | score |")
    emit("| --- | ---: | ---: | ---: | ---: | ---: |")
    total = collections.Counter()
    for file, counts in per_file.items():
        total.update(counts)
        emit(row(file, counts))
    emit(row("**all**", total))

    emit("\n## Cost of a mutant\n")
    for baseline in baselines:
        emit(
            f"* unmutated baseline: build {phase_seconds(baseline, 'Build'):.1f} s "
            f"(from scratch), judge {phase_seconds(baseline, 'Test'):.1f} s (all seeds pass)"
        )
    for summary in OUTCOMES[:3]:
        chosen = [o for o in outcomes if o["summary"] == summary]
        if not chosen:
            continue
        builds = [phase_seconds(o, "Build") for o in chosen]
        tests = [phase_seconds(o, "Test") for o in chosen]
        emit(
            f"* {LABEL[summary]} ({len(chosen)}): build median {statistics.median(builds):.1f} s "
            f"(max {max(builds):.1f}), judge median {statistics.median(tests):.1f} s "
            f"(max {max(tests):.1f})"
        )
    viable = [o for o in outcomes if o["summary"] in OUTCOMES[:3]]
    if viable:
        seconds = [phase_seconds(o, "Build") + phase_seconds(o, "Test") for o in viable]
        emit(
            f"* all viable: mean {statistics.mean(seconds):.1f} s per mutant "
            f"(build + judge, wall clock), {sum(seconds) / 3600:.2f} worker-hours so far"
        )

    kills = [(o, kill_of(o)) for o in outcomes if o["summary"] == "CaughtMutant"]
    found = [(o, k) for o, k in kills if k]
    if found:
        positions = sorted(k[0] for _, k in found)
        emit("\n## Seeds needed to kill\n")
        emit(
            f"{len(found)} kills with the judge's line: median {statistics.median(positions):.0f} "
            f"seeds, 90th percentile {positions[int(0.9 * (len(positions) - 1))]}, "
            f"max {positions[-1]}; within 500 seeds: "
            f"{sum(p <= 500 for p in positions)}, within 2,000: {len(positions)}."
        )
        kinds = collections.Counter(failure_kind(k[2]) for _, k in found)
        emit("\nWhat caught them: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()) + ".")

    here = os.path.dirname(os.path.abspath(__file__))
    classified = {}
    for kind, file in [("equivalent", "equivalent.md"), ("gap", "gaps.md")]:
        path = os.path.join(here, file)
        if not os.path.exists(path):
            continue
        section = kind
        with open(path) as f:
            for line in f:
                if line.startswith("## "):
                    killed = "killed since" in line.lower()
                    section = "killed since by new capability" if killed else kind
                match = re.match(r"\* `([^`]+)`", line)
                if match:
                    classified[match.group(1)] = section
    survivors = sorted(
        o["scenario"]["Mutant"]["name"] for o in outcomes if o["summary"] == "MissedMutant"
    )
    kinds = collections.Counter(classified.get(name, "unclassified") for name in survivors)
    emit(f"\n## Survivors ({len(survivors)})\n")
    emit("Each is classified in `equivalent.md` (no run can tell it from the original,")
    emit("with why) or `gaps.md` (a mistake the simulator does not catch yet):")
    emit(
        f"{kinds['equivalent']} equivalent, {kinds['gap']} gaps, "
        f"{kinds['killed since by new capability']} gaps killed since by new simulator "
        f"capability, {kinds['unclassified']} not classified yet."
    )
    judged = total["CaughtMutant"] + total["MissedMutant"] + total["Timeout"]
    if judged > kinds["equivalent"]:
        emit(
            f"Score without the equivalent mutants: {total['CaughtMutant']} of "
            f"{judged - kinds['equivalent']} = "
            f"{100 * total['CaughtMutant'] / (judged - kinds['equivalent']):.0f} %.\n"
        )
    for name in survivors:
        emit(f"* `{name}` ({classified.get(name, 'not classified yet')})")
    timeouts = sorted(
        o["scenario"]["Mutant"]["name"] for o in outcomes if o["summary"] == "Timeout"
    )
    emit(f"\n## Timeouts ({len(timeouts)})\n")
    for name in timeouts:
        emit(f"* `{name}`")

    print("\n".join(lines))

    if args.write_seed_order:
        by_seed = collections.Counter(k[1] for _, k in found)
        with open(args.write_seed_order, "w") as f:
            f.write(
                "# Seeds the mutation judge (tests/mutation_judge.rs) runs first, one a\n"
                "# line; every other seed of 0..2000 follows in increasing order.\n"
                "# Written by sim/mutation/report.py --write-seed-order: the seeds that\n"
                "# killed the most mutants of a run first (after each, how many it was\n"
                "# the first to kill).\n"
            )
            for seed, count in by_seed.most_common():
                f.write(f"{seed}  # {count}\n")


def row(file, counts):
    killed = counts["CaughtMutant"]
    judged = killed + counts["MissedMutant"] + counts["Timeout"]
    score = f"{100 * killed / judged:.0f} %" if judged else "-"
    return (
        f"| {file} | {killed} | {counts['MissedMutant']} | {counts['Timeout']} "
        f"| {counts['Unviable']} | {score} |"
    )


if __name__ == "__main__":
    sys.exit(main())
