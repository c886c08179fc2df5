"""Fingerprints of model weights: :func:`module_fingerprint`, a short hash of a module's state dict,
which checkpoint cards record and studies compare (a surrogate is only valid for the VAE latents it
was meta-trained on, and a study refuses to resume under other surrogate weights)."""

from __future__ import annotations

import hashlib

import torch


def module_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's weights (names and values of its state dict)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = ["module_fingerprint"]
