"""Meta-training, evaluation, checkpoints and the CLI of the surrogate (tiny configs)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.checkpoints import load_surrogate, save_surrogate, vae_fingerprint
from grabnas.meta.corpus import Corpus, CorpusTask
from grabnas.meta.surrogate_eval import evaluate_task, transfer_rank_scores
from grabnas.meta.surrogate_training import meta_train, plan_meta_validation, surrogate_for_group
from grabnas.models.graph_vae import ArchitectureVAE
from grabnas.models.surrogate_config import SurrogateConfig
from grabnas.models.value_maps import predict

torch.set_num_threads(1)
LATENT = 4  # the toy latent size of conftest.py


def test_meta_train_learns_a_transferable_mean(space, vae, latents, toy):
    corpus = toy.corpus()
    train = corpus.without_groups(["g2"])
    res = meta_train(train, vae, toy.cfg(train), toy.tc(), latents=latents, progress=False)
    assert res.history and res.history[-1]["step"] == 150 and "val_score" in res.history[-1]
    assert res.val_split.startswith("10% of each task's architectures") and set(res.train_tasks) == {"t0", "t1"}
    target = corpus.task("t2")
    out = evaluate_task(
        res.surrogate, latents, target, shots=(0, 5), seeds=2, transfer=transfer_rank_scores(corpus, target)
    )
    zero = out["shots"]["0"]
    assert set(zero) >= {"spearman", "kendall", "spearman_top", "kendall_top", "nll", "coverage90"}
    assert zero["spearman"] > 0.5 and 0.0 <= zero["coverage90"] <= 1.0
    assert out["shots"]["5"]["seeds"] == 2 and np.isfinite(out["shots"]["5"]["nll"])
    draws = out["shots"]["5"]["spearman_top_draws"]  # one value per draw, their mean the reported one
    assert len(draws) == 2 and np.mean(draws) == pytest.approx(out["shots"]["5"]["spearman_top"])
    assert "spearman_top" in out["transfer_rank"]  # random subsets barely overlap: no value check


def test_evaluate_task_with_a_target_kernel_on_the_one_hot_encoding(space, vae, latents, toy):
    """``target_kernel=onehot|hamming``: the adapted GP reads the encoding appended to the
    latents (and is scored on it), the zero-shot prior does not."""
    corpus = toy.corpus()
    train = corpus.without_groups(["g2"])
    res = meta_train(train, vae, toy.cfg(train), toy.tc(steps=10, eval_every=5), latents=latents, progress=False)
    target = corpus.task("t2")
    members = space.members()
    onehot = np.asarray(space.onehot([members[i] for i in target.index]), dtype=np.float64)
    for kernel in ("onehot", "hamming"):
        options = {"adaptation": "target", "target_kernel": kernel}
        out = evaluate_task(res.surrogate, latents, target, shots=(0, 5), seeds=1, fit_options=options, onehot=onehot)
        assert np.isfinite(out["shots"]["0"]["nll"]) and np.isfinite(out["shots"]["5"]["nll"])
    with pytest.raises(GrabnasError, match="target_kernel=hamming needs the task's one-hot encodings"):
        evaluate_task(
            res.surrogate, latents, target, shots=(0,), fit_options={"adaptation": "target", "target_kernel": "hamming"}
        )


def test_meta_validation_tasks_and_fidelities(space, vae, latents, toy):
    corpus = toy.corpus(groups=6, tasks_per_group=2, n=60)
    assert corpus.fidelities == ["f1"]
    res = meta_train(corpus, vae, toy.cfg(corpus), toy.tc(steps=20, eval_every=10), latents=latents, progress=False)
    assert res.val_tasks and not set(res.val_tasks) & set(res.train_tasks)
    assert res.val_split.startswith("held-out tasks") and "automatic" in res.val_split
    # the split is announced before training by the same rule and seed, and can be named instead
    plan = plan_meta_validation(corpus, toy.tc(steps=20, eval_every=10))
    assert plan == (res.train_tasks, res.val_tasks, res.val_split)
    named = plan_meta_validation(corpus, toy.tc(val_tasks=("t3",)))
    assert named[1] == ["t3"] and named[2] == "held-out tasks (t3), as given"
    assert not {"t3", "t3@1"} & set(named[0])  # its group is out of training, its fidelity is not validated
    few = plan_meta_validation(toy.corpus(groups=3, n=60), toy.tc())
    assert few[1] == few[0] == ["t0", "t1", "t2"]  # every task both trains and validates (on other architectures)
    assert (
        few[2]
        == "10% of each task's architectures (the corpus has 3 groups, fewer than the 5 that task hold-out needs)"
    )
    with pytest.raises(GrabnasError, match="unknown meta-validation task 'nope'"):
        plan_meta_validation(corpus, toy.tc(val_tasks=("nope",)))
    with pytest.raises(GrabnasError, match="fidelity"):
        meta_train(corpus, vae, SurrogateConfig(latent_dim=LATENT), toy.tc(steps=2), latents=latents, progress=False)
    with pytest.raises(GrabnasError, match="latent_dim"):
        meta_train(
            corpus,
            vae,
            SurrogateConfig(latent_dim=7, fidelities=("f1",)),
            toy.tc(steps=2),
            latents=latents,
            progress=False,
        )


def test_checkpoint_roundtrip_and_leak_guard(tmp_path, space, vae, latents, toy):
    corpus = toy.corpus()
    train = corpus.without_groups(["g0"])
    res = meta_train(train, vae, toy.cfg(train), toy.tc(steps=10, eval_every=5), latents=latents, progress=False)
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


def test_surrogate_for_group_trains_with_the_named_seed(space, vae, latents, toy):
    corpus = toy.corpus()
    kw = dict(config=toy.cfg(corpus.without_groups(["g0"])), train_config=toy.tc(steps=10, eval_every=5))
    messages: list[str] = []

    def trained(spec: str):
        sur = surrogate_for_group(corpus, "g0", vae, latents, checkpoint=spec, log=messages.append, **kw)
        assert sur.card["held_out_groups"] == ["g0"] and "g0" not in sur.card["groups_seen"]
        return sur.card["train_config"]["seed"], torch.cat([p.detach().reshape(-1) for p in sur.parameters()])

    (s0, w0), (s1, w1), (s1b, w1b) = trained("train"), trained("train@1"), trained("train@1")
    assert (s0, s1, s1b) == (0, 1, 1) and sum("steps, seed 1)" in m for m in messages) == 2
    assert torch.equal(w1, w1b) and not torch.equal(w0, w1)  # a seed is a run; another seed another one
    for bad in ("train@", "train@-1", "train@x"):
        with pytest.raises(GrabnasError, match=r"bad surrogate .*expected train@SEED"):
            surrogate_for_group(corpus, "g0", vae, latents, checkpoint=bad, log=messages.append, **kw)


def test_dataset_encoder_and_finetuned_encoder(space, vae, latents, toy):
    from grabnas.models.feature_extractor import load_feature_extractor

    rng = np.random.default_rng(0)
    tasks = []
    for i, classes in enumerate(("0,1,2", "3,4,5", "6,7,8")):
        idx = np.sort(rng.choice(len(space), 40, replace=False))
        tasks.append(CorpusTask(f"d{i}", f"d{i}", idx, rng.normal(size=40), None, f"digits[{classes}]@{i}"))
    corpus = Corpus(space, tasks)
    ex = load_feature_extractor("digits-cnn")
    cfg = toy.cfg(corpus, dataset_encoder=True, instance_dim=ex.feature_dim, encoder_dim=8)
    tc = toy.tc(steps=4, eval_every=2, instances_per_class=3, instance_samples=1, finetune_encoder=True)
    vae_copy = ArchitectureVAE.create(space, torch.Generator().manual_seed(0), hidden_dim=8, latent_dim=LATENT)
    before = vae_fingerprint(vae_copy)
    res = meta_train(corpus, vae_copy, cfg, tc, extractor=ex, progress=False)
    enc = res.surrogate.task_encoder
    assert enc.has_dataset_encoder and res.vae_state is not None and res.surrogate.vae_state is not None
    assert vae_fingerprint(vae_copy) == before  # the caller's VAE is not modified
    from grabnas.meta.checkpoints import surrogate_vae
    from grabnas.meta.features import latents_for

    tuned = surrogate_vae(res.surrogate, vae_copy)
    assert vae_fingerprint(tuned) != before
    assert latents_for(res.surrogate, vae_copy).shape == (len(space), LATENT)
    from grabnas.meta.features import task_instance_features

    f0 = task_instance_features("digits[0,1,2]@0", ex, k=3)[0]
    f1 = task_instance_features("digits[3,4,5]@1", ex, k=3)[0]
    assert f0.shape == (3, 3, ex.feature_dim)
    assert not torch.allclose(res.surrogate.task_embedding(f0), res.surrogate.task_embedding(f1))


def _parser():
    from grabnas.cli.surrogate import add_surrogate_commands

    p = argparse.ArgumentParser(prog="grabnas")
    add_surrogate_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_meta_train_and_eval(tmp_path, space, vae, capsys):
    from grabnas.meta.checkpoints import save_checkpoint

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
    from grabnas.meta.corpus import load_corpus
    from grabnas.meta.transferability import heldout_residual_fraction

    seen = load_corpus(f"records:{csv}", None).without_groups(["gc"])
    assert card["heldout_residual"] == pytest.approx(heldout_residual_fraction(seen))  # what the card's search reads
    assert card["train_groups"] == ["ga", "gb"] and card["meta_validation_groups"] == []
    assert card["meta_validation"].startswith("10% of each task's architectures (the corpus has 2 groups")
    assert f"meta-validation: {card['meta_validation']}\n" in capsys.readouterr().out  # printed before training
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


def test_task_weighting():
    from grabnas.meta.surrogate_training import _task_weights

    np.testing.assert_allclose(_task_weights([4, 100], "uniform"), [0.5, 0.5])
    np.testing.assert_allclose(_task_weights([4, 100], "sqrt"), [2 / 12, 10 / 12])
    with pytest.raises(GrabnasError, match="task weighting"):
        _task_weights([1], "size")


def test_top_batch_fraction_is_validated(space, vae, latents, toy):
    corpus = toy.corpus(groups=2, n=40)
    with pytest.raises(GrabnasError, match="top batch fraction in \\[0, 1\\]"):
        meta_train(corpus, vae, toy.cfg(corpus), toy.tc(top_batch_fraction=1.5), latents=latents, progress=False)
