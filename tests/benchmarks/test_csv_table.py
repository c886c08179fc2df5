import pytest

from grabnas.benchmarks import load_benchmark
from grabnas.errors import BenchmarkFileError

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


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


def test_nasbench_graph_csv(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("arch,mygraph\ngcn~0|gat~1|sage~2|fc~2,80\n")
    b = load_benchmark(f"csv:{p}")
    assert b.space.name == "nasbench-graph" and b.optimum("mygraph") == 80


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("x,y\n1,2\n", "no 'arch' column"),
        ("arch\n" + A + "\n", "no task column"),
        (f"arch,t\n{A},abc\n", "line 2: column t holds 'abc'; expected a number"),
        (f"arch,t\n{A},1\n{A},2\n", "line 3: architecture .* repeats line 2"),
        ("arch,t\n|bad~0|,1\n", "line 2: malformed NB201 cell string"),
        ("arch,t\n", "no data rows"),
        (f"arch,t,u:test\n{A},1,2\n", "column u:test has no matching task column u"),
    ],
)
def test_malformed_csv(tmp_path, content, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(BenchmarkFileError, match=fragment):
        load_benchmark(f"csv:{p}")


def test_missing_csv(tmp_path):
    with pytest.raises(BenchmarkFileError, match="benchmark CSV not found"):
        load_benchmark(f"csv:{tmp_path / 'none.csv'}")
