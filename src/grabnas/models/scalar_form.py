"""The target-adapted GP as a closed-form function of its scalar hyperparameters.

Once its lengthscales are fixed, a :class:`~grabnas.models.target_gp.TargetAdaptedGP` is::

    y(x) ~ GP(c + a * (m(x) - centre),  sum_j s_j U_j(x, x')) + N(0, noise)

with the meta-learned mean ``m`` and every unit kernel ``U_j`` fixed (the frozen meta-learned
covariance of :class:`~grabnas.models.target_gp.MetaKernel`, the base kernel of each
``ScaleKernel``, a parameter-free kernel as it is) and only the scalars ``a, c, s_j, noise`` free.
:class:`ScalarForm` evaluates ``m`` and the ``U_j`` at the training inputs once; the log joint
density of ``K`` settings of the scalars and the ``K`` posteriors at new inputs are then batched
``n x n`` linear algebra over one evaluation of the unit kernels, instead of ``K`` GPyTorch models
that each evaluate every kernel again. :mod:`grabnas.models.hyper_mixture` integrates the scalars
out with it; the numbers are the GPyTorch model's (tested against it).

Scalars are given in the raw (unconstrained) coordinates GPyTorch optimises, one column per
:func:`scalar_hyperparameters` entry, in that order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.surrogate_config import DTYPE

_KERNEL_SCALAR = re.compile(r"covar_module\.kernels\.(\d+)\.raw_(factor|outputscale)")


def scalar_hyperparameters(gp) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of the trainable one-element parameters of ``gp`` other than
    lengthscales: the hyperparameters a :class:`ScalarForm` varies."""
    return [
        (name, p)
        for name, p in gp.named_parameters()
        if p.requires_grad and p.numel() == 1 and "lengthscale" not in name
    ]


@dataclass
class Conditioned:
    """``K`` settings of the scalars conditioned on the training data: ``a, c, noise`` ``(K,)``,
    ``s`` ``(K, J)``, ``alpha`` ``(K, n)`` the solves of ``sum_j s_j U_j + noise I`` with the
    residuals ``y - c - a (m - centre)`` and ``L_inv`` ``(K, n, n)`` the inverses of its Cholesky
    factors."""

    a: Tensor
    c: Tensor
    s: Tensor
    noise: Tensor
    alpha: Tensor
    L_inv: Tensor


class ScalarForm:
    """A fitted :class:`~grabnas.models.target_gp.TargetAdaptedGP` ``gp`` as a function of its
    ``p`` scalar hyperparameters (see the module docstring). ``gp`` is read, never changed: the
    scalars it does not vary (e.g. a fixed prior-mean weight) keep its values.

    Raises:
        GrabnasError: ``gp`` is not of that form (another mean, or a scalar hyperparameter that is
            not the noise, the prior mean's scale or offset, or a kernel's factor or output scale).
    """

    def __init__(self, gp) -> None:
        from gpytorch.kernels import AdditiveKernel

        from grabnas.models.target_gp import MetaPriorMean

        if type(gp.mean_module) is not MetaPriorMean or not isinstance(gp.covar_module, AdditiveKernel):
            raise GrabnasError(
                "integrating out the scalar hyperparameters needs a target-adapted GP with the mean "
                "c + a * m(x) and a sum of kernels"
            )
        self.gp = gp
        self.kernels = list(gp.covar_module.kernels)
        named = scalar_hyperparameters(gp)
        self.names = [name for name, _ in named]
        self._roles = [self._role(name) for name in self.names]
        X = gp.train_inputs[0]
        with torch.no_grad():
            self.raw_map = torch.stack([p.detach().reshape(()) for _, p in named]).to(DTYPE)
            self.y = gp.train_targets.detach().reshape(-1).to(DTYPE)
            self._m_train = self._mean_base(X)
            self._U_train = torch.stack([self._unit(k, X, X, False) for k in self.kernels])  # (J, n, n)
            mean = gp.mean_module
            self._a0 = torch.tensor(1.0 if mean.marginal else float(mean.scale), dtype=DTYPE)
            self._c0 = torch.tensor(0.0 if mean.marginal else float(mean.offset), dtype=DTYPE)
            self._s0 = torch.stack([self._multiplier(k) for k in self.kernels]).to(DTYPE)
            self._noise0 = gp.likelihood.noise.detach().reshape(()).to(DTYPE)
            self._constant = self._other_log_priors()

    # -- the scalars ----------------------------------------------------------------------------
    def _role(self, name: str) -> tuple[str, int]:
        from gpytorch.kernels import ScaleKernel

        from grabnas.models.target_gp import MetaKernel

        if name == "likelihood.noise_covar.raw_noise":
            return "noise", -1
        if name in ("mean_module.scale", "mean_module.offset"):
            return name.rpartition(".")[2], -1
        match = _KERNEL_SCALAR.fullmatch(name)
        if match:
            j, kind = int(match.group(1)), match.group(2)
            expected = MetaKernel if kind == "factor" else ScaleKernel
            if isinstance(self.kernels[j], expected):
                return "kernel", j
        raise GrabnasError(
            f"cannot integrate out the hyperparameter {name!r}; expected the noise, the prior mean's "
            "scale or offset, or a kernel's factor or output scale"
        )

    @staticmethod
    def _multiplier(kernel) -> Tensor:
        from gpytorch.kernels import ScaleKernel

        from grabnas.models.target_gp import MetaKernel

        if isinstance(kernel, MetaKernel):
            return kernel.factor.detach().reshape(())
        if isinstance(kernel, ScaleKernel):
            return kernel.outputscale.detach().reshape(())
        return torch.ones((), dtype=DTYPE)

    def _kernel_value(self, j: int, raw: Tensor) -> Tensor:
        from grabnas.models.target_gp import MetaKernel

        kernel = self.kernels[j]
        if isinstance(kernel, MetaKernel):
            return kernel.raw_factor_constraint.transform(raw).clamp_min(1e-12)
        return kernel.raw_outputscale_constraint.transform(raw)

    def _prior_of(self, role: tuple[str, int]):
        from grabnas.models.target_gp import MetaKernel

        kind, j = role
        if kind == "noise":
            return getattr(self.gp.likelihood.noise_covar, "noise_prior", None)
        if kind in ("scale", "offset"):
            return getattr(self.gp.mean_module, f"{kind}_prior", None)
        kernel = self.kernels[j]
        return getattr(kernel, "factor_prior" if isinstance(kernel, MetaKernel) else "outputscale_prior", None)

    def _other_log_priors(self) -> Tensor:
        """The log densities of the priors on what the form does not vary (lengthscales): a
        constant, added so :meth:`log_joint` equals GPyTorch's marginal likelihood plus priors."""
        varied = {id(self._prior_of(role)) for role in self._roles}
        total = torch.zeros((), dtype=DTYPE)
        for _, module, prior, closure, _ in self.gp.named_priors():
            if id(prior) not in varied:
                total = total + prior.log_prob(closure(module)).sum()
        return total.detach()

    def values(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(a, c, s, noise)`` (``(K,)``, ``(K,)``, ``(K, J)``, ``(K,)``) of ``(K, p)`` raw scalars."""
        k = raw.shape[0]
        a, c, noise = self._a0.expand(k), self._c0.expand(k), self._noise0.expand(k)
        s = [self._s0[j].expand(k) for j in range(len(self.kernels))]
        for i, (kind, j) in enumerate(self._roles):
            r = raw[:, i]
            if kind == "scale":
                a = r
            elif kind == "offset":
                c = r
            elif kind == "noise":
                noise = self.gp.likelihood.noise_covar.raw_noise_constraint.transform(r)
            else:
                s[j] = self._kernel_value(j, r)
        return a, c, torch.stack(s, -1), noise

    def _log_priors(self, raw: Tensor, values: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        """``(K,)``: the varied scalars' log prior densities plus the log-Jacobians of the
        softplus transforms (``log sigmoid(raw)``), i.e. the prior density in raw coordinates."""
        a, c, s, noise = values
        total = torch.zeros(raw.shape[0], dtype=DTYPE)
        for i, role in enumerate(self._roles):
            kind, j = role
            value = s[:, j] if kind == "kernel" else {"scale": a, "offset": c, "noise": noise}[kind]
            prior = self._prior_of(role)
            if prior is not None:
                total = total + prior.log_prob(value.unsqueeze(-1)).reshape(raw.shape[0], -1).sum(-1)
            if kind in ("noise", "kernel"):  # softplus(raw) + lower bound
                total = total + torch.nn.functional.logsigmoid(raw[:, i])
        return total

    # -- densities and posteriors ---------------------------------------------------------------
    def condition(self, raw: Tensor) -> tuple[Conditioned, Tensor]:
        """``(conditioned, log_joint)`` of ``(K, p)`` raw scalars; ``log_joint`` ``(K,)`` is
        ``log p(y | theta) + log p(theta) + log |d theta / d raw|`` (``-inf`` where the covariance
        is not positive definite), with gradients to ``raw``."""
        values = self.values(raw)
        a, c, s, noise = values
        n = self.y.numel()
        cov = torch.einsum("kj,jab->kab", s, self._U_train) + noise.reshape(-1, 1, 1) * torch.eye(n, dtype=DTYPE)
        L, info = torch.linalg.cholesky_ex(cov)
        bad = info > 0
        if bool(bad.any()):
            L = torch.where(bad.reshape(-1, 1, 1), torch.eye(n, dtype=DTYPE).expand_as(L), L)
        residual = self.y - c.unsqueeze(-1) - a.unsqueeze(-1) * self._m_train  # (K, n)
        half = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False)  # (K, n, 1)
        alpha = torch.linalg.solve_triangular(L.transpose(-1, -2), half, upper=True).squeeze(-1)
        log_lik = (
            -0.5 * (half.squeeze(-1) ** 2).sum(-1)
            - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
            - 0.5 * n * math.log(2 * math.pi)
        )
        log_joint = log_lik + self._log_priors(raw, values) + self._constant
        log_joint = torch.where(bad, torch.full_like(log_joint, -math.inf), log_joint)
        L_inv = torch.linalg.solve_triangular(L, torch.eye(n, dtype=DTYPE).expand_as(L), upper=False)
        return Conditioned(a=a, c=c, s=s, noise=noise, alpha=alpha, L_inv=L_inv), log_joint

    def log_joint(self, raw: Tensor) -> Tensor:
        """``(K,)`` log joint density of ``(K, p)`` raw scalars (see :meth:`condition`)."""
        return self.condition(raw)[1]

    def predict(
        self, parts: Conditioned, X: Tensor, full: bool, observation_noise: bool = False, chunk: int = 4096
    ) -> tuple[Tensor, Tensor]:
        """The ``K`` posteriors at ``(..., q, D)`` inputs: means ``(K, ..., q)`` and either marginal
        variances ``(K, ..., q)`` or, with ``full``, covariances ``(K, ..., q, q)``; with gradients
        to ``X``. ``observation_noise``: of a new observation rather than of ``f``. The unit
        kernels are evaluated once for all ``K``; the marginals of a ``(q, D)`` set are combined
        ``chunk`` rows at a time (the ``(K, chunk, n)`` intermediates stay in cache)."""
        T = self.gp.train_inputs[0]
        cross = torch.stack([self._unit(kern, X, T, False) for kern in self.kernels])  # (J, ..., q, n)
        test = torch.stack([self._unit(kern, X, X, not full) for kern in self.kernels])  # (J, ..., q[, q])
        base = self._mean_base(X)  # (..., q)
        if full or X.dim() != 2 or X.shape[0] <= chunk:
            return self._combine(parts, cross, test, base, full, observation_noise)
        pieces = [
            self._combine(
                parts, cross[:, i : i + chunk], test[:, i : i + chunk], base[i : i + chunk], False, observation_noise
            )
            for i in range(0, X.shape[0], chunk)
        ]
        return torch.cat([m for m, _ in pieces], -1), torch.cat([v for _, v in pieces], -1)

    @staticmethod
    def _combine(
        parts: Conditioned, cross: Tensor, test: Tensor, base: Tensor, full: bool, observation_noise: bool
    ) -> tuple[Tensor, Tensor]:
        """:meth:`predict` from the unit kernels ``cross`` ``(J, ..., q, n)`` and ``test``
        ``(J, ..., q, q)`` (``(J, ..., q)`` marginal) and the mean base ``(..., q)``:
        ``K_x = sum_j s_j U_j(x, T)``, mean ``c + a base + K_x alpha``, covariance
        ``sum_j s_j U_j(x, x) - V V^T`` with ``V = K_x L^-T``."""
        k, n = parts.alpha.shape
        lead = (k,) + (1,) * base.dim()
        Kx = (parts.s @ cross.reshape(cross.shape[0], -1)).reshape((k,) + cross.shape[1:])
        mean = (
            parts.c.reshape(lead)
            + parts.a.reshape(lead) * base
            + (Kx @ parts.alpha.reshape(lead[:-1] + (n, 1))).squeeze(-1)
        )
        V = Kx @ parts.L_inv.transpose(-1, -2).reshape(lead[:-1] + (n, n))
        prior = (parts.s @ test.reshape(test.shape[0], -1)).reshape((k,) + test.shape[1:])
        noise = parts.noise.reshape(lead) if observation_noise else None
        if full:
            cov = prior - V @ V.transpose(-1, -2)
            if noise is not None:
                cov = cov + noise.unsqueeze(-1) * torch.eye(cov.shape[-1], dtype=DTYPE)
            return mean, cov
        var = prior - (V * V).sum(-1)
        return mean, var if noise is None else var + noise

    # -- the fixed parts ------------------------------------------------------------------------
    def _mean_base(self, X: Tensor) -> Tensor:
        """``(..., q)``: ``m(x) - centre`` (the mean before its scale and offset)."""
        mean = self.gp.mean_module
        return mean.meta_mean(X) - mean.centre

    @staticmethod
    def _unit(kernel, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        """The unit kernel ``U_j`` of a summand: dense ``(..., q1, q2)``, or ``(..., q)`` with ``diag``."""
        from gpytorch.kernels import ScaleKernel

        from grabnas.models.target_gp import MetaKernel

        if isinstance(kernel, MetaKernel):
            out = kernel.unit(x1, x2, diag)
        elif isinstance(kernel, ScaleKernel):
            out = kernel.base_kernel(x1, x2, diag=diag)
        else:
            out = kernel(x1, x2, diag=diag)
        return out.to_dense() if hasattr(out, "to_dense") else out


__all__ = ["Conditioned", "ScalarForm", "scalar_hyperparameters"]
