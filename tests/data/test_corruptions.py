"""Task modifiers: ~Npx, ~noiseS, ~occludeSIDE, ~trainK (parsing, names, determinism, shapes)."""

from __future__ import annotations

import pytest
import torch

from grabnas.data import TaskSpec, load_dataset
from grabnas.data.corruptions import add_noise, occlude, parse_modifier, split_modifiers
from grabnas.errors import GrabnasError
from grabnas.search.dataset import dataset_task

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")


@pytest.mark.parametrize(
    "token, parsed",
    [
        ("16px", ("px", 16)),
        ("noise0.3", ("noise", 0.3)),
        ("noise.5", ("noise", 0.5)),
        ("occludeLeft", ("occlude", "left")),
        ("train20", ("train", 20)),
    ],
)
def test_parse_modifier(token, parsed):
    assert parse_modifier(token) == parsed


@pytest.mark.parametrize(
    "token, fragment",
    [
        ("blur2", "unknown task modifier ~blur2"),
        ("occludemiddle", "unknown side 'middle'"),
        ("train0", "at least one training image"),
        ("0px", "at least 1 pixel"),
    ],
)
def test_bad_modifiers(token, fragment):
    with pytest.raises(GrabnasError, match=fragment):
        parse_modifier(token)


def test_split_modifiers_leaves_paths_alone():
    assert split_modifiers("digits~noise0.3~train20") == ("digits", ("noise0.3", "train20"))
    assert split_modifiers("~/data/imgs") == ("~/data/imgs", ())
    assert split_modifiers("npz:~/x.npz~8px") == ("npz:~/x.npz", ("8px",))


def test_names_round_trip_and_dataset_specs():
    t = TaskSpec.parse("digits[0,1,2]@3~4px~noise.30~occludetop~train5")
    assert t.image_size == 4 and t.modifiers == ("noise0.3", "occludetop", "train5")
    assert t.name == "digits[0,1,2]@3~4px~noise0.3~occludetop~train5"
    assert TaskSpec.parse(t.name) == t
    # the --dataset forms: modifiers on a bare dataset spec, and --image-size on top
    assert dataset_task("digits~noise0.3").name == "digits[all]@0~noise0.3"
    assert dataset_task("digits~train20", image_size=12).name == "digits[all]@0~12px~train20"
    assert TaskSpec("digits~4px~occludeleft") == TaskSpec("digits", image_size=4, modifiers=("occludeleft",))
    assert TaskSpec.parse("digits[all]@0~14px").image_size == 14  # the older form still parses
    with pytest.raises(GrabnasError, match="more than one ~trainK"):
        TaskSpec("digits~train5~train6")


def test_noise_is_deterministic_clipped_and_seeded():
    ds = load_dataset("digits")
    a, b = add_noise(ds, 0.3, seed=0), add_noise(ds, 0.3, seed=0)
    assert torch.equal(a.images, b.images) and a.images.shape == ds.images.shape
    assert not torch.equal(a.images, ds.images) and not torch.equal(a.images, add_noise(ds, 0.3, seed=1).images)
    assert float(a.images.min()) >= 0.0 and float(a.images.max()) <= 1.0
    assert 0.15 < float((a.images - ds.images).std()) < 0.3  # clipping shrinks it a little
    assert add_noise(ds, 0.0, seed=0) is ds


def test_occlusion_zeroes_one_half():
    ds = load_dataset("digits")
    for side, region in [
        ("left", (slice(None), slice(0, 4))),
        ("right", (slice(None), slice(4, 8))),
        ("top", (slice(0, 4), slice(None))),
        ("bottom", (slice(4, 8), slice(None))),
    ]:
        o = occlude(ds, side)
        assert o.images.shape == ds.images.shape
        assert float(o.images[:, :, region[0], region[1]].abs().max()) == 0.0
        assert float(o.images.abs().sum()) > 0
    assert float(ds.images[:, :, :, :4].abs().max()) > 0  # the original is not modified


def test_task_modifiers_in_splits():
    clean = TaskSpec("digits").split()
    small = dataset_task("digits~4px").split()
    assert small.image_shape == (1, 4, 4) and len(small.train) == len(clean.train)
    few = dataset_task("digits~train20").split()
    assert few.train.class_counts().tolist() == [20] * 10
    assert torch.equal(few.val.images, clean.val.images) and torch.equal(few.test.labels, clean.test.labels)
    assert dataset_task("digits~train20").split().fingerprint() == few.fingerprint()  # re-derived exactly
    noisy = dataset_task("digits~noise0.5").split()
    assert torch.equal(noisy.val.labels, clean.val.labels) and not torch.equal(noisy.val.images, clean.val.images)
    assert dataset_task("digits~noise0.5").split().fingerprint() == noisy.fingerprint()
    occ = dataset_task("digits~occludeleft").split()
    assert float(occ.train.images[..., :4].abs().max()) == 0.0


def test_collect_accepts_modifier_tasks():
    from grabnas.cli.collect import _task

    assert _task("digits~train20").name == "digits[all]@0~train20"
    assert _task("digits[0,1]@2~occluderight").modifiers == ("occluderight",)
