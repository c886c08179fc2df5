"""Evaluation of a surrogate on a task it did not see (:func:`evaluate_task`): Spearman and Kendall
over all architectures and within the top 10 %, negative log-likelihood and 90 % interval coverage,
zero-shot and after n random observations (several seeds, averaged), next to the baselines a
report compares it with (:func:`transfer_rank_scores`, :func:`plain_gp_predictions`). NLL and
coverage are in the held-out task's standardised units, whatever units the model predicts in."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.corpus import Corpus, CorpusTask
from grabnas.meta.features import task_targets
from grabnas.models.latent_surrogate import MetaLatentSurrogate
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.target_gp import is_target_adapted
from grabnas.models.value_maps import gaussian_nll, predict
from grabnas.seeding import child_seed

Z90 = 1.6448536269514722


def _rank_metrics(pred: np.ndarray, y: np.ndarray, top: np.ndarray) -> dict:
    from scipy.stats import kendalltau, spearmanr

    def safe(fn, a, b) -> float:
        if len(a) < 3:
            return float("nan")
        with warnings.catch_warnings():  # a constant prediction has no rank correlation: 0
            warnings.simplefilter("ignore")
            r = fn(a, b)[0]
        return float(r) if np.isfinite(r) else 0.0

    return {
        "spearman": safe(spearmanr, pred, y),
        "kendall": safe(kendalltau, pred, y),
        "spearman_top": safe(spearmanr, pred[top], y[top]),
        "kendall_top": safe(kendalltau, pred[top], y[top]),
    }


def transfer_rank_scores(corpus: Corpus, target: CorpusTask) -> np.ndarray | None:
    """Mean z-score over the main-fidelity tasks of other groups (the ``transfer-rank``
    baseline), aligned with ``target.index``; None when no such task covers the target's pool."""
    sums = np.zeros(len(target.index))
    counts = np.zeros(len(target.index))
    lookup = {int(i): k for k, i in enumerate(target.index)}
    for t in corpus.tasks:
        if t.group == target.group or t.fidelity is not None:
            continue
        z = t.standardized()
        for i, v in zip(t.index, z):
            k = lookup.get(int(i))
            if k is not None:
                sums[k] += v
                counts[k] += 1
    if counts.sum() == 0:
        return None
    out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.where(np.isnan(out), np.nanmin(out) - 1.0, out)


def plain_gp_predictions(onehot: np.ndarray, obs: np.ndarray, values: np.ndarray, seed: int) -> np.ndarray:
    """Posterior mean of a BoTorch ``SingleTaskGP`` on one-hot encodings fitted to ``obs``."""
    from botorch.exceptions import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.as_tensor(onehot, dtype=DTYPE)
    Y = torch.as_tensor(values[obs], dtype=DTYPE).unsqueeze(-1)
    model = SingleTaskGP(X[obs], Y)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        except ModelFittingError:
            pass
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(X), 4096):
            out.append(model.posterior(X[s : s + 4096]).mean.squeeze(-1))
    return torch.cat(out).numpy()


def evaluate_task(
    sur: MetaSurrogate,
    latents: torch.Tensor,
    task: CorpusTask,
    *,
    shots: Sequence[int] = (0, 5, 10, 20),
    seeds: int = 5,
    steps: int = 0,
    top_fraction: float = 0.1,
    instance_features: torch.Tensor | None = None,
    seed: int = 0,
    plain_gp: bool = False,
    onehot: np.ndarray | None = None,
    transfer: np.ndarray | None = None,
    fit_options: dict | None = None,
) -> dict:
    """Metrics of ``sur`` on ``task`` (which it must not have seen), per number of observations.

    Observations are drawn uniformly from the task's architectures (one draw per seed); every
    metric is over all the task's architectures (observed ones included) and averaged over
    seeds. With ``plain_gp`` (needs ``onehot``, aligned with ``task.index``) a BoTorch
    ``SingleTaskGP`` on one-hot encodings gets the same observations. ``transfer`` (scores
    aligned with ``task.index``) adds the zero-shot transfer-rank baseline. ``fit_options`` go to
    :class:`grabnas.models.latent_surrogate.MetaLatentSurrogate`, as in a search (e.g.
    ``widen_prior_strength``, ``task_prior_var``).
    """
    y = task.values
    ys = task_targets(task, sur.config.value_transform)
    top = y >= np.quantile(y, 1.0 - top_fraction)
    d = sur.task_embedding(instance_features, None).detach()
    Z = latents[torch.from_numpy(task.index)]
    X = sur.inputs(Z, d)
    options = dict(fit_options or {})
    adaptation = options.pop("adaptation", "meta")
    calibrate = bool(options.pop("calibrate", False))
    target_kernel = options.pop("target_kernel", "latent")
    target_scale = options.pop("target_scale", None)
    integrate = int(options.pop("integrate", 0))
    refit = bool(options.pop("finetune_refit", True))
    finetune_start = int(options.pop("finetune_start", 2))
    if adaptation == "target":  # only the prior's options apply
        finetune = steps if options.get("finetune_features") else 0
        finetune_lr = float(options.get("lr", 1e-3))
        options = {k: v for k, v in options.items() if k in ("task_prior_var", "variance_scale", "tasks")}
        options["finetune"] = finetune
        options["finetune_lr"] = finetune_lr
        options["finetune_refit"] = refit
        options["finetune_start"] = finetune_start
        options["calibrate"] = calibrate
        options["target_scale"] = target_scale
        options["integrate"] = integrate
    if target_kernel != "latent":  # the target kernel reads the one-hot encoding appended to z
        if onehot is None or adaptation != "target":
            raise GrabnasError(
                f"target_kernel={target_kernel} needs the task's one-hot encodings and adaptation=target"
            )
        Z = torch.cat([Z.to(DTYPE), torch.as_tensor(onehot, dtype=DTYPE)], -1)
        options["extra_dims"] = int(onehot.shape[1])
        options["onehot_kernel"] = "hamming" if target_kernel == "hamming" else "ard"
        X_extra = torch.cat([X, torch.as_tensor(onehot, dtype=DTYPE)], -1)
    yt = torch.as_tensor(ys, dtype=DTYPE)
    out: dict = {
        "task": task.name,
        "group": task.group,
        "num_archs": int(len(y)),
        "top_fraction": top_fraction,
        "shots": {},
    }
    if transfer is not None:
        out["transfer_rank"] = _rank_metrics(transfer, y, top)
    times = []
    for n in shots:
        if n > len(y) - 1:
            continue
        rows, gp_rows = [], []
        for s in range(seeds if n > 0 else 1):
            g = np.random.default_rng(child_seed(seed, "surrogate-eval", task.name, n, s))
            obs = g.choice(len(y), size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
            t0 = time.perf_counter()
            task_model = MetaLatentSurrogate(
                sur, d, adaptation=adaptation, seed=child_seed(seed, "adapt", n, s), steps=steps, **options
            )
            no_grad = steps == 0 and adaptation == "meta"  # the target-adapted GP fits by gradients
            with torch.no_grad() if no_grad else contextlib.nullcontext():
                fitted = task_model.fit(Z[obs], torch.as_tensor(y[obs], dtype=DTYPE))
            model = fitted.gp
            reads_extra = target_kernel != "latent" and is_target_adapted(model)
            mu, var = predict(model, X_extra if reads_extra else X, observation_noise=True)
            times.append(time.perf_counter() - t0)
            target = yt
            if model.units == "observed":  # raw units -> the task's standardised units
                mu, var = _standardize_pred(mu, var, task.mean, task.std)
            elif model.units == "observation-scores":  # the task's values in the model's own units
                target = model.transform_values(torch.as_tensor(y, dtype=DTYPE))
            sd = var.clamp_min(1e-12).sqrt()
            row = _rank_metrics(mu.numpy(), y, top)
            row["nll"] = float(gaussian_nll(mu, var, target).mean())
            row["coverage90"] = float(((target - mu).abs() <= Z90 * sd).double().mean())
            rows.append(row)
            if plain_gp and n >= 2 and onehot is not None:
                pred = plain_gp_predictions(onehot, obs, y, child_seed(seed, "plain-gp", n, s) % 2**31)
                gp_rows.append(_rank_metrics(pred, y, top))
        out["shots"][str(n)] = _mean_rows(rows)
        if gp_rows:
            out["shots"][str(n)]["plain_gp"] = _mean_rows(gp_rows)
    out["seconds_per_fit_predict"] = float(np.mean(times)) if times else float("nan")
    return out


def _standardize_pred(
    mu: torch.Tensor, var: torch.Tensor, mean: float, std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    return (mu - mean) / std, var / std**2


def _mean_rows(rows: list[dict]) -> dict:
    """Each metric's mean over the draws, their number, and the top-10 % Spearman of every draw
    (``spearman_top_draws``: its spread is what a gain over the zero-shot value is judged by)."""
    keys = rows[0].keys()
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys} | {"seeds": len(rows)}
    return out | {"spearman_top_draws": [float(r["spearman_top"]) for r in rows]}


__all__ = ["Z90", "evaluate_task", "plain_gp_predictions", "transfer_rank_scores"]
