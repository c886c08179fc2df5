"""Shared toys for the model tests: a small random meta surrogate and data of a smooth function."""

from __future__ import annotations

import pytest
import torch

from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig


def _surrogate(transform: str = "rank-gauss", seed: int = 0) -> MetaSurrogate:
    torch.manual_seed(seed)
    return MetaSurrogate(
        SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, value_transform=transform)
    )


def _data(sur: MetaSurrogate, n_obs: int = 12, n_test: int = 40, seed: int = 0):
    """``(X_obs, y_obs, X_test)``: inputs ``concat[d, z]`` and values of a smooth function of ``z``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_obs + n_test, 4, generator=g, dtype=DTYPE)
    X = sur.inputs(z, sur.task_embedding().detach())
    y = 70 + 5 * torch.sin(z[:, 0]) + z[:, 1] + 0.1 * torch.randn(n_obs + n_test, generator=g, dtype=DTYPE)
    return X[:n_obs], y[:n_obs], X[n_obs:]


@pytest.fixture
def make_surrogate():
    """``make_surrogate(transform="rank-gauss", seed=0)``: a small random :class:`MetaSurrogate`."""
    return _surrogate


@pytest.fixture
def toy_data():
    """``toy_data(sur, n_obs=12, n_test=40, seed=0)`` -> ``(X_obs, y_obs, X_test)``."""
    return _data
