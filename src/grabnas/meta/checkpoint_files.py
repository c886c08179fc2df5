"""Reading the JSON card that sits next to every grabnas checkpoint (``NAME.pt`` + ``NAME.json``)."""

from __future__ import annotations

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
