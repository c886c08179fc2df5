"""The meta-trained surrogate in latent coordinates, as GraB-NAS conditions it."""

from __future__ import annotations

import torch

from grabnas.models.latent_surrogate import MetaLatentSurrogate
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig


def test_meta_latent_surrogate_reports_task_weights():
    torch.manual_seed(0)
    sur = MetaSurrogate(
        SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, task_offsets=("a", "b"))
    )
    with torch.no_grad():
        sur.task_encoder.task_offsets.copy_(torch.tensor([[20.0, 0, 0], [-20.0, 5, 0]]))
    d = sur.task_embedding()
    z = torch.randn(12, 4, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    with torch.no_grad():
        m_b, _ = sur.prior(task_prior_var=0.0).prior_moments(sur.inputs(z, sur.task_embedding(task="b")))
    latent = MetaLatentSurrogate(sur, d)
    model = latent.fit(z, 50 + 3 * m_b)
    assert set(latent.task_weights) == {"a", "b"} and latent.task_weights["b"] > latent.task_weights["a"]
    assert torch.equal(model.task_embedding, d) and model.gp.task_prior_var == 1.0
    # the posterior over latents is the GP's on concat[d, z]
    post = model.posterior(z[:3].unsqueeze(-2))
    want = model.gp.posterior(sur.inputs(z[:3], d)).mean.squeeze(-1)
    torch.testing.assert_close(post.mean.reshape(-1), want)
    off = MetaLatentSurrogate(sur, d, task_prior_var=0.0)
    off.fit(z, 50 + 3 * m_b)
    assert off.task_weights == {}
    assert latent.fit(z[:0], torch.zeros(0, dtype=DTYPE)).gp.task_prior_var == 1.0 and latent.task_weights == {}
