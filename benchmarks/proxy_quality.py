"""How well does a training recipe rank NB201 cells on a dataset? (issue 22, proxy quality)

Trains the same ``--cells`` random NB201 cells with each recipe and each training seed, then
reports per recipe: Kendall's tau between the two seeds' validation accuracies (does a second
seed of the same proxy agree?), also among the better half of the cells, the spread between cells against the seed-to-seed spread of one
cell (signal-to-noise), the share of runs that hardly trained (validation accuracy under twice
chance), and Kendall's tau of each recipe's seed-mean with the last (longest) recipe's. Every
training is appended to ``--out`` (JSON lines) as it ends, so a rerun resumes.

    python benchmarks/proxy_quality.py --dataset digits --cells 100 \\
        --recipes 5:8:1:128,20:8:1:128 --seeds 1,2 --jobs 2 --out runs/proxy-digits.jsonl

A recipe is ``EPOCHS:CHANNELS:CELLS:BATCH``; the first is the `grabnas search --dataset` default.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from grabnas.evaluation import LocalPoolExecutor, TrainingEvaluator
from grabnas.search.dataset import dataset_task
from grabnas.spaces import get_space
from grabnas.train.recipe import TrainConfig


def _recipe(text: str) -> TrainConfig:
    epochs, channels, cells, batch = (int(x) for x in text.split(":"))
    return TrainConfig(
        epochs=epochs, channels=channels, cells=cells, batch_size=batch, device="cpu", num_threads=1, seed=0
    )


def _train(job: tuple) -> dict:
    dataset, recipe, seed, arch = job
    evaluator = TrainingEvaluator(dataset_task(dataset), _recipe(recipe).with_seed(seed), seed_per_arch=False)
    result = evaluator(arch)
    return {
        "recipe": recipe,
        "seed": seed,
        "arch": arch,
        "val": result.val_acc,
        "test": result.test_acc,
        "status": result.status,
        "seconds": result.train_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--recipes", default="5:8:1:128,20:8:1:128")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary-out", default=None, help="summary JSON (default: --out with .summary.json)")
    args = ap.parse_args()
    space = get_space("nb201")
    members = space.members()
    rng = np.random.default_rng(args.sample_seed)
    cells = [members[i].to_string() for i in rng.choice(len(members), args.cells, replace=False)]
    recipes = args.recipes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[(r["recipe"], r["seed"], r["arch"])] = r
    jobs = [(args.dataset, rc, s, a) for rc in recipes for s in seeds for a in cells if (rc, s, a) not in done]
    print(
        f"{args.dataset}: {len(cells)} cells x {len(recipes)} recipes x {len(seeds)} seeds; {len(jobs)} trainings to run"
    )
    if jobs:
        with LocalPoolExecutor(workers=args.jobs, threads_per_worker=1) as ex, out.open("a") as f:
            for fut in [ex.submit(_train, j) for j in jobs]:
                r = fut.result()
                done[(r["recipe"], r["seed"], r["arch"])] = r
                f.write(json.dumps(r) + "\n")
                f.flush()
    classes = dataset_task(args.dataset).split().num_classes
    chance = 100.0 / classes
    table = {}
    for rc in recipes:
        vals = np.array([[done[(rc, s, a)]["val"] for a in cells] for s in seeds], dtype=float)  # (seeds, cells)
        tau = kendalltau(vals[0], vals[1]).statistic
        top = vals.mean(0) >= np.median(vals.mean(0))  # the half that matters to a search
        tau_top = kendalltau(vals[0][top], vals[1][top]).statistic
        within = float(np.sqrt(np.mean(np.var(vals, axis=0, ddof=1))))  # a cell's seed-to-seed sd
        between = float(np.std(vals.mean(0), ddof=1))
        secs = statistics.median(done[(rc, s, a)]["seconds"] for s in seeds for a in cells)
        table[rc] = {
            "tau_seeds": round(float(tau), 3),
            "tau_seeds_top_half": round(float(tau_top), 3),
            "sd_between_cells": round(between, 2),
            "sd_seed_to_seed": round(within, 2),
            "signal_to_noise": round(between / within, 2) if within > 0 else float("inf"),
            "share_under_2x_chance": round(float(np.mean(vals < 2 * chance)), 3),
            "median_seconds": round(secs, 2),
            "mean": vals.mean(0),
        }
    longest = table[recipes[-1]]["mean"]
    print(f"\n{args.dataset} ({classes} classes), {len(cells)} random NB201 cells, seeds {args.seeds}")
    print(
        "| recipe (epochs:C:N:batch) | tau seed 1 vs 2 | same, better half | sd between cells | sd seed to seed | signal/noise | runs under 2x chance | tau with the longest recipe | median s/training |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rc, t in table.items():
        vs_long = kendalltau(t.pop("mean"), longest).statistic
        t["tau_with_longest"] = round(float(vs_long), 3)
        print(
            f"| {rc} | {t['tau_seeds']} | {t['tau_seeds_top_half']} | {t['sd_between_cells']} | {t['sd_seed_to_seed']} | {t['signal_to_noise']} | "
            f"{t['share_under_2x_chance']:.1%} | {t['tau_with_longest']} | {t['median_seconds']} |"
        )
    summary_out = Path(args.summary_out) if args.summary_out else out.with_suffix(".summary.json")
    summary_out.write_text(json.dumps({"dataset": args.dataset, "cells": len(cells), "recipes": table}, indent=2))


if __name__ == "__main__":
    main()
