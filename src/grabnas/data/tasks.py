"""Deterministic splits, per-class sampling and class-subset tasks.

A :class:`TaskSpec` (dataset spec, classes, seed) re-derives a task exactly: the chosen classes
relabelled ``0..k-1`` in the given order, then a stratified train/val/test split drawn from the
seed. Its :attr:`TaskSpec.name` (e.g. ``digits[0,3,7]@12``) parses back with :meth:`TaskSpec.parse`.
Modifiers (``~16px``, ``~noise0.3``, ``~occludeleft``, ``~train20``; see :mod:`grabnas.data.corruptions`)
make further tasks of the same images: ``digits[all]@0~noise0.3``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from grabnas.data.corruptions import (
    apply_image_modifiers,
    canonical_modifier,
    keep_per_class,
    parse_modifier,
    split_modifiers,
)
from grabnas.data.datasets import DatasetError, ImageDataset, canonical_spec, load_dataset
from grabnas.errors import GrabnasError
from grabnas.seeding import child_seed


@dataclass
class DatasetSplit:
    """Train (fit), validation (search signal) and test (final report) parts of one task."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the three parts' images, labels and class names: equal exactly when the
        data a search trains and scores on is the same."""
        import hashlib

        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(repr((tuple(part.images.shape), part.class_names)).encode())
            h.update(part.images.detach().cpu().contiguous().numpy().tobytes())
            h.update(part.labels.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def split_dataset(ds: ImageDataset, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DatasetSplit:
    """A stratified split: each class is shuffled with ``seed`` and cut into train/val/test.

    Every class keeps at least one training image; val and test get ``round(fraction * n_c)``
    images of class c (at least one each when the class has three or more images).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise GrabnasError(
            f"split fractions val={val_fraction}, test={test_fraction} are invalid; expected 0 <= each and val + test < 1"
        )
    rng = np.random.default_rng(child_seed(seed, "split"))
    labels = ds.labels.numpy()
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(ds.num_classes):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_val = int(round(val_fraction * n))
        n_test = int(round(test_fraction * n))
        if n >= 3:
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
        while n_val + n_test > n - 1 and (n_val or n_test):
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        parts[0].append(idx[n_val + n_test :])
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
    out = []
    for which, name in zip(parts, ("train", "val", "test")):
        index = np.sort(np.concatenate(which)) if which else np.zeros(0, dtype=np.int64)
        out.append(ds.subset(index, name=f"{ds.name}/{name}"))
    if len(out[1]) == 0 or len(out[2]) == 0:
        raise DatasetError(f"{ds.name}: too few images ({len(ds)}) for a validation and a test split")
    return DatasetSplit(*out)


def sample_per_class(ds: ImageDataset, k: int, seed: int) -> torch.Tensor:
    """``(K, k, C, H, W)``: k images of each class (without replacement when the class has k)."""
    if k < 1:
        raise GrabnasError(f"need k >= 1 instances per class, got {k}")
    rng = np.random.default_rng(child_seed(seed, "per-class"))
    labels = ds.labels.numpy()
    rows = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            raise DatasetError(f"{ds.name}: class {c} has no images to sample")
        pick = rng.choice(idx, size=k, replace=len(idx) < k)
        rows.append(ds.images[torch.as_tensor(pick)])
    return torch.stack(rows)


def select_classes(ds: ImageDataset, classes: Sequence[int], name: str | None = None) -> ImageDataset:
    """The images of ``classes``, relabelled ``0..k-1`` in the given order."""
    classes = [int(c) for c in classes]
    if len(classes) < 2:
        raise GrabnasError(f"a task needs at least two classes, got {classes}")
    if len(set(classes)) != len(classes):
        raise GrabnasError(f"repeated class in {classes}; expected distinct class indices")
    bad = [c for c in classes if not 0 <= c < ds.num_classes]
    if bad:
        raise GrabnasError(
            f"class {bad[0]} is out of range for {ds.name} ({ds.num_classes} classes: 0..{ds.num_classes - 1})"
        )
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    new = remap[ds.labels]
    keep = torch.nonzero(new >= 0).squeeze(1)
    return ImageDataset(
        ds.images[keep], new[keep], tuple(ds.class_names[c] for c in classes), name or ds.name, dict(ds.meta)
    )


def resize_images(ds: ImageDataset, size: int) -> ImageDataset:
    """``ds`` with images resized to ``size`` x ``size`` (area interpolation; antialiased bilinear up)."""
    h, w = ds.images.shape[2:]
    if (h, w) == (size, size):
        return ds
    if size <= h and size <= w:
        images = torch.nn.functional.interpolate(ds.images, size=(size, size), mode="area")
    else:
        images = torch.nn.functional.interpolate(
            ds.images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return ImageDataset(images.contiguous(), ds.labels, ds.class_names, ds.name, dict(ds.meta))


_NAME_RE = re.compile(r"^(?P<ds>.+)\[(?P<cls>[0-9,]*|all)\]@(?P<seed>-?\d+)(?P<mods>(?:~[A-Za-z0-9.]+)*)$")


@dataclass(frozen=True)
class TaskSpec:
    """A re-derivable classification task: a dataset, a subset of its classes, a split seed.

    Args:
        dataset: a dataset spec (see :func:`grabnas.data.load_dataset`).
        classes: class indices of the dataset, relabelled 0..k-1 in this order (None: all).
        seed: seed of the train/val/test split.
        image_size: resize images to ``image_size`` x ``image_size`` (area interpolation); None keeps them.
        modifiers: further modifiers applied in order after the resize (``noise0.3``,
            ``occludeleft``, ``train20``; see :mod:`grabnas.data.corruptions`). Modifiers
            written on ``dataset`` (``digits~noise0.3``) move here.
    """

    dataset: str
    classes: tuple[int, ...] | None = None
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    image_size: int | None = None
    modifiers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image_size is not None and int(self.image_size) < 1:
            raise GrabnasError(f"image_size must be a positive integer, got {self.image_size}")
        dataset, on_dataset = split_modifiers(self.dataset)
        size = self.image_size
        mods: list[str] = []
        for token in (*on_dataset, *self.modifiers):
            kind, value = parse_modifier(token)
            if kind == "px":
                size = int(value) if size is None else size
            else:
                mods.append(canonical_modifier(token))
        if sum(parse_modifier(m)[0] == "train" for m in mods) > 1:
            raise GrabnasError(f"more than one ~trainK modifier in {self.dataset!r} {self.modifiers}")
        object.__setattr__(self, "dataset", canonical_spec(dataset))
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "modifiers", tuple(mods))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    @property
    def name(self) -> str:
        cls = "all" if self.classes is None else ",".join(str(c) for c in self.classes)
        size = f"~{self.image_size}px" if self.image_size else ""
        mods = "".join(f"~{m}" for m in self.modifiers)
        return f"{self.dataset}[{cls}]@{self.seed}{size}{mods}"

    @classmethod
    def parse(cls, name: str) -> TaskSpec:
        """Inverse of :attr:`name`: ``DATASET[c1,c2,...]@SEED`` or ``DATASET[all]@SEED``, optionally
        followed by modifiers (``~SIZEpx``, ``~noiseS``, ``~occludeSIDE``, ``~trainK``)."""
        m = _NAME_RE.match(name.strip())
        if m is None:
            raise GrabnasError(
                f"malformed task name {name!r}; expected DATASET[c1,c2,...]@SEED[~MODIFIER...], e.g. digits[0,3,7]@12"
            )
        classes = None if m["cls"] == "all" else tuple(int(c) for c in m["cls"].split(",") if c)
        mods = tuple(t for t in m["mods"].split("~") if t)
        return cls(m["ds"], classes, int(m["seed"]), modifiers=mods)

    @classmethod
    def from_spec(cls, text: str) -> TaskSpec:
        """A task name (``digits[0,3]@1~noise0.3``) or a dataset spec, either with modifiers
        (``digits~train20``, ``npz:PATH``: all classes, split seed 0)."""
        try:
            return cls.parse(text)
        except GrabnasError:
            return cls(text)

    def load(self) -> ImageDataset:
        """The task's images with labels 0..k-1 (validated; raises GrabnasError on bad input)."""
        ds = load_dataset(self.dataset)
        if self.classes is not None:
            ds = select_classes(ds, self.classes, name=self.name)
        if self.image_size is not None:
            ds = resize_images(ds, self.image_size)
        return apply_image_modifiers(ds, self.modifiers, self.seed)

    def split(self) -> DatasetSplit:
        split = split_dataset(self.load(), self.seed, self.val_fraction, self.test_fraction)
        for token in self.modifiers:
            kind, k = parse_modifier(token)
            if kind == "train":
                split = DatasetSplit(keep_per_class(split.train, int(k), self.seed), split.val, split.test)
        return split

    def with_image_size(self, size: int | None) -> TaskSpec:
        """The same task resized to ``size`` x ``size`` (None: native size)."""
        return replace(self, image_size=size)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else load_dataset(self.dataset).num_classes


def class_subset_tasks(
    datasets: Sequence[str],
    n_tasks: int,
    seed: int,
    min_classes: int = 2,
    max_classes: int | None = None,
    image_sizes: dict[str, int] | None = None,
) -> list[TaskSpec]:
    """``n_tasks`` distinct class-subset tasks drawn round-robin over ``datasets``.

    Task i takes a dataset in turn, a number of classes uniform in
    ``[min_classes, min(max_classes, K)]``, that many distinct classes (sorted) and split seed
    ``child_seed(seed, "task", i) % 10**4``. Everything derives from ``seed``. ``image_sizes``
    maps a dataset spec to the square size its tasks are resized to.
    """
    if n_tasks < 1:
        raise GrabnasError(f"need at least one task, got {n_tasks}")
    if not datasets:
        raise GrabnasError("no datasets to draw tasks from; expected e.g. digits, mnist-subset")
    if min_classes < 2:
        raise GrabnasError(f"a task needs at least two classes, got min_classes={min_classes}")
    sizes = {d: load_dataset(d).num_classes for d in datasets}
    for d, k in sizes.items():
        if k < min_classes:
            raise GrabnasError(f"{d} has {k} classes, fewer than min_classes={min_classes}")
    rng = np.random.default_rng(child_seed(seed, "class-subset-tasks"))
    tasks: list[TaskSpec] = []
    seen: set[tuple[str, tuple[int, ...]]] = set()
    attempts = 0
    while len(tasks) < n_tasks:
        attempts += 1
        if attempts > 100 * n_tasks + 1000:
            raise GrabnasError(
                f"could not draw {n_tasks} distinct class subsets from {', '.join(datasets)}; ask for fewer tasks"
            )
        d = datasets[len(tasks) % len(datasets)]
        k_max = sizes[d] if max_classes is None else min(max_classes, sizes[d])
        k = int(rng.integers(min_classes, k_max + 1))
        classes = tuple(sorted(int(c) for c in rng.choice(sizes[d], size=k, replace=False)))
        key = (canonical_spec(d), classes)
        if key in seen:
            continue
        seen.add(key)
        size = (image_sizes or {}).get(d)
        tasks.append(TaskSpec(d, classes, child_seed(seed, "task", len(tasks)) % 10**4, image_size=size))
    return tasks
