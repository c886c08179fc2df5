"""A user's own tabular benchmark: a CSV with an architecture column and one column per task.

Format (header row required)::

    arch,task_a,task_a:test,task_b,cost
    |nor_conv_3x3~0|+|...|,91.2,90.8,55.0,12.5
    ...

* ``arch``: the canonical architecture string of an NB201 or NAS-Bench-Graph member (the space
  is inferred from the first row, or given explicitly).
* every other column ``TASK`` is a task's search metric (maximised); an optional ``TASK:test``
  column holds the metric reported for the final choice (default: the search column);
* an optional ``cost`` column holds simulated seconds per evaluation (default 1).

Empty cells are missing values: an architecture without a value is not in that task's pool.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.errors import BenchmarkFileError, InvalidArchitectureError
from grabnas.spaces import get_space
from grabnas.spaces.base import SearchSpace

_FORM = "a CSV with header 'arch,TASK[,TASK:test][,cost]' and one architecture string per row"


def _infer_space(first_arch: str) -> SearchSpace:
    return get_space("nb201" if first_arch.strip().startswith("|") else "nasbench-graph")


def _number(p: Path, line: int, column: str, cell: str) -> float:
    cell = (cell or "").strip()
    if not cell:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        raise BenchmarkFileError(f"{p}, line {line}: column {column} holds {cell!r}; expected a number") from None


def load_csv_benchmark(path: str | os.PathLike, space: str | None = None) -> TabularBenchmark:
    """Load a user CSV benchmark (see the module docstring for the format)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchmarkFileError(f"benchmark CSV not found at {p}; expected {_FORM}")
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
            header = list(rows[0].keys()) if rows else []
    except (UnicodeDecodeError, csv.Error) as e:
        raise BenchmarkFileError(f"{p} cannot be read as CSV ({e}); expected {_FORM}") from None
    if not rows:
        raise BenchmarkFileError(f"{p} has no data rows; expected {_FORM}")
    if "arch" not in header:
        raise BenchmarkFileError(f"{p} has no 'arch' column (header: {','.join(header)}); expected {_FORM}")
    tasks = [c for c in header if c not in ("arch", "cost") and not c.endswith(":test")]
    if not tasks:
        raise BenchmarkFileError(f"{p} has no task column; expected {_FORM}")
    orphans = [c for c in header if c.endswith(":test") and c[: -len(":test")] not in tasks]
    if orphans:
        raise BenchmarkFileError(f"{p}: column {orphans[0]} has no matching task column {orphans[0][:-5]}")
    sp = get_space(space) if space else _infer_space(rows[0]["arch"] or "")
    n = len(sp)
    search = {t: np.full(n, np.nan) for t in tasks}
    report = {t: np.full(n, np.nan) for t in tasks}
    cost = np.ones(n)
    seen: dict[int, int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            i = sp.index_of(sp.parse(row["arch"] or ""))
        except InvalidArchitectureError as e:
            raise BenchmarkFileError(f"{p}, line {line}: {e}") from None
        if i in seen:
            raise BenchmarkFileError(f"{p}, line {line}: architecture {row['arch']} repeats line {seen[i]}")
        seen[i] = line
        for t in tasks:
            search[t][i] = _number(p, line, t, row[t])
            report[t][i] = _number(p, line, t + ":test", row.get(t + ":test", row[t]))
        if "cost" in row:
            c = _number(p, line, "cost", row["cost"])
            cost[i] = 1.0 if np.isnan(c) else c
    tables = {
        t: TaskTable(
            t, t, search[t], report[t], cost, f"search: {t}, report: {t + ':test' if t + ':test' in header else t}"
        )
        for t in tasks
    }
    return TabularBenchmark(f"csv:{p}", sp, tables)
