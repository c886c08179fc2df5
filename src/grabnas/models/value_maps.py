"""Per-task value maps between raw values and the surrogate's units: normal scores
(:func:`rank_gauss`, their sampling error :func:`rank_score_variance`), the monotone map fitted on
observations (:class:`RankGaussMap`), the maximum-likelihood affine map (:func:`affine_value_map`,
:class:`AffineValueMap`), and the chunked marginal posterior :func:`predict` with the Gaussian
negative log density :func:`gaussian_nll` used to score predictions in those units."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.deep_kernel_gp import DeepKernelGP, _safe_cholesky
from grabnas.models.surrogate_config import DTYPE


def rank_gauss(values: Tensor) -> Tensor:
    """Normal scores ``Phi^-1((rank - 1/2) / n)`` of ``n`` values (ties share their mean rank)."""
    v = torch.as_tensor(values, dtype=DTYPE).reshape(-1)
    n = v.numel()
    if n == 0:
        return v
    order = torch.argsort(v, stable=True)
    ranks = torch.empty(n, dtype=DTYPE)
    ranks[order] = torch.arange(1, n + 1, dtype=DTYPE)
    uniq, inverse = torch.unique(v, return_inverse=True)
    if uniq.numel() < n:  # average ranks over ties
        sums = torch.zeros(uniq.numel(), dtype=DTYPE).index_add_(0, inverse, ranks)
        counts = torch.zeros(uniq.numel(), dtype=DTYPE).index_add_(0, inverse, torch.ones(n, dtype=DTYPE))
        ranks = (sums / counts)[inverse]
    return torch.special.ndtri((ranks - 0.5) / n)


def rank_score_variance(n: int, affine_removed: bool = False) -> float:
    """Mean variance of the error of the normal scores of ``n`` random draws as estimates of
    their normal scores in the whole population.

    Total (``affine_removed=False``): the delta method on uniform order statistics,
    ``Var(F(y_(i))) = p (1 - p) / (n + 2)`` with ``p = (i - 1/2) / n``, divided by the squared
    normal density at ``Phi^-1(p)``; it shrinks like ``1 / n``. With ``affine_removed``: what is
    left once the part shared by all n scores (a common shift and stretch, which
    :meth:`MetaSurrogate.fit` removes) is taken out: the total times
    ``max(0.3, 0.5 - 0.45 / sqrt(n))``, a fit (within 0.03) to a Monte Carlo of the residual
    variance of an affine regression of the scores on the true normal scores (n = 5 ... 500).
    """
    if n < 1:
        return 0.0
    p = (torch.arange(1, n + 1, dtype=DTYPE) - 0.5) / n
    dens = torch.exp(-0.5 * torch.special.ndtri(p) ** 2) / math.sqrt(2 * math.pi)
    total = float((p * (1 - p) / (n + 2) / dens**2).mean())
    return total * max(0.3, 0.5 - 0.45 / math.sqrt(n)) if affine_removed else total


class RankGaussMap:
    """The monotone map raw value -> normal score fitted on observations: piecewise linear
    between the observed values' normal scores, continued linearly beyond them with slope
    ``1 / std`` of the observations; then ``(score - offset) / scale``."""

    def __init__(self, observed: Tensor, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale, self.offset = float(scale), float(offset)
        y = torch.as_tensor(observed, dtype=DTYPE).reshape(-1)
        scores = rank_gauss(y)
        xs, inverse = torch.unique(y, return_inverse=True)
        sums = torch.zeros(xs.numel(), dtype=DTYPE).index_add_(0, inverse, scores)
        counts = torch.zeros(xs.numel(), dtype=DTYPE).index_add_(0, inverse, torch.ones_like(scores))
        ys = sums / counts
        self.xs, self.ys = xs, ys
        std = float(y.std()) if y.numel() > 1 else 1.0
        self.slope = 1.0 / std if std > 0 else 1.0

    def __call__(self, y: Tensor) -> Tensor:
        y = torch.as_tensor(y, dtype=DTYPE)
        xs, ys = self.xs, self.ys
        if xs.numel() == 1:
            return ys[0] + (y - xs[0]) * self.slope
        i = torch.searchsorted(xs, y.clamp(xs[0], xs[-1])).clamp(1, xs.numel() - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        inside = y0 + (y.clamp(xs[0], xs[-1]) - x0) * (y1 - y0) / (x1 - x0)
        below = ys[0] + (y - xs[0]) * self.slope
        above = ys[-1] + (y - xs[-1]) * self.slope
        score = torch.where(y < xs[0], below, torch.where(y > xs[-1], above, inside))
        return (score - self.offset) / self.scale


def affine_value_map(y: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float, float]:
    """Maximum-likelihood affine map of raw values to the model's units.

    The model says ``f ~ N(mean, cov)`` at the n observed points (``(n,)`` mean, ``(n, n)``
    covariance including the noise); raw values are ``y = beta * (f + offset)`` with ``beta > 0``.
    The log likelihood of ``y`` (Jacobian ``-n log beta`` included) is maximised in closed form:
    with the offset profiled out (generalised least squares) it is
    ``-q(beta)/2 - n log beta - log|cov|/2``, ``q = P / beta^2 - 2 Q / beta + R`` in the inner
    product ``<u, v> = u' C^-1 v`` on the complement of the constant vector, ``P = <y, y>``,
    ``Q = <y, mean>``, ``R = <mean, mean>``, whose stationary point is the positive root of
    ``n beta^2 + Q beta - P = 0``.

    Unlike normal scores of the observations, this does not assume that the observations are a
    random sample of the task: in a search they are its best architectures, and their spread
    says little about the task's. Returns ``(beta, offset, log likelihood)`` (the likelihood
    without its ``n/2 log 2 pi``); maps values by ``y / beta - offset``.
    """
    y = torch.as_tensor(y, dtype=DTYPE).reshape(-1)
    n = y.numel()
    if n < 2:
        raise GrabnasError("an affine value map needs at least 2 observations")
    mean = mean.reshape(-1).to(DTYPE)
    chol = _safe_cholesky(cov.to(DTYPE))
    basis = torch.stack([y, torch.ones_like(y), mean], -1)  # (n, 3)
    gram = basis.T @ torch.cholesky_solve(basis, chol)  # (3, 3): <., .> in C^-1

    def inner(i: int, j: int) -> float:
        return float(gram[i, j] - gram[i, 1] * gram[j, 1] / gram[1, 1])

    p, q, r = inner(0, 0), inner(0, 2), inner(2, 2)
    if p <= 1e-300:  # all observed values equal: no scale information
        beta = max(float(y.abs().max()), 1.0)
    else:
        beta = (-q + math.sqrt(q * q + 4 * n * p)) / (2 * n)
    offset = float((gram[0, 1] / beta - gram[2, 1]) / gram[1, 1])
    quad = p / beta**2 - 2 * q / beta + r
    loglik = -0.5 * quad - n * math.log(beta) - float(torch.log(torch.diagonal(chol)).sum())
    return beta, offset, loglik


class AffineValueMap:
    """Raw value -> model units ``y / beta - offset`` (see :func:`affine_value_map`)."""

    def __init__(self, beta: float, offset: float) -> None:
        self.beta, self.offset = float(beta), float(offset)

    def __call__(self, y: Tensor) -> Tensor:
        return torch.as_tensor(y, dtype=DTYPE) / self.beta - self.offset


@torch.no_grad()
def predict(
    model: DeepKernelGP, X: Tensor, observation_noise: bool = False, chunk: int = 4096
) -> tuple[Tensor, Tensor]:
    """Marginal posterior ``(mean, variance)``, each ``(N,)``, of ``model`` at ``(N, D)`` inputs,
    through BoTorch's ``posterior`` in chunks (so the ``N x N`` covariance is never formed)."""
    means, variances = [], []
    for start in range(0, X.shape[0], chunk):
        post = model.posterior(X[start : start + chunk], observation_noise=observation_noise)
        means.append(post.mean.squeeze(-1))
        variances.append(post.variance.squeeze(-1))
    if not means:
        return X.new_zeros(0), X.new_zeros(0)
    return torch.cat(means), torch.cat(variances)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Elementwise negative log density of ``y`` under ``N(mean, var)``."""
    var = var.clamp_min(1e-12)
    return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)
