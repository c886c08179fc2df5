"""The training recipe: train an NB201 network on a task's train split, score val and test.

The recipe follows NAS-Bench-201 (SGD with Nesterov momentum 0.9, lr 0.1 with cosine decay to
zero per step, weight decay 5e-4, batch 256, random crop with padding and horizontal flip) at
a size you choose (channels C, cells per stage N, epochs). Images are preloaded as tensors on
the device and normalised with the train split's per-channel mean and standard deviation; the
loop makes no host-device synchronisation per step (the loss is checked once per epoch).
On CUDA it uses automatic mixed precision (bfloat16 where supported) and channels-last memory.

Randomness comes only from local ``torch.Generator`` objects and, for the weight
initialisation, from the global torch RNG inside ``torch.random.fork_rng`` (restored after),
all derived from ``config.seed``.

The loop is split so that a run can stop and resume between epochs (:mod:`grabnas.train.run`):
:func:`prepare_training` builds a :class:`TrainingState` (epoch 0), :func:`train_epoch` runs one
epoch on it and :func:`accuracy` scores it; :func:`train_and_evaluate` is these three in a row.
:data:`PRESETS` names whole recipes (``nb201-200``, ``proxy``).

Accuracies are in percent (as in the NB201 table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from grabnas.data.tasks import DatasetSplit
from grabnas.errors import GrabnasError
from grabnas.seeding import child_seed
from grabnas.train.network import TinyNetwork, count_flops, count_parameters, genotype_ops


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (besides the architecture and the data).

    Args:
        epochs: passes over the train split.
        lr: initial learning rate (cosine-annealed to 0 over all steps).
        momentum, nesterov, weight_decay: SGD settings.
        batch_size: training batch size (the last batch of an epoch is kept unless it has one image).
        channels: C, channels of the first stage.
        cells: N, cells per stage.
        augment: random crop with padding (``max(1, round(H / 8))`` pixels) and, where
            ``flip`` allows, horizontal flips.
        flip: horizontal flips when augmenting; None follows the dataset (no flips for digits).
        seed: the trial seed; weight init, batch order and augmentation derive from it.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        amp: mixed precision on CUDA (ignored on CPU).
        channels_last: channels-last memory format on CUDA (ignored on CPU).
        num_threads: torch CPU threads during the run (restored after); None leaves them.
        eval_batch_size: batch size for scoring val and test.
    """

    epochs: int = 12
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 256
    channels: int = 16
    cells: int = 5
    augment: bool = True
    flip: bool | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    num_threads: int | None = None
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "channels", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise GrabnasError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.cells < 0:
            raise GrabnasError(f"TrainConfig.cells must be >= 0, got {self.cells}")
        if not self.lr > 0:
            raise GrabnasError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.num_threads is not None and self.num_threads < 1:
            raise GrabnasError(f"TrainConfig.num_threads must be >= 1 or None, got {self.num_threads}")

    def with_seed(self, seed: int) -> TrainConfig:
        return replace(self, seed=int(seed))

    def to_dict(self) -> dict:
        return asdict(self)


#: named recipes: ``nb201-200`` is NAS-Bench-201's (200 epochs, C=16, N=5, SGD-Nesterov lr 0.1 cosine,
#: batch 256, weight decay 5e-4); ``proxy`` is the short one ``grabnas search --dataset`` and
#: ``grabnas collect`` train every candidate with by default (5 epochs, C=8, N=1, batch 128)
PRESETS: dict[str, TrainConfig] = {
    "nb201-200": TrainConfig(
        epochs=200, channels=16, cells=5, batch_size=256, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    ),
    "proxy": TrainConfig(epochs=5, channels=8, cells=1, batch_size=128, lr=0.1, weight_decay=5e-4),
}


def preset(name: str) -> TrainConfig:
    """The recipe :data:`PRESETS` names ``name``; a one-line error for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise GrabnasError(f"unknown recipe preset {name!r}; expected one of {', '.join(PRESETS)}") from None


@dataclass
class TrainResult:
    """The outcome of one training run; ``status`` is ``ok`` or ``failed`` (then ``error`` says why).

    Accuracies are percentages; ``val_acc`` is the search signal, ``test_acc`` is for reports.
    """

    val_acc: float | None
    test_acc: float | None
    train_seconds: float
    params: int | None
    flops: int | None
    status: str = "ok"
    error: str | None = None
    train_loss: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def value(self) -> float | None:
        """What to ``tell`` an optimizer: the validation accuracy, or None for a failure."""
        return self.val_acc if self.ok else None

    @classmethod
    def failed(
        cls, error: str, train_seconds: float = 0.0, params: int | None = None, flops: int | None = None
    ) -> TrainResult:
        return cls(None, None, float(train_seconds), params, flops, "failed", error)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise GrabnasError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from None


def check_device(device: str) -> torch.device:
    """The device ``device`` names, checked usable here (a tensor is placed on it), so that a bad
    ``--device`` fails once, before the first trial, instead of failing every trial."""
    d = resolve_device(device)
    if d.type not in ("cpu", "cuda", "mps", "xpu"):
        raise GrabnasError(f"device {device!r} cannot train networks; expected auto, cpu, cuda or cuda:N")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise GrabnasError(f"device {device!r} is not available: this PyTorch sees no CUDA GPU; expected cpu or auto")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise GrabnasError(
            f"device {device!r} is not available: {torch.cuda.device_count()} CUDA device(s) here; "
            f"expected cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    try:
        torch.zeros(1, device=d)
    except (RuntimeError, AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GrabnasError(
            f"device {device!r} is not usable here ({first[:200]}); expected auto, cpu or cuda"
        ) from None
    return d


def _to_genotype(arch):
    if isinstance(arch, str):
        from grabnas.spaces.nb201 import NB201Space

        return NB201Space().parse(arch).ops
    try:
        return genotype_ops(arch)
    except ValueError as e:
        raise GrabnasError(f"not an NB201 cell: {e}") from None


def build_model(arch, num_classes: int, in_channels: int, config: TrainConfig) -> TinyNetwork:
    """The network for ``arch`` with weights initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(child_seed(config.seed, "init") % (2**63))
        return TinyNetwork(_to_genotype(arch), config.channels, config.cells, num_classes, in_channels)


def _augment(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` and optional horizontal flip, per image."""
    b, c, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad)).flatten(2)
        oy = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=gen, device=x.device)
        ox = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=gen, device=x.device)
        rows = oy + torch.arange(h, device=x.device).view(1, h, 1)
        cols = ox + torch.arange(w, device=x.device).view(1, 1, w)
        idx = (rows * (w + 2 * pad) + cols).view(b, 1, h * w).expand(b, c, h * w)
        x = torch.gather(xp, 2, idx).view(b, c, h, w)
    if flip:
        m = torch.rand(b, generator=gen, device=x.device) < 0.5
        x = torch.where(m.view(b, 1, 1, 1), x.flip(3), x)
    return x


def _accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int, fmt, amp_ctx) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    with torch.inference_mode():
        for i in range(0, len(y), batch):
            xb = x[i : i + batch]
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            with amp_ctx():
                out = model(xb)
            correct += (out.argmax(1) == y[i : i + batch]).sum()
    return 100.0 * int(correct.item()) / max(1, len(y))


class _NullCtx:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def train_and_evaluate(arch, dataset_split: DatasetSplit, config: TrainConfig) -> TrainResult:
    """Train ``arch`` on ``dataset_split.train``; return val and test accuracy (percent) and costs.

    A loss that becomes NaN or infinite gives ``status='failed'`` with an error message
    (checked once per epoch); other errors propagate (the evaluator turns them into failures).
    """
    with torch_threads(config.num_threads):
        return _train(arch, dataset_split, config)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``n`` inside the block (restored after); None leaves them."""
    old_threads = torch.get_num_threads()
    if n is not None and n != old_threads:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


@dataclass
class TrainingState:
    """Everything the epoch loop reads and updates, built by :func:`prepare_training`.

    The data are preloaded on the device and normalised with the train split's statistics:
    ``x_*`` are float ``(n, C, H, W)``, ``y_*`` int64 ``(n,)``; ``mean`` and ``std`` are the
    ``(1, C, 1, 1)`` per-channel statistics (on the CPU). What changes from epoch to epoch —
    model, optimizer, LR schedule, gradient scaler and the two generators (batch order on the
    CPU, augmentation on the device) — is in :meth:`state_dict`; :meth:`load_state_dict` puts a
    saved one back, so that the next :func:`train_epoch` continues exactly where it left off.
    """

    model: TinyNetwork
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    order_gen: torch.Generator
    aug_gen: torch.Generator
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    batch_size: int
    steps_per_epoch: int
    pad: int
    flip: bool
    augment: bool
    eval_batch_size: int
    fmt: torch.memory_format | None
    amp_ctx: Callable[[], Any]
    params: int
    flops: int

    def state_dict(self) -> dict:
        """The mutable training state (tensors on the CPU, so that a checkpoint loads anywhere)."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "order_gen": self.order_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (of a run with the same architecture, data and recipe)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):  # {} from a disabled scaler (bfloat16)
            self.scaler.load_state_dict(state["scaler"])
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])


def prepare_training(arch, split: DatasetSplit, config: TrainConfig) -> TrainingState:
    """The network of ``arch`` (initialised from ``config.seed``), the data on the device, the
    optimizer, the cosine schedule over all steps and the seeded generators: epoch 0 of a run."""
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    in_ch, h, w = split.image_shape
    num_classes = split.num_classes
    model = build_model(arch, num_classes, in_ch, config)
    params = count_parameters(model)
    flops = count_flops(model, (in_ch, h, w))

    # data: preloaded, normalised with train statistics, on the device
    xtr = split.train.images
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def prep(t: torch.Tensor) -> torch.Tensor:
        return ((t - mean) / std).to(device)

    x_train, y_train = prep(xtr), split.train.labels.to(device)
    x_val, y_val = prep(split.val.images), split.val.labels.to(device)
    x_test, y_test = prep(split.test.images), split.test.labels.to(device)

    fmt = torch.channels_last if (cuda and config.channels_last) else None
    model = model.to(device)
    if fmt is not None:
        model = model.to(memory_format=fmt)
    if cuda and config.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

        def amp_ctx():
            return torch.autocast("cuda", dtype=amp_dtype)

        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    else:
        amp_ctx = _NullCtx
        scaler = None

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    n = len(y_train)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs + (1 if n % bs > 1 else 0)
    total_steps = max(1, steps_per_epoch * config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )

    order_gen = torch.Generator().manual_seed(child_seed(config.seed, "order") % (2**63))
    aug_gen = torch.Generator(device=device).manual_seed(child_seed(config.seed, "augment") % (2**63))
    pad = max(1, round(h / 8)) if config.augment else 0
    flip = bool(config.augment and (config.flip if config.flip is not None else split.train.meta.get("flip", True)))
    return TrainingState(
        model,
        optimizer,
        scheduler,
        scaler,
        order_gen,
        aug_gen,
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        mean,
        std,
        device,
        bs,
        steps_per_epoch,
        pad,
        flip,
        config.augment,
        config.eval_batch_size,
        fmt,
        amp_ctx,
        params,
        flops,
    )


def train_epoch(st: TrainingState) -> torch.Tensor:
    """One pass over the train split in a fresh random order; returns the summed batch loss
    (a 0-dim tensor on the device, not synchronised: the caller decides when to read it)."""
    st.model.train()
    n = len(st.y_train)
    bs = st.batch_size
    perm = torch.randperm(n, generator=st.order_gen).to(st.device)
    epoch_loss = torch.zeros((), device=st.device)
    for i in range(st.steps_per_epoch):
        idx = perm[i * bs : (i + 1) * bs]
        xb, yb = st.x_train[idx], st.y_train[idx]
        if st.augment:
            xb = _augment(xb, st.pad, st.flip, st.aug_gen)
        if st.fmt is not None:
            xb = xb.contiguous(memory_format=st.fmt)
        with st.amp_ctx():
            loss = F.cross_entropy(st.model(xb), yb)
        st.optimizer.zero_grad(set_to_none=True)
        if st.scaler is not None and st.scaler.is_enabled():
            st.scaler.scale(loss).backward()
            st.scaler.step(st.optimizer)
            st.scaler.update()
        else:
            loss.backward()
            st.optimizer.step()
        st.scheduler.step()
        epoch_loss += loss.detach().float()
    return epoch_loss


def accuracy(st: TrainingState, part: str) -> float:
    """Accuracy (percent) of the network on ``part`` (``val`` or ``test``); leaves it in eval mode."""
    if part not in ("val", "test"):
        raise GrabnasError(f"unknown split part {part!r}; expected val or test")
    x, y = (st.x_val, st.y_val) if part == "val" else (st.x_test, st.y_test)
    return _accuracy(st.model, x, y, st.eval_batch_size, st.fmt, st.amp_ctx)


def _train(arch, split: DatasetSplit, config: TrainConfig) -> TrainResult:
    st = prepare_training(arch, split, config)
    params, flops = st.params, st.flops
    cuda = st.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(st.device)
    start = time.perf_counter()
    epoch_loss = torch.zeros((), device=st.device)
    for epoch in range(config.epochs):
        epoch_loss = train_epoch(st)
        if not bool(torch.isfinite(epoch_loss)):
            seconds = time.perf_counter() - start
            return TrainResult.failed(
                f"training loss became NaN or infinite in epoch {epoch + 1} of {config.epochs}", seconds, params, flops
            )
    if cuda:
        torch.cuda.synchronize(st.device)
    train_seconds = time.perf_counter() - start
    val_acc = accuracy(st, "val")
    test_acc = accuracy(st, "test")
    return TrainResult(
        val_acc,
        test_acc,
        train_seconds,
        params,
        flops,
        "ok",
        None,
        train_loss=float(epoch_loss) / max(1, st.steps_per_epoch),
    )
