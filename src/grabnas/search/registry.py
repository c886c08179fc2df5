"""Build an optimizer by name for a task of a tabular benchmark.

This is where leave-one-task-out knowledge is assembled: optimizers that learn from earlier
tasks (``transfer-rank``) only ever receive the values of tasks from *other* groups than the
target's, so the target's values at any fidelity never reach them.
"""

from __future__ import annotations

from grabnas.benchmarks.base import TabularBenchmark
from grabnas.errors import GrabnasError
from grabnas.search.base import Optimizer

BASELINE_NAMES = ("random", "rea", "local", "gpbo", "transfer-rank")


def optimizer_names() -> tuple[str, ...]:
    return BASELINE_NAMES


def build_optimizer(name: str, bench: TabularBenchmark, task: str, seed: int) -> Optimizer:
    """The optimizer ``name`` over the pool of ``task``, seeded with ``seed``."""
    from grabnas.search.baselines import TransferRank, make_baseline, transfer_scores

    pool = bench.pool(task)
    if name == "transfer-rank":
        others = bench.other_tasks(task)
        if not others:
            raise GrabnasError(
                f"transfer-rank needs tasks of other datasets than {task!r}; benchmark {bench.name} has none"
            )
        scores = transfer_scores([bench.values(t) for t in others])
        return TransferRank(bench.space, pool, seed=seed, scores=scores)
    if name not in BASELINE_NAMES:
        raise GrabnasError(f"unknown optimizer {name!r}; expected one of {', '.join(optimizer_names())}")
    return make_baseline(name, bench.space, pool, seed)
