"""Summarise ``benchmarks/meta_seed_variance.sh``: the NB201 figures per meta-training seed.

Seed 0 is the shipped checkpoint (its report ``benchmarks/results/surrogate/nb201.json`` and
the first GraB-NAS run of ``benchmarks/results/nb201-grabnas/``); seeds 1.. come from ``--out``
(the script's output folder, or ``benchmarks/results/meta-seed-variance`` where they are kept).

    .venv/bin/python benchmarks/meta_seed_variance.py --out benchmarks/results/meta-seed-variance
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def evaluations_to_optimum(runs: pd.DataFrame, optimum: float, within: float = 0.0) -> int | None:
    """1-based step of the first evaluation within ``within`` of ``optimum`` (None: never), from
    the bench rows' regret column of one run (``optimum`` is the one the bench measured it from)."""
    from grabnas.report import evals_to_optimum

    regret = runs.sort_values("step")["regret"].to_numpy(dtype=float)
    ev = float(evals_to_optimum(regret[None, :], tol=within + 1e-9)[0])
    return None if ev == np.inf else int(ev)


def _median_evals(runs: list[pd.DataFrame], optimum: float, within: float) -> float:
    evals = [evaluations_to_optimum(r, optimum, within) for r in runs]
    return float(np.median([np.inf if e is None else e for e in evals]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/meta-seed-variance")
    p.add_argument("--data", default=None, help="NB201 table (default $GRABNAS_NB201)")
    p.add_argument("--tasks", default="cifar10,cifar100,imagenet16")
    args = p.parse_args()
    from grabnas.benchmarks.nb201 import load_nb201

    bench = load_nb201(args.data)
    out = Path(args.out)
    shipped_report = {t["task"]: t for t in json.loads((RESULTS / "surrogate" / "nb201.json").read_text())["tasks"]}
    shipped_runs = pd.read_csv(RESULTS / "nb201-grabnas" / "results.csv.gz")
    shipped_runs = shipped_runs[(shipped_runs.optimizer == "grabnas") & (shipped_runs.seed == 0)]
    baselines = pd.read_csv(RESULTS / "nb201-baselines" / "results.csv.gz")
    transfer = baselines[(baselines.optimizer == "transfer-rank") & (baselines.seed == 0)]
    print(
        "| held-out | meta seed | top 10 %: zero-shot / 20 obs | transfer-rank | 90 % coverage at 0 / 5 / 10 / 20 obs | inside 80-97 % | evals to optimum |"
    )
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        optimum = bench.optimum(task)
        rows = [(0, shipped_report[task], shipped_runs[shipped_runs.task == task])]
        for report in sorted(out.glob(f"{task}-s*.json"), key=lambda f: int(f.stem.rsplit("-s", 1)[1])):
            seed = int(report.stem.rsplit("-s", 1)[1])
            # the script's bench folder, or its results as committed under benchmarks/results/
            found = [
                f
                for f in (out / f"{task}-s{seed}-search" / "results.csv", out / f"{task}-s{seed}-search.csv.gz")
                if f.is_file()
            ]
            runs = pd.read_csv(found[0]) if found else None
            rows.append((seed, json.loads(report.read_text())["tasks"][0], runs))
        tops, evals, inside, searches = [], [], 0, []
        for seed, rep, runs in rows:
            shots = rep["shots"]
            cov = [shots[n]["coverage90"] for n in ("0", "5", "10", "20")]
            ok = sum(0.80 <= c <= 0.97 for c in cov)
            inside += ok
            searched = runs is not None and len(runs) > 0
            ev = evaluations_to_optimum(runs, optimum) if searched else None
            tops.append(shots["20"]["spearman_top"])
            if searched:  # never reaching the optimum counts as infinitely many evaluations
                evals.append(ev if ev is not None else np.inf)
                searches.append(runs)
            print(
                f"| {task} | {seed}{' (shipped)' if seed == 0 else ''} | {shots['0']['spearman_top']:.3f} / "
                f"{shots['20']['spearman_top']:.3f} | {rep['transfer_rank']['spearman_top']:.3f} | "
                f"{' / '.join(f'{c:.3f}' for c in cov)} | {ok}/4 | "
                f"{'not run' if not searched else f'> {len(runs)}' if ev is None else ev} |"
            )
        spread = f" ± {np.std(tops, ddof=1):.3f} (sd)" if len(tops) > 1 else ""
        worst = max(evals, default=np.nan)
        print(
            f"| {task} | all {len(rows)} | 20 obs mean {np.mean(tops):.3f}{spread} | | | "
            f"{inside}/{4 * len(rows)} | median {np.median(evals):g} over {len(evals)} searches "
            f"(range {min(evals, default=np.nan):g}-{'> 50' if worst == np.inf else f'{worst:g}'}) |"
        )
        near = [
            f"within {w:g} points: median {_median_evals(searches, optimum, w):g} "
            f"(transfer-rank {_median_evals([transfer[transfer.task == task]], optimum, w):g})"
            for w in (0.0, 0.1, 0.2)
        ]
        print(f"| {task} | evaluations to the optimum | {'; '.join(near)} | | | | |")


if __name__ == "__main__":
    main()
