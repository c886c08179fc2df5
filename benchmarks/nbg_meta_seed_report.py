"""Issue 18's NAS-Bench-Graph verdicts per meta-training seed of the surrogate.

For each dataset and meta-training seed: GraB-NAS's (the default's) regret at 10 and 50
evaluations, mean ± standard error over search seeds; **no harm** (regret@50 at most the better of
GP-BO's and REA's plus one standard error of the difference) and **transfer kept** (regret@10 at
most transfer-rank's, same tolerance), as benchmarks/portfolio_report.py decides them; and the
surrogate's top-10 % Spearman zero-shot and after 20 random observations. Seed 0 is the shipped
checkpoint (its searches from ``--shipped``, its surrogate report from ``--shipped-report``; the
row "0 (shipped)"); the seeds of ``--runs`` (seed 0 too, for a checkpoint meta-trained otherwise)
come as benchmarks/nbg_meta_seeds.sh writes them (``TASK-sS.json`` and ``TASK-sS-search/results.csv``)
or as committed (``TASK-sS-search.csv.gz``). Baselines: the committed benchmarks/results/nbgraph runs.

Usage: python benchmarks/nbg_meta_seed_report.py --runs runs/nbg-meta-seeds
    [--shipped DIR] [--shipped-report FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from portfolio_report import NBG, RESULTS, _at, _by_seed, _mean_se, _pick, _results


def verdicts(runs: dict[int, np.ndarray], base: dict, task: str) -> dict:
    """Regret at 10 / 50 (mean, se) of ``runs`` (``{search seed: regret curve}``) and the two verdicts."""
    r10, r50 = _mean_se(_at(runs, 10).values()), _mean_se(_at(runs, 50).values())
    refs = [_mean_se(_at(d, 50).values()) for k in ("gpbo", "rea") if (d := _pick(base, task, k))]
    best = min(refs)
    tr = _mean_se(_at(_pick(base, task, "transfer-rank"), 10).values())
    return {
        "seeds": len(runs),
        "r10": r10,
        "r50": r50,
        "no_harm": r50[0] <= best[0] + math.hypot(r50[1], best[1]) + 1e-9,
        "kept": r10[0] <= tr[0] + math.hypot(r10[1], tr[1]) + 1e-9,
        "best": best,
        "tr10": tr[0],
    }


def _top(report: dict, shots: str) -> float:
    return float(report["shots"][shots]["spearman_top"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True)
    ap.add_argument("--shipped", default=str(RESULTS / "adaptation" / "screens" / "fitftol" / "nbg"))
    ap.add_argument("--shipped-report", default=str(RESULTS / "adaptation" / "learning10" / "sur-nasbench-graph.json"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    runs_dir = Path(args.runs)
    base = _by_seed(_results(RESULTS / "nbgraph"))
    shipped = _by_seed(_results(Path(args.shipped)))
    shipped_report = {t["task"]: t for t in json.loads(Path(args.shipped_report).read_text())["tasks"]}
    lines = [
        "| dataset | meta seed | search seeds | r@10 | r@50 | best of GP-BO / REA r@50 | transfer-rank r@10 "
        "| no harm | transfer kept | top-10 % Spearman zero-shot / 20 obs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    count: dict[str, list[int]] = {}
    for task in NBG:
        rows = [("0 (shipped)", _pick(shipped, task, "grabnas"), shipped_report.get(task))]
        for report in sorted(runs_dir.glob(f"{task}-s*.json"), key=lambda f: int(f.stem.rsplit("-s", 1)[1])):
            seed = int(report.stem.rsplit("-s", 1)[1])
            found = [
                f
                for f in (
                    runs_dir / f"{task}-s{seed}-search" / "results.csv",
                    runs_dir / f"{task}-s{seed}-search.csv.gz",
                )
                if f.is_file()
            ]
            searched = _pick(_by_seed(found[0]), task, "grabnas") if found else None
            rows.append((str(seed), searched, json.loads(report.read_text())["tasks"][0]))
        for seed, searched, report in rows:
            learn = f"{_top(report, '0'):.3f} / {_top(report, '20'):.3f}" if report else "-"
            if not searched:
                lines.append(f"| {task} | {seed} | 0 | - | - | - | - | - | - | {learn} |")
                continue
            v = verdicts(searched, base, task)
            count.setdefault(seed, [0, 0, 0])
            count[seed] = [count[seed][0] + 1, count[seed][1] + v["no_harm"], count[seed][2] + v["kept"]]
            lines.append(
                f"| {task} | {seed} | {v['seeds']} | {v['r10'][0]:.3f} ± {v['r10'][1]:.3f} "
                f"| {v['r50'][0]:.3f} ± {v['r50'][1]:.3f} | {v['best'][0]:.3f} ± {v['best'][1]:.3f} | {v['tr10']:.3f} "
                f"| {'yes' if v['no_harm'] else 'no'} | {'yes' if v['kept'] else 'no'} | {learn} |"
            )
    summary = [
        f"meta-training seed {s}: no harm on {c[1]} of {c[0]} datasets, transfer kept on {c[2]} of {c[0]}"
        for s, c in count.items()
    ]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
