import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.search.grabnas import GraBNAS, GraBNASConfig


class FixedGP:
    """A latent GP with fixed hyperparameters; zero-shot it is a known deterministic prior."""

    def __init__(self, prior_direction: torch.Tensor) -> None:
        self.w = prior_direction.double()

    def fit(self, z, y):
        from botorch.models import SingleTaskGP
        from botorch.models.deterministic import GenericDeterministicModel

        if len(y) == 0:
            return GenericDeterministicModel(lambda x: (x @ self.w).unsqueeze(-1))
        scale = float(y.std()) if len(y) > 1 else 1.0
        m = SingleTaskGP(z, ((y - y.mean()) / (scale if scale > 0 else 1.0)).unsqueeze(-1))
        return m.eval()


@pytest.fixture(scope="module")
def vae(nb201_space):
    from grabnas.meta.vae_training import load_checkpoint

    return load_checkpoint("nb201", space=nb201_space)


@pytest.fixture(scope="module")
def small_pool(nb201_space):
    rng = np.random.default_rng(0)
    members = nb201_space.members()
    return [members[i] for i in rng.choice(len(members), 400, replace=False)]


def _objective(arch):
    return sum(op == "nor_conv_3x3" for op in arch.ops) - 0.5 * sum(op == "none" for op in arch.ops)


def test_initial_design_is_the_zero_shot_top(nb201_space, vae, small_pool):
    w = torch.randn(vae.latent_dim, generator=torch.Generator().manual_seed(0))
    opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=0, n_init=3)
    first = opt.ask(3)
    prior = (opt.z_pool @ w.double()).numpy()
    want = [small_pool[i] for i in np.argsort(-prior)[:3]]
    assert first == want


def test_hybrid_search_runs_proposes_new_archs_and_can_leave_the_pool(nb201_space, vae, small_pool):
    torch.set_num_threads(1)
    w = torch.zeros(vae.latent_dim)
    opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=1, t_bo=4, local_every=1, eta=0.3)
    seen = []
    for _ in range(14):
        archs = opt.ask(1)
        assert archs and archs[0] not in seen
        seen += archs
        opt.tell(archs, [_objective(a) for a in archs])
    assert len(opt.local_log) >= 8
    assert all(log["valid"] <= log["tried"] for log in opt.local_log)
    pool = set(small_pool)
    assert any(a not in pool for a in seen), "local steps decode architectures outside a 400-cell pool"


def test_knn_never_leaves_the_pool_and_batches_are_distinct(nb201_space, vae, small_pool):
    opt = GraBNAS(nb201_space, FixedGP(torch.zeros(vae.latent_dim)), vae, pool=small_pool, seed=2,
                  local="knn", t_bo=3, local_every=1)
    seen = []
    for _ in range(6):
        archs = opt.ask(2)
        assert len(set(archs)) == 2 and not set(archs) & set(seen)
        seen += archs
        opt.tell(archs, [_objective(a) for a in archs])
    assert set(seen) <= set(small_pool)


def test_failures_are_not_fatal(nb201_space, vae, small_pool):
    opt = GraBNAS(nb201_space, FixedGP(torch.zeros(vae.latent_dim)), vae, pool=small_pool, seed=3, t_bo=2)
    for i in range(6):
        archs = opt.ask(1)
        opt.tell(archs, [None if i % 2 else _objective(archs[0])])
    assert len(opt.history.observations) == 6


@pytest.mark.parametrize("kw, fragment", [({"mode": "both"}, "mode 'both' is unknown"), ({"n_init": 0}, "n_init must be >= 1")])
def test_bad_settings(kw, fragment):
    with pytest.raises(GrabnasError, match=fragment):
        GraBNASConfig(**kw)


def test_meta_latent_surrogate_infers_the_task_from_enough_observations():
    from grabnas.models.surrogate import DTYPE, MetaSurrogate, SurrogateConfig
    from grabnas.search.grabnas import MetaLatentSurrogate

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, task_offsets=("a", "b")))
    with torch.no_grad():
        sur.task_encoder.task_offsets.copy_(torch.tensor([[20.0, 0, 0], [-20.0, 5, 0]]))
    d = sur.task_embedding()
    z = torch.randn(12, 4, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    with torch.no_grad():
        m_b, _ = sur.prior().prior_moments(sur.inputs(z, sur.task_embedding(task="b")))
    y = 50 + 3 * m_b
    latent = MetaLatentSurrogate(sur, d)
    assert latent.infer_task and latent.infer_min_obs == 5
    model = latent.fit(z, y)
    assert latent.task_weights["b"] > latent.task_weights["a"]
    assert not torch.equal(model.task_embedding, d)
    # the posterior is over latents with the inferred embedding
    post = model.posterior(z[:3].unsqueeze(-2))
    want = model.gp.posterior(sur.inputs(z[:3], model.task_embedding)).mean.squeeze(-1)
    torch.testing.assert_close(post.mean.reshape(-1), want)
    few = latent.fit(z[:4], y[:4])  # below infer_min_obs: the zero-shot embedding
    assert latent.task_weights == {} and torch.equal(few.task_embedding, d)
    off = MetaLatentSurrogate(sur, d, infer_task=False)
    assert torch.equal(off.fit(z, y).task_embedding, d) and off.task_weights == {}
