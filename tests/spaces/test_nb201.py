import numpy as np
import pytest

from grabnas.errors import InvalidArchitectureError
from grabnas.spaces.nb201 import EDGES, OPS, NB201Arch

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_enumerates_all_15625_distinct_cells(nb201_space):
    members = nb201_space.members()
    assert len(members) == len(nb201_space) == 15625
    assert len(set(members)) == 15625


def test_string_dag_roundtrip_for_every_cell(nb201_space):
    for arch in nb201_space.members():
        s = arch.to_string()
        parsed = nb201_space.parse(s)
        assert parsed == arch and hash(parsed) == hash(arch)
        assert nb201_space.from_dag(nb201_space.to_dag(parsed)) == arch


def test_naslib_tuple_matches_table_convention(nb201_space):
    # row 1 of the NB201 table: '(2, 2, 0, 4, 2, 0)'
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = nb201_space.parse(s)
    assert arch.naslib_indices() == (2, 2, 0, 4, 2, 0)
    assert nb201_space.parse("(2, 2, 0, 4, 2, 0)") == arch


def test_dag_is_true_data_flow(nb201_space):
    dag = nb201_space.to_dag(nb201_space.parse(BEST_C10))
    assert dag.num_nodes == 8
    names = [nb201_space.node_type_names[t] for t in dag.node_types]
    assert names[0] == "input" and names[-1] == "output"
    # op node k is edge EDGES[k-1]; edge (1->2) (node 3) is fed by edge (0->1) (node 1)
    assert dag.predecessors(3) == [1]
    # edge (2->3) (node 6) is fed by the edges ending at cell node 2: (0->2), (1->2)
    assert dag.predecessors(6) == [2, 3]
    # the output sums the edges ending at cell node 3
    assert dag.predecessors(7) == [4, 5, 6]
    assert all(s < d for s, d in dag.edges)


def test_from_dag_rejects_other_shapes(nb201_space):
    from grabnas.spaces.base import DAG

    dag = nb201_space.to_dag(nb201_space.parse(BEST_C10))
    assert nb201_space.from_dag(DAG(dag.node_types, dag.edges[:-1])) is None
    bad_types = (0, 1) + dag.node_types[2:]  # an 'output' type inside the cell
    assert nb201_space.from_dag(DAG(bad_types, dag.edges)) is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NB201 op 'conv'"),
        ("|none~0|+|none~0|", "malformed NB201 cell string"),
        ("(1, 2, 3)", "has 6 entries, got 3"),
        ("(1, 2, 3, 4, 0, 9)", "op index 9 out of range"),
        ("(a, b)", "malformed NB201 op-index tuple"),
    ],
)
def test_bad_input_has_clear_message(nb201_space, text, fragment):
    with pytest.raises(InvalidArchitectureError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as e:
        nb201_space.parse(text)
    assert "\n" not in str(e.value) and "expected" in str(e.value)


def test_wrong_tuple_length_rejected():
    with pytest.raises(InvalidArchitectureError, match="6 edge ops, got 2"):
        NB201Arch(("none", "none"))


def test_neighbours_change_exactly_one_edge(nb201_space):
    arch = nb201_space.parse(BEST_C10)
    nbrs = nb201_space.neighbours(arch)
    assert len(nbrs) == len(EDGES) * (len(OPS) - 1) == len(set(nbrs))
    for n in nbrs:
        assert sum(a != b for a, b in zip(n.ops, arch.ops)) == 1
    rng = np.random.default_rng(0)
    assert nb201_space.mutate(arch, rng) in nbrs
    assert all(a in nb201_space for a in nb201_space.sample(rng, 5))


def test_isomorphic_cells_share_dedup_key(nb201_space):
    key = nb201_space.dedup_key
    p = nb201_space.parse
    # cell nodes 1 and 2 swap roles: 0->1 conv3, 0->2 conv1, 1->3 skip, 2->3 pool, 1->2 none
    a = p("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|avg_pool_3x3~2|")
    b = p("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|skip_connect~2|")
    assert key(a) == key(b)
    # an edge on no input->output path does not matter: node 1 reaches nothing
    c = p("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    d = p("|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    assert key(c) == key(d)
    # and different functions differ
    assert key(a) != key(c)
    # all cells whose output is cut off share one key
    e = p("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    f = p("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert key(e) == key(f)


def test_dedup_key_count_is_stable(nb201_space):
    keys = {nb201_space.dedup_key(a) for a in nb201_space.members()}
    # every class contains at least one cell; the pruned-graph canonical form merges isomorphs
    assert len(keys) == 8765  # pruned data-flow graphs up to isomorphism (regression anchor)


def test_onehot_encoding(nb201_space):
    arch = nb201_space.parse(BEST_C10)
    x = nb201_space.encode_onehot(arch)
    assert x.shape == (30,) and x.sum() == 6
    assert nb201_space.onehot([arch, arch]).shape == (2, 30)
