"""The training recipe: determinism, local seeding, NaN failures, augmentation."""

from __future__ import annotations

import pytest
import torch

from grabnas.data import DatasetSplit, ImageDataset, TaskSpec
from grabnas.errors import GrabnasError
from grabnas.train.recipe import TrainConfig, TrainResult, _augment, build_model, train_and_evaluate

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
TINY = TrainConfig(epochs=2, channels=4, cells=1, batch_size=64, device="cpu", num_threads=1, seed=5)


@pytest.fixture(scope="module")
def split():
    return TaskSpec("digits", (0, 1, 2, 3), seed=1).split()


def test_train_is_deterministic_and_leaves_global_rng_alone(split, nb201_space):
    arch = nb201_space.parse(ARCH)
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    a = train_and_evaluate(arch, split, TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    b = train_and_evaluate(ARCH, split, TINY)  # a string works too
    assert a.status == "ok" and a.error is None
    assert (a.val_acc, a.test_acc, a.params, a.flops) == (b.val_acc, b.test_acc, b.params, b.flops)
    assert a.val_acc > 40.0  # better than chance (25 %) after 2 epochs
    assert a.value == a.val_acc and a.train_seconds > 0
    c = train_and_evaluate(arch, split, TINY.with_seed(6))
    assert c.val_acc is not None


def test_different_seed_changes_init(nb201_space):
    arch = nb201_space.parse(ARCH)
    w1 = build_model(arch, 3, 1, TINY).stem[0].weight
    w2 = build_model(arch, 3, 1, TINY.with_seed(99)).stem[0].weight
    assert not torch.equal(w1, w2)
    assert torch.equal(w1, build_model(arch, 3, 1, TINY).stem[0].weight)


def test_nan_loss_is_a_failure_not_an_exception():
    images = torch.randn(40, 1, 8, 8)
    images[3] = float("nan")
    labels = torch.arange(40) % 2
    ds = ImageDataset(images, labels, ("a", "b"), "nan-data")
    split = DatasetSplit(ds.subset(range(20)), ds.subset(range(20, 30)), ds.subset(range(30, 40)))
    r = train_and_evaluate(ARCH, split, TINY)
    assert r.status == "failed" and not r.ok and r.value is None
    assert "NaN" in r.error


def test_augment_crops_and_flips():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    y = _augment(x, 1, False, g)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for b in range(2):
        windows = [padded[b, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(y[b], w) for w in windows)
    z = _augment(x, 0, True, torch.Generator().manual_seed(1))
    for b in range(2):
        assert torch.equal(z[b], x[b]) or torch.equal(z[b], x[b].flip(2))


def test_config_validation():
    with pytest.raises(GrabnasError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(GrabnasError, match="lr"):
        TrainConfig(lr=0)
    r = TrainResult.failed("boom")
    assert r.to_dict()["error"] == "boom" and r.value is None
