"""Training, evaluation and checkpoints of the graph VAE (:mod:`grabnas.models.graph_vae`).

* :func:`train_vae` trains on every member of a space but a held-out split (recorded by its
  seed), with Adam, a cosine learning-rate schedule, early stopping on the held-out loss and the
  best held-out state kept.
* :func:`evaluate_vae` measures held-out reconstruction (greedy decode of ``mu``), validity /
  uniqueness / novelty of prior samples and latent smoothness along straight lines.
* :func:`save_checkpoint` / :func:`load_checkpoint` (in :mod:`grabnas.meta.checkpoints`,
  re-exported here): a ``.pt`` state dict next to a ``.json`` card (space, config, split seed,
  metrics, training time, torch version). The shipped checkpoints load by space name:
  ``load_checkpoint("nb201")``.

All randomness comes from explicit seeds (``torch.Generator`` / ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.checkpoints import SHIPPED, load_checkpoint, save_checkpoint, shipped_checkpoint_names
from grabnas.meta.checkpoints import VAE_CARD_FORMAT as CARD_FORMAT
from grabnas.models.graph_vae import ArchitectureVAE, DAGBatch, GraphVAE, GraphVAEConfig
from grabnas.seeding import child_seed
from grabnas.spaces import get_space
from grabnas.spaces.base import DAG, Architecture, SearchSpace


# -- training ----------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train_vae` (the model's are in :class:`GraphVAEConfig`)."""

    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    lr_final_factor: float = 0.05
    grad_clip: float = 5.0
    holdout_fraction: float = 0.1
    patience: int = 10
    seed: int = 0
    split_seed: int | None = None  # None: the training seed
    max_minutes: float | None = None

    def resolved_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed


@dataclass
class TrainResult:
    """A trained VAE (best held-out state), its per-epoch history and its split."""

    vae: ArchitectureVAE
    train_archs: list[Architecture]
    holdout_archs: list[Architecture]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0


def split_indices(n: int, holdout_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, holdout)`` indices of ``n`` items; ``round(n * holdout_fraction)`` held out."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise GrabnasError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
    perm = np.random.default_rng(split_seed).permutation(n)
    k = int(round(n * holdout_fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def split_archs(space: SearchSpace, card: dict) -> tuple[list[Architecture], list[Architecture]]:
    """The ``(train, holdout)`` members of ``space`` for the split a checkpoint card records."""
    if card.get("trained_on", "all members") != "all members":
        raise GrabnasError("this VAE was trained on given architectures, not all members; pass its split explicitly")
    try:
        fraction, seed = float(card["holdout_fraction"]), int(card["split_seed"])
    except (KeyError, TypeError, ValueError):
        raise GrabnasError("the VAE card records no split (holdout_fraction, split_seed)") from None
    members = space.members()
    train, hold = split_indices(len(members), fraction, seed)
    return [members[i] for i in train], [members[i] for i in hold]


def _batches(n: int, size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, size):
        yield order[i : i + size]


@torch.no_grad()
def _heldout_loss(model: GraphVAE, data: DAGBatch, seed: int, chunk: int = 2048) -> float:
    """Mean negative ELBO over ``data`` with noise drawn from a fixed seed (comparable across epochs)."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for idx in _batches(len(data), chunk):
        total += float(model.loss(data[idx], g).total) * len(idx)
    return total / max(len(data), 1)


def train_vae(
    space: SearchSpace | str,
    model_config: GraphVAEConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    archs: Sequence[Architecture] | None = None,
) -> TrainResult:
    """Train a graph VAE on every member of ``space`` (or on ``archs``) except a held-out split.

    ``model_config`` defaults to :meth:`GraphVAEConfig.for_space`. With ``checkpoint_path`` the
    best state so far is saved there after every improving epoch. ``on_epoch`` receives each
    epoch's history record (``epoch``, ``train_loss``, ``heldout_loss``, ``heldout_recon``, ``lr``,
    ``seconds``).
    """
    from tqdm.auto import tqdm

    space = get_space(space) if isinstance(space, str) else space
    cfg = model_config or GraphVAEConfig.for_space(space)
    tc = train_config or TrainConfig()
    split_seed = tc.resolved_split_seed()
    if tc.epochs < 1 or tc.batch_size < 1:
        raise GrabnasError(f"training needs epochs >= 1 and batch size >= 1, got {tc.epochs} and {tc.batch_size}")
    model = GraphVAE(cfg, torch.Generator().manual_seed(child_seed(tc.seed, "vae-init")))
    vae = ArchitectureVAE(space, model)
    members = list(archs) if archs is not None else space.members()
    if len(members) < 2:
        raise GrabnasError(f"training a VAE needs at least 2 architectures, got {len(members)}")
    data = DAGBatch.from_dags(vae.to_dags(members), cfg)
    train_idx, hold_idx = split_indices(len(members), tc.holdout_fraction, split_seed)
    train_data, hold_data = data[torch.from_numpy(train_idx)], data[torch.from_numpy(hold_idx)]
    hold_archs = [members[i] for i in hold_idx]
    shuffle = torch.Generator().manual_seed(child_seed(tc.seed, "vae-shuffle"))
    noise = torch.Generator().manual_seed(child_seed(tc.seed, "vae-noise"))
    heldout_seed = child_seed(tc.seed, "vae-heldout-noise")
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(tc.epochs, 1), eta_min=tc.lr * tc.lr_final_factor)

    card = {
        "space": space.name,
        "config": cfg.to_dict(),
        "trained_on": "all members" if archs is None else f"{len(members)} given architectures",
        "split_seed": split_seed,
        "holdout_fraction": tc.holdout_fraction,
        "num_train": len(train_idx),
        "num_holdout": len(hold_idx),
        "train_config": asdict(tc),
    }
    result = TrainResult(vae, [members[i] for i in train_idx], hold_archs)
    best_loss, best_state, stale = math.inf, None, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(1, tc.epochs + 1), desc=f"vae {space.name}", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for idx in _batches(len(train_data), tc.batch_size, shuffle):
            loss = model.loss(train_data[idx], noise)
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            total += float(loss.total.detach()) * len(idx)
            count += len(idx)
        sched.step()
        model.eval()
        held = _heldout_loss(model, hold_data, heldout_seed) if len(hold_data) else total / count
        recon = reconstruction_accuracy(vae, hold_archs) if hold_archs else float("nan")
        record = {
            "epoch": epoch,
            "train_loss": total / count,
            "heldout_loss": held,
            "heldout_recon": recon,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        result.history.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", heldout=f"{held:.3f}", recon=f"{recon:.3f}")
        if on_epoch is not None:
            on_epoch(record)
        if held < best_loss:
            best_loss, stale, result.best_epoch = held, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint_path is not None:
                vae.card = {
                    **card,
                    "status": f"in progress (best epoch {epoch})",
                    "training_seconds": record["seconds"],
                }
                save_checkpoint(vae, checkpoint_path)
        else:
            stale += 1
            if stale >= tc.patience:
                break
        if tc.max_minutes is not None and record["seconds"] > 60 * tc.max_minutes:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.train_seconds = time.perf_counter() - start
    vae.card = {
        **card,
        "status": "trained",
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_heldout_loss": best_loss,
        "training_seconds": round(result.train_seconds, 1),
        "training_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return result


# -- evaluation ----------------------------------------------------------------------------------
def dag_edit_distance(a: DAG, b: DAG) -> int:
    """Node-type substitutions plus node insertions/deletions plus edges in one DAG only.

    Nodes are matched by position (both DAGs are in topological order).
    """
    subs = sum(x != y for x, y in zip(a.node_types, b.node_types))
    return subs + abs(a.num_nodes - b.num_nodes) + len(set(a.edges) ^ set(b.edges))


@torch.no_grad()
def reconstruction_accuracy(vae: ArchitectureVAE, archs: Sequence[Architecture], chunk: int = 2048) -> float:
    """Fraction of ``archs`` that the greedy decode of their posterior mean gives back exactly."""
    if not archs:
        return float("nan")
    hits = 0
    for i in range(0, len(archs), chunk):
        part = list(archs[i : i + chunk])
        decoded = vae.decode_archs(vae.encode_archs(part))
        hits += sum(d == a for d, a in zip(decoded, part))
    return hits / len(archs)


@torch.no_grad()
def prior_metrics(
    vae: ArchitectureVAE, train_archs: set[Architecture], n: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Validity, uniqueness and novelty of greedy decodes of ``n`` draws ``z ~ N(0, I)``.

    ``validity`` = valid / n; ``uniqueness`` = distinct valid / valid; ``novelty`` = valid decodes
    not in ``train_archs`` / valid (D-VAE's definitions).
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, vae.latent_dim, generator=g)
    valid = [a for a in vae.decode_archs(z) if a is not None]
    nv = max(len(valid), 1)
    return {
        "prior_validity": len(valid) / n,
        "prior_uniqueness": len(set(valid)) / nv,
        "prior_novelty": sum(a not in train_archs for a in valid) / nv,
    }


@torch.no_grad()
def latent_smoothness(
    vae: ArchitectureVAE, archs: Sequence[Architecture], n_pairs: int = 100, n_steps: int = 10, seed: int = 0
) -> list[float]:
    """Mean edit distance between the greedy decode at step ``t`` and at step 0, ``t = 0..n_steps``.

    For ``n_pairs`` random pairs of ``archs``, the latent moves in ``n_steps`` equal steps along
    the straight line from one posterior mean to the other. Returns ``n_steps + 1`` means.
    """
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, len(archs), size=(n_pairs, 2))
    za = vae.encode_archs([archs[i] for i in pairs[:, 0]])
    zb = vae.encode_archs([archs[i] for i in pairs[:, 1]])
    t = torch.linspace(0, 1, n_steps + 1).view(1, -1, 1)
    path = (za.unsqueeze(1) + t * (zb - za).unsqueeze(1)).reshape(-1, vae.latent_dim)  # (P * (S+1), L)
    dags = vae.model.decode(path)
    dist = np.zeros((n_pairs, n_steps + 1))
    for p in range(n_pairs):
        start = dags[p * (n_steps + 1)]
        for s in range(n_steps + 1):
            dist[p, s] = dag_edit_distance(start, dags[p * (n_steps + 1) + s])
    return [round(float(x), 4) for x in dist.mean(axis=0)]


def evaluate_vae(
    vae: ArchitectureVAE,
    *,
    seed: int = 0,
    n_prior: int = 1000,
    n_pairs: int = 100,
    n_steps: int = 10,
    split: tuple[Sequence[Architecture], Sequence[Architecture]] | None = None,
) -> dict:
    """All metrics of a VAE: on ``split = (train, holdout)`` or the split its card records."""
    train, hold = split if split is not None else split_archs(vae.space, vae.card)
    start = time.perf_counter()
    metrics: dict = {"heldout_reconstruction": reconstruction_accuracy(vae, hold)}
    rng = np.random.default_rng(child_seed(seed, "vae-eval-train-sample"))
    sample = [train[i] for i in rng.choice(len(train), size=min(2000, len(train)), replace=False)]
    metrics["train_reconstruction_sample2000"] = reconstruction_accuracy(vae, sample)
    metrics.update(prior_metrics(vae, set(train), n_prior, child_seed(seed, "vae-eval-prior")))
    metrics["prior_samples"] = n_prior
    metrics["smoothness_edit_distance"] = latent_smoothness(
        vae, list(train) + list(hold), n_pairs, n_steps, child_seed(seed, "vae-eval-smooth")
    )
    metrics["smoothness_pairs"] = n_pairs
    metrics["eval_seed"] = seed
    metrics["eval_seconds"] = round(time.perf_counter() - start, 1)
    return metrics


__all__ = [
    "CARD_FORMAT",
    "SHIPPED",
    "TrainConfig",
    "TrainResult",
    "dag_edit_distance",
    "evaluate_vae",
    "latent_smoothness",
    "load_checkpoint",
    "prior_metrics",
    "reconstruction_accuracy",
    "save_checkpoint",
    "shipped_checkpoint_names",
    "split_archs",
    "split_indices",
    "train_vae",
]
