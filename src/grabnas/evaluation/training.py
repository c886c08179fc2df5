"""The training evaluator: architecture -> :class:`~grabnas.train.recipe.TrainResult`, never raising.

``TrainingEvaluator(task, config)`` loads and validates the task's data when it is built (bad
data raises :class:`~grabnas.errors.GrabnasError` there, before any training), then each call
trains one architecture. Any failure of a trial — an exception, running out of memory
(``torch.OutOfMemoryError`` or a RuntimeError mentioning 'out of memory'), a NaN loss — comes
back as ``TrainResult(status='failed', error=...)``.

The evaluator pickles small: a task given as a :class:`~grabnas.data.TaskSpec` or a spec string
is re-derived in the worker (and cached per process), so executors ship only the spec and the
config. Per-trial seeds: ``config.seed`` is used as is unless ``seed_per_arch`` is set, in which
case the trial seed is ``child_seed(config.seed, arch string)`` — the same in every process.
"""

from __future__ import annotations

import functools
import traceback

from grabnas.data.datasets import ImageDataset, dataset_stamp
from grabnas.data.tasks import DatasetSplit, TaskSpec, split_dataset
from grabnas.errors import GrabnasError
from grabnas.seeding import child_seed
from grabnas.train.recipe import TrainConfig, TrainResult, train_and_evaluate


def _split_for(task: TaskSpec) -> DatasetSplit:
    return _split_cached(task, dataset_stamp(task.dataset))


@functools.lru_cache(maxsize=8)
def _split_cached(task: TaskSpec, stamp: int) -> DatasetSplit:  # stamp: reload when the files change
    return task.split()


def _arch_string(arch) -> str:
    to_string = getattr(arch, "to_string", None)
    if to_string is not None:
        return to_string()
    if isinstance(arch, str):
        return arch
    return "|".join(arch)


def _is_oom(e: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(e, oom_type):
        return True
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in str(e).lower() or isinstance(e, MemoryError)
    )


class TrainingEvaluator:
    """Train-and-score an architecture on one task.

    Args:
        task: a :class:`TaskSpec`, a dataset spec string (all classes, split seed 0), a
            :class:`DatasetSplit` or an :class:`ImageDataset` (split with ``split_seed``).
        config: the training recipe.
        seed_per_arch: derive each trial's seed from ``config.seed`` and the architecture string.
        split_seed: seed of the split when ``task`` is an :class:`ImageDataset`.
    """

    def __init__(
        self,
        task: TaskSpec | str | DatasetSplit | ImageDataset,
        config: TrainConfig | None = None,
        seed_per_arch: bool = True,
        split_seed: int = 0,
    ) -> None:
        self.config = config or TrainConfig()
        self.seed_per_arch = seed_per_arch
        if isinstance(task, str):
            task = TaskSpec(task)
        self.task: TaskSpec | None = task if isinstance(task, TaskSpec) else None
        if isinstance(task, TaskSpec):
            self._split = _split_for(task)  # validates now; raises GrabnasError on bad data
        elif isinstance(task, DatasetSplit):
            self._split = task
        elif isinstance(task, ImageDataset):
            self._split = split_dataset(task, split_seed)
        else:
            raise GrabnasError(
                f"expected a TaskSpec, dataset spec, DatasetSplit or ImageDataset, got {type(task).__name__}"
            )

    @property
    def split(self) -> DatasetSplit:
        if self._split is None:
            assert self.task is not None
            self._split = _split_for(self.task)
        return self._split

    @property
    def name(self) -> str:
        return self.task.name if self.task is not None else self.split.train.name

    def with_config(self, config: TrainConfig) -> TrainingEvaluator:
        """A copy with another recipe (e.g. another seed) sharing the loaded data."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.config = config
        return new

    def trial_seed(self, arch) -> int:
        if not self.seed_per_arch:
            return self.config.seed
        return child_seed(self.config.seed, _arch_string(arch)) % (2**63)

    def __call__(self, arch) -> TrainResult:
        try:
            config = self.config.with_seed(self.trial_seed(arch))
            return train_and_evaluate(arch, self.split, config)
        except Exception as e:  # a trial failure must never stop a search
            if _is_oom(e):
                _free_cuda_cache()
                return TrainResult.failed(f"out of memory: {_one_line(e)}")
            result = TrainResult.failed(f"{type(e).__name__}: {_one_line(e)}")
            result.extra["traceback"] = traceback.format_exc(limit=8)
            return result

    # pickling: re-derive the data from the spec in the worker
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.task is not None:
            state["_split"] = None
        return state


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:500] if text else type(e).__name__


def _free_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass
