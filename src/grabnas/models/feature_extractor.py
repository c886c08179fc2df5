"""Image feature extractors for the dataset encoder: images ``(N, C, H, W)`` -> features ``(N, F)``.

* ``digits-cnn`` (default, shipped): :class:`SmallCNN`, a four-convolution network trained for
  a few seconds on scikit-learn's 8x8 digits (upsampled to 16x16) by :func:`train_digits_cnn`;
  its weights ship as ``grabnas/checkpoints/surrogate-feature-cnn-digits.pt`` (+ ``.json`` card
  with its held-out accuracy). It reads any image: channels are averaged to grey and the image
  is resized to 16x16; features are its 64 pooled channels.
* ``resnet18``: torchvision's ResNet-18 with ImageNet weights, only when torchvision is
  installed and the weights are already on disk (``$TORCH_HOME/hub/checkpoints``); grabnas never
  downloads. Features: the 512-d pooled output.
* a path to a :class:`SmallCNN` checkpoint written by :func:`save_cnn`, or any callable.

Every extractor has a ``feature_dim`` and runs under ``torch.no_grad`` in eval mode.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grabnas.errors import GrabnasError

SHIPPED_CNN = "surrogate-feature-cnn-digits"
EXTRACTOR_FORMS = "digits-cnn, resnet18 (weights already on disk), a SmallCNN .pt path, or a callable"
CARD_FORMAT = "grabnas-feature-cnn/1"


class SmallCNN(nn.Module):
    """Grey 16x16 input -> 64 features (-> ``num_classes`` logits when training)."""

    input_size = 16

    def __init__(self, num_classes: int = 10, width: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, feature_dim, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(feature_dim, feature_dim, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    @classmethod
    def prepare(cls, images: Tensor) -> Tensor:
        """Any ``(N, C, H, W)`` (or ``(N, H, W)``) images -> grey ``(N, 1, 16, 16)`` float32."""
        x = torch.as_tensor(images).float()
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4:
            raise GrabnasError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
        x = x.mean(1, keepdim=True)
        if x.shape[-2:] != (cls.input_size, cls.input_size):
            h, w = x.shape[-2:]
            if h >= cls.input_size and w >= cls.input_size:
                x = F.interpolate(x, size=(cls.input_size, cls.input_size), mode="area")
            else:
                x = F.interpolate(x, size=(cls.input_size, cls.input_size), mode="bilinear", align_corners=False)
        return x

    def features(self, images: Tensor) -> Tensor:
        return self.body(self.prepare(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


class _Extractor:
    """A no-grad, eval-mode callable around a feature module."""

    def __init__(
        self, fn: Callable[[Tensor], Tensor], feature_dim: int, name: str, module: nn.Module | None = None
    ) -> None:
        self.fn, self.feature_dim, self.name, self.module = fn, feature_dim, name, module

    def __call__(self, images: Tensor, batch_size: int = 512) -> Tensor:
        if self.module is not None:
            self.module.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                out.append(self.fn(images[i : i + batch_size]))
        return torch.cat(out) if out else torch.zeros(0, self.feature_dim)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.name}, feature_dim={self.feature_dim})"


def train_digits_cnn(epochs: int = 20, seed: int = 0, batch_size: int = 64, lr: float = 2e-3) -> tuple[SmallCNN, dict]:
    """Train :class:`SmallCNN` on scikit-learn's digits (80 % train / 20 % held out, stratified
    by a seeded permutation) with Adam and random one-pixel shifts; returns the model and a card
    (held-out accuracy, seconds)."""
    from grabnas.data import load_digits

    ds = load_digits()
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = len(ds)
    perm = rng.permutation(n)
    n_hold = n // 5
    hold, train = torch.as_tensor(perm[:n_hold]), torch.as_tensor(perm[n_hold:])
    x = SmallCNN.prepare(ds.images)
    y = ds.labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(num_classes=ds.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size]
            xb = x[b]
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            xb = torch.roll(xb, shifts=(dx, dy), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x[hold]).argmax(1) == y[hold]).float().mean())
    card = {
        "format": CARD_FORMAT,
        "data": "sklearn.datasets.load_digits (8x8 upsampled to 16x16, grey)",
        "split": f"seeded permutation (seed {seed}): {len(train)} train, {len(hold)} held out",
        "epochs": epochs,
        "seed": seed,
        "heldout_accuracy": round(acc, 4),
        "feature_dim": model.feature_dim,
        "train_seconds": round(time.perf_counter() - start, 2),
        "torch_version": torch.__version__,
    }
    return model, card


def save_cnn(model: SmallCNN, path: str | os.PathLike, card: dict | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` and ``<stem>.json``."""
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (".pt", ".json") else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    card = dict(card or {"format": CARD_FORMAT})
    card.setdefault("format", CARD_FORMAT)
    card["num_classes"] = model.head.out_features
    card["feature_dim"] = model.feature_dim
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, stem.with_suffix(".pt"))
    stem.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def _load_cnn(pt: Path, js: Path) -> SmallCNN:
    try:
        card = json.loads(js.read_text())
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model = SmallCNN(num_classes=int(card.get("num_classes", 10)), feature_dim=int(card.get("feature_dim", 64)))
        model.load_state_dict(state)
    except Exception as e:
        raise GrabnasError(f"feature CNN checkpoint {pt} cannot be loaded: {' '.join(str(e).split())[:200]}") from None
    return model.eval()


def _resnet18() -> _Extractor:
    try:
        import torchvision
    except ImportError:
        raise GrabnasError("the resnet18 feature extractor needs torchvision; install it, or use digits-cnn") from None
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    weights = sorted(hub.glob("resnet18-*.pth")) if hub.is_dir() else []
    if not weights:
        raise GrabnasError(
            f"no ResNet-18 weights under {hub} (resnet18-*.pth); grabnas never downloads: put them there, or use digits-cnn"
        )
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(weights[0], map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def fn(images: Tensor) -> Tensor:
        x = torch.as_tensor(images).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] < 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return net((x - mean) / std)

    return _Extractor(fn, 512, "resnet18", net)


def load_feature_extractor(spec: str | Callable | None = "digits-cnn"):
    """An extractor from a spec (see the module docstring); a callable is returned as is (give it
    a ``feature_dim`` attribute so the surrogate can be sized for it)."""
    if callable(spec):
        return spec
    spec = "digits-cnn" if spec in (None, "", "default") else str(spec)
    if spec in ("digits-cnn", "digits", "cnn"):
        root = importlib.resources.files("grabnas") / "checkpoints"
        with (
            importlib.resources.as_file(root / f"{SHIPPED_CNN}.pt") as pt,
            importlib.resources.as_file(root / f"{SHIPPED_CNN}.json") as js,
        ):
            if not Path(pt).is_file():
                raise GrabnasError(
                    f"the shipped feature CNN {SHIPPED_CNN}.pt is missing; rebuild it with "
                    "grabnas.models.feature_extractor.train_digits_cnn and save_cnn"
                )
            model = _load_cnn(Path(pt), Path(js))
        return _Extractor(model.features, model.feature_dim, "digits-cnn", model)
    if spec == "resnet18":
        return _resnet18()
    p = Path(spec).expanduser()
    stem = p.with_suffix("") if p.suffix in (".pt", ".json") else p
    if stem.with_suffix(".pt").is_file() and stem.with_suffix(".json").is_file():
        model = _load_cnn(stem.with_suffix(".pt"), stem.with_suffix(".json"))
        return _Extractor(model.features, model.feature_dim, str(stem), model)
    raise GrabnasError(f"unknown feature extractor {spec!r}; expected {EXTRACTOR_FORMS}")


__all__ = ["SmallCNN", "load_feature_extractor", "save_cnn", "train_digits_cnn", "EXTRACTOR_FORMS"]
