"""Views of a corpus's tasks for meta-training: a :class:`TaskView` is the records of one task that
training or validation uses; :func:`_split_views` splits a corpus into training and
meta-validation views (held-out tasks or held-out architectures of each task) and
:func:`_draw_batch` draws a (top-heavy) batch of positions from a view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.corpus import Corpus, CorpusTask


class ViewSplitSettings(Protocol):
    """What :func:`_split_views` reads of :class:`grabnas.meta.surrogate_training.MetaTrainConfig`."""

    val_tasks: tuple[str, ...] | None
    val_fraction: float
    val_group_fraction: float
    min_groups_for_val_tasks: int


@dataclass
class TaskView:
    """Records of one task used for training or validation."""

    task: CorpusTask
    pos: np.ndarray  # positions into task.index / task.values
    feats: torch.Tensor | None  # (S, K, k, F) instance features or None
    targets: np.ndarray | None = None  # standardised values of the whole task

    def split_top(self, quantile: float) -> tuple[np.ndarray, np.ndarray]:
        """``(top, rest)``: the view's positions among its best ``quantile`` of values, and the others."""
        vals = self.targets[self.pos]
        k = max(1, int(round(quantile * len(self.pos))))
        order = np.argsort(-vals, kind="stable")
        return np.sort(self.pos[order[:k]]), np.sort(self.pos[order[k:]])


def _draw_batch(
    view: TaskView, n: int, top_fraction: float, split: tuple[np.ndarray, np.ndarray] | None, rng: np.random.Generator
) -> np.ndarray:
    """``n`` distinct positions of ``view`` (needs ``n <= len(view.pos)``): ``round(top_fraction * n)``
    of them from its top split, capped at the split's size, the rest from the other split (more from
    the top when the other split is short)."""
    if split is None or top_fraction <= 0:
        return view.pos[rng.choice(len(view.pos), size=n, replace=False)]
    top, rest = split
    n_top = min(len(top), int(round(top_fraction * n)))
    n_rest = min(len(rest), n - n_top)
    n_top = n - n_rest
    return np.concatenate([rng.choice(top, size=n_top, replace=False), rng.choice(rest, size=n_rest, replace=False)])


def _split_views(
    corpus: Corpus, tc: ViewSplitSettings, rng: np.random.Generator
) -> tuple[list[TaskView], list[TaskView], str]:
    """``(train, val, description)``: the views meta-training learns from and those it validates on,
    by the settings of ``tc`` (a :class:`grabnas.meta.surrogate_training.MetaTrainConfig`)."""
    groups = corpus.groups
    if tc.val_tasks:
        val_names = set(tc.val_tasks)
        unknown = val_names - set(corpus.task_names)
        if unknown:
            raise GrabnasError(f"unknown meta-validation task {sorted(unknown)[0]!r}; expected tasks of the corpus")
        val_groups = {corpus.group_of(t) for t in val_names}
        mode = "tasks"
    elif len(groups) >= tc.min_groups_for_val_tasks:
        k = max(1, int(round(tc.val_group_fraction * len(groups))))
        val_groups = set(rng.choice(groups, size=k, replace=False).tolist())
        val_names = {t.name for t in corpus.tasks if t.group in val_groups}
        mode = "tasks"
    else:
        val_groups, val_names, mode = set(), set(), "architectures"
    train, val = [], []
    for t in corpus.tasks:
        pos = np.arange(len(t))
        if t.group in val_groups:
            if t.name in val_names and t.fidelity is None:
                val.append(TaskView(t, pos, None))
            continue
        if mode == "architectures" and len(t) >= 20:
            perm = rng.permutation(len(t))
            n_val = max(1, int(round(tc.val_fraction * len(t))))
            val.append(TaskView(t, np.sort(perm[:n_val]), None))
            train.append(TaskView(t, np.sort(perm[n_val:]), None))
        else:
            train.append(TaskView(t, pos, None))
    if not train:
        raise GrabnasError("meta-training needs at least one training task outside the meta-validation tasks")
    return train, val, _split_rule(tc, mode, sorted(val_names), len(groups))


def _split_rule(tc: ViewSplitSettings, mode: str, val_names: list[str], n_groups: int) -> str:
    """One line saying which records meta-validate and by which rule they were chosen."""
    if mode == "architectures":
        why = (
            "task hold-out disabled"
            if tc.min_groups_for_val_tasks > 10**6
            else f"the corpus has {n_groups} groups, fewer than the {tc.min_groups_for_val_tasks} that task hold-out needs"
        )
        return f"{tc.val_fraction:.0%} of each task's architectures ({why})"
    names = ", ".join(val_names)
    if tc.val_tasks:
        return f"held-out tasks ({names}), as given"
    return (
        f"held-out tasks ({names}): the tasks of {tc.val_group_fraction:.0%} of the {n_groups} groups, drawn by the "
        f"meta-training seed (automatic with at least {tc.min_groups_for_val_tasks} groups; name them to choose)"
    )


__all__ = ["TaskView", "ViewSplitSettings"]
