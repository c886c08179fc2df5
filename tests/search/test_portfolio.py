"""The portfolio: Thompson sampling between GraB-NAS's and GP-BO's proposals by their observed values."""

import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.search.portfolio import arm_counts, running_counts, thompson_arm


def test_arm_counts_score_each_observation_against_the_pooled_median():
    counts = arm_counts({"meta": np.array([5.0, 4.0, 1.0]), "plain": np.array([3.0, 2.0])})
    # pooled median 3: meta has 2 above and 1 below; plain's 3 is a tie (half each), 2 is below
    assert counts == {"meta": (2.0, 1.0), "plain": (0.5, 1.5)}
    assert arm_counts({"meta": np.array([]), "plain": np.array([])}) == {"meta": (0.0, 0.0), "plain": (0.0, 0.0)}
    assert arm_counts({"meta": np.array([1.0, 2.0]), "plain": np.array([])}) == {
        "meta": (1.0, 1.0),
        "plain": (0.0, 0.0),
    }


def test_running_counts_judge_each_observation_against_the_median_before_it():
    values = np.array([1.0, 5.0, 2.0, 3.0, 0.0, 4.0])
    arms = np.array(["init", "init", "meta", "plain", "plain", "meta"])
    # bars: 2.0 -> median(1,5)=3: meta fails; 3.0 -> median(1,5,2)=2: plain wins;
    # 0.0 -> median(1,5,2,3)=2.5: plain fails; 4.0 -> median(1,5,2,3,0)=2: meta wins
    assert running_counts(values, arms, ("meta", "plain")) == {"meta": (1.0, 1.0), "plain": (1.0, 1.0)}
    tie = running_counts(np.array([1.0, 3.0, 2.0]), np.array(["init", "init", "meta"]), ("meta", "plain"))
    assert tie == {"meta": (0.5, 0.5), "plain": (0.0, 0.0)}


def test_an_arm_whose_proposals_lose_is_rarely_followed():
    """A plain arm with k proposals all below the median of a 50/50 meta record is drawn with
    probability P(Beta(1, 1+k) > Beta(s+1, s+1)) (~2^-(k+1)); a winning plain arm takes over."""
    rng = np.random.default_rng(0)
    meta = np.arange(20.0)  # 10 above, 10 below its own median
    losing = arm_counts({"meta": meta, "plain": np.full(4, -1.0)})
    share = np.mean([thompson_arm(losing, rng)[0] == "plain" for _ in range(4000)])
    want = np.mean(
        rng.beta(1, 6, 200_000) > rng.beta(1 + 12, 1 + 12, 200_000)
    )  # meta's record with the plain arm pooled
    assert share == pytest.approx(want, abs=0.01) and share < 0.05
    winning = arm_counts({"meta": meta, "plain": np.full(6, 100.0)})
    assert np.mean([thompson_arm(winning, rng)[0] == "plain" for _ in range(2000)]) > 0.9


def test_thompson_arm_is_reproducible_and_logs_its_record():
    values = arm_counts({"meta": np.array([1.0, 3.0]), "plain": np.array([2.0])})
    a = thompson_arm(values, np.random.default_rng(3))
    assert a == thompson_arm(values, np.random.default_rng(3))
    arm, record = a
    assert set(record) == {"meta", "plain"} and record[arm]["draw"] == max(r["draw"] for r in record.values())
    assert record["meta"]["s"] == 1.0 and record["plain"]["s"] == 0.5
    with pytest.raises(ValueError, match="at least one arm"):
        thompson_arm({}, np.random.default_rng(0))


@pytest.mark.parametrize(
    "reward,arm", [("running", "gpbo"), ("pooled", "gpbo"), ("running", "random"), ("running", "far")]
)
def test_portfolio_grabnas_follows_the_drawn_arm_and_replays_exactly(nb201_bench, cifar10_asks, reward, arm):
    """From ask ``portfolio`` on each ask is logged with the arm it followed; a plain ask is GP-BO's
    proposal on the shared observations; a replay (a resumed study) proposes the same."""
    from grabnas.search.registry import build_optimizer

    def run(spec, seed=5, asks=10):
        return cifar10_asks(spec, seed, asks)

    spec = f"grabnas[portfolio=4,portfolio_reward={reward},portfolio_arm={arm}]"
    opt, asked = run(spec)
    assert [p["ask"] for p in opt.portfolio_log] == list(range(4, 10))
    assert {p["follow"] for p in opt.portfolio_log} == {"meta", "plain"}  # this seed draws both
    for p in opt.portfolio_log:
        assert p["follow"] == max(("meta", "plain"), key=lambda a: p[a]["draw"])
        scored = p["meta"]["s"] + p["meta"]["f"] + p["plain"]["s"] + p["plain"]["f"]
        assert scored == (p["n"] if reward == "pooled" else p["ask"] - 4)  # running: only since ask 4
    arms = [opt._arm_of[a] for a in asked]
    assert arms[:4] == ["init"] * 4 and arms[4:] == [p["follow"] for p in opt.portfolio_log]
    assert run(spec)[1] == asked
    assert opt.guard_log == []  # the portfolio alone never turns the guard on
    if arm in ("random", "far"):  # no GP-BO model: before the portfolio starts, the default's asks for the seed
        assert opt._plain is None
        assert run("grabnas", asks=4)[1] == asked[:4]
    assert all(a in opt._pool_index for a, which in zip(asked, arms) if which == "plain")
    off = build_optimizer("grabnas", nb201_bench, "cifar10", seed=5)
    assert off.portfolio_log == [] and off._plain is None
    with pytest.raises(GrabnasError, match="portfolio must be >= 0"):
        build_optimizer("grabnas[portfolio=-1]", nb201_bench, "cifar10", seed=0)
    with pytest.raises(GrabnasError, match="portfolio_reward 'best' is unknown; expected one of running, pooled"):
        build_optimizer("grabnas[portfolio_reward=best]", nb201_bench, "cifar10", seed=0)


def test_finetune_arm_chooses_between_the_meta_learned_and_the_finetuned_map(nb201_bench):
    """``portfolio_arm=finetune``: both arms are GraB-NAS's own proposals; an ask that follows the
    ``plain`` arm fits with the fine-tuned feature map, a ``meta`` ask (and every ask before the
    portfolio starts) without it, so the first asks are the default's; a replay proposes the same."""
    from grabnas.search.registry import build_optimizer

    spec = "grabnas[finetune=5,finetune_start=3,finetune_refit=false,portfolio=3,portfolio_arm=finetune]"

    def run(spec, seed=5, asks=9):
        opt = build_optimizer(spec, nb201_bench, "cifar10", seed=seed)
        flags, fit = [], opt.surrogate.fit

        def recorded(z, y, **options):
            flags.append(options.get("finetuned"))
            return fit(z, y, **options)

        opt.surrogate.fit = recorded
        asked = []
        for _ in range(asks):
            archs = opt.ask(1)
            asked += archs
            opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
        return opt, asked, flags

    opt, asked, flags = run(spec)
    follows = [p["follow"] for p in opt.portfolio_log]
    assert [p["ask"] for p in opt.portfolio_log] == list(range(3, 9)) and set(follows) == {"meta", "plain"}
    model_fits = [f for f in flags if f is not None]  # the zero-shot prior's fit passes no flag
    assert model_fits == [False] * (len(model_fits) - 6) + [f == "plain" for f in follows]
    assert [opt._arm_of[a] for a in asked] == ["init"] * 3 + follows
    assert run(spec)[1] == asked
    assert run("grabnas", asks=3)[1] == asked[:3]
    with pytest.raises(GrabnasError, match="portfolio_arm=finetune needs portfolio > 0, finetune > 0"):
        build_optimizer(
            "grabnas[finetune=5,finetune_refit=true,portfolio=3,portfolio_arm=finetune]", nb201_bench, "cifar10", seed=0
        )
