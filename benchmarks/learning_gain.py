"""Issue 18's "learning visible" figures from ``grabnas surrogate eval`` reports: per held-out task the
top-10 % Spearman after N random observations minus its zero-shot value, their mean over the tasks
with a standard error from the draws' spread, and how many (task, observation count) cells have a
90 % interval coverage inside 80-97 %.

Usage: python benchmarks/learning_gain.py REPORT.json [REPORT.json ...] [--shots 20]

The standard error is that of the draws (which random observations were taken), for the fixed set
of tasks: sqrt(sum_t var_t / D_t) / T, var_t the variance of task t's D_t draws. Reports written
before the per-draw values were stored (``spearman_top_draws``) give the mean only.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def gains(reports: list[dict], shots: int) -> tuple[list[tuple[str, float, float | None]], float, float | None]:
    """``([(task, gain, its draw SE or None)], mean gain, SE of the mean or None)``."""
    rows = []
    for rep in reports:
        for task in rep["tasks"]:
            at = task["shots"].get(str(shots))
            if at is None:
                continue
            zero = task["shots"]["0"]["spearman_top"]
            draws = [d for d in at.get("spearman_top_draws") or [] if math.isfinite(d)]
            se = float(np.std(draws, ddof=1) / math.sqrt(len(draws))) if draws and len(draws) > 1 else None
            rows.append((task["task"], at["spearman_top"] - zero, se))
    mean = float(np.mean([g for _, g, _ in rows]))
    ses = [se for _, _, se in rows]
    se_mean = math.sqrt(sum(s**2 for s in ses)) / len(rows) if all(s is not None for s in ses) else None
    return rows, mean, se_mean


def coverage_cells(reports: list[dict], low: float = 0.80, high: float = 0.97) -> tuple[int, int]:
    """``(inside, total)``: (task, observation count) cells whose 90 % coverage is inside [low, high]."""
    values = [at["coverage90"] for rep in reports for task in rep["tasks"] for at in task["shots"].values()]
    return sum(low <= v <= high for v in values), len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--shots", type=int, default=20)
    args = ap.parse_args()
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    rows, mean, se = gains(reports, args.shots)
    print(f"| task | top-10 % Spearman gain at {args.shots} observations (± draw SE) |")
    print("|---|---|")
    for task, g, s in rows:
        print(f"| {task} | {g:+.3f}" + (f" ± {s:.3f}" if s is not None else "") + " |")
    print()
    print(f"mean over {len(rows)} tasks: {mean:+.3f}" + (f" ± {se:.3f}" if se is not None else " (no per-draw values)"))
    inside, total = coverage_cells(reports)
    print(f"90 % coverage inside 80-97 %: {inside} of {total} cells")


if __name__ == "__main__":
    main()
