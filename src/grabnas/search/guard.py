"""The no-harm guard: does the meta-learned model or a plain GP explain the target better so far?

Transfer must never make a search much worse than no transfer. Once a few observations exist,
GraB-NAS asks which of two fitted models ranks the target's observations better *out of sample*:
its meta-learned model (the target-adapted GP) and a plain GP on the one-hot encoding (GP-BO's
model, fitted to the same observations). Each model's leave-one-out predictive means come in
closed form from its fitted hyperparameters (no refits, Rasmussen & Williams 2006, eq. 5.12):

    mu_-i = y_i - [K^-1 (y - m)]_i / [K^-1]_ii,      K = k(X, X) + noise I

and the score is their Spearman correlation with the observed values. The ask follows the plain
GP only when its score is higher by more than one standard error of the difference
(:func:`plain_beats_meta`), else the meta-learned model. Where the prior is right the meta model ranks the
observations better and nothing changes; where it misleads, the plain GP takes over: the idea of
RGPE's ranking-loss weights (Feurer et al. 2018), with the plain GP as the only alternative.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from grabnas.models.target_gp import loo_terms


def loo_means(gp) -> Tensor:
    """``(n,)`` leave-one-out predictive means of an exact GPyTorch/BoTorch GP at its ``n``
    training points, in its own (transformed) target units, with its fitted hyperparameters."""
    alpha, diag = loo_terms(gp)
    return gp.train_targets.reshape(-1) - alpha / diag


def spearman(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two ``(n,)`` vectors (average ranks for ties); 0 when constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    rho = spearmanr(a, b).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def loo_rank_score(gp) -> float:
    """Spearman correlation of ``gp``'s leave-one-out means with its training targets (monotone
    in the observed values, so the same as with them)."""
    return spearman(loo_means(gp), gp.train_targets.reshape(-1))


def plain_beats_meta(plain: float, meta: float, n: int) -> bool:
    """Whether the plain GP's leave-one-out Spearman ``plain`` beats the meta model's ``meta`` on
    ``n`` observations by more than one standard error of their difference: on Fisher's z scale a
    Spearman correlation has standard error ``1.06 / sqrt(n - 3)`` (Fieller et al. 1957), so the
    difference of two has ``sqrt(2)`` times that. Noisy early scores thus leave the meta model in
    charge; the plain GP takes over only on clear evidence."""
    if n < 4:
        return False
    z = np.arctanh(np.clip([plain, meta], -0.999, 0.999))
    return bool(z[0] - z[1] > np.sqrt(2.0) * 1.06 / np.sqrt(n - 3))


__all__ = ["loo_means", "loo_rank_score", "plain_beats_meta", "spearman"]
