"""Checkpoint files: every grabnas checkpoint is ``NAME.pt`` plus its JSON card ``NAME.json``,
either shipped inside the package (``grabnas/checkpoints/``) or anywhere on disk."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
from pathlib import Path

from grabnas.errors import GrabnasError


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
