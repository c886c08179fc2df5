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
from grabnas.cli_args import csv_list as _csv_list
from grabnas.cli_args import positive_int as _positive_int
from grabnas.errors import GrabnasError


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
    p.add_argument("--prune-top", type=float, default=0.0, help="remove the task's best P %% from the candidate pool")
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
    config = BenchConfig(
        args.benchmark, tuple(tasks), tuple(args.optimizers), args.seeds, args.budget, args.master_seed, args.prune_top
    )
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


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search one task; every ask/tell goes to an SQLite study (rerun the command to resume)",
        description="Search one task of a tabular benchmark. Every ask and tell is stored in --study as it "
        "happens; rerunning the same command resumes without losing or repeating evaluations.",
    )
    p.add_argument("--benchmark", default="nb201", help="nb201, nasbench-graph or csv:PATH (default nb201)")
    p.add_argument("--data", default=None, help="NB201 table (nb201_accuracies.csv or its folder); default $GRABNAS_NB201")
    p.add_argument("--task", required=True, help="task to search (e.g. cifar10, cora)")
    p.add_argument("--optimizer", default="rea", help="optimizer name (default rea)")
    p.add_argument("--budget", type=_positive_int, default=30, help="number of evaluations (default 30)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--workers", type=_positive_int, default=1, help="evaluations in flight at once")
    p.add_argument("--study", required=True, help="SQLite study file (created, or resumed when it exists)")
    p.add_argument("--out", default=None, help="report folder (default: beside the study)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from grabnas.benchmarks import load_benchmark
    from grabnas.evaluation.lookup import LookupEvaluator
    from grabnas.report import write_search_report
    from grabnas.search.loop import run_search
    from grabnas.search.registry import build_optimizer
    from grabnas.seeding import child_seed
    from grabnas.study import Study

    torch.set_num_threads(args.threads)
    bench = load_benchmark(args.benchmark, args.data)
    evaluate = LookupEvaluator(bench, args.task)
    optimizer = build_optimizer(args.optimizer, bench, args.task, child_seed(args.seed, args.task))
    settings = {"benchmark": args.benchmark, "task": args.task, "optimizer": args.optimizer, "seed": args.seed}
    study = Study.open(args.study, settings)
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.budget, desc=f"search {args.task}", unit="eval")

    def on_result(st: Study) -> None:
        if bar is not None:
            best = st.best(1)
            bar.n = len(st.trials("done")) + len(st.trials("failed"))
            bar.set_postfix_str(f"best {best[0].value:.4g}" if best else "no success yet")
            bar.refresh()

    try:
        outcome = run_search(optimizer, evaluate, study, args.budget, workers=args.workers, on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
    out = Path(args.out) if args.out else Path(args.study).with_suffix("")
    report = write_search_report(study, bench.space, out, title=f"{args.benchmark} {args.task}, {args.optimizer}")
    best = study.best(1)
    print(f"{outcome.evaluated} new evaluations ({outcome.replayed} replayed from {args.study})")
    if best:
        b = best[0]
        test = "" if b.test_value is None else f" (test {b.test_value:.4f})"
        print(f"best architecture: {b.arch}\nbest value: {b.value:.4f}{test}")
    print(f"report: {report}")
    study.close()
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="inspect a study file")
    s = p.add_subparsers(dest="study_command", required=True)
    show = s.add_parser("show", help="print the best architectures so far")
    show.add_argument("study", help="SQLite study file")
    show.add_argument("--top", type=_positive_int, default=10, help="how many (default 10)")
    show.set_defaults(handler=_cmd_study_show)
    exp = s.add_parser("export", help="write every trial as CSV")
    exp.add_argument("study", help="SQLite study file")
    exp.add_argument("--out", required=True, help="CSV to write")
    exp.set_defaults(handler=_cmd_study_export)


def _cmd_study_show(args: argparse.Namespace) -> int:
    from grabnas.study import Study

    with Study.load(args.study) as st:
        trials = st.trials()
        counts = {k: sum(t.status == k for t in trials) for k in ("done", "failed", "asked")}
        print(f"{args.study}: {st.settings()}")
        print(f"{counts['done']} done, {counts['failed']} failed, {counts['asked']} in flight")
        for rank, t in enumerate(st.best(args.top), start=1):
            test = "" if t.test_value is None else f"  test {t.test_value:.4f}"
            print(f"{rank:3d}. {t.value:.4f}{test}  {t.arch}  (trial {t.id})")
    return 0


def _cmd_study_export(args: argparse.Namespace) -> int:
    from grabnas.study import Study

    with Study.load(args.study) as st:
        print(f"wrote {st.export_csv(args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grabnas", description="Meta neural-architecture search (GraB-NAS).")
    parser.add_argument("--version", action="version", version=f"grabnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_bench(sub)
    _add_search(sub)
    _add_study(sub)
    _add_nb201(sub)
    from grabnas.cli_surrogate import add_surrogate_commands
    from grabnas.cli_train import add_train_commands
    from grabnas.cli_vae import add_vae_commands

    add_vae_commands(sub)
    add_surrogate_commands(sub)
    add_train_commands(sub)
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
