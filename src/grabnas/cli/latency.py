"""``grabnas latency``: measure the forward latency of a sample of NB201 cells on this device, fit
the additive predictor for all 15,625 and write the table (cached: a rerun reuses it)."""

from __future__ import annotations

import argparse

from grabnas.cli.args import add_threads_arg, fraction, non_negative_int, positive_int


def add_latency_command(sub: argparse._SubParsersAction) -> None:
    """Add ``latency`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "latency",
        help="measure cell latencies on this device and fit a predictor (for --max-latency)",
        description="Measure the forward latency (eval mode, no gradients, median of --repeats after "
        "--warmup) of a seeded sample of NB201 cells built into the NB201 network on --device, fit an "
        "additive per-edge-op predictor for all 15,625 cells, report its error on held-out cells and "
        "write the table to --out. Rerunning with the same settings on the same device reuses --out.",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--out", required=True, metavar="TABLE", help="the latency table (JSON) to write or reuse")
    g = p.add_argument_group("network (default: NB201's CIFAR-10 network)")
    g.add_argument(
        "--network",
        choices=("cifar10", "cifar100", "imagenet16"),
        default="cifar10",
        help="start from the NB201 benchmark's network of this dataset (default cifar10)",
    )
    g.add_argument("--channels", type=positive_int, default=None, help="C, channels of the first stage")
    g.add_argument("--cells", type=non_negative_int, default=None, help="N, cells per stage")
    g.add_argument("--classes", type=positive_int, default=None, help="outputs of the head")
    g.add_argument("--in-channels", type=positive_int, default=None, help="channels of the input images")
    g.add_argument("--image-size", type=positive_int, default=None, help="height and width of the input images")
    m = p.add_argument_group("measurement")
    m.add_argument("--sample", type=positive_int, default=200, help="cells measured (default 200)")
    m.add_argument("--batch-size", type=positive_int, default=1, help="inputs per forward pass (default 1)")
    m.add_argument("--warmup", type=non_negative_int, default=5, help="untimed passes per cell (default 5)")
    m.add_argument("--repeats", type=positive_int, default=20, help="timed passes per cell; the median is kept")
    m.add_argument("--holdout", type=fraction, default=0.2, help="share of the cells held out of the fit (0.2)")
    m.add_argument("--seed", type=int, default=0, help="seed of the sample and the held-out split (default 0)")
    add_threads_arg(m, help="torch intra-op threads (default: torch's choice; recorded in the table)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_latency)


def setting_from_args(args: argparse.Namespace):
    """The :class:`grabnas.train.cost.NetworkSetting` of ``--network`` and its overrides."""
    from dataclasses import replace

    from grabnas.train.cost import NB201_NETWORKS

    changes = {
        "C": args.channels,
        "N": args.cells,
        "num_classes": args.classes,
        "in_channels": args.in_channels,
        "height": args.image_size,
        "width": args.image_size,
    }
    return replace(NB201_NETWORKS[args.network], **{k: v for k, v in changes.items() if v is not None})


def cmd_latency(args: argparse.Namespace) -> int:
    """Handler of ``grabnas latency``."""
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from grabnas.errors import GrabnasError
    from grabnas.train.latency import build_latency_table, device_info, load_latency_table, measurement_difference

    setting = setting_from_args(args)
    threads = args.threads or torch.get_num_threads()
    want = {
        "device": device_info(args.device, threads),
        "setting": asdict(setting),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "cells": args.sample,
        "seed": args.seed,
        "holdout": args.holdout,
    }
    out = Path(args.out)
    if out.exists():
        table = load_latency_table(out)
        diff = measurement_difference(table.measurement(), want)
        if diff:
            raise GrabnasError(f"--out {out} holds another latency table: {diff}; use another --out (or delete it)")
        print(f"reusing {out} (same device and settings; measured in {table.seconds:.0f} s)")
    else:
        bar = None
        if not args.no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=args.repeats, desc=f"latency {args.device}", unit="round", leave=False)
        table = build_latency_table(
            setting,
            args.device,
            args.sample,
            args.batch_size,
            args.warmup,
            args.repeats,
            args.seed,
            args.holdout,
            threads,
            progress=(lambda i, n: bar.update(1)) if bar is not None else None,
        )
        if bar is not None:
            bar.close()
        table.save(out)
        print(f"wrote {out} (measured in {table.seconds:.0f} s)")
    print(table.summary())
    e = table.errors
    print(
        f"held-out MAPE {e['mape']:.2f} %  Spearman {e['spearman']:.3f}  ({e['n']} cells; fit MAPE {e['fit_mape']:.2f} %)"
    )
    return 0
