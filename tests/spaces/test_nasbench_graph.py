import numpy as np
import pytest

from grabnas.errors import InvalidArchitectureError
from grabnas.spaces.base import DAG
from grabnas.spaces.nasbench_graph import NASBenchGraphArch


def test_keys_equal_the_packages_26206(nbg_space):
    from nas_bench_graph import light_read

    members = nbg_space.members()
    assert len(members) == 26206
    keys = {nbg_space.dedup_key(a) for a in members}
    assert len(keys) == 26206
    assert keys == set(light_read("cora").keys())
    a = members[123]
    assert nbg_space.dedup_key(a) == a.package_arch().valid_hash()


def test_string_and_dag_roundtrip(nbg_space):
    for arch in nbg_space.members()[::7]:
        assert nbg_space.parse(arch.to_string()) == arch
        assert nbg_space.from_dag(nbg_space.to_dag(arch)) == arch


def test_dag_view(nbg_space):
    arch = nbg_space.parse("gat~0|gcn~1|sage~1|fc~2")
    assert arch.link == (0, 1, 1, 2)
    dag = nbg_space.to_dag(arch)
    assert dag.num_nodes == 6
    assert dag.predecessors(2) == [1] and dag.predecessors(3) == [1] and dag.predecessors(4) == [2]
    # nodes 3 and 4 are read by nobody: they feed the output
    assert dag.predecessors(5) == [3, 4]


def test_isomorphic_string_parses_to_canonical_member(nbg_space):
    # the package canonicalises sibling order: both spellings name one member
    assert nbg_space.parse("gcn~0|gat~1|sage~1|fc~3") == nbg_space.parse("gcn~0|sage~1|gat~1|fc~2")


def test_non_canonical_string_maps_to_isomorphic_member(nbg_space):
    # [0,0,0,2] is regularised by the package to [0,0,0,1] with ops permuted
    arch = nbg_space.parse("gcn~0|gat~0|sage~0|fc~2")
    assert arch in nbg_space
    assert arch.valid_hash() == NASBenchGraphArch((0, 0, 0, 2), ("gcn", "gat", "sage", "fc")).valid_hash()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("gcn~0|gat~1", "malformed NAS-Bench-Graph string"),
        ("gcn~0|gat~\u00b2|gat~2|fc~3", "malformed NAS-Bench-Graph string"),  # a digit to isdigit(), not to int()
        ("gcn~0|foo~1|gat~2|fc~3", "unknown NAS-Bench-Graph op 'foo'"),
        ("gcn~0|gat~2|gat~2|fc~3", "node 2 reads from node 2"),
        ("skip~0|skip~1|skip~2|skip~3", "not a NAS-Bench-Graph member"),
    ],
)
def test_bad_input(nbg_space, text, fragment):
    with pytest.raises(InvalidArchitectureError, match=fragment):
        nbg_space.parse(text)


def test_from_dag_invalid_is_none(nbg_space):
    dag = nbg_space.to_dag(nbg_space.members()[0])
    # a node with two inputs is not expressible
    assert nbg_space.from_dag(DAG(dag.node_types, dag.edges + ((1, 3),))) is None
    # the output must read exactly the loose ends
    assert nbg_space.from_dag(DAG(dag.node_types, tuple(e for e in dag.edges if e[1] != 5))) is None


def test_neighbours_are_members_and_exclude_self(nbg_space):
    arch = nbg_space.members()[1000]
    nbrs = nbg_space.neighbours(arch)
    assert arch not in nbrs and len(nbrs) == len(set(nbrs)) > 20
    assert all(n in nbg_space for n in nbrs)
    rng = np.random.default_rng(1)
    assert nbg_space.mutate(arch, rng) in nbrs
