"""``grabnas collect``: train sampled NB201 cells on many image tasks into a meta-training corpus."""

from __future__ import annotations

import argparse
import shlex
import sys

from grabnas.cli.args import (
    add_ray_args,
    add_recipe_args,
    csv_list,
    executor_from_args,
    non_negative_int,
    positive_int,
    recipe_from_args,
)


def _size_map(text: str) -> tuple[str, int]:
    name, sep, size = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected DATASET=SIZE, e.g. mnist-subset=14, got {text!r}")
    return name.strip(), positive_int(size)


def add_collect_command(sub: argparse._SubParsersAction) -> None:
    """Add ``collect`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "collect",
        help="train sampled NB201 cells on many image tasks into a meta-training corpus",
        description="Train sampled NB201 cells on class-subset tasks of image datasets and append one CSV "
        "row per (task, architecture), with a JSON card next to it. Rerunning the same command resumes.",
    )
    p.add_argument("--out", required=True, help="corpus CSV to write or extend (the card goes to the same name .json)")
    p.add_argument(
        "--datasets",
        type=csv_list,
        default=("digits", "mnist-subset"),
        help="datasets to draw class-subset tasks from: digits, mnist-subset, npz:PATH, folder:PATH, "
        "torchvision:NAME:ROOT, a .npz file or a class-folder directory (default digits,mnist-subset)",
    )
    p.add_argument(
        "--tasks", type=non_negative_int, default=30, help="number of class-subset tasks to draw (default 30)"
    )
    p.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME",
        help="an explicit task DATASET[c1,c2,...]@SEED or a dataset spec, either with modifiers "
        "such as ~noise0.3, ~train20, ~16px (repeatable)",
    )
    p.add_argument("--min-classes", type=positive_int, default=3, help="fewest classes per drawn task (default 3)")
    p.add_argument("--max-classes", type=positive_int, default=10, help="most classes per drawn task (default 10)")
    p.add_argument(
        "--image-size",
        type=_size_map,
        action="append",
        default=[],
        metavar="DATASET=SIZE",
        help="resize a dataset's tasks to SIZE x SIZE, e.g. mnist-subset=14 (repeatable)",
    )
    p.add_argument("--archs", type=positive_int, default=30, help="architectures per task (default 30)")
    p.add_argument(
        "--shared-archs", type=non_negative_int, default=10, help="of which the same in every task (default 10)"
    )
    p.add_argument("--seed", type=int, default=0, help="master seed of tasks, architectures and trials (default 0)")
    add_recipe_args(p, epochs=5, channels=8, cells=1, batch=128)
    g = p.add_argument_group("execution")
    g.add_argument("--jobs", type=positive_int, default=1, help="parallel worker processes on this machine (default 1)")
    add_ray_args(g)
    g.add_argument("--retry-failed", action="store_true", help="train again the pairs whose row says failed")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_collect)


def _task(text: str):
    """A task name (``digits[0,3]@1~noise0.3``) or a dataset spec (``digits~train20``: all classes, split seed 0)."""
    from grabnas.data.tasks import TaskSpec

    return TaskSpec.from_spec(text)


def cmd_collect(args: argparse.Namespace) -> int:
    """Handler of ``grabnas collect``."""
    from grabnas.collect import collect
    from grabnas.data.tasks import class_subset_tasks
    from grabnas.errors import GrabnasError

    if args.min_classes < 2:
        raise GrabnasError(f"--min-classes must be at least 2, got {args.min_classes}")
    if args.max_classes < args.min_classes:
        raise GrabnasError(f"--max-classes {args.max_classes} is below --min-classes {args.min_classes}")
    sizes = dict(args.image_size)
    tasks = [_task(t) for t in args.task]
    tasks = [t.with_image_size(t.image_size or sizes.get(t.dataset)) for t in tasks]
    if args.tasks:
        tasks += class_subset_tasks(
            list(args.datasets), args.tasks, args.seed, args.min_classes, args.max_classes, sizes
        )
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
