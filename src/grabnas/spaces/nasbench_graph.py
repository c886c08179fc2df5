"""The NAS-Bench-Graph macro space (Qin et al., NeurIPS 2022 Datasets and Benchmarks).

A graph-neural-network architecture has 4 computing nodes. Node ``i`` (1-based) applies op
``ops[i-1]`` to the output of node ``link[i-1]`` (0 is the input), so ``link`` is one of the
24 tuples with ``link[i] <= i``. Nodes whose output no other node reads feed the output node.
The 9 ops are those of the ``nas_bench_graph`` package. Up to isomorphism (the package's
``Arch.valid_hash()``), and without the all-skip network, there are 26,206 members.

The canonical string is ``op~src|op~src|op~src|op~src`` (``src`` = ``link`` entry), e.g.
``gcn~0|gat~1|skip~1|fc~3``. Members are the package's canonical representatives (those for
which ``Arch.check_isomorph()`` holds); a non-canonical string parses to its representative.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grabnas.errors import InvalidArchitectureError
from grabnas.spaces.base import DAG, INPUT, OUTPUT, Architecture, SearchSpace

OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
NUM_NODES = 4
_NODE_TYPES: tuple[str, ...] = (INPUT, OUTPUT, *OPS)
_EXPECTED_FORM = "op~src|op~src|op~src|op~src with src of node i in 0..i-1 and op in " + ", ".join(OPS)


@dataclass(frozen=True)
class NASBenchGraphArch(Architecture):
    """A NAS-Bench-Graph architecture: ``link`` (source of each node) and ``ops``."""

    link: tuple[int, ...]
    ops: tuple[str, ...]
    space_name: ClassVar[str] = "nasbench-graph"

    def __post_init__(self) -> None:
        object.__setattr__(self, "link", tuple(int(x) for x in self.link))
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.link) != NUM_NODES or len(self.ops) != NUM_NODES:
            raise InvalidArchitectureError(
                f"a NAS-Bench-Graph architecture has {NUM_NODES} nodes, got link of length "
                f"{len(self.link)} and {len(self.ops)} ops; expected {_EXPECTED_FORM}"
            )
        for i, src in enumerate(self.link):
            if not 0 <= src <= i:
                raise InvalidArchitectureError(
                    f"node {i + 1} reads from node {src}, which does not precede it; expected {_EXPECTED_FORM}"
                )
        for op in self.ops:
            if op not in OPS:
                raise InvalidArchitectureError(f"unknown NAS-Bench-Graph op {op!r}; expected one of {', '.join(OPS)}")

    def to_string(self) -> str:
        return "|".join(f"{op}~{src}" for op, src in zip(self.ops, self.link))

    def package_arch(self):  # -> nas_bench_graph.Arch
        from nas_bench_graph import Arch

        return Arch(list(self.link), list(self.ops))

    def valid_hash(self) -> int:
        """The ``nas_bench_graph`` package's isomorphism-aware key of this architecture."""
        return int(self.package_arch().valid_hash())


class NASBenchGraphSpace(SearchSpace):
    """The 26,206-member NAS-Bench-Graph space."""

    name: ClassVar[str] = "nasbench-graph"
    node_type_names: ClassVar[tuple[str, ...]] = _NODE_TYPES
    max_nodes: ClassVar[int] = NUM_NODES + 2

    def enumerate(self) -> Iterator[NASBenchGraphArch]:
        from nas_bench_graph import Arch
        from nas_bench_graph.architecture import link_list

        for ops in itertools.product(OPS, repeat=NUM_NODES):
            if all(op == "skip" for op in ops):
                continue
            for link in link_list:
                if Arch(list(link), list(ops)).check_isomorph():
                    yield NASBenchGraphArch(tuple(link), ops)

    def __len__(self) -> int:
        return len(self.members())

    def _by_hash(self) -> dict[int, NASBenchGraphArch]:
        table = self.__dict__.get("_by_hash_table")
        if table is None:
            table = {a.valid_hash(): a for a in self.members()}
            self.__dict__["_by_hash_table"] = table
        return table

    def canonical(self, arch: NASBenchGraphArch) -> NASBenchGraphArch:
        """The member isomorphic to ``arch``; an error when there is none (the all-skip network)."""
        try:
            key = arch.valid_hash()
        except Exception:  # the package raises on shapes it cannot canonicalise
            key = None
        member = self._by_hash().get(key) if key is not None else None
        if member is None:
            raise InvalidArchitectureError(
                f"{arch.to_string()} is not a NAS-Bench-Graph member (e.g. all ops skip); expected {_EXPECTED_FORM}"
            )
        return member

    def validate(self, arch: Architecture) -> None:
        if not isinstance(arch, NASBenchGraphArch):
            raise InvalidArchitectureError(f"expected a NAS-Bench-Graph architecture, got {type(arch).__name__}")
        if self.canonical(arch) != arch:
            raise InvalidArchitectureError(
                f"{arch.to_string()} is not in canonical form; use {self.canonical(arch).to_string()}"
            )

    def parse(self, text: str) -> NASBenchGraphArch:
        parts = text.strip().split("|")
        if len(parts) != NUM_NODES or any(p.count("~") != 1 for p in parts):
            raise InvalidArchitectureError(f"malformed NAS-Bench-Graph string {text!r}; expected {_EXPECTED_FORM}")
        ops, link = [], []
        for p in parts:
            op, src = p.split("~")
            if not (src.strip().isascii() and src.strip().isdigit()):  # '²'.isdigit() is True
                raise InvalidArchitectureError(f"malformed NAS-Bench-Graph string {text!r}; expected {_EXPECTED_FORM}")
            ops.append(op.strip())
            link.append(int(src))
        return self.canonical(NASBenchGraphArch(tuple(link), tuple(ops)))

    # -- DAG view -------------------------------------------------------------------------
    def to_dag(self, arch: Architecture) -> DAG:
        assert isinstance(arch, NASBenchGraphArch)
        out = NUM_NODES + 1
        edges = [(src, i + 1) for i, src in enumerate(arch.link)]
        read = set(arch.link)
        edges += [(i, out) for i in range(1, NUM_NODES + 1) if i not in read]
        types = (0, *(self.node_type_index(op) for op in arch.ops), 1)
        return DAG(types, tuple(edges))

    def from_dag(self, dag: DAG) -> NASBenchGraphArch | None:
        n = NUM_NODES + 2
        t = dag.node_types
        if dag.num_nodes != n or t[0] != 0 or t[-1] != 1 or any(x < 2 for x in t[1:-1]):
            return None
        link = []
        for node in range(1, n - 1):
            preds = dag.predecessors(node)
            if len(preds) != 1:
                return None
            link.append(preds[0])
        arch = NASBenchGraphArch(tuple(link), tuple(_NODE_TYPES[x] for x in t[1:-1]))
        if dag.predecessors(n - 1) != [i for i in range(1, n - 1) if i not in set(link)]:
            return None
        try:
            return self.canonical(arch)
        except InvalidArchitectureError:
            return None

    # -- neighbourhood --------------------------------------------------------------------------
    def neighbours(self, arch: Architecture) -> list[NASBenchGraphArch]:
        assert isinstance(arch, NASBenchGraphArch)
        cands = []
        for i in range(NUM_NODES):
            cands += [NASBenchGraphArch(arch.link, arch.ops[:i] + (op,) + arch.ops[i + 1 :]) for op in OPS]
            cands += [NASBenchGraphArch(arch.link[:i] + (src,) + arch.link[i + 1 :], arch.ops) for src in range(i + 1)]
        out = set()
        for c in cands:
            try:
                m = self.canonical(c)
            except InvalidArchitectureError:
                continue
            if m != arch:
                out.add(m)
        return sorted(out, key=lambda a: self.index_of(a))

    def dedup_key(self, arch: Architecture) -> Hashable:
        assert isinstance(arch, NASBenchGraphArch)
        return arch.valid_hash()

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        assert isinstance(arch, NASBenchGraphArch)
        x_link = np.zeros((NUM_NODES, NUM_NODES))
        x_ops = np.zeros((NUM_NODES, len(OPS)))
        for i, (src, op) in enumerate(zip(arch.link, arch.ops)):
            x_link[i, src] = 1.0
            x_ops[i, OPS.index(op)] = 1.0
        return np.concatenate([x_link.ravel(), x_ops.ravel()])
