"""Meta-training of the deep-kernel GP surrogate.

* :func:`meta_train` maximises the exact marginal likelihood of batches drawn from one task at a
  time (Adam, cosine learning rate), each task standardised with its own mean/std. The graph
  encoder is frozen by default (latents = VAE posterior means of every member, computed once);
  with ``finetune_encoder`` it is trained too, with its reconstruction loss kept. Early stopping
  and the best state follow a meta-validation score (see :class:`MetaTrainConfig`).
* :func:`surrogate_for_group` gives a surrogate that never saw a group: a (shipped) checkpoint
  that held it out, or one meta-trained now without it.

The rest of the surrogate's life lives next to this module and is re-exported here:
:mod:`grabnas.meta.features` (latents, targets and instance features),
:mod:`grabnas.meta.task_views` (training and validation views, batches),
:mod:`grabnas.meta.surrogate_eval` (:func:`evaluate_task` on a task it did not see),
:mod:`grabnas.meta.calibration` (:func:`calibrate_new_task_variance`) and
:mod:`grabnas.meta.checkpoints` (:func:`save_surrogate` / :func:`load_surrogate`; shipped
checkpoints load by name, ``nb201-no-cifar10``, and :func:`shipped_surrogate_for` finds the one
that held out a given dataset).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.calibration import calibrate_new_task_variance
from grabnas.meta.checkpoints import (
    CHECKPOINT_PREFIX,
    card_fields,
    load_surrogate,
    save_surrogate,
    shipped_surrogate_for,
    shipped_surrogate_names,
    surrogate_vae,
    vae_fingerprint,
)
from grabnas.meta.checkpoints import SURROGATE_CARD_FORMAT as CARD_FORMAT
from grabnas.meta.corpus import Corpus
from grabnas.meta.features import (
    dataset_instance_features,
    encode_members,
    latents_for,
    target_features,
    task_instance_features,
    task_targets,
)
from grabnas.meta.surrogate_eval import Z90, evaluate_task, plain_gp_predictions, transfer_rank_scores
from grabnas.meta.task_views import TaskView, _draw_batch, _split_views
from grabnas.models.fingerprint import module_fingerprint
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE, SurrogateConfig
from grabnas.models.value_maps import gaussian_nll, predict
from grabnas.seeding import child_seed


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
    own (:attr:`grabnas.models.surrogate_config.SurrogateConfig.task_offsets`), so the surrogate models
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


def _default_config(corpus: Corpus, latent_dim: int, with_data: bool, **overrides) -> SurrogateConfig:
    base = dict(latent_dim=latent_dim, fidelities=tuple(corpus.fidelities), dataset_encoder=with_data)
    base.update(overrides)
    return SurrogateConfig(**base)


def plan_meta_validation(corpus: Corpus, tc: MetaTrainConfig) -> tuple[list[str], list[str], str]:
    """``(train_tasks, val_tasks, rule)``: the split :func:`meta_train` will make with ``tc``, without
    training (the same draw from the same seed), so that a caller can show it before training starts."""
    rng = np.random.default_rng(child_seed(tc.seed, "surrogate-meta-train"))
    train, val, rule = _split_views(corpus, tc, rng)
    return list(dict.fromkeys(v.task.name for v in train)), sorted({v.task.name for v in val}), rule


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
def _validate(sur: MetaSurrogate, views: list[TaskView], latents_of, tc: MetaTrainConfig) -> dict:
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


# -- leave-one-group-out ---------------------------------------------------------------------------
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
    without ``group`` (``checkpoint="train"``, or ``auto`` without a usable shipped one;
    ``train@SEED``: meta-trained now with master seed ``SEED``, so a benchmark can vary the
    meta-training seed). A checkpoint whose card says it saw ``group`` is an error (the
    evaluation would leak)."""
    name = None
    seed = _train_seed(checkpoint)
    if seed is not None:
        checkpoint = "train"
        train_config = replace(train_config or MetaTrainConfig(), seed=seed)
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
    log(f"meta-training a surrogate without {group} on {len(train)} tasks ({tc.steps} steps, seed {tc.seed})")
    log(f"meta-validation: {plan_meta_validation(train, tc)[2]}")
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


def _train_seed(checkpoint: str) -> int | None:
    """``SEED`` of a ``train@SEED`` checkpoint spec (None for any other spec)."""
    if not checkpoint.startswith("train@"):
        return None
    text = checkpoint[len("train@") :]
    if not text.isdigit():
        raise GrabnasError(f"bad surrogate {checkpoint!r}; expected train@SEED with SEED a non-negative integer")
    return int(text)


__all__ = [
    "CARD_FORMAT",
    "CHECKPOINT_PREFIX",
    "MetaTrainConfig",
    "MetaTrainResult",
    "Z90",
    "calibrate_new_task_variance",
    "card_fields",
    "dataset_instance_features",
    "encode_members",
    "evaluate_task",
    "latents_for",
    "load_surrogate",
    "meta_train",
    "module_fingerprint",
    "plain_gp_predictions",
    "plan_meta_validation",
    "save_surrogate",
    "shipped_surrogate_for",
    "shipped_surrogate_names",
    "surrogate_for_group",
    "surrogate_vae",
    "target_features",
    "task_instance_features",
    "task_targets",
    "transfer_rank_scores",
    "vae_fingerprint",
]
