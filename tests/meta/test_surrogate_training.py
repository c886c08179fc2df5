"""Meta-training, evaluation, checkpoints and the CLI of the surrogate (tiny configs)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.corpus import Corpus, CorpusTask
from grabnas.meta.surrogate_training import (
    calibrate_new_task_variance,
    MetaTrainConfig,
    evaluate_task,
    load_surrogate,
    meta_train,
    save_surrogate,
    surrogate_for_group,
    task_targets,
    transfer_rank_scores,
    vae_fingerprint,
)
from grabnas.models.graph_vae import ArchitectureVAE
from grabnas.models.surrogate import SurrogateConfig, predict
from grabnas.spaces import get_space

torch.set_num_threads(1)
LATENT = 4


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def vae(space):
    return ArchitectureVAE.create(space, torch.Generator().manual_seed(0), hidden_dim=8, latent_dim=LATENT)


@pytest.fixture(scope="module")
def latents(space):
    return torch.randn(len(space), LATENT, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _corpus(space, latents, groups=3, tasks_per_group=1, n=200, seed=0) -> Corpus:
    rng = np.random.default_rng(seed)
    z = latents.numpy()
    tasks = []
    for g in range(groups):
        for k in range(tasks_per_group):
            idx = np.sort(rng.choice(len(space), n, replace=False))
            w = 1.0 + 0.2 * g
            vals = 50 + 10 * (np.sin(w * z[idx, 0]) + 0.5 * z[idx, 1]) + rng.normal(0, 0.3, n)
            tasks.append(CorpusTask(f"t{g}" + (f"@{k}" if k else ""), f"g{g}", idx, vals, f"f{k}" if k else None))
    return Corpus(space, tasks)


def _cfg(corpus, **kw) -> SurrogateConfig:
    return SurrogateConfig(
        latent_dim=LATENT, task_dim=3, hidden_dim=32, feature_dim=4, fidelities=tuple(corpus.fidelities), **kw
    )


def _tc(**kw) -> MetaTrainConfig:
    base = dict(steps=150, batch_size=32, lr=5e-3, eval_every=50, patience=10, val_queries=100)
    base.update(kw)
    return MetaTrainConfig(**base)


def test_meta_train_learns_a_transferable_mean(space, vae, latents):
    corpus = _corpus(space, latents)
    train = corpus.without_groups(["g2"])
    res = meta_train(train, vae, _cfg(train), _tc(), latents=latents, progress=False)
    assert res.history and res.history[-1]["step"] == 150 and "val_score" in res.history[-1]
    assert res.val_split.endswith("architectures") and set(res.train_tasks) == {"t0", "t1"}
    target = corpus.task("t2")
    out = evaluate_task(
        res.surrogate, latents, target, shots=(0, 5), seeds=2, transfer=transfer_rank_scores(corpus, target)
    )
    zero = out["shots"]["0"]
    assert set(zero) >= {"spearman", "kendall", "spearman_top", "kendall_top", "nll", "coverage90"}
    assert zero["spearman"] > 0.5 and 0.0 <= zero["coverage90"] <= 1.0
    assert out["shots"]["5"]["seeds"] == 2 and np.isfinite(out["shots"]["5"]["nll"])
    assert "spearman_top" in out["transfer_rank"]  # random subsets barely overlap: no value check


def test_meta_validation_tasks_and_fidelities(space, vae, latents):
    corpus = _corpus(space, latents, groups=6, tasks_per_group=2, n=60)
    assert corpus.fidelities == ["f1"]
    res = meta_train(corpus, vae, _cfg(corpus), _tc(steps=20, eval_every=10), latents=latents, progress=False)
    assert res.val_tasks and not set(res.val_tasks) & set(res.train_tasks)
    assert res.val_split.startswith("held-out tasks")
    with pytest.raises(GrabnasError, match="fidelity"):
        meta_train(corpus, vae, SurrogateConfig(latent_dim=LATENT), _tc(steps=2), latents=latents, progress=False)
    with pytest.raises(GrabnasError, match="latent_dim"):
        meta_train(
            corpus,
            vae,
            SurrogateConfig(latent_dim=7, fidelities=("f1",)),
            _tc(steps=2),
            latents=latents,
            progress=False,
        )


def test_checkpoint_roundtrip_and_leak_guard(tmp_path, space, vae, latents):
    corpus = _corpus(space, latents)
    train = corpus.without_groups(["g0"])
    res = meta_train(train, vae, _cfg(train), _tc(steps=10, eval_every=5), latents=latents, progress=False)
    card = {"groups_seen": train.groups, "held_out_groups": ["g0"], "vae": {"fingerprint": vae_fingerprint(vae)}}
    pt, js = save_surrogate(res.surrogate, tmp_path / "sur", **card)
    assert pt.stat().st_size < 200_000 and json.loads(js.read_text())["held_out_groups"] == ["g0"]
    loaded = load_surrogate(tmp_path / "sur.pt", vae)
    X = loaded.inputs(latents[:50], loaded.task_embedding())
    obs = torch.arange(10)
    y = torch.linspace(0, 1, 10, dtype=torch.float64)
    a = predict(res.surrogate.fit(X[obs], y), X)
    b = predict(loaded.fit(X[obs], y), X)
    torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-4)
    other = ArchitectureVAE.create(space, torch.Generator().manual_seed(5), hidden_dim=8, latent_dim=LATENT)
    with pytest.warns(UserWarning, match="another VAE"):
        load_surrogate(tmp_path / "sur", other)
    assert (
        surrogate_for_group(corpus, "g0", vae, latents, checkpoint=str(tmp_path / "sur"), log=lambda m: None)
        is not None
    )
    with pytest.raises(GrabnasError, match="saw the group 'g1'"):
        surrogate_for_group(corpus, "g1", vae, latents, checkpoint=str(tmp_path / "sur"), log=lambda m: None)
    with pytest.raises(GrabnasError, match="no surrogate checkpoint"):
        load_surrogate(tmp_path / "missing")


def test_dataset_encoder_and_finetuned_encoder(space, vae, latents):
    from grabnas.models.feature_extractor import load_feature_extractor

    rng = np.random.default_rng(0)
    tasks = []
    for i, classes in enumerate(("0,1,2", "3,4,5", "6,7,8")):
        idx = np.sort(rng.choice(len(space), 40, replace=False))
        tasks.append(CorpusTask(f"d{i}", f"d{i}", idx, rng.normal(size=40), None, f"digits[{classes}]@{i}"))
    corpus = Corpus(space, tasks)
    ex = load_feature_extractor("digits-cnn")
    cfg = _cfg(corpus, dataset_encoder=True, instance_dim=ex.feature_dim, encoder_dim=8)
    tc = _tc(steps=4, eval_every=2, instances_per_class=3, instance_samples=1, finetune_encoder=True)
    vae_copy = ArchitectureVAE.create(space, torch.Generator().manual_seed(0), hidden_dim=8, latent_dim=LATENT)
    before = vae_fingerprint(vae_copy)
    res = meta_train(corpus, vae_copy, cfg, tc, extractor=ex, progress=False)
    enc = res.surrogate.task_encoder
    assert enc.has_dataset_encoder and res.vae_state is not None and res.surrogate.vae_state is not None
    assert vae_fingerprint(vae_copy) == before  # the caller's VAE is not modified
    from grabnas.meta.surrogate_training import latents_for, surrogate_vae

    tuned = surrogate_vae(res.surrogate, vae_copy)
    assert vae_fingerprint(tuned) != before
    assert latents_for(res.surrogate, vae_copy).shape == (len(space), LATENT)
    from grabnas.meta.surrogate_training import task_instance_features

    f0 = task_instance_features("digits[0,1,2]@0", ex, k=3)[0]
    f1 = task_instance_features("digits[3,4,5]@1", ex, k=3)[0]
    assert f0.shape == (3, 3, ex.feature_dim)
    assert not torch.allclose(res.surrogate.task_embedding(f0), res.surrogate.task_embedding(f1))


def _parser():
    from grabnas.cli_surrogate import add_surrogate_commands

    p = argparse.ArgumentParser(prog="grabnas")
    add_surrogate_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_meta_train_and_eval(tmp_path, space, vae, capsys):
    from grabnas.meta.vae_training import save_checkpoint

    save_checkpoint(vae, tmp_path / "vae")
    rng = np.random.default_rng(0)
    members = space.members()
    lines = ["task,arch,value,group"]
    for t, g in (("a", "ga"), ("b", "gb"), ("c", "gc")):
        for i in rng.choice(len(members), 40, replace=False):
            lines.append(f"{t},{members[i].to_string()},{rng.normal(70, 5):.3f},{g}")
    csv = tmp_path / "records.csv"
    csv.write_text("\n".join(lines) + "\n")
    common = [
        "--vae",
        str(tmp_path / "vae.pt"),
        "--steps",
        "6",
        "--batch-size",
        "16",
        "--eval-every",
        "3",
        "--hidden-dim",
        "16",
        "--feature-dim",
        "4",
        "--no-progress",
    ]
    args = _parser().parse_args(
        [
            "meta-train",
            "--corpus",
            f"records:{csv}",
            "--holdout",
            "gc",
            "--out",
            str(tmp_path / "s"),
            "--eval-shots",
            "0,5",
            "--eval-seeds",
            "1",
            *common,
        ]
    )
    assert args.handler(args) == 0
    card = json.loads((tmp_path / "s.json").read_text())
    assert card["held_out_groups"] == ["gc"] and sorted(card["groups_seen"]) == ["ga", "gb"]
    assert "c" in card["heldout_metrics"] and card["vae"]["fingerprint"] == vae_fingerprint(vae)
    args = _parser().parse_args(
        [
            "surrogate",
            "eval",
            "--benchmark",
            f"records:{csv}",
            "--task",
            "c",
            "--checkpoint",
            str(tmp_path / "s"),
            "--shots",
            "0,5",
            "--seeds",
            "2",
            "--json",
            "--plain-gp",
            "--out",
            str(tmp_path / "r.json"),
            *common,
        ]
    )
    capsys.readouterr()
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"][0]["task"] == "c" and set(report["tasks"][0]["shots"]) == {"0", "5"}
    assert "plain_gp" in report["tasks"][0]["shots"]["5"] and (tmp_path / "r.json").is_file()
    args = _parser().parse_args(
        [
            "surrogate",
            "eval",
            "--benchmark",
            f"records:{csv}",
            "--task",
            "a",
            "--checkpoint",
            str(tmp_path / "s"),
            *common,
        ]
    )
    with pytest.raises(GrabnasError, match="saw the group 'ga'"):
        args.handler(args)
    # calibration of the new-task variance: in-sample without per-task offsets; never over a shipped file
    calibrate = ["surrogate", "calibrate", "--benchmark", f"records:{csv}", "--checkpoint"]
    args = _parser().parse_args([*calibrate, str(tmp_path / "s"), "--out", str(tmp_path / "s2")])
    capsys.readouterr()
    assert args.handler(args) == 0
    assert "a in-sample: 90% coverage" in capsys.readouterr().out
    assert json.loads((tmp_path / "s2.json").read_text())["new_task_calibration"]["method"] == "in-sample"
    args = _parser().parse_args([*calibrate, "nb201-no-cifar10"])
    with pytest.raises(GrabnasError, match="give --out PATH"):
        args.handler(args)
    train = ["meta-train", "--corpus", f"records:{csv}", "--holdout", "gc", "--task-offsets", "--eval-shots", "0"]
    args = _parser().parse_args([*train, "--out", str(tmp_path / "o"), *common])
    assert args.handler(args) == 0
    card = json.loads((tmp_path / "o.json").read_text())
    assert set(card["new_task_calibration"]["tasks"]) == {"a", "b"}
    assert card["config"]["new_task_variance_scale"] == card["new_task_calibration"]["scale"]
    args = _parser().parse_args([*calibrate, str(tmp_path / "o"), "--out", str(tmp_path / "o2")])
    capsys.readouterr()
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "a left out: 90% coverage" in out and "new-task variance scale:" in out
    again = json.loads((tmp_path / "o2.json").read_text())
    np.testing.assert_allclose(again["config"]["new_task_variance_scale"], card["config"]["new_task_variance_scale"])


def test_shipped_checkpoints_name_their_held_out_dataset():
    from grabnas.meta.surrogate_training import shipped_surrogate_for, shipped_surrogate_names
    from grabnas.meta.vae_training import load_checkpoint

    names = shipped_surrogate_names()
    if not names:
        pytest.skip("no surrogate checkpoint shipped")
    for name in names:
        shipped = load_surrogate(name)
        card = shipped.card
        assert not set(card["held_out_groups"]) & set(card["groups_seen"])
        group = card["held_out_groups"][0] if card["held_out_groups"] else None
        assert shipped_surrogate_for(card["benchmark"], group) == name
        if group is not None:  # a leave-one-dataset-out checkpoint is calibrated for a new task
            cal = card["new_task_calibration"]
            assert cal["method"] == ("leave-one-out" if shipped.config.task_offsets else "in-sample")
            assert [list(p) for p in shipped.config.new_task_variance_scale] == cal["scale"]
    if "nb201-no-cifar10" not in names:
        return
    vae = load_checkpoint("nb201")
    sur = load_surrogate("nb201-no-cifar10")
    if sur.card["vae"]["fingerprint"] != vae_fingerprint(vae):
        pytest.skip(
            "the shipped VAE changed since the surrogates were meta-trained: rerun benchmarks/surrogate_eval.sh"
        )
    members = vae.space.members()[:64]
    with torch.no_grad():
        X = sur.inputs(vae.encode_archs(members), sur.task_embedding())
    mu, var = predict(sur.prior(), X)
    assert torch.isfinite(mu).all() and (var > 0).all()


def test_task_weighting():
    from grabnas.meta.surrogate_training import _task_weights

    np.testing.assert_allclose(_task_weights([4, 100], "uniform"), [0.5, 0.5])
    np.testing.assert_allclose(_task_weights([4, 100], "sqrt"), [2 / 12, 10 / 12])
    with pytest.raises(GrabnasError, match="task weighting"):
        _task_weights([1], "size")


def test_top_heavy_batches(space, vae, latents):
    from grabnas.meta.surrogate_training import _draw_batch, _View

    task = CorpusTask("t", "g", np.arange(100), np.arange(100.0))
    view = _View(task, np.arange(0, 100, 2), None, targets=np.arange(100.0))  # 50 even positions
    top, rest = view.split_top(0.1)
    np.testing.assert_array_equal(top, [90, 92, 94, 96, 98])  # the view's best 10 %, not the task's
    assert len(rest) == 45 and not set(top) & set(rest)
    rng = np.random.default_rng(0)
    batch = _draw_batch(view, 20, 0.5, (top, rest), rng)
    assert len(set(batch)) == 20 and set(batch) <= set(view.pos)
    assert set(top) <= set(batch)  # 10 wanted from the top, only 5 there: all taken, the rest from below
    uniform = _draw_batch(view, 20, 0.0, None, rng)
    assert len(set(uniform)) == 20 and set(uniform) <= set(view.pos)
    corpus = _corpus(space, latents, groups=2, n=40)
    with pytest.raises(GrabnasError, match="top batch fraction in \\[0, 1\\]"):
        meta_train(corpus, vae, _cfg(corpus), _tc(top_batch_fraction=1.5), latents=latents, progress=False)


def test_new_task_variance_calibration(tmp_path, space, vae, latents):
    corpus = _corpus(space, latents, groups=4)
    train = corpus.without_groups(["g3"])
    res = meta_train(train, vae, _cfg(train), _tc(task_offsets=True), latents=latents, progress=False)
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
    plain = meta_train(train, vae, _cfg(train), _tc(steps=10, eval_every=5), latents=latents, progress=False)
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
