"""Exceptions that carry a user-facing, one-line message.

The CLI prints ``GrabnasError`` messages without a traceback and exits non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


def one_line(text: object, limit: int = 300) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut to ``limit`` characters (``…``)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class GrabnasError(ValueError):
    """A mistake in user input (a string, a file, an option) with a one-line explanation."""


class InvalidArchitectureError(GrabnasError):
    """An architecture string, tuple or DAG that is not a member of the search space."""


class BenchmarkFileError(GrabnasError):
    """A benchmark table that is missing or malformed."""


class UnknownTaskError(GrabnasError):
    """A task name the benchmark does not have."""
