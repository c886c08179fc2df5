"""Corpus collection: rows, card, resume, CLI; the shipped corpus."""

from __future__ import annotations

import argparse
import csv
import json

import pytest

from grabnas.cli.collect import add_collect_command
from grabnas.collect import COLUMNS, SHIPPED_CORPUS, arch_from_index, collect, load_corpus, plan_archs, read_rows
from grabnas.data import TaskSpec
from grabnas.errors import GrabnasError
from grabnas.train.recipe import TrainConfig, train_and_evaluate

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

TINY = TrainConfig(epochs=1, channels=4, cells=1, batch_size=64, device="cpu", num_threads=1)
TASKS = [TaskSpec("digits", (0, 1, 2), seed=1), TaskSpec("digits", (3, 4, 5, 6), seed=2)]


def _parser():
    p = argparse.ArgumentParser(prog="grabnas")
    add_collect_command(p.add_subparsers(dest="command", required=True))
    return p


def test_arch_index_and_plan(nb201_space):
    members = list(nb201_space.enumerate())
    assert [arch_from_index(i) for i in (0, 1, 7, 15624)] == [members[i] for i in (0, 1, 7, 15624)]
    plan = plan_archs(TASKS, 5, 2, seed=0)
    a, b = plan[TASKS[0].name], plan[TASKS[1].name]
    assert len(a) == len(set(a)) == 5 and a[:2] == b[:2] and a[2:] != b[2:]
    assert plan == plan_archs(TASKS, 5, 2, seed=0)
    with pytest.raises(GrabnasError):
        plan_archs(TASKS, 2, 3, seed=0)


def test_collect_writes_rows_card_and_resumes(tmp_path):
    out = tmp_path / "corpus.csv"
    s = collect(TASKS, TINY, out, n_archs=2, shared_archs=1, master_seed=7, progress=False)
    assert (s.rows_added, s.rows_total, s.failed) == (4, 4, 0)
    rows = read_rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert {r["task"] for r in rows} == {t.name for t in TASKS}
    card = json.loads(s.card_path.read_text())
    assert card["recipe"]["epochs"] == 1 and card["rows"] == 4 and len(card["tasks"]) == 2
    assert card["runs"][0]["rows_added"] == 4 and "machine" in card["runs"][0]
    # a row is reproducible from its task name, the recipe and its seed
    r0 = rows[0]
    again = train_and_evaluate(
        r0["arch"], TaskSpec.parse(r0["task"]).split(), TrainConfig(**card["recipe"]).with_seed(int(r0["seed"]))
    )
    assert round(again.val_acc, 4) == float(r0["val_acc"])
    # resume: nothing to do; then a lost row is redone alone
    assert collect(TASKS, TINY, out, n_archs=2, shared_archs=1, master_seed=7, progress=False).rows_added == 0
    with out.open(newline="") as f:
        kept = list(csv.DictReader(f))[:-1]
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(kept)
    s3 = collect(TASKS, TINY, out, n_archs=2, shared_archs=1, master_seed=7, progress=False)
    assert s3.rows_added == 1 and s3.rows_total == 4
    assert len(json.loads(s3.card_path.read_text())["runs"]) == 3
    corpus = load_corpus(out)
    assert len(corpus) == 4 and isinstance(corpus[0]["val_acc"], float)


def test_collect_cli(tmp_path, capsys):
    out = tmp_path / "c.csv"
    argv = [
        "collect",
        "--out",
        str(out),
        "--tasks",
        "1",
        "--datasets",
        "digits",
        "--task",
        "digits[7,8]@3",
        "--archs",
        "1",
        "--shared-archs",
        "0",
        "--epochs",
        "1",
        "--channels",
        "4",
        "--device",
        "cpu",
        "--no-progress",
    ]
    args = _parser().parse_args(argv)
    assert args.handler(args) == 0
    assert "2 trainings this run" in capsys.readouterr().out
    rows = read_rows(out)
    assert rows[0]["task"] == "digits[7,8]@3" and rows[0]["status"] == "ok"
    bad = _parser().parse_args(
        ["collect", "--out", str(tmp_path / "x.csv"), "--task", "digits[7,8,99]@3", "--tasks", "0"]
    )
    with pytest.raises(GrabnasError, match="out of range"):
        bad.handler(bad)
    bad = _parser().parse_args(["collect", "--out", str(tmp_path / "x.txt"), "--tasks", "1"])
    with pytest.raises(GrabnasError, match=".csv"):
        bad.handler(bad)


def test_shipped_corpus():
    if not SHIPPED_CORPUS.exists():
        pytest.skip("the shipped corpus is not there yet")
    rows = load_corpus()
    card = json.loads(SHIPPED_CORPUS.with_suffix(".json").read_text())
    tasks = {r["task"] for r in rows}
    assert len(tasks) >= 30 and card["archs_per_task"] >= 30
    assert all(sum(r["task"] == t for r in rows) >= 30 for t in tasks)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 0.95 * len(rows)
    assert all(0.0 <= r["val_acc"] <= 100.0 for r in ok)
    for t in list(tasks)[:3]:
        TaskSpec.parse(t)  # every task name re-derives its task


def test_resume_refuses_another_recipe(tmp_path):
    out = tmp_path / "c.csv"
    collect(TASKS[:1], TINY, out, n_archs=1, shared_archs=0, progress=False)
    with pytest.raises(GrabnasError, match="epochs=1"):
        collect(
            TASKS[:1], TrainConfig(**{**TINY.to_dict(), "epochs": 2}), out, n_archs=1, shared_archs=0, progress=False
        )
    with pytest.raises(GrabnasError, match="seed 0"):
        collect(TASKS[:1], TINY, out, n_archs=1, shared_archs=0, master_seed=3, progress=False)
