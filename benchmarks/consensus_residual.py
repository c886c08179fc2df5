"""Is there a per-cell consensus of the meta-training tasks that the learned mean misses?

Transfer-rank (the mean z-score of the other tasks' table values at each cell) beats GraB-NAS's
zero-shot top-10 on some held-out NAS-Bench-Graph datasets. Either the other tasks share per-cell
structure beyond the surrogate's learned mean ``m`` (a smooth function of the latent, which cannot
memorise single cells), which a search should then use, or transfer-rank's lead is luck. The test
is the hierarchical model every meta-training task ``k`` is assumed to follow::

    y_k(x) = alpha_k + beta_k m(x) + r(x) + e_k(x),   r(x) ~ N(0, tau2),   e_k(x) ~ N(0, sigma2)

(``y_k``: the task's values in the surrogate's units; ``r``: a residual *shared* by all tasks, per
cell; ``e_k``: the task's own). By the method of moments over the cells the other tasks hold,
``sigma2`` = the mean within-cell variance of the residuals over tasks and ``tau2`` = the variance of
their per-cell mean minus ``sigma2 / n``. A held-out task's best zero-shot guess is then
``m(x) + w(x) rbar(x)``, with ``w = tau2 / (tau2 + sigma2 / n(x))`` (shrinkage). For each held-out
task this prints ``tau2``, ``sigma2``, the mean ``w``, and the regret of the best of the top 1 / 3 /
10 cells, the Spearman correlation over all cells and within the top 10 %, for the learned mean at
the task's own embedding (``mean``, GraB-NAS's zero-shot ranking), the shrunk correction
(``shrunk``), the unshrunk one (``m + rbar``) and transfer-rank::

    .venv/bin/python benchmarks/consensus_residual.py --benchmark nasbench-graph
    .venv/bin/python benchmarks/consensus_residual.py --benchmark nb201
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from grabnas.meta.checkpoints import load_checkpoint, load_surrogate, shipped_surrogate_for
from grabnas.meta.corpus import CorpusTask, load_corpus
from grabnas.meta.features import encode_members, latents_for, target_features, task_targets
from grabnas.meta.surrogate_eval import transfer_rank_scores


def ranking_stats(scores: np.ndarray, values: np.ndarray) -> list[float]:
    """Regret of the best of the top 1 / 3 / 10 cells by ``scores``, Spearman over all cells and
    within the top 10 % of ``values``."""
    order = np.argsort(-scores, kind="stable")
    top = values >= np.quantile(values, 0.9)
    regrets = [float(values.max() - values[order[:k]].max()) for k in (1, 3, 10)]
    return regrets + [float(spearmanr(scores, values)[0]), float(spearmanr(scores[top], values[top])[0])]


def learned_mean(sur, prior, latents: torch.Tensor, task: CorpusTask, d: torch.Tensor) -> np.ndarray:
    """``(n,)`` the zero-shot prior mean of ``task``'s cells at task embedding ``d``."""
    with torch.no_grad():
        return prior.prior_mean(sur.inputs(latents[torch.from_numpy(task.index)], d)).numpy()


def shared_residual(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(rbar, w, tau2, sigma2)`` from ``(K, n)`` residuals of K tasks at n cells (NaN: not held).

    ``rbar``: ``(n,)`` per-cell mean (0 where no task holds the cell); ``w``: ``(n,)`` shrinkage
    weights; ``tau2``, ``sigma2``: the shared and the task-own residual variances (method of moments)."""
    held = ~np.isnan(residuals)
    n = held.sum(0)
    rbar = np.where(n > 0, np.nansum(residuals, 0) / np.maximum(n, 1), 0.0)
    multi = n >= 2
    sigma2 = float(np.mean(np.nanvar(residuals[:, multi], 0, ddof=1))) if multi.any() else float("nan")
    some = n > 0
    tau2 = max(float(np.var(rbar[some]) - sigma2 * np.mean(1.0 / n[some])), 0.0) if multi.any() else 0.0
    w = np.where(some, tau2 / (tau2 + sigma2 / np.maximum(n, 1)), 0.0) if multi.any() else np.zeros(len(n))
    return rbar, w, tau2, sigma2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default="nasbench-graph", choices=("nb201", "nasbench-graph"))
    args = p.parse_args()
    corpus = load_corpus(args.benchmark)
    vae = load_checkpoint(corpus.space.name, space=corpus.space.name)
    member_latents = encode_members(vae)
    main_tasks = [t for t in corpus.tasks if t.fidelity is None]
    print("| held-out task | tau2 | sigma2 | mean w | ranking | r@1 | r@3 | r@10 | Spearman | top-10 % Spearman |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in main_tasks:
        sur = load_surrogate(shipped_surrogate_for(args.benchmark, task.group), check_vae=False)
        latents = latents_for(sur, vae, member_latents)
        prior = sur.prior(task_prior_var=0.0)

        own = learned_mean(sur, prior, latents, task, sur.task_embedding(target_features(sur, task, None), None))
        position = {int(i): k for k, i in enumerate(task.index)}
        others = [t for t in main_tasks if t.group != task.group]
        residuals = np.full((len(others), len(task.index)), np.nan)
        offsets = sur.task_offset_embeddings()
        for j, t in enumerate(others):
            d = offsets.get(t.name)
            if d is None:  # no per-task offset: the task's embedding from its data (or "no data")
                d = sur.task_embedding(target_features(sur, t, None), None)
            m = learned_mean(sur, prior, latents, t, d)
            design = np.stack([np.ones_like(m), m], 1)
            y = task_targets(t, sur.config.value_transform)
            r = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
            for i, v in zip(t.index, r):
                k = position.get(int(i))
                if k is not None:
                    residuals[j, k] = v
        rbar, w, tau2, sigma2 = shared_residual(residuals)
        # the residuals are in the tasks' units; put the learned mean in the same (unit variance)
        base = (own - own.mean()) / own.std()
        rows = {
            "mean": base,
            "shrunk": base + w * rbar,
            "m + rbar": base + rbar,
            "transfer-rank": transfer_rank_scores(corpus, task),
        }
        for name, scores in rows.items():
            stats = " | ".join(f"{v:.3f}" for v in ranking_stats(np.asarray(scores, dtype=float), task.values))
            print(f"| {task.name} | {tau2:.3f} | {sigma2:.3f} | {w.mean():.2f} | {name} | {stats} |")


if __name__ == "__main__":
    main()
