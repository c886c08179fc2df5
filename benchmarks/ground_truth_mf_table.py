"""The multi-fidelity real-training ground truths (issue 22): the shipped ground truths' cells at
shorter trainings, as one ``csv:`` table with ``TASK@Nep`` columns.

Reads the JSON lines of ``benchmarks/ground_truths.sh`` run with ``RECIPE=N:8:1:128`` (the same 200
cells and training seeds 1 and 2; ``benchmarks/results/ground-truths/<task>@Nep.jsonl``) next to the
target recipe's (``<task>.jsonl``, 5 epochs) and writes ``groundtruth-images-mf.csv`` beside the
shipped tables: per task the validation accuracy averaged over the seeds at the target recipe
(``TASK``) and at each shorter one (``TASK@Nep``), and the cell's mean measured training seconds at
each, per task (``TASK:cost``, ``TASK@Nep:cost``) and averaged over the tasks (``cost``,
``cost@Nep``), plus its card (``groundtruth-images-mf.json``).

    RECIPE=1:8:1:128 bash benchmarks/ground_truths.sh   # <task>@1ep.jsonl; likewise 2:8:1:128
    python benchmarks/ground_truth_mf_table.py --low-epochs 1,2
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "benchmarks" / "results" / "ground-truths"
TABLES = ROOT / "src" / "grabnas" / "benchmarks" / "tables"
TASKS = "digits~train20,digits~noise0.5,digits~4px"


def seed_means(
    path: Path, recipe: str, seeds: list[int]
) -> tuple[dict[str, float], dict[str, float], dict[str, float] | None]:
    """Per cell with every seed trained: the mean validation accuracy, the mean seconds and the mean
    test accuracy (None where some training did not record one)."""
    runs: dict[tuple[int, str], dict] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["recipe"] == recipe and r["seed"] in seeds:
            runs[(r["seed"], r["arch"])] = r
    archs = {a for _, a in runs}
    complete = [a for a in archs if all((s, a) in runs and runs[(s, a)].get("val") is not None for s in seeds)]
    val = {a: float(np.mean([runs[(s, a)]["val"] for s in seeds])) for a in complete}
    secs = {a: float(np.mean([runs[(s, a)]["seconds"] for s in seeds])) for a in complete}
    if not all(runs[(s, a)].get("test") is not None for s in seeds for a in complete):
        return val, secs, None
    return val, secs, {a: float(np.mean([runs[(s, a)]["test"] for s in seeds])) for a in complete}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=TASKS)
    ap.add_argument("--low-epochs", default="1,2", help="the shorter recipes' epochs (files <task>@Nep.jsonl)")
    ap.add_argument("--target-recipe", default="5:8:1:128")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--out", default=str(TABLES / "groundtruth-images-mf"))
    args = ap.parse_args()
    from grabnas.spaces import get_space

    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    lows = sorted(int(e) for e in args.low_epochs.split(","))
    rest = args.target_recipe.split(":", 1)[1]
    target_epochs = int(args.target_recipe.split(":")[0])
    values: dict[tuple[str, int], dict[str, float]] = {}
    tests: dict[str, dict[str, float]] = {}  # the target recipe's test accuracy, where every training recorded it
    seconds: dict[int, list[dict[str, float]]] = {e: [] for e in [*lows, target_epochs]}
    for t in tasks:
        slug = t.replace("~", "-")
        for e in [*lows, target_epochs]:
            path = RAW / (f"{slug}@{e}ep.jsonl" if e != target_epochs else f"{slug}.jsonl")
            values[(t, e)], secs, test = seed_means(path, f"{e}:{rest}", seeds)
            seconds[e].append(secs)
            if e == target_epochs and test is not None:
                tests[t] = test
    space = get_space("nb201")
    archs = sorted(set.intersection(*(set(v) for v in values.values())), key=lambda a: space.index_of(space.parse(a)))
    out = Path(args.out)

    def columns(t: str) -> list[str]:
        low = [f"{t}@{e}ep" for e in lows]
        return [t] + ([f"{t}:test"] if t in tests else []) + low + [f"{c}:cost" for c in [t, *low]]

    header = ["arch"] + [c for t in tasks for c in columns(t)]
    header += ["cost"] + [f"cost@{e}ep" for e in lows]
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for a in archs:
            row = [a]
            for t in tasks:
                row += [f"{values[(t, target_epochs)][a]:.4f}"] + ([f"{tests[t][a]:.4f}"] if t in tests else [])
                row += [f"{values[(t, e)][a]:.4f}" for e in lows]
                k = tasks.index(t)
                row += [f"{seconds[e][k][a]:.3f}" for e in [target_epochs, *lows]]
            row += [f"{np.mean([s[a] for s in seconds[e]]):.3f}" for e in [target_epochs, *lows]]
            w.writerow(row)
    summaries = {}
    for t in tasks:
        high = np.array([values[(t, target_epochs)][a] for a in archs])
        top = np.argsort(-high)[: len(archs) // 4]
        summaries[t] = {}
        for e in lows:
            low = np.array([values[(t, e)][a] for a in archs])
            summaries[t][f"{e}ep"] = {
                "spearman_with_target": round(float(spearmanr(low, high).statistic), 3),
                "spearman_with_target_top_quarter": round(float(spearmanr(low[top], high[top]).statistic), 3),
                "kendall_with_target": round(float(kendalltau(low, high).statistic), 3),
                "target_optimum_rank_at_this_fidelity": int((low > low[int(np.argmax(high))]).sum()) + 1,
                "median_val": round(float(np.median(low)), 2),
            }
    cost = {e: float(np.mean([np.mean([s[a] for s in seconds[e]]) for a in archs])) for e in [target_epochs, *lows]}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    card = {
        "format": "grabnas-groundtruth/1",
        "space": "nb201",
        "csv": out.with_suffix(".csv").name,
        "what": (
            "The real-training ground truths (groundtruth-images) with shorter trainings of the same cells: TASK is "
            "the validation accuracy (percent, mean of training seeds 1 and 2) of the target recipe, TASK@Nep of the "
            "same recipe trained for N epochs (its own cosine schedule, from scratch); TASK:test the target recipe's test "
            "accuracy where recorded; TASK:cost / TASK@Nep:cost the cell's mean measured training seconds on that task, "
            "cost / cost@Nep the same averaged over the tasks (one CPU thread per training)."
        ),
        "use": (
            "python benchmarks/multifidelity.py --benchmark csv:groundtruth-images-mf --target-epochs "
            f"{target_epochs} --tasks {','.join(tasks)}"
        ),
        "target_recipe": args.target_recipe + " (epochs:channels:cells:batch)",
        "low_epochs": lows,
        "mean_seconds": {f"{e}ep": round(c, 4) for e, c in cost.items()},
        "fidelities": summaries,
        "cells": len(archs),
        "training_seeds": seeds,
        "provenance": {
            "git_commit": commit,
            "built": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "raw": "benchmarks/results/ground-truths/*.jsonl",
            "command": f"python benchmarks/ground_truth_mf_table.py --low-epochs {args.low_epochs}",
            "data": "scikit-learn load_digits (BSD-3-Clause), via grabnas dataset 'digits'",
        },
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.csv')} ({len(archs)} cells x {len(tasks)} tasks x {len(lows) + 1} fidelities)")
    for t, s in summaries.items():
        print(t, json.dumps(s))
    print("mean seconds", card["mean_seconds"])


if __name__ == "__main__":
    main()
