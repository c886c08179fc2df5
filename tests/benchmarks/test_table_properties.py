"""Property-based checks (hypothesis) of architecture strings, user CSV tables and spec lists."""

import csv
import io
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grabnas.benchmarks.csv_table import load_csv_benchmark
from grabnas.errors import BenchmarkFileError
from grabnas.spaces.nb201 import OPS, NB201Arch, NB201Space
from grabnas.specs import split_top_level

SPACE = NB201Space()
nb201_archs = st.lists(st.sampled_from(OPS), min_size=6, max_size=6).map(lambda ops: NB201Arch(tuple(ops)))
# tmp_path is shared by the examples of one test: each example overwrites the same file
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(nb201_archs)
def test_nb201_string_and_op_index_round_trip(arch):
    assert SPACE.parse(arch.to_string()) == arch
    assert SPACE.from_naslib_indices(arch.naslib_indices()) == arch
    assert SPACE.parse(str(arch.naslib_indices())) == arch


A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
# near-miss pieces, so that random tables get past the header and into the row checks
NAMES = st.one_of(
    *[st.sampled_from(["t:test", "u", "u:test", "cost"])] * 4,
    st.sampled_from(["arch", " t ", "x:test", ""]),
    st.text(min_size=1, max_size=4),
)
ARCHS = st.sampled_from(
    [A, B, " " + A, "(2, 2, 0, 4, 2, 0)", "|bad~0|", "gcn~0|gat~1|x~2|fc~9", "gcn~0|gat~\u00b2|gin~1|fc~2", ""]
)
CELLS = st.one_of(
    *[st.sampled_from(["1", "-2.5", "", " 3 ", "0"])] * 4,
    st.sampled_from(["inf", "nan", "1e309", "1e308", "x", '"', '"1"']),
    st.text(max_size=6),
)


@st.composite
def table_like_text(draw):
    """Text close to a CSV table: an ``arch`` column, near-miss names, architectures and cells."""
    header = ["arch", "t", *draw(st.lists(NAMES, max_size=3, unique=True))]
    width = (
        st.integers(max(1, len(header) - 1), len(header) + 1) if draw(st.integers(0, 4)) == 0 else st.just(len(header))
    )
    rows = [
        [draw(ARCHS | ARCHS | st.text(max_size=8)), *draw(st.lists(CELLS, min_size=w - 1, max_size=w - 1))]
        for w in draw(st.lists(width, min_size=1, max_size=5))
    ]
    sep = "," if draw(st.integers(0, 4)) else ";"
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return end.join(sep.join(r) for r in [header, *rows]) + draw(st.sampled_from(["", end, end + end]))


@settings(FAST, max_examples=200)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        table_like_text().map(str.encode),
    )
)
def test_any_file_loads_or_raises_a_one_line_benchmark_file_error(tmp_path, data):
    p = tmp_path / "t.csv"
    p.write_bytes(data)
    try:
        load_csv_benchmark(p)
    except BenchmarkFileError as e:
        message = str(e)
        assert message.startswith(str(p)) and "\n" not in message and "\r" not in message and "expected" in message


finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def value_tables(draw):
    """A table of distinct NB201 cells with random finite values (or None: an empty cell) in
    two task columns, one with a :test column, and random costs >= 0."""
    archs = draw(st.lists(nb201_archs, min_size=1, max_size=6, unique=True))
    n = len(archs)
    t = draw(st.lists(finite | st.none(), min_size=n, max_size=n).filter(lambda v: any(x is not None for x in v)))
    t_test = draw(st.lists(finite, min_size=n, max_size=n))
    u = draw(st.lists(finite, min_size=n, max_size=n))
    cost = draw(st.lists(st.floats(min_value=0, allow_infinity=False), min_size=n, max_size=n))
    return archs, t, t_test, u, cost


def _cell(x):
    return "" if x is None else repr(x)


@FAST
@given(value_tables())
def test_finite_values_round_trip_exactly(tmp_path, table):
    archs, t, t_test, u, cost = table
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", "t", "t:test", "u", "cost"])
    for row in zip(archs, t, t_test, u, cost):
        w.writerow([row[0].to_string(), *map(_cell, row[1:])])
    p = tmp_path / "values.csv"
    p.write_text(buf.getvalue())
    b = load_csv_benchmark(p)
    assert b.tasks == ("t", "u")
    for k, arch in enumerate(archs):
        assert b.value(arch, "t") == t[k]  # None: the empty cell left the pool
        got = b.report_value(arch, "t")
        assert (got, math.copysign(1, got)) == (t_test[k], math.copysign(1, t_test[k]))  # -0.0 stays -0.0
        assert b.value(arch, "u") == u[k] and b.report_value(arch, "u") == u[k]
        assert b.cost(arch, "u") == cost[k]
    assert len(b.pool("t")) == sum(x is not None for x in t) and len(b.pool("u")) == len(archs)


def _balanced(text):
    depth = 0
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            return False
    return depth == 0


@given(st.text(alphabet="ab,[] ", max_size=30))
def test_split_top_level_parts_join_back_and_split_only_at_top_level(text):
    parts = split_top_level(text)
    assert ",".join(parts) == text  # always, balanced or not
    if _balanced(text):
        assert all(_balanced(part) for part in parts)  # no comma inside brackets was split
        assert len(parts) == 1 + sum(1 for i, ch in enumerate(text) if ch == "," and _balanced(text[:i]))
