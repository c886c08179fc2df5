"""Argument types (argparse ``type=`` callables), shared help texts and argument groups of the
``grabnas`` subcommands: each is defined here once and imported by the command modules."""

from __future__ import annotations

import argparse

from grabnas.specs import split_top_level

NB201_DATA_HELP = "NB201 table (nb201_accuracies.csv or its folder); default $GRABNAS_NB201, else the shipped table"
THREADS_HELP = "torch intra-op threads (default: torch's choice; 1 is fastest on a busy machine)"


# -- argument types --------------------------------------------------------------------------------
def csv_list(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")`` (commas inside ``[...]`` do not split, so
    ``grabnas[t_bo=5,eta=0.1]`` and ``digits[0,3,7]@12`` stay whole); an empty list is an error."""
    items = tuple(x.strip() for x in split_top_level(text) if x.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def int_list(text: str) -> tuple[int, ...]:
    """``"0,5,20"`` -> ``(0, 5, 20)``: comma-separated integers >= 0."""
    try:
        vals = tuple(int(x) for x in csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return vals


def _bounded_int(text: str, low: int, expected: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _bounded_int(text, 0, "an integer >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return v


# -- torch threads ---------------------------------------------------------------------------------
def add_threads_arg(p, default: int | None = None, help: str = THREADS_HELP) -> None:
    """``--threads N`` (into a parser or an argument group); :func:`set_threads` applies it."""
    p.add_argument("--threads", type=positive_int, default=default, help=help)


def set_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)`` when ``--threads`` is given (torch loads only then)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# -- cost constraints (search, bench) --------------------------------------------------------------
def add_constraint_args(p) -> None:
    """``--max-params M``, ``--max-flops M`` and ``--max-latency MS --latency-table TABLE`` (into a
    parser or an argument group), read by :func:`constraints_from_args`; the values are checked
    there (one-line errors)."""
    p.add_argument(
        "--max-params",
        default=None,
        metavar="M",
        help="search only cells whose network has at most M million parameters",
    )
    p.add_argument(
        "--max-flops",
        default=None,
        metavar="M",
        help="search only cells whose network needs at most M MFLOPs per image",
    )
    p.add_argument(
        "--max-latency",
        default=None,
        metavar="MS",
        help="search only cells whose network's predicted forward latency is at most MS ms (needs --latency-table)",
    )
    p.add_argument(
        "--latency-table",
        default=None,
        metavar="TABLE",
        help="latency table of your device made by grabnas latency, for the network the search evaluates",
    )


def constraints_from_args(args: argparse.Namespace):
    """The :class:`grabnas.search.constraints.Constraints` of :func:`add_constraint_args`'s flags."""
    from grabnas.errors import GrabnasError
    from grabnas.search.constraints import Constraints

    max_latency, table = getattr(args, "max_latency", None), getattr(args, "latency_table", None)
    if table is not None and max_latency is None:
        raise GrabnasError("--latency-table is read only with --max-latency MS")
    if max_latency is not None and table is None:
        raise GrabnasError("--max-latency needs --latency-table TABLE (measure one with grabnas latency --out TABLE)")
    if table is not None:
        Constraints(max_latency=max_latency, latency_table=True)  # a bad limit is refused before the table is read
        from grabnas.train.latency import load_latency_table

        table = load_latency_table(table)
    return Constraints(getattr(args, "max_params", None), getattr(args, "max_flops", None), max_latency, table)


# -- argument groups shared by the real-training subcommands (collect, search --dataset) --------
def add_recipe_args(
    p: argparse.ArgumentParser, epochs: int, channels: int, cells: int, batch: int, title: str = "training recipe"
) -> None:
    """The training-recipe flags (``--epochs``, ``--channels``, ... ``--threads``) with these defaults."""
    g = p.add_argument_group(title)
    g.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs per training (default {epochs})")
    g.add_argument(
        "--channels", type=positive_int, default=channels, help=f"C, channels of the first stage (default {channels})"
    )
    g.add_argument("--cells", type=non_negative_int, default=cells, help=f"N, cells per stage (default {cells})")
    g.add_argument("--batch-size", type=positive_int, default=batch, help=f"training batch size (default {batch})")
    g.add_argument("--lr", type=float, default=0.1, help="initial learning rate, cosine-annealed (default 0.1)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default 5e-4)")
    g.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_threads_arg(g, default=1, help="torch threads per training (default 1)")


def recipe_from_args(args: argparse.Namespace):
    """The :class:`grabnas.train.recipe.TrainConfig` of the :func:`add_recipe_args` flags (seed ``args.seed``)."""
    from grabnas.train.recipe import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        channels=args.channels,
        cells=args.cells,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment=not args.no_augment,
        device=args.device,
        num_threads=args.threads,
        seed=args.seed,
    )


def add_ray_args(g) -> None:
    """``--ray``, ``--ray-address`` and ``--gpus-per-trial`` (into a parser or an argument group)."""
    g.add_argument("--ray", action="store_true", help="run trainings as tasks of a local Ray instance")
    g.add_argument(
        "--ray-address", default=None, metavar="ADDR", help="join the Ray cluster at ADDR (HOST:PORT or auto)"
    )
    g.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per training with Ray (default 0)")


def executor_from_args(args: argparse.Namespace, workers: int):
    """The executor of the :func:`add_ray_args` flags: Ray, else ``workers`` local processes
    (one training each, ``args.threads`` torch threads), else in this process."""
    from grabnas.evaluation.executors import make_executor

    return make_executor(
        workers=workers,
        ray=args.ray,
        ray_address=args.ray_address,
        num_cpus_per_trial=args.threads,
        num_gpus_per_trial=args.gpus_per_trial,
    )
