"""The NB201 network's costs by per-edge-op arithmetic (grabnas.train.cost) against hand-computed
values, NB201's published ranges and the network itself."""

import time

import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.train.cost import NB201_NETWORKS, NetworkSetting, cell_costs, nb201_costs

NONE = ("none",) * 6


def test_hand_computed_costs_of_the_cifar10_network():
    # skeleton (every edge none): stem 3*16*9 + 32, reduction blocks 14,464 + 57,600, last BN 128,
    # classifier 64*10 + 10
    assert cell_costs(NONE) == (464 + 14_464 + 57_600 + 128 + 650, cell_costs(NONE)[1])
    p0, f0 = cell_costs(NONE)
    assert p0 == 73_306 and f0 == 7_783_050
    # skip, pool and none add nothing: no weights, and pooling is not counted as FLOPs (as NB201)
    assert cell_costs(("skip_connect", "avg_pool_3x3", "skip_connect", "none", "avg_pool_3x3", "skip_connect")) == (
        p0,
        f0,
    )
    # one 3x3 conv edge, in all 15 cells: 5 * (9c^2 + 2c) for c = 16, 32, 64; 15 * 9 * 16^2 * 32^2 FLOPs
    assert cell_costs(("nor_conv_3x3",) + NONE[1:]) == (p0 + 243_040, f0 + 35_389_440)
    # one 1x1 conv edge: 5 * (c^2 + 2c); 15 * 16^2 * 32^2 FLOPs; edge position does not matter
    assert cell_costs(NONE[:5] + ("nor_conv_1x1",)) == (p0 + 28_000, f0 + 3_932_160)


@pytest.mark.parametrize(
    "group, params, mflops",
    [
        ("cifar10", (0.073306, 1.531546), (7.78305, 220.11969)),
        ("cifar100", (0.079156, 1.537396), (7.7889, 220.12554)),
        ("imagenet16", (0.080456, 1.538696), (1.9534, 55.03756)),
    ],
)
def test_ranges_match_nb201(group, params, mflops):
    """NB201's cells span 0.07-1.53 M parameters and 7.8-220 MFLOPs on CIFAR-10 (about 1/4 of the
    FLOPs on 16x16 ImageNet16-120)."""
    c = nb201_costs(NB201_NETWORKS[group])
    assert (c["params"].min(), c["params"].max()) == pytest.approx(params, abs=1e-9)
    assert (c["flops"].min(), c["flops"].max()) == pytest.approx(mflops, abs=1e-9)


@pytest.mark.parametrize(
    "setting",
    [
        NetworkSetting(),
        NetworkSetting(C=8, N=1, num_classes=3, in_channels=1, height=28, width=28),
        NetworkSetting(4, 2, 7, 3, 15, 17),
    ],
)
def test_arithmetic_equals_counting_the_network(setting, nb201_space, one_torch_thread):
    from grabnas.train.network import TinyNetwork, count_flops, count_parameters

    members = nb201_space.members()
    table = nb201_costs(setting)
    for i in np.random.default_rng(0).choice(len(members), 4, replace=False):
        net = TinyNetwork(members[i].ops, setting.C, setting.N, setting.num_classes, setting.in_channels)
        want = (count_parameters(net), count_flops(net, (setting.in_channels, setting.height, setting.width)))
        assert cell_costs(members[i], setting) == want
        assert (table["params"][i] * 1e6, table["flops"][i] * 1e6) == pytest.approx(want, abs=1e-3)


def test_whole_space_is_fast_and_memoised():
    t0 = time.perf_counter()
    c = nb201_costs(NetworkSetting(C=12, N=3))
    assert time.perf_counter() - t0 < 0.5 and c["params"].shape == (15_625,)
    assert nb201_costs(NetworkSetting(C=12, N=3))["params"] is c["params"]  # computed once per setting
    with pytest.raises(ValueError):
        c["params"][0] = 0  # read-only


@pytest.mark.parametrize("kw", [{"C": 0}, {"N": -1}, {"num_classes": 0}, {"height": 2.5}, {"C": True}])
def test_bad_settings(kw):
    with pytest.raises(GrabnasError, match="network setting"):
        NetworkSetting(**kw)


def test_training_costs_are_flops_times_epochs_in_mean_cell_units():
    from grabnas.train.cost import nb201_costs, nb201_training_costs, training_costs

    c = training_costs(np.array([1.0, 3.0]), 200)
    assert np.allclose(c, [0.5, 1.5])  # the mean cell's 200-epoch training costs 1
    assert np.allclose(training_costs(np.array([1.0, 3.0]), 12), c * 12 / 200)
    c200, c12 = nb201_training_costs("cifar10", 200), nb201_training_costs("imagenet16", 12)
    assert c200.shape == (15625,) and abs(c200.mean() - 1) < 1e-12 and abs(c12.mean() - 0.06) < 1e-12
    flops = nb201_costs()["flops"]
    assert np.allclose(c200 / c200[0], flops / flops[0])
    with pytest.raises(GrabnasError):
        nb201_training_costs("mnist", 12)
    with pytest.raises(GrabnasError):
        training_costs(flops, 0)
