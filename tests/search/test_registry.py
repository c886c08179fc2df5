import pytest

from grabnas.errors import GrabnasError
from grabnas.search.registry import build_optimizer, optimizer_names, pruned_pool


def test_grabnas_uses_a_surrogate_that_never_saw_the_target(nb201_bench):
    opt = build_optimizer("grabnas", nb201_bench, "cifar100", seed=0)
    assert "cifar100" not in opt.surrogate_card["groups_seen"]
    assert opt.surrogate_card["held_out_groups"] == ["cifar100"]
    best = -1.0
    for _ in range(10):
        archs = opt.ask(1)
        values = [nb201_bench.value(a, "cifar100") for a in archs]
        opt.tell(archs, values)
        best = max(best, *values)
    # the meta-learned prior puts the cifar100 optimum (73.51) among its first proposals
    assert best > 73.0


def test_pruned_pool_removes_the_top_percent(nb201_bench):
    pool = pruned_pool(nb201_bench, "cifar100", 1.0)
    assert len(pool) == 15625 - 156
    values = nb201_bench.values("cifar100")
    assert max(values[a] for a in pool) < nb201_bench.optimum("cifar100")
    with pytest.raises(GrabnasError, match="percentage in"):
        pruned_pool(nb201_bench, "cifar100", 150)


def test_names():
    assert {"grabnas", "grabnas-bo", "grabnas-ascent", "grabnas-knn", "gpbo", "transfer-rank"} <= set(optimizer_names())
