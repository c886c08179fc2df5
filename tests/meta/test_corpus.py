"""Meta-training corpora: sources, grouping, and rejection of bad records."""

from __future__ import annotations

import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.meta.corpus import (
    Corpus,
    CorpusError,
    CorpusTask,
    benchmark_corpus,
    from_records,
    image_corpus,
    load_corpus,
    records_corpus,
    shipped_image_corpus_path,
)
from grabnas.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def _arch(space, i):
    return space.members()[i]


def test_from_records_groups_and_averages(space):
    recs = [
        ("a", _arch(space, 0), 1.0),
        ("a", _arch(space, 0).to_string(), 3.0),
        ("a", _arch(space, 5), 2.0),
        ("b", _arch(space, 1), 4.0),
    ]
    c = from_records(space, recs, groups={"a": "g", "b": "g"}, fidelities={"b": "12ep"})
    a = c.task("a")
    assert a.index.tolist() == [0, 5] and a.values.tolist() == [2.0, 2.0]
    assert c.groups == ["g"] and c.fidelities == ["12ep"] and c.num_records == 3
    assert c.without_groups(["g"]).tasks == []


def test_nan_value_is_rejected_with_task_and_architecture(space):
    with pytest.raises(CorpusError, match=r"task 'a'.*nan.*finite number"):
        from_records(space, [("a", _arch(space, 0), 1.0), ("a", _arch(space, 1), float("nan"))])
    with pytest.raises(CorpusError, match="not a number"):
        from_records(space, [("a", _arch(space, 0), "abc")])


def test_unknown_architecture_is_rejected(space):
    with pytest.raises(CorpusError, match=r"task 'a': unknown architecture"):
        from_records(space, [("a", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", 1.0)])
    with pytest.raises(GrabnasError, match="unknown architecture"):
        from_records(space, [("a", "not an architecture", 1.0)])


def test_empty_task_is_rejected(space):
    with pytest.raises(CorpusError, match=r"task 'b' has no records"):
        from_records(space, [("a", _arch(space, 0), 1.0)], tasks=["a", "b"])
    empty = CorpusTask("e", "e", np.zeros(0, dtype=np.int64), np.zeros(0))
    with pytest.raises(CorpusError, match=r"task 'e' has no records"):
        Corpus(space, [empty])
    nan_task = CorpusTask("n", "n", np.array([0, 1]), np.array([1.0, np.nan]))
    with pytest.raises(CorpusError, match=r"task 'n'.*finite number"):
        Corpus(space, [nan_task])


def test_records_csv(tmp_path, space):
    p = tmp_path / "corpus.csv"
    a0, a1 = _arch(space, 0).to_string(), _arch(space, 1).to_string()
    p.write_text(
        "task,arch,value,group,fidelity,status\n"
        f"t1,{a0},1.5,d1,,ok\n"
        f"t1,{a1},2.5,d1,,ok\n"
        f"t2,{a0},9.0,d1,short,ok\n"
        f"t2,{a1},,d1,short,failed\n"
    )
    c = records_corpus(p)
    assert c.task_names == ["t1", "t2"] and c.task("t2").fidelity == "short" and len(c.task("t2")) == 1
    assert load_corpus(f"records:{p}").num_records == 3
    bad = tmp_path / "bad.csv"
    bad.write_text(f"task,arch,value\nt1,{a0},\nt1,{a1},1\n")
    with pytest.raises(CorpusError, match=r"line 2: task 't1' has value 'empty'; expected a finite number"):
        records_corpus(bad)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("task,arch,value\nt1,|nope~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
    with pytest.raises(CorpusError, match="unknown architecture"):
        records_corpus(unknown)
    with pytest.raises(CorpusError, match="no column 'value'"):
        (tmp_path / "cols.csv").write_text(f"task,arch\nt1,{a0}\n")
        records_corpus(tmp_path / "cols.csv")
    with pytest.raises(CorpusError, match="unknown corpus"):
        load_corpus("nope")


def test_benchmark_corpus_groups_fidelities(nb201_bench):
    c = benchmark_corpus(nb201_bench)
    assert len(c) == 6 and sorted(c.groups) == ["cifar10", "cifar100", "imagenet16"]
    assert c.task("cifar10@12ep").fidelity == "12ep" and c.task("cifar10").fidelity is None
    assert len(c.task("cifar10")) == 15625
    rest = c.without_groups(["cifar10"])
    assert "cifar10@12ep" not in rest.task_names and len(rest) == 4
    with pytest.raises(CorpusError, match="unknown group"):
        c.without_groups(["mnist"])


def test_shipped_image_corpus_has_data_specs():
    path = shipped_image_corpus_path()
    if path is None:
        pytest.skip("no image corpus shipped yet")
    try:
        c = image_corpus(path)
    except CorpusError as e:  # still being collected
        pytest.skip(str(e))
    assert c.space.name == "nb201"
    assert all(t.data == t.name and t.group == t.name for t in c.tasks)
