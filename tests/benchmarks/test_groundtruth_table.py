"""The shipped real-training ground truths (csv:groundtruth-images): loads as a benchmark, its values
are the seed means of its trainings, its optimum and regret are right, and its card records the recipe."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest

from grabnas.bench import run_one
from grabnas.benchmarks import load_benchmark
from grabnas.benchmarks.csv_table import SHIPPED_TABLES, resolve_table, shipped_tables

NAME = "groundtruth-images"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(f"csv:{NAME}")


@pytest.fixture(scope="module")
def card():
    return json.loads((SHIPPED_TABLES / f"{NAME}.json").read_text())


def test_shipped_name_resolves(tmp_path):
    assert NAME in shipped_tables() and f"{NAME}-seeds" not in shipped_tables()
    assert resolve_table(NAME) == SHIPPED_TABLES / f"{NAME}.csv" == resolve_table(f"{NAME}.csv")
    mine = tmp_path / "t.csv"
    assert resolve_table(mine) == mine  # a path is used as given, even when missing


def test_three_or_more_new_tasks_of_200_cells(bench, card):
    assert len(bench.tasks) >= 3 and set(bench.tasks) == set(card["tasks"])
    with (SHIPPED_TABLES.parent.parent / "corpora" / "images-nb201.csv").open() as f:
        corpus_tasks = {r["task"] for r in csv.DictReader(f)}
    for t in bench.tasks:
        assert len(bench.pool(t)) >= 200
        assert "~" in t and card["tasks"][t]["task_name"] not in corpus_tasks  # not in the shipped corpus
    assert card["training_seeds"] == [1, 2]
    assert card["recipe"]["epochs"] == 5 and card["recipe"]["channels"] == 8 and card["recipe"]["cells"] == 1


def test_values_are_seed_means_and_optimum_is_the_best(bench, card):
    runs = defaultdict(list)
    with (SHIPPED_TABLES / f"{NAME}-seeds.csv").open() as f:
        for r in csv.DictReader(f):
            runs[(r["task"], r["arch"])].append(float(r["value"]))
    for t in bench.tasks:
        pool = bench.pool(t)
        means = np.array([np.mean(runs[(t, a.to_string())]) for a in pool])
        assert all(len(runs[(t, a.to_string())]) == 2 for a in pool)
        got = np.array([bench.value(a, t) for a in pool])
        np.testing.assert_allclose(got, means, atol=1e-3)
        assert bench.optimum(t) == pytest.approx(means.max(), abs=1e-3)
        assert bench.optimum(t) == pytest.approx(card["tasks"][t]["optimum_val"], abs=1e-3)


def test_regret_is_optimum_minus_best_found(bench):
    t = bench.tasks[0]
    rows = run_one(bench, t, "random", seed=0, budget=8)
    values = [r["value"] for r in rows]
    assert [r["regret"] for r in rows] == pytest.approx([bench.optimum(t) - max(values[: i + 1]) for i in range(8)])
    best = max(bench.pool(t), key=lambda a: bench.value(a, t))
    assert bench.optimum(t) - bench.value(best, t) == 0


def test_seed_table_is_a_corpus_with_data(bench):
    from grabnas.meta.corpus import load_corpus

    corpus = load_corpus(f"records:{SHIPPED_TABLES / f'{NAME}-seeds.csv'}")
    for t in bench.tasks:
        task = corpus.task(t)
        assert task.data is not None and task.data.startswith("digits[all]@0~")
        assert len(task.index) == len(bench.pool(t))
        assert float(np.max(task.values)) == pytest.approx(bench.optimum(t), abs=1e-3)
