"""Parameters and FLOPs of the NB201 network for every cell, by per-edge-op arithmetic.

The network is :class:`grabnas.train.network.TinyNetwork` (the NB201 skeleton) at a
:class:`NetworkSetting`: C channels, N cells per stage, the number of classes and the input
shape. Its costs are counted as :mod:`grabnas.train.network` counts them (and as NB201 does,
xautodl ``get_model_infos``): parameters include BN affine weights; FLOPs are the
multiply-accumulates of Conv2d and Linear layers (one per output for a bias) for one image.

A cell's cost is a sum over its 6 edges: ``none``, ``skip_connect`` and ``avg_pool_3x3`` cost
nothing (no weights; pooling is not counted), ``nor_conv_1x1`` costs ``c^2 + 2c`` parameters and
``c^2 h w`` FLOPs and ``nor_conv_3x3`` ``9 c^2 + 2c`` and ``9 c^2 h w`` at a stage of ``c``
channels and ``h x w`` positions. Every edge op is built and run whatever its position (as in
the official ``InferCell``), so the network's cost is the skeleton's (stem, the two reduction
blocks, the last BN, the classifier) plus N times each stage's cell cost. At C=16, N=5, 10
classes and 3x32x32 inputs this gives 0.073306 M to 1.531546 M parameters and 7.78 to 220.12
MFLOPs, NB201's range on CIFAR-10; ``tests/train/test_cost.py`` checks it against
:func:`~grabnas.train.network.count_parameters` and :func:`~grabnas.train.network.count_flops`.

:func:`nb201_costs` returns both costs for all 15,625 cells (in ``NB201Space.members()`` order)
in a few milliseconds and keeps them per setting.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.spaces.nb201 import EDGES, OPS


@dataclass(frozen=True)
class NetworkSetting:
    """The NB201 network a cell is built into: ``C`` channels of the first stage, ``N`` cells
    per stage, ``num_classes`` outputs and ``in_channels x height x width`` input images."""

    C: int = 16
    N: int = 5
    num_classes: int = 10
    in_channels: int = 3
    height: int = 32
    width: int = 32

    def __post_init__(self) -> None:
        ints = {"C": 1, "N": 0, "num_classes": 1, "in_channels": 1, "height": 1, "width": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise GrabnasError(f"network setting {name} must be an integer >= {low}, got {v!r}")

    def describe(self) -> str:
        return (
            f"the NB201 network with C={self.C}, N={self.N}, {self.num_classes} classes, "
            f"{self.in_channels}x{self.height}x{self.width} inputs"
        )


#: the benchmark's own network per NB201 dataset (group): C=16, N=5 and the dataset's classes and
#: input size (CIFAR-10 and CIFAR-100 32x32 RGB, ImageNet16-120 16x16 RGB with 120 classes)
NB201_NETWORKS: dict[str, NetworkSetting] = {
    "cifar10": NetworkSetting(num_classes=10),
    "cifar100": NetworkSetting(num_classes=100),
    "imagenet16": NetworkSetting(num_classes=120, height=16, width=16),
}


def _halve(n: int) -> int:
    """Output size of the reduction block (3x3 conv, stride 2, padding 1; the 2x2 ceil-mode pool agrees)."""
    return (n - 1) // 2 + 1


def stage_shapes(s: NetworkSetting) -> list[tuple[int, int]]:
    """``(channels, positions)`` of the three stages."""
    h, w = s.height, s.width
    out = []
    for stage, c in enumerate((s.C, 2 * s.C, 4 * s.C)):
        if stage > 0:
            h, w = _halve(h), _halve(w)
        out.append((c, h * w))
    return out


def op_costs(s: NetworkSetting) -> tuple[np.ndarray, np.ndarray]:
    """``(params, flops)``, each ``(len(OPS),)``: what one edge with each op adds to the whole
    network (its op in all ``3 N`` cells)."""
    params, flops = np.zeros(len(OPS)), np.zeros(len(OPS))
    for c, hw in stage_shapes(s):
        for op, k in (("nor_conv_1x1", 1), ("nor_conv_3x3", 9)):
            params[OPS.index(op)] += s.N * (k * c * c + 2 * c)
            flops[OPS.index(op)] += s.N * k * c * c * hw
    return params, flops


def skeleton_costs(s: NetworkSetting) -> tuple[int, int]:
    """``(params, flops)`` of the network without its cells' ops (a cell of ``none`` edges)."""
    (c1, hw1), (c2, hw2), (c3, hw3) = stage_shapes(s)
    params = 9 * s.in_channels * s.C + 2 * s.C  # stem conv + BN
    flops = 9 * s.in_channels * s.C * s.height * s.width
    for c_in, c_out, hw in ((c1, c2, hw2), (c2, c3, hw3)):  # reduction blocks
        params += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out
        flops += (9 * c_in * c_out + 9 * c_out * c_out + c_in * c_out) * hw
    params += 2 * c3 + c3 * s.num_classes + s.num_classes  # last BN, classifier
    flops += c3 * s.num_classes + s.num_classes
    return params, flops


@functools.lru_cache(maxsize=32)
def _costs(s: NetworkSetting) -> tuple[np.ndarray, np.ndarray]:
    ops = np.indices((len(OPS),) * len(EDGES)).reshape(len(EDGES), -1).T  # (15625, 6), members() order
    p_op, f_op = op_costs(s)
    p_base, f_base = skeleton_costs(s)
    params, flops = (p_base + p_op[ops].sum(axis=1)) / 1e6, (f_base + f_op[ops].sum(axis=1)) / 1e6
    for a in (params, flops):
        a.setflags(write=False)
    return params, flops


def nb201_costs(setting: NetworkSetting | None = None) -> dict[str, np.ndarray]:
    """``{"params": ..., "flops": ...}``: ``(15,625,)`` read-only arrays, in millions (M
    parameters, MFLOPs), of every NB201 cell in ``NB201Space.members()`` order, for the network
    at ``setting`` (default: NB201's CIFAR-10 network). Computed once per setting."""
    params, flops = _costs(setting or NetworkSetting())
    return {"params": params, "flops": flops}


def cell_costs(ops, setting: NetworkSetting | None = None) -> tuple[int, int]:
    """``(params, flops)``, exact integers, of the network of one cell (its 6 edge ops)."""
    s = setting or NetworkSetting()
    p_op, f_op = op_costs(s)
    p_base, f_base = skeleton_costs(s)
    idx = [OPS.index(op) for op in getattr(ops, "ops", ops)]
    return int(p_base + p_op[idx].sum()), int(f_base + f_op[idx].sum())


#: the epochs of the reference training that :func:`training_costs` counts in (NB201's 200-epoch recipe)
REFERENCE_EPOCHS = 200


def training_costs(flops: np.ndarray, epochs: float, reference_epochs: float = REFERENCE_EPOCHS) -> np.ndarray:
    """Training cost of networks of ``flops`` (any unit) trained for ``epochs``, in units of one
    ``reference_epochs`` training of the network of mean FLOPs among ``flops``.

    The cost model of multi-fidelity search (:mod:`grabnas.search.multifidelity`): training time
    proportional to FLOPs x epochs (the same data, batch size and schedule length per epoch, so
    the work of one epoch is proportional to the forward-backward multiply-accumulates of one
    image). NAS-Bench-201's tables give measured times for only some runs; the FLOPs are exact for
    every cell (:func:`nb201_costs`)."""
    flops = np.asarray(flops, dtype=np.float64)
    if epochs <= 0 or reference_epochs <= 0:
        raise GrabnasError(f"training epochs must be > 0, got {epochs} and {reference_epochs}")
    return flops * float(epochs) / (float(flops.mean()) * float(reference_epochs))


def nb201_training_costs(group: str, epochs: float) -> np.ndarray:
    """``(15,625,)`` :func:`training_costs` of every NB201 cell trained ``epochs`` epochs on the
    network of NB201 dataset ``group`` (``cifar10``, ``cifar100``, ``imagenet16``), in units of one
    200-epoch training of that dataset's mean cell."""
    if group not in NB201_NETWORKS:
        raise GrabnasError(f"no NB201 network for {group!r}; expected one of {', '.join(NB201_NETWORKS)}")
    return training_costs(nb201_costs(NB201_NETWORKS[group])["flops"], epochs)


__all__ = [
    "NB201_NETWORKS",
    "REFERENCE_EPOCHS",
    "NetworkSetting",
    "cell_costs",
    "nb201_costs",
    "nb201_training_costs",
    "op_costs",
    "skeleton_costs",
    "training_costs",
]
