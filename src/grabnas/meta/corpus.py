"""Meta-training corpora: (task, architecture, value) records grouped by task.

Sources (see :func:`load_corpus`):

* a tabular benchmark (``nb201`` with ``data=PATH``, ``nasbench-graph``, ``csv:PATH`` in the
  wide benchmark format): every task is a corpus task, its group is the benchmark's group
  (all fidelities of one dataset share it) and an auxiliary task such as ``cifar10@12ep`` gets
  the fidelity label after its ``@`` (``12ep``);
* a long-format record CSV, ``records:PATH``: columns ``task,arch,value`` and optionally
  ``group`` (default: the task), ``fidelity`` (default: main), ``data`` (a dataset/task spec of
  :mod:`grabnas.data` whose images feed the dataset encoder; default: none) and ``status``
  (rows whose status is not ``ok`` are skipped); repeated (task, arch) rows are averaged;
* an image-task corpus with data samples, ``images-nb201`` (the shipped
  ``grabnas/corpora/images-nb201.csv``) or ``images:PATH``: columns ``task`` (a
  :class:`grabnas.data.TaskSpec` name such as ``digits[0,3,7]@12``), ``dataset``, ``arch``,
  ``val_acc`` and ``status``; the group is the task (each class subset is its own dataset) and
  ``data`` is the task name.

Validation: a record with a NaN (or infinite) value, an architecture that is not a member of
the space, and a task with no records are rejected with a :class:`GrabnasError` that names the
task and the problem.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from grabnas.errors import GrabnasError, InvalidArchitectureError
from grabnas.spaces import get_space
from grabnas.spaces.base import Architecture, SearchSpace

CORPUS_FORMS = (
    "nb201 (with data=PATH), nasbench-graph, csv:PATH (benchmark table), records:PATH, images-nb201 or images:PATH"
)
RECORD_FORM = "a CSV with header task,arch,value[,group][,fidelity][,data][,status]"


class CorpusError(GrabnasError):
    """A corpus that cannot be used for meta-training."""


@dataclass(frozen=True)
class CorpusTask:
    """The records of one task.

    Attributes:
        name: task name (unique in a corpus).
        group: dataset the task comes from; tasks of one group are held out together.
        index: ``(n,)`` int64 positions of the architectures in ``space.members()`` (sorted, unique).
        values: ``(n,)`` float64 values (maximised), aligned with ``index``.
        fidelity: fidelity label (None: the main fidelity, what a search targets).
        data: dataset/task spec whose images describe the task (None: no data samples).
        source: where the records came from.
    """

    name: str
    group: str
    index: np.ndarray
    values: np.ndarray
    fidelity: str | None = None
    data: str | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.index)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def std(self) -> float:
        """Population std of the values (1 when they are all equal)."""
        s = float(self.values.std())
        return s if s > 0 else 1.0

    def standardized(self) -> np.ndarray:
        return (self.values - self.mean) / self.std


@dataclass
class Corpus:
    """Tasks of one search space."""

    space: SearchSpace
    tasks: list[CorpusTask] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise CorpusError(f"task {dup!r} appears twice in the corpus; expected unique task names")
        for t in self.tasks:
            _check_task(t, len(self.space))

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.tasks))

    @property
    def fidelities(self) -> list[str]:
        return sorted({t.fidelity for t in self.tasks if t.fidelity is not None})

    @property
    def num_records(self) -> int:
        return sum(len(t) for t in self.tasks)

    def task(self, name: str) -> CorpusTask:
        for t in self.tasks:
            if t.name == name:
                return t
        raise CorpusError(f"unknown corpus task {name!r}; expected one of {', '.join(self.task_names)}")

    def group_of(self, name: str) -> str:
        return self.task(name).group

    def select(self, names: Sequence[str]) -> Corpus:
        """The corpus restricted to the tasks ``names`` (in that order)."""
        return Corpus(self.space, [self.task(n) for n in names])

    def without_groups(self, groups: Iterable[str]) -> Corpus:
        """The corpus without every task of ``groups`` (what a leave-group-out learner sees)."""
        drop = set(groups)
        unknown = drop - set(self.groups)
        if unknown:
            raise CorpusError(f"unknown group {sorted(unknown)[0]!r}; expected one of {', '.join(self.groups)}")
        return Corpus(self.space, [t for t in self.tasks if t.group not in drop])

    def merged(self, other: Corpus) -> Corpus:
        """Both corpora's tasks (same space; task names must not collide)."""
        if other.space.name != self.space.name:
            raise CorpusError(
                f"cannot merge a {other.space.name} corpus into a {self.space.name} corpus; expected one space"
            )
        return Corpus(self.space, [*self.tasks, *other.tasks])

    def summary(self) -> list[dict]:
        return [
            {
                "task": t.name,
                "group": t.group,
                "fidelity": t.fidelity,
                "data": t.data,
                "records": len(t),
                "source": t.source,
            }
            for t in self.tasks
        ]


def _check_task(t: CorpusTask, n_members: int) -> None:
    if len(t.index) == 0:
        raise CorpusError(f"corpus task {t.name!r} has no records; expected at least one (architecture, value) pair")
    if len(t.index) != len(t.values):
        raise CorpusError(f"corpus task {t.name!r}: {len(t.index)} architectures but {len(t.values)} values")
    bad = np.flatnonzero(~np.isfinite(t.values))
    if bad.size:
        raise CorpusError(
            f"corpus task {t.name!r}: architecture #{int(t.index[bad[0]])} has value {t.values[bad[0]]}; expected a finite number"
        )
    if t.index.min() < 0 or t.index.max() >= n_members:
        raise CorpusError(f"corpus task {t.name!r}: architecture index out of range 0..{n_members - 1}")


def from_records(
    space: SearchSpace | str,
    records: Iterable[tuple[str, Architecture | str, float]],
    *,
    groups: dict[str, str] | None = None,
    fidelities: dict[str, str | None] | None = None,
    data: dict[str, str | None] | None = None,
    tasks: Sequence[str] | None = None,
    source: str = "records",
) -> Corpus:
    """A corpus from ``(task, architecture or its string, value)`` records.

    Repeated (task, architecture) records are averaged. ``tasks`` lists tasks that must be
    present (one without records is an error, as is an unknown architecture or a NaN value).
    """
    sp = get_space(space) if isinstance(space, str) else space
    sums: dict[str, dict[int, list[float]]] = {t: {} for t in (tasks or ())}
    for task, arch, value in records:
        task = str(task)
        try:
            a = sp.parse(arch) if isinstance(arch, str) else arch
            i = sp.index_of(a)
        except InvalidArchitectureError as e:
            raise CorpusError(f"corpus task {task!r}: unknown architecture {str(arch)!r} ({e})") from None
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise CorpusError(f"corpus task {task!r}, architecture {a}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            raise CorpusError(f"corpus task {task!r}, architecture {a}: value is {v}; expected a finite number")
        sums.setdefault(task, {}).setdefault(i, []).append(v)
    out = []
    for task, by_arch in sums.items():
        if not by_arch:
            raise CorpusError(f"corpus task {task!r} has no records; expected at least one (architecture, value) pair")
        idx = np.array(sorted(by_arch), dtype=np.int64)
        vals = np.array([float(np.mean(by_arch[i])) for i in idx])
        out.append(
            CorpusTask(
                task,
                (groups or {}).get(task, task),
                idx,
                vals,
                (fidelities or {}).get(task),
                (data or {}).get(task),
                source,
            )
        )
    if not out:
        raise CorpusError(f"the corpus from {source} has no tasks; expected records (task, arch, value)")
    return Corpus(sp, out)


def benchmark_corpus(bench, tasks: Sequence[str] | None = None) -> Corpus:
    """Every task (or ``tasks``) of a :class:`~grabnas.benchmarks.TabularBenchmark`."""
    out = []
    for name in tasks if tasks is not None else bench.tasks:
        table = bench.table(name)
        col = np.asarray(table.search, dtype=np.float64)
        idx = np.flatnonzero(~np.isnan(col)).astype(np.int64)
        fidelity = name.rsplit("@", 1)[1] if (name in bench.auxiliary and "@" in name) else None
        if name in bench.auxiliary and fidelity is None:
            fidelity = "auxiliary"
        out.append(CorpusTask(name, table.group, idx, col[idx], fidelity, None, bench.name))
    return Corpus(bench.space, out)


def _read_csv(path: Path, form: str) -> tuple[list[dict], list[str]]:
    if not path.is_file():
        raise CorpusError(f"corpus file not found at {path}; expected {form}")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise CorpusError(f"{path} cannot be read as CSV ({e}); expected {form}") from None
    return rows, header


def records_corpus(path: str | os.PathLike, space: SearchSpace | str | None = None) -> Corpus:
    """A long-format record CSV (see the module docstring)."""
    p = Path(path).expanduser()
    rows, header = _read_csv(p, RECORD_FORM)
    missing = [c for c in ("task", "arch", "value") if c not in header]
    if missing:
        raise CorpusError(f"{p} has no column {missing[0]!r} (header: {','.join(header)}); expected {RECORD_FORM}")
    if not rows:
        raise CorpusError(f"{p} has no data rows; expected {RECORD_FORM}")
    if space is None:
        space = "nb201" if (rows[0]["arch"] or "").strip().startswith("|") else "nasbench-graph"
    groups, fids, data, recs = {}, {}, {}, []
    for line, row in enumerate(rows, start=2):
        task = (row["task"] or "").strip()
        if not task:
            raise CorpusError(f"{p}, line {line}: empty task name; expected {RECORD_FORM}")
        if (row.get("status") or "ok").strip() not in ("ok", ""):
            continue
        groups[task] = (row.get("group") or "").strip() or task
        fids[task] = (row.get("fidelity") or "").strip() or None
        data[task] = (row.get("data") or "").strip() or None
        cell = (row["value"] or "").strip()
        try:
            value = float(cell) if cell else float("nan")
        except ValueError:
            raise CorpusError(f"{p}, line {line}: value {cell!r} is not a number; expected {RECORD_FORM}") from None
        if not math.isfinite(value):
            raise CorpusError(
                f"{p}, line {line}: task {task!r} has value {cell or 'empty'!r}; expected a finite number"
            )
        recs.append((task, (row["arch"] or "").strip(), value))
    try:
        return from_records(space, recs, groups=groups, fidelities=fids, data=data, source=str(p))
    except CorpusError as e:
        raise CorpusError(f"{p}: {e}") from None


def shipped_image_corpus_path(name: str = "images-nb201") -> Path | None:
    """Path of a corpus shipped in ``grabnas/corpora`` (None when it is not there)."""
    root = importlib.resources.files("grabnas") / "corpora" / f"{name}.csv"
    try:
        p = Path(str(root))
    except TypeError:  # pragma: no cover - zipped installs
        return None
    return p if p.is_file() else None


def image_corpus(path: str | os.PathLike | None = None, metric: str = "val_acc", min_records: int = 2) -> Corpus:
    """An image-task corpus (``task,dataset,arch,val_acc,status,...``): each task keeps its data
    spec (the task name) so the dataset encoder can see its images. Failed rows are skipped and
    tasks with fewer than ``min_records`` successful rows (still being collected) are dropped."""
    p = Path(path).expanduser() if path is not None else shipped_image_corpus_path()
    if p is None:
        raise CorpusError("no image corpus is shipped with this install; expected images:PATH")
    form = f"a CSV with columns task,dataset,arch,{metric},status"
    rows, header = _read_csv(p, form)
    missing = [c for c in ("task", "arch", metric) if c not in header]
    if missing:
        raise CorpusError(f"{p} has no column {missing[0]!r}; expected {form}")
    recs, counts = [], {}
    for line, row in enumerate(rows, start=2):
        if (row.get("status") or "ok").strip() != "ok":
            continue
        task = (row["task"] or "").strip()
        cell = (row[metric] or "").strip()
        try:
            value = float(cell)
        except ValueError:
            raise CorpusError(f"{p}, line {line}: {metric} {cell!r} is not a number for a row with status ok") from None
        recs.append((task, (row["arch"] or "").strip(), value))
        counts[task] = counts.get(task, 0) + 1
    keep = {t for t, c in counts.items() if c >= min_records}
    recs = [r for r in recs if r[0] in keep]
    if not recs:
        raise CorpusError(f"{p} has no task with {min_records} or more successful rows yet")
    space = "nb201" if recs[0][1].startswith("|") else "nasbench-graph"
    try:
        return from_records(space, recs, data={t: t for t in keep}, source=str(p))
    except CorpusError as e:
        raise CorpusError(f"{p}: {e}") from None


def load_corpus(spec: str, data: str | os.PathLike | None = None) -> Corpus:
    """A corpus from a spec: ``nb201`` (table at ``data``), ``nasbench-graph``, ``csv:PATH``
    (a wide benchmark table), ``records:PATH``, ``images-nb201`` or ``images:PATH``; several
    specs joined by ``+`` are merged (same space)."""
    parts = [s.strip() for s in spec.split("+") if s.strip()]
    if not parts:
        raise CorpusError(f"empty corpus spec; expected {CORPUS_FORMS}")
    corpus: Corpus | None = None
    for part in parts:
        c = _load_one(part, data)
        corpus = c if corpus is None else corpus.merged(c)
    assert corpus is not None
    return corpus


def _load_one(spec: str, data) -> Corpus:
    if spec.startswith("records:"):
        return records_corpus(spec[len("records:") :])
    if spec.startswith("images:"):
        return image_corpus(spec[len("images:") :])
    if spec in ("images-nb201", "images"):
        return image_corpus(None)
    if spec in ("nb201", "nasbench-graph", "nbgraph") or spec.startswith("csv:"):
        from grabnas.benchmarks import load_benchmark

        return benchmark_corpus(load_benchmark(spec, data))
    raise CorpusError(f"unknown corpus {spec!r}; expected {CORPUS_FORMS}")


def with_group(task: CorpusTask, group: str) -> CorpusTask:
    return replace(task, group=group)


__all__ = [
    "CORPUS_FORMS",
    "Corpus",
    "CorpusError",
    "CorpusTask",
    "benchmark_corpus",
    "from_records",
    "image_corpus",
    "load_corpus",
    "records_corpus",
]
