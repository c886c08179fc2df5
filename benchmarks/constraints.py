"""Issue 20's constrained NB201 searches: evaluations to the *constrained* optimum (the task's best
feasible cell) of GraB-NAS against REA, random search and transfer-rank, under two limits,
``params <= 0.5 M`` and ``FLOPs <= 50 MFLOPs`` (each the task's own NB201 network, C=16, N=5).

Each limit is one ``grabnas bench`` folder (resumable: rerun the same command to continue);
this script then prints (and writes to OUT/constraints.md) per limit and task: the constrained
optimum, whether the unconstrained optimum is feasible, and per optimizer the median evaluations
to the constrained optimum (seeds that reached it) and the mean regret at 10 and at the budget.

Usage (the issue's setting: 3 datasets, 20 seeds, budget 50):
    PYTHONPATH=src python benchmarks/constraints.py --out runs/constraints --jobs 2
Smaller: --tasks cifar10 --seeds 5 --jobs 1.

A latency limit (``latency-MSms``, predicted by a table of ``grabnas latency``; the table's network
must be the tasks', e.g. NB201's CIFAR-10 network for ``--tasks cifar10``):
    PYTHONPATH=src python benchmarks/constraints.py --tasks cifar10 --seeds 3 --limits latency \
        --max-latency 15.3 --latency-table runs/latency-cpu-b1.json --out runs/constraints
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from grabnas.bench import BenchConfig, run_bench
from grabnas.benchmarks import load_benchmark
from grabnas.report import evals_to_optimum, load_results, regret_curves
from grabnas.search.constraints import Constraints, benchmark_cost_model, constrained_optimum

LIMITS = {"params-0.5M": {"max_params": 0.5}, "flops-50M": {"max_flops": 50.0}}
OPTIMIZERS = ("grabnas", "rea", "random", "transfer-rank")


def _stat(x: np.ndarray) -> str:
    se = x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else 0.0
    return f"{x.mean():.3f} ± {se:.3f}"


def table(folder: Path, name: str, bench, budget: int, latency_table=None) -> list[str]:
    rows = load_results(folder / "results.csv")
    curves = regret_curves(rows)
    c = Constraints.from_dict(LIMITS[name], latency_table)
    lines = [f"## {c.describe()} ({folder})", ""]
    for task in dict.fromkeys(t for t, _ in curves):
        bound = c.with_costs(benchmark_cost_model(bench, task))
        values = bench.values(task)
        arch, value = constrained_optimum(bound, values)
        top = max(values, key=values.get)
        feasible = bound.feasible_mask(bench.pool(task)).sum()
        lines += [
            f"### {task}: {feasible:,} feasible cells; constrained optimum {value:.4g} ({bound.usage_text(arch)}); "
            f"unconstrained optimum {values[top]:.4g} {'feasible' if bound.feasible(top) else 'infeasible'}",
            "",
            f"| optimizer | seeds | median evals to the constrained optimum | regret@10 | regret@{budget} |",
            "|---|---|---|---|---|",
        ]
        for (t, opt), curve in curves.items():
            if t != task:
                continue
            reach = evals_to_optimum(curve, value)
            med = np.median(reach)
            med_s = f"{med:.0f}" if np.isfinite(med) else f"> {curve.shape[1]}"
            lines.append(
                f"| {opt} | {curve.shape[0]} | {med_s} ({int(np.isfinite(reach).sum())}/{len(reach)} reached) | "
                f"{_stat(curve[:, min(10, curve.shape[1]) - 1])} | {_stat(curve[:, -1])} |"
            )
        lines.append("")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/constraints")
    p.add_argument("--tasks", default="cifar10,cifar100,imagenet16")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--limits", default=",".join(LIMITS), help=f"which of {', '.join(LIMITS)}")
    p.add_argument("--data", default=None, help="NB201 table (default: the shipped one)")
    p.add_argument("--max-latency", type=float, default=None, help="ms; adds the limit 'latency' to --limits' choices")
    p.add_argument("--latency-table", default=None, help="the latency table --max-latency reads")
    args = p.parse_args()
    if args.max_latency is not None:
        LIMITS["latency"] = {"max_latency": args.max_latency}
    bench = load_benchmark("nb201", args.data)
    out = Path(args.out)
    lines = ["# Constrained NB201 searches (benchmarks/constraints.py)", ""]
    lines.append(
        f"{args.seeds} seeds, budget {args.budget}; regret against the constrained optimum (best feasible cell)."
    )
    lines.append("")
    for name in args.limits.split(","):
        folder = f"latency-{args.max_latency:g}ms" if name == "latency" else name
        table_path = str(Path(args.latency_table).resolve()) if name == "latency" else None
        config = BenchConfig(
            "nb201",
            tuple(args.tasks.split(",")),
            tuple(args.optimizers.split(",")),
            args.seeds,
            args.budget,
            **LIMITS[name],
            latency_table=table_path,
        )
        run_bench(config, out / folder, data=args.data, jobs=args.jobs, threads=1, progress=False, log=print)
        lines += table(out / folder, name, bench, args.budget, table_path)
    text = "\n".join(lines)
    (out / "constraints.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
