"""The NAS-Bench-201 network: the TinyNetwork skeleton of the official benchmark code (xautodl).

Skeleton: a 3x3 conv stem (+BN); N cells at C channels; a ResNet basic block that halves the
resolution and doubles the channels; N cells at 2C; another reduction block; N cells at 4C;
BN-ReLU, global average pooling and a linear head.

A cell has 4 nodes; node 0 is the cell input and node j (1..3) sums ``op_{i->j}(x_i)`` over
i < j; the cell output is node 3. Edges in the official string order:
``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3)``. Operations: ``none`` (zero), ``skip_connect``
(identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-Conv-BN with affine BN), ``avg_pool_3x3``
(stride 1, padding 1, count_include_pad=False).

Costs are counted the way the benchmark does (xautodl ``get_model_infos``): parameters include
BN affine weights; FLOPs are multiply-accumulates of Conv2d and Linear layers (plus one per
output for a bias) for a batch of one image, with BN, pooling, ReLU and additions excluded.
At C=16, N=5, 3x32x32 inputs and 10 classes this gives 0.073306 M to 1.531546 M parameters
and 7.78 to 220.12 MFLOPs, the range of the official table.

This module imports only ``torch`` so that :mod:`grabnas.export` can copy it verbatim into a
standalone file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CELL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CELL_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def genotype_ops(genotype) -> tuple:
    """The 6 edge ops of ``genotype``: a sequence of op names or any object with an ``ops`` tuple."""
    ops = tuple(getattr(genotype, "ops", genotype))
    if len(ops) != len(CELL_EDGES) or any(op not in CELL_OPS for op in ops):
        raise ValueError(f"expected {len(CELL_EDGES)} edge ops from {CELL_OPS}, got {ops!r}")
    return ops


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d (affine)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class ResNetBasicBlock(nn.Module):
    """The reduction block: two ReLU-Conv-BN 3x3 (the first with stride 2) plus a shortcut of a
    2x2 average pool and a 1x1 conv (ceil mode, so odd resolutions line up with the conv path)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def make_op(name: str, channels: int) -> nn.Module | None:
    """The module of one cell op at stride 1 (``None`` for the ``none`` op, which adds nothing)."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown cell op {name!r}; expected one of {CELL_OPS}")


class InferCell(nn.Module):
    """One NB201 cell: node j = sum over i < j of op_{i->j}(node i); output node 3.

    ``none`` edges contribute exactly zero, so they are left out of the sums; a node whose
    incoming edges are all ``none`` is a zero tensor.
    """

    def __init__(self, genotype, channels: int) -> None:
        super().__init__()
        self.genotype = genotype_ops(genotype)
        self.edges = nn.ModuleDict()
        self._incoming: list[list[tuple[int, str]]] = [[] for _ in range(4)]
        for (src, dst), name in zip(CELL_EDGES, self.genotype):
            op = make_op(name, channels)
            if op is not None:
                key = f"{src}->{dst}"
                self.edges[key] = op
                self._incoming[dst].append((src, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            terms = [self.edges[key](nodes[src]) for src, key in self._incoming[j]]
            if not terms:
                nodes.append(torch.zeros_like(x))
                continue
            out = terms[0]
            for t in terms[1:]:
                out = out + t
            nodes.append(out)
        return nodes[3]


class TinyNetwork(nn.Module):
    """The NAS-Bench-201 network for one cell genotype.

    Args:
        genotype: the 6 edge ops in official order (op names, or an object with ``ops``).
        C: channels of the first stage (16 in the benchmark).
        N: cells per stage (5 in the benchmark).
        num_classes: outputs of the linear head.
        in_channels: channels of the input images (3 for RGB, 1 for grey).
    """

    def __init__(self, genotype, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if C < 1 or N < 0 or num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"need C >= 1, N >= 0, num_classes >= 1, in_channels >= 1; got {C}, {N}, {num_classes}, {in_channels}"
            )
        self.genotype = genotype_ops(genotype)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, c))
                c_prev = c
            cells.extend(InferCell(self.genotype, c) for _ in range(N))
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(x), 1))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (BN affine weights included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one ``input_shape = (C, H, W)`` image.

    Counted as the NB201 benchmark counts them: every Conv2d contributes
    ``k_h * k_w * c_in / groups * c_out * h_out * w_out`` (+ ``c_out * h_out * w_out`` with a
    bias) and every Linear ``in * out`` (+ ``out`` with a bias); nothing else is counted.
    """
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        positions = out.shape[0] * out.shape[2] * out.shape[3]
        kh, kw = m.kernel_size
        total[0] += kh * kw * m.in_channels // m.groups * m.out_channels * positions
        if m.bias is not None:
            total[0] += m.out_channels * positions

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        rows = out.numel() // m.out_features
        total[0] += rows * m.in_features * m.out_features + (rows * m.out_features if m.bias is not None else 0)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])


def build_network(genotype, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> TinyNetwork:
    """Alias of :class:`TinyNetwork` (kept for exported files)."""
    return TinyNetwork(genotype, C, N, num_classes, in_channels)
