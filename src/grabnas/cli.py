"""The ``grabnas`` command.

User mistakes (:class:`grabnas.errors.GrabnasError`) print one line ``grabnas: error: ...`` and
exit with status 2; nothing is read from ``sys.argv`` at import time and heavy modules are
imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from grabnas import __version__
from grabnas.errors import GrabnasError


def _csv_list(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run optimizers x tasks x seeds on a tabular benchmark",
        description="Run optimizers x tasks x seeds on a tabular benchmark; write results.csv, "
        "summary.md and regret.png into --out. Rerunning the same command resumes.",
    )
    p.add_argument("--benchmark", default="nb201", help="nb201, nasbench-graph or csv:PATH (default nb201)")
    p.add_argument("--data", default=None, help="NB201 table (nb201_accuracies.csv or its folder); default $GRABNAS_NB201")
    p.add_argument("--tasks", type=_csv_list, default=None, help="comma-separated tasks (default: all main tasks)")
    p.add_argument(
        "--optimizers", type=_csv_list, default=("random", "rea", "local", "gpbo", "transfer-rank"), help="comma-separated optimizers"
    )
    p.add_argument("--seeds", type=_positive_int, default=20, help="number of seeds per (optimizer, task)")
    p.add_argument("--budget", type=_positive_int, default=100, help="evaluations per run")
    p.add_argument("--master-seed", type=int, default=0, help="seed every run's seed derives from")
    p.add_argument("--jobs", type=_positive_int, default=1, help="parallel worker processes")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from grabnas.bench import BenchConfig, run_bench
    from grabnas.benchmarks import load_benchmark

    torch.set_num_threads(args.threads)

    bench = load_benchmark(args.benchmark, args.data)
    tasks = args.tasks or bench.main_tasks
    for t in tasks:
        bench.table(t)
    config = BenchConfig(args.benchmark, tuple(tasks), tuple(args.optimizers), args.seeds, args.budget, args.master_seed)
    results = run_bench(
        config, args.out, data=args.data, jobs=args.jobs, threads=args.threads, progress=not args.no_progress
    )
    summary = results.parent / "summary.md"
    if summary.exists():
        print(summary.read_text())
    print(f"wrote {results}, {summary} and {results.parent / 'regret.png'}")
    return 0


def _add_nb201(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nb201", help="NAS-Bench-201 table tools")
    s = p.add_subparsers(dest="nb201_command", required=True)
    c = s.add_parser(
        "convert",
        help="build nb201_accuracies.csv from the official NATS-Bench topology files (needs nats_bench)",
    )
    c.add_argument("source", help="NATS-tss-v1_0-3ffb9-simple folder (fast mode) or the full .pickle.pbz2 file")
    c.add_argument("--out", required=True, help="CSV to write")
    c.set_defaults(handler=_cmd_nb201_convert)


def _cmd_nb201_convert(args: argparse.Namespace) -> int:
    from grabnas.benchmarks.nats_convert import convert_nats_topology

    n = convert_nats_topology(args.source, args.out)
    print(f"wrote {n} rows to {args.out}; use it with --data {args.out} or GRABNAS_NB201={os.path.abspath(args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grabnas", description="Meta neural-architecture search (GraB-NAS).")
    parser.add_argument("--version", action="version", version=f"grabnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_bench(sub)
    _add_nb201(sub)
    try:
        from grabnas.cli_vae import add_vae_commands
    except ImportError:  # pragma: no cover - the VAE commands are optional while under construction
        pass
    else:
        add_vae_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except GrabnasError as e:
        print(f"grabnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grabnas: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
