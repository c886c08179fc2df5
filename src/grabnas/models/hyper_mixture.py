"""The target-adapted GP with its scalar hyperparameters integrated out instead of fitted.

A MAP fit of the target-adapted GP (:class:`~grabnas.models.target_gp.TargetAdaptedGP`) to two to
ten observations picks one setting of five or more hyperparameters that the data hardly
determine, and its 90 % intervals after 5-10 random observations are too narrow (docs/adaptation.md).
:func:`integrate_hyperparameters` replaces the point estimate of the *scalar* hyperparameters
(prior-mean weight and offset, meta-kernel factor, target-kernel output scale, noise; the
lengthscales stay at the MAP fit) by ``k`` importance-weighted samples of their posterior:

* proposal: the Laplace approximation in the unconstrained ("raw") parameters, at the log joint
  density's mode there (a few Newton steps from the MAP fit), a Gaussian with covariance
  ``inflate * H^-1`` (``H``: the negative Hessian of the log joint density, by central differences
  of its gradient; eigenvalues floored so no direction is wider than ``max_sd`` raw units);
* weights: ``p(y, theta) / q(theta)``, the log joint density being the exact marginal likelihood
  plus the hyperparameters' priors plus the log-Jacobian of the raw -> constrained transforms, so
  the weights correct the proposal towards the true posterior;
* prediction: :class:`HyperparameterMixture`, the mixture of the ``k`` GPs, moment-matched to one
  Gaussian (mean ``sum_k w_k mu_k``, covariance ``sum_k w_k (C_k + mu_k mu_k^T) - mu mu^T``), so every
  acquisition, the Thompson draws and the latent ascent (gradients to the inputs) work unchanged.

With few observations the samples spread over the prior, so the mixture's intervals widen where the
hyperparameters are uncertain; with many the posterior is narrow and the mixture is the MAP model.
"""

from __future__ import annotations

import copy
import math

import torch
from botorch.models.model import Model
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.surrogate_config import DTYPE


def scalar_hyperparameters(gp) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of the trainable one-element parameters of ``gp`` other than
    lengthscales: the hyperparameters :func:`integrate_hyperparameters` samples."""
    return [
        (name, p)
        for name, p in gp.named_parameters()
        if p.requires_grad and p.numel() == 1 and "lengthscale" not in name
    ]


def _constraint_of(gp, name: str):
    """The constraint registered for the raw parameter ``name`` (None: unconstrained)."""
    module_name, _, attr = name.rpartition(".")
    module = gp.get_submodule(module_name) if module_name else gp
    return getattr(module, f"{attr}_constraint", None) if attr.startswith("raw_") else None


def log_joint(gp) -> Tensor:
    """``log p(y | theta) + log p(theta) + log |d theta / d raw|`` of the exact GP ``gp`` at its
    current hyperparameters (a scalar with gradients to the raw parameters): the density whose
    samples :func:`integrate_hyperparameters` weighs, in the raw parameters' coordinates."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp.train()
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    X, y = gp.train_inputs[0], gp.train_targets
    value = mll(gp(X), y) * y.numel()  # gpytorch divides by the number of observations
    for name, p in scalar_hyperparameters(gp):
        constraint = _constraint_of(gp, name)
        if constraint is not None and constraint.enforced:  # softplus(raw) + lower bound
            value = value + torch.nn.functional.logsigmoid(p).sum()
    gp.eval()
    return value


def _gradient(gp, params: list[torch.nn.Parameter]) -> tuple[Tensor, Tensor]:
    value = log_joint(gp)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    flat = torch.stack([g.reshape(()) if g is not None else torch.zeros((), dtype=DTYPE) for g in grads])
    return value.detach(), flat.detach()


def _set(params: list[torch.nn.Parameter], theta: Tensor) -> None:
    with torch.no_grad():
        for p, v in zip(params, theta):
            p.copy_(v.reshape(p.shape))


def laplace_proposal(gp, step: float = 1e-3, max_sd: float = 2.0, newton_steps: int = 3) -> tuple[Tensor, Tensor]:
    """``(theta, cov)``: the mode ``(p,)`` of the log joint density in the scalar hyperparameters'
    raw coordinates and the ``(p, p)`` inverse of its negative Hessian there. The MAP fit maximises
    the density of the constrained values, whose mode differs from the raw coordinates' by the
    log-Jacobian, so ``newton_steps`` damped Newton steps go from ``gp``'s current values to the raw
    mode (each step at most ``max_sd`` long; a step that lowers the density is halved). The Hessian
    comes from central differences of the gradient with ``step``; its eigenvalues are floored at
    ``1 / max_sd^2``. ``gp`` is left at its MAP values."""
    params = [p for _, p in scalar_hyperparameters(gp)]
    theta_map = torch.stack([p.detach().reshape(()) for p in params]).to(DTYPE)
    theta = theta_map
    for _ in range(newton_steps):
        value, grad = _gradient(gp, params)
        cov = _inverse_neg_hessian(gp, params, theta, step, max_sd)
        move = cov @ grad
        if float(move.norm()) > max_sd:
            move = move * (max_sd / float(move.norm()))
        for _ in range(5):
            _set(params, theta + move)
            if float(log_joint(gp).detach()) >= float(value):
                theta = theta + move
                break
            move = move / 2
        _set(params, theta)
    cov = _inverse_neg_hessian(gp, params, theta, step, max_sd)
    _set(params, theta_map)
    return theta, cov


def _inverse_neg_hessian(gp, params, theta: Tensor, step: float, max_sd: float) -> Tensor:
    """The ``(p, p)`` inverse of the log joint's negative Hessian at ``theta`` (eigenvalues
    floored at ``1 / max_sd^2``); leaves the parameters at ``theta``."""
    rows = []
    for i in range(len(params)):
        shift = torch.zeros_like(theta)
        shift[i] = step
        _set(params, theta + shift)
        g_plus = _gradient(gp, params)[1]
        _set(params, theta - shift)
        g_minus = _gradient(gp, params)[1]
        rows.append((g_plus - g_minus) / (2 * step))
    _set(params, theta)
    neg_hessian = -torch.stack(rows)
    neg_hessian = 0.5 * (neg_hessian + neg_hessian.T)
    evals, evecs = torch.linalg.eigh(neg_hessian)
    evals = evals.clamp_min(1.0 / max_sd**2)
    return evecs @ torch.diag(1.0 / evals) @ evecs.T


class HyperparameterMixture(Model):
    """A weighted mixture of GPs that differ in their scalar hyperparameters, predicting with one
    moment-matched Gaussian. Everything else (``best_f``, ``transform_values``, ``units``,
    ``fit_state``, ``fitted_hyperparameters``, the training data) is the MAP model's.

    Args:
        map_model: the MAP-fitted target-adapted GP.
        components: ``k`` copies of it with other hyperparameters.
        weights: ``(k,)`` non-negative weights summing to 1.
    """

    _num_outputs = 1

    def __init__(self, map_model, components: list, weights: Tensor) -> None:
        super().__init__()
        if len(components) != len(weights) or not components:
            raise GrabnasError(
                f"a mixture needs as many weights as components, got {len(weights)} and {len(components)}"
            )
        self._parts = {"map": map_model, "components": list(components)}  # not registered: no parameters to fit
        self.weights = weights.to(DTYPE).detach()

    @property
    def map_model(self):
        return self._parts["map"]

    @property
    def components(self) -> list:
        return self._parts["components"]

    @property
    def effective_sample_size(self) -> float:
        """``1 / sum_k w_k^2``: how many equally weighted samples the mixture is worth."""
        return float(1.0 / (self.weights**2).sum())

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return self.map_model.batch_shape

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._parts["map"], name)

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        """The moment-matched mixture posterior at ``(..., q, D)`` inputs: the full ``q x q``
        covariance for ``2 <= q <= 256`` (joint acquisitions, Thompson draws), marginal variances
        otherwise (``q = 1``: how analytic acquisitions score a pool; ``q > 256``: a large set's
        marginals, as :func:`grabnas.models.value_maps.predict` reads them, without forming
        ``k`` dense ``q x q`` matrices)."""
        from botorch.posteriors.gpytorch import GPyTorchPosterior
        from gpytorch.distributions import MultivariateNormal
        from linear_operator.operators import DiagLinearOperator

        posts = [c.posterior(X, observation_noise=observation_noise) for c in self.components]
        w = self.weights
        means = torch.stack([p.mean.squeeze(-1) for p in posts])  # (k, ..., q)
        shape = (-1,) + (1,) * (means.dim() - 1)
        mean = (w.reshape(shape) * means).sum(0)
        if X.shape[-2] == 1 or X.shape[-2] > 256:
            second = torch.stack([p.variance.squeeze(-1) for p in posts]) + means**2
            var = ((w.reshape(shape) * second).sum(0) - mean**2).clamp_min(1e-12)
            dist = MultivariateNormal(mean, DiagLinearOperator(var))
        else:
            covs = torch.stack([p.distribution.covariance_matrix for p in posts])  # (k, ..., q, q)
            outer = means.unsqueeze(-1) * means.unsqueeze(-2)
            w2 = w.reshape(shape + (1,))
            cov = (w2 * (covs + outer)).sum(0) - mean.unsqueeze(-1) * mean.unsqueeze(-2)
            cov = 0.5 * (cov + cov.transpose(-1, -2))
            dist = MultivariateNormal(mean, cov)
        post = GPyTorchPosterior(dist)
        return posterior_transform(post, X=X) if posterior_transform is not None else post


def integrate_hyperparameters(
    gp, num_samples: int, seed: int, inflate: float = 2.0, max_sd: float = 2.0
) -> HyperparameterMixture:
    """``gp`` (a MAP-fitted :class:`~grabnas.models.target_gp.TargetAdaptedGP`) with its scalar
    hyperparameters integrated out by ``num_samples`` importance-weighted draws from its Laplace
    proposal (covariance times ``inflate``), drawn from a generator seeded with ``seed`` (no global
    RNG). See the module docstring."""
    if num_samples < 2:
        raise GrabnasError(f"integrating the hyperparameters needs at least 2 samples, got {num_samples}")
    params = scalar_hyperparameters(gp)
    theta_mode, cov = laplace_proposal(gp, max_sd=max_sd)
    proposal = torch.distributions.MultivariateNormal(theta_mode, covariance_matrix=inflate * cov)
    gen = torch.Generator().manual_seed(int(seed) % 2**63)
    eps = torch.randn(num_samples, len(params), dtype=DTYPE, generator=gen)
    thetas = theta_mode + eps @ torch.linalg.cholesky(inflate * cov).T
    components, log_w = [], []
    for theta in thetas:
        part = copy.deepcopy(gp)
        part_params = [p for _, p in scalar_hyperparameters(part)]
        _set(part_params, theta)
        with torch.no_grad():
            lj = float(log_joint(part))
        part.prediction_strategy = None
        if not math.isfinite(lj):
            continue
        components.append(part)
        log_w.append(lj - float(proposal.log_prob(theta)))
    if not components:
        return HyperparameterMixture(gp, [gp], torch.ones(1, dtype=DTYPE))
    log_w_t = torch.tensor(log_w, dtype=DTYPE)
    weights = torch.softmax(log_w_t, 0)
    return HyperparameterMixture(gp, components, weights)


__all__ = [
    "HyperparameterMixture",
    "integrate_hyperparameters",
    "laplace_proposal",
    "log_joint",
    "scalar_hyperparameters",
]
