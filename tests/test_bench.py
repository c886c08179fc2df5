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
