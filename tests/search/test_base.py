"""The ask/tell contract of :class:`grabnas.search.base.Optimizer` and its history."""

import pytest

from grabnas.errors import GrabnasError
from grabnas.search.baselines import RandomSearch


def test_history_tracks_pending_told_and_failed(nb201_space):
    opt = RandomSearch(nb201_space, pool=nb201_space.members()[:20], seed=1)
    a = opt.ask(3)
    assert len(set(a)) == 3 and opt.history.pending == a and opt.history.tried == set(a)
    opt.tell(a[:2], [1.0, float("nan")])  # NaN is a failure
    assert opt.history.pending == a[2:] and opt.history.tried == set(a)
    archs, values = opt.history.successes()
    assert archs == [a[0]] and values.tolist() == [1.0] and opt.best.arch == a[0]
    assert [o.value for o in opt.history.observations] == [1.0, None]
    tried = opt.history.tried
    tried.add(nb201_space.members()[19])  # a copy: changing it changes nothing
    assert opt.history.tried == set(a)
    rest = opt.ask(100)
    assert len(rest) == 17 and not set(rest) & set(a)  # the pool runs out: fewer than asked
    assert opt.ask(1) == []


def test_contract_errors(nb201_space):
    opt = RandomSearch(nb201_space, seed=0)
    with pytest.raises(GrabnasError, match="ask\\(n\\) needs n >= 1, got 0"):
        opt.ask(0)
    a = opt.ask(2)
    with pytest.raises(GrabnasError, match="tell got 2 architectures but 1 values"):
        opt.tell(a, [1.0])
    with pytest.raises(GrabnasError, match="the candidate pool is empty"):
        RandomSearch(nb201_space, pool=[], seed=0)
