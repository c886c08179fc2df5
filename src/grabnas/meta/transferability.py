"""How far a meta-training corpus's tasks predict one another (:func:`heldout_residual_fraction`):
the share of a left-out dataset's variance that the other datasets' mean ranking leaves
unexplained, the corpus's own estimate of how much a new task will differ from the prior."""

from __future__ import annotations

from functools import reduce

import numpy as np

from grabnas.meta.corpus import Corpus
from grabnas.models.value_maps import rank_gauss


def normal_scores(values: np.ndarray) -> np.ndarray:
    """``(n,)`` normal scores of ``(n,)`` values (:func:`grabnas.models.value_maps.rank_gauss`)."""
    return rank_gauss(np.asarray(values, dtype=np.float64)).numpy()


def heldout_residual_fraction(corpus: Corpus, min_common: int = 10) -> float | None:
    """Mean over the corpus's groups of ``1 - max(rho_g, 0)^2``, where ``rho_g`` is the Pearson
    correlation between group ``g``'s normal scores and the mean normal scores of the other
    groups' tasks, over the architectures every main-fidelity task has a value for.

    It is the share of a left-out dataset's variance (in normal-score units) that the other
    datasets' consensus does not explain: 0.04-0.09 on NAS-Bench-201's leave-one-dataset-out
    corpora, 0.71-0.79 on NAS-Bench-Graph's. None with fewer than two groups or ``min_common`` shared architectures
    (e.g. a corpus whose tasks sample different cells)."""
    main = [t for t in corpus.tasks if t.fidelity is None]
    groups = sorted({t.group for t in main})
    if len(groups) < 2:
        return None
    common = reduce(np.intersect1d, [t.index for t in main])
    if len(common) < min_common:
        return None
    scores = {t.name: normal_scores(t.values[np.searchsorted(t.index, common)]) for t in main}
    fractions = []
    for g in groups:
        own = np.mean([scores[t.name] for t in main if t.group == g], axis=0)
        rest = np.mean([scores[t.name] for t in main if t.group != g], axis=0)
        if own.std() == 0 or rest.std() == 0:
            continue
        rho = float(np.corrcoef(own, rest)[0, 1])
        fractions.append(1.0 - max(rho, 0.0) ** 2)
    return float(np.mean(fractions)) if fractions else None


def card_heldout_residual(card: dict, corpus: Corpus | None = None) -> float | None:
    """A surrogate card's ``heldout_residual``; for a card written before cards had it, the
    fraction of the tasks of the groups the card saw (what it was meta-trained on), read from
    ``corpus`` when it holds them all, else from the card's own corpus spec (``card["corpus"]``,
    e.g. ``nb201+images-nb201`` for a search on a dataset outside the benchmark); None when
    neither holds them."""
    if "heldout_residual" in card:
        return card["heldout_residual"]
    seen = set(card.get("groups_seen", []))
    if not seen:
        return None
    if corpus is None or not seen <= set(corpus.groups):
        corpus = _card_corpus(card)
        if corpus is None or not seen <= set(corpus.groups):
            return None
    return heldout_residual_fraction(corpus.without_groups(sorted(set(corpus.groups) - seen)))


def _card_corpus(card: dict) -> Corpus | None:
    """The corpus a card names (``card["corpus"]``), or None when it names none or it cannot be
    loaded here (a user's CSV that moved, a benchmark table that is not installed)."""
    from grabnas.meta.corpus import load_corpus

    spec = card.get("corpus")
    if not spec:
        return None
    try:
        return load_corpus(spec)
    except (ValueError, OSError):  # GrabnasError is a ValueError: a bad or missing table
        return None


__all__ = ["card_heldout_residual", "heldout_residual_fraction", "normal_scores"]
