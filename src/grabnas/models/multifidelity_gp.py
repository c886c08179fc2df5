"""The target-adapted GP over observations at several fidelities (multi-fidelity GraB-NAS).

:class:`MultiFidelityTargetGP` is :class:`~grabnas.models.target_gp.TargetAdaptedGP` on inputs
``[d_f, z, f]`` (the task embedding at fidelity ``f``, the latent, the fidelity index): one mean
offset and scale per fidelity (:class:`MultiFidelityPriorMean`), a fitted cross-fidelity factor on
the meta-learned covariance (:class:`CrossFidelityFactor`) and the target kernel within a fidelity
(:class:`SameFidelityKernel`). :func:`fit_multifidelity_gp` conditions a meta-trained surrogate on
such observations (docs/multifidelity.md).
"""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from gpytorch.kernels import Kernel
from gpytorch.priors import NormalPrior
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.deep_kernel_gp import DeepKernelGP
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.target_gp import (
    SCIPY_FTOL,
    MetaKernel,
    MetaPriorMean,
    TargetAdaptedGP,
    as_observations,
)
from grabnas.models.value_maps import rank_gauss


class MultiFidelityPriorMean(MetaPriorMean):
    """``c_f + a_f * m(x)``: :class:`MetaPriorMean` with one offset ``c_f ~ N(0, 1)`` and one scale
    ``a_f ~ N(1, 1)`` per fidelity, the fidelity index read from the input's last column (``m``
    reads the first ``meta_dims``)."""

    def __init__(self, prior: DeepKernelGP, meta_dims: int, num_fidelities: int) -> None:
        super().__init__(prior, meta_dims)
        self.scale.requires_grad_(False)  # replaced by the per-fidelity scales
        self.offset.requires_grad_(False)
        self.register_parameter("fidelity_offsets", torch.nn.Parameter(torch.zeros(num_fidelities, dtype=DTYPE)))
        self.register_parameter("fidelity_scales", torch.nn.Parameter(torch.ones(num_fidelities, dtype=DTYPE)))
        self.register_prior(
            "fidelity_offsets_prior",
            NormalPrior(torch.tensor(0.0, dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)),
            "fidelity_offsets",
        )
        self.register_prior(
            "fidelity_scales_prior",
            NormalPrior(torch.tensor(1.0, dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)),
            "fidelity_scales",
        )

    def forward(self, x: Tensor) -> Tensor:
        f = x[..., -1].round().long().clamp(0, self.fidelity_offsets.numel() - 1)
        return self.fidelity_offsets[f] + self.fidelity_scales[f] * self.meta_mean(x)


class CrossFidelityFactor(Kernel):
    """``1`` within a fidelity and ``rho`` across two (the fidelity index in the inputs' last
    column); ``rho = sigmoid(r)``, ``r ~ N(0, 1.5^2)`` (a priori rho's median is 0.5). Times the
    meta-learned covariance, it lets the target's paired observations (one cell at two
    fidelities) say how far the meta-learned relation between fidelities holds for the target;
    times the target kernel (``residual_rho``), how far the target's own residuals carry from one
    fidelity to the other."""

    has_lengthscale = False

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("raw_rho", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
        self.register_prior(
            "rho_prior",
            NormalPrior(torch.tensor(0.0, dtype=DTYPE), torch.tensor(1.5, dtype=DTYPE)),
            "raw_rho",
        )

    @property
    def rho(self) -> Tensor:
        return torch.sigmoid(self.raw_rho)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        f1, f2 = x1[..., -1].round(), x2[..., -1].round()
        if diag:
            return torch.ones_like(f1)
        same = (f1.unsqueeze(-1) == f2.unsqueeze(-2)).to(x1.dtype)
        return same + (1.0 - same) * self.rho


class SameFidelityKernel(Kernel):
    """``1[f = f']`` on the fidelity index in the inputs' last column: times another kernel, it
    keeps that kernel's covariance within one fidelity only."""

    has_lengthscale = False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        f1, f2 = x1[..., -1].round(), x2[..., -1].round()
        if diag:
            return (f1 == f2).to(x1.dtype)
        return (f1.unsqueeze(-1) == f2.unsqueeze(-2)).to(x1.dtype)


class MultiFidelityTargetGP(TargetAdaptedGP):
    """The target-adapted GP over observations at several fidelities (multi-fidelity GraB-NAS).

    Inputs are ``[d_f, z, f]``: the target's task embedding at fidelity ``f`` (the meta-trained
    surrogate's learned fidelity offset added to ``d``, :meth:`MetaSurrogate.task_embedding`), the
    latent ``z`` and the fidelity index ``f`` (the last column). The meta-learned mean and kernel
    read ``[d_f, z]``, so they carry the correlation between fidelities that meta-training learned
    from NB201's 12- and 200-epoch tasks; the target kernel reads ``z`` alone, within a fidelity
    (the default), shared by all fidelities (``shared_residual``) or across them times a fitted
    correlation (``residual_rho``: an intrinsic coregionalisation); the mean has one offset per fidelity
    (:class:`MultiFidelityPriorMean`). Targets are the normal scores of each fidelity's values
    among that fidelity's observations (a 12-epoch accuracy is not on the 200-epoch scale), and
    :attr:`best_f` is the best target of the target fidelity (None before it has one)."""

    def __init__(
        self,
        prior: DeepKernelGP,
        train_X: Tensor,
        values: Tensor,
        fidelity: Tensor,
        num_fidelities: int,
        meta_dims: int,
        target_dims: list[int],
        shared_residual: bool = False,
        cross_factor: bool = True,
        residual_rho: bool = False,
    ) -> None:
        if shared_residual and residual_rho:
            raise GrabnasError(
                "shared_residual and residual_rho both set; expected at most one (the target kernel shared "
                "by all fidelities, or across them times a fitted correlation)"
            )
        values = torch.as_tensor(values, dtype=DTYPE).reshape(-1)
        fidelity = torch.as_tensor(fidelity).reshape(-1).long()
        targets = torch.zeros_like(values)
        for f in fidelity.unique().tolist():
            mask = fidelity == f
            targets[mask] = rank_gauss(values[mask])
        self._num_fidelities = int(num_fidelities)
        self._shared_residual = bool(shared_residual)
        self._cross_factor = bool(cross_factor)
        self._residual_rho = bool(residual_rho)
        super().__init__(prior, train_X, values, target_dims=target_dims, meta_dims=meta_dims, targets=targets)
        self.fidelity = fidelity
        self.target_fidelity = int(num_fidelities) - 1
        self.units = "per-fidelity observation-scores"

    def _init_single_task(
        self, train_X, targets, likelihood, target_kernel, prior, prior_mean_kernel, meta_dims, mean_weight
    ) -> None:
        meta = MetaKernel(prior, meta_dims)
        covar = (meta * CrossFidelityFactor()) if self._cross_factor else meta
        if self._shared_residual:
            residual = target_kernel
        elif self._residual_rho:
            residual = target_kernel * CrossFidelityFactor()
        else:
            residual = target_kernel * SameFidelityKernel()
        covar = covar + residual
        SingleTaskGP.__init__(
            self,
            train_X.detach().to(DTYPE),
            targets.unsqueeze(-1),
            likelihood=likelihood,
            covar_module=covar,
            mean_module=MultiFidelityPriorMean(prior, meta_dims, self._num_fidelities),
            outcome_transform=None,
        )

    @property
    def best_f(self) -> Tensor | None:
        """The best observation of the target (last) fidelity in the model's units; None when
        it has none."""
        mask = self.fidelity == self.target_fidelity
        return self.train_targets[mask].max() if bool(mask.any()) else None

    @property
    def fitted_hyperparameters(self) -> dict[str, float]:
        meta, target = self.covar_module.kernels[:2]
        across = None if hasattr(target, "outputscale") else target.kernels[1]
        target = target if across is None else target.kernels[0]
        cross = meta.kernels[1] if not isinstance(meta, MetaKernel) else None
        meta = meta if isinstance(meta, MetaKernel) else meta.kernels[0]
        with torch.no_grad():
            if across is None:
                residual_rho = 1.0  # shared by all fidelities
            else:
                residual_rho = float(across.rho) if isinstance(across, CrossFidelityFactor) else 0.0
            out = {
                "cross_fidelity_rho": float(cross.rho) if cross is not None else 1.0,
                "residual_rho": residual_rho,
                "meta_factor": float(meta.factor),
                "target_scale": float(target.outputscale),
                "noise": float(self.likelihood.noise),
            }
            for i, (c, a) in enumerate(
                zip(self.mean_module.fidelity_offsets.tolist(), self.mean_module.fidelity_scales.tolist())
            ):
                out[f"offset_fidelity_{i}"], out[f"scale_fidelity_{i}"] = c, a
            return out


def fit_multifidelity_gp(
    surrogate,
    X: Tensor | None,
    values: Tensor | None,
    fidelity: Tensor | None,
    num_fidelities: int,
    *,
    seed: int = 0,
    warm_start: dict | None = None,
    maxiter: int = 50,
    task_prior_var: float = 1.0,
    variance_scale: float | None = None,
    shared_residual: bool = False,
    cross_factor: bool = True,
    residual_rho: bool = False,
):
    """Condition a :class:`~grabnas.models.surrogate.MetaSurrogate` on observations at several
    fidelities: ``(n, input_dim + 1)`` inputs ``[d_f, z, f]``, ``(n,)`` raw values and ``(n,)``
    fidelity indices (``num_fidelities - 1``: the target fidelity). With ``n < 2`` the zero-shot
    prior (a ``DeepKernelGP`` on ``[d, z]``), else a fitted :class:`MultiFidelityTargetGP`."""
    prior = surrogate.prior(task_prior_var, variance_scale)
    if X is None or values is None or fidelity is None or len(values) < 2:
        return prior
    X, values = as_observations(X, values)
    cfg = surrogate.config
    if X.shape[-1] != cfg.input_dim + 1:
        raise GrabnasError(
            f"multi-fidelity GP inputs have {X.shape[-1]} columns; expected {cfg.input_dim} + 1 ([d_f, z, f])"
        )
    gp = MultiFidelityTargetGP(
        prior,
        X,
        values,
        fidelity,
        num_fidelities,
        meta_dims=cfg.input_dim,
        target_dims=list(range(cfg.task_dim, cfg.input_dim)),
        shared_residual=shared_residual,
        cross_factor=cross_factor,
        residual_rho=residual_rho,
    )
    gp.fit(seed, maxiter=maxiter, warm_start=warm_start, ftol=SCIPY_FTOL)
    return gp


__all__ = [
    "CrossFidelityFactor",
    "MultiFidelityPriorMean",
    "MultiFidelityTargetGP",
    "SameFidelityKernel",
    "fit_multifidelity_gp",
]
