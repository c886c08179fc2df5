"""Shared fixtures: the NB201 table's location (``$GRABNAS_NB201`` or ../shared/data/nb201)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _nb201_path() -> Path | None:
    for cand in (os.environ.get("GRABNAS_NB201"), REPO.parent / "shared" / "data" / "nb201"):
        if cand and (Path(cand) / "nb201_accuracies.csv").is_file():
            return Path(cand) / "nb201_accuracies.csv"
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def nb201_path() -> Path:
    p = _nb201_path()
    if p is None:
        pytest.skip("NB201 table not found: set GRABNAS_NB201 to nb201_accuracies.csv")
    return p


@pytest.fixture(scope="session")
def nb201_bench(nb201_path):
    from grabnas.benchmarks.nb201 import load_nb201

    return load_nb201(nb201_path)


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
