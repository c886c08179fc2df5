"""Calibration of a meta-trained surrogate's variance for a task it never saw
(:func:`calibrate_new_task_variance`): each training task is predicted as a new task would be,
left out (with per-task offsets) or in-sample (without), and the factors that make its 90 %
intervals cover 90 % become :attr:`grabnas.models.surrogate_config.SurrogateConfig.new_task_variance_scale`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from grabnas.meta.corpus import Corpus
from grabnas.meta.features import task_targets
from grabnas.meta.surrogate_eval import Z90, _standardize_pred
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import predict
from grabnas.seeding import child_seed


def calibrate_new_task_variance(
    sur: MetaSurrogate,
    corpus: Corpus,
    latents: torch.Tensor,
    shots: Sequence[int] = (0, 5, 10, 20),
    seeds: int = 3,
    max_archs: int = 20000,
    seed: int = 0,
) -> dict | None:
    """Fit :attr:`SurrogateConfig.new_task_variance_scale` on the meta-training tasks.

    The meta-learned variances fit the training tasks' residuals from their own learned means,
    smaller than those of a task the surrogate never saw. Each main-fidelity training task ``g``
    without data is predicted as a new task would be, zero-shot and after ``n`` random
    observations of ``g`` (``shots``; ``seeds`` draws), and ``g``'s standardised values give
    z-scores ``(y - mu) / sigma`` (predictive variance with noise; at most ``max_archs``
    architectures per task). The factor of ``g`` at ``n`` is ``(q90(|z|) / 1.645)^2``, the
    variance scale under which its 90 % interval covers 90 %. How ``g`` is predicted, and how
    the mean factor over the K tasks becomes a new task's, depends on the surrogate:

    * **leave-one-out** (per-task offsets, ``task_offsets``): ``g``'s model is built from the
      *other* tasks (their embeddings' centre and their task term). A left-out task is
      predicted from the centre of K - 1 tasks, a new task from that of K: if tasks are
      exchangeable, the part of the variance between tasks is ``(1 + 1/(K-1)) tau^2`` for the
      first and ``(1 + 1/K) tau^2`` for the second, so the excess of the mean factor over 1 is
      multiplied by their ratio ``1 - 1/K^2`` (3/4 for K = 2).
    * **in-sample** (no offsets: every task without data has the same embedding, so the learned
      mean is the tasks' average): ``g`` is predicted by the surrogate as it is, which saw it.
      Its residual from the average of K tasks that include it has between-task variance
      ``(1 - 1/K) tau^2``, a new task's ``(1 + 1/K) tau^2``; the mean factor is multiplied by
      their ratio ``(K + 1) / (K - 1)``.

    Needs at least two such tasks; returns None otherwise (the config stays as it is). On
    success sets ``sur.config`` to the table ``((n, factor), ...)`` and returns ``{"method":
    "leave-one-out" | "in-sample", "scale": [[n, factor], ...], "tasks": {name: {n: {"factor",
    "coverage90_uncalibrated"}}}}``; ``latents`` are ``(len(space), latent_dim)`` (what the
    surrogate reads).
    """
    offsets = sur.task_offset_embeddings()
    eligible = [t for t in corpus.tasks if t.fidelity is None and t.data is None]
    leave_one_out = bool(offsets)
    tasks = [t for t in eligible if t.name in offsets] if leave_one_out else eligible
    if len(tasks) < 2:
        return None
    k = len(tasks)
    per_task: dict[str, dict] = {}
    for task in tasks:
        if leave_one_out:
            rest: list[str] | None = [t.name for t in tasks if t.name != task.name]
            d = torch.stack([offsets[t] for t in rest]).mean(0)
        else:
            rest, d = None, sur.task_embedding()
        rng = np.random.default_rng(child_seed(seed, "new-task-calibration", task.name))
        pos = np.arange(len(task))
        if len(pos) > max_archs:
            pos = np.sort(rng.choice(len(pos), size=max_archs, replace=False))
        y = torch.as_tensor(task_targets(task, sur.config.value_transform)[pos], dtype=DTYPE)
        raw = torch.as_tensor(task.values[pos], dtype=DTYPE)
        X = sur.inputs(latents[torch.from_numpy(task.index[pos])], d)
        per_task[task.name] = {}
        for n in shots:
            if n > len(pos) - 1:
                continue
            factors, covered = [], []
            for _ in range(seeds if n >= 2 else 1):
                obs = rng.choice(len(pos), size=n, replace=False) if n >= 2 else np.zeros(0, dtype=np.int64)
                with torch.no_grad():
                    gp = sur.fit(X[obs], raw[obs], variance_scale=1.0, tasks=rest)
                    mu, var = predict(gp, X, observation_noise=True)
                if gp.units == "observed":
                    mu, var = _standardize_pred(mu, var, task.mean, task.std)
                z = ((y - mu) / var.clamp_min(1e-12).sqrt()).abs()
                factors.append(float((torch.quantile(z, 0.9) / Z90) ** 2))
                covered.append(float((z <= Z90).double().mean()))
            per_task[task.name][int(n)] = {
                "factor": float(np.mean(factors)),
                "coverage90_uncalibrated": float(np.mean(covered)),
            }
    table = []
    for n in sorted({n for r in per_task.values() for n in r}):
        mean = float(np.mean([r[n]["factor"] for r in per_task.values() if n in r]))
        factor = 1.0 + (mean - 1.0) * (1.0 - 1.0 / k**2) if leave_one_out else mean * (k + 1) / (k - 1)
        table.append((n, factor))
    sur.config = dataclasses.replace(sur.config, new_task_variance_scale=tuple(table))
    return {
        "method": "leave-one-out" if leave_one_out else "in-sample",
        "scale": [list(p) for p in table],
        "tasks": per_task,
    }


__all__ = ["calibrate_new_task_variance"]
