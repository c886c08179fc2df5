"""Dataset encoder: a Set Transformer applied twice (MetaD2A), and the task encoder around it.

* Set Transformer blocks (Lee et al., ICML 2019): :class:`MAB`, :class:`SAB`, :class:`ISAB`
  and :class:`PMA`.
* :class:`DatasetEncoder`: instance features of a task grouped by class, ``(K, k, F)`` (K
  classes, k instances each), go through ISAB + PMA *within each class* (instances -> one
  class prototype), then SAB + PMA *across classes* (prototypes -> one dataset vector), then a
  linear map to the task embedding ``d`` (Lee et al., MetaD2A, ICLR 2021). Both stages are
  permutation invariant, so neither the order of instances nor that of classes matters.
* :class:`TaskEncoder`: ``d`` of a task, from its instance features through the dataset
  encoder, or a learned "no data" embedding for a task without data samples (e.g. a tabular
  benchmark's task); plus a learned offset per fidelity label seen in meta-training (e.g.
  NB201's 12-epoch tasks), none for the main fidelity.

Instance features come from a pluggable image feature extractor
(:mod:`grabnas.models.feature_extractor`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from grabnas.errors import GrabnasError


class MAB(nn.Module):
    """Multihead attention block: ``H = LN(Q + MHA(Q, K, K))``, ``out = LN(H + rFF(H))``."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise GrabnasError(f"attention width {dim} is not divisible by {heads} heads")
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        h = self.ln1(q + self.attn(q, k, k, need_weights=False)[0])
        return self.ln2(h + self.ff(h))


class SAB(nn.Module):
    """Set attention block: ``MAB(X, X)``."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.mab = MAB(dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.mab(x, x)


class ISAB(nn.Module):
    """Induced set attention block: ``MAB(X, MAB(I, X))`` with ``m`` learned inducing points."""

    def __init__(self, dim: int, num_inducing: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(1, num_inducing, dim) / math.sqrt(dim))
        self.mab1 = MAB(dim, heads)
        self.mab2 = MAB(dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mab1(self.inducing.expand(x.shape[0], -1, -1), x)
        return self.mab2(x, h)


class PMA(nn.Module):
    """Pooling by multihead attention: ``MAB(S, rFF(X))`` with ``k`` learned seed vectors."""

    def __init__(self, dim: int, num_seeds: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.randn(1, num_seeds, dim) / math.sqrt(dim))
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.mab = MAB(dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.mab(self.seeds.expand(x.shape[0], -1, -1), self.ff(x))


class DatasetEncoder(nn.Module):
    """``(K, k, F)`` per-class instance features -> ``(out_dim,)`` dataset embedding.

    A leading batch dimension, ``(B, K, k, F) -> (B, out_dim)``, is accepted too.
    """

    def __init__(self, instance_dim: int, dim: int, out_dim: int, num_inducing: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.instance_dim = instance_dim
        self.proj = nn.Linear(instance_dim, dim)
        self.intra = nn.Sequential(ISAB(dim, num_inducing, heads))
        self.intra_pool = PMA(dim, 1, heads)
        self.inter = SAB(dim, heads)
        self.inter_pool = PMA(dim, 1, heads)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[-1] != self.instance_dim:
            raise GrabnasError(
                f"the dataset encoder expects instance features of shape (K classes, k instances, {self.instance_dim}), "
                f"got {tuple(x.shape[-3:]) if x.dim() >= 3 else tuple(x.shape)}"
            )
        b, k_cls, k_inst, _ = x.shape
        h = self.proj(x.reshape(b * k_cls, k_inst, -1))
        proto = self.intra_pool(self.intra(h)).reshape(b, k_cls, -1)  # class prototypes
        emb = self.inter_pool(self.inter(proto)).squeeze(1)  # (b, dim)
        out = self.out(emb)
        return out.squeeze(0) if single else out


def fidelity_of(task: str, fidelities: tuple[str, ...]) -> str | None:
    """The fidelity label of a task named ``dataset@fidelity`` when it is one of ``fidelities``
    (None: the main fidelity)."""
    if "@" in task and task.rsplit("@", 1)[1] in fidelities:
        return task.rsplit("@", 1)[1]
    return None


class TaskEncoder(nn.Module):
    """Task embedding ``d``: dataset encoder or the learned "no data" vector, plus a fidelity
    offset, plus (with ``task_offsets`` in the config) a learned offset per meta-training task.

    Built from a :class:`grabnas.models.surrogate_config.SurrogateConfig` (``task_dim``,
    ``fidelities``, ``dataset_encoder``, ``instance_dim``, ``encoder_dim``).
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.task_dim = config.task_dim
        self.fidelities = tuple(config.fidelities)
        self.no_data = nn.Parameter(torch.zeros(config.task_dim))
        self.fidelity_offsets = nn.Parameter(torch.zeros(len(self.fidelities), config.task_dim))
        self.task_names = tuple(config.task_offsets)
        #: ``(len(task_names), task_dim)`` learned offset of each meta-training task (none: empty)
        self.task_offsets = nn.Parameter(torch.zeros(len(self.task_names), config.task_dim))
        self.dataset_encoder = (
            DatasetEncoder(config.instance_dim, config.encoder_dim, config.task_dim) if config.dataset_encoder else None
        )

    @property
    def has_dataset_encoder(self) -> bool:
        return self.dataset_encoder is not None

    def forward(
        self, instance_features: Tensor | None = None, fidelity: str | None = None, task: str | None = None
    ) -> Tensor:
        """``(task_dim,)``. Without a dataset encoder, instance features are ignored (the task
        counts as one without data). ``task``: a meta-training task's name adds its learned
        offset (when the config has ``task_offsets``); any other name adds none."""
        if instance_features is not None and self.dataset_encoder is not None:
            p = next(self.dataset_encoder.parameters())
            d = self.dataset_encoder(torch.as_tensor(instance_features).to(p.dtype))
        else:
            d = self.no_data
        if fidelity is not None:
            try:
                i = self.fidelities.index(str(fidelity))
            except ValueError:
                known = ", ".join(self.fidelities) or "none"
                raise GrabnasError(
                    f"unknown fidelity {fidelity!r} for this surrogate; expected None (main) or one seen in meta-training ({known})"
                ) from None
            d = d + self.fidelity_offsets[i]
        if task is not None and task in self.task_names:
            d = d + self.task_offsets[self.task_names.index(task)]
        elif self.task_names:  # a new task: the centre of the meta-training tasks of its fidelity
            same = [i for i, t in enumerate(self.task_names) if fidelity_of(t, self.fidelities) == fidelity]
            d = d + self.task_offsets[same or list(range(len(self.task_names)))].mean(0)
        return d


__all__ = ["DatasetEncoder", "ISAB", "MAB", "PMA", "SAB", "TaskEncoder", "fidelity_of"]
