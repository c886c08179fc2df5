"""An ensemble of meta-trained surrogates as one latent surrogate for GraB-NAS.

Surrogates meta-trained on the same corpus with different seeds agree on the coarse ranking of a
pool but order its best members differently (on NB201 the number of evaluations a search needs to
reach the optimum changes with the meta-training seed: `benchmarks/meta_seed_variance.sh`).
:class:`EnsembleLatentSurrogate` conditions every member on the target's observations and
combines their posteriors as an equally weighted mixture, moment-matched to one Gaussian
(:class:`MixtureModel`), so every BoTorch acquisition works on it unchanged and it stays
differentiable in the latents (for the search's gradient ascent).

Units: each member maps observed values to its own units (the rank-gauss adaptation of
:meth:`grabnas.models.surrogate.MetaSurrogate.fit`); the members see the same observations of the
same task, so their units nearly agree, and the mixture's incumbent (``best_f``) is the mean of
theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from grabnas.errors import GrabnasError


class MixtureModel(Model):
    """The equally weighted mixture of single-output BoTorch models, moment-matched.

    For inputs ``X`` ``(..., q, D)`` with member means ``m_k`` ``(..., q)`` and covariances
    ``S_k`` ``(..., q, q)``: mean ``m = mean_k m_k`` and covariance
    ``mean_k (S_k + m_k m_k^T) - m m^T`` (the mixture's exact first two moments; PSD). With
    ``q = 1`` only variances are formed, so scoring ``(b, 1, D)`` candidates costs the members'
    marginals.
    """

    _num_outputs = 1

    def __init__(self, models: Sequence[Model]) -> None:
        super().__init__()
        if not models:
            raise GrabnasError("a mixture needs at least one model")
        self.models = list(models)

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    @property
    def best_f(self) -> Tensor | None:
        """The mean of the members' incumbents in their units; None while any is zero-shot."""
        values = [getattr(m, "best_f", None) for m in self.models]
        if any(v is None for v in values):
            return None
        return torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in values]).mean()

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        posts = [m.posterior(X, observation_noise=observation_noise) for m in self.models]
        means = torch.stack([p.mean.squeeze(-1) for p in posts])  # (K, ..., q)
        mean = means.mean(0)
        if X.shape[-2] == 1:
            second = torch.stack([p.variance.squeeze(-1) for p in posts]) + means**2
            var = (second.mean(0) - mean**2).clamp_min(1e-12)
            mvn = MultivariateNormal(mean, DiagLinearOperator(var))
        else:
            covs = torch.stack([p.distribution.covariance_matrix for p in posts])  # (K, ..., q, q)
            second = covs + means.unsqueeze(-1) * means.unsqueeze(-2)
            cov = second.mean(0) - mean.unsqueeze(-1) * mean.unsqueeze(-2)
            mvn = MultivariateNormal(mean, 0.5 * (cov + cov.transpose(-1, -2)))
        post = GPyTorchPosterior(mvn)
        return posterior_transform(post, X=X) if posterior_transform is not None else post


class EnsembleLatentSurrogate:
    """:class:`grabnas.search.grabnas.LatentSurrogate` from several ones (typically
    :class:`grabnas.models.latent_surrogate.MetaLatentSurrogate` of surrogates meta-trained with different
    seeds); ``fit`` conditions each on the observations and returns their :class:`MixtureModel`.
    """

    def __init__(self, members: Sequence) -> None:
        if len(members) < 2:
            raise GrabnasError(f"an ensemble needs at least two surrogates, got {len(members)}")
        self.members = list(members)

    @property
    def fit_options(self) -> dict:
        return dict(getattr(self.members[0], "fit_options", {}))

    @property
    def task_weights(self) -> dict[str, float]:
        """The members' task-term weights (see ``MetaLatentSurrogate.task_weights``), averaged."""
        weights = [getattr(m, "task_weights", {}) for m in self.members]
        names = sorted(set().union(*weights))
        return {n: sum(w.get(n, 0.0) for w in weights) / len(weights) for n in names}

    def fingerprint(self) -> str:
        """A short hash of the members' weights (order matters: it sets no result, but a resumed
        study must be the same ensemble)."""
        h = hashlib.sha256("+".join(m.fingerprint() for m in self.members).encode())
        return h.hexdigest()[:16]

    def fit(self, z: Tensor, y: Tensor, **options: object) -> MixtureModel:
        """Each member fitted to ``z`` ``(n, D)``, ``y`` ``(n,)`` (``options`` go to every member's fit)."""
        return MixtureModel([m.fit(z, y, **options) for m in self.members])


__all__ = ["EnsembleLatentSurrogate", "MixtureModel"]
