"""Which model proposes next: Thompson sampling between the meta-learned model and a plain GP.

Transfer must never make a search much worse than no transfer. The guard
(:mod:`grabnas.search.guard`) asked which model *predicts* the observations better; where the
observations cluster at the prior's top both predictions are noise, and the guard rarely switched
when it should have. The portfolio judges the models by what their *proposals* turned out to be.

Each successful observation belongs to the arm that proposed it: ``meta`` (GraB-NAS's own
proposals) or ``plain`` (GP-BO's proposal: a GP on the one-hot encoding fitted to all
observations). Each arm's success rate gets a ``Beta(1 + successes, 1 + failures)`` posterior;
every ask draws once from each and follows the larger draw (Thompson sampling for a two-armed
Bernoulli bandit, Thompson 1933; the portfolio idea of GP-Hedge, Hoffman et al. 2011, judged on
observed instead of predicted values). What counts as a success (at a tie: half a success):

* ``pooled`` (:func:`arm_counts`): the observation lies above the median of all observations so
  far; the initial design counts for ``meta``. Late observations of an improving search beat
  the pooled median more often, so the arm that only proposes late (``plain``) is favoured.
* ``running`` (:func:`running_counts`): the observation lies above the median of the
  observations told before it, and only proposals made since the portfolio started count: both
  arms are judged against the same moving bar, at the same time.

Where the prior is right, its proposals land above the median and a plain arm whose proposals
land below it is drawn about once or twice in all (``P(Beta(1, 1 + k) > 1/2) = 2^-(k+1)``).
Where it misleads, the plain GP's proposals win and take over the search.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

import numpy as np


def arm_counts(values_by_arm: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """``{arm: (successes, failures)}`` of each arm's ``(n_arm,)`` observed values against the
    median of all of them (above: 1 success; equal: half of each; below: 1 failure)."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values_by_arm.values()])
    if pooled.size == 0:
        return {arm: (0.0, 0.0) for arm in values_by_arm}
    median = float(np.median(pooled))
    out = {}
    for arm, values in values_by_arm.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        ties = float(np.sum(v == median))
        out[arm] = (float(np.sum(v > median)) + ties / 2, float(np.sum(v < median)) + ties / 2)
    return out


def running_counts(values: np.ndarray, arms: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """``{arm: (successes, failures)}`` for ``names``: observation ``i`` of the ``(n,)`` values in
    the order they were told is a success of its arm ``arms[i]`` when it lies above the median of
    ``values[:i]`` (equal: half of each). Observations whose arm is not in ``names`` (e.g. the
    initial design) and the first observation are not scored, but raise the bar for later ones."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    out = {arm: [0.0, 0.0] for arm in names}
    seen: list[float] = []  # values[:i], sorted: each bar is one lookup, not a new median
    for i, value in enumerate(values.tolist()):
        if i and arms[i] in out:
            half = i // 2
            bar = seen[half] if i % 2 else (seen[half - 1] + seen[half]) / 2
            s = 1.0 if value > bar else 0.5 if value == bar else 0.0
            out[arms[i]][0] += s
            out[arms[i]][1] += 1.0 - s
        bisect.insort(seen, value)
    return {arm: (s, f) for arm, (s, f) in out.items()}


def thompson_arm(counts: Mapping[str, tuple[float, float]], rng: np.random.Generator) -> tuple[str, dict]:
    """The arm to follow and what decided it, from ``{arm: (successes, failures)}`` (e.g.
    :func:`arm_counts` or :func:`running_counts`): one ``Beta(1 + s, 1 + f)`` draw per arm (in the
    mapping's order, from ``rng``), the largest wins (the first on a tie).

    Returns ``(arm, record)`` with ``record = {arm: {"s", "f", "draw"}}``."""
    if not counts:
        raise ValueError("thompson_arm needs at least one arm")
    record = {}
    for arm, (s, f) in counts.items():
        record[arm] = {"s": s, "f": f, "draw": float(rng.beta(1.0 + s, 1.0 + f))}
    best = max(record, key=lambda a: record[a]["draw"])
    return best, record


__all__ = ["arm_counts", "running_counts", "thompson_arm"]
