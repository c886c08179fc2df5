"""``grabnas export``: a standalone PyTorch file and a cell picture for an NB201 architecture."""

from __future__ import annotations

import argparse

from grabnas.cli.args import non_negative_int, positive_int


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``grabnas`` subcommands."""
    e = sub.add_parser(
        "export",
        help="write a standalone PyTorch file and a cell picture for an NB201 architecture",
        description="Write DIR/<name>.py, a PyTorch module file that needs only torch (the network code and the "
        "cell genotype; build_model() returns the network), and DIR/<name>_cell.png, a drawing of the cell. With "
        "--weights (e.g. a grabnas train run's weights.pt), load_model() in the file returns the trained network; "
        "the sizes are read from the weights, and the input normalisation from the run's result.json beside them.",
    )
    e.add_argument(
        "arch", help="NB201 cell: |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a NASLib index tuple (2, 2, 0, 4, 2, 0)"
    )
    e.add_argument("--classes", type=positive_int, default=None, help="outputs of the head (default 10)")
    e.add_argument("--channels", type=positive_int, default=None, help="C (default 16)")
    e.add_argument("--cells", type=non_negative_int, default=None, help="N (default 5)")
    e.add_argument("--in-channels", type=positive_int, default=None, help="image channels (default 3)")
    e.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="trained state_dict for load_model() (copied beside the module); sizes default to its own",
    )
    e.add_argument("--image-size", type=positive_int, default=32, help="image side for the cost figures (default 32)")
    e.add_argument("--name", default=None, help="file name stem (default nb201_<short hash>)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``grabnas export``."""
    from grabnas.export import export_architecture, load_weights, network_size

    sizes = {"num_classes": 10, "channels": 16, "cells": 5, "in_channels": 3}
    normalisation = None
    if args.weights is not None:
        sizes = network_size(load_weights(args.weights))
        normalisation = _run_normalisation(args.weights, args.arch)
    given = {
        "num_classes": args.classes,
        "channels": args.channels,
        "cells": args.cells,
        "in_channels": args.in_channels,
    }
    sizes.update({k: v for k, v in given.items() if v is not None})
    paths = export_architecture(
        args.arch,
        args.out,
        image_size=args.image_size,
        name=args.name,
        weights=args.weights,
        normalisation=normalisation,
        **sizes,
    )
    weights = f", weights {paths.weights}" if paths.weights else ""
    print(
        f"wrote {paths.module} and {paths.picture}{weights} ({paths.params / 1e6:.6f} M parameters, "
        f"{paths.flops / 1e6:.2f} MFLOPs)"
    )
    return 0


def _run_normalisation(weights: str, arch: str):
    """The input normalisation of the ``grabnas train`` run whose ``weights.pt`` this is (its
    ``result.json`` beside it, same architecture), else None."""
    import json
    from pathlib import Path

    from grabnas.spaces.nb201 import NB201Space

    result = Path(weights).with_name("result.json")
    try:
        info = json.loads(result.read_text())
        if info["architecture"] != NB201Space().parse(arch).to_string():
            return None
        return info["input_normalisation"]["mean"], info["input_normalisation"]["std"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
