"""A cache of a module's outputs by input row, for evaluating the same inputs again and again.

A search scores the whole candidate pool with the surrogate every iteration, and the surrogate's
feature map (an MLP on ``concat[d, z]``, evaluated at the task's own embedding and, for the task
term, at every meta-training task's) gives the same outputs for the same rows each time.
:class:`RowCache` keeps them: rows are keyed by a 64-bit hash of their bits, hits are confirmed
by comparing the stored row itself (so a hash collision can only cost a recomputation), misses are
computed in one batch and added. Outputs equal the module's up to floating-point rounding (a
batched matrix product may round differently for a different batch).

A search also asks for the same whole batch several times in one step (the pool's mean, its
cross- and self-covariance): the last few batches are kept as they are (copies of their rows and
outputs), so a batch equal to one of them, element by element, costs one comparison instead of a
lookup per row.

The owner decides when the cache applies (no gradients wanted) and passes a ``version`` token
that changes whenever the weights do; a new token empties the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class RowCache:
    """Outputs ``(n, width)`` of a row-wise function by input row ``(n, D)`` (float64 rows).

    Args:
        max_rows: rows kept at most; when an addition would pass it the cache starts over.
        seed: seed of the random hash coefficients.
        recent_batches: whole batches kept as they are, at most ...
        recent_rows: ... holding this many rows in all (the oldest go first; a larger batch is
            not kept), which bounds their copies' memory (300,000 rows of 24 inputs and 17
            outputs: 98 MB).
    """

    def __init__(
        self, max_rows: int = 2_000_000, seed: int = 0, recent_batches: int = 4, recent_rows: int = 300_000
    ) -> None:
        self.max_rows = int(max_rows)
        self.recent_batches = int(recent_batches)
        self.recent_rows = int(recent_rows)
        self._gen = torch.Generator().manual_seed(seed)
        self._coef: Tensor | None = None  # (D,) odd int64 coefficients
        self.version: object = None
        self.clear()

    def clear(self) -> None:
        # two sorted levels: a large main table and a small recent one (merged into the main one
        # once it grows past an eighth of it), so a handful of new rows never re-sorts everything
        self._levels: list[tuple[Tensor, Tensor, Tensor]] = []  # (keys, rows, values), keys sorted
        self._recent: list[tuple[Tensor, Tensor]] = []  # (rows, outputs) of the last batches, newest last
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(int(k.numel()) for k, _, _ in self._levels)

    def _hash(self, rows: Tensor) -> Tensor:
        """``(n,)`` int64 hashes of ``(n, D)`` float64 rows (a random linear form of their bits,
        with int64 wrap-around)."""
        if self._coef is None or self._coef.numel() != rows.shape[-1]:
            self._coef = torch.randint(-(2**62), 2**62, (rows.shape[-1],), generator=self._gen) * 2 + 1
            self.clear()
        bits = rows.contiguous().view(torch.int64)
        return (bits * self._coef).sum(-1)

    def lookup(self, rows: Tensor, compute: Callable[[Tensor], Tensor], version: object) -> Tensor:
        """``(n, width)`` outputs for ``(n, D)`` float64 ``rows``: cached where the row is known,
        else ``compute(missing_rows)`` (also stored). ``version`` identifies the weights."""
        if version != self.version:
            self.clear()
            self.version = version
        rows = rows.detach()
        for i, (stored, values) in enumerate(self._recent):
            if stored.shape == rows.shape and torch.equal(stored, rows):
                self._recent.append(self._recent.pop(i))
                self.hits += len(rows)
                return values.clone()
        out = self._lookup_rows(rows, compute)
        if len(rows) <= self.recent_rows:
            self._recent.append((rows.clone(), out.clone()))
            del self._recent[: -self.recent_batches]
            while sum(len(r) for r, _ in self._recent) > self.recent_rows:
                self._recent.pop(0)
        return out

    def _lookup_rows(self, rows: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """:meth:`lookup` row by row (hash, sorted levels, computation of the missing rows)."""
        keys = self._hash(rows)
        out: Tensor | None = None
        hit = torch.zeros(len(rows), dtype=torch.bool)
        for lkeys, lrows, lvalues in self._levels:
            pos = torch.searchsorted(lkeys, keys).clamp(max=len(lkeys) - 1)
            found = ~hit & (lkeys[pos] == keys) & (lrows[pos] == rows).all(-1)
            if found.any():
                if out is None:
                    out = lvalues.new_empty(len(rows), lvalues.shape[-1])
                out[found] = lvalues[pos[found]]
                hit |= found
        miss = ~hit
        n_miss = int(miss.sum())
        self.hits += len(rows) - n_miss
        self.misses += n_miss
        if n_miss == 0:
            return out
        new = compute(rows[miss]).detach()
        if out is None:
            out = new.new_empty(len(rows), new.shape[-1])
        out[miss] = new
        self._add(keys[miss], rows[miss], new)
        return out

    def _add(self, keys: Tensor, rows: Tensor, values: Tensor) -> None:
        if len(self) + len(keys) > self.max_rows:
            self._levels = []
        if len(self._levels) == 2:
            main, recent = self._levels
            if len(recent[0]) + len(keys) > max(1024, len(main[0]) // 8):
                self._levels = [_merge(main, recent)]
        if len(self._levels) < 2:
            self._levels.append(_merge((keys, rows, values)))
        else:
            self._levels[1] = _merge(self._levels[1], (keys, rows, values))


def _merge(*parts: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """One level from several: sorted by key, one entry per key (a repeated row or, rarely, a
    hash collision keeps the first; the other is then recomputed whenever asked for)."""
    keys = torch.cat([p[0] for p in parts])
    rows = torch.cat([p[1] for p in parts])
    values = torch.cat([p[2] for p in parts])
    order = torch.argsort(keys, stable=True)
    keys, rows, values = keys[order], rows[order], values[order]
    keep = torch.ones(len(keys), dtype=torch.bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep], rows[keep], values[keep]


__all__ = ["RowCache"]
