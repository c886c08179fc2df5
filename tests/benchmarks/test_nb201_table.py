"""Strict checks of the NB201 accuracy table: each fault a one-line error naming file, line and column.

The tables here are the shipped table's header and first rows with one edit; a fault is reported
before the missing cells are, so the short tables are enough."""

import csv
import io

import pytest

from grabnas.benchmarks.nb201 import load_nb201
from grabnas.errors import BenchmarkFileError

COLUMN = "cifar100_test_200ep"


@pytest.fixture(scope="module")
def head(nb201_path):
    """The header and the first 8 rows of the table, as lists of fields."""
    with nb201_path.open(newline="") as f:
        rows = list(csv.reader(f))[:9]
    return rows


def _write(tmp_path, rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    p = tmp_path / "nb201_accuracies.csv"
    p.write_text(buf.getvalue())
    return p


def _set(rows, line, column, value):
    rows = [list(r) for r in rows]
    rows[line - 1][rows[0].index(column)] = value
    return rows


def _field(rows, line, column):
    return rows[line - 1][rows[0].index(column)]


#: case -> (edit of the header and first rows, fragment of the error)
EDITS = {
    "abc": (lambda h: _set(h, 3, COLUMN, "abc"), f"line 3: column {COLUMN} holds 'abc'; expected an accuracy in %"),
    "inf": (lambda h: _set(h, 3, COLUMN, "inf"), f"line 3: column {COLUMN} holds 'inf', not finite; expected an acc"),
    "1e309": (lambda h: _set(h, 4, COLUMN, "1e309"), "line 4: .* holds '1e309', which overflows to infinity; expected"),
    "nan": (lambda h: _set(h, 5, COLUMN, "nan"), f"line 5: column {COLUMN} holds 'nan', not a number; expected"),
    "empty": (lambda h: _set(h, 6, COLUMN, ""), f"line 6: column {COLUMN} is empty; expected an accuracy in %"),
    "blank": (lambda h: _set(h, 6, COLUMN, "  "), f"line 6: column {COLUMN} is empty"),
    "negative": (
        lambda h: _set(h, 2, COLUMN, "-3.5"),
        r"line 2: .* holds '-3.5'; expected an accuracy in % \(a finite number from 0 to 100\)",
    ),
    "over 100": (
        lambda h: _set(h, 2, "imagenet16_val_12ep", "100.5"),
        "line 2: column imagenet16_val_12ep holds '100.5'; expected",
    ),
    "duplicate": (
        lambda h: _set(h, 7, "arch_str", _field(h, 3, "arch_str")),
        r"line 7: architecture '\|.*\|' already on line 3; expected one row per architecture",
    ),
    "duplicate as tuple": (
        lambda h: _set(h, 7, "arch_str", _field(h, 3, "naslib_op_indices")),
        r"line 7: architecture '\(.*\)' already on line 3 as '\|.*\|' \(the same cell\); expected one row",
    ),
    "bad arch": (
        lambda h: _set(h, 4, "arch_str", "|conv~0|"),
        r"line 4: malformed NB201 cell string .*; expected .*\(column arch_str\)",
    ),
    "extra field": (
        lambda h: [*h[:4], [*h[4], "1"], *h[5:]],
        r"line 5: 13 field\(s\), but the header \(line 1\) has 12; expected one field per column",
    ),
    "missing field": (
        lambda h: [*h[:4], h[4][:-1], *h[5:]],
        r"line 5: 11 field\(s\), but the header \(line 1\) has 12",
    ),
    "duplicate header": (
        lambda h: _set(h, 1, "nb201_index", COLUMN),
        rf"line 1: column {COLUMN} appears twice \(columns 1 and 5\); expected each column name once",
    ),
    "empty header": (
        lambda h: _set(h, 1, "nb201_index", ""),
        "line 1, column 1: empty column name; expected a name",
    ),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_rejected_tables(tmp_path, head, case):
    edit, fragment = EDITS[case]
    p = _write(tmp_path, edit(head))
    with pytest.raises(BenchmarkFileError, match=fragment) as e:
        load_nb201(p)
    message = str(e.value)
    assert message.startswith(str(p)) and "\n" not in message and "expected" in message


def test_the_short_table_itself_only_lacks_cells(tmp_path, head):
    with pytest.raises(BenchmarkFileError, match="has 8 of the 15625 NB201 cells; expected all of them"):
        load_nb201(_write(tmp_path, head))


def test_not_csv_text(tmp_path, head):
    p = tmp_path / "t.csv"
    p.write_bytes(",".join(head[0]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(BenchmarkFileError, match=r"t\.csv, line 2: not UTF-8 text .*; expected nb201_accuracies\.csv"):
        load_nb201(p)
    p.write_text(",".join(head[0]) + '\n1,"|none~0|"x\n')
    with pytest.raises(BenchmarkFileError, match=r"line 2: cannot be read as CSV .*; expected nb201_accuracies\.csv"):
        load_nb201(p)


def test_shipped_table_passes_the_checks():
    b = load_nb201()
    assert all(len(b.pool(t)) == 15625 for t in b.tasks)
