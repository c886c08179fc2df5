"""Forward latency of the NB201 network on the user's own device: measured on a sample of cells,
predicted for all 15,625 by an additive per-edge-op model.

Measurement (:func:`measure_latency`): each sampled cell is built into
:class:`~grabnas.train.network.TinyNetwork` at a :class:`~grabnas.train.cost.NetworkSetting`
(C, N, classes, input shape), put in eval mode on the device and run under ``torch.no_grad``
on a batch of ``batch_size`` random inputs of the setting's shape: ``warmup`` untimed forward
passes, then ``repeats`` timed ones (``time.perf_counter``; on CUDA between synchronizes); a
cell's latency is the median of the repeats, in milliseconds per forward pass of the whole batch.
The timed passes are interleaved: ``repeats`` rounds, each timing one pass of every sampled
network in a fresh random order, so a change in the machine's load (other jobs) reaches all cells
alike instead of the few measured at that moment. The torch intra-op threads are fixed for the
measurement and recorded. The cells are a seeded random sample of the space.

Predictor (:func:`fit_additive`): least squares on per-edge-op indicators with ``none`` as each
edge's reference, ``ms = intercept + sum over edges e of coef[e, op_e]`` (``coef[e, none] = 0``):
the intercept is the latency of the all-``none`` cell (stem, reduction blocks, head) and
``coef[e, op]`` the extra milliseconds of ``op`` at edge ``e`` (in all ``3 N`` cells). Latency is
close to additive because every edge op runs on its own (:class:`~grabnas.train.network.InferCell`).
A seeded ``holdout`` share of the measured cells is left out of the fit; the table's predictor is
the one fit on the rest, so its reported error (MAPE and Spearman's rank correlation on the
held-out cells) is the error of the predictor that is used.

:class:`LatencyTable` holds all of it and is written as one JSON file (:meth:`LatencyTable.save`,
atomic); its :attr:`~LatencyTable.fingerprint` identifies its content (a study stores it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.spaces.nb201 import EDGES, OPS
from grabnas.train.cost import NetworkSetting

FORMAT = "grabnas-latency-table/1"
#: ``(len(space),)`` op indices per edge of every NB201 cell, in ``NB201Space.members()`` order
_ALL_OPS = np.indices((len(OPS),) * len(EDGES)).reshape(len(EDGES), -1).T


def _op_indices(cells: Sequence) -> np.ndarray:
    """``(len(cells), 6)`` op indices of cells given as architectures, op tuples or index rows."""
    rows = []
    for c in cells:
        ops = getattr(c, "ops", c)
        rows.append([OPS.index(o) if isinstance(o, str) else int(o) for o in ops])
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(EDGES))


def features(op_idx: np.ndarray) -> np.ndarray:
    """``(n, 1 + 6 * 4)`` design matrix: an intercept and, per edge, indicators of its 4 ops other
    than ``none`` (the reference)."""
    n = len(op_idx)
    x = np.zeros((n, len(EDGES), len(OPS)))
    x[np.arange(n)[:, None], np.arange(len(EDGES))[None, :], op_idx] = 1.0
    return np.concatenate([np.ones((n, 1)), x[:, :, 1:].reshape(n, -1)], axis=1)


def fit_additive(op_idx: np.ndarray, ms: np.ndarray) -> tuple[float, np.ndarray]:
    """Least squares ``(intercept, coef)`` with ``coef`` of shape ``(6, len(OPS))`` (``none``
    column 0): ``ms ~ intercept + sum_e coef[e, op_e]``. With fewer cells than the 25 unknowns
    the minimum-norm solution."""
    sol, *_ = np.linalg.lstsq(features(np.asarray(op_idx)), np.asarray(ms, dtype=float), rcond=None)
    coef = np.zeros((len(EDGES), len(OPS)))
    coef[:, 1:] = sol[1:].reshape(len(EDGES), len(OPS) - 1)
    return float(sol[0]), coef


def predict_additive(intercept: float, coef: np.ndarray, op_idx: np.ndarray) -> np.ndarray:
    """``(n,)`` predicted ms of the cells ``op_idx`` (``(n, 6)`` op indices)."""
    op_idx = np.asarray(op_idx, dtype=np.int64)
    return intercept + np.asarray(coef)[np.arange(len(EDGES))[None, :], op_idx].sum(axis=1)


def mape(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute percentage error (percent)."""
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    return float(100 * np.mean(np.abs(pred - true) / np.abs(true)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (NaN for fewer than 2 points or a constant side)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def split_holdout(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held_out)`` indices of ``n`` measured cells: a seeded ``holdout`` share (at least
    one cell when ``holdout > 0`` and ``n >= 2``) is held out."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    k = 0 if holdout <= 0 or n < 2 else min(n - 1, max(1, round(holdout * n)))
    return np.sort(order[k:]), np.sort(order[:k])


# -- the device --------------------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_info(device: str, threads: int) -> dict:
    """What identifies the device a table was measured on: kind (``cpu``/``cuda``), name (CPU model
    or GPU name), torch version and intra-op threads. Tables are cached per this value."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise GrabnasError(f"--device {device}: CUDA is not available here (torch {torch.__version__})")
        name = torch.cuda.get_device_name(torch.device(device))
    elif device != "cpu":
        raise GrabnasError(f"--device takes cpu, cuda or cuda:N, got {device!r}")
    else:
        name = _cpu_name()
    return {"kind": kind, "name": name, "torch": torch.__version__, "threads": int(threads)}


def describe_device(info: Mapping) -> str:
    return f"{info['kind']} {info['name']!r} (torch {info['torch']}, {info['threads']} threads)"


# -- measurement -------------------------------------------------------------------------------------
def sample_cells(n: int, seed: int) -> np.ndarray:
    """``(n, 6)`` op indices of ``n`` distinct cells drawn at random (seeded) from the 15,625."""
    if not 1 <= n <= len(_ALL_OPS):
        raise GrabnasError(f"the number of cells to measure must be between 1 and {len(_ALL_OPS)}, got {n}")
    rows = np.random.default_rng([seed, 0]).choice(len(_ALL_OPS), n, replace=False)
    return _ALL_OPS[rows]


def _timed_pass(model, x, cuda: bool) -> float:
    """ms of one forward pass of ``model`` on ``x`` (under ``torch.no_grad`` by the caller)."""
    import torch

    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0)


def measure_latency(
    op_idx: np.ndarray,
    setting: NetworkSetting,
    device: str = "cpu",
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    seed: int = 0,
    progress=None,
) -> np.ndarray:
    """``(len(op_idx),)`` median forward ms of each cell's network, interleaved: every network is
    built, put on ``device`` in eval mode and run ``warmup`` times untimed; then ``repeats`` rounds
    each time one forward pass of every network, in a fresh random order per round; a cell's
    latency is the median of its ``repeats`` passes. Interleaving spreads a change in the machine's
    load (other jobs) over all cells instead of a few consecutive ones. ``progress(r, repeats)``
    is called after each round. Uses torch's current intra-op threads."""
    import torch

    from grabnas.train.network import TinyNetwork

    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise GrabnasError(f"need repeats >= 1, warmup >= 0, batch size >= 1; got {repeats}, {warmup}, {batch_size}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, setting.in_channels, setting.height, setting.width, generator=gen).to(dev)
    rng = np.random.default_rng([seed, 2])
    times = np.empty((repeats, len(op_idx)))
    with torch.no_grad():
        models = []
        for row in np.asarray(op_idx):
            torch.manual_seed(seed)  # weights do not change the time; fixed anyway
            net = TinyNetwork([OPS[j] for j in row], setting.C, setting.N, setting.num_classes, setting.in_channels)
            models.append(net.to(dev).eval())
            for _ in range(warmup):
                models[-1](x)
        for r in range(repeats):
            for i in rng.permutation(len(models)):
                times[r, i] = _timed_pass(models[i], x, cuda)
            if progress is not None:
                progress(r + 1, repeats)
    return np.median(times, axis=0)


# -- the table -----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LatencyTable:
    """Measured latencies of a sample of cells on one device and the additive predictor fit to them.

    Attributes:
        device: :func:`device_info` of the device measured on.
        setting: the network the cells were built into.
        batch_size, warmup, repeats, seed, holdout: how they were measured and split.
        cells: ``(n, 6)`` op indices of the measured cells (sample order).
        ms: ``(n,)`` their median ms per forward pass of a batch.
        held_out: indices into ``cells`` of the cells left out of the fit.
        intercept, coef: the predictor (:func:`fit_additive`, on the other cells).
        seconds: how long the measurement took.
    """

    device: Mapping
    setting: NetworkSetting
    batch_size: int
    warmup: int
    repeats: int
    seed: int
    holdout: float
    cells: np.ndarray
    ms: np.ndarray
    held_out: np.ndarray
    intercept: float
    coef: np.ndarray
    seconds: float = 0.0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    # -- the predictor --------------------------------------------------------------------------
    def predict(self, cells) -> np.ndarray:
        """Predicted ms of ``cells`` (architectures, op tuples or ``(n, 6)`` op indices)."""
        idx = cells if isinstance(cells, np.ndarray) and cells.dtype.kind == "i" else _op_indices(cells)
        return predict_additive(self.intercept, self.coef, idx)

    def predict_all(self) -> np.ndarray:
        """``(15,625,)`` read-only predicted ms of every NB201 cell in ``NB201Space.members()`` order.
        These (not the measured ms of the sampled cells) are the cost ``latency`` of the constraints,
        so a cell's feasibility does not depend on whether it happened to be sampled."""
        if "all" not in self._cache:
            pred = self.predict(_ALL_OPS)
            pred.setflags(write=False)
            self._cache["all"] = pred
        return self._cache["all"]

    @property
    def errors(self) -> dict[str, float]:
        """Held-out ``mape`` (percent), ``spearman`` and ``n`` (cells), and the training ``fit_mape``."""
        held = np.zeros(len(self.ms), dtype=bool)
        held[self.held_out] = True
        pred = self.predict(self.cells)
        return {
            "n": int(held.sum()),
            "mape": mape(self.ms[held], pred[held]) if held.any() else float("nan"),
            "spearman": spearman(self.ms[held], pred[held]),
            "fit_mape": mape(self.ms[~held], pred[~held]) if (~held).any() else float("nan"),
        }

    def measurement(self) -> dict:
        """What a rerun must match to reuse this table: the device and how it measured."""
        return {
            "device": dict(self.device),
            "setting": asdict(self.setting),
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "cells": len(self.ms),
            "seed": self.seed,
            "holdout": self.holdout,
        }

    # -- file ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        e = self.errors
        return {
            "format": FORMAT,
            **self.measurement(),
            "unit": "ms per forward pass of one batch (median of the repeats)",
            "seconds": round(float(self.seconds), 3),
            "measured": [
                {"arch": _arch_text(row), "ops": [int(i) for i in row], "ms": float(m), "held_out": bool(h)}
                for row, m, h in zip(self.cells, self.ms, np.isin(np.arange(len(self.ms)), self.held_out))
            ],
            "predictor": {
                "model": "ms = intercept + sum over edges of coef[edge][op]; least squares, none as reference",
                "ops": list(OPS),
                "intercept": float(self.intercept),
                "coef": [[float(v) for v in row] for row in self.coef],
                "held_out_cells": e["n"],
                "held_out_mape_percent": e["mape"],
                "held_out_spearman": e["spearman"],
                "fit_mape_percent": e["fit_mape"],
            },
        }

    @property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the table's content (measurements and predictor)."""
        d = self.to_dict()
        d.pop("seconds")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically (a temporary file, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    def summary(self) -> str:
        """One line: the device, the network, batch, held-out MAPE and Spearman."""
        e = self.errors
        pred = self.predict_all()
        return (
            f"latency on {describe_device(self.device)}, {self.setting.describe()}, batch {self.batch_size}: "
            f"{len(self.ms)} cells measured (median of {self.repeats} after {self.warmup} warm-up), "
            f"{len(self.ms) - e['n']} fit; held-out ({e['n']} cells) MAPE {e['mape']:.2f} %, "
            f"Spearman {e['spearman']:.3f}; predicted {pred.min():.3g}-{pred.max():.3g} ms "
            f"(median {np.median(pred):.3g} ms) over the 15,625 cells"
        )


def _arch_text(row) -> str:
    o = [OPS[i] for i in row]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def build_latency_table(
    setting: NetworkSetting,
    device: str = "cpu",
    cells: int = 200,
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    seed: int = 0,
    holdout: float = 0.2,
    threads: int | None = None,
    progress=None,
) -> LatencyTable:
    """Measure ``cells`` sampled cells (:func:`measure_latency`) with ``threads`` torch threads
    (default: torch's current setting; restored afterwards) and fit the predictor."""
    import torch

    if not 0 <= holdout < 1:
        raise GrabnasError(f"the held-out share must be in [0, 1), got {holdout}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        info = device_info(device, torch.get_num_threads())
        op_idx = sample_cells(cells, seed)
        t0 = time.perf_counter()
        ms = measure_latency(op_idx, setting, device, batch_size, warmup, repeats, seed, progress)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    return table_from_measurements(info, setting, batch_size, warmup, repeats, seed, holdout, op_idx, ms, seconds)


def table_from_measurements(
    device: Mapping,
    setting: NetworkSetting,
    batch_size: int,
    warmup: int,
    repeats: int,
    seed: int,
    holdout: float,
    op_idx: np.ndarray,
    ms: np.ndarray,
    seconds: float = 0.0,
) -> LatencyTable:
    """The table of these measurements: the seeded held-out split and the predictor fit on the rest."""
    op_idx, ms = np.asarray(op_idx, dtype=np.int64), np.asarray(ms, dtype=float)
    train, held = split_holdout(len(ms), holdout, seed)
    intercept, coef = fit_additive(op_idx[train], ms[train])
    return LatencyTable(
        dict(device), setting, batch_size, warmup, repeats, seed, holdout, op_idx, ms, held, intercept, coef, seconds
    )


def load_latency_table(path: str | os.PathLike) -> LatencyTable:
    """Read a table written by :meth:`LatencyTable.save`; one-line errors for a missing or foreign file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise GrabnasError(f"latency table {path} does not exist; make it with grabnas latency --out {path}") from None
    except (OSError, ValueError) as e:
        raise GrabnasError(f"latency table {path} is not readable JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise GrabnasError(f"{path} is not a grabnas latency table (expected format {FORMAT!r})")
    try:
        measured = d["measured"]
        op_idx = np.array([m["ops"] for m in measured], dtype=np.int64).reshape(-1, len(EDGES))
        ms = np.array([m["ms"] for m in measured], dtype=float)
        held = np.array([i for i, m in enumerate(measured) if m["held_out"]], dtype=np.int64)
        p = d["predictor"]
        return LatencyTable(
            d["device"],
            NetworkSetting(**d["setting"]),
            int(d["batch_size"]),
            int(d["warmup"]),
            int(d["repeats"]),
            int(d["seed"]),
            float(d["holdout"]),
            op_idx,
            ms,
            held,
            float(p["intercept"]),
            np.array(p["coef"], dtype=float).reshape(len(EDGES), len(OPS)),
            float(d.get("seconds", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise GrabnasError(f"latency table {path} is damaged ({type(e).__name__}: {e})") from None


def measurement_difference(have: Mapping, want: Mapping) -> str | None:
    """The first difference between two :meth:`LatencyTable.measurement` values, as words (None: same)."""
    if dict(have["device"]) != dict(want["device"]):
        return f"it was measured on {describe_device(have['device'])}, not on {describe_device(want['device'])}"
    if have["setting"] != want["setting"]:
        return (
            f"it was measured for {NetworkSetting(**have['setting']).describe()}, "
            f"not {NetworkSetting(**want['setting']).describe()}"
        )
    names = {"batch_size": "batch size", "cells": "cells", "holdout": "held-out share"}
    for key in ("batch_size", "warmup", "repeats", "cells", "seed", "holdout"):
        if have[key] != want[key]:
            return f"it holds {names.get(key, key)} {have[key]}, not {want[key]}"
    return None


__all__ = [
    "LatencyTable",
    "build_latency_table",
    "device_info",
    "features",
    "fit_additive",
    "load_latency_table",
    "mape",
    "measure_latency",
    "measurement_difference",
    "predict_additive",
    "sample_cells",
    "spearman",
    "table_from_measurements",
]
