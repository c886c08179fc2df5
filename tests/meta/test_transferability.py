"""The corpus's own estimate of how much a left-out dataset differs from the others."""

from __future__ import annotations

import numpy as np
import pytest

from grabnas.meta.corpus import Corpus, CorpusTask, benchmark_corpus
from grabnas.meta.transferability import card_heldout_residual, heldout_residual_fraction, normal_scores
from grabnas.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def _task(name, values, index=None, group=None, fidelity=None):
    index = np.arange(len(values)) if index is None else np.asarray(index)
    return CorpusTask(name, group or name, index.astype(np.int64), np.asarray(values, dtype=np.float64), fidelity)


def test_normal_scores_are_symmetric_ranks():
    s = normal_scores(np.array([3.0, 1.0, 2.0, 10.0]))
    assert np.argsort(s).tolist() == [1, 2, 0, 3]
    assert s.sum() == pytest.approx(0.0, abs=1e-12)


def test_identical_datasets_leave_nothing_unexplained_and_unrelated_ones_everything(space):
    rng = np.random.default_rng(0)
    base = rng.normal(size=500)
    same = Corpus(space, [_task("a", base), _task("b", 2 * base + 1), _task("c", np.exp(base))])
    assert heldout_residual_fraction(same) == pytest.approx(0.0, abs=1e-9)
    unrelated = Corpus(space, [_task(n, rng.normal(size=500)) for n in "abc"])
    assert heldout_residual_fraction(unrelated) == pytest.approx(1.0, abs=0.03)
    reversed_ = Corpus(space, [_task("a", base), _task("b", -base)])  # anti-correlated: nothing transfers
    assert heldout_residual_fraction(reversed_) == pytest.approx(1.0)


def test_a_known_correlation_gives_one_minus_its_square(space):
    rng = np.random.default_rng(1)
    x = rng.normal(size=15000)
    y = 0.6 * x + 0.8 * rng.normal(size=15000)  # correlation 0.6
    assert heldout_residual_fraction(Corpus(space, [_task("a", x), _task("b", y)])) == pytest.approx(0.64, abs=0.02)


def test_only_main_fidelity_and_shared_architectures_count(space):
    rng = np.random.default_rng(2)
    base = rng.normal(size=300)
    tasks = [
        _task("a", base),
        _task("b", base[50:], index=np.arange(50, 300)),  # shares 250 cells with a
        _task("a@12ep", rng.normal(size=300), group="a", fidelity="12ep"),  # ignored
    ]
    assert heldout_residual_fraction(Corpus(space, tasks)) == pytest.approx(0.0, abs=1e-9)
    assert heldout_residual_fraction(Corpus(space, tasks[:1])) is None  # one group
    apart = [_task("a", base[:5]), _task("b", base[5:10], index=np.arange(5, 10))]
    assert heldout_residual_fraction(Corpus(space, apart)) is None  # no shared cells


def test_nb201_datasets_predict_each_other_far_better_than_nas_bench_graphs(nb201_bench):
    nb201 = heldout_residual_fraction(benchmark_corpus(nb201_bench))
    assert 0.03 < nb201 < 0.2


def test_a_card_without_the_field_reads_the_corpus_it_names(space, tmp_path):
    """An old card: the fraction of the seen groups' tasks, from the corpus passed when it holds
    them, else from the card's own corpus spec; None when neither can be read."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=200)
    values = {"a": base, "b": base + rng.normal(size=200), "c": rng.normal(size=200)}
    table = tmp_path / "t.csv"
    table.write_text(
        "arch,"
        + ",".join(values)
        + "\n"
        + "".join(
            f"{m.to_string()}," + ",".join(f"{values[t][i]:.6f}" for t in values) + "\n"
            for i, m in enumerate(space.members()[:200])
        )
    )
    from grabnas.meta.corpus import load_corpus

    corpus = load_corpus(f"csv:{table}")
    card = {"groups_seen": ["a", "b"], "corpus": f"csv:{table}"}
    expected = heldout_residual_fraction(corpus.without_groups(["c"]))
    assert card_heldout_residual(card, corpus) == pytest.approx(expected)
    assert card_heldout_residual(card) == pytest.approx(expected)  # from its own spec
    assert card_heldout_residual(card, corpus.without_groups(["a"])) == pytest.approx(expected)
    assert card_heldout_residual({**card, "corpus": f"csv:{tmp_path / 'gone.csv'}"}) is None
    assert card_heldout_residual({**card, "heldout_residual": 0.5}) == 0.5
