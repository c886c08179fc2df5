"""Turn the ground-truth trainings into the shipped tables (issue 22).

Reads the JSON lines of ``benchmarks/ground_truths.sh`` (one training each: recipe, seed, arch,
val, test, seconds) and writes, next to the shipped NB201 table:

* ``groundtruth-images.csv`` — a ``--benchmark csv:`` table: one row per cell, per task the
  validation accuracy averaged over the training seeds (``TASK``) and the test accuracy likewise
  (``TASK:test``, where recorded), and ``cost`` (mean training seconds of the cell);
* ``groundtruth-images-seeds.csv`` — every training (task, group, data, arch, seed, value = validation
  accuracy, test accuracy, seconds, status): also a ``records:`` meta-training corpus whose tasks
  carry their data (``data`` is the task name the images re-derive from);
* ``groundtruth-images.json`` — the card: tasks and what each modifier does, the recipe, the cell
  sample, the seeds, per-task summaries (optimum, median, seed-to-seed Kendall tau) and provenance.

    python benchmarks/ground_truth_tables.py            # tasks found in benchmarks/results/ground-truths
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "benchmarks" / "results" / "ground-truths"
TABLES = ROOT / "src" / "grabnas" / "benchmarks" / "tables"
DEFAULT_TASKS = "digits~train20,digits~noise0.5,digits~4px"
MEANING = {
    "train": "only {} training images per class (validation and test splits untouched)",
    "noise": "Gaussian noise of standard deviation {} added to every image (pixel range [0, 1], clipped; one fixed draw)",
    "occlude": "the {} half of every image set to zero",
    "px": "images resized to {0}x{0}",
}


def _describe(task: str) -> dict:
    from grabnas.data.corruptions import parse_modifier
    from grabnas.search.dataset import dataset_task

    spec = dataset_task(task)
    split = spec.split()
    mods = ([f"{spec.image_size}px"] if spec.image_size else []) + list(spec.modifiers)
    return {
        "task_name": spec.name,
        "dataset": spec.dataset,
        "modifiers": [MEANING[parse_modifier(m)[0]].format(parse_modifier(m)[1]) for m in mods],
        "classes": split.num_classes,
        "image_shape": list(split.image_shape),
        "images": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "fingerprint": split.fingerprint(),
    }


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_runs(path: Path, recipe: str) -> list[dict]:
    """The trainings of ``recipe`` in a JSON-lines file, the last line of each (seed, arch) kept."""
    runs: dict[tuple[int, str], dict] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["recipe"] == recipe:
            runs[(r["seed"], r["arch"])] = r
    return list(runs.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated task specs (a missing file is skipped)")
    ap.add_argument("--raw", default=str(RAW))
    ap.add_argument("--recipe", default="5:8:1:128")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--min-cells", type=int, default=200, help="skip a task with fewer complete cells")
    ap.add_argument("--out", default=str(TABLES / "groundtruth-images"))
    args = ap.parse_args()
    from grabnas.spaces import get_space
    from grabnas.train.recipe import TrainConfig

    seeds = [int(s) for s in args.seeds.split(",")]
    space = get_space("nb201")
    by_task: dict[str, dict[str, dict[int, dict]]] = {}
    for task in args.tasks.split(","):
        path = Path(args.raw) / f"{task.replace('~', '-')}.jsonl"
        if not path.exists():
            print(f"{task}: no trainings ({path}); skipped")
            continue
        cells: dict[str, dict[int, dict]] = {}
        for r in load_runs(path, args.recipe):
            if r["seed"] in seeds:
                cells.setdefault(r["arch"], {})[r["seed"]] = r
        complete = {a: s for a, s in cells.items() if len(s) == len(seeds)}
        if len(complete) < args.min_cells:
            print(f"{task}: {len(complete)} cells with all seeds, fewer than {args.min_cells}; skipped")
            continue
        by_task[task] = complete
    if not by_task:
        raise SystemExit("no task has enough trainings; run benchmarks/ground_truths.sh first")
    tasks = list(by_task)
    archs = sorted(set().union(*by_task.values()), key=lambda a: space.index_of(space.parse(a)))

    def mean(task: str, arch: str, key: str) -> float | None:
        runs = by_task[task].get(arch, {})
        vals = [r.get(key) for r in runs.values() if r.get("status", "ok") == "ok" and r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    with_test = [t for t in tasks if all(r.get("test") is not None for s in by_task[t].values() for r in s.values())]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["arch"] + [c for t in tasks for c in ([t, t + ":test"] if t in with_test else [t])] + ["cost"]
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for a in archs:
            row: list[str] = [a]
            for t in tasks:
                for key in ("val", "test") if t in with_test else ("val",):
                    v = mean(t, a, key)
                    row.append("" if v is None else f"{v:.4f}")
            secs = [r["seconds"] for t in tasks for r in by_task[t].get(a, {}).values()]
            row.append(f"{np.mean(secs):.3f}")
            w.writerow(row)
    seeds_path = out.with_name(out.name + "-seeds.csv")
    with seeds_path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["task", "group", "data", "arch", "seed", "value", "test_acc", "train_seconds", "status"])
        for t in tasks:
            data = _describe(t)["task_name"]
            for a in archs:
                for s, r in sorted(by_task[t].get(a, {}).items()):
                    test = r.get("test")
                    w.writerow(
                        [
                            t,
                            t,
                            data,
                            a,
                            s,
                            "" if r["val"] is None else f"{r['val']:.4f}",
                            "" if test is None else f"{test:.4f}",
                            f"{r['seconds']:.3f}",
                            r.get("status", "ok"),
                        ]
                    )
    summaries = {}
    for t in tasks:
        vals = np.array([[by_task[t][a][s]["val"] for a in by_task[t]] for s in seeds], dtype=float)
        m = vals.mean(0)
        top = m >= np.median(m)
        best = list(by_task[t])[int(np.argmax(m))]
        summaries[t] = {
            **_describe(t),
            "cells": len(by_task[t]),
            "optimum_val": round(float(m.max()), 4),
            "optimum_arch": best,
            "median_val": round(float(np.median(m)), 4),
            "kendall_tau_seed_vs_seed": round(float(kendalltau(vals[0], vals[1]).statistic), 3),
            "kendall_tau_seed_vs_seed_better_half": round(float(kendalltau(vals[0][top], vals[1][top]).statistic), 3),
            "sd_seed_to_seed": round(float(np.sqrt(np.mean(np.var(vals, axis=0, ddof=1)))), 3),
            "sd_between_cells": round(float(np.std(m, ddof=1)), 3),
            "test_recorded": t in with_test,
        }
    epochs, channels, n_cells, batch = (int(x) for x in args.recipe.split(":"))
    recipe = TrainConfig(
        epochs=epochs, channels=channels, cells=n_cells, batch_size=batch, device="cpu", num_threads=1, seed=0
    )
    card = {
        "format": "grabnas-groundtruth/1",
        "space": "nb201",
        "csv": out.with_suffix(".csv").name,
        "seeds_csv": seeds_path.name,
        "what": (
            "Real-training ground truths of image tasks that the shipped corpus (images-nb201) does not contain: "
            "the same random NB201 cells trained with the default proxy recipe and two training seeds per task. "
            "A task column is the validation accuracy (percent) averaged over the seeds; TASK:test the test "
            "accuracy likewise; cost the mean training seconds of the cell (one CPU thread)."
        ),
        "use": "grabnas bench --benchmark csv:groundtruth-images --tasks " + ",".join(tasks),
        "tasks": summaries,
        "cell_sample": {
            "cells": len(archs),
            "rule": "numpy default_rng(0).choice(15625, 200, replace=False) over NB201 members in space order",
        },
        "training_seeds": seeds,
        "recipe": dataclasses.asdict(recipe),
        "recipe_short": args.recipe + " (epochs:channels:cells:batch)",
        "split": "stratified per class, split seed 0: 60 % train, 20 % validation, 20 % test",
        "command": "bash benchmarks/ground_truths.sh && python benchmarks/ground_truth_tables.py",
        "provenance": {
            "git_commit": _git_commit(),
            "built": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "raw": "benchmarks/results/ground-truths/*.jsonl",
            "as_corpus": "records:" + seeds_path.name + " (repeated (task, arch) rows averaged; data = the task name)",
            "data": "scikit-learn load_digits (BSD-3-Clause), via grabnas dataset 'digits'",
        },
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.csv')} ({len(archs)} cells x {len(tasks)} tasks), {seeds_path}, card")
    for t, s in summaries.items():
        print(
            f"{t}: optimum {s['optimum_val']}, median {s['median_val']}, tau {s['kendall_tau_seed_vs_seed']} "
            f"(better half {s['kendall_tau_seed_vs_seed_better_half']})"
        )


if __name__ == "__main__":
    main()
