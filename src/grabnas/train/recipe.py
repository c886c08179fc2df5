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

Accuracies are in percent (as in the NB201 table).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

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
    old_threads = torch.get_num_threads()
    if config.num_threads is not None and config.num_threads != old_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(arch, dataset_split, config)
    finally:
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


def _train(arch, split: DatasetSplit, config: TrainConfig) -> TrainResult:
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

    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model.train()
    epoch_loss = torch.zeros((), device=device)
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=order_gen).to(device)
        epoch_loss = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            xb, yb = x_train[idx], y_train[idx]
            if config.augment:
                xb = _augment(xb, pad, flip, aug_gen)
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            with amp_ctx():
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None and scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            epoch_loss += loss.detach().float()
        if not bool(torch.isfinite(epoch_loss)):
            seconds = time.perf_counter() - start
            return TrainResult.failed(
                f"training loss became NaN or infinite in epoch {epoch + 1} of {config.epochs}", seconds, params, flops
            )
    if cuda:
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - start
    val_acc = _accuracy(model, x_val, y_val, config.eval_batch_size, fmt, amp_ctx)
    test_acc = _accuracy(model, x_test, y_test, config.eval_batch_size, fmt, amp_ctx)
    return TrainResult(
        val_acc,
        test_acc,
        train_seconds,
        params,
        flops,
        "ok",
        None,
        train_loss=float(epoch_loss) / max(1, steps_per_epoch),
    )
