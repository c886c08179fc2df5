"""Evaluation by lookup in a tabular benchmark (a simulated backend, as in Syne Tune)."""

from __future__ import annotations

from dataclasses import dataclass, field

from grabnas.benchmarks.base import TabularBenchmark
from grabnas.spaces.base import Architecture


@dataclass(frozen=True)
class LookupResult:
    """A benchmark lookup: ``value`` is the search metric (None: the table has no value, a
    failure), ``test_value`` the report metric, ``cost`` the simulated seconds."""

    value: float | None
    test_value: float | None
    cost: float
    error: str | None = None
    extra: dict = field(default_factory=dict)


class LookupEvaluator:
    """``arch -> LookupResult`` for one task of a tabular benchmark. Picklable."""

    def __init__(self, bench: TabularBenchmark, task: str) -> None:
        bench.table(task)  # an unknown task fails here, before any search
        self.bench = bench
        self.task = task

    @property
    def name(self) -> str:
        return f"{self.bench.name}:{self.task}"

    def __call__(self, arch: Architecture) -> LookupResult:
        value = self.bench.value(arch, self.task)
        error = None if value is not None else f"{self.bench.name} has no {self.task} value for {arch}"
        return LookupResult(value, self.bench.report_value(arch, self.task), self.bench.cost(arch, self.task), error)
