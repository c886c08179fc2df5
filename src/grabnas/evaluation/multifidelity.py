"""Multi-fidelity evaluators: a :class:`~grabnas.search.multifidelity.FidelityTrial` (an
architecture at a fidelity) -> a result whose ``cost`` is the training it stands for.

* :class:`MultiFidelityLookup`: NAS-Bench-201's 12- and 200-epoch columns (a simulated backend);
  ``cost`` is :func:`grabnas.train.cost.nb201_training_costs` (FLOPs x epochs, in units of one
  200-epoch training of the dataset's mean cell).
* :class:`MultiFidelityTraining`: real training, the fidelity's epochs replacing the recipe's.

Both also accept a bare architecture (evaluated at the target fidelity) and put the fidelity's
name and epochs in the result's ``extra``. Both pickle small (executors ship them to workers).
"""

from __future__ import annotations

from grabnas.benchmarks.base import TabularBenchmark
from grabnas.errors import GrabnasError
from grabnas.evaluation.lookup import LookupResult

#: NB201 fidelity name -> the task suffix of its column (the target fidelity has none)
NB201_FIDELITY_TASKS = {"12ep": "@12ep", "200ep": ""}


def _split(trial, target_name: str, target_epochs: int):
    arch = getattr(trial, "arch", trial)
    name = getattr(trial, "name", "") or target_name
    epochs = int(getattr(trial, "epochs", 0) or target_epochs)
    return arch, name, epochs


class MultiFidelityLookup:
    """``FidelityTrial -> LookupResult`` for an NB201 task at ``12ep`` or ``200ep``."""

    def __init__(self, bench: TabularBenchmark, task: str) -> None:
        from grabnas.train.cost import nb201_training_costs

        for suffix in NB201_FIDELITY_TASKS.values():
            bench.table(task + suffix)  # an unknown task fails here
        self.bench = bench
        self.task = task
        group = bench.group(task)
        self.costs = {name: nb201_training_costs(group, int(name[:-2])) for name in NB201_FIDELITY_TASKS}

    @property
    def name(self) -> str:
        return f"{self.bench.name}:{self.task}@12ep+200ep"

    def cost(self, arch, fidelity: str) -> float:
        return float(self.costs[fidelity][self.bench.space.index_of(arch)])

    def __call__(self, trial) -> LookupResult:
        arch, name, epochs = _split(trial, "200ep", 200)
        if name not in NB201_FIDELITY_TASKS:
            raise GrabnasError(f"NB201 has no fidelity {name!r}; expected one of {', '.join(NB201_FIDELITY_TASKS)}")
        task = self.task + NB201_FIDELITY_TASKS[name]
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


__all__ = ["NB201_FIDELITY_TASKS", "MultiFidelityLookup", "MultiFidelityTraining"]
