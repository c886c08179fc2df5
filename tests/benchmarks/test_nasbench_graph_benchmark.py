import pytest

from grabnas.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def nbg():
    return load_benchmark("nasbench-graph")


def test_nine_datasets_and_values_match_package(nbg):
    from nas_bench_graph import light_read

    assert len(nbg.tasks) == 9 and "cora" in nbg.tasks
    raw = light_read("cora")
    arch = nbg.space.members()[42]
    rec = raw[arch.valid_hash()]
    assert nbg.value(arch, "cora") == pytest.approx(100 * rec["valid_perf"])
    assert nbg.report_value(arch, "cora") == pytest.approx(100 * rec["perf"])
    assert nbg.cost(arch, "cora") == pytest.approx(rec["latency"])
    assert nbg.optimum("cora") == pytest.approx(100 * max(r["valid_perf"] for r in raw.values()))


def test_proteins_pool_is_its_subset(nbg):
    pool = nbg.pool("proteins")
    assert len(pool) == 2021
    ops = {op for a in pool for op in a.ops}
    assert ops <= {"gcn", "sage", "arma", "fc", "skip", "cheb"}
    outside = next(a for a in nbg.space.members() if "gat" in a.ops)
    assert nbg.value(outside, "proteins") is None
    assert nbg.other_tasks("cora") == [t for t in nbg.tasks if t != "cora"]
