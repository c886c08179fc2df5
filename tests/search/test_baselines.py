"""Tests of the baseline optimizers on NB201 with a synthetic linear objective.

The objective is a fixed random linear function of the one-hot op encoding, so the optimum of
any pool is known and, on a product-shaped pool, every local optimum is the global one.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.search.baselines import (
    BASELINES,
    GPBO,
    LocalSearch,
    RandomSearch,
    RegularizedEvolution,
    TransferRank,
    make_baseline,
    transfer_scores,
)
from grabnas.spaces import get_space
from grabnas.spaces.nb201 import NB201Arch

SPACE = get_space("nb201")
WEIGHTS = np.random.default_rng(0).normal(size=30)
NAMES = ["random", "rea", "local", "gpbo", "transfer-rank"]


def objective(arch: NB201Arch) -> float:
    return float(SPACE.encode_onehot(arch) @ WEIGHTS)


def product_pool(ops: tuple[str, ...]) -> list[NB201Arch]:
    """Every cell whose edge ops are in ``ops``: closed under the neighbours it contains."""
    return [NB201Arch(o) for o in itertools.product(ops, repeat=6)]


POOL64 = product_pool(("skip_connect", "nor_conv_3x3"))
POOL729 = product_pool(("none", "skip_connect", "nor_conv_3x3"))
LATER_FAIL = set(POOL729[::4])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(name: str, pool: list[NB201Arch], seed: int = 0, **kw):
    """A baseline with small, fast settings for tests."""
    options = {
        "rea": {"population_size": 5, "sample_size": 2},
        "gpbo": {"n_init": 5, "fit_maxiter": 10, "mc_samples": 32},
        "transfer-rank": {"scores": {a: objective(a) + math.sin(7 * i) for i, a in enumerate(pool[:-3])}},
    }.get(name, {})
    return make_baseline(name, SPACE, pool, seed, **{**options, **kw})


def drive(opt, budget: int, batch: int = 3, keep_pending: int = 1, fail=lambda a: False) -> list[NB201Arch]:
    """Ask ``batch`` at a time and tell all but ``keep_pending`` of the outstanding ones.

    Returns every proposal in order; stops early when the optimizer runs out.
    """
    proposals: list[NB201Arch] = []
    outstanding: list[NB201Arch] = []
    while len(proposals) < budget:
        archs = opt.ask(min(batch, budget - len(proposals)))
        assert len(archs) <= batch
        if not archs:
            break
        proposals += archs
        outstanding += archs
        k = max(len(outstanding) - keep_pending, 0)
        done, outstanding = outstanding[:k], outstanding[k:]
        opt.tell(done, [None if fail(a) else objective(a) for a in done])
    opt.tell(outstanding, [None if fail(a) else objective(a) for a in outstanding])
    return proposals


def fails_sometimes(arch: NB201Arch) -> bool:
    return sum(map(ord, arch.to_string())) % 5 == 0


@pytest.mark.parametrize("name", NAMES)
def test_full_pool_run_never_repeats(name):
    opt = make(name, POOL64)
    proposals = drive(opt, budget=1000, fail=fails_sometimes)
    assert len(proposals) == len(set(proposals)) == len(POOL64)
    assert set(proposals) == set(POOL64)
    assert opt.ask(4) == []


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name):
    runs = [drive(make(name, POOL729, seed=s), budget=15, fail=fails_sometimes) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    if name != "transfer-rank":  # its order is fixed by the scores
        assert runs[0] != runs[2]


@pytest.mark.parametrize("name", NAMES)
def test_failures_are_tolerated_and_never_reproposed(name):
    opt = make(name, POOL729)
    failed = opt.ask(3)
    opt.tell(failed, [None, float("nan"), None])
    later = drive(opt, budget=20, fail=lambda a: a in LATER_FAIL)
    assert not set(failed) & set(later)
    assert len(later) == len(set(later)) == 20
    assert sum(o.value is None for o in opt.history.observations) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_all_failures_do_not_crash(name):
    proposals = drive(make(name, POOL64), budget=30, fail=lambda a: True)
    assert len(proposals) == len(set(proposals)) == 30


@pytest.mark.parametrize("name", NAMES)
def test_ask_four_returns_four_distinct_untried(name):
    opt = make(name, POOL729)
    drive(opt, budget=12, batch=1, keep_pending=0)
    tried = opt.history.tried
    archs = opt.ask(4)
    assert len(archs) == len(set(archs)) == 4
    assert not set(archs) & tried
    assert all(a in set(POOL729) for a in archs)
    assert len(set(archs + opt.ask(4))) == 8  # still pending: not proposed again


def test_local_search_does_not_block_on_pending():
    opt = LocalSearch(SPACE, POOL729, seed=1)
    archs = [a for _ in range(40) for a in opt.ask(1)]  # nothing told
    assert len(archs) == len(set(archs)) == 40


def _best_at(opt, budget: int, batch: int = 1) -> float:
    drive(opt, budget=budget, batch=batch, keep_pending=0)
    assert len(opt.history.observations) == budget
    return opt.best.value


def test_rea_beats_random_search():
    rea = np.mean([_best_at(RegularizedEvolution(SPACE, POOL729, seed=s), 60) for s in range(8)])
    rnd = np.mean([_best_at(RandomSearch(SPACE, POOL729, seed=s), 60) for s in range(8)])
    assert rea > rnd


def test_gpbo_beats_random_search_on_a_linear_objective():
    fast = {"fit_maxiter": 10, "mc_samples": 32, "q_candidates": 64}
    gp = [_best_at(GPBO(SPACE, POOL729, seed=s, **fast), 60, batch=10) for s in range(3)]
    rnd = [_best_at(RandomSearch(SPACE, POOL729, seed=s), 60, batch=10) for s in range(3)]
    optimum = max(objective(a) for a in POOL729)
    assert np.mean(gp) > np.mean(rnd)
    assert max(gp) == pytest.approx(optimum)  # the one-hot GP nails a linear function


def test_gpbo_leaves_failures_out_of_the_gp_and_global_rng_alone():
    state = torch.random.get_rng_state()
    opt = GPBO(SPACE, POOL729, seed=0, n_init=4, fit_maxiter=10)
    archs = opt.ask(8)
    opt.tell(archs, [None if i % 2 else objective(a) for i, a in enumerate(archs)])
    assert len(opt.ask(2)) == 2
    assert opt.model.train_inputs[0].shape == (4, 30)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_local_search_climbs_to_a_local_optimum():
    pool = SPACE.members()
    opt = LocalSearch(SPACE, seed=2)
    drive(opt, budget=200, batch=1, keep_pending=0)
    best = opt.best
    values = {o.arch: o.value for o in opt.history.observations}
    neighbours = SPACE.neighbours(best.arch)
    assert all(n in values for n in neighbours)
    assert max(values[n] for n in neighbours) <= best.value
    # on a linear objective over a product space the local optimum is the global one
    assert best.value == pytest.approx(max(objective(a) for a in pool))


def test_transfer_rank_follows_scores():
    rng = np.random.default_rng(5)
    scores = {a: float(s) for a, s in zip(POOL64[:60], rng.normal(size=60))}
    scores[POOL64[1]] = scores[POOL64[0]]  # a tie
    scores[POOL64[2]] = float("nan")  # no score: goes last
    opt = TransferRank(SPACE, POOL64, seed=0, scores=scores)
    order = drive(opt, budget=64, batch=5, keep_pending=2)
    scored = [a for a in POOL64[:60] if a != POOL64[2]]
    assert [scores[a] for a in order[: len(scored)]] == sorted((scores[a] for a in scored), reverse=True)
    assert set(order[len(scored) :]) == {POOL64[2], *POOL64[60:]}
    assert order == drive(TransferRank(SPACE, POOL64, seed=0, scores=scores), budget=64)


def test_transfer_rank_needs_scores():
    with pytest.raises(GrabnasError, match="transfer-rank needs scores"):
        TransferRank(SPACE, POOL64)


def test_transfer_scores_by_hand():
    a, b, c, d = POOL64[:4]
    tables = [
        {a: 1.0, b: 2.0, c: 3.0},  # mean 2, population std sqrt(2/3)
        {a: 10.0, b: None, c: float("nan"), d: 30.0},  # a and d only: mean 20, std 10
        {a: 5.0, b: 5.0},  # constant: z = 0
    ]
    z = math.sqrt(1.5)  # 1 / sqrt(2/3)
    got = transfer_scores(tables)
    assert got.keys() == {a, b, c, d}
    assert got[a] == pytest.approx((-z - 1.0 + 0.0) / 3)
    assert got[b] == pytest.approx(0.0)
    assert got[c] == pytest.approx(z)
    assert got[d] == pytest.approx(1.0)
    assert transfer_scores([]) == {}


def test_registry_and_unknown_names():
    optuna_names = ["optuna-tpe", "optuna-gp", "optuna-random"]  # tests/search/test_optuna_baselines.py
    assert list(BASELINES) == NAMES + optuna_names
    assert all(cls.name == name for name, cls in BASELINES.items())
    assert isinstance(make_baseline("local", SPACE, POOL64, 0), LocalSearch)
    expected = ", ".join(NAMES + optuna_names)
    with pytest.raises(GrabnasError, match=rf"^unknown optimizer 'bogus'; expected one of {expected}$"):
        make_baseline("bogus", SPACE, POOL64, 0)
    with pytest.raises(GrabnasError, match="unknown option 'tournament' for optimizer 'rea'"):
        make_baseline("rea", SPACE, POOL64, 0, tournament=3)
    with pytest.raises(GrabnasError, match="sample_size"):
        make_baseline("rea", SPACE, POOL64, 0, population_size=3, sample_size=5)


def test_duplicate_pool_entries_are_proposed_once():
    pool = POOL64[:5] + POOL64[:5]
    for name in ("random", "rea", "local"):
        proposals = drive(make(name, pool), budget=100)
        assert sorted(proposals, key=str) == sorted(POOL64[:5], key=str)
