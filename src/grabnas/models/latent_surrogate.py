"""The meta-trained surrogate as GraB-NAS conditions it: :class:`MetaLatentSurrogate` fixes a target
task's embedding ``d`` and fits (meta- or target-adapted) on latents ``z``, returning a BoTorch model
whose inputs are latents ``(..., q, latent_dim)``; :class:`_NoisyObservations` turns any such model's
posterior into that of a new, noisy evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from botorch.models.model import Model
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.fingerprint import module_fingerprint

if TYPE_CHECKING:
    from grabnas.models.deep_kernel_gp import DeepKernelGP


class MetaLatentSurrogate:
    """:class:`grabnas.search.grabnas.LatentSurrogate` from a meta-trained
    :class:`grabnas.models.surrogate.MetaSurrogate` and the target task's embedding ``d`` ``(task_dim,)``.

    ``adaptation`` (see :class:`grabnas.search.grabnas.GraBNASConfig`): ``target`` refits the target-adapted GP
    (:func:`grabnas.models.target_gp.fit_target_gp`) at every fit, warm-started from the previous
    fit and seeded from ``seed`` and the number of observations (a replayed study refits the
    same); ``meta`` conditions the meta-learned GP (``MetaSurrogate.fit``). ``fit_options`` go to
    the surrogate's ``fit`` (e.g. ``steps``, ``units``, ``task_prior_var``; with ``target`` only
    ``task_prior_var``, ``variance_scale`` and ``tasks`` apply, to its prior).
    :attr:`task_weights` reports, after each fit of a meta-adapted surrogate with per-task
    offsets, the posterior mean weight of each meta-training task in the task term (which known
    tasks the observations say the target resembles).

    ``extra_dims``: 0, or the number of architecture-encoding columns (e.g. one-hot) appended to
    each latent: inputs are then ``(..., latent_dim + extra_dims)``, the meta-learned parts read
    the latent and the target-adapted GP's own kernel reads the encoding (needs ``target``).
    ``mean_weight``: the target-adapted GP's prior-mean weight, fitted (``map``) or integrated out
    (``marginal``) or fitted with the prior mean centred on the observations (``centred``).
    ``target_scale``: the centre of the target-adapted GP's target-kernel scale prior when above
    the meta-learned output scale (:class:`grabnas.models.target_gp.TargetAdaptedGP`).
    ``fit_start``: with ``target``, the first number of observations at which the target-adapted
    GP is fitted; with fewer (from one on) the surrogate is conditioned with the meta-learned
    hyperparameters, as ``meta``. The default 2 fits from two observations (with one, the
    zero-shot prior); only values above 2 change anything.
    ``finetune``: with ``target``, the Adam steps that fine-tune the prior's feature map to the
    observations before each fit, learning rate ``finetune_lr`` (0: the meta-learned map as is; see
    :func:`grabnas.models.target_gp.fit_target_gp`), from ``finetune_start`` observations on.
    ``finetune_refit``: ``True`` fits the target-adapted GP's hyperparameters on the fine-tuned map;
    ``False`` fits them (and integrates them out) on the meta-learned map, as without fine-tuning,
    and only then swaps in the fine-tuned map (:func:`grabnas.models.hyper_mixture.swap_prior`), so the hyperparameters
    are not fitted a second time to the data the map was just fitted to.
    ``finetune_select`` (with ``finetune_refit=False``): at each fit both models are built, the one
    on the meta-learned map and the one on the fine-tuned map, and each is scored on the
    observations that arrive before the next fit (the log density of each new value under the
    model's predictive, before it was conditioned on it: a prequential score, Dawid 1984); the
    search then uses the fine-tuned map only while its summed score is above the meta-learned
    map's (:attr:`finetune_score`, their difference), i.e. while re-shaping the map has predicted
    this target's new evaluations better than leaving it as meta-learned.
    """

    def __init__(
        self,
        surrogate,
        task_embedding: Tensor,
        adaptation: str = "meta",
        seed: int = 0,
        prior_mean_kernel: bool = False,
        calibrate: bool = False,
        extra_dims: int = 0,
        mean_weight: str = "map",
        target_scale: float | None = None,
        onehot_kernel: str = "ard",
        fit_start: int = 2,
        integrate: int = 0,
        hyper_draw: bool = False,
        finetune: int = 0,
        finetune_lr: float = 1e-3,
        finetune_start: int = 2,
        finetune_refit: bool = True,
        finetune_select: bool = False,
        finetune_units: str = "rank-gauss",
        finetune_anchors: int = 0,
        finetune_every: int = 1,
        **fit_options: object,
    ) -> None:
        if adaptation not in ("meta", "target"):
            raise GrabnasError(f"unknown surrogate adaptation {adaptation!r}; expected target or meta")
        if extra_dims and adaptation != "target":
            raise GrabnasError("a target kernel on an architecture encoding needs adaptation=target")
        if finetune and adaptation != "target":
            raise GrabnasError("finetune (the target-adapted GP's fine-tuned feature map) needs adaptation=target")
        self.finetune = int(finetune)
        self.finetune_lr = float(finetune_lr)
        self.finetune_start = int(finetune_start)
        self.finetune_refit = bool(finetune_refit)
        if finetune_select and (not finetune or finetune_refit):
            raise GrabnasError("finetune_select needs finetune > 0 and finetune_refit=false")
        self.finetune_select = bool(finetune_select)
        if finetune_every < 1:
            raise GrabnasError(f"finetune_every must be a positive number of observations, got {finetune_every}")
        if finetune_every > 1 and finetune and finetune_refit:  # without fine-tuning it has nothing to space out
            raise GrabnasError("finetune_every > 1 needs finetune > 0 and finetune_refit=false")
        #: observations between two fine-tunings of the feature map (see :meth:`_finetuned_prior`)
        self.finetune_every = int(finetune_every)
        # (inputs, values, prior) of the last fine-tuning
        self._tuned: tuple[Tensor, Tensor, DeepKernelGP] | None = None
        if finetune_units not in ("rank-gauss", "affine"):
            raise GrabnasError(f"unknown finetune_units {finetune_units!r}; expected rank-gauss or affine")
        self.finetune_units = finetune_units
        #: anchors of the fine-tuning per observation: ``k * n`` latents drawn from the graph VAE's
        #: prior ``N(0, I)`` (seeded per fit) where the fine-tuned prior mean is held near the
        #: meta-learned one (0: none)
        self.finetune_anchors = int(finetune_anchors)
        #: prequential log score of the fine-tuned map minus that of the meta-learned map, summed
        self.finetune_score = 0.0
        self._scored_pair: tuple | None = None  # (meta-map model, fine-tuned model, observations seen)
        self.extra_dims = int(extra_dims)
        self.mean_weight = mean_weight
        self.target_scale = target_scale
        self.onehot_kernel = onehot_kernel
        self.fit_start = int(fit_start)
        self.integrate = int(integrate)
        self.hyper_draw = bool(hyper_draw)
        self.surrogate = surrogate
        # the pool is scored every iteration: keep the feature map's outputs by row
        surrogate.feature_map.enable_cache()
        with torch.no_grad():
            self.d = task_embedding.detach()
        self.adaptation = adaptation
        self.seed = int(seed)
        self.prior_mean_kernel = bool(prior_mean_kernel)
        self.calibrate = bool(calibrate)
        self.fit_options = fit_options
        self._last_gp = None
        self._warm_start: dict | None = None

    @property
    def task_weights(self) -> dict[str, float]:
        """Posterior mean weight of each meta-training task in the last fit's task term (empty
        without one); computed when asked, not at every fit."""
        weights = self._last_gp.task_weights() if hasattr(self._last_gp, "task_weights") else None
        return {} if weights is None else dict(zip(self._last_gp.task_names, weights.tolist()))

    @property
    def adapted_hyperparameters(self) -> dict[str, float]:
        """The last fit's target-adapted hyperparameters (mean scale ``a``, offset, meta-kernel
        factor, target-kernel scale, noise; see :class:`grabnas.models.target_gp.TargetAdaptedGP`);
        empty for the zero-shot prior or ``adaptation="meta"``."""
        return dict(getattr(self._last_gp, "fitted_hyperparameters", {}))

    def fingerprint(self) -> str:
        """A short hash of the meta-trained surrogate's weights."""
        return module_fingerprint(self.surrogate)

    def inputs(self, z: Tensor) -> Tensor:
        """``(..., D)`` model inputs ``[d, z]`` (``[d, z, o]`` with extra columns) of
        ``(..., latent_dim + extra_dims)`` latents."""
        if not self.extra_dims:
            return self.surrogate.inputs(z, self.d)
        latent_dim = z.shape[-1] - self.extra_dims
        return torch.cat(
            [self.surrogate.inputs(z[..., :latent_dim], self.d), z[..., latent_dim:].to(torch.float64)], -1
        )

    def fit(self, z: Tensor, y: Tensor, finetuned: bool = True):
        """The model conditioned on latents ``z`` ``(n, D)`` and values ``y`` ``(n,)``: a BoTorch
        model of latents. ``finetuned=False`` skips this fit's fine-tuned map (with ``finetune``
        and ``finetune_refit=False``: the model on the meta-learned map, the fit being the same)."""
        X = self.inputs(z) if len(y) else None
        prior_options = {
            k: v for k, v in self.fit_options.items() if k in ("task_prior_var", "variance_scale", "tasks")
        }
        if self.adaptation == "target" and self.fit_start > 2 and 0 < len(y) < self.fit_start:
            # too few observations to fit the target GP: condition with the meta-learned values
            z_meta = z[..., : z.shape[-1] - self.extra_dims] if self.extra_dims else z
            gp = self.surrogate.fit(self.surrogate.inputs(z_meta, self.d), y, **prior_options)
        elif self.adaptation == "target":
            from grabnas.models.target_gp import fit_target_gp

            seed = self.seed * 1_000_003 + len(y)  # one per fit: the fit, its samples and its draw
            finetune = self.finetune if len(y) >= self.finetune_start else 0
            gp = fit_target_gp(
                self.surrogate,
                X,
                y if len(y) else None,
                seed=seed,
                warm_start=self._warm_start,
                prior_mean_kernel=self.prior_mean_kernel,
                calibrate=self.calibrate,
                extra_dims=self.extra_dims,
                mean_weight=self.mean_weight,
                target_scale=self.target_scale,
                onehot_kernel=self.onehot_kernel,
                finetune=finetune if self.finetune_refit else 0,
                finetune_lr=self.finetune_lr,
                **prior_options,
            )
            if hasattr(gp, "fit_state"):
                self._warm_start = gp.fit_state()
                if self.integrate:
                    from grabnas.models.hyper_mixture import integrate_hyperparameters

                    gp = integrate_hyperparameters(gp, self.integrate, seed=seed)
                # the fitted hyperparameters on the fine-tuned map
                if finetune and not self.finetune_refit and finetuned:
                    from grabnas.models.hyper_mixture import swap_prior

                    meta_dims = self.surrogate.config.input_dim
                    tuned = swap_prior(
                        gp, self._finetuned_prior(X[..., :meta_dims], y, z.shape[-1] - self.extra_dims, prior_options)
                    )
                    gp = self._select(gp, tuned, X, y) if self.finetune_select else tuned
                if self.integrate and self.hyper_draw:  # one component by its weight: Thompson over the hyperparameters
                    gp = gp.draw(torch.Generator().manual_seed((seed * 2 + 1) % 2**63))
        else:
            gp = self.surrogate.fit(X, y if len(y) else None, **self.fit_options)  # < 2 values: the prior
        self._last_gp = gp
        return _TaskModel(gp, self)

    def _finetuned_prior(self, X: Tensor, y: Tensor, latent_dim: int, prior_options: dict) -> DeepKernelGP:
        """The zero-shot prior on the feature map fine-tuned to the first ``m`` of the ``n``
        observations (inputs ``X`` ``(n, D_meta)``, values ``y`` ``(n,)``), where ``m`` is the last
        point of the schedule ``finetune_start, finetune_start + finetune_every, ...`` at or below
        ``n``: with ``finetune_every = k > 1`` the map is fine-tuned once per ``k`` observations and
        reused in between (the GP on top still conditions on all ``n``), which divides the cost of
        the fine-tuning and of re-featurising the pool by ``k``. ``m`` is a function of ``n`` and
        the observations' order only, so a search resumed from its history fits the same map."""
        n = len(y)
        m = self.finetune_start + (n - self.finetune_start) // self.finetune_every * self.finetune_every
        Xm, ym = X[:m].detach(), y[:m].detach()
        cached = self._tuned
        if cached is not None and torch.equal(cached[0], Xm) and torch.equal(cached[1], ym):
            return cached[2]
        prior = self.surrogate.finetuned_prior(
            Xm,
            ym,
            self.finetune,
            self.finetune_lr,
            units=self.finetune_units,
            anchor=self._anchors(m, latent_dim, self.seed * 1_000_003 + m),
            **prior_options,
        )
        self._tuned = (Xm.clone(), ym.clone(), prior)
        return prior

    def _anchors(self, n: int, latent_dim: int, seed: int) -> Tensor | None:
        """``(finetune_anchors * n, input_dim)`` meta inputs ``[d, z]`` at latents drawn from the
        graph VAE's prior ``N(0, I)``; None without anchors."""
        if not self.finetune_anchors:
            return None
        gen = torch.Generator().manual_seed((seed * 2 + 7) % 2**63)
        z = torch.randn(self.finetune_anchors * n, latent_dim, generator=gen, dtype=torch.float64)
        return self.surrogate.inputs(z, self.d)

    def _select(self, frozen, tuned, X: Tensor, y: Tensor):
        """Score the previous fit's two models on the observations that arrived since it (see
        ``finetune_select``), keep this fit's two for the next, and return the one to search with."""
        if self._scored_pair is not None:
            old_frozen, old_tuned, seen = self._scored_pair
            if 0 < seen < len(y):
                new_X, new_y = X[seen:], y[seen:]
                self.finetune_score += _log_score(old_tuned, new_X, new_y) - _log_score(old_frozen, new_X, new_y)
        self._scored_pair = (frozen, tuned, len(y))
        return tuned if self.finetune_score > 0 else frozen


def _log_score(model, X: Tensor, y: Tensor) -> float:
    """Summed log predictive density of raw values ``y`` ``(m,)`` at inputs ``X`` ``(m, D)`` under a
    target-adapted model (a new evaluation: observation noise included), in the model's units."""
    from grabnas.models.value_maps import gaussian_nll, predict

    with torch.no_grad():
        mu, var = predict(model, X, observation_noise=True)
        return -float(gaussian_nll(mu, var, model.transform_values(y.to(mu.dtype))).sum())


class _TaskModel(Model):
    """A surrogate GP with the task embedding fixed: inputs are latents ``(..., q, latent_dim)``.

    ``gp`` is a GP on the inputs ``latent.inputs(z)`` (``concat[d, z]``, plus the extra encoding
    columns for a target-adapted GP that reads them; the zero-shot prior reads ``[d, z]``)."""

    _num_outputs = 1

    def __init__(self, gp, latent: MetaLatentSurrogate) -> None:
        super().__init__()
        self.gp = gp
        self._latent = latent
        self._d = latent.d
        #: the prior (fewer than 2 observations) reads [d, z] only; a target-adapted GP, or a
        #: mixture of them (``integrate=K``), reads the extra columns too
        from grabnas.models.target_gp import is_target_adapted

        self._meta_only = bool(latent.extra_dims) and not is_target_adapted(gp)

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def task_embedding(self) -> Tensor:
        return self._d

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    @property
    def best_f(self) -> Tensor | None:
        """The incumbent in the GP's units; None for the zero-shot prior."""
        return self.gp.best_f if self.gp.num_train > 0 else None

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        X = self._latent.inputs(X)
        if self._meta_only:
            X = X[..., : self._latent.surrogate.config.input_dim]
        return self.gp.posterior(
            X,
            observation_noise=observation_noise,
            posterior_transform=posterior_transform,
        )


class _NoisyObservations(Model):
    """A model whose posterior is that of a new observation (``observation_noise=True``)."""

    _num_outputs = 1

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return self.model.batch_shape

    @property
    def best_f(self):
        return self.model.best_f  # AttributeError when the wrapped model has none, as for it

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        return self.model.posterior(X, observation_noise=True, posterior_transform=posterior_transform, **kwargs)


class MultiFidelityLatentSurrogate:
    """The meta-trained surrogate conditioned on observations at several fidelities, in latent
    coordinates (multi-fidelity GraB-NAS, :mod:`grabnas.search.multifidelity`).

    ``embeddings``: one ``(task_dim,)`` task embedding per fidelity, lowest first, the target
    fidelity last (for NB201: ``surrogate.task_embedding(None, "12ep")`` and
    ``surrogate.task_embedding()``): the surrogate's learned fidelity offsets. :meth:`fit` returns a
    BoTorch model of the *target* fidelity whose inputs are latents ``(..., q, latent_dim)``;
    :meth:`at` gives the same model at another fidelity. Each fit is the target-adapted GP of all
    fidelities (:func:`grabnas.models.multifidelity_gp.fit_multifidelity_gp`), warm-started from the
    previous one and seeded from ``seed`` and the number of observations (a replay refits the same).
    """

    def __init__(self, surrogate, embeddings, seed: int = 0, **fit_options: object) -> None:
        if len(embeddings) < 2:
            raise GrabnasError(f"a multi-fidelity surrogate needs >= 2 fidelities, got {len(embeddings)}")
        self.surrogate = surrogate
        surrogate.feature_map.enable_cache()
        with torch.no_grad():
            self.embeddings = [torch.as_tensor(d).detach().to(torch.float64) for d in embeddings]
        self.seed = int(seed)
        known = ("task_prior_var", "variance_scale", "shared_residual", "cross_factor", "residual_rho", "integrate")
        unknown = sorted(set(fit_options) - set(known))
        if unknown:
            raise GrabnasError(
                f"unknown multi-fidelity surrogate option {unknown[0]!r}; expected one of {', '.join(known)}"
            )
        self.fit_options = dict(fit_options)
        integrate = self.fit_options.pop("integrate", 0)
        if isinstance(integrate, bool) or not isinstance(integrate, int) or integrate == 1 or integrate < 0:
            raise GrabnasError(f"multi-fidelity integrate must be 0 (the MAP fit) or >= 2 samples, got {integrate!r}")
        #: importance-weighted samples of the scalar hyperparameters (0: the MAP fit)
        self.integrate = integrate
        self._warm_start: dict | None = None
        self._last_gp = None

    @property
    def num_fidelities(self) -> int:
        return len(self.embeddings)

    def fingerprint(self) -> str:
        return module_fingerprint(self.surrogate)

    def inputs(self, z: Tensor, fidelity: Tensor | int) -> Tensor:
        """``(..., input_dim + 1)`` inputs ``[d_f, z, f]`` of ``(..., latent_dim)`` latents at
        ``fidelity`` (an index, or a tensor of indices shaped like ``z[..., 0]``)."""
        z = z.to(torch.float64)
        f = torch.as_tensor(fidelity, dtype=torch.long).expand(z.shape[:-1])
        d = torch.stack(self.embeddings)[f]
        return torch.cat([d, z, f.unsqueeze(-1).to(torch.float64)], -1)

    def fit(self, z: Tensor, fidelity: Tensor, y: Tensor) -> _FidelityModel:
        from grabnas.models.multifidelity_gp import fit_multifidelity_gp

        n = len(y)
        X = self.inputs(z, fidelity) if n else None
        seed = self.seed * 1_000_003 + n
        gp = fit_multifidelity_gp(
            self.surrogate,
            X,
            y if n else None,
            fidelity if n else None,
            self.num_fidelities,
            seed=seed,
            warm_start=self._warm_start,
            **self.fit_options,
        )
        if hasattr(gp, "fit_state"):
            self._warm_start = gp.fit_state()
            if self.integrate:
                from grabnas.models.hyper_mixture import integrate_hyperparameters

                gp = integrate_hyperparameters(gp, self.integrate, seed=seed)
        self._last_gp = gp
        return _FidelityModel(gp, self, self.num_fidelities - 1)


class _FidelityModel(Model):
    """A multi-fidelity surrogate GP at one fidelity: inputs are latents ``(..., q, latent_dim)``."""

    _num_outputs = 1

    def __init__(self, gp, latent: MultiFidelityLatentSurrogate, fidelity: int) -> None:
        super().__init__()
        from grabnas.models.multifidelity_gp import MultiFidelityTargetGP

        self.gp = gp
        self._latent = latent
        self.fidelity = int(fidelity)
        self._prior_only = not isinstance(getattr(gp, "map_model", gp), MultiFidelityTargetGP)

    def at(self, fidelity: int) -> _FidelityModel:
        return _FidelityModel(self.gp, self._latent, fidelity)

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    @property
    def best_f(self) -> Tensor | None:
        """The best observation of the target fidelity in the GP's units; None for the prior or
        before the target fidelity has an observation."""
        return None if self._prior_only else self.gp.best_f

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        X = self._latent.inputs(X, self.fidelity)
        if self._prior_only:
            X = X[..., :-1]
        return self.gp.posterior(X, observation_noise=observation_noise, posterior_transform=posterior_transform)
