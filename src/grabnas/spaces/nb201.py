"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 operations, 15,625 cells.

Edges in the official string order: (0->1), (0->2), (1->2), (0->3), (1->3), (2->3), written
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. The op-index tuple of the benchmark README (NASLib
order) lists edges (0->1, 0->2, 0->3, 1->2, 1->3, 2->3) with ops 0 skip_connect, 1 none,
2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3.

The DAG view is the true data flow: one op node per edge (in official edge order), fed by the
op nodes of the edges that end at the edge's source cell node (or by the input node when the
source is cell node 0); the output node is fed by the op nodes of the edges ending at node 3.
Every cell has the same 8-node DAG shape, so a DAG maps back to a cell iff it has that shape.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grabnas.errors import InvalidArchitectureError
from grabnas.spaces.base import DAG, INPUT, OUTPUT, Architecture, SearchSpace

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Edges (src, dst) of the cell in the official string order.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: NASLib op order and edge order used by the ``naslib_op_indices`` column.
NASLIB_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_NODE_TYPES: tuple[str, ...] = (INPUT, OUTPUT, *OPS)
_EXPECTED_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with op in " + ", ".join(OPS)


@dataclass(frozen=True)
class NB201Arch(Architecture):
    """A NAS-Bench-201 cell: the op of each edge, in official string order."""

    ops: tuple[str, ...]
    space_name: ClassVar[str] = "nb201"

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) != len(EDGES):
            raise InvalidArchitectureError(
                f"an NB201 cell has {len(EDGES)} edge ops, got {len(self.ops)}; expected {_EXPECTED_FORM}"
            )
        for op in self.ops:
            if op not in OPS:
                raise InvalidArchitectureError(f"unknown NB201 op {op!r}; expected one of {', '.join(OPS)}")

    def to_string(self) -> str:
        o = self.ops
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"

    def naslib_indices(self) -> tuple[int, ...]:
        """The 6-tuple of NASLib op indices (README of the NB201 table)."""
        by_edge = dict(zip(EDGES, self.ops))
        return tuple(NASLIB_OPS.index(by_edge[e]) for e in NASLIB_EDGES)


_STRING_RE = re.compile(r"^\|([^|~]+)~0\|\+\|([^|~]+)~0\|([^|~]+)~1\|\+\|([^|~]+)~0\|([^|~]+)~1\|([^|~]+)~2\|$")


class NB201Space(SearchSpace):
    """The NAS-Bench-201 topology search space."""

    name: ClassVar[str] = "nb201"
    node_type_names: ClassVar[tuple[str, ...]] = _NODE_TYPES
    max_nodes: ClassVar[int] = len(EDGES) + 2

    def enumerate(self) -> Iterator[NB201Arch]:
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield NB201Arch(ops)

    def __len__(self) -> int:
        return len(OPS) ** len(EDGES)

    def validate(self, arch: Architecture) -> None:
        if not isinstance(arch, NB201Arch):
            raise InvalidArchitectureError(f"expected an NB201 cell, got {type(arch).__name__}")

    def parse(self, text: str) -> NB201Arch:
        """Parse the official string or a NASLib op-index tuple like ``(2, 2, 0, 4, 2, 0)``."""
        text = text.strip()
        if text.startswith("(") or text[:1].isdigit():
            return self.from_naslib_indices(_parse_int_tuple(text))
        m = _STRING_RE.match(text)
        if m is None:
            raise InvalidArchitectureError(f"malformed NB201 cell string {text!r}; expected {_EXPECTED_FORM}")
        return NB201Arch(tuple(m.groups()))

    def from_naslib_indices(self, indices: tuple[int, ...]) -> NB201Arch:
        if len(indices) != len(NASLIB_EDGES):
            raise InvalidArchitectureError(
                f"an NB201 op-index tuple has {len(NASLIB_EDGES)} entries, got {len(indices)}; "
                "expected e.g. (2, 2, 0, 4, 2, 0) with indices 0-4"
            )
        bad = [i for i in indices if not 0 <= i < len(NASLIB_OPS)]
        if bad:
            raise InvalidArchitectureError(
                f"NB201 op index {bad[0]} out of range; expected 0 skip_connect, 1 none, 2 nor_conv_3x3, "
                "3 nor_conv_1x1, 4 avg_pool_3x3"
            )
        by_edge = {e: NASLIB_OPS[i] for e, i in zip(NASLIB_EDGES, indices)}
        return NB201Arch(tuple(by_edge[e] for e in EDGES))

    # -- DAG view ---------------------------------------------------------------------------
    def to_dag(self, arch: Architecture) -> DAG:
        assert isinstance(arch, NB201Arch)
        types = [0] + [self.node_type_index(op) for op in arch.ops] + [1]
        return DAG(tuple(types), _DAG_EDGES)

    def from_dag(self, dag: DAG) -> NB201Arch | None:
        if dag.num_nodes != self.max_nodes or dag.edges != _DAG_EDGES:
            return None
        t = dag.node_types
        if t[0] != 0 or t[-1] != 1 or any(x < 2 or x >= len(_NODE_TYPES) for x in t[1:-1]):
            return None
        return NB201Arch(tuple(_NODE_TYPES[x] for x in t[1:-1]))

    # -- neighbourhood --------------------------------------------------------------------------
    def neighbours(self, arch: Architecture) -> list[NB201Arch]:
        assert isinstance(arch, NB201Arch)
        out = []
        for i, cur in enumerate(arch.ops):
            for op in OPS:
                if op != cur:
                    out.append(NB201Arch(arch.ops[:i] + (op,) + arch.ops[i + 1 :]))
        return out

    # -- identity -------------------------------------------------------------------------
    def dedup_key(self, arch: Architecture) -> Hashable:
        """Canonical form of the pruned data-flow graph.

        ``none`` op nodes and op nodes on no input-to-output path are dropped; what remains is
        canonicalised exactly (the graph has at most 6 op nodes, so every topological
        relabelling is tried and the lexicographically smallest description is kept).
        """
        assert isinstance(arch, NB201Arch)
        return _pruned_canonical_form(self.to_dag(arch))

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        assert isinstance(arch, NB201Arch)
        x = np.zeros((len(EDGES), len(OPS)), dtype=np.float64)
        for i, op in enumerate(arch.ops):
            x[i, OPS.index(op)] = 1.0
        return x.ravel()


def _build_dag_edges() -> tuple[tuple[int, int], ...]:
    op_node = {e: i + 1 for i, e in enumerate(EDGES)}
    out_node = len(EDGES) + 1
    edges = []
    for (src, _dst), node in op_node.items():
        if src == 0:
            edges.append((0, node))
        else:
            edges.extend((op_node[e], node) for e in EDGES if e[1] == src)
    edges.extend((op_node[e], out_node) for e in EDGES if e[1] == 3)
    return tuple(sorted(edges))


_DAG_EDGES = _build_dag_edges()


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    body = text.strip().strip("()[]")
    try:
        return tuple(int(x) for x in body.split(",") if x.strip())
    except ValueError:
        raise InvalidArchitectureError(
            f"malformed NB201 op-index tuple {text!r}; expected e.g. (2, 2, 0, 4, 2, 0)"
        ) from None


def _pruned_canonical_form(dag: DAG) -> tuple:
    none_type = _NODE_TYPES.index("none")
    n = dag.num_nodes
    alive = {i for i in range(n) if dag.node_types[i] != none_type}
    edges = [(s, d) for s, d in dag.edges if s in alive and d in alive]
    # keep nodes that lie on a path input -> output
    fwd, bwd = {0}, {n - 1}
    for s, d in edges:  # edges are topologically sorted by source
        if s in fwd:
            fwd.add(d)
    for s, d in sorted(edges, key=lambda e: -e[1]):
        if d in bwd:
            bwd.add(s)
    keep = sorted(fwd & bwd)
    if n - 1 not in keep:
        return ("disconnected",)
    edges = [(s, d) for s, d in edges if s in keep and d in keep]
    inner = keep[1:-1]
    depth = {0: 0}
    for s, d in edges:
        depth[d] = max(depth.get(d, 0), depth[s] + 1)
    height = {n - 1: 0}
    for s, d in sorted(edges, key=lambda e: -e[1]):
        height[s] = max(height.get(s, 0), height[d] + 1)
    indeg = {v: sum(1 for _, d in edges if d == v) for v in inner}
    outdeg = {v: sum(1 for s, _ in edges if s == v) for v in inner}

    def invariant(v: int) -> tuple:
        return (depth[v], -height[v], dag.node_types[v], indeg[v], outdeg[v])

    groups: dict[tuple, list[int]] = {}
    for v in sorted(inner, key=invariant):
        groups.setdefault(invariant(v), []).append(v)
    best = None
    # only nodes with equal invariants can be swapped by an isomorphism
    for choice in itertools.product(*(itertools.permutations(g) for g in groups.values())):
        order = [v for part in choice for v in part]
        relabel = {0: 0, n - 1: len(keep) - 1, **{v: i + 1 for i, v in enumerate(order)}}
        new_edges = tuple(sorted((relabel[s], relabel[d]) for s, d in edges))
        form = (tuple(dag.node_types[v] for v in order), new_edges)
        if best is None or form < best:
            best = form
    return best
