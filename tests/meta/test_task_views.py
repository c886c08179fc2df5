"""Views of a corpus's tasks for meta-training: top splits and (top-heavy) batches."""

from __future__ import annotations

import numpy as np

from grabnas.meta.corpus import CorpusTask
from grabnas.meta.task_views import TaskView, _draw_batch


def test_top_heavy_batches():
    task = CorpusTask("t", "g", np.arange(100), np.arange(100.0))
    view = TaskView(task, np.arange(0, 100, 2), None, targets=np.arange(100.0))  # 50 even positions
    top, rest = view.split_top(0.1)
    np.testing.assert_array_equal(top, [90, 92, 94, 96, 98])  # the view's best 10 %, not the task's
    assert len(rest) == 45 and not set(top) & set(rest)
    rng = np.random.default_rng(0)
    batch = _draw_batch(view, 20, 0.5, (top, rest), rng)
    assert len(set(batch)) == 20 and set(batch) <= set(view.pos)
    assert set(top) <= set(batch)  # 10 wanted from the top, only 5 there: all taken, the rest from below
    uniform = _draw_batch(view, 20, 0.0, None, rng)
    assert len(set(uniform)) == 20 and set(uniform) <= set(view.pos)
