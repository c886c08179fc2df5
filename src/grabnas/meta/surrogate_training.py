"""Meta-training, evaluation and checkpoints of the deep-kernel GP surrogate.

* :func:`meta_train` maximises the exact marginal likelihood of batches drawn from one task at a
  time (Adam, cosine learning rate), each task standardised with its own mean/std. The graph
  encoder is frozen by default (latents = VAE posterior means of every member, computed once);
  with ``finetune_encoder`` it is trained too, with its reconstruction loss kept. Early stopping
  and the best state follow a meta-validation score (see :class:`MetaTrainConfig`).
* :func:`evaluate_task` measures a surrogate on a task it did not see: Spearman and Kendall
  over all architectures and within the top 10 %, negative log-likelihood and 90 % interval
  coverage, zero-shot and after n random observations (several seeds, averaged).
* :func:`save_surrogate` / :func:`load_surrogate`: a ``.pt`` state dict and a ``.json`` card (what
  tasks meta-training saw, which were held out, config, metrics, the VAE it used).
  Shipped checkpoints load by name (``nb201-no-cifar10``) and :func:`shipped_surrogate_for`
  finds the one that held out a given dataset.

Units in reports: NLL and coverage are computed in the held-out task's standardised units
(its values' mean and std), whatever units the model predicts in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.resources
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grabnas import __version__
from grabnas.errors import GrabnasError
from grabnas.meta.checkpoint_files import checkpoint_paths, checkpoint_stem, read_card, shipped_root
from grabnas.meta.corpus import Corpus, CorpusTask
from grabnas.models.surrogate import DTYPE, MetaSurrogate, SurrogateConfig, gaussian_nll, predict, rank_gauss
from grabnas.seeding import child_seed

CARD_FORMAT = "grabnas-surrogate/1"
CHECKPOINT_PREFIX = "surrogate-"
Z90 = 1.6448536269514722


# -- latents -----------------------------------------------------------------------------------
def module_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's weights (names and values of its state dict)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def vae_fingerprint(vae) -> str:
    """A short hash of a VAE's weights (a surrogate is only valid for the latents it saw)."""
    return module_fingerprint(vae.model)


@torch.no_grad()
def encode_members(vae, chunk: int = 2048) -> torch.Tensor:
    """``(len(space), latent_dim)`` float64 posterior means of every member of the VAE's space."""
    members = vae.space.members()
    was_training = vae.model.training
    vae.model.eval()
    try:
        out = [vae.encode_archs(members[i : i + chunk]) for i in range(0, len(members), chunk)]
    finally:
        vae.model.train(was_training)
    return torch.cat(out).to(DTYPE)


def task_targets(task: CorpusTask, value_transform: str) -> np.ndarray:
    """The task's values in its standardised units: normal scores (``rank-gauss``) or
    ``(y - mean) / std`` (``standardize``) over all its records."""
    if value_transform == "standardize":
        return task.standardized()
    return rank_gauss(torch.as_tensor(task.values)).numpy()


# -- task data (images -> instance features) -------------------------------------------------------
def task_instance_features(
    spec: str, extractor: Callable[[torch.Tensor], torch.Tensor], k: int = 20, samples: int = 1, seed: int = 0
) -> torch.Tensor:
    """``(samples, K, k, F)`` instance features of a task's training images (k per class).

    ``spec`` is a :class:`grabnas.data.TaskSpec` name (``digits[0,3,7]@12``) or a dataset spec.
    """
    from grabnas.data import TaskSpec, load_dataset, split_dataset

    try:
        ds = TaskSpec.parse(spec).split().train
    except GrabnasError:
        ds = split_dataset(load_dataset(spec), seed=0).train
    return dataset_instance_features(ds, extractor, k, samples, seed)


def dataset_instance_features(
    ds, extractor: Callable[[torch.Tensor], torch.Tensor], k: int = 20, samples: int = 1, seed: int = 0
) -> torch.Tensor:
    """``(samples, K, k, F)`` instance features of the images of ``ds`` (an
    :class:`grabnas.data.ImageDataset`, normally a task's train split), k per class: the same
    draws as :func:`task_instance_features`, which meta-training uses."""
    from grabnas.data import sample_per_class

    out = []
    with torch.no_grad():
        for s in range(samples):
            imgs = sample_per_class(ds, k, child_seed(seed, "instances", s))  # (K, k, C, H, W)
            kc, kk = imgs.shape[:2]
            feats = extractor(imgs.reshape(kc * kk, *imgs.shape[2:]))
            out.append(feats.reshape(kc, kk, -1))
    return torch.stack(out).to(DTYPE)


# -- meta-training -------------------------------------------------------------------------------
@dataclass
class MetaTrainConfig:
    """Optimisation settings of :func:`meta_train`.

    Meta-validation: ``val_tasks`` when given; otherwise, with at least ``min_groups_for_val_tasks``
    groups, ``val_group_fraction`` of the groups (at least one) are meta-validation tasks;
    otherwise ``val_fraction`` of each task's architectures are held out and the score is
    measured on them (few groups: every group is needed for training). The score is the mean
    predictive NLL (standardised units) of validation architectures given ``val_context``
    random observations of the same task (and zero-shot), lower is better.

    ``task_weighting``: how often each task is drawn for a step (and its weight in the
    validation score): ``uniform`` (default), or ``sqrt`` of its number of records, for corpora
    that mix tasks of very different sizes (a 15,625-record table next to 30-record image tasks,
    which uniform draws would overfit long before the table's tasks are learned).

    ``task_offsets``: give each training task a learned offset of its embedding ``d`` of its
    own (:attr:`grabnas.models.surrogate.SurrogateConfig.task_offsets`), so the surrogate models
    each task's function rather than only their average, and a search can infer which of them
    a new task resembles from its observations.

    ``top_batch_fraction``: the share of each batch drawn from the best ``top_quantile`` of the
    task's training records (its view: without the meta-validation architectures under
    ``val_fraction``; the rest uniformly from the others). 0 (default): uniform batches, whose
    likelihood is dominated by the coarse good-versus-bad structure of a task; a search lives
    among the best cells, so a positive share makes the learned features resolve the order
    among them too.

    ``calibrate_variance``: fit the variance scale of a new task after training, by leaving each
    training task out (with per-task offsets) or from the training tasks' own residuals
    (without) (:func:`calibrate_new_task_variance`).
    """

    steps: int = 10000
    batch_size: int = 256
    lr: float = 2e-3
    lr_final_factor: float = 0.05
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    eval_every: int = 500
    patience: int = 6
    val_tasks: tuple[str, ...] | None = None
    val_fraction: float = 0.1
    val_group_fraction: float = 0.15
    min_groups_for_val_tasks: int = 5
    val_queries: int = 1000
    val_context: int = 10
    seed: int = 0
    finetune_encoder: bool = False
    encoder_lr: float = 1e-4
    recon_weight: float = 1.0
    task_weighting: str = "uniform"
    instances_per_class: int = 20
    instance_samples: int = 4
    max_minutes: float | None = None
    task_offsets: bool = False
    calibrate_variance: bool = True
    top_batch_fraction: float = 0.0
    top_quantile: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["val_tasks"] = list(self.val_tasks) if self.val_tasks is not None else None
        return d


@dataclass
class MetaTrainResult:
    surrogate: MetaSurrogate
    history: list[dict] = field(default_factory=list)
    best_step: int = 0
    train_seconds: float = 0.0
    train_tasks: list[str] = field(default_factory=list)
    val_tasks: list[str] = field(default_factory=list)
    val_split: str = ""
    vae_state: dict | None = None
    #: what :func:`calibrate_new_task_variance` found (None: not calibrated)
    calibration: dict | None = None


@dataclass
class _View:
    """Records of one task used for training or validation."""

    task: CorpusTask
    pos: np.ndarray  # positions into task.index / task.values
    feats: torch.Tensor | None  # (S, K, k, F) instance features or None
    targets: np.ndarray | None = None  # standardised values of the whole task

    def split_top(self, quantile: float) -> tuple[np.ndarray, np.ndarray]:
        """``(top, rest)``: the view's positions among its best ``quantile`` of values, and the others."""
        vals = self.targets[self.pos]
        k = max(1, int(round(quantile * len(self.pos))))
        order = np.argsort(-vals, kind="stable")
        return np.sort(self.pos[order[:k]]), np.sort(self.pos[order[k:]])


def _draw_batch(view: _View, n: int, top_fraction: float, split: tuple[np.ndarray, np.ndarray] | None,
                rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct positions of ``view`` (needs ``n <= len(view.pos)``): ``round(top_fraction * n)``
    of them from its top split, capped at the split's size, the rest from the other split (more from
    the top when the other split is short)."""
    if split is None or top_fraction <= 0:
        return view.pos[rng.choice(len(view.pos), size=n, replace=False)]
    top, rest = split
    n_top = min(len(top), int(round(top_fraction * n)))
    n_rest = min(len(rest), n - n_top)
    n_top = n - n_rest
    return np.concatenate([rng.choice(top, size=n_top, replace=False), rng.choice(rest, size=n_rest, replace=False)])


def _split_views(corpus: Corpus, tc: MetaTrainConfig, rng: np.random.Generator) -> tuple[list[_View], list[_View], str]:
    groups = corpus.groups
    if tc.val_tasks:
        val_names = set(tc.val_tasks)
        unknown = val_names - set(corpus.task_names)
        if unknown:
            raise GrabnasError(f"unknown meta-validation task {sorted(unknown)[0]!r}; expected tasks of the corpus")
        val_groups = {corpus.group_of(t) for t in val_names}
        mode = "tasks"
    elif len(groups) >= tc.min_groups_for_val_tasks:
        k = max(1, int(round(tc.val_group_fraction * len(groups))))
        val_groups = set(rng.choice(groups, size=k, replace=False).tolist())
        val_names = {t.name for t in corpus.tasks if t.group in val_groups}
        mode = "tasks"
    else:
        val_groups, val_names, mode = set(), set(), "architectures"
    train, val = [], []
    for t in corpus.tasks:
        pos = np.arange(len(t))
        if t.group in val_groups:
            if t.name in val_names and t.fidelity is None:
                val.append(_View(t, pos, None))
            continue
        if mode == "architectures" and len(t) >= 20:
            perm = rng.permutation(len(t))
            n_val = max(1, int(round(tc.val_fraction * len(t))))
            val.append(_View(t, np.sort(perm[:n_val]), None))
            train.append(_View(t, np.sort(perm[n_val:]), None))
        else:
            train.append(_View(t, pos, None))
    if not train:
        raise GrabnasError("meta-training needs at least one training task outside the meta-validation tasks")
    desc = (
        f"held-out tasks ({', '.join(sorted(val_names))})"
        if mode == "tasks"
        else f"{tc.val_fraction:.0%} of each task's architectures"
    )
    return train, val, desc


def _default_config(corpus: Corpus, latent_dim: int, with_data: bool, **overrides) -> SurrogateConfig:
    base = dict(latent_dim=latent_dim, fidelities=tuple(corpus.fidelities), dataset_encoder=with_data)
    base.update(overrides)
    return SurrogateConfig(**base)


def meta_train(
    corpus: Corpus,
    vae,
    config: SurrogateConfig | None = None,
    train_config: MetaTrainConfig | None = None,
    *,
    latents: torch.Tensor | None = None,
    extractor: Callable | str | None = "auto",
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
) -> MetaTrainResult:
    """Meta-train a surrogate on ``corpus`` with the latents of ``vae``.

    ``latents`` (``(len(space), latent_dim)``) skips encoding when precomputed (frozen encoder
    only). ``extractor`` turns images into instance features for tasks with data (``"auto"``:
    the shipped digits CNN when the corpus has such tasks; None: treat every task as one
    without data).
    """
    tc = train_config or MetaTrainConfig()
    if corpus.space.name != vae.space.name:
        raise GrabnasError(f"the corpus is of the {corpus.space.name} space but the VAE of the {vae.space.name} space")
    if tc.steps < 1 or tc.batch_size < 2:
        raise GrabnasError(f"meta-training needs steps >= 1 and batch size >= 2, got {tc.steps} and {tc.batch_size}")
    if not 0.0 <= tc.top_batch_fraction <= 1.0 or not 0.0 < tc.top_quantile < 1.0:
        raise GrabnasError(
            f"meta-training needs a top batch fraction in [0, 1] and a top quantile in (0, 1), "
            f"got {tc.top_batch_fraction} and {tc.top_quantile}"
        )
    rng = np.random.default_rng(child_seed(tc.seed, "surrogate-meta-train"))
    torch_gen = torch.Generator().manual_seed(child_seed(tc.seed, "surrogate-init"))
    has_data = any(t.data is not None for t in corpus.tasks) and extractor is not None
    if has_data and (extractor == "auto" or isinstance(extractor, str)):
        from grabnas.models.feature_extractor import load_feature_extractor

        extractor = load_feature_extractor("digits-cnn" if extractor == "auto" else extractor)
    train_views, val_views, val_desc = _split_views(corpus, tc, rng)
    cfg = config or _default_config(corpus, vae.latent_dim, has_data)
    if tc.task_offsets and not cfg.task_offsets:  # one learned offset per training task
        cfg = dataclasses.replace(cfg, task_offsets=tuple(dict.fromkeys(v.task.name for v in train_views)))
    if cfg.latent_dim != vae.latent_dim:
        raise GrabnasError(f"surrogate latent_dim {cfg.latent_dim} does not match the VAE's {vae.latent_dim}")
    missing_fid = set(corpus.fidelities) - set(cfg.fidelities)
    if missing_fid:
        raise GrabnasError(f"the surrogate config lacks fidelity {sorted(missing_fid)[0]!r} of the corpus")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(child_seed(tc.seed, "surrogate-init"))
        sur = MetaSurrogate(cfg)
    del torch_gen
    for v in train_views + val_views:
        v.targets = task_targets(v.task, cfg.value_transform)
    if has_data and cfg.dataset_encoder:
        feats = {}
        for v in train_views + val_views:
            if v.task.data is not None and v.task.name not in feats:
                feats[v.task.name] = task_instance_features(
                    v.task.data, extractor, tc.instances_per_class, tc.instance_samples, tc.seed
                )
            v.feats = feats.get(v.task.name)

    # latents: frozen (precomputed) or fine-tuned (encoder in the loop, reconstruction kept)
    vae_model = vae.model
    if tc.finetune_encoder:
        import copy

        from grabnas.models.graph_vae import DAGBatch

        vae_model = copy.deepcopy(vae.model)  # the caller's VAE stays as it is; the tuned state is returned
        dag_batch = DAGBatch.from_dags(vae.to_dags(vae.space.members()), vae_model.config)
        vae_model.train()
        Z = None
    else:
        Z = latents if latents is not None else encode_members(vae)
        Z = Z.to(DTYPE)

    def latents_of(idx: np.ndarray, grad: bool) -> torch.Tensor:
        if Z is not None:
            return Z[torch.from_numpy(idx)]
        with torch.set_grad_enabled(grad):
            mu, _ = vae_model.encode(dag_batch[torch.from_numpy(idx)])
        return mu.to(DTYPE)

    gp = sur.training_gp()
    import gpytorch

    mll = gpytorch.mlls.ExactMarginalLogLikelihood(sur.likelihood, gp)
    net_params = [p for n, p in sur.named_parameters() if not n.startswith(("covar_module", "likelihood"))]
    hyper_params = [*sur.covar_module.parameters(), *sur.likelihood.parameters()]
    groups = [
        {"params": net_params, "weight_decay": tc.weight_decay},
        {"params": hyper_params, "weight_decay": 0.0},
    ]
    if tc.finetune_encoder:
        groups.append({"params": list(vae_model.parameters()), "weight_decay": 0.0, "lr": tc.encoder_lr})
    opt = torch.optim.AdamW(groups, lr=tc.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.steps, eta_min=tc.lr * tc.lr_final_factor)
    noise_gen = torch.Generator().manual_seed(child_seed(tc.seed, "surrogate-vae-noise"))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, desc="meta-train", unit="step", dynamic_ncols=True)
    history: list[dict] = []
    best = (math.inf, 0, _state_copy(sur), _state_copy(vae_model) if tc.finetune_encoder else None)
    bad_evals = 0
    start = time.perf_counter()
    running = []
    weights = _task_weights([len(v.pos) for v in train_views], tc.task_weighting)
    splits = [v.split_top(tc.top_quantile) if tc.top_batch_fraction > 0 else None for v in train_views]
    step = 0
    try:
        for step in range(1, tc.steps + 1):
            which = int(rng.choice(len(train_views), p=weights))
            view = train_views[which]
            n = min(tc.batch_size, len(view.pos))
            if n < 2:
                continue
            pos = _draw_batch(view, n, tc.top_batch_fraction, splits[which], rng)
            idx = view.task.index[pos]
            y = torch.as_tensor(view.targets[pos], dtype=DTYPE)
            z = latents_of(idx, grad=True)
            feats = None if view.feats is None else view.feats[int(rng.integers(view.feats.shape[0]))]
            d = sur.task_embedding(feats, view.task.fidelity, task=view.task.name)
            X = sur.inputs(z, d)
            gp.set_train_data(X, y, strict=False)
            gp.train()
            opt.zero_grad()
            with gpytorch.settings.cholesky_jitter(1e-5):
                loss = -mll(gp(X), y)
            total = loss
            if tc.finetune_encoder:
                total = total + tc.recon_weight * vae_model.loss(dag_batch[torch.from_numpy(idx)], noise_gen).total
            total.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], tc.grad_clip)
            opt.step()
            sched.step()
            running.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
            last = step == tc.steps
            if step % tc.eval_every == 0 or last:
                record = {
                    "step": step,
                    "train_nll": float(np.mean(running)),
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - start, 2),
                    **_hyper_summary(sur),
                }
                running = []
                if val_views:
                    record.update(_validate(sur, val_views, latents_of, tc))
                    score = record["val_score"]
                else:
                    score = record["train_nll"]
                history.append(record)
                if log is not None:
                    log(record)
                if bar is not None:
                    bar.set_postfix(
                        train=f"{record['train_nll']:.3f}", val=f"{record.get('val_score', float('nan')):.3f}"
                    )
                if score < best[0] - 1e-4:
                    best = (score, step, _state_copy(sur), _state_copy(vae_model) if tc.finetune_encoder else None)
                    bad_evals = 0
                else:
                    bad_evals += 1
                    if bad_evals >= tc.patience:
                        break
            if tc.max_minutes is not None and time.perf_counter() - start > 60 * tc.max_minutes:
                break
    finally:
        if bar is not None:
            bar.close()
    sur.load_state_dict(best[2])
    if tc.finetune_encoder and best[3] is not None:
        vae_model.load_state_dict(best[3])
        vae_model.eval()
    sur.eval()
    if tc.finetune_encoder:
        sur.vae_state = _state_copy(vae_model)
    calibration = None
    if tc.calibrate_variance:
        with torch.no_grad():
            all_z = Z if Z is not None else vae_model.encode(dag_batch)[0].to(DTYPE)
            calibration = calibrate_new_task_variance(sur, corpus, all_z, seed=tc.seed)
    return MetaTrainResult(
        calibration=calibration,
        surrogate=sur,
        history=history,
        best_step=best[1],
        train_seconds=time.perf_counter() - start,
        train_tasks=[v.task.name for v in train_views],
        val_tasks=sorted({v.task.name for v in val_views}),
        val_split=val_desc,
        vae_state=_state_copy(vae_model) if tc.finetune_encoder else None,
    )


def _state_copy(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _hyper_summary(sur: MetaSurrogate) -> dict:
    k = sur.covar_module
    return {
        "outputscale": float(k.outputscale.detach()),
        "lengthscale": float(k.base_kernel.lengthscale.detach().mean()),
        "noise": float(sur.likelihood.noise.detach().mean()),
    }


@torch.no_grad()
def _validate(sur: MetaSurrogate, views: list[_View], latents_of, tc: MetaTrainConfig) -> dict:
    """Mean predictive NLL (standardised units) of validation architectures, zero-shot and given
    ``val_context`` observations of the same task; also the mean Spearman."""
    from scipy.stats import spearmanr

    nlls, rhos, wts = [], [], []
    view_weights = _task_weights([len(v.task) for v in views], tc.task_weighting)
    for vi, v in enumerate(views):
        g = np.random.default_rng(child_seed(tc.seed, "surrogate-val", vi))
        pos = v.pos if len(v.pos) <= tc.val_queries else np.sort(g.choice(v.pos, tc.val_queries, replace=False))
        y = v.targets[pos]
        d = sur.task_embedding(None if v.feats is None else v.feats[0], v.task.fidelity, task=v.task.name)
        X = sur.inputs(latents_of(v.task.index[pos], grad=False), d)
        yt = torch.as_tensor(y, dtype=DTYPE)
        for n_ctx in (0, tc.val_context):
            if n_ctx >= len(pos) - 1:
                continue
            ctx = g.choice(len(pos), n_ctx, replace=False) if n_ctx else np.zeros(0, dtype=np.int64)
            # within-task fit: no task term (the view's task is a known one)
            model = (
                sur.fit(X[ctx], yt[ctx], task_prior_var=0.0, variance_scale=1.0)
                if n_ctx >= 2
                else sur.prior(task_prior_var=0.0, variance_scale=1.0)
            )
            mu, var = predict(model, X, observation_noise=True)  # the context is in task units already
            nlls.append(float(gaussian_nll(mu, var, yt).mean()))
            wts.append(view_weights[vi])
            if len(y) > 2:
                rho = spearmanr(mu.numpy(), y)[0]
                rhos.append(0.0 if not np.isfinite(rho) else float(rho))
    return {
        "val_score": float(np.average(nlls, weights=wts)),
        "val_spearman": float(np.mean(rhos)) if rhos else float("nan"),
    }


def _task_weights(sizes: Sequence[int], how: str) -> np.ndarray:
    if how not in ("uniform", "sqrt"):
        raise GrabnasError(f"unknown task weighting {how!r}; expected uniform or sqrt")
    w = np.ones(len(sizes)) if how == "uniform" else np.sqrt(np.asarray(sizes, dtype=np.float64))
    return w / w.sum()


# -- evaluation ------------------------------------------------------------------------------------
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
    :class:`grabnas.search.grabnas.MetaLatentSurrogate`, as in a search (e.g.
    ``widen_prior_strength``, ``task_prior_var``).
    """
    from grabnas.search.grabnas import MetaLatentSurrogate

    y = task.values
    ys = task_targets(task, sur.config.value_transform)
    top = y >= np.quantile(y, 1.0 - top_fraction)
    d = sur.task_embedding(instance_features, None).detach()
    Z = latents[torch.from_numpy(task.index)]
    X = sur.inputs(Z, d)
    options = dict(fit_options or {})
    adaptation = options.pop("adaptation", "meta")
    if adaptation == "target":  # only the prior's options apply
        options = {k: v for k, v in options.items() if k in ("task_prior_var", "variance_scale", "tasks")}
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
            mu, var = predict(model, X, observation_noise=True)
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


def _standardize_pred(
    mu: torch.Tensor, var: torch.Tensor, mean: float, std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    return (mu - mean) / std, var / std**2


def _mean_rows(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {k: float(np.nanmean([r[k] for r in rows])) for k in keys} | {"seeds": len(rows)}


# -- checkpoints -------------------------------------------------------------------------------------
def save_surrogate(
    sur: MetaSurrogate, path: str | Path, *, vae_state: dict | None = None, **card_fields: object
) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (float32 state dict; a fine-tuned VAE's state under ``vae``) and
    ``<stem>.json`` (the card: ``sur.card`` + ``card_fields`` + config and versions)."""
    stem = checkpoint_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "format": CARD_FORMAT,
        **sur.card,
        **card_fields,
        "config": sur.config.to_dict(),
        "num_parameters": sur.num_parameters(),
        "torch_version": torch.__version__,
        "grabnas_version": __version__,
    }
    state = {"surrogate": {k: v.detach().cpu().float() for k, v in sur.state_dict().items()}}
    if vae_state is not None:
        state["vae"] = {k: v.detach().cpu() for k, v in vae_state.items()}
        card["vae_finetuned"] = True
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    torch.save(state, pt)
    js.write_text(json.dumps(card, indent=2) + "\n")
    sur.card = card
    return pt, js


def shipped_surrogate_names() -> list[str]:
    """Names of the surrogate checkpoints shipped with the package (``nb201-no-cifar10``, ...)."""
    root = shipped_root()
    names = []
    for entry in root.iterdir():
        n = entry.name
        if n.startswith(CHECKPOINT_PREFIX) and n.endswith(".pt") and not n.startswith(CHECKPOINT_PREFIX + "feature-"):
            names.append(n[len(CHECKPOINT_PREFIX) : -3])
    return sorted(names)


def load_surrogate(path_or_name: str | Path, vae=None, *, check_vae: bool = True) -> MetaSurrogate:
    """A surrogate from a shipped name (``nb201-no-cifar10``; see :func:`shipped_surrogate_names`)
    or a ``.pt``/``.json`` path. With ``vae``, warn when its weights differ from those whose
    latents the surrogate was meta-trained on (its predictions would then be meaningless)."""
    name = str(path_or_name)
    with contextlib.ExitStack() as stack:
        stem_name = name if name.startswith(CHECKPOINT_PREFIX) else CHECKPOINT_PREFIX + name
        shipped = (
            "/" not in name
            and "\\" not in name
            and not name.endswith((".pt", ".json"))
            and (shipped_root() / f"{stem_name}.pt").is_file()
        )
        pt, js = checkpoint_paths(stack, stem_name if shipped else None, path_or_name)
        if not pt.is_file() or not js.is_file():
            shipped = ", ".join(shipped_surrogate_names()) or "none"
            raise GrabnasError(
                f"no surrogate checkpoint {name!r}; expected a shipped name ({shipped}) or a .pt file next to its .json card"
            )
        card = read_card(js, "surrogate", CARD_FORMAT)
        try:
            cfg = SurrogateConfig.from_dict(card["config"])
            state = torch.load(pt, map_location="cpu", weights_only=True)
            sur = MetaSurrogate(cfg, card)
            weights = dict(state["surrogate"])
            # checkpoints from before task offsets existed have none (an empty parameter)
            weights.setdefault("task_encoder.task_offsets", sur.task_encoder.task_offsets.detach().clone())
            sur.load_state_dict(weights)  # copied into each parameter's own dtype
        except GrabnasError:
            raise
        except Exception as e:  # damaged file or mismatched config
            raise GrabnasError(
                f"surrogate checkpoint {pt} cannot be loaded: {' '.join(str(e).split())[:200]}"
            ) from None
        sur.vae_state = state.get("vae")
    sur.eval()
    if vae is not None and check_vae and sur.vae_state is None:
        want = card.get("vae", {}).get("fingerprint")
        if want and want != vae_fingerprint(vae):
            warnings.warn(
                f"surrogate {name!r} was meta-trained on the latents of another VAE (fingerprint {want}, this one "
                f"{vae_fingerprint(vae)}); retrain it with `grabnas meta-train` for meaningful predictions",
                stacklevel=2,
            )
    return sur


def surrogate_vae(sur: MetaSurrogate, vae=None):
    """The VAE whose latents ``sur`` reads: ``vae`` (default: the checkpoint its card names),
    or a copy of it with the fine-tuned encoder state the surrogate carries."""
    import copy

    from grabnas.meta.vae_training import load_checkpoint

    if vae is None:
        info = sur.card.get("vae", {})
        vae = load_checkpoint(info.get("checkpoint", sur.card.get("space", "nb201")), space=sur.card.get("space"))
    if getattr(sur, "vae_state", None) is not None:
        vae = copy.deepcopy(vae)
        vae.model.load_state_dict(sur.vae_state)
        vae.model.eval()
    return vae


def latents_for(sur: MetaSurrogate, vae, latents: torch.Tensor | None = None) -> torch.Tensor:
    """The member latents ``sur`` reads: ``latents`` (of ``vae``) unless the surrogate carries a
    fine-tuned encoder, whose latents are computed."""
    if getattr(sur, "vae_state", None) is None:
        return latents if latents is not None else encode_members(vae)
    return encode_members(surrogate_vae(sur, vae))


def shipped_surrogate_for(benchmark: str, held_out_group: str | None = None) -> str | None:
    """The shipped checkpoint name meta-trained on ``benchmark`` with ``held_out_group`` held out
    (for a search on that dataset of the benchmark), or, with ``held_out_group=None``, the one
    that held nothing out (for a search on a task outside the benchmark, e.g. ``nb201-all``)."""
    for name in shipped_surrogate_names():
        with importlib.resources.as_file(shipped_root() / f"{CHECKPOINT_PREFIX}{name}.json") as js:
            try:
                card = json.loads(Path(js).read_text())
            except (OSError, json.JSONDecodeError):
                continue
        if card.get("benchmark") != benchmark:
            continue
        held = card.get("held_out_groups", [])
        if (held_out_group is None and not held) or (held_out_group is not None and held_out_group in held):
            return name
    return None


__all__ = [
    "MetaTrainConfig",
    "MetaTrainResult",
    "encode_members",
    "evaluate_task",
    "load_surrogate",
    "meta_train",
    "plain_gp_predictions",
    "save_surrogate",
    "shipped_surrogate_for",
    "shipped_surrogate_names",
    "surrogate_vae",
    "dataset_instance_features",
    "task_instance_features",
    "transfer_rank_scores",
    "vae_fingerprint",
]


# -- leave-one-group-out ---------------------------------------------------------------------------
def card_fields(
    corpus: Corpus,
    result: MetaTrainResult,
    vae,
    *,
    benchmark: str,
    corpus_spec: str,
    held_out_groups: Sequence[str],
    train_config: MetaTrainConfig,
    vae_name: str,
) -> dict:
    """The JSON card of a meta-trained surrogate (what it saw, what it held out, how it trained)."""
    return {
        "space": corpus.space.name,
        "benchmark": benchmark,
        "corpus": corpus_spec,
        "train_tasks": result.train_tasks,
        "groups_seen": sorted({corpus.group_of(t) for t in corpus.task_names}),
        "held_out_groups": list(held_out_groups),
        "meta_validation": result.val_split,
        "meta_validation_tasks": result.val_tasks,
        "vae": {"checkpoint": vae_name, "fingerprint": vae_fingerprint(vae), "latent_dim": vae.latent_dim},
        "train_config": train_config.to_dict(),
        "best_step": result.best_step,
        "train_seconds": round(result.train_seconds, 1),
        "history": result.history[-3:],
        "new_task_calibration": result.calibration,
    }


def surrogate_for_group(
    corpus: Corpus,
    group: str,
    vae,
    latents: torch.Tensor,
    *,
    checkpoint: str = "auto",
    benchmark: str = "",
    vae_name: str = "",
    config: SurrogateConfig | None = None,
    train_config: MetaTrainConfig | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> MetaSurrogate:
    """A surrogate that never saw ``group``: a checkpoint (``auto``: the shipped one for
    ``benchmark`` when its VAE matches; a name or path), or one meta-trained now on the corpus
    without ``group`` (``checkpoint="train"``, or ``auto`` without a usable shipped one).
    A checkpoint whose card says it saw ``group`` is an error (the evaluation would leak)."""
    name = None
    if checkpoint == "auto":
        name = shipped_surrogate_for(benchmark, group)
        if name is not None:
            sur = load_surrogate(name, check_vae=False)
            want = sur.card.get("vae", {}).get("fingerprint")
            if want != vae_fingerprint(vae) and sur.vae_state is None:
                log(f"shipped surrogate {name} was trained on another VAE's latents; meta-training a new one")
                name = None
    elif checkpoint != "train":
        name = checkpoint
    if name is not None:
        sur = load_surrogate(name, vae)
        seen = set(sur.card.get("groups_seen", []))
        if group in seen:
            raise GrabnasError(
                f"surrogate checkpoint {name!r} saw the group {group!r} in meta-training; "
                f"use one that held it out (e.g. meta-train with --holdout {group})"
            )
        log(f"using surrogate checkpoint {name} (held out: {', '.join(sur.card.get('held_out_groups', [])) or 'none'})")
        return sur
    train = corpus.without_groups([group])
    tc = train_config or MetaTrainConfig()
    log(f"meta-training a surrogate without {group} on {len(train)} tasks ({tc.steps} steps)")
    res = meta_train(train, vae, config, tc, latents=latents, progress=progress)
    res.surrogate.card = card_fields(
        train,
        res,
        vae,
        benchmark=benchmark,
        corpus_spec=benchmark,
        held_out_groups=[group],
        train_config=tc,
        vae_name=vae_name,
    )
    return res.surrogate


def target_features(
    sur: MetaSurrogate, task: CorpusTask, extractor="digits-cnn", k: int = 20, seed: int = 0
) -> torch.Tensor | None:
    """``(K, k, F)`` instance features of a target task for a surrogate with a dataset encoder
    (None for a task without data or a surrogate without the encoder)."""
    if task.data is None or not sur.task_encoder.has_dataset_encoder:
        return None
    from grabnas.models.feature_extractor import load_feature_extractor

    return task_instance_features(task.data, load_feature_extractor(extractor), k, 1, seed)[0]
