import csv
import json

import pytest

from grabnas.bench import RESULT_COLUMNS, BenchConfig, run_bench, run_one
from grabnas.errors import GrabnasError


def test_run_one_rows_are_consistent(nb201_bench):
    rows = run_one(nb201_bench, "cifar100", "rea", seed=3, budget=25)
    assert [r["step"] for r in rows] == list(range(1, 26))
    assert set(rows[0]) == set(RESULT_COLUMNS)
    optimum = nb201_bench.optimum("cifar100")
    best = max(r["value"] for r in rows)
    assert rows[-1]["best"] == best and rows[-1]["regret"] == pytest.approx(optimum - best)
    assert all(a["best"] <= b["best"] for a, b in zip(rows, rows[1:]))
    assert len({r["arch"] for r in rows}) == 25
    # same seed -> same run
    assert [r["arch"] for r in run_one(nb201_bench, "cifar100", "rea", 3, 25)] == [r["arch"] for r in rows]


def test_transfer_rank_reaches_cifar10_optimum_at_3(nb201_bench):
    rows = run_one(nb201_bench, "cifar10", "transfer-rank", seed=0, budget=20)
    first_hit = next(r["step"] for r in rows if r["regret"] <= 1e-9)
    assert first_hit == 3


def test_bench_writes_outputs_and_resumes(nb201_bench, nb201_path, tmp_path):
    cfg = BenchConfig("nb201", ("cifar10",), ("random", "transfer-rank"), seeds=2, budget=12)
    results = run_bench(cfg, tmp_path, data=str(nb201_path), progress=False)
    with results.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 12 and list(rows[0]) == list(RESULT_COLUMNS)
    assert (tmp_path / "summary.md").read_text().count("| random |") == 1
    assert (tmp_path / "regret.png").stat().st_size > 1000
    # a second run with one more seed only adds that seed's runs
    cfg3 = BenchConfig("nb201", ("cifar10",), ("random", "transfer-rank"), seeds=3, budget=12)
    run_bench(cfg3, tmp_path, data=str(nb201_path), progress=False)
    with results.open() as f:
        rows3 = list(csv.DictReader(f))
    assert len(rows3) == 3 * 2 * 12 and rows3[: len(rows)] == rows
    assert json.loads((tmp_path / "bench.json").read_text())["seeds"] == 3
    # another budget in the same folder is refused
    with pytest.raises(GrabnasError, match="another benchmark, budget, master seed or pruning"):
        run_bench(BenchConfig("nb201", ("cifar10",), ("random",), 1, 5), tmp_path, data=str(nb201_path), progress=False)


def test_bench_rejects_unknown_names_before_running(nb201_path, tmp_path):
    with pytest.raises(GrabnasError, match="unknown optimizer 'foo'"):
        run_bench(BenchConfig("nb201", ("cifar10",), ("foo",), 1, 5), tmp_path, data=str(nb201_path), progress=False)
    with pytest.raises(GrabnasError, match="unknown task 'mnist'"):
        run_bench(BenchConfig("nb201", ("mnist",), ("random",), 1, 5), tmp_path, data=str(nb201_path), progress=False)
    assert not (tmp_path / "results.csv").exists()


def test_grabnas_runs_record_decodes_and_pruned_pools(nb201_bench):
    rows = run_one(nb201_bench, "cifar100", "grabnas[t_bo=2,local_every=1]", seed=0, budget=6, prune_top=1.0)
    tried = [r["decodes"] for r in rows]
    valid = [r["valid_decodes"] for r in rows]
    assert tried == sorted(tried) and tried[-1] > 0  # cumulative, and local steps happened
    assert all(0 <= v <= t for v, t in zip(valid, tried))
    assert all(r["pool_best"] < nb201_bench.optimum("cifar100") for r in rows)
    assert run_one(nb201_bench, "cifar100", "rea", seed=0, budget=2)[-1]["decodes"] == ""


def test_bench_meta_trains_each_surrogate_once_and_workers_reuse_it(nb201_bench, tmp_path, monkeypatch):
    """A user table has no shipped surrogate: the bench meta-trains one per held-out task, once, in
    the main process, says so with its time, and the worker processes' runs equal the in-process ones."""
    import dataclasses
    import functools

    import numpy as np

    from grabnas.meta import surrogate_training

    rng = np.random.default_rng(0)
    pool = nb201_bench.pool("cifar10")
    cells = [pool[i] for i in rng.choice(len(pool), 300, replace=False)]
    c10, c100 = nb201_bench.values("cifar10"), nb201_bench.values("cifar100")
    table = tmp_path / "mine.csv"
    table.write_text("arch,a,b\n" + "".join(f"{x},{c10[x]},{c100[x]}\n" for x in cells))
    tiny = dataclasses.replace(
        surrogate_training.MetaTrainConfig(), steps=4, eval_every=2, val_queries=20, calibrate_variance=False
    )
    monkeypatch.setattr(surrogate_training, "MetaTrainConfig", lambda: tiny)
    calls = tmp_path / "meta_train_calls"

    @functools.wraps(surrogate_training.meta_train)
    def counted(*args, **kwargs):
        with calls.open("a") as f:  # appended by whichever process trains (workers are forked)
            f.write("call\n")
        return real(*args, **kwargs)

    real = surrogate_training.meta_train
    monkeypatch.setattr(surrogate_training, "meta_train", counted)
    cfg = BenchConfig(f"csv:{table}", ("a", "b"), ("grabnas",), seeds=2, budget=4)
    rows = {}
    for jobs in (2, 1):
        lines: list[str] = []
        results = run_bench(cfg, tmp_path / f"j{jobs}", jobs=jobs, progress=False, log=lines.append)
        assert len(lines) == 2 and all(line.endswith("s); every run on it reuses it") for line in lines)
        assert "without 'a' once (" in lines[0] and "without 'b' once (" in lines[1]
        with results.open() as f:
            rows[jobs] = sorted((r["task"], r["seed"], r["step"], r["arch"], r["value"]) for r in csv.DictReader(f))
    assert calls.read_text().count("call") == 4  # two surrogates per bench, none trained in a worker
    assert rows[1] == rows[2] and len(rows[1]) == 2 * 2 * 4


def test_constrained_runs_measure_regret_against_the_best_feasible_cell(nb201_bench, nb201_path, tmp_path):
    from grabnas.search.constraints import Constraints, benchmark_cost_model, constrained_optimum

    c = Constraints(max_params=0.5, max_flops=50)
    bound = c.with_costs(benchmark_cost_model(nb201_bench, "cifar10"))
    _arch, best_feasible = constrained_optimum(bound, nb201_bench.values("cifar10"))
    assert best_feasible < nb201_bench.optimum("cifar10")
    rows = run_one(nb201_bench, "cifar10", "transfer-rank", seed=0, budget=30, constraints=c)
    assert all(bound.feasible(nb201_bench.space.parse(r["arch"])) for r in rows)
    assert all(r["regret"] == pytest.approx(best_feasible - r["best"]) for r in rows)
    assert rows[0]["pool_best"] == best_feasible
    # the bench: constraints in bench.json, the summary says what regret is measured against and
    # what binds, a Pareto plot; other constraints in the same folder are refused
    cfg = BenchConfig("nb201", ("cifar10",), ("random", "rea"), seeds=2, budget=12, max_params=0.5, max_flops=50)
    run_bench(cfg, tmp_path, data=str(nb201_path), progress=False)
    assert json.loads((tmp_path / "bench.json").read_text())["max_params"] == 0.5
    summary = (tmp_path / "summary.md").read_text()
    assert "Regret = constrained optimum (the task's best feasible cell)" in summary
    assert "- constraints: params <= 0.5 M, FLOPs <= 50 MFLOPs" in summary
    assert f"(value {best_feasible:.4g}, the regret's reference)" in summary
    assert "infeasible (params and FLOPs over the limit), so the constraints bind" in summary
    assert "seeds whose best cell binds a limit (> 95 %)" in summary
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    with pytest.raises(GrabnasError, match="or other cost constraints"):
        run_bench(BenchConfig("nb201", ("cifar10",), ("random",), 2, 12, max_params=0.6), tmp_path, progress=False)
    with pytest.raises(GrabnasError, match="no candidate satisfies the constraints params <= 0.01 M"):
        run_bench(
            BenchConfig("nb201", ("cifar10",), ("random",), 1, 5, max_params=0.01), tmp_path / "x", progress=False
        )
    assert not (tmp_path / "x" / "results.csv").exists()
