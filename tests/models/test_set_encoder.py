"""Dataset encoder (Set Transformer twice), task encoder and the image feature extractor."""

from __future__ import annotations

import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.feature_extractor import SmallCNN, load_feature_extractor
from grabnas.models.set_encoder import ISAB, PMA, SAB, DatasetEncoder, TaskEncoder
from grabnas.models.surrogate_config import SurrogateConfig

torch.set_num_threads(1)


def _encoder() -> DatasetEncoder:
    torch.manual_seed(0)
    return DatasetEncoder(instance_dim=6, dim=8, out_dim=3, num_inducing=4, heads=2).eval()


def test_blocks_keep_set_shapes():
    x = torch.randn(2, 5, 8)
    assert SAB(8, 2)(x).shape == (2, 5, 8)
    assert ISAB(8, 3, 2)(x).shape == (2, 5, 8)
    assert PMA(8, 1, 2)(x).shape == (2, 1, 8)


def test_dataset_encoder_is_permutation_invariant():
    enc = _encoder()
    x = torch.randn(4, 7, 6)  # 4 classes, 7 instances each
    d = enc(x)
    assert d.shape == (3,)
    shuffled = x[torch.randperm(4)][:, torch.randperm(7)]
    torch.testing.assert_close(enc(shuffled), d, rtol=1e-5, atol=1e-5)
    batched = enc(torch.stack([x, shuffled]))
    assert batched.shape == (2, 3)
    torch.testing.assert_close(batched[0], batched[1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(enc(torch.randn(4, 7, 6)), d)
    with pytest.raises(GrabnasError, match="instance features"):
        enc(torch.randn(4, 7, 5))


def test_task_encoder_no_data_and_fidelities():
    cfg = SurrogateConfig(task_dim=3, fidelities=("12ep",), dataset_encoder=True, instance_dim=6, encoder_dim=8)
    enc = TaskEncoder(cfg)
    with torch.no_grad():
        enc.no_data.copy_(torch.tensor([1.0, 2.0, 3.0]))
        enc.fidelity_offsets.fill_(0.5)
    torch.testing.assert_close(enc(), torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(enc(None, "12ep"), torch.tensor([1.5, 2.5, 3.5]))
    assert enc(torch.randn(3, 4, 6)).shape == (3,)
    with pytest.raises(GrabnasError, match="unknown fidelity"):
        enc(None, "200ep")
    # without a dataset encoder, data is ignored (the task counts as one without data)
    plain = TaskEncoder(SurrogateConfig(task_dim=3))
    torch.testing.assert_close(plain(torch.randn(3, 4, 6)), plain())


def test_gradients_reach_the_dataset_encoder():
    cfg = SurrogateConfig(task_dim=3, dataset_encoder=True, instance_dim=6, encoder_dim=8)
    enc = TaskEncoder(cfg)
    enc(torch.randn(3, 4, 6)).sum().backward()
    grads = [p.grad for p in enc.dataset_encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_small_cnn_reads_any_image_shape():
    x = SmallCNN.prepare(torch.rand(5, 3, 32, 32))
    assert x.shape == (5, 1, 16, 16)
    assert SmallCNN.prepare(torch.rand(5, 8, 8)).shape == (5, 1, 16, 16)
    assert SmallCNN().features(torch.rand(2, 1, 28, 28)).shape == (2, 64)


def test_shipped_digits_cnn_loads_and_separates_digits():
    from grabnas.data import load_digits

    ex = load_feature_extractor("digits-cnn")
    assert ex.feature_dim == 64
    ds = load_digits()
    f = ex(ds.images[:200])
    assert f.shape == (200, 64) and torch.isfinite(f).all()
    # features of the same digit are closer to their class mean than to other classes' means
    labels = ds.labels[:200]
    means = torch.stack([f[labels == c].mean(0) for c in range(10)])
    nearest = torch.cdist(f, means).argmin(1)
    assert float((nearest == labels).float().mean()) > 0.8
    with pytest.raises(GrabnasError, match="unknown feature extractor"):
        load_feature_extractor("no-such-extractor")
