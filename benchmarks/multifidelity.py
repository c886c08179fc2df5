"""Multi-fidelity NAS on NB201 (issue 22): regret vs training cost, and the cost to reach each
dataset's 200-epoch optimum, for multi-fidelity GraB-NAS, single-fidelity GraB-NAS and the
Hyperband/BOHB-style baselines.

Cost model (grabnas.train.cost.training_costs): training time proportional to FLOPs x epochs, in
units of one 200-epoch training of the dataset's mean cell; a 12-epoch evaluation of a cell costs
12/200 of its 200-epoch one; a promotion to 200 epochs trains from scratch. Regret at cost c: the
200-epoch optimum minus the best 200-epoch value evaluated by then. A run stops at the optimum
(its regret stays 0) or at --max-cost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multifidelity.py \
        --tasks cifar10,cifar100,imagenet16 --seeds 20 \
        --optimizers grabnas-mf,grabnas,asha-random,optuna-tpe-hyperband --out benchmarks/results/multifidelity

Real training (the shipped multi-fidelity ground truths, ``TASK@Nep`` columns; cost = measured
seconds in units of the task's mean target training; GraB-NAS with the ``nb201-all`` surrogate
and the task's images, as ``grabnas search --dataset TASK`` starts):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multifidelity.py --benchmark csv:groundtruth-images-mf \
        --target-epochs 5 --low-epochs 2 --tasks digits~train20,digits~noise0.5,digits~4px --seeds 20 \
        --optimizers "grabnas-mf,grabnas[surrogate=nb201-all,data={task}],asha-random,optuna-tpe-hyperband" \
        --out benchmarks/results/multifidelity-groundtruths

Every finished run is kept as runs/<task>/<optimizer>/<seed>.json.gz: a rerun skips it (resume);
--summary-only rewrites summary.md, results.csv.gz and regret_cost.png from those files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from grabnas.cli.args import csv_list

COST_MARKS = (2.5, 5.0, 10.0, 25.0, 50.0)


def build_multifidelity(spec: str, bench, task: str, seed: int, fidelities, cache: dict):
    """The multi-fidelity optimizer ``spec`` for ``task``: NB201's builder, or for another table
    :func:`~grabnas.search.dataset.build_table_multifidelity`, ``grabnas-mf`` with the task's
    images (``data={task}``, as ``grabnas search --dataset`` starts) unless the spec says otherwise."""
    from grabnas.search.dataset import build_table_multifidelity
    from grabnas.search.multifidelity import build_nb201_multifidelity

    if bench.name == "nb201":
        return build_nb201_multifidelity(spec, bench, task, seed, cache)
    if spec.split("[")[0] == "grabnas-mf" and "data=" not in spec:
        spec = spec[:-1] + ",data={task}]" if spec.endswith("]") else spec + "[data={task}]"
    return build_table_multifidelity(spec, bench, task, seed, fidelities)


def run_one(
    bench,
    task: str,
    spec: str,
    seed: int,
    max_cost: float,
    cache: dict,
    max_asks: int = 1000,
    target_epochs: int | None = None,
    low_epochs: list[int] | None = None,
) -> dict:
    from grabnas.evaluation.multifidelity import MultiFidelityLookup
    from grabnas.search.multifidelity import is_multifidelity
    from grabnas.search.registry import build_optimizer

    ev = MultiFidelityLookup(bench, task, target_epochs, low_epochs)
    low_name, target_name = ev.fidelities.names[0], ev.fidelities.names[-1]
    optimum = bench.optimum(task)
    mf = is_multifidelity(spec)
    opt = (
        build_multifidelity(spec, bench, task, seed, ev.fidelities, cache)
        if mf
        else build_optimizer(spec.replace("{task}", task), bench, task, seed, cache=cache)
    )
    steps, cost, best, ask_seconds = [], 0.0, -np.inf, []
    reached = None
    for _ in range(max_asks):
        t0 = time.perf_counter()
        asked = opt.ask(1)
        ask_seconds.append(time.perf_counter() - t0)
        if not asked:
            break
        trial = asked[0]
        result = ev(trial)
        t1 = time.perf_counter()
        opt.tell([trial], [result.value])
        ask_seconds[-1] += time.perf_counter() - t1
        fidelity = getattr(trial, "name", target_name)
        cost += result.cost
        if fidelity == target_name and result.value is not None:
            best = max(best, result.value)
        steps.append(
            {"arch": str(trial), "fidelity": fidelity, "value": result.value, "cost": round(cost, 6), "best": best}
        )
        if best >= optimum - 1e-9 and reached is None:
            reached = cost
            break
        if cost >= max_cost:
            break
    return {
        "task": task,
        "optimizer": spec,
        "seed": seed,
        "optimum": optimum,
        "reached_cost": reached,
        "steps": steps,
        "fidelities": list(ev.fidelities.names),
        "evals_target": sum(s["fidelity"] == target_name for s in steps),
        "evals_low": sum(s["fidelity"] == low_name for s in steps),
        "s_per_iter": float(np.mean(ask_seconds)) if ask_seconds else 0.0,
        "max_cost": max_cost,
    }


def regret_at(run: dict, c: float) -> float:
    """Regret (percentage points) after spending cost ``c``."""
    best = -np.inf
    for s in run["steps"]:
        if s["cost"] > c + 1e-12:
            break
        best = s["best"]
    if run["reached_cost"] is not None and run["reached_cost"] <= c:
        return 0.0
    return float(run["optimum"] - best) if np.isfinite(best) else float("nan")


def ratio_interval(costs: dict, base: dict, draws: int = 4000, level: float = 0.9) -> tuple[float, float] | None:
    """Bootstrap interval of ``median(costs) / median(base)`` over the seeds both have (seed -> cost,
    inf where the optimum was not reached), resampling seeds with replacement and keeping each seed's
    pair together (a resample with an infinite median, an optimum most of its seeds missed, counts as
    an infinite ratio); None when fewer than 5 seeds are shared or the lower bound is infinite."""
    seeds = sorted(set(costs) & set(base))
    if len(seeds) < 5:
        return None
    a, b = np.array([costs[s] for s in seeds]), np.array([base[s] for s in seeds])
    idx = np.random.default_rng(0).integers(0, len(seeds), size=(draws, len(seeds)))
    num, den = np.median(a[idx], axis=1), np.median(b[idx], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(np.isfinite(num) & np.isfinite(den), num / den, np.inf)
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    hi = np.inf if np.isnan(hi) else hi  # interpolated between two infinite ratios
    return (float(lo), float(hi)) if np.isfinite(lo) else None


def _evals(run: dict, which: str) -> int:
    """A run's evaluations at the target (``which="target"``) or lowest fidelity (``"low"``; runs
    written before the fidelities were named: ``evals_200`` / ``evals_12``)."""
    old = {"target": "evals_200", "low": "evals_12"}[which]
    return run.get(f"evals_{which}", run.get(old, 0))


def summarise(
    out: Path,
    tasks,
    optimizers,
    max_cost: float,
    bench_label: str = "NB201",
    fidelities: tuple[str, str] = ("12ep", "200ep"),
    reference: str = "grabnas",
    cost_unit: str = "one 200-epoch training of the dataset's mean cell (training time = FLOPs x epochs)",
) -> None:
    runs = []
    for f in sorted((out / "runs").glob("*/*/*.json.gz")):
        runs.append(json.loads(gzip.decompress(f.read_bytes())))
    low, high = fidelities
    lines = [
        f"# Multi-fidelity NAS on {bench_label} (issue 22)",
        "",
        f"Cost unit: {cost_unit}.",
        f"Cost to optimum: cumulative cost when the {high} optimum has been evaluated at {high};",
        f"median over seeds [25th-75th percentile], '> {max_cost:g}' where a run stopped at --max-cost first.",
        f"Ratio: median cost to optimum over single-fidelity GraB-NAS's ({reference}) on the same seeds; in brackets",
        "its 90 % bootstrap interval (4,000 resamples of the seeds, each seed's pair kept together).",
        f"Regret@c: {high} optimum minus the best {high} value evaluated within cost c, mean over the",
        f"seeds that had a {high} evaluation by then ('-': none had).",
        "",
    ]
    rows_csv = ["optimizer,task,seed,step,fidelity,arch,value,cost,best"]
    curves = {}
    for task in tasks:
        lines += [
            f"## {task}",
            "",
            f"| optimizer | seeds | reached | median cost to optimum | ratio to {reference} | {high} evals | {low} evals | "
            + " | ".join(f"regret@{c:g}" for c in COST_MARKS)
            + " | s/iter |",
            "|---|---|---|---|---|---|---|" + "---|" * len(COST_MARKS) + "---|",
        ]
        by_seed = {
            r["seed"]: (r["reached_cost"] if r["reached_cost"] is not None else np.inf)
            for r in runs
            if r["task"] == task and r["optimizer"] == reference
        }
        base = float(np.median(list(by_seed.values()))) if by_seed else None
        for spec in optimizers:
            rs = [r for r in runs if r["task"] == task and r["optimizer"] == spec]
            if not rs:
                continue
            costs = np.array([r["reached_cost"] if r["reached_cost"] is not None else np.inf for r in rs])
            med = float(np.median(costs))
            q1, q3 = np.percentile(costs, [25, 75]) if np.isfinite(costs).any() else (np.inf, np.inf)
            fmt = lambda x: f"{x:.2f}" if np.isfinite(x) else f"> {max_cost:g}"  # noqa: E731
            ratio = f"{med / base:.2f}" if base and np.isfinite(med) and np.isfinite(base) else "-"
            interval = ratio_interval({r["seed"]: c for r, c in zip(rs, costs)}, by_seed) if spec != reference else None
            if ratio != "-" and interval is not None:
                ratio += f" [{interval[0]:.2f}-{interval[1]:.2f}]"
            regrets = []
            for c in COST_MARKS:
                v = np.array([regret_at(r, c) for r in rs])
                regrets.append(f"{np.nanmean(v):.3f}" if np.isfinite(v).any() else "-")
            lines.append(
                f"| {spec} | {len(rs)} | {int(np.isfinite(costs).sum())}/{len(rs)} | {fmt(med)} [{fmt(q1)}-{fmt(q3)}] | {ratio} | "
                f"{np.median([_evals(r, 'target') for r in rs]):.0f} | {np.median([_evals(r, 'low') for r in rs]):.0f} | "
                + " | ".join(regrets)
                + f" | {np.mean([r['s_per_iter'] for r in rs]):.3f} |"
            )
            grid = np.linspace(0, max_cost, 201)
            curves[(task, spec)] = (grid, np.array([[regret_at(r, c) for c in grid] for r in rs]))
            for r in rs:
                for i, s in enumerate(r["steps"], 1):
                    rows_csv.append(
                        f"{spec},{task},{r['seed']},{i},{s['fidelity']},{s['arch']},{s['value']},{s['cost']},{s['best']}"
                    )
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    with gzip.open(out / "results.csv.gz", "wt") as f:
        f.write("\n".join(rows_csv) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for spec in optimizers:
                if (task, spec) not in curves:
                    continue
                grid, R = curves[(task, spec)]
                with np.errstate(all="ignore"):
                    med = np.nanmedian(R, axis=0)
                ax.plot(grid, med, label=spec)
            ax.set_title(f"{bench_label} {task}")
            ax.set_xlabel(f"training cost ({high} trainings of a mean cell)")
            ax.set_ylabel("median regret (%)")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_yscale("symlog", linthresh=0.1)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "regret_cost.png", dpi=120)
    except ImportError:  # pragma: no cover
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="nb201", help="nb201, or csv:TABLE with TASK@Nep columns")
    p.add_argument("--target-epochs", type=int, default=None, help="the target fidelity's epochs (csv: tables)")
    p.add_argument("--low-epochs", default=None, help="which TASK@Nep columns are the lower fidelities (default: all)")
    p.add_argument("--reference", default=None, help="the single-fidelity optimizer of the ratio (default: grabnas)")
    p.add_argument("--tasks", default="cifar10,cifar100,imagenet16")
    p.add_argument("--optimizers", default="grabnas-mf,grabnas,asha-random,optuna-tpe-hyperband")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--max-cost", type=float, default=50.0)
    p.add_argument("--out", default="benchmarks/results/multifidelity")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args()
    tasks, optimizers = args.tasks.split(","), list(csv_list(args.optimizers))  # grabnas-mf[a=1,b=2] stays whole
    out = Path(args.out)
    from grabnas.benchmarks import load_benchmark
    from grabnas.evaluation.multifidelity import table_fidelities

    bench = load_benchmark(args.benchmark)
    low_epochs = [int(e) for e in args.low_epochs.split(",")] if args.low_epochs else None
    names = table_fidelities(bench, tasks[0], args.target_epochs, low_epochs)[0].names
    nb201 = bench.name == "nb201"
    reference = args.reference or next((o for o in optimizers if o.split("[")[0] == "grabnas"), "grabnas")
    if not args.summary_only:
        cache: dict = {}
        for task in tasks:
            for spec in optimizers:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    f = out / "runs" / task / spec / f"{seed}.json.gz"
                    if f.exists():
                        continue
                    t0 = time.perf_counter()
                    run = run_one(
                        bench,
                        task,
                        spec,
                        seed,
                        args.max_cost,
                        cache,
                        target_epochs=args.target_epochs,
                        low_epochs=low_epochs,
                    )
                    f.parent.mkdir(parents=True, exist_ok=True)
                    tmp = f.with_suffix(".tmp")
                    tmp.write_bytes(gzip.compress(json.dumps(run).encode(), mtime=0))
                    tmp.replace(f)
                    print(
                        f"{task} {spec} seed {seed}: cost to optimum {run['reached_cost']}, "
                        f"{run['evals_target']} x {names[-1]} + {run['evals_low']} x {names[0]}, "
                        f"{time.perf_counter() - t0:.1f} s",
                        flush=True,
                    )
    summarise(
        out,
        tasks,
        optimizers,
        args.max_cost,
        "NB201" if nb201 else args.benchmark,
        (names[0], names[-1]),
        reference,
        "one 200-epoch training of the dataset's mean cell (training time = FLOPs x epochs)"
        if nb201
        else f"one {names[-1]} training of the task's mean cell (the table's measured seconds)",
    )


if __name__ == "__main__":
    main()
