"""Resumable training runs: same result as the recipe, stop-and-resume is bit-identical, the run
folder refuses other settings, and the exported module with the weights gives the same logits."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys

import pytest
import torch

from grabnas.data import TaskSpec
from grabnas.errors import GrabnasError
from grabnas.export import export_architecture, load_weights, network_size
from grabnas.train.recipe import PRESETS, TrainConfig, preset, torch_threads, train_and_evaluate
from grabnas.train.run import HISTORY_COLUMNS, train_run

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
TINY = TrainConfig(epochs=3, channels=4, cells=1, batch_size=64, device="cpu", num_threads=1, seed=5)


@pytest.fixture(scope="module")
def split():
    return TaskSpec("digits", (0, 1, 2, 3), seed=1).split()


@pytest.fixture(scope="module")
def finished(split, tmp_path_factory):
    """An uninterrupted run of TINY."""
    return train_run(ARCH, split, TINY, tmp_path_factory.mktemp("run") / "a", dataset="digits4")


def _weights(run):
    return torch.load(run.out_dir / "weights.pt", weights_only=True)


def _strip_seconds(history):
    return [dataclasses.replace(r, seconds=0.0) for r in history]


def test_a_run_ends_where_the_recipe_ends(finished, split):
    r = train_and_evaluate(ARCH, split, TINY)
    res = finished.result
    assert finished.ok and finished.resumed_from == 0 and len(finished.history) == 3
    assert (res["val_acc"], res["test_acc"], res["train_loss"]) == (r.val_acc, r.test_acc, r.train_loss)
    assert (res["params"], res["flops"]) == (r.params, r.flops)
    assert res["architecture"] == ARCH and res["recipe"]["epochs"] == 3 and res["epochs_done"] == 3
    assert finished.history[-1].val_acc == r.val_acc and finished.history[-1].lr == 0.0
    with (finished.out_dir / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == HISTORY_COLUMNS and [int(x["epoch"]) for x in rows] == [1, 2, 3]


def test_stop_and_resume_gives_identical_weights(finished, split, tmp_path):
    part = train_run(ARCH, split, TINY, tmp_path / "b", dataset="digits4", stop_after=1)
    assert not part.finished and len(part.history) == 1 and not (tmp_path / "b" / "weights.pt").exists()
    seen = []
    resumed = train_run(ARCH, split, TINY, tmp_path / "b", dataset="digits4", on_epoch=seen.append)
    assert resumed.ok and resumed.resumed_from == 1 and [r.epoch for r in seen] == [2, 3]
    a, b = _weights(finished), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _strip_seconds(resumed.history) == _strip_seconds(finished.history)
    assert {k: v for k, v in resumed.result.items() if k != "train_seconds"} == {
        k: v for k, v in finished.result.items() if k != "train_seconds"
    }
    again = train_run(ARCH, split, TINY, tmp_path / "b", dataset="digits4")  # finished: reported, not trained
    assert again.model is None and again.result == resumed.result and len(again.history) == 3


def test_a_run_folder_refuses_other_settings(split, tmp_path):
    out = tmp_path / "run"
    train_run(ARCH, split, TINY, out, dataset="digits4", stop_after=0)
    assert json.loads((out / "run.json").read_text())["epochs"] == 3
    with pytest.raises(GrabnasError, match=r"holds a run with epochs=3, not epochs=4"):
        train_run(ARCH, split, dataclasses.replace(TINY, epochs=4), out, dataset="digits4")
    other = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    with pytest.raises(GrabnasError, match=r"holds a run with architecture="):
        train_run(other, split, TINY, out, dataset="digits4", stop_after=0)
    other_data = TaskSpec("digits", (0, 1, 2, 3), seed=2).split()
    with pytest.raises(GrabnasError, match="on other data"):
        train_run(ARCH, other_data, TINY, out, dataset="digits4", stop_after=0)
    # where and how fast are not settings
    train_run(ARCH, split, dataclasses.replace(TINY, num_threads=2, eval_batch_size=7), out, "digits4", stop_after=0)


def test_bad_run_folders_and_architectures(split, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GrabnasError, match="is a file"):
        train_run(ARCH, split, TINY, tmp_path / "file", stop_after=0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(GrabnasError, match="not empty and holds no training run"):
        train_run(ARCH, split, TINY, tmp_path / "busy", stop_after=0)
    with pytest.raises(GrabnasError, match="NB201"):
        train_run("|conv~0|", split, TINY, tmp_path / "new", stop_after=0)
    assert not (tmp_path / "new").exists()


def test_presets():
    assert preset("nb201-200") == PRESETS["nb201-200"]
    big = preset("nb201-200")
    recipe = (big.epochs, big.channels, big.cells, big.batch_size, big.lr, big.weight_decay, big.nesterov)
    assert recipe == (200, 16, 5, 256, 0.1, 5e-4, True)
    assert (preset("proxy").epochs, preset("proxy").channels, preset("proxy").cells) == (5, 8, 1)
    with pytest.raises(GrabnasError, match="unknown recipe preset 'nb201'; expected one of nb201-200, proxy"):
        preset("nb201")


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    return module


def test_exported_module_with_the_weights_gives_the_trained_logits(finished, split, tmp_path):
    res = finished.result
    norm = res["input_normalisation"]
    weights = finished.out_dir / "weights.pt"
    assert network_size(load_weights(weights)) == {"channels": 4, "cells": 1, "num_classes": 4, "in_channels": 1}
    sizes = {"num_classes": 4, "channels": 4, "cells": 1, "in_channels": 1}
    files = export_architecture(
        ARCH, tmp_path, name="net", weights=weights, normalisation=(norm["mean"], norm["std"]), **sizes
    )
    assert files.weights == tmp_path / "net.pt"  # copied beside the module
    m = _import(files.module, "exported_trained_net")
    images = split.val.images[:16]
    with torch_threads(1), torch.no_grad():
        mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
        expected = finished.model((images - mean) / std)
        got = m.load_model()(m.normalise(images))
    assert torch.equal(got, expected)
    with pytest.raises(GrabnasError, match=r"do not fit the network C=8, N=1.*expected the sizes it was trained with"):
        export_architecture(ARCH, tmp_path, num_classes=4, channels=8, cells=1, in_channels=1, weights=weights)


def test_a_checkpoint_resumes_only_on_its_kind_of_device(split, tmp_path):
    out = tmp_path / "run"
    train_run(ARCH, split, dataclasses.replace(TINY, epochs=2), out, stop_after=1)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["device_type"] = "cuda"
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(GrabnasError, match=r"was trained on cuda, not cpu; resume it there \(--device cuda\)"):
        train_run(ARCH, split, dataclasses.replace(TINY, epochs=2), out)


def test_a_nan_loss_ends_the_run_as_failed_and_a_rerun_reports_it(tmp_path):
    from grabnas.data import DatasetSplit, ImageDataset

    images = torch.randn(40, 1, 8, 8)
    images[3] = float("nan")
    ds = ImageDataset(images, torch.arange(40) % 2, ("a", "b"), "nan-data")
    bad = DatasetSplit(ds.subset(range(20)), ds.subset(range(20, 30)), ds.subset(range(30, 40)))
    run = train_run(ARCH, bad, TINY, tmp_path / "nan")
    assert run.finished and not run.ok and "NaN" in run.result["error"] and run.result["epochs_done"] == 0
    assert not (tmp_path / "nan" / "weights.pt").exists()
    again = train_run(ARCH, bad, TINY, tmp_path / "nan").result  # (its normalisation is NaN, so not ==)
    assert (again["status"], again["error"]) == ("failed", run.result["error"])
