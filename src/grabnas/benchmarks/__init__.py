"""Tabular benchmarks behind one interface (:class:`TabularBenchmark`)."""

from __future__ import annotations

import os

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.errors import GrabnasError

BENCHMARK_FORMS = "nb201, nasbench-graph or csv:PATH"


def load_benchmark(spec: str, data: str | os.PathLike | None = None) -> TabularBenchmark:
    """A benchmark from its name: ``nb201`` (table at ``data``, else ``$GRABNAS_NB201``, else the shipped one),
    ``nasbench-graph``, or ``csv:PATH`` (a user table; ``csv:NAME`` names a table shipped in
    ``grabnas/benchmarks/tables``, e.g. ``csv:groundtruth-images``, when no file ``NAME`` exists)."""
    if spec == "nb201":
        from grabnas.benchmarks.nb201 import load_nb201

        return load_nb201(data)
    if spec in ("nasbench-graph", "nbgraph"):
        from grabnas.benchmarks.nasbench_graph import load_nasbench_graph

        return load_nasbench_graph()
    if spec.startswith("csv:"):
        from grabnas.benchmarks.csv_table import load_csv_benchmark, resolve_table

        return load_csv_benchmark(resolve_table(spec[4:]))
    raise GrabnasError(f"unknown benchmark {spec!r}; expected {BENCHMARK_FORMS}")


__all__ = ["TabularBenchmark", "TaskTable", "load_benchmark", "BENCHMARK_FORMS"]
