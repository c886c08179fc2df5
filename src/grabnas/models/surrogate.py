"""Deep-kernel GP surrogate over ``X = concat[d, z]`` (task embedding, architecture latent).

* :class:`FeatureMap` — an MLP on ``[d, z]`` with two heads: a scalar *learned mean* ``m(x)``
  and kernel features ``phi(x)``.
* :class:`DeepKernelGP` — a GPyTorch ``ExactGP`` exposed as a BoTorch model
  (``GPyTorchModel``, one output): ``f(x) ~ GP(offset + scale * m(x), k(phi(x), phi(x')))``
  with ``k = ScaleKernel(Matern 5/2)`` (or RBF) and a Gaussian likelihood. Every BoTorch
  acquisition works on it unchanged, and it is differentiable w.r.t. ``X`` (so w.r.t. ``z``).
* :class:`MetaSurrogate` — what meta-training produces and a checkpoint holds: the task encoder
  (learned "no data" embedding, fidelity offsets, optional dataset encoder), the feature map
  and the meta-learned kernel/likelihood hyperparameters. :meth:`MetaSurrogate.fit` conditions
  it on a target task's observations and returns a :class:`DeepKernelGP`.

Units. Values are standardised per task (``SurrogateConfig.value_transform``):

* ``rank-gauss`` (default): normal scores ``Phi^-1((rank - 1/2) / n)`` of the task's values (a
  Gaussian copula, as in Salinas et al. 2020). During meta-training each task's scores come from
  all its records; on a target from its observations, mapped into the task's score units by the
  adaptation below. Predictions are in those units (``units = "rank-gauss"``); ``best_f`` and
  ``transform_values`` map raw values to them. On NB201 (long lower tails) this gave a far better
  learned mean within the top 10 % than ``(y - mean) / std``.
* ``standardize``: ``(y - mean) / std``; on a target through BoTorch's ``Standardize`` outcome
  transform, so posteriors come back in the raw units (``units = "observed"``).

With fewer than two observations the model is the zero-shot prior: the learned mean and the
prior variance, in standardised units (``units = "prior"``).

Adaptation (:meth:`MetaSurrogate.fit`) is closed-form by default: the observations' scores are
mapped by a ridge-regularised affine fit to the learned mean (which removes the shift and stretch
an unlucky sample gives every score), the score error variance is added to their noise, and the
GP conditions on them; optional Adam steps of the exact marginal likelihood refine the mean's
``(scale, offset)``, the output scale and the noise (and, on a copy, the feature map).

Speed. ``posterior`` keeps the test-test kernel lazy and computes ``(b, 1, D)`` candidate batches
as one set, so a 15,625-architecture pool costs one pass of the feature map plus an
``O(N n)`` cross-covariance (about 0.15-0.25 s with 20-50 observations on one busy CPU core).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from grabnas.errors import GrabnasError
from grabnas.models.feature_cache import RowCache

try:  # heavy, but this module is only imported where the surrogate is used
    import gpytorch
    from botorch.models.gpytorch import GPyTorchModel
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.constraints import GreaterThan, Interval
    from gpytorch.distributions import MultivariateNormal
    from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.models import ExactGP
except ImportError as e:  # pragma: no cover - both are hard dependencies
    raise ImportError(f"the surrogate needs gpytorch and botorch ({e})") from None

DTYPE = torch.float64
KERNELS = ("matern52", "matern32", "rbf")
VALUE_TRANSFORMS = ("rank-gauss", "standardize")


@dataclass(frozen=True)
class SurrogateConfig:
    """Sizes and choices of the surrogate.

    Attributes:
        latent_dim: size of the architecture latent ``z`` (the VAE's).
        task_dim: size of the task embedding ``d``.
        hidden_dim: width of the feature MLP.
        num_layers: hidden layers of the feature MLP.
        feature_dim: size of the kernel features ``phi``.
        kernel: ``matern52`` (default), ``matern32`` or ``rbf`` on ``phi``.
        learned_mean: use the meta-learned mean head (else a constant mean, ``m = 0``).
        value_transform: per-task standardisation of values: ``rank-gauss`` (default; normal
            scores ``Phi^-1((rank - 1/2) / n)`` of the task's values, a Gaussian copula) or
            ``standardize`` (``(y - mean) / std``).
        fidelities: fidelity labels seen in meta-training (each gets a learned offset of ``d``;
            the main fidelity, ``None``, has none).
        dataset_encoder: whether the task encoder has a Set-Transformer dataset encoder.
        instance_dim: size of the instance features the dataset encoder reads.
        encoder_dim: width of the dataset encoder.
        task_offsets: names of the meta-training tasks that get a learned offset of ``d`` of
            their own (empty: tasks of one fidelity without data share ``d``). A new task's
            embedding can then be inferred from its observations as a mixture of these tasks'
            (the task term of :class:`DeepKernelGP`).
        new_task_variance_scale: ``((n, f), ...)``, by increasing number of observations ``n``:
            the factor ``f`` on the prior covariance (output scale, noise and task-term
            variance) of a task meta-training did not see, when ``n`` of its values are known
            (linear in between, constant beyond the ends; see :meth:`variance_scale_at`).
            Meta-training fits it on the training tasks, each left out in turn or, without
            per-task offsets, in-sample
            (:func:`grabnas.meta.surrogate_training.calibrate_new_task_variance`); empty: 1,
            the meta-learned variances as they are.
    """

    latent_dim: int = 16
    task_dim: int = 8
    hidden_dim: int = 256
    num_layers: int = 2
    feature_dim: int = 16
    kernel: str = "matern52"
    learned_mean: bool = True
    value_transform: str = "rank-gauss"
    fidelities: tuple[str, ...] = ()
    dataset_encoder: bool = False
    instance_dim: int = 64
    encoder_dim: int = 64
    task_offsets: tuple[str, ...] = ()
    new_task_variance_scale: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            table = tuple(sorted((int(n), float(f)) for n, f in self.new_task_variance_scale))
        except (TypeError, ValueError):
            raise GrabnasError(
                f"new_task_variance_scale must be pairs (number of observations, factor), got {self.new_task_variance_scale!r}"
            ) from None
        if any(n < 0 or not (math.isfinite(f) and f > 0) for n, f in table):
            raise GrabnasError(
                f"new_task_variance_scale needs observation counts >= 0 and positive factors, got {table}"
            )
        object.__setattr__(self, "new_task_variance_scale", table)
        if self.value_transform not in VALUE_TRANSFORMS:
            raise GrabnasError(
                f"unknown value transform {self.value_transform!r}; expected one of {', '.join(VALUE_TRANSFORMS)}"
            )
        if self.kernel not in KERNELS:
            raise GrabnasError(f"unknown surrogate kernel {self.kernel!r}; expected one of {', '.join(KERNELS)}")
        for name in ("latent_dim", "task_dim", "hidden_dim", "feature_dim", "instance_dim", "encoder_dim"):
            if int(getattr(self, name)) < 1:
                raise GrabnasError(f"surrogate {name} must be a positive integer, got {getattr(self, name)}")
        object.__setattr__(self, "fidelities", tuple(str(f) for f in self.fidelities))
        object.__setattr__(self, "task_offsets", tuple(str(t) for t in self.task_offsets))

    def variance_scale_at(self, n: int) -> float:
        """The new-task variance factor with ``n`` observations (1 without a table)."""
        table = self.new_task_variance_scale
        if not table:
            return 1.0
        if n <= table[0][0]:
            return table[0][1]
        for (n0, f0), (n1, f1) in zip(table, table[1:]):
            if n <= n1:
                return f0 + (f1 - f0) * (n - n0) / (n1 - n0)
        return table[-1][1]

    @property
    def input_dim(self) -> int:
        """Width of ``X = concat[d, z]``."""
        return self.task_dim + self.latent_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fidelities"] = list(self.fidelities)
        d["task_offsets"] = list(self.task_offsets)
        d["new_task_variance_scale"] = [list(p) for p in self.new_task_variance_scale]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SurrogateConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for key in ("fidelities", "task_offsets"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "new_task_variance_scale" in kw:
            kw["new_task_variance_scale"] = tuple(tuple(p) for p in kw["new_task_variance_scale"])
        return cls(**kw)


class FeatureMap(nn.Module):
    """``[d, z] -> (m(x), phi(x))``: an MLP trunk with a scalar mean head and a feature head.

    The MLP computes in float32 (its parameters stay float32); inputs are cast to it and both
    outputs are cast back to the input's dtype, so the GP around it works in float64 and
    gradients flow to the inputs.

    With :meth:`enable_cache`, float64 inputs evaluated without gradients (how a search scores
    its pool every iteration) are served from a :class:`~grabnas.models.feature_cache.RowCache`
    by row; any change of the weights empties it.
    """

    def __init__(self, config: SurrogateConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.input_dim
        for _ in range(max(config.num_layers, 1)):
            layers += [nn.Linear(width, config.hidden_dim), nn.SiLU()]
            width = config.hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.mean_head = nn.Linear(width, 1)
        self.feature_head = nn.Linear(width, config.feature_dim)
        self.learned_mean = config.learned_mean
        #: outputs by input row, for no-gradient calls (None: off; see :meth:`enable_cache`)
        self.cache: RowCache | None = None

    def enable_cache(self, max_rows: int = 2_000_000) -> None:
        """Serve repeated no-gradient float64 inputs from a row cache (idempotent)."""
        if self.cache is None:
            self.cache = RowCache(max_rows)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(..., D)`` inputs -> mean ``(...)`` and features ``(..., feature_dim)``."""
        if self.cache is not None and not torch.is_grad_enabled() and x.dtype == torch.float64 and x.numel():
            version = tuple((id(p), p._version) for p in self.parameters())
            out = self.cache.lookup(x.reshape(-1, x.shape[-1]), self._stacked, version)
            return out[:, 0].reshape(x.shape[:-1]), out[:, 1:].reshape(*x.shape[:-1], -1)
        return self._compute(x)

    def _compute(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x.to(self.mean_head.weight.dtype))
        m = self.mean_head(h).squeeze(-1).to(x.dtype) if self.learned_mean else x.new_zeros(x.shape[:-1])
        return m, self.feature_head(h).to(x.dtype)

    def _stacked(self, rows: Tensor) -> Tensor:
        m, phi = self._compute(rows)
        return torch.cat([m.unsqueeze(-1), phi], -1)


def _make_kernel(name: str) -> ScaleKernel:
    if name == "rbf":
        base = RBFKernel(lengthscale_constraint=GreaterThan(1e-3))
    else:
        base = MaternKernel(nu=2.5 if name == "matern52" else 1.5, lengthscale_constraint=GreaterThan(1e-3))
    return ScaleKernel(base, outputscale_constraint=GreaterThan(1e-5))


def _make_likelihood() -> GaussianLikelihood:
    return GaussianLikelihood(noise_constraint=Interval(1e-5, 10.0))


class DeepKernelGP(ExactGP, GPyTorchModel):
    """An exact GP on learned features, as a single-output BoTorch model.

    ``f(x) ~ GP(mean_offset + mean_scale * m(x), covar_module(phi(x)) + s^2 D(x) D(x')')`` with
    ``(m, phi) = feature_map(x)`` and ``x = concat[d, z]``. The second, low-rank term (only with
    :attr:`task_embeddings`) is the task term: ``D(x)`` holds, for K meta-training tasks, how
    their learned mean differs from that of the input's task, ``D_k(x) = mean_scale *
    (m(concat[e_k, z]) - m(x))``. It is the marginal of ``f = m + sum_k w_k D_k + g`` with
    ``w ~ N(0, s^2 I)``: a new task is some unknown mixture of the known ones, which widens the
    prior where they disagree and lets observations infer the mixture in closed form
    (:meth:`task_weights`).

    Args:
        feature_map: the :class:`FeatureMap` (shared, not copied).
        train_X: ``(n, D)`` inputs or None (no observations: the prior).
        train_Y: ``(n, 1)`` targets in the model's units (already standardised), or None.
        kernel: ``matern52``, ``matern32`` or ``rbf``.
        likelihood: a ``GaussianLikelihood`` (default: a fresh one).
        outcome_transform: a *trained* BoTorch outcome transform mapping raw values to the
            model's units (posteriors are untransformed through it); None keeps model units.
        covar_module: a kernel on ``phi`` to use (shared, not copied); default a fresh one.
    """

    _num_outputs = 1

    def __init__(
        self,
        feature_map: FeatureMap,
        train_X: Tensor | None = None,
        train_Y: Tensor | None = None,
        kernel: str = "matern52",
        likelihood: GaussianLikelihood | None = None,
        outcome_transform: Standardize | None = None,
        covar_module: ScaleKernel | None = None,
    ) -> None:
        if (train_X is None) != (train_Y is None):
            raise GrabnasError("DeepKernelGP needs both train_X and train_Y, or neither")
        if train_Y is not None:
            self._validate_tensor_args(train_X, train_Y)
            train_Y = train_Y.squeeze(-1)
        super().__init__(train_X, train_Y, likelihood if likelihood is not None else _make_likelihood())
        self.feature_map = feature_map
        self.covar_module = covar_module if covar_module is not None else _make_kernel(kernel)
        self.mean_scale = nn.Parameter(torch.ones((), dtype=DTYPE))
        self.mean_offset = nn.Parameter(torch.zeros((), dtype=DTYPE))
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        #: ``"prior"`` (standardised prior units), ``"observed"`` (raw units, through the
        #: outcome transform) or ``"rank-gauss"`` (normal scores of the observations)
        self.units = "observed" if outcome_transform is not None else "prior"
        #: raw values -> model units for the rank-gauss units (see :class:`RankGaussMap`)
        self.value_map: RankGaussMap | None = None
        #: noise variance of a new evaluation when it differs from the training points' (None:
        #: the likelihood's); ``posterior(X, observation_noise=True)`` adds it
        self.prediction_noise: Tensor | None = None
        #: ``(K, task_dim)`` embeddings of meta-training tasks whose differences from the
        #: input's own task span the task term of the kernel (None: no task term); see
        #: :meth:`task_directions`
        self.task_embeddings: Tensor | None = None
        #: prior variance ``s^2`` of the weights of the task term
        self.task_prior_var: float = 0.0
        #: names of the rows of :attr:`task_embeddings`
        self.task_names: list[str] = []
        for module in (self.covar_module, self.likelihood):
            module.to(DTYPE)

    @property
    def best_f(self) -> Tensor:
        """The best observed value in the units the posterior is in (``best_f`` of EI-type
        acquisitions): the raw maximum (``observed`` units) or its value in the task's
        normal-score units (``rank-gauss``)."""
        if self.num_train == 0:
            raise GrabnasError(
                "the zero-shot model has no observations, hence no best value; use UCB or the posterior mean"
            )
        if self.units == "observed":
            return self.outcome_transform.untransform(self.train_targets.max().reshape(1, 1))[0].squeeze()
        return self.train_targets.max()

    def transform_values(self, y: Tensor) -> Tensor:
        """Raw values -> the posterior's units (identity in ``observed`` units)."""
        y = torch.as_tensor(y, dtype=DTYPE)
        if self.units == "rank-gauss" and self.value_map is not None:
            return self.value_map(y)
        if self.units == "prior":
            raise GrabnasError(
                "the zero-shot model predicts in standardised prior units; raw values cannot be mapped to them"
            )
        return y

    @property
    def num_train(self) -> int:
        return 0 if self.train_inputs is None else int(self.train_inputs[0].shape[-2])

    @property
    def batch_shape(self) -> torch.Size:
        if self.train_inputs is None:
            return torch.Size()
        return self.train_inputs[0].shape[:-2]

    def prior_mean(self, x: Tensor) -> Tensor:
        m, _ = self.feature_map(x)
        return self.mean_offset + self.mean_scale * m

    def task_directions(self, x: Tensor, m: Tensor | None = None) -> Tensor | None:
        """``(..., n, K)`` differences ``D_k(x)`` of the K task embeddings' learned means from
        the inputs' own (``(..., n, D)`` inputs; ``m``: their ``(..., n)`` raw learned mean when
        at hand), scaled by ``mean_scale``; None without a task term."""
        if self.task_embeddings is None or self.task_prior_var <= 0:
            return None
        e = self.task_embeddings.to(x.dtype)  # (K, task_dim)
        k, t = e.shape
        if m is None:
            m, _ = self.feature_map(x)
        xk = x.unsqueeze(0).expand(k, *x.shape).clone()
        xk[..., :t] = e.reshape(k, *([1] * (x.dim() - 1)), t).expand(k, *x.shape[:-1], t)
        mk, _ = self.feature_map(xk)  # (K, ..., n)
        return self.mean_scale * (mk - m.unsqueeze(0)).movedim(0, -1)

    def _covar(self, phi: Tensor, dirs: Tensor | None, phi2: Tensor | None = None, dirs2: Tensor | None = None):
        """Kernel between two sets (one set when ``phi2`` is None, kept lazy), task term included."""
        if phi2 is None:
            base = self.covar_module(phi)
            if dirs is None:
                return base
            from linear_operator.operators import RootLinearOperator, SumLinearOperator

            # an explicit sum: ``base + root`` would take linear_operator's low-rank-update path,
            # which evaluates the whole n x n matrix
            return SumLinearOperator(base, RootLinearOperator(dirs * self.task_prior_var**0.5))
        base = self.covar_module(phi, phi2).to_dense()
        if dirs is None:
            return base
        return base + self.task_prior_var * dirs @ dirs2.transpose(-1, -2)

    def prior_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prior mean ``(n,)`` and covariance ``(n, n)`` of noisy observations at ``(n, D)``
        inputs (kernel, task term included, plus the likelihood's noise)."""
        m, phi = self.feature_map(x)
        cov = self._covar(phi, self.task_directions(x, m)).to_dense()
        cov = cov + self.likelihood.noise * torch.eye(x.shape[-2], dtype=DTYPE)
        return self.mean_offset + self.mean_scale * m, cov

    def task_weights(self) -> Tensor | None:
        """``(K,)`` posterior mean of the task term's weights given the training data (how much
        of each meta-training task's difference the observations call for); None without a task
        term or observations."""
        if self.num_train == 0 or self.task_embeddings is None or self.task_prior_var <= 0:
            return None
        with torch.no_grad():
            x, y = self.train_inputs[0], self.train_targets
            m, phi = self.feature_map(x)
            dirs = self.task_directions(x, m)
            cov = self._covar(phi, dirs).to_dense() + self.likelihood.noise * torch.eye(len(y), dtype=DTYPE)
            resid = y - (self.mean_offset + self.mean_scale * m)
            alpha = torch.cholesky_solve(resid.unsqueeze(-1), _safe_cholesky(cov))
            return self.task_prior_var * (dirs.transpose(-1, -2) @ alpha).squeeze(-1)

    def forward(self, x: Tensor) -> MultivariateNormal:
        m, phi = self.feature_map(x)
        return MultivariateNormal(self.mean_offset + self.mean_scale * m, self._covar(phi, self.task_directions(x, m)))

    def posterior(self, X: Tensor, observation_noise: bool | Tensor = False, posterior_transform=None, **kwargs):
        """BoTorch's ``GPyTorchModel.posterior``, with two shortcuts that give the same numbers.

        * ``(b, 1, D)`` inputs (how analytic acquisitions score b candidates) are computed as one
          ``(b, D)`` set and returned as b independent one-point posteriors, instead of b
          batched GP predictions;
        * large sets keep the test-test kernel lazy, so only its diagonal is ever computed
          unless a joint covariance is asked for.

        ``observation_noise=True`` adds ``prediction_noise`` when set (the noise of a new
        evaluation, when the training points carry extra noise of their own), else the
        likelihood's noise.
        """
        if X.dim() >= 3 and X.shape[-2] == 1 and X[..., 0, 0].numel() > 1 and not isinstance(observation_noise, Tensor):
            from botorch.posteriors.gpytorch import GPyTorchPosterior
            from linear_operator.operators import DiagLinearOperator

            flat = self.posterior(X.reshape(-1, X.shape[-1]), observation_noise=observation_noise, **kwargs)
            mean = flat.mean.reshape(*X.shape[:-1])
            var = flat.variance.reshape(*X.shape[:-1])
            post = GPyTorchPosterior(MultivariateNormal(mean, DiagLinearOperator(var)))
            return posterior_transform(post, X=X) if posterior_transform is not None else post
        eager = gpytorch.settings.max_eager_kernel_size.value() if X.shape[-2] <= 256 else 0
        with gpytorch.settings.max_eager_kernel_size(eager):
            if self.prediction_noise is None or observation_noise is not True or hasattr(self, "outcome_transform"):
                return super().posterior(
                    X, observation_noise=observation_noise, posterior_transform=posterior_transform, **kwargs
                )
            from botorch.posteriors.gpytorch import GPyTorchPosterior

            mvn = super().posterior(X, observation_noise=False, **kwargs).distribution
            noise = self.prediction_noise.to(mvn.mean).expand(mvn.mean.shape)
            post = GPyTorchPosterior(MultivariateNormal(mvn.mean, mvn.lazy_covariance_matrix.add_diagonal(noise)))
            return posterior_transform(post, X=X) if posterior_transform is not None else post

    def _get_test_prior_mean_and_covariances(self, train_inputs, test_inputs, **kwargs):
        """GPyTorch's hook for the test-set prior (see ``ExactGP``), overridden for speed only.

        The default concatenates train and test inputs, runs the feature map on both and
        evaluates the full ``q x q`` test kernel. Here the feature map runs on the train and the
        test inputs separately (no expansion of the train set over test batches) and the
        ``q x q`` test kernel stays lazy, so a marginal variance over a large pool costs
        ``O(q n)``. The numbers are the same as the default's.
        """
        (x_train,), (x_test,) = tuple(train_inputs), tuple(test_inputs)
        batch_shape = torch.broadcast_shapes(x_train.shape[:-2], x_test.shape[:-2])
        m_test, phi_test = self.feature_map(x_test)
        m_train, phi_train = self.feature_map(x_train)
        test_mean = (self.mean_offset + self.mean_scale * m_test).expand(*batch_shape, x_test.shape[-2])
        dirs_test = self.task_directions(x_test, m_test)
        dirs_train = None if dirs_test is None else self.task_directions(x_train, m_train)
        test_test_covar = self._covar(phi_test, dirs_test)
        test_train_covar = self._covar(phi_test, dirs_test, phi_train, dirs_train)
        if test_train_covar.shape[:-2] != batch_shape:
            test_train_covar = test_train_covar.expand(*batch_shape, *test_train_covar.shape[-2:])
            test_test_covar = test_test_covar.expand(*batch_shape, *test_test_covar.shape[-2:])
        return (
            test_mean,
            test_test_covar,
            test_train_covar,
            batch_shape,
            torch.Size([x_test.shape[-2]]),
            MultivariateNormal,
        )

    # -- adaptation helpers --------------------------------------------------------------------
    @torch.no_grad()
    def fit_mean_affine(
        self, scale_prior_std: float = 0.5, offset_prior_std: float = 0.5, use_kernel: bool = True
    ) -> None:
        """Closed-form (scale, offset) of the mean given the training data (GLS with a ridge
        towards scale 1, offset 0; the posterior mode of a Bayesian linear model whose noise
        covariance is the GP's ``K + sigma^2 I``, or only ``sigma^2 I`` without ``use_kernel``,
        which makes the offset take all of a shift shared by the observations)."""
        if self.num_train == 0:
            return
        x, y = self.train_inputs[0], self.train_targets
        m, phi = self.feature_map(x)
        k = self.likelihood.noise * torch.eye(len(y), dtype=y.dtype)
        if use_kernel:
            k = k + self._covar(phi, self.task_directions(x, m)).to_dense()
        chol = _safe_cholesky(k)
        design = torch.stack([m, torch.ones_like(m)], -1)  # (n, 2)
        a = torch.cholesky_solve(design, chol)  # K^-1 M
        b = torch.cholesky_solve(y.unsqueeze(-1), chol)  # K^-1 y
        prec = torch.diag(torch.tensor([scale_prior_std**-2, offset_prior_std**-2], dtype=y.dtype))
        prior = torch.tensor([1.0, 0.0], dtype=y.dtype)
        lhs = design.T @ a + prec
        rhs = (design.T @ b).squeeze(-1) + prec @ prior
        beta = torch.linalg.solve(lhs, rhs)
        self.mean_scale.fill_(float(beta[0]))
        self.mean_offset.fill_(float(beta[1]))
        self.prediction_strategy = None  # caches depend on the mean

    @torch.no_grad()
    def fit_variance_scale(self, prior_strength: float = 10.0) -> float:
        """Multiply the output scale and the noise (and ``prediction_noise``) by one factor
        ``s2 = (nu + r' K^-1 r) / (nu + n)``: the marginal-likelihood optimum of a common scale of
        the covariance ``K`` given the residuals ``r`` from the mean, shrunk towards 1 by ``nu``
        pseudo-observations (the mode-like estimate under a scaled inverse-chi-squared prior).
        Returns ``s2``."""
        if self.num_train == 0:
            return 1.0
        mean, k = self.prior_moments(self.train_inputs[0])
        y = self.train_targets
        r = y - mean
        chol = _safe_cholesky(k)
        q = float((r.unsqueeze(-1) * torch.cholesky_solve(r.unsqueeze(-1), chol)).sum())
        s2 = (prior_strength + q) / (prior_strength + len(y))
        self.covar_module.outputscale = self.covar_module.outputscale * s2
        self.likelihood.noise = self.likelihood.noise * s2
        if self.prediction_noise is not None:
            self.prediction_noise = self.prediction_noise * s2
        self.prediction_strategy = None
        return s2

    @torch.no_grad()
    def widen_to_residuals(self, extra_noise: float, prior_strength: float = 5.0) -> float:
        """Widen (never narrow) the meta-learned prior variance ``v = outputscale +
        prediction_noise`` when the observations deviate from the mean more than it says.

        With residuals ``r`` of the training targets from the mean and ``extra_noise`` the
        variance the observations carry on top of ``prediction_noise`` (the rank-Gauss sampling
        noise), ``E[r^2] = v + extra_noise`` under the model; the observed mean square, shrunk
        towards that by ``prior_strength`` pseudo-observations, gives ``v' = max(v, ms -
        extra_noise)``. The output scale and the prediction noise are multiplied by ``f = v' / v``
        (the training noise keeps its extra part). ``extra_noise`` is the part left once the
        affine fit took the shared part out (:func:`rank_score_variance` with
        ``affine_removed``). Residual correlations are ignored (a marginal
        moment estimate). Returns ``f``.

        Why: the meta-learned variances are fitted on the training tasks' own residuals, which
        are smaller than those of a held-out task unlike every training task (NB201 imagenet16).
        """
        if self.num_train == 0 or self.prediction_noise is None:
            return 1.0
        x, y = self.train_inputs[0], self.train_targets
        m, _ = self.feature_map(x)
        r = y - (self.mean_offset + self.mean_scale * m)
        v = float(self.covar_module.outputscale + self.prediction_noise.reshape(-1)[0])
        n = len(y)
        ms = (prior_strength * (v + extra_noise) + float((r**2).sum())) / (prior_strength + n)
        f = max(1.0, (ms - extra_noise) / v)
        if f > 1.0:
            own = self.likelihood.noise - self.prediction_noise  # the observations' extra noise
            self.covar_module.outputscale = self.covar_module.outputscale * f
            self.prediction_noise = self.prediction_noise * f
            self.likelihood.noise = self.prediction_noise + own
            self.prediction_strategy = None
        return f

    def fit_hyperparameters(
        self,
        steps: int = 20,
        lr: float = 0.05,
        features: bool = False,
        scale_prior_std: float = 0.5,
        offset_prior_std: float = 0.5,
    ) -> list[float]:
        """A few Adam steps on ``-mll`` over (scale, offset, output scale, noise, lengthscale)
        (and the feature map with ``features``), with the ridge of :meth:`fit_mean_affine` as a
        penalty. Returns the loss after each step."""
        if self.num_train < 2 or steps <= 0:
            return []
        params = [self.mean_scale, self.mean_offset, *self.covar_module.parameters(), *self.likelihood.parameters()]
        if features:
            params += list(self.feature_map.parameters())
        else:
            for p in self.feature_map.parameters():
                p.requires_grad_(False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.likelihood, self)
        opt = torch.optim.Adam(params, lr=lr)
        self.train()
        losses = []
        x, y = self.train_inputs[0], self.train_targets
        n = len(y)
        try:
            for _ in range(steps):
                opt.zero_grad()
                with gpytorch.settings.cholesky_jitter(1e-6):
                    loss = -mll(self(x), y)
                loss = loss + (
                    ((self.mean_scale - 1.0) / scale_prior_std) ** 2 + (self.mean_offset / offset_prior_std) ** 2
                ) / (2 * n)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        finally:
            for p in self.feature_map.parameters():
                p.requires_grad_(True)
            self.eval()
            self.prediction_strategy = None
        return losses


def _safe_cholesky(k: Tensor) -> Tensor:
    jitter = 0.0
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    for _ in range(6):
        chol, info = torch.linalg.cholesky_ex(k + jitter * eye)
        if int(info.max()) == 0:
            return chol
        jitter = 1e-8 if jitter == 0.0 else jitter * 10
    raise GrabnasError("the surrogate's kernel matrix is not positive definite even with jitter")


class MetaSurrogate(nn.Module):
    """The meta-learned surrogate: task encoder + feature map + GP hyperparameters.

    ``covar_module`` and ``likelihood`` hold the meta-learned kernel and noise; meta-training
    puts batches into :meth:`training_gp` (which shares every module), :meth:`fit` copies them
    for a target.

    Public use (see also :mod:`grabnas.meta.surrogate_training`)::

        sur = load_surrogate("nb201-no-cifar10")        # or a path
        d = sur.task_embedding()                          # no data, main fidelity
        X = sur.inputs(z_pool, d)                         # (N, task_dim + latent_dim)
        model = sur.fit(X_obs, y_obs)                     # BoTorch model (DeepKernelGP)
        model.posterior(X).mean
    """

    def __init__(self, config: SurrogateConfig, card: dict | None = None) -> None:
        super().__init__()
        from grabnas.models.set_encoder import TaskEncoder

        self.config = config
        self.task_encoder = TaskEncoder(config)
        self.feature_map = FeatureMap(config)
        self.covar_module = _make_kernel(config.kernel).to(DTYPE)
        self.likelihood = _make_likelihood().to(DTYPE)
        self.card: dict = dict(card or {})
        #: state of a graph encoder fine-tuned with this surrogate (None: the card's VAE as is)
        self.vae_state: dict | None = None

    # -- inputs --------------------------------------------------------------------------------
    def task_embedding(
        self, instance_features: Tensor | None = None, fidelity: str | None = None, task: str | None = None
    ) -> Tensor:
        """``(task_dim,)`` embedding of a task: from ``(K, k, instance_dim)`` instance features
        (K classes, k instances each) through the dataset encoder, or the learned "no data"
        embedding; plus the learned offset of ``fidelity`` (None: the main fidelity) and that of
        ``task`` when it is a meta-training task with an offset."""
        return self.task_encoder(instance_features, fidelity, task).to(DTYPE)

    def task_offset_embeddings(self, fidelity: str | None = None) -> dict[str, Tensor]:
        """``(task_dim,)`` embeddings of the meta-training tasks of ``fidelity`` that have a
        learned offset, by name (empty without ``task_offsets`` in the config)."""
        from grabnas.models.set_encoder import fidelity_of

        names = [t for t in self.config.task_offsets if fidelity_of(t, self.config.fidelities) == fidelity]
        with torch.no_grad():
            return {t: self.task_embedding(None, fidelity, task=t) for t in names}

    def inputs(self, z: Tensor, d: Tensor) -> Tensor:
        """``X = concat[d, z]``: ``(..., latent_dim)`` latents and a ``(task_dim,)`` embedding
        broadcast to ``(..., task_dim + latent_dim)`` (float64; differentiable in both)."""
        z = torch.as_tensor(z)
        if z.shape[-1] != self.config.latent_dim:
            raise GrabnasError(
                f"latents have {z.shape[-1]} dimensions; this surrogate expects {self.config.latent_dim}"
            )
        d = torch.as_tensor(d, dtype=DTYPE)
        return torch.cat([d.expand(*z.shape[:-1], d.shape[-1]), z.to(DTYPE)], -1)

    # -- models --------------------------------------------------------------------------------
    def training_gp(self) -> DeepKernelGP:
        """A GP without data that shares this surrogate's feature map, kernel and likelihood
        (meta-training sets each batch as its training data and maximises the MLL)."""
        gp = DeepKernelGP(
            self.feature_map, kernel=self.config.kernel, likelihood=self.likelihood, covar_module=self.covar_module
        )
        for p in (gp.mean_scale, gp.mean_offset):
            p.requires_grad_(False)
        return gp

    def _new_gp(
        self,
        train_X: Tensor | None,
        train_Y: Tensor | None,
        outcome_transform=None,
        copy_features: bool = False,
        task_prior_var: float = 1.0,
        variance_scale: float | None = None,
        tasks: Sequence[str] | None = None,
    ) -> DeepKernelGP:
        fmap = copy.deepcopy(self.feature_map) if copy_features else self.feature_map
        gp = DeepKernelGP(
            fmap,
            train_X,
            train_Y,
            kernel=self.config.kernel,
            likelihood=copy.deepcopy(self.likelihood),
            outcome_transform=outcome_transform,
            covar_module=copy.deepcopy(self.covar_module),
        )
        n = 0 if train_Y is None else int(train_Y.shape[0])
        f = self.config.variance_scale_at(n) if variance_scale is None else float(variance_scale)
        if not (math.isfinite(f) and f > 0):
            raise GrabnasError(f"the variance scale must be a positive number, got {variance_scale}")
        own = self.task_offset_embeddings() if task_prior_var > 0 else {}
        if tasks is not None:
            wanted = set(tasks)
            own = {t: e for t, e in own.items() if t in wanted}
        if own and (tasks is None or len(own) >= 2):
            gp.task_embeddings = torch.stack(list(own.values()))
            gp.task_prior_var = float(task_prior_var) * f
            gp.task_names = list(own)
        if f != 1.0:
            with torch.no_grad():
                gp.covar_module.outputscale = gp.covar_module.outputscale * f
                gp.likelihood.noise = gp.likelihood.noise * f
        gp.eval()
        return gp

    def prior(
        self, task_prior_var: float = 1.0, variance_scale: float | None = None, tasks: Sequence[str] | None = None
    ) -> DeepKernelGP:
        """The zero-shot model of a new task (no observations; standardised prior units); with
        per-task offsets, the task term of prior variance ``task_prior_var`` (0: none) is in its
        kernel. The prior covariance is multiplied by ``variance_scale`` (None: the config's
        ``new_task_variance_scale`` at 0 observations). ``tasks`` restricts the task term to those meta-training
        tasks (it needs two; with fewer there is none), as when one is left out to calibrate."""
        return self._new_gp(None, None, task_prior_var=task_prior_var, variance_scale=variance_scale, tasks=tasks)

    def fit(
        self,
        X: Tensor | None,
        Y: Tensor | Sequence[float] | None,
        *,
        steps: int = 0,
        lr: float = 0.05,
        finetune_features: bool = False,
        scale_prior_std: float = 0.5,
        offset_prior_std: float = 0.5,
        variance_prior_strength: float | None = None,
        widen_prior_strength: float | None = None,
        units_scale_std: float | None = None,
        units_offset_std: float | None = None,
        units: str = "rank-gauss",
        task_prior_var: float = 1.0,
        variance_scale: float | None = None,
        tasks: Sequence[str] | None = None,
    ) -> DeepKernelGP:
        """Condition on a target task's observations: ``(n, D)`` inputs and ``n`` raw values.

        ``n < 2``: the zero-shot prior (one observation says nothing about scale). Otherwise, by
        the config's ``value_transform``:

        * ``rank-gauss`` (default): the observations' normal scores estimate their normal scores
          in the whole task, with an error that has a part shared by all of them (an unlucky
          sample shifts and stretches every score) and a part of their own. The shared part is
          removed by mapping the scores through the closed-form (scale, offset) of the learned
          mean (least squares with a ridge towards 1, 0; see :meth:`DeepKernelGP.fit_mean_affine`
          without the kernel, so a shift shared by all observations goes to the offset). The
          ridge is the sampling spread of n normal scores' mean and std: ``units_offset_std``
          (default ``1 / sqrt(n)``) and ``units_scale_std`` (default ``1 / sqrt(2 n)``); the scale
          is kept in [0.5, 2]. So the model stays in the task's normal-score units (``units = "rank-gauss"``, the zero-shot
          units); the own part, of variance :func:`rank_score_variance`, is added to the noise of
          the observations only. ``best_f`` and :meth:`DeepKernelGP.transform_values` map raw
          values to these units.
        * ``standardize``: targets are standardised by their mean/std (BoTorch ``Standardize``;
          the posterior is in raw units, ``units = "observed"``) and the mean's (scale, offset)
          are fitted in closed form.

        * ``units="affine"`` (rank-Gauss configs): raw values map to the task's normal-score
          units by the maximum-likelihood affine map of :func:`affine_value_map` (no assumption
          that the observations are a random sample of the task; what a search needs, whose
          observations are the task's best). The model's noise is kept.

        With per-task offsets in the config (``task_offsets``) the kernel has the task term of
        :class:`DeepKernelGP` over the main-fidelity meta-training tasks, with weight prior
        variance ``task_prior_var`` (default 1: a new task is as far from the tasks' centre as a
        known one; 0 turns the term off).

        The meta-learned prior covariance (output scale, noise, task term) is multiplied by
        ``variance_scale`` (None: the config's ``new_task_variance_scale`` at n observations,
        fitted in meta-training on the training tasks; 1: as meta-learned), because the
        target is a task meta-training did not see.

        With ``widen_prior_strength`` (rank-Gauss units) the prior variance is widened, never
        narrowed, to the observations' residuals (:meth:`DeepKernelGP.widen_to_residuals`);
        off by default: on NB201 imagenet16 it brings the 90 % coverage after 5/10/20 random
        observations from 0.81/0.79/0.76 to 0.86/0.88/0.81, but in a GraB-NAS search there it
        trades a better start for a miss of the optimum within 50 evaluations.
        With ``variance_prior_strength`` the meta-learned variances (output scale and noise) get
        one common factor fitted in closed form (:meth:`DeepKernelGP.fit_variance_scale`, shrunk
        towards 1 by that many pseudo-observations). Off by default: on NB201 it narrowed the
        intervals of held-out tasks whose coverage was already below 90 %.
        ``steps`` Adam steps of the marginal likelihood then refine (scale, offset), the output
        scale and the noise (and the feature map, on a copy, with ``finetune_features``).
        """
        if X is None or Y is None or len(Y) < 2:
            return self.prior(task_prior_var, variance_scale, tasks)
        X = torch.as_tensor(X, dtype=DTYPE)
        Y = torch.as_tensor(Y, dtype=DTYPE).reshape(-1, 1)
        if X.dim() != 2 or X.shape[0] != Y.shape[0] or X.shape[1] != self.config.input_dim:
            raise GrabnasError(
                f"fit needs X of shape (n, {self.config.input_dim}) and n values, got X {tuple(X.shape)} and {Y.shape[0]} values"
            )
        if not torch.isfinite(Y).all():
            raise GrabnasError("observed values must be finite numbers; leave failed evaluations out of the surrogate")
        X = X.detach()
        if self.config.value_transform == "standardize":
            tf = Standardize(m=1)
            Y_std, _ = tf(Y)
            tf.eval()
            gp = self._new_gp(
                X, Y_std.detach(), tf, finetune_features, task_prior_var, variance_scale, tasks
            )
            gp.fit_mean_affine(scale_prior_std, offset_prior_std)
        elif units == "affine":
            gp = self._new_gp(X, Y, None, finetune_features, task_prior_var, variance_scale, tasks)
            with torch.no_grad():
                m, cov = gp.prior_moments(X)
                beta, offset, _ = affine_value_map(Y.squeeze(-1), m, cov)
                gp.set_train_data(targets=Y.squeeze(-1) / beta - offset, strict=False)
                gp.prediction_noise = gp.likelihood.noise.detach().clone()
            gp.value_map = AffineValueMap(beta, offset)
            gp.units = "rank-gauss"
            gp.prediction_strategy = None
        elif units != "rank-gauss":
            raise GrabnasError(f"unknown surrogate units {units!r}; expected rank-gauss or affine")
        else:
            scores = rank_gauss(Y.squeeze(-1))
            gp = self._new_gp(
                X, scores.unsqueeze(-1), None, finetune_features, task_prior_var, variance_scale, tasks
            )
            with torch.no_grad():
                gp.prediction_noise = gp.likelihood.noise.detach().clone()
                gp.likelihood.noise = gp.likelihood.noise + rank_score_variance(len(Y))
            n = len(Y)
            gp.fit_mean_affine(units_scale_std or (2 * n) ** -0.5, units_offset_std or n**-0.5, use_kernel=False)
            a = min(max(float(gp.mean_scale.detach()), 0.5), 2.0)
            c = float(gp.mean_offset.detach())
            gp.value_map = RankGaussMap(Y.squeeze(-1), scale=a, offset=c)
            with torch.no_grad():
                gp.set_train_data(targets=(scores - c) / a, strict=False)
                gp.likelihood.noise = (gp.likelihood.noise / a**2).clamp(max=9.0)
                gp.mean_scale.fill_(1.0)
                gp.mean_offset.fill_(0.0)
            gp.units = "rank-gauss"
            gp.prediction_strategy = None
            if widen_prior_strength is not None:
                gp.widen_to_residuals(rank_score_variance(n, affine_removed=True) / a**2, widen_prior_strength)
        if variance_prior_strength is not None:
            gp.fit_variance_scale(variance_prior_strength)
        if steps > 0:
            gp.fit_hyperparameters(
                steps,
                lr,
                features=finetune_features,
                scale_prior_std=scale_prior_std,
                offset_prior_std=offset_prior_std,
            )
        return gp

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def rank_gauss(values: Tensor) -> Tensor:
    """Normal scores ``Phi^-1((rank - 1/2) / n)`` of ``n`` values (ties share their mean rank)."""
    v = torch.as_tensor(values, dtype=DTYPE).reshape(-1)
    n = v.numel()
    if n == 0:
        return v
    order = torch.argsort(v, stable=True)
    ranks = torch.empty(n, dtype=DTYPE)
    ranks[order] = torch.arange(1, n + 1, dtype=DTYPE)
    uniq, inverse = torch.unique(v, return_inverse=True)
    if uniq.numel() < n:  # average ranks over ties
        sums = torch.zeros(uniq.numel(), dtype=DTYPE).index_add_(0, inverse, ranks)
        counts = torch.zeros(uniq.numel(), dtype=DTYPE).index_add_(0, inverse, torch.ones(n, dtype=DTYPE))
        ranks = (sums / counts)[inverse]
    return torch.special.ndtri((ranks - 0.5) / n)


def rank_score_variance(n: int, affine_removed: bool = False) -> float:
    """Mean variance of the error of the normal scores of ``n`` random draws as estimates of
    their normal scores in the whole population.

    Total (``affine_removed=False``): the delta method on uniform order statistics,
    ``Var(F(y_(i))) = p (1 - p) / (n + 2)`` with ``p = (i - 1/2) / n``, divided by the squared
    normal density at ``Phi^-1(p)``; it shrinks like ``1 / n``. With ``affine_removed``: what is
    left once the part shared by all n scores (a common shift and stretch, which
    :meth:`MetaSurrogate.fit` removes) is taken out: the total times
    ``max(0.3, 0.5 - 0.45 / sqrt(n))``, a fit (within 0.03) to a Monte Carlo of the residual
    variance of an affine regression of the scores on the true normal scores (n = 5 ... 500).
    """
    if n < 1:
        return 0.0
    p = (torch.arange(1, n + 1, dtype=DTYPE) - 0.5) / n
    dens = torch.exp(-0.5 * torch.special.ndtri(p) ** 2) / math.sqrt(2 * math.pi)
    total = float((p * (1 - p) / (n + 2) / dens**2).mean())
    return total * max(0.3, 0.5 - 0.45 / math.sqrt(n)) if affine_removed else total


class RankGaussMap:
    """The monotone map raw value -> normal score fitted on observations: piecewise linear
    between the observed values' normal scores, continued linearly beyond them with slope
    ``1 / std`` of the observations; then ``(score - offset) / scale``."""

    def __init__(self, observed: Tensor, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale, self.offset = float(scale), float(offset)
        y = torch.as_tensor(observed, dtype=DTYPE).reshape(-1)
        scores = rank_gauss(y)
        xs, inverse = torch.unique(y, return_inverse=True)
        sums = torch.zeros(xs.numel(), dtype=DTYPE).index_add_(0, inverse, scores)
        counts = torch.zeros(xs.numel(), dtype=DTYPE).index_add_(0, inverse, torch.ones_like(scores))
        ys = sums / counts
        self.xs, self.ys = xs, ys
        std = float(y.std()) if y.numel() > 1 else 1.0
        self.slope = 1.0 / std if std > 0 else 1.0

    def __call__(self, y: Tensor) -> Tensor:
        y = torch.as_tensor(y, dtype=DTYPE)
        xs, ys = self.xs, self.ys
        if xs.numel() == 1:
            return ys[0] + (y - xs[0]) * self.slope
        i = torch.searchsorted(xs, y.clamp(xs[0], xs[-1])).clamp(1, xs.numel() - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        inside = y0 + (y.clamp(xs[0], xs[-1]) - x0) * (y1 - y0) / (x1 - x0)
        below = ys[0] + (y - xs[0]) * self.slope
        above = ys[-1] + (y - xs[-1]) * self.slope
        score = torch.where(y < xs[0], below, torch.where(y > xs[-1], above, inside))
        return (score - self.offset) / self.scale


def affine_value_map(y: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float, float]:
    """Maximum-likelihood affine map of raw values to the model's units.

    The model says ``f ~ N(mean, cov)`` at the n observed points (``(n,)`` mean, ``(n, n)``
    covariance including the noise); raw values are ``y = beta * (f + offset)`` with ``beta > 0``.
    The log likelihood of ``y`` (Jacobian ``-n log beta`` included) is maximised in closed form:
    with the offset profiled out (generalised least squares) it is
    ``-q(beta)/2 - n log beta - log|cov|/2``, ``q = P / beta^2 - 2 Q / beta + R`` in the inner
    product ``<u, v> = u' C^-1 v`` on the complement of the constant vector, ``P = <y, y>``,
    ``Q = <y, mean>``, ``R = <mean, mean>``, whose stationary point is the positive root of
    ``n beta^2 + Q beta - P = 0``.

    Unlike normal scores of the observations, this does not assume that the observations are a
    random sample of the task: in a search they are its best architectures, and their spread
    says little about the task's. Returns ``(beta, offset, log likelihood)`` (the likelihood
    without its ``n/2 log 2 pi``); maps values by ``y / beta - offset``.
    """
    y = torch.as_tensor(y, dtype=DTYPE).reshape(-1)
    n = y.numel()
    if n < 2:
        raise GrabnasError("an affine value map needs at least 2 observations")
    mean = mean.reshape(-1).to(DTYPE)
    chol = _safe_cholesky(cov.to(DTYPE))
    basis = torch.stack([y, torch.ones_like(y), mean], -1)  # (n, 3)
    gram = basis.T @ torch.cholesky_solve(basis, chol)  # (3, 3): <., .> in C^-1

    def inner(i: int, j: int) -> float:
        return float(gram[i, j] - gram[i, 1] * gram[j, 1] / gram[1, 1])

    p, q, r = inner(0, 0), inner(0, 2), inner(2, 2)
    if p <= 1e-300:  # all observed values equal: no scale information
        beta = max(float(y.abs().max()), 1.0)
    else:
        beta = (-q + math.sqrt(q * q + 4 * n * p)) / (2 * n)
    offset = float((gram[0, 1] / beta - gram[2, 1]) / gram[1, 1])
    quad = p / beta**2 - 2 * q / beta + r
    loglik = -0.5 * quad - n * math.log(beta) - float(torch.log(torch.diagonal(chol)).sum())
    return beta, offset, loglik


class AffineValueMap:
    """Raw value -> model units ``y / beta - offset`` (see :func:`affine_value_map`)."""

    def __init__(self, beta: float, offset: float) -> None:
        self.beta, self.offset = float(beta), float(offset)

    def __call__(self, y: Tensor) -> Tensor:
        return torch.as_tensor(y, dtype=DTYPE) / self.beta - self.offset


@torch.no_grad()
def predict(
    model: DeepKernelGP, X: Tensor, observation_noise: bool = False, chunk: int = 4096
) -> tuple[Tensor, Tensor]:
    """Marginal posterior ``(mean, variance)``, each ``(N,)``, of ``model`` at ``(N, D)`` inputs,
    through BoTorch's ``posterior`` in chunks (so the ``N x N`` covariance is never formed)."""
    means, variances = [], []
    for start in range(0, X.shape[0], chunk):
        post = model.posterior(X[start : start + chunk], observation_noise=observation_noise)
        means.append(post.mean.squeeze(-1))
        variances.append(post.variance.squeeze(-1))
    if not means:
        return X.new_zeros(0), X.new_zeros(0)
    return torch.cat(means), torch.cat(variances)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Elementwise negative log density of ``y`` under ``N(mean, var)``."""
    var = var.clamp_min(1e-12)
    return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)


__all__ = [
    "AffineValueMap",
    "KERNELS",
    "VALUE_TRANSFORMS",
    "DeepKernelGP",
    "FeatureMap",
    "MetaSurrogate",
    "RankGaussMap",
    "SurrogateConfig",
    "affine_value_map",
    "gaussian_nll",
    "predict",
    "rank_gauss",
    "rank_score_variance",
]
