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

import csv
import gzip
import lzma
import os
from pathlib import Path

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.errors import BenchmarkFileError, InvalidArchitectureError
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


def load_nb201(path: str | os.PathLike | None = None) -> TabularBenchmark:
    """Load the NAS-Bench-201 benchmark from its accuracy table: ``path``, else ``$GRABNAS_NB201``,
    else the table shipped with grabnas."""
    p = resolve_table_path(path)
    space = NB201Space()
    n = len(space)
    columns = {c: np.full(n, np.nan) for c in REQUIRED_COLUMNS[1:]}
    seen = np.zeros(n, dtype=bool)
    try:
        with _open_table(p) as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchmarkFileError(
                    f"{p} is not an NB201 table: missing column(s) {', '.join(missing)}; "
                    f"expected the columns of {FILE_NAME} ({', '.join(REQUIRED_COLUMNS)})"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    i = space.index_of(space.parse(row["arch_str"]))
                except InvalidArchitectureError as e:
                    raise BenchmarkFileError(f"{p}, line {line}: {e}") from None
                seen[i] = True
                for c, col in columns.items():
                    cell = (row[c] or "").strip()
                    if cell:
                        try:
                            col[i] = float(cell)
                        except ValueError:
                            raise BenchmarkFileError(
                                f"{p}, line {line}: column {c} holds {cell!r}; expected a number (accuracy in %)"
                            ) from None
    except UnicodeDecodeError:
        raise BenchmarkFileError(f"{p} is not a text CSV file; expected {FILE_NAME}") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise BenchmarkFileError(
            f"{p} is not a readable {p.suffix} file ({e}); expected {FILE_NAME}{p.suffix}"
        ) from None
    if not seen.all():
        raise BenchmarkFileError(f"{p} has {int(seen.sum())} of the {n} NB201 cells; expected all of them")
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
