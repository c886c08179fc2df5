"""One interface for tabular benchmarks.

A tabular benchmark is a search space plus, for each task, the value of (some of) its
architectures: a *search* metric (what a search maximises, e.g. validation accuracy), a
*report* metric (the test metric of the final choice), and a simulated evaluation cost.
Tasks that come from the same dataset share a *group* (e.g. every fidelity of NB201 CIFAR-10),
so that holding a dataset out holds out all its tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from grabnas.errors import UnknownTaskError
from grabnas.spaces.base import Architecture, SearchSpace


@dataclass(frozen=True)
class TaskTable:
    """The values of one task, aligned with ``space.members()``.

    Attributes:
        name: task name.
        group: dataset the task comes from (tasks of one group are held out together).
        search: ``(len(space),)`` search-metric values, NaN where the architecture has none.
        report: ``(len(space),)`` report (test) metric values, NaN where unknown.
        cost: ``(len(space),)`` simulated seconds per evaluation.
        description: what the two metrics are, for reports.
        model_costs: costs of the architectures' models that the table records, by name
            (``params``: millions of parameters), ``(len(space),)`` arrays, NaN where unknown;
            what :mod:`grabnas.search.constraints` reads where no cost model computes them.
    """

    name: str
    group: str
    search: np.ndarray
    report: np.ndarray
    cost: np.ndarray
    description: str = ""
    model_costs: Mapping[str, np.ndarray] = field(default_factory=dict)


class TabularBenchmark:
    """A search space with per-task value tables.

    Args:
        name: benchmark name (``nb201``, ``nasbench-graph``, ``csv:...``).
        space: the search space whose members index the tables.
        tables: task tables (or zero-argument callables returning one, for lazy loading).
        auxiliary: tasks that are extra views of a main task's dataset (e.g. a low fidelity):
            they feed meta-learning but are not searched or transferred from by default.
    """

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        tables: Mapping[str, TaskTable | object],
        auxiliary: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.space = space
        self._tables = dict(tables)
        self.auxiliary = tuple(auxiliary)

    @property
    def main_tasks(self) -> tuple[str, ...]:
        """Tasks that are not auxiliary (the default targets of a search or a bench)."""
        return tuple(t for t in self._tables if t not in self.auxiliary)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._tables)

    def table(self, task: str) -> TaskTable:
        """The :class:`TaskTable` of ``task``; a clear error for an unknown name."""
        try:
            t = self._tables[task]
        except KeyError:
            raise UnknownTaskError(
                f"unknown task {task!r} for benchmark {self.name}; expected one of {', '.join(self.tasks)}"
            ) from None
        if callable(t):
            t = t()
            self._tables[task] = t
        return t  # type: ignore[return-value]

    def group(self, task: str) -> str:
        return self.table(task).group

    def pool(self, task: str) -> list[Architecture]:
        """Architectures with a search value for ``task`` (the candidate pool), in space order."""
        members = self.space.members()
        return [members[i] for i in np.flatnonzero(~np.isnan(self.table(task).search))]

    def _lookup(self, arch: Architecture, column: np.ndarray) -> float | None:
        try:
            v = column[self.space.index_of(arch)]
        except Exception:
            return None
        return None if np.isnan(v) else float(v)

    def value(self, arch: Architecture, task: str) -> float | None:
        """Search-metric value, or None when the benchmark has no value for ``arch``."""
        return self._lookup(arch, self.table(task).search)

    def report_value(self, arch: Architecture, task: str) -> float | None:
        """Report (test) metric value, or None."""
        return self._lookup(arch, self.table(task).report)

    def cost(self, arch: Architecture, task: str) -> float:
        """Simulated seconds to evaluate ``arch`` on ``task``."""
        c = self._lookup(arch, self.table(task).cost)
        return 0.0 if c is None else c

    def optimum(self, task: str) -> float:
        """Best search-metric value of ``task``."""
        return float(np.nanmax(self.table(task).search))

    def values(self, task: str) -> dict[Architecture, float]:
        """Search-metric value of every architecture that has one."""
        col = self.table(task).search
        members = self.space.members()
        return {members[i]: float(col[i]) for i in np.flatnonzero(~np.isnan(col))}

    def other_tasks(self, task: str, tasks: Sequence[str] | None = None) -> list[str]:
        """Tasks of other groups than ``task``'s (what a leave-one-dataset-out learner may see),
        among ``tasks`` (default: the main tasks)."""
        g = self.group(task)
        return [t for t in (tasks if tasks is not None else self.main_tasks) if self.group(t) != g]
