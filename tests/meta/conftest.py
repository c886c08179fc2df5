"""Shared toys for the meta-training tests: the NB201 space, a tiny VAE, fixed latents, a toy corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grabnas.meta.corpus import Corpus, CorpusTask
from grabnas.meta.surrogate_training import MetaTrainConfig
from grabnas.models.graph_vae import ArchitectureVAE
from grabnas.models.surrogate_config import SurrogateConfig
from grabnas.spaces import get_space

LATENT = 4


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def nb201(space):
    return space


def _tiny(space, **card):
    vae = ArchitectureVAE.create(space, generator=torch.Generator().manual_seed(0), hidden_dim=16, latent_dim=4)
    vae.card = dict(card)
    return vae


@pytest.fixture
def tiny_vae():
    """``tiny_vae(space, **card)``: a small untrained graph VAE with that card."""
    return _tiny


@pytest.fixture(scope="module")
def vae(space):
    return ArchitectureVAE.create(space, torch.Generator().manual_seed(0), hidden_dim=8, latent_dim=LATENT)


@pytest.fixture(scope="module")
def latents(space):
    return torch.randn(len(space), LATENT, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


class ToyMeta:
    """Builders for a toy corpus over fixed latents (values a smooth function of z) and tiny configs."""

    def __init__(self, space, latents: torch.Tensor) -> None:
        self.space, self.latents = space, latents

    def corpus(self, groups: int = 3, tasks_per_group: int = 1, n: int = 200, seed: int = 0) -> Corpus:
        """``groups`` task groups, each a differently warped function of z[:, :2], ``n`` records per task."""
        rng = np.random.default_rng(seed)
        z = self.latents.numpy()
        tasks = []
        for g in range(groups):
            for k in range(tasks_per_group):
                idx = np.sort(rng.choice(len(self.space), n, replace=False))
                w = 1.0 + 0.2 * g
                vals = 50 + 10 * (np.sin(w * z[idx, 0]) + 0.5 * z[idx, 1]) + rng.normal(0, 0.3, n)
                name = f"t{g}" + (f"@{k}" if k else "")
                tasks.append(CorpusTask(name, f"g{g}", idx, vals, f"f{k}" if k else None))
        return Corpus(self.space, tasks)

    def cfg(self, corpus: Corpus, **kw) -> SurrogateConfig:
        return SurrogateConfig(
            latent_dim=LATENT, task_dim=3, hidden_dim=32, feature_dim=4, fidelities=tuple(corpus.fidelities), **kw
        )

    def tc(self, **kw) -> MetaTrainConfig:
        base = dict(steps=150, batch_size=32, lr=5e-3, eval_every=50, patience=10, val_queries=100)
        base.update(kw)
        return MetaTrainConfig(**base)


@pytest.fixture(scope="module")
def toy(space, latents) -> ToyMeta:
    return ToyMeta(space, latents)
