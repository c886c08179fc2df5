"""NAS-Bench-201 from its accuracy table (``nb201_accuracies.csv``).

grabnas ships the table, xz-compressed, in ``grabnas/benchmarks/tables/`` (with its MIT licences
and ``NB201-PROVENANCE.md``: sources, columns, the sha256 of the uncompressed CSV). A path given as
an argument (``--data``) or in the ``GRABNAS_NB201`` environment variable overrides it: a CSV file
(plain, ``.xz`` or ``.gz``) or a folder holding ``nb201_accuracies.csv``. A table can also be built
from the official NATS-Bench files with ``grabnas nb201 convert``
(:mod:`grabnas.benchmarks.nats_convert`).

Tasks: ``cifar10``, ``cifar100``, ``imagenet16`` (200-epoch test accuracy; the table has no
200-epoch validation accuracy, so search and report use the same column, as in the usual
NB201 regret curves) and the 12-epoch low-fidelity tasks ``cifar10@12ep``, ``cifar100@12ep``,
``imagenet16@12ep`` (search on validation accuracy, report test accuracy). All tasks of one
dataset share a group.
"""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.benchmarks.csv_table import member_index, number_error, parse_number, read_table
from grabnas.errors import BenchmarkFileError
from grabnas.spaces.nb201 import NB201Space

ENV_VAR = "GRABNAS_NB201"
FILE_NAME = "nb201_accuracies.csv"
#: task -> (group, search column, report column)
TASK_COLUMNS: dict[str, tuple[str, str, str]] = {
    "cifar10": ("cifar10", "cifar10_test_200ep", "cifar10_test_200ep"),
    "cifar100": ("cifar100", "cifar100_test_200ep", "cifar100_test_200ep"),
    "imagenet16": ("imagenet16", "imagenet16_test_200ep", "imagenet16_test_200ep"),
    "cifar10@12ep": ("cifar10", "cifar10valid_val_12ep", "cifar10_test_12ep"),
    "cifar100@12ep": ("cifar100", "cifar100_val_12ep", "cifar100_test_12ep"),
    "imagenet16@12ep": ("imagenet16", "imagenet16_val_12ep", "imagenet16_test_12ep"),
}
REQUIRED_COLUMNS = ("arch_str", *sorted({c for _, s, r in TASK_COLUMNS.values() for c in (s, r)}))
#: the table shipped with grabnas (``xz -9e`` of ``nb201_accuracies.csv``; see NB201-PROVENANCE.md there)
SHIPPED_TABLE = Path(__file__).resolve().parent / "tables" / (FILE_NAME + ".xz")
#: sha256 of the shipped table once decompressed (the original ``nb201_accuracies.csv``)
SHIPPED_SHA256 = "eccc9e2b6e6f11378286b4c1d818ac959771d45e140ce2b3b9c0be8ac8920bd4"
#: what every cell of a required column holds
_ACCURACY = "an accuracy in % (a finite number from 0 to 100)"


def resolve_table_path(path: str | os.PathLike | None = None) -> Path:
    """The table's path: ``path``, else ``$GRABNAS_NB201``, else the table shipped with grabnas;
    a clear error when a given path does not lead to a file."""
    raw = path if path is not None else os.environ.get(ENV_VAR)
    if not raw:
        if not SHIPPED_TABLE.is_file():
            raise BenchmarkFileError(
                f"the NB201 table shipped with grabnas is missing ({SHIPPED_TABLE}); "
                f"pass --data PATH or set {ENV_VAR} to {FILE_NAME} or its folder"
            )
        return SHIPPED_TABLE
    p = Path(raw).expanduser()
    if p.is_dir():
        p = p / FILE_NAME
    if not p.is_file():
        raise BenchmarkFileError(f"NB201 table not found at {p}; expected the path of {FILE_NAME} or its folder")
    return p


def _open_table(p: Path):
    """The table as a text stream for :mod:`csv`: ``.xz`` and ``.gz`` files are decompressed on the fly."""
    if p.suffix == ".xz":
        return lzma.open(p, "rt", encoding="utf-8", newline="")
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8", newline="")
    return p.open(newline="")


def _read_bytes(p: Path) -> bytes:
    """The table's bytes: ``.xz`` and ``.gz`` files are decompressed."""
    if p.suffix == ".xz":
        with lzma.open(p, "rb") as f:
            return f.read()
    if p.suffix == ".gz":
        with gzip.open(p, "rb") as f:
            return f.read()
    return p.read_bytes()


def load_nb201(path: str | os.PathLike | None = None) -> TabularBenchmark:
    """Load the NAS-Bench-201 benchmark from its accuracy table: ``path``, else ``$GRABNAS_NB201``,
    else the table shipped with grabnas.

    The table is checked strictly, each fault a one-line :class:`BenchmarkFileError` naming the
    file, line and column: every column name once, one field per column on every row, one row per
    architecture, every cell of the required columns an accuracy in % (a finite number from 0 to
    100, never empty), and all 15,625 cells present."""
    p = resolve_table_path(path)
    form = f"the columns of {FILE_NAME} ({', '.join(REQUIRED_COLUMNS)})"
    try:
        data = _read_bytes(p)
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise BenchmarkFileError(
            f"{p} is not a readable {p.suffix} file ({e}); expected {FILE_NAME}{p.suffix}"
        ) from None
    header, _, rows = read_table(p, data, f"{FILE_NAME}, a CSV with {form}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise BenchmarkFileError(f"{p} is not an NB201 table: missing column(s) {', '.join(missing)}; expected {form}")
    space = NB201Space()
    n = len(space)
    col = {name: j for j, name in enumerate(header)}
    columns = {c: np.full(n, np.nan) for c in REQUIRED_COLUMNS[1:]}
    seen: dict[int, tuple[int, str]] = {}
    for line, fields in rows:
        i = member_index(p, line, fields[col["arch_str"]].strip(), space, "arch_str", seen, "the same cell")
        for c, values in columns.items():
            cell = fields[col[c]].strip()
            x = parse_number(cell) if cell else None
            if x is None or not 0.0 <= x <= 100.0:
                if not cell:
                    raise BenchmarkFileError(
                        f"{p}, line {line}: column {c} is empty; expected {_ACCURACY} (the table has no missing values)"
                    )
                raise number_error(p, line, c, cell, _ACCURACY)
            values[i] = x
    if len(seen) < n:
        raise BenchmarkFileError(f"{p} has {len(seen)} of the {n} NB201 cells; expected all of them")
    cost = np.ones(n)
    tables = {
        task: TaskTable(
            name=task,
            group=group,
            search=columns[s],
            report=columns[r],
            cost=cost,
            description=f"search: {s}, report: {r} (accuracy %)",
        )
        for task, (group, s, r) in TASK_COLUMNS.items()
    }
    return TabularBenchmark("nb201", space, tables, auxiliary=[t for t in TASK_COLUMNS if "@" in t])
