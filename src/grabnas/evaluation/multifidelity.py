"""Multi-fidelity evaluators: a :class:`~grabnas.search.multifidelity.FidelityTrial` (an
architecture at a fidelity) -> a result whose ``cost`` is the training it stands for.

* :class:`MultiFidelityLookup`: a table's fidelities (a simulated backend). NAS-Bench-201: its 12-
  and 200-epoch columns, ``cost`` :func:`grabnas.train.cost.nb201_training_costs` (FLOPs x epochs,
  in units of one 200-epoch training of the dataset's mean cell). A ``csv:`` table: a task's
  ``TASK@Nep`` columns and the task itself (the target, ``target_epochs``), ``cost`` the table's
  measured seconds (``cost@Nep``, ``cost``) in units of the task's mean target-fidelity cost.
* :class:`MultiFidelityTraining`: real training, the fidelity's epochs replacing the recipe's.

Both also accept a bare architecture (evaluated at the target fidelity) and put the fidelity's
name and epochs in the result's ``extra``. Both pickle small (executors ship them to workers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark
from grabnas.errors import GrabnasError
from grabnas.evaluation.lookup import LookupResult

#: NB201 fidelity name -> the task suffix of its column (the target fidelity has none)
NB201_FIDELITY_TASKS = {"12ep": "@12ep", "200ep": ""}


def table_fidelities(
    bench: TabularBenchmark, task: str, target_epochs: int | None = None, low_epochs: Sequence[int] | None = None
):
    """The fidelities of ``task`` in ``bench``, lowest first, the target last: a
    :class:`~grabnas.search.multifidelity.Fidelities` and, per fidelity name, the task column that
    holds its values. NB201: ``12ep`` / ``200ep``. Other tables: one ``{N}ep`` per auxiliary
    column ``TASK@Nep`` of ``task`` (:mod:`grabnas.benchmarks.csv_table`; only the ``N`` in
    ``low_epochs`` when given) and ``task`` itself at ``target_epochs`` (which must exceed them)."""
    from grabnas.benchmarks.csv_table import fidelity_column
    from grabnas.search.multifidelity import Fidelities

    bench.table(task)  # an unknown task fails here
    if bench.name == "nb201":
        for suffix in NB201_FIDELITY_TASKS.values():
            bench.table(task + suffix)
        return Fidelities(("12ep", "200ep"), (12, 200)), {n: task + s for n, s in NB201_FIDELITY_TASKS.items()}
    lows = sorted((f[1], t) for t in bench.auxiliary if (f := fidelity_column(t)) is not None and f[0] == task)
    if low_epochs is not None:
        missing = sorted(set(low_epochs) - {e for e, _ in lows})
        if missing:
            raise GrabnasError(
                f"task {task!r} of {bench.name} has no {missing[0]}-epoch fidelity; expected a column {task}@{missing[0]}ep"
            )
        lows = [(e, t) for e, t in lows if e in set(low_epochs)]
    if not lows:
        raise GrabnasError(
            f"task {task!r} of {bench.name} has no lower fidelity; expected a column {task}@Nep (N epochs) next to it"
        )
    if target_epochs is None or int(target_epochs) <= lows[-1][0]:
        raise GrabnasError(
            f"the target fidelity of {task!r} needs its epochs (above {lows[-1][0]}, its longest lower "
            f"fidelity); got {target_epochs!r}"
        )
    names = tuple(f"{e}ep" for e, _ in lows) + (f"{int(target_epochs)}ep",)
    fidelities = Fidelities(names, tuple(e for e, _ in lows) + (int(target_epochs),))
    return fidelities, {**{f"{e}ep": t for e, t in lows}, names[-1]: task}


def _split(trial, target_name: str, target_epochs: int):
    arch = getattr(trial, "arch", trial)
    name = getattr(trial, "name", "") or target_name
    epochs = int(getattr(trial, "epochs", 0) or target_epochs)
    return arch, name, epochs


class MultiFidelityLookup:
    """``FidelityTrial -> LookupResult`` for ``task`` of ``bench`` at each of its fidelities
    (:func:`table_fidelities`; ``target_epochs`` and ``low_epochs`` for tables other than NB201)."""

    def __init__(
        self,
        bench: TabularBenchmark,
        task: str,
        target_epochs: int | None = None,
        low_epochs: Sequence[int] | None = None,
    ) -> None:
        from grabnas.train.cost import nb201_training_costs

        self.fidelities, self.columns = table_fidelities(bench, task, target_epochs, low_epochs)
        self.bench = bench
        self.task = task
        if bench.name == "nb201":
            group = bench.group(task)
            self.costs = {name: nb201_training_costs(group, int(name[:-2])) for name in NB201_FIDELITY_TASKS}
        else:
            target = bench.table(task)
            unit = float(np.mean(target.cost[~np.isnan(target.search)]))
            unit = unit if unit > 0 else 1.0
            self.costs = {name: bench.table(col).cost / unit for name, col in self.columns.items()}

    @property
    def name(self) -> str:
        return f"{self.bench.name}:{self.task}@{'+'.join(self.fidelities.names)}"

    def cost(self, arch, fidelity: str) -> float:
        return float(self.costs[fidelity][self.bench.space.index_of(arch)])

    def __call__(self, trial) -> LookupResult:
        target = self.fidelities.names[-1]
        arch, name, epochs = _split(trial, target, self.fidelities.epochs[-1])
        if name not in self.columns:
            raise GrabnasError(
                f"{self.bench.name} has no fidelity {name!r} of {self.task}; expected one of {', '.join(self.columns)}"
            )
        task = self.columns[name]
        value = self.bench.value(arch, task)
        error = None if value is not None else f"{self.bench.name} has no {task} value for {arch}"
        return LookupResult(
            value,
            self.bench.report_value(arch, task),
            self.cost(arch, name),
            error,
            {"fidelity": name, "epochs": epochs},
        )


class MultiFidelityTraining:
    """``FidelityTrial -> TrainResult``: a :class:`~grabnas.evaluation.training.TrainingEvaluator`
    whose recipe trains for the trial's epochs (the target fidelity: the recipe's own)."""

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator

    @property
    def name(self) -> str:
        return self.evaluator.name

    def __call__(self, trial):
        from dataclasses import replace

        arch, name, epochs = _split(trial, "target", self.evaluator.config.epochs)
        ev = self.evaluator.with_config(replace(self.evaluator.config, epochs=epochs))
        result = ev(arch)
        result.extra.update({"fidelity": name, "epochs": epochs})
        return result


__all__ = ["NB201_FIDELITY_TASKS", "MultiFidelityLookup", "MultiFidelityTraining", "table_fidelities"]
