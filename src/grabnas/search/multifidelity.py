"""Multi-fidelity search: ask/tell optimizers that choose what to evaluate *and at which fidelity*.

A fidelity is a training budget (NB201: 12 or 200 epochs; a ``csv:`` table: its ``TASK@Nep``
columns and the task's own; a dataset search: ``--low-epochs`` or ``--epochs``), the last one the
*target* fidelity whose value a search maximises. An ask returns :class:`FidelityTrial` objects
(an architecture and a fidelity index); ``str(trial)`` is the architecture's string, so a study
records them like any trial, plus the fidelity in the trial's ``extra``
(:meth:`grabnas.study.Study.record_ask`), and a resume replays them exactly.

Optimizers (``grabnas search/bench --optimizer NAME``):

* ``grabnas-mf`` (:class:`MultiFidelityGraBNAS`): GraB-NAS whose target-adapted GP models every
  fidelity jointly (:class:`grabnas.models.latent_surrogate.MultiFidelityLatentSurrogate`: the
  surrogate's learned fidelity offsets of the task embedding, one mean offset per fidelity). Its
  rule (``rule=screen``, default): the candidate is the untried-at-target pool member of highest
  acquisition (LogEI) *at the target fidelity*, given everything observed at every fidelity; a
  candidate with no low-fidelity value yet is first evaluated at the lowest fidelity (a screen,
  6 % of the target's cost on NB201), one that has one is evaluated at the target fidelity. So
  no target-fidelity training is spent before a cheap one has been seen by the model, and a
  candidate whose screen disappoints loses its place to another one. ``rule=asha``: asynchronous
  successive halving (eta 3) whose new rung-0 configurations are GraB-NAS's proposals and whose
  promotions are ranked by the model's predicted target-fidelity value rather than by the
  raw low-fidelity value.
* ``asha-random``: ASHA (Li et al. 2020) with random proposals: each ask promotes the best
  not-yet-promoted configuration of a rung when it is in the top ``1/eta`` of that rung's
  results, else starts a random new configuration at the lowest fidelity.
* ``optuna-tpe-hyperband``: Optuna's TPE sampler with its Hyperband pruner (BOHB-style: model-based
  proposals, Hyperband's brackets), through Optuna's ask/tell: the low-fidelity value is
  reported at its epoch, and a configuration not pruned there is evaluated at the target fidelity.

An optimizer never evaluates anything; the evaluators (:mod:`grabnas.evaluation.multifidelity`)
read ``trial.arch`` and ``trial.fidelity``. A target-fidelity training is a training from
scratch (NB201's 12-epoch column is its own schedule, not a prefix of the 200-epoch one).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.spaces.base import Architecture, SearchSpace

#: ``grabnas search/bench`` names of the multi-fidelity optimizers
MULTIFIDELITY_OPTIMIZERS = ("grabnas-mf", "asha-random", "optuna-tpe-hyperband")


def is_multifidelity(name: str) -> bool:
    """Whether optimizer spec ``name`` (``grabnas-mf[rule=asha]``...) is a multi-fidelity one."""
    return name.split("[", 1)[0].strip() in MULTIFIDELITY_OPTIMIZERS


@dataclass(frozen=True)
class Fidelities:
    """The fidelities of a search, lowest first, the target last: ``names`` (stored in each
    trial's ``extra``; for NB201 the surrogate's fidelity labels, e.g. ``12ep``) and the training
    ``epochs`` of each."""

    names: tuple[str, ...] = ("12ep", "200ep")
    epochs: tuple[int, ...] = (12, 200)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.epochs) or len(self.names) < 2:
            raise GrabnasError(
                f"expected >= 2 fidelities with one epoch count each, got {self.names} and {self.epochs}"
            )
        if list(self.epochs) != sorted(set(self.epochs)) or self.epochs[0] < 1:
            raise GrabnasError(f"fidelity epochs must increase and be >= 1, got {self.epochs}")

    @property
    def target(self) -> int:
        return len(self.names) - 1

    def to_dict(self) -> dict:
        return {"names": list(self.names), "epochs": list(self.epochs)}


@dataclass(frozen=True)
class FidelityTrial:
    """One evaluation to run: ``arch`` trained at fidelity index ``fidelity``. ``str()`` is the
    architecture's string (what a study's ``arch`` column holds)."""

    arch: Architecture
    fidelity: int
    name: str = ""
    epochs: int = 0

    def __str__(self) -> str:
        return str(self.arch)

    @property
    def extra(self) -> dict:
        """What a study records with the ask (and a replay checks)."""
        return {"fidelity": self.name, "epochs": self.epochs}


@dataclass
class MultiFidelityHistory:
    """What a multi-fidelity optimizer has asked and been told."""

    pending: list[FidelityTrial] = field(default_factory=list)
    #: ``(trial, value)`` in tell order; value None for a failure
    observations: list[tuple[FidelityTrial, float | None]] = field(default_factory=list)

    def values(self, fidelity: int) -> dict[Architecture, float]:
        """Successful values at ``fidelity`` by architecture."""
        return {t.arch: v for t, v in self.observations if t.fidelity == fidelity and v is not None}

    def tried(self, fidelity: int) -> set[Architecture]:
        """Architectures asked at ``fidelity`` (told, failed or pending)."""
        out = {t.arch for t, _ in self.observations if t.fidelity == fidelity}
        return out | {t.arch for t in self.pending if t.fidelity == fidelity}

    def failed(self) -> set[Architecture]:
        return {t.arch for t, v in self.observations if v is None}


@dataclass
class _Best:
    arch: Architecture
    value: float


class MultiFidelityOptimizer(abc.ABC):
    """Base class of multi-fidelity ask/tell optimizers over a pool (see the module docstring)."""

    name: str = "multifidelity"

    def __init__(
        self,
        space: SearchSpace,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        fidelities: Fidelities | None = None,
        eta: int = 3,
    ) -> None:
        self.space = space
        self.pool: list[Architecture] = list(pool) if pool is not None else space.members()
        if not self.pool:
            raise GrabnasError("the candidate pool is empty; expected at least one architecture")
        if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
            raise GrabnasError(f"successive halving needs an integer eta >= 2, got {eta!r}")
        self.seed = seed
        self.fidelities = fidelities or Fidelities()
        self.eta = eta
        self.rng = np.random.default_rng(seed)
        self.history = MultiFidelityHistory()

    # -- contract -------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[FidelityTrial]:
        """Up to ``n`` new trials (an architecture at a fidelity it was not asked at before)."""
        if n < 1:
            raise GrabnasError(f"ask(n) needs n >= 1, got {n}")
        out: list[FidelityTrial] = []
        for _ in range(n):
            trial = self._ask_one()
            if trial is None:
                break
            self.history.pending.append(trial)
            out.append(trial)
        return out

    def tell(self, trials: Sequence[FidelityTrial], values: Sequence[float | None]) -> None:
        if len(trials) != len(values):
            raise GrabnasError(f"tell got {len(trials)} trials but {len(values)} values")
        for trial, value in zip(trials, values):
            v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
            if trial in self.history.pending:
                self.history.pending.remove(trial)
            self.history.observations.append((trial, v))
            self._on_tell(trial, v)

    def trial(self, arch: Architecture, fidelity: int) -> FidelityTrial:
        return FidelityTrial(arch, fidelity, self.fidelities.names[fidelity], int(self.fidelities.epochs[fidelity]))

    @property
    def best(self) -> _Best | None:
        """The best value at the target fidelity (what the search maximises)."""
        values = self.history.values(self.fidelities.target)
        if not values:
            return None
        arch = max(values, key=lambda a: values[a])
        return _Best(arch, values[arch])

    def settings(self) -> dict:
        return {"fidelities": self.fidelities.to_dict(), "eta": self.eta}

    # -- for subclasses -------------------------------------------------------------------------
    @abc.abstractmethod
    def _ask_one(self) -> FidelityTrial | None: ...

    def _on_tell(self, trial: FidelityTrial, value: float | None) -> None:  # noqa: B027 (optional hook)
        """Hook after each told result (default: nothing)."""

    def _busy(self) -> set[Architecture]:
        """Architectures with a pending trial or a failed one (never asked again)."""
        return {t.arch for t in self.history.pending} | self.history.failed()

    def promotion(self, score=None) -> FidelityTrial | None:
        """ASHA's promotion (Li et al. 2020, Algorithm 2): from the highest rung down, the best
        configuration of rung ``k`` by ``score`` (default: its value at ``k``) that is among the
        top ``floor(n_k / eta)`` of the ``n_k`` results of rung ``k`` and not yet asked at
        ``k + 1``; None when there is none. ``score(archs, k)`` returns one number per arch."""
        busy = self._busy()
        for k in range(self.fidelities.target - 1, -1, -1):
            values = self.history.values(k)
            top = len(values) // self.eta
            if top < 1:
                continue
            archs = list(values)
            s = np.asarray(score(archs, k) if score is not None else [values[a] for a in archs], dtype=np.float64)
            order = np.argsort(-s, kind="stable")[:top]
            above = self.history.tried(k + 1)
            for i in order:
                if archs[i] not in above and archs[i] not in busy:
                    return self.trial(archs[i], k + 1)
        return None

    def untried(self) -> list[Architecture]:
        """Pool members not asked at any fidelity, in pool order."""
        asked = {t.arch for t, _ in self.history.observations} | {t.arch for t in self.history.pending}
        return [a for a in self.pool if a not in asked]


class ASHARandom(MultiFidelityOptimizer):
    """Asynchronous successive halving with random proposals (``asha-random``)."""

    name = "asha-random"

    def _ask_one(self) -> FidelityTrial | None:
        promoted = self.promotion()
        if promoted is not None:
            return promoted
        untried = self.untried()
        if not untried:
            return None
        return self.trial(untried[int(self.rng.integers(len(untried)))], 0)


class OptunaTPEHyperband(MultiFidelityOptimizer):
    """Optuna's ``TPESampler`` with its ``HyperbandPruner`` (``optuna-tpe-hyperband``), through
    Optuna's ask/tell: a configuration is sampled (the space's categorical encoding, as for
    ``optuna-tpe``), evaluated at the lowest fidelity, reported at that fidelity's epoch; if the
    pruner does not prune it, it is evaluated at the target fidelity and told with that value
    (so the pruner's rungs see min resource = the lowest epochs, max = the target's). A sample
    that maps to no untried pool member is told as pruned and sampled again (after 20 such
    samples a random untried member is proposed)."""

    name = "optuna-tpe-hyperband"

    def __init__(self, space, pool=None, seed: int = 0, fidelities: Fidelities | None = None, eta: int = 3) -> None:
        super().__init__(space, pool, seed, fidelities, eta)
        from grabnas.search.optuna_baselines import encoding_for, import_optuna, quiet_optuna, sampler_seed

        optuna = import_optuna("optuna-tpe-hyperband")
        self._optuna = optuna
        self._quiet = quiet_optuna
        self._encoding = encoding_for(space, self.pool)
        self._pool_set = set(self.pool)
        e = self.fidelities.epochs
        with quiet_optuna():
            self._study = optuna.create_study(
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=sampler_seed(seed)),
                pruner=optuna.pruners.HyperbandPruner(min_resource=e[0], max_resource=e[-1], reduction_factor=eta),
            )
        self._trials: dict[Architecture, object] = {}
        self._queue: list[Architecture] = []
        self.fallbacks = 0

    def _ask_one(self) -> FidelityTrial | None:
        if self._queue:
            return self.trial(self._queue.pop(0), self.fidelities.target)
        T = self._optuna.trial.TrialState
        with self._quiet():
            for _ in range(20):
                trial = self._study.ask(self._encoding.distributions())
                arch = self._encoding.decode(trial.params)
                if arch is not None and arch in self._pool_set and arch not in self._trials:
                    self._trials[arch] = trial
                    return self.trial(arch, 0)
                self._study.tell(trial, state=T.PRUNED)
            untried = [a for a in self.untried() if a not in self._trials]
            if not untried:
                return None
            self.fallbacks += 1
            arch = untried[int(self.rng.integers(len(untried)))]
            self._study.enqueue_trial(self._encoding.encode(arch))
            self._trials[arch] = self._study.ask(self._encoding.distributions())
            return self.trial(arch, 0)

    def _on_tell(self, trial: FidelityTrial, value: float | None) -> None:
        T = self._optuna.trial.TrialState
        ot = self._trials[trial.arch]
        with self._quiet():
            if value is None:
                self._study.tell(ot, state=T.FAIL)
                return
            ot.report(value, step=int(trial.epochs))
            if trial.fidelity == self.fidelities.target:
                self._study.tell(ot, value)
            elif ot.should_prune():
                self._study.tell(ot, state=T.PRUNED)
            else:
                self._queue.append(trial.arch)


@dataclass(frozen=True)
class MultiFidelityConfig:
    """Settings of ``grabnas-mf`` (stored in a study's settings).

    Attributes:
        rule: ``screen`` (default) or ``asha`` (see the module docstring).
        bar: with ``screen``, which screened candidates may be evaluated at the target fidelity:
            ``asha`` (default) those whose low-fidelity value is in the top ``1/eta`` of the
            low-fidelity results so far (successive halving's bar; a candidate below it keeps its
            place and is promoted once the bar admits it), ``none`` any, ``model`` the top
            ``1/eta`` by the model's predicted target-fidelity value, or ``aei``: no bar, the
            fidelity chosen by augmented expected improvement (:meth:`MultiFidelityGraBNAS._aei_pick`).
        init: ``thompson`` (the first proposal: the argmax of one draw from the zero-shot prior
            over its ``init_candidates`` best members, as GraB-NAS's initial design) or ``top``.
        init_candidates: members the initial draw is over.
        n_init: asks of the initial design (each a screen of the ``init`` pick among the untried
            members; default 1, then the model's).
        observation_noise: the acquisition scores a new evaluation (noise included).
        ei_after: target-fidelity observations before the acquisition is LogEI against the best
            of them; before, it is the posterior mean at the target fidelity.
        per_cost: rank candidates by LogEI minus the log of their target-fidelity training cost
            (expected improvement per unit cost; needs the optimizer's ``costs``).
        guard: stop screening once the target's own data say the fidelities disagree: from 3
            cells observed at both fidelities on, when the model's fitted cross-fidelity factor
            ``rho`` is below its prior median (0.5), every candidate is evaluated at the target
            fidelity directly (single-fidelity GraB-NAS on the joint model).
        warmup_random: ``corpus`` (default): of asks 1 .. ``warmup - 1``, as many as single-fidelity
            GraB-NAS makes random (``floor(r * warmup)``, ``r`` the surrogate corpus's held-out
            residual, :func:`grabnas.search.grabnas.residual_probe_count`; spread evenly) are
            screens of a uniformly random untried pool member, so that a prior wrong about the
            target is seen in observations it did not choose (NB201's surrogates: none; ``nb201-all``,
            the surrogate of dataset searches: 6 of 10). ``none``: no random screens.
        warmup: the asks that ``warmup_random`` spreads its screens over (single-fidelity
            GraB-NAS's ``t_bo``).
    """

    rule: str = "screen"
    bar: str = "asha"
    init: str = "thompson"
    init_candidates: int = 256
    n_init: int = 1
    observation_noise: bool = True
    ei_after: int = 1
    per_cost: bool = False
    guard: bool = False
    warmup_random: str = "corpus"
    warmup: int = 10

    def __post_init__(self) -> None:
        if self.rule not in ("screen", "asha"):
            raise GrabnasError(f"grabnas-mf rule {self.rule!r} is unknown; expected screen or asha")
        if self.bar not in ("asha", "model", "none", "aei"):
            raise GrabnasError(f"grabnas-mf bar {self.bar!r} is unknown; expected asha, model, none or aei")
        if self.init not in ("thompson", "top"):
            raise GrabnasError(f"grabnas-mf init {self.init!r} is unknown; expected thompson or top")
        if self.warmup_random not in ("corpus", "none"):
            raise GrabnasError(f"grabnas-mf warmup_random {self.warmup_random!r} is unknown; expected corpus or none")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 1:
            raise GrabnasError(f"grabnas-mf warmup must be an integer >= 1, got {self.warmup!r}")
        if not isinstance(self.guard, bool):
            raise GrabnasError(f"grabnas-mf guard must be true or false, got {self.guard!r}")
        if not isinstance(self.per_cost, bool):
            raise GrabnasError(f"grabnas-mf per_cost must be true or false, got {self.per_cost!r}")
        if not isinstance(self.observation_noise, bool):
            raise GrabnasError(f"grabnas-mf observation_noise must be true or false, got {self.observation_noise!r}")
        if isinstance(self.ei_after, bool) or not isinstance(self.ei_after, int) or self.ei_after < 1:
            raise GrabnasError(f"grabnas-mf ei_after must be an integer >= 1, got {self.ei_after!r}")
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, int) or self.n_init < 1:
            raise GrabnasError(f"grabnas-mf n_init must be an integer >= 1, got {self.n_init!r}")
        if (
            isinstance(self.init_candidates, bool)
            or not isinstance(self.init_candidates, int)
            or self.init_candidates < 1
        ):
            raise GrabnasError(f"grabnas-mf init_candidates must be an integer >= 1, got {self.init_candidates!r}")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class MultiFidelityGraBNAS(MultiFidelityOptimizer):
    """Multi-fidelity GraB-NAS (``grabnas-mf``; see the module docstring).

    Args:
        space, pool, seed, fidelities, eta: as :class:`MultiFidelityOptimizer`.
        surrogate: a :class:`~grabnas.models.latent_surrogate.MultiFidelityLatentSurrogate`.
        pool_latents: ``(len(pool), latent_dim)`` latents of the pool.
        config: :class:`MultiFidelityConfig` (keyword overrides are accepted too).
        heldout_residual: the share of a left-out dataset's variance the surrogate's corpus leaves
            unexplained (its card's ``heldout_residual``; None: unknown), for ``warmup_random``.
    """

    name = "grabnas-mf"

    def __init__(
        self,
        space: SearchSpace,
        surrogate,
        pool_latents,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        fidelities: Fidelities | None = None,
        eta: int = 3,
        config: MultiFidelityConfig | None = None,
        costs=None,
        heldout_residual: float | None = None,
        **overrides: object,
    ) -> None:
        import torch

        super().__init__(space, pool, seed, fidelities, eta)
        #: ``(len(pool),)`` target-fidelity training costs (for ``per_cost``), or None
        self.costs = None if costs is None else np.asarray(costs, dtype=np.float64)
        if surrogate.num_fidelities != len(self.fidelities.names):
            raise GrabnasError(
                f"the surrogate models {surrogate.num_fidelities} fidelities; the search has {len(self.fidelities.names)}"
            )
        if pool_latents.shape[0] != len(self.pool):
            raise GrabnasError(f"pool_latents has {pool_latents.shape[0]} rows for a pool of {len(self.pool)}")
        self.config = config or MultiFidelityConfig(**overrides)  # type: ignore[arg-type]
        self.heldout_residual = heldout_residual
        self.surrogate = surrogate
        self.z_pool = pool_latents.detach().double()
        self._index = {a: i for i, a in enumerate(self.pool)}
        self._torch_gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        self.asks = 0
        #: per ask: the rule's decision (for reports and tests)
        self.decisions: list[str] = []
        self.numerical_log: list[str] = []

    def settings(self) -> dict:
        return {
            **super().settings(),
            **self.config.to_dict(),
            "surrogate_options": self._surrogate_options(),
            "surrogate_weights": self.surrogate.fingerprint(),
        }

    def _surrogate_options(self) -> dict:
        """The surrogate's fit options as the study records them (``integrate`` only when on, so
        a study written before the option resumes)."""
        options = dict(self.surrogate.fit_options)
        if self.surrogate.integrate:
            options["integrate"] = self.surrogate.integrate
        return options

    def warmup_probe_count(self) -> int:
        """How many of asks 1 .. ``warmup - 1`` are random screens (``warmup_random``)."""
        from grabnas.search.grabnas import residual_probe_count

        if self.config.warmup_random != "corpus":
            return 0
        return residual_probe_count(self.heldout_residual, self.config.warmup)

    # -- the model ------------------------------------------------------------------------------
    def _model(self):
        import torch

        obs = [(t, v) for t, v in self.history.observations if v is not None]
        idx = torch.as_tensor([self._index[t.arch] for t, _ in obs], dtype=torch.long)
        fid = torch.as_tensor([t.fidelity for t, _ in obs], dtype=torch.long)
        y = torch.as_tensor([v for _, v in obs], dtype=torch.float64)
        return self.surrogate.fit(self.z_pool[idx], fid, y)

    def _acquisition(self, model):
        from botorch.acquisition import LogExpectedImprovement, PosteriorMean

        from grabnas.models.latent_surrogate import _NoisyObservations

        best_f = model.best_f
        n_target = sum(t.fidelity == self.fidelities.target and v is not None for t, v in self.history.observations)
        if best_f is None or n_target < self.config.ei_after:
            return PosteriorMean(model)
        return LogExpectedImprovement(
            _NoisyObservations(model) if self.config.observation_noise else model, best_f=float(best_f)
        )

    @staticmethod
    def _score(acq, z, chunk: int = 16384):
        import torch

        with torch.no_grad():
            return torch.cat([acq(z[i : i + chunk].unsqueeze(1)) for i in range(0, len(z), chunk)])

    def _predicted(self, model, archs: Sequence[Architecture]) -> np.ndarray:
        """The model's posterior mean at the target fidelity of ``archs``."""
        import torch

        z = self.z_pool[torch.as_tensor([self._index[a] for a in archs], dtype=torch.long)]
        with torch.no_grad():
            return model.posterior(z.unsqueeze(1)).mean.reshape(-1).numpy()

    # -- the ask --------------------------------------------------------------------------------
    def _ask_one(self) -> FidelityTrial | None:
        import gpytorch
        import torch
        from gpytorch.utils.errors import NanError, NotPSDError

        failures = (NotPSDError, NanError, torch.linalg.LinAlgError)
        try:
            out = self._ask_model()
        except failures as e:
            self.numerical_log.append(f"ask {self.asks}: {type(e).__name__}; refitted with 100x jitter")
            with gpytorch.settings.cholesky_jitter(float_value=1e-4, double_value=1e-6):
                out = self._ask_model()
        self.asks += 1
        return out

    def _candidates(self, exclude: set[Architecture]) -> np.ndarray:
        return np.array([i for i, a in enumerate(self.pool) if a not in exclude], dtype=np.int64)

    def _ask_model(self) -> FidelityTrial | None:
        target, busy = self.fidelities.target, self._busy()
        n_obs = sum(v is not None for _, v in self.history.observations)
        if (
            n_obs < self.config.n_init
        ):  # the initial design: the zero-shot prior's pick, screened at the lowest fidelity
            cand = self._candidates(busy | {t.arch for t, _ in self.history.observations})
            if cand.size == 0:
                return None
            self.decisions.append("init")
            return self.trial(self._prior_pick(cand), 0)
        from grabnas.search.grabnas import is_warmup_probe

        if is_warmup_probe(self.asks, self.warmup_probe_count(), self.config.warmup - 1):
            cand = self._candidates(busy | {t.arch for t, _ in self.history.observations})
            if cand.size:
                self.decisions.append("probe")
                return self.trial(self.pool[int(cand[int(self.rng.integers(cand.size))])], 0)
        model = self._model()
        if self.config.rule == "asha":
            promoted = self.promotion(lambda archs, k: self._predicted(model, archs))
            if promoted is not None:
                self.decisions.append("promote")
                return promoted
            asked = {t.arch for t, _ in self.history.observations}
            cand = self._candidates(busy | asked)
            if cand.size == 0:
                return None
            scores = self._score(self._acquisition(model), self.z_pool[cand])
            self.decisions.append("new")
            return self.trial(self.pool[int(cand[int(np.argmax(scores.numpy()))])], 0)
        # screen: the best candidate at the target fidelity; screened first where it has no low value
        cand = self._candidates(busy | self.history.tried(target))
        if cand.size == 0:
            return None
        low = set().union(*(self.history.tried(k) for k in range(target)))
        direct = self.config.guard and self._fidelities_disagree()
        if self.config.bar == "aei" and n_obs >= 2 and not direct:  # its own scores, not the pool's LogEI
            return self._aei_pick(model, cand, low)
        acq = self._acquisition(model)
        scores = self._score(acq, self.z_pool[cand]).numpy()
        if self.config.per_cost and self.costs is not None and type(acq).__name__ == "LogExpectedImprovement":
            scores = scores - np.log(self.costs[cand])
        if direct:
            self.decisions.append("direct")
            return self.trial(self.pool[int(cand[int(np.argmax(scores))])], target)
        passed = None
        if self.config.bar in ("asha", "aei"):  # aei before its model has two observations: the ASHA bar
            passed = self._passed_bar()
        elif self.config.bar == "model":
            passed = self._passed_bar(lambda archs: self._predicted(model, archs))
        for i in np.argsort(-scores, kind="stable"):
            arch = self.pool[int(cand[i])]
            if arch not in low:
                self.decisions.append("screen")
                return self.trial(arch, 0)
            if passed is None or arch in passed:
                self.decisions.append("promote")
                return self.trial(arch, target)
        return None

    def _aei_pick(self, model, cand: np.ndarray, low: set) -> FidelityTrial:
        """Augmented expected improvement (Huang, Allen, Notz and Miller 2006, "Sequential kriging
        optimization using multiple-fidelity evaluations"): among the untried-at-target ``cand``,
        the (cell, fidelity) maximising ``EI_T(x) * corr(f_m(x), f_T(x)) * (1 - sd_noise /
        sqrt(var_m(x) + noise)) * epochs_T / epochs_m``, where ``EI_T`` is the expected improvement
        of the target-fidelity value over the effective best (the largest ``mean_T - sd_T`` of the
        cells observed so far), the correlation and variances come from the joint posterior of the
        cell at both fidelities, and ``m`` is the lowest fidelity (cells not yet screened) or the
        target. A screened cell's low-fidelity variance is about the noise, so screening it again
        is worth nothing and its only move is a promotion; the epochs ratio is the cost ratio
        (FLOPs cancel). Scores in logs."""
        import torch

        target = self.fidelities.target
        observed = sorted({self._index[t.arch] for t, v in self.history.observations if v is not None})
        with torch.no_grad():  # one joint posterior for the candidates and the observed cells
            mean_T, var_T, cov, var_L = self._joint(model, self.z_pool[torch.as_tensor([*cand, *observed])])
        k = len(cand)
        best = float((mean_T[k:] - var_T[k:].sqrt()).max())
        mean_T, var_T, cov, var_L = mean_T[:k], var_T[:k], cov[:k], var_L[:k]
        sd_T = var_T.clamp_min(1e-12).sqrt()
        u = (mean_T - best) / sd_T
        normal = torch.distributions.Normal(0.0, 1.0)
        ei = sd_T * (normal.log_prob(u).exp() + u * normal.cdf(u))
        log_ei = torch.log(ei.clamp_min(1e-300))
        noise = float(getattr(model.gp, "map_model", model.gp).likelihood.noise)
        log_gain_T = torch.log((1 - math.sqrt(noise) / (var_T + noise).sqrt()).clamp_min(1e-300))
        corr = (cov / (var_L.clamp_min(1e-12) * var_T.clamp_min(1e-12)).sqrt()).clamp_min(1e-300)
        log_gain_L = torch.log((1 - math.sqrt(noise) / (var_L + noise).sqrt()).clamp_min(1e-300))
        log_ratio = math.log(self.fidelities.epochs[target] / self.fidelities.epochs[0])
        promote = (log_ei + log_gain_T).numpy()
        screen = (log_ei + torch.log(corr) + log_gain_L + log_ratio).numpy()
        screen[[self.pool[int(i)] in low for i in cand]] = -np.inf
        i_p, i_s = int(np.argmax(promote)), int(np.argmax(screen))
        if screen[i_s] > promote[i_p]:
            self.decisions.append("screen")
            return self.trial(self.pool[int(cand[i_s])], 0)
        self.decisions.append("promote")
        return self.trial(self.pool[int(cand[i_p])], target)

    def _joint(self, model, z):
        """``(mean_T, var_T, cov_LT, var_L)``, each ``(N,)``: the joint posterior of ``N`` cells'
        values (noiseless) at the target and the lowest fidelity."""
        import torch

        both = torch.stack([z, z], -2)  # (N, 2, latent_dim): [lowest, target]
        X = self.surrogate.inputs(both, torch.tensor([0, self.fidelities.target]).expand(both.shape[:-1]))
        post = model.gp.posterior(X)
        mean = post.mean.squeeze(-1)
        cov = post.distribution.covariance_matrix
        return mean[:, 1], cov[:, 1, 1], cov[:, 0, 1], cov[:, 0, 0]

    def _fidelities_disagree(self) -> bool:
        """``guard``: >= 3 cells observed at the lowest and the target fidelity, and the last fit's
        cross-fidelity factor below 0.5."""
        pairs = set(self.history.values(0)) & set(self.history.values(self.fidelities.target))
        gp = getattr(self.surrogate, "_last_gp", None)
        hp = getattr(gp, "fitted_hyperparameters", None) if len(pairs) >= 3 else None
        return bool(hp) and hp.get("cross_fidelity_rho", 1.0) < 0.5

    def _passed_bar(self, score=None) -> set[Architecture]:
        """Screened architectures in the top ``floor(n / eta)`` of the ``n`` lowest-fidelity
        results (successive halving's promotion bar), ranked by their lowest-fidelity value or
        by ``score(archs)`` (``bar=model``: the model's predicted target-fidelity value)."""
        values = self.history.values(0)
        top = len(values) // self.eta
        archs = list(values)
        s = np.asarray(score(archs) if score is not None else [values[a] for a in archs], dtype=np.float64)
        return {archs[i] for i in np.argsort(-s, kind="stable")[:top]}

    def _prior_pick(self, cand: np.ndarray) -> Architecture:
        """The initial design's pick among ``cand`` at the target fidelity: the top zero-shot
        prior mean (``init=top``) or the argmax of one joint draw over its ``init_candidates``
        best (``init=thompson``, the optimizer's own generator), as GraB-NAS's initial design."""
        import torch
        from linear_operator.utils.cholesky import psd_safe_cholesky

        prior = self.surrogate.fit(
            self.z_pool[:0], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
        )
        with torch.no_grad():
            scores = prior.posterior(self.z_pool[torch.as_tensor(cand)].unsqueeze(1)).mean.reshape(-1)
        if self.config.init == "top" or cand.size == 1:
            return self.pool[int(cand[int(torch.argmax(scores))])]
        top = torch.topk(scores, min(self.config.init_candidates, cand.size)).indices
        with torch.no_grad():
            post = prior.posterior(self.z_pool[torch.as_tensor(cand[top.numpy()])])
            chol = psd_safe_cholesky(post.distribution.covariance_matrix)
            draw = post.mean.reshape(-1) + chol @ torch.randn(len(top), dtype=torch.float64, generator=self._torch_gen)
        return self.pool[int(cand[int(top[int(torch.argmax(draw))])])]


def parse_multifidelity_spec(spec: str) -> tuple[str, dict]:
    """``"grabnas-mf[rule=asha]"`` -> ``("grabnas-mf", {"rule": "asha"})``."""
    from grabnas.search.registry import _option_value

    name, _, rest = spec.partition("[")
    name = name.strip()
    if name not in MULTIFIDELITY_OPTIMIZERS:
        raise GrabnasError(
            f"unknown multi-fidelity optimizer {name!r}; expected one of {', '.join(MULTIFIDELITY_OPTIMIZERS)}"
        )
    options: dict = {}
    if rest:
        if not rest.endswith("]"):
            raise GrabnasError(f"bad optimizer {spec!r}; expected NAME[key=value,...]")
        for part in filter(None, (p.strip() for p in rest[:-1].split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                raise GrabnasError(f"bad option {part!r} in {spec!r}; expected key=value")
            options[key.strip()] = _option_value(value.strip())
    return name, options


def build_multifidelity_optimizer(
    spec: str,
    space: SearchSpace,
    seed: int,
    fidelities: Fidelities,
    *,
    pool: Sequence[Architecture] | None = None,
    surrogate=None,
    embeddings=None,
    pool_latents=None,
    costs=None,
    heldout_residual: float | None = None,
    options: dict | None = None,
) -> MultiFidelityOptimizer:
    """The multi-fidelity optimizer ``spec`` (``grabnas-mf[...]``, ``asha-random``,
    ``optuna-tpe-hyperband``; ``eta=K`` for any; ``options``: more of them, as if in the spec's
    brackets). ``grabnas-mf`` needs the meta-trained ``surrogate``, one task embedding per fidelity
    (``embeddings``, lowest first) and the pool's latents (``costs``: the pool's target-fidelity
    training costs, for ``per_cost``; ``heldout_residual``: the surrogate corpus's, for
    ``warmup_random``)."""
    name, parsed = parse_multifidelity_spec(spec)
    options = {**parsed, **(options or {})}
    eta = int(options.pop("eta", 3))
    if name == "asha-random":
        if options:
            raise GrabnasError(f"asha-random takes only eta=, got {', '.join(options)}")
        return ASHARandom(space, pool, seed, fidelities, eta)
    if name == "optuna-tpe-hyperband":
        if options:
            raise GrabnasError(f"optuna-tpe-hyperband takes only eta=, got {', '.join(options)}")
        return OptunaTPEHyperband(space, pool, seed, fidelities, eta)
    from grabnas.models.latent_surrogate import MultiFidelityLatentSurrogate

    if surrogate is None or embeddings is None or pool_latents is None:
        raise GrabnasError("grabnas-mf needs a meta-trained surrogate, its task embeddings and the pool's latents")
    fit_options = {k[len("adapt_") :]: options.pop(k) for k in list(options) if k.startswith("adapt_")}
    latent = MultiFidelityLatentSurrogate(surrogate, embeddings, seed=seed, **fit_options)
    return MultiFidelityGraBNAS(
        space,
        latent,
        pool_latents,
        pool=pool,
        seed=seed,
        fidelities=fidelities,
        eta=eta,
        config=MultiFidelityConfig(**options),
        costs=costs,
        heldout_residual=heldout_residual,
    )


def build_nb201_multifidelity(
    spec: str, bench, task: str, seed: int, cache: dict | None = None, log=None
) -> MultiFidelityOptimizer:
    """A multi-fidelity optimizer for NB201 ``task`` (fidelities ``12ep`` and ``200ep``): for
    ``grabnas-mf`` the shipped VAE's latents and the shipped surrogate that held the task's
    dataset out, with its 12-epoch and main task embeddings."""
    import torch

    from grabnas.search.registry import _surrogates, _vae_and_latents

    fidelities = Fidelities(("12ep", "200ep"), (12, 200))
    pool = bench.pool(task)
    if parse_multifidelity_spec(spec)[0] != "grabnas-mf":
        return build_multifidelity_optimizer(spec, bench.space, seed, fidelities, pool=pool)
    from grabnas.meta.features import latents_for

    cache = {} if cache is None else cache
    vae, latents = _vae_and_latents(bench, cache)
    _, (sur,) = _surrogates(bench, task, "auto", cache, log)
    member = latents_for(sur, vae, latents)
    pool_latents = member[torch.as_tensor([bench.space.index_of(a) for a in pool], dtype=torch.long)]
    with torch.no_grad():
        embeddings = [sur.task_embedding(None, "12ep"), sur.task_embedding()]
    from grabnas.train.cost import nb201_training_costs

    all_costs = nb201_training_costs(bench.group(task), 200)
    opt = build_multifidelity_optimizer(
        spec,
        bench.space,
        seed,
        fidelities,
        pool=pool,
        surrogate=sur,
        embeddings=embeddings,
        pool_latents=pool_latents,
        costs=all_costs[[bench.space.index_of(a) for a in pool]],
        heldout_residual=sur.card.get("heldout_residual"),
    )
    opt.surrogate_card = sur.card
    return opt


__all__ = [
    "ASHARandom",
    "MULTIFIDELITY_OPTIMIZERS",
    "Fidelities",
    "FidelityTrial",
    "MultiFidelityConfig",
    "MultiFidelityGraBNAS",
    "MultiFidelityHistory",
    "MultiFidelityOptimizer",
    "OptunaTPEHyperband",
    "build_multifidelity_optimizer",
    "build_nb201_multifidelity",
    "is_multifidelity",
    "parse_multifidelity_spec",
]
