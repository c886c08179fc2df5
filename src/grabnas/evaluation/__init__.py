"""Evaluators (architecture -> result) and executors (where evaluations run).

* :class:`~grabnas.evaluation.lookup.LookupEvaluator`: a lookup in a tabular benchmark.
* :class:`~grabnas.evaluation.training.TrainingEvaluator`: real training (returns a
  :class:`~grabnas.train.recipe.TrainResult`, never raises for a failed trial).
* Executors with ``submit`` / ``map`` / context manager: :class:`InProcessExecutor`,
  :class:`LocalPoolExecutor`, :class:`RayExecutor` (optional ``ray``), :func:`make_executor`.

Names load lazily, so importing one submodule does not import torch or Ray.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Executor": "grabnas.evaluation.executors",
    "InProcessExecutor": "grabnas.evaluation.executors",
    "LocalPoolExecutor": "grabnas.evaluation.executors",
    "RayExecutor": "grabnas.evaluation.executors",
    "make_executor": "grabnas.evaluation.executors",
    "TrainingEvaluator": "grabnas.evaluation.training",
    "LookupEvaluator": "grabnas.evaluation.lookup",
    "LookupResult": "grabnas.evaluation.lookup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'grabnas.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
