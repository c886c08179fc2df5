"""Tests of the Optuna baselines (``optuna-tpe``, ``optuna-gp``, ``optuna-random``).

Objectives are fixed random linear functions of the one-hot encoding, as in test_baselines.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from grabnas.errors import GrabnasError  # noqa: E402
from grabnas.search.baselines import BASELINES, make_baseline  # noqa: E402
from grabnas.search.optuna_baselines import OptunaGP, OptunaRandom, OptunaTPE, encoding_for  # noqa: E402
from grabnas.search.registry import BASELINE_NAMES, build_optimizer  # noqa: E402
from grabnas.spaces import get_space  # noqa: E402
from grabnas.spaces.nb201 import NB201Arch  # noqa: E402

SPACE = get_space("nb201")
WEIGHTS = np.random.default_rng(0).normal(size=30)
NAMES = ["optuna-tpe", "optuna-gp", "optuna-random"]
#: 729 of the 15,625 cells: most configurations Optuna samples are outside this pool
POOL729 = [NB201Arch(o) for o in itertools.product(("none", "skip_connect", "nor_conv_3x3"), repeat=6)]
FAIL = set(POOL729[::5])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def objective(arch) -> float:
    return float(SPACE.encode_onehot(arch) @ WEIGHTS)


def drive(opt, budget: int, batch: int = 3, keep_pending: int = 1, fail=lambda a: False, f=objective) -> list:
    """Ask ``batch`` at a time, tell all but ``keep_pending`` outstanding ones; every proposal."""
    proposals, outstanding = [], []
    while len(proposals) < budget:
        archs = opt.ask(min(batch, budget - len(proposals)))
        if not archs:
            break
        proposals += archs
        outstanding += archs
        k = max(len(outstanding) - keep_pending, 0)
        done, outstanding = outstanding[:k], outstanding[k:]
        opt.tell(done, [None if fail(a) else f(a) for a in done])
    opt.tell(outstanding, [None if fail(a) else f(a) for a in outstanding])
    return proposals


def test_registered_and_settings():
    assert [n for n in BASELINES if n.startswith("optuna-")] == NAMES
    assert set(NAMES) <= set(BASELINE_NAMES)
    opt = make_baseline("optuna-tpe", SPACE, POOL729, 3, max_retries=5)
    assert isinstance(opt, OptunaTPE) and isinstance(opt.study.sampler, optuna.samplers.TPESampler)
    assert opt.settings() == {"sampler": "TPESampler", "max_retries": 5}
    assert opt.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert isinstance(make_baseline("optuna-gp", SPACE, POOL729, 0).study.sampler, optuna.samplers.GPSampler)
    assert isinstance(make_baseline("optuna-random", SPACE, POOL729, 0).study.sampler, optuna.samplers.RandomSampler)
    with pytest.raises(GrabnasError, match="max_retries >= 0"):
        make_baseline("optuna-random", SPACE, POOL729, 0, max_retries=-1)


def test_built_by_the_registry_for_a_benchmark_task(nb201_bench):
    opt = build_optimizer("optuna-random", nb201_bench, "cifar10", seed=1)
    archs = opt.ask(2)
    opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
    assert len(opt.study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("cls", [OptunaTPE, OptunaRandom])
def test_seeded_and_within_the_pool(cls):
    pool = set(POOL729)
    first, again, other = (drive(cls(SPACE, POOL729, seed), 24, fail=lambda a: a in FAIL) for seed in (0, 0, 1))
    assert first == again  # same seed, same proposals
    assert other != first
    for proposals in (first, other):
        assert len(proposals) == 24 == len(set(proposals))  # never an architecture twice
        assert set(proposals) <= pool


def test_gp_sampler_is_seeded_and_learns(nb201_space):
    """GPSampler on the whole space (no pool misses); its GP starts after 10 complete trials."""
    pool = nb201_space.members()
    runs = [drive(OptunaGP(SPACE, pool, seed), 13, batch=1, keep_pending=0) for seed in (0, 0, 1)]
    assert runs[0] == runs[1] != runs[2]
    assert len(set(runs[0])) == 13


def test_duplicates_and_pool_misses_cost_no_evaluation():
    """TPE on a small pool samples tried and outside configurations; each becomes an Optuna
    trial told without an evaluation (the known value, FAIL, or PRUNED)."""
    opt = OptunaTPE(SPACE, POOL729, seed=0)
    evaluated: list = []

    def f(arch):
        evaluated.append(arch)
        return objective(arch)

    proposals = drive(opt, 30, fail=lambda a: a in FAIL, f=f)
    assert len(evaluated) == len([a for a in proposals if a not in FAIL]) and len(set(evaluated)) == len(evaluated)
    stats = opt.stats
    assert stats["duplicates"] > 0 and stats["pool_misses"] > 0
    trials = opt.study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # every deferred duplicate was told
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert len(by_state[TrialState.PRUNED]) == stats["pool_misses"]
    assert len(trials) == len(proposals) + stats["duplicates"] + stats["pool_misses"]
    for t in by_state[TrialState.PRUNED]:
        assert opt.encoding.decode(t.params) not in set(POOL729)
    for t in by_state[TrialState.COMPLETE]:
        assert t.value == pytest.approx(objective(opt.encoding.decode(t.params)))
    assert {opt.encoding.decode(t.params) for t in by_state[TrialState.FAIL]} == set(proposals) & FAIL


def test_known_pending_failed_and_outside_configurations_via_enqueue():
    """Enqueued configurations make Optuna sample exactly what each case needs."""
    opt = OptunaRandom(SPACE, POOL729, seed=0)
    a, b = opt.ask(2)
    opt.tell([a], [1.5])
    opt.tell([b], [float("nan")])  # NaN is a failure
    (c,) = opt.ask(1)  # pending
    outside = NB201Arch(("avg_pool_3x3",) * 6)
    start, before = len(opt.study.trials), dict(opt.stats)
    for arch in (a, b, c, outside):
        opt.study.enqueue_trial(opt.encoding.encode(arch))
    (d,) = opt.ask(1)
    assert d not in {a, b, c} and d in set(POOL729)
    t = opt.study.get_trials()[start:]
    params = [opt.encoding.decode(x.params) for x in t]
    assert params[:4] == [a, b, c, outside]
    assert (t[0].state, t[0].value) == (TrialState.COMPLETE, 1.5)  # the known value
    assert t[1].state == TrialState.FAIL
    assert t[2].state == TrialState.RUNNING  # waits for c's value
    assert t[3].state == TrialState.PRUNED  # not in the pool
    assert opt.stats["duplicates"] - before["duplicates"] == 3 and opt.stats["pool_misses"] > before["pool_misses"]
    opt.tell([c, d], [2.0, None])
    t = opt.study.get_trials()[start:]
    assert (t[2].state, t[2].value) == (TrialState.COMPLETE, 2.0)
    assert [x.state for x in t if opt.encoding.decode(x.params) == d] == [TrialState.FAIL]
    assert len(opt.history.observations) == 4  # only the four proposals were evaluated


def test_fallback_after_max_retries_and_exhaustion():
    pool = POOL729[:3]
    opt = OptunaRandom(SPACE, pool, seed=0, max_retries=0)
    got = opt.ask(5)
    assert sorted(got, key=pool.index) == pool  # the pool runs out; fallbacks fill it
    assert opt.stats["fallbacks"] >= 1 and opt.ask(1) == []
    opt.tell(got, [1.0, 2.0, None])
    # fallback proposals reach Optuna as finished trials when told
    done = opt.study.get_trials(states=(TrialState.COMPLETE, TrialState.FAIL))
    assert {opt.encoding.decode(t.params) for t in done} == set(pool)
    assert not opt.study.get_trials(states=(TrialState.RUNNING,))


def test_quiet_and_leaves_optuna_verbosity_alone(capfd):
    before = optuna.logging.get_verbosity()
    opt = OptunaTPE(SPACE, POOL729, seed=0)
    drive(opt, 4)
    assert optuna.logging.get_verbosity() == before
    err = capfd.readouterr().err
    assert "finished with value" not in err and "A new study created" not in err


def test_missing_optuna_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(GrabnasError, match=r"^optimizer 'optuna-tpe' needs Optuna.*pip install grabnas\[optuna\]$"):
        make_baseline("optuna-tpe", SPACE, POOL729, 0)


def test_grabnas_imports_without_optuna():
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "import grabnas, grabnas.search.baselines, grabnas.search.registry, grabnas.search.optuna_baselines\n"
        "from grabnas.search.baselines import make_baseline\n"
        "assert make_baseline('random', __import__('grabnas.spaces', fromlist=['x']).get_space('nb201'), None, 0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nasbench_graph_encoding_and_search(nbg_space):
    enc = encoding_for(nbg_space)
    assert list(enc.choices) == [f"node{i}_{k}" for i in range(1, 5) for k in ("op", "src")]
    assert enc.choices["node3_src"] == (0, 1, 2)
    members = nbg_space.members()
    for m in members[:: len(members) // 50]:
        assert enc.decode(enc.encode(m)) == m
    assert enc.decode({**enc.encode(members[0]), **{f"node{i}_op": "skip" for i in range(1, 5)}}) is None
    # a pool of the architectures built from six of the nine ops (like the proteins task)
    pool = [m for m in members if set(m.ops) <= {"gcn", "sage", "arma", "fc", "skip", "cheb"}]
    weights = np.random.default_rng(1).normal(size=len(nbg_space.encode_onehot(pool[0])))
    opt = OptunaTPE(nbg_space, pool, seed=0)
    proposals = drive(opt, 14, f=lambda a: float(nbg_space.encode_onehot(a) @ weights))
    assert len(set(proposals)) == 14 and set(proposals) <= set(pool)
    assert opt.stats["pool_misses"] > 0  # configurations with the other ops
    assert not math.isnan(opt.study.best_value)
