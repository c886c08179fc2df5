"""Checkpoint files of both kinds, the graph VAE's and the surrogate's: every grabnas checkpoint is
``NAME.pt`` plus its JSON card ``NAME.json``, either shipped inside the package
(``grabnas/checkpoints/``) or anywhere on disk; this module writes and reads them
(:func:`save_checkpoint` / :func:`load_checkpoint` for VAEs, :func:`save_surrogate` /
:func:`load_surrogate` for surrogates), lists and finds the shipped ones, fingerprints the VAE a
surrogate reads latents of, and builds a meta-trained surrogate's card (:func:`card_fields`)."""

from __future__ import annotations

import contextlib
import copy
import importlib.resources
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from grabnas import __version__
from grabnas.errors import GrabnasError
from grabnas.meta.corpus import Corpus
from grabnas.models.fingerprint import module_fingerprint
from grabnas.models.graph_vae import ArchitectureVAE, GraphVAE, GraphVAEConfig
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import SurrogateConfig
from grabnas.spaces import get_space
from grabnas.spaces.base import SearchSpace

VAE_CARD_FORMAT = "grabnas-vae/1"
#: Shipped checkpoint stems inside ``grabnas/checkpoints`` by space name (and aliases).
SHIPPED = {"nb201": "vae-nb201", "nasbench-graph": "vae-nasbench-graph", "nbgraph": "vae-nasbench-graph"}
SURROGATE_CARD_FORMAT = "grabnas-surrogate/1"
CHECKPOINT_PREFIX = "surrogate-"


# -- files and cards ---------------------------------------------------------------------------------
def read_card(path: Path, what: str, card_format: str) -> dict:
    """The card at ``path``; one-line errors for an unreadable file or a card of another kind.

    ``what`` names the checkpoint kind in messages (``"VAE checkpoint"``, ``"surrogate"``) and
    ``card_format`` is the ``format`` field the card must carry.
    """
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GrabnasError(f"{what} card {path} is corrupt: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(card, dict) or card.get("format") != card_format:
        raise GrabnasError(f"{path} is not a grabnas {what} card (expected format {card_format!r})")
    return card


def shipped_root():
    """The package's ``checkpoints`` folder (an importlib resource)."""
    return importlib.resources.files("grabnas") / "checkpoints"


def checkpoint_stem(path: str | Path) -> Path:
    """``x.pt`` / ``x.json`` / ``x`` -> ``x``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".pt", ".json") else p


def checkpoint_paths(stack: contextlib.ExitStack, shipped_stem: str | None, path: str | Path) -> tuple[Path, Path]:
    """``(pt, json)`` of the shipped checkpoint ``shipped_stem`` (kept on disk while ``stack``
    is open), or, when it is None, of the checkpoint at ``path``. Existence is not checked."""
    if shipped_stem is not None:
        root = shipped_root()
        pt = stack.enter_context(importlib.resources.as_file(root / f"{shipped_stem}.pt"))
        js = stack.enter_context(importlib.resources.as_file(root / f"{shipped_stem}.json"))
        return pt, js
    stem = checkpoint_stem(path)
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


# -- VAE checkpoints -------------------------------------------------------------------------------
def save_checkpoint(vae: ArchitectureVAE, path: str | Path, **card_fields: object) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (state dict) and ``<stem>.json`` (card); returns both paths.

    The card is ``vae.card`` plus ``card_fields`` plus the format, space, config, torch and
    grabnas versions; ``vae.card`` is updated to it.
    """
    stem = checkpoint_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "format": VAE_CARD_FORMAT,
        **vae.card,
        **card_fields,
        "space": vae.space.name,
        "config": vae.model.config.to_dict(),
        "num_parameters": sum(p.numel() for p in vae.model.parameters()),
        "torch_version": torch.__version__,
        "grabnas_version": __version__,
    }
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    torch.save({k: v.detach().cpu() for k, v in vae.model.state_dict().items()}, pt)
    js.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    vae.card = card
    return pt, js


def shipped_checkpoint_names() -> list[str]:
    """Space names whose VAE checkpoint ships with the package."""
    root = shipped_root()
    return [n for n, stem in SHIPPED.items() if n != "nbgraph" and (root / f"{stem}.pt").is_file()]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def load_checkpoint(path_or_name: str | Path, space: SearchSpace | str | None = None) -> ArchitectureVAE:
    """A VAE from a shipped name (``nb201``, ``nasbench-graph``) or a ``.pt``/``.json`` path.

    With ``space`` given, a checkpoint trained on another space is an error. A missing, corrupt
    or mismatched file raises :class:`GrabnasError` with a one-line message.
    """
    with contextlib.ExitStack() as stack:
        name = str(path_or_name)
        stem_name = SHIPPED.get(name, name if name in SHIPPED.values() else None)
        pt, js = checkpoint_paths(stack, stem_name, path_or_name)
        if not pt.is_file() or not js.is_file():
            missing = pt if not pt.is_file() else js
            raise GrabnasError(
                f"no VAE checkpoint {name!r}: {missing} does not exist; expected a shipped name "
                f"({', '.join(n for n in SHIPPED if n != 'nbgraph')}) or a .pt file next to its .json card"
            )
        card = read_card(js, "VAE checkpoint", VAE_CARD_FORMAT)
        if space is not None:
            wanted = space if isinstance(space, str) else space.name
            wanted = "nasbench-graph" if wanted == "nbgraph" else wanted
            if card.get("space") != wanted:
                raise GrabnasError(
                    f"VAE checkpoint {name!r} was trained on the {card.get('space')} space, not {wanted}; "
                    f"use a checkpoint of the {wanted} space"
                )
        space_obj = space if isinstance(space, SearchSpace) else get_space(str(card.get("space")))
        try:
            config = GraphVAEConfig.from_dict(card["config"])
        except (KeyError, TypeError) as e:
            raise GrabnasError(f"VAE checkpoint card {js} has no valid config: {_one_line(e)}") from None
        try:
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a damaged file
            raise GrabnasError(f"VAE checkpoint {pt} is corrupt or not a state dict: {_one_line(e)}") from None
        model = GraphVAE(config)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise GrabnasError(f"VAE checkpoint {pt} does not match its card's config: {_one_line(e)}") from None
        model.eval()
        return ArchitectureVAE(space_obj, model, card)


# -- surrogate checkpoints ---------------------------------------------------------------------------
def vae_fingerprint(vae) -> str:
    """A short hash of a VAE's weights (a surrogate is only valid for the latents it saw)."""
    return module_fingerprint(vae.model)


def save_surrogate(
    sur: MetaSurrogate, path: str | Path, *, vae_state: dict | None = None, **card_fields: object
) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (float32 state dict; a fine-tuned VAE's state under ``vae``) and
    ``<stem>.json`` (the card: ``sur.card`` + ``card_fields`` + config and versions)."""
    stem = checkpoint_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "format": SURROGATE_CARD_FORMAT,
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
        card = read_card(js, "surrogate", SURROGATE_CARD_FORMAT)
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
    if vae is None:
        info = sur.card.get("vae", {})
        vae = load_checkpoint(info.get("checkpoint", sur.card.get("space", "nb201")), space=sur.card.get("space"))
    if getattr(sur, "vae_state", None) is not None:
        vae = copy.deepcopy(vae)
        vae.model.load_state_dict(sur.vae_state)
        vae.model.eval()
    return vae


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


def card_fields(
    corpus: Corpus,
    result: Any,
    vae,
    *,
    benchmark: str,
    corpus_spec: str,
    held_out_groups: Sequence[str],
    train_config: Any,
    vae_name: str,
) -> dict:
    """The JSON card of a meta-trained surrogate (what it saw, what it held out, how it trained).

    ``result`` is a :class:`grabnas.meta.surrogate_training.MetaTrainResult` and ``train_config``
    a :class:`grabnas.meta.surrogate_training.MetaTrainConfig`, duck-typed (this module sits below
    meta-training): the card reads ``result``'s ``train_tasks``, ``val_split``, ``val_tasks``,
    ``best_step``, ``train_seconds``, ``history`` and ``calibration``, and ``train_config.to_dict()``.
    ``heldout_residual`` is :func:`grabnas.meta.transferability.heldout_residual_fraction` of the
    corpus it saw (None where it cannot be computed).
    """
    from grabnas.meta.transferability import heldout_residual_fraction

    return {
        "space": corpus.space.name,
        "benchmark": benchmark,
        "corpus": corpus_spec,
        "train_tasks": result.train_tasks,
        "groups_seen": sorted({corpus.group_of(t) for t in corpus.task_names}),
        "train_groups": sorted({corpus.group_of(t) for t in result.train_tasks}),
        "meta_validation_groups": sorted(
            {corpus.group_of(t) for t in result.val_tasks} - {corpus.group_of(t) for t in result.train_tasks}
        ),
        "held_out_groups": list(held_out_groups),
        "meta_validation": result.val_split,
        "meta_validation_tasks": result.val_tasks,
        "vae": {"checkpoint": vae_name, "fingerprint": vae_fingerprint(vae), "latent_dim": vae.latent_dim},
        "train_config": train_config.to_dict(),
        "best_step": result.best_step,
        "train_seconds": round(result.train_seconds, 1),
        "history": result.history[-3:],
        "new_task_calibration": result.calibration,
        "heldout_residual": heldout_residual_fraction(corpus),
    }


__all__ = [
    "CHECKPOINT_PREFIX",
    "SHIPPED",
    "SURROGATE_CARD_FORMAT",
    "VAE_CARD_FORMAT",
    "card_fields",
    "checkpoint_paths",
    "checkpoint_stem",
    "load_checkpoint",
    "load_surrogate",
    "read_card",
    "save_checkpoint",
    "save_surrogate",
    "shipped_checkpoint_names",
    "shipped_root",
    "shipped_surrogate_for",
    "shipped_surrogate_names",
    "surrogate_vae",
    "vae_fingerprint",
]
