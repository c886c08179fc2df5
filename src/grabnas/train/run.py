"""A resumable training run of one NB201 cell: per-epoch checkpoints in a run folder.

:func:`train_run` trains with the recipe of :mod:`grabnas.train.recipe` (the same steps, so an
uninterrupted run ends exactly where :func:`~grabnas.train.recipe.train_and_evaluate` ends) and
keeps its state in ``out_dir``:

``run.json``
    the settings (architecture, dataset and its data fingerprint, recipe), written first; a later
    call with other settings is refused with a one-line error naming the first difference.
    Where and how fast (``device``, ``num_threads``, ``eval_batch_size``) are not settings, but a
    checkpoint resumes only on the kind of device it was written on (CPU or CUDA: their random
    generators differ).
``checkpoint.pt``
    after every epoch: model, optimizer, LR schedule, gradient scaler, the batch-order and
    augmentation generators, the epoch and the history; replaced atomically (temporary file +
    ``os.replace``), so a run killed at any moment resumes from its last complete epoch and,
    on the CPU with the same threads, ends with bit-identical weights.
``history.csv``
    one row per epoch: ``epoch, train_loss, val_acc, lr, seconds``.
``weights.pt``, ``result.json``
    at the end: the trained ``state_dict`` and the result (architecture, recipe, accuracies,
    parameters, FLOPs, seconds, input normalisation); ``result.json`` is written last and marks
    the run finished (a later call returns it without training).

The weight initialisation is re-derived from the seed and then replaced by the checkpoint's
weights; the recipe reads no global RNG, so the two generators are all the randomness to save.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from grabnas.data.tasks import DatasetSplit
from grabnas.errors import GrabnasError, one_line
from grabnas.train.network import TinyNetwork
from grabnas.train.recipe import (
    TrainConfig,
    TrainResult,
    accuracy,
    prepare_training,
    torch_threads,
    train_epoch,
)

SETTINGS_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"
WEIGHTS_FILE = "weights.pt"
RESULT_FILE = "result.json"
HISTORY_COLUMNS = ("epoch", "train_loss", "val_acc", "lr", "seconds")
#: recipe fields that say where and how fast a run trains, not what it trains: not settings
EXECUTION_FIELDS = ("device", "num_threads", "eval_batch_size")
_FORMAT = 1


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: mean train loss, validation accuracy (%) after it, the learning rate
    of the next step and the epoch's wall seconds (training and validation)."""

    epoch: int
    train_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class TrainRun:
    """What :func:`train_run` leaves: the history so far and, once finished, the result.

    ``result`` is the content of ``result.json`` (None while unfinished); ``model`` is the trained
    network (eval mode, on the training device) when this call trained the last epoch, else None;
    ``resumed_from`` is the number of epochs already done when this call started.
    """

    out_dir: Path
    settings: dict
    history: list[EpochRecord] = field(default_factory=list)
    result: dict | None = None
    resumed_from: int = 0
    model: TinyNetwork | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.get("status") == "ok"


def architecture_string(arch) -> str:
    """The canonical NB201 string of ``arch`` (an architecture or its string); one-line error if invalid."""
    from grabnas.spaces.nb201 import NB201Arch, NB201Space

    if isinstance(arch, NB201Arch):
        return arch.to_string()
    if isinstance(arch, str):
        return NB201Space().parse(arch).to_string()
    raise GrabnasError(f"expected an NB201 cell or its string, got {type(arch).__name__}")


def run_settings(arch: str, config: TrainConfig, dataset: str, fingerprint: str) -> dict:
    """The settings a run folder is bound to (see the module docstring)."""
    recipe = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    return {"architecture": arch, "dataset": dataset, "data_fingerprint": fingerprint, **recipe}


def train_run(
    arch,
    split: DatasetSplit,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    dataset: str = "",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    stop_after: int | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TrainRun:
    """Train ``arch`` on ``split`` with ``config``, checkpointing every epoch in ``out_dir``; resume
    from its checkpoint when there is one, or return its result when it is finished.

    Args:
        arch: an NB201 cell or its string.
        split: the task's train/val/test data; its fingerprint is a setting of the run.
        config: the recipe (``num_threads`` is applied during the call and restored after).
        out_dir: the run folder: new, empty, or of an earlier call with the same settings.
        dataset: a name for the data (e.g. the task name), recorded and compared as a setting.
        on_epoch: called after each epoch trained in this call (once its checkpoint is written).
        stop_after: stop once this many epochs are done (an interruption on purpose; for tests).
        on_start: called with the number of epochs already done, once the folder is checked and
            before training (not for a finished run).

    Raises:
        GrabnasError: ``out_dir`` is a file, not empty and not a run, or a run with other settings.
    """
    arch = architecture_string(arch)
    out = Path(out_dir)
    settings = run_settings(arch, config, dataset, split.fingerprint())
    _check_folder(out, settings)
    run = TrainRun(out, settings)
    if (out / RESULT_FILE).exists():
        run.result = _read_json(out / RESULT_FILE)
        run.history = _read_history(out / HISTORY_FILE)
        run.resumed_from = len(run.history)
        return run
    out.mkdir(parents=True, exist_ok=True)
    if not (out / SETTINGS_FILE).exists():
        _write_atomic(out / SETTINGS_FILE, (json.dumps(settings, indent=2) + "\n").encode())
    with torch_threads(config.num_threads):
        return _train_run(arch, split, config, run, on_epoch, stop_after, on_start)


def _train_run(arch, split, config, run: TrainRun, on_epoch, stop_after, on_start) -> TrainRun:
    out = run.out_dir
    st = prepare_training(arch, split, config)
    ckpt_path = out / CHECKPOINT_FILE
    if ckpt_path.exists():
        ckpt = _load_checkpoint(ckpt_path, run.settings)
        if ckpt.get("device_type", "cpu") != st.device.type:  # the generators differ between devices
            raise GrabnasError(
                f"{out} was trained on {ckpt.get('device_type')}, not {st.device.type}; resume it there "
                f"(--device {ckpt.get('device_type')}), or pass another folder"
            )
        st.load_state_dict(ckpt["state"])
        run.history = [EpochRecord(**r) for r in ckpt["history"]]
    run.resumed_from = len(run.history)
    if on_start is not None:
        on_start(run.resumed_from)
    cuda = st.device.type == "cuda"
    for epoch in range(len(run.history), config.epochs):
        if stop_after is not None and epoch >= stop_after:
            return run
        start = time.perf_counter()
        loss = float(train_epoch(st)) / max(1, st.steps_per_epoch)  # one synchronisation per epoch
        if not math.isfinite(loss):
            seconds = sum(r.seconds for r in run.history) + time.perf_counter() - start
            error = f"training loss became NaN or infinite in epoch {epoch + 1} of {config.epochs}"
            failed = TrainResult.failed(error, seconds, st.params, st.flops)
            run.result = _result_json(run, config, split, st, failed, epochs_done=epoch)
            _write_atomic(out / RESULT_FILE, (json.dumps(run.result, indent=2) + "\n").encode())
            return run
        val = accuracy(st, "val")
        if cuda:
            torch.cuda.synchronize(st.device)
        record = EpochRecord(epoch + 1, loss, val, st.lr, time.perf_counter() - start)
        run.history.append(record)
        checkpoint = {
            "format": _FORMAT,
            "epoch": epoch + 1,
            "device_type": st.device.type,
            "settings": run.settings,
            "history": [asdict(r) for r in run.history],
            "state": st.state_dict(),
        }
        _write_atomic(out / CHECKPOINT_FILE, _torch_bytes(checkpoint))
        _write_atomic(out / HISTORY_FILE, _history_csv(run.history))
        if on_epoch is not None:
            on_epoch(record)

    last = run.history[-1]
    test = accuracy(st, "test")
    seconds = sum(r.seconds for r in run.history)
    weights = {k: v.detach().cpu().contiguous() for k, v in st.model.state_dict().items()}
    _write_atomic(out / WEIGHTS_FILE, _torch_bytes(weights))
    ok = TrainResult(last.val_acc, test, seconds, st.params, st.flops, train_loss=last.train_loss)
    run.result = _result_json(run, config, split, st, ok, epochs_done=len(run.history))
    _write_atomic(out / RESULT_FILE, (json.dumps(run.result, indent=2) + "\n").encode())  # last: finished
    run.model = st.model.eval()
    return run


def _result_json(run: TrainRun, config: TrainConfig, split: DatasetSplit, st, result: TrainResult, epochs_done: int):
    return {
        "status": result.status,
        "error": result.error,
        "architecture": run.settings["architecture"],
        "dataset": run.settings["dataset"],
        "data_fingerprint": run.settings["data_fingerprint"],
        "recipe": config.to_dict(),
        "epochs_done": epochs_done,
        "val_acc": result.val_acc,
        "test_acc": result.test_acc,
        "train_loss": result.train_loss,
        "params": result.params,
        "flops": result.flops,
        "train_seconds": result.train_seconds,
        "num_classes": split.num_classes,
        "class_names": list(split.train.class_names),
        "image_shape": list(split.image_shape),
        "input_normalisation": {
            "mean": [float(v) for v in st.mean.flatten()],
            "std": [float(v) for v in st.std.flatten()],
        },
        "device": str(st.device),
        "torch": torch.__version__,
    }


def load_history(out_dir: str | os.PathLike) -> list[EpochRecord]:
    """The epochs recorded in a run folder's ``history.csv`` (empty when there is none)."""
    return _read_history(Path(out_dir) / HISTORY_FILE)


# -- folder checks and files --------------------------------------------------------------------
def _check_folder(out: Path, settings: dict) -> None:
    if out.exists() and not out.is_dir():
        raise GrabnasError(f"run folder {out} is a file; expected a folder (new, empty or of an earlier run)")
    if not out.exists():
        return
    path = out / SETTINGS_FILE
    if not path.exists():
        if any(out.iterdir()):
            raise GrabnasError(
                f"folder {out} is not empty and holds no training run ({SETTINGS_FILE} missing); "
                "expected a new or empty folder, or an earlier run's"
            )
        return
    saved = _read_json(path)
    for key in dict.fromkeys([*saved, *settings]):
        old, new = saved.get(key), settings.get(key)
        if old == new:
            continue
        if key == "data_fingerprint":
            raise GrabnasError(
                f"{out} holds a run on other data (the images or labels of {settings.get('dataset')!r} changed); "
                "pass another folder to train on these"
            )
        raise GrabnasError(
            f"{out} holds a run with {key}={old!r}, not {key}={new!r}; rerun with its settings to resume, "
            "or pass another folder"
        )


def _load_checkpoint(path: Path, settings: dict) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file cannot come from os.replace; say what it is
        raise GrabnasError(f"cannot read the checkpoint {path} ({one_line(e, 160)}); delete it to start over") from None
    if ckpt.get("format") != _FORMAT or ckpt.get("settings") != settings:
        raise GrabnasError(f"checkpoint {path} belongs to another run; delete it to start over")
    return ckpt


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GrabnasError(f"cannot read {path} ({one_line(e, 160)}); expected a file written by grabnas") from None


def _read_history(path: Path) -> list[EpochRecord]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [
            EpochRecord(
                int(r["epoch"]), float(r["train_loss"]), float(r["val_acc"]), float(r["lr"]), float(r["seconds"])
            )
            for r in csv.DictReader(f)
        ]


def _history_csv(history: list[EpochRecord]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HISTORY_COLUMNS)
    for r in history:
        w.writerow([r.epoch, repr(r.train_loss), repr(r.val_acc), repr(r.lr), f"{r.seconds:.4f}"])
    return buf.getvalue().encode()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: a reader (or a rerun after a kill) sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
