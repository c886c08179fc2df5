"""Does the fine-tuned feature map rank a task's top better from a *search's* observations?

``grabnas surrogate eval`` measures learning from random observations, where the fine-tuned map
(``finetune=50,finetune_refit=false``) ranks NAS-Bench-Graph's top 10 % better than the
meta-learned map; in a search the same map loses NAS-Bench-Graph. This script asks whether the
difference is the observations: for each task and seed it takes the first ``n`` observations of a
committed default search (``--runs``: a ``grabnas bench`` results.csv[.gz]) or ``n`` random pool
members, conditions the default's model on them with the meta-learned and with the fine-tuned map
(the same fit: ``MetaLatentSurrogate.fit(..., finetuned=...)``) and reports, for each map,

* the Spearman correlation of the posterior mean with the truth within the task's top 10 % of the pool;
* the regret of the posterior mean's best untried pool member (what a greedy next ask would cost).

``finetuned_affine``: the map fine-tuned with raw values mapped to the model's units by the
maximum-likelihood affine map (``finetune_units=affine``) instead of the observations' normal scores;
``finetuned_anchored[4]``: fine-tuned with the prior mean held near the meta-learned one at 1 (4)
latents per observation drawn from the graph VAE's prior (``finetune_anchors``).

    .venv/bin/python benchmarks/finetune_search_ranking.py --seeds 8 --n 20
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from grabnas.benchmarks import load_benchmark
from grabnas.search.registry import build_optimizer

SPEC = "grabnas[finetune=50,finetune_start=2,finetune_refit=false]"
#: (name, fine-tuned map?, values' units while fine-tuning, anchors per observation)
VARIANTS = (
    ("meta", False, "rank-gauss", 0),
    ("finetuned", True, "rank-gauss", 0),
    ("finetuned_affine", True, "affine", 0),
    ("finetuned_anchored", True, "rank-gauss", 1),
    ("finetuned_anchored4", True, "rank-gauss", 4),
)


def _pool_means(opt, model) -> np.ndarray:
    """``(len(pool),)`` posterior means of ``model`` at the optimizer's pool latents."""
    from botorch.acquisition import PosteriorMean

    return opt._score(PosteriorMean(model), opt.z_pool).numpy()


def measure(task: str, seed: int, archs: list, values: np.ndarray, truth: np.ndarray, opt) -> dict:
    z = opt.latent(archs)
    y = torch.as_tensor(values, dtype=torch.float64)
    top = truth >= np.quantile(truth, 0.9)
    observed = set(archs)
    tried = np.array([a in observed for a in opt.pool])
    row = {"task": task, "seed": seed}
    sur = opt.surrogate
    for name, finetuned, units, anchors in VARIANTS:
        sur._warm_start, sur.finetune_units, sur.finetune_anchors = None, units, anchors  # the same start
        mean = _pool_means(opt, sur.fit(z, y, finetuned=finetuned))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(mean[top], truth[top])[0]
        pick = int(np.argmax(np.where(tried, -np.inf, mean)))
        row[f"{name}_spearman_top"] = float(rho) if np.isfinite(rho) else 0.0
        row[f"{name}_pick_regret"] = float(truth.max() - truth[pick])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default="nasbench-graph")
    ap.add_argument("--runs", default="benchmarks/results/adaptation/screens/fitftol/nbg/results.csv.gz")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--n", type=int, default=20, help="observations per fit")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: every task of the runs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = pd.read_csv(args.runs)
    runs = runs[runs.optimizer == "grabnas"]
    bench = load_benchmark(args.benchmark)
    tasks = args.tasks.split(",") if args.tasks else list(dict.fromkeys(runs.task))
    space = bench.space
    rows = []
    for task in tasks:
        cache: dict = {}
        for seed in range(args.seeds):
            opt = build_optimizer(SPEC, bench, task, seed=seed, cache=cache)
            truth = np.array([bench.value(a, task) for a in opt.pool])
            run = runs[(runs.task == task) & (runs.seed == seed)].sort_values("step").head(args.n)
            designs = {
                "search": ([space.parse(s) for s in run.arch], run.value.to_numpy()),
            }
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(opt.pool), args.n, replace=False)
            designs["random"] = ([opt.pool[i] for i in idx], truth[idx])
            for design, (archs, values) in designs.items():
                rows.append({"design": design, **measure(task, seed, archs, values, truth, opt)})
            print(rows[-2], rows[-1], flush=True)
    df = pd.DataFrame(rows)
    names = [v[0] for v in VARIANTS]
    cols = [f"{m}_spearman_top" for m in names] + [f"{m}_pick_regret" for m in names]
    print("| design | task | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for (design, task), g in df.groupby(["design", "task"], sort=False):
        print(f"| {design} | {task} | " + " | ".join(f"{g[c].mean():.3f} ± {g[c].sem():.3f}" for c in cols) + " |")
    for design, g in df.groupby("design", sort=False):
        print(f"| {design} | all | " + " | ".join(f"{g[c].mean():.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
