"""The architecture type, its DAG view and the search-space contract.

Every search space provides:

* an immutable, hashable :class:`Architecture` subclass with a canonical string;
* a :class:`DAG` view of each architecture (nodes = operations plus one input and one output
  node, edges = data flow, nodes in topological order) — the only thing a graph VAE sees;
* the :class:`SearchSpace` operations: enumerate, sample, mutate, validate, parse, DAG -> member
  and an isomorphism-aware dedup key.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grabnas.errors import InvalidArchitectureError

INPUT = "input"
OUTPUT = "output"


@dataclass(frozen=True)
class DAG:
    """A directed acyclic graph of typed nodes in topological order.

    Attributes:
        node_types: ``(n,)`` type index of each node into the space's ``node_type_names``;
            node ``0`` is the input node and node ``n - 1`` the output node.
        edges: ``(m,)`` pairs ``(src, dst)`` with ``src < dst`` (topological order), sorted.
    """

    node_types: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.node_types)
        for src, dst in self.edges:
            if not 0 <= src < dst < n:
                raise InvalidArchitectureError(
                    f"DAG edge ({src}, {dst}) is not in topological order for {n} nodes; "
                    "expected 0 <= src < dst < number of nodes"
                )
        object.__setattr__(self, "edges", tuple(sorted(set(self.edges))))

    @property
    def num_nodes(self) -> int:
        return len(self.node_types)

    def predecessors(self, node: int) -> list[int]:
        """Sorted sources of the edges that end at ``node``."""
        return [s for s, d in self.edges if d == node]

    def successors(self, node: int) -> list[int]:
        """Sorted destinations of the edges that start at ``node``."""
        return [d for s, d in self.edges if s == node]

    def adjacency(self) -> np.ndarray:
        """``(n, n)`` 0/1 matrix, ``A[i, j] = 1`` for an edge ``i -> j`` (strictly upper triangular)."""
        a = np.zeros((self.num_nodes, self.num_nodes), dtype=np.int8)
        for s, d in self.edges:
            a[s, d] = 1
        return a


class Architecture(abc.ABC):
    """Base of every space's architecture type: immutable, hashable, canonical string.

    Subclasses are frozen dataclasses; ``space_name`` names the space they belong to.
    """

    space_name: ClassVar[str]

    @abc.abstractmethod
    def to_string(self) -> str:
        """The canonical string of this architecture (parseable by its space)."""

    def __str__(self) -> str:
        return self.to_string()


class SearchSpace(abc.ABC):
    """A finite set of architectures with a DAG view.

    ``node_type_names`` is the vocabulary of DAG node types: index 0 is ``"input"``, index 1 is
    ``"output"``, the rest are the operations.
    """

    name: ClassVar[str]
    node_type_names: ClassVar[tuple[str, ...]]
    max_nodes: ClassVar[int]

    # -- membership -----------------------------------------------------------------------
    @abc.abstractmethod
    def enumerate(self) -> Iterator[Architecture]:
        """Every member, in a fixed order."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of members."""

    @abc.abstractmethod
    def validate(self, arch: Architecture) -> None:
        """Raise :class:`InvalidArchitectureError` saying what is wrong, or return None."""

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Architecture) or arch.space_name != self.name:
            return False
        try:
            self.validate(arch)
        except InvalidArchitectureError:
            return False
        return True

    @abc.abstractmethod
    def parse(self, text: str) -> Architecture:
        """Architecture from its canonical string; a clear error for a malformed one."""

    # -- DAG view -------------------------------------------------------------------------
    @abc.abstractmethod
    def to_dag(self, arch: Architecture) -> DAG:
        """The data-flow DAG of a member."""

    @abc.abstractmethod
    def from_dag(self, dag: DAG) -> Architecture | None:
        """The member that ``dag`` describes, or None when it describes no member."""

    # -- neighbourhood and sampling ---------------------------------------------------------
    @abc.abstractmethod
    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Members that differ from ``arch`` by one elementary edit (sorted, no duplicates)."""

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[Architecture]:
        """``n`` members drawn uniformly at random (with replacement)."""
        members = self.members()
        return [members[i] for i in rng.integers(0, len(members), size=n)]

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One uniformly chosen neighbour of ``arch``."""
        nbrs = self.neighbours(arch)
        return nbrs[int(rng.integers(len(nbrs)))]

    # -- identity -------------------------------------------------------------------------
    @abc.abstractmethod
    def dedup_key(self, arch: Architecture) -> Hashable:
        """Equal for architectures that compute the same function up to graph isomorphism."""

    # -- helpers shared by every space --------------------------------------------------------
    def members(self) -> list[Architecture]:
        """All members as a list (cached per instance)."""
        cached = self.__dict__.get("_members")
        if cached is None:
            cached = list(self.enumerate())
            self.__dict__["_members"] = cached
        return cached

    def index_of(self, arch: Architecture) -> int:
        """Position of ``arch`` in :meth:`enumerate` order."""
        table = self.__dict__.get("_index")
        if table is None:
            table = {a: i for i, a in enumerate(self.members())}
            self.__dict__["_index"] = table
        try:
            return table[arch]
        except KeyError:
            raise InvalidArchitectureError(f"{arch} is not a member of the {self.name} space") from None

    def node_type_index(self, name: str) -> int:
        return self.node_type_names.index(name)

    def op_names(self) -> tuple[str, ...]:
        """Operation vocabulary (node types without input/output)."""
        return self.node_type_names[2:]

    def onehot(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(len(archs), d)`` float one-hot op encoding used by the plain GP baselines."""
        return np.stack([self.encode_onehot(a) for a in archs]) if archs else np.zeros((0, 0))

    @abc.abstractmethod
    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        """``(d,)`` one-hot op encoding of one architecture (fixed d per space)."""
