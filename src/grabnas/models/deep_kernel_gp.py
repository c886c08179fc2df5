"""The deep-kernel GP: :class:`FeatureMap` (an MLP on ``X = concat[d, z]`` with a learned-mean head
``m(x)`` and kernel features ``phi(x)``) and :class:`DeepKernelGP`, a GPyTorch ``ExactGP`` exposed as
a single-output BoTorch model, ``f(x) ~ GP(offset + scale * m(x), k(phi(x), phi(x')))`` plus the
optional low-rank task term, with its closed-form adaptation helpers; ``posterior`` keeps the
test-test kernel lazy and scores ``(b, 1, D)`` candidate batches as one set."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from grabnas.errors import GrabnasError
from grabnas.models.feature_cache import RowCache
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig

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
        #: raw values -> model units for the rank-gauss units (a
        #: :class:`~grabnas.models.value_maps.RankGaussMap` or
        #: :class:`~grabnas.models.value_maps.AffineValueMap`)
        self.value_map: Callable[[Tensor], Tensor] | None = None
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
        anchor: Tensor | None = None,
    ) -> list[float]:
        """A few Adam steps on ``-mll`` over (scale, offset, output scale, noise, lengthscale)
        (and the feature map with ``features``), with the ridge of :meth:`fit_mean_affine` as a
        penalty. ``anchor``: ``(m, D)`` inputs where the prior mean is held to its value before
        the steps, as ``m`` pseudo-observations of it with the prior's own marginal variance there
        (with ``features``: the map changes where the observations say, and as little as it can
        elsewhere). Returns the loss after each step."""
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
        if anchor is not None:
            with torch.no_grad():
                anchor_mean, anchor_cov = self.prior_moments(anchor)
                anchor_var = torch.diagonal(anchor_cov).clamp_min(1e-6)
        try:
            for _ in range(steps):
                opt.zero_grad()
                with gpytorch.settings.cholesky_jitter(1e-6):
                    loss = -mll(self(x), y)
                loss = loss + (
                    ((self.mean_scale - 1.0) / scale_prior_std) ** 2 + (self.mean_offset / offset_prior_std) ** 2
                ) / (2 * n)
                if anchor is not None:  # mll is per observation: so is the anchors' term
                    loss = loss + ((self.prior_mean(anchor) - anchor_mean) ** 2 / anchor_var).sum() / (2 * n)
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
