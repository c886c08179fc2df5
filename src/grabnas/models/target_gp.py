"""The target-adapted GP: the meta-learned prior as mean and kernel, refitted on the target.

The meta-learned :class:`~grabnas.models.deep_kernel_gp.DeepKernelGP` is a good *prior* for a new
task but, conditioned on the target's observations with its meta-learned hyperparameters, it
barely moves away from its zero-shot ranking: its learned mean explains most of the variance
it expects, so an observation only corrects the prior near itself (in the learned feature space)
and a prior that is wrong about the top of the target is never overruled.

:class:`TargetAdaptedGP` is one exact GP over ``X = concat[d, z]`` whose hyperparameters are fitted
to the target's observations by maximum a-posteriori marginal likelihood (BoTorch's
``fit_gpytorch_mll``), with the meta-learned values as the centres of their priors::

    f(x) ~ GP(c + a * m(x),  s_meta * k_meta(x, x') + s_t * k_t(z, z'))

* ``m`` and ``k_meta``: the meta-learned zero-shot mean and covariance (feature kernel, task term
  and new-task calibration included) of the target, frozen;
* ``a ~ N(1, 1)``, ``c ~ N(0, 1)``: how much of the prior mean the target's values follow (``a``
  may go to 0 or below where the prior ranks the target wrongly);
* ``s_meta ~ LogNormal(0, 1)``: a factor on the meta-learned covariance;
* ``k_t``: a Matérn-5/2 kernel with one lengthscale per latent dimension on the architecture
  latent ``z`` alone (BoTorch's dimension-scaled lengthscale prior), learned from the target only,
  with output scale ``s_t ~ LogNormal(log s0, 1)``, ``s0`` the meta-learned kernel's output scale
  (a priori the target kernel varies as much as the meta-learned one does);
* a Gaussian noise ``~ LogNormal(log sigma0^2, 1)``, ``sigma0^2`` the meta-learned noise.

The rule: every prior is centred on the meta-learned value (1 for the factors, the meta-learned
output scale for the target kernel, which meta-training has no value of its own for). A first
version centred the target kernel's scale at 0.25 (a quarter of the targets' unit variance, ten
times NB201's meta-learned 0.026-0.038) and the noise at BoTorch's default: on NB201 imagenet16 its
regret after 10 evaluations was 0.53 (5 seeds) against 0.09 with the meta-centred priors.

As observations accumulate the marginal likelihood decides between following the prior mean and
the target kernel (adaptation). At ``a = 1, s_t -> 0`` it is the meta model, at ``a = 0, s_meta ->
0`` a plain GP on the latents. What it does with few observations is measured, not designed: a
search observes the prior's top first, where ``m`` is ~2-4 in the task's normal scores while the
targets have mean 0, and with ``c ~ N(0, 1)`` the fit shrinks ``a`` instead (0.06-0.08 after two
observations on NB201 imagenet16), so early on the model is the meta-learned *kernel* with a weak
pull towards the prior mean. Centring ``m`` on the observations (``mean_weight="centred"``) keeps
``a ~ 1`` and searches worse (docs/adaptation.md).

Targets are the normal scores of the observed values (:func:`~grabnas.models.value_maps.rank_gauss`,
a Gaussian copula; ``a`` and ``c`` absorb the units), so ``best_f`` is the largest of them and
:meth:`TargetAdaptedGP.transform_values` maps raw values to them.
"""

from __future__ import annotations

import math

import torch
from botorch.models import SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior, NormalPrior
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.deep_kernel_gp import DeepKernelGP
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import RankGaussMap, rank_gauss


class _Frozen:
    """Holds a module without registering it (its parameters stay out of the fit)."""

    def __init__(self, module: DeepKernelGP) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> _Frozen:
        return self  # a copy of the GP shares the frozen meta-learned modules


class _LastCall:
    """A memo of the last few calls of a frozen function of tensors: the hyperparameter fit
    evaluates the meta-learned mean and covariance at the same training inputs at every L-BFGS
    step, a prediction at the same pool inputs (``size`` entries: the training, cross and test
    covariances of one prediction), and their values cannot change (the prior is frozen). Inputs
    that need gradients (the latent ascent) are never memoised; outputs are stored detached. A copy
    of the GP shares the memo (its meta-learned parts are the same frozen modules)."""

    def __init__(self, size: int = 4) -> None:
        self.size = int(size)
        self._entries: list[tuple[tuple, Tensor]] = []

    def __deepcopy__(self, memo: dict) -> _LastCall:
        return self

    def __call__(self, keys: tuple, compute):
        tensors = [k for k in keys if isinstance(k, Tensor)]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return compute()
        for i, (stored, value) in enumerate(self._entries):
            if len(keys) == len(stored) and all(_same(a, b) for a, b in zip(keys, stored)):
                self._entries.append(self._entries.pop(i))  # most recently used last
                return value
        value = compute().detach()
        self._entries.append((tuple(k.detach() if isinstance(k, Tensor) else k for k in keys), value))
        del self._entries[: -self.size]
        return value


def _same(a: object, b: object) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a is b or (a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))
    return a == b


def loo_terms(gp) -> tuple[Tensor, Tensor]:
    """``(alpha, diag)``, both ``(n,)``, of an exact GPyTorch/BoTorch GP at its ``n`` training
    points with its fitted hyperparameters: ``alpha = K^-1 (y - m)`` and ``diag = diag(K^-1)``,
    ``K = k(X, X) + noise I``. Its leave-one-out residuals are ``alpha / diag`` and variances
    ``1 / diag`` (Rasmussen & Williams 2006, eq. 5.12)."""
    X = gp.train_inputs[0]
    y = gp.train_targets.reshape(-1)
    with torch.no_grad():
        K = gp.covar_module(X).to_dense() + torch.diag(gp.likelihood.noise.reshape(-1).expand(len(y)))
        r = y - gp.mean_module(X).reshape(-1)
        L = torch.linalg.cholesky(K + 1e-8 * torch.eye(len(y), dtype=K.dtype))
        K_inv = torch.cholesky_inverse(L)
        return K_inv @ r, torch.diagonal(K_inv)


def _mean_centre(prior: DeepKernelGP, train_X: Tensor, meta_dims: int | None, mean_weight: str) -> float:
    """The meta-learned prior mean's average over the ``(n, D)`` observed inputs with
    ``mean_weight="centred"`` (0 otherwise): the observations' normal scores have mean 0, the prior
    mean at the cells a search observes first (its top) is ~2-4 in the task's normal scores, and
    an offset ``c ~ N(0, 1)`` that has to bridge that gap instead pulls the weight ``a`` to ~0."""
    if mean_weight != "centred":
        return 0.0
    with torch.no_grad():
        return float(prior.prior_mean(_meta_part(train_X.to(DTYPE), meta_dims)).mean())


def _meta_part(x: Tensor, meta_dims: int | None) -> Tensor:
    """The meta model's input columns ``(..., meta_dims)`` of ``(..., D)`` inputs."""
    return x if meta_dims is None or x.shape[-1] == meta_dims else x[..., :meta_dims]


class MetaPriorMean(Mean):
    """``c + a * (m(x) - centre)``: the meta-learned prior mean ``m`` of ``prior`` (frozen), with a
    fitted scale ``a`` (prior ``N(1, 1)``) and offset ``c`` (prior ``N(0, 1)``). ``(..., n, D)``
    inputs -> ``(..., n)`` means; ``meta_dims``: the meta model reads the first ``meta_dims`` input
    columns (``[d, z]``; None: all). ``marginal``: ``a = 1, c = 0`` fixed, for a model that
    integrates them out with :class:`PriorMeanWeightKernel` instead of fitting them. ``centre``: a
    constant subtracted from ``m`` (0: none; :class:`TargetAdaptedGP` with ``mean_weight="centred"``
    sets it to ``m``'s mean over the observations, whose normal scores have mean 0). ``unweighted``:
    ``a = 0`` fixed, ``c`` fitted: the mean ignores ``m`` (``mean_weight="none"``: the prior's
    preferences then reach a search only through its acquisition, as in piBO)."""

    def __init__(
        self,
        prior: DeepKernelGP,
        meta_dims: int | None = None,
        marginal: bool = False,
        centre: float = 0.0,
        unweighted: bool = False,
    ) -> None:
        super().__init__()
        self._prior = _Frozen(prior)
        self._memo = _LastCall()
        self.meta_dims = meta_dims
        self.marginal = marginal
        self.centre = float(centre)  # not a buffer: a warm start must not carry an old fit's centre
        fit_scale = not (marginal or unweighted)
        scale = torch.zeros((), dtype=DTYPE) if unweighted else torch.ones((), dtype=DTYPE)
        self.register_parameter("scale", torch.nn.Parameter(scale, requires_grad=fit_scale))
        self.register_parameter("offset", torch.nn.Parameter(torch.zeros((), dtype=DTYPE), requires_grad=not marginal))
        if fit_scale:  # a fixed scale has no prior (a fit's retries would redraw it from one)
            self.register_prior(
                "scale_prior", NormalPrior(torch.tensor(1.0, dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)), "scale"
            )
        if not marginal:
            self.register_prior(
                "offset_prior", NormalPrior(torch.tensor(0.0, dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)), "offset"
            )

    def meta_mean(self, x: Tensor) -> Tensor:
        """``(..., n)`` meta-learned prior mean ``m(x)`` (memoised for repeated inputs)."""
        x = _meta_part(x, self.meta_dims)
        return self._memo((x,), lambda: self._prior.module.prior_mean(x))

    def forward(self, x: Tensor) -> Tensor:
        m = self.meta_mean(x)
        return m if self.marginal else self.offset + self.scale * (m - self.centre)


class PriorMeanWeightKernel(Kernel):
    """``m(x) m(x') + 1``: the covariance that the prior mean's weight ``a ~ N(1, 1)`` and offset
    ``c ~ N(0, 1)`` of ``c + a * m(x)`` add when they are integrated out rather than fitted
    (explicit basis functions, Rasmussen & Williams 2006, sec. 2.7), with the mean ``m(x)`` itself
    (``a = 1, c = 0``) as the GP's mean. While the observations leave ``a`` undetermined (all at
    the prior's top, where ``m`` hardly varies) the predictive variance grows with the distance in
    ``m`` from them, so an acquisition tries cells the prior ranks differently until the
    observations pin the weight down; one such observation suffices where the prior is right."""

    has_lengthscale = False

    def __init__(self, prior: DeepKernelGP, meta_dims: int | None = None) -> None:
        super().__init__()
        self._prior = _Frozen(prior)
        self.meta_dims = meta_dims
        self._memo1, self._memo2 = _LastCall(), _LastCall()

    def _m(self, x: Tensor, memo: _LastCall) -> Tensor:
        x = _meta_part(x, self.meta_dims)
        return memo((x,), lambda: self._prior.module.prior_mean(x))

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        m1 = self._m(x1, self._memo1)
        m2 = m1 if x2 is x1 else self._m(x2, self._memo2)
        if diag:
            return m1 * m2 + 1.0
        return m1.unsqueeze(-1) * m2.unsqueeze(-2) + 1.0


class MetaKernel(Kernel):
    """The meta-learned covariance of ``prior`` (feature kernel plus task term, frozen) times a
    fitted factor ``s_meta`` (prior ``LogNormal(0, 1)``: the meta-learned value), on the first
    ``meta_dims`` input columns (None: all)."""

    has_lengthscale = False

    def __init__(self, prior: DeepKernelGP, meta_dims: int | None = None) -> None:
        super().__init__()
        self._prior = _Frozen(prior)
        self._memo = _LastCall()
        self.meta_dims = meta_dims
        self.register_parameter("raw_factor", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
        self.register_constraint("raw_factor", Positive())
        self.register_prior(
            "factor_prior",
            LogNormalPrior(torch.tensor(0.0, dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)),
            lambda m: m.factor,
            lambda m, v: m._set_factor(v),
        )
        self._set_factor(torch.tensor(1.0, dtype=DTYPE))

    @property
    def factor(self) -> Tensor:
        # floored: softplus of a raw value below about -745 is exactly 0.0 in float64, where the
        # LogNormal prior raises (an L-BFGS step did that on NB201 imagenet16); unchanged above
        return self.raw_factor_constraint.transform(self.raw_factor).clamp_min(1e-12)

    def _set_factor(self, value: Tensor) -> None:
        value = torch.as_tensor(value, dtype=DTYPE)
        self.initialize(raw_factor=self.raw_factor_constraint.inverse_transform(value))

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        return self.factor * self.unit(x1, x2, diag)

    def unit(self, x1: Tensor, x2: Tensor, diag: bool = False) -> Tensor:
        """The frozen meta-learned covariance without the factor, memoised (see :meth:`forward`)."""
        same = x2 is x1
        x1 = _meta_part(x1, self.meta_dims)
        x2 = x1 if same else _meta_part(x2, self.meta_dims)
        return self._memo((x1, x2, diag), lambda: self._meta_covariance(x1, x2, diag))

    def _meta_covariance(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        """The frozen meta-learned covariance ``(..., n1, n2)`` (``(..., n)`` with ``diag``)."""
        gp = self._prior.module
        m1, phi1 = gp.feature_map(x1)
        dirs1 = gp.task_directions(x1, m1)
        if x2 is x1 or torch.equal(x1, x2):
            phi2, dirs2 = phi1, dirs1
        else:
            m2, phi2 = gp.feature_map(x2)
            dirs2 = gp.task_directions(x2, m2)
        if diag:
            k = gp.covar_module(phi1, phi2, diag=True)
            if dirs1 is not None:
                k = k + gp.task_prior_var * (dirs1 * dirs2).sum(-1)
        else:
            k = gp._covar(phi1, dirs1, phi2, dirs2)
        return k


class PriorMeanKernel(Kernel):
    """A kernel on the meta-learned prior mean: ``k(m(x), m(x'))`` with ``m`` frozen and ``k`` a
    one-dimensional Matérn-5/2 (lengthscale prior ``LogNormal(0, 1)`` in the mean's
    normal-score units). With it the target's values can be any smooth function of the prior's
    prediction (the nonlinear autoregressive transfer of NARGP, Perdikaris et al. 2017), e.g.
    best at the prior's 80th percentile rather than at its top."""

    has_lengthscale = False

    def __init__(self, prior: DeepKernelGP, meta_dims: int | None = None) -> None:
        super().__init__()
        from gpytorch.kernels import MaternKernel

        self._prior = _Frozen(prior)
        self.meta_dims = meta_dims
        self.base = MaternKernel(nu=2.5, lengthscale_prior=LogNormalPrior(0.0, 1.0))
        self.base.lengthscale = 1.0

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        gp = self._prior.module
        m1 = gp.prior_mean(_meta_part(x1, self.meta_dims)).unsqueeze(-1)
        m2 = m1 if x2 is x1 else gp.prior_mean(_meta_part(x2, self.meta_dims)).unsqueeze(-1)
        return self.base(m1, m2, diag=diag).to_dense() if not diag else self.base(m1, m2, diag=True)


def hamming_kernel(dims: list[int], groups: float, scale: float) -> ScaleKernel:
    """``s_h exp(-h(x, x') / l^2)`` on the one-hot columns ``dims`` of ``groups`` categorical
    choices, ``h`` the number of choices two architectures differ in: an RBF kernel with one
    lengthscale on the one-hot columns (``|x - x'|^2 = 2h``), the categorical kernel of NAS-BO
    methods on ordinal-free choices. Two hyperparameters whatever the encoding's size (a one-hot
    kernel with a lengthscale per column has one per column, and with few observations fits them
    to noise). Priors: ``l ~ LogNormal(log sqrt(groups), 1)`` (two cells differing in every choice
    correlate ~e^-1), ``s_h ~ LogNormal(log scale, 1)`` like the latent target kernel's."""
    centre = math.sqrt(max(groups, 1.0))
    base = RBFKernel(active_dims=dims, lengthscale_prior=LogNormalPrior(math.log(centre), 1.0))
    base.lengthscale = centre
    out = ScaleKernel(
        base, outputscale_prior=LogNormalPrior(math.log(scale), 1.0), outputscale_constraint=GreaterThan(1e-6)
    )
    out.outputscale = scale
    return out


#: relative loss decrease below which the MAP fit stops (scipy's L-BFGS-B ``ftol``; its default,
#: 2.2e-9, spent about two thirds of the fit's evaluations on the last 1e-4 of the per-observation
#: loss: warm-started fits were within 1e-4 after ~10 of ~30 evaluations on NB201; docs/adaptation.md)
FIT_FTOL = 1e-6
#: scipy's own L-BFGS-B ``ftol``, kept by the multi-fidelity GP: ``FIT_FTOL`` was measured on the
#: single-fidelity search only, and on NB201 imagenet16 it moved multi-fidelity GraB-NAS off the path
#: that reached the optimum in 16 of 20 seeds (1 of 20 with it; docs/multifidelity.md)
SCIPY_FTOL = 2.220446049250313e-09


class _ListedPriorsMLL(ExactMarginalLogLikelihood):
    """GPyTorch's exact marginal log likelihood with the model's priors listed once: its
    ``_add_other_terms`` walks the module tree for them at every evaluation, which took about a
    fifth of an L-BFGS step's time here. The terms and their order are GPyTorch's, so the value is
    the same to the bit."""

    def __init__(self, likelihood, model) -> None:
        super().__init__(likelihood, model)
        self._loss_terms = list(model.added_loss_terms())
        self._priors = [(module, prior, closure) for _, module, prior, closure, _ in model.named_priors()]

    def _add_other_terms(self, res: Tensor, params) -> Tensor:
        for term in self._loss_terms:
            res = res.add(term.loss(*params))
        res_ndim = res.ndim
        for module, prior, closure in self._priors:
            prior_term = prior.log_prob(closure(module))
            res.add_(prior_term.view(*prior_term.shape[:res_ndim], -1).sum(dim=-1))
        return res


class TargetAdaptedGP(SingleTaskGP):
    """The target-adapted GP (see the module docstring) as a BoTorch ``SingleTaskGP``.

    Args:
        prior: the zero-shot meta-learned GP of the target (``MetaSurrogate.prior()``), frozen.
        train_X: ``(n, D)`` inputs ``concat[d, z]``, ``n >= 2``.
        values: ``(n,)`` raw observed values (maximised).
        target_dims: indices of the target kernel's inputs in ``X``: the latent ``z``, or a one-hot
            encoding of the architecture appended to ``[d, z]``.
        meta_dims: the meta-learned parts read ``X[..., :meta_dims]`` (``[d, z]``; None: all of X).
        mean_weight: ``map`` (the prior mean's weight ``a`` and offset ``c`` fitted, default),
            ``marginal`` (integrated out: :class:`PriorMeanWeightKernel`), ``centred`` (fitted, with
            the prior mean centred on its average over the observations: ``c + a (m(x) - mean_i
            m(x_i))``, so that ``c ~ N(0, 1)`` matches the observations' normal scores) or ``none``
            (``a = 0``: a constant mean ``c``; the meta-learned covariance stays).
        targets: ``(n,)`` the model's targets when not the normal scores of ``values`` (e.g.
            the per-fidelity scores of :class:`MultiFidelityTargetGP`).
        prior_mean_kernel: add a kernel on the meta-learned prior mean (:class:`PriorMeanKernel`),
            so the target's values may be a nonlinear function of the prior's prediction
            (off by default; see the README's adaptation section for what it did).
        target_scale: the centre of the target kernel's output-scale prior and its starting
            value, when larger than the meta-learned kernel's output scale (the default centre);
            e.g. the share of a left-out dataset's variance that the meta-training corpus leaves
            unexplained (:func:`grabnas.meta.transferability.heldout_residual_fraction`).
        hamming_dims: indices of a one-hot architecture encoding in ``X`` (groups of one-hot
            columns, one group per categorical choice); when given, the target kernel gains a
            Hamming kernel on them (:func:`hamming_kernel`), added to ``k_t``.
    """

    def __init__(
        self,
        prior: DeepKernelGP,
        train_X: Tensor,
        values: Tensor,
        target_dims: list[int],
        prior_mean_kernel: bool = False,
        meta_dims: int | None = None,
        mean_weight: str = "map",
        targets: Tensor | None = None,
        target_scale: float | None = None,
        hamming_dims: list[int] | None = None,
    ) -> None:
        if mean_weight not in ("map", "marginal", "centred", "none"):
            raise GrabnasError(f"mean_weight {mean_weight!r} is unknown; expected map, marginal, centred or none")
        values = torch.as_tensor(values, dtype=DTYPE).reshape(-1)
        if values.numel() < 2 or train_X.shape[0] != values.numel():
            raise GrabnasError(
                f"the target-adapted GP needs n >= 2 inputs and as many values, got {train_X.shape[0]} and {values.numel()}"
            )
        targets = rank_gauss(values) if targets is None else torch.as_tensor(targets, dtype=DTYPE).reshape(-1)
        with torch.no_grad():  # prior centres: the meta-learned values
            meta_scale = float(prior.covar_module.outputscale)
            meta_noise = float(prior.likelihood.noise)
        target_centre = max(meta_scale, float(target_scale or 0.0))
        target_kernel = get_covar_module_with_dim_scaled_prior(
            ard_num_dims=len(target_dims), active_dims=target_dims, use_rbf_kernel=False
        )
        target_kernel = ScaleKernel(
            target_kernel,
            outputscale_prior=LogNormalPrior(math.log(target_centre), 1.0),
            outputscale_constraint=GreaterThan(1e-6),
        )
        target_kernel.outputscale = target_centre
        if hamming_dims:
            groups = float(train_X[0, hamming_dims].sum())  # each one-hot group contributes a 1
            target_kernel = target_kernel + hamming_kernel(hamming_dims, groups, target_centre)
        likelihood = GaussianLikelihood(
            noise_prior=LogNormalPrior(math.log(meta_noise), 1.0), noise_constraint=GreaterThan(1e-4)
        )
        likelihood.noise = meta_noise
        from botorch.settings import validate_input_scaling

        with validate_input_scaling(False):  # latents are not scaled to the unit cube, by design
            self._init_single_task(
                train_X, targets, likelihood, target_kernel, prior, prior_mean_kernel, meta_dims, mean_weight
            )
        self.to(DTYPE)
        self._init_args = {  # what :meth:`with_prior` rebuilds the GP from (not registered: no parameters)
            "train_X": train_X,
            "values": values,
            "target_dims": list(target_dims),
            "prior_mean_kernel": prior_mean_kernel,
            "meta_dims": meta_dims,
            "mean_weight": mean_weight,
            "targets": targets,
            "target_scale": target_scale,
            "hamming_dims": hamming_dims,
        }
        self.value_map = RankGaussMap(values)
        #: normal scores of the observations (not of the whole task, as the meta model's units)
        self.units = "observation-scores"

    @staticmethod
    def _covar(
        prior: DeepKernelGP, target_kernel: Kernel, prior_mean_kernel: bool, meta_dims: int | None, mean_weight: str
    ) -> Kernel:
        """``s_meta k_meta + s_t k_t`` (plus ``s_m k(m(x), m(x'))`` with ``prior_mean_kernel``, its
        scale's prior centred like ``s_t``'s; plus ``m(x) m(x') + 1`` with ``mean_weight="marginal"``)."""
        kernel = MetaKernel(prior, meta_dims) + target_kernel
        if mean_weight == "marginal":
            kernel = kernel + PriorMeanWeightKernel(prior, meta_dims)
        if not prior_mean_kernel:
            return kernel
        with torch.no_grad():
            meta_scale = float(prior.covar_module.outputscale)
        on_mean = ScaleKernel(
            PriorMeanKernel(prior, meta_dims),
            outputscale_prior=LogNormalPrior(math.log(meta_scale), 1.0),
            outputscale_constraint=GreaterThan(1e-6),
        )
        on_mean.outputscale = meta_scale
        return kernel + on_mean

    def _init_single_task(
        self, train_X, targets, likelihood, target_kernel, prior, prior_mean_kernel, meta_dims, mean_weight
    ) -> None:
        super().__init__(
            train_X.detach().to(DTYPE),
            targets.unsqueeze(-1),
            likelihood=likelihood,
            covar_module=self._covar(prior, target_kernel, prior_mean_kernel, meta_dims, mean_weight),
            mean_module=MetaPriorMean(
                prior,
                meta_dims,
                marginal=mean_weight == "marginal",
                centre=_mean_centre(prior, train_X, meta_dims, mean_weight),
                unweighted=mean_weight == "none",
            ),
            outcome_transform=None,
        )

    # -- what GraB-NAS and the evaluation read ---------------------------------------------------
    @property
    def num_train(self) -> int:
        return int(self.train_inputs[0].shape[-2])

    @property
    def best_f(self) -> Tensor:
        """The best observation in the model's units (normal scores)."""
        return self.train_targets.max()

    def transform_values(self, y: Tensor) -> Tensor:
        """Raw values -> the model's units."""
        return self.value_map(y)

    @property
    def fitted_hyperparameters(self) -> dict[str, float]:
        """The fitted mean scale ``a`` and offset ``c`` (integrated out: their posterior means
        ``1 + m^T K^-1 (y - m)`` and ``1^T K^-1 (y - m)``), meta-kernel factor, target-kernel
        output scale and noise."""
        meta, target = self.covar_module.kernels[:2]
        with torch.no_grad():
            scale, offset = float(self.mean_module.scale), float(self.mean_module.offset)
            if self.mean_module.marginal:
                alpha, _ = loo_terms(self)
                scale = 1.0 + float(self.mean_module.meta_mean(self.train_inputs[0]) @ alpha)
                offset = float(alpha.sum())
            out = {
                "mean_scale": scale,
                "mean_offset": offset,
                "meta_factor": float(meta.factor),
                "target_scale": float(target.outputscale),
                "noise": float(self.likelihood.noise),
            }
            for k in self.covar_module.kernels[2:]:
                if isinstance(k, ScaleKernel) and isinstance(k.base_kernel, RBFKernel):
                    out["hamming_scale"] = float(k.outputscale)
                    out["hamming_lengthscale"] = float(k.base_kernel.lengthscale)
            return out

    def fit(self, seed: int, maxiter: int = 50, warm_start: dict | None = None, ftol: float = FIT_FTOL) -> None:
        """MAP fit of the hyperparameters (L-BFGS-B via ``fit_gpytorch_mll``), from ``warm_start``
        (a previous fit's :meth:`fit_state`) when given, stopped when a step improves the loss by
        less than ``ftol`` relative (:data:`FIT_FTOL`). Fit retries resample from the priors with
        torch's global RNG, so it is seeded with ``seed`` inside ``fork_rng`` (the caller's state
        is restored)."""
        from botorch.exceptions import ModelFittingError
        from botorch.fit import fit_gpytorch_mll

        if warm_start:
            self.load_state_dict(warm_start, strict=False)
        mll = _ListedPriorsMLL(self.likelihood, self)
        frozen = [p for p in self.mean_module._prior.module.parameters() if p.requires_grad]
        for p in frozen:  # the meta-learned modules are shared: no gradients into them
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed) % 2**63)
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter, "ftol": ftol}})
            except ModelFittingError:
                pass  # keep the hyperparameters reached; the model is still usable
            finally:
                for p in frozen:
                    p.requires_grad_(True)
        self.eval()
        self._fitted_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def fit_state(self) -> dict:
        """The fitted hyperparameters (a state dict without the training data), before any
        :meth:`calibrate_variance`."""
        state = getattr(self, "_fitted_state", None)
        return dict(state) if state is not None else {k: v.detach().clone() for k, v in self.state_dict().items()}

    def with_prior(self, prior: DeepKernelGP) -> TargetAdaptedGP:
        """The same GP (observations, every fitted hyperparameter: :meth:`fit_state`) built on
        another frozen meta-learned ``prior``, unfitted. The prior mean's weight and offset were
        fitted to this GP's mean; :func:`grabnas.models.hyper_mixture.swap_prior` refits them to the
        new one."""
        gp = TargetAdaptedGP(prior, **self._init_args)
        state = self.fit_state()
        gp.load_state_dict(state, strict=False)
        gp.eval()
        gp._fitted_state = state
        return gp

    def loo_variance_ratio(self) -> float:
        """The mean squared standardised leave-one-out residual ``mean_i (y_i - mu_-i)^2 / s2_-i``
        of the fitted GP at its ``n`` training points, in closed form (Rasmussen & Williams 2006,
        eq. 5.12: ``y_i - mu_-i = [K^-1 r]_i / [K^-1]_ii``, ``s2_-i = 1 / [K^-1]_ii``). About 1
        for a calibrated model; above 1 where its intervals are too narrow for its own data."""
        alpha, k_inv_diag = loo_terms(self)
        return float((alpha**2 / k_inv_diag).mean())

    def calibrate_variance(self, min_observations: int = 3) -> float:
        """Widen the posterior by the cross-validated variance factor (Bachoc 2013): every
        covariance term and the noise are multiplied by ``max(1, loo_variance_ratio())``, which
        leaves the posterior mean unchanged and scales its variance by that factor. A MAP fit
        to a handful of observations is overconfident (its 90 % intervals held 51-86 % of a
        task's values after 5 random observations); the leave-one-out residuals measure by how
        much, from the target's own data. Returns the factor (1: unchanged)."""
        if self.num_train < min_observations:
            return 1.0
        factor = max(1.0, self.loo_variance_ratio())
        if not math.isfinite(factor) or factor == 1.0:
            return 1.0
        with torch.no_grad():
            for kernel in self.covar_module.kernels:
                if isinstance(kernel, MetaKernel):
                    kernel._set_factor(kernel.factor * factor)
                else:
                    kernel.outputscale = kernel.outputscale * factor
            self.likelihood.noise = self.likelihood.noise * factor
        self.prediction_strategy = None  # cached solves belong to the old covariance
        self.variance_factor = factor
        return factor

    def _get_test_prior_mean_and_covariances(self, train_inputs, test_inputs, **kwargs):
        """GPyTorch's hook for the test-set prior (see ``ExactGP``), overridden for speed only:
        the dense ``q x n`` test-train kernel, the ``q x q`` test kernel kept lazy (a marginal
        variance over a large pool then costs its diagonal), no concatenation of train and test
        inputs. The numbers are the default's."""
        from gpytorch.distributions import MultivariateNormal

        (x_train,), (x_test,) = tuple(train_inputs), tuple(test_inputs)
        batch_shape = torch.broadcast_shapes(x_train.shape[:-2], x_test.shape[:-2])
        test_mean = self.mean_module(x_test).expand(*batch_shape, x_test.shape[-2])
        test_test_covar = self.covar_module(x_test)
        test_train_covar = self.covar_module(x_test, x_train).to_dense()
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

    def posterior(self, X: Tensor, observation_noise: bool | Tensor = False, posterior_transform=None, **kwargs):
        """BoTorch's posterior; ``(b, 1, D)`` inputs (how analytic acquisitions score b
        candidates) are computed as one ``(b, D)`` set of marginals (the same numbers, one GP
        prediction instead of b), and large sets keep the test-test kernel lazy."""
        import gpytorch

        if X.dim() >= 3 and X.shape[-2] == 1 and X[..., 0, 0].numel() > 1 and not isinstance(observation_noise, Tensor):
            from botorch.posteriors.gpytorch import GPyTorchPosterior
            from gpytorch.distributions import MultivariateNormal
            from linear_operator.operators import DiagLinearOperator

            flat = self.posterior(X.reshape(-1, X.shape[-1]), observation_noise=observation_noise, **kwargs)
            mean = flat.mean.reshape(*X.shape[:-1])
            var = flat.variance.reshape(*X.shape[:-1]).clamp_min(1e-12)
            post = GPyTorchPosterior(MultivariateNormal(mean, DiagLinearOperator(var)))
            return posterior_transform(post, X=X) if posterior_transform is not None else post
        eager = gpytorch.settings.max_eager_kernel_size.value() if X.shape[-2] <= 256 else 0
        with gpytorch.settings.max_eager_kernel_size(eager):
            return super().posterior(
                X, observation_noise=observation_noise, posterior_transform=posterior_transform, **kwargs
            )


def as_observations(X, values) -> tuple[Tensor, Tensor]:
    """``(n, k)`` inputs and ``(n,)`` values as float64 tensors; non-finite values refused."""
    X = torch.as_tensor(X, dtype=DTYPE)
    values = torch.as_tensor(values, dtype=DTYPE).reshape(-1)
    if not torch.isfinite(values).all():
        raise GrabnasError("observed values must be finite numbers; leave failed evaluations out of the surrogate")
    return X, values


def is_target_adapted(model) -> bool:
    """Whether ``model`` is the target-adapted GP, fitted (:class:`TargetAdaptedGP`) or with its
    hyperparameters integrated out (a :class:`~grabnas.models.hyper_mixture.HyperparameterMixture`
    of them), rather than the zero-shot prior: only it reads the extra input columns."""
    return isinstance(getattr(model, "map_model", model), TargetAdaptedGP)


def fit_target_gp(
    surrogate,
    X: Tensor | None,
    values: Tensor | None,
    *,
    seed: int = 0,
    warm_start: dict | None = None,
    maxiter: int = 50,
    prior_mean_kernel: bool = False,
    task_prior_var: float = 1.0,
    variance_scale: float | None = None,
    tasks=None,
    calibrate: bool = False,
    extra_dims: int = 0,
    mean_weight: str = "map",
    target_scale: float | None = None,
    onehot_kernel: str = "ard",
    finetune: int = 0,
    finetune_lr: float = 1e-3,
):
    """Condition a :class:`~grabnas.models.surrogate.MetaSurrogate` on a target's ``(n, D)``
    inputs and ``(n,)`` raw values by the target-adapted GP: with ``n < 2`` its zero-shot prior
    (a ``DeepKernelGP``), else a fitted :class:`TargetAdaptedGP` over that prior (``task_prior_var``,
    ``variance_scale``, ``tasks`` as in ``MetaSurrogate.prior``); ``calibrate``: widen its posterior by
    the leave-one-out variance factor (:meth:`TargetAdaptedGP.calibrate_variance`).

    ``extra_dims``: 0 for inputs ``X = [d, z]`` (the target kernel reads ``z``); ``e > 0`` for
    ``X = [d, z, o]`` with ``o`` an ``e``-column architecture encoding (e.g. one-hot) that only the
    target kernel reads (the meta-learned parts read ``[d, z]``): ``onehot_kernel="ard"`` (one
    lengthscale per column, instead of the kernel on ``z``) or ``"hamming"`` (a Hamming kernel on
    ``o`` added to the kernel on ``z``: :func:`hamming_kernel`). ``mean_weight``,
    ``target_scale``: see :class:`TargetAdaptedGP`. To integrate the scalar hyperparameters out
    instead of fitting them, pass the result to
    :func:`grabnas.models.hyper_mixture.integrate_hyperparameters`.

    ``finetune``: ``0``, or the number of Adam steps (learning rate ``finetune_lr``) that first
    fine-tune the prior's feature map to the observations
    (:meth:`~grabnas.models.surrogate.MetaSurrogate.finetuned_prior`), so that the frozen meta-learned
    mean and covariance the target-adapted GP is built on are those of the fine-tuned map."""
    if finetune < 0:
        raise GrabnasError(f"finetune must be 0 (off) or a number of Adam steps, got {finetune}")
    if X is None or values is None or len(values) < 2:
        return surrogate.prior(task_prior_var, variance_scale, tasks)
    X, values = as_observations(X, values)
    cfg = surrogate.config
    if X.shape[-1] != cfg.input_dim + extra_dims:
        raise GrabnasError(
            f"target-GP inputs have {X.shape[-1]} columns; expected {cfg.input_dim} + {extra_dims} ([d, z] + extra)"
        )
    if onehot_kernel not in ("ard", "hamming"):
        raise GrabnasError(f"onehot_kernel {onehot_kernel!r} is unknown; expected ard or hamming")
    if finetune:
        prior = surrogate.finetuned_prior(
            X[..., : cfg.input_dim], values, finetune, finetune_lr, task_prior_var, variance_scale, tasks
        )
    else:
        prior = surrogate.prior(task_prior_var, variance_scale, tasks)
    encoding = list(range(cfg.input_dim, cfg.input_dim + extra_dims))
    hamming_dims = encoding if extra_dims and onehot_kernel == "hamming" else None
    if extra_dims and not hamming_dims:
        target_dims, meta_dims = encoding, cfg.input_dim
    else:
        target_dims, meta_dims = list(range(cfg.task_dim, cfg.input_dim)), cfg.input_dim if extra_dims else None
    gp = TargetAdaptedGP(
        prior,
        X,
        values,
        target_dims=target_dims,
        prior_mean_kernel=prior_mean_kernel,
        meta_dims=meta_dims,
        mean_weight=mean_weight,
        target_scale=target_scale,
        hamming_dims=hamming_dims,
    )
    gp.fit(seed, maxiter=maxiter, warm_start=warm_start)
    if calibrate:
        gp.calibrate_variance()
    return gp


__all__ = [
    "MetaKernel",
    "MetaPriorMean",
    "PriorMeanKernel",
    "PriorMeanWeightKernel",
    "TargetAdaptedGP",
    "as_observations",
    "fit_target_gp",
    "hamming_kernel",
    "is_target_adapted",
    "loo_terms",
]
