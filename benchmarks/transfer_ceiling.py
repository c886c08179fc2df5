"""How well can the other datasets' *true* values rank an NB201 dataset's top 10 %?

The surrogate's task term models a new dataset as a mixture of the training datasets (their
learned means). This script measures the ceiling of that idea with the table itself in place of
the learned means: for each held-out dataset it prints the Spearman correlation, within the
held-out dataset's top 10 %, of

* each training task's own values (200- and 12-epoch fidelities of the two other datasets),
* transfer-rank (the mean z-score of the two other datasets' 200-epoch values),
* the best fixed convex mixture ``w * z_a + (1 - w) * z_b`` of the two 200-epoch tables (w on a
  grid of 0.01, chosen with hindsight on the held-out top 10 %),
* least squares on all four training tasks fitted *on the held-out top 10 % itself* (in-sample:
  an upper bound for any linear mixture),
* an idealised task term: Bayesian linear regression of the held-out values (z-scores) on the
  two 200-epoch tables' z-scores, prior mean = transfer-rank's weights (1/2, 1/2), fitted on
  ``n`` random observations (mean ± s.e. over draws), as ``grabnas surrogate eval`` draws them.

    GRABNAS_NB201=path/to/nb201_accuracies.csv .venv/bin/python benchmarks/transfer_ceiling.py
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from grabnas.meta.corpus import CorpusTask, load_corpus
from grabnas.meta.surrogate_eval import transfer_rank_scores


def aligned_z(task: CorpusTask, index: np.ndarray) -> np.ndarray:
    """``task``'s z-scores at the architectures ``index`` (``(n,)``; every NB201 task covers them all)."""
    lookup = dict(zip(task.index.tolist(), task.standardized().tolist()))
    return np.array([lookup[int(i)] for i in index])


def top_spearman(scores: np.ndarray, values: np.ndarray, top: np.ndarray) -> float:
    return float(spearmanr(scores[top], values[top])[0])


def bayes_linear(F: np.ndarray, y: np.ndarray, prior_mean: np.ndarray, prior_var: float) -> np.ndarray:
    """Posterior mean weights of ``y ~ F w + noise`` (noise variance from the residuals of the
    prior mean, at least 0.01), ``w ~ N(prior_mean, prior_var I)``; ``F`` is ``(n, k)``."""
    noise = max(float(np.var(y - F @ prior_mean)), 1e-2)
    A = F.T @ F / noise + np.eye(F.shape[1]) / prior_var
    b = F.T @ y / noise + prior_mean / prior_var
    return np.linalg.solve(A, b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="NB201 table (default $GRABNAS_NB201)")
    p.add_argument("--tasks", default="cifar10,cifar100,imagenet16")
    p.add_argument("--observations", type=int, default=20)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--prior-vars", default="0.01,0.1,1", help="prior variances of the mixture weights")
    args = p.parse_args()
    corpus = load_corpus("nb201", data=args.data)
    for name in args.tasks.split(","):
        target = corpus.task(name)
        y = target.values
        yz = target.standardized()
        top = y >= np.quantile(y, 0.9)
        sources = [t for t in corpus.tasks if t.group != target.group]
        F = np.stack([aligned_z(t, target.index) for t in sources], axis=1)  # (n, k)
        main = [i for i, t in enumerate(sources) if t.fidelity is None]
        print(f"== {name}: Spearman within the top 10 % ({int(top.sum())} cells)")
        for i, t in enumerate(sources):
            print(f"  {t.name + ' values':38s} {top_spearman(F[:, i], y, top):.3f}")
        print(f"  {'transfer-rank':38s} {top_spearman(transfer_rank_scores(corpus, target), y, top):.3f}")
        a, b = main
        grid = [(top_spearman(w * F[:, a] + (1 - w) * F[:, b], y, top), w) for w in np.linspace(0, 1, 101)]
        best, w = max(grid)
        print(f"  {'best mixture of 200-epoch (hindsight)':38s} {best:.3f} (w[{sources[a].name}] = {w:.2f})")
        Fc = np.c_[F, np.ones(len(y))]
        coef = np.linalg.lstsq(Fc[top], y[top], rcond=None)[0]
        print(f"  {'least squares on the top (in-sample)':38s} {top_spearman(Fc @ coef, y, top):.3f}")
        reference = top_spearman(transfer_rank_scores(corpus, target), y, top)
        F2 = F[:, main]
        prior = np.full(len(main), 1.0 / len(main))
        for prior_var in (float(v) for v in args.prior_vars.split(",")):
            rng = np.random.default_rng(0)
            fits = []
            for _ in range(args.draws):
                obs = rng.choice(len(y), size=args.observations, replace=False)
                w_hat = bayes_linear(F2[obs], yz[obs], prior, prior_var)
                fits.append(top_spearman(F2 @ w_hat, y, top))
            fits = np.array(fits)
            label = f"ideal task term, {args.observations} obs, s2={prior_var:g}"
            print(
                f"  {label:38s} {fits.mean():.3f} ± {fits.std(ddof=1) / np.sqrt(len(fits)):.3f} "
                f"(beats transfer-rank in {np.mean(fits > reference):.0%} of {args.draws} draws)"
            )


if __name__ == "__main__":
    main()
