"""The ``grabnas`` command.

One module per command group (:mod:`grabnas.cli.bench`, ``search``, ``study``, ``nb201``, ``vae``,
``surrogate``, ``collect``, ``export``, ``train``, ``latency``), each with an ``add_*`` function that adds its subcommands
and handlers; the shared argument types live in :mod:`grabnas.cli.args`.

User mistakes (:class:`grabnas.errors.GrabnasError`) print one line ``grabnas: error: ...`` and
exit with status 2; nothing is read from ``sys.argv`` at import time and heavy modules are
imported inside the handlers.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from grabnas import __version__
from grabnas.cli.bench import add_bench_command
from grabnas.cli.collect import add_collect_command
from grabnas.cli.export import add_export_command
from grabnas.cli.latency import add_latency_command
from grabnas.cli.nb201 import add_nb201_command
from grabnas.cli.search import add_search_command
from grabnas.cli.study import add_study_command
from grabnas.cli.surrogate import add_surrogate_commands
from grabnas.cli.train import add_train_command
from grabnas.cli.vae import add_vae_commands
from grabnas.errors import GrabnasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grabnas", description="Meta neural-architecture search (GraB-NAS).")
    parser.add_argument("--version", action="version", version=f"grabnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_command(sub)
    add_search_command(sub)
    add_study_command(sub)
    add_nb201_command(sub)
    add_vae_commands(sub)
    add_surrogate_commands(sub)
    add_collect_command(sub)
    add_export_command(sub)
    add_train_command(sub)
    add_latency_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _terminate_as_exit()
    try:
        return int(args.handler(args) or 0)
    except _Terminated:
        print("grabnas: terminated; rerun the same command to resume", file=sys.stderr)
        return 143
    except GrabnasError as e:
        message = " ".join(str(e).split())  # one line, whatever it quotes
        if len(message) > 1000:
            message = f"{message[:600]} … {message[-300:]}"
        print(f"grabnas: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grabnas: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(SystemExit):
    """SIGTERM, raised where the command is, so that results already in are recorded, the study
    closed and the workers stopped (as for Ctrl-C) before the exit with status 143."""


def _terminate_as_exit():
    """Turn SIGTERM into :class:`_Terminated` while a command runs (main thread only); returns the
    previous handler (None when not installed)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated(143)

    return signal.signal(signal.SIGTERM, handler)


__all__ = ["build_parser", "main"]
