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
        "cell genotype; build_model() returns the network), and DIR/<name>_cell.png, a drawing of the cell.",
    )
    e.add_argument(
        "arch", help="NB201 cell: |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a NASLib index tuple (2, 2, 0, 4, 2, 0)"
    )
    e.add_argument("--classes", type=positive_int, default=10, help="outputs of the head (default 10)")
    e.add_argument("--channels", type=positive_int, default=16, help="C (default 16)")
    e.add_argument("--cells", type=non_negative_int, default=5, help="N (default 5)")
    e.add_argument("--in-channels", type=positive_int, default=3, help="image channels (default 3)")
    e.add_argument("--image-size", type=positive_int, default=32, help="image side for the cost figures (default 32)")
    e.add_argument("--name", default=None, help="file name stem (default nb201_<short hash>)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``grabnas export``."""
    from grabnas.export import export_architecture

    paths = export_architecture(
        args.arch,
        args.out,
        num_classes=args.classes,
        channels=args.channels,
        cells=args.cells,
        in_channels=args.in_channels,
        image_size=args.image_size,
        name=args.name,
    )
    print(
        f"wrote {paths.module} and {paths.picture} ({paths.params / 1e6:.6f} M parameters, {paths.flops / 1e6:.2f} MFLOPs)"
    )
    return 0
