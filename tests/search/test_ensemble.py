import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.search.ensemble import EnsembleLatentSurrogate, MixtureModel


def _gp(seed: int, n: int = 8, d: int = 3):
    from botorch.models import SingleTaskGP

    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    Y = torch.sin(6 * X.sum(-1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return SingleTaskGP(X, Y).eval()


def test_mixture_moments_match_the_mixture():
    a, b = _gp(0), _gp(1)
    mix = MixtureModel([a, b])
    X = torch.rand(5, 1, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pa, pb, pm = a.posterior(X), b.posterior(X), mix.posterior(X)
    mean = (pa.mean + pb.mean) / 2
    var = (pa.variance + pa.mean**2 + pb.variance + pb.mean**2) / 2 - mean**2
    torch.testing.assert_close(pm.mean, mean)
    torch.testing.assert_close(pm.variance, var)
    # joint: the mixture's covariance, of which the marginals above are the diagonal
    Xq = X.reshape(1, 5, 3)
    ja, jb, jm = a.posterior(Xq), b.posterior(Xq), mix.posterior(Xq)
    ma, mb = ja.mean.squeeze(-1), jb.mean.squeeze(-1)
    m = (ma + mb) / 2
    outer = lambda v: v.unsqueeze(-1) * v.unsqueeze(-2)  # noqa: E731
    cov = (ja.distribution.covariance_matrix + outer(ma) + jb.distribution.covariance_matrix + outer(mb)) / 2 - outer(m)
    torch.testing.assert_close(jm.distribution.covariance_matrix, cov)
    torch.testing.assert_close(jm.variance.reshape(-1), var.reshape(-1))
    torch.linalg.cholesky(jm.distribution.covariance_matrix)  # PSD


def test_a_mixture_of_one_model_twice_is_that_model_and_is_differentiable():
    a = _gp(3)
    X = torch.rand(4, 1, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64).requires_grad_(True)
    pm, pa = MixtureModel([a, a]).posterior(X), a.posterior(X)
    torch.testing.assert_close(pm.mean, pa.mean)
    torch.testing.assert_close(pm.variance, pa.variance)
    (grad,) = torch.autograd.grad(pm.variance.sum() + pm.mean.sum(), X)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_ensemble_surrogate_needs_two_members():
    with pytest.raises(GrabnasError, match="at least two surrogates, got 1"):
        EnsembleLatentSurrogate([object()])
    with pytest.raises(GrabnasError, match="at least one model"):
        MixtureModel([])


def test_ensemble_of_the_same_checkpoint_twice_searches_like_it(nb201_bench):
    from grabnas.search.registry import build_optimizer

    single = build_optimizer("grabnas[surrogate=nb201-no-{group},t_bo=3]", nb201_bench, "cifar100", seed=0)
    double = build_optimizer(
        "grabnas[surrogate=nb201-no-{group}+nb201-no-{group},t_bo=3]", nb201_bench, "cifar100", seed=0
    )
    assert isinstance(double.surrogate, EnsembleLatentSurrogate)
    assert [m["checkpoint"] for m in double.surrogate_card["ensemble"]] == ["nb201-no-cifar100"] * 2
    assert double.settings()["surrogate_weights"] != single.settings()["surrogate_weights"]
    for _ in range(6):  # zero-shot design, global steps, then local steps (t_bo=3)
        a, b = single.ask(1), double.ask(1)
        assert a == b
        values = [nb201_bench.value(x, "cifar100") for x in a]
        single.tell(a, values)
        double.tell(b, values)
    # (the feature map runs on differently composed batches: equal up to float rounding)
    assert double.surrogate.task_weights == pytest.approx(single.surrogate.task_weights, rel=1e-4)
    with pytest.raises(GrabnasError, match="expected CHECKPOINT or an ensemble CHECKPOINT"):
        build_optimizer("grabnas[surrogate=nb201-no-{group}++x.pt]", nb201_bench, "cifar100", seed=0)
    with pytest.raises(GrabnasError, match="saw the group 'cifar100'"):
        build_optimizer("grabnas[surrogate=nb201-no-{group}+nb201-no-cifar10]", nb201_bench, "cifar100", seed=0)
