"""Latency tables (grabnas.train.latency): measurement on tiny networks, the additive predictor,
the file round trip."""

import json

import numpy as np
import pytest

from grabnas.errors import GrabnasError
from grabnas.spaces.nb201 import OPS
from grabnas.train.cost import NetworkSetting
from grabnas.train.latency import (
    build_latency_table,
    load_latency_table,
    measurement_difference,
    sample_cells,
    split_holdout,
    table_from_measurements,
)

TINY = NetworkSetting(C=4, N=1, num_classes=10, in_channels=3, height=8, width=8)
DEVICE = {"kind": "cpu", "name": "test CPU", "torch": "0", "threads": 1}


def synthetic(n=60, seed=0, setting=TINY, noise=0.0):
    """A table over ``n`` sampled cells whose ms are exactly additive (made-up per-op costs)."""
    rng = np.random.default_rng(seed)
    coef = np.zeros((6, len(OPS)))
    coef[:, 1:] = rng.uniform(0.05, 2.0, size=(6, len(OPS) - 1))
    cells = sample_cells(n, seed)
    ms = 1.5 + coef[np.arange(6)[None, :], cells].sum(axis=1)
    ms = ms * (1 + noise * rng.standard_normal(n))
    return table_from_measurements(DEVICE, setting, 1, 0, 1, seed, 0.25, cells, ms), coef


def test_the_predictor_recovers_an_additive_latency():
    table, coef = synthetic()
    assert table.intercept == pytest.approx(1.5)
    np.testing.assert_allclose(table.coef, coef, atol=1e-9)
    e = table.errors
    assert e["n"] == 15 and e["mape"] < 1e-9 and e["spearman"] == pytest.approx(1.0) and e["fit_mape"] < 1e-9
    all_ms = table.predict_all()
    assert all_ms.shape == (15_625,) and not all_ms.flags.writeable
    assert all_ms[0] == pytest.approx(1.5)  # the all-none cell is members()[0]
    # a held-out error is reported on cells left out of the fit, seeded
    train, held = split_holdout(60, 0.25, 0)
    assert len(held) == 15 and not set(train) & set(held)
    np.testing.assert_array_equal(held, table.held_out)


def test_measurement_and_round_trip(tmp_path, one_torch_thread):
    table = build_latency_table(TINY, "cpu", cells=12, batch_size=1, warmup=1, repeats=3, seed=0, threads=1)
    assert table.ms.shape == (12,) and (table.ms > 0).all() and table.device["threads"] == 1
    assert table.device["kind"] == "cpu" and table.device["name"]
    path = table.save(tmp_path / "t.json")
    back = load_latency_table(path)
    np.testing.assert_array_equal(back.cells, table.cells)
    np.testing.assert_allclose(back.ms, table.ms)
    np.testing.assert_allclose(back.predict_all(), table.predict_all())
    assert back.fingerprint == table.fingerprint and back.setting == TINY
    assert measurement_difference(back.measurement(), table.measurement()) is None
    d = json.loads(path.read_text())
    assert d["batch_size"] == 1 and d["warmup"] == 1 and d["repeats"] == 3 and len(d["measured"]) == 12
    assert {"held_out_mape_percent", "held_out_spearman", "coef", "intercept"} <= set(d["predictor"])
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


def test_differences_and_bad_files(tmp_path):
    table, _ = synthetic()
    other = {**table.measurement(), "device": {**DEVICE, "kind": "cuda", "name": "H200"}}
    assert "measured on cpu 'test CPU'" in measurement_difference(table.measurement(), other)
    other = {**table.measurement(), "setting": {**table.measurement()["setting"], "C": 8}}
    assert "measured for the NB201 network with C=4" in measurement_difference(table.measurement(), other)
    other = {**table.measurement(), "batch_size": 64}
    assert measurement_difference(table.measurement(), other) == "it holds batch size 1, not 64"
    with pytest.raises(GrabnasError, match="does not exist; make it with grabnas latency"):
        load_latency_table(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(GrabnasError, match="is not a grabnas latency table"):
        load_latency_table(tmp_path / "x.json")
