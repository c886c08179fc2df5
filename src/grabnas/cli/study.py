"""``grabnas study show`` and ``grabnas study export``: inspect a study file."""

from __future__ import annotations

import argparse

from grabnas.cli.args import positive_int


def add_study_command(sub: argparse._SubParsersAction) -> None:
    """Add ``study show`` and ``study export`` to the ``grabnas`` subcommands."""
    p = sub.add_parser("study", help="inspect a study file")
    s = p.add_subparsers(dest="study_command", required=True)
    show = s.add_parser("show", help="print the best architectures so far")
    show.add_argument("study", help="SQLite study file")
    show.add_argument("--top", type=positive_int, default=10, help="how many (default 10)")
    show.set_defaults(handler=cmd_study_show)
    exp = s.add_parser("export", help="write every trial as CSV")
    exp.add_argument("study", help="SQLite study file")
    exp.add_argument("--out", required=True, help="CSV to write")
    exp.set_defaults(handler=cmd_study_export)


def cmd_study_show(args: argparse.Namespace) -> int:
    """Handler of ``grabnas study show``."""
    from grabnas.study import Study

    with Study.load(args.study) as st:
        trials = st.trials()
        counts = {k: sum(t.status == k for t in trials) for k in ("done", "failed", "asked")}
        print(f"{args.study}: {st.settings()}")
        optimizer_settings = st.info("optimizer_settings")
        if optimizer_settings:
            print(f"optimizer settings: {optimizer_settings}")
        print(f"{counts['done']} done, {counts['failed']} failed, {counts['asked']} in flight")
        for rank, t in enumerate(st.best(args.top), start=1):
            test = "" if t.test_value is None else f"  test {t.test_value:.4f}"
            print(f"{rank:3d}. {t.value:.4f}{test}  {t.arch}  (trial {t.id})")
    return 0


def cmd_study_export(args: argparse.Namespace) -> int:
    """Handler of ``grabnas study export``."""
    from grabnas.study import Study

    with Study.load(args.study) as st:
        print(f"wrote {st.export_csv(args.out)}")
    return 0
