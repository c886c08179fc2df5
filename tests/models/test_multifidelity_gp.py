import torch

from grabnas.models.multifidelity_gp import MultiFidelityTargetGP, fit_multifidelity_gp
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig


def test_the_multifidelity_gp_reads_the_fidelity():
    """A cell's low-fidelity value moves its predicted target-fidelity value (across fidelities,
    through the meta-learned kernel), per-fidelity offsets are fitted, and the incumbent is the
    best *target-fidelity* observation (None before there is one)."""
    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, fidelities=("12ep",)))
    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    with torch.no_grad():
        d = [sur.task_embedding(None, "12ep"), sur.task_embedding()]

    def X(zz, f):
        f = torch.as_tensor(f).expand(zz.shape[0])
        return torch.cat([torch.stack(d)[f], zz, f.unsqueeze(-1).to(DTYPE)], -1)

    fid = torch.tensor([0] * 20 + [1] * 6)
    inputs = torch.cat([X(z[:20], 0), X(z[:6], 1)])
    base = torch.linspace(0, 1, 20, dtype=DTYPE)
    probe = X(z[19:20], 1)  # cell 19: low fidelity observed, target not
    means = []
    for low19 in (base[19] + 5, base[19] - 5):
        low = base.clone()
        low[19] = low19
        y = torch.cat([60 + 10 * low, 90 + low[:6]])
        gp = fit_multifidelity_gp(sur, inputs, y, fid, 2, seed=0)
        assert isinstance(gp, MultiFidelityTargetGP)
        with torch.no_grad():
            means.append(float(gp.posterior(probe).mean))
    assert means[0] > means[1]  # a better screen, a better prediction at the target fidelity
    hp = gp.fitted_hyperparameters
    assert {"offset_fidelity_0", "offset_fidelity_1", "scale_fidelity_1", "cross_fidelity_rho"} <= set(hp)
    assert float(gp.best_f) == float(gp.train_targets[fid == 1].max())
    only_low = fit_multifidelity_gp(sur, inputs[:20], y[:20], fid[:20], 2, seed=0)
    assert only_low.best_f is None
    assert not isinstance(fit_multifidelity_gp(sur, inputs[:1], y[:1], fid[:1], 2), MultiFidelityTargetGP)


def test_the_target_kernel_across_fidelities_is_off_shared_or_fitted():
    """The target kernel's covariance between a cell's two fidelities is 0 by default, its whole
    within-fidelity covariance with ``shared_residual`` and a fitted fraction ``rho_t`` of it
    with ``residual_rho``; asking for both is refused in one line."""
    import pytest

    from grabnas.errors import GrabnasError

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, fidelities=("12ep",)))
    z = torch.randn(12, 4, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    with torch.no_grad():
        d = torch.stack([sur.task_embedding(None, "12ep"), sur.task_embedding()])
    fid = torch.tensor([0] * 12 + [1] * 6)
    zz = torch.cat([z, z[:6]])
    inputs = torch.cat([d[fid], zz, fid.unsqueeze(-1).to(DTYPE)], -1)
    y = torch.cat([50 + 10 * z[:, 0], 90 + 2 * z[:6, 0] - z[:6, 1]])
    pair = torch.cat([inputs[:1], inputs[12:13]])  # cell 0 at both fidelities
    rhos = {}
    for name, options in {"off": {}, "shared": {"shared_residual": True}, "fitted": {"residual_rho": True}}.items():
        gp = fit_multifidelity_gp(sur, inputs, y, fid, 2, seed=0, **options)
        target = gp.covar_module.kernels[1]
        with torch.no_grad():
            k = target(pair).to_dense()
        rhos[name] = float(k[0, 1] / k[0, 0])
        assert rhos[name] == pytest.approx(gp.fitted_hyperparameters["residual_rho"], abs=1e-9)
    assert rhos["off"] == 0.0 and rhos["shared"] == pytest.approx(1.0)
    assert 0.0 < rhos["fitted"] < 1.0
    with pytest.raises(GrabnasError, match="shared_residual and residual_rho both set; expected at most one"):
        fit_multifidelity_gp(sur, inputs, y, fid, 2, shared_residual=True, residual_rho=True)
