import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.search.registry import build_optimizer, optimizer_names, parse_optimizer_spec, pruned_pool


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


def test_a_shipped_checkpoint_learns_its_corpus_transferability_from_the_benchmark(nb201_bench):
    """A shipped checkpoint's card predates ``heldout_residual``: it is computed from the
    benchmark's tasks of the groups the checkpoint saw (cifar10 against imagenet16 for the
    cifar100 hold-out) and reaches the optimizer's Thompson start."""
    from grabnas.meta.corpus import benchmark_corpus
    from grabnas.meta.transferability import heldout_residual_fraction

    opt = build_optimizer("grabnas", nb201_bench, "cifar100", seed=0)
    expected = heldout_residual_fraction(benchmark_corpus(nb201_bench).without_groups(["cifar100"]))
    assert opt.heldout_residual == pytest.approx(expected)
    assert 0.03 < opt.heldout_residual < 0.2
    assert opt.surrogate_card["heldout_residual"] == opt.heldout_residual


def test_pruned_pool_removes_the_top_percent(nb201_bench):
    pool = pruned_pool(nb201_bench, "cifar100", 1.0)
    assert len(pool) == 15625 - 156
    values = nb201_bench.values("cifar100")
    assert max(values[a] for a in pool) < nb201_bench.optimum("cifar100")
    with pytest.raises(GrabnasError, match="percentage in"):
        pruned_pool(nb201_bench, "cifar100", 150)


def test_names():
    assert {"grabnas", "grabnas-bo", "grabnas-ascent", "grabnas-knn", "gpbo", "transfer-rank"} <= set(optimizer_names())
    assert {"optuna-tpe", "optuna-gp", "optuna-random"} <= set(optimizer_names())
    assert parse_optimizer_spec("optuna-tpe") == ("optuna-tpe", {})


def test_optimizer_spec_with_options():
    assert parse_optimizer_spec("rea") == ("rea", {})
    assert parse_optimizer_spec("grabnas[t_bo=5,eta=0.1,acquisition=ucb,adapt_steps=3]") == (
        "grabnas",
        {"t_bo": 5, "eta": 0.1, "acquisition": "ucb", "adapt_steps": 3},
    )
    assert parse_optimizer_spec("grabnas-knn[n_init=2]") == ("grabnas-knn", {"n_init": 2})
    for bad, message in [
        ("grabnas[eta=0.1", "expected NAME or a GraB-NAS variant"),
        ("rea[x=1]", "expected NAME or a GraB-NAS variant"),
        ("grabnas[bogus=1]", "unknown GraB-NAS option 'bogus'"),
        ("grabnas[eta]", "expected KEY=VALUE"),
        ("grabnas[mode=fast]", "mode 'fast' is unknown"),
        ("foo", "unknown optimizer 'foo'"),
    ]:
        with pytest.raises(GrabnasError, match=message):
            parse_optimizer_spec(bad)


def test_options_reach_the_optimizer_and_its_surrogate(nb201_bench):
    opt = build_optimizer("grabnas-knn[t_bo=3,eta=0.2,adapt_steps=2]", nb201_bench, "cifar10", seed=0)
    assert (opt.config.local, opt.config.t_bo, opt.config.eta) == ("knn", 3, 0.2)
    # the local-step ablations propose unconditionally; GraB-NAS itself gates its local steps
    assert not opt.config.local_gate
    assert build_optimizer("grabnas", nb201_bench, "cifar10", seed=0).config.local_gate
    assert not build_optimizer("grabnas-ascent", nb201_bench, "cifar10", seed=0).config.local_gate
    assert opt.surrogate.fit_options == {"steps": 2}
    with pytest.raises(GrabnasError, match="unknown surrogate option adapt_bogus"):
        build_optimizer("grabnas[adapt_bogus=1]", nb201_bench, "cifar10", seed=0)
    # task inference options go to the latent surrogate, the rest to the surrogate's fit
    opt = build_optimizer("grabnas[adapt_task_prior_var=3,adapt_units=affine]", nb201_bench, "cifar10", seed=0)
    assert opt.surrogate.fit_options == {"task_prior_var": 3, "units": "affine"}


def test_a_shared_cache_gives_the_same_runs(nb201_bench):
    from grabnas.bench import run_one

    cache: dict = {}
    first = run_one(nb201_bench, "cifar10", "grabnas[t_bo=2]", seed=1, budget=5, cache=cache)
    assert any(k[0] == "surrogate" for k in cache) and any(k[0] == "vae" for k in cache)
    again = run_one(nb201_bench, "cifar10", "grabnas[t_bo=2]", seed=1, budget=5, cache=cache)
    fresh = run_one(nb201_bench, "cifar10", "grabnas[t_bo=2]", seed=1, budget=5)
    assert [r["arch"] for r in first] == [r["arch"] for r in again] == [r["arch"] for r in fresh]


def test_surrogate_option_picks_the_checkpoint(nb201_bench):
    assert parse_optimizer_spec("grabnas[surrogate=ck/surrogate-nb201-no-{group}.pt,t_bo=3]") == (
        "grabnas",
        {"surrogate": "ck/surrogate-nb201-no-{group}.pt", "t_bo": 3},
    )
    assert parse_optimizer_spec("grabnas[surrogate=1e3]")[1] == {"surrogate": "1e3"}  # a name, kept as written
    # {group} becomes the target's group, so one spec serves every task of a bench
    opt = build_optimizer("grabnas[surrogate=nb201-no-{group}]", nb201_bench, "imagenet16", seed=0)
    assert opt.surrogate_card["held_out_groups"] == ["imagenet16"]
    # a checkpoint that saw the target's group would leak its values: refused
    with pytest.raises(GrabnasError, match="saw the group 'cifar10'"):
        build_optimizer("grabnas[surrogate=nb201-no-cifar100]", nb201_bench, "cifar10", seed=0)
    with pytest.raises(GrabnasError, match="no surrogate checkpoint"):
        build_optimizer("grabnas[surrogate=/nonexistent/x.pt]", nb201_bench, "cifar10", seed=0)


def test_grabnas_on_a_user_table_never_proposes_what_the_table_cannot_evaluate(nb201_bench, tmp_path):
    """A table over 4 of the 5 NB201 ops (and a sample of those cells): every proposal, local
    steps' decodes included, has a value in the table; none uses the fifth op."""
    from grabnas.benchmarks.csv_table import load_csv_benchmark
    from grabnas.search.registry import build_optimizer

    rng = np.random.default_rng(0)
    cells = [a for a in nb201_bench.pool("cifar10") if "avg_pool_3x3" not in a.ops]
    cells = [cells[i] for i in rng.choice(len(cells), 400, replace=False)]
    values = nb201_bench.values("cifar10")
    table = tmp_path / "mine.csv"
    table.write_text("arch,mine\n" + "".join(f"{a},{values[a]}\n" for a in cells))
    bench = load_csv_benchmark(table)
    opt = build_optimizer("grabnas[surrogate=nb201-no-cifar10,t_bo=2,local_every=1]", bench, "mine", seed=0)
    for _ in range(14):
        archs = opt.ask(1)
        assert all(bench.value(a, "mine") is not None and "avg_pool_3x3" not in a.ops for a in archs)
        opt.tell(archs, [bench.value(a, "mine") for a in archs])
    assert len(opt.local_log) >= 10
    assert sum(log.get("not_evaluable", 0) for log in opt.local_log) > 0  # decodes were filtered out


def test_data_option_embeds_the_table_task_images():
    """``data={task}`` on a table whose task names are dataset specs: GraB-NAS starts from the dataset
    encoder's embedding of the task's training images, as ``search --dataset`` would."""
    import torch

    from grabnas.benchmarks import load_benchmark
    from grabnas.data import TaskSpec
    from grabnas.meta.features import split_task_embedding

    pytest.importorskip("sklearn")
    assert parse_optimizer_spec("grabnas[data={task},t_bo=3]")[1] == {"data": "{task}", "t_bo": 3}
    bench = load_benchmark("csv:groundtruth-images")
    cache: dict = {}  # the VAE's latents of the space, encoded once
    opt = build_optimizer("grabnas[surrogate=nb201-all,data={task}]", bench, "digits~4px", seed=0, cache=cache)
    sur = opt.surrogate.surrogate
    want = split_task_embedding(sur, TaskSpec.from_spec("digits~4px").split())
    assert torch.allclose(opt.surrogate.d, want)
    plain = build_optimizer("grabnas[surrogate=nb201-all]", bench, "digits~4px", seed=0, cache=cache)
    assert not torch.allclose(plain.surrogate.d, want)  # the "no data" embedding
