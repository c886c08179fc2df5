"""GraB-NAS with and without an opt-in variant (first: the random-arm portfolio), paired by search
seed, against the baselines.

Without a GP-BO model to build, the random-arm portfolio's first ``portfolio`` asks are the
default's for the same search seed, so the two are compared seed by seed: the mean paired
difference of regret and its standard error are far tighter than two unpaired means. For every
task: both variants' regret at ``at_early`` and ``at_late`` evaluations, median evaluations to
the optimum, the paired difference at ``at_late``, and issue 18's verdicts for each variant
(no harm: regret at ``at_late`` at most the better of GP-BO's and REA's plus one standard error of
the difference; transfer kept: regret at ``at_early`` at most transfer-rank's, same tolerance).

Usage: python benchmarks/portfolio_report.py --runs RUNS [--against DIR ...] [--out FILE]
(RUNS holds ``portfolio20-{nb201,stress,stress-in16,nbg,groundtruth}`` as
``benchmarks/adaptation.sh portfolio20`` writes them, or is a committed copy such as
benchmarks/results/adaptation/portfolio/random-alone, optionally with ``csvloto`` (issue 18's
protocol on the ground truths, default and baselines in benchmarks/results/adaptation/csv-loto);
a section whose runs are missing is left out. The default's runs and the baselines are the
committed ones in benchmarks/results; ``--against DIR [DIR ...]`` takes the default's runs from the
first DIR that has them instead, laid out as RUNS, e.g. a committed screen of a variant that has
since become the default.)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from grabnas.report import evals_to_optimum, load_results

RESULTS = Path(__file__).resolve().parent / "results"
NBG = ["cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins"]


def _results(folder: Path) -> Path:
    for name in ("results.csv", "results.csv.gz"):
        if (folder / name).exists():
            return folder / name
    raise SystemExit(f"no results.csv(.gz) in {folder}")


def _run(runs: Path, name: str) -> Path:
    """``RUNS/portfolio20-NAME`` as the benchmark script writes it, or ``RUNS/NAME`` as committed
    (benchmarks/results/adaptation/portfolio/random-alone)."""
    return runs / f"portfolio20-{name}" if (runs / f"portfolio20-{name}").exists() else runs / name


def _by_seed(path: Path) -> dict[tuple[str, str], dict[int, np.ndarray]]:
    """``(task, optimizer) -> {seed: regret after each evaluation}``."""
    runs: dict[tuple[str, str], dict[int, list[tuple[int, float]]]] = {}
    for r in load_results(path):
        runs.setdefault((r["task"], r["optimizer"]), {}).setdefault(r["seed"], []).append((r["step"], r["regret"]))
    return {k: {s: np.array([v for _, v in sorted(p)]) for s, p in d.items()} for k, d in runs.items()}


def _at(curves: dict[int, np.ndarray], at: int) -> dict[int, float]:
    return {s: float(c[min(at, len(c)) - 1]) for s, c in curves.items()}


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(list(x), dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def _pick(table: dict, task: str, base: str) -> dict[int, np.ndarray] | None:
    """The runs of optimizer ``base`` (exact name, else the first ``base[...]``) on ``task``."""
    if (task, base) in table:
        return table[(task, base)]
    for (t, opt), d in table.items():
        if t == task and opt.split("[")[0] == base:
            return d
    return None


def section(title: str, tasks: list[str], new: dict, old: dict, base: dict, early: int, late: int) -> str:
    lines = [
        f"### {title}",
        "",
        f"| task | seeds (paired) | default r@{early} | r@{late} | evals to optimum | variant r@{early} | r@{late} "
        f"| evals to optimum | paired difference r@{late} | best of GP-BO / REA r@{late} | transfer-rank r@{early} "
        "| no harm default / variant | transfer kept default / variant |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        a, b = _pick(old, task, "grabnas"), _pick(new, task, "grabnas")
        if a is None or b is None:
            continue
        common = sorted(set(a) & set(b))
        diff = _mean_se(_at(b, late)[s] - _at(a, late)[s] for s in common)
        refs = [(k, *_mean_se(_at(d, late).values())) for k in ("gpbo", "rea") if (d := _pick(base, task, k))]
        best = min(refs, key=lambda r: r[1]) if refs else None
        tr = _pick(base, task, "transfer-rank")
        tr_stat = _mean_se(_at(tr, early).values()) if tr else None
        cells, harm, kept = [], [], []
        for runs in (a, b):
            e, e_se = _mean_se(_at(runs, early).values())
            m, m_se = _mean_se(_at(runs, late).values())
            width = max(len(c) for c in runs.values())
            curves = np.stack([np.pad(c, (0, width - len(c)), mode="edge") for c in runs.values()])
            evals = np.median(evals_to_optimum(curves, tol=1e-6))
            cells += [f"{e:.3f} ± {e_se:.3f}", f"{m:.3f} ± {m_se:.3f}", f"{evals:g}"]
            # 1e-9: a mean exactly at the bound passes (e.g. one seed of 20 at NB201 cifar10's 0.01-point runner-up)
            harm.append("-" if best is None else "yes" if m <= best[1] + math.hypot(m_se, best[2]) + 1e-9 else "no")
            kept.append(
                "-" if tr_stat is None else "yes" if e <= tr_stat[0] + math.hypot(e_se, tr_stat[1]) + 1e-9 else "no"
            )
        best_txt = f"{best[1]:.3f} ± {best[2]:.3f} ({best[0]})" if best else "-"
        tr_txt = f"{tr_stat[0]:.3f}" if tr_stat else "-"
        lines.append(
            f"| {task} | {len(b)} ({len(common)}) | {' | '.join(cells[:3])} | {' | '.join(cells[3:])} "
            f"| {diff[0]:+.3f} ± {diff[1]:.3f} | {best_txt} | {tr_txt} | {' / '.join(harm)} | {' / '.join(kept)} |"
        )
    return "\n".join(lines) + "\n"


def _runs(*folders: Path) -> dict[tuple[str, str], dict[int, np.ndarray]]:
    """The runs of ``folders`` (each holding ``results.csv(.gz)``; missing ones are skipped), merged."""
    out: dict = {}
    for folder in folders:
        if folder.exists():
            out.update(_by_seed(_results(folder)))
    return out


def _first_runs(folders: list[Path], names: tuple[str, ...]) -> dict:
    """The runs ``names`` of the first of ``folders`` that has any of them (empty if none has)."""
    for folder in folders:
        runs = _runs(*(_run(folder, name) for name in names))
        if runs:
            return runs
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True)
    ap.add_argument(
        "--against",
        nargs="+",
        default=None,
        help="the default's runs, laid out as --runs; per section the first folder that has them (default: committed)",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    runs = Path(args.runs)
    adapt = RESULTS / "adaptation"
    stress = _runs(adapt / "stress-imagenet16", adapt / "stress-cifar100")
    stress_old = {k: v for k, v in stress.items() if k[1].split("[")[0] != "grabnas" or k[1].count("=") == 1}
    gt = _runs(RESULTS / "ground-truths" / "bench")
    loto = _runs(adapt / "csv-loto" / "csvloto")
    # (title, tasks, the variant's runs, the default's, the baselines', early and late budgets)
    sections = [
        ("NAS-Bench-201 (shipped checkpoints)", ["cifar10", "cifar100", "imagenet16"],
         _runs(_run(runs, "nb201"), _run(runs, "nb201-in16")), _runs(adapt / "nb201"), _runs(RESULTS / "nb201-grabnas"),
         10, 50),
        ("NAS-Bench-Graph (shipped checkpoints)", NBG,
         _runs(_run(runs, "nbg")), _runs(adapt / "nbgraph"), _runs(RESULTS / "nbgraph"), 10, 50),
        ("Misleading-prior stress tasks", ["imagenet16-top5rev", "cifar100-top20rev"],
         _runs(_run(runs, "stress-in16"), _run(runs, "stress")), stress_old, stress, 10, 50),
        ("Real-training ground truths (25 trainings)", ["digits~train20", "digits~noise0.5", "digits~4px"],
         _runs(_run(runs, "groundtruth")), gt, gt, 10, 25),
        ("Issue 18's protocol on the ground truths (surrogates meta-trained leave-one-task-out from the table)",
         ["digits~train20", "digits~noise0.5", "digits~4px"], _runs(_run(runs, "csvloto")), loto, loto, 10, 50),
    ]  # fmt: skip
    if args.against:
        folders = [("nb201",), ("nbg",), ("stress-in16", "stress"), ("groundtruth",), ("csvloto",)]
        sections = [
            (title, tasks, new, _first_runs([Path(a) for a in args.against], names) or old, base, early, late)
            for (title, tasks, new, old, base, early, late), names in zip(sections, folders)
        ]
    parts = [section(*s) for s in sections if s[2]]
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
