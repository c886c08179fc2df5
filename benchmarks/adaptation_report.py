"""Issue 18's criteria from the result folders of benchmarks/adaptation.sh and the baselines.

For every task: GraB-NAS (target-adapted GP, the default) against GP-BO, REA, transfer-rank and
GraB-NAS before issue 18 (``adaptation=meta``), mean regret ± standard error at 10 and 50
evaluations, and two verdicts:

* **no harm**: GraB-NAS's mean regret@50 is at most the best of GP-BO's and REA's plus one
  standard error of the difference (``sqrt(se_a^2 + se_b^2)``);
* **transfer kept**: GraB-NAS's mean regret@10 is at most transfer-rank's (same tolerance).

Usage: python benchmarks/adaptation_report.py --runs runs [--out FILE]
(folders: RUNS/adapt-nb201, RUNS/adapt-nbgraph, RUNS/adapt-stress-*, RUNS/adapt-nb201-sS-TASK, or
the committed copies: --runs benchmarks/results/adaptation;
baselines from benchmarks/results/nb201-grabnas and benchmarks/results/nbgraph).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from grabnas.report import evals_to_optimum, load_results, regret_curves

ROOT = Path(__file__).resolve().parent
NEW = "grabnas"  # the default's rows; stress and meta-seed runs name their surrogate in brackets
OLD_NOTE = "adaptation=meta"


def _find(runs: Path, name: str) -> Path:
    """``results.csv`` of bench ``name`` under ``runs``: ``adapt-NAME/results.csv`` as
    benchmarks/adaptation.sh writes it, or ``NAME/results.csv.gz`` as committed in
    benchmarks/results/adaptation."""
    for candidate in (runs / f"adapt-{name}" / "results.csv", runs / name / "results.csv.gz"):
        if candidate.exists():
            return candidate
    return runs / f"adapt-{name}" / "results.csv"


def _stat(curve: np.ndarray, at: int) -> tuple[float, float]:
    x = curve[:, min(at, curve.shape[1]) - 1]
    se = x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else 0.0
    return float(x.mean()), float(se)


def _kind(opt: str) -> str | None:
    base = opt.split("[")[0]
    if base == "grabnas":
        return "old" if OLD_NOTE in opt else ("pmk" if "prior_mean_kernel=true" in opt else "new")
    return base if base in ("gpbo", "rea", "transfer-rank", "random") else None


def table(curves: dict, tasks: list[str], old_curves: dict | None = None) -> tuple[str, dict]:
    """Markdown rows and verdict counts for ``tasks``."""
    lines = [
        "| task | GraB-NAS r@10 | r@50 | evals to optimum (median) | GP-BO r@50 | REA r@50 | transfer-rank r@10 | r@50 "
        "| GraB-NAS before (meta) r@50 | GraB-NAS + prior-mean kernel r@50 | no harm | transfer kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = {"no_harm": 0, "transfer": 0, "tasks": 0}
    for task in tasks:
        by = {}
        for (t, opt), c in {**(old_curves or {}), **curves}.items():
            k = _kind(opt)
            if t == task and k is not None and k not in by:
                by[k] = c
        if "new" not in by:
            continue
        g10, g10s = _stat(by["new"], 10)
        g50, g50s = _stat(by["new"], 50)
        evals = np.median(evals_to_optimum(by["new"], tol=1e-6))
        ref = [(k, *_stat(by[k], 50)) for k in ("gpbo", "rea") if k in by]
        best_k, b50, b50s = min(ref, key=lambda r: r[1]) if ref else ("-", math.nan, 0.0)
        harm_ok = g50 <= b50 + math.hypot(g50s, b50s) if ref else None
        t10, t10s = _stat(by["transfer-rank"], 10) if "transfer-rank" in by else (math.nan, 0.0)
        t50 = _stat(by["transfer-rank"], 50)[0] if "transfer-rank" in by else math.nan
        tr_ok = g10 <= t10 + math.hypot(g10s, t10s) if "transfer-rank" in by else None
        old = f"{_stat(by['old'], 50)[0]:.3f}" if "old" in by else "-"

        def fmt(k: str, by: dict = by) -> str:
            if k not in by:
                return "-"
            m, s = _stat(by[k], 50)
            return f"{m:.3f} ± {s:.3f}"

        lines.append(
            f"| {task} | {g10:.3f} ± {g10s:.3f} | {g50:.3f} ± {g50s:.3f} | {evals:g} | {fmt('gpbo')} | {fmt('rea')} "
            f"| {t10:.3f} | {t50:.3f} | {old} | {fmt('pmk')} | {'yes' if harm_ok else 'no'} | {'yes' if tr_ok else 'no'} |"
        )
        verdicts["tasks"] += 1
        verdicts["no_harm"] += bool(harm_ok)
        verdicts["transfer"] += bool(tr_ok)
    return "\n".join(lines), verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    runs = Path(args.runs)
    parts = []
    sections = [
        (
            "NAS-Bench-201 (20 seeds, shipped checkpoints)",
            _find(runs, "nb201"),
            ROOT / "results" / "nb201-grabnas" / "results.csv.gz",
            ["cifar10", "cifar100", "imagenet16"],
        ),
        (
            "NAS-Bench-Graph (shipped checkpoints)",
            _find(runs, "nbgraph"),
            ROOT / "results" / "nbgraph" / "results.csv.gz",
            ["cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins"],
        ),
        ("Misleading-prior stress tasks (20 seeds)", None, None, ["imagenet16-top5rev", "cifar100-top20rev"]),
    ]
    for title, new_path, base_path, tasks in sections:
        if new_path is None:
            curves = {}
            for name in ("stress-imagenet16", "stress-cifar100"):
                if _find(runs, name).exists():
                    curves.update(regret_curves(load_results(_find(runs, name))))
            old = None
        else:
            if not new_path.exists():
                continue
            curves = {k: v for k, v in regret_curves(load_results(new_path)).items() if k[1] == NEW}
            old = {}
            for (t, o), c in regret_curves(load_results(base_path)).items():
                o = "grabnas[adaptation=meta]" if o == "grabnas" else o
                old[(t, o)] = c
        text, v = table(curves, tasks, old)
        parts.append(
            f"### {title}\n\n{text}\n\nno harm on {v['no_harm']} of {v['tasks']}; "
            f"transfer kept (r@10 <= transfer-rank's) on {v['transfer']} of {v['tasks']}\n"
        )
    # NB201 over meta-training seeds: evaluations to the optimum, median over seeds and checkpoints
    lines = [
        "| task | meta-training seed | search seeds | r@10 | r@50 | median evals to optimum |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[str, list[float]] = {}
    for task in ("cifar10", "cifar100", "imagenet16"):
        sources = [(0, _find(runs, "nb201"))] + [(s, _find(runs, f"nb201-s{s}-{task}")) for s in (1, 2)]
        for s, path in sources:
            if not path.exists():
                continue
            for (t, _o), c in regret_curves(load_results(path)).items():
                if t != task:
                    continue
                e = evals_to_optimum(c, tol=1e-6)
                medians.setdefault(task, []).append(float(np.median(e)))
                m10, s10 = _stat(c, 10)
                m50, s50 = _stat(c, 50)
                lines.append(
                    f"| {task} | {s} | {c.shape[0]} | {m10:.3f} ± {s10:.3f} | {m50:.3f} ± {s50:.3f} | {np.median(e):g} |"
                )
    if medians:
        summary = ", ".join(f"{t} {np.median(v):g}" for t, v in medians.items())
        parts.append(
            "### NAS-Bench-201 over meta-training seeds\n\n"
            + "\n".join(lines)
            + f"\n\nmedian over meta-training seeds of the median evaluations to the optimum: {summary} "
            "(transfer-rank: 3 / 13 / 15)\n"
        )
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
