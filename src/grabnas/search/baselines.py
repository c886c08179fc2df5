"""Baseline ask/tell optimizers over a finite candidate pool.

* :class:`RandomSearch` (``random``): uniform sampling without replacement.
* :class:`RegularizedEvolution` (``rea``, Real et al. 2019): aging evolution with tournaments.
* :class:`LocalSearch` (``local``, White et al. 2020): best-improvement hill climbing with restarts.
* :class:`GPBO` (``gpbo``): a plain BoTorch ``SingleTaskGP`` on the one-hot op encoding, LogEI.
* :class:`TransferRank` (``transfer-rank``): the pool ranked by mean standardised value on other
  tasks (see :func:`transfer_scores`).
* ``optuna-tpe``, ``optuna-gp``, ``optuna-random``: Optuna's samplers over the space's categorical
  encoding (:mod:`grabnas.search.optuna_baselines`; needs ``pip install grabnas[optuna]``); they
  draw from their Optuna sampler's RNG, seeded with the optimizer's seed.

All of them propose only pool members, never propose an architecture twice (failed and pending
ones included), return fewer than ``n`` only when the untried pool is exhausted and draw every
random number from the optimizer's own ``self.rng``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.search.base import Optimizer
from grabnas.search.optuna_baselines import OPTUNA_BASELINES  # Optuna itself is imported when one is built
from grabnas.spaces.base import Architecture, SearchSpace


class _PoolOptimizer(Optimizer):
    """Shared machinery: a deduplicated pool, its index, and random untried draws.

    Random draws walk one random permutation of the pool (fixed at construction), skipping
    architectures already tried; since the tried set only grows, the walk never goes back.
    """

    def __init__(self, space: SearchSpace, pool: Sequence[Architecture] | None = None, seed: int = 0) -> None:
        super().__init__(space, pool, seed)
        self.pool = list(dict.fromkeys(self.pool))
        self._pool_index: dict[Architecture, int] = {a: i for i, a in enumerate(self.pool)}
        self._order = self.rng.permutation(len(self.pool))
        self._cursor = 0

    def _random_untried(self, k: int, exclude: set[Architecture]) -> list[Architecture]:
        """Up to ``k`` uniformly random pool members not in ``exclude`` (tried or already chosen).

        ``exclude`` must contain only architectures that stay tried for good (asked or told).
        """
        out: list[Architecture] = []
        while len(out) < k and self._cursor < len(self._order):
            arch = self.pool[self._order[self._cursor]]
            self._cursor += 1
            if arch not in exclude:
                out.append(arch)
        return out

    def _told_values(self) -> dict[Architecture, float | None]:
        """Last told value of each observed architecture (None for a failure)."""
        return {o.arch: o.value for o in self.history.observations}


class RandomSearch(_PoolOptimizer):
    """Uniformly random untried pool members, without replacement."""

    name = "random"

    def _ask(self, n: int) -> list[Architecture]:
        return self._random_untried(n, self.history.tried)


class RegularizedEvolution(_PoolOptimizer):
    """Regularized (aging) evolution, Real et al. 2019.

    The population is the ``population_size`` most recent *successful* observations. Until it
    is full, proposals are random. Afterwards each proposal mutates the best of
    ``sample_size`` population members drawn without replacement (``space.mutate``); a
    mutation that lands outside the pool or on a tried architecture is retried up to
    ``max_mutation_tries`` times, then a random untried pool member is proposed instead.

    Args:
        population_size: P, the number of most recent successes that form the population.
        sample_size: S, the tournament size (``1 <= S <= P``).
        max_mutation_tries: mutation attempts per proposal before the random fallback.
    """

    name = "rea"

    def __init__(
        self,
        space: SearchSpace,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        population_size: int = 10,
        sample_size: int = 3,
        max_mutation_tries: int = 20,
    ) -> None:
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise GrabnasError(
                f"rea needs population_size >= 1 and 1 <= sample_size <= population_size, "
                f"got population_size={population_size}, sample_size={sample_size}"
            )
        super().__init__(space, pool, seed)
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_mutation_tries = max(0, max_mutation_tries)

    def _ask(self, n: int) -> list[Architecture]:
        exclude = self.history.tried
        archs, values = self.history.successes()
        if len(archs) < self.population_size:
            return self._random_untried(n, exclude)
        population = archs[-self.population_size :]
        pop_values = values[-self.population_size :]
        out: list[Architecture] = []
        for _ in range(n):
            idx = self.rng.choice(len(population), size=self.sample_size, replace=False)
            parent = population[int(idx[np.argmax(pop_values[idx])])]
            child = self._mutate_untried(parent, exclude)
            if child is None:
                fallback = self._random_untried(1, exclude)
                if not fallback:
                    break
                child = fallback[0]
            out.append(child)
            exclude.add(child)
        return out

    def _mutate_untried(self, parent: Architecture, exclude: set[Architecture]) -> Architecture | None:
        for _ in range(self.max_mutation_tries):
            child = self.space.mutate(parent, self.rng)
            if child in self._pool_index and child not in exclude:
                return child
        return None


class LocalSearch(_PoolOptimizer):
    """Best-improvement local search with random restarts (the White et al. 2020 variant).

    Start at a random pool member and evaluate its untried pool neighbours one by one in random
    order. Once the current point and all its pool neighbours are told, move to the best
    neighbour if it beats the current point (a failure counts as minus infinity); otherwise
    restart from a random untried member.

    Under ask/tell with pending evaluations the climber never blocks: when its neighbourhood is
    fully proposed but some results are still pending, it proposes random untried members as
    fillers (they count as evaluations but do not steer the climb).
    """

    name = "local"

    def __init__(self, space: SearchSpace, pool: Sequence[Architecture] | None = None, seed: int = 0) -> None:
        super().__init__(space, pool, seed)
        self.current: Architecture | None = None
        self._neighbours: list[Architecture] = []  # pool neighbours of the current point
        self._queue: list[Architecture] = []  # of those, the ones still to propose

    def _pool_neighbours(self, arch: Architecture) -> list[Architecture]:
        return [a for a in self.space.neighbours(arch) if a in self._pool_index]

    def _set_current(self, arch: Architecture, exclude: set[Architecture]) -> None:
        self.current = arch
        self._neighbours = self._pool_neighbours(arch)
        untried = [a for a in self._neighbours if a not in exclude]
        self._queue = [untried[i] for i in self.rng.permutation(len(untried))]

    def _ask(self, n: int) -> list[Architecture]:
        exclude = self.history.tried
        pending = set(self.history.pending)
        values = self._told_values()
        out: list[Architecture] = []
        while len(out) < n:
            self._queue = [a for a in self._queue if a not in exclude]
            if self._queue:
                arch = self._queue.pop()
            elif self.current is not None and not self._climb_finished(pending, out):
                fillers = self._random_untried(1, exclude)  # do not block on pending results
                if not fillers:
                    break
                arch = fillers[0]
            elif self.current is not None and self._move(values, exclude):
                continue  # the new point's neighbourhood is queued (or decided next round)
            else:
                start = self._random_untried(1, exclude)
                if not start:
                    break
                arch = start[0]
                self._set_current(arch, exclude | {arch})
            out.append(arch)
            exclude.add(arch)
        return out

    def _climb_finished(self, pending: set[Architecture], batch: list[Architecture]) -> bool:
        """Whether the current point and all its pool neighbours are told (none pending)."""
        waiting = pending.union(batch)
        return self.current not in waiting and not any(a in waiting for a in self._neighbours)

    def _move(self, values: dict[Architecture, float | None], exclude: set[Architecture]) -> bool:
        """Move to the best neighbour if it beats the current point (a failure is minus infinity)."""
        cur = _or_minus_inf(values.get(self.current))
        scored = [(_or_minus_inf(values.get(a)), a) for a in self._neighbours]
        best_value, best = max(scored, key=lambda t: t[0], default=(-math.inf, None))
        if best is None or not best_value > cur:
            return False
        self._set_current(best, exclude)
        return True


def _or_minus_inf(value: float | None) -> float:
    return -math.inf if value is None else value


class GPBO(_PoolOptimizer):
    """Plain Bayesian optimisation: BoTorch ``SingleTaskGP`` on the one-hot op encoding.

    The GP uses BoTorch's defaults (dimension-scaled priors, ``Standardize(m=1)`` outcome
    transform) and is refitted with ``fit_gpytorch_mll`` at every ask once ``n_init``
    successful observations exist (random proposals before that). To keep the per-ask cost
    low, each fit starts from the previous fit's hyperparameters and runs at most
    ``fit_maxiter`` L-BFGS-B iterations, so the hyperparameter optimisation continues across
    asks instead of restarting.

    Every ask scores all untried pool members by analytic ``LogExpectedImprovement``. With
    nothing pending, the first proposal is its argmax. Further proposals (``ask(n)`` with
    ``n > 1``, or any ask while earlier proposals are still pending) are chosen greedily one
    by one with ``qLogExpectedImprovement`` whose ``X_pending`` holds the pending architectures
    and those already chosen in this batch; it scores the ``q_candidates`` members with the
    highest marginal LogEI (a member's gain over the pending ones is at most its marginal EI).
    Failed evaluations are left out of the GP data.

    Args:
        n_init: successful observations needed before the GP is used.
        chunk_size: candidates per acquisition call; the analytic pass costs a ``(b, b)``
            test covariance per chunk of b, so a few hundred is fastest.
        mc_samples: quasi-MC samples of ``qLogExpectedImprovement``.
        q_candidates: shortlist size of the greedy ``qLogExpectedImprovement`` steps.
        fit_maxiter: L-BFGS-B iterations per hyperparameter fit.
        warm_start: start each fit from the previous fit's hyperparameters.
    """

    name = "gpbo"

    def __init__(
        self,
        space: SearchSpace,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        n_init: int = 10,
        chunk_size: int = 256,
        mc_samples: int = 128,
        q_candidates: int = 1024,
        fit_maxiter: int = 50,
        warm_start: bool = True,
    ) -> None:
        counts = {"n_init": n_init, "chunk_size": chunk_size, "mc_samples": mc_samples}
        counts |= {"q_candidates": q_candidates, "fit_maxiter": fit_maxiter}
        bad = [f"{k}={v}" for k, v in counts.items() if v < 1]
        if bad:
            raise GrabnasError(f"gpbo needs positive integer options, got {', '.join(bad)}")
        super().__init__(space, pool, seed)
        import torch

        self.n_init = n_init
        self.chunk_size = chunk_size
        self.mc_samples = mc_samples
        self.q_candidates = q_candidates
        self.fit_maxiter = fit_maxiter
        self.warm_start = warm_start
        #: ``(len(pool), d)`` one-hot encoding of the pool, float64
        self.X_pool = torch.as_tensor(space.onehot(self.pool), dtype=torch.float64)
        self.model = None  # the last fitted SingleTaskGP

    def _encode(self, archs: Sequence[Architecture]):  # -> Tensor (k, d)
        import torch

        rows = [
            self.X_pool[i]
            if (i := self._pool_index.get(a)) is not None
            else torch.as_tensor(self.space.encode_onehot(a), dtype=torch.float64)
            for a in archs
        ]
        return torch.stack(rows) if rows else self.X_pool[:0]

    def fit(self):  # -> SingleTaskGP
        """Fit a GP to the successful observations (``(m, d)`` inputs, ``(m, 1)`` targets)."""
        import torch
        from botorch.exceptions import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        archs, values = self.history.successes()
        train_X = self._encode(archs)
        train_Y = torch.as_tensor(values, dtype=torch.float64).unsqueeze(-1)
        model = SingleTaskGP(train_X, train_Y)
        if self.warm_start and self.model is not None:
            # hyperparameters only: the outcome transform is fitted to the new data
            state = self.model.state_dict()
            state = {k: v for k, v in state.items() if not k.startswith("outcome_transform")}
            model.load_state_dict(state, strict=False)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        # fit retries resample hyperparameters from their priors with torch's global CPU RNG:
        # seed it from self.rng inside fork_rng, which restores the caller's state afterwards
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(self.rng.integers(2**31)))
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}})
            except ModelFittingError:
                pass  # keep the hyperparameters reached; the model is still usable
        model.eval()
        self.model = model
        return model

    def _ask(self, n: int, model=None) -> list[Architecture]:
        """``model``: a GP :meth:`fit` to the current observations already (else fitted now)."""
        import torch
        from botorch.acquisition import qLogExpectedImprovement
        from botorch.sampling import SobolQMCNormalSampler

        exclude = self.history.tried
        archs, values = self.history.successes()
        if len(archs) < self.n_init:
            return self._random_untried(n, exclude)
        cand = np.array([i for i, a in enumerate(self.pool) if a not in exclude], dtype=np.int64)
        if cand.size == 0:
            return []
        n = min(n, cand.size)
        model = model if model is not None else self.fit()
        best_f = float(values.max())
        log_ei = self._acquisition_values(_pool_log_ei_class()(model, best_f=best_f), cand)  # (c,)
        ranked = cand[torch.argsort(log_ei, descending=True, stable=True).numpy()]
        pending = self._encode(self.history.pending)  # (p, d)
        if pending.shape[0] == 0:
            chosen = [int(ranked[0])]
            pending = self.X_pool[torch.as_tensor(ranked[:1])]
        else:
            chosen = []
        # the gain of a member over the pending ones is at most its marginal EI, so the greedy
        # qLogEI steps only score the best-ranked members by marginal LogEI
        shortlist = [int(i) for i in ranked[: self.q_candidates + n] if int(i) not in chosen]
        while len(chosen) < n:
            sampler = SobolQMCNormalSampler(
                sample_shape=torch.Size([self.mc_samples]), seed=int(self.rng.integers(2**31))
            )
            acq = qLogExpectedImprovement(model, best_f=best_f, sampler=sampler, X_pending=pending)
            j = int(torch.argmax(self._acquisition_values(acq, np.array(shortlist, dtype=np.int64))))
            best = shortlist.pop(j)
            chosen.append(best)
            pending = torch.cat([pending, self.X_pool[best].unsqueeze(0)])
        return [self.pool[i] for i in chosen]

    def _acquisition_values(self, acq, cand: np.ndarray):  # -> Tensor (len(cand),)
        """Acquisition values of the pool rows ``cand``, evaluated in chunks as ``(b, 1, d)``."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, cand.size, self.chunk_size):
                idx = torch.as_tensor(cand[start : start + self.chunk_size])
                out.append(acq(self.X_pool[idx].unsqueeze(1)))
        return torch.cat(out)


@functools.cache
def _pool_log_ei_class():  # -> type[LogExpectedImprovement]
    """``LogExpectedImprovement`` that reads a ``(b, 1, d)`` candidate batch as one flat set.

    BoTorch's analytic acquisition sends ``(b, 1, d)`` through a batched GP posterior, which
    rebuilds an ``(n + 1, n + 1)`` train/test covariance for every candidate (n training
    points). The marginal posteriors are the same when the b candidates are passed as one
    ``(b, d)`` set and only the diagonal of the joint covariance is read; that costs a
    ``(b, n)`` cross-covariance plus a ``(b, b)`` test covariance, so callers keep b to a few
    hundred. The EI formula itself is BoTorch's.
    """
    from botorch.acquisition import LogExpectedImprovement

    class PoolLogEI(LogExpectedImprovement):
        def _mean_and_sigma(self, X, compute_sigma: bool = True, min_var: float = 1e-12):
            posterior = self.model.posterior(X=X.squeeze(-2), posterior_transform=self.posterior_transform)
            mean = posterior.mean  # (b, 1)
            if not compute_sigma:
                return mean, None
            return mean, posterior.variance.clamp_min(min_var).sqrt().view(mean.shape)

    return PoolLogEI


class TransferRank(_PoolOptimizer):
    """Propose pool members in decreasing order of a transfer score.

    Args:
        scores: architecture -> score, typically the mean standardised value on the *other*
            tasks of a benchmark (see :func:`transfer_scores`). Ties are broken by random keys
            drawn from ``self.rng`` at construction; pool members without a (finite) score come
            last, in random order.
    """

    name = "transfer-rank"

    def __init__(
        self,
        space: SearchSpace,
        pool: Sequence[Architecture] | None = None,
        seed: int = 0,
        scores: Mapping[Architecture, float] | None = None,
    ) -> None:
        if scores is None:
            raise GrabnasError(
                "transfer-rank needs scores=... (architecture -> mean standardised value on other tasks)"
            )
        super().__init__(space, pool, seed)
        tiebreak = self.rng.random(len(self.pool))

        def key(i: int) -> tuple[int, float, float]:
            s = _finite_or_none(scores.get(self.pool[i]))
            return (1, 0.0, tiebreak[i]) if s is None else (0, -s, tiebreak[i])

        #: pool in proposal order
        self.ranking: list[Architecture] = [self.pool[i] for i in sorted(range(len(self.pool)), key=key)]
        self._rank_cursor = 0

    def _ask(self, n: int) -> list[Architecture]:
        exclude = self.history.tried
        out: list[Architecture] = []
        while len(out) < n and self._rank_cursor < len(self.ranking):
            arch = self.ranking[self._rank_cursor]
            self._rank_cursor += 1
            if arch not in exclude:
                out.append(arch)
        return out


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def transfer_scores(tables: Sequence[Mapping[Architecture, float | None]]) -> dict[Architecture, float]:
    """Mean z-score of each architecture over the tables in which it has a value.

    Each table (architecture -> value, e.g. one task of a benchmark) is standardised on its own
    finite values, ``z = (v - mean) / std`` with the population std (``ddof=0``); a table whose
    values are all equal (or that has one value) gives z = 0. None and NaN values are ignored.
    """
    sums: dict[Architecture, float] = {}
    counts: dict[Architecture, int] = {}
    for table in tables:
        items = [(a, f) for a, v in table.items() if (f := _finite_or_none(v)) is not None]
        if not items:
            continue
        vals = np.array([v for _, v in items], dtype=np.float64)
        mean, std = float(vals.mean()), float(vals.std())
        for arch, v in items:
            z = (v - mean) / std if std > 0 else 0.0
            sums[arch] = sums.get(arch, 0.0) + z
            counts[arch] = counts.get(arch, 0) + 1
    return {a: sums[a] / counts[a] for a in sums}


BASELINES: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (RandomSearch, RegularizedEvolution, LocalSearch, GPBO, TransferRank, *OPTUNA_BASELINES)
}


def make_baseline(
    name: str,
    space: SearchSpace,
    pool: Sequence[Architecture] | None = None,
    seed: int = 0,
    **kw: Any,
) -> Optimizer:
    """A baseline optimizer by name; options it does not know are a :class:`GrabnasError`."""
    cls = BASELINES.get(name)
    if cls is None:
        raise GrabnasError(f"unknown optimizer {name!r}; expected one of {', '.join(BASELINES)}")
    fixed = ("self", "space", "pool", "seed")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in fixed]
    unknown = [k for k in kw if k not in allowed]
    if unknown:
        expected = ", ".join(allowed) if allowed else "no options"
        raise GrabnasError(f"unknown option {unknown[0]!r} for optimizer {name!r}; expected {expected}")
    return cls(space, pool, seed, **kw)


__all__ = [
    "BASELINES",
    "GPBO",
    "LocalSearch",
    "RandomSearch",
    "RegularizedEvolution",
    "TransferRank",
    "make_baseline",
    "transfer_scores",
]
