"""Optuna's samplers as grabnas baselines: ``optuna-tpe``, ``optuna-gp``, ``optuna-random``.

Each optimizer drives an in-memory ``optuna.Study`` (direction ``maximize``) through Optuna's
ask/tell interface with ``TPESampler``, ``GPSampler`` or ``RandomSampler``, seeded with the
optimizer's seed. Optuna samples the space's categorical encoding (:func:`encoding_for`):

* NAS-Bench-201: one ``suggest_categorical`` per cell edge, named ``edge_<src>_<dst>`` in the
  official edge order (``edge_0_1, edge_0_2, edge_1_2, edge_0_3, edge_1_3, edge_2_3``), each over
  the five ops ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`` (this order);
* NAS-Bench-Graph: per computing node ``i = 1..4`` a ``node<i>_op`` over its nine ops and a
  ``node<i>_src`` over the nodes ``0..i-1`` it may read; a configuration maps to the member
  isomorphic to it (several configurations map to one member; the all-skip network to none);
* any other space: one categorical ``arch`` over the pool members' canonical strings.

Duplicates and pool misses are handled as Optuna's FAQ ("How can I ignore duplicated samples?")
suggests, without spending an evaluation: a sampled configuration that maps to an architecture already
told is told to Optuna at once with the known value (or as ``FAIL`` when that evaluation
failed); one that maps to an architecture still pending stays a running trial and is told the
same value when that architecture's value arrives. A configuration that maps to no pool member
is told as ``PRUNED``: TPE ranks pruned trials below every complete one, so it learns to move
away from configurations outside the pool instead of resampling them (a ``FAIL`` trial is
ignored by every sampler; the FAQ too suggests pruning to steer a sampler away); GP and random
sampling leave pruned trials out. When ``max_retries + 1`` samples in a row are duplicates or
misses, the optimizer proposes a random untried pool member instead (counted in
``stats["fallbacks"]``); Optuna learns its value when it is told. A failed evaluation (value
None or NaN) is told as ``FAIL``.

Optuna is optional (``pip install grabnas[optuna]``) and imported only when one of these
optimizers is built. The sampler's seed is the optimizer's seed (:func:`sampler_seed` maps seeds
beyond 32 bits into Optuna's range). Optuna logs each finished trial at INFO level; its calls
here run with Optuna's verbosity raised to WARNING and put back afterwards (Optuna has only a
process-wide verbosity, so another thread's Optuna logging is muted for that moment too).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from grabnas.errors import GrabnasError, InvalidArchitectureError
from grabnas.search.base import Optimizer
from grabnas.spaces.base import Architecture, SearchSpace

INSTALL_HINT = "pip install grabnas[optuna]"


def import_optuna(what: str = "this optimizer"):  # -> module optuna
    """``optuna``, or a one-line :class:`GrabnasError` saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise GrabnasError(f"{what} needs Optuna, which is not installed; {INSTALL_HINT}") from None
    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's verbosity at WARNING (at most) inside the block, put back afterwards."""
    import optuna

    before = optuna.logging.get_verbosity()
    if before < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        if before < optuna.logging.WARNING:
            optuna.logging.set_verbosity(before)


# -- the categorical encoding ----------------------------------------------------------------


class CategoricalEncoding:
    """An architecture as named categorical choices (what Optuna samples).

    ``choices`` maps each parameter name to its tuple of choices (in suggestion order);
    :meth:`decode` maps a full configuration to a space member (None when it describes none) and
    :meth:`encode` a member back to a configuration that decodes to it.
    """

    def __init__(self, choices: dict[str, tuple]) -> None:
        self.choices = choices

    def distributions(self) -> dict:  # -> dict[str, optuna.distributions.CategoricalDistribution]
        from optuna.distributions import CategoricalDistribution

        return {name: CategoricalDistribution(list(c)) for name, c in self.choices.items()}

    def suggest(self, trial) -> dict[str, Any]:
        """One ``trial.suggest_categorical`` per parameter; the configuration."""
        return {name: trial.suggest_categorical(name, list(c)) for name, c in self.choices.items()}

    def decode(self, params: dict[str, Any]) -> Architecture | None:
        raise NotImplementedError

    def encode(self, arch: Architecture) -> dict[str, Any]:
        raise NotImplementedError


class NB201Encoding(CategoricalEncoding):
    """``edge_<src>_<dst>`` for each NB201 edge in official order, over the five ops."""

    def __init__(self) -> None:
        from grabnas.spaces.nb201 import EDGES, OPS

        self.names = tuple(f"edge_{s}_{d}" for s, d in EDGES)
        super().__init__({name: OPS for name in self.names})

    def decode(self, params: dict[str, Any]) -> Architecture | None:
        from grabnas.spaces.nb201 import NB201Arch

        try:
            return NB201Arch(tuple(params[name] for name in self.names))
        except (KeyError, InvalidArchitectureError):
            return None

    def encode(self, arch: Architecture) -> dict[str, Any]:
        return dict(zip(self.names, arch.ops))  # type: ignore[attr-defined]


class NASBenchGraphEncoding(CategoricalEncoding):
    """``node<i>_op`` and ``node<i>_src`` (``0..i-1``) for each computing node ``i = 1..4``;
    a configuration decodes to the member isomorphic to it."""

    def __init__(self, space: SearchSpace) -> None:
        from grabnas.spaces.nasbench_graph import NUM_NODES, OPS

        self.space = space
        self.num_nodes = NUM_NODES
        choices: dict[str, tuple] = {}
        for i in range(1, NUM_NODES + 1):
            choices[f"node{i}_op"] = OPS
            choices[f"node{i}_src"] = tuple(range(i))
        super().__init__(choices)

    def decode(self, params: dict[str, Any]) -> Architecture | None:
        from grabnas.spaces.nasbench_graph import NASBenchGraphArch

        try:
            nodes = range(1, self.num_nodes + 1)
            arch = NASBenchGraphArch(
                tuple(int(params[f"node{i}_src"]) for i in nodes), tuple(params[f"node{i}_op"] for i in nodes)
            )
            return self.space.canonical(arch)  # type: ignore[attr-defined]
        except (KeyError, InvalidArchitectureError):
            return None

    def encode(self, arch: Architecture) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (src, op) in enumerate(zip(arch.link, arch.ops), start=1):  # type: ignore[attr-defined]
            out[f"node{i}_op"] = op
            out[f"node{i}_src"] = src
        return out


class PoolStringEncoding(CategoricalEncoding):
    """One categorical ``arch`` over the pool members' canonical strings (spaces without a
    per-choice form)."""

    def __init__(self, space: SearchSpace, pool: Sequence[Architecture]) -> None:
        self.space = space
        super().__init__({"arch": tuple(a.to_string() for a in pool)})

    def decode(self, params: dict[str, Any]) -> Architecture | None:
        try:
            return self.space.parse(params["arch"])
        except (KeyError, InvalidArchitectureError):
            return None

    def encode(self, arch: Architecture) -> dict[str, Any]:
        return {"arch": arch.to_string()}


def encoding_for(space: SearchSpace, pool: Sequence[Architecture] | None = None) -> CategoricalEncoding:
    """The categorical encoding of ``space`` (see the module docstring); ``pool`` is only read
    by the fallback for spaces without a per-choice form (default: every member)."""
    if space.name == "nb201":
        return NB201Encoding()
    if space.name == "nasbench-graph":
        return NASBenchGraphEncoding(space)
    return PoolStringEncoding(space, list(pool) if pool is not None else space.members())


# -- the optimizers ----------------------------------------------------------------------------


def sampler_seed(seed: int) -> int:
    """The Optuna sampler's seed for an optimizer seed: the seed itself when it fits Optuna's
    ``0 .. 2**32 - 1``, else a 32-bit word drawn from ``numpy.random.SeedSequence(seed)`` (the
    command line's per-task child seeds are 64-bit)."""
    if 0 <= seed < 2**32:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence(seed).generate_state(1)[0])


class OptunaOptimizer(Optimizer):
    """Base of the Optuna baselines: an in-memory ``optuna.Study`` driven by ask/tell.

    Duplicates, pool misses and the random fallback are described in the module docstring.

    Args:
        max_retries: further samples per proposal after one that lands on a duplicate or
            outside the pool; when all ``max_retries + 1`` do, a random untried pool member is
            proposed instead.

    Attributes:
        study: the ``optuna.Study`` (every sampled configuration is one of its trials).
        stats: counts of ``duplicates`` (samples of a tried architecture), ``pool_misses``
            (samples outside the pool) and ``fallbacks`` (random proposals after
            ``max_retries + 1`` such samples in a row).
    """

    name = "optuna"
    sampler_name = ""

    def __init__(
        self,
        space: SearchSpace,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        max_retries: int = 20,
    ) -> None:
        optuna = import_optuna(f"optimizer {self.name!r}")
        if max_retries < 0:
            raise GrabnasError(f"{self.name} needs max_retries >= 0, got {max_retries}")
        super().__init__(space, pool, seed)
        self.pool = list(dict.fromkeys(self.pool))
        self._pool_index = {a: i for i, a in enumerate(self.pool)}
        self._order = self.rng.permutation(len(self.pool))  # the random fallback walks it
        self._cursor = 0
        self.max_retries = max_retries
        self.encoding = encoding_for(space, self.pool)
        self._distributions = self.encoding.distributions()
        self._trials: dict[Architecture, Any] = {}  # pending architecture -> its running trial
        self._waiting: dict[Architecture, list] = {}  # pending architecture -> running duplicates
        self._known: dict[Architecture, float | None] = {}  # told architecture -> last value
        self.stats = {"duplicates": 0, "pool_misses": 0, "fallbacks": 0}
        with quiet_optuna():
            sampler = self._make_sampler(optuna, sampler_seed(seed))
            self.study = optuna.create_study(direction="maximize", sampler=sampler)

    def _make_sampler(self, optuna, seed: int):
        raise NotImplementedError

    def settings(self) -> dict:
        return {"sampler": self.sampler_name, "max_retries": self.max_retries}

    def _ask(self, n: int) -> list[Architecture]:
        exclude = self.history.tried
        untried = sum(1 for a in self.pool if a not in exclude)
        out: list[Architecture] = []
        with quiet_optuna():
            for _ in range(min(n, untried)):
                arch = self._sample_untried(exclude)
                if arch is None:
                    arch = self._random_untried(exclude)
                    self.stats["fallbacks"] += 1
                out.append(arch)
                exclude.add(arch)
        return out

    def _random_untried(self, exclude: set[Architecture]) -> Architecture:
        """The next pool member of a random permutation (fixed at construction) not in
        ``exclude``; the caller makes sure one exists. Tried architectures stay tried, so the
        walk never goes back."""
        while True:
            arch = self.pool[self._order[self._cursor]]
            self._cursor += 1
            if arch not in exclude:
                return arch

    def _sample_untried(self, exclude: set[Architecture]) -> Architecture | None:
        """Sample until a configuration maps to an untried pool member (its trial stays
        running), at most ``max_retries + 1`` times; None when none did."""
        from optuna.trial import TrialState

        for _ in range(self.max_retries + 1):
            trial = self.study.ask()
            arch = self.encoding.decode(self.encoding.suggest(trial))
            if arch is None or arch not in self._pool_index:
                self.stats["pool_misses"] += 1
                self.study.tell(trial, state=TrialState.PRUNED)
            elif arch in exclude:
                self.stats["duplicates"] += 1
                if arch in self._known:
                    self._tell_trial(trial, self._known[arch])
                else:  # pending: told when its value arrives
                    self._waiting.setdefault(arch, []).append(trial)
            else:
                self._trials[arch] = trial
                return arch
        return None

    def _tell_trial(self, trial, value: float | None) -> None:
        from optuna.trial import TrialState

        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, value)

    def _on_tell(self, archs: list[Architecture], values: Sequence[float | None]) -> None:
        import optuna
        from optuna.trial import TrialState

        with quiet_optuna():
            for arch, raw in zip(archs, values):
                value = None if raw is None or math.isnan(float(raw)) else float(raw)
                self._known[arch] = value
                trial = self._trials.pop(arch, None)
                if trial is not None:
                    self._tell_trial(trial, value)
                else:  # a fallback proposal, or told without being asked: add it as a finished trial
                    self.study.add_trial(
                        optuna.trial.create_trial(
                            params=self.encoding.encode(arch),
                            distributions=self._distributions,
                            value=value,
                            state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
                        )
                    )
                for duplicate in self._waiting.pop(arch, []):
                    self._tell_trial(duplicate, value)


class OptunaTPE(OptunaOptimizer):
    """Optuna's ``TPESampler(seed=seed)`` with its defaults (``optuna-tpe``).

    TPE samples its first ``n_startup_trials`` (10; complete and pruned trials count) with its
    own ``RandomSampler(seed=seed)``, so until then ``optuna-tpe`` and ``optuna-random`` with the
    same seed propose the same architectures.
    """

    name = "optuna-tpe"
    sampler_name = "TPESampler"

    def _make_sampler(self, optuna, seed: int):
        return optuna.samplers.TPESampler(seed=seed)


class OptunaGP(OptunaOptimizer):
    """Optuna's ``GPSampler(seed=seed)`` with its defaults (``optuna-gp``; needs Optuna >= 3.6)."""

    name = "optuna-gp"
    sampler_name = "GPSampler"

    def _make_sampler(self, optuna, seed: int):
        if not hasattr(optuna.samplers, "GPSampler"):
            raise GrabnasError(
                f"optuna-gp needs Optuna's GPSampler (Optuna >= 3.6), got Optuna {optuna.__version__}; {INSTALL_HINT}"
            )
        return optuna.samplers.GPSampler(seed=seed)


class OptunaRandom(OptunaOptimizer):
    """Optuna's ``RandomSampler(seed=seed)`` (``optuna-random``)."""

    name = "optuna-random"
    sampler_name = "RandomSampler"

    def _make_sampler(self, optuna, seed: int):
        return optuna.samplers.RandomSampler(seed=seed)


OPTUNA_BASELINES: tuple[type[OptunaOptimizer], ...] = (OptunaTPE, OptunaGP, OptunaRandom)

__all__ = [
    "CategoricalEncoding",
    "NASBenchGraphEncoding",
    "NB201Encoding",
    "OPTUNA_BASELINES",
    "OptunaGP",
    "OptunaOptimizer",
    "OptunaRandom",
    "OptunaTPE",
    "PoolStringEncoding",
    "encoding_for",
    "import_optuna",
    "quiet_optuna",
    "sampler_seed",
]
