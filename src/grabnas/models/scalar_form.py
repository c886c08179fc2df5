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
:func:`scalar_hyperparameters` entry, in that order. The mean is written as a basis times
coefficients (``[1, m(x) - centre]`` times ``(c, a)``), so :class:`MultiFidelityScalarForm` can
give the multi-fidelity GP (one offset and scale per fidelity, a cross-fidelity factor) the same
closed form; :func:`scalar_form` picks the class.
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
    """``K`` settings of the scalars conditioned on the training data: ``beta`` ``(K, P)`` the
    prior mean's coefficients on its basis (``(c, a)`` of ``c + a (m - centre)``), ``noise``
    ``(K,)``, ``s`` ``(K, J)``, ``alpha`` ``(K, n)`` the solves of ``sum_j s_j U_j + noise I`` with
    the residuals ``y - B beta`` and ``L_inv`` ``(K, n, n)`` the inverses of its Cholesky factors."""

    beta: Tensor
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
        self.names = [name for name, _ in self.parameters_of(gp)]
        self._roles = [self._role(name) for name in self.names]
        with torch.no_grad():
            mean = gp.mean_module
            self._a0 = torch.tensor(1.0 if mean.marginal else float(mean.scale), dtype=DTYPE)
            self._c0 = torch.tensor(0.0 if mean.marginal else float(mean.offset), dtype=DTYPE)
            self._s0 = torch.stack([self._multiplier(k) for k in self.kernels]).to(DTYPE)
            self._noise0 = gp.likelihood.noise.detach().reshape(()).to(DTYPE)
        self._prepare()

    def _prepare(self) -> None:
        """The MAP scalars, the targets and what the scalars do not change at the training inputs
        (the mean's basis, the unit kernels, the other priors' log densities)."""
        X = self.gp.train_inputs[0]
        with torch.no_grad():
            self.raw_map = torch.cat([p.detach().reshape(-1) for _, p in self.parameters_of(self.gp)]).to(DTYPE)
            self.y = self.gp.train_targets.detach().reshape(-1).to(DTYPE)
            self._B_train = self._basis(X)  # (n, P)
            self._U_train = self._units(X, X, False)  # (J, n, n)
            self._constant = self._other_log_priors()

    def parameters_of(self, gp) -> list[tuple[str, torch.nn.Parameter]]:
        """``(name, parameter)`` of what the form varies, in the order of the raw coordinates
        (a parameter of ``k`` elements takes ``k`` of them)."""
        return scalar_hyperparameters(gp)

    def assign(self, gp, raw: Tensor) -> None:
        """Write the ``(p,)`` raw coordinates ``raw`` into ``gp``'s parameters (a copy of the MAP
        model: :meth:`HyperparameterMixture.component`)."""
        i = 0
        with torch.no_grad():
            for _, p in self.parameters_of(gp):
                p.copy_(raw[i : i + p.numel()].reshape(p.shape))
                i += p.numel()

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

    def _varied_priors(self) -> set[int]:
        """``id`` of every prior on a scalar the form varies."""
        return {id(self._prior_of(role)) for role in self._roles}

    def _other_log_priors(self) -> Tensor:
        """The log densities of the priors on what the form does not vary (lengthscales): a
        constant, added so :meth:`log_joint` equals GPyTorch's marginal likelihood plus priors."""
        varied = self._varied_priors()
        total = torch.zeros((), dtype=DTYPE)
        for _, module, prior, closure, _ in self.gp.named_priors():
            if id(prior) not in varied:
                total = total + prior.log_prob(closure(module)).sum()
        return total.detach()

    def values(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(beta, s, noise)`` (``(K, P)``, ``(K, J)``, ``(K,)``) of ``(K, p)`` raw scalars; here
        ``beta = (c, a)``."""
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
        return torch.stack([c, a], -1), torch.stack(s, -1), noise

    def _log_priors(self, raw: Tensor, values: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """``(K,)``: the varied scalars' log prior densities plus the log-Jacobians of the
        softplus transforms (``log sigmoid(raw)``), i.e. the prior density in raw coordinates."""
        beta, s, noise = values
        c, a = beta[:, 0], beta[:, 1]
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

    def refit_mean(self, raw: Tensor) -> Tensor:
        """``(K, p)`` raw scalars with the prior mean's offset and scale (those the form varies)
        replaced by their MAP given the rest of each row: with the kernel scalars and the noise
        fixed, the posterior of ``(c, a)`` under their normal priors is normal, and its mode is the
        generalised least-squares solve ``(B^T K^-1 B + D^-1)^-1 (B^T K^-1 y + D^-1 mu_0)``.
        What :func:`grabnas.models.hyper_mixture.swap_prior` uses when a new mean ``m`` comes with
        fixed kernel scalars. Rows are returned unchanged where the form varies
        neither coefficient."""
        free = [(i, kind) for i, (kind, _) in enumerate(self._roles) if kind in ("offset", "scale")]
        if not free:
            return raw
        beta, s, noise = self.values(raw)
        cols = [0 if kind == "offset" else 1 for _, kind in free]
        fixed = [c for c in (0, 1) if c not in cols]
        n = self.y.numel()
        cov = torch.einsum("kj,jab->kab", s, self._U_train) + noise.reshape(-1, 1, 1) * torch.eye(n, dtype=DTYPE)
        L = torch.linalg.cholesky(cov)
        B = self._B_train[:, cols]  # (n, f)
        y = self.y - beta[:, fixed] @ self._B_train[:, fixed].T if fixed else self.y.expand(raw.shape[0], n)
        KiB = torch.cholesky_solve(B.expand(raw.shape[0], n, len(cols)), L)  # (K, n, f)
        priors = [self._prior_of((kind, -1)) for _, kind in free]
        mu0 = torch.stack([p.loc.reshape(()).to(DTYPE) for p in priors])
        prec0 = torch.stack([p.scale.reshape(()).to(DTYPE) ** -2 for p in priors])
        A = B.T @ KiB + torch.diag(prec0)  # (K, f, f)
        b = (KiB * y.unsqueeze(-1)).sum(-2) + prec0 * mu0  # (K, f)
        coef = torch.linalg.solve(A, b)
        out = raw.clone()
        for k, (i, _) in enumerate(free):
            out[:, i] = coef[:, k]  # the mean's coefficients are unconstrained: raw = value
        return out

    # -- densities and posteriors ---------------------------------------------------------------
    def condition(self, raw: Tensor) -> tuple[Conditioned, Tensor]:
        """``(conditioned, log_joint)`` of ``(K, p)`` raw scalars; ``log_joint`` ``(K,)`` is
        ``log p(y | theta) + log p(theta) + log |d theta / d raw|`` (``-inf`` where the covariance
        is not positive definite), with gradients to ``raw``."""
        values = self.values(raw)
        beta, s, noise = values
        n = self.y.numel()
        cov = torch.einsum("kj,jab->kab", s, self._U_train) + noise.reshape(-1, 1, 1) * torch.eye(n, dtype=DTYPE)
        L, info = torch.linalg.cholesky_ex(cov)
        bad = info > 0
        if bool(bad.any()):
            L = torch.where(bad.reshape(-1, 1, 1), torch.eye(n, dtype=DTYPE).expand_as(L), L)
        residual = self.y - beta @ self._B_train.T  # (K, n)
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
        return Conditioned(beta=beta, s=s, noise=noise, alpha=alpha, L_inv=L_inv), log_joint

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
        cross = self._units(X, T, False)  # (J, ..., q, n)
        test = self._units(X, X, not full)  # (J, ..., q[, q])
        base = self._basis(X)  # (..., q, P)
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
        ``(J, ..., q, q)`` (``(J, ..., q)`` marginal) and the mean's basis ``(..., q, P)``:
        ``K_x = sum_j s_j U_j(x, T)``, mean ``basis beta + K_x alpha``, covariance
        ``sum_j s_j U_j(x, x) - V V^T`` with ``V = K_x L^-T``."""
        k, n = parts.alpha.shape
        lead = (k,) + (1,) * (base.dim() - 1)
        Kx = (parts.s @ cross.reshape(cross.shape[0], -1)).reshape((k,) + cross.shape[1:])
        prior_mean = torch.einsum("...p,kp->k...", base, parts.beta)
        mean = prior_mean + (Kx @ parts.alpha.reshape(lead[:-1] + (n, 1))).squeeze(-1)
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
    def _basis(self, X: Tensor) -> Tensor:
        """``(..., q, P)``: the prior mean's basis, ``[1, m(x) - centre]`` (times ``beta = (c, a)``)."""
        mean = self.gp.mean_module
        m = mean.meta_mean(X) - mean.centre
        return torch.stack([torch.ones_like(m), m], -1)

    def _units(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        """``(J, ..., q1, q2)`` (``(J, ..., q)`` with ``diag``): every summand's unit kernel."""
        return torch.stack([self._unit(kern, x1, x2, diag) for kern in self.kernels])

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


class MultiFidelityScalarForm(ScalarForm):
    """A fitted :class:`~grabnas.models.multifidelity_gp.MultiFidelityTargetGP` (its default form: the
    cross-fidelity factor on the meta-learned covariance, the target kernel within a fidelity) as
    a function of its scalars::

        y(x) ~ GP(c_f + a_f m(x),  s_meta K_meta (1[f = f'] + rho 1[f != f']) + s_t k_t(z, z') 1[f = f']) + N(0, noise)

    Raw coordinates: the noise, the ``F`` offsets ``c_f``, the ``F`` scales ``a_f``, ``s_meta``,
    ``rho`` (its raw value ``r``, ``rho = sigmoid(r)``) and ``s_t``; the unit kernels are
    ``K_meta 1[f = f']``, ``K_meta 1[f != f']`` (multiplier ``s_meta rho``) and ``k_t 1[f = f']``;
    the mean's basis is ``[1[f = j]]_j`` then ``[1[f = j] m(x)]_j``. ``f`` is the inputs' last column.

    Raises:
        GrabnasError: ``gp`` is not a multi-fidelity GP of that form.
    """

    def __init__(self, gp) -> None:
        from gpytorch.kernels import ProductKernel, ScaleKernel

        from grabnas.models.multifidelity_gp import (
            CrossFidelityFactor,
            MultiFidelityPriorMean,
            SameFidelityKernel,
        )
        from grabnas.models.target_gp import MetaKernel

        kernels = list(getattr(gp.covar_module, "kernels", []))
        parts = [list(getattr(k, "kernels", [])) for k in kernels]
        shapes = [[type(k) for k in part] for part in parts]
        if not (
            type(gp.mean_module) is MultiFidelityPriorMean
            and len(kernels) == 2
            and all(isinstance(k, ProductKernel) for k in kernels)
            and shapes == [[MetaKernel, CrossFidelityFactor], [ScaleKernel, SameFidelityKernel]]
        ):
            raise GrabnasError(
                "integrating out a multi-fidelity GP's scalars needs its default form: the meta-learned "
                "covariance times the cross-fidelity factor plus the target kernel within a fidelity"
            )
        self.gp = gp
        self._meta, self._cross = parts[0]
        self._target, self._same = parts[1]
        self.num_fidelities = int(gp.mean_module.fidelity_offsets.numel())
        self.names = [name for name, _ in self.parameters_of(gp)]
        self._prepare()

    def parameters_of(self, gp) -> list[tuple[str, torch.nn.Parameter]]:
        (meta, cross), (target, _) = [k.kernels for k in gp.covar_module.kernels]
        return [
            ("likelihood.noise_covar.raw_noise", gp.likelihood.noise_covar.raw_noise),
            ("mean_module.fidelity_offsets", gp.mean_module.fidelity_offsets),
            ("mean_module.fidelity_scales", gp.mean_module.fidelity_scales),
            ("covar_module.kernels.0.kernels.0.raw_factor", meta.raw_factor),
            ("covar_module.kernels.0.kernels.1.raw_rho", cross.raw_rho),
            ("covar_module.kernels.1.kernels.0.raw_outputscale", target.raw_outputscale),
        ]

    def _varied_priors(self) -> set[int]:
        mean = self.gp.mean_module
        priors = (
            self.gp.likelihood.noise_covar.noise_prior,
            mean.fidelity_offsets_prior,
            mean.fidelity_scales_prior,
            self._meta.factor_prior,
            self._cross.rho_prior,
            self._target.outputscale_prior,
        )
        return {id(p) for p in priors}

    def _split(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``raw`` ``(K, p)`` -> its raw noise, offsets ``(K, F)``, scales ``(K, F)``, factor, rho, scale."""
        F = self.num_fidelities
        return (
            raw[:, 0],
            raw[:, 1 : 1 + F],
            raw[:, 1 + F : 1 + 2 * F],
            raw[:, 1 + 2 * F],
            raw[:, 2 + 2 * F],
            raw[:, 3 + 2 * F],
        )

    def values(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(beta, s, noise)``: ``beta = (c_0..c_F-1, a_0..a_F-1)``, ``s = (s_meta, s_meta rho, s_t)``."""
        r_noise, offsets, scales, r_factor, r_rho, r_scale = self._split(raw)
        noise = self.gp.likelihood.noise_covar.raw_noise_constraint.transform(r_noise)
        s_meta = self._meta.raw_factor_constraint.transform(r_factor).clamp_min(1e-12)
        s_t = self._target.raw_outputscale_constraint.transform(r_scale)
        s = torch.stack([s_meta, s_meta * torch.sigmoid(r_rho), s_t], -1)
        return torch.cat([offsets, scales], -1), s, noise

    def _log_priors(self, raw: Tensor, values: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """The priors in raw coordinates: on the noise, ``s_meta`` and ``s_t`` with the softplus
        log-Jacobians, on the offsets, scales and ``r`` as they are."""
        r_noise, offsets, scales, r_factor, r_rho, r_scale = self._split(raw)
        _, s, noise = values
        mean = self.gp.mean_module
        k = raw.shape[0]

        def log_prob(prior, value: Tensor) -> Tensor:
            return prior.log_prob(value.unsqueeze(-1)).reshape(k, -1).sum(-1)

        logsig = torch.nn.functional.logsigmoid
        return (
            log_prob(self.gp.likelihood.noise_covar.noise_prior, noise)
            + logsig(r_noise)
            + log_prob(mean.fidelity_offsets_prior, offsets)
            + log_prob(mean.fidelity_scales_prior, scales)
            + log_prob(self._meta.factor_prior, s[:, 0])
            + logsig(r_factor)
            + log_prob(self._cross.rho_prior, r_rho)
            + log_prob(self._target.outputscale_prior, s[:, 2])
            + logsig(r_scale)
        )

    def _fidelity_indicator(self, x: Tensor) -> Tensor:
        """``(..., q, F)`` one-hot fidelity of ``(..., q, D)`` inputs."""
        f = x[..., -1].round().long().clamp(0, self.num_fidelities - 1)
        return torch.nn.functional.one_hot(f, self.num_fidelities).to(DTYPE)

    def _basis(self, X: Tensor) -> Tensor:
        onehot = self._fidelity_indicator(X)
        return torch.cat([onehot, onehot * self.gp.mean_module.meta_mean(X).unsqueeze(-1)], -1)

    def _units(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        meta = self._meta.unit(x1, x2, diag)
        target = self._unit(self._target, x1, x2, diag)
        if diag:
            return torch.stack([meta, torch.zeros_like(meta), target])
        same = self._unit(self._same, x1, x2, False)
        return torch.stack([meta * same, meta * (1.0 - same), target * same])


def scalar_form(gp) -> ScalarForm:
    """The scalar form of a fitted target-adapted GP, single- or multi-fidelity."""
    from grabnas.models.multifidelity_gp import MultiFidelityTargetGP

    return MultiFidelityScalarForm(gp) if isinstance(gp, MultiFidelityTargetGP) else ScalarForm(gp)


__all__ = ["Conditioned", "MultiFidelityScalarForm", "ScalarForm", "scalar_form", "scalar_hyperparameters"]
