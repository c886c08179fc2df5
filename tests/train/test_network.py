"""The NB201 network: official parameter / FLOP figures, shapes, cell semantics."""

from __future__ import annotations

import pytest
import torch

from grabnas.train.network import InferCell, TinyNetwork, count_flops, count_parameters

ALL_CONV3 = ("nor_conv_3x3",) * 6
NO_PARAMS = ("none", "skip_connect", "avg_pool_3x3", "none", "skip_connect", "avg_pool_3x3")


@pytest.mark.parametrize(
    ("genotype", "classes", "params", "mflops"),
    [
        (("none",) * 6, 10, 73306, 7.78),
        (NO_PARAMS, 10, 73306, 7.78),
        (ALL_CONV3, 10, 1531546, 220.12),
        (ALL_CONV3, 100, 1537396, 220.13),
    ],
)
def test_official_cifar_figures(genotype, classes, params, mflops):
    net = TinyNetwork(genotype, C=16, N=5, num_classes=classes)
    assert count_parameters(net) == params
    assert count_flops(net, (3, 32, 32)) / 1e6 == pytest.approx(mflops, abs=0.005)


def test_nb201arch_and_arbitrary_sizes(nb201_space):
    arch = nb201_space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    for c, n, k, ch, hw in [(4, 1, 3, 1, 8), (8, 2, 7, 3, 15), (5, 0, 2, 1, 7)]:
        net = TinyNetwork(arch, C=c, N=n, num_classes=k, in_channels=ch)
        out = net(torch.randn(2, ch, hw, hw))
        assert out.shape == (2, k)
        assert count_flops(net, (ch, hw, hw)) > 0


def test_cell_nodes_sum_incoming_edges():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    skip_only = InferCell(("skip_connect", "none", "skip_connect", "none", "none", "skip_connect"), 4)
    assert torch.equal(skip_only(x), x)  # 0 -> 1 -> 2 -> 3, identities
    two_paths = InferCell(("skip_connect", "none", "none", "skip_connect", "skip_connect", "none"), 4)
    assert torch.allclose(two_paths(x), 2 * x)  # node3 = x0 + x1 = 2x
    dead = InferCell(("nor_conv_3x3", "skip_connect", "none", "none", "none", "none"), 4)
    assert torch.count_nonzero(dead(x)) == 0  # nothing reaches node 3
    pool = InferCell(("none", "none", "none", "avg_pool_3x3", "none", "none"), 4)
    expect = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert torch.allclose(pool(x), expect)


def test_bad_genotype():
    with pytest.raises(ValueError, match="edge ops"):
        TinyNetwork(("nor_conv_3x3",) * 5)
    with pytest.raises(ValueError, match="edge ops"):
        TinyNetwork(("conv_5x5",) * 6)
