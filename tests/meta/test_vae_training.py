"""Tests of graph-VAE training, evaluation, checkpoints and the ``vae`` CLI commands."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from grabnas.cli.vae import add_vae_commands, cmd_vae_eval, cmd_vae_train
from grabnas.errors import GrabnasError
from grabnas.meta.vae_training import (
    TrainConfig,
    dag_edit_distance,
    evaluate_vae,
    latent_smoothness,
    split_indices,
    train_vae,
)
from grabnas.models.graph_vae import GraphVAEConfig
from grabnas.spaces.base import DAG

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_split_indices_is_seeded_and_disjoint():
    train, hold = split_indices(100, 0.1, split_seed=3)
    assert len(hold) == 10 and len(train) == 90
    assert not set(train) & set(hold) and set(train) | set(hold) == set(range(100))
    again = split_indices(100, 0.1, split_seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(hold, again[1])
    assert not np.array_equal(hold, split_indices(100, 0.1, split_seed=4)[1])
    with pytest.raises(GrabnasError, match="holdout fraction"):
        split_indices(10, 1.5, 0)


def test_dag_edit_distance():
    a = DAG((0, 2, 3, 1), ((0, 1), (1, 2), (2, 3)))
    assert dag_edit_distance(a, a) == 0
    assert dag_edit_distance(a, DAG((0, 2, 2, 1), ((0, 1), (1, 2), (2, 3)))) == 1
    assert dag_edit_distance(a, DAG((0, 2, 3, 1), ((0, 1), (0, 2), (2, 3)))) == 2
    assert dag_edit_distance(a, DAG((0, 2, 1), ((0, 1), (1, 2)))) == 1 + 1 + 1  # type, node, edge (2, 3)


def test_train_on_a_subset_writes_checkpoint_and_metrics(nb201, tmp_path):
    archs = nb201.members()[::400][:40]
    cfg = GraphVAEConfig.for_space(nb201, hidden_dim=16, latent_dim=4)
    tc = TrainConfig(epochs=2, batch_size=16, holdout_fraction=0.25, seed=1)
    seen = []
    result = train_vae(
        nb201, cfg, tc, progress=False, checkpoint_path=tmp_path / "ck", on_epoch=seen.append, archs=archs
    )
    assert len(result.history) == 2 == len(seen) and 1 <= result.best_epoch <= 2
    assert len(result.train_archs) == 30 and len(result.holdout_archs) == 10
    assert set(result.train_archs) | set(result.holdout_archs) == set(archs)
    card = result.vae.card
    assert card["split_seed"] == 1 and card["space"] == "nb201" and card["training_seconds"] >= 0
    assert (tmp_path / "ck.pt").is_file() and (tmp_path / "ck.json").is_file()  # intermediate checkpoint

    metrics = evaluate_vae(
        result.vae, n_prior=50, n_pairs=5, n_steps=4, split=(result.train_archs, result.holdout_archs)
    )
    for key in ("heldout_reconstruction", "prior_validity", "prior_uniqueness", "prior_novelty"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert len(metrics["smoothness_edit_distance"]) == 5 and metrics["smoothness_edit_distance"][0] == 0.0
    with pytest.raises(GrabnasError, match="given architectures"):
        evaluate_vae(result.vae)  # the card's split covers a subset only


def test_latent_smoothness_endpoints(nb201, tiny_vae):
    vae = tiny_vae(nb201)
    dist = latent_smoothness(vae, nb201.members()[:50], n_pairs=6, n_steps=3, seed=0)
    assert len(dist) == 4 and dist[0] == 0.0 and all(d >= 0 for d in dist)


def test_cli_parser_and_handlers(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_vae_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "vae",
            "train",
            "--space",
            "nb201",
            "--out",
            str(tmp_path / "v"),
            "--subset",
            "30",
            "--epochs",
            "1",
            "--hidden-dim",
            "16",
            "--latent-dim",
            "4",
            "--batch-size",
            "16",
            "--prior-samples",
            "20",
            "--no-progress",
        ]
    )
    assert args.handler is cmd_vae_train
    assert args.handler(args) == 0
    assert (tmp_path / "v.pt").is_file() and "prior_validity" in json.loads((tmp_path / "v.json").read_text())[
        "metrics"
    ]

    args = parser.parse_args(
        ["vae", "eval", "--checkpoint", "nb201", "--prior-samples", "50", "--pairs", "5", "--json"]
    )
    assert args.handler is cmd_vae_eval
    capsys.readouterr()
    assert args.handler(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["heldout_reconstruction"] > 0.9

    args = parser.parse_args(["vae", "eval", "--checkpoint", "nb201", "--space", "nasbench-graph"])
    with pytest.raises(GrabnasError, match="trained on the nb201 space"):
        args.handler(args)
