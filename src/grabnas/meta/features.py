"""Features of the surrogate's inputs and targets, for the corpus and a target task: latents of a
space's members (:func:`encode_members`, :func:`latents_for`), a task's values in its standardised
units (:func:`task_targets`) and instance features of a task's images for the dataset encoder
(:func:`task_instance_features`, :func:`dataset_instance_features`, :func:`target_features`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from grabnas.errors import GrabnasError
from grabnas.meta.checkpoints import surrogate_vae
from grabnas.meta.corpus import CorpusTask
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import rank_gauss
from grabnas.seeding import child_seed


# -- latents -----------------------------------------------------------------------------------
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


def latents_for(sur: MetaSurrogate, vae, latents: torch.Tensor | None = None) -> torch.Tensor:
    """The member latents ``sur`` reads: ``latents`` (of ``vae``) unless the surrogate carries a
    fine-tuned encoder, whose latents are computed."""
    if getattr(sur, "vae_state", None) is None:
        return latents if latents is not None else encode_members(vae)
    return encode_members(surrogate_vae(sur, vae))


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


def split_task_embedding(
    sur: MetaSurrogate, split, extractor: str | None = None, fidelity: str | None = None
) -> torch.Tensor:
    """``(task_dim,)`` embedding of a task for ``sur`` from the train split of ``split`` (a
    :class:`grabnas.data.DatasetSplit`), at ``fidelity`` (a low-fidelity label the surrogate learned
    an offset for, e.g. ``12ep``; None: the main one).

    Mirrors meta-training: ``instances_per_class`` images per class with the card's seed, features
    from the card's extractor (default ``digits-cnn``), sample 0 of the draws. A surrogate without
    a dataset encoder gets its learned "no data" embedding.
    """
    from grabnas.models.feature_extractor import load_feature_extractor

    if not sur.task_encoder.has_dataset_encoder:
        return sur.task_embedding(None, fidelity).detach()
    tc = sur.card.get("train_config", {})
    k = int(tc.get("instances_per_class", 20))
    seed = int(tc.get("seed", 0))
    fx = load_feature_extractor(extractor or sur.card.get("extractor", "digits-cnn"))
    dim = int(getattr(fx, "feature_dim", sur.config.instance_dim))
    if dim != sur.config.instance_dim:
        raise GrabnasError(
            f"the feature extractor gives {dim} features; the surrogate's dataset encoder reads {sur.config.instance_dim}"
        )
    feats = dataset_instance_features(split.train, fx, k, 1, seed)[0]
    with torch.no_grad():
        return sur.task_embedding(feats, fidelity).detach()


def target_features(
    sur: MetaSurrogate, task: CorpusTask, extractor="digits-cnn", k: int = 20, seed: int = 0
) -> torch.Tensor | None:
    """``(K, k, F)`` instance features of a target task for a surrogate with a dataset encoder
    (None for a task without data or a surrogate without the encoder)."""
    if task.data is None or not sur.task_encoder.has_dataset_encoder:
        return None
    from grabnas.models.feature_extractor import load_feature_extractor

    return task_instance_features(task.data, load_feature_extractor(extractor), k, 1, seed)[0]


__all__ = [
    "dataset_instance_features",
    "encode_members",
    "latents_for",
    "split_task_embedding",
    "target_features",
    "task_instance_features",
    "task_targets",
]
