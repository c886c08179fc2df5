"""Task modifiers: deterministic corruptions and reductions of a dataset that make new tasks.

A modifier is a short token appended to a task or dataset spec with ``~``
(``digits~4px``, ``digits~noise0.5``, ``digits[0,1,2]@3~occludeleft~train20``):

* ``~Npx`` — resize the images to N x N (area interpolation down, antialiased bilinear up;
  handled by :class:`~grabnas.data.TaskSpec` as ``image_size``);
* ``~noiseS`` — add Gaussian noise of standard deviation S (image units, images in [0, 1]),
  clipped to [0, 1]; one fixed draw per image, from the task's split seed;
* ``~occludeSIDE`` — zero one half of every image (SIDE: left, right, top, bottom);
* ``~trainK`` — keep only K training images per class (validation and test untouched).

Every modifier is a pure function of the images and the split seed, so a task name re-derives
exactly the same data in every process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from grabnas.data.datasets import ImageDataset
from grabnas.errors import GrabnasError
from grabnas.seeding import child_seed

OCCLUDE_SIDES = ("left", "right", "top", "bottom")
_MODIFIER_RE = re.compile(r"^(?:(?P<px>\d+)px|noise(?P<noise>\d*\.?\d+)|occlude(?P<side>[a-z]+)|train(?P<train>\d+))$")
_FORMS = "Npx, noiseS, occludeSIDE (left/right/top/bottom), trainK"


def parse_modifier(token: str) -> tuple[str, float | int | str]:
    """``(kind, value)`` of one modifier token (without the ``~``): ``("px", 16)``,
    ``("noise", 0.3)``, ``("occlude", "left")``, ``("train", 20)``."""
    m = _MODIFIER_RE.match(token.strip().lower())
    if m is None:
        raise GrabnasError(f"unknown task modifier ~{token}; expected one of {_FORMS}")
    if m["px"] is not None:
        size = int(m["px"])
        if size < 1:
            raise GrabnasError(f"~{token}: the image size must be at least 1 pixel")
        return "px", size
    if m["noise"] is not None:
        return "noise", float(m["noise"])
    if m["side"] is not None:
        if m["side"] not in OCCLUDE_SIDES:
            raise GrabnasError(f"~{token}: unknown side {m['side']!r}; expected one of {', '.join(OCCLUDE_SIDES)}")
        return "occlude", m["side"]
    k = int(m["train"])
    if k < 1:
        raise GrabnasError(f"~{token}: need at least one training image per class")
    return "train", k


def is_modifier(token: str) -> bool:
    try:
        parse_modifier(token)
    except GrabnasError:
        return False
    return True


def split_modifiers(spec: str) -> tuple[str, tuple[str, ...]]:
    """``("digits", ("noise0.3", "train20"))`` from ``"digits~noise0.3~train20"``: trailing ``~``
    tokens that are modifiers come off; anything else (a path with ``~`` in it) stays."""
    parts = spec.strip().split("~")
    mods: list[str] = []
    while len(parts) > 1 and is_modifier(parts[-1]):
        mods.insert(0, parts.pop().strip().lower())
    return "~".join(parts), tuple(mods)


def canonical_modifier(token: str) -> str:
    """The normalised spelling of a modifier (``noise.30`` -> ``noise0.3``)."""
    kind, value = parse_modifier(token)
    if kind == "noise":
        return f"noise{float(value):g}"
    return f"{kind}{value}" if kind != "px" else f"{value}px"


def add_noise(ds: ImageDataset, sd: float, seed: int) -> ImageDataset:
    """``ds`` plus Gaussian noise of standard deviation ``sd``, clipped to [0, 1] (a fixed draw)."""
    if sd <= 0:
        return ds
    gen = torch.Generator().manual_seed(child_seed(seed, "noise", f"{sd:g}"))
    noise = torch.randn(ds.images.shape, generator=gen, dtype=torch.float32) * float(sd)
    images = (ds.images + noise).clamp_(0.0, 1.0)
    return ImageDataset(images.contiguous(), ds.labels, ds.class_names, ds.name, dict(ds.meta))


def occlude(ds: ImageDataset, side: str) -> ImageDataset:
    """``ds`` with one half of every image set to zero (the middle column/row of odd sizes kept)."""
    if side not in OCCLUDE_SIDES:
        raise GrabnasError(f"unknown side {side!r}; expected one of {', '.join(OCCLUDE_SIDES)}")
    images = ds.images.clone()
    h, w = images.shape[2:]
    if side == "left":
        images[..., :, : w // 2] = 0
    elif side == "right":
        images[..., :, w - w // 2 :] = 0
    elif side == "top":
        images[..., : h // 2, :] = 0
    else:
        images[..., h - h // 2 :, :] = 0
    return ImageDataset(images, ds.labels, ds.class_names, ds.name, dict(ds.meta))


def keep_per_class(ds: ImageDataset, k: int, seed: int) -> ImageDataset:
    """At most ``k`` images of each class (drawn with ``seed``, order kept)."""
    rng = np.random.default_rng(child_seed(seed, "train-per-class", k))
    labels = ds.labels.numpy()
    keep = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(labels == c)
        keep.append(idx if len(idx) <= k else rng.choice(idx, size=k, replace=False))
    return ds.subset(np.sort(np.concatenate(keep)), name=ds.name)


def apply_image_modifiers(ds: ImageDataset, modifiers: Sequence[str], seed: int) -> ImageDataset:
    """Apply the image-level modifiers (noise, occlusion) in order; size and train size are the
    task's business (:class:`~grabnas.data.TaskSpec`)."""
    for token in modifiers:
        kind, value = parse_modifier(token)
        if kind == "noise":
            ds = add_noise(ds, float(value), seed)
        elif kind == "occlude":
            ds = occlude(ds, str(value))
    return ds


__all__ = [
    "OCCLUDE_SIDES",
    "add_noise",
    "apply_image_modifiers",
    "canonical_modifier",
    "is_modifier",
    "keep_per_class",
    "occlude",
    "parse_modifier",
    "split_modifiers",
]
