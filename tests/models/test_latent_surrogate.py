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


def test_finetune_select_follows_the_prequential_score_of_the_two_maps(monkeypatch):
    """``finetune_select``: each fit's two models (meta-learned map, fine-tuned map) are scored on
    the observations that arrive before the next fit, by the log density of each new value under
    their predictives (the score is exactly the difference of the two), and the fine-tuned map is
    used only while its summed score is the higher."""
    import pytest

    import grabnas.models.latent_surrogate as latent_surrogate
    from grabnas.errors import GrabnasError

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    d = sur.task_embedding()
    z = torch.randn(32, 4, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    y = 3 * torch.tanh(2 * z[:, 0]) + 0.3 * torch.randn(32, generator=torch.Generator().manual_seed(3), dtype=DTYPE)

    def make():
        return MetaLatentSurrogate(
            sur, d, adaptation="target", integrate=0, finetune=20, finetune_refit=False, finetune_select=True
        )

    def on_tuned_map(latent) -> bool:
        return latent._last_gp.mean_module._prior.module.feature_map is not sur.feature_map

    latent = make()
    latent.fit(z[:16], y[:16])
    assert latent.finetune_score == 0.0 and not on_tuned_map(latent)  # nothing scored yet
    frozen, tuned, seen = latent._scored_pair
    X_new = sur.inputs(z[16:24], d)
    want = latent_surrogate._log_score(tuned, X_new, y[16:24]) - latent_surrogate._log_score(frozen, X_new, y[16:24])
    latent.fit(z[:24], y[:24])
    assert seen == 16 and latent.finetune_score == pytest.approx(want)
    assert on_tuned_map(latent) == (want > 0)
    # a fine-tuned map that predicts better, then worse: followed, then dropped
    sign = {"value": 1.0}

    def fake_score(model, X, y):
        tuned_map = model.mean_module._prior.module.feature_map is not sur.feature_map
        return sign["value"] * len(y) if tuned_map else 0.0

    monkeypatch.setattr(latent_surrogate, "_log_score", fake_score)
    latent = make()
    latent.fit(z[:16], y[:16])
    latent.fit(z[:20], y[:20])
    assert latent.finetune_score == 4.0 and on_tuned_map(latent)
    sign["value"] = -2.0
    latent.fit(z[:24], y[:24])
    assert latent.finetune_score == -4.0 and not on_tuned_map(latent)
    with pytest.raises(GrabnasError, match="finetune_select needs finetune > 0 and finetune_refit=false"):
        MetaLatentSurrogate(sur, d, adaptation="target", finetune=5, finetune_select=True)


def test_hyper_draw_acts_on_one_drawn_component_with_or_without_a_finetuned_map():
    """``hyper_draw``: each fit hands the search one component of the integrated-out mixture, drawn
    by its weight (reproducibly per fit), also when the fine-tuned map is swapped in under it."""
    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    d = sur.task_embedding()
    z = torch.randn(12, 4, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    y = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    for extra in ({}, {"finetune": 5, "finetune_refit": False}):
        mixture = MetaLatentSurrogate(sur, d, adaptation="target", integrate=8, **extra).fit(z, y).gp
        drawn = MetaLatentSurrogate(sur, d, adaptation="target", integrate=8, hyper_draw=True, **extra).fit(z, y).gp
        again = MetaLatentSurrogate(sur, d, adaptation="target", integrate=8, hyper_draw=True, **extra).fit(z, y).gp
        assert mixture.num_components > 1 and drawn.num_components == 1
        assert torch.equal(drawn.thetas, again.thetas)
        assert any(torch.equal(drawn.thetas[0], t) for t in mixture.thetas)


def test_finetune_units_choose_how_values_map_to_the_model_while_finetuning():
    """``finetune_units=affine`` fine-tunes the map on the maximum-likelihood affine map of the raw
    values (an affine change of the values leaves its map unchanged), ``rank-gauss`` on their
    normal scores; the two give different maps; an unknown choice is a one-line error."""
    import pytest

    from grabnas.errors import GrabnasError

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    d = sur.task_embedding()
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    y = torch.randn(
        10, generator=torch.Generator().manual_seed(3), dtype=DTYPE
    ).exp()  # skewed: ranks differ from affine
    X = sur.inputs(z, d)

    def tuned_weights(units: str, values: torch.Tensor) -> torch.Tensor:
        prior = sur.finetuned_prior(X, values, 20, 1e-2, units=units)
        return torch.cat([p.reshape(-1) for p in prior.feature_map.parameters()])

    affine = tuned_weights("affine", y)
    torch.testing.assert_close(tuned_weights("affine", 3 * y + 7), affine)
    assert not torch.allclose(tuned_weights("rank-gauss", y), affine)
    with pytest.raises(GrabnasError, match="unknown finetune_units 'ranks'; expected rank-gauss or affine"):
        MetaLatentSurrogate(sur, d, adaptation="target", finetune=5, finetune_units="ranks")


def test_finetune_anchors_hold_the_prior_mean_where_there_are_no_observations():
    """``anchor``: the fine-tuning holds the prior mean near the meta-learned one at the anchors
    (pseudo-observations of it with the prior's own variance), so it moves less there than
    without; ``finetune_anchors=k`` draws ``k * n`` anchors per fit from the graph VAE's prior."""
    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    d = sur.task_embedding()
    gen = torch.Generator().manual_seed(6)
    z, far = torch.randn(8, 4, generator=gen, dtype=DTYPE), torch.randn(64, 4, generator=gen, dtype=DTYPE)
    y = torch.randn(8, generator=torch.Generator().manual_seed(7), dtype=DTYPE)
    X, A = sur.inputs(z, d), sur.inputs(far, d)
    with torch.no_grad():
        before = sur.feature_map(A)[0]

    def moved(anchor) -> float:
        tuned = sur.finetuned_prior(X, y, 100, 1e-2, anchor=anchor)
        with torch.no_grad():
            return float((tuned.feature_map(A)[0] - before).abs().mean())

    assert moved(A) < 0.5 * moved(None)
    latent = MetaLatentSurrogate(sur, d, adaptation="target", finetune=5, finetune_refit=False, finetune_anchors=3)
    anchors = latent._anchors(8, 4, seed=11)
    assert anchors.shape == (24, sur.config.input_dim) and torch.equal(anchors, latent._anchors(8, 4, seed=11))
    assert torch.equal(anchors[:, : d.numel()], d.expand(24, -1).to(anchors.dtype))


def test_finetune_every_reuses_the_map_tuned_at_the_last_scheduled_count():
    """``finetune_every=k``: the map is fine-tuned at ``finetune_start``, ``finetune_start + k``, ...
    observations on the first that many, and reused in between (the same object, so its feature
    cache survives); a fresh surrogate given the same history fits the same map (resume); with
    ``k = 1`` every fit is tuned on all its observations, as before; bad values are one-line errors."""
    import pytest

    from grabnas.errors import GrabnasError

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    d = sur.task_embedding()
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    y = torch.tanh(2 * z[:, 0]) + 0.1 * torch.randn(16, generator=torch.Generator().manual_seed(3), dtype=DTYPE)

    def make(every: int) -> MetaLatentSurrogate:
        return MetaLatentSurrogate(
            sur,
            d,
            adaptation="target",
            integrate=0,
            finetune=10,
            finetune_start=4,
            finetune_refit=False,
            finetune_every=every,
        )

    def tuned_map(latent):
        return latent._last_gp.mean_module._prior.module.feature_map

    def weights(fmap) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in fmap.parameters()])

    latent = make(5)
    maps = {}
    for n in range(4, 15):
        latent.fit(z[:n], y[:n])
        maps[n] = tuned_map(latent)
    assert maps[4] is maps[8] and maps[9] is maps[13] and maps[14] is not maps[13] and maps[8] is not maps[9]
    X = sur.inputs(z, d)
    torch.testing.assert_close(weights(maps[13]), weights(sur.finetuned_prior(X[:9], y[:9], 10, 1e-3).feature_map))
    resumed = make(5)
    resumed.fit(z[:13], y[:13])
    torch.testing.assert_close(weights(tuned_map(resumed)), weights(maps[13]))
    every_fit = make(1)
    every_fit.fit(z[:13], y[:13])
    torch.testing.assert_close(
        weights(tuned_map(every_fit)), weights(sur.finetuned_prior(X[:13], y[:13], 10, 1e-3).feature_map)
    )
    with pytest.raises(GrabnasError, match="finetune_every > 1 needs finetune > 0 and finetune_refit=false"):
        MetaLatentSurrogate(sur, d, adaptation="target", finetune=5, finetune_every=3)
    with pytest.raises(GrabnasError, match="finetune_every must be a positive number of observations, got 0"):
        MetaLatentSurrogate(sur, d, adaptation="target", finetune=5, finetune_refit=False, finetune_every=0)
