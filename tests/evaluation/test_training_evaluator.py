"""TrainingEvaluator: results, never raising for trial failures, small pickles, bad data early."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import grabnas.evaluation.training as training
from grabnas.data import TaskSpec
from grabnas.errors import GrabnasError
from grabnas.evaluation import TrainingEvaluator
from grabnas.train.recipe import TrainConfig

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|"
TINY = TrainConfig(epochs=1, channels=4, cells=1, batch_size=64, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def evaluator():
    return TrainingEvaluator(TaskSpec("digits", (0, 1, 2), seed=0), TINY)


def test_evaluator_trains_and_pickles_small(evaluator, nb201_space):
    arch = nb201_space.parse(ARCH)
    r = evaluator(arch)
    assert r.ok and 0 <= r.val_acc <= 100 and r.params > 0 and r.flops > 0
    blob = pickle.dumps(evaluator)
    assert len(blob) < 5000  # the data is re-derived from the spec, not shipped
    again = pickle.loads(blob)
    assert again(arch).val_acc == r.val_acc
    assert (
        evaluator.trial_seed(arch)
        == again.trial_seed(arch)
        != evaluator.trial_seed(nb201_space.parse(ARCH.replace("skip_connect~2", "none~2")))
    )


def test_failures_become_results(evaluator, monkeypatch):
    bad = evaluator("not an architecture")
    assert bad.status == "failed" and "malformed NB201 cell string" in bad.error

    def oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "train_and_evaluate", oom)
    r = evaluator(ARCH)
    assert r.status == "failed" and r.error.startswith("out of memory")

    def legacy_oom(*args):
        raise RuntimeError("DefaultCPUAllocator: not enough memory... out of memory")

    monkeypatch.setattr(training, "train_and_evaluate", legacy_oom)
    assert evaluator(ARCH).error.startswith("out of memory")

    def boom(*args):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(training, "train_and_evaluate", boom)
    r = evaluator(ARCH)
    assert r.error == "ZeroDivisionError: x" and "traceback" in r.extra


def test_bad_data_fails_before_training(tmp_path):
    p = tmp_path / "one.npz"
    np.savez(p, images=np.zeros((5, 4, 4), dtype=np.uint8), labels=np.zeros(5, dtype=int))
    with pytest.raises(GrabnasError, match="one class"):
        TrainingEvaluator(f"npz:{p}", TINY)
    with pytest.raises(GrabnasError, match="out of range"):
        TrainingEvaluator(TaskSpec("digits", (0, 11)), TINY)
