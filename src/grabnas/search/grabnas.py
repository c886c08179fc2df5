"""GraB-NAS: Bayesian optimisation over the pool plus latent gradient ascent and decoding.

Each ask conditions the surrogate on the target task's observations, then proposes:

* **initial design** (the first ``n_init`` asks, and any ask before a successful observation):
  the untried pool members with the highest zero-shot prior mean (the meta-trained surrogate's
  ranking for the task, not conditioned on observations);
* **global step**: the untried pool member maximising the acquisition function (LogEI by
  default, UCB as an option, both BoTorch's), by default on the predictive distribution of a new
  evaluation, noise included (``observation_noise``), since the incumbent is an observed value;
* **local step** (after ``t_bo`` warm-up observations, on the iterations chosen by
  ``local_every``): gradient ascent of the acquisition (or the posterior mean) on the latent z
  of the best architecture found so far (``ascent_steps`` Adam-free plain steps of size
  ``eta`` on the normalised gradient), then the graph VAE decodes the moved z (greedy plus
  ``num_decodes`` stochastic decodes); the valid, untried decode with the highest acquisition
  is proposed — it may lie outside the candidate pool — if it beats the global candidate's
  acquisition (``local_gate``, default; without the gate it is proposed anyway). Without such
  a decode the step falls back to the global candidate. With ``local="knn"`` the ascended z
  picks its nearest untried pool member instead of decoding (the ablation that cannot leave
  the pool).

``mode`` selects the ablations: ``hybrid`` (default), ``bo`` (global steps only) and ``ascent``
(local steps whenever there is a best point; global steps only as fallback). ``ask(n)`` with
``n > 1`` adds one proposal at a time with the earlier ones as pending points of BoTorch's
``qLogExpectedImprovement`` (fantasies), so the batch is diverse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from grabnas.errors import GrabnasError
from grabnas.models.latent_surrogate import MetaLatentSurrogate, _NoisyObservations
from grabnas.search.base import Optimizer
from grabnas.spaces.base import Architecture, SearchSpace


class LatentSurrogate(Protocol):
    """What GraB-NAS needs from a performance model, in latent coordinates.

    ``fit(z, y)`` returns a BoTorch ``Model`` conditioned on ``(n, latent_dim)`` latents and
    ``(n,)`` values of the target task (``n`` may be 0: the zero-shot prior), whose inputs are
    latents ``(..., q, latent_dim)``; it must be differentiable with respect to its inputs.
    Its outputs are in the units of ``y`` unless the model has a ``best_f`` attribute: then
    that is the incumbent in the model's own units (None: the model ignores the observations,
    e.g. too few of them, and acquisitions fall back to the posterior mean).
    """

    def fit(self, z: Tensor, y: Tensor): ...  # -> botorch.models.model.Model


class ArchitectureCodec(Protocol):
    """The graph VAE as GraB-NAS uses it (:class:`grabnas.models.graph_vae.ArchitectureVAE`)."""

    def encode_archs(self, archs: Sequence[Architecture]) -> Tensor: ...

    def decode_archs(self, z: Tensor, mode: str = "greedy", k: int = 10, generator=None) -> list: ...


#: samples of the target-adapted GP's scalar hyperparameters the default model mixes
DEFAULT_INTEGRATE = 16
#: Adam steps of the default's fine-tuning of the feature map to the target's observations, and
#: the observations between two fine-tunings (docs/adaptation.md)
DEFAULT_FINETUNE = 50
DEFAULT_FINETUNE_EVERY = 10


def warmup_probe_count(config: GraBNASConfig, heldout_residual: float | None) -> int:
    """How many of the warm-up's asks 1 .. ``t_bo - 1`` are probes under ``config``
    (``warmup_random``) for a surrogate whose corpus leaves ``heldout_residual`` unexplained."""
    if config.warmup_random != "corpus":
        return 0
    return residual_probe_count(heldout_residual, config.t_bo)


def residual_probe_count(heldout_residual: float | None, warmup: int) -> int:
    """``floor(r * warmup)`` (at most ``warmup - 1``; 0 for an unknown ``r``): how many of a
    ``warmup``-ask warm-up's asks 1 .. ``warmup - 1`` are random where the surrogate's corpus
    leaves the share ``r`` of a left-out dataset's variance unexplained."""
    r = heldout_residual
    if r is None or warmup < 2:
        return 0
    return min(int(math.floor(min(max(r, 0.0), 1.0) * warmup)), warmup - 1)


def is_warmup_probe(ask: int, probes: int, span: int, start: int = 1) -> bool:
    """Whether ``ask`` (0-based) is one of ``probes`` probes spread evenly over the ``span`` asks
    from ``start``: the ``i``-th ask of that block (``1 .. span``) is one when
    ``floor(i probes / span)`` steps up there (the last at the block's end)."""
    i = ask - start + 1
    if probes <= 0 or span <= 0 or not 1 <= i <= span:
        return False
    return (i * probes) // span > ((i - 1) * probes) // span


@dataclass(frozen=True)
class GraBNASConfig:
    """Settings of the GraB-NAS optimizer (all stored in a study's settings).

    Attributes:
        mode: ``hybrid``, ``bo`` or ``ascent``.
        local: ``decode`` (graph VAE) or ``knn`` (nearest untried pool member of the ascended z).
        acquisition: ``logei``, ``ucb`` or ``lognei`` (BoTorch's qLogNoisyExpectedImprovement:
            the latent function at a candidate against its joint samples at the observed
            points, so the incumbent is not the noisy maximum; it scores the
            ``q_candidates`` best pool members by LogEI against the largest posterior mean at
            the observed points, and ignores ``observation_noise``).
        ucb_beta: UCB's beta.
        n_init: asks of the zero-shot initial design (the prior's top untried pool members,
            whatever was observed meanwhile); 1: only the first ask, later ones condition on
            the observations.
        t_bo: successful observations before the first local step.
        local_every: after the warm-up, every ``local_every``-th ask is a local step (1: all).
        ascent_steps: K gradient steps on z.
        eta: step size (in latent units; the gradient is normalised to unit length).
        ascent_target: ``acquisition`` or ``mean`` (posterior mean).
        num_decodes: stochastic decodes besides the greedy one.
        q_candidates: pool members that reach the joint scoring (pending-aware batches,
            ``lognei``).
        observation_noise: acquisitions score the predictive distribution of a new
            *evaluation* (the latent function plus the model's noise; default) instead of the
            latent function (False). The incumbent ``best_f`` is an observed value, noise
            included, and the search keeps the best observed value, so this compares like with
            like; it matters where evaluations are noisy relative to the differences searched
            for (NAS-Bench-Graph's validation accuracies), hardly on NB201.
        init: the initial design's pick: ``thompson`` (the argmax of one draw from the zero-shot
            prior over its ``init_candidates`` best pool members) or ``top`` (the highest prior
            mean: every seed the same start).
        init_candidates: how many of the prior's best pool members a Thompson start draws over.
        init_spread: the spread of that draw: ``meta`` (the prior's joint covariance, default) or
            ``corpus`` (plus independent noise where the prior leaves less of a new task
            unexplained than the meta-training corpus says a left-out dataset is: see
            :meth:`GraBNAS._corpus_spread`).
        guard: from this many successful observations on (0: never), every ask compares the
            meta-learned model with a plain GP on the one-hot encoding (GP-BO's) by the rank
            correlation of their leave-one-out predictions with the observations and follows
            the better one (:mod:`grabnas.search.guard`); needs ``adaptation="target"``.
        calibrate: widen the target-adapted GP's posterior by its leave-one-out variance factor
            (:meth:`grabnas.models.target_gp.TargetAdaptedGP.calibrate_variance`): its intervals
            then cover its own held-out observations, and a model whose prior mean misleads
            (large leave-one-out errors) explores more.
        probe_every: from ask ``probe_start`` on, every ``probe_every``-th ask (0: never) is a
            uniformly random untried pool member: observations the prior did not choose, from
            which the target-adapted GP can tell how far to trust the prior mean (observations
            chosen by the prior cluster at its top, where a wrong prior mean is not identified).
        probe_start: the first ask that may be a probe.
        probe_stall: from ask ``probe_start`` on, an ask is also a probe when the best value found
            has not improved over the last ``probe_stall`` observations and none of the asks
            since ``probe_stall`` asks ago was a probe (0: never). A search that is still improving
            never probes, and a stalled one probes at most once per ``probe_stall + 1`` asks: on a
            task where the prior is right, the stall comes after the optimum, where a probe costs
            no regret.
        warmup_random: ``corpus``: of the warm-up's asks 1 to ``t_bo - 1`` (ask 0 stays the prior's
            start), ``floor(r * t_bo)`` are probes, spread evenly over them, where ``r`` is the
            share of a left-out dataset's variance the surrogate's meta-training corpus leaves
            unexplained (``heldout_residual``; unknown: none). The warm-up then holds as many
            cells the prior did not choose as the corpus says the prior cannot explain (NB201
            0.04-0.09: none; NAS-Bench-Graph 0.71-0.79: 7 of 10; ``nb201-all``, the surrogate of
            dataset searches, 0.66: 6 of 10), so a prior wrong about the
            target is identified from observations it did not pick (default; docs/adaptation.md).
            ``none``: no warm-up probes.
        warmup_start: the first ask of that block of ``t_bo - 1`` asks (default 1, the warm-up
            itself; ``t_bo``: the block right after the warm-up, whose asks stay the model's).
        probe_kind: what a probe (and the portfolio's ``far`` arm) proposes: ``random`` (a
            uniformly random untried pool member), ``gpbo`` (GP-BO's proposal from a plain GP on
            the one-hot encoding of all observations, :class:`grabnas.search.baselines.GPBO`:
            the no-transfer method's next cell) or ``far`` (the acquisition's best among the
            untried pool members farthest from every tried architecture in the latent space: the
            half of them whose nearest tried neighbour is farthest). ``far`` still tests a
            region the search has not seen, but with the cell the model rates best there.
        portfolio: from this many asks on (0: never), each ask follows one of two arms, chosen by
            Thompson sampling on how often each arm's proposals scored (``portfolio_reward``;
            :mod:`grabnas.search.portfolio`): ``meta`` (GraB-NAS's own proposal) or ``plain``
            (``portfolio_arm``).
        portfolio_arm: the arm that competes with GraB-NAS's proposals: ``gpbo`` (GP-BO's
            proposal on all observations), ``random`` (a uniformly random untried pool member,
            seeded: probes that are only made while they keep scoring), ``far`` (the
            acquisition's best in the region farthest from the observations, as ``probe_kind=far``)
            or ``finetune`` (GraB-NAS's own proposal from the model on the feature map fine-tuned
            to the observations, ``finetune=K,finetune_refit=false``: the bandit chooses between
            the meta-learned and the fine-tuned map by what their proposals scored; the ``meta``
            arm's fits skip the fine-tuning).
        portfolio_reward: what counts as an arm's success: ``running`` (its observation beats the
            median of those before it; only proposals since the portfolio started count) or
            ``pooled`` (beats the median of all observations; the initial design counts for meta).
        target_kernel: what the target-adapted GP's own kernel reads: ``latent`` (the graph VAE's
            z, default), ``onehot`` (the space's one-hot operation encoding, GP-BO's inputs,
            appended to each latent; the meta-learned mean and kernel still read z, and the
            latent ascent moves z only) or ``hamming`` (the kernel on z plus a Hamming kernel on
            the one-hot encoding: two hyperparameters instead of one lengthscale per column;
            :func:`grabnas.models.target_gp.hamming_kernel`); both need ``adaptation="target"``.
        mean_weight: the target-adapted GP's weight ``a`` and offset ``c`` on the meta-learned prior
            mean: ``map`` (fitted, default) or ``marginal`` (integrated out, so an acquisition
            explores cells the prior ranks differently while the observations leave ``a`` open;
            :class:`grabnas.models.target_gp.PriorMeanWeightKernel`) or ``centred`` (fitted, with
            the prior mean centred on its average over the observations, so that ``a`` stays near
            1 while the data leave it open; an ablation: it searches worse, docs/adaptation.md).
        target_scale: the centre of the target-adapted GP's target-kernel scale prior: ``meta``
            (the meta-learned kernel's output scale, default) or ``corpus`` (the larger of that
            and the surrogate card's ``heldout_residual``, the share of a left-out dataset's
            variance its meta-training corpus leaves unexplained).
        global_draw: how a global step picks among the untried pool members: ``argmax`` of the
            acquisition (default) or ``thompson``: the argmax of one joint draw from the posterior
            over the ``q_candidates`` members the acquisition rates best (drawn with the
            optimizer's own generator), so that a search seed changes the run, in proportion to
            the posterior's uncertainty about which of them is best.
        fit_start: the number of observations from which the target-adapted GP is fitted
            (``adaptation="target"``); with fewer, from one on, the meta-learned hyperparameters
            condition the prior (as ``adaptation="meta"``). 2 (default): fitted from two
            observations on, so that MAP fits of five or more hyperparameters to two to four
            points drive the first asks; larger values keep those asks on the meta-learned model.
        integrate: how many importance-weighted samples of the target-adapted GP's scalar
            hyperparameters (prior-mean weight and offset, kernel scales, noise) the model mixes
            instead of their MAP fit (:func:`grabnas.models.hyper_mixture.integrate_hyperparameters`);
            ``None`` (default): 16 with ``adaptation="target"``, 0 (no model to integrate) with
            ``"meta"``; 0: the MAP fit (the default before it was measured better,
            docs/adaptation.md).
        hyper_draw: with ``integrate``, act at every ask on one of the mixture's components,
            drawn by its weight, instead of on the mixture (Thompson sampling over the scalar
            hyperparameters; opt-in, docs/adaptation.md).
        finetune: the Adam steps (learning rate 1e-3) that fine-tune a copy of the meta-learned
            feature map to the target's observations (TNAS / FSBO-style, docs/adaptation.md), from
            ``finetune_start`` observations on (default 10, the end of the warm-up); ``0``: the
            meta-learned map as is. Default (None): ``DEFAULT_FINETUNE`` (50) where the warm-up holds
            random asks (``warmup_random``; :meth:`finetune_steps`), else 0. ``finetune_refit``:
            ``False`` (default) fits and integrates the target-adapted GP's hyperparameters on the
            meta-learned map, as without fine-tuning, and then swaps in the fine-tuned map (no
            second fit to the data the map was fitted to: honest intervals); ``True`` fits them on
            the fine-tuned map, at every fit.
            ``finetune_select`` (with ``finetune_refit=False``): use the fine-tuned map only while
            it has predicted the target's new evaluations better than the meta-learned map
            (summed log predictive density, prequential; ``MetaLatentSurrogate``).
            ``finetune_every`` (with ``finetune_refit=False``): fine-tune the map once per that many
            observations (at ``finetune_start``, ``finetune_start + finetune_every``, ...) and reuse
            it in between, which divides the fine-tuning's cost by about that factor; default (None):
            ``DEFAULT_FINETUNE_EVERY`` (10) where it applies, else 1.
        prior_decay: ``beta`` of piBO (Hvarfner et al., ICLR 2022; 0: off): a global step ranks
            the candidates by their acquisition value times ``pi(x) ** (beta / n)`` (``n`` successful
            observations), where ``pi(x)`` is the zero-shot prior's probability that ``x`` beats the
            pool member it rates best (``Phi((mu_0(x) - max mu_0) / sigma_0(x))``). The prior's
            preferences steer the first asks and fade as observations accumulate, so the search
            tends to the model's own acquisition; with ``mean_weight="none"`` that model keeps the
            meta-learned covariance but not its mean (opt-in, docs/adaptation.md).
        draw_start: the first ask at which ``global_draw="thompson"`` applies (earlier global steps
            take the acquisition's argmax).
        local_gate: on a local step, propose the decode only when the acquisition rates it above
            the best global candidate (default), so the search maximises the acquisition over the
            pool and the decodes together; False: a local step proposes its best decode (the
            paper's alternation; the ``grabnas-ascent`` and ``grabnas-knn`` ablations). A decode
            that is an untried pool member never beats the global candidate, so on a full pool
            the gated hybrid searches like BO only (and skips its local steps there, which could
            never win), and with ``local="knn"`` always does; the
            local steps pay off where the pool lacks cells the decoder can reach (pruned pools,
            a user's own candidate list).
    """

    mode: str = "hybrid"
    local: str = "decode"
    acquisition: str = "logei"
    ucb_beta: float = 2.0
    n_init: int = 1
    t_bo: int = 10
    local_every: int = 2
    ascent_steps: int = 20
    eta: float = 0.05
    ascent_target: str = "acquisition"
    num_decodes: int = 10
    q_candidates: int = 1024
    observation_noise: bool = True
    local_gate: bool = True
    adaptation: str = "target"
    prior_mean_kernel: bool = False
    init: str = "thompson"
    init_candidates: int = 256
    init_spread: str = "meta"
    guard: int = 0
    calibrate: bool = False
    probe_every: int = 0
    probe_start: int = 10
    probe_kind: str = "random"
    probe_stall: int = 0
    warmup_random: str = "corpus"
    warmup_start: int = 1
    portfolio: int = 0
    portfolio_arm: str = "gpbo"
    portfolio_reward: str = "running"
    target_kernel: str = "latent"
    mean_weight: str = "map"
    target_scale: str = "meta"
    global_draw: str = "argmax"
    draw_start: int = 0
    fit_start: int = 2
    integrate: int | None = None
    hyper_draw: bool = False
    prior_decay: float = 0.0
    finetune: int | None = None
    finetune_start: int = 10
    finetune_refit: bool = False
    finetune_select: bool = False
    finetune_every: int | None = None

    def finetune_steps(self, warmup_probes: int) -> int:
        """The Adam steps of the feature map's fine-tuning for a search whose warm-up holds
        ``warmup_probes`` random asks: ``finetune`` when set; by default ``DEFAULT_FINETUNE`` where
        that warm-up holds random asks and 0 where it does not (a map fine-tuned to a search's own,
        clustered observations ranks a task's top worse than the meta-learned one; fitted to
        random ones, better: docs/adaptation.md)."""
        if self.finetune is not None:
            return self.finetune
        return DEFAULT_FINETUNE if warmup_probes > 0 else 0

    def __post_init__(self) -> None:
        checks = {
            "mode": (self.mode, ("hybrid", "bo", "ascent")),
            "local": (self.local, ("decode", "knn")),
            "acquisition": (self.acquisition, ("logei", "ucb", "lognei")),
            "ascent_target": (self.ascent_target, ("acquisition", "mean")),
            "adaptation": (self.adaptation, ("target", "meta")),
            "init": (self.init, ("thompson", "top")),
            "init_spread": (self.init_spread, ("corpus", "meta")),
            "target_kernel": (self.target_kernel, ("latent", "onehot", "hamming")),
            "mean_weight": (self.mean_weight, ("map", "marginal", "centred", "none")),
            "target_scale": (self.target_scale, ("meta", "corpus")),
            "global_draw": (self.global_draw, ("argmax", "thompson")),
            "portfolio_reward": (self.portfolio_reward, ("running", "pooled")),
            "portfolio_arm": (self.portfolio_arm, ("gpbo", "random", "far", "finetune")),
            "probe_kind": (self.probe_kind, ("random", "far", "gpbo")),
            "warmup_random": (self.warmup_random, ("none", "corpus")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise GrabnasError(f"GraB-NAS {name} {value!r} is unknown; expected one of {', '.join(allowed)}")
        if self.target_kernel != "latent" and self.adaptation != "target":
            raise GrabnasError(f"GraB-NAS target_kernel={self.target_kernel} needs adaptation=target")
        for name in (
            "observation_noise",
            "local_gate",
            "prior_mean_kernel",
            "calibrate",
            "hyper_draw",
            "finetune_refit",
            "finetune_select",
        ):
            if not isinstance(getattr(self, name), bool):
                raise GrabnasError(f"GraB-NAS {name} must be true or false, got {getattr(self, name)!r}")
        if self.integrate is None:  # the default: integrated out wherever there is a target-adapted GP
            object.__setattr__(self, "integrate", DEFAULT_INTEGRATE if self.adaptation == "target" else 0)
        if self.finetune is None and self.adaptation != "target":  # nothing to fine-tune
            object.__setattr__(self, "finetune", 0)
        steps = self.finetune_steps(warmup_probes=1)  # the checks below read the default where it applies
        if self.finetune_every is None:  # amortised only where the scalars are not refitted on the map
            every = DEFAULT_FINETUNE_EVERY if steps and self.finetune_refit is False else 1
            object.__setattr__(self, "finetune_every", every)
        for name in (
            "n_init",
            "t_bo",
            "local_every",
            "ascent_steps",
            "num_decodes",
            "q_candidates",
            "init_candidates",
            "guard",
            "probe_every",
            "probe_start",
            "probe_stall",
            "warmup_start",
            "portfolio",
            "draw_start",
            "fit_start",
            "integrate",
            "finetune",
            "finetune_start",
            "finetune_every",
        ):
            value = getattr(self, name)
            if name == "finetune" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise GrabnasError(f"GraB-NAS {name} must be an integer, got {value!r}")
        for name in ("eta", "ucb_beta", "prior_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GrabnasError(f"GraB-NAS {name} must be a number, got {value!r}")
        if self.integrate == 1 or self.integrate < 0:
            raise GrabnasError(f"GraB-NAS integrate must be 0 (the MAP fit) or >= 2 samples, got {self.integrate}")
        if self.integrate and self.adaptation != "target":
            raise GrabnasError("GraB-NAS integrate needs adaptation=target")
        if steps < 0:
            raise GrabnasError(f"GraB-NAS finetune must be 0 (off) or a number of Adam steps, got {self.finetune}")
        if self.finetune_start < 2:
            raise GrabnasError(f"GraB-NAS finetune_start must be >= 2, got {self.finetune_start}")
        if steps and self.adaptation != "target":
            raise GrabnasError("GraB-NAS finetune needs adaptation=target")
        if self.finetune_select and (not steps or self.finetune_refit):
            raise GrabnasError("GraB-NAS finetune_select needs finetune > 0 and finetune_refit=false")
        if self.finetune_every < 1:
            raise GrabnasError(f"GraB-NAS finetune_every must be >= 1 observations, got {self.finetune_every}")
        if self.finetune_every > 1 and (not steps or self.finetune_refit):
            raise GrabnasError("GraB-NAS finetune_every > 1 needs finetune > 0 and finetune_refit=false")
        if self.portfolio_arm == "finetune" and (
            not self.portfolio or not steps or self.finetune_refit or self.finetune_select
        ):
            raise GrabnasError(
                "GraB-NAS portfolio_arm=finetune needs portfolio > 0, finetune > 0, finetune_refit=false"
                " and finetune_select=false"
            )
        if self.hyper_draw and not self.integrate:
            raise GrabnasError("GraB-NAS hyper_draw needs integrate >= 2 (a mixture to draw from)")
        if self.fit_start < 2:
            raise GrabnasError(f"GraB-NAS fit_start must be >= 2, got {self.fit_start}")
        for name in ("n_init", "local_every", "num_decodes", "q_candidates", "init_candidates", "warmup_start"):
            if getattr(self, name) < 1:
                raise GrabnasError(f"GraB-NAS {name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "t_bo",
            "ascent_steps",
            "eta",
            "ucb_beta",
            "prior_decay",
            "guard",
            "probe_every",
            "probe_start",
            "probe_stall",
            "portfolio",
            "draw_start",
        ):
            if getattr(self, name) < 0:
                raise GrabnasError(f"GraB-NAS {name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class GraBNAS(Optimizer):
    """The GraB-NAS ask/tell optimizer.

    Args:
        space: the search space.
        surrogate: the (meta-trained) performance model in latent coordinates.
        codec: the graph VAE (encode architectures, decode latents).
        pool: the candidate pool (default: the whole space); local steps may leave it.
        seed: the optimizer's seed.
        config: :class:`GraBNASConfig` (keyword overrides are accepted too).
        pool_latents: ``(len(pool), latent_dim)`` latents of the pool when already computed
            (default: encoded here with ``codec``). A pruned pool leaves its removed members
            out of ``pool`` only: decodes may still reach them.
        evaluable: ``Architecture -> bool``, whether a decode outside the pool can be evaluated
            (default: every one can, as by training); decodes it rejects are never proposed,
            e.g. cells a user's table has no row for, or with an operation it never uses.
        heldout_residual: the share of a left-out dataset's variance that the surrogate's
            meta-training corpus leaves unexplained (its card's ``heldout_residual``,
            :func:`grabnas.meta.transferability.heldout_residual_fraction`; None: unknown, and the
            Thompson start draws from the prior alone).
    """

    name = "grabnas"

    def __init__(
        self,
        space: SearchSpace,
        surrogate: LatentSurrogate,
        codec: ArchitectureCodec,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        config: GraBNASConfig | None = None,
        pool_latents: Tensor | None = None,
        evaluable=None,
        heldout_residual: float | None = None,
        **overrides: object,
    ) -> None:
        super().__init__(space, pool, seed)
        self.heldout_residual = heldout_residual
        #: ``Architecture -> bool``: whether the evaluator can evaluate a decode outside the pool
        #: (a tabular benchmark only has its rows); decodes it rejects are never proposed
        self.evaluable = evaluable
        self.config = config or GraBNASConfig(**overrides)  # type: ignore[arg-type]
        self.surrogate = surrogate
        self.codec = codec
        self._pool_index = {a: i for i, a in enumerate(self.pool)}
        self._pool_positions: dict[Architecture, list[int]] = {}  # every position (a pool may repeat)
        for i, a in enumerate(self.pool):
            self._pool_positions.setdefault(a, []).append(i)
        #: the pool is every member of the space (gated local steps are then skipped)
        self._pool_is_space = len(self._pool_index) == len(space)
        if pool_latents is None:
            with torch.no_grad():
                pool_latents = _encode_in_chunks(codec, self.pool)
        elif pool_latents.shape[0] != len(self.pool):
            raise GrabnasError(f"pool_latents has {pool_latents.shape[0]} rows for a pool of {len(self.pool)}")
        #: columns of the graph VAE's latent in every model input (the rest: a one-hot encoding)
        self.latent_dim = int(pool_latents.shape[1])
        #: ``(len(pool), latent_dim [+ onehot_dim])`` latent means of the pool, with the one-hot
        #: encoding appended for ``target_kernel="onehot"``
        self.z_pool = self._with_encoding(pool_latents.detach().double(), self.pool)
        self._z_cache: dict[Architecture, Tensor] = {}
        self._torch_gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        self.asks = 0
        #: ``(len(pool),)`` zero-shot prior means of the pool (computed at the first initial-design ask)
        self._prior_scores: Tensor | None = None
        #: the zero-shot prior (:meth:`_zero_shot_model`); ``prior_decay``'s log belief over the pool
        #: and the prior's best mean there
        self._zero_shot = None
        self._log_belief: Tensor | None = None
        self._belief_top = 0.0
        #: per local step: (decodes tried, valid decodes, proposal left the pool)
        self.local_log: list[dict] = []
        #: per ask that hit a numerical failure of the GP: what failed and what was done instead
        self.numerical_log: list[str] = []
        #: per guarded ask: observations, the two leave-one-out scores, the model followed
        self.guard_log: list[dict] = []
        #: per portfolio ask: observations, each arm's (successes, failures, draw), the arm followed
        self.portfolio_log: list[dict] = []
        #: the arm that proposed each architecture (``init`` before the portfolio starts, then
        #: ``meta`` or ``plain``)
        self._arm_of: dict[Architecture, str] = {}
        self._plain = None
        #: the asks (0-based) that were probes (``probe_every``, ``probe_stall``)
        self.probe_asks: list[int] = []
        #: the no-harm guard is on (it compares the meta model with GP-BO's at every model ask)
        self._guarded = bool(self.config.guard) and self.config.adaptation == "target"
        # GP-BO's model is built for the guard and the GP-BO arm only (the random arm needs none,
        # so its first ``portfolio`` asks are the default's for the same seed)
        if self._guarded or (self.config.portfolio and self.config.portfolio_arm == "gpbo"):
            self._gpbo()

    def settings(self) -> dict:
        """The :class:`GraBNASConfig` fields, the surrogate's adaptation options and a hash of
        the meta-trained surrogate's weights (a study refuses to resume under other ones)."""
        out = self.config.to_dict()
        if callable(getattr(self.surrogate, "fingerprint", None)):
            out["surrogate_options"] = dict(getattr(self.surrogate, "fit_options", {}))
            out["surrogate_weights"] = self.surrogate.fingerprint()
        return out

    # -- latents ------------------------------------------------------------------------------
    def _with_encoding(self, z: Tensor, archs: Sequence[Architecture]) -> Tensor:
        """``(k, latent_dim)`` latents of ``archs``, with their one-hot encoding appended for
        ``target_kernel="onehot"`` (``(k, latent_dim + onehot_dim)``)."""
        if self.config.target_kernel == "latent" or not len(archs):
            return z
        onehot = torch.as_tensor(np.stack([self.space.encode_onehot(a) for a in archs]), dtype=torch.float64)
        return torch.cat([z, onehot], -1)

    def latent(self, archs: Sequence[Architecture]) -> Tensor:
        """``(len(archs), D)`` model inputs (latents, plus the one-hot encoding with
        ``target_kernel="onehot"``); pool rows reused, others encoded once."""
        rows = []
        missing = [a for a in archs if a not in self._pool_index and a not in self._z_cache]
        if missing:
            with torch.no_grad():
                z = self._with_encoding(_encode_in_chunks(self.codec, missing).double(), missing)
            self._z_cache.update(zip(missing, z))
        for a in archs:
            i = self._pool_index.get(a)
            rows.append(self.z_pool[i] if i is not None else self._z_cache[a])
        return torch.stack(rows) if rows else self.z_pool[:0]

    # -- acquisition ------------------------------------------------------------------------------
    def _model(self, finetuned: bool | None = None):
        """``(model, values)``: the surrogate fitted to the successful observations; ``finetuned``
        (``portfolio_arm=finetune`` only): whether this fit swaps in the fine-tuned feature map."""
        archs, values = self.history.successes()
        options = {} if finetuned is None else {"finetuned": finetuned}
        model = self.surrogate.fit(self.latent(archs), torch.as_tensor(values, dtype=torch.float64), **options)
        if self.config.observation_noise and self.config.acquisition != "lognei":
            model = _NoisyObservations(model)
        return model, values

    def _acquisition(self, model, values: np.ndarray, pending: Tensor | None, joint: bool = True):
        """The acquisition function; ``joint=False``: its cheap single-point stand-in (the
        analytic one; for ``lognei`` LogEI against the plug-in incumbent), used to prefilter."""
        from botorch.acquisition import (
            LogExpectedImprovement,
            PosteriorMean,
            UpperConfidenceBound,
            qLogExpectedImprovement,
            qLogNoisyExpectedImprovement,
            qUpperConfidenceBound,
        )
        from botorch.sampling import SobolQMCNormalSampler

        best_f = self._best_f(model, values)
        if best_f is None:
            return PosteriorMean(model)
        if self.config.acquisition == "lognei":
            archs, _ = self.history.successes()
            z_obs = self.latent(archs)
            if not joint:
                with torch.no_grad():
                    plug_in = float(model.posterior(z_obs.unsqueeze(1)).mean.max())
                return LogExpectedImprovement(model, best_f=plug_in)
            sampler = SobolQMCNormalSampler(torch.Size([128]), seed=int(self.rng.integers(2**31)))
            has_pending = pending is not None and pending.shape[0] > 0
            return qLogNoisyExpectedImprovement(
                model,
                X_baseline=z_obs,
                sampler=sampler,
                X_pending=pending if has_pending else None,
                prune_baseline=False,
                cache_root=False,  # pruning would draw from the global RNG
            )
        if pending is not None and pending.shape[0] > 0:
            sampler = SobolQMCNormalSampler(torch.Size([128]), seed=int(self.rng.integers(2**31)))
            if self.config.acquisition == "ucb":
                return qUpperConfidenceBound(model, beta=self.config.ucb_beta, sampler=sampler, X_pending=pending)
            return qLogExpectedImprovement(model, best_f=best_f, sampler=sampler, X_pending=pending)
        if self.config.acquisition == "ucb":
            return UpperConfidenceBound(model, beta=self.config.ucb_beta)
        return LogExpectedImprovement(model, best_f=best_f)

    @staticmethod
    def _best_f(model, values: np.ndarray) -> float | None:
        """The incumbent in the model's units (None: zero-shot)."""
        if values.size == 0:
            return None
        if hasattr(model, "best_f"):
            b = model.best_f
            return None if b is None else float(b)
        return float(values.max())

    @staticmethod
    def _score(acq, z: Tensor, chunk: int = 16384) -> Tensor:
        """``(len(z),)`` acquisition values of single points."""
        with torch.no_grad():
            return torch.cat([acq(z[i : i + chunk].unsqueeze(1)) for i in range(0, len(z), chunk)])

    # -- the ask -------------------------------------------------------------------------------------
    def _ask(self, n: int) -> list[Architecture]:
        """The model's proposals; on a numerical failure of the GP (a matrix that is not positive
        definite, NaNs) once more with 100x the Cholesky jitter, then, if that fails too, ``n``
        random untried pool members (seeded), each fallback noted in :attr:`numerical_log`."""
        import gpytorch
        from gpytorch.utils.errors import NanError, NotPSDError

        failures = (NotPSDError, NanError, torch.linalg.LinAlgError)
        try:
            return self._ask_model(n)
        except failures as e:
            first = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        try:
            with gpytorch.settings.cholesky_jitter(float_value=1e-4, double_value=1e-6):
                out = self._ask_model(n)
            self.numerical_log.append(f"ask {self.asks}: {first}; refitted with 100x jitter")
            return out
        except failures:
            picks = self._random_untried(n)
            self.numerical_log.append(f"ask {self.asks}: {first}; proposed {len(picks)} random untried pool member(s)")
            self.asks += len(picks)
            return picks

    def _ask_model(self, n: int) -> list[Architecture]:
        started = bool(self.config.portfolio) and self.asks >= self.config.portfolio
        follow = self._portfolio_arm() if started else "meta"
        arm = self.config.portfolio_arm
        if follow == "plain" and arm != "finetune":
            picks = (
                self._plain._ask(n) if arm == "gpbo" else self._random_untried(n) if arm == "random" else self._far(n)
            )
            self._arm_of.update(dict.fromkeys(picks, "plain"))
            self.asks += len(picks)
            return picks
        # GraB-NAS's own proposal; with portfolio_arm=finetune both arms are, on two feature maps
        out = self._ask_meta(n, finetuned=follow == "plain" if arm == "finetune" else None)
        self._arm_of.update(dict.fromkeys(out, follow if started else "init"))
        return out

    def _random_untried(self, n: int) -> list[Architecture]:
        """Up to ``n`` distinct uniformly random untried pool members (from the optimizer's generator)."""
        untried = self.untried_pool()
        picks = self.rng.choice(len(untried), size=min(n, len(untried)), replace=False) if untried else []
        return [untried[int(i)] for i in picks]

    def _far(self, n: int) -> list[Architecture]:
        """Up to ``n`` far probes (:meth:`_far_one`), each with the ones before it as pending."""
        model, values = self._model()
        out: list[Architecture] = []
        for _ in range(n):
            tried, cand = self._untried(self.history.pending + out)
            if not cand.size:
                break
            out.append(self._far_one(model, values, cand, tried))
        return out

    def _untried(self, pending: list[Architecture]) -> tuple[set[Architecture], np.ndarray]:
        """``(tried, cand)``: the architectures tried or ``pending``, and the pool indices of the
        others."""
        tried = self.history.tried | set(pending)
        free = np.ones(len(self.pool), dtype=bool)
        free[[i for a in tried for i in self._pool_positions.get(a, ())]] = False
        return tried, np.flatnonzero(free).astype(np.int64)

    def _far_one(self, model, values: np.ndarray, cand: np.ndarray, tried: set[Architecture]) -> Architecture:
        """The single-point acquisition's best among the half of ``cand`` (untried pool indices)
        whose nearest ``tried`` architecture (tried or pending) is farthest in the latent space."""
        seen = self.latent(sorted(tried, key=str))
        z = self.z_pool[torch.as_tensor(cand)]
        if len(seen):
            nearest = torch.cdist(z, seen).min(dim=1).values
            keep = (nearest >= nearest.median()).numpy()
            cand, z = cand[keep], z[torch.as_tensor(keep)]
        scores = self._score(self._acquisition(model, values, None, joint=False), z)
        return self.pool[int(cand[int(torch.argmax(scores))])]

    def _portfolio_arm(self) -> str:
        """``meta`` or ``plain``, by Thompson sampling on each arm's observed values
        (:func:`grabnas.search.portfolio.thompson_arm`); logged in :attr:`portfolio_log`."""
        from grabnas.search.portfolio import arm_counts, running_counts, thompson_arm

        archs, values = self.history.successes()
        arms = np.array([self._arm_of.get(a, "init") for a in archs])
        if self.config.portfolio_reward == "pooled":  # the initial design counts for meta
            counts = arm_counts({"meta": values[arms != "plain"], "plain": values[arms == "plain"]})
        else:
            counts = running_counts(values, arms, ("meta", "plain"))
        arm, record = thompson_arm(counts, self.rng)
        self.portfolio_log.append({"ask": self.asks, "n": int(values.size), "follow": arm, **record})
        return arm

    def _ask_meta(self, n: int, finetuned: bool | None = None) -> list[Architecture]:
        out: list[Architecture] = []
        model, values = self._model(finetuned)
        if self._guarded and values.size >= max(3, self.config.guard):
            from grabnas.search.guard import loo_rank_score, plain_beats_meta

            meta_score = loo_rank_score(self.surrogate._last_gp)
            plain_model = self._plain.fit()
            plain_score = loo_rank_score(plain_model)
            follow = "plain" if plain_beats_meta(plain_score, meta_score, int(values.size)) else "meta"
            self.guard_log.append({"n": int(values.size), "meta": meta_score, "plain": plain_score, "follow": follow})
            if follow == "plain":
                picks = self._plain._ask(n, model=plain_model)
                self.asks += len(picks)
                return picks
        for _ in range(n):
            pending = self.history.pending + out
            arch = self._propose_one(model, values, pending)
            if arch is None:
                break
            out.append(arch)
            self.asks += 1
        return out

    def _propose_one(self, model, values: np.ndarray, pending: list[Architecture]) -> Architecture | None:
        tried, cand = self._untried(pending)
        if cand.size and (values.size == 0 or self.asks < self.config.n_init):
            return self._prior_top(cand)
        if cand.size and self._is_probe(values):
            self.probe_asks.append(self.asks)
            if self.config.probe_kind == "far":
                return self._far_one(model, values, cand, tried)
            if self.config.probe_kind == "gpbo":
                picks = [a for a in self._gpbo()._ask(1) if a not in tried]
                if picks:
                    return picks[0]
            return self.pool[int(cand[int(self.rng.integers(cand.size))])]
        z_pending = self.latent(pending) if pending else None
        acq = self._acquisition(model, values, z_pending)
        local = None
        if self._is_local_step(values) and not (self.config.local_gate and self._pool_is_space):
            # on a pool holding the whole space a gated local step can never win: every valid
            # decode is a pool member, whose acquisition cannot exceed the best candidate's
            local = self._local_step(model, values, acq, tried, cand)
        if local is not None and not self.config.local_gate:
            return local
        if cand.size == 0:
            return local
        # piBO's weight on the prior's belief (prior_decay; 0: none), in every ranking of the pool below
        decay = self.config.prior_decay / values.size if self.config.prior_decay and values.size else 0.0

        def weighted(scores: Tensor, rows: np.ndarray) -> Tensor:
            return scores + decay * self._log_prior_belief()[torch.as_tensor(rows)] if decay else scores

        prefilter = z_pending is not None or self.config.acquisition == "lognei"
        if not prefilter or self._best_f(model, values) is None:
            scores = weighted(self._score(acq, self.z_pool[cand]), cand)
        else:  # pending-aware or noisy EI: the joint acquisition on the best single-point candidates
            single = self._score(self._acquisition(model, values, None, joint=False), self.z_pool[cand])
            top = torch.topk(weighted(single, cand), min(self.config.q_candidates, len(cand))).indices
            cand = cand[top.numpy()]
            scores = weighted(self._score(acq, self.z_pool[cand]), cand)
        best = int(torch.argmax(scores))
        if self.config.global_draw == "thompson" and self.asks >= self.config.draw_start and cand.size > 1:
            top = torch.topk(scores, min(self.config.q_candidates, cand.size)).indices
            best = int(top[self._draw_argmax(model, cand[top.numpy()])])
        if local is not None:
            local_score = float(self._score(acq, self.latent([local]))[0])
            if decay:
                local_score += decay * float(self._log_prior_belief(self.latent([local]))[0])
            if local_score > float(scores[best]):
                return local  # gated local step: the decode beats every global candidate
        return self.pool[int(cand[best])]

    def _draw_argmax(self, model, cand: np.ndarray, extra_noise: bool = False) -> int:
        """Position in ``cand`` (pool indices) of the argmax of one joint posterior draw of
        ``model`` over them (drawn with the optimizer's generator; a deterministic model: its
        mean). ``extra_noise``: add the Thompson start's independent noise
        (:meth:`_corpus_spread`)."""
        from linear_operator.utils.cholesky import psd_safe_cholesky

        with torch.no_grad():
            post = model.posterior(self.z_pool[torch.as_tensor(cand)])
            draw = post.mean.reshape(-1)
            if hasattr(post, "distribution"):
                cov = post.distribution.covariance_matrix
                draw = draw + psd_safe_cholesky(cov) @ torch.randn(
                    draw.shape[0], dtype=draw.dtype, generator=self._torch_gen
                )
                extra = self._corpus_spread(cov) if extra_noise else 0.0
                if extra > 0:
                    noise = torch.randn(draw.shape[0], dtype=draw.dtype, generator=self._torch_gen)
                    draw = draw + math.sqrt(extra) * noise
        return int(torch.argmax(draw))

    def _log_prior_belief(self, z: Tensor | None = None) -> Tensor:
        """``log pi(x)`` of ``prior_decay``: the log zero-shot probability that a cell beats the
        pool member with the highest prior mean, ``log Phi((mu_0 - max_pool mu_0) / sigma_0)``,
        for the ``(k, latent_dim)`` latents ``z`` (None: the whole pool, ``(len(pool),)``, computed
        once)."""
        if self._log_belief is None:
            mean, sd = self._zero_shot_marginals(self._zero_shot_model(), self.z_pool)
            self._belief_top = float(mean.max())
            self._log_belief = torch.special.log_ndtr((mean - self._belief_top) / sd)
        if z is None:
            return self._log_belief
        mean, sd = self._zero_shot_marginals(self._zero_shot_model(), z)
        return torch.special.log_ndtr((mean - self._belief_top) / sd)

    def _zero_shot_model(self):
        """The surrogate's zero-shot prior over latents (no observations), built once per search: it
        never changes, and the initial design and ``prior_decay`` both read it."""
        if self._zero_shot is None:
            self._zero_shot = self.surrogate.fit(self.z_pool[:0], torch.zeros(0, dtype=torch.float64))
        return self._zero_shot

    @staticmethod
    def _zero_shot_marginals(prior, z: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
        """``(k,)`` means and standard deviations of ``prior`` at the ``(k, latent_dim)`` latents."""
        means, sds = [], []
        with torch.no_grad():
            for i in range(0, len(z), chunk):
                post = prior.posterior(z[i : i + chunk].unsqueeze(1))
                means.append(post.mean.reshape(-1))
                sds.append(post.variance.reshape(-1).clamp_min(1e-12).sqrt())
        return torch.cat(means), torch.cat(sds)

    def _prior_top(self, cand: np.ndarray) -> Architecture:
        """The initial design's pick among ``cand`` (untried pool indices): the highest zero-shot
        prior mean (``init="top"``), or the argmax of one draw from the zero-shot prior's joint
        distribution over the ``init_candidates`` members with the highest prior mean
        (``init="thompson"``, drawn with the optimizer's own generator)."""
        from botorch.acquisition import PosteriorMean

        prior = self._zero_shot_model()
        if self._prior_scores is None:
            self._prior_scores = self._score(PosteriorMean(prior), self.z_pool)
        scores = self._prior_scores[cand]
        if self.config.init == "top" or cand.size == 1:
            return self.pool[int(cand[int(torch.argmax(scores))])]
        top = torch.topk(scores, min(self.config.init_candidates, cand.size)).indices
        return self.pool[int(cand[int(top[self._draw_argmax(prior, cand[top.numpy()], extra_noise=True)])])]

    def _corpus_spread(self, cov: Tensor) -> float:
        """Variance of independent noise added to a Thompson start's draw (``init_spread="corpus"``).

        ``cov``: the prior's ``(k, k)`` covariance over the start's candidates; its *within-task*
        variance ``w = mean(diag) - mean(all entries)`` is what can reorder them (a shared shift
        cannot). The meta-training corpus says that a left-out dataset keeps a share ``r`` of its
        variance unexplained by the others (``heldout_residual``), so the unexplained variance
        should be at least ``r / (1 - r)`` times the variance ``v`` of the prior means over the
        pool; the noise adds what ``w`` lacks: ``max(0, v r / (1 - r) - w)`` (``r`` capped at
        0.95). 0 without a known ``r``."""
        r = self.heldout_residual
        if self.config.init_spread != "corpus" or r is None or self._prior_scores is None:
            return 0.0
        r = min(max(float(r), 0.0), 0.95)
        within = float(cov.diagonal().mean() - cov.mean())
        return max(0.0, float(self._prior_scores.var()) * r / (1.0 - r) - within)

    def _is_probe(self, values: np.ndarray) -> bool:
        """Whether this ask is a probe: ``values`` are the ``(n,)`` observed values in the order told."""
        c = self.config
        if self._is_warmup_probe():
            return True
        if self.asks < c.probe_start:
            return False
        if c.probe_every and (self.asks - c.probe_start) % c.probe_every == 0:
            return True
        return (
            bool(c.probe_stall)
            and self._stalled_for(values) >= c.probe_stall
            and (not self.probe_asks or self.asks - self.probe_asks[-1] > c.probe_stall)
        )

    def warmup_probe_count(self) -> int:
        """How many of the warm-up's asks 1 .. ``t_bo - 1`` are probes (``warmup_random``)."""
        return warmup_probe_count(self.config, self.heldout_residual)

    def _is_warmup_probe(self) -> bool:
        """Whether this ask is one of the warm-up's probes: the ``i``-th ask (``1 .. t_bo - 1``) of the
        block from ``warmup_start`` is one when ``floor(i k / (t_bo - 1))`` steps up there (``k`` of
        them, spread evenly, the last at the block's end)."""
        return is_warmup_probe(self.asks, self.warmup_probe_count(), self.config.t_bo - 1, self.config.warmup_start)

    @staticmethod
    def _stalled_for(values: np.ndarray) -> int:
        """How many of the ``(n,)`` observations (in the order told) came after the first one
        with the best value (0: the last one is the best)."""
        return int(values.size - 1 - int(np.argmax(values))) if values.size else 0

    def _gpbo(self):
        """GP-BO on this search's observations (built at its first use, seeded from the optimizer's
        generator)."""
        if self._plain is None:
            from grabnas.search.baselines import GPBO

            self._plain = GPBO(self.space, self.pool, seed=int(self.rng.integers(2**31)), n_init=1)
            self._plain.history = self.history  # the same observations, pending and tried cells
        return self._plain

    def _is_local_step(self, values: np.ndarray) -> bool:
        c = self.config
        if c.mode == "bo" or values.size == 0:
            return False
        if c.mode == "ascent":
            return True
        return values.size >= c.t_bo and (self.asks - c.t_bo) % c.local_every == 0

    def _local_step(self, model, values, acq, tried: set, cand: np.ndarray) -> Architecture | None:
        archs, _ = self.history.successes()
        z0 = self.latent([archs[int(np.argmax(values))]])  # (1, latent_dim)
        z = self.ascend(model, acq, z0)
        log = {"tried": 0, "valid": 0, "outside_pool": False}
        self.local_log.append(log)
        z = z[:, : self.latent_dim]  # the ascended latent (a one-hot encoding does not move)
        if self.config.local == "knn":
            if cand.size == 0:
                return None
            d = torch.cdist(z, self.z_pool[cand, : self.latent_dim]).squeeze(0)
            return self.pool[int(cand[int(torch.argmin(d))])]
        with torch.no_grad():
            decodes = list(self.codec.decode_archs(z.float(), mode="greedy"))
            decodes += self.codec.decode_archs(
                z.float().expand(self.config.num_decodes, -1), mode="vote", k=1, generator=self._torch_gen
            )
        log["tried"] = len(decodes)
        valid = [a for a in decodes if a is not None]
        log["valid"] = len(valid)
        fresh = [a for a in dict.fromkeys(valid) if a not in tried]
        if self.evaluable is not None:
            kept = [a for a in fresh if a in self._pool_index or self.evaluable(a)]
            log["not_evaluable"] = len(fresh) - len(kept)
            fresh = kept
        if not fresh:
            return None
        scores = self._score(acq, self.latent(fresh))
        best = fresh[int(torch.argmax(scores))]
        log["outside_pool"] = best not in self._pool_index
        return best

    def ascend(self, model, acq, z0: Tensor) -> Tensor:
        """Gradient ascent from ``z0`` ``(1, D)`` on the acquisition (or posterior mean); only
        the first ``latent_dim`` columns (the latent) move."""
        from botorch.acquisition import PosteriorMean

        target = PosteriorMean(model) if self.config.ascent_target == "mean" else acq
        z = z0.detach().clone().requires_grad_(True)
        for _ in range(self.config.ascent_steps):
            value = target(z.unsqueeze(1)).sum()
            (grad,) = torch.autograd.grad(value, z)
            grad[:, self.latent_dim :] = 0.0
            norm = grad.norm()
            if not torch.isfinite(norm) or norm == 0:
                break
            with torch.no_grad():
                z += self.config.eta * grad / norm
        return z.detach()


def _encode_in_chunks(codec: ArchitectureCodec, archs: Sequence[Architecture], chunk: int = 4096) -> Tensor:
    parts = [codec.encode_archs(archs[i : i + chunk]) for i in range(0, len(archs), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


__all__ = ["ArchitectureCodec", "GraBNAS", "GraBNASConfig", "LatentSurrogate", "MetaLatentSurrogate"]
