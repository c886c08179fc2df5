"""Cost constraints (grabnas.search.constraints): values, feasibility, cost models, and that no
optimizer ever proposes an infeasible cell."""

import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.search.constraints import Constraints, benchmark_cost_model, constrained_optimum
from grabnas.train.cost import NB201_NETWORKS, cell_costs


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"max_params": -1}, "--max-params takes a positive number (M params), got -1"),
        ({"max_params": 0}, "--max-params takes a positive number"),
        ({"max_flops": float("nan")}, "--max-flops takes a positive number (MFLOPs), got nan"),
        ({"max_flops": float("inf")}, "--max-flops takes a positive number"),
        ({"max_flops": "abc"}, "--max-flops takes a positive number (MFLOPs), got 'abc'"),
        ({"max_params": True}, "--max-params takes a positive number"),
    ],
)
def test_bad_limits_are_one_line_errors(kw, fragment):
    with pytest.raises(GrabnasError) as e:
        Constraints(**kw)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_the_value():
    c = Constraints(max_params="0.5", max_flops=50)
    assert c.max_params == 0.5 and c.max_flops == 50.0 and c.active
    assert c.describe() == "params <= 0.5 M, FLOPs <= 50 MFLOPs"
    assert c.to_dict() == {"max_params": 0.5, "max_flops": 50.0}
    assert Constraints.from_dict(c.to_dict()) == c
    assert Constraints(max_flops=3).to_dict() == {"max_flops": 3.0}
    assert not Constraints().active and Constraints().describe() == "no constraints"
    assert Constraints().to_dict() == {}


def test_feasibility_follows_the_task_network(nb201_bench, nb201_space):
    c = Constraints(max_params=0.5, max_flops=50).with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    members = nb201_space.members()
    mask = c.feasible_mask(members)
    for i in np.random.default_rng(0).choice(len(members), 50, replace=False):
        p, f = cell_costs(members[i], NB201_NETWORKS["cifar10"])
        assert mask[i] == (p <= 0.5e6 and f <= 50e6) == c.feasible(members[i])
    assert c.filter(members) == [a for a, m in zip(members, mask) if m]
    assert 0 < mask.sum() < len(members)
    # ImageNet16-120's network has 1/4 of the FLOPs: more cells fit the same limit
    c16 = Constraints(max_flops=50).with_costs(benchmark_cost_model(nb201_bench, "imagenet16"))
    assert (
        c16.feasible_mask(members).sum()
        > Constraints(max_flops=50)
        .with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
        .feasible_mask(members)
        .sum()
    )
    # the constrained optimum is the best feasible cell
    arch, value = constrained_optimum(c, nb201_bench.values("cifar10"))
    assert c.feasible(arch) and value < nb201_bench.optimum("cifar10")
    assert value == max(v for a, v in nb201_bench.values("cifar10").items() if c.feasible(a))


def test_an_empty_feasible_set_names_the_limit(nb201_bench):
    c = Constraints(max_params=0.05).with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    with pytest.raises(GrabnasError) as e:
        c.filter(nb201_bench.pool("cifar10"))
    msg = str(e.value)
    assert "no candidate satisfies the constraints params <= 0.05 M" in msg and "--max-params" in msg
    assert "the smallest has 0.07331 M" in msg and "\n" not in msg


def test_unbound_constraints_and_missing_costs_are_errors(nb201_bench, nbg_space):
    from grabnas.search.constraints import CostModel

    with pytest.raises(GrabnasError, match="without a cost model"):
        Constraints(max_params=1).feasible(nb201_bench.pool("cifar10")[0])
    only_params = CostModel(nbg_space, {"params": np.ones(len(nbg_space))}, "nasbench-graph cora")
    Constraints(max_params=1).with_costs(only_params)  # fine
    with pytest.raises(GrabnasError) as e:
        Constraints(max_flops=10).with_costs(only_params)
    assert "--max-flops is not supported on nasbench-graph cora" in str(e.value)
    assert "supported there: --max-params" in str(e.value)


def test_binding_report(nb201_bench, nb201_space):
    c = Constraints(max_params=0.5).with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    big = nb201_space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")  # 0.802 M
    near = nb201_space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|none~2|")
    assert c.binding(near) == [] and c.usage(near)["params"][1] == pytest.approx(
        (73_306 + 243_040 + 3 * 28_000) / 0.5e6
    )
    lines = c.report_lines(near, big)
    assert lines[0].startswith("constraints: params <= 0.5 M (costs of the NB201 network with C=16, N=5, 10 classes")
    assert "no limit above 95 % used" in lines[1]
    assert "infeasible (params over the limit), so the constraints bind" in lines[2]
    tight = Constraints(max_params=0.41).with_costs(c.cost_model)
    assert tight.binding(near) == ["params"] and "binding: params" in tight.report_lines(near)[1]


OPTIMIZERS = ["random", "rea", "local", "gpbo", "transfer-rank", "grabnas[t_bo=2,local_every=1]"]


@pytest.mark.parametrize("prune_top", [0.0, 5.0])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_no_optimizer_proposes_an_infeasible_cell(nb201_bench, name, prune_top, one_torch_thread):
    """A limit that removes about half of the space: 15 asks of every optimizer, GraB-NAS's local
    steps (decodes) included, on the full and on a pruned pool, are all feasible."""
    from grabnas.search.registry import build_optimizer, pruned_pool

    if prune_top and not name.startswith("grabnas") and name != "rea":
        pytest.skip("a pruned pool only matters where proposals may leave it (decodes, mutants)")
    costs = benchmark_cost_model(nb201_bench, "cifar10")
    limit = float(np.median(costs.tables["params"]))
    c = Constraints(max_params=limit)
    bound = c.with_costs(costs)
    assert 0.35 < bound.feasible_mask(nb201_bench.pool("cifar10")).mean() < 0.65
    pool = pruned_pool(nb201_bench, "cifar10", prune_top)
    opt = build_optimizer(name, nb201_bench, "cifar10", seed=3, pool=pool, constraints=c, cache=_CACHE)
    assert all(bound.feasible_mask(opt.pool))
    seen = []
    for _ in range(15):
        archs = opt.ask(1)
        assert archs and all(bound.feasible(a) for a in archs), f"{name} proposed {archs}"
        seen += archs
        opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
    assert len(set(seen)) == 15
    if name.startswith("grabnas"):
        assert len(opt.local_log) >= 10  # local steps ran and decoded
        infeasible = next(a for a in nb201_bench.pool("cifar10") if not bound.feasible(a))
        assert opt.evaluable(opt.pool[0]) and not opt.evaluable(infeasible)  # decodes pass the same test
        if prune_top:  # decodes may leave a pruned pool, but only to feasible cells
            assert sum(log.get("not_evaluable", 0) for log in opt.local_log) > 0


_CACHE: dict = {}  # the VAE, latents and surrogate, loaded once for the GraB-NAS cases


# -- --max-latency: the cost `latency` from a latency table ------------------------------------------
def latency_table(setting=NB201_NETWORKS["cifar10"], device="test CPU"):
    """A table for ``setting`` whose made-up ms are additive (3x3 convs the slowest), measured nowhere."""
    from grabnas.spaces.nb201 import OPS
    from grabnas.train.latency import sample_cells, table_from_measurements

    per_op = np.array([0.0, 0.05, 0.6, 2.5, 0.4])  # none, skip, 1x1, 3x3, pool
    cells = sample_cells(40, 0)
    ms = 1.0 + per_op[cells].sum(axis=1)
    assert len(per_op) == len(OPS)
    info = {"kind": "cpu", "name": device, "torch": "0", "threads": 1}
    return table_from_measurements(info, setting, 1, 0, 1, 0, 0.25, cells, ms)


def test_latency_limit_reads_the_tables_predictions(nb201_bench, nb201_space):
    table = latency_table()
    c = Constraints(max_params=1.0, max_latency=5.03, latency_table=table)  # 5.03: no cell's ms is at the limit
    assert c.describe() == "params <= 1 M, latency <= 5.03 ms"
    assert c.to_dict() == {"max_params": 1.0, "max_latency": 5.03, "latency_table": table.fingerprint}
    bound = c.with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    members = nb201_space.members()
    np.testing.assert_allclose(bound.cost_model.costs(members, "latency"), table.predict_all())
    mask = bound.feasible_mask(members)
    params = bound.cost_model.costs(members, "params")
    assert (mask == ((table.predict_all() <= 5.03) & (params <= 1.0))).all() and 0 < mask.sum() < len(members)
    assert "latency predicted from the table of cpu 'test CPU', batch 1" in bound.cost_model.description
    assert "ms" in bound.usage_text(members[0])


def test_latency_limit_errors(nb201_bench, nbg_space):
    from grabnas.search.constraints import CostModel

    with pytest.raises(GrabnasError, match="--max-latency needs --latency-table TABLE"):
        Constraints(max_latency=3)
    with pytest.raises(GrabnasError, match="--max-latency takes a positive number \\(ms\\)"):
        Constraints(max_latency=-3, latency_table=latency_table())
    c = Constraints(max_latency=3, latency_table=latency_table())
    with pytest.raises(GrabnasError) as e:  # cifar100's network has 100 classes
        c.with_costs(benchmark_cost_model(nb201_bench, "cifar100"))
    msg = str(e.value)
    assert "the latency table was measured for the NB201 network with C=16, N=5, 10 classes" in msg
    assert "this search evaluates the NB201 network with C=16, N=5, 100 classes" in msg and "\n" not in msg
    with pytest.raises(
        GrabnasError, match="--max-latency is not supported on nasbench-graph cora: there is no latency"
    ):
        c.with_costs(CostModel(nbg_space, {"params": np.ones(len(nbg_space))}, "nasbench-graph cora"))


@pytest.mark.parametrize("name", ["random", "grabnas[t_bo=2,local_every=1]"])
def test_no_optimizer_proposes_a_cell_above_the_latency_limit(nb201_bench, name, one_torch_thread):
    from grabnas.search.registry import build_optimizer

    table = latency_table()
    limit = float(np.median(table.predict_all()))  # removes about half of the space
    c = Constraints(max_latency=limit, max_flops=150, latency_table=table)
    bound = c.with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    assert 0.3 < bound.feasible_mask(nb201_bench.pool("cifar10")).mean() < 0.55
    opt = build_optimizer(name, nb201_bench, "cifar10", seed=3, constraints=c, cache=_CACHE)
    assert all(bound.feasible_mask(opt.pool))
    for _ in range(5):  # GraB-NAS: 3 local steps (decodes) among them
        archs = opt.ask(1)
        assert archs and all(bound.feasible(a) for a in archs), f"{name} proposed {archs}"
        assert (table.predict(archs) <= limit).all()
        opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
