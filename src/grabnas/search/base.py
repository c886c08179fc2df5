"""The ask/tell optimizer contract.

An optimizer proposes architectures with :meth:`Optimizer.ask` and learns their values through
:meth:`Optimizer.tell`; it never evaluates anything itself, so evaluations can run anywhere
(in-process, in a process pool, on a Ray cluster, or as a lookup in a tabular benchmark).
Values are maximised. A failed evaluation is told as ``None`` (or NaN): the architecture counts
as tried and is never proposed again, but its value is not used.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.spaces.base import Architecture, SearchSpace


@dataclass
class Observation:
    """One told evaluation; ``value`` is None for a failure."""

    arch: Architecture
    value: float | None


@dataclass
class History:
    """What an optimizer has asked and been told. Change it only through :meth:`add_pending` and
    :meth:`record`, which keep the set of tried architectures current (constant time per call)."""

    observations: list[Observation] = field(default_factory=list)
    pending: list[Architecture] = field(default_factory=list)
    _tried: set[Architecture] = field(default_factory=set, repr=False)

    @property
    def tried(self) -> set[Architecture]:
        """Architectures asked (evaluated, failed or pending): a copy (cheap: no rehashing)."""
        return set(self._tried)

    def add_pending(self, archs: Sequence[Architecture]) -> None:
        self.pending.extend(archs)
        self._tried.update(archs)

    def record(self, arch: Architecture, value: float | None) -> None:
        """``arch`` was told ``value`` (None: failed); it leaves the pending list."""
        if arch in self._tried and arch in self.pending:
            self.pending.remove(arch)
        self.observations.append(Observation(arch, value))
        self._tried.add(arch)

    def successes(self) -> tuple[list[Architecture], np.ndarray]:
        """Architectures with a value and the ``(n,)`` array of their values."""
        ok = [o for o in self.observations if o.value is not None]
        return [o.arch for o in ok], np.array([o.value for o in ok], dtype=np.float64)

    def best(self) -> Observation | None:
        ok = [o for o in self.observations if o.value is not None]
        return max(ok, key=lambda o: o.value) if ok else None


class Optimizer(abc.ABC):
    """Base class of ask/tell optimizers over a finite candidate pool of a search space.

    Args:
        space: the search space.
        pool: the candidate architectures (default: every member of the space). Baselines only
            propose pool members; GraB-NAS may also propose decoded architectures outside it.
        seed: the optimizer's own seed; it owns a ``numpy.random.Generator`` made from it and
            never touches global random state.
    """

    #: short name used by ``grabnas bench``
    name: str = "optimizer"

    def __init__(self, space: SearchSpace, pool: Sequence[Architecture] | None = None, seed: int = 0) -> None:
        self.space = space
        self.pool: list[Architecture] = list(pool) if pool is not None else space.members()
        if not self.pool:
            raise GrabnasError("the candidate pool is empty; expected at least one architecture")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.history = History()

    # -- public contract ----------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        """Propose ``n`` distinct architectures not asked before (fewer when the pool runs out)."""
        if n < 1:
            raise GrabnasError(f"ask(n) needs n >= 1, got {n}")
        archs = self._ask(n)
        self.history.add_pending(archs)
        return archs

    def tell(self, archs: Sequence[Architecture], values: Sequence[float | None]) -> None:
        """Report values (None or NaN for a failed evaluation) of architectures asked before."""
        if len(archs) != len(values):
            raise GrabnasError(f"tell got {len(archs)} architectures but {len(values)} values")
        for arch, value in zip(archs, values):
            v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
            self.history.record(arch, v)
        self._on_tell(list(archs), values)

    @property
    def best(self) -> Observation | None:
        return self.history.best()

    # -- for subclasses -------------------------------------------------------------------------
    def settings(self) -> dict:
        """The optimizer's own settings (JSON-able; empty for optimizers without any). A study
        records them and refuses to resume under other ones (e.g. another version's defaults)."""
        return {}

    @abc.abstractmethod
    def _ask(self, n: int) -> list[Architecture]:
        """Return up to ``n`` distinct new architectures."""

    def _on_tell(self, archs: list[Architecture], values: Sequence[float | None]) -> None:  # noqa: B027 (optional hook)
        """Hook called after observations are recorded (default: nothing)."""

    def untried_pool(self) -> list[Architecture]:
        """Pool members not asked yet, in pool order."""
        tried = self.history.tried
        return [a for a in self.pool if a not in tried]
