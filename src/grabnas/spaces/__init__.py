"""Search spaces: the architecture type, its DAG view and the spaces grabnas knows."""

from __future__ import annotations

from grabnas.errors import GrabnasError
from grabnas.spaces.base import DAG, Architecture, SearchSpace

SPACE_NAMES = ("nb201", "nasbench-graph")


def get_space(name: str) -> SearchSpace:
    """A search space by name (``nb201`` or ``nasbench-graph``)."""
    if name == "nb201":
        from grabnas.spaces.nb201 import NB201Space

        return NB201Space()
    if name in ("nasbench-graph", "nbgraph"):
        from grabnas.spaces.nasbench_graph import NASBenchGraphSpace

        return NASBenchGraphSpace()
    raise GrabnasError(f"unknown search space {name!r}; expected one of {', '.join(SPACE_NAMES)}")


__all__ = ["DAG", "Architecture", "SearchSpace", "get_space", "SPACE_NAMES"]
