"""Checkpoint files of the graph VAE and the surrogate: round trips, one-line errors, shipped ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.checkpoints import (
    load_checkpoint,
    load_surrogate,
    save_checkpoint,
    shipped_checkpoint_names,
    shipped_surrogate_for,
    shipped_surrogate_names,
    vae_fingerprint,
)
from grabnas.models.graph_vae import GraphVAEConfig
from grabnas.models.value_maps import predict
from grabnas.spaces import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_checkpoint_round_trip(nb201, tmp_path, tiny_vae):
    vae = tiny_vae(nb201, split_seed=7, holdout_fraction=0.1, metrics={"x": 1.0})
    pt, js = save_checkpoint(vae, tmp_path / "model.pt")
    assert pt.name == "model.pt" and js.name == "model.json"
    card = json.loads(js.read_text())
    assert card["space"] == "nb201" and card["split_seed"] == 7 and card["torch_version"] == torch.__version__
    assert GraphVAEConfig.from_dict(card["config"]) == vae.model.config
    loaded = load_checkpoint(tmp_path / "model", space="nb201")
    archs = nb201.members()[:5]
    with torch.no_grad():
        assert torch.equal(loaded.encode_archs(archs), vae.encode_archs(archs))
    assert loaded.card["metrics"] == {"x": 1.0}
    assert load_checkpoint(js).space.name == "nb201"  # the card path works too, space from the card


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_checkpoint_errors(nb201, tmp_path, tiny_vae):
    save_checkpoint(tiny_vae(nb201), tmp_path / "a")
    with pytest.raises(GrabnasError, match="trained on the nb201 space, not nasbench-graph") as e:
        load_checkpoint(tmp_path / "a.pt", space=get_space("nasbench-graph"))
    _one_line_error(e)
    with pytest.raises(GrabnasError, match="no VAE checkpoint") as e:
        load_checkpoint(tmp_path / "missing.pt")
    _one_line_error(e)

    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())
    (tmp_path / "b.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(GrabnasError, match="corrupt") as e:
        load_checkpoint(tmp_path / "b.pt")
    _one_line_error(e)

    save_checkpoint(tiny_vae(nb201), tmp_path / "c")
    (tmp_path / "c.json").write_text("{ not json")
    with pytest.raises(GrabnasError, match="corrupt") as e:
        load_checkpoint(tmp_path / "c")
    _one_line_error(e)

    save_checkpoint(tiny_vae(nb201), tmp_path / "d")
    card = json.loads((tmp_path / "d.json").read_text())
    card["config"]["hidden_dim"] = 32
    (tmp_path / "d.json").write_text(json.dumps(card))
    with pytest.raises(GrabnasError, match="does not match") as e:
        load_checkpoint(tmp_path / "d")
    _one_line_error(e)

    (tmp_path / "e.pt").write_bytes((tmp_path / "a.pt").read_bytes())
    (tmp_path / "e.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(GrabnasError, match="not a grabnas VAE checkpoint card"):
        load_checkpoint(tmp_path / "e")


@pytest.mark.parametrize("name", ["nb201", "nasbench-graph"])
def test_shipped_checkpoints_reconstruct_random_members(name):
    assert name in shipped_checkpoint_names()
    vae = load_checkpoint(name, space=name)
    assert vae.space.name == name and vae.card["metrics"]["heldout_reconstruction"] > 0.9
    members = vae.space.members()
    rng = np.random.default_rng(2024)
    archs = [members[i] for i in rng.choice(len(members), size=10, replace=False)]
    with torch.no_grad():
        assert vae.decode_archs(vae.encode_archs(archs)) == archs
        assert (
            vae.decode_archs(vae.encode_archs(archs), mode="vote", k=5, generator=torch.Generator().manual_seed(0))
            == archs
        )


def test_shipped_checkpoints_name_their_held_out_dataset():
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
