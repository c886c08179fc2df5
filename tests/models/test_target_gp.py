import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from grabnas.errors import GrabnasError
from grabnas.models.deep_kernel_gp import DeepKernelGP
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig
from grabnas.models.target_gp import TargetAdaptedGP, fit_target_gp, hamming_kernel


def _surrogate(seed: int = 0) -> MetaSurrogate:
    """A random surrogate whose learned mean has unit spread (as a meta-trained one's has, in the
    tasks' normal-score units)."""
    torch.manual_seed(seed)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    m = _prior_mean(sur, _inputs(sur, 500, 99))
    with torch.no_grad():
        sur.feature_map.mean_head.weight /= float(m.std())
        sur.feature_map.mean_head.bias -= float(m.mean())
    return sur


def _inputs(sur: MetaSurrogate, n: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    return sur.inputs(z, sur.task_embedding()).detach()


def _prior_mean(sur: MetaSurrogate, X: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sur.prior().prior_mean(X)


def test_fewer_than_two_observations_give_the_zero_shot_prior():
    sur = _surrogate()
    X = _inputs(sur, 3, 0)
    assert isinstance(fit_target_gp(sur, None, None), DeepKernelGP)
    assert isinstance(fit_target_gp(sur, X[:1], torch.tensor([1.0])), DeepKernelGP)
    with pytest.raises(GrabnasError, match="finite"):
        fit_target_gp(sur, X[:2], torch.tensor([1.0, float("nan")]))
    with pytest.raises(GrabnasError, match="n >= 2"):
        TargetAdaptedGP(sur.prior(), X[:2], torch.tensor([1.0, 2.0, 3.0]), target_dims=[3, 4, 5, 6])


def test_a_right_prior_is_followed_and_a_reversed_one_overruled():
    """Values that follow the meta-learned mean keep its weight near 1; values that reverse it
    turn the weight negative, and the posterior then ranks unseen points like the values do."""
    sur = _surrogate()
    X = _inputs(sur, 240, 1)
    m = _prior_mean(sur, X)
    obs, test = np.arange(40), np.arange(40, 240)
    right = fit_target_gp(sur, X[obs], 3 * m[obs] + 50, seed=0)
    wrong = fit_target_gp(sur, X[obs], -3 * m[obs] + 50, seed=0)
    assert right.fitted_hyperparameters["mean_scale"] > 0.5
    assert wrong.fitted_hyperparameters["mean_scale"] < -0.5
    with torch.no_grad():
        mu_wrong = wrong.posterior(X[test]).mean.reshape(-1).numpy()
        mu_right = right.posterior(X[test]).mean.reshape(-1).numpy()
    assert spearmanr(mu_right, m[test].numpy())[0] > 0.9
    assert spearmanr(mu_wrong, -m[test].numpy())[0] > 0.9


def test_values_unrelated_to_the_prior_are_learned_by_the_target_kernel():
    """Values the meta-learned mean knows nothing of (a function of one latent coordinate) are
    still learned from the observations: the posterior ranks unseen points by them."""
    sur = _surrogate()
    X = _inputs(sur, 200, 2)
    f = torch.sin(2 * X[:, 3])  # X[:, 3] is the first latent coordinate (task_dim = 3)
    gp = fit_target_gp(sur, X[:50], f[:50], seed=0)
    with torch.no_grad():
        mu = gp.posterior(X[50:]).mean.reshape(-1).numpy()
    assert spearmanr(mu, f[50:].numpy())[0] > 0.8
    assert gp.fitted_hyperparameters["target_scale"] > 0.1


def test_units_best_f_and_transform_values():
    sur = _surrogate()
    X = _inputs(sur, 6, 3)
    y = torch.tensor([1.0, 5.0, 2.0, 4.0, 3.0, 0.5], dtype=DTYPE)
    gp = fit_target_gp(sur, X, y, seed=0)
    assert gp.units == "observation-scores" and gp.num_train == 6
    torch.testing.assert_close(gp.best_f, gp.transform_values(torch.tensor(5.0, dtype=DTYPE)))
    scores = gp.transform_values(y)
    assert torch.equal(torch.argsort(scores), torch.argsort(y))  # monotone


def test_fit_is_seeded_and_leaves_the_meta_learned_modules_untouched():
    sur = _surrogate()
    X = _inputs(sur, 20, 4)
    y = torch.randn(20, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    before = {k: v.clone() for k, v in sur.state_dict().items()}
    a = fit_target_gp(sur, X, y, seed=7).fitted_hyperparameters
    b = fit_target_gp(sur, X, y, seed=7).fitted_hyperparameters
    assert a == b
    for k, v in sur.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in sur.parameters())
    assert all(p.grad is None for p in sur.parameters())


def test_batched_marginals_match_and_gradients_reach_the_inputs():
    sur = _surrogate()
    X = _inputs(sur, 30, 6)
    y = torch.randn(10, generator=torch.Generator().manual_seed(8), dtype=DTYPE)
    gp = fit_target_gp(sur, X[:10], y, seed=0)
    with torch.no_grad():
        joint = gp.posterior(X[10:])
        batched = gp.posterior(X[10:].unsqueeze(1))
    torch.testing.assert_close(batched.mean.reshape(-1), joint.mean.reshape(-1))
    torch.testing.assert_close(batched.variance.reshape(-1), joint.variance.reshape(-1))
    x = X[10:11].clone().requires_grad_(True)
    gp.posterior(x).mean.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_warm_start_resumes_from_a_previous_fit():
    sur = _surrogate()
    X = _inputs(sur, 25, 9)
    y = torch.randn(25, generator=torch.Generator().manual_seed(10), dtype=DTYPE)
    first = fit_target_gp(sur, X[:20], y[:20], seed=0)
    warm = fit_target_gp(sur, X, y, seed=0, warm_start=first.fit_state(), maxiter=0)
    assert warm.fitted_hyperparameters == pytest.approx(first.fitted_hyperparameters, abs=0.05, rel=0.05)


def test_prior_mean_kernel_learns_values_that_peak_inside_the_prior_range():
    """Values best where the prior predicts ~ its 80th percentile (a misleading top): with the
    kernel on the prior mean the posterior ranks unseen points by them."""
    sur = _surrogate()
    X = _inputs(sur, 300, 11)
    m = _prior_mean(sur, X)
    f = -((m - 0.85) ** 2)
    gp = fit_target_gp(sur, X[:60], f[:60], seed=0, prior_mean_kernel=True)
    assert len(gp.covar_module.kernels) == 3
    with torch.no_grad():
        mu = gp.posterior(X[60:]).mean.reshape(-1).numpy()
    assert spearmanr(mu, f[60:].numpy())[0] > 0.9


def test_frozen_prior_memo_only_serves_equal_inputs_without_gradients():
    from grabnas.models.target_gp import _LastCall

    memo, calls = _LastCall(), []

    def f(x):
        calls.append(1)
        return x * 2

    a = torch.arange(6.0, dtype=torch.float64).reshape(3, 2)
    assert torch.equal(memo((a, False), lambda: f(a)), a * 2)
    assert torch.equal(memo((a.clone(), False), lambda: f(a)), a * 2) and len(calls) == 1  # equal content: cached
    b = a + 1  # same shape, other values: recomputed
    assert torch.equal(memo((b, False), lambda: f(b)), b * 2) and len(calls) == 2
    assert len(calls) == 2 and torch.equal(memo((b, True), lambda: f(b)), b * 2) and len(calls) == 3  # other flag
    g = b.clone().requires_grad_(True)  # the latent ascent: never memoised, gradients flow
    out = memo((g, True), lambda: f(g))
    out.sum().backward()
    assert len(calls) == 4 and torch.equal(g.grad, torch.full_like(g, 2.0))
    assert not memo((b, True), lambda: f(b)).requires_grad  # stored detached
    assert torch.equal(memo((a, False), lambda: f(a)), a * 2) and len(calls) == 4  # a few entries are kept
    for k in range(4):  # four newer entries push the oldest out
        memo((a + 10 + k, False), lambda k=k: f(a + 10 + k))
    memo((b, False), lambda: f(b))
    assert len(calls) == 9
    import copy

    assert copy.deepcopy(memo) is memo  # a copy of the GP shares the frozen prior's memo


def test_loo_variance_ratio_matches_refits_without_each_point():
    """The closed-form ratio equals the mean squared standardised residual of conditioning the
    fitted GP (same hyperparameters) on the other n - 1 observations."""
    sur = _surrogate()
    X = _inputs(sur, 10, 5)
    y = torch.sin(3 * X[:, 3]) + 0.2 * torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    gp = fit_target_gp(sur, X, y, seed=0)
    z2 = []
    for i in range(10):
        keep = torch.arange(10) != i
        other = TargetAdaptedGP(sur.prior(), X[keep], y[keep], target_dims=[3, 4, 5, 6])
        other.load_state_dict(gp.fit_state(), strict=False)
        other.set_train_data(X[keep], gp.train_targets[keep], strict=False)  # the same target units
        other.eval()
        with torch.no_grad():
            post = other.posterior(X[i : i + 1], observation_noise=True)
        z2.append(float((gp.train_targets[i] - post.mean.reshape(())) ** 2 / post.variance.reshape(())))
    assert gp.loo_variance_ratio() == pytest.approx(float(np.mean(z2)), rel=1e-4)


def test_calibration_widens_the_posterior_and_keeps_its_mean():
    sur = _surrogate()
    X = _inputs(sur, 60, 6)
    y = -3 * _prior_mean(sur, X) + torch.sin(4 * X[:, 4])  # a misleading prior: large LOO errors
    plain = fit_target_gp(sur, X[:6], y[:6], seed=0)
    wide = fit_target_gp(sur, X[:6], y[:6], seed=0, calibrate=True)
    ratio = plain.loo_variance_ratio()
    with torch.no_grad():
        p, w = plain.posterior(X[6:], observation_noise=True), wide.posterior(X[6:], observation_noise=True)
    torch.testing.assert_close(w.mean, p.mean)
    torch.testing.assert_close(w.variance, p.variance * max(1.0, ratio), rtol=1e-5, atol=1e-9)
    assert wide.fit_state().keys() == plain.fit_state().keys()
    for k, v in plain.fit_state().items():  # warm starts continue from the uncalibrated fit
        torch.testing.assert_close(wide.fit_state()[k], v)
    two = fit_target_gp(sur, X[:2], y[:2], seed=0, calibrate=True)  # too few points: unchanged
    assert getattr(two, "variance_factor", 1.0) == 1.0


def test_meta_factor_never_reaches_zero_where_its_prior_is_undefined():
    """An L-BFGS step can drive the factor's raw value below -745, where softplus is exactly 0.0
    and the LogNormal prior raises; the factor is floored instead (seen on NB201 imagenet16)."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    sur = _surrogate()
    X = _inputs(sur, 8, 7)
    gp = fit_target_gp(sur, X, torch.arange(8, dtype=DTYPE), seed=0)
    meta = gp.covar_module.kernels[0]
    with torch.no_grad():
        meta.raw_factor.fill_(-1000.0)
    assert float(meta.factor) > 0
    gp.train()
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    assert torch.isfinite(mll(gp(*gp.train_inputs), gp.train_targets))


def test_an_extra_encoding_feeds_the_target_kernel_only():
    """With ``extra_dims`` the inputs are ``[d, z, o]``: the meta-learned mean reads ``[d, z]``
    (the same prior mean as without ``o``), the target kernel reads ``o`` only, and inputs of the
    wrong width are refused in one line."""
    sur = _surrogate()
    X = _inputs(sur, 30, 3)
    onehot = torch.nn.functional.one_hot(torch.arange(30) % 5, 5).to(DTYPE)
    y = torch.arange(30, dtype=DTYPE) % 5  # a function of the encoding alone
    gp = fit_target_gp(sur, torch.cat([X, onehot], -1), y, seed=0, extra_dims=5)
    meta, target = gp.covar_module.kernels[:2]
    assert target.base_kernel.active_dims.tolist() == [7, 8, 9, 10, 11]
    with torch.no_grad():
        assert torch.allclose(
            gp.mean_module(torch.cat([X, onehot], -1)) - gp.mean_module.offset,
            gp.mean_module.scale * _prior_mean(sur, X),
        )
        # an unseen latent with a seen encoding is predicted by its encoding's value
        X_new = torch.cat([_inputs(sur, 5, 4), torch.eye(5, dtype=DTYPE)], -1)
        mu = gp.posterior(X_new).mean.reshape(-1)
    assert spearmanr(mu.numpy(), np.arange(5))[0] > 0.9
    with pytest.raises(GrabnasError, match="expected 7 \\+ 5"):
        fit_target_gp(sur, X, y, extra_dims=5)


def test_an_integrated_out_prior_weight_follows_or_reverses_and_explores_while_open():
    """``mean_weight="marginal"``: the posterior mean of the weight ``a`` is near +1 for values
    that follow the prior mean and negative for reversed ones (as the fitted ``a``); with every
    observation at the prior's top, the predictive variance at the prior's bottom is larger than
    the fitted-weight model's (the weight is still open there), and it is differentiable in x."""
    sur = _surrogate()
    X = _inputs(sur, 240, 1)
    m = _prior_mean(sur, X)
    obs = np.arange(40)
    right = fit_target_gp(sur, X[obs], 3 * m[obs] + 50, seed=0, mean_weight="marginal")
    wrong = fit_target_gp(sur, X[obs], -3 * m[obs] + 50, seed=0, mean_weight="marginal")
    assert right.fitted_hyperparameters["mean_scale"] > 0.5
    assert wrong.fitted_hyperparameters["mean_scale"] < -0.5
    order = torch.argsort(m, descending=True)
    top, bottom = order[:12], order[-5:]
    y = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=DTYPE)  # no trend within the top
    var = {}
    for weight in ("map", "marginal"):
        gp = fit_target_gp(sur, X[top], y, seed=0, mean_weight=weight)
        with torch.no_grad():
            var[weight] = gp.posterior(X[bottom]).variance.reshape(-1)
    assert bool((var["marginal"] > 2 * var["map"]).all())
    x = X[bottom[:1]].clone().requires_grad_(True)
    gp.posterior(x).mean.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    with pytest.raises(GrabnasError, match="mean_weight 'fit' is unknown"):
        fit_target_gp(sur, X[top], y, mean_weight="fit")


def test_target_scale_centres_the_target_kernel_prior_only_above_the_meta_scale():
    """``target_scale`` moves the target kernel's prior centre (and start) up to the given value,
    never below the meta-learned output scale."""
    sur = _surrogate()
    X = _inputs(sur, 6, 3)
    y = torch.arange(6, dtype=DTYPE)
    meta_scale = float(sur.prior().covar_module.outputscale)

    def centre(**kw) -> float:
        gp = TargetAdaptedGP(sur.prior(), X, y, target_dims=[3, 4, 5, 6], **kw)
        target = gp.covar_module.kernels[1]
        assert float(target.outputscale) == pytest.approx(float(target.outputscale_prior.loc.exp()))
        return float(target.outputscale)

    assert centre() == pytest.approx(meta_scale)
    assert centre(target_scale=meta_scale / 10) == pytest.approx(meta_scale)
    assert centre(target_scale=meta_scale * 7) == pytest.approx(meta_scale * 7)


def test_hamming_kernel_counts_the_choices_two_encodings_differ_in():
    """``s exp(-h / l^2)`` with ``h`` the number of differing one-hot groups, at its prior centre
    ``l^2 = groups``."""
    rows = torch.tensor([[1, 0, 1, 0, 1, 0], [1, 0, 0, 1, 1, 0], [0, 1, 0, 1, 0, 1]], dtype=DTYPE)  # 3 groups of 2
    k = hamming_kernel([0, 1, 2, 3, 4, 5], groups=3.0, scale=0.5)
    with torch.no_grad():
        K = k(rows).to_dense()
    h = torch.tensor([[0, 1, 3], [1, 0, 2], [3, 2, 0]], dtype=DTYPE)
    torch.testing.assert_close(K, 0.5 * torch.exp(-h / 3.0))


def test_a_hamming_kernel_adds_to_the_latent_target_kernel():
    """``onehot_kernel="hamming"``: the target kernel on ``z`` stays, a Hamming kernel on the
    encoding is added (its fitted scale and lengthscale reported), and values that are a function
    of the encoding alone are learned from it; an unknown kind is refused in one line."""
    sur = _surrogate()
    X = _inputs(sur, 30, 3)
    onehot = torch.nn.functional.one_hot(torch.arange(30) % 5, 5).to(DTYPE)
    y = torch.arange(30, dtype=DTYPE) % 5
    gp = fit_target_gp(sur, torch.cat([X, onehot], -1), y, seed=0, extra_dims=5, onehot_kernel="hamming")
    meta, target, hamming = gp.covar_module.kernels
    assert target.base_kernel.active_dims.tolist() == [3, 4, 5, 6]  # z, as without the encoding
    assert hamming.base_kernel.active_dims.tolist() == [7, 8, 9, 10, 11]
    hp = gp.fitted_hyperparameters
    assert hp["hamming_scale"] == pytest.approx(float(hamming.outputscale)) and hp["hamming_lengthscale"] > 0
    with torch.no_grad():
        X_new = torch.cat([_inputs(sur, 5, 4), torch.eye(5, dtype=DTYPE)], -1)
        mu = gp.posterior(X_new).mean.reshape(-1)
    assert spearmanr(mu.numpy(), np.arange(5))[0] > 0.9
    with pytest.raises(GrabnasError, match="onehot_kernel 'rbf' is unknown; expected ard or hamming"):
        fit_target_gp(sur, torch.cat([X, onehot], -1), y, extra_dims=5, onehot_kernel="rbf")


def test_a_centred_prior_mean_keeps_its_weight_on_observations_from_the_prior_top():
    """A search observes the prior's top first, where the meta-learned mean is ~2-3 (task normal
    scores) but the observations' own normal scores have mean 0: centring the mean on the
    observations keeps its weight near 1 there, where an offset prior N(0, 1) drags it to ~0."""
    sur = _surrogate()
    X = _inputs(sur, 500, 3)
    m = _prior_mean(sur, X)
    top = torch.argsort(m, descending=True)[:4]
    values = m[top] + 50  # the prior is right
    centred = fit_target_gp(sur, X[top], values, seed=0, mean_weight="centred")
    plain = fit_target_gp(sur, X[top], values, seed=0)
    assert centred.mean_module.centre == pytest.approx(float(m[top].mean()), rel=1e-6)
    assert plain.mean_module.centre == 0.0
    assert float(m[top].mean()) > 2.0
    assert centred.fitted_hyperparameters["mean_scale"] > 0.8
    assert plain.fitted_hyperparameters["mean_scale"] < centred.fitted_hyperparameters["mean_scale"] - 0.3
    with torch.no_grad():  # ranks unseen cells like the prior
        mu = centred.posterior(X[:200]).mean.reshape(-1).numpy()
    assert spearmanr(mu, m[:200].numpy())[0] > 0.9
    with pytest.raises(GrabnasError, match="map, marginal, centred or none"):
        fit_target_gp(sur, X[top], values, mean_weight="centered")


def test_the_fit_objective_is_gpytorchs_and_its_tolerance_costs_nothing_measurable():
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from grabnas.models.target_gp import FIT_FTOL, _ListedPriorsMLL

    sur = _surrogate()
    X = _inputs(sur, 30, 11)
    y = torch.sin(3 * X[:, -1]) + 0.1 * torch.randn(30, generator=torch.Generator().manual_seed(12), dtype=DTYPE)
    gp = fit_target_gp(sur, X, y, seed=0)
    gp.train()
    out = gp(*gp.train_inputs)
    listed = _ListedPriorsMLL(gp.likelihood, gp)(out, gp.train_targets)
    assert torch.equal(listed, ExactMarginalLogLikelihood(gp.likelihood, gp)(out, gp.train_targets))

    def loss(ftol: float) -> float:
        model = TargetAdaptedGP(sur.prior(), X, y, target_dims=list(range(3, 7)))
        model.fit(seed=0, maxiter=200, ftol=ftol)
        model.train()
        with torch.no_grad():
            return -float(
                ExactMarginalLogLikelihood(model.likelihood, model)(model(*model.train_inputs), model.train_targets)
            )

    # the default tolerance stops within 1e-3 (per observation) of scipy's own, far tighter one
    assert loss(FIT_FTOL) == pytest.approx(loss(2.2e-9), abs=1e-3)


def test_a_finetuned_feature_map_moves_the_prior_towards_the_observations_on_a_copy():
    """``finetune=K``: the target-adapted GP is built on a prior whose feature map was fine-tuned
    to the observations (its mean ranks them better than the meta-learned mean did), while the
    surrogate's own feature map and its zero-shot prior are unchanged."""
    sur = _surrogate()
    X = _inputs(sur, 40, 3)
    g = torch.Generator().manual_seed(4)
    values = torch.randn(40, generator=g, dtype=DTYPE)  # unrelated to the prior mean
    before = {k: v.clone() for k, v in sur.feature_map.state_dict().items()}
    m0 = _prior_mean(sur, X)
    tuned = fit_target_gp(sur, X, values, seed=0, finetune=200, finetune_lr=1e-2)
    for k, v in sur.feature_map.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(_prior_mean(sur, X), m0)
    prior = tuned.mean_module._prior.module
    assert prior.feature_map is not sur.feature_map
    with torch.no_grad():
        m1 = prior.prior_mean(X)
    rho0, rho1 = spearmanr(m0.numpy(), values.numpy())[0], spearmanr(m1.numpy(), values.numpy())[0]
    assert rho1 > rho0 + 0.3
    # the fit still reads gradients to the inputs through the fine-tuned map (the latent ascent)
    Xg = X[:5].clone().requires_grad_(True)
    tuned.posterior(Xg).mean.sum().backward()
    assert Xg.grad is not None and torch.isfinite(Xg.grad).all() and Xg.grad.abs().sum() > 0
    assert isinstance(fit_target_gp(sur, X[:1], values[:1], finetune=5), DeepKernelGP)
    with pytest.raises(GrabnasError, match="finetune must be 0"):
        fit_target_gp(sur, X, values, finetune=-1)
