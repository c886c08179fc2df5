import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.hyper_mixture import (
    HyperparameterMixture,
    integrate_hyperparameters,
    laplace_proposal,
    swap_prior,
)
from grabnas.models.scalar_form import ScalarForm, scalar_hyperparameters
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
    assert ScalarForm(gp).names == names


def test_the_laplace_proposal_sits_at_the_raw_mode_and_leaves_the_fit_untouched(fitted):
    """Newton steps reach a point where the log joint's gradient vanishes; the MAP values are
    untouched; the covariance is symmetric positive definite."""
    _, _, gp = fitted(10)
    params = [p for _, p in scalar_hyperparameters(gp)]
    before = [p.detach().clone() for p in params]
    form = ScalarForm(gp)
    theta, cov = laplace_proposal(form)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))
    point = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(form.log_joint(point.unsqueeze(0))[0], point)
    assert float(grad.abs().max()) < 1e-2
    assert torch.allclose(cov, cov.T) and bool((torch.linalg.eigvalsh(cov) > 0).all())


def test_the_mixture_moment_matches_its_components(fitted):
    """Mean = sum_k w_k mu_k; variance = sum_k w_k (var_k + mu_k^2) - mean^2 (>= the weighted
    component variances), where mu_k, var_k are the posteriors of GPyTorch models with the
    components' hyperparameters; joint covariances the same on q > 1 points, with and without
    observation noise."""
    _, X, gp = fitted(5)
    mix = integrate_hyperparameters(gp, 8, seed=1)
    assert isinstance(mix, HyperparameterMixture) and abs(float(mix.weights.sum()) - 1) < 1e-9
    x = X[:10]
    w = mix.weights.unsqueeze(-1)
    with torch.no_grad():
        parts = [mix.component(i) for i in range(mix.num_components)]
        post = mix.posterior(x.unsqueeze(1))
        assert post.mean.shape == (10, 1, 1)
        mus = torch.stack([c.posterior(x.unsqueeze(1)).mean.reshape(-1) for c in parts])
        vs = torch.stack([c.posterior(x.unsqueeze(1)).variance.reshape(-1) for c in parts])
        mean = (w * mus).sum(0)
        assert torch.allclose(post.mean.reshape(-1), mean)
        assert torch.allclose(post.variance.reshape(-1), (w * (vs + mus**2)).sum(0) - mean**2)
        assert bool((post.variance.reshape(-1) >= (w * vs).sum(0) - 1e-12).all())
        joint = mix.posterior(x[:4])
        assert torch.allclose(joint.mean.reshape(-1), mean[:4])
        assert torch.allclose(joint.distribution.covariance_matrix.diagonal(), post.variance.reshape(-1)[:4])
        noisy = mix.posterior(x[:4], observation_noise=True).distribution.covariance_matrix
        covs = torch.stack([c.posterior(x[:4], observation_noise=True).distribution.covariance_matrix for c in parts])
        mu4 = mus[:, :4]
        expected = (w.unsqueeze(-1) * (covs + mu4.unsqueeze(-1) * mu4.unsqueeze(-2))).sum(0)
        assert torch.allclose(noisy, expected - mean[:4].unsqueeze(-1) * mean[:4].unsqueeze(-2), atol=1e-9)


def _reference_log_joint(gp) -> torch.Tensor:
    """GPyTorch's marginal log likelihood plus every prior, plus the log-Jacobians of the
    softplus-constrained scalars: what :meth:`ScalarForm.log_joint` computes in closed form."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp.train()
    X, y = gp.train_inputs[0], gp.train_targets
    value = ExactMarginalLogLikelihood(gp.likelihood, gp)(gp(X), y) * y.numel()
    for name, p in scalar_hyperparameters(gp):
        if name.rpartition(".")[2].startswith("raw_"):
            value = value + torch.nn.functional.logsigmoid(p).sum()
    gp.eval()
    return value.detach()


@pytest.mark.parametrize(
    "options",
    [{}, {"mean_weight": "marginal"}, {"prior_mean_kernel": True}, {"extra_dims": 6, "onehot_kernel": "hamming"}],
)
def test_the_closed_form_log_joint_is_gpytorchs(make_surrogate, toy_data, options):
    """Every form of the target-adapted GP: the default, the prior mean's weight integrated out, a
    kernel on the prior mean, a Hamming kernel on a one-hot encoding (three choices of two)."""
    sur = make_surrogate()
    X, y, _ = toy_data(sur, n_obs=7)
    if options.get("extra_dims"):
        choice = torch.arange(7 * 3).reshape(7, 3) % 2
        X = torch.cat([X, torch.nn.functional.one_hot(choice, 2).reshape(7, 6).to(X.dtype)], -1)
    gp = fit_target_gp(sur, X, y, seed=0, **options)
    form = ScalarForm(gp)
    g = torch.Generator().manual_seed(0)
    raws = form.raw_map + 0.7 * torch.randn(4, len(form.raw_map), generator=g, dtype=form.raw_map.dtype)
    fast = form.log_joint(raws)
    params = [p for _, p in scalar_hyperparameters(gp)]
    slow = []
    for raw in raws:
        with torch.no_grad():
            for p, v in zip(params, raw):
                p.copy_(v)
        slow.append(_reference_log_joint(gp))
    with torch.no_grad():
        for p, v in zip(params, form.raw_map):
            p.copy_(v)
    assert torch.allclose(fast.detach(), torch.stack(slow), atol=1e-8, rtol=1e-10)


def test_a_gp_of_another_form_is_refused(make_surrogate, toy_data):
    from botorch.models import SingleTaskGP

    sur = make_surrogate()
    X, y, _ = toy_data(sur, n_obs=5)
    with pytest.raises(GrabnasError, match="needs a target-adapted GP with the mean c \\+ a \\* m"):
        ScalarForm(SingleTaskGP(X, y.unsqueeze(-1)))


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


def test_the_latent_surrogate_integrates_on_request(make_surrogate):
    """``MetaLatentSurrogate(integrate=K)`` mixes K samples around the same MAP fit (its warm start
    is the MAP model's) and needs two observations, as the fit does."""
    from grabnas.models.latent_surrogate import MetaLatentSurrogate

    sur = make_surrogate()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.sin(z[:, 0])
    plain = MetaLatentSurrogate(sur, sur.task_embedding().detach(), adaptation="target", seed=2)
    mixed = MetaLatentSurrogate(sur, sur.task_embedding().detach(), adaptation="target", seed=2, integrate=4)
    assert not isinstance(mixed.fit(z[:1], y[:1]).gp, HyperparameterMixture)
    mix, gp = mixed.fit(z, y).gp, plain.fit(z, y).gp
    assert isinstance(mix, HyperparameterMixture) and mix.num_components <= 4
    assert mix.fitted_hyperparameters == gp.fitted_hyperparameters


def test_a_draw_is_one_component_chosen_by_its_weight(fitted):
    """``draw`` returns a one-component mixture that predicts as that component's GPyTorch model;
    components come up about as often as their weights say, and a seeded generator repeats."""
    _, X, gp = fitted(5)
    mix = integrate_hyperparameters(gp, 8, seed=1)
    g = torch.Generator().manual_seed(0)
    draws = [mix.draw(g) for _ in range(400)]
    assert all(d.num_components == 1 and float(d.weights[0]) == 1.0 for d in draws)
    picks = [int(torch.nonzero((mix.thetas == d.thetas[0]).all(-1))[0]) for d in draws]
    freq = torch.bincount(torch.tensor(picks), minlength=mix.num_components).double() / len(picks)
    assert torch.allclose(freq, mix.weights, atol=0.08)
    i = picks[0]
    with torch.no_grad():
        got, want = draws[0].posterior(X[:6].unsqueeze(1)), mix.component(i).posterior(X[:6].unsqueeze(1))
    assert torch.allclose(got.mean, want.mean) and torch.allclose(got.variance, want.variance)
    again = mix.draw(torch.Generator().manual_seed(0))
    assert torch.equal(again.thetas, draws[0].thetas)


def test_the_latent_surrogate_draws_one_component_for_any_search_seed(make_surrogate):
    """``hyper_draw`` turns the fitted mixture into one drawn component; search seeds are 63-bit
    (``grabnas.seeding.child_seed``), so the draw's seed must stay in range."""
    from grabnas.models.latent_surrogate import MetaLatentSurrogate

    sur = make_surrogate()
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.sin(z[:, 0])
    kw = dict(adaptation="target", seed=2**63 - 1, integrate=4, hyper_draw=True)
    one = MetaLatentSurrogate(sur, sur.task_embedding().detach(), **kw).fit(z, y).gp
    again = MetaLatentSurrogate(sur, sur.task_embedding().detach(), **kw).fit(z, y).gp
    assert isinstance(one, HyperparameterMixture) and one.num_components == 1
    assert torch.equal(one.thetas, again.thetas)


@pytest.fixture
def multifidelity_gp():
    """``(surrogate, inputs_at(z, f), fitted MultiFidelityTargetGP)``: 12 cells at the low fidelity,
    4 of them at the target one too."""
    from grabnas.models.multifidelity_gp import fit_multifidelity_gp
    from grabnas.models.surrogate import MetaSurrogate
    from grabnas.models.surrogate_config import DTYPE, SurrogateConfig

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, fidelities=("12ep",)))
    z = torch.randn(20, 4, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    with torch.no_grad():
        d = torch.stack([sur.task_embedding(None, "12ep"), sur.task_embedding()])

    def inputs_at(zz, f):
        f = torch.as_tensor(f).expand(zz.shape[0])
        return torch.cat([d[f], zz, f.unsqueeze(-1).to(DTYPE)], -1)

    fid = torch.tensor([0] * 12 + [1] * 4)
    X = torch.cat([inputs_at(z[:12], 0), inputs_at(z[:4], 1)])
    y = torch.cat([60 + 3 * torch.sin(z[:12, 0]), 90 + torch.sin(z[:4, 0]) + z[:4, 1]])
    return sur, inputs_at, z, fit_multifidelity_gp(sur, X, y, fid, 2, seed=0)


def test_the_multifidelity_form_is_gpytorchs(multifidelity_gp):
    """The closed-form log joint of the multi-fidelity GP's scalars (noise, per-fidelity offsets
    and scales, meta factor, cross-fidelity rho, target scale) equals GPyTorch's marginal
    likelihood plus priors (plus the softplus log-Jacobians) at random settings, and its
    posterior at the MAP values is GPyTorch's at both fidelities."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from grabnas.models.scalar_form import MultiFidelityScalarForm, scalar_form

    _, inputs_at, z, gp = multifidelity_gp
    form = scalar_form(gp)
    assert isinstance(form, MultiFidelityScalarForm) and len(form.raw_map) == 8  # noise, 2 + 2 mean, 3 kernel

    def reference() -> torch.Tensor:
        gp.train()
        X, y = gp.train_inputs[0], gp.train_targets
        value = ExactMarginalLogLikelihood(gp.likelihood, gp)(gp(X), y) * y.numel()
        for name, p in form.parameters_of(gp):
            if name.endswith(("raw_noise", "raw_factor", "raw_outputscale")):
                value = value + torch.nn.functional.logsigmoid(p).sum()
        gp.eval()
        return value.detach()

    g = torch.Generator().manual_seed(0)
    raws = form.raw_map + 0.5 * torch.randn(3, len(form.raw_map), generator=g, dtype=form.raw_map.dtype)
    slow = []
    for raw in raws:
        form.assign(gp, raw)
        slow.append(reference())
    form.assign(gp, form.raw_map)
    assert torch.allclose(form.log_joint(raws).detach(), torch.stack(slow), atol=1e-8, rtol=1e-10)
    Xq = torch.cat([inputs_at(z[12:18], 1), inputs_at(z[12:15], 0)])
    parts, _ = form.condition(form.raw_map.unsqueeze(0))
    mean, var = form.predict(parts, Xq, False)
    gp.prediction_strategy = None
    with torch.no_grad():
        post = gp.posterior(Xq)
    assert torch.allclose(mean[0].detach(), post.mean.reshape(-1), atol=1e-10)
    assert torch.allclose(var[0].detach(), post.variance.reshape(-1), atol=1e-10)


def test_a_multifidelity_mixture_widens_the_target_fidelity_and_keeps_its_incumbent(multifidelity_gp):
    """With four target-fidelity observations the integrated model's target-fidelity variance
    is wider than the MAP fit's; the incumbent is the MAP model's best target-fidelity value."""
    _, inputs_at, z, gp = multifidelity_gp
    mix = integrate_hyperparameters(gp, 16, seed=1)
    x = inputs_at(z[12:20], 1).unsqueeze(1)
    with torch.no_grad():
        assert float(mix.posterior(x).variance.mean()) > 1.2 * float(gp.posterior(x).variance.mean())
    assert torch.equal(mix.best_f, gp.best_f)


def test_the_multifidelity_latent_surrogate_integrates_on_request(multifidelity_gp):
    """``integrate=K`` mixes K samples around the MAP fit; its searches' seeds then differ
    (the samples are drawn from the search seed); a bad count is refused in one line."""
    from grabnas.models.latent_surrogate import MultiFidelityLatentSurrogate

    sur, _, z, _ = multifidelity_gp
    with torch.no_grad():
        emb = [sur.task_embedding(None, "12ep"), sur.task_embedding()]
    fid = torch.tensor([0] * 12 + [1] * 4)
    zz = torch.cat([z[:12], z[:4]])
    y = torch.cat([60 + 3 * torch.sin(z[:12, 0]), 90 + torch.sin(z[:4, 0])])
    models = [MultiFidelityLatentSurrogate(sur, emb, seed=s, integrate=8).fit(zz, fid, y) for s in (0, 0, 1)]
    assert all(isinstance(m.gp, HyperparameterMixture) for m in models)
    assert torch.equal(models[0].gp.weights, models[1].gp.weights)
    assert not torch.equal(models[0].gp.thetas, models[2].gp.thetas)
    with torch.no_grad():
        assert models[0].posterior(z[12:14].unsqueeze(1)).mean.shape == (2, 1, 1)
    with pytest.raises(GrabnasError, match="integrate must be 0 \\(the MAP fit\\) or >= 2 samples, got 1"):
        MultiFidelityLatentSurrogate(sur, emb, integrate=1)


def test_a_multifidelity_gp_of_another_form_is_refused(multifidelity_gp):
    from grabnas.models.multifidelity_gp import fit_multifidelity_gp
    from grabnas.models.scalar_form import MultiFidelityScalarForm

    sur, _, _, gp = multifidelity_gp
    X, fid = gp.train_inputs[0], gp.fidelity
    shared = fit_multifidelity_gp(sur, X, torch.arange(len(fid), dtype=X.dtype), fid, 2, shared_residual=True)
    with pytest.raises(GrabnasError, match="needs its default form"):
        MultiFidelityScalarForm(shared)


def test_swap_prior_keeps_the_kernel_scalars_and_refits_the_mean_weight_to_the_new_map(make_surrogate):
    """``swap_prior``: on the same prior the rebuilt GP predicts as the fitted one (the variance
    exactly; the mean up to the MAP fit's tolerance, the weight and offset being solved exactly); on a
    fine-tuned prior it keeps the kernel scalars and the noise (no second fit to the data the map
    saw) and refits only the prior mean's weight and offset, to their exact conditional MAP (the
    log joint density's gradient in them is 0), so its mean follows the fine-tuned map. The mixture
    of integrated-out hyperparameters keeps its weights and each sample's kernel scalars."""
    from scipy.stats import spearmanr

    from grabnas.models.scalar_form import scalar_form
    from grabnas.models.surrogate_config import DTYPE

    sur = make_surrogate()
    z = torch.randn(60, 4, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    X = sur.inputs(z, sur.task_embedding()).detach()
    with torch.no_grad():  # a meta-learned mean of unit spread, as a meta-trained one's
        m = sur.prior().prior_mean(X)
        sur.feature_map.mean_head.weight /= float(m.std())
        sur.feature_map.mean_head.bias -= float(m.mean())
    values = torch.randn(40, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    gp = fit_target_gp(sur, X[:40], values, seed=0)
    assert abs(gp.fitted_hyperparameters["mean_scale"]) < 0.2  # the meta-learned mean says nothing here
    same = swap_prior(gp, sur.prior())
    tuned_prior = sur.finetuned_prior(X[:40], values, 200, 1e-2)
    tuned = swap_prior(gp, tuned_prior)
    with torch.no_grad():
        p0, p1 = gp.posterior(X[40:]), same.posterior(X[40:])
        assert torch.allclose(p0.mean, p1.mean, atol=2e-3) and torch.allclose(p0.variance, p1.variance, atol=1e-8)
        mu_obs = tuned.mean_module(X[:40])
    before, after = gp.fitted_hyperparameters, tuned.fitted_hyperparameters
    for name in ("meta_factor", "target_scale", "noise"):
        assert after[name] == before[name]
    assert after["mean_scale"] > 0.5
    assert spearmanr(mu_obs.numpy(), values.numpy())[0] > 0.7
    form = scalar_form(tuned)
    raw = form.raw_map.clone().unsqueeze(0).requires_grad_(True)
    (grad,) = torch.autograd.grad(form.log_joint(raw).sum(), raw)
    mean_cols = [i for i, n in enumerate(form.names) if n.startswith("mean_module.")]
    assert len(mean_cols) == 2 and grad[0, mean_cols].abs().max() < 1e-6
    mix = integrate_hyperparameters(gp, 8, seed=1)
    moved = swap_prior(mix, tuned_prior)
    other = [i for i in range(mix.thetas.shape[1]) if i not in mean_cols]
    assert torch.equal(moved.weights, mix.weights) and torch.equal(moved.thetas[:, other], mix.thetas[:, other])
    assert (moved.thetas[:, mean_cols[0] if "scale" in form.names[mean_cols[0]] else mean_cols[1]] > 0.5).all()
    with torch.no_grad():
        mu_moved = moved.posterior(X[:40]).mean.reshape(-1)
    assert spearmanr(mu_moved.numpy(), values.numpy())[0] > 0.7
