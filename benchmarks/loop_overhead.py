"""Loop bookkeeping per evaluation over a long search (issue 21): random search on NB201 through
``run_search`` with an SQLite study, lookups as evaluations. Reports the loop's seconds per
evaluation over the first and the last ``--window`` evaluations (progress callback included, as the
CLI's bar reads the study at every result) and their ratio; median over ``--seeds`` runs.

    python benchmarks/loop_overhead.py --budget 5000 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from grabnas.benchmarks import load_benchmark
from grabnas.evaluation.lookup import LookupEvaluator
from grabnas.search.loop import run_search
from grabnas.search.registry import build_optimizer
from grabnas.study import Study


def one_run(budget: int, window: int, seed: int, folder: Path) -> tuple[float, float]:
    bench = load_benchmark("nb201")
    opt = build_optimizer("random", bench, "cifar10", seed)
    stamps: list[float] = []

    def on_result(study) -> None:  # what the CLI's progress bar does at each result
        study.best(1)
        study.count("done")
        study.count("failed")
        stamps.append(time.perf_counter())

    with Study.open(folder / f"loop-{seed}.db", {"seed": seed}) as study:
        t0 = time.perf_counter()
        run_search(opt, LookupEvaluator(bench, "cifar10"), study, budget, on_result=on_result)
    stamps.insert(0, t0)
    first = (stamps[window] - stamps[0]) / window
    last = (stamps[-1] - stamps[-1 - window]) / window
    return first, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--window", type=int, default=250)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            first, last = one_run(args.budget, args.window, seed, Path(tmp))
            rows.append((first, last, last / first))
            print(
                f"seed {seed}: first {args.window}: {first * 1e3:.2f} ms/eval, last {args.window}: {last * 1e3:.2f} ms/eval, ratio {last / first:.2f}"
            )
    ratios = [r[2] for r in rows]
    print(
        f"{args.budget} evaluations, {args.seeds} seeds: end/start loop time per evaluation "
        f"median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
