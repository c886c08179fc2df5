"""Tests of the D-VAE graph VAE (grabnas.models.graph_vae)."""

from __future__ import annotations

import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.graph_vae import ArchitectureVAE, DAGBatch, GraphVAE, GraphVAEConfig
from grabnas.spaces import get_space
from grabnas.spaces.base import DAG

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


@pytest.fixture(scope="module")
def nbgraph():
    return get_space("nasbench-graph")


def _tiny(space, seed=0, **kw):
    kw = {"hidden_dim": 32, "latent_dim": 8, **kw}
    return ArchitectureVAE.create(space, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("name", ["nb201", "nasbench-graph"])
def test_encode_decode_shapes(name):
    space = get_space(name)
    vae = _tiny(space)
    archs = space.members()[:5]
    mu, logvar = vae.model.encode(vae.to_dags(archs))
    assert mu.shape == (5, 8) and logvar.shape == (5, 8)
    assert vae.encode_archs(archs).shape == (5, 8)
    dags = vae.model.decode(torch.zeros(3, 8))
    assert len(dags) == 3 and all(isinstance(d, DAG) for d in dags)
    assert all(d.node_types[0] == 0 and d.node_types[-1] == 1 for d in dags)
    assert all(d.num_nodes <= space.max_nodes for d in dags)
    g = torch.Generator().manual_seed(1)
    assert len(vae.model.decode(torch.zeros(3, 8), stochastic=True, num_samples=4, generator=g)) == 12
    assert len(vae.decode_archs(torch.zeros(2, 8), mode="vote", k=3)) == 2
    assert len(vae.decode_archs(torch.zeros(8))) == 1  # a single latent vector


def test_decode_is_deterministic_and_seeded(nb201):
    vae = _tiny(nb201)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    assert vae.model.decode(z) == vae.model.decode(z)
    a = vae.model.decode(z, stochastic=True, generator=torch.Generator().manual_seed(3))
    b = vae.model.decode(z, stochastic=True, generator=torch.Generator().manual_seed(3))
    assert a == b


def test_seeded_initialisation_leaves_global_rng_alone(nb201):
    state = torch.random.get_rng_state()
    a, b = _tiny(nb201, seed=5), _tiny(nb201, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), k


def test_gradients_flow_through_encoder_and_decoder(nbgraph):
    vae = _tiny(nbgraph)
    dags = vae.to_dags(nbgraph.members()[:4])
    mu, logvar = vae.model.encode(dags)
    (mu.pow(2).sum() + logvar.sum()).backward()
    for name in ("enc_forward.weight_ih", "enc_forward_msg.gate.weight", "enc_backward.weight_hh", "fc_mu.weight"):
        grad = dict(vae.model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    z = torch.randn(4, 8, requires_grad=True)
    type_ll, edge_ll = vae.model.log_likelihood(z, dags)
    assert type_ll.shape == (4,) and edge_ll.shape == (4,)
    (type_ll + edge_ll).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    loss = vae.model.loss(dags, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.total) and loss.total.requires_grad


def test_tiny_model_memorises_a_small_set(nb201):
    members = nb201.members()
    archs = [members[i] for i in range(0, len(members), len(members) // 20)][:20]
    vae = _tiny(nb201, hidden_dim=32, latent_dim=8, eps_scale=0.01)
    batch = vae.model.batch(vae.to_dags(archs))
    opt = torch.optim.Adam(vae.model.parameters(), lr=1e-2)
    noise = torch.Generator().manual_seed(0)
    for _ in range(110):
        loss = vae.model.loss(batch, noise)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    with torch.no_grad():
        decoded = vae.decode_archs(vae.encode_archs(archs))
    assert decoded == archs


def test_invalid_decodes_are_none(nb201, monkeypatch):
    vae = _tiny(nb201)
    member = nb201.members()[7]
    wrong_shape = DAG((0, 2, 3, 1), ((0, 1), (1, 2), (2, 3)))
    assert nb201.from_dag(wrong_shape) is None

    monkeypatch.setattr(vae.model, "decode", lambda z, **kw: [wrong_shape] * len(z))
    assert vae.decode_archs(torch.zeros(2, 8)) == [None, None]

    def vote_decode(z, stochastic=False, num_samples=1, generator=None):
        good = nb201.to_dag(member)
        # z[0]: 2 valid of 3 samples; z[1]: all invalid
        return [wrong_shape, good, good] + [wrong_shape] * num_samples

    monkeypatch.setattr(vae.model, "decode", vote_decode)
    assert vae.decode_archs(torch.zeros(2, 8), mode="vote", k=3) == [member, None]


def test_errors_are_clear(nb201, nbgraph):
    vae = _tiny(nb201)
    with pytest.raises(GrabnasError, match="not an architecture of the nb201 space"):
        vae.encode_archs(nbgraph.members()[:1])
    with pytest.raises(GrabnasError, match="z has shape"):
        vae.model.decode(torch.zeros(2, 3))
    with pytest.raises(GrabnasError, match="decode mode"):
        vae.decode_archs(torch.zeros(1, 8), mode="beam")
    with pytest.raises(GrabnasError, match="cannot be encoded"):
        DAGBatch.from_dags([DAG(tuple([0] + [2] * 8 + [1]), ())], vae.model.config)
    with pytest.raises(GrabnasError, match="does not fit"):
        ArchitectureVAE(nbgraph, vae.model)
    with pytest.raises(GrabnasError, match="unknown graph VAE config keys"):
        GraphVAEConfig.from_dict({**vae.model.config.to_dict(), "colour": 1})
    assert GraphVAEConfig.from_dict(vae.model.config.to_dict()) == vae.model.config


def test_padding_does_not_change_encoding(nb201):
    """A short DAG encodes the same alone and in a batch with longer ones."""
    cfg = GraphVAEConfig(num_types=len(nb201.node_type_names), max_nodes=8, hidden_dim=16, latent_dim=4)
    model = GraphVAE(cfg, torch.Generator().manual_seed(0))
    short = DAG((0, 2, 3, 1), ((0, 1), (1, 2), (2, 3)))
    long = nb201.to_dag(nb201.members()[0])
    mu_alone, _ = model.encode([short])
    mu_batch, _ = model.encode([long, short])
    assert torch.allclose(mu_alone[0], mu_batch[1], atol=1e-6)
