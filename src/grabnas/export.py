"""Export an NB201 architecture: a standalone PyTorch module file and a picture of its cell.

The module file is :mod:`grabnas.train.network` copied verbatim (it needs only ``torch``) plus
the cell genotype and the network size, with ``build_model()`` returning the network; it loads
without grabnas installed. The picture draws the 4-node cell DAG with each edge's operation.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from grabnas.errors import GrabnasError
from grabnas.spaces.nb201 import EDGES, NB201Arch, NB201Space

OP_COLOURS = {
    "none": "#bbbbbb",
    "skip_connect": "#4c72b0",
    "nor_conv_1x1": "#dd8452",
    "nor_conv_3x3": "#c44e52",
    "avg_pool_3x3": "#55a868",
}


@dataclass
class ExportedFiles:
    module: Path
    picture: Path
    params: int
    flops: int


def _as_arch(arch: NB201Arch | str) -> NB201Arch:
    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Space().parse(arch)
    raise GrabnasError(f"expected an NB201 cell or its string, got {type(arch).__name__}")


def module_source(arch: NB201Arch, num_classes: int, channels: int, cells: int, in_channels: int) -> str:
    """The text of the standalone module file."""
    from grabnas.train import network

    body = inspect.getsource(network)
    header = (
        f"# NAS-Bench-201 network exported by grabnas: {arch.to_string()}\n"
        f"# C={channels}, N={cells}, {num_classes} classes, {in_channels} input channels.\n"
        "# Needs only torch. Usage:  from this_file import build_model; model = build_model()\n"
        "# The code below is grabnas.train.network, copied verbatim; the exported settings follow it.\n\n"
    )
    footer = f'''

# -- exported architecture -------------------------------------------------------------------
ARCH = {arch.to_string()!r}
GENOTYPE = {tuple(arch.ops)!r}  # edge ops in order {EDGES!r}
NUM_CLASSES = {num_classes}
C = {channels}
N = {cells}
IN_CHANNELS = {in_channels}


def build_model() -> TinyNetwork:
    """The exported network (freshly initialised)."""
    return TinyNetwork(GENOTYPE, C=C, N=N, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)


if __name__ == "__main__":
    model = build_model()
    print(ARCH)
    print(f"{{count_parameters(model) / 1e6:.6f}} M parameters, "
          f"{{count_flops(model, (IN_CHANNELS, 32, 32)) / 1e6:.2f}} MFLOPs at 32x32")
'''
    return header + body.rstrip() + "\n" + footer


def draw_cell(arch: NB201Arch, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the cell DAG (nodes 0..3, one arrow per edge labelled with its op) to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch

    arch = _as_arch(arch)
    pos = {i: (2.0 * i, 0.0) for i in range(4)}
    rad = {1: 0.0, 2: -0.45, 3: 0.42}
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    try:
        for (src, dst), op in zip(EDGES, arch.ops):
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            r = rad[dst - src]
            colour = OP_COLOURS[op]
            style = "dotted" if op == "none" else "solid"
            ax.add_patch(
                FancyArrowPatch(
                    (x0, y0),
                    (x1, y1),
                    connectionstyle=f"arc3,rad={r}",
                    arrowstyle="-|>",
                    mutation_scale=16,
                    lw=2.0,
                    color=colour,
                    linestyle=style,
                    shrinkA=18,
                    shrinkB=18,
                    zorder=1,
                )
            )
            dx, dy = x1 - x0, y1 - y0
            lx, ly = (x0 + x1) / 2 + 0.5 * r * dy, (y0 + y1) / 2 - 0.5 * r * dx
            ax.text(
                lx,
                ly,
                op,
                ha="center",
                va="center",
                fontsize=9,
                color=colour if op != "none" else "#888888",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "lw": 0.8},
                zorder=3,
            )
        for i, (x, y) in pos.items():
            ax.add_patch(Circle((x, y), 0.28, fc="#f2f2f2", ec="black", lw=1.5, zorder=2))
            label = {0: "in\n0", 3: "out\n3"}.get(i, str(i))
            ax.text(x, y, label, ha="center", va="center", fontsize=9 if i in (0, 3) else 12, zorder=4)
        ax.set_xlim(-0.6, 6.6)
        ax.set_ylim(-1.8, 1.4)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title or arch.to_string(), fontsize=9)
        path = Path(path)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def export_architecture(
    arch: NB201Arch | str,
    out_dir: str | os.PathLike,
    num_classes: int = 10,
    channels: int = 16,
    cells: int = 5,
    in_channels: int = 3,
    image_size: int = 32,
    name: str | None = None,
) -> ExportedFiles:
    """Write ``out_dir/<name>.py`` (standalone module) and ``out_dir/<name>_cell.png``."""
    from grabnas.train.network import TinyNetwork, count_flops, count_parameters

    arch = _as_arch(arch)
    if num_classes < 1 or channels < 1 or cells < 0 or in_channels < 1 or image_size < 1:
        raise GrabnasError(
            f"need classes >= 1, channels >= 1, cells >= 0, in-channels >= 1, image size >= 1; got "
            f"{num_classes}, {channels}, {cells}, {in_channels}, {image_size}"
        )
    name = name or "nb201_" + hashlib.sha1(arch.to_string().encode()).hexdigest()[:8]
    if not name.isidentifier():
        raise GrabnasError(f"export name {name!r} is not a valid Python module name; expected letters, digits and _")
    try:  # the network first: a size this machine cannot build leaves no file behind
        model = TinyNetwork(arch.ops, channels, cells, num_classes, in_channels)
        params = count_parameters(model)
        flops = count_flops(model, (in_channels, image_size, image_size))
    except (MemoryError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise GrabnasError(
            f"cannot build the network with {channels} channels and {cells} cells here ({reason}); expected a size "
            "that fits in memory"
        ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = out / f"{name}.py"
    tmp = module.with_name(f".{module.name}.tmp")
    tmp.write_text(module_source(arch, num_classes, channels, cells, in_channels))
    os.replace(tmp, module)  # never a partial module
    title = f"{arch.to_string()}\nC={channels}, N={cells}: {params / 1e6:.3f} M params, {flops / 1e6:.2f} MFLOPs at {image_size}x{image_size}"
    picture = draw_cell(arch, out / f"{name}_cell.png", title=title)
    return ExportedFiles(module, picture, params, flops)
