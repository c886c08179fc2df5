"""GraB-NAS inside Optuna: GraBNASSampler with Optuna storage (the shipped example) and load_study."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from grabnas.errors import GrabnasError  # noqa: E402
from grabnas.integrations.optuna import NB201_PARAMS, GraBNASSampler, nb201_search_space, suggest_nb201  # noqa: E402
from grabnas.search.baselines import RandomSearch  # noqa: E402
from grabnas.spaces.nb201 import NB201Arch  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "optuna_sampler.py"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_example(*args: str) -> None:
    argv = sys.argv
    sys.argv = [str(EXAMPLE), *args]
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        sys.argv = argv


def test_example_with_storage_resumes_and_loads(tmp_path, nb201_bench, capsys):
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    args = ("--trials", "3", "--task", "cifar10", "--storage", storage, "--study-name", "nas")
    run_example(*args)
    run_example(*args)  # a new process would do the same: the sampler reads the stored trials
    assert "6 trials; best" in capsys.readouterr().out
    study = optuna.load_study(study_name="nas", storage=storage)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 6
    archs = [nb201_bench.space.parse(t.user_attrs["arch"]) for t in done]
    assert len(set(archs)) == 6  # the resumed sampler knew the first three
    assert study.best_value == max(nb201_bench.value(a, "cifar10") for a in archs)


def test_any_optimizer_minimisation_failures_and_extra_parameters():
    """A grabnas baseline as the sampler: the study minimises, some trials fail, the objective
    suggests one more parameter (sampled independently)."""
    from grabnas.spaces import get_space

    space = get_space("nb201")
    opt = RandomSearch(space, space.members()[:40], seed=0)
    sampler = GraBNASSampler(opt, seed=0)
    assert set(sampler.infer_relative_search_space(None, None)) == set(NB201_PARAMS)
    assert nb201_search_space().keys() == set(NB201_PARAMS)
    study = optuna.create_study(direction="minimize", sampler=sampler)

    def objective(trial):
        arch = suggest_nb201(trial)
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        if trial.number % 4 == 3:
            raise ValueError("diverged")
        return float(space.index_of(arch)) + lr

    study.optimize(objective, n_trials=8, catch=(ValueError,))
    sampler.tell_finished(study)
    trials = study.get_trials()
    archs = [NB201Arch(tuple(t.params[n] for n in NB201_PARAMS)) for t in trials]
    assert len(set(archs)) == 8 and set(archs) <= set(opt.pool)  # every trial came from the optimizer
    told = {o.arch: o.value for o in opt.history.observations}
    for t, a in zip(trials, archs):
        assert told[a] == (None if t.state == TrialState.FAIL else pytest.approx(-t.value))  # maximised
    assert len({t.params["lr"] for t in trials}) == 8


def test_needs_an_optimizer_or_a_task():
    with pytest.raises(GrabnasError, match="needs optimizer=... or task=..."):
        GraBNASSampler()
