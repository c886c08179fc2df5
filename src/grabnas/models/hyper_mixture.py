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

Densities and predictions come from :class:`~grabnas.models.scalar_form.ScalarForm`: the unit
kernels are evaluated once for all ``k`` samples, so a mixture costs about one GP prediction plus
``k`` small ``n x n`` solves (it used to be ``k`` GPyTorch models: 2.9 x GP-BO's time per iteration).
"""

from __future__ import annotations

import copy

import torch
from botorch.models.model import Model
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.scalar_form import ScalarForm, scalar_form, scalar_hyperparameters
from grabnas.models.surrogate_config import DTYPE

#: joint covariances up to this many points (Thompson draws, q-batch acquisitions); marginals above
_MAX_JOINT = 256


def laplace_proposal(
    form: ScalarForm, step: float = 1e-3, max_sd: float = 2.0, newton_steps: int = 3
) -> tuple[Tensor, Tensor]:
    """``(theta, cov)``: the mode ``(p,)`` of the log joint density in the scalar hyperparameters'
    raw coordinates and the ``(p, p)`` inverse of its negative Hessian there. The MAP fit maximises
    the density of the constrained values, whose mode differs from the raw coordinates' by the
    log-Jacobian, so ``newton_steps`` damped Newton steps go from the MAP values to the raw mode
    (each step at most ``max_sd`` long; a step that lowers the density is halved). The Hessian
    comes from central differences (``step``) of the autograd gradient, all ``2p`` of them in one
    batched evaluation; its eigenvalues are floored at ``1 / max_sd^2``."""
    theta = form.raw_map.clone()
    for _ in range(newton_steps):
        value, grad = _values_and_gradients(form, theta.unsqueeze(0))
        move = _inverse_neg_hessian(form, theta, step, max_sd) @ grad[0]
        if float(move.norm()) > max_sd:
            move = move * (max_sd / float(move.norm()))
        with torch.no_grad():  # the halvings of the step, in one batch: the longest that does not lower the density
            trials = theta + move * (0.5 ** torch.arange(5, dtype=DTYPE)).unsqueeze(-1)
            better = (form.log_joint(trials) >= value[0]).nonzero()
        if len(better):
            theta = trials[int(better[0])]
    return theta, _inverse_neg_hessian(form, theta, step, max_sd)


def _values_and_gradients(form: ScalarForm, raw: Tensor) -> tuple[Tensor, Tensor]:
    """``(K,)`` log joint densities of ``(K, p)`` raw settings and their ``(K, p)`` gradients (the
    settings are independent, so one backward pass of the sum gives every row's gradient)."""
    raw = raw.detach().clone().requires_grad_(True)
    values = form.log_joint(raw)
    (grads,) = torch.autograd.grad(values.sum(), raw)
    return values.detach(), grads


def _inverse_neg_hessian(form: ScalarForm, theta: Tensor, step: float, max_sd: float) -> Tensor:
    """The ``(p, p)`` inverse of the log joint's negative Hessian at ``theta`` (eigenvalues floored
    at ``1 / max_sd^2``)."""
    shifts = step * torch.eye(len(theta), dtype=DTYPE)
    _, grads = _values_and_gradients(form, torch.cat([theta + shifts, theta - shifts]))
    neg_hessian = -(grads[: len(theta)] - grads[len(theta) :]) / (2 * step)
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
        form: ``map_model`` as a function of its scalar hyperparameters.
        thetas: ``(k, p)`` raw scalar hyperparameters of the ``k`` components.
        weights: ``(k,)`` non-negative weights summing to 1.
    """

    _num_outputs = 1

    def __init__(self, map_model, form: ScalarForm, thetas: Tensor, weights: Tensor) -> None:
        super().__init__()
        if thetas.dim() != 2 or len(thetas) != len(weights) or not len(weights):
            raise GrabnasError(
                f"a mixture needs (k, p) hyperparameters and k weights, got {tuple(thetas.shape)} and {len(weights)}"
            )
        self._parts = {"map": map_model, "form": form}  # not registered: no parameters to fit
        self.thetas = thetas.to(DTYPE).detach()
        self.weights = weights.to(DTYPE).detach()
        with torch.no_grad():
            self._conditioned = form.condition(self.thetas)[0]

    @property
    def map_model(self):
        return self._parts["map"]

    @property
    def num_components(self) -> int:
        return len(self.weights)

    def component(self, i: int):
        """A copy of the MAP model with the ``i``-th component's hyperparameters (a GPyTorch
        model of its own: for inspection and tests; predictions never build one)."""
        part = copy.deepcopy(self.map_model)
        self._parts["form"].assign(part, self.thetas[i])
        part.prediction_strategy = None
        return part

    def draw(self, generator: torch.Generator) -> HyperparameterMixture:
        """One component, drawn with probability equal to its weight, as a one-component mixture
        (Thompson sampling over the hyperparameters: a search that acts on it varies with the
        draw as much as the hyperparameters are uncertain)."""
        i = int(torch.multinomial(self.weights, 1, generator=generator))
        return HyperparameterMixture(self.map_model, self._parts["form"], self.thetas[i : i + 1], torch.ones(1))

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
        otherwise (``q = 1``: how analytic acquisitions score a pool, computed as one set of
        marginals; ``q > 256``: a large set's marginals, as :func:`grabnas.models.value_maps.predict`
        reads them, without forming dense ``q x q`` matrices)."""
        from botorch.posteriors.gpytorch import GPyTorchPosterior
        from gpytorch.distributions import MultivariateNormal
        from linear_operator.operators import DiagLinearOperator

        noise = bool(observation_noise)
        q = X.shape[-2]
        full = 2 <= q <= _MAX_JOINT
        flat = X.reshape(-1, X.shape[-1]) if q == 1 else X  # (b, 1, D) -> (b, D) marginals
        means, second = self._parts["form"].predict(self._conditioned, flat, full, observation_noise=noise)
        w = self.weights.reshape((-1,) + (1,) * (means.dim() - 1))
        mean = (w * means).sum(0)
        if full:
            outer = means.unsqueeze(-1) * means.unsqueeze(-2)
            cov = (w.unsqueeze(-1) * (second + outer)).sum(0) - mean.unsqueeze(-1) * mean.unsqueeze(-2)
            dist = MultivariateNormal(mean, 0.5 * (cov + cov.transpose(-1, -2)))
        else:
            var = ((w * (second + means**2)).sum(0) - mean**2).clamp_min(1e-12)
            if q == 1:
                mean, var = mean.reshape(X.shape[:-1]), var.reshape(X.shape[:-1])
            dist = MultivariateNormal(mean, DiagLinearOperator(var))
        post = GPyTorchPosterior(dist)
        return posterior_transform(post, X=X) if posterior_transform is not None else post


def integrate_hyperparameters(
    gp, num_samples: int, seed: int, inflate: float = 2.0, max_sd: float = 2.0
) -> HyperparameterMixture:
    """``gp`` (a MAP-fitted :class:`~grabnas.models.target_gp.TargetAdaptedGP`, or a
    :class:`~grabnas.models.multifidelity_gp.MultiFidelityTargetGP`) with its scalar hyperparameters
    integrated out by ``num_samples`` importance-weighted draws from its Laplace proposal
    (covariance times ``inflate``), drawn from a generator seeded with ``seed`` (no global RNG).
    See the module docstring."""
    if num_samples < 2:
        raise GrabnasError(f"integrating the hyperparameters needs at least 2 samples, got {num_samples}")
    form = scalar_form(gp)
    theta_mode, cov = laplace_proposal(form, max_sd=max_sd)
    proposal = torch.distributions.MultivariateNormal(theta_mode, covariance_matrix=inflate * cov)
    gen = torch.Generator().manual_seed(int(seed) % 2**63)
    eps = torch.randn(num_samples, len(theta_mode), dtype=DTYPE, generator=gen)
    thetas = theta_mode + eps @ torch.linalg.cholesky(inflate * cov).T
    with torch.no_grad():
        log_joint = form.log_joint(thetas)
    finite = torch.isfinite(log_joint)
    if not bool(finite.any()):
        return HyperparameterMixture(gp, form, form.raw_map.unsqueeze(0), torch.ones(1, dtype=DTYPE))
    thetas = thetas[finite]
    weights = torch.softmax(log_joint[finite] - proposal.log_prob(thetas), 0)
    return HyperparameterMixture(gp, form, thetas, weights)


def swap_prior(model, prior):
    """A fitted :class:`~grabnas.models.target_gp.TargetAdaptedGP`, or a
    :class:`HyperparameterMixture` of them, rebuilt on another frozen meta-learned ``prior``, e.g.
    one whose feature map was fine-tuned to the observations
    (:meth:`~grabnas.models.surrogate.MetaSurrogate.finetuned_prior`). The kernel scalars, the noise,
    the lengthscales and a mixture's samples and weights are kept (no second fit to the data a
    fine-tuned map was fitted to); the prior mean's weight and offset, which belong to the mean they
    multiply, are refitted to the new mean, for every sample given its other scalars
    (:meth:`~grabnas.models.scalar_form.ScalarForm.refit_mean`)."""
    mixture = isinstance(model, HyperparameterMixture)
    gp = (model.map_model if mixture else model).with_prior(prior)
    form = scalar_form(gp)  # one form (the new mean and kernels at the training inputs) for both refits
    form.raw_map = form.refit_mean(form.raw_map.unsqueeze(0))[0]
    form.assign(gp, form.raw_map)
    gp._fitted_state = {k: v.detach().clone() for k, v in gp.state_dict().items()}
    if not mixture:
        return gp
    return HyperparameterMixture(gp, form, form.refit_mean(model.thetas), model.weights)


__all__ = [
    "HyperparameterMixture",
    "integrate_hyperparameters",
    "laplace_proposal",
    "scalar_hyperparameters",
    "swap_prior",
]
