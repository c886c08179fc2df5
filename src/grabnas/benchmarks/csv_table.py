"""A user's own tabular benchmark: a CSV with an architecture column and one column per task.

Format (UTF-8, header row required)::

    arch,task_a,task_a:test,task_b,cost
    |nor_conv_3x3~0|+|...|,91.2,90.8,55.0,12.5
    ...

* ``arch``: the canonical architecture string of an NB201 or NAS-Bench-Graph member (the space
  is inferred from the first row, or given explicitly); one row per architecture (two strings
  of the same member, e.g. an NB201 string and its op-index tuple, are the same architecture).
* every other column ``TASK`` is a task's search metric (maximised); an optional ``TASK:test``
  column holds the metric reported for the final choice (default: the search column);
* an optional ``cost`` column holds simulated seconds per evaluation (default 1; not negative); an
  optional ``TASK:cost`` column holds them for that task alone (instead of ``cost``).
* a column ``TASK@Nep`` (``N`` digits) next to a task column ``TASK`` is a *lower fidelity* of that
  task: the same cells trained for ``N`` epochs (its own schedule; ``TASK`` is the target
  fidelity). It shares ``TASK``'s group (held out with it), is auxiliary (not a default target of
  a search or bench) and makes the table a multi-fidelity benchmark
  (:mod:`grabnas.evaluation.multifidelity`); its optional ``cost@Nep`` column holds its seconds per
  evaluation (default: the ``cost`` column).

Each column name appears once, and every row has one field per column. Values are finite numbers
(``inf``, ``nan`` and numbers too large for a float, such as ``1e309``, are refused); negative
values are fine (e.g. minus a loss). Empty cells are missing values: an architecture without a
value is not in that task's pool (an empty ``cost`` means 1); a task column must hold at least one
value. Any departure from this form is a :class:`~grabnas.errors.BenchmarkFileError` whose one-line
message names the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.errors import BenchmarkFileError, InvalidArchitectureError
from grabnas.spaces import get_space
from grabnas.spaces.base import SearchSpace

_FORM = (
    "a CSV with header 'arch,TASK[,TASK:test][,TASK:cost][,TASK@Nep][,cost][,cost@Nep]' "
    "and one architecture string per row"
)
_VALUE = "a finite number, or an empty cell for a missing value"


def show(text: str) -> str:
    """``text`` as is when it prints on one line, else its ``repr`` (for one-line messages)."""
    return text if text.isprintable() else repr(text)


def read_table(p: Path, data: bytes, form: str) -> tuple[list[str], int, list[tuple[int, list[str]]]]:
    """The header (names stripped), the line it is on, and the data rows with the line each starts
    on, of the CSV file ``p`` whose bytes are ``data`` (UTF-8, a leading byte-order mark allowed).
    Blank lines are skipped. One-line :class:`BenchmarkFileError` for bytes that are not UTF-8,
    text that is not CSV, an empty or repeated column name, and a row with more or fewer fields
    than the header; ``form`` is what the file should be, for the messages."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BenchmarkFileError(f"{p}, line {line}: not UTF-8 text ({e.reason}); expected {form}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields:
                continue
            if header is None:
                header, header_line = [h.strip() for h in fields], start
                first: dict[str, int] = {}
                for j, name in enumerate(header, start=1):
                    if not name:
                        raise BenchmarkFileError(
                            f"{p}, line {start}, column {j}: empty column name; expected a name for every column"
                        )
                    if name in first:
                        raise BenchmarkFileError(
                            f"{p}, line {start}: column {show(name)} appears twice (columns {first[name]} and {j}); "
                            "expected each column name once"
                        )
                    first[name] = j
                continue
            if len(fields) != len(header):
                raise BenchmarkFileError(
                    f"{p}, line {start}: {len(fields)} field(s), but the header (line {header_line}) has "
                    f"{len(header)}; expected one field per column"
                )
            rows.append((start, fields))
    except csv.Error as e:
        raise BenchmarkFileError(f"{p}, line {line}: cannot be read as CSV ({e}); expected {form}") from None
    return header or [], header_line, rows


def parse_number(cell: str) -> float | None:
    """``cell`` as a finite float, or None when it is not one (text, ``nan``, ``inf``, ``1e309``)."""
    try:
        x = float(cell)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def number_error(p: Path, line: int, column: str, cell: str, expected: str) -> BenchmarkFileError:
    """The one-line error for ``cell`` (stripped) of ``column``, which is not the number ``expected`` says."""
    try:
        x = float(cell)
    except ValueError:
        x = 0.0
    if math.isnan(x):
        why = ", not a number"
    elif math.isinf(x):
        why = ", not finite" if "inf" in cell.lower() else ", which overflows to infinity"
    else:
        why = ""
    return BenchmarkFileError(f"{p}, line {line}: column {show(column)} holds {cell!r}{why}; expected {expected}")


def member_index(
    p: Path, line: int, text: str, space: SearchSpace, column: str, seen: dict[int, tuple[int, str]], what: str
) -> int:
    """The index in ``space`` of the architecture ``text`` on ``line``, recorded in ``seen``
    (index -> first line and spelling); a malformed string or a repeated member (``what`` names it
    in the message, e.g. "the same cell") is a one-line :class:`BenchmarkFileError`."""
    try:
        i = space.index_of(space.parse(text))
    except InvalidArchitectureError as e:
        raise BenchmarkFileError(f"{p}, line {line}: {e} (column {column})") from None
    except ValueError as e:  # a parser's slip on odd text, which is still the file's fault
        raise BenchmarkFileError(
            f"{p}, line {line}: malformed architecture {text!r} ({e}); "
            f"expected a member of the {space.name} space (column {column})"
        ) from None
    if i in seen:
        first_line, first_text = seen[i]
        also = "" if text == first_text else f" as {first_text!r} ({what})"
        raise BenchmarkFileError(
            f"{p}, line {line}: architecture {text!r} already on line {first_line}{also}; "
            "expected one row per architecture"
        )
    seen[i] = (line, text)
    return i


def _number(p: Path, line: int, column: str, cell: str) -> float:
    cell = cell.strip()
    if not cell:
        return np.nan
    x = parse_number(cell)
    if x is None:
        raise number_error(p, line, column, cell, _VALUE)
    return x


def fidelity_column(name: str) -> tuple[str, int] | None:
    """``("TASK", N)`` for a column named ``TASK@Nep`` (``N`` >= 1 digits), else None."""
    base, at, label = name.rpartition("@")
    if not at or not base or not label.endswith("ep") or not label[:-2].isdigit() or int(label[:-2]) < 1:
        return None
    return base, int(label[:-2])


def _cost(p: Path, line: int, column: str, cell: str) -> float:
    cell = cell.strip()
    c = parse_number(cell) if cell else 1.0
    if c is None or c < 0:
        raise number_error(p, line, column, cell, "a cost in seconds >= 0, or an empty cell for 1")
    return c


def _infer_space(first_arch: str) -> SearchSpace:
    return get_space("nb201" if first_arch.strip().startswith("|") else "nasbench-graph")


SHIPPED_TABLES = Path(__file__).resolve().parent / "tables"


def shipped_tables() -> list[str]:
    """Names of the CSV benchmarks shipped in the package (``csv:NAME`` loads one)."""
    return sorted(p.stem for p in SHIPPED_TABLES.glob("*.csv") if not p.stem.endswith("-seeds"))


def resolve_table(path: str | os.PathLike) -> Path:
    """``path`` itself when it names a file (or anything but a bare shipped name), else the shipped
    table ``tables/NAME.csv`` (``groundtruth-images``; a trailing ``.csv`` is fine)."""
    p = Path(os.path.expanduser(str(path)))
    if p.exists() or p.parent != Path("."):
        return p
    shipped = SHIPPED_TABLES / (p.name if p.suffix == ".csv" else p.name + ".csv")
    return shipped if shipped.exists() else p


def load_csv_benchmark(path: str | os.PathLike, space: str | None = None) -> TabularBenchmark:
    """Load a user CSV benchmark (see the module docstring for the format)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchmarkFileError(f"benchmark CSV not found at {p}; expected {_FORM}")
    header, header_line, rows = read_table(p, p.read_bytes(), _FORM)
    if not header:
        raise BenchmarkFileError(f"{p} is empty; expected {_FORM}")
    if not rows:
        raise BenchmarkFileError(f"{p} has no data rows; expected {_FORM}")
    if "arch" not in header:
        raise BenchmarkFileError(
            f"{p}, line {header_line}: no 'arch' column (header: {show(','.join(header))}); expected {_FORM}"
        )
    costs = ["cost"] + [c for c in header if c.startswith("cost@") and fidelity_column(c)]
    tasks = [c for c in header if c != "arch" and c not in costs and not c.endswith((":test", ":cost"))]
    if not tasks:
        raise BenchmarkFileError(f"{p}, line {header_line}: no task column; expected {_FORM}")
    costs += [c for c in header if c.endswith(":cost")]
    orphans = [c for c in header if c.endswith((":test", ":cost")) and c[: -len(":test")] not in tasks]
    if orphans:
        task = show(orphans[0][: -len(":test")])
        raise BenchmarkFileError(
            f"{p}, line {header_line}: column {show(orphans[0])} has no matching task column {task}; "
            f"expected a column {task} next to it"
        )
    col = {name: j for j, name in enumerate(header)}
    low = {t: fidelity_column(t) for t in tasks}
    low = {t: f for t, f in low.items() if f is not None and f[0] in col and f[0] in tasks and low[f[0]] is None}
    for c in (c for c in costs if c.startswith("cost@")):
        label = c[len("cost") :]
        if not any(t.endswith(label) for t in low):
            raise BenchmarkFileError(
                f"{p}, line {header_line}: column {show(c)} has no task column ending in {show(label)}; "
                f"expected a lower-fidelity column TASK{show(label)} next to it"
            )
    sp = get_space(space) if space else _infer_space(rows[0][1][col["arch"]])
    seen: dict[int, tuple[int, str]] = {}
    cells: list[tuple[int, list[float], list[float], list[float]]] = []  # per row: index, search, report, costs
    for line, fields in rows:
        i = member_index(p, line, fields[col["arch"]].strip(), sp, "arch", seen, f"the same {sp.name} member")
        row_search = [_number(p, line, t, fields[col[t]]) for t in tasks]
        row_report = [_number(p, line, t + ":test", fields[col.get(t + ":test", col[t])]) for t in tasks]
        row_costs = [_cost(p, line, c, fields[col[c]]) if c in col else 1.0 for c in costs]
        cells.append((i, row_search, row_report, row_costs))
    n = len(sp)  # after the rows: a first row that is no architecture fails before the space is enumerated
    search = {t: np.full(n, np.nan) for t in tasks}
    report = {t: np.full(n, np.nan) for t in tasks}
    cost = {c: np.ones(n) for c in costs}
    for i, row_search, row_report, row_costs in cells:
        for k, t in enumerate(tasks):
            search[t][i], report[t][i] = row_search[k], row_report[k]
        for k, c in enumerate(costs):
            cost[c][i] = row_costs[k]
    for t in tasks:
        for name, values in ((t, search[t]), (t + ":test", report[t])):
            if name in col and np.isnan(values).all():
                raise BenchmarkFileError(
                    f"{p}: column {show(name)} is empty on every row; expected at least one value per task column"
                )
    tables = {
        t: TaskTable(
            t,
            low[t][0] if t in low else t,
            search[t],
            report[t],
            cost.get(f"{t}:cost", cost.get(f"cost@{low[t][1]}ep", cost["cost"]) if t in low else cost["cost"]),
            f"search: {t}, report: {t + ':test' if t + ':test' in header else t}",
        )
        for t in tasks
    }
    return TabularBenchmark(f"csv:{p}", sp, tables, auxiliary=list(low))
