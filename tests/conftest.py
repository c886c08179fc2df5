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
