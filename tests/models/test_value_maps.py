"""Value maps between raw values and the surrogate's units: normal scores, the fitted monotone map
and the maximum-likelihood affine map."""

from __future__ import annotations

import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import RankGaussMap, affine_value_map, rank_gauss, rank_score_variance

torch.set_num_threads(1)


def test_rank_gauss_units_and_value_map():
    y = torch.tensor([3.0, 1.0, 2.0, 2.0, 10.0], dtype=DTYPE)
    s = rank_gauss(y)
    assert torch.argsort(s[[1, 2, 0, 4]]).tolist() == [0, 1, 2, 3] and s[2] == s[3]
    assert abs(float(rank_gauss(torch.arange(7.0)).sum())) < 1e-12  # symmetric without ties
    vmap = RankGaussMap(y, scale=2.0, offset=0.5)
    torch.testing.assert_close(vmap(y), (s - 0.5) / 2.0)
    grid = torch.linspace(-5, 20, 101, dtype=DTYPE)
    assert (vmap(grid).diff() > 0).all()
    assert rank_score_variance(5) > rank_score_variance(20) > 0


def test_affine_value_map_is_the_maximum_likelihood_map():
    g = torch.Generator().manual_seed(3)
    n = 9
    mean = torch.randn(n, generator=g, dtype=DTYPE)
    a = torch.randn(n, n, generator=g, dtype=DTYPE)
    cov = a @ a.T / n + 0.1 * torch.eye(n, dtype=DTYPE)
    y = 40 + 2.5 * (mean + 0.3 * torch.randn(n, generator=g, dtype=DTYPE))
    beta, offset, ll = affine_value_map(y, mean, cov)
    dist = torch.distributions.MultivariateNormal(mean, cov)

    def loglik(b: float, c: float) -> float:  # log density of y = b (f + c), f ~ N(mean, cov)
        return float(dist.log_prob(y / b - c)) - n * torch.log(torch.tensor(b)).item()

    # the closed form is the maximum over a grid around it, and its value is the log likelihood
    # (up to the constant n/2 log 2 pi the closed form leaves out)
    best = loglik(beta, offset)
    for db in (0.9, 0.97, 1.03, 1.1):
        for dc in (-0.2, -0.05, 0.0, 0.05, 0.2):
            assert loglik(beta * db, offset + dc) <= best + 1e-9
    assert ll - 0.5 * n * torch.log(torch.tensor(2 * torch.pi)).item() == pytest.approx(best)
    assert 1.5 < beta < 4.0  # the scale the values were drawn with (2.5)
    with pytest.raises(GrabnasError, match="at least 2"):
        affine_value_map(y[:1], mean[:1], cov[:1, :1])
