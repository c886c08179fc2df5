"""The no-harm guard: closed-form leave-one-out means, and GraB-NAS following the better model."""

import numpy as np
import pytest
import torch

from grabnas.search.guard import loo_means, loo_rank_score, plain_beats_meta, spearman


def _gp(X, y):
    from botorch.models import SingleTaskGP

    gp = SingleTaskGP(X, y.unsqueeze(-1), outcome_transform=None)
    gp.covar_module.lengthscale = 0.7  # BoTorch's default kernel: an RBF with dimension-scaled prior
    gp.likelihood.noise = 0.05
    return gp.eval()


def test_loo_means_equal_refitting_without_each_point():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 3, generator=g, dtype=torch.float64)
    y = torch.sin(6 * X[:, 0]) + X[:, 1] + 0.1 * torch.randn(12, generator=g, dtype=torch.float64)
    gp = _gp(X, y)
    got = loo_means(gp)
    for i in range(12):
        keep = torch.arange(12) != i
        other = _gp(X[keep], y[keep])
        other.load_state_dict(gp.state_dict(), strict=False)  # the same hyperparameters
        other.set_train_data(X[keep], y[keep], strict=False)
        with torch.no_grad():
            want = other.posterior(X[i : i + 1]).mean.reshape(())
        torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-6)
    assert loo_rank_score(gp) == pytest.approx(spearman(got, y))


def test_the_plain_gp_needs_clear_evidence():
    assert not plain_beats_meta(0.8, 0.6, 10)  # 10 observations: not enough to overrule the prior
    assert plain_beats_meta(0.9, 0.6, 40) and plain_beats_meta(0.95, 0.2, 10)
    assert not plain_beats_meta(0.99, 0.0, 3) and not plain_beats_meta(0.5, 0.5, 50)


def test_spearman_edge_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0 and spearman([1, 2], [2, 1]) == 0.0


def test_guarded_grabnas_follows_the_better_model_and_stays_deterministic(nb201_bench):
    from grabnas.search.registry import build_optimizer

    def run():
        opt = build_optimizer("grabnas[guard=4]", nb201_bench, "cifar10", seed=5)
        asked = []
        for _ in range(9):
            archs = opt.ask(1)
            assert len(archs) == 1 and archs[0] not in asked
            asked += archs
            opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
        return opt, asked

    opt, asked = run()
    assert [g["n"] for g in opt.guard_log] == [4, 5, 6, 7, 8]
    for g in opt.guard_log:
        assert -1 <= g["meta"] <= 1 and -1 <= g["plain"] <= 1
        assert g["follow"] == ("plain" if plain_beats_meta(g["plain"], g["meta"], g["n"]) else "meta")
    assert run()[1] == asked  # a resumed study replays it exactly
    off = build_optimizer("grabnas", nb201_bench, "cifar10", seed=5)
    assert off.guard_log == [] and off._plain is None
    assert np.isfinite([g["meta"] for g in opt.guard_log]).all()
