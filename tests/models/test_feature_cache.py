from __future__ import annotations

import torch

from grabnas.models.deep_kernel_gp import FeatureMap
from grabnas.models.feature_cache import RowCache
from grabnas.models.surrogate_config import SurrogateConfig


def _counting(fn):
    calls = []

    def compute(rows):
        calls.append(len(rows))
        return fn(rows)

    return compute, calls


def _f(rows):
    return torch.stack([rows.sum(-1), (rows**2).sum(-1)], -1)


def test_row_cache_hits_misses_versions_and_collisions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    cache = RowCache()
    compute, calls = _counting(_f)
    torch.testing.assert_close(cache.lookup(x, compute, 1), _f(x))
    assert calls == [50] and len(cache) == 50
    # the same rows again, shuffled and with repeats: no computation
    idx = torch.tensor([3, 3, 49, 0, 17])
    torch.testing.assert_close(cache.lookup(x[idx], compute, 1), _f(x[idx]))
    assert calls == [50]
    # half known, half new (one new row twice): only the new rows are computed, once stored
    y = torch.randn(10, 6, generator=g, dtype=torch.float64)
    mixed = torch.cat([x[:10], y, y[:1]])
    torch.testing.assert_close(cache.lookup(mixed, compute, 1), _f(mixed))
    assert calls == [50, 11] and len(cache) == 60
    # a new weights version empties it
    cache.lookup(x[:5], compute, 2)
    assert calls[-1] == 5 and len(cache) == 5
    # rows are compared, not only their hashes: a forced collision costs a recomputation, never a wrong value
    cache._hash = lambda rows: torch.zeros(len(rows), dtype=torch.int64)
    cache.clear()
    torch.testing.assert_close(cache.lookup(x[:3], compute, 2), _f(x[:3]))
    torch.testing.assert_close(cache.lookup(x[:3], compute, 2), _f(x[:3]))


def test_row_cache_starts_over_past_its_size():
    cache = RowCache(max_rows=20)
    compute, calls = _counting(_f)
    x = torch.randn(15, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cache.lookup(x[:10], compute, 0)
    cache.lookup(x[10:], compute, 0)
    assert len(cache) == 15
    cache.lookup(x[:10] + 1.0, compute, 0)  # 25 > 20: start over with the new rows
    assert len(cache) == 10
    torch.testing.assert_close(cache.lookup(x[:2] + 1.0, compute, 0), _f(x[:2] + 1.0))


def test_feature_map_cache_is_exact_and_never_stale():
    torch.manual_seed(0)
    fmap = FeatureMap(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5))
    x = torch.randn(2, 30, 7, dtype=torch.float64)
    with torch.no_grad():
        m0, phi0 = fmap(x)
    fmap.enable_cache()
    with torch.no_grad():
        m1, phi1 = fmap(x)
        m2, phi2 = fmap(x[1])
    assert m1.shape == (2, 30) and phi1.shape == (2, 30, 5) and len(fmap.cache) == 60
    torch.testing.assert_close((m1, phi1), (m0, phi0))
    torch.testing.assert_close((m2, phi2), (m0[1], phi0[1]))
    assert fmap.cache.hits == 30
    # with gradients the cache is bypassed: gradients reach the inputs and the weights
    xg = x[0].clone().requires_grad_(True)
    m, _ = fmap(xg)
    m.sum().backward()
    assert xg.grad is not None and fmap.mean_head.weight.grad is not None
    # a training step changes the weights: the next no-gradient call is computed anew
    torch.optim.SGD(fmap.parameters(), lr=0.5).step()
    with torch.no_grad():
        m3, _ = fmap(x)
        fmap.cache = None
        m4, _ = fmap(x)
    torch.testing.assert_close(m3, m4)
    assert not torch.allclose(m3, m0)


def test_a_repeated_whole_batch_is_served_from_the_recent_batches_without_aliasing():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    cache = RowCache(recent_batches=2)
    compute, calls = _counting(_f)
    first = cache.lookup(x, compute, 0)
    cache._lookup_rows = None  # an equal batch must not reach the row-by-row lookup at all
    again = cache.lookup(x.clone(), compute, 0)
    torch.testing.assert_close(again, _f(x))
    assert calls == [40] and cache.hits == 40
    # neither the caller's output nor its input rows are the memo's: changing them in place changes nothing
    original = x.clone()
    first.zero_()
    again.zero_()
    x += 1.0
    del cache._lookup_rows  # back to the class's method
    torch.testing.assert_close(cache.lookup(original, compute, 0), _f(original))
    assert calls == [40]
    torch.testing.assert_close(cache.lookup(x, compute, 0), _f(x))  # the changed rows are new rows
    assert calls == [40, 40]
    # a new weights version forgets the batches too
    cache.lookup(x, compute, 1)
    assert calls == [40, 40, 40]


def test_recent_batches_stay_within_their_row_budget():
    g = torch.Generator().manual_seed(3)
    cache = RowCache(recent_batches=4, recent_rows=50)
    compute, calls = _counting(_f)
    big = torch.randn(60, 3, generator=g, dtype=torch.float64)
    cache.lookup(big, compute, 0)
    assert cache._recent == []  # larger than the budget: not kept whole (its rows are cached one by one)
    parts = [torch.randn(20, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    for part in parts:
        cache.lookup(part, compute, 0)
    assert [len(r) for r, _ in cache._recent] == [20, 20]  # the oldest went first
    torch.testing.assert_close(cache.lookup(big, compute, 0), _f(big))
    torch.testing.assert_close(cache.lookup(parts[0], compute, 0), _f(parts[0]))
    assert calls == [60, 20, 20, 20]  # every later lookup was served, whole or row by row
