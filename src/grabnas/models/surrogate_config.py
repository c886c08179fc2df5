"""The surrogate's configuration: :class:`SurrogateConfig` (sizes of ``X = concat[d, z]``, the
feature MLP and the task encoder, the kernel, the per-task value transform, fidelities, per-task
offsets and the new-task variance table) and the constants it validates against (``DTYPE``, the
float64 the GP computes in; ``KERNELS``; ``VALUE_TRANSFORMS``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from grabnas.errors import GrabnasError

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
            (:func:`grabnas.meta.calibration.calibrate_new_task_variance`); empty: 1,
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
