"""Export an NB201 architecture: a standalone PyTorch module file and a picture of its cell.

The module file is :mod:`grabnas.train.network` copied verbatim (it needs only ``torch``) plus
the cell genotype and the network size, with ``build_model()`` returning the network and
``load_model()`` the network with trained weights (a ``state_dict`` file, by default the one
exported beside the module with ``weights=``, e.g. a ``grabnas train`` run's ``weights.pt``) in
eval mode; ``normalise()`` applies the training data's per-channel input normalisation when it
was exported. It loads without grabnas installed. The picture draws the 4-node cell DAG with each
edge's operation.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grabnas.errors import GrabnasError, one_line
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
    weights: Path | None = None


def load_weights(path: str | os.PathLike) -> dict:
    """The ``state_dict`` in ``path`` (tensors by parameter name); one-line error if it is not one."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GrabnasError(
            f"weights file {path} not found; expected a state_dict file such as a run's weights.pt"
        ) from None
    except Exception as e:
        raise GrabnasError(
            f"cannot read weights {path} ({one_line(e, 160)}); expected a torch state_dict file"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GrabnasError(f"weights file {path} holds no state_dict; expected tensors by parameter name")
    return state


def network_size(state: dict) -> dict:
    """``channels`` (C), ``cells`` (N), ``num_classes`` and ``in_channels`` of an NB201 network's
    ``state_dict``, read from the shapes of its stem, head and first reduction block."""
    try:
        c, in_ch = state["stem.0.weight"].shape[:2]
        classes = state["classifier.weight"].shape[0]
        cells = min(int(k.split(".")[1]) for k in state if k.startswith("cells.") and ".conv_a." in k)
    except (KeyError, ValueError, IndexError):
        raise GrabnasError("the weights are not those of an NB201 network (no stem, head or reduction block)") from None
    return {"channels": int(c), "cells": cells, "num_classes": int(classes), "in_channels": int(in_ch)}


def _as_arch(arch: NB201Arch | str) -> NB201Arch:
    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Space().parse(arch)
    raise GrabnasError(f"expected an NB201 cell or its string, got {type(arch).__name__}")


def module_source(
    arch: NB201Arch,
    num_classes: int,
    channels: int,
    cells: int,
    in_channels: int,
    weights: str | None = None,
    normalisation: tuple[Sequence[float], Sequence[float]] | None = None,
) -> str:
    """The text of the standalone module file; ``weights`` is the file name of the trained
    ``state_dict`` beside it (None: none exported) and ``normalisation`` the per-channel
    ``(mean, std)`` of the training inputs (None: unknown)."""
    mean, std = (tuple(float(v) for v in m) for m in normalisation) if normalisation else (None, None)
    from grabnas.train import network

    body = inspect.getsource(network)
    header = (
        f"# NAS-Bench-201 network exported by grabnas: {arch.to_string()}\n"
        f"# C={channels}, N={cells}, {num_classes} classes, {in_channels} input channels.\n"
        "# Needs only torch. Usage:  from this_file import build_model; model = build_model()\n"
        "# or, with trained weights:  model = load_model(); logits = model(normalise(images))\n"
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
WEIGHTS = {weights!r}  # trained state_dict beside this file (None: no weights were exported)
MEAN = {mean!r}  # per-channel input normalisation of training (None: unknown)
STD = {std!r}


def build_model() -> TinyNetwork:
    """The exported network (freshly initialised)."""
    return TinyNetwork(GENOTYPE, C=C, N=N, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)


def load_model(weights=None, map_location="cpu") -> TinyNetwork:
    """The exported network with trained weights, in eval mode.

    ``weights``: a state_dict file; default WEIGHTS, beside this file.
    """
    import os

    path = weights if weights is not None else WEIGHTS
    if path is None:
        raise FileNotFoundError("no weights were exported with this module; call load_model(weights=PATH)")
    if weights is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    model = build_model()
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return model.eval()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """``(B, IN_CHANNELS, H, W)`` images, scaled as the training data was (pixels in [0, 1]) ->
    the network's input: ``(images - MEAN) / STD`` per channel."""
    if MEAN is None or STD is None:
        raise ValueError("no input normalisation was exported with this module")
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


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
    weights: str | os.PathLike | None = None,
    normalisation: tuple[Sequence[float], Sequence[float]] | None = None,
) -> ExportedFiles:
    """Write ``out_dir/<name>.py`` (standalone module) and ``out_dir/<name>_cell.png``.

    With ``weights`` (a ``state_dict`` file of this network, checked to load), the module's
    ``load_model()`` loads them: a file already in ``out_dir`` is used where it is, any other is
    copied to ``out_dir/<name>.pt``. ``normalisation`` is the training inputs' per-channel
    ``(mean, std)`` for the module's ``normalise()``.
    """
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
    if weights is not None:
        try:
            model.load_state_dict(load_weights(weights))
        except RuntimeError as e:
            first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), one_line(e, 200))
            raise GrabnasError(
                f"weights {weights} do not fit the network C={channels}, N={cells}, {num_classes} classes, "
                f"{in_channels} input channels ({one_line(first, 200)}); expected the sizes it was trained with"
            ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_path = None
    if weights is not None:
        weights_path = Path(weights)
        if weights_path.resolve().parent != out.resolve():
            weights_path = out / f"{name}.pt"
            tmp_weights = weights_path.with_name(f".{weights_path.name}.tmp")
            shutil.copyfile(weights, tmp_weights)
            os.replace(tmp_weights, weights_path)
    module = out / f"{name}.py"
    tmp = module.with_name(f".{module.name}.tmp")
    source = module_source(
        arch, num_classes, channels, cells, in_channels, weights_path.name if weights_path else None, normalisation
    )
    tmp.write_text(source)
    os.replace(tmp, module)  # never a partial module
    title = f"{arch.to_string()}\nC={channels}, N={cells}: {params / 1e6:.3f} M params, {flops / 1e6:.2f} MFLOPs at {image_size}x{image_size}"
    picture = draw_cell(arch, out / f"{name}_cell.png", title=title)
    return ExportedFiles(module, picture, params, flops, weights_path)
