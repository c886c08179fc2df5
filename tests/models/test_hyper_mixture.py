import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.hyper_mixture import (
    HyperparameterMixture,
    integrate_hyperparameters,
    laplace_proposal,
    log_joint,
    scalar_hyperparameters,
)
from grabnas.models.target_gp import fit_target_gp


@pytest.fixture
def fitted(make_surrogate, toy_data):
    """``fitted(n)`` -> ``(surrogate, X_test (60, D), target-adapted GP fitted to n values of a
    smooth function)``."""

    def make(n: int):
        sur = make_surrogate()
        X, y, X_test = toy_data(sur, n_obs=n, n_test=60)
        return sur, X_test, fit_target_gp(sur, X, y, seed=0)

    return make


def test_the_integrated_hyperparameters_are_the_scalars_not_the_lengthscales(fitted):
    _, _, gp = fitted(6)
    names = [n for n, _ in scalar_hyperparameters(gp)]
    assert names == [
        "likelihood.noise_covar.raw_noise",
        "mean_module.scale",
        "mean_module.offset",
        "covar_module.kernels.0.raw_factor",
        "covar_module.kernels.1.raw_outputscale",
    ]


def test_the_laplace_proposal_sits_at_the_raw_mode_and_leaves_the_fit_untouched(fitted):
    """Newton steps reach a point where the log joint's gradient vanishes; the MAP values are
    restored; the covariance is symmetric positive definite."""
    _, _, gp = fitted(10)
    params = [p for _, p in scalar_hyperparameters(gp)]
    before = [p.detach().clone() for p in params]
    theta, cov = laplace_proposal(gp)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))
    with torch.no_grad():
        for p, v in zip(params, theta):
            p.copy_(v)
    value = log_joint(gp)
    grads = torch.autograd.grad(value, params)
    assert max(abs(float(g)) for g in grads) < 1e-2
    assert torch.allclose(cov, cov.T) and bool((torch.linalg.eigvalsh(cov) > 0).all())


def test_the_mixture_moment_matches_its_components(fitted):
    """Mean = sum_k w_k mu_k; variance = sum_k w_k (var_k + mu_k^2) - mean^2 (>= the weighted
    component variances); joint covariances the same on q > 1 points."""
    _, X, gp = fitted(5)
    mix = integrate_hyperparameters(gp, 8, seed=1)
    assert isinstance(mix, HyperparameterMixture) and abs(float(mix.weights.sum()) - 1) < 1e-9
    x = X[:10]
    with torch.no_grad():
        post = mix.posterior(x.unsqueeze(1))
        mus = torch.stack([c.posterior(x.unsqueeze(1)).mean.reshape(-1) for c in mix.components])
        vs = torch.stack([c.posterior(x.unsqueeze(1)).variance.reshape(-1) for c in mix.components])
        w = mix.weights.unsqueeze(-1)
        mean = (w * mus).sum(0)
        assert torch.allclose(post.mean.reshape(-1), mean)
        assert torch.allclose(post.variance.reshape(-1), (w * (vs + mus**2)).sum(0) - mean**2)
        assert bool((post.variance.reshape(-1) >= (w * vs).sum(0) - 1e-12).all())
        joint = mix.posterior(x[:4])
        assert torch.allclose(joint.mean.reshape(-1), mean[:4])
        assert torch.allclose(joint.distribution.covariance_matrix.diagonal(), post.variance.reshape(-1)[:4])


def test_few_observations_widen_the_posterior_and_many_leave_the_map_fit(fitted):
    _, X, few = fitted(3)
    _, _, many = fitted(80)
    x = X.unsqueeze(1)

    def ratio(gp):
        mix = integrate_hyperparameters(gp, 16, seed=0)
        with torch.no_grad():
            return float(mix.posterior(x).variance.mean() / gp.posterior(x).variance.mean())

    assert ratio(few) > 1.5
    assert ratio(many) < 1.5


def test_integration_is_seeded_reads_the_map_models_data_and_passes_gradients(fitted):
    _, X, gp = fitted(6)
    a, b, c = (integrate_hyperparameters(gp, 8, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.weights, b.weights) and not torch.equal(a.weights, c.weights)
    assert torch.equal(a.best_f, gp.best_f) and a.units == gp.units and a.num_train == 6
    x = X[:3].clone().requires_grad_(True)
    a.posterior(x.unsqueeze(1)).mean.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    with pytest.raises(GrabnasError, match="at least 2 samples, got 1"):
        integrate_hyperparameters(gp, 1, seed=0)


def test_fit_target_gp_integrates_on_request(make_surrogate, toy_data):
    sur = make_surrogate()
    X, y, _ = toy_data(sur, n_obs=4)
    mix = fit_target_gp(sur, X, y, seed=0, integrate=4)
    assert isinstance(mix, HyperparameterMixture) and len(mix.components) <= 4
    assert mix.fitted_hyperparameters == mix.map_model.fitted_hyperparameters
