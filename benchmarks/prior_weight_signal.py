"""Does the target-adapted GP's fitted prior-mean weight tell a misleading prior early?

For each task, run the default GraB-NAS for 10 evaluations (seeds 0..S-1) and record the MAP fit
at the 11th ask (10 observations): the prior-mean weight ``a`` (``mean_scale``), the meta-kernel
factor, the target kernel's scale and the noise, plus the spread and best of the 10 values. The
tasks are the issue-18 rows: NB201, NAS-Bench-Graph, the two stress tasks and the real-training
ground truths with the ``nb201-all`` surrogate. See docs/adaptation.md ("What the prior-mean weight
says at 10 observations").

Usage: python benchmarks/prior_weight_signal.py --stress-tables DIR [--seeds 5] [--part I --parts N] --out FILE.jsonl
(``DIR`` from ``benchmarks/stress_tasks.py --out DIR``; ``--part/--parts`` split the tasks over processes.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grabnas.benchmarks import load_benchmark
from grabnas.search.registry import build_optimizer

NBG = ["cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins"]
GROUND_TRUTHS = ["digits~train20", "digits~noise0.5", "digits~4px"]


def jobs(stress: str) -> list[tuple[str, str, str]]:
    """``(benchmark, task, optimizer spec)`` of every row."""
    return (
        [("nb201", t, "grabnas") for t in ("cifar10", "cifar100", "imagenet16")]
        + [("nasbench-graph", t, "grabnas") for t in NBG]
        + [
            (f"csv:{stress}/stress-cifar100-top20.csv", "cifar100-top20rev", "grabnas[surrogate=nb201-no-cifar100]"),
            (
                f"csv:{stress}/stress-imagenet16-top5.csv",
                "imagenet16-top5rev",
                "grabnas[surrogate=nb201-no-imagenet16]",
            ),
        ]
        + [("csv:groundtruth-images", t, "grabnas[surrogate=nb201-all]") for t in GROUND_TRUTHS]
    )


def fit_after(bench, task: str, spec: str, seed: int, observations: int, cache: dict) -> dict:
    """The MAP-fitted scalars at the ask after ``observations`` evaluations of the search."""
    opt = build_optimizer(spec, bench, task, seed=seed, cache=cache)
    values = []
    for _ in range(observations):
        archs = opt.ask(1)
        values.append(bench.value(archs[0], task))
        opt.tell(archs, values[-1:])
    opt.ask(1)  # fits on the observations so far
    fitted = {k: float(v) for k, v in (opt.surrogate.adapted_hyperparameters or {}).items()}
    return fitted | {"spread": float(np.std(values)), "best": float(max(values))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stress-tables", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--observations", type=int, default=10)
    ap.add_argument("--part", type=int, default=0)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cache: dict = {}
    with Path(args.out).open("a") as f:
        for k, (name, task, spec) in enumerate(jobs(args.stress_tables)):
            if k % args.parts != args.part:
                continue
            bench = load_benchmark(name)
            for seed in range(args.seeds):
                row = {"task": task, "seed": seed} | fit_after(bench, task, spec, seed, args.observations, cache)
                f.write(json.dumps(row) + "\n")
                f.flush()


if __name__ == "__main__":
    main()
