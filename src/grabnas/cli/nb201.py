"""``grabnas nb201 convert``: NAS-Bench-201 table tools."""

from __future__ import annotations

import argparse
import os


def add_nb201_command(sub: argparse._SubParsersAction) -> None:
    """Add ``nb201 convert`` to the ``grabnas`` subcommands."""
    p = sub.add_parser("nb201", help="NAS-Bench-201 table tools")
    s = p.add_subparsers(dest="nb201_command", required=True)
    c = s.add_parser(
        "convert",
        help="build nb201_accuracies.csv from the official NATS-Bench topology files (needs nats_bench)",
    )
    c.add_argument("source", help="NATS-tss-v1_0-3ffb9-simple folder (fast mode) or the full .pickle.pbz2 file")
    c.add_argument("--out", required=True, help="CSV to write")
    c.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read the files with plain pickle, which RUNS CODE FROM THE FILE; by default an allow-list "
        "unpickler refuses anything but NATS-Bench data (use only for a file you trust that it refuses)",
    )
    c.set_defaults(handler=cmd_nb201_convert)


def cmd_nb201_convert(args: argparse.Namespace) -> int:
    """Handler of ``grabnas nb201 convert``."""
    from grabnas.benchmarks.nats_convert import convert_nats_topology

    n = convert_nats_topology(args.source, args.out, trust_pickle=args.trust_pickle)
    print(f"wrote {n} rows to {args.out}; use it with --data {args.out} or GRABNAS_NB201={os.path.abspath(args.out)}")
    return 0
