"""``grabnas collect`` and ``grabnas export``: the real-training subcommands.

Wire them into :mod:`grabnas.cli` with ``add_train_commands(subparsers)``. Handlers take the
parsed ``argparse.Namespace`` and return an exit status; heavy modules load inside them.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from grabnas.cli_args import add_ray_args, add_recipe_args, executor_from_args, recipe_from_args
from grabnas.cli_args import csv_list as _csv_list
from grabnas.cli_args import non_negative_int as _non_negative_int
from grabnas.cli_args import positive_int as _positive_int


def _size_map(text: str) -> tuple[str, int]:
    name, sep, size = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected DATASET=SIZE, e.g. mnist-subset=14, got {text!r}")
    return name.strip(), _positive_int(size)


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``collect`` and ``export`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "collect",
        help="train sampled NB201 cells on many image tasks into a meta-training corpus",
        description="Train sampled NB201 cells on class-subset tasks of image datasets and append one CSV "
        "row per (task, architecture), with a JSON card next to it. Rerunning the same command resumes.",
    )
    p.add_argument("--out", required=True, help="corpus CSV to write or extend (the card goes to the same name .json)")
    p.add_argument(
        "--datasets",
        type=_csv_list,
        default=("digits", "mnist-subset"),
        help="datasets to draw class-subset tasks from: digits, mnist-subset, npz:PATH, folder:PATH, "
        "torchvision:NAME:ROOT, a .npz file or a class-folder directory (default digits,mnist-subset)",
    )
    p.add_argument("--tasks", type=_non_negative_int, default=30, help="number of class-subset tasks to draw (default 30)")
    p.add_argument(
        "--task", action="append", default=[], metavar="NAME", help="an explicit task DATASET[c1,c2,...]@SEED (repeatable)"
    )
    p.add_argument("--min-classes", type=_positive_int, default=3, help="fewest classes per drawn task (default 3)")
    p.add_argument("--max-classes", type=_positive_int, default=10, help="most classes per drawn task (default 10)")
    p.add_argument(
        "--image-size",
        type=_size_map,
        action="append",
        default=[],
        metavar="DATASET=SIZE",
        help="resize a dataset's tasks to SIZE x SIZE, e.g. mnist-subset=14 (repeatable)",
    )
    p.add_argument("--archs", type=_positive_int, default=30, help="architectures per task (default 30)")
    p.add_argument("--shared-archs", type=_non_negative_int, default=10, help="of which the same in every task (default 10)")
    p.add_argument("--seed", type=int, default=0, help="master seed of tasks, architectures and trials (default 0)")
    add_recipe_args(p, epochs=5, channels=8, cells=1, batch=128)
    g = p.add_argument_group("execution")
    g.add_argument("--jobs", type=_positive_int, default=1, help="parallel worker processes on this machine (default 1)")
    add_ray_args(g)
    g.add_argument("--retry-failed", action="store_true", help="train again the pairs whose row says failed")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_collect)

    e = sub.add_parser(
        "export",
        help="write a standalone PyTorch file and a cell picture for an NB201 architecture",
        description="Write DIR/<name>.py, a PyTorch module file that needs only torch (the network code and the "
        "cell genotype; build_model() returns the network), and DIR/<name>_cell.png, a drawing of the cell.",
    )
    e.add_argument("arch", help="NB201 cell: |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a NASLib index tuple (2, 2, 0, 4, 2, 0)")
    e.add_argument("--classes", type=_positive_int, default=10, help="outputs of the head (default 10)")
    e.add_argument("--channels", type=_positive_int, default=16, help="C (default 16)")
    e.add_argument("--cells", type=_non_negative_int, default=5, help="N (default 5)")
    e.add_argument("--in-channels", type=_positive_int, default=3, help="image channels (default 3)")
    e.add_argument("--image-size", type=_positive_int, default=32, help="image side for the cost figures (default 32)")
    e.add_argument("--name", default=None, help="file name stem (default nb201_<short hash>)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(handler=cmd_export)


def cmd_collect(args: argparse.Namespace) -> int:
    from grabnas.collect import collect
    from grabnas.data.tasks import TaskSpec, class_subset_tasks
    from grabnas.errors import GrabnasError

    if args.min_classes < 2:
        raise GrabnasError(f"--min-classes must be at least 2, got {args.min_classes}")
    if args.max_classes < args.min_classes:
        raise GrabnasError(f"--max-classes {args.max_classes} is below --min-classes {args.min_classes}")
    sizes = dict(args.image_size)
    tasks = [TaskSpec.parse(t) for t in args.task]
    tasks = [TaskSpec(t.dataset, t.classes, t.seed, image_size=t.image_size or sizes.get(t.dataset)) for t in tasks]
    if args.tasks:
        tasks += class_subset_tasks(list(args.datasets), args.tasks, args.seed, args.min_classes, args.max_classes, sizes)
    if not tasks:
        raise GrabnasError("no tasks: pass --tasks N (drawn from --datasets) or --task NAME")
    config = recipe_from_args(args)
    executor = executor_from_args(args, workers=args.jobs)
    command = " ".join(shlex.quote(a) for a in sys.argv)
    with executor:
        summary = collect(
            tasks,
            config,
            args.out,
            n_archs=args.archs,
            shared_archs=args.shared_archs,
            master_seed=args.seed,
            executor=executor,
            progress=not args.no_progress,
            retry_failed=args.retry_failed,
            command=command,
        )
    print(
        f"{summary.rows_added} trainings this run ({summary.failed} failed) in {summary.wall_seconds:.0f} s; "
        f"{summary.rows_total} rows in {summary.csv_path}; card {summary.card_path}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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
    print(f"wrote {paths.module} and {paths.picture} ({paths.params / 1e6:.6f} M parameters, {paths.flops / 1e6:.2f} MFLOPs)")
    return 0


def main(argv=None) -> int:
    """``python -m grabnas.cli_train {collect,export} ...``: the same as ``grabnas collect|export``."""
    from grabnas.cli import main as grabnas_main

    return grabnas_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
