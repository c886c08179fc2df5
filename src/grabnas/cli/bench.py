"""``grabnas bench``: run optimizers x tasks x seeds on a tabular benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from grabnas.cli.args import (
    NB201_DATA_HELP,
    add_constraint_args,
    add_threads_arg,
    constraints_from_args,
    csv_list,
    positive_int,
    set_threads,
)
from grabnas.errors import GrabnasError


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "bench",
        help="run optimizers x tasks x seeds on a tabular benchmark",
        description="Run optimizers x tasks x seeds on a tabular benchmark; write results.csv, "
        "summary.md and regret.png into --out. Rerunning the same command resumes.",
    )
    p.add_argument("--benchmark", default="nb201", help="nb201, nasbench-graph or csv:PATH (default nb201)")
    p.add_argument("--data", default=None, help=NB201_DATA_HELP)
    p.add_argument("--tasks", type=csv_list, default=None, help="comma-separated tasks (default: all main tasks)")
    p.add_argument(
        "--optimizers",
        type=csv_list,
        default=("random", "rea", "local", "gpbo", "transfer-rank"),
        help="comma-separated optimizers",
    )
    p.add_argument("--seeds", type=positive_int, default=20, help="number of seeds per (optimizer, task)")
    p.add_argument("--budget", type=positive_int, default=100, help="evaluations per run")
    p.add_argument("--master-seed", type=int, default=0, help="seed every run's seed derives from")
    p.add_argument("--prune-top", type=float, default=0.0, help="remove the task's best P %% from the candidate pool")
    add_constraint_args(p.add_argument_group("cost constraints (every optimizer searches the feasible cells only)"))
    p.add_argument("--jobs", type=positive_int, default=1, help="parallel worker processes")
    add_threads_arg(p, default=1, help="torch threads per process (default 1)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Handler of ``grabnas bench``."""
    from grabnas.bench import BenchConfig, run_bench
    from grabnas.benchmarks import load_benchmark
    from grabnas.search.multifidelity import is_multifidelity

    set_threads(args)
    constraints = constraints_from_args(args)  # checked before anything loads
    multi = [o for o in args.optimizers if is_multifidelity(o)]
    if multi:
        raise GrabnasError(
            f"{multi[0]} is a multi-fidelity optimizer, which grabnas bench (regret per evaluation) does not run; "
            "run it with grabnas search --optimizer ... (a study per seed), or compare it by training cost with "
            "benchmarks/multifidelity.py (docs/multifidelity.md)"
        )

    bench = load_benchmark(args.benchmark, args.data)
    tasks = args.tasks or bench.main_tasks
    for t in tasks:
        bench.table(t)
    config = BenchConfig(
        args.benchmark,
        tuple(tasks),
        tuple(args.optimizers),
        args.seeds,
        args.budget,
        args.master_seed,
        args.prune_top,
        constraints.max_params,
        constraints.max_flops,
        constraints.max_latency,
        str(Path(args.latency_table).resolve()) if args.latency_table else None,
    )
    results = run_bench(
        config,
        args.out,
        data=args.data,
        jobs=args.jobs,
        threads=args.threads,
        progress=not args.no_progress,
        log=print,
    )
    summary = results.parent / "summary.md"
    if summary.exists():
        print(summary.read_text())
    written = [results, summary, results.parent / "regret.png"]
    if constraints.active and (results.parent / "pareto.png").exists():
        written.append(results.parent / "pareto.png")
    print(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}")
    return 0
