"""Deep-kernel GP surrogate over ``X = concat[d, z]`` (task embedding, architecture latent).

This module holds :class:`MetaSurrogate` and re-exports the pieces it is built from, which live
in :mod:`grabnas.models.surrogate_config` (:class:`SurrogateConfig`),
:mod:`grabnas.models.deep_kernel_gp` (:class:`FeatureMap`, :class:`DeepKernelGP`) and
:mod:`grabnas.models.value_maps` (:func:`rank_gauss`, :class:`RankGaussMap`, :func:`predict`, ...).

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

import torch
from torch import Tensor, nn

from grabnas.errors import GrabnasError
from grabnas.models.deep_kernel_gp import DeepKernelGP, FeatureMap, _make_kernel, _make_likelihood
from grabnas.models.surrogate_config import DTYPE, KERNELS, VALUE_TRANSFORMS, SurrogateConfig
from grabnas.models.value_maps import (
    AffineValueMap,
    RankGaussMap,
    affine_value_map,
    gaussian_nll,
    predict,
    rank_gauss,
    rank_score_variance,
)

try:  # heavy, but this module is only imported where the surrogate is used
    from botorch.models.transforms.outcome import Standardize
except ImportError as e:  # pragma: no cover - a hard dependency
    raise ImportError(f"the surrogate needs gpytorch and botorch ({e})") from None


class MetaSurrogate(nn.Module):
    """The meta-learned surrogate: task encoder + feature map + GP hyperparameters.

    ``covar_module`` and ``likelihood`` hold the meta-learned kernel and noise; meta-training
    puts batches into :meth:`training_gp` (which shares every module), :meth:`fit` copies them
    for a target.

    Public use (see also :mod:`grabnas.meta.surrogate_training` and :mod:`grabnas.meta.checkpoints`)::

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
        fmap = self._feature_map_copy() if copy_features else self.feature_map
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

    def _feature_map_copy(self) -> FeatureMap:
        """A deep copy of the feature map without its row cache (whose outputs a change of the
        copy's weights would invalidate anyway)."""
        cache, self.feature_map.cache = self.feature_map.cache, None
        try:
            return copy.deepcopy(self.feature_map)
        finally:
            self.feature_map.cache = cache

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
        anchor: Tensor | None = None,
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
        scale and the noise (and the feature map, on a copy, with ``finetune_features``); with
        ``anchor`` (``(m, D)`` inputs) the prior mean is held near its start there
        (:meth:`DeepKernelGP.fit_hyperparameters`).
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
            gp = self._new_gp(X, Y_std.detach(), tf, finetune_features, task_prior_var, variance_scale, tasks)
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
            gp = self._new_gp(X, scores.unsqueeze(-1), None, finetune_features, task_prior_var, variance_scale, tasks)
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
                anchor=anchor,
            )
        return gp

    def finetuned_prior(
        self,
        X: Tensor,
        Y: Tensor | Sequence[float],
        steps: int,
        lr: float = 1e-3,
        task_prior_var: float = 1.0,
        variance_scale: float | None = None,
        tasks: Sequence[str] | None = None,
        units: str = "rank-gauss",
        anchor: Tensor | None = None,
    ) -> DeepKernelGP:
        """The zero-shot prior (:meth:`prior`) with its feature map replaced by a copy fine-tuned to
        a target's ``(n, D)`` inputs and ``n`` raw values: ``steps`` Adam steps (learning rate
        ``lr``) of the meta-learned GP's marginal likelihood over the feature map and its scalar
        hyperparameters (:meth:`fit` with ``finetune_features``), as TNAS and FSBO fine-tune a
        deep kernel on the target. Only the feature map is kept (``m`` and ``phi`` of the target);
        the scalars stay the zero-shot ones, for a model fitted on top to refit. The surrogate's
        own feature map is not changed. ``units`` (see :meth:`fit`): how raw values map to the
        model's units while fine-tuning: ``rank-gauss`` (the observations' normal scores, as if
        they were a random sample of the task) or ``affine`` (the maximum-likelihood affine map,
        no such assumption: a search's observations are the task's best). ``anchor``: ``(m, D)``
        inputs where the fine-tuning holds the prior mean near the meta-learned one (see
        :meth:`DeepKernelGP.fit_hyperparameters`)."""
        fitted = self.fit(
            X,
            Y,
            steps=steps,
            lr=lr,
            units=units,
            anchor=anchor,
            finetune_features=True,
            task_prior_var=task_prior_var,
            variance_scale=variance_scale,
            tasks=tasks,
        )
        prior = self.prior(task_prior_var, variance_scale, tasks)
        fmap = fitted.feature_map
        if fmap is not self.feature_map:  # fewer than 2 values: nothing was fine-tuned
            if self.feature_map.cache is not None:
                fmap.enable_cache()
            prior.feature_map = fmap.requires_grad_(False)
        return prior

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = [
    "AffineValueMap",
    "DTYPE",
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
