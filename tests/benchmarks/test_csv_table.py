import pytest

from grabnas.benchmarks import load_benchmark
from grabnas.errors import BenchmarkFileError

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
A_TUPLE = '"(2, 2, 0, 2, 2, 2)"'  # A as a NASLib op-index tuple: the same NB201 cell


def test_user_csv_roundtrip(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text(f"arch,taskA,taskA:test,taskB,cost\n{A},91.5,90.0,,12\n{B},10.0,9.5,50,3\n")
    b = load_benchmark(f"csv:{p}")
    assert b.space.name == "nb201" and b.tasks == ("taskA", "taskB")
    a = b.space.parse(A)
    assert b.value(a, "taskA") == 91.5 and b.report_value(a, "taskA") == 90.0
    assert b.value(a, "taskB") is None  # missing cell: not in that task's pool
    assert b.report_value(b.space.parse(B), "taskB") == 50.0  # no :test column -> search column
    assert len(b.pool("taskA")) == 2 and len(b.pool("taskB")) == 1
    assert b.cost(a, "taskA") == 12


def test_fidelity_columns_are_auxiliary_tasks_of_their_task_with_their_own_cost(tmp_path):
    """``TASK@Nep`` next to ``TASK``: a lower fidelity (same group, auxiliary, cost from ``cost@Nep``
    or else ``cost``); ``X@2ep`` without an ``X`` column and ``@`` in other names stay plain tasks."""
    p = tmp_path / "mf.csv"
    p.write_text(
        f"arch,t,t@2ep,t@1ep,u@2ep,v@0,cost,cost@2ep\n{A},91.5,40.0,20.0,7,8,10,4\n{B},10.0,11.0,12.0,7,8,5,2\n"
    )
    b = load_benchmark(f"csv:{p}")
    a = b.space.parse(A)
    assert b.main_tasks == ("t", "u@2ep", "v@0") and set(b.auxiliary) == {"t@2ep", "t@1ep"}
    assert b.group("t@2ep") == b.group("t@1ep") == "t" and b.group("u@2ep") == "u@2ep"
    assert b.value(a, "t@2ep") == 40.0 and b.cost(a, "t@2ep") == 4 and b.cost(a, "t@1ep") == 10
    assert b.cost(a, "t") == 10


def test_a_tasks_own_cost_column_overrides_the_shared_ones(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text(f"arch,t,t:cost,t@1ep,t@1ep:cost,u,cost,cost@1ep\n{A},1,8,2,3,4,5,6\n")
    b = load_benchmark(f"csv:{p}")
    a = b.space.parse(A)
    assert b.tasks == ("t", "t@1ep", "u")
    assert (b.cost(a, "t"), b.cost(a, "t@1ep"), b.cost(a, "u")) == (8, 3, 5)
    p.write_text(f"arch,t,v:cost\n{A},1,2\n")
    with pytest.raises(BenchmarkFileError, match="column v:cost has no matching task column v"):
        load_benchmark(f"csv:{p}")


def test_a_fidelity_cost_column_without_its_fidelity_is_refused(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(f"arch,t,cost,cost@3ep\n{A},1,2,3\n")
    with pytest.raises(BenchmarkFileError, match=r"line 1: column cost@3ep has no task column ending in @3ep"):
        load_benchmark(f"csv:{p}")


def test_nasbench_graph_csv(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("arch,mygraph\ngcn~0|gat~1|sage~2|fc~2,80\n")
    b = load_benchmark(f"csv:{p}")
    assert b.space.name == "nasbench-graph" and b.optimum("mygraph") == 80


def test_accepted_forms(tmp_path):
    """Negative values (e.g. minus a loss), empty cells and cost, spaces around names and values,
    a byte-order mark, blank lines and CRLF line ends are all fine."""
    p = tmp_path / "ok.csv"
    p.write_bytes(f"\ufeffarch , loss ,cost\r\n\r\n{A}, -0.25 ,\r\n{B},,2\r\n".encode())
    b = load_benchmark(f"csv:{p}")
    a = b.space.parse(A)
    assert b.tasks == ("loss",) and b.value(a, "loss") == -0.25 and b.cost(a, "loss") == 1.0
    assert b.optimum("loss") == -0.25 and len(b.pool("loss")) == 1


HEAD = "arch,t,t:test,cost\n"


@pytest.mark.parametrize(
    "content, fragment",
    [
        # values
        (f"arch,t\n{A},abc\n", "line 2: column t holds 'abc'; expected a finite number, or an empty cell"),
        (f"arch,t\n{A},inf\n", "line 2: column t holds 'inf', not finite; expected a finite number"),
        (f"arch,t\n{A},-Infinity\n", "line 2: column t holds '-Infinity', not finite; expected"),
        (f"arch,t\n{A},1e309\n", "line 2: column t holds '1e309', which overflows to infinity; expected"),
        (f"arch,t\n{A},nan\n", "line 2: column t holds 'nan', not a number; expected a finite number"),
        (f"arch,t\n{A},NaN\n", "line 2: column t holds 'NaN', not a number; expected"),
        (f"{HEAD}{A},1,inf,1\n", r"line 2: column t:test holds 'inf', not finite; expected"),
        (f"{HEAD}{A},1,1,-1\n", "line 2: column cost holds '-1'; expected a cost in seconds >= 0"),
        (f"{HEAD}{A},1,1,nan\n", "line 2: column cost holds 'nan', not a number; expected a cost"),
        # architectures
        (f"arch,t\n{A},1\n{B},2\n{A},2\n", "line 4: architecture '.*' already on line 2; expected one row per arch"),
        (f"arch,t\n{A},1\n{A_TUPLE},2\n", r"line 3: architecture '\(2, 2, 0, 2, 2, 2\)' already on line 2 as '\|"),
        ("arch,t\n|bad~0|,1\n", r"line 2: malformed NB201 cell string .*; expected .* \(column arch\)"),
        (f"arch,t\n{A},1\n,2\n", r"line 3: malformed NB201 cell string ''"),
        (
            "arch,t\ngcn~0|gat~\u00b2|gin~1|fc~2,1\n",
            r"line 2: malformed NAS-Bench-Graph string .*\(column arch\)",
        ),
        # header
        (f"arch,a,a\n{A},1,2\n", r"line 1: column a appears twice \(columns 2 and 3\); expected each column name once"),
        (f"arch,a,a:test,a:test\n{A},1,2,3\n", r"line 1: column a:test appears twice \(columns 3 and 4\)"),
        (f"arch,t,arch\n{A},1,{B}\n", r"line 1: column arch appears twice \(columns 1 and 3\)"),
        (f"arch,,t\n{A},1,2\n", "line 1, column 2: empty column name; expected a name for every column"),
        ("x,y\n1,2\n", "line 1: no 'arch' column .*; expected a CSV with header"),
        ("arch\n" + A + "\n", "line 1: no task column; expected a CSV"),
        (f"arch,t,u:test\n{A},1,2\n", "line 1: column u:test has no matching task column u; expected a column u"),
        # shape
        (f"arch,t\n{A},1,2\n", r"line 2: 3 field\(s\), but the header \(line 1\) has 2; expected one field per column"),
        (f"arch,t,u\n{A},1,2\n{B},1\n", r"line 3: 2 field\(s\), but the header \(line 1\) has 3"),
        (f'arch,t\n{A},"1\n2"\n{B},1,2\n', r"line 4: 3 field\(s\)"),  # a quoted field spans lines 2-3
        (f'arch,t\n{A},"1"x\n', "line 2: cannot be read as CSV .*; expected a CSV with header"),
        (f'arch,t\n{A},"1\n', "line 2: cannot be read as CSV"),
        ("arch,t\n", "has no data rows; expected"),
        ("", "is empty; expected a CSV"),
        # empty columns
        (f"arch,t,u\n{A},1,\n{B},2,\n", "column u is empty on every row; expected at least one value per task column"),
        (f"{HEAD}{A},1,,\n", "column t:test is empty on every row"),
    ],
)
def test_malformed_csv(tmp_path, content, fragment):
    p = tmp_path / "bad.csv"
    p.write_bytes(content.encode())
    with pytest.raises(BenchmarkFileError, match=fragment) as e:
        load_benchmark(f"csv:{p}")
    message = str(e.value)
    assert message.startswith(str(p)) and "\n" not in message and "expected" in message


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes(f"arch,t\n{A},1\n{B},2 \xb0C\n".encode("latin-1"))
    with pytest.raises(BenchmarkFileError, match=r"latin1\.csv, line 3: not UTF-8 text .*; expected a CSV"):
        load_benchmark(f"csv:{p}")


def test_missing_csv(tmp_path):
    with pytest.raises(BenchmarkFileError, match="benchmark CSV not found"):
        load_benchmark(f"csv:{tmp_path / 'none.csv'}")
