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


def test_table_lookup_reads_the_fidelity_columns_and_costs_in_mean_target_trainings(tmp_path):
    from grabnas.benchmarks import load_benchmark

    a, b = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    p = tmp_path / "mf.csv"
    p.write_text(f"arch,t,t@1ep,t@2ep,cost,cost@1ep\n{a},50,10,30,3,1\n{b},60,20,25,1,0.5\n")
    bench = load_benchmark(f"csv:{p}")
    ev = MultiFidelityLookup(bench, "t", target_epochs=5)
    assert ev.fidelities.names == ("1ep", "2ep", "5ep") and ev.fidelities.epochs == (1, 2, 5)
    cell = bench.space.parse(a)
    r = ev(FidelityTrial(cell, 0, "1ep", 1))
    assert (r.value, r.cost, r.extra) == (10, pytest.approx(0.5), {"fidelity": "1ep", "epochs": 1})
    assert ev(FidelityTrial(cell, 1, "2ep", 2)).cost == pytest.approx(1.5)  # no cost@2ep: the cost column
    assert ev(cell).value == 50 and ev(cell).cost == pytest.approx(1.5)  # unit: the mean target cost, 2
    assert MultiFidelityLookup(bench, "t", 5, low_epochs=[2]).fidelities.names == ("2ep", "5ep")
    with pytest.raises(GrabnasError, match="has no 3-epoch fidelity; expected a column t@3ep"):
        MultiFidelityLookup(bench, "t", 5, low_epochs=[3])
    with pytest.raises(GrabnasError, match=r"needs its epochs \(above 2"):
        MultiFidelityLookup(bench, "t", target_epochs=2)
    with pytest.raises(GrabnasError, match="has no lower fidelity; expected a column t@1ep@Nep"):
        MultiFidelityLookup(bench, "t@1ep", target_epochs=5)


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
