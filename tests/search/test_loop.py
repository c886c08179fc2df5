import concurrent.futures as cf

import pytest

from grabnas.errors import GrabnasError
from grabnas.evaluation.lookup import LookupEvaluator
from grabnas.search.baselines import RandomSearch, RegularizedEvolution
from grabnas.search.loop import replay, run_search
from grabnas.study import Study


def test_failing_trials_are_recorded_and_search_goes_on(nb201_bench, tmp_path):
    lookup = LookupEvaluator(nb201_bench, "cifar10")
    calls = []

    def flaky(arch):
        calls.append(arch)
        if len(calls) % 3 == 0:
            raise RuntimeError("CUDA out of memory (simulated)")
        return lookup(arch)

    st = Study.open(tmp_path / "s.db", {})
    out = run_search(RandomSearch(nb201_bench.space, seed=0), flaky, st, budget=12)
    assert out.evaluated == 12
    failed = st.trials("failed")
    assert len(failed) == 4 and all("out of memory" in t.error for t in failed)
    assert len(st.trials("done")) == 8 and len({t.arch for t in st.trials()}) == 12


def test_parallel_workers_keep_budget_and_resume(nb201_bench, tmp_path):
    lookup = LookupEvaluator(nb201_bench, "cifar10")
    st = Study.open(tmp_path / "s.db", {})
    with cf.ThreadPoolExecutor(3) as ex:
        run_search(RegularizedEvolution(nb201_bench.space, seed=1), lookup, st, budget=20, workers=3, executor=ex)
    trials = st.trials()
    assert len(trials) == 20 and all(t.status == "done" for t in trials)
    assert len({t.arch for t in trials}) == 20
    # replaying into a fresh optimizer reproduces its history; extending the budget continues
    opt = RegularizedEvolution(nb201_bench.space, seed=1)
    assert replay(opt, st) == 20 and len(opt.history.observations) == 20
    out = run_search(RegularizedEvolution(nb201_bench.space, seed=1), lookup, st, budget=25)
    assert out.replayed == 20 and out.evaluated == 5


def test_replay_with_other_seed_is_refused(nb201_bench, tmp_path):
    lookup = LookupEvaluator(nb201_bench, "cifar10")
    st = Study.open(tmp_path / "s.db", {})
    run_search(RandomSearch(nb201_bench.space, seed=0), lookup, st, budget=5)
    with pytest.raises(GrabnasError, match="diverged at trial 1"):
        run_search(RandomSearch(nb201_bench.space, seed=1), lookup, st, budget=6)
