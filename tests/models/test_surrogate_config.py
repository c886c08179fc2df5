"""The surrogate's configuration: validation, the new-task variance table, dict round trips."""

from __future__ import annotations

import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import SurrogateConfig

torch.set_num_threads(1)


def _surrogate(transform: str = "rank-gauss", seed: int = 0) -> MetaSurrogate:
    torch.manual_seed(seed)
    return MetaSurrogate(
        SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, value_transform=transform)
    )


def test_new_task_variance_table():
    cfg = SurrogateConfig(new_task_variance_scale=[[20, 3.0], [0, 2.0], (10, 2.0)])
    assert cfg.new_task_variance_scale == ((0, 2.0), (10, 2.0), (20, 3.0))  # sorted pairs
    assert [cfg.variance_scale_at(n) for n in (0, 5, 15, 20, 50)] == [2.0, 2.0, 2.5, 3.0, 3.0]
    assert SurrogateConfig().variance_scale_at(7) == 1.0
    assert SurrogateConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GrabnasError, match="positive factors"):
        SurrogateConfig(new_task_variance_scale=[(0, -1.0)])
    with pytest.raises(GrabnasError, match=r"pairs \(number of observations, factor\)"):
        SurrogateConfig(new_task_variance_scale=[1.5])
    with pytest.raises(GrabnasError, match="variance scale must be a positive number"):
        _surrogate().prior(variance_scale=0.0)
