"""Calibration of a meta-trained surrogate's variance for a new task (tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grabnas.meta.calibration import calibrate_new_task_variance
from grabnas.meta.checkpoints import load_surrogate, save_surrogate
from grabnas.meta.features import task_targets
from grabnas.meta.surrogate_training import meta_train
from grabnas.models.value_maps import predict

torch.set_num_threads(1)


def test_new_task_variance_calibration(tmp_path, space, vae, latents, toy):
    corpus = toy.corpus(groups=4)
    train = corpus.without_groups(["g3"])
    res = meta_train(train, vae, toy.cfg(train), toy.tc(task_offsets=True), latents=latents, progress=False)
    sur, cal = res.surrogate, res.calibration
    assert cal is not None and set(cal["tasks"]) == {"t0", "t1", "t2"}
    table = dict(sur.config.new_task_variance_scale)
    assert list(table) == [0, 5, 10, 20] and [list(p) for p in table.items()] == cal["scale"]
    for n, f in table.items():  # K = 3 tasks: the excess over 1 shrinks by 1 - 1/K^2
        mean = np.mean([cal["tasks"][t][n]["factor"] for t in cal["tasks"]])
        assert f == pytest.approx(1 + (mean - 1) * (1 - 1 / 9))
    # t0's factor is the variance scale that makes its left-out zero-shot 90% interval cover 90%
    t0, offsets = train.task("t0"), sur.task_offset_embeddings()
    X = sur.inputs(latents[torch.from_numpy(t0.index)], (offsets["t1"] + offsets["t2"]) / 2)
    y = torch.as_tensor(task_targets(t0, "rank-gauss"))

    def coverage(scale: float) -> float:
        mu, var = predict(sur.prior(variance_scale=scale, tasks=["t1", "t2"]), X, observation_noise=True)
        return float(((y - mu).abs() <= 1.6448536 * var.sqrt()).double().mean())

    row = cal["tasks"]["t0"][0]
    assert coverage(1.0) == pytest.approx(row["coverage90_uncalibrated"])
    assert coverage(row["factor"] * 1.0001) == pytest.approx(0.9, abs=0.006)
    # a new task's prior covariance is the meta-learned one times the factor; the mean is kept
    Xc = sur.inputs(latents[:40], sur.task_embedding())
    base, scaled = predict(sur.prior(variance_scale=1.0), Xc), predict(sur.prior(), Xc)
    torch.testing.assert_close(scaled[0], base[0])
    torch.testing.assert_close(scaled[1], base[1] * table[0])
    fitted = sur.fit(Xc[:5], torch.linspace(0, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(fitted.covar_module.outputscale, sur.covar_module.outputscale * table[5])
    assert fitted.task_prior_var == pytest.approx(table[5])
    # the table survives a checkpoint round trip; calibrating again gives the same table
    save_surrogate(sur, tmp_path / "cal")
    loaded = load_surrogate(tmp_path / "cal", vae)
    assert loaded.config.new_task_variance_scale == sur.config.new_task_variance_scale
    again = calibrate_new_task_variance(loaded, train, latents)
    np.testing.assert_allclose(np.array(again["scale"]), np.array(cal["scale"]), rtol=1e-3)
    assert cal["method"] == "leave-one-out"
    # without offsets every task has the same embedding: in-sample factors times (K+1)/(K-1)
    plain = meta_train(train, vae, toy.cfg(train), toy.tc(steps=10, eval_every=5), latents=latents, progress=False)
    pcal, psur = plain.calibration, plain.surrogate
    assert pcal["method"] == "in-sample" and set(pcal["tasks"]) == {"t0", "t1", "t2"}
    for n, f in psur.config.new_task_variance_scale:
        assert f == pytest.approx(np.mean([pcal["tasks"][t][n]["factor"] for t in pcal["tasks"]]) * 4 / 2)
    X0 = psur.inputs(latents[torch.from_numpy(t0.index)], psur.task_embedding())
    row = pcal["tasks"]["t0"][0]
    mu, var = predict(psur.prior(variance_scale=row["factor"] * 1.0001), X0, observation_noise=True)
    assert float(((y - mu).abs() <= 1.6448536 * var.sqrt()).double().mean()) == pytest.approx(0.9, abs=0.006)
    # nothing to calibrate from: a single task
    assert calibrate_new_task_variance(sur, train.select(["t0"]), latents) is None
    assert calibrate_new_task_variance(psur, train.select(["t0"]), latents) is None
