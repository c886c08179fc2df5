"""The meta-learned surrogate: zero-shot prior, conditioning on a target (rank-Gauss, standardised
and affine units), adaptation steps, widening, per-task offsets and the task term."""

from __future__ import annotations

import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig
from grabnas.models.value_maps import predict

torch.set_num_threads(1)


def test_zero_shot_prior_is_the_learned_mean(make_surrogate, toy_data):
    sur = make_surrogate()
    _, _, X_test = toy_data(sur)
    prior = sur.fit(None, None)
    assert prior.units == "prior" and prior.num_train == 0
    mu, var = predict(prior, X_test, observation_noise=True)
    with torch.no_grad():
        m, _ = sur.feature_map(X_test)
    torch.testing.assert_close(mu, m)
    expected = sur.covar_module.outputscale.detach() + sur.likelihood.noise.detach().squeeze()
    torch.testing.assert_close(var, expected.expand_as(var))
    with pytest.raises(GrabnasError, match="no observations"):
        _ = prior.best_f


def test_fit_validates_inputs(make_surrogate, toy_data):
    sur = make_surrogate()
    X_obs, y_obs, _ = toy_data(sur)
    with pytest.raises(GrabnasError, match="finite"):
        sur.fit(X_obs, torch.cat([y_obs[:-1], torch.tensor([float("nan")], dtype=DTYPE)]))
    with pytest.raises(GrabnasError, match="shape"):
        sur.fit(X_obs[:, :3], y_obs)
    with pytest.raises(GrabnasError, match="latents have"):
        sur.inputs(torch.zeros(2, 7), sur.task_embedding())


def test_rank_gauss_fit_stays_in_task_units_and_maps_best_f(make_surrogate, toy_data):
    sur = make_surrogate()
    X_obs, y_obs, _ = toy_data(sur)
    model = sur.fit(X_obs, y_obs)
    assert model.units == "rank-gauss"
    assert float(model.best_f) == pytest.approx(float(model.transform_values(y_obs).max()))
    assert model.mean_scale.item() == 1.0 and model.mean_offset.item() == 0.0
    assert model.prediction_noise is not None and model.prediction_noise.item() < model.likelihood.noise.item()


def test_adaptation_steps_run_and_keep_feature_map(make_surrogate, toy_data):
    sur = make_surrogate("standardize")
    X_obs, y_obs, X_test = toy_data(sur)
    before = {k: v.clone() for k, v in sur.feature_map.state_dict().items()}
    model = sur.fit(X_obs, y_obs, steps=3)
    assert model.units == "observed"
    assert float(model.best_f) == pytest.approx(float(y_obs.max()))
    for k, v in sur.feature_map.state_dict().items():
        torch.testing.assert_close(v, before[k])
    tuned = sur.fit(X_obs, y_obs, steps=2, finetune_features=True)
    assert tuned.feature_map is not sur.feature_map
    assert torch.isfinite(tuned.posterior(X_test).mean).all()


def test_widening_to_residuals_only_ever_widens(make_surrogate, toy_data):
    sur = make_surrogate()
    X_obs, y_obs, X_test = toy_data(sur, n_obs=20)
    with torch.no_grad():  # meta-learned variances far too small for these residuals
        sur.covar_module.outputscale = torch.tensor(1e-3, dtype=DTYPE)
        sur.likelihood.noise = torch.tensor([1e-3], dtype=DTYPE)
    plain = sur.fit(X_obs, y_obs)
    wide = sur.fit(X_obs, y_obs, widen_prior_strength=5.0)
    _, var_plain = predict(plain, X_test, observation_noise=True)
    _, var_wide = predict(wide, X_test, observation_noise=True)
    f = float(wide.covar_module.outputscale / plain.covar_module.outputscale)
    assert f > 10  # residuals of order 1 against a prior variance of 2e-3
    assert float(wide.prediction_noise / plain.prediction_noise) == pytest.approx(f)
    # the observations keep their own (rank-Gauss) noise on top of the widened one
    own_plain = plain.likelihood.noise - plain.prediction_noise
    own_wide = wide.likelihood.noise - wide.prediction_noise
    assert torch.allclose(own_plain, own_wide)
    assert (var_wide > 5 * var_plain).all()
    # variances already wide enough stay as they are
    with torch.no_grad():
        sur.covar_module.outputscale = torch.tensor(50.0, dtype=DTYPE)
    a, b = sur.fit(X_obs, y_obs), sur.fit(X_obs, y_obs, widen_prior_strength=5.0)
    assert torch.equal(predict(a, X_test)[1], predict(b, X_test)[1])


def test_affine_units_fit_maps_values_and_keeps_the_noise(make_surrogate, toy_data):
    sur = make_surrogate()
    X_obs, y_obs, X_test = toy_data(sur)
    model = sur.fit(X_obs, y_obs, units="affine")
    assert model.units == "rank-gauss" and model.num_train == len(y_obs)
    torch.testing.assert_close(model.train_targets, model.transform_values(y_obs))
    assert float(model.best_f) == pytest.approx(float(model.transform_values(y_obs.max())))
    torch.testing.assert_close(model.likelihood.noise, sur.likelihood.noise)
    assert torch.isfinite(model.posterior(X_test).mean).all()
    with pytest.raises(GrabnasError, match="unknown surrogate units"):
        sur.fit(X_obs, y_obs, units="logit")


def test_task_offsets_candidates_and_inference(make_surrogate):
    torch.manual_seed(0)
    cfg = SurrogateConfig(
        latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, fidelities=("12ep",), task_offsets=("a", "b", "a@12ep")
    )
    sur = MetaSurrogate(cfg)
    with torch.no_grad():
        sur.task_encoder.task_offsets.copy_(
            torch.tensor([[20.0, 0, 0], [-20.0, 5, 0], [0, 30.0, 0]], dtype=torch.float32)
        )
    enc = sur.task_encoder
    torch.testing.assert_close(sur.task_embedding(task="a"), (enc.no_data + enc.task_offsets[0]).to(DTYPE))
    fid = (enc.no_data + enc.fidelity_offsets[0] + enc.task_offsets[2]).to(DTYPE)
    torch.testing.assert_close(sur.task_embedding(fidelity="12ep", task="a@12ep"), fid)
    # a task without an offset sits at the centre of the meta-training tasks of its fidelity
    centre = (enc.no_data + enc.task_offsets[:2].mean(0)).to(DTYPE)
    torch.testing.assert_close(sur.task_embedding(), centre)
    torch.testing.assert_close(sur.task_embedding(task="new"), centre)
    torch.testing.assert_close(sur.task_embedding(fidelity="12ep"), fid)  # its only task
    own = sur.task_offset_embeddings()
    assert list(own) == ["a", "b"] and list(sur.task_offset_embeddings("12ep")) == ["a@12ep"]
    torch.testing.assert_close(sur.task_offset_embeddings("12ep")["a@12ep"], fid)
    torch.testing.assert_close(0.5 * (own["a"] + own["b"]), centre)
    # the task term: D_k(x) = m(e_k, z) - m(x), of rank K in the prior covariance
    g = torch.Generator().manual_seed(1)
    z = torch.randn(25, 4, generator=g, dtype=DTYPE)
    X = sur.inputs(z, centre)
    prior = sur.prior()
    assert prior.task_names == ["a", "b"]
    with torch.no_grad():
        dirs = prior.task_directions(X)
        m_c, _ = sur.prior(task_prior_var=0.0).prior_moments(X)
        m_b, _ = sur.prior(task_prior_var=0.0).prior_moments(sur.inputs(z, own["b"]))
        torch.testing.assert_close(dirs[:, 1], m_b - m_c)
        _, cov = prior.prior_moments(X)
        _, cov0 = sur.prior(task_prior_var=0.0).prior_moments(X)
        torch.testing.assert_close(cov - cov0, dirs @ dirs.T)
        # the lazy posterior (how search scores a pool) equals the dense prior covariance
        post = prior.posterior(X)
        torch.testing.assert_close(
            post.variance.squeeze(-1), torch.diagonal(cov0 + dirs @ dirs.T) - prior.likelihood.noise
        )
    # observations that follow task b's mean call for a positive weight on b
    y = 60 + 4 * m_b
    model = sur.fit(X, y)
    w = model.task_weights()
    assert w is not None and float(w[1] - w[0]) > 0.3  # (D_a = -D_b here: two tasks about their centre)
    assert sur.fit(X, y, task_prior_var=0.0).task_weights() is None

    # conditioning on the observations through the task term beats ignoring it
    def err(mdl) -> float:
        return float(((predict(mdl, X)[0] - model.transform_values(y)) ** 2).mean())

    assert err(model) < err(sur.fit(X, y, task_prior_var=0.0))
    plain = make_surrogate()
    assert plain.task_offset_embeddings() == {} and plain.prior().task_embeddings is None
