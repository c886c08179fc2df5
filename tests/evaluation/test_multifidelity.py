import pytest

from grabnas.errors import GrabnasError
from grabnas.evaluation.multifidelity import MultiFidelityLookup, MultiFidelityTraining
from grabnas.search.multifidelity import FidelityTrial


def test_nb201_lookup_reads_the_12_and_200_epoch_columns_and_costs_flops_times_epochs(nb201_bench):
    ev = MultiFidelityLookup(nb201_bench, "cifar100")
    arch = nb201_bench.pool("cifar100")[5]
    low, high = ev(FidelityTrial(arch, 0, "12ep", 12)), ev(FidelityTrial(arch, 1, "200ep", 200))
    assert low.value == nb201_bench.value(arch, "cifar100@12ep") and high.value == nb201_bench.value(arch, "cifar100")
    assert low.cost == pytest.approx(high.cost * 12 / 200)
    assert low.extra == {"fidelity": "12ep", "epochs": 12} and high.extra["fidelity"] == "200ep"
    assert ev(arch).value == high.value  # a bare architecture: the target fidelity
    with pytest.raises(GrabnasError, match="no fidelity"):
        ev(FidelityTrial(arch, 0, "50ep", 50))


def test_training_runs_the_trials_epochs():
    import dataclasses

    @dataclasses.dataclass
    class Config:
        epochs: int = 20

    seen = []

    class Evaluator:  # a TrainingEvaluator's interface
        config = Config()
        name = "fake"

        def with_config(self, config):
            seen.append(config.epochs)
            return lambda arch: type("Result", (), {"extra": {}})()

    r = MultiFidelityTraining(Evaluator())(FidelityTrial("cell", 0, "5ep", 5))
    assert seen == [5] and r.extra == {"fidelity": "5ep", "epochs": 5}
    MultiFidelityTraining(Evaluator())("cell")  # a bare architecture: the recipe's own epochs
    assert seen == [5, 20]
