"""Misleading-prior stress tasks on NAS-Bench-201 (issue 18), written as user CSV benchmarks.

A stress task is an NB201 dataset whose best ``P`` % of cells have their values in reversed
order: the k-th best cell takes the value of the k-th worst cell of that top ``P`` %. Everything a
surrogate meta-trained on the *other* datasets knows about the top of the task is then wrong
(the cells it ranks first are the worst of the top), while the rest of the table is untouched.

Each stress task goes into its own CSV, beside the unmodified columns of the two other datasets
(so ``transfer-rank`` has its usual knowledge, and the held-out dataset's true values are absent):

    stress-imagenet16-top5.csv   cifar10, cifar100, imagenet16-top5rev   (GraB-NAS: nb201-no-imagenet16)
    stress-cifar100-top20.csv    cifar10, imagenet16, cifar100-top20rev  (GraB-NAS: nb201-no-cifar100)

Usage: python benchmarks/stress_tasks.py --out DIR   (then `grabnas bench --benchmark csv:DIR/...`;
benchmarks/stress_bench.sh does both).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from grabnas.benchmarks.nb201 import load_nb201

#: (file stem, held-out dataset, percentage reversed, the two unmodified datasets)
STRESS = (
    ("stress-imagenet16-top5", "imagenet16", 5.0, ("cifar10", "cifar100")),
    ("stress-cifar100-top20", "cifar100", 20.0, ("cifar10", "imagenet16")),
)


def reverse_top(values: np.ndarray, percent: float) -> np.ndarray:
    """``(N,)`` values with the order of the best ``percent`` % reversed (ties kept together)."""
    out = values.copy()
    k = max(2, int(round(len(values) * percent / 100)))
    top = np.argsort(-values, kind="stable")[:k]  # best first
    out[top] = values[top][::-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the CSV files")
    ap.add_argument("--data", default=None, help="NB201 table (default: the shipped one or $GRABNAS_NB201)")
    args = ap.parse_args()
    bench = load_nb201(args.data)
    archs = bench.pool("cifar10")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stem, held_out, percent, others in STRESS:
        tables = {t: bench.values(t) for t in (*others, held_out)}
        cols = {t: np.array([table[a] for a in archs]) for t, table in tables.items()}
        target = f"{held_out}-top{percent:g}rev"
        cols[target] = reverse_top(cols.pop(held_out), percent)
        path = out / f"{stem}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arch", *cols])
            for i, a in enumerate(archs):
                w.writerow([a.to_string() if hasattr(a, "to_string") else str(a), *(f"{cols[c][i]:.6g}" for c in cols)])
        print(f"wrote {path} (target {target}: top {percent:g} % of {len(archs)} cells reversed)")


if __name__ == "__main__":
    main()
