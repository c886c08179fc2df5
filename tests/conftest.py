"""Shared fixtures. The NB201 table is the one shipped with grabnas unless ``$GRABNAS_NB201`` names
another (the file or its folder), as for the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def nb201_path(tmp_path_factory) -> Path:
    """A plain-CSV path to the NB201 table, for tests that pass ``--data`` or read its lines:
    ``$GRABNAS_NB201`` when it names a CSV, else the table that ``load_nb201()`` would read (the
    shipped one, xz-compressed) decompressed into a temporary folder."""
    from grabnas.benchmarks.nb201 import FILE_NAME, _open_table, resolve_table_path

    p = resolve_table_path(None)  # a clear error, not a skip, when $GRABNAS_NB201 points nowhere
    if p.suffix == ".csv":
        return p
    out = tmp_path_factory.mktemp("nb201") / FILE_NAME
    with _open_table(p) as f:
        out.write_text(f.read(), encoding="utf-8", newline="")
    return out


@pytest.fixture(scope="session")
def nb201_bench():
    """The NB201 benchmark as ``load_nb201()`` finds it: ``$GRABNAS_NB201``, else the shipped table."""
    from grabnas.benchmarks.nb201 import load_nb201

    return load_nb201()


@pytest.fixture
def cifar10_asks(nb201_bench):
    """``run(spec, seed, n, residual=None) -> (optimizer, asked)``: ``n`` single asks of the optimizer
    ``spec`` on NB201 cifar10, each told its table value; every ask a new architecture (``residual``:
    the corpus share a GraB-NAS optimizer is given; None: its surrogate card's)."""
    from grabnas.search.registry import build_optimizer

    def run(spec: str, seed: int, n: int, residual: float | None = None):
        opt = build_optimizer(spec, nb201_bench, "cifar10", seed=seed)
        if residual is not None:
            opt.heldout_residual = residual
        asked = []
        for _ in range(n):
            archs = opt.ask(1)
            assert len(archs) == 1 and archs[0] not in asked
            asked += archs
            opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
        return opt, asked

    return run


@pytest.fixture(scope="session")
def nb201_space():
    from grabnas.spaces import get_space

    return get_space("nb201")


@pytest.fixture(scope="session")
def nbg_space():
    from grabnas.spaces import get_space

    return get_space("nasbench-graph")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models and GP tensors gain nothing from intra-op threads, and threads that spin on a
    busy machine make these tests many times slower; the setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
